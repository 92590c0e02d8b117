//! The A/V edge: `parapet edge`'s media relay on the external side, as a
//! remote user's TURN client uses it — SIP credentials checked by the
//! pool (which hands the edge a user's key only with the request that user
//! signed), the pool's remote-access rule and lockout, the edge's own
//! filter; media between two allocations; a user the pool disables loses
//! the allocation within a second; a browser's credentials from the
//! pool's user API work at the edge until its session signs out.
//! (Calls across NATs through the edge's relay: `nat_lab`.)

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use stun::Class;

use crate::edge::{grant_remote, pool, EXTERNAL, REMOTE};
use crate::federation::metric;
use crate::harness::*;
use crate::relay::Turn;

const ALICE: &str = "correct-horse-battery";
const BOB: &str = "battery-staple-horse";

#[test]
fn remote_users_relay_media_through_the_edge_with_the_pools_say_on_who_may() {
    let (s, edge) = pool("edge-relay");
    s.add_user("carol", "staple-battery-horse");
    grant_remote(&s, "bob");
    let relay: SocketAddr = format!("{EXTERNAL}:{}", edge.relay_port.unwrap())
        .parse()
        .unwrap();
    let turn =
        |local: &str, user: &str, pw: &str| Turn::udp_to(relay, "example.test", local, user, pw);

    // Alice signs in with her SIP password: allocated on the edge's
    // external address, the answer signed with her key.
    let mut alice = turn(REMOTE, "alice", ALICE);
    let a = alice.allocate();
    assert_eq!(a.class, Class::Success, "code {}\n{}", a.code, edge.log());
    let alice_relayed = a.address(stun::attr::XOR_RELAYED_ADDRESS);
    assert_eq!(alice_relayed.ip().to_string(), EXTERNAL);
    assert!(a.msg().verify(&alice.key).is_ok());
    let mut bob = turn(REMOTE, "bob", BOB);
    let b = bob.allocate();
    assert_eq!(b.class, Class::Success, "code {}", b.code);
    let bob_relayed = b.address(stun::attr::XOR_RELAYED_ADDRESS);

    // Media between the two allocations, both ways (another allocation on
    // this relay is a peer at its exact address).
    assert_eq!(alice.channel(0x4000, bob_relayed), 0);
    assert_eq!(bob.channel(0x4001, alice_relayed), 0);
    alice.channel_data(0x4000, b"hello bob");
    let (_, ch, data) = bob.receive().expect("bob received alice's data");
    assert_eq!((ch, data.as_slice()), (Some(0x4001), &b"hello bob"[..]));
    bob.channel_data(0x4001, b"hello alice");
    let (_, ch, data) = alice.receive().expect("alice received bob's data");
    assert_eq!((ch, data.as_slice()), (Some(0x4000), &b"hello alice"[..]));
    // Nothing inside: the front end's own address is no peer.
    let inside: SocketAddr = format!("127.0.0.2:{}", s.tls).parse().unwrap();
    assert_eq!(alice.permission(inside), 403);

    // The pool answers key questions only on a paired edge's link: the
    // same question from anyone else — with a request alice really signed
    // — is an ordinary OPTIONS, answered without a key.
    let mut e = stun::Encoder::new(Class::Request, stun::method::ALLOCATE, [3; 12]);
    e.attr(stun::attr::USERNAME, b"alice").unwrap();
    e.attr(stun::attr::REALM, b"example.test").unwrap();
    e.attr(stun::attr::NONCE, b"any").unwrap();
    let signed = e.finish_with(Some((stun::integrity::Integrity::Sha1, &alice.key)), false);
    let question = ::relay::pool_key::Question {
        username: "alice".into(),
        source: "127.0.0.20".parse().unwrap(),
        request: signed,
    }
    .encode();
    let sock = std::net::UdpSocket::bind("127.0.0.21:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let local = sock.local_addr().unwrap();
    let options = format!(
        "OPTIONS sip:example.test SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKkeyprobe\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@example.test>;tag=p\r\nTo: <sip:example.test>\r\n\
         Call-ID: key-probe\r\nCSeq: 1 OPTIONS\r\nAccept: {t}\r\nContent-Type: {t}\r\n\
         Content-Length: {}\r\n\r\n{question}",
        question.len(),
        t = ::relay::pool_key::CONTENT_TYPE,
    );
    sock.send_to(options.as_bytes(), (s.host.as_str(), s.udp))
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = sock
        .recv(&mut buf)
        .expect("the front end answers the OPTIONS");
    let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(answer.starts_with("SIP/2.0 "), "{answer}");
    assert!(
        !answer.contains("result=") && !answer.contains("md5="),
        "a key went to something that is no edge: {answer}"
    );

    // Carol's password is right, but she has no remote access: refused by
    // the pool's rule, as her SIP sign-in through the edge would be.
    let mut carol = turn(REMOTE, "carol", "staple-battery-horse");
    assert_eq!(carol.allocate().code, 403);

    // Guessing bob's password from another address: each wrong guess is
    // 401 and counted by the pool and the edge; after five, even the right
    // password is refused at the edge from there, before the pool is
    // asked. Bob's own allocation from his address is untouched.
    let failures_before = metric(
        &s.http_get("/metrics", None).1,
        "parapet_auth_failures_total",
    );
    for _ in 0..5 {
        let mut guess = turn("127.0.0.21", "bob", "not-his-password");
        assert_eq!(guess.allocate().code, 401);
    }
    let mut right = turn("127.0.0.21", "bob", BOB);
    assert_eq!(right.allocate().code, 403);
    let m = s.http_get("/metrics", None).1;
    assert_eq!(
        metric(&m, "parapet_auth_failures_total"),
        failures_before + 5,
        "the pool counted the guesses: {m}"
    );
    let (_, em) = edge.get("/metrics");
    assert!(metric(&em, "parapet_edge_lockouts_total") >= 1, "{em}");
    assert!(
        metric(&em, "parapet_edge_refused_total{reason=\"lockout\"}") >= 1,
        "{em}"
    );
    assert_eq!(metric(&em, "parapet_relay_allocations"), 2, "{em}");
    assert!(
        metric(&em, "parapet_relay_packets_total{direction=\"to_peer\"}") >= 2,
        "{em}"
    );

    // Bob's account is disabled on the pool: the edge's relay hears it in
    // the next snapshot and ends his allocation at its next tick.
    let o = s.admin(&["user", "disable", "sip:bob@example.test"], "");
    assert!(o.status.success(), "{}", out(&o));
    let disabled = Instant::now();
    let mut last_relayed = disabled;
    loop {
        alice.channel_data(0x4000, b"still there?");
        if bob.receive().is_none() {
            break;
        }
        last_relayed = Instant::now();
        assert!(
            disabled.elapsed() < Duration::from_secs(1),
            "bob's allocation outlived his account by a second\n{}",
            edge.log()
        );
    }
    eprintln!(
        "edge relay: bob's allocation last relayed {} ms after he was disabled",
        last_relayed.duration_since(disabled).as_millis()
    );
    assert!(
        edge.log().contains("its user's access was revoked"),
        "{}",
        edge.log()
    );
    // Alice's is not.
    assert_eq!(
        alice.permission(bob_relayed),
        403,
        "bob's relayed address is no allocation now"
    );
    let (_, em) = edge.get("/metrics");
    assert_eq!(metric(&em, "parapet_relay_allocations"), 1, "{em}");
}

#[test]
fn a_browsers_credentials_from_the_pool_work_at_the_edges_relay_while_its_session_lasts() {
    let (s, edge) = pool("edge-relay-web");
    grant_remote(&s, "bob");
    let relay: SocketAddr = format!("{EXTERNAL}:{}", edge.relay_port.unwrap())
        .parse()
        .unwrap();
    // The user API hands out the edge's relay (reported by the edge) beside
    // the front end's own.
    let token = crate::user_api::sign_in(&s, "alice", ALICE);
    let want = format!("turn:{relay}?transport=udp");
    let deadline = Instant::now() + Duration::from_secs(5);
    let v: serde_json::Value = loop {
        let (code, head, body) = s.https("POST", "/user/v1/relay-credentials", Some(&token), "");
        assert_eq!(code, 201, "{head}\n{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if v["urls"].as_array().unwrap().iter().any(|u| *u == want) {
            break v;
        }
        assert!(Instant::now() < deadline, "no {want} in {v}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        v["urls"][0]
            .as_str()
            .unwrap()
            .starts_with("turn:127.0.0.2:"),
        "the front end's own first: {v}"
    );
    let username = v["username"].as_str().unwrap().to_string();
    let credential = v["credential"].as_str().unwrap().to_string();

    // A browser's allocation at the edge with them; bob's with his SIP
    // password; media between the two.
    let mut web = Turn::udp_to(relay, "example.test", REMOTE, &username, &credential);
    let a = web.allocate();
    assert_eq!(a.class, Class::Success, "code {}\n{}", a.code, edge.log());
    let mut bob = Turn::udp_to(relay, "example.test", REMOTE, "bob", BOB);
    let b = bob.allocate();
    assert_eq!(b.class, Class::Success, "code {}", b.code);
    let (ra, rb) = (
        a.address(stun::attr::XOR_RELAYED_ADDRESS),
        b.address(stun::attr::XOR_RELAYED_ADDRESS),
    );
    assert_eq!(web.permission(rb), 0);
    assert_eq!(bob.permission(ra), 0);
    web.send_to_peer(rb, b"from the browser");
    assert_eq!(bob.receive().expect("relayed").2, b"from the browser");
    // A credential changed in one character is refused.
    let forged = username.replacen("alice", "carol", 1);
    let mut f = Turn::udp_to(relay, "example.test", REMOTE, &forged, &credential);
    assert_eq!(f.allocate().code, 401);

    // Signing out: the edge's allocation stops relaying within a second
    // (the pool's snapshot), and the credentials die with the session (the
    // edge asks the pool).
    let (code, _, _) = s.https("DELETE", "/user/v1/session", Some(&token), "");
    assert_eq!(code, 204);
    let signed_out = Instant::now();
    loop {
        web.send_to_peer(rb, b"still there?");
        if bob.receive().is_none() {
            break;
        }
        assert!(
            signed_out.elapsed() < Duration::from_secs(1),
            "the browser's allocation outlived its session by a second\n{}",
            edge.log()
        );
    }
    // Past the margin the edge gives the pool's clock, what refuses them is
    // the pool's answer that the session has ended.
    std::thread::sleep(
        (signed_out + Duration::from_millis(2500)).saturating_duration_since(Instant::now()),
    );
    let mut again = Turn::udp_to(relay, "example.test", REMOTE, &username, &credential);
    assert_eq!(again.allocate().code, 401, "{}", edge.log());
    assert!(
        edge.log()
            .contains("relay: web credentials of a session that has ended"),
        "{}",
        edge.log()
    );
}

#[test]
fn a_call_the_edge_did_not_carry_is_asked_of_the_pool_and_ends_with_it_there() {
    // Alice's client signs in to one edge (or, as here, inside) and takes
    // its relay from another: this edge never saw her call.
    let (s, edge) = pool("edge-relay-calls");
    let relay: SocketAddr = format!("{EXTERNAL}:{}", edge.relay_port.unwrap())
        .parse()
        .unwrap();
    let peer: SocketAddr = "203.0.113.5:40000".parse().unwrap();
    let mut alice = Turn::udp_to(relay, "example.test", REMOTE, "alice", ALICE);
    let a = alice.allocate();
    assert_eq!(a.class, Class::Success, "code {}\n{}", a.code, edge.log());
    // In no call anywhere: the pool knows none either.
    assert_eq!(alice.permission(peer), 403);

    // Bob answers with media at 203.0.113.5 (a candidate at .6); alice
    // offers 198.51.100.7 — all of it through the front end only.
    let (caller, callee) =
        crate::relay::bob_answers_alice_with(&s, "call_uac_relay.xml", ALICE, BOB);
    let deadline = Instant::now() + Duration::from_secs(3);
    while alice.permission(peer) != 0 {
        assert!(
            Instant::now() < deadline,
            "the edge never learnt of the call\n{}\n{}",
            edge.log(),
            s.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        alice.channel(0x4000, "203.0.113.6:61000".parse().unwrap()),
        0
    );
    // What alice's own end said of itself is nothing the pool vouches for.
    assert_eq!(alice.permission("198.51.100.7:40000".parse().unwrap()), 403);
    let (ok, msgs) = caller.finish();
    assert!(ok, "{msgs}\n{}", s.log());
    let (ok, msgs) = callee.finish();
    assert!(ok, "{msgs}");

    // The BYE went through the front end only: the edge hears that the
    // call ended when it asks again, and the permission goes within a
    // second.
    let ended = Instant::now();
    while alice.permission(peer) != 403 {
        assert!(
            ended.elapsed() < Duration::from_secs(1),
            "the permission outlived the call by a second\n{}",
            edge.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "edge relay: the permission ended {} ms after the call",
        ended.elapsed().as_millis()
    );
}
