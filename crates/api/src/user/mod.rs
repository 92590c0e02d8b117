//! The user API (`/user/v1`), served on the user listener (HTTPS,
//! `web_listen`), and the self-service page at `/`.
//!
//! Users sign in with their SIP address and password ([`session`]) and
//! manage their own contact list and watchers ([`contacts`]); nothing here
//! reaches another user's data — every path acts on the signed-in user
//! ([`Me`]). It shares the admin API's context, so a change takes effect in
//! the SIP core before the answer and is recorded in the audit log as
//! `user:AOR`. Errors are `application/problem+json`; the OpenAPI document
//! is at `/user/v1/openapi.json`.

mod caller;
mod contacts;
mod devices;
mod page;
mod relay;
pub(crate) mod second_factor;
mod session;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use store::Store;

use axum::routing::{delete, get, post, put};
use axum::Router;
use sip_transport::logging::RateLimited;

pub(crate) use caller::Me;
pub use relay::RelayAccess;

use super::{problem, Ctx};

/// The body of a request on the user listener, at most: room for the
/// largest certificate request (16 KiB of PEM) written with JSON escapes
/// at their longest (a request over it is refused by its own limit, with
/// a 400 that says so, not cut off).
const MAX_BODY: usize = 256 * 1024;

static REFUSED: RateLimited = RateLimited::new();

/// A refused sign-in, logged at a bounded rate (no secrets, no user name:
/// the lockout filter logs what it engages).
fn log_refusal(source: &IpAddr, why: &str) {
    if let Some(suppressed) = REFUSED.allow() {
        tracing::info!(%source, why, suppressed, "user API: sign-in refused");
    }
}

async fn not_found() -> axum::response::Response {
    problem(
        axum::http::StatusCode::NOT_FOUND,
        "no such path; the user API is described at /user/v1/openapi.json",
    )
}

fn router<S: Store>(ctx: Ctx<S>) -> Router {
    Router::new()
        .route("/", get(page::index))
        .route("/app.js", get(page::script))
        .route("/app.css", get(page::style))
        .route("/icon.svg", get(page::icon))
        .route(
            "/user/v1/openapi.json",
            get(super::openapi::user_document::<S>),
        )
        .route(
            "/user/v1/session",
            post(session::sign_in::<S>).delete(session::sign_out::<S>),
        )
        .route("/user/v1/me", get(session::me::<S>))
        .route("/user/v1/relay-credentials", post(relay::mint::<S>))
        .route(
            "/user/v1/second-factor",
            get(second_factor::status::<S>).post(second_factor::start::<S>),
        )
        .route(
            "/user/v1/second-factor/confirm",
            post(second_factor::confirm::<S>),
        )
        .route(
            "/user/v1/devices",
            get(devices::list::<S>).post(devices::enroll::<S>),
        )
        .route("/user/v1/devices/bundle", post(devices::bundle::<S>))
        .route("/user/v1/devices/{id}", delete(devices::revoke::<S>))
        .route(
            "/user/v1/sign-out-everywhere",
            post(devices::sign_out_everywhere::<S>),
        )
        .route("/user/v1/contacts", get(contacts::list::<S>))
        .route(
            "/user/v1/contacts/{contact}",
            put(contacts::put::<S>).delete(contacts::remove::<S>),
        )
        .route(
            "/user/v1/contact-groups/{name}",
            put(contacts::put_group::<S>).delete(contacts::remove_group::<S>),
        )
        .route("/user/v1/watchers", get(contacts::watchers::<S>))
        .route("/user/v1/watchers/{watcher}", put(contacts::decide::<S>))
        .route(
            content::ft_http::FILES_PATH,
            post(crate::files::upload::<S>).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/files/{id}", get(crate::files::download::<S>))
        .route(
            crate::provisioning::PATH,
            get(crate::provisioning::document::<S>),
        )
        .route("/provisioning/qr.svg", get(crate::provisioning::qr::<S>))
        .fallback(not_found)
        .layer(axum::middleware::from_fn(|req, next| {
            crate::extract::read_first(&[content::ft_http::FILES_PATH], req, next)
        }))
        .layer(axum::middleware::map_response(page::security_headers))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::Extension(crate::extract::BodyLimit(MAX_BODY)))
        .layer(axum::middleware::from_fn(crate::request_id::layer))
        .with_state(ctx)
}

/// Binds the user listener and serves it until the process ends.
pub(crate) async fn serve<S: Store>(
    ctx: Ctx<S>,
    addr: SocketAddr,
    tls: &rustls::ServerConfig,
) -> Result<SocketAddr, String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("user listener {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let limits = crate::https::Limits {
        max_per_address: ctx.cfg.max_connections_per_ip,
        ..crate::https::Limits::default()
    };
    let tls: Arc<rustls::ServerConfig> = crate::https::tls_for_http(tls);
    tokio::spawn(crate::https::serve(listener, tls, router(ctx), limits));
    Ok(local)
}
