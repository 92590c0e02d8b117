//! Garbage, truncated and oversized input over UDP, TCP and TLS; floods.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

use crate::harness::*;

#[test]
fn bad_input_does_not_stop_service() {
    let s = Server::new("badinput");
    s.add_user("erin", "correct horse battery");
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    // Garbage, truncated and oversized datagrams.
    udp.send_to(b"\x00\xff garbage \x01", ("127.0.0.1", s.udp))
        .unwrap();
    let full = options(&udp, "trunc");
    udp.send_to(&full.as_bytes()[..40], ("127.0.0.1", s.udp))
        .unwrap();
    let big = format!(
        "{}X-Pad: {}\r\n\r\n",
        &full[..full.len() - 2],
        "a".repeat(60_000)
    );
    let _ = udp.send_to(big.as_bytes(), ("127.0.0.1", s.udp));
    // A malformed request is answered precisely.
    let bad = options(&udp, "bad").replace("CSeq: 1 OPTIONS", "CSeq: 99999999999 OPTIONS");
    udp.send_to(bad.as_bytes(), ("127.0.0.1", s.udp)).unwrap();
    let mut buf = [0u8; 65535];
    let mut got = String::new();
    while let Ok((n, _)) = udp.recv_from(&mut buf) {
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(got.contains("SIP/2.0 400 Malformed CSeq Header"), "{got}");
    // An instant message over the configured size (2000 bytes here) is refused
    // before any other work.
    let big_im = options(&udp, "bigim")
        .replace("OPTIONS sip:", "MESSAGE sip:erin@")
        .replace("1 OPTIONS", "1 MESSAGE")
        .replace(
            "Content-Length: 0\r\n\r\n",
            &format!(
                "Content-Type: text/plain\r\nContent-Length: 3000\r\n\r\n{}",
                "x".repeat(3000)
            ),
        );
    udp.send_to(big_im.as_bytes(), ("127.0.0.1", s.udp))
        .unwrap();
    let (n, _) = udp.recv_from(&mut buf).unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(
        answer.starts_with("SIP/2.0 513 Message Too Large"),
        "{answer}"
    );
    // TCP: garbage closes that connection only; TLS port: plaintext is refused.
    for port in [s.udp, s.tls] {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = c.write_all(b"NOT SIP AT ALL\r\n\r\n");
        let mut sink = Vec::new();
        let _ = c.read_to_end(&mut sink);
    }
    // A flood of REGISTERs for a real account from one address (bounded: 300
    // datagrams) hits the per-address rate limit for unauthenticated requests...
    let flooder = UdpSocket::bind("127.0.0.3:0").unwrap();
    flooder
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    for i in 0..300 {
        let r = options(&flooder, &format!("burst{i}"))
            .replace("OPTIONS sip:", "REGISTER sip:")
            .replace("1 OPTIONS", "1 REGISTER")
            .replace("<sip:probe@", "<sip:erin@")
            .replace("To: <sip:example.test>", "To: <sip:erin@example.test>");
        let _ = flooder.send_to(r.as_bytes(), ("127.0.0.1", s.udp));
    }
    let mut limited = 0;
    while let Ok((n, _)) = flooder.recv_from(&mut buf) {
        if buf[..n].starts_with(b"SIP/2.0 503 Service Unavailable (Rate Limit Exceeded)") {
            limited += 1;
        }
    }
    assert!(limited > 0, "the flood was never rate limited");
    // ...while everyone else is served throughout.
    passes!(
        s,
        s.sipp(
            "register_auth.xml",
            "erin",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &[]
        )
    );
}

/// A TLS session to the server's TLS listener.
fn tls_session(s: &Server) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    s.tls_to(s.tls)
}

/// OPTIONS over a TLS session; returns the server's first response line.
fn tls_options(
    tls: &mut rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    id: &str,
) -> String {
    let port = tls.sock.local_addr().unwrap().port();
    let req = format!(
        "OPTIONS sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:{port};branch=z9hG4bK{id}\r\nMax-Forwards: 70\r\n\
         From: <sip:probe@{DOMAIN}>;tag=p\r\nTo: <sip:{DOMAIN}>\r\nCall-ID: {id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    tls.write_all(req.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

/// Reads until the server closes the session; `true` if it did within the
/// read timeout.
fn closed_by_server(
    tls: &mut rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
) -> (bool, String) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match tls.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => {
                break e.kind() != std::io::ErrorKind::WouldBlock
                    && e.kind() != std::io::ErrorKind::TimedOut
            }
        }
    };
    (closed, String::from_utf8_lossy(&got).into_owned())
}

#[test]
fn garbage_inside_a_tls_session_ends_only_that_session() {
    let s = Server::new("tlsgarbage");
    s.add_user("erin", "correct horse battery");
    // A well-behaved session stays open throughout.
    let mut good = tls_session(&s);
    assert_eq!(tls_options(&mut good, "good-1"), "SIP/2.0 200 OK");
    // Garbage after a valid exchange in an established session: that session ends.
    let mut bad = tls_session(&s);
    assert_eq!(tls_options(&mut bad, "bad-1"), "SIP/2.0 200 OK");
    bad.write_all(b"\x00\xffNOT SIP AT ALL\r\n\r\n").unwrap();
    let (closed, answer) = closed_by_server(&mut bad);
    assert!(closed, "the server kept a session that sent garbage open");
    assert!(!answer.contains("200 OK"), "{answer}");
    // A message announcing a body larger than any message allowed: 513
    // without waiting for (or buffering) the body, and the session ends.
    let mut big = tls_session(&s);
    let port = big.sock.local_addr().unwrap().port();
    let head = format!(
        "MESSAGE sip:erin@{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:{port};branch=z9hG4bKbig\r\nMax-Forwards: 70\r\n\
         From: <sip:probe@{DOMAIN}>;tag=p\r\nTo: <sip:erin@{DOMAIN}>\r\nCall-ID: big\r\nCSeq: 1 MESSAGE\r\n\
         Content-Type: text/plain\r\nContent-Length: 100000000\r\n\r\nxxxx"
    );
    big.write_all(head.as_bytes()).unwrap();
    let (closed, answer) = closed_by_server(&mut big);
    assert!(closed, "the server waited for a 100 MB body: {answer}");
    assert!(
        answer.starts_with("SIP/2.0 513 Message Too Large"),
        "{answer}"
    );
    // A truncated message, then the client goes away: nothing to answer.
    let mut cut = tls_session(&s);
    cut.write_all(b"OPTIONS sip:example.test SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:1;bra")
        .unwrap();
    drop(cut);
    // The good session and new sessions are served as before.
    assert_eq!(tls_options(&mut good, "good-2"), "SIP/2.0 200 OK");
    let mut fresh = tls_session(&s);
    assert_eq!(tls_options(&mut fresh, "fresh-1"), "SIP/2.0 200 OK");
    passes!(
        s,
        s.sipp(
            "register_auth.xml",
            "erin",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &[]
        )
    );
}
