//! The edge's own health check and metrics, served over HTTP on its
//! internal address only (the monitoring inside reaches it; the Internet
//! does not): `GET /healthz` (200 while linked to the pool with its
//! configuration snapshot in force, 503 otherwise)
//! and `GET /metrics` (Prometheus text).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

/// What the edge counts.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Requests from outside relayed to the pool.
    pub inward_requests: AtomicU64,
    /// Requests from the pool relayed outside.
    pub outward_requests: AtomicU64,
    /// Responses relayed each way.
    pub inward_responses: AtomicU64,
    pub outward_responses: AtomicU64,
    /// Requests from outside answered by the edge itself, by reason.
    pub refused_rate: AtomicU64,
    pub refused_lockout: AtomicU64,
    pub refused_route: AtomicU64,
    pub refused_no_pool: AtomicU64,
    pub refused_in_flight: AtomicU64,
    /// Partners' requests refused (identity, federation rules, no snapshot).
    pub refused_partner: AtomicU64,
    /// Failed and successful sign-ins the pool reported.
    pub sign_in_failures: AtomicU64,
    pub sign_ins: AtomicU64,
    /// Lockouts the edge's filter engaged.
    pub lockouts: AtomicU64,
    /// Links to the pool open now.
    pub links: AtomicU64,
    /// Connections the edge holds open to partners' servers now.
    pub partner_connections: AtomicU64,
    /// The configuration snapshot in force (0: none).
    pub snapshot_version: AtomicU64,
    /// Snapshots refused (bad signature, expired, older, another domain).
    pub snapshot_refused: AtomicU64,
    /// The A/V edge's media relay, when it runs.
    pub relay: std::sync::OnceLock<Arc<::relay::metrics::Metrics>>,
}

impl Metrics {
    fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let mut one = |name: &str, help: &str, kind: &str, v: &AtomicU64| {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                v.load(Relaxed)
            );
        };
        one(
            "parapet_edge_inward_requests_total",
            "Requests from outside relayed to the pool.",
            "counter",
            &self.inward_requests,
        );
        one(
            "parapet_edge_outward_requests_total",
            "Requests from the pool relayed outside.",
            "counter",
            &self.outward_requests,
        );
        one(
            "parapet_edge_inward_responses_total",
            "Responses from outside relayed to the pool.",
            "counter",
            &self.inward_responses,
        );
        one(
            "parapet_edge_outward_responses_total",
            "Responses from the pool relayed outside.",
            "counter",
            &self.outward_responses,
        );
        one(
            "parapet_edge_sign_in_failures_total",
            "Failed sign-ins of remote users, as the pool reported them.",
            "counter",
            &self.sign_in_failures,
        );
        one(
            "parapet_edge_sign_ins_total",
            "Successful sign-ins of remote users.",
            "counter",
            &self.sign_ins,
        );
        one(
            "parapet_edge_lockouts_total",
            "Lockouts the edge's security filter engaged.",
            "counter",
            &self.lockouts,
        );
        one(
            "parapet_edge_links",
            "Links to the pool open now.",
            "gauge",
            &self.links,
        );
        one(
            "parapet_edge_partner_connections",
            "Connections open to partners' servers now (at most federation.max_connections_per_partner each).",
            "gauge",
            &self.partner_connections,
        );
        one(
            "parapet_edge_snapshot_version",
            "The pool's configuration snapshot in force (0: none).",
            "gauge",
            &self.snapshot_version,
        );
        one(
            "parapet_edge_snapshot_refused_total",
            "Configuration snapshots refused (signature, lifetime, domain, rollback).",
            "counter",
            &self.snapshot_refused,
        );
        let _ = writeln!(s, "# HELP parapet_edge_refused_total Requests from outside the edge answered itself, by reason.\n# TYPE parapet_edge_refused_total counter");
        for (reason, v) in [
            ("rate", &self.refused_rate),
            ("lockout", &self.refused_lockout),
            ("route", &self.refused_route),
            ("no_pool", &self.refused_no_pool),
            ("in_flight", &self.refused_in_flight),
            ("partner", &self.refused_partner),
        ] {
            let _ = writeln!(
                s,
                "parapet_edge_refused_total{{reason=\"{reason}\"}} {}",
                v.load(Relaxed)
            );
        }
        if let Some(r) = self.relay.get() {
            r.render(&mut s);
        }
        s
    }
}

fn answer(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

/// Serves `/healthz` and `/metrics` on `addr` until the process ends. At
/// most 16 connections at once, each closed after 10 s.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> Result<SocketAddr, String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot bind the edge's health and metrics listener {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let slots = Arc::new(tokio::sync::Semaphore::new(16));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                continue;
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let metrics = metrics.clone();
                        async move {
                            let r = match (req.method() == hyper::Method::GET, req.uri().path()) {
                                (true, "/healthz") => {
                                    let linked = metrics.links.load(Relaxed) > 0;
                                    let configured = metrics.snapshot_version.load(Relaxed) > 0;
                                    match (linked, configured) {
                                        (true, true) => {
                                            answer(StatusCode::OK, "text/plain", "ok\n".into())
                                        }
                                        (false, _) => answer(
                                            StatusCode::SERVICE_UNAVAILABLE,
                                            "text/plain",
                                            "no link to the pool\n".into(),
                                        ),
                                        (true, false) => answer(
                                            StatusCode::SERVICE_UNAVAILABLE,
                                            "text/plain",
                                            "no configuration snapshot from the pool\n".into(),
                                        ),
                                    }
                                }
                                (true, "/metrics") => answer(
                                    StatusCode::OK,
                                    "text/plain; version=0.0.4",
                                    metrics.render(),
                                ),
                                _ => answer(
                                    StatusCode::NOT_FOUND,
                                    "text/plain",
                                    "not found\n".into(),
                                ),
                            };
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    },
                );
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(5))
                    .serve_connection(TokioIo::new(stream), svc);
                let _ = tokio::time::timeout(Duration::from_secs(10), conn).await;
            });
        }
    });
    Ok(local)
}
