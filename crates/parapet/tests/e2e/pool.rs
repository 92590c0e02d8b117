//! Several nodes of one PostgreSQL pool serving at once: a client
//! registered with one node is reached through another, for messages and
//! calls, over the nodes' mutual-TLS links.

use crate::harness::*;
use crate::postgres::wait_until;

/// Nodes of one database, named by `ids`, listening on `hosts` (one
/// each), all ready, each connected to every other; `extra` in each
/// node's configuration file (under the top-level keys).
fn pool_of(
    name: &str,
    ids: &[&str],
    hosts: &[&str],
    extra: &str,
) -> (Vec<Server>, &'static store_tests::pg::Cluster, String) {
    let pg = store_tests::pg::cluster();
    let db = pg.database(name);
    let first = Server::org_at(
        &format!("{name}_{}", ids[0]),
        DOMAIN,
        hosts[0],
        &format!(
            "node_id = \"{}\"\npool_mode = \"active\"\ndatabase = \"{}\"\n{extra}",
            ids[0],
            pg.url(&db)
        ),
    );
    first.add_user("alice", "correct horse battery");
    first.add_user("bob", "battery staple horse");
    let mut nodes = vec![first];
    for (id, host) in ids.iter().zip(hosts).skip(1) {
        let mut n = nodes[0].another_node_at(&format!("{name}_{id}"), id, host);
        // (Again on fresh ports if a parallel test took one first.)
        n.start();
        nodes.push(n);
    }
    for (s, me) in nodes.iter().zip(ids) {
        for other in ids.iter().filter(|o| *o != me) {
            wait_until(
                30,
                || {
                    s.log()
                        .lines()
                        .any(|l| l.contains("connected to a node of the pool") && l.contains(other))
                },
                || format!("{me}: no link to {other}:\n{}", s.log()),
            );
        }
    }
    // Each node's security view reports that the lockout counters are
    // its own in this mode.
    let (_, text) = nodes[1].security_check();
    assert!(text.contains("[LOW] config pool_mode"), "{text}");
    (nodes, pg, db)
}

/// Two nodes on one database, both ready, each connected to the other.
pub(crate) fn two_nodes(name: &str) -> (Server, Server, &'static store_tests::pg::Cluster, String) {
    two_nodes_with(name, "")
}

/// [`two_nodes`] with `extra` in their configuration.
fn two_nodes_with(
    name: &str,
    extra: &str,
) -> (Server, Server, &'static store_tests::pg::Cluster, String) {
    let (mut nodes, pg, db) = pool_of(name, &["fe-a", "fe-b"], &["127.0.0.1", "127.0.0.1"], extra);
    let b = nodes.pop().expect("two");
    let a = nodes.pop().expect("two");
    (a, b, pg, db)
}

/// What the issue asks of a pool, on three nodes with addresses of their
/// own (fe-a on 127.0.0.2, fe-b on .3, fe-c on .4): bob registered with
/// fe-a gets alice's MESSAGE sent to fe-b and her call made through fe-c
/// (each node hands the request to fe-a, the only node his client can be
/// reached through); dave's presence published through fe-a reaches
/// carol's subscription held by fe-b; a policy change and a user change
/// made through fe-c apply on fe-a and fe-b before the API answers.
#[test]
fn three_nodes_serve_one_domain() {
    let (nodes, pg, db) = pool_of(
        "pool_three",
        &["fe-a", "fe-b", "fe-c"],
        &["127.0.0.2", "127.0.0.3", "127.0.0.4"],
        "",
    );
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);

    // A MESSAGE through fe-b.
    let bob = register_and_listen(a, "bob", "battery staple horse");
    // fe-b holds bob's binding once it has read fe-a's change: its
    // registrar metric (updated every second) counts it.
    for n in [b, c] {
        wait_until(
            10,
            || {
                n.http_get("/metrics", None)
                    .1
                    .contains("parapet_registrations 1")
            },
            || n.http_get("/metrics", None).1,
        );
        // And says how long fe-a's change took to reach it.
        let m = n.http_get("/metrics", None).1;
        let count = m
            .lines()
            .find_map(|l| l.strip_prefix("parapet_pool_change_lag_seconds_count "))
            .and_then(|v| v.parse::<u64>().ok());
        assert!(count.is_some_and(|c| c > 0), "no change lag counted:\n{m}");
    }
    let (ok, msgs) = b
        .sipp_start(
            "message_send.xml",
            "bob",
            "alice",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &["alice", "across-1"],
        )
        .finish();
    assert!(
        ok,
        "alice's MESSAGE through fe-b was not answered 200:\n{msgs}\nfe-b:\n{}\nfe-a:\n{}",
        b.log(),
        a.log()
    );
    let (ok, received) = bob.finish();
    assert!(ok, "bob did not receive the MESSAGE:\n{received}");
    assert!(
        received.contains("Hello from alice: across-1"),
        "{received}"
    );
    // It came to bob from fe-a's socket, the one he registered with.
    assert!(
        received.contains(&format!("{}:{}", a.host, a.udp)),
        "{received}"
    );

    // A call through fe-c: bob (on fe-a) answers, then sends a re-INVITE,
    // an UPDATE and the BYE along the route set through both nodes.
    let bob = register_then(a, "bob", "battery staple horse", "call_uas.xml");
    wait_until(
        10,
        || {
            c.http_get("/metrics", None)
                .1
                .contains("parapet_registrations 2")
        },
        || c.http_get("/metrics", None).1,
    );
    let (ok, msgs) = c
        .sipp_start(
            "call_uac.xml",
            "bob",
            "alice",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &["alice"],
        )
        .finish();
    let (ok2, callee) = bob.finish();
    assert!(
        ok,
        "alice's call through fe-c failed:\n{msgs}\nfe-c:\n{}\nfe-a:\n{}",
        c.log(),
        a.log()
    );
    assert!(ok2, "bob's side of the call failed:\n{callee}");
    // Both nodes Record-Routed the call: fe-a facing bob (UDP) and fe-c,
    // fe-c facing fe-a (the link between them is TLS) and alice.
    let invite = callee
        .split("-----------------------------------------------")
        .find(|m| m.contains("INVITE sip:bob@"))
        .unwrap_or_default();
    let rr: Vec<&str> = invite
        .lines()
        .filter(|l| l.starts_with("Record-Route:"))
        .collect();
    let all = rr.join("\n");
    for (n, port) in [(a, a.udp), (a, a.tls), (c, c.tls), (c, c.udp)] {
        assert!(
            all.contains(&format!("{}:{port}", n.host)),
            "{}:{port}: {all}\n{invite}",
            n.host
        );
    }

    // Presence across the pool: dave's contact list, changed through
    // fe-a, and his publication, made through fe-a, reach carol's
    // subscription held by fe-b (the list decides what carol may see:
    // without it her NOTIFYs would carry nothing of dave's).
    {
        use crate::presence::{
            admin_ok, offline_then_back_at_5, publish, sip, watch_for_a_change, PW,
        };
        a.add_user("carol", PW);
        a.add_user("dave", PW);
        admin_ok(a, &["contacts", "add", &sip("dave"), &sip("carol")]);
        // fe-b has the new users (it polls the users' version every
        // second) and dave's list (from the change log) once carol may
        // see him.
        std::thread::sleep(std::time::Duration::from_millis(2500));
        let run = watch_for_a_change(b, "carol", "dave");
        // After the first NOTIFY (dave offline), dave publishes through
        // fe-a.
        std::thread::sleep(std::time::Duration::from_millis(1500));
        publish(a, "dave", "back at 5", "away");
        let (ok, trace) = run.finish();
        assert!(ok, "{trace}\nfe-b:\n{}", b.log());
        offline_then_back_at_5(&trace);
    }

    // A policy change and a user change made through fe-c apply on fe-a
    // and fe-b before the API answers: their rows already report the new
    // versions when the command returns (each node reads them every
    // second and reports them with its heartbeat, so without the wait
    // they lag by one to two seconds).
    let meta = |name: &str| -> i64 {
        pg.psql(
            &db,
            &format!("SELECT value FROM meta WHERE name = '{name}'"),
        )
        .unwrap()
        .trim()
        .parse()
        .unwrap()
    };
    let versions = |id: &str| -> (i64, i64) {
        let o = c.admin(&["--output=json", "status"], "");
        assert!(o.status.success(), "{}", out(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let n = v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == id)
            .cloned()
            .unwrap_or_default();
        (
            n["policy_version"].as_i64().unwrap_or(0),
            n["users_version"].as_i64().unwrap_or(0),
        )
    };
    for round in 0..3 {
        let internal = format!("internal={}", round % 2 == 0);
        let o = c.admin(&["policy", "set", "archiving", "global", &internal], "");
        assert!(o.status.success(), "{}", out(&o));
        let want = meta("policy_version");
        for id in ["fe-a", "fe-b"] {
            let (policy, _) = versions(id);
            assert!(
                policy >= want,
                "round {round}: {id} reports policy {policy} < {want} when the answer came"
            );
        }
        c.add_user(&format!("late{round}"), "correct horse battery");
        let want = meta("users_version");
        for id in ["fe-a", "fe-b"] {
            let (_, users) = versions(id);
            assert!(
                users >= want,
                "round {round}: {id} reports users {users} < {want} when the answer came"
            );
        }
    }
    // `parapet admin status` shows how far each node has read the change
    // log: once things are quiet, every node has read all of it.
    let head: i64 = pg
        .psql(&db, "SELECT coalesce(max(pos), 0) FROM changes")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(head > 0);
    let applied = || -> Vec<(String, i64)> {
        let o = c.admin(&["--output=json", "status"], "");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        v["nodes"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|n| {
                (
                    n["id"].as_str().unwrap_or("").to_owned(),
                    n["applied_change"].as_i64().unwrap_or(-1),
                )
            })
            .collect()
    };
    wait_until(
        10,
        || applied().len() == 3 && applied().iter().all(|(_, p)| *p >= head),
        || format!("change log head {head}; nodes: {:?}", applied()),
    );
}

/// Only a node of the pool (its node certificate) may name a binding in
/// a Route entry: the same MESSAGE for bob's binding on fe-a from a
/// client's connection is challenged like any other, not delivered —
/// and so it is over a connection presenting a certificate that names
/// fe-b as a node but was issued by another CA (refused at the handshake,
/// or challenged), and over one presenting a genuine certificate of the
/// pool's CA for a node that does not serve (refused, saying so) — or for
/// a serving node, when the entry's token was not made with the pool's
/// key (refused: the certificate alone steers nothing).
#[test]
fn a_route_naming_a_binding_from_outside_the_pool_is_challenged() {
    let (a, _b, pg, db) = two_nodes("pool_forged");
    let bob = register_and_listen(&a, "bob", "battery staple horse");
    let aor = "sip:bob@example.test";
    let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    let key = pg
        .psql(
            &db,
            "SELECT binding_key FROM bindings WHERE aor = 'sip:bob@example.test'",
        )
        .unwrap()
        .trim()
        .to_string();
    assert!(key.starts_with("sip:bob@"), "{key}");
    // A token of the right shape, made without the pool's key.
    let route = format!(
        "<sip:pb.{}.{}.AAAAAAAAAAAAAAAA@127.0.0.1:{};transport=tls;lr>",
        hex(aor),
        hex(&key),
        a.tls
    );
    let mut c = a.tls_to(a.tls);
    let msg = format!(
        "MESSAGE sip:bob@example.test SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bKforged1\r\n\
         Max-Forwards: 70\r\nRoute: {route}\r\nFrom: <sip:alice@example.test>;tag=f1\r\n\
         To: <sip:bob@example.test>\r\nCall-ID: forged-{}@test\r\nCSeq: 1 MESSAGE\r\n\
         Content-Type: text/plain\r\nContent-Length: 6\r\n\r\nforged",
        std::process::id()
    );
    let resp = crate::defaults::exchange(&mut c, &msg);
    assert!(resp.starts_with("SIP/2.0 407 "), "{resp}");
    // A forged node certificate: urn:parapet:node:fe-b, from a CA of the
    // attacker's own making.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, DOMAIN);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.subject_alt_names = vec![rcgen::SanType::URI(
        rcgen::Ia5String::try_from("urn:parapet:node:fe-b").unwrap(),
    )];
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let leaf = p.signed_by(&key, &ca, &ca_key).unwrap();
    let pem = format!("{}{}{}", leaf.pem(), ca.pem(), key.serialize_pem());
    let forged = |pem: &str, n: u32| -> std::io::Result<String> {
        use std::io::{Read, Write};
        let mut c = crate::devices::tls_as_device(&a, a.tls, pem);
        let msg = msg
            .replace("forged1", &format!("forged{n}"))
            .replace("forged-", &format!("forged{n}-"));
        c.write_all(msg.as_bytes())?;
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = c.read(&mut buf)?;
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        Ok(String::from_utf8_lossy(&got).into_owned())
    };
    match forged(&pem, 2) {
        Ok(resp) => assert!(
            resp.is_empty() || resp.starts_with("SIP/2.0 407 "),
            "a forged node certificate was honoured: {resp}"
        ),
        // The handshake refused the certificate.
        Err(e) => eprintln!("forged node certificate refused: {e}"),
    }
    // A genuine certificate of the pool's own CA (as a node issues itself
    // at start) naming a node that does not serve — a machine taken out
    // of the pool, or a name never used: a client like any other.
    let pki = a.data_dir().join("pki");
    let ca_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(pki.join("ca-key.pem")).unwrap())
            .unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("Parapet private CA for {DOMAIN}"),
    );
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let pool_ca = ca_params.self_signed(&ca_key).unwrap();
    let ca_pem = std::fs::read_to_string(pki.join("ca.pem")).unwrap();
    let node_cert = |node: &str| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.subject_alt_names = vec![rcgen::SanType::URI(
            rcgen::Ia5String::try_from(format!("urn:parapet:node:{node}")).unwrap(),
        )];
        p.distinguished_name
            .push(rcgen::DnType::CommonName, format!("{node} ({DOMAIN})"));
        p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        p.use_authority_key_identifier_extension = true;
        let leaf = p.signed_by(&key, &pool_ca, &ca_key).unwrap();
        format!("{}{ca_pem}{}", leaf.pem(), key.serialize_pem())
    };
    let resp = forged(&node_cert("fe-z"), 3).expect("the pool's CA is trusted for clients too");
    assert!(
        resp.starts_with("SIP/2.0 403 Forbidden (Not a Serving Node)"),
        "a certificate naming no serving node was honoured: {resp}\n{}",
        a.log()
    );
    // A genuine certificate of the pool's CA naming fe-b, a serving node
    // (the CA's key taken, but not the pool's keys/): the entry's token
    // is not the pool's, so the request is refused, not delivered.
    let resp = forged(&node_cert("fe-b"), 4).expect("the pool's CA is trusted");
    assert!(
        resp.starts_with("SIP/2.0 403 Forbidden (Invalid Pool Route)"),
        "a route without the pool's token was honoured: {resp}\n{}",
        a.log()
    );
    assert!(a.log().contains("without the pool's token"), "{}", a.log());
    // Nothing reached bob (his client's trace, a second on).
    std::thread::sleep(std::time::Duration::from_secs(1));
    let mut bob = bob;
    let _ = bob.child.kill();
    let (_, received) = bob.finish();
    assert!(!received.contains("MESSAGE sip:bob"), "{received}");
}

/// Password guesses spread over the nodes count as against one: five
/// wrong passwords from one address, alternating between fe-a and fe-b
/// (three on one, two on the other — below the threshold of five on
/// either alone), lock that address out of the account on both.
#[test]
fn guesses_spread_over_the_nodes_are_counted_as_against_one() {
    let (a, b, _, _) = two_nodes("pool_guess");
    for i in 0..5 {
        let s = if i % 2 == 0 { &a } else { &b };
        passes!(
            s,
            s.sipp(
                "register_bad_auth_once.xml",
                "alice",
                "wrong password!",
                "127.0.0.3",
                free_port(),
                &[]
            )
        );
        // Saved at once, read by the other node within its next poll.
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    for s in [&a, &b] {
        passes!(
            s,
            s.sipp(
                "register_refused.xml",
                "alice",
                "correct horse battery",
                "127.0.0.3",
                free_port(),
                &[]
            )
        );
    }
}

/// The per-source rate limit holds across the pool: with 10 unauthenticated
/// requests allowed at once from one address (and 1 a second after), an
/// address sending 16 REGISTERs without credentials, alternating between
/// the two nodes, gets about 10 challenges in all and 503 for the rest —
/// each node enforces half the limit. (Each node alone would challenge
/// all 16.)
#[test]
fn a_source_spreading_requests_over_the_nodes_gets_the_rate_of_one() {
    let (a, b, _, _) = two_nodes_with(
        "pool_rate",
        "[limits]\nunauthenticated_rate = 1\nunauthenticated_burst = 10\n",
    );
    let sock = std::net::UdpSocket::bind("127.0.0.5:0").unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let local = sock.local_addr().unwrap();
    let (mut challenged, mut refused) = (0, 0);
    for i in 0..16 {
        let s = if i % 2 == 0 { &a } else { &b };
        let req = format!(
            "REGISTER sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKrate{i};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:alice@{DOMAIN}>;tag=r{i}\r\nTo: <sip:alice@{DOMAIN}>\r\n\
             Call-ID: rate-{i}-{}@test\r\nCSeq: 1 REGISTER\r\nContact: <sip:alice@{local}>\r\n\
             Content-Length: 0\r\n\r\n",
            std::process::id()
        );
        sock.send_to(req.as_bytes(), (s.host.as_str(), s.udp))
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).unwrap();
        let resp = String::from_utf8_lossy(&buf[..n]).to_string();
        if resp.starts_with("SIP/2.0 401 ") {
            challenged += 1;
        } else if resp.starts_with("SIP/2.0 503 ") {
            refused += 1;
        } else {
            panic!("request {i}: {resp}");
        }
    }
    assert!(
        (10..=11).contains(&challenged) && refused + challenged == 16,
        "challenged {challenged}, refused {refused}"
    );
}

/// The database fails over while two nodes serve at once: both reconnect
/// by themselves and serve again within 10 s, neither declares the other
/// dead for the outage, nothing acknowledged is lost, and each follows
/// the other again — a message fe-a stored before the loss is delivered
/// when carol registers with fe-b after it, and bob, registered with fe-a
/// after it, gets a MESSAGE sent through fe-b.
#[test]
fn the_database_fails_over_under_an_active_pool() {
    let pair = store_tests::pg::pair();
    let db = pair.primary.database("pool_failover");
    let a = Server::with_config(
        "pool_failover_a",
        &format!(
            "node_id = \"fe-a\"\npool_mode = \"active\"\ndatabase = \"{}\"\n",
            pair.url(&db)
        ),
    );
    a.add_user("alice", "correct horse battery");
    a.add_user("bob", "battery staple horse");
    a.add_user("carol", "carol-own-password");
    let mut b = a.another_node("pool_failover_b", "fe-b");
    b.spawn();
    assert!(b.wait_ready(), "fe-b did not start:\n{}", b.log());
    for (s, other) in [(&a, "fe-b"), (&b, "fe-a")] {
        wait_until(
            30,
            || {
                s.log()
                    .lines()
                    .any(|l| l.contains("connected to a node of the pool") && l.contains(other))
            },
            || format!("no link to {other}:\n{}", s.log()),
        );
    }
    // Three messages for carol (offline), acknowledged (202) by fe-a.
    for n in 0..3 {
        let (ok, msgs) = a
            .sipp_start(
                "message_send_stored.xml",
                "carol",
                "alice",
                "correct horse battery",
                "127.0.0.1",
                free_port(),
                &["alice", &format!("before-{n}")],
            )
            .finish();
        assert!(ok && msgs.contains("202 Accepted"), "{msgs}");
    }
    // The primary's machine is lost; the standby is promoted.
    pair.receiving(false);
    pair.kill_primary();
    pair.receiving(true);
    let killed = std::time::Instant::now();
    pair.promote();
    // Each node reconnects by itself: a registration succeeds on each
    // within 10 s of the loss.
    for s in [&a, &b] {
        loop {
            let (ok, _) = s.sipp(
                "register_auth.xml",
                "alice",
                "correct horse battery",
                "127.0.0.1",
                free_port(),
                &[],
            );
            if ok {
                break;
            }
            assert!(
                killed.elapsed() < std::time::Duration::from_secs(10),
                "no registration within 10 s of the primary's loss:\n{}",
                s.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
    eprintln!(
        "both nodes served again {:?} after the primary's loss",
        killed.elapsed()
    );
    // Both still serve: neither was declared dead for the outage.
    let status = a.admin(&["--output=json", "status"], "");
    assert!(status.status.success(), "{}", out(&status));
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    for id in ["fe-a", "fe-b"] {
        let n = v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == id)
            .cloned()
            .unwrap_or_default();
        assert_eq!(n["state"], "serving", "{id}: {n}");
    }
    assert_eq!(
        pair.standby
            .psql(&db, "SELECT count(*) FROM pending_messages")
            .unwrap()
            .trim(),
        "3"
    );
    // carol registers with fe-b: the oldest of fe-a's messages comes.
    let (ok, received) = register_and_listen(&b, "carol", "carol-own-password").finish();
    assert!(ok, "{received}\nfe-b:\n{}", b.log());
    assert!(
        received.contains("Hello from alice: before-0"),
        "{received}"
    );
    // bob registers with fe-a after the loss; fe-b follows it again.
    let bob = register_and_listen(&a, "bob", "battery staple horse");
    // (Woken by fe-a's commit, fe-b reads it within milliseconds; a
    // second covers its half-second timer should the wake-up be lost.)
    std::thread::sleep(std::time::Duration::from_secs(1));
    let (ok, msgs) = b
        .sipp_start(
            "message_send.xml",
            "bob",
            "alice",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &["alice", "after-failover"],
        )
        .finish();
    assert!(
        ok,
        "alice's MESSAGE through fe-b after the failover:\n{msgs}\nfe-b:\n{}\nfe-a:\n{}",
        b.log(),
        a.log()
    );
    let (ok, received) = bob.finish();
    assert!(ok, "{received}");
    assert!(
        received.contains("Hello from alice: after-failover"),
        "{received}"
    );
}

/// Real clients on three nodes, on the README's recipe (TLS, digest,
/// SRTP required), as the pool's own three-node test does with SIPp:
/// baresip ben registered with fe-a (127.0.0.2) is watched by ann on
/// fe-b (127.0.0.3) and sees her presence — each publishes on its own
/// node and is notified by the other's — gets the message ann sends
/// through fe-b, and the call carol makes through fe-c (127.0.0.4), over
/// the nodes' TLS links, with media. The nodes challenge as the README's
/// defaults do (SHA-256 then MD5, MD5 over TLS only), not with the
/// harness's MD5-over-UDP for SIPp.
#[test]
fn baresip_clients_on_three_nodes_watch_message_and_call_each_other() {
    use crate::baresip::Baresip;
    use std::time::Duration;
    let (nodes, _, _) = pool_of(
        "pool_baresip",
        &["fe-a", "fe-b", "fe-c"],
        &["127.0.0.2", "127.0.0.3", "127.0.0.4"],
        "digest_algorithms = [\"SHA-256\", \"MD5\"]\ndigest_md5_unencrypted = false\n",
    );
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    a.add_user("ann", "ann-long-passphrase");
    a.add_user("ben", "ben-long-passphrase");
    a.add_user("carol", "carol-long-passphrase");
    // Privacy is on by default: ann and ben each in the other's contacts,
    // added through fe-c.
    c.add_each_other("ann", "ben");
    // The other nodes read the users' version every second.
    std::thread::sleep(Duration::from_secs(2));
    let mut ben = Baresip::start_with(a, "ben", "ben-long-passphrase", "ann", true);
    ben.cmd("/answermode auto");
    let mut ann = Baresip::start_with(b, "ann", "ann-long-passphrase", "ben", true);
    // Each watches the other through its own node; the first NOTIFYs come
    // from the node holding the watcher's connection.
    ann.wait_for("NOTIFY sip:ann");
    ben.wait_for("NOTIFY sip:ben");
    std::thread::sleep(Duration::from_millis(1500));
    // ben's PUBLISH to fe-a reaches ann's subscription on fe-b.
    ben.cmd("/presence_offline");
    ann.wait_for(
        "<sip:ben@example.test> changed status from \u{1b}[32mOnline\u{1b}[;m to \u{1b}[31mOffline",
    );
    std::thread::sleep(Duration::from_millis(1500));
    ben.cmd("/presence_online");
    ann.wait_for(
        "<sip:ben@example.test> changed status from \u{1b}[31mOffline\u{1b}[;m to \u{1b}[32mOnline",
    );
    // And ann's to fe-b reaches ben's on fe-a.
    ann.cmd("/presence_offline");
    ben.wait_for(
        "<sip:ann@example.test> changed status from \u{1b}[32mOnline\u{1b}[;m to \u{1b}[31mOffline",
    );
    ann.cmd("/presence_online");
    ann.cmd("/message hello-across-the-pool");
    ben.wait_for("sip:ann@example.test: \"hello-across-the-pool\"");
    let mut carol = Baresip::start(c, "carol", "carol-long-passphrase", "ben");
    carol.cmd("/dial sip:ben@example.test");
    ben.wait_for("Call established: sip:carol@example.test");
    carol.wait_for("Call established: sip:ben@example.test");
    ben.wait_for("incoming rtp for 'audio' established");
    carol.wait_for("incoming rtp for 'audio' established");
    let trace = ben.output();
    assert!(
        trace.contains("RTP/SAVP") && trace.contains("a=crypto:"),
        "{trace}"
    );
    carol.cmd("/hangup");
    ben.wait_for("session closed");
}

/// Nodes listening on wildcard addresses (as the README's defaults do,
/// `tls://0.0.0.0:5061`) reach each other at the address their route to
/// the database leaves from — here 127.0.0.1, the database's — without
/// `node_address`: each records that address in its row (`admin status`
/// lists it), they link (pool_of waits for it), and baresip ann through
/// fe-b reaches ben registered with fe-a.
#[test]
fn nodes_on_wildcard_listeners_reach_each_other_through_their_route_to_the_database() {
    use crate::baresip::Baresip;
    let (nodes, _, _) = pool_of(
        "pool_wildcard",
        &["fe-a", "fe-b"],
        &["0.0.0.0", "0.0.0.0"],
        "[relay]\nlisten = [\"udp://127.0.0.1:0\"]\naddress = \"127.0.0.1\"\n",
    );
    let (a, b) = (&nodes[0], &nodes[1]);
    for n in [a, b] {
        assert!(
            n.log().contains("reach this node's TLS listener at the address its route to the database leaves from"),
            "{}",
            n.log()
        );
    }
    let out = a.admin(&["status"], "");
    let status = String::from_utf8_lossy(&out.stdout);
    for n in [a, b] {
        assert!(
            status.contains(&format!("tls://127.0.0.1:{}", n.tls)),
            "{status}"
        );
    }
    a.add_user("ann", "ann-long-passphrase");
    a.add_user("ben", "ben-long-passphrase");
    // fe-b reads the users' version every second.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let to = |n: &Server| format!("127.0.0.1:{}", n.tls);
    let ben = Baresip::start_through(a, "ben", "ben-long-passphrase", "ann", "127.0.0.1", &to(a));
    let mut ann =
        Baresip::start_through(b, "ann", "ann-long-passphrase", "ben", "127.0.0.1", &to(b));
    // (fe-b is woken by fe-a's commit of ben's binding.)
    std::thread::sleep(std::time::Duration::from_secs(1));
    ann.cmd("/message hello-through-the-wildcards");
    ben.wait_for("sip:ann@example.test: \"hello-through-the-wildcards\"");
}

/// A user disabled through one node loses the registration another node
/// holds: bob registered with fe-a, disabled through fe-b's admin API, is
/// no longer registered on fe-a either (each node reloads the users when
/// their version moves, and a disabled user's bindings go).
#[test]
fn a_user_disabled_through_one_node_is_signed_out_on_the_others() {
    let (a, b, _, _) = two_nodes("pool_disable");
    passes!(
        a,
        a.sipp(
            "register_auth.xml",
            "bob",
            "battery staple horse",
            "127.0.0.1",
            free_port(),
            &[]
        )
    );
    assert_eq!(bobs_registrations(&a), 1);
    wait_until(
        10,
        || bobs_registrations(&b) == 1,
        || "fe-b never learned bob's binding".into(),
    );
    let o = b.admin(&["user", "disable", "sip:bob@example.test"], "");
    assert!(o.status.success(), "{}", out(&o));
    wait_until(
        5,
        || bobs_registrations(&a) == 0,
        || format!("bob is still registered on fe-a:\n{}", a.log()),
    );
    assert_eq!(bobs_registrations(&b), 0);
}

/// A REGISTER's credentials captured on the way to fe-a and replayed to
/// fe-b, with the attacker's Contact, are not accepted there: the nonce
/// names the process that issued it, and another node answers it as
/// stale (a new challenge), so the replay state of one node holds for
/// the pool.
#[test]
fn credentials_replayed_to_another_node_are_challenged_again() {
    let (a, b, _, _) = two_nodes("pool_replay");
    let (ok, trace) = a.sipp(
        "register_auth.xml",
        "bob",
        "battery staple horse",
        "127.0.0.1",
        free_port(),
        &[],
    );
    assert!(ok, "{trace}");
    let signed = trace
        .split("-----------------------------------------------")
        .filter_map(|block| block.split_once("\n\n").map(|(_, m)| m))
        .find(|m| m.starts_with("REGISTER ") && m.contains("Authorization:"))
        .unwrap_or_else(|| panic!("no signed REGISTER in:\n{trace}"));
    let attacker = std::net::UdpSocket::bind("127.0.0.6:0").unwrap();
    attacker
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let me = attacker.local_addr().unwrap();
    let replay: String = signed
        .trim()
        .lines()
        .map(|l| {
            let l = l.trim_end_matches('\r');
            if l.starts_with("Via:") {
                format!("Via: SIP/2.0/UDP {me};branch=z9hG4bKreplay1;rport")
            } else if l.starts_with("Contact:") {
                format!("Contact: <sip:bob@{me}>")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n")
        + "\r\n\r\n";
    attacker
        .send_to(replay.as_bytes(), (b.host.as_str(), b.udp))
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = attacker.recv(&mut buf).unwrap();
    let resp = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(
        resp.starts_with("SIP/2.0 401 ") && resp.contains("stale=true"),
        "{resp}\n(replayed:\n{replay})"
    );
}

/// bob's client registered with fe-a; a REGISTER with `Contact: *` for
/// bob sent to fe-b (another of his devices signing everything out)
/// removes the binding in the database — and fe-a, which holds it, lets
/// it go too (it kept its own bindings as its memory had them).
#[test]
fn every_binding_removed_through_another_node_goes_on_the_node_holding_it() {
    let (a, b, _, _) = two_nodes("pool_remove_all");
    passes!(
        a,
        a.sipp(
            "register_auth.xml",
            "bob",
            "battery staple horse",
            "127.0.0.1",
            free_port(),
            &[]
        )
    );
    wait_until(
        10,
        || bobs_registrations(&b) == 1,
        || "fe-b never learned bob's binding".into(),
    );
    passes!(
        b,
        b.sipp(
            "register_remove_all.xml",
            "bob",
            "battery staple horse",
            "127.0.0.1",
            free_port(),
            &[]
        )
    );
    assert_eq!(bobs_registrations(&b), 0);
    wait_until(
        5,
        || bobs_registrations(&a) == 0,
        || format!("fe-a still holds bob's binding:\n{}", a.log()),
    );
}

/// The race the previous test does not meet: fe-b removes bob's bindings
/// (`Contact: *`) while a write of fe-a's for another of bob's devices is
/// under way — held back by the test, which takes fe-a's fence lock in the
/// database. fe-a's read of the removal cannot tell whether its own
/// bindings are missing from the store because of the removal or because
/// its write is not in yet, so it keeps them — and reads again until its
/// write is in: then the phone fe-b removed goes, and the desk phone,
/// written after the removal, stays.
#[test]
fn a_removal_racing_the_holding_nodes_own_write_is_taken_once_the_write_is_in() {
    let (a, b, pg, db) = two_nodes("pool_remove_race");
    let phone = free_port();
    passes!(
        a,
        a.sipp(
            "register_auth.xml",
            "bob",
            "battery staple horse",
            "127.0.0.1",
            phone,
            &[]
        )
    );
    wait_until(
        10,
        || bobs_registrations(&b) == 1,
        || "fe-b never learned bob's binding".into(),
    );
    // fe-a's writes wait while this session holds its fence's lock.
    let mut holder = pg.psql_start(
        &db,
        "BEGIN; SELECT pg_advisory_xact_lock(1885434480, hashtext('fe-a')); SELECT pg_sleep(3); COMMIT;",
    );
    let locks = |granted: bool| {
        pg.psql(
            &db,
            &format!(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted = {granted}"
            ),
        )
        .unwrap()
        .trim()
        .parse::<u32>()
        .unwrap()
    };
    wait_until(
        10,
        || locks(true) >= 1,
        || "the test never held fe-a's fence lock".into(),
    );
    let desk = free_port();
    let desk_run = a.sipp_start(
        "register_auth.xml",
        "bob",
        "bob",
        "battery staple horse",
        "127.0.0.1",
        desk,
        &[],
    );
    // The desk phone's write has reached the database and waits.
    wait_until(
        10,
        || locks(false) >= 1,
        || format!("fe-a's write never waited for the lock:\n{}", a.log()),
    );
    passes!(
        b,
        b.sipp(
            "register_remove_all.xml",
            "bob",
            "battery staple horse",
            "127.0.0.1",
            free_port(),
            &[]
        )
    );
    assert_eq!(bobs_registrations(&b), 0);
    assert!(holder.wait().unwrap().success());
    passes!(a, desk_run.finish());
    let desk_contact = format!("127.0.0.1:{desk}");
    wait_until(
        5,
        || {
            let held = bobs_contacts(&a);
            held.len() == 1 && held[0].contains(&desk_contact)
        },
        || {
            format!(
                "fe-a holds {:?}, not the desk phone alone (the phone on port {phone} was removed):\n{}",
                bobs_contacts(&a),
                a.log()
            )
        },
    );
    wait_until(
        5,
        || bobs_registrations(&b) == 1,
        || "fe-b never learned the desk phone's binding".into(),
    );
}

/// The contacts of bob's registrations `s` lists.
fn bobs_contacts(s: &Server) -> Vec<String> {
    let o = s.admin(
        &[
            "--output=json",
            "user",
            "registrations",
            "sip:bob@example.test",
        ],
        "",
    );
    assert!(o.status.success(), "{}", out(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v.as_array()
        .map(|a| a.iter().map(|r| r["contact"].to_string()).collect())
        .unwrap_or_default()
}

/// How many registrations of bob's `s` lists (`parapet admin user
/// registrations`: what the node's memory holds).
fn bobs_registrations(s: &Server) -> usize {
    bobs_contacts(s).len()
}

/// A change made through one node while another is alive but not keeping
/// up (stopped with SIGSTOP for less than its lease, so still serving) is
/// answered once `pool_apply_wait_ms` is over, naming the node that has
/// not applied it — in the API's Parapet-Not-Applied header, which
/// `parapet admin` shows — and the node applies it once it runs again;
/// a change made while both keep up names nobody.
#[test]
fn a_change_not_applied_on_a_node_within_the_wait_names_that_node() {
    let (a, b, _, _) = two_nodes_with("pool_not_applied", "pool_apply_wait_ms = 1500\n");
    let policy_of = |id: &str| -> i64 {
        let o = a.admin(&["--output=json", "status"], "");
        assert!(o.status.success(), "{}", out(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == id)
            .and_then(|n| n["policy_version"].as_i64())
            .unwrap_or(0)
    };
    // Both keep up: the answer names nobody.
    let o = a.admin(
        &["policy", "set", "archiving", "global", "internal=true"],
        "",
    );
    assert!(o.status.success(), "{}", out(&o));
    let said = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!said.contains("not yet applied"), "{said}");
    let before = policy_of("fe-b");
    // fe-b stops reading anything; its lease (5 s) outlasts the wait.
    b.signal("STOP");
    let o = a.admin(
        &["policy", "set", "archiving", "global", "internal=false"],
        "",
    );
    b.signal("CONT");
    assert!(o.status.success(), "{}", out(&o));
    let said = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        said.contains("not yet applied on node(s) fe-b of the pool"),
        "the answer did not name fe-b: {said}"
    );
    assert!(
        a.log()
            .contains("the change is not applied on every node yet"),
        "{}",
        a.log()
    );
    // Running again, fe-b applies it and says so.
    wait_until(
        10,
        || policy_of("fe-b") > before,
        || format!("fe-b never applied the change:\n{}", b.log()),
    );
    let o = a.admin(
        &["policy", "set", "archiving", "global", "internal=true"],
        "",
    );
    assert!(o.status.success(), "{}", out(&o));
    let said = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!said.contains("not yet applied"), "{said}");
}
