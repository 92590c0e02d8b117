//! # parapet-api: the admin API and the user listener
//!
//! The admin API (axum) on the admin listener, loopback by default, and the
//! user listener (HTTPS: the user API under `/user/v1` and the self-service
//! page). Both reach the SIP application only through its commands
//! ([`sip_app::command::AdminCmd`]) and storage only through the `store`
//! traits.
//!
//! `/healthz` and `/metrics` are open (monitoring); everything under `/v1`
//! needs a bearer token — a sign-in session (`POST /v1/session` with password
//! and TOTP code) or an API token — and every path checks the caller's role
//! ([`rbac::Role::permits`]) for its operation and target before acting.
//! Changes are written through an audited store handle, so the change and its
//! audit record commit together; refusals are audited too. Errors are
//! `application/problem+json` with a `detail` that says what to fix. The
//! OpenAPI document is at `/v1/openapi.json`.
// Handlers return `Result<Response, Response>` so that `?` turns any refusal
// into its problem+json answer; the error side is a whole response by design
// (admin requests are rare, the size does not matter).
#![allow(clippy::result_large_err)]
#![forbid(unsafe_code)]

mod access;
mod admins;
mod archive;
mod archive_files;
mod cdrs;
mod contact_lists;
mod contacts;
pub mod credentials;
pub mod devices;
mod directory;
mod dns;
pub mod edges;
mod extract;
mod federation;
pub mod files;
mod https;
pub mod manage;
mod openapi;
mod policies;
mod provisioning;
mod refusals;
mod request_id;
pub mod security;
mod session;
mod status;
mod traces;
mod user;
pub use user::RelayAccess;
mod users;

use std::net::SocketAddr;
use std::sync::Arc;

use auth::secret::SecretKey;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::Router;
use serde::Serialize;
use store::Store;
use tokio::sync::{mpsc, oneshot};

use config::Config;
use sip_app::command::AdminCmd;
use sip_app::metrics::Metrics;
use sip_app::policy_set::PolicySet;
use sip_app::users::UserCache;

use crate::manage::Manager;

pub use access::Caller;
pub(crate) use session::totp_context;

/// Shared by every handler.
#[derive(Clone)]
pub(crate) struct Ctx<S> {
    pub(crate) store: S,
    pub(crate) seal: Arc<SecretKey>,
    pub(crate) users: Manager<S>,
    pub(crate) realm: String,
    pub(crate) cfg: Arc<Config>,
    pub(crate) metrics: Arc<Metrics>,
    core: mpsc::Sender<AdminCmd>,
    /// Argon2id runs (19 MiB, tens of ms each) allowed at once.
    hashing: Arc<tokio::sync::Semaphore>,
    /// Requests allowed to wait for or hold a hashing slot; beyond, 503.
    hashing_queue: Arc<tokio::sync::Semaphore>,
    /// Rate of refusals recorded in the audit log, per source.
    pub(crate) refusals: Arc<refusals::Refusals>,
    /// Requests per signed-in user on the user API.
    pub(crate) user_rate: Arc<std::sync::Mutex<sip_app::ratelimit::RateLimiter<String>>>,
    /// Pairing edges (`None`: the operator's PKI, nothing to issue from).
    pub(crate) edges: Option<Arc<dyn edges::EdgeRegistry>>,
    /// The device CA and the valid device certificates.
    pub(crate) devices: Arc<devices::DeviceAuthority>,
    /// The file-transfer server (`None`: off).
    pub(crate) files: Option<Arc<files::FileService>>,
    /// The media relay, for web clients' credentials (`None`: no relay).
    pub(crate) relay: Option<user::RelayAccess>,
    /// The IM archive's keys.
    pub(crate) archive: Option<Arc<::archive::Keyring>>,
}

/// Concurrent password hashes (memory: 19 MiB each).
const HASHING_SLOTS: usize = 2;
/// Sign-ins and password changes waiting or running at once.
const HASHING_QUEUE: usize = 32;

/// A problem+json response.
pub(crate) fn problem(status: StatusCode, detail: impl Into<String>) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    let body = serde_json::json!({
        "type": "about:blank",
        "title": title,
        "status": status.as_u16(),
        "detail": detail.into(),
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

/// The URL's authority: the Host the client used when it names a host
/// (and port) in plain characters, else the domain on the listener's port.
pub(crate) fn authority<S>(ctx: &Ctx<S>, headers: &HeaderMap) -> String {
    let given = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 260
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        });
    match (given, ctx.cfg.web_listen) {
        (Some(h), _) => h.to_owned(),
        (None, Some(w)) => format!("{}:{}", ctx.cfg.domain, w.port()),
        (None, None) => ctx.cfg.domain.clone(),
    }
}

pub(crate) type ApiResult = Result<Response, Response>;

/// Parses a JSON body, which must be an object; a bad one is a 400 that
/// says what is wrong. (serde would also take an array for a struct.)
pub(crate) fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Response> {
    let bad = |e: String| {
        problem(
            StatusCode::BAD_REQUEST,
            format!("the request body is not valid: {e}"),
        )
    };
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    if !v.is_object() {
        return Err(bad("expected a JSON object".into()));
    }
    serde_json::from_value(v).map_err(|e| bad(e.to_string()))
}

/// A store or core failure: logged, answered with 500 without details —
/// or, when the database cannot be reached now, 503 with Retry-After.
pub(crate) fn internal<E: std::fmt::Display + 'static>(e: E) -> Response {
    // A StoreError, or one already turned into text on its way here (its
    // Display says "database unavailable: ...").
    let unavailable = matches!(
        (&e as &dyn std::any::Any).downcast_ref::<store::StoreError>(),
        Some(store::StoreError::Unavailable(_))
    ) || e.to_string().starts_with("database unavailable:");
    if unavailable {
        tracing::warn!(error = %e, "API: the database is unavailable");
        let mut r = problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "the database cannot be reached now; try again shortly",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
        return r;
    }
    tracing::error!(error = %e, "admin API: internal error");
    problem(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the server could not complete the request; see its log",
    )
}

pub(crate) fn json<T: Serialize>(status: StatusCode, v: &T) -> Response {
    (status, axum::Json(v)).into_response()
}

impl<S: Store> Ctx<S> {
    /// Asks the core; `None` if it is not running.
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> AdminCmd) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.core.send(make(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Runs password hashing off the runtime, bounded: at most
    /// HASHING_SLOTS at once and HASHING_QUEUE waiting, so a flood of
    /// sign-in attempts costs bounded memory and threads; beyond, 503.
    pub(crate) async fn hashing<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Response> {
        let Ok(_ticket) = self.hashing_queue.clone().try_acquire_owned() else {
            let mut r = problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many sign-ins and password changes in progress; retry in a moment",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            return Err(r);
        };
        let _slot = self.hashing.acquire().await.map_err(internal)?;
        tokio::task::spawn_blocking(f).await.map_err(internal)
    }

    /// After a bulk change: reload the whole user table and the policy
    /// snapshot and hand both to the core, which swaps them in before this
    /// returns — a change the API acknowledged is in effect for the next SIP
    /// request.
    pub(crate) async fn publish(&self) -> Result<(), Response> {
        let users = UserCache::load(&self.store, &self.seal)
            .await
            .map_err(internal)?;
        let version = users.version();
        self.ask(|r| AdminCmd::Users(users, r)).await;
        self.publish_policies().await?;
        self.await_pool(Applied::Users(version)).await;
        Ok(())
    }

    /// After a change to one user: only that user's entry is reloaded (a
    /// provisioning script adding users one by one does not reload the whole
    /// table each time).
    pub(crate) async fn publish_user(&self, aor: &str) -> Result<(), Response> {
        let (version, user) = UserCache::load_one(&self.store, &self.seal, aor)
            .await
            .map_err(internal)?;
        let aor = aor.to_string();
        self.ask(|reply| AdminCmd::User {
            aor,
            version,
            user,
            reply,
        })
        .await;
        self.await_pool(Applied::Users(version)).await;
        Ok(())
    }

    /// After a change to policies, groups, memberships, grants or sites.
    pub(crate) async fn publish_policies(&self) -> Result<(), Response> {
        let set = PolicySet::load(&self.store).await.map_err(internal)?;
        let version = set.version;
        self.ask(|r| AdminCmd::Policies(set, r)).await;
        self.await_pool(Applied::Policies(version)).await;
        Ok(())
    }

    /// In a pool whose nodes all serve: waits (up to `pool_apply_wait_ms`)
    /// until every other serving node reports caches at `applied` or
    /// newer (each reads the versions when the change log says they
    /// changed, at least every second, and reports new ones at once); the ones that do not are named in the answer's
    /// `Parapet-Not-Applied` header and logged. No wait for a store one
    /// process owns, or for a pool where only this node serves.
    async fn await_pool(&self, applied: Applied) {
        let me = store::Store::node_identity(&self.store).map(|(id, _)| id);
        let Some(me) = me else { return };
        let wait = match &self.cfg.database {
            config::Database::Postgres { apply_wait_ms, .. } => *apply_wait_ms,
            config::Database::Embedded => return,
        };
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(wait);
        loop {
            let behind: Vec<String> = match store::Store::nodes(&self.store).await {
                Ok(rows) => rows
                    .into_iter()
                    .filter(|n| n.state == "serving" && n.lease_left_ms > 0 && n.id != me)
                    .filter(|n| match applied {
                        Applied::Policies(v) => n.policy_version < v,
                        Applied::Users(v) => n.users_version < v,
                    })
                    .map(|n| n.id)
                    .collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the pool's nodes to wait for them to apply a change");
                    return;
                }
            };
            if behind.is_empty() {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(nodes = %behind.join(", "), ?applied, "the change is not applied on every node yet");
                let _ = NOT_APPLIED.try_with(|l| l.borrow_mut().extend(behind));
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

/// What a change needs the other nodes' caches to hold.
#[derive(Debug, Clone, Copy)]
enum Applied {
    Policies(i64),
    Users(i64),
}

tokio::task_local! {
    /// The nodes a change handled by this request is not applied on yet.
    static NOT_APPLIED: std::cell::RefCell<Vec<String>>;
}

/// Names, in `Parapet-Not-Applied`, the nodes of the pool that had not
/// applied the request's change when it was answered.
async fn not_applied_header(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let (mut resp, behind) = NOT_APPLIED
        .scope(std::cell::RefCell::new(Vec::new()), async {
            let resp = next.run(req).await;
            let behind = NOT_APPLIED.with(|l| l.take());
            (resp, behind)
        })
        .await;
    if !behind.is_empty() {
        if let Ok(v) = header::HeaderValue::from_str(&behind.join(", ")) {
            resp.headers_mut().insert("parapet-not-applied", v);
        }
    }
    resp
}

/// 200 once the SIP core has loaded its state and runs; 503 before (a
/// load balancer sends nothing to a node still loading).
async fn healthz<S: Store>(axum::extract::State(ctx): axum::extract::State<Ctx<S>>) -> Response {
    if ctx.metrics.ready.load(std::sync::atomic::Ordering::Relaxed) == 1 {
        "ok\n".into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            "starting: loading users, registrations and policies\n",
        )
            .into_response()
    }
}

async fn render_metrics<S: Store>(
    axum::extract::State(ctx): axum::extract::State<Ctx<S>>,
) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        ctx.metrics.render(),
    )
        .into_response()
}

async fn not_found() -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "no such path; the API is described at /v1/openapi.json",
    )
}

/// Everything the admin listener needs.
#[derive(Debug)]
pub struct AdminSetup<S> {
    pub addr: SocketAddr,
    pub store: S,
    pub seal: Arc<SecretKey>,
    pub realm: String,
    pub cfg: Arc<Config>,
    pub metrics: Arc<Metrics>,
    pub core: mpsc::Sender<AdminCmd>,
    /// The user listener's address and TLS configuration (`None`: off).
    pub web: Option<(SocketAddr, Arc<rustls::ServerConfig>)>,
    /// Pairing edges with the pool.
    pub edges: Option<Arc<dyn edges::EdgeRegistry>>,
    /// Issuing and revoking device certificates.
    pub devices: Arc<devices::DeviceAuthority>,
    /// The file-transfer server on the user listener (`None`: off).
    pub files: Option<Arc<files::FileService>>,
    /// The media relay, for web clients' credentials (`None`: no relay).
    pub relay: Option<user::RelayAccess>,
    /// The IM archive's keys (`None`: the key directory is unusable).
    pub archive: Option<Arc<::archive::Keyring>>,
}

/// The most an admin API request may carry.
const ADMIN_MAX_BODY: usize = 4 * 1024 * 1024;

/// Where the listeners are bound.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub admin: SocketAddr,
    pub web: Option<SocketAddr>,
}

fn router<S: Store>(ctx: Ctx<S>) -> Router {
    Router::new()
        .route("/healthz", get(healthz::<S>))
        .route("/metrics", get(render_metrics))
        .route("/v1/openapi.json", get(openapi::document::<S>))
        .route(
            "/v1/session",
            post(session::sign_in::<S>).delete(session::sign_out::<S>),
        )
        .route("/v1/me", get(session::me))
        .route("/v1/me/password", put(session::change_password::<S>))
        .route("/v1/status", get(status::status::<S>))
        .route("/v1/lockouts", get(status::lockouts::<S>))
        .route("/v1/dns-records", get(status::dns_records::<S>))
        .route("/v1/lockouts/clear", post(status::clear::<S>))
        .route("/v1/federation/partners", get(federation::partners::<S>))
        .route(
            "/v1/federation/partners/clear",
            post(federation::clear::<S>),
        )
        .route("/v1/federation/explain", get(federation::explain::<S>))
        .route("/v1/edges", get(edges::list::<S>).post(edges::pair::<S>))
        .route("/v1/edges/{name}", delete(edges::unpair::<S>))
        .route("/v1/users", get(users::list::<S>).post(users::add::<S>))
        .route("/v1/users/import", post(users::import::<S>))
        .route(
            "/v1/users/{uri}",
            get(users::show::<S>).delete(users::remove::<S>),
        )
        .route("/v1/users/{uri}/password", put(users::passwd::<S>))
        .route("/v1/users/{uri}/enabled", put(users::set_enabled::<S>))
        .route("/v1/users/{uri}/site", put(directory::set_site::<S>))
        .route(
            "/v1/users/{uri}/devices",
            get(devices::list::<S>).delete(devices::revoke_all::<S>),
        )
        .route(
            "/v1/users/{uri}/devices/{id}",
            delete(devices::revoke_one::<S>),
        )
        .route(
            "/v1/users/{uri}/enrollment-codes",
            post(devices::enrollment_code::<S>),
        )
        .route(
            "/v1/users/{uri}/second-factor",
            delete(devices::reset_second_factor::<S>),
        )
        .route("/v1/users/{uri}/effective", get(policies::effective::<S>))
        .route(
            "/v1/users/{uri}/registrations",
            get(users::registrations::<S>),
        )
        .route("/v1/users/{uri}/contacts", get(contacts::list::<S>))
        .route(
            "/v1/users/{uri}/contacts/{contact}",
            put(contacts::put::<S>).delete(contacts::remove::<S>),
        )
        .route(
            "/v1/users/{uri}/watchers/{watcher}",
            put(contacts::decide::<S>),
        )
        .route(
            "/v1/users/{uri}/contact-groups/{name}",
            put(contacts::put_group::<S>).delete(contacts::remove_group::<S>),
        )
        .route("/v1/groups", get(directory::groups::<S>))
        .route(
            "/v1/groups/{name}",
            put(directory::put_group::<S>).delete(directory::remove_group::<S>),
        )
        .route(
            "/v1/groups/{name}/members/{uri}",
            put(directory::add_member::<S>).delete(directory::remove_member::<S>),
        )
        .route("/v1/policy-kinds", get(policies::kinds::<S>))
        .route("/v1/policies", get(policies::list::<S>))
        .route(
            "/v1/policies/{kind}/{scope}",
            axum::routing::patch(policies::patch::<S>).delete(policies::remove::<S>),
        )
        .route("/v1/grants", get(policies::grants::<S>))
        .route(
            "/v1/grants/{kind}/{target}",
            put(policies::grant::<S>).delete(policies::revoke::<S>),
        )
        .route("/v1/operations", get(admins::operations::<S>))
        .route("/v1/roles", get(admins::roles::<S>))
        .route(
            "/v1/roles/{name}",
            put(admins::put_role::<S>).delete(admins::remove_role::<S>),
        )
        .route(
            "/v1/admins",
            get(admins::list::<S>).post(admins::create::<S>),
        )
        .route(
            "/v1/admins/{name}",
            axum::routing::patch(admins::update::<S>).delete(admins::remove::<S>),
        )
        .route(
            "/v1/tokens",
            get(admins::tokens::<S>).post(admins::create_token::<S>),
        )
        .route("/v1/tokens/{id}", delete(admins::revoke_token::<S>))
        .route("/v1/cdrs", get(cdrs::list::<S>))
        .route("/v1/traces", get(traces::list::<S>))
        .route("/v1/archive/messages", get(archive::search::<S>))
        .route("/v1/archive/export", get(archive::export::<S>))
        .route("/v1/archive/files/{id}", get(archive_files::content::<S>))
        .route("/v1/archive/holds", get(archive::holds::<S>))
        .route(
            "/v1/archive/holds/{uri}",
            put(archive::hold::<S>).delete(archive::release::<S>),
        )
        .route("/v1/audit", get(status::audit_list::<S>))
        .route("/v1/audit/verify", get(status::audit_verify::<S>))
        .route("/v1/security", get(status::security::<S>))
        .fallback(not_found)
        .with_state(ctx)
}

/// Binds the admin listener (and the user listener, if configured) and
/// serves them until the process ends.
pub async fn serve<S: Store>(s: AdminSetup<S>) -> Result<Bound, String> {
    let (user_rate, user_burst) = s.cfg.user_api_rate;
    let ctx = Ctx {
        users: Manager::new(s.store.clone(), s.seal.clone(), s.realm.clone()),
        store: s.store,
        seal: s.seal,
        realm: s.realm,
        cfg: s.cfg,
        metrics: s.metrics,
        core: s.core,
        hashing: Arc::new(tokio::sync::Semaphore::new(HASHING_SLOTS)),
        hashing_queue: Arc::new(tokio::sync::Semaphore::new(HASHING_QUEUE)),
        refusals: Arc::new(refusals::Refusals::default()),
        user_rate: Arc::new(std::sync::Mutex::new(sip_app::ratelimit::RateLimiter::new(
            user_rate, user_burst, 100_000,
        ))),
        edges: s.edges.clone(),
        devices: s.devices.clone(),
        files: s.files.clone().filter(|_| s.web.is_some()),
        relay: s.relay.clone(),
        archive: s.archive.clone(),
    };
    if let Some(files) = ctx.files.clone() {
        tokio::spawn(files::sweeper(ctx.store.clone(), files));
    }
    let web = match &s.web {
        Some((addr, tls)) => Some(user::serve(ctx.clone(), *addr, tls).await?),
        None => None,
    };
    let app = router(ctx)
        .layer(axum::extract::DefaultBodyLimit::max(ADMIN_MAX_BODY))
        .layer(axum::middleware::from_fn(|req, next| {
            extract::read_first(&[], req, next)
        }))
        .layer(axum::Extension(extract::BodyLimit(ADMIN_MAX_BODY)))
        .layer(axum::middleware::from_fn(not_applied_header))
        .layer(axum::middleware::from_fn(request_id::layer));
    let listener = tokio::net::TcpListener::bind(s.addr)
        .await
        .map_err(|e| format!("admin listener {}: {e}", s.addr))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let svc = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, svc).await {
            tracing::error!(error = %e, "admin listener stopped");
        }
    });
    Ok(Bound { admin: local, web })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_database_is_503_with_retry_after_and_anything_else_500() {
        let r = internal(store::StoreError::Unavailable("pool timed out".into()));
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            r.headers().get(header::RETRY_AFTER).map(|v| v.as_bytes()),
            Some(&b"5"[..])
        );
        assert_eq!(
            internal(store::StoreError::Db("x".into())).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            internal("the core stopped".to_string()).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        // Turned into text on the way (the user manager's errors).
        let text = store::StoreError::Unavailable("cut".into()).to_string();
        assert_eq!(internal(text).status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
