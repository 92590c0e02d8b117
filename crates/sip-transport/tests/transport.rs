//! The transport against real sockets on 127.0.0.1: what a peer sends, what the
//! core receives, and what goes back on the wire.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use sip_transport::tls::{server_config, ClientAuth};
use sip_transport::{Inbound, Listener, Protocol, Target, Transport, TransportConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc::Receiver;
use tokio::time::timeout;

const T: Duration = Duration::from_secs(5);

fn options(branch: &str) -> String {
    format!(
        "OPTIONS sip:server@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bK{branch}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:server@127.0.0.1>\r\nCall-ID: {branch}\r\n\
         CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

async fn start(
    config: TransportConfig,
    listeners: Vec<Listener>,
) -> (Transport, Receiver<Inbound>) {
    Transport::bind(config, listeners).await.unwrap()
}

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn recv(rx: &mut Receiver<Inbound>) -> Inbound {
    timeout(T, rx.recv())
        .await
        .expect("message within 5 s")
        .expect("channel open")
}

async fn read_until(s: &mut (impl AsyncReadExt + Unpin), needle: &str) -> String {
    let mut acc = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&acc).contains(needle) {
        let n = timeout(T, s.read(&mut buf))
            .await
            .expect("data within 5 s")
            .unwrap();
        if n == 0 {
            break;
        }
        acc.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&acc).into_owned()
}

/// Reads until EOF; true if the server closed within 5 s.
async fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match timeout(T, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn udp_delivers_answers_and_rejects() {
    let (t, mut rx) = start(TransportConfig::default(), vec![Listener::Udp(any())]).await;
    let server = t.local_addr(Protocol::Udp).unwrap();
    let client = UdpSocket::bind(any()).await.unwrap();
    client
        .send_to(options("u1").as_bytes(), server)
        .await
        .unwrap();
    let inb = recv(&mut rx).await;
    assert_eq!(inb.source.protocol, Protocol::Udp);
    assert_eq!(inb.source.remote, client.local_addr().unwrap());
    assert_eq!(inb.message.method(), Some(sip::Method::Options));
    t.send(
        Target::Udp {
            flow: inb.source.flow,
            dest: inb.source.remote,
        },
        Bytes::from_static(b"SIP/2.0 200 OK\r\n\r\n"),
    )
    .await
    .unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = timeout(T, client.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"SIP/2.0 200 OK\r\n\r\n");

    // Garbage is dropped; a malformed request is answered by the transport itself.
    client
        .send_to(b"\x00\x01garbage\xff", server)
        .await
        .unwrap();
    client.send_to(b"\r\n\r\n", server).await.unwrap();
    let bad = options("u2").replace("SIP/2.0\r\nVia", "SIP/7.0\r\nVia");
    client.send_to(bad.as_bytes(), server).await.unwrap();
    let (n, _) = timeout(T, client.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let resp = String::from_utf8_lossy(&buf[..n]);
    assert!(
        resp.starts_with("SIP/2.0 505 Version Not Supported\r\n"),
        "{resp}"
    );
    assert!(resp.contains("Call-ID: u2\r\n"));
    // ... and service continues.
    client
        .send_to(options("u3").as_bytes(), server)
        .await
        .unwrap();
    assert_eq!(
        recv(&mut rx)
            .await
            .message
            .header(sip::HeaderKind::CallId)
            .unwrap()
            .value,
        "u3"
    );
    assert!(rx.try_recv().is_err(), "nothing else reached the core");
    // Never to broadcast.
    let r = t
        .send(
            Target::Udp {
                flow: inb.source.flow,
                dest: "255.255.255.255:5060".parse().unwrap(),
            },
            Bytes::new(),
        )
        .await;
    assert!(matches!(
        r,
        Err(sip_transport::SendError::ForbiddenDestination)
    ));
}

#[tokio::test]
async fn tcp_frames_pipelined_and_split_messages_and_answers_keepalives() {
    let (t, mut rx) = start(TransportConfig::default(), vec![Listener::Tcp(any())]).await;
    let mut c = TcpStream::connect(t.local_addr(Protocol::Tcp).unwrap())
        .await
        .unwrap();
    let two = format!("{}{}", options("t1"), options("t2"));
    let (a, b) = two.as_bytes().split_at(100);
    c.write_all(a).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.write_all(b).await.unwrap();
    let m1 = recv(&mut rx).await;
    let m2 = recv(&mut rx).await;
    assert_eq!(
        m1.message.header(sip::HeaderKind::CallId).unwrap().value,
        "t1"
    );
    assert_eq!(
        m2.message.header(sip::HeaderKind::CallId).unwrap().value,
        "t2"
    );
    assert_eq!(m1.source.flow, m2.source.flow);
    assert_eq!(m1.source.protocol, Protocol::Tcp);
    // The response goes back over the same connection (RFC 5923 reuse).
    t.send(
        Target::Flow(m1.source.flow),
        Bytes::from_static(b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"),
    )
    .await
    .unwrap();
    assert!(read_until(&mut c, "\r\n\r\n")
        .await
        .starts_with("SIP/2.0 200 OK"));
    // RFC 5626: CRLFCRLF ping gets a CRLF pong.
    c.write_all(b"\r\n\r\n").await.unwrap();
    let mut pong = [0u8; 2];
    timeout(T, c.read_exact(&mut pong)).await.unwrap().unwrap();
    assert_eq!(&pong, b"\r\n");
    assert_eq!(t.connections(), 1);
}

#[tokio::test]
async fn tcp_framing_error_answers_then_closes_only_that_connection() {
    let (t, mut rx) = start(TransportConfig::default(), vec![Listener::Tcp(any())]).await;
    let addr = t.local_addr(Protocol::Tcp).unwrap();
    let mut good = TcpStream::connect(addr).await.unwrap();
    let mut bad = TcpStream::connect(addr).await.unwrap();
    // No Content-Length on a stream: 400, then the connection closes.
    bad.write_all(
        options("b1")
            .replace("Content-Length: 0\r\n", "")
            .as_bytes(),
    )
    .await
    .unwrap();
    let text = read_until(&mut bad, "\r\n\r\n").await;
    assert!(
        text.starts_with("SIP/2.0 400 Missing Content-Length\r\n"),
        "{text}"
    );
    assert!(closed(&mut bad).await);
    good.write_all(options("g1").as_bytes()).await.unwrap();
    assert_eq!(
        recv(&mut rx)
            .await
            .message
            .header(sip::HeaderKind::CallId)
            .unwrap()
            .value,
        "g1"
    );
    // Oversized: a header block that never ends is cut at the message limit.
    let cfg = TransportConfig {
        limits: sip::Limits {
            max_message_size: 2048,
            ..sip::Limits::DEFAULT
        },
        ..Default::default()
    };
    let (t2, _rx2) = start(cfg, vec![Listener::Tcp(any())]).await;
    let mut big = TcpStream::connect(t2.local_addr(Protocol::Tcp).unwrap())
        .await
        .unwrap();
    let _ = big
        .write_all(format!("OPTIONS sip:a@b SIP/2.0\r\nX: {}", "a".repeat(4000)).as_bytes())
        .await;
    assert!(closed(&mut big).await);
}

#[tokio::test]
async fn per_ip_limit_idle_and_slow_message_timeouts() {
    let cfg = TransportConfig {
        max_connections_per_ip: 2,
        idle_timeout: Duration::from_millis(600),
        message_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let (t, _rx) = start(cfg, vec![Listener::Tcp(any())]).await;
    let addr = t.local_addr(Protocol::Tcp).unwrap();
    let mut c1 = TcpStream::connect(addr).await.unwrap();
    let _c2 = TcpStream::connect(addr).await.unwrap();
    let mut c3 = TcpStream::connect(addr).await.unwrap();
    assert!(
        closed(&mut c3).await,
        "third connection from one address is refused"
    );
    // A partial message must complete within message_timeout even if bytes trickle.
    c1.write_all(b"OPTIONS sip:a@b SIP/2.0\r\n").await.unwrap();
    let start = tokio::time::Instant::now();
    assert!(closed(&mut c1).await);
    assert!(
        start.elapsed() < Duration::from_millis(550),
        "closed by the message timeout, not idle"
    );
    // Idle connections close.
    let mut c4 = TcpStream::connect(addr).await.unwrap();
    assert!(closed(&mut c4).await);
}

struct Pki {
    ca: CertificateDer<'static>,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: PrivateKeyDer<'static>,
    client_chain: Vec<CertificateDer<'static>>,
    client_key: PrivateKeyDer<'static>,
}

/// A client of the fixture's CA presenting its client certificate.
fn sip_client_tls(p: &Pki) -> sip_transport::ClientTls {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(p.ca.clone()).unwrap();
    let cc = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(p.client_chain.clone(), p.client_key.clone_key())
    .unwrap();
    sip_transport::ClientTls {
        config: Arc::new(cc),
        server_name: ServerName::try_from("localhost").unwrap(),
    }
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf = |names: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        (
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    };
    let (server_chain, server_key) = leaf(vec!["localhost".into(), "127.0.0.1".into()]);
    let (client_chain, client_key) = leaf(vec!["alice.example.com".into()]);
    Pki {
        ca: ca.der().clone(),
        server_chain,
        server_key,
        client_chain,
        client_key,
    }
}

/// Which client certificates the test server asks for.
#[derive(Clone, Copy)]
enum Auth {
    None,
    Optional,
    Required,
}

/// The server's TLS configuration from the test PKI.
fn server(p: &Pki, auth: Auth) -> Arc<rustls::ServerConfig> {
    let auth = match auth {
        Auth::None => ClientAuth::None,
        Auth::Optional => ClientAuth::Optional(vec![p.ca.clone()]),
        Auth::Required => ClientAuth::Required(vec![p.ca.clone()]),
    };
    server_config(p.server_chain.clone(), p.server_key.clone_key(), auth).unwrap()
}

fn client_tls(
    p: &Pki,
    with_cert: bool,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(p.ca.clone()).unwrap();
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .with_root_certificates(roots);
    let c = if with_cert {
        b.with_client_auth_cert(p.client_chain.clone(), p.client_key.clone_key())
            .unwrap()
    } else {
        b.with_no_client_auth()
    };
    tokio_rustls::TlsConnector::from(Arc::new(c))
}

#[tokio::test]
async fn tls_with_optional_client_certificate() {
    let p = pki();
    let sc = server(&p, Auth::Optional);
    let cfg = TransportConfig {
        handshake_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let (t, mut rx) = start(cfg, vec![Listener::Tls(any(), sc)]).await;
    let addr = t.local_addr(Protocol::Tls).unwrap();
    let name = ServerName::try_from("localhost").unwrap();

    // With a client certificate: the verified chain reaches the core.
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = client_tls(&p, true, &[&rustls::version::TLS13])
        .connect(name.clone(), tcp)
        .await
        .unwrap();
    tls.write_all(options("s1").as_bytes()).await.unwrap();
    let inb = recv(&mut rx).await;
    assert_eq!(inb.source.protocol, Protocol::Tls);
    let chain = inb
        .source
        .peer_certificates
        .expect("client chain passed up");
    assert_eq!(chain[0], p.client_chain[0]);
    t.send(
        Target::Flow(inb.source.flow),
        Bytes::from_static(b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"),
    )
    .await
    .unwrap();
    assert!(read_until(&mut tls, "\r\n\r\n")
        .await
        .starts_with("SIP/2.0 200 OK"));

    // TLS 1.2 without a client certificate works too.
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls12 = client_tls(&p, false, &[&rustls::version::TLS12])
        .connect(name, tcp)
        .await
        .unwrap();
    tls12.write_all(options("s2").as_bytes()).await.unwrap();
    let inb = recv(&mut rx).await;
    assert!(inb.source.peer_certificates.is_none());
    assert_eq!(
        tls12.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );

    // A client that never starts its handshake is cut off.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    assert!(closed(&mut silent).await);
}

/// Sends `n` messages to a peer that reads nothing; how many were queued
/// before the transport gave up on it.
async fn queued_before_cut(t: &Transport, flow: sip_transport::FlowId, n: usize) -> usize {
    // Large enough that the socket buffers fill long before `n`.
    let big = Bytes::from(format!(
        "SIP/2.0 200 OK\r\nX-Fill: {}\r\nContent-Length: 0\r\n\r\n",
        "x".repeat(16_000)
    ));
    for i in 0..n {
        if t.send(Target::Flow(flow), big.clone()).await.is_err() {
            return i;
        }
    }
    n
}

#[tokio::test]
async fn a_wide_peers_connection_queues_more_before_it_counts_as_not_reading() {
    let p = pki();
    let sc = server(&p, Auth::Optional);
    let cfg = TransportConfig {
        max_outbound_queue: 8,
        wide_outbound_queue: 400,
        ..Default::default()
    };
    let (t, mut rx) = start(cfg, vec![Listener::Tls(any(), sc)]).await;
    let addr = t.local_addr(Protocol::Tls).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let connect = |with_cert: bool| {
        let (p, name) = (&p, name.clone());
        async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let mut tls = client_tls(p, with_cert, &[&rustls::version::TLS13])
                .connect(name, tcp)
                .await
                .unwrap();
            tls.write_all(options("w").as_bytes()).await.unwrap();
            tls
        }
    };
    // Not a wide peer (the set is empty, then holds another certificate):
    // cut soon.
    let _c1 = connect(true).await;
    let flow = recv(&mut rx).await.source.flow;
    assert!(queued_before_cut(&t, flow, 1000).await < 400);
    t.wide_peers()
        .set([sip_transport::fingerprint(&p.server_chain[0])]);
    let _c2 = connect(true).await;
    let flow = recv(&mut rx).await.source.flow;
    assert!(queued_before_cut(&t, flow, 1000).await < 400);
    // The client's certificate is a wide peer's: it holds the wide queue.
    t.wide_peers()
        .set([sip_transport::fingerprint(&p.client_chain[0])]);
    let _c3 = connect(true).await;
    let flow = recv(&mut rx).await.source.flow;
    assert!(queued_before_cut(&t, flow, 1000).await >= 400);
    // Without a certificate nobody is one.
    let _c4 = connect(false).await;
    let flow = recv(&mut rx).await.source.flow;
    assert!(queued_before_cut(&t, flow, 1000).await < 400);
}

#[tokio::test]
async fn tls_refuses_plaintext_sip() {
    let p = pki();
    let sc = server(&p, Auth::None);
    let (t, mut rx) = start(TransportConfig::default(), vec![Listener::Tls(any(), sc)]).await;
    let mut c = TcpStream::connect(t.local_addr(Protocol::Tls).unwrap())
        .await
        .unwrap();
    c.write_all(options("p1").as_bytes()).await.unwrap();
    assert!(closed(&mut c).await);
    assert!(
        timeout(Duration::from_millis(200), rx.recv())
            .await
            .is_err(),
        "nothing reached the core"
    );
}

#[tokio::test]
async fn websocket_requires_the_sip_subprotocol() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;
    let (t, mut rx) = start(TransportConfig::default(), vec![Listener::Ws(any())]).await;
    let addr = t.local_addr(Protocol::Ws).unwrap();
    let url = format!("ws://{addr}/");

    let mut req = url.as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "sip".parse().unwrap());
    let (mut ws, resp) =
        tokio_tungstenite::client_async(req, TcpStream::connect(addr).await.unwrap())
            .await
            .unwrap();
    assert_eq!(resp.headers().get("Sec-WebSocket-Protocol").unwrap(), "sip");
    ws.send(Message::text(options("w1"))).await.unwrap();
    let inb = recv(&mut rx).await;
    assert_eq!(inb.source.protocol, Protocol::Ws);
    t.send(
        Target::Flow(inb.source.flow),
        Bytes::from_static(b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"),
    )
    .await
    .unwrap();
    let reply = timeout(T, ws.next()).await.unwrap().unwrap().unwrap();
    assert!(reply.into_text().unwrap().starts_with("SIP/2.0 200 OK"));
    // A malformed request over WS is answered and the connection stays up.
    ws.send(Message::text(options("w2").replace(
        "CSeq: 1 OPTIONS",
        "CSeq: 1 OPTIONS\r\nCSeq: 2 OPTIONS",
    )))
    .await
    .unwrap();
    let reply = timeout(T, ws.next()).await.unwrap().unwrap().unwrap();
    assert!(reply
        .into_text()
        .unwrap()
        .starts_with("SIP/2.0 400 Duplicate CSeq Header"));

    let req = url.as_str().into_client_request().unwrap();
    let r = tokio_tungstenite::client_async(req, TcpStream::connect(addr).await.unwrap()).await;
    assert!(r.is_err(), "no subprotocol: handshake refused");
}

#[tokio::test]
async fn secure_websocket_carries_sip() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;
    let p = pki();
    let sc = server(&p, Auth::None);
    let (t, mut rx) = start(TransportConfig::default(), vec![Listener::Wss(any(), sc)]).await;
    let addr = t.local_addr(Protocol::Wss).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = client_tls(&p, false, &[&rustls::version::TLS13])
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let mut req = format!("wss://localhost:{}/", addr.port())
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "sip".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::client_async(req, tls).await.unwrap();
    ws.send(Message::text(options("wss1"))).await.unwrap();
    let inb = recv(&mut rx).await;
    assert_eq!(inb.source.protocol, Protocol::Wss);
    assert!(inb.source.protocol.is_secure());
    t.send(
        Target::Flow(inb.source.flow),
        Bytes::from_static(b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"),
    )
    .await
    .unwrap();
    let reply = timeout(T, ws.next()).await.unwrap().unwrap().unwrap();
    assert!(reply.into_text().unwrap().starts_with("SIP/2.0 200 OK"));
}

#[tokio::test]
async fn outbound_tls_connection_is_served_and_reused() {
    let p = pki();
    let sc = server(&p, Auth::Required);
    // "Remote" server and a local transport that connects to it.
    let (remote, mut remote_rx) =
        start(TransportConfig::default(), vec![Listener::Tls(any(), sc)]).await;
    let (local, mut local_rx) = start(TransportConfig::default(), vec![]).await;
    let raddr = remote.local_addr(Protocol::Tls).unwrap();
    let ctls = sip_client_tls(&p);
    let flow = local.connect(raddr, Some(ctls.clone())).await.unwrap();
    assert_eq!(
        local.connect(raddr, Some(ctls)).await.unwrap(),
        flow,
        "the live connection is reused"
    );
    local
        .send(Target::Flow(flow), Bytes::from(options("o1")))
        .await
        .unwrap();
    let at_remote = recv(&mut remote_rx).await;
    assert!(
        at_remote.source.peer_certificates.is_some(),
        "mutual TLS: our certificate was presented"
    );
    // The remote answers over the same connection; it reaches our inbound channel.
    remote
        .send(
            Target::Flow(at_remote.source.flow),
            Bytes::from(options("o2")),
        )
        .await
        .unwrap();
    let back = recv(&mut local_rx).await;
    assert_eq!(back.source.flow, flow);
    assert_eq!(back.source.protocol, Protocol::Tls);
    assert_eq!(back.source.peer_certificates.unwrap()[0], p.server_chain[0]);
    // A server that wants a client certificate refuses a client without one.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(p.ca.clone()).unwrap();
    let anon = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let (other, _rx) = start(TransportConfig::default(), vec![]).await;
    let r = other
        .connect(
            raddr,
            Some(sip_transport::ClientTls {
                config: Arc::new(anon),
                server_name: ServerName::try_from("localhost").unwrap(),
            }),
        )
        .await;
    if let Ok(f) = r {
        // TLS 1.3 reports the refusal after the handshake: the first send fails or the flow dies.
        let _ = other
            .send(Target::Flow(f), Bytes::from(options("o3")))
            .await;
        assert!(
            timeout(Duration::from_millis(500), remote_rx.recv())
                .await
                .is_err(),
            "nothing from an unauthenticated client"
        );
    }
}

#[tokio::test]
async fn one_connections_flood_holds_only_its_share_of_the_core_queue() {
    let cfg = TransportConfig {
        inbound_queue: 100,
        max_inbound_per_connection: 8,
        ..Default::default()
    };
    let (t, mut rx) = start(cfg, vec![Listener::Tcp(any())]).await;
    let addr = t.local_addr(Protocol::Tcp).unwrap();
    // One connection writes 300 requests; the core takes none yet.
    let mut flood = TcpStream::connect(addr).await.unwrap();
    let burst: String = (0..300).map(|i| options(&format!("flood{i}"))).collect();
    let writer = tokio::spawn(async move {
        flood.write_all(burst.as_bytes()).await.unwrap();
        flood
    });
    let deadline = tokio::time::Instant::now() + T;
    while rx.len() < 8 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rx.len(), 8, "the flooding connection's share");
    // Another connection's request finds room at once.
    let mut other = TcpStream::connect(addr).await.unwrap();
    other.write_all(options("other").as_bytes()).await.unwrap();
    let deadline = tokio::time::Instant::now() + T;
    while rx.len() < 9 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut call_ids = Vec::new();
    for _ in 0..9 {
        let m = recv(&mut rx).await;
        call_ids.push(
            sip::RequestFields::extract(&m.message)
                .unwrap()
                .call_id
                .to_owned(),
        );
    }
    assert_eq!(
        call_ids.last().map(String::as_str),
        Some("other"),
        "{call_ids:?}"
    );
    // Taking messages gives the flood its places back: all 300 arrive.
    let mut flood_seen = 8;
    while flood_seen < 300 {
        let m = recv(&mut rx).await;
        assert_ne!(m.source.remote, other.local_addr().unwrap());
        flood_seen += 1;
    }
    writer.await.unwrap();
}

/// A TLS peer that writes and never reads: once its queue overflows the
/// connection is closed at once, even while it waits for a place in the
/// core's queue (it waited for the core to take messages before, and a
/// core that took none kept it open and the peer's writes hanging).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_peer_that_never_reads_is_closed_once_its_queue_overflows() {
    let p = pki();
    let sc = server(&p, Auth::Optional);
    let cfg = TransportConfig {
        max_outbound_queue: 16,
        ..Default::default()
    };
    let (t, mut rx) = start(cfg, vec![Listener::Tls(any(), sc)]).await;
    let addr = t.local_addr(Protocol::Tls).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = client_tls(&p, false, &[&rustls::version::TLS13])
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (_unread, mut w) = tokio::io::split(tls);
    let writer = tokio::spawn(async move {
        let started = std::time::Instant::now();
        for i in 0..200_000 {
            if started.elapsed() > Duration::from_secs(30)
                || w.write_all(options(&format!("n{i}")).as_bytes())
                    .await
                    .is_err()
            {
                return i;
            }
        }
        200_000
    });
    // The core answers every request at length, no faster than the
    // connection writes while the peer's buffers take it (the queue
    // overflows once the socket is full); the peer reads none.
    let big = Bytes::from(vec![b'x'; 16 * 1024]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut cut = false;
    while !cut && tokio::time::Instant::now() < deadline {
        if let Ok(Some(m)) = timeout(Duration::from_millis(200), rx.recv()).await {
            cut = t
                .send(Target::Flow(m.source.flow), big.clone())
                .await
                .is_err();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    assert!(cut, "the queue never overflowed");
    let ended = timeout(T, writer).await;
    assert!(
        ended.is_ok(),
        "the connection was not closed: the peer's writes still wait"
    );
}

/// Waits until `rx` holds `n` messages (or 5 s), then a little more, and
/// returns how many it holds.
async fn settled_len(rx: &Receiver<Inbound>, n: usize) -> usize {
    let deadline = tokio::time::Instant::now() + T;
    while rx.len() < n && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    rx.len()
}

#[tokio::test]
async fn a_wide_peer_by_rule_and_a_link_opened_wide_hold_half_the_core_queue() {
    let cfg = || TransportConfig {
        inbound_queue: 100,
        max_inbound_per_connection: 8,
        ..Default::default()
    };
    let p = pki();
    let sc = server(&p, Auth::Required);
    let (remote, mut remote_rx) = start(cfg(), vec![Listener::Tls(any(), sc)]).await;
    // The rule admits our client certificate (as a node's certificate).
    let leaf = p.client_chain[0].to_vec();
    remote
        .wide_peers()
        .set_rule(Some(Arc::new(move |l: &[u8]| l == leaf.as_slice())));
    let (local, local_rx) = start(cfg(), vec![]).await;
    let raddr = remote.local_addr(Protocol::Tls).unwrap();
    let ctls = sip_client_tls(&p);
    // Opened wide: what the remote sends back may fill half our queue too.
    let flow = local.open_wide(raddr, Some(ctls)).await.unwrap();
    for i in 0..80 {
        local
            .send(Target::Flow(flow), Bytes::from(options(&format!("w{i}"))))
            .await
            .unwrap();
    }
    assert_eq!(
        settled_len(&remote_rx, 50).await,
        50,
        "the rule's peer holds half the queue, not 8 places"
    );
    // (A connection waiting for a place in the queue sends nothing
    // either: the remote takes what it got first.)
    let back = recv(&mut remote_rx).await.source.flow;
    for _ in 1..80 {
        recv(&mut remote_rx).await;
    }
    for i in 0..80 {
        remote
            .send(Target::Flow(back), Bytes::from(options(&format!("b{i}"))))
            .await
            .unwrap();
    }
    assert_eq!(
        settled_len(&local_rx, 50).await,
        50,
        "the link opened wide holds half the queue, not 8 places"
    );
    // Without the rule, a new connection with the same certificate gets
    // a client's 8 places.
    remote.wide_peers().set_rule(None);
    let (plain, _plain_rx) = start(cfg(), vec![]).await;
    let f2 = plain.open(raddr, Some(sip_client_tls(&p))).await.unwrap();
    for i in 0..30 {
        plain
            .send(Target::Flow(f2), Bytes::from(options(&format!("p{i}"))))
            .await
            .unwrap();
    }
    assert_eq!(settled_len(&remote_rx, 8).await, 8);
}
