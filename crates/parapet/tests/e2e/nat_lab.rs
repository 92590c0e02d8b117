//! Calls between clients behind two different NATs (one of them
//! symmetric), which cannot reach each other: the laboratory of
//! `tests/lab/nat.sh` (network namespaces, veth pairs, MASQUERADE), the
//! server started in its own namespace as the README says, two baresip
//! clients configured as the README's relay recipe says. What must hold
//! is what a user hears: media really flowed through the relay, both
//! ways, for the whole call (its byte counters), and it was encrypted (a
//! capture of what crossed the server's interfaces has the entropy of
//! SRTP, not of the tone the clients play as PCMU).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::baresip::{Baresip, Opts};
use crate::federation::metric;
use crate::harness::*;

const ALICE: &str = "correct-horse-battery";
const BOB: &str = "battery-staple-horse";
/// The server's address on the first NAT's outside network.
const SERVER: &str = "198.51.100.1";

fn lab_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/lab")
        .join(name)
}

/// A laboratory, removed when dropped.
struct Lab {
    prefix: String,
}

impl Lab {
    fn up() -> Lab {
        static N: AtomicU32 = AtomicU32::new(0);
        let prefix = format!(
            "pp{}x{}",
            std::process::id() % 100_000,
            N.fetch_add(1, Ordering::Relaxed)
        );
        let o = Command::new("bash")
            .arg(lab_script("nat.sh"))
            .args(["up", &prefix])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "tests/lab/nat.sh up failed (root, iproute2 and iptables are needed):\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        Lab { prefix }
    }

    fn ns(&self, n: &str) -> String {
        format!("{}-{n}", self.prefix)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(lab_script("nat.sh"))
            .args(["down", &self.prefix])
            .status();
    }
}

/// What the relay recipe of the README adds to an account line.
fn relay_params(user: &str, password: &str) -> String {
    format!(";medianat=turn;stunserver=\"turn:{SERVER}:3478\";stunuser={user};stunpass={password}")
}

/// The payloads of a capture file (length-prefixed).
fn payloads(file: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(file).unwrap_or_default();
    let mut out = Vec::new();
    let mut at = 0;
    while at + 4 <= bytes.len() {
        let n = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        at += 4;
        if at + n > bytes.len() {
            break;
        }
        out.push(bytes[at..at + n].to_vec());
        at += n;
    }
    out
}

/// The media in a relay packet: ChannelData's data, or a Send or Data
/// indication's DATA, less the 12-byte RTP header.
fn media_of(packet: &[u8]) -> Option<Vec<u8>> {
    let data = match stun::channel::ChannelData::parse(packet) {
        Ok(cd) => cd.data.to_vec(),
        Err(_) => {
            let m = stun::Message::parse(packet).ok()?;
            if m.class != stun::Class::Indication {
                return None;
            }
            m.get(stun::attr::DATA)?.to_vec()
        }
    };
    // RTP version 2, not RTCP (payload types 72-76 with the marker bit).
    if data.len() <= 12 || data[0] >> 6 != 2 || (200..=204).contains(&data[1]) {
        return None;
    }
    Some(data[12..].to_vec())
}

/// Shannon entropy in bits per byte.
fn entropy(bytes: &[u8]) -> f64 {
    let mut counts = [0u64; 256];
    for b in bytes {
        counts[usize::from(*b)] += 1;
    }
    let n = bytes.len() as f64;
    counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = *c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

fn relayed_packets(s: &Server) -> u64 {
    metric(
        &s.http_get("/metrics", None).1,
        "parapet_relay_packets_total{direction=\"to_peer\"}",
    )
}

/// The laboratory, the server in its middle namespace (the README's
/// command, with the relay's address), alice behind the first NAT and bob
/// (answering automatically) behind the symmetric one, both configured as
/// the README's relay recipe says, with media encryption `mediaenc`.
fn lab_with_clients(name: &str, mediaenc: &'static str) -> (Lab, Server, Baresip, Baresip) {
    let lab = Lab::up();
    let s = Server::readme_in(
        name,
        &lab.ns("srv"),
        &format!("[relay]\naddress = \"{SERVER}\"\n"),
    );
    s.add_user("alice", ALICE);
    s.add_user("bob", BOB);
    let client = |ns: &str, ip: &'static str, user: &str, pw: &str, contact: &str| {
        let opts = Opts {
            netns: Some(lab.ns(ns)),
            local_ip: Some(ip),
            outbound: Some(format!("{SERVER}:5061")),
            mediaenc: Some(mediaenc),
            account_params: relay_params(user, pw),
            config_lines: "module        turn.so\nmodule        dtls_srtp.so\nrtp_stats     yes\n"
                .into(),
            ..Opts::default()
        };
        Baresip::start_full(&s, user, pw, contact, &opts)
    };
    let mut bob = client("c2", "10.2.0.2", "bob", BOB, "alice");
    bob.cmd("/answermode auto");
    let alice = client("c1", "10.1.0.2", "alice", ALICE, "bob");
    (lab, s, alice, bob)
}

/// Alice calls bob, the call lasts 8 seconds, alice hangs up: how many
/// packets the relay passed in those 8 seconds, and the media (RTP
/// payloads) captured on the server's interfaces meanwhile.
fn call_for_8_seconds(
    lab: &Lab,
    s: &Server,
    alice: &mut Baresip,
    bob: &mut Baresip,
    n: usize,
) -> (u64, Vec<u8>) {
    call_relayed_by(lab, s, alice, bob, n, &|| relayed_packets(s))
}

/// [`call_for_8_seconds`], the packets counted by `relayed` (the relay's
/// `to_peer` counter, wherever it runs).
fn call_relayed_by(
    lab: &Lab,
    s: &Server,
    alice: &mut Baresip,
    bob: &mut Baresip,
    n: usize,
    relayed: &dyn Fn() -> u64,
) -> (u64, Vec<u8>) {
    let capture = s.dir.join(format!("call-{n}.cap"));
    let mut tap: Child = Command::new("ip")
        .args(["netns", "exec", &lab.ns("srv"), "python3"])
        .arg(lab_script("capture.py"))
        .arg(&capture)
        .args(["3478", "30", "s1", "s2"])
        .spawn()
        .unwrap();
    alice.cmd("/dial sip:bob@example.test");
    crate::baresip::wait_count(alice, "Call established: sip:bob@example.test", n);
    crate::baresip::wait_count(bob, "Call established: sip:alice@example.test", n);
    crate::baresip::wait_count(bob, "incoming rtp for 'audio' established", n);
    crate::baresip::wait_count(alice, "incoming rtp for 'audio' established", n);
    let before = relayed();
    std::thread::sleep(Duration::from_secs(8));
    let during = relayed() - before;
    alice.cmd("/hangup");
    crate::baresip::wait_count(bob, "session closed", n);
    let _ = tap.kill();
    let _ = tap.wait();
    let media: Vec<u8> = payloads(&capture)
        .iter()
        .filter_map(|p| media_of(p))
        .flatten()
        .collect();
    (during, media)
}

fn call_across_nats(name: &str, mediaenc: &'static str) {
    let (lab, s, mut alice, mut bob) = lab_with_clients(name, mediaenc);
    let (during, media) = call_for_8_seconds(&lab, &s, &mut alice, &mut bob, 1);
    // 8 s of 20 ms packets each way through two allocations: 800 relayed
    // to a peer (each packet once, from one allocation to the other).
    assert_relayed_and_encrypted(name, mediaenc, (during, 800), &media, &alice, &s);
    assert_media_relayed_in_the_call_record(&s);
    alice.cmd("/quit");
    bob.cmd("/quit");
}

/// The pool's record of the (one) call says it was answered and that its
/// media went through a relay of the pool's.
fn assert_media_relayed_in_the_call_record(s: &Server) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let record = loop {
        let o = s.admin(&["--output=json", "cdr", "list", "--kind", "call"], "");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        if let Some(r) = v["records"].as_array().and_then(|r| r.first()).cloned() {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "no call record: {v}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(record["status"], 200, "{record}");
    assert_eq!(record["media_relayed"], true, "{record}");
}

/// What a user hears: of the `expected` packets relayed to a peer in an
/// 8-second call, 95% went through (`during`: how many did), and they
/// were SRTP keyed as `mediaenc` asked.
fn assert_relayed_and_encrypted(
    name: &str,
    mediaenc: &str,
    (during, expected): (u64, u64),
    media: &[u8],
    alice: &Baresip,
    s: &Server,
) {
    assert!(
        during * 100 >= expected * 95,
        "{during} packets relayed in 8 s, fewer than 95% of {expected}\n{}\n{}",
        alice.output(),
        s.log()
    );
    // The capture at the relay's listener saw media for as many packets
    // (at least 125 bytes of SRTP payload for each).
    assert!(
        media.len() as u64 > expected * 125,
        "only {} bytes of media captured",
        media.len()
    );
    let h = entropy(media);
    eprintln!(
        "{name}: {during} packets relayed in 8 s; {} bytes of media captured, {h:.3} bits/byte",
        media.len()
    );
    assert!(h > 7.5, "media entropy {h:.2} bits/byte: not encrypted");
    // Keyed as asked: SDES in the SDP (over TLS), or DTLS-SRTP.
    let key = if mediaenc == "dtls_srtp" {
        "a=fingerprint:"
    } else {
        "a=crypto:"
    };
    assert!(alice.output().contains(key), "{}", alice.output());
}

#[test]
fn clients_behind_two_nats_call_through_the_relay_with_sdes_srtp() {
    call_across_nats("nat-sdes", "srtp-mand");
}

#[test]
fn clients_behind_two_nats_call_through_the_relay_with_dtls_srtp() {
    call_across_nats("nat-dtls", "dtls_srtp");
}

#[test]
fn plain_rtp_is_refused_and_relayed_only_where_the_policy_allows_it() {
    let (lab, s, mut alice, mut bob) = lab_with_clients("nat-plain", "");
    alice.cmd("/dial sip:bob@example.test");
    alice.wait_for("488 Not Acceptable Here (Media Not Encrypted)");
    assert!(!bob.output().contains("INVITE sip:bob"), "{}", bob.output());

    let o = s.admin(
        &["policy", "set", "media", "global", "encryption=optional"],
        "",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (during, media) = call_for_8_seconds(&lab, &s, &mut alice, &mut bob, 1);
    assert!(during >= 760, "{during} packets relayed in 8 s");
    // The measure tells: plain PCMU of a tone is far from random.
    let h = entropy(&media);
    eprintln!("nat-plain: {during} packets relayed; {h:.3} bits/byte");
    assert!(
        media.len() > 100_000 && h < 7.0,
        "{} bytes, {h:.2} bits/byte",
        media.len()
    );
    let (code, text) = s.security_check();
    assert_eq!(code, Some(3), "{text}");
    assert!(text.contains("[HIGH] policy media.encryption"), "{text}");
    alice.cmd("/quit");
    bob.cmd("/quit");
}

/// Runs tests/browser/relay-call.mjs in namespace `ns` as `user`, calling
/// `target` (or answering, if empty).
fn browser(lab: &Lab, s: &Server, ns: &str, user: &str, password: &str, target: &str) -> Child {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run scripts/install-test-deps.sh"
    );
    Command::new("ip")
        .args(["netns", "exec", &lab.ns(ns), "node"])
        .arg(dir.join("relay-call.mjs"))
        .env("CALL_ORIGIN", format!("https://{SERVER}:4443"))
        .env("CALL_WS", format!("wss://{SERVER}:8443"))
        .env("CALL_USER", user)
        .env("CALL_PASSWORD", password)
        .env("CALL_DOMAIN", "example.test")
        .env("CALL_TARGET", target)
        .env("CALL_SECS", "6")
        .env("CALL_CERT", s.data_dir().join("pki/server.pem"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(s.dir.join(format!("browser-{user}.log"))).unwrap())
        .spawn()
        .expect("node is installed (scripts/install-test-deps.sh)")
}

/// What a browser's getStats said (its `stats` line).
fn stats_of(child: Child, s: &Server, user: &str) -> serde_json::Value {
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let log =
        std::fs::read_to_string(s.dir.join(format!("browser-{user}.log"))).unwrap_or_default();
    assert!(
        out.status.success(),
        "{user}'s browser failed:\n{text}\n{log}\n{}",
        s.log()
    );
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("stats "))
        .unwrap_or_else(|| panic!("{user}'s browser printed no stats:\n{text}\n{log}"));
    serde_json::from_str(line).unwrap()
}

#[test]
fn browsers_behind_two_nats_call_through_the_relay_with_dtls_srtp() {
    let lab = Lab::up();
    let s = Server::readme_in(
        "nat-browsers",
        &lab.ns("srv"),
        &format!(
            "ws_allowed_origins = [\"https://{SERVER}:4443\"]\n[relay]\naddress = \"{SERVER}\"\n"
        ),
    );
    s.add_user("alice", ALICE);
    s.add_user("bob", BOB);
    let callee = browser(&lab, &s, "c2", "bob", BOB, "");
    // The caller starts once bob's browser has registered.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let o = s.admin(&["--output=json", "status"], "");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        if v["registrations"] == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "bob's browser never registered"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let caller = browser(&lab, &s, "c1", "alice", ALICE, "sip:bob@example.test");
    let a = stats_of(caller, &s, "alice");
    let b = stats_of(callee, &s, "bob");
    eprintln!("browsers: alice {a}; bob {b}");
    for (who, st) in [("alice", &a), ("bob", &b)] {
        // The pair in use is through the relay, DTLS-SRTP keyed, and audio came.
        assert_eq!(st["local"], "relay", "{who}: {st}");
        assert_eq!(st["relayProtocol"], "udp", "{who}: {st}");
        assert_eq!(st["dtlsState"], "connected", "{who}: {st}");
        assert!(
            st["srtpCipher"].as_str().is_some_and(|c| !c.is_empty()),
            "{who}: {st}"
        );
        assert!(
            st["bytesReceived"].as_u64().unwrap_or(0) > 10_000,
            "{who}: {st}"
        );
    }
    let m = s.http_get("/metrics", None).1;
    assert!(relayed_packets(&s) > 400, "{m}");
}

/// The pool of the A/V edge tests: a front end on the README's defaults in
/// the server's namespace, without a relay of its own (remote access
/// granted to everyone), and an edge beside it whose external side (SIP
/// and its relay, on the relay's default ports) is the namespace's one
/// public address.
fn edge_lab(name: &str) -> (Lab, Server, crate::edge::Edge) {
    let lab = Lab::up();
    let s = Server::readme_in(name, &lab.ns("srv"), "[relay]\nlisten = []\n");
    s.add_user("alice", ALICE);
    s.add_user("bob", BOB);
    crate::federation::policy(&s, &["external_access", "global", "remote_access=true"]);
    let mut edge = crate::edge::Edge::paired_on(
        &s,
        &format!("{name}-e"),
        SERVER,
        &["--front-end", "127.0.0.1:5061"],
        false,
    );
    edge.netns = Some(lab.ns("srv"));
    edge.relay_port = None;
    edge.start();
    (lab, s, edge)
}

/// A baresip client in namespace `ns` at `ip`, through `outbound`, with
/// SDES-SRTP required, relaying through the edge's relay when `turn`.
fn lab_client(
    lab: &Lab,
    s: &Server,
    (ns, ip): (&str, &'static str),
    outbound: String,
    (user, pw): (&str, &str),
    contact: &str,
    turn: bool,
) -> Baresip {
    let opts = Opts {
        netns: Some(lab.ns(ns)),
        local_ip: Some(ip),
        outbound: Some(outbound),
        mediaenc: Some("srtp-mand"),
        account_params: if turn {
            relay_params(user, pw)
        } else {
            String::new()
        },
        config_lines: "module        turn.so\nrtp_stats     yes\n".into(),
        ..Opts::default()
    };
    Baresip::start_full(s, user, pw, contact, &opts)
}

/// Alice, remote behind the first NAT, through the edge and its relay,
/// calls bob for 8 seconds: her client, the packets the edge's relay
/// passed to peers meanwhile, and the media captured.
fn remote_alice_calls(
    lab: &Lab,
    s: &Server,
    edge: &crate::edge::Edge,
    bob: &mut Baresip,
) -> (Baresip, u64, Vec<u8>) {
    let mut alice = lab_client(
        lab,
        s,
        ("c1", "10.1.0.2"),
        edge.outbound(),
        ("alice", ALICE),
        "bob",
        true,
    );
    let (during, media) = call_relayed_by(lab, s, &mut alice, bob, 1, &|| edge_relayed(edge));
    (alice, during, media)
}

fn edge_relayed(edge: &crate::edge::Edge) -> u64 {
    metric(
        &edge.get("/metrics").1,
        "parapet_relay_packets_total{direction=\"to_peer\"}",
    )
}

#[test]
fn remote_users_behind_two_nats_call_through_the_edges_relay_with_sdes_srtp() {
    let (lab, s, edge) = edge_lab("nat-edge");
    let mut bob = lab_client(
        &lab,
        &s,
        ("c2", "10.2.0.2"),
        edge.outbound(),
        ("bob", BOB),
        "alice",
        true,
    );
    bob.cmd("/answermode auto");
    let (mut alice, during, media) = remote_alice_calls(&lab, &s, &edge, &mut bob);
    // Two allocations: each packet relayed once, 800.
    assert_relayed_and_encrypted("nat-edge", "srtp-mand", (during, 800), &media, &alice, &s);
    // Both allocations are the edge's, signed in with keys the pool gave
    // for requests those users signed; the front end relayed nothing.
    let (_, m) = edge.get("/metrics");
    assert!(metric(&m, "parapet_relay_allocations_total") >= 2, "{m}");
    assert!(metric(&m, "parapet_edge_sign_ins_total") >= 2, "{m}");
    let fm = s.http_get("/metrics", None).1;
    assert_eq!(metric(&fm, "parapet_relay_allocations_total"), 0, "{fm}");
    // The edge's relay told the pool which call it carried: the call's
    // record says its media was relayed.
    assert_media_relayed_in_the_call_record(&s);
    alice.cmd("/quit");
    bob.cmd("/quit");
}

#[test]
fn a_remote_user_reaches_an_inside_user_through_the_edges_relay_only_at_what_the_call_named() {
    // Bob is inside, at an address of his own on a network of the
    // server's (the lab's third client, no NAT), registered with the front
    // end directly and relaying nothing; alice is remote, behind the first
    // NAT, through the edge and its relay. Her allocation may reach bob's
    // address only because his answer, which the pool sent out through the
    // edge, named it: without that, no media would flow.
    let (lab, s, edge) = edge_lab("nat-edge-in");
    let mut bob = lab_client(
        &lab,
        &s,
        ("c3", "192.0.2.50"),
        "192.0.2.1:5061".into(),
        ("bob", BOB),
        "alice",
        false,
    );
    bob.cmd("/answermode auto");
    let (mut alice, during, media) = remote_alice_calls(&lab, &s, &edge, &mut bob);
    // One allocation: alice's 400 packets go to bob, a peer; bob's come
    // from him to her.
    assert_relayed_and_encrypted(
        "nat-edge-in",
        "srtp-mand",
        (during, 400),
        &media,
        &alice,
        &s,
    );
    let (_, m) = edge.get("/metrics");
    assert!(metric(&m, "parapet_relay_permissions_total") >= 1, "{m}");
    alice.cmd("/quit");
    bob.cmd("/quit");
}
