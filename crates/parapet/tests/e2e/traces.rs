//! SIP traces: every message kept in the node's ring without credentials,
//! shown as a call's ladder to operators (bodies only to those allowed),
//! and sent to a HEP v3 collector as Homer receives them.

use crate::harness::*;

#[test]
fn a_calls_messages_are_traced_without_credentials_shown_as_a_ladder_and_sent_to_homer() {
    let collector = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    collector
        .set_read_timeout(Some(std::time::Duration::from_millis(200)))
        .unwrap();
    let port = collector.local_addr().unwrap().port();
    let s = Server::with_config(
        "traces",
        &format!("[trace]\nhep = \"udp://127.0.0.1:{port}\"\nhep_agent_id = 9\n"),
    );
    s.add_user("alice", "correct horse battery");
    s.add_user("bob", "battery staple horse");
    let bob = register_and_listen(&s, "bob", "battery staple horse");
    let (ok, msgs) = s
        .sipp_start(
            "message_send.xml",
            "bob",
            "alice",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &["alice", "traced-1"],
        )
        .finish();
    assert!(ok, "{msgs}");
    assert!(bob.finish().0);
    let call_id = msgs
        .lines()
        .find_map(|l| l.trim().strip_prefix("Call-ID: "))
        .unwrap()
        .to_string();

    // The administrator sees the call, bodies included; the credentials
    // alice's client sent are not there.
    let trace = |token: &str, args: &[&str]| {
        let mut a = vec!["--output=json", "trace"];
        a.extend_from_slice(args);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let o = s.admin_as(token, &a, "");
            assert!(o.status.success(), "{}", out(&o));
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            // Written by the trace writer within a few hundred ms.
            if v["messages"].as_array().is_some_and(|m| m.len() >= 5)
                || std::time::Instant::now() > deadline
            {
                return v;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    let v = trace(&s.token, &["--call-id", &call_id]);
    let list = v["messages"].as_array().unwrap();
    let lines: Vec<(&str, &str)> = list
        .iter()
        .map(|m| {
            (
                m["direction"].as_str().unwrap(),
                m["first_line"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(
        list.iter().all(|m| m["call_id"] == call_id.as_str()),
        "{v:#}"
    );
    // MESSAGE in, 407 out, MESSAGE with credentials in, MESSAGE out to
    // bob, bob's 200 in, the 200 out to alice.
    let starts: Vec<String> = lines
        .iter()
        .map(|(d, l)| format!("{d} {}", l.split(' ').take(2).collect::<Vec<_>>().join(" ")))
        .collect();
    for want in [
        "in MESSAGE sip:bob@example.test",
        "out SIP/2.0 407",
        "in SIP/2.0 200",
        "out SIP/2.0 200",
    ] {
        assert!(
            starts.iter().any(|s| s.starts_with(want)),
            "{want} not in {starts:#?}"
        );
    }
    assert!(
        starts
            .iter()
            .filter(|s| s.starts_with("out MESSAGE sip:bob@127.0.0.1"))
            .count()
            == 1,
        "{starts:#?}"
    );
    assert_eq!(v["bodies_shown"], true);
    let all = v.to_string();
    // What alice wrote is not in the trace (the archive alone may keep
    // it): only its size.
    assert!(!all.contains("traced-1"), "{all}");
    assert!(all.contains("bytes of instant message not kept"), "{all}");
    assert!(all.contains("(credentials not kept)"), "{all}");
    assert!(
        !all.contains("response="),
        "credentials in the trace: {all}"
    );
    // Nor anywhere on disk; the files are the owner's only.
    let dir = s.data_dir().join("traces");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        assert_eq!(e.metadata().unwrap().permissions().mode() & 0o777, 0o600);
        let bytes = std::fs::read(e.path()).unwrap();
        assert!(
            !bytes.windows(9).any(|w| w == b"response="),
            "credentials in {}",
            e.path().display()
        );
        assert!(
            !bytes.windows(8).any(|w| w == b"traced-1"),
            "the message's text in {}",
            e.path().display()
        );
    }

    // A server administrator reads the ladder without the bodies.
    let ops = token_for(&s, "server-administrator");
    let v = trace(&ops, &["--user", "sip:alice@example.test"]);
    assert_eq!(v["bodies_shown"], false);
    let text = v.to_string();
    assert!(!text.contains("traced-1"), "{text}");
    assert!(text.contains("bytes of body not shown"), "{text}");
    let o = s.admin_as(&ops, &["trace", "--call-id", &call_id], "");
    assert!(o.status.success(), "{}", out(&o));
    let ladder = out(&o);
    assert!(
        ladder.contains("--UDP--> front-end") && ladder.contains("MESSAGE sip:bob@example.test"),
        "{ladder}"
    );
    assert!(ladder.contains("bodies not shown"), "{ladder}");
    // Not for view-only; every read audited.
    let viewer = token_for(&s, "view-only");
    let o = s.admin_as(&viewer, &["trace", "--call-id", &call_id], "");
    assert!(
        out(&o).contains("does not allow traces.read"),
        "{}",
        out(&o)
    );
    let o = s.admin(
        &["--output=json", "audit", "list", "--object", "traces:"],
        "",
    );
    let audit: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        audit
            .iter()
            .filter(|r| r["action"] == "traces.read" && r["outcome"] == "ok")
            .count()
            >= 3,
        "{audit:#?}"
    );

    // The collector got the same messages as HEP v3, agent 9.
    let mut buf = [0u8; 65_536];
    let mut seen = Vec::new();
    while let Ok(n) = collector.recv(&mut buf) {
        seen.push(trace::hep::decode(&buf[..n]).expect("a HEP v3 packet"));
    }
    let payloads: Vec<String> = seen
        .iter()
        .filter(|c| {
            c.iter()
                .any(|(k, v)| *k == 0x000c && v == &9u32.to_be_bytes())
        })
        .filter_map(|c| {
            c.iter()
                .find(|(k, _)| *k == 0x000f)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        })
        .collect();
    assert!(
        payloads
            .iter()
            .any(|p| p.starts_with("MESSAGE sip:bob@127.0.0.1")),
        "{payloads:#?}"
    );
    assert!(
        payloads.iter().all(|p| !p.contains("response=")),
        "credentials sent to the collector"
    );
    assert!(
        payloads.iter().all(|p| !p.contains("traced-1")),
        "the message's text sent to the collector"
    );
    let m = s.http_get("/metrics", None).1;
    assert!(m.contains("parapet_trace_dropped_total 0"), "{m}");
    // Signalling in clear to the collector is a finding.
    let (_, text) = s.security_check();
    assert!(text.contains("[MEDIUM] config trace.hep"), "{text}");
}

/// A decoded HEP packet: (chunk type, value).
type HepChunks = Vec<(u16, Vec<u8>)>;

/// A HEP collector over TLS, as heplify-server listens: a certificate for
/// `localhost` from its own CA; every packet it reads, decoded, is sent on.
fn tls_collector(
    ca: &rcgen::Certificate,
    ca_key: &rcgen::KeyPair,
) -> (u16, std::sync::mpsc::Receiver<HepChunks>) {
    use std::io::Read;
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let cert = params.signed_by(&key, ca, ca_key).unwrap();
    let tls = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    let tls = std::sync::Arc::new(tls);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Bounded: a few connections (the sender re-opens after a
        // failure), each read until it closes or goes quiet.
        for _ in 0..4 {
            let Ok((tcp, _)) = listener.accept() else {
                return;
            };
            tcp.set_read_timeout(Some(std::time::Duration::from_secs(15)))
                .unwrap();
            let conn = rustls::ServerConnection::new(tls.clone()).unwrap();
            let mut s = rustls::StreamOwned::new(conn, tcp);
            let mut buf = Vec::new();
            let mut chunk = [0u8; 16_384];
            while let Ok(n) = s.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                // HEP over a stream: each packet's length is in its header.
                while buf.len() >= 6 {
                    let len = usize::from(u16::from_be_bytes([buf[4], buf[5]]));
                    if buf.len() < len {
                        break;
                    }
                    let p: Vec<u8> = buf.drain(..len).collect();
                    let _ = tx.send(trace::hep::decode(&p).expect("a HEP v3 packet"));
                }
            }
        }
    });
    (port, rx)
}

#[test]
fn a_hep_collector_over_tls_gets_every_message_and_one_with_another_certificate_nothing() {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "Homer test CA");
    let ca = p.self_signed(&ca_key).unwrap();
    let (port, packets) = tls_collector(&ca, &ca_key);
    let dir = std::env::temp_dir().join(format!("parapet-hep-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("homer-ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let s = Server::with_config(
        "hep-tls",
        &format!(
            "[trace]\nhep = \"tls://localhost:{port}\"\nhep_trusted_cas = [\"{}\"]\nhep_agent_id = 5\n",
            ca_file.display()
        ),
    );
    s.add_user("frank", "correct horse battery");
    passes!(
        s,
        s.sipp(
            "register_auth.xml",
            "frank",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &[]
        )
    );
    // The REGISTERs and their answers arrive over the TLS connection,
    // agent 5, the credentials cut.
    let mut payloads = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let registered = |p: &Vec<String>| {
        p.iter()
            .any(|m| m.starts_with("SIP/2.0 200") && m.contains(" REGISTER\r\n"))
    };
    while !registered(&payloads) && std::time::Instant::now() < deadline {
        if let Ok(chunks) = packets.recv_timeout(std::time::Duration::from_millis(200)) {
            assert!(
                chunks
                    .iter()
                    .any(|(k, v)| *k == 0x000c && v == &5u32.to_be_bytes()),
                "{chunks:?}"
            );
            if let Some((_, v)) = chunks.iter().find(|(k, _)| *k == 0x000f) {
                payloads.push(String::from_utf8_lossy(v).into_owned());
            }
        }
    }
    assert!(
        payloads
            .iter()
            .filter(|p| p.starts_with("REGISTER sip:"))
            .count()
            >= 2,
        "{payloads:#?}"
    );
    assert!(registered(&payloads), "{payloads:#?}");
    assert!(
        payloads.iter().all(|p| !p.contains("response=")),
        "{payloads:#?}"
    );
    let m = s.http_get("/metrics", None).1;
    assert!(m.contains("parapet_trace_hep_failed_total 0"), "{m}");
    // TLS to the collector is not a finding; UDP would be.
    let o = s.admin(&["security", "show"], "");
    let text = out(&o);
    assert!(text.contains("HEP v3 over TLS to localhost"), "{text}");
    let (_, text) = s.security_check();
    assert!(!text.contains("config trace.hep"), "{text}");

    // A collector whose certificate the configured CAs do not vouch for
    // gets nothing: the server refuses the handshake and counts the loss.
    let other_key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let other = p.self_signed(&other_key).unwrap();
    let (port2, packets2) = tls_collector(&other, &other_key);
    let s2 = Server::with_config(
        "hep-tls-untrusted",
        &format!(
            "[trace]\nhep = \"tls://localhost:{port2}\"\nhep_trusted_cas = [\"{}\"]\n",
            ca_file.display()
        ),
    );
    s2.add_user("frank", "correct horse battery");
    passes!(
        s2,
        s2.sipp(
            "register_auth.xml",
            "frank",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &[]
        )
    );
    assert!(packets2
        .recv_timeout(std::time::Duration::from_secs(2))
        .is_err());
    let m = s2.http_get("/metrics", None).1;
    let failed: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("parapet_trace_hep_failed_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(failed >= 4, "{m}");
    assert!(s2.log().contains("cannot reach the HEP collector over TLS"));
    let _ = std::fs::remove_dir_all(&dir);
}
