//! What a client meets on a server started as the README says: the Route
//! forms clients put in front of their requests are recognised, and digest
//! challenges suit clients that answer the first challenge, the last one,
//! or only one; MD5 needs an encrypted transport.

use std::io::{Read, Write};
use std::net::UdpSocket;
use std::time::Duration;

use auth::digest::{expected_response, ha1, Algorithm};

use crate::harness::*;

/// One SIP request over a stream and the response to it (Content-Length 0).
pub(crate) fn exchange(conn: &mut impl ReadWrite, request: &str) -> String {
    conn.write_all(request.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "connection closed; got {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

pub(crate) trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// A REGISTER for alice as a client on `transport` would send it.
pub(crate) fn register(
    transport: &str,
    local: &str,
    n: u32,
    route: Option<&str>,
    user_agent: &str,
    authorization: Option<&str>,
) -> String {
    let route = route.map(|r| format!("Route: {r}\r\n")).unwrap_or_default();
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    format!(
        "REGISTER sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/{transport} {local};branch=z9hG4bKdef{n}x{}\r\n\
         {route}Max-Forwards: 70\r\nFrom: <sip:alice@{DOMAIN}>;tag=d{n}\r\nTo: <sip:alice@{DOMAIN}>\r\n\
         Call-ID: defaults-{}@test\r\nCSeq: {n} REGISTER\r\nContact: <sip:alice@{local};transport={}>\r\n\
         User-Agent: {user_agent}\r\nExpires: 600\r\n{auth}Content-Length: 0\r\n\r\n",
        std::process::id(),
        std::process::id(),
        transport.to_ascii_lowercase()
    )
}

/// The digest challenges of a 401, in order: (algorithm, nonce).
pub(crate) fn challenges(resp: &str) -> Vec<(String, String)> {
    resp.lines()
        .filter_map(|l| l.strip_prefix("WWW-Authenticate: "))
        .map(|c| {
            let param = |name: &str| {
                c.split(", ")
                    .find_map(|p| {
                        p.trim_start_matches("Digest ")
                            .strip_prefix(&format!("{name}="))
                    })
                    .unwrap_or("")
                    .trim_matches('"')
                    .to_string()
            };
            (param("algorithm"), param("nonce"))
        })
        .collect()
}

/// An Authorization value for alice answering `nonce` with `alg`.
pub(crate) fn answer(alg: Algorithm, nonce: &str, password: &str) -> String {
    let h = ha1(alg, "alice", DOMAIN, password);
    let uri = format!("sip:{DOMAIN}");
    let response = expected_response(
        alg, &h, nonce, "00000001", "c0ffee", "auth", "REGISTER", &uri,
    );
    format!(
        "Digest username=\"alice\", realm=\"{DOMAIN}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{response}\", algorithm={}, qop=auth, nc=00000001, cnonce=\"c0ffee\"",
        alg.name()
    )
}

#[test]
fn route_forms_and_web_origins_on_the_default_listeners() {
    let s = Server::readme("routes");
    s.add_user("alice", "correct-horse-battery");
    // baresip's outbound proxy by address, by name, the domain without a
    // port (TLS means 5061) and sips:, on the default wildcard listener.
    for route in [
        "<sip:127.0.0.1:5061;transport=tls;lr>",
        "<sip:localhost:5061;transport=tls;lr>",
        "<sip:example.test;transport=tls;lr>",
        "<sip:example.test:5061;transport=tls;lr>",
        "<sips:example.test;lr>",
        "<sip:127.0.0.1;transport=tls;lr>",
    ] {
        let mut c = s.tls_to(s.tls);
        let resp = exchange(
            &mut c,
            &register("TLS", "127.0.0.1:5999", 1, Some(route), "test", None),
        );
        assert!(resp.starts_with("SIP/2.0 401 "), "{route}: {resp}");
    }
    // A Route to another server is refused, and the log says why, once.
    for n in 1..=3 {
        let mut c = s.tls_to(s.tls);
        let resp = exchange(
            &mut c,
            &register(
                "TLS",
                "127.0.0.1:5999",
                n,
                Some("<sip:other.test;lr>"),
                "test",
                None,
            ),
        );
        assert!(resp.starts_with("SIP/2.0 403 Relaying Denied"), "{resp}");
    }
    std::thread::sleep(Duration::from_millis(300));
    let log = s.log();
    assert_eq!(
        log.matches("request refused: relaying denied: a Route entry names another server")
            .count(),
        1,
        "{log}"
    );
    assert!(log.contains("<sip:other.test;lr>"), "{log}");

    // WSS: a web page of another site may not open a SIP connection from a
    // user's browser; the server's own pages and non-browser clients may.
    let upgrade = |origin: Option<&str>| {
        let mut c = s.tls_to(8443);
        let origin = origin
            .map(|o| format!("Origin: {o}\r\n"))
            .unwrap_or_default();
        write!(
            c,
            "GET / HTTP/1.1\r\nHost: {DOMAIN}:8443\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: sip\r\n{origin}\r\n"
        )
        .unwrap();
        let mut buf = [0u8; 1024];
        let n = c.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n])
            .lines()
            .next()
            .unwrap_or("")
            .to_string()
    };
    assert!(upgrade(Some("https://evil.test")).contains(" 403"));
    assert!(upgrade(Some("https://example.test:4443")).contains(" 101"));
    assert!(upgrade(Some("https://localhost")).contains(" 101"));
    assert!(upgrade(None).contains(" 101"), "not a browser");
    std::thread::sleep(Duration::from_millis(300));
    let log = s.log();
    assert!(
        log.contains("WebSocket handshake refused: a web page of this origin may not connect"),
        "{log}"
    );
}

#[test]
fn digest_over_tls_suits_every_client_and_md5_needs_encryption() {
    // The default digest settings, with a UDP listener beside TLS.
    let s = Server::with_config(
        "digest-transports",
        "digest_algorithms = [\"SHA-256\", \"MD5\"]",
    );
    let pw = "correct-horse-battery";
    s.add_user("alice", pw);
    let mut n = 0;
    let mut next = || {
        n += 1;
        n
    };

    // Over TLS: SHA-256 first (RFC 8760 clients), MD5 last (JsSIP, SIP.js).
    let mut c = s.tls_to(s.tls);
    let resp = exchange(
        &mut c,
        &register("TLS", "127.0.0.1:5998", next(), None, "JsSIP 3.13.0", None),
    );
    let ch = challenges(&resp);
    assert_eq!(
        ch.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(),
        ["SHA-256", "MD5"],
        "{resp}"
    );
    // The last challenge answered with MD5, as JsSIP does: signed in.
    let auth = answer(Algorithm::Md5, &ch[1].1, pw);
    let resp = exchange(
        &mut c,
        &register(
            "TLS",
            "127.0.0.1:5998",
            next(),
            None,
            "JsSIP 3.13.0",
            Some(&auth),
        ),
    );
    assert!(resp.starts_with("SIP/2.0 200 "), "{resp}");
    // baresip gets MD5 alone (it fails on any second challenge).
    let resp = exchange(
        &mut c,
        &register(
            "TLS",
            "127.0.0.1:5998",
            next(),
            None,
            "baresip v1.0.0 (x86_64/linux)",
            None,
        ),
    );
    let ch = challenges(&resp);
    assert_eq!(ch.len(), 1, "{resp}");
    assert_eq!(ch[0].0, "MD5");
    // An unknown user is challenged exactly alike (no enumeration).
    let unknown = register("TLS", "127.0.0.1:5998", next(), None, "JsSIP 3.13.0", None)
        .replace("sip:alice@", "sip:nobody@");
    let resp = exchange(&mut c, &unknown);
    assert_eq!(
        challenges(&resp)
            .iter()
            .map(|c| c.0.as_str())
            .collect::<Vec<_>>(),
        ["SHA-256", "MD5"],
        "{resp}"
    );

    // Over UDP: SHA-256 only; an MD5 answer is refused, whatever the password.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let local = sock.local_addr().unwrap().to_string();
    let udp = |req: String| {
        sock.send_to(req.as_bytes(), ("127.0.0.1", s.udp)).unwrap();
        let mut buf = [0u8; 8192];
        loop {
            let (len, _) = sock.recv_from(&mut buf).unwrap();
            let r = String::from_utf8_lossy(&buf[..len]).into_owned();
            if !r.starts_with("SIP/2.0 100 ") {
                return r;
            }
        }
    };
    let resp = udp(register(
        "UDP",
        &local,
        next(),
        None,
        "baresip v1.0.0",
        None,
    ));
    let ch = challenges(&resp);
    assert_eq!(
        ch.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(),
        ["SHA-256"],
        "{resp}"
    );
    let md5 = answer(Algorithm::Md5, &ch[0].1, pw);
    let resp = udp(register(
        "UDP",
        &local,
        next(),
        None,
        "baresip v1.0.0",
        Some(&md5),
    ));
    assert!(
        resp.starts_with("SIP/2.0 403 Forbidden (MD5 Digest Needs TLS or WSS)"),
        "{resp}"
    );
    // SHA-256 over UDP is accepted (the listener itself is the operator's
    // explicit choice).
    let resp = udp(register("UDP", &local, next(), None, "test", None));
    let ch = challenges(&resp);
    let sha = answer(Algorithm::Sha256, &ch[0].1, pw);
    let resp = udp(register("UDP", &local, next(), None, "test", Some(&sha)));
    assert!(resp.starts_with("SIP/2.0 200 "), "{resp}");

    // The posture check reports exactly that.
    let o = s.admin(&["security", "show"], "");
    assert!(o.status.success(), "{}", out(&o));
    let text = out(&o);
    assert!(
        text.contains("over TLS and WSS: challenged with SHA-256, MD5; MD5 alone to User-Agents starting with baresip, sipp"),
        "{text}"
    );
    assert!(
        text.contains("over UDP, TCP and WS: challenged with SHA-256; accepted: SHA-256"),
        "{text}"
    );
}

#[test]
fn md5_over_udp_is_an_explicit_setting_and_a_high_finding() {
    let s = Server::with_config(
        "digest-md5-plain",
        "digest_algorithms = [\"MD5\"]\ndigest_md5_unencrypted = true",
    );
    let (code, text) = s.security_check();
    assert_eq!(code, Some(3), "{text}");
    assert!(
        text.contains("[HIGH] config digest_md5_unencrypted"),
        "{text}"
    );
}

/// dnsmasq options serving the zone-file lines `parapet admin dns-records`
/// printed (NAPTR, SRV, A/AAAA; comments skipped).
fn dnsmasq_records(zone: &str) -> Vec<String> {
    let mut args = Vec::new();
    for line in zone
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
    {
        let f: Vec<&str> = line.split_whitespace().collect();
        let name = f[0].trim_end_matches('.');
        match f[3] {
            "NAPTR" => args.push(format!(
                "--naptr-record={name},{},{},{},{},{},{}",
                f[4],
                f[5],
                f[6].trim_matches('"'),
                f[7].trim_matches('"'),
                f[8].trim_matches('"'),
                f[9].trim_end_matches('.')
            )),
            "SRV" => args.push(format!(
                "--srv-host={name},{},{},{},{}",
                f[7].trim_end_matches('.'),
                f[6],
                f[4],
                f[5]
            )),
            "A" | "AAAA" => args.push(format!("--host-record={name},{}", f[4])),
            other => panic!("unexpected record type {other} in {line}"),
        }
    }
    args
}

#[test]
fn the_published_dns_records_lead_a_client_to_the_server() {
    let s = Server::readme("dns-records");
    s.add_user("alice", "correct-horse-battery");
    let o = s.admin(&["dns-records"], "");
    assert!(o.status.success(), "{}", out(&o));
    let zone = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        zone.contains("_sips._tcp.example.test. 3600 IN SRV 0 0 5061 example.test."),
        "{zone}"
    );
    // A DNS server with exactly those records, and baresip told only its
    // address: no outbound proxy, it follows NAPTR, SRV and A to the server.
    let port = free_port();
    let mut dns = std::process::Command::new("dnsmasq")
        .args([
            "--no-daemon",
            "--no-resolv",
            "--no-hosts",
            "--conf-file=/dev/null",
        ])
        .args([
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--user=root",
        ])
        .arg(format!("--port={port}"))
        .arg(format!(
            "--pid-file={}",
            s.dir.join("dnsmasq.pid").display()
        ))
        .args(dnsmasq_records(&zone))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(s.dir.join("dnsmasq.log")).unwrap())
        .spawn()
        .expect("dnsmasq is installed (scripts/install-test-deps.sh)");
    let alice =
        crate::baresip::Baresip::start_via_dns(&s, "alice", "correct-horse-battery", "alice", port);
    // The registration as an operator sees it.
    let o = s.admin(&["user", "registrations", "sip:alice@example.test"], "");
    let table = out(&o);
    assert!(o.status.success(), "{table}");
    for want in ["CONTACT", "tls", "connection", "baresip v1.0.0", " UTC"] {
        assert!(table.contains(want), "{want} not in:\n{table}");
    }
    let o = s.admin(
        &[
            "--output=json",
            "user",
            "registrations",
            "sip:alice@example.test",
        ],
        "",
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    assert!(v[0]["expires_at"].as_i64().unwrap() > 1_700_000_000, "{v}");
    drop(alice);
    let _ = dns.kill();
    let _ = dns.wait();
}

#[test]
fn a_registration_over_a_connection_does_not_outlive_a_restart() {
    let mut s = Server::with_config("tls-restart", "digest_algorithms = [\"SHA-256\", \"MD5\"]");
    let pw = "correct-horse-battery";
    s.add_user("alice", pw);
    let mut c = s.tls_to(s.tls);
    let resp = exchange(
        &mut c,
        &register("TLS", "127.0.0.1:5997", 1, None, "test", None),
    );
    let ch = challenges(&resp);
    let auth = answer(Algorithm::Sha256, &ch[0].1, pw);
    let resp = exchange(
        &mut c,
        &register("TLS", "127.0.0.1:5997", 2, None, "test", Some(&auth)),
    );
    assert!(resp.starts_with("SIP/2.0 200 "), "{resp}");
    let registrations = |s: &Server| {
        let o = s.admin(
            &[
                "--output=json",
                "user",
                "registrations",
                "sip:alice@example.test",
            ],
            "",
        );
        assert!(o.status.success(), "{}", out(&o));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let v = registrations(&s);
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v[0]["reached_by"], "connection", "{v}");
    // The server dies; its connections with it. After the restart the
    // binding, reachable only over that connection, is not offered as live.
    s.kill9();
    drop(c);
    s.start();
    let v = registrations(&s);
    assert_eq!(v, serde_json::json!([]), "{}", s.log());
    assert!(s
        .log()
        .contains("registrations over connections from before the restart dropped"));
}

/// A digest answer captured on the way is worth nothing after a restart
/// (or at another node of a pool): nonces name the process that issued
/// them, and another process's are stale — its nonce counts are not here
/// to refuse a replay — so the client is asked again (`stale=true`, which
/// clients answer without asking the user).
#[test]
fn a_digest_answer_replayed_after_a_restart_is_refused_as_stale() {
    let mut s = Server::with_config(
        "nonce-restart",
        "digest_algorithms = [\"SHA-256\", \"MD5\"]",
    );
    let pw = "correct-horse-battery";
    s.add_user("alice", pw);
    let mut c = s.tls_to(s.tls);
    let resp = exchange(
        &mut c,
        &register("TLS", "127.0.0.1:5996", 1, None, "test", None),
    );
    let ch = challenges(&resp);
    let auth = answer(Algorithm::Sha256, &ch[0].1, pw);
    let resp = exchange(
        &mut c,
        &register("TLS", "127.0.0.1:5996", 2, None, "test", Some(&auth)),
    );
    assert!(resp.starts_with("SIP/2.0 200 "), "{resp}");
    // Replayed as a new request (new branch and CSeq): refused here.
    let resp = exchange(
        &mut c,
        &register("TLS", "127.0.0.1:5996", 3, None, "test", Some(&auth)),
    );
    assert!(resp.starts_with("SIP/2.0 401 "), "{resp}");
    // ...and by the server after a restart, as stale.
    s.kill9();
    drop(c);
    s.start();
    let mut c = s.tls_to(s.tls);
    let resp = exchange(
        &mut c,
        &register("TLS", "127.0.0.1:5996", 4, None, "test", Some(&auth)),
    );
    assert!(resp.starts_with("SIP/2.0 401 "), "{resp}");
    assert!(resp.contains("stale=true"), "{resp}");
    // A fresh answer to the new challenge is taken.
    let ch = challenges(&resp);
    let auth = answer(Algorithm::Sha256, &ch[0].1, pw);
    let resp = exchange(
        &mut c,
        &register("TLS", "127.0.0.1:5996", 5, None, "test", Some(&auth)),
    );
    assert!(resp.starts_with("SIP/2.0 200 "), "{resp}");
}
