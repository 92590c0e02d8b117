//! Federation: two organisations, each a complete Parapet deployment with its
//! own private CA and loopback address, trusting each other's CA for
//! partners and finding each other through a DNS server the test starts;
//! SIPp users in each, and a raw TLS peer presenting a partner's certificate.
//! Here: messages and the policy, what a partner may claim, discovered
//! partners, floods and the connection pool (dialogs: federation_dialogs.rs).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::edge::Edge;
use crate::harness::{free_port, out, register_and_listen, Server};

pub(crate) const A: &str = "example.test";
pub(crate) const B: &str = "partner.test";

/// A DNS server (dnsmasq) authoritative for `.test` with `records`, on a
/// loopback port; killed on drop.
pub(crate) struct Dns {
    child: std::process::Child,
    port: u16,
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dns(records: &[String]) -> Dns {
    for _ in 0..5 {
        let port = free_port();
        let mut child = std::process::Command::new("dnsmasq")
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
            .args(["--local=/test/", "--pid-file="])
            .arg(format!("--port={port}"))
            .args(records)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("dnsmasq is installed (scripts/install-test-deps.sh)");
        // Ready when it answers a query (a header-only probe gets FORMERR).
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        probe
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        for _ in 0..50 {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            let _ = probe.send_to(
                &[0x12, 0x34, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                ("127.0.0.1", port),
            );
            let mut buf = [0u8; 512];
            if matches!(probe.recv_from(&mut buf), Ok((n, _)) if n >= 12) {
                return Dns { child, port };
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("dnsmasq did not start");
}

/// How the two organisations' servers meet. Every federation test runs
/// both ways ([`both_ways!`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Meet {
    /// Their front ends connect to each other.
    Direct,
    /// Each organisation is behind its own edge (`parapet edge`, paired
    /// with its pool): partners' servers reach only the edges, which hold
    /// the trust for partners and the connections between organisations.
    Edges,
}

/// Runs each named test body (a `fn(Meet)`) as two tests:
/// `NAME::direct` and `NAME::through_edges`.
macro_rules! both_ways {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn direct() {
                super::$name(crate::federation::Meet::Direct)
            }
            #[test]
            fn through_edges() {
                super::$name(crate::federation::Meet::Edges)
            }
        }
    )*};
}
pub(crate) use both_ways;

/// What joins the two organisations: the DNS server they find each other
/// by and, with [`Meet::Edges`], their edges (example.test's, then
/// partner.test's).
pub(crate) struct Net {
    pub(crate) edges: Option<(Edge, Edge)>,
    _dns: Dns,
}

/// example.test's edge: external and internal addresses.
pub(crate) const A_EDGE: (&str, &str) = ("127.0.0.10", "127.0.0.11");
/// partner.test's edge.
pub(crate) const B_EDGE: (&str, &str) = ("127.0.0.12", "127.0.0.13");

impl Net {
    /// `s`'s organisation's edge, if it has one.
    pub(crate) fn edge(&self, s: &Server) -> Option<&Edge> {
        let (ea, eb) = self.edges.as_ref()?;
        Some(if s.domain == A { ea } else { eb })
    }

    pub(crate) fn edge_mut(&mut self, s: &Server) -> Option<&mut Edge> {
        let (ea, eb) = self.edges.as_mut()?;
        Some(if s.domain == A { ea } else { eb })
    }

    /// Where partners' servers reach `s`'s organisation (its front end's
    /// TLS listener, or its edge's), and the name its certificate answers
    /// to there.
    pub(crate) fn door(&self, s: &Server) -> (String, u16, rustls_pki_types::ServerName<'static>) {
        match self.edge(s) {
            Some(e) => (
                e.external.to_owned(),
                e.external_port,
                rustls_pki_types::ServerName::IpAddress(
                    e.external.parse::<std::net::IpAddr>().unwrap().into(),
                ),
            ),
            None => (
                s.host.clone(),
                s.tls,
                rustls_pki_types::ServerName::try_from(s.domain.clone()).unwrap(),
            ),
        }
    }

    /// Waits until a policy just changed is in force: the front ends read
    /// it within a second, and edges fetch the pool's snapshot every
    /// second.
    pub(crate) fn settle(&self) {
        settle_with_edges(self.edges.is_some());
    }
}

/// Two organisations that trust each other's CA (their front ends or, with
/// [`Meet::Edges`], their edges), each on its own loopback address; the
/// federation policy is still off. Each finds the other through the DNS
/// server (which must outlive the servers' use of it): example.test finds
/// partner.test by NAPTR, SRV and A; partner.test finds example.test by
/// Lync's `_sipfederationtls._tcp` SRV name alone. Both also know a host
/// no SRV record names, `edge.partner.test` (a policy can pin a partner to
/// it), and example.test routes `gone.test` to a port where nothing
/// listens.
pub(crate) fn two_orgs(name: &str, meet: Meet) -> (Server, Server, Net) {
    let name = match meet {
        Meet::Direct => name.to_owned(),
        Meet::Edges => format!("{name}-e"),
    };
    let mut a = Server::org(&format!("{name}-a"), A, "");
    let mut b = Server::org_at(&format!("{name}-b"), B, "127.0.0.2", "");
    // Where each organisation is reached from outside.
    let (a_door, b_door) = match meet {
        Meet::Direct => ((a.host.clone(), a.tls), (b.host.clone(), b.tls)),
        Meet::Edges => (
            (A_EDGE.0.to_owned(), free_port()),
            (B_EDGE.0.to_owned(), free_port()),
        ),
    };
    let dns = dns(&[
        "--naptr-record=partner.test,10,10,s,SIPS+D2T,,_sips._tcp.partner.test".into(),
        format!(
            "--srv-host=_sips._tcp.partner.test,sip.partner.test,{},0,0",
            b_door.1
        ),
        format!("--host-record=sip.partner.test,{}", b_door.0),
        format!("--host-record=edge.partner.test,{}", b_door.0),
        format!(
            "--srv-host=_sipfederationtls._tcp.example.test,fed.example.test,{},0,0",
            a_door.1
        ),
        format!("--host-record=fed.example.test,{}", a_door.0),
    ]);
    let ca = |s: &Server| s.data_dir().join("pki/ca.pem").display().to_string();
    let trusting = |other: &Server, routes: String| {
        format!(
            "[federation]\ntrusted_cas = [\"{}\"]\nresolvers = [\"127.0.0.1:{}\"]\nallow_private_addresses = true\n{routes}",
            ca(other),
            dns.port
        )
    };
    let a_trust = trusting(
        &b,
        format!(
            "routes = {{ \"gone.test\" = \"127.0.0.1:{}\" }}\n",
            free_port()
        ),
    );
    let b_trust = trusting(&a, String::new());
    let edges = match meet {
        Meet::Direct => {
            a.extra_config = a_trust;
            b.extra_config = b_trust;
            for s in [&mut a, &mut b] {
                s.kill9();
                s.start();
            }
            None
        }
        // The front ends trust no partner: only the edges do.
        Meet::Edges => Some((
            Edge::pair_and_start_on(
                &a,
                &format!("{name}-ea"),
                A_EDGE.0,
                A_EDGE.1,
                a_door.1,
                &a_trust,
            ),
            Edge::pair_and_start_on(
                &b,
                &format!("{name}-eb"),
                B_EDGE.0,
                B_EDGE.1,
                b_door.1,
                &b_trust,
            ),
        )),
    };
    (a, b, Net { edges, _dns: dns })
}

pub(crate) fn policy(s: &Server, args: &[&str]) {
    let mut all = vec!["policy", "set"];
    all.extend_from_slice(args);
    let o = s.admin(&all, "");
    assert!(o.status.success(), "{}", out(&o));
}

pub(crate) fn contact(s: &Server, owner: &str, contact: &str) {
    let o = s.admin(&["contacts", "add", owner, contact], "");
    assert!(o.status.success(), "{}", out(&o));
}

/// Each organisation allows the other, and its users external access.
pub(crate) fn federate_both(a: &Server, b: &Server) {
    for (s, other) in [(a, B), (b, A)] {
        policy(
            s,
            &[
                "federation",
                "global",
                "enabled=true",
                &format!("allowed_domains={other}"),
            ],
        );
        policy(s, &["external_access", "global", "federation=true"]);
    }
}

/// Waits until a policy just changed is in force on the front end and, if
/// `edges`, on its edges (they fetch the pool's snapshot every second).
pub(crate) fn settle_with_edges(edges: bool) {
    settle();
    if edges {
        std::thread::sleep(Duration::from_millis(1200));
    }
}

/// The core reads a changed policy within a second.
pub(crate) fn settle() {
    std::thread::sleep(Duration::from_millis(1500));
}

/// alice@example.test sends a MESSAGE to `to`@partner.test; returns SIPp's
/// trace (which final answer came back).
fn alice_sends(a: &Server, to: &str) -> String {
    alice_sends_to(a, to, B)
}

pub(crate) fn alice_sends_to(a: &Server, to: &str, domain: &str) -> String {
    let (ok, msgs) = a
        .sipp_start(
            "message_send_federated.xml",
            to,
            "alice",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &["alice", domain],
        )
        .finish();
    assert!(ok, "SIPp failed:\n{msgs}\nserver:\n{}", a.log());
    msgs
}

/// A Prometheus sample's value (0 if absent).
pub(crate) fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0)
}

/// The status line of the last response SIPp received.
pub(crate) fn last_status(trace: &str) -> String {
    trace
        .lines()
        .rfind(|l| l.trim_start().starts_with("SIP/2.0 "))
        .unwrap_or("")
        .trim()
        .to_string()
}

both_ways!(
    two_organisations_exchange_messages_over_mutual_tls_as_policy_allows,
    a_partner_speaks_only_for_its_own_domain,
    a_discovered_partner_is_held_to_its_limits_and_explained,
    a_partner_flooding_without_reading_loses_its_connection_while_users_go_on,
    connections_to_a_partner_grow_with_its_load_up_to_the_cap,
);

fn two_organisations_exchange_messages_over_mutual_tls_as_policy_allows(meet: Meet) {
    let (a, b, net) = two_orgs("fed", meet);
    a.add_user("alice", "correct horse battery");
    b.add_user("bob", "battery staple horse");

    // Federation off (the default): refused at once, nothing sent.
    let t = alice_sends(&a, "bob");
    assert!(
        last_status(&t).contains("403 Relaying Denied"),
        "{}",
        last_status(&t)
    );

    // On, with the partner allowed, but alice has no external access.
    policy(
        &a,
        &[
            "federation",
            "global",
            "enabled=true",
            "allowed_domains=partner.test,gone.test,unknown.test",
        ],
    );
    policy(
        &b,
        &[
            "federation",
            "global",
            "enabled=true",
            "allowed_domains=example.test",
        ],
    );
    net.settle();
    let t = alice_sends(&a, "bob");
    assert!(
        last_status(&t).contains("403 Forbidden (Federation Not Allowed for This User)"),
        "{}",
        last_status(&t)
    );

    // alice may federate; bob may not: partner.test answers as for an
    // unknown user.
    policy(&a, &["external_access", "global", "federation=true"]);
    net.settle();
    let t = alice_sends(&a, "bob");
    assert!(
        last_status(&t).contains("404 Not Found"),
        "{}\n{}",
        last_status(&t),
        b.log()
    );
    let t = alice_sends(&a, "nobody");
    assert!(
        last_status(&t).contains("404 Not Found"),
        "{}",
        last_status(&t)
    );

    // A partner whose server does not answer, and one DNS knows nothing of.
    let t = alice_sends_to(&a, "bob", "gone.test");
    assert!(
        last_status(&t).contains("503 Service Unavailable (Partner Unreachable)"),
        "{}",
        last_status(&t)
    );
    let t = alice_sends_to(&a, "bob", "unknown.test");
    assert!(
        last_status(&t).contains("404 Not Found (No SIP Server for the Domain)"),
        "{}",
        last_status(&t)
    );

    // Both may, but bob's privacy (the default: messages from strangers
    // only if internal) still refuses a stranger from outside, alike.
    policy(&b, &["external_access", "global", "federation=true"]);
    net.settle();
    let t = alice_sends(&a, "bob");
    assert!(
        last_status(&t).contains("404 Not Found"),
        "{}",
        last_status(&t)
    );
    // alice in bob's contacts: bob, registered at partner.test, receives it.
    contact(&b, "sip:bob@partner.test", "sip:alice@example.test");
    let bob = register_and_listen(&b, "bob", "battery staple horse");
    let t = alice_sends(&a, "bob");
    assert!(
        last_status(&t).contains("200"),
        "{}\nA:\n{}\nB:\n{}",
        last_status(&t),
        a.log(),
        b.log()
    );
    let (ok, received) = bob.finish();
    assert!(ok, "bob did not receive the MESSAGE:\n{received}");
    assert!(
        received.contains("Hello from alice: across federation"),
        "{received}"
    );
    assert!(
        received.contains("From: <sip:alice@example.test>"),
        "{received}"
    );

    // The IM filter across federation: the sender's policy on what goes
    // out (example.test's default defuses), then the recipient's on what
    // comes in (a warning at partner.test); links refused at example.test
    // never leave.
    policy(&b, &["im_filter", "global", "action=warn"]);
    let bob = register_and_listen(&b, "bob", "battery staple horse");
    let send_text = |text: &str| {
        a.sipp_start(
            "message_send_text_federated.xml",
            "bob",
            "alice",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &["alice", B, text],
        )
        .finish()
        .1
    };
    let t = send_text("see www.news.example");
    assert!(last_status(&t).contains("200"), "{}", last_status(&t));
    let (ok, received) = bob.finish();
    assert!(ok, "{received}");
    assert!(
        received.contains(
            "This message contains links; open them only if you trust the sender.\nLinks in this message were made unclickable.\nHello from alice: see _www.news.example"
        ),
        "{received}"
    );
    policy(
        &a,
        &["im_filter", "global", "federated=true", "action=block"],
    );
    let t = send_text("see www.news.example");
    assert!(
        last_status(&t).contains("403 Forbidden (Links Not Allowed)"),
        "{}",
        last_status(&t)
    );

    // A sender's 64 Vias (the most a server takes) would be 65 with
    // example.test's own: not forwarded, so partner.test (or an edge) never
    // refuses it and closes the connection everyone's traffic shares.
    let (_, t) = a
        .sipp_start(
            "message_send_many_vias_federated.xml",
            "nobody",
            "alice",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &["alice", B],
        )
        .finish();
    assert!(
        last_status(&t).contains("500 Server Internal Error (Not Forwarded)"),
        "{}",
        last_status(&t)
    );
    let logs = [
        Some(b.log()),
        net.edge(&a).map(Edge::log),
        net.edge(&b).map(Edge::log),
    ];
    for log in logs.iter().flatten() {
        assert!(
            !log.contains("framing error"),
            "a connection was closed:\n{log}"
        );
    }
    // The other way: bob's server opens its own connection to example.test,
    // which verifies partner.test's certificate as a client's.
    contact(&a, "sip:alice@example.test", "sip:bob@partner.test");
    let alice = register_and_listen(&a, "alice", "correct horse battery");
    let (ok, msgs) = b
        .sipp_start(
            "message_send_federated.xml",
            "alice",
            "bob",
            "battery staple horse",
            "127.0.0.1",
            free_port(),
            &["bob", A],
        )
        .finish();
    assert!(ok, "{msgs}");
    assert!(
        last_status(&msgs).contains("200"),
        "{}\nA:\n{}",
        last_status(&msgs),
        a.log()
    );
    let (ok, received) = alice.finish();
    assert!(ok, "alice did not receive bob's MESSAGE:\n{received}");
    assert!(
        received.contains("From: <sip:bob@partner.test>"),
        "{received}"
    );

    // The counters say what happened, per partner.
    let (_, metrics) = a.http_get("/metrics", None);
    for want in [
        "parapet_federation_requests_total{partner=\"partner.test\",direction=\"out\",outcome=\"forwarded\"}",
        "parapet_federation_requests_total{partner=\"partner.test\",direction=\"out\",outcome=\"user_not_allowed\"} 1",
        "parapet_federation_requests_total{partner=\"partner.test\",direction=\"in\",outcome=\"accepted\"} 1",
    ] {
        assert!(metrics.contains(want), "{want} not in:\n{metrics}");
    }

    // Blocked wins: partner.test blocks example.test.
    policy(
        &b,
        &[
            "federation",
            "global",
            "enabled=true",
            "allowed_domains=",
            "blocked_domains=example.test",
        ],
    );
    net.settle();
    let t = alice_sends(&a, "bob");
    assert!(
        last_status(&t).contains("403 Forbidden (Federation Not Allowed)"),
        "{}",
        last_status(&t)
    );
}

/// A TLS connection to where partners reach `s` ([`Net::door`]) presenting `cert_of`'s server
/// certificate (a partner's), or none.
fn tls_as(
    net: &Net,
    s: &Server,
    cert_of: Option<&Server>,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in
        rustls_pki_types::CertificateDer::pem_file_iter(s.data_dir().join("pki/ca.pem")).unwrap()
    {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let cfg = match cert_of {
        Some(p) => {
            let pki = p.data_dir().join("pki");
            let chain = rustls_pki_types::CertificateDer::pem_file_iter(pki.join("server.pem"))
                .unwrap()
                .map(|c| c.unwrap())
                .collect();
            let key =
                rustls_pki_types::PrivateKeyDer::from_pem_file(pki.join("server-key.pem")).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    let (host, port, name) = net.door(s);
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    let tcp = TcpStream::connect((host.as_str(), port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

/// Sends a MESSAGE From `from` to bob@partner.test and returns the status line.
fn message_over(
    c: &mut rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    from: &str,
    n: u32,
) -> String {
    message_to(c, from, "bob", n)
}

/// Sends a MESSAGE From `from` to `to`@partner.test; the status line.
fn message_to(
    c: &mut rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    from: &str,
    to: &str,
    n: u32,
) -> String {
    let req = format!(
        "MESSAGE sip:{to}@{B} SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bKforge{n}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{from}>;tag=f{n}\r\nTo: <sip:{to}@{B}>\r\nCall-ID: forge-{n}\r\n\
         CSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
    );
    c.write_all(req.as_bytes()).unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = c.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed");
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

fn a_partner_speaks_only_for_its_own_domain(meet: Meet) {
    let (a, b, net) = two_orgs("fedforge", meet);
    b.add_user("bob", "battery staple horse");
    policy(
        &b,
        &[
            "federation",
            "global",
            "enabled=true",
            "allowed_domains=example.test",
        ],
    );
    policy(&b, &["external_access", "global", "federation=true"]);
    contact(&b, "sip:bob@partner.test", "sip:alice@example.test");
    net.settle();
    // example.test's certificate, senders of other domains.
    let mut c = tls_as(&net, &b, Some(&a));
    let st = message_over(&mut c, "mallory@evil.test", 1);
    assert!(
        st.contains("403 Forbidden (From Domain Does Not Match the Certificate)"),
        "{st}"
    );
    let st = message_over(&mut c, "bob@partner.test", 2);
    assert!(
        st.contains("403 Forbidden (Own Domain From Outside)"),
        "{st}"
    );
    // Its own users, on the same connection: accepted (bob is not
    // registered, so stored for him).
    let st = message_over(&mut c, "alice@example.test", 3);
    assert!(st.contains("202"), "{st}\n{}", b.log());
    // bob accepts messages from strangers anywhere: a verified partner's
    // (the default) reach him; with verification=unverified, only his
    // contacts (alice is one, dave is not: 404 as for anyone refused).
    policy(&b, &["privacy", "global", "strangers_may_im=everyone"]);
    net.settle();
    let st = message_over(&mut c, "dave@example.test", 8);
    assert!(st.contains("202"), "{st}");
    policy(
        &b,
        &[
            "federation",
            "global",
            "enabled=true",
            "allowed_domains=example.test",
            "verification=unverified",
        ],
    );
    net.settle();
    let st = message_over(&mut c, "dave@example.test", 5);
    assert!(st.contains("404 Not Found"), "{st}");
    let st = message_over(&mut c, "alice@example.test", 6);
    assert!(st.contains("202"), "{st}");
    // Without a certificate the connection is a client's: a sender of
    // another domain is not relayed for.
    let mut c = tls_as(&net, &b, None);
    let st = message_over(&mut c, "alice@example.test", 4);
    assert!(st.contains("403 Relaying Denied"), "{st}");
    // A certificate from a CA not trusted for partners (partner.test's own,
    // presented to itself) ends the handshake: it is not taken for a client.
    let mut c = tls_as(&net, &b, Some(&b));
    let req = b"OPTIONS sip:partner.test SIP/2.0\r\n\r\n";
    let refused = c.write_all(req).is_err() || {
        let mut buf = [0u8; 64];
        !matches!(c.read(&mut buf), Ok(n) if n > 0)
    };
    assert!(refused, "an untrusted certificate was accepted");
    // partner.test pins example.test to a host its certificate does not
    // name: refused; pinned to one it names (its domain is a DNS name in
    // it): accepted.
    for (host, want) in [
        (
            "sip.example.test",
            "403 Forbidden (Not the Partner's Pinned Server)",
        ),
        ("example.test", "202"),
    ] {
        policy(
            &b,
            &[
                "federation",
                "global",
                "enabled=true",
                "allowed_domains=example.test",
                &format!("partner_servers=example.test:{host}"),
            ],
        );
        net.settle();
        let mut c = tls_as(&net, &b, Some(&a));
        let st = message_over(&mut c, "alice@example.test", 20);
        assert!(st.contains(want), "{host}: {st}");
    }
    // A partner sending garbage loses that connection only.
    let mut g = tls_as(&net, &b, Some(&a));
    let _ = g.write_all(b"\x16\x03garbage that is no SIP at all\r\nX\r\n\r\n");
    let mut buf = [0u8; 512];
    let mut closed = false;
    for _ in 0..5 {
        match g.read(&mut buf) {
            Ok(0) | Err(_) => {
                closed = true;
                break;
            }
            Ok(_) => {}
        }
    }
    assert!(closed, "the garbage connection stayed open");
    // The server goes on serving partners and its own users.
    let mut c = tls_as(&net, &b, Some(&a));
    let st = message_over(&mut c, "alice@example.test", 7);
    assert!(st.contains("202"), "{st}");
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let ping = crate::harness::options(&udp, "after-garbage").replace("example.test", B);
    udp.send_to(ping.as_bytes(), (b.host.as_str(), b.udp))
        .unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = udp.recv_from(&mut buf).unwrap();
    assert!(
        buf[..n].starts_with(b"SIP/2.0 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
}

fn a_discovered_partner_is_held_to_its_limits_and_explained(meet: Meet) {
    let (a, b, net) = two_orgs("feddisc", meet);
    for u in ["bob", "carol", "dave"] {
        b.add_user(u, "battery staple horse");
    }
    policy(
        &b,
        &[
            "federation",
            "global",
            "enabled=true",
            "partner_discovery=true",
            "discovered_rate=3",
            "discovered_max_contacts=2",
        ],
    );
    policy(&b, &["external_access", "global", "federation=true"]);
    net.settle();
    let mut c = tls_as(&net, &b, Some(&a));
    // Discovered: strangers are not reached (404 alike), three a second.
    for n in 0..3 {
        let st = message_to(&mut c, "alice@example.test", "bob", 10 + n);
        assert!(st.contains("404 Not Found"), "{st}");
    }
    let st = message_to(&mut c, "alice@example.test", "bob", 13);
    assert!(
        st.contains("503 Service Unavailable (Partner Rate Exceeded)"),
        "{st}"
    );
    std::thread::sleep(Duration::from_millis(1100));
    // A second distinct user is within the limit; a third watch-lists.
    let st = message_to(&mut c, "alice@example.test", "carol", 14);
    assert!(st.contains("404 Not Found"), "{st}");
    let st = message_to(&mut c, "alice@example.test", "dave", 15);
    assert!(st.contains("403 Forbidden (Partner on Watch List)"), "{st}");
    std::thread::sleep(Duration::from_millis(1100));
    let st = message_to(&mut c, "alice@example.test", "bob", 16);
    assert!(st.contains("403 Forbidden (Partner on Watch List)"), "{st}");

    // What administrators see and do.
    let o = b.admin(&["--output=json", "federation", "partners"], "");
    assert!(o.status.success(), "{}", out(&o));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let row = &rows[0];
    assert_eq!(row["domain"], "example.test", "{rows}");
    assert_eq!(row["standing"], "discovered", "{rows}");
    assert!(
        row["watch_listed_at"].as_i64().unwrap() > 1_700_000_000,
        "{rows}"
    );
    assert_eq!(row["users_this_hour"], 2, "{rows}");
    let explain = |what: &str| {
        let o = b.admin(
            &[
                "federation",
                "explain",
                "sip:alice@example.test",
                "sip:bob@partner.test",
                "--modality",
                what,
            ],
            "",
        );
        assert!(o.status.success(), "{}", out(&o));
        out(&o)
    };
    let e = explain("im");
    assert!(
        e.starts_with("REFUSED (im in, partner example.test)"),
        "{e}"
    );
    assert!(e.contains("on the watch list"), "{e}");
    let o = b.admin(&["federation", "clear", "example.test"], "");
    assert!(
        out(&o).contains("example.test taken off the watch list"),
        "{}",
        out(&o)
    );
    let e = explain("im");
    assert!(e.contains("not in sip:bob@partner.test's contacts"), "{e}");
    // In bob's contacts: a discovered partner's user reaches him (stored
    // for later, he is not registered).
    contact(&b, "sip:bob@partner.test", "sip:alice@example.test");
    let e = explain("im");
    assert!(e.starts_with("ALLOWED"), "{e}");
    let st = message_to(&mut c, "alice@example.test", "bob", 17);
    assert!(st.contains("202"), "{st}");
    // Outward, example.test has federation off: explained from its side.
    let o = a.admin(
        &[
            "--output=json",
            "federation",
            "explain",
            "sip:alice@example.test",
            "sip:bob@partner.test",
            "--modality",
            "calls",
        ],
        "",
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["allowed"], false, "{v}");
    assert_eq!(v["rule"], "federation.enabled is false", "{v}");
    assert_eq!(v["direction"], "out", "{v}");
}

fn a_partner_flooding_without_reading_loses_its_connection_while_users_go_on(meet: Meet) {
    let (a, b, net) = two_orgs("fedflood", meet);
    b.add_user("bob", "battery staple horse");
    b.add_user("carol", "correct horse battery");
    policy(
        &b,
        &[
            "federation",
            "global",
            "enabled=true",
            "allowed_domains=example.test",
        ],
    );
    policy(&b, &["external_access", "global", "federation=true"]);
    net.settle();
    // example.test's certificate, writing MESSAGEs for an unknown user as
    // fast as it can and never reading the answers.
    let mut flood = tls_as(&net, &b, Some(&a));
    let writer = std::thread::spawn(move || {
        let started = Instant::now();
        let mut sent = 0u32;
        while sent < 40_000 && started.elapsed() < Duration::from_secs(20) {
            let req = format!(
                "MESSAGE sip:nobody@{B} SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bKflood{sent}\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:mallory@example.test>;tag=f{sent}\r\nTo: <sip:nobody@{B}>\r\n\
                 Call-ID: flood-{sent}\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n"
            );
            if flood.write_all(req.as_bytes()).is_err() {
                return (sent, true);
            }
            sent += 1;
        }
        (sent, false)
    });
    // partner.test's own users exchange messages meanwhile.
    let bob = register_and_listen(&b, "bob", "battery staple horse");
    let (ok, msgs) = b
        .sipp_start(
            "message_send.xml",
            "bob",
            "carol",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &["carol", "during-the-flood"],
        )
        .finish();
    assert!(
        ok,
        "a local MESSAGE failed during the flood:\n{msgs}\n{}",
        b.log()
    );
    let (ok, received) = bob.finish();
    assert!(ok, "{received}");
    let (sent, cut) = writer.join().unwrap();
    assert!(
        cut,
        "the server kept a partner's connection that never read its answers ({sent} requests written)"
    );
    if let Some(e) = net.edge(&b) {
        // Through an edge, the flood queued no more than its connection's
        // share in the pool: the edge answered the rest itself.
        let (_, m) = e.get("/metrics");
        assert!(
            metric(&m, "parapet_edge_refused_total{reason=\"in_flight\"}") > 0,
            "{m}"
        );
    }
    // The partner's next connection is served again: at once, or (through
    // an edge, which relayed the flood to the pool before the connection
    // was cut) after the pool has worked off what the flood left, answering
    // 503 with Retry-After meanwhile.
    let mut c = tls_as(&net, &b, Some(&a));
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut n = 99;
    let st = loop {
        let st = message_to(&mut c, "alice@example.test", "nobody", n);
        if !st.contains("503 Service Unavailable (Overloaded)") || Instant::now() > deadline {
            break st;
        }
        n += 1;
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(st.contains("404 Not Found"), "{st}");
}

fn connections_to_a_partner_grow_with_its_load_up_to_the_cap(meet: Meet) {
    let (mut a, b, mut net) = two_orgs("fedpool", meet);
    // One SIPp socket sends everything: no per-address limit on challenges.
    let limits = "[limits]\nunauthenticated_rate = 100000\nunauthenticated_burst = 100000\n";
    let cap = "[federation]\nmax_connections_per_partner = 2\n";
    match net.edge_mut(&a) {
        // example.test's edge holds its connections to partners.
        Some(_) => a.extra_config = limits.to_owned(),
        None => a
            .extra_config
            .push_str(&format!("max_connections_per_partner = 2\n{limits}")),
    }
    a.kill9();
    a.start();
    if let Some(e) = net.edge_mut(&a) {
        e.edit_config(|toml| toml.replace("[federation]\n", cap));
        e.kill9();
        e.start();
    }
    a.add_user("alice", "correct horse battery");
    b.add_user("bob", "battery staple horse");
    federate_both(&a, &b);
    policy(&b, &["privacy", "global", "strangers_may_im=everyone"]);
    net.settle();
    // bob registered from a port where nothing answers: partner.test holds
    // each message until its timeout, so answers stop coming back.
    let (ok, msgs) = b.sipp(
        "register_auth.xml",
        "bob",
        "battery staple horse",
        "127.0.0.1",
        free_port(),
        &[],
    );
    assert!(ok, "{msgs}");
    let csv = a.dir.join("pool.csv");
    std::fs::write(&csv, format!("SEQUENTIAL\n{A};alice;{B}\n")).unwrap();
    let mut sipp = std::process::Command::new("sipp")
        .arg("-sf")
        .arg(crate::harness::scenario("message_send_federated.xml"))
        .arg("-inf")
        .arg(&csv)
        .args(["-s", "bob", "-au", "alice", "-ap", "correct horse battery"])
        .args(["-auth_uri", &format!("bob@{B}")])
        .args([
            "-m", "240", "-r", "400", "-l", "240", "-t", "u1", "-nostdin",
        ])
        .args(["-timeout", "20s", "-i", "127.0.0.1", "-p"])
        .arg(free_port().to_string())
        .arg(format!("{}:{}", a.host, a.udp))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sipp is installed");
    // 240 messages awaiting answers, 32 per connection before another opens:
    // a second connection, and no third (the cap).
    let deadline = Instant::now() + Duration::from_secs(15);
    let connections = || {
        if let Some(e) = net.edge(&a) {
            return metric(&e.get("/metrics").1, "parapet_edge_partner_connections");
        }
        let o = a.admin(&["--output=json", "federation", "partners"], "");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        v.as_array()
            .and_then(|rows| rows.iter().find(|r| r["domain"] == B))
            .and_then(|r| r["connections"].as_u64())
            .unwrap_or(0)
    };
    let mut seen = 0;
    while Instant::now() < deadline && seen < 2 {
        seen = seen.max(connections());
        std::thread::sleep(Duration::from_millis(200));
    }
    // All sent (240 at 400/s) and none answered: every connection busy.
    std::thread::sleep(Duration::from_secs(2));
    let after = connections();
    let _ = sipp.kill();
    let _ = sipp.wait();
    assert_eq!(
        seen,
        2,
        "a second connection under load:\n{}\n{}",
        a.log(),
        net.edge(&a).map(Edge::log).unwrap_or_default()
    );
    assert_eq!(after, 2, "never more than max_connections_per_partner");
}
