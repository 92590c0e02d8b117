//! The pool's edges for administrators: pairing one (its certificates and
//! the pool's topology key, returned once as the pairing file), listing
//! them, unpairing one. The certificate work is the server's
//! ([`EdgeRegistry`]); this module checks the input, the caller's rights,
//! audits, and tells the SIP core the new list before answering.

use axum::extract::State;
use axum::http::StatusCode;
use rbac::Target;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

use store::Store;

use super::access::Caller;
use super::extract::{Bytes, P as Path};
use super::status::unavailable;
use super::{internal, json, problem, AdminCmd, ApiResult, Ctx};

/// What pairing needs.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PairRequest {
    /// The edge's name: 1-32 of a-z, 0-9 and '-'.
    pub name: String,
    /// The edge's internal listener, `IP:port`.
    pub internal: String,
    /// The names (or addresses) the outside reaches the edge by; the first
    /// is what the edge advertises.
    pub external_names: Vec<String>,
    /// This front end's SIP-over-TLS address as the edge reaches it
    /// (`IP:port`); needed when the TLS listener is bound to all interfaces.
    #[serde(default)]
    pub front_end: Option<String>,
}

/// A paired edge as listed.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct EdgeRecord {
    pub name: String,
    pub internal: String,
    pub external_names: Vec<String>,
    /// SHA-256 of its internal certificate, hex.
    pub fingerprint: String,
    pub paired_at: i64,
    pub expires_at: i64,
}

/// Why pairing failed: the operator's input, or the server.
#[derive(Debug)]
pub enum PairError {
    Invalid(String),
    /// The request is fine but this server cannot satisfy it as set up.
    Conflict(String),
    Server(String),
}

/// A pairing made: the pairing file's content (returned once, never
/// kept) and the record the store keeps.
#[derive(Debug)]
pub struct Paired {
    pub bundle: serde_json::Value,
    pub row: store::EdgeRow,
}

/// The server's side of pairing (certificates, the pool's keys). The
/// records of paired edges are the store's (`store::EdgePairings`), so
/// that every node of a pool knows them. Called on a blocking thread.
pub trait EdgeRegistry: Send + Sync + std::fmt::Debug + 'static {
    /// Issues the edge's certificates and returns the pairing file's
    /// content, naming `front_ends` as the pool's front ends, and the
    /// record to keep.
    fn pair(&self, req: &PairRequest, front_ends: &[SocketAddr]) -> Result<Paired, PairError>;
    /// This front end's TLS listener, if bound to one address.
    fn front_end(&self) -> Option<SocketAddr>;
    /// What the SIP core recognises the paired edges by, and the key it
    /// signs their configuration snapshots with.
    fn setup(&self, paired: &[store::EdgeRow]) -> Result<sip_app::edges::EdgeSetup, String>;
}

/// A stored record as listed.
pub(crate) fn record(r: store::EdgeRow) -> EdgeRecord {
    EdgeRecord {
        name: r.name,
        internal: r.internal,
        external_names: r.external_names,
        fingerprint: r.fingerprint,
        paired_at: r.paired_at,
        expires_at: r.expires_at,
    }
}

/// A name an edge may have.
pub fn valid_edge_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn check(req: &PairRequest) -> Result<(), String> {
    if !valid_edge_name(&req.name) {
        return Err("name must be 1-32 characters of a-z, 0-9 and '-', e.g. edge1".into());
    }
    if req.internal.parse::<std::net::SocketAddr>().is_err() {
        return Err(
            "internal must be the edge's internal listener as IP:port, e.g. 10.0.0.2:5061".into(),
        );
    }
    if let Some(fe) = &req.front_end {
        if fe.parse::<std::net::SocketAddr>().is_err() {
            return Err("front_end must be this server's SIP-over-TLS address as IP:port, e.g. 10.0.0.1:5061".into());
        }
    }
    if req.external_names.is_empty() || req.external_names.len() > 8 {
        return Err("external_names must list 1 to 8 names the outside reaches the edge by, e.g. [\"edge.example.com\"]".into());
    }
    for n in &req.external_names {
        if n.parse::<std::net::IpAddr>().is_err() && !policy::valid_domain(n) {
            return Err(format!(
                "external_names: {n:?} is neither a host name nor an IP address"
            ));
        }
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, axum::response::Response> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| internal(format!("edge registry task failed: {e}")))
}

impl<S: Store> Ctx<S> {
    fn edges(&self) -> Result<std::sync::Arc<dyn EdgeRegistry>, axum::response::Response> {
        self.edges.clone().ok_or_else(|| {
            problem(
                StatusCode::CONFLICT,
                "edges are paired with the pool's private CA, and this server uses the operator's certificates (tls_cert): issue the edge's certificates from your PKI",
            )
        })
    }

    /// Tells the SIP core the current list (before the API answers). The
    /// other nodes of a pool read it from the change log.
    async fn reload_edges(
        &self,
        reg: std::sync::Arc<dyn EdgeRegistry>,
    ) -> Result<(), axum::response::Response> {
        let rows = self.store.edges().await.map_err(internal)?;
        let list = blocking(move || reg.setup(&rows))
            .await?
            .map_err(internal)?;
        self.ask(|reply| AdminCmd::SetEdges(list, reply))
            .await
            .ok_or_else(unavailable)
    }

    /// The front ends a new edge links to: the one the operator named;
    /// else, in a pool whose nodes all serve, every serving node's TLS
    /// listener; else this one's.
    async fn front_ends(
        &self,
        reg: &dyn EdgeRegistry,
        given: Option<&str>,
    ) -> Result<Vec<SocketAddr>, axum::response::Response> {
        if let Some(f) = given.and_then(|f| f.parse().ok()) {
            return Ok(vec![f]);
        }
        let mut out: Vec<SocketAddr> = Vec::new();
        if let config::Database::Postgres { active: true, .. } = self.cfg.database {
            for n in self.store.nodes().await.map_err(internal)? {
                if n.state != "serving" || n.lease_left_ms <= 0 {
                    continue;
                }
                // The address the other nodes dial it at.
                out.extend(sip_app::pool::tls_listener(&n.address));
            }
        }
        if let Some(own) = reg.front_end() {
            if !out.contains(&own) {
                out.insert(0, own);
            }
        }
        if out.is_empty() {
            return Err(problem(
                StatusCode::CONFLICT,
                "this server's SIP-over-TLS listener is bound to all interfaces: say which address the edge reaches it at with front_end (--front-end IP:port)",
            ));
        }
        Ok(out)
    }
}

pub(crate) async fn list<S: Store>(State(ctx): State<Ctx<S>>, c: Caller) -> ApiResult {
    ctx.allow(&c, "edges.read", Target::Any, "edges").await?;
    ctx.edges()?;
    let rows: Vec<EdgeRecord> = ctx
        .store
        .edges()
        .await
        .map_err(internal)?
        .into_iter()
        .map(record)
        .collect();
    Ok(json(StatusCode::OK, &rows))
}

pub(crate) async fn pair<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    bytes: Bytes,
) -> ApiResult {
    let req: PairRequest = super::body(&bytes)?;
    check(&req).map_err(|e| problem(StatusCode::BAD_REQUEST, e))?;
    ctx.allow(&c, "edges.write", Target::All, "edges").await?;
    let reg = ctx.edges()?;
    let front_ends = ctx.front_ends(&*reg, req.front_end.as_deref()).await?;
    let r = reg.clone();
    let req2 = req.clone();
    let paired = match blocking(move || r.pair(&req2, &front_ends)).await? {
        Ok(b) => b,
        Err(PairError::Invalid(e)) => return Err(problem(StatusCode::BAD_REQUEST, e)),
        Err(PairError::Conflict(e)) => return Err(problem(StatusCode::CONFLICT, e)),
        Err(PairError::Server(e)) => return Err(internal(e)),
    };
    ctx.store
        .put_edge(paired.row, sip_app::unix_now())
        .await
        .map_err(internal)?;
    ctx.reload_edges(reg).await?;
    let bundle = paired.bundle;
    let entry = store::AuditEntry {
        at: sip_app::unix_now(),
        actor: c.actor.clone(),
        source: c.source.clone(),
        action: "edge.pair".into(),
        object: format!("edge:{}", req.name),
        outcome: "ok".into(),
        detail: format!(
            "internal {}, external {}",
            req.internal,
            req.external_names.join(" ")
        ),
        before: None,
        after: None,
    };
    ctx.store.append_audit(entry).await.map_err(internal)?;
    Ok(json(StatusCode::CREATED, &bundle))
}

pub(crate) async fn unpair<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    Path(name): Path<String>,
) -> ApiResult {
    if !valid_edge_name(&name) {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            "an edge's name is 1-32 characters of a-z, 0-9 and '-'",
        ));
    }
    ctx.allow(&c, "edges.write", Target::All, "edges").await?;
    let reg = ctx.edges()?;
    let gone = ctx
        .store
        .remove_edge(&name, sip_app::unix_now())
        .await
        .map_err(internal)?;
    if !gone {
        return Err(problem(
            StatusCode::NOT_FOUND,
            format!("no edge named {name} is paired (parapet admin edge list)"),
        ));
    }
    ctx.reload_edges(reg).await?;
    let entry = store::AuditEntry {
        at: sip_app::unix_now(),
        actor: c.actor.clone(),
        source: c.source.clone(),
        action: "edge.unpair".into(),
        object: format!("edge:{name}"),
        outcome: "ok".into(),
        detail: "its certificate is no longer accepted".into(),
        before: None,
        after: None,
    };
    ctx.store.append_audit(entry).await.map_err(internal)?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "name": name, "unpaired": true }),
    ))
}
