//! The media relay (TURN) as clients use it, over UDP and TCP against the
//! real server: SIP users sign in with their SIP password (MD5 or SHA-256
//! keys) under the SIP lockout; quotas answer with the RFC's codes;
//! permissions go only to addresses a call's SDP named, never to internal
//! ones, and end within a second of the BYE; media flows between two
//! allocations, and nowhere else on the relay's address.
//!
//! No packet leaves loopback: addresses a call names are documentation
//! ranges, to which nothing is sent while permitted (what is checked is
//! the relay's answer and, after the call, that data is dropped).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use stun::attr::{self, PasswordAlgorithm};
use stun::integrity::{long_term_key, Integrity};
use stun::{method, Class, Encoder, Message};

use crate::federation::metric;
use crate::harness::*;

const ALICE: &str = "correct horse battery";
const BOB: &str = "battery staple horse";

pub(crate) enum Link {
    Udp(UdpSocket),
    Tcp(TcpStream, Vec<u8>),
}

/// A TURN client, as baresip's or a browser's would behave.
pub(crate) struct Turn {
    link: Link,
    server: SocketAddr,
    user: String,
    realm: String,
    nonce: String,
    pub(crate) key: Vec<u8>,
    sha256: bool,
    next_tid: u32,
}

/// A response: its class, error code (0 for success) and bytes.
pub(crate) struct Reply {
    pub(crate) class: Class,
    pub(crate) code: u16,
    pub(crate) raw: Vec<u8>,
}

impl Reply {
    pub(crate) fn msg(&self) -> Message<'_> {
        Message::parse(&self.raw).unwrap()
    }
    pub(crate) fn address(&self, kind: u16) -> SocketAddr {
        let m = self.msg();
        attr::xor_address(kind, m.get(kind).unwrap(), &m.transaction_id).unwrap()
    }
}

impl Turn {
    fn udp(s: &Server, user: &str, password: &str) -> Turn {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        Turn::new(s, Link::Udp(sock), user, password)
    }

    fn tcp(s: &Server, user: &str, password: &str) -> Turn {
        let c = TcpStream::connect(("127.0.0.1", s.relay)).unwrap();
        c.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        Turn::new(s, Link::Tcp(c, Vec::new()), user, password)
    }

    fn new(s: &Server, link: Link, user: &str, password: &str) -> Turn {
        let server = format!("127.0.0.1:{}", s.relay).parse().unwrap();
        Turn::to(server, &s.domain, link, user, password)
    }

    /// A client of the relay at `server` (an edge's), in `realm`.
    pub(crate) fn to(
        server: SocketAddr,
        realm: &str,
        link: Link,
        user: &str,
        password: &str,
    ) -> Turn {
        Turn {
            link,
            server,
            user: user.into(),
            realm: realm.into(),
            nonce: String::new(),
            key: long_term_key(PasswordAlgorithm::Md5, user, realm, password),
            sha256: false,
            next_tid: 0,
        }
    }

    /// Over UDP from `local` to the relay at `server`.
    pub(crate) fn udp_to(
        server: SocketAddr,
        realm: &str,
        local: &str,
        user: &str,
        password: &str,
    ) -> Turn {
        let sock = UdpSocket::bind((local, 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        Turn::to(server, realm, Link::Udp(sock), user, password)
    }

    pub(crate) fn local(&self) -> SocketAddr {
        match &self.link {
            Link::Udp(u) => u.local_addr().unwrap(),
            Link::Tcp(t, _) => t.local_addr().unwrap(),
        }
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        match &mut self.link {
            Link::Udp(u) => {
                u.send_to(bytes, self.server).unwrap();
            }
            Link::Tcp(t, _) => t.write_all(bytes).unwrap(),
        }
    }

    /// The next datagram or frame, if one comes within half a second.
    fn recv_raw(&mut self) -> Option<Vec<u8>> {
        match &mut self.link {
            Link::Udp(u) => {
                let mut buf = vec![0u8; 65_536];
                let (n, _) = u.recv_from(&mut buf).ok()?;
                buf.truncate(n);
                Some(buf)
            }
            Link::Tcp(t, pending) => loop {
                if let Some(Ok(len)) = stun::channel::frame_len(pending) {
                    if pending.len() >= len {
                        return Some(pending.drain(..len).collect());
                    }
                }
                let mut chunk = [0u8; 4096];
                match t.read(&mut chunk) {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => pending.extend_from_slice(&chunk[..n]),
                }
            },
        }
    }

    fn tid(&mut self) -> [u8; 12] {
        self.next_tid = self.next_tid.wrapping_add(1);
        let mut t = [0u8; 12];
        t[..4].copy_from_slice(&self.next_tid.to_be_bytes());
        t[4..8].copy_from_slice(&std::process::id().to_be_bytes());
        t
    }

    /// Sends a request built by `build` (credentials added when `auth`)
    /// and returns the response with the same transaction id.
    pub(crate) fn ask(&mut self, m: u16, auth: bool, build: impl Fn(&mut Encoder)) -> Reply {
        let tid = self.tid();
        let mut e = Encoder::new(Class::Request, m, tid);
        build(&mut e);
        let bytes = if auth {
            e.attr(attr::USERNAME, self.user.as_bytes()).unwrap();
            e.attr(attr::REALM, self.realm.as_bytes()).unwrap();
            e.attr(attr::NONCE, self.nonce.as_bytes()).unwrap();
            if self.sha256 {
                let all = attr::password_algorithms_value(&[
                    PasswordAlgorithm::Sha256,
                    PasswordAlgorithm::Md5,
                ]);
                e.attr(attr::PASSWORD_ALGORITHMS, &all).unwrap();
                let one = attr::password_algorithms_value(&[PasswordAlgorithm::Sha256]);
                e.attr(attr::PASSWORD_ALGORITHM, &one).unwrap();
            }
            e.finish_with(Some((Integrity::Sha1, &self.key)), true)
        } else {
            e.finish_with(None, true)
        };
        for _ in 0..6 {
            self.send_raw(&bytes);
            let deadline = Instant::now() + Duration::from_millis(500);
            while Instant::now() < deadline {
                let Some(raw) = self.recv_raw() else { break };
                let Ok(r) = Message::parse(&raw) else {
                    continue;
                };
                if r.transaction_id != tid {
                    continue;
                }
                let code = r
                    .get(attr::ERROR_CODE)
                    .map_or(0, |v| attr::error_code(v).unwrap().code);
                if let Some(n) = r.get(attr::NONCE) {
                    self.nonce = String::from_utf8(n.to_vec()).unwrap();
                }
                return Reply {
                    class: r.class,
                    code,
                    raw,
                };
            }
        }
        panic!("no answer from the relay");
    }

    /// Allocate as clients do: without credentials first, then with them
    /// (again after a stale nonce). The final reply.
    pub(crate) fn allocate(&mut self) -> Reply {
        let transport = |e: &mut Encoder| {
            e.attr(attr::REQUESTED_TRANSPORT, &[attr::TRANSPORT_UDP, 0, 0, 0])
                .unwrap();
        };
        let first = self.ask(method::ALLOCATE, false, transport);
        assert_eq!(
            first.code, 401,
            "an Allocate without credentials is challenged"
        );
        self.ask(method::ALLOCATE, true, transport)
    }

    pub(crate) fn permission(&mut self, peer: SocketAddr) -> u16 {
        self.ask(method::CREATE_PERMISSION, true, |e| {
            e.xor_address(attr::XOR_PEER_ADDRESS, peer);
        })
        .code
    }

    pub(crate) fn channel(&mut self, channel: u16, peer: SocketAddr) -> u16 {
        self.ask(method::CHANNEL_BIND, true, |e| {
            e.attr(
                attr::CHANNEL_NUMBER,
                &[(channel >> 8) as u8, channel as u8, 0, 0],
            )
            .unwrap();
            e.xor_address(attr::XOR_PEER_ADDRESS, peer);
        })
        .code
    }

    pub(crate) fn send_to_peer(&mut self, peer: SocketAddr, data: &[u8]) {
        let tid = self.tid();
        let mut e = Encoder::new(Class::Indication, method::SEND, tid);
        e.xor_address(attr::XOR_PEER_ADDRESS, peer);
        e.attr(attr::DATA, data).unwrap();
        let bytes = e.finish();
        self.send_raw(&bytes);
    }

    pub(crate) fn channel_data(&mut self, channel: u16, data: &[u8]) {
        let mut out = Vec::new();
        stun::channel::ChannelData { channel, data }
            .write(matches!(self.link, Link::Tcp(..)), &mut out)
            .unwrap();
        self.send_raw(&out);
    }

    /// Data from a peer: (where from, channel if any, bytes).
    pub(crate) fn receive(&mut self) -> Option<(Option<SocketAddr>, Option<u16>, Vec<u8>)> {
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            let raw = self.recv_raw()?;
            if let Ok(cd) = stun::channel::ChannelData::parse(&raw) {
                return Some((None, Some(cd.channel), cd.data.to_vec()));
            }
            if let Ok(m) = Message::parse(&raw) {
                if m.class == Class::Indication && m.method == method::DATA {
                    let from = attr::xor_address(
                        attr::XOR_PEER_ADDRESS,
                        m.get(attr::XOR_PEER_ADDRESS)?,
                        &m.transaction_id,
                    )
                    .ok();
                    return Some((from, None, m.get(attr::DATA)?.to_vec()));
                }
            }
        }
        None
    }
}

/// Runs coturn's `turnutils_uclient` with `args`: whether it succeeded,
/// and what it printed.
fn uclient(args: &[&str]) -> (bool, String) {
    let o = std::process::Command::new("turnutils_uclient")
        .args(args)
        .output()
        .expect("turnutils_uclient is installed (scripts/install-test-deps.sh installs Debian's coturn)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Bob (registered, SIPp answering with media at 203.0.113.5 and a
/// candidate at 203.0.113.6) and alice calling him by `uac` (media at
/// 198.51.100.7): (caller, callee).
pub(crate) fn bob_answers_alice(s: &Server, uac: &str) -> (SippRun, SippRun) {
    bob_answers_alice_with(s, uac, ALICE, BOB)
}

/// [`bob_answers_alice`] with their passwords.
pub(crate) fn bob_answers_alice_with(
    s: &Server,
    uac: &str,
    alice: &str,
    bob: &str,
) -> (SippRun, SippRun) {
    let callee = register_then_with(
        s,
        "bob",
        bob,
        "call_uas_relay.xml",
        &["203.0.113.5", "203.0.113.6"],
    );
    let caller = alice_calls_bob(s, uac, alice, &["alice", "198.51.100.7"]);
    (caller, callee)
}

/// Waits (3 s at most) until `t` may create a permission for `peer`: a
/// session description of its user's call named it.
fn wait_permitted(s: &Server, t: &mut Turn, peer: &str) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while t.permission(addr(peer)) != 0 {
        assert!(
            Instant::now() < deadline,
            "{peer} was never permitted\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sip_users_sign_in_to_the_relay_with_their_sip_password_under_the_same_lockout() {
    let s = Server::with_config("relay-signin", "[relay]\nallocations_per_user = 2\n");
    s.add_user("alice", ALICE);
    s.add_user("target", BOB);

    // A Binding request needs no credentials: the client learns its address.
    let mut c = Turn::udp(&s, "alice", ALICE);
    let b = c.ask(method::BINDING, false, |_| {});
    assert_eq!(b.class, Class::Success);
    assert_eq!(b.address(attr::XOR_MAPPED_ADDRESS), c.local());
    assert!(b.msg().get(attr::SOFTWARE).is_none());

    // The challenge: the SIP realm, a nonce announcing SHA-256.
    let r = c.ask(method::ALLOCATE, false, |e| {
        e.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
    });
    assert_eq!(r.code, 401);
    assert_eq!(r.msg().get(attr::REALM), Some(s.domain.as_bytes()));
    assert!(c.nonce.starts_with("obMatJos2"), "{}", c.nonce);

    let a = c.allocate();
    assert_eq!(a.class, Class::Success, "code {}", a.code);
    let relayed = a.address(attr::XOR_RELAYED_ADDRESS);
    assert_eq!(relayed.ip().to_string(), "127.0.0.1");
    assert!(relayed.port() >= 49152, "{relayed}");
    assert_eq!(a.address(attr::XOR_MAPPED_ADDRESS), c.local());
    // The response is signed with the same key.
    assert!(a.msg().verify(&c.key).is_ok());

    // SHA-256 keys, where the client picks them.
    let mut c2 = Turn::udp(&s, "alice", ALICE);
    c2.key = long_term_key(PasswordAlgorithm::Sha256, "alice", &s.domain, ALICE);
    c2.sha256 = true;
    let a2 = c2.allocate();
    assert_eq!(a2.class, Class::Success, "code {}", a2.code);

    // A third allocation is over this user's quota.
    let mut c3 = Turn::tcp(&s, "alice", ALICE);
    assert_eq!(c3.allocate().code, 486);

    // Deleting one (Refresh with LIFETIME 0) makes room; the deleted
    // allocation's client is then a stranger.
    let r = c2.ask(method::REFRESH, true, |e| {
        e.u32(attr::LIFETIME, 0);
    });
    assert_eq!(r.class, Class::Success);
    assert_eq!(c2.permission(addr("203.0.113.5:1")), 437);
    let mut c4 = Turn::tcp(&s, "alice", ALICE);
    assert_eq!(c4.allocate().class, Class::Success);

    // Wrong passwords count toward the SIP lockout: after five, the right
    // one is refused too, and so is a SIP sign-in from the same address.
    let mut guess = Turn::udp(&s, "target", "not the password");
    for _ in 0..5 {
        assert_eq!(guess.allocate().code, 401);
    }
    let mut right = Turn::udp(&s, "target", BOB);
    let r = right.ask(method::ALLOCATE, false, |e| {
        e.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
    });
    assert_eq!(r.code, 401);
    let r = right.ask(method::ALLOCATE, true, |e| {
        e.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
    });
    assert_eq!(r.code, 403, "a locked-out account gets no allocation");
    let (ok, _) = s.sipp(
        "register_auth.xml",
        "target",
        BOB,
        "127.0.0.1",
        free_port(),
        &[],
    );
    assert!(!ok, "the relay's failures locked SIP sign-ins out too");
    // An unknown user fails exactly as a wrong password does.
    let mut nobody = Turn::udp(&s, "nobody", "x");
    assert_eq!(nobody.allocate().code, 401);

    let m = s.http_get("/metrics", None).1;
    assert_eq!(metric(&m, "parapet_relay_allocations"), 2, "{m}");
    assert!(metric(&m, "parapet_relay_auth_failures_total") >= 6, "{m}");
}

#[test]
fn permissions_go_only_to_addresses_a_call_named_and_end_with_the_call() {
    let s = Server::new("relay-permissions");
    s.add_user("alice", ALICE);
    s.add_user("bob", BOB);
    s.add_user("carol", ALICE);
    let mut alice = Turn::udp(&s, "alice", ALICE);
    assert_eq!(alice.allocate().class, Class::Success);
    let mut carol = Turn::udp(&s, "carol", ALICE);
    assert_eq!(carol.allocate().class, Class::Success);

    // Never: loopback, unspecified, internal, metadata — in any form.
    for peer in [
        "127.0.0.1:5000",
        "0.0.0.0:5000",
        "[::]:5000",
        "[::1]:5000",
        "[::ffff:127.0.0.1]:5000",
        "[::ffff:0.0.0.0]:5000",
        "10.1.2.3:5000",
        "192.168.1.1:5000",
        "169.254.169.254:80",
        // A public address, but in no call of alice's.
        "203.0.113.5:40000",
    ] {
        assert_eq!(alice.permission(addr(peer)), 403, "{peer}");
        assert_eq!(alice.channel(0x4000, addr(peer)), 403, "{peer}");
    }

    // Bob answers with media at 203.0.113.5 and a candidate at
    // 203.0.113.6; alice offers 198.51.100.7.
    let (caller, callee) = bob_answers_alice(&s, "call_uac_relay.xml");
    // Once the answer has been relayed, its addresses are alice's peers.
    wait_permitted(&s, &mut alice, "203.0.113.5:40000");
    assert_eq!(
        alice.permission(addr("203.0.113.6:61000")),
        0,
        "an ICE candidate"
    );
    assert_eq!(alice.channel(0x4000, addr("203.0.113.5:40000")), 0);
    // Its related address is not a peer; carol is not in the call; what
    // alice's own offer named is nothing she may relay to.
    assert_eq!(alice.permission(addr("10.0.0.2:4000")), 403);
    assert_eq!(alice.permission(addr("198.51.100.7:40000")), 403);
    assert_eq!(carol.permission(addr("203.0.113.5:40000")), 403);

    let (ok, msgs) = caller.finish();
    assert!(ok, "{msgs}\n{}", s.log());
    let (ok, msgs) = callee.finish();
    assert!(ok, "{msgs}");
    let ended = Instant::now();
    let m = s.http_get("/metrics", None).1;
    let sent = metric(&m, "parapet_relay_packets_total{direction=\"to_peer\"}");
    // Within a second of the BYE the permission is gone...
    let deadline = ended + Duration::from_secs(1);
    while alice.permission(addr("203.0.113.5:40000")) != 403 {
        assert!(
            Instant::now() < deadline,
            "the permission outlived the call by a second"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // ...and the channel's data goes nowhere.
    let dropped_before = metric(
        &s.http_get("/metrics", None).1,
        "parapet_relay_dropped_total{reason=\"no_permission\"}",
    );
    alice.channel_data(0x4000, b"after the call");
    std::thread::sleep(Duration::from_millis(300));
    let m = s.http_get("/metrics", None).1;
    assert_eq!(
        metric(&m, "parapet_relay_packets_total{direction=\"to_peer\"}"),
        sent,
        "{m}"
    );
    assert_eq!(
        metric(&m, "parapet_relay_dropped_total{reason=\"no_permission\"}"),
        dropped_before + 1,
        "{m}"
    );
    assert!(
        metric(&m, "parapet_relay_permissions_refused_total") >= 22,
        "{m}"
    );
    assert_eq!(metric(&m, "parapet_relay_permissions"), 0, "{m}");
    assert_eq!(metric(&m, "parapet_relay_channels"), 0, "{m}");
    // The log says which peer's permission ended, why, and what went each
    // way with it.
    let log = s.log();
    assert!(
        log.contains("relay: permission ended")
            && log.contains("its call ended or changed")
            && log.contains("to_peer_bytes"),
        "{log}"
    );
}

#[test]
fn media_flows_between_two_allocations_and_nowhere_else_on_the_relay() {
    let s = Server::new("relay-media");
    s.add_user("alice", ALICE);
    s.add_user("bob", BOB);
    let mut a = Turn::udp(&s, "alice", ALICE);
    let ra = a.allocate().address(attr::XOR_RELAYED_ADDRESS);
    // Bob over TCP: ChannelData framed and padded on the stream.
    let mut b = Turn::tcp(&s, "bob", BOB);
    let rb = b.allocate().address(attr::XOR_RELAYED_ADDRESS);
    assert_eq!(a.permission(rb), 0, "another allocation on this relay");
    assert_eq!(b.permission(ra), 0);

    // Send indication in, Data indication out.
    a.send_to_peer(rb, b"hello bob");
    let (from, ch, data) = b.receive().expect("bob received nothing");
    assert_eq!(
        (from, ch, data.as_slice()),
        (Some(ra), None, &b"hello bob"[..])
    );

    // Channels both ways: 50 packets each way, every one delivered.
    assert_eq!(a.channel(0x4001, rb), 0);
    assert_eq!(b.channel(0x4002, ra), 0);
    for i in 0..50u8 {
        let packet = [i; 171];
        a.channel_data(0x4001, &packet);
        let (_, ch, data) = b.receive().expect("a packet to bob was lost");
        assert_eq!(
            (ch, data.as_slice()),
            (Some(0x4002), &packet[..]),
            "packet {i}"
        );
        b.channel_data(0x4002, &packet[..170]);
        let (_, ch, data) = a.receive().expect("a packet to alice was lost");
        assert_eq!((ch, data.as_slice()), (Some(0x4001), &packet[..170]));
    }
    let m = s.http_get("/metrics", None).1;
    assert_eq!(
        metric(&m, "parapet_relay_packets_total{direction=\"to_peer\"}"),
        101,
        "{m}"
    );
    assert_eq!(
        metric(&m, "parapet_relay_packets_total{direction=\"from_peer\"}"),
        101,
        "{m}"
    );

    // The relay's address is not a way to reach other ports on it: a
    // permission for the address covers allocations only.
    let other = UdpSocket::bind("127.0.0.1:0").unwrap();
    other
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    let target = other.local_addr().unwrap();
    assert_eq!(a.permission(target), 403);
    a.send_to_peer(target, b"knock knock");
    let mut buf = [0u8; 64];
    assert!(
        other.recv_from(&mut buf).is_err(),
        "the relay sent to a port that is not an allocation"
    );
    // Nor do strangers on that address reach an allocation.
    other.send_to(b"let me in", ra).unwrap();
    assert!(
        a.receive().is_none(),
        "a packet from outside any permission was relayed"
    );

    // Bob's account is disabled: within a second his allocation is gone,
    // and what alice sends him goes nowhere.
    let o = s.admin(&["user", "disable", "sip:bob@example.test"], "");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let disabled = Instant::now();
    let deadline = disabled + Duration::from_secs(1);
    loop {
        a.channel_data(0x4001, b"still there?");
        if b.receive().is_none() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "bob's allocation outlived his account by a second"
        );
    }
    assert!(
        s.log().contains("relay: allocation ended")
            && s.log().contains("its user's access was revoked"),
        "{}",
        s.log()
    );
    // And he cannot make another.
    let mut again = Turn::udp(&s, "bob", BOB);
    assert_eq!(again.allocate().code, 401);
}

/// coturn's own client (`turnutils_uclient`, Debian `coturn`) as a
/// third-party client: allocations in pairs sending to each other over
/// channels, over UDP and over TCP, with the user's SIP password.
#[test]
fn coturns_client_relays_through_parapet_without_loss() {
    let s = Server::new("relay-uclient");
    s.add_user("alice", ALICE);
    for tcp in [false, true] {
        let port = s.relay.to_string();
        let mut args = vec!["-y", "-c", "-n", "100", "-m", "4", "-l", "172", "-z", "5"];
        if tcp {
            args.push("-t");
        }
        args.extend(["-u", "alice", "-w", ALICE, "-p", &port, "127.0.0.1"]);
        let (ok, text) = uclient(&args);
        assert!(ok, "{text}");
        // 4 clients, each sending 100 packets to its partner allocation.
        assert!(text.contains("Total lost packets 0 (0.000000%)"), "{text}");
        // Its last report is the total.
        let sent = text
            .lines()
            .rev()
            .find_map(|l| l.split("tot_send_msgs=").nth(1))
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse::<u64>().ok());
        assert_eq!(sent, Some(400), "{text}");
    }
    let m = s.http_get("/metrics", None).1;
    assert!(
        metric(&m, "parapet_relay_packets_total{direction=\"to_peer\"}") >= 800,
        "{m}"
    );
    assert_eq!(metric(&m, "parapet_relay_auth_failures_total"), 0, "{m}");
}

#[test]
fn coturns_client_is_told_the_quota_with_its_code() {
    // Two allocations per user: coturn's client asks for six (three pairs).
    let s = Server::with_config("relay-uclient-quota", "[relay]\nallocations_per_user = 2\n");
    s.add_user("alice", ALICE);
    let port = s.relay.to_string();
    let (_, text) = uclient(&[
        "-y",
        "-c",
        "-n",
        "5",
        "-m",
        "3",
        "-l",
        "172",
        "-u",
        "alice",
        "-w",
        ALICE,
        "-p",
        &port,
        "127.0.0.1",
    ]);
    assert!(
        text.contains("error 486 (Allocation Quota Reached)"),
        "{text}"
    );
    let m = s.http_get("/metrics", None).1;
    assert_eq!(metric(&m, "parapet_relay_allocations"), 2, "{m}");
    assert!(
        metric(&m, "parapet_relay_errors_total{code=\"486\"}") >= 1,
        "{m}"
    );
}

/// Credentials for a browser from the user API: valid for the relay with
/// the secret alone, in the REST convention; refused once their session
/// signs out, which also ends the allocations made with them.
#[test]
fn web_clients_credentials_last_as_long_as_their_session() {
    let s = Server::new("relay-web");
    s.add_user("alice", ALICE);
    s.add_user("bob", BOB);
    // Without a session: none.
    let (code, _, _) = s.https("POST", "/user/v1/relay-credentials", None, "");
    assert_eq!(code, 401);
    let token = crate::user_api::sign_in(&s, "alice", ALICE);
    let (code, head, body) = s.https("POST", "/user/v1/relay-credentials", Some(&token), "");
    assert_eq!(code, 201, "{head}\n{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let username = v["username"].as_str().unwrap().to_string();
    let credential = v["credential"].as_str().unwrap().to_string();
    let expires: i64 = username.split(':').next().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((590..=610).contains(&(expires - now)), "{username}");
    assert!(username.ends_with(":sip:alice@example.test"), "{username}");
    assert_eq!(v["expires_at"], expires);
    let urls: Vec<&str> = v["urls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect();
    assert_eq!(
        urls,
        [
            format!("turn:127.0.0.1:{}?transport=udp", s.relay),
            format!("turn:127.0.0.1:{}?transport=tcp", s.relay)
        ]
    );

    // The relay takes them as a browser sends them.
    let mut web = Turn::udp(&s, &username, &credential);
    let a = web.allocate();
    assert_eq!(a.class, Class::Success, "code {}", a.code);
    assert!(a.msg().verify(&web.key).is_ok());
    let lifetime =
        stun::attr::u32_value(attr::LIFETIME, a.msg().get(attr::LIFETIME).unwrap()).unwrap();
    assert!(
        lifetime <= 600,
        "never past the credential's expiry: {lifetime}"
    );
    // A credential changed by one character, or claiming a later expiry
    // with the same tag, is refused.
    let mut forged = Turn::udp(
        &s,
        &username.replacen(&expires.to_string(), &(expires + 3600).to_string(), 1),
        &credential,
    );
    assert_eq!(forged.allocate().code, 401);
    let mut other = Turn::udp(&s, &username.replace("alice", "bob"), &credential);
    assert_eq!(other.allocate().code, 401);

    // Signing out ends the allocation within a second, and the credential.
    let mut b = Turn::udp(&s, "bob", BOB);
    let rb = b.allocate().address(attr::XOR_RELAYED_ADDRESS);
    let ra = a.address(attr::XOR_RELAYED_ADDRESS);
    assert_eq!(web.permission(rb), 0);
    assert_eq!(b.permission(ra), 0);
    web.send_to_peer(rb, b"from the browser");
    assert_eq!(b.receive().expect("relayed").2, b"from the browser");
    let (code, _, _) = s.https("DELETE", "/user/v1/session", Some(&token), "");
    assert_eq!(code, 204);
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        web.send_to_peer(rb, b"still there?");
        if b.receive().is_none() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the allocation outlived its session by a second"
        );
    }
    let mut again = Turn::udp(&s, &username, &credential);
    assert_eq!(
        again.allocate().code,
        401,
        "the session's credentials died with it"
    );
}

/// A flood of Allocates from one address (no credentials, as a scanner
/// sends them) is limited to its rate and answered no further, while a
/// call's media between two allocations goes on without a loss.
#[test]
fn a_flood_of_allocates_from_one_address_leaves_other_media_alone() {
    let s = Server::new("relay-flood");
    s.add_user("alice", ALICE);
    s.add_user("bob", BOB);
    let mut a = Turn::udp(&s, "alice", ALICE);
    let ra = a.allocate().address(attr::XOR_RELAYED_ADDRESS);
    let mut b = Turn::udp(&s, "bob", BOB);
    let rb = b.allocate().address(attr::XOR_RELAYED_ADDRESS);
    assert_eq!(a.channel(0x4000, rb), 0);
    assert_eq!(b.channel(0x4001, ra), 0);

    let flooder = UdpSocket::bind("127.0.0.1:0").unwrap();
    flooder
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let server: SocketAddr = format!("127.0.0.1:{}", s.relay).parse().unwrap();
    let mut delivered = 0;
    for round in 0..20u32 {
        // 100 Allocates in a burst...
        for i in 0..100u32 {
            let mut tid = [0u8; 12];
            tid[..4].copy_from_slice(&(round * 100 + i).to_be_bytes());
            let mut e = Encoder::new(Class::Request, method::ALLOCATE, tid);
            e.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
            flooder.send_to(&e.finish(), server).unwrap();
        }
        // ...while a media packet goes each way.
        let packet = [round as u8; 160];
        a.channel_data(0x4000, &packet);
        if b.receive().is_some_and(|(_, _, d)| d == packet) {
            delivered += 1;
        }
    }
    assert_eq!(delivered, 20, "media was lost during the flood");
    // The flooder got at most its burst and rate of answers.
    let mut answers = 0;
    let mut buf = [0u8; 1500];
    while flooder.recv_from(&mut buf).is_ok() {
        answers += 1;
    }
    assert!(answers < 200, "{answers} answers to 2,000 Allocates");
    let m = s.http_get("/metrics", None).1;
    assert!(
        metric(&m, "parapet_relay_requests_shed_total") >= 1800,
        "{m}"
    );
}

#[test]
fn the_answer_in_an_ack_names_peers_as_an_offer_does() {
    // Where the media policy lets a call go without an offer in its
    // INVITE, the caller's answer comes in the ACK: its address is then
    // the callee's peer, as an offer's would be.
    let s = Server::new("relay-late-offer");
    s.add_user("alice", ALICE);
    s.add_user("bob", BOB);
    let o = s.admin(
        &["policy", "set", "media", "global", "encryption=optional"],
        "",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut bob = Turn::udp(&s, "bob", BOB);
    assert_eq!(bob.allocate().class, Class::Success);
    assert_eq!(bob.permission(addr("198.51.100.7:40000")), 403);
    let (caller, callee) = bob_answers_alice(&s, "call_uac_late_offer.xml");
    wait_permitted(&s, &mut bob, "198.51.100.7:40000");
    let (ok, msgs) = caller.finish();
    assert!(ok, "{msgs}");
    let (ok, msgs) = callee.finish();
    assert!(ok, "{msgs}");
}
