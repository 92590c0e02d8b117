//! The admin listener (loopback by default): `/healthz` and `/metrics` for
//! monitoring, and `/v0/status` and `/v0/lockouts` for `parapet status` and
//! `parapet lockout`. The `/v0` routes require the bearer token kept in
//! `DATA_DIR/keys/admin.token` (mode 0600): until role-based administration
//! arrives, filesystem access to the data directory is what grants them.
//! Errors are `application/problem+json`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;

/// What the admin API asks of the core.
#[derive(Debug)]
pub enum AdminCmd {
    Status(oneshot::Sender<Status>),
    Lockouts(oneshot::Sender<Vec<LockoutRow>>),
    ClearLockouts {
        account: Option<String>,
        source: Option<IpAddr>,
        reply: oneshot::Sender<usize>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub domain: String,
    pub listeners: Vec<String>,
    pub insecure_transports: bool,
    pub warnings: Vec<String>,
    pub users: usize,
    pub registrations: usize,
    pub connections: usize,
    pub uptime_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockoutRow {
    pub account: String,
    /// `null` for an account-wide lockout.
    pub source: Option<String>,
    pub until: u64,
    pub lockouts: u32,
}

#[derive(Clone)]
struct Ctx {
    token: Arc<String>,
    metrics: Arc<Metrics>,
    core: mpsc::Sender<AdminCmd>,
}

fn problem(status: StatusCode, title: &str, detail: &str) -> Response {
    let body = serde_json::json!({ "type": "about:blank", "title": title, "status": status.as_u16(), "detail": detail });
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

fn authorized(ctx: &Ctx, headers: &HeaderMap) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    given.is_some_and(|g| {
        let (a, b) = (g.as_bytes(), ctx.token.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    })
}

fn unauthorized() -> Response {
    problem(StatusCode::UNAUTHORIZED, "Unauthorized", "send the token from DATA_DIR/keys/admin.token as `Authorization: Bearer <token>` (the parapet CLI does this with --data-dir)")
}

/// Asks the core; `None` if it is not running.
async fn ask<T>(ctx: &Ctx, make: impl FnOnce(oneshot::Sender<T>) -> AdminCmd) -> Option<T> {
    let (tx, rx) = oneshot::channel();
    ctx.core.send(make(tx)).await.ok()?;
    rx.await.ok()
}

fn unavailable() -> Response {
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "Service Unavailable",
        "the SIP core is not running",
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn render_metrics(State(ctx): State<Ctx>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        ctx.metrics.render(),
    )
        .into_response()
}

async fn status(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    if !authorized(&ctx, &headers) {
        return unauthorized();
    }
    match ask(&ctx, AdminCmd::Status).await {
        Some(s) => Json(s).into_response(),
        None => unavailable(),
    }
}

async fn lockouts(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    if !authorized(&ctx, &headers) {
        return unauthorized();
    }
    match ask(&ctx, AdminCmd::Lockouts).await {
        Some(v) => Json(v).into_response(),
        None => unavailable(),
    }
}

#[derive(Debug, Deserialize)]
struct ClearQuery {
    account: Option<String>,
    source: Option<String>,
}

async fn clear(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    Query(q): Query<ClearQuery>,
) -> Response {
    if !authorized(&ctx, &headers) {
        return unauthorized();
    }
    let source = match q.source.as_deref().map(str::parse::<IpAddr>) {
        None => None,
        Some(Ok(ip)) => Some(ip),
        Some(Err(_)) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "Bad Request",
                "source must be an IP address, e.g. source=198.51.100.7",
            )
        }
    };
    let account = q.account;
    match ask(&ctx, |reply| AdminCmd::ClearLockouts {
        account,
        source,
        reply,
    })
    .await
    {
        Some(n) => Json(serde_json::json!({ "cleared": n })).into_response(),
        None => unavailable(),
    }
}

async fn not_found() -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "Not Found",
        "known paths: /healthz, /metrics, /v0/status, /v0/lockouts, /v0/lockouts/clear",
    )
}

/// Binds the admin listener and serves it until the process ends.
pub async fn serve(
    addr: SocketAddr,
    token: String,
    metrics: Arc<Metrics>,
    core: mpsc::Sender<AdminCmd>,
) -> Result<SocketAddr, String> {
    let ctx = Ctx {
        token: Arc::new(token),
        metrics,
        core,
    };
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(render_metrics))
        .route("/v0/status", get(status))
        .route("/v0/lockouts", get(lockouts))
        .route("/v0/lockouts/clear", post(clear))
        .fallback(not_found)
        .with_state(ctx);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("admin listener {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "admin listener stopped");
        }
    });
    Ok(local)
}
