//! An axum router served over TLS, with bounds: connections in all and per
//! address, the TLS handshake, reading a request's headers, and a
//! connection's whole life are each limited, so a slow or greedy peer costs
//! a bounded share. HTTP/1.1 only (ALPN `http/1.1`); each request carries
//! the peer's address as [`axum::extract::ConnectInfo`].
//!
//! axum's own `serve` has no TLS and no connection limits, hence this loop
//! (hyper's connection builder does the HTTP; connections are admitted by
//! the SIP transport's `guard::Admission`, as SIP connections are).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::ServerConfig;
use sip_transport::guard::Admission;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// The bounds of one listener.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_connections: usize,
    pub(crate) max_per_address: usize,
    pub(crate) handshake: Duration,
    /// Time allowed for a request's headers, and idle time between requests.
    pub(crate) header_read: Duration,
    /// A connection's whole life; the client reconnects after it.
    pub(crate) lifetime: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            max_per_address: 32,
            handshake: Duration::from_secs(10),
            header_read: Duration::from_secs(30),
            lifetime: Duration::from_secs(600),
        }
    }
}

static ACCEPT_FAILED: sip_transport::logging::RateLimited =
    sip_transport::logging::RateLimited::new();

/// A TLS configuration for HTTP from the listeners' (ALPN `http/1.1`).
pub(crate) fn tls_for_http(base: &ServerConfig) -> Arc<ServerConfig> {
    let mut c = base.clone();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(c)
}

/// Serves `app` on `listener` until the process ends.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    app: Router,
    limits: Limits,
) {
    let acceptor = TlsAcceptor::from(tls);
    let admission = Admission::new(limits.max_connections, limits.max_per_address);
    loop {
        let (sock, remote) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors and the like: wait rather than spin.
                if let Some(suppressed) = ACCEPT_FAILED.allow() {
                    tracing::warn!(error = %e, suppressed, "user listener: accept failed");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Over a limit: the connection is closed at once.
        let Ok(guard) = admission.admit(remote.ip()) else {
            continue;
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let _guard = guard;
            let Ok(Ok(stream)) =
                tokio::time::timeout(limits.handshake, acceptor.accept(sock)).await
            else {
                return;
            };
            // A client certificate the handshake verified (a device's),
            // for the file-transfer server's sign-in.
            let device = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|leaf| crate::files::PeerCertificate(pki::fingerprint(leaf)));
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut()
                        .insert(ConnectInfo::<SocketAddr>(remote));
                    if let Some(d) = device {
                        req.extensions_mut().insert(d);
                    }
                    app.clone().oneshot(req.map(axum::body::Body::new))
                },
            );
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read)
                .max_buf_size(64 * 1024)
                .serve_connection(TokioIo::new(stream), svc);
            let _ = tokio::time::timeout(limits.lifetime, conn).await;
        });
    }
}
