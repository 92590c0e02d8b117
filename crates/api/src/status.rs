//! Server status, sign-in lockouts, and the audit log.

use std::net::IpAddr;
use store::Store;

use super::extract::Q as Query;
use axum::extract::State;
use axum::http::StatusCode;
use rbac::Target;
use serde::Deserialize;
use store::{AuditFilter, AuditRecord};

use super::access::Caller;
use super::{internal, json, problem, AdminCmd, ApiResult, Ctx};

pub(crate) fn unavailable() -> axum::response::Response {
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "the SIP core is not running",
    )
}

pub(crate) async fn status<S: Store>(State(ctx): State<Ctx<S>>, c: Caller) -> ApiResult {
    ctx.allow(&c, "status.read", Target::Any, "status").await?;
    let s = ctx.ask(AdminCmd::Status).await.ok_or_else(unavailable)?;
    let mut v = serde_json::to_value(&s).map_err(internal)?;
    // A pool on PostgreSQL: every node, as the database has it.
    let nodes = ctx.store.nodes().await.map_err(internal)?;
    if let (Some(o), false) = (v.as_object_mut(), nodes.is_empty()) {
        o.insert(
            "nodes".into(),
            nodes
                .iter()
                .map(|n| {
                    serde_json::json!({
                        "id": n.id, "this": n.this, "state": n.state, "epoch": n.epoch,
                        "lease_left_ms": n.lease_left_ms, "lease_until": n.lease_until,
                        "heartbeat_at": n.heartbeat_at, "started_at": n.started_at,
                        "address": n.address, "policy_version": n.policy_version,
                        "users_version": n.users_version, "applied_change": n.applied_change,
                    })
                })
                .collect(),
        );
    }
    Ok(json(StatusCode::OK, &v))
}

/// The DNS records to publish so that clients and partners find this
/// server (`crate::dns`).
pub(crate) async fn dns_records<S: Store>(State(ctx): State<Ctx<S>>, c: Caller) -> ApiResult {
    ctx.allow(&c, "status.read", Target::Any, "dns-records")
        .await?;
    let interfaces = tokio::task::spawn_blocking(sip_app::identity::interface_addrs)
        .await
        .map_err(internal)?;
    let listeners: Vec<_> = ctx.cfg.listen.iter().map(|l| (l.scheme, l.addr)).collect();
    let (zone, host) = crate::dns::zone(
        &ctx.cfg.domain,
        &ctx.cfg.host_names,
        &listeners,
        &interfaces,
    );
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "domain": ctx.cfg.domain, "host": host, "zone": zone }),
    ))
}

pub(crate) async fn lockouts<S: Store>(State(ctx): State<Ctx<S>>, c: Caller) -> ApiResult {
    ctx.allow(&c, "lockouts.read", Target::Any, "lockouts")
        .await?;
    let v = ctx.ask(AdminCmd::Lockouts).await.ok_or_else(unavailable)?;
    Ok(json(StatusCode::OK, &v))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClearQuery {
    account: Option<String>,
    source: Option<String>,
}

pub(crate) async fn clear<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    Query(q): Query<ClearQuery>,
) -> ApiResult {
    let source = match q.source.as_deref().map(str::parse::<IpAddr>) {
        None => None,
        Some(Ok(ip)) => Some(ip),
        Some(Err(_)) => {
            return Err(problem(
                StatusCode::BAD_REQUEST,
                "source must be an IP address, e.g. source=198.51.100.7",
            ))
        }
    };
    let account = match &q.account {
        Some(a) => {
            let aor = super::users::aor(&ctx, a)?;
            ctx.allow_user(&c, "lockouts.clear", &aor).await?;
            Some(aor)
        }
        None => {
            ctx.allow(&c, "lockouts.clear", Target::All, "lockouts")
                .await?;
            None
        }
    };
    let object = format!("lockouts:{}", account.as_deref().unwrap_or("*"));
    let after = serde_json::json!({ "account": account, "source": source.map(|s| s.to_string()) });
    let acc = account.clone();
    let answer = ctx
        .ask(|reply| AdminCmd::ClearLockouts {
            account: acc,
            source,
            reply,
        })
        .await
        .ok_or_else(unavailable)?;
    // The core answers once the clearing is saved; the record follows,
    // also for a clearing in force but not saved.
    let (outcome, detail) = match &answer {
        Ok(n) => ("ok", format!("{n} active lockouts cleared")),
        Err(e) => ("not saved", e.clone()),
    };
    let entry = store::AuditEntry {
        at: sip_app::unix_now(),
        actor: c.actor.clone(),
        source: c.source.clone(),
        action: "lockouts.clear".into(),
        object,
        outcome: outcome.into(),
        detail,
        before: None,
        after: Some(after.to_string()),
    };
    ctx.store.append_audit(entry).await.map_err(internal)?;
    match answer {
        Ok(n) => Ok(json(StatusCode::OK, &serde_json::json!({ "cleared": n }))),
        Err(e) => Err(problem(StatusCode::SERVICE_UNAVAILABLE, e)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditQuery {
    actor: Option<String>,
    object: Option<String>,
    since: Option<i64>,
    until: Option<i64>,
    limit: Option<usize>,
}

fn record_json(r: &AuditRecord) -> serde_json::Value {
    let parse = |s: &Option<String>| {
        s.as_ref().map(|t| {
            serde_json::from_str::<serde_json::Value>(t)
                .unwrap_or(serde_json::Value::String(t.clone()))
        })
    };
    let e = &r.entry;
    serde_json::json!({
        "seq": r.seq, "at": e.at, "actor": e.actor, "source": e.source, "action": e.action,
        "object": e.object, "outcome": e.outcome, "detail": e.detail,
        "before": parse(&e.before), "after": parse(&e.after),
    })
}

pub(crate) async fn audit_list<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    Query(q): Query<AuditQuery>,
) -> ApiResult {
    ctx.allow(&c, "audit.read", Target::Any, "audit").await?;
    if q.limit.is_some_and(|l| !(1..=1000).contains(&l)) {
        return Err(problem(StatusCode::BAD_REQUEST, "limit must be 1-1000"));
    }
    for (what, v) in [("actor", &q.actor), ("object", &q.object)] {
        if v.as_ref()
            .is_some_and(|t| t.chars().count() > 200 || t.chars().any(char::is_control))
        {
            return Err(problem(
                StatusCode::BAD_REQUEST,
                format!("{what} must be one line of at most 200 characters"),
            ));
        }
    }
    let f = AuditFilter {
        actor: q.actor,
        object: q.object,
        since: q.since,
        until: q.until,
        limit: q.limit.unwrap_or(100).clamp(1, 1000),
    };
    let rows = ctx.store.audit_list(f).await.map_err(internal)?;
    let out: Vec<serde_json::Value> = rows.iter().map(record_json).collect();
    Ok(json(StatusCode::OK, &out))
}

pub(crate) async fn audit_verify<S: Store>(State(ctx): State<Ctx<S>>, c: Caller) -> ApiResult {
    ctx.allow(&c, "audit.read", Target::Any, "audit").await?;
    let r = ctx.store.audit_verify().await.map_err(internal)?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "records": r.records, "intact": r.problems.is_empty(), "problems": r.problems }),
    ))
}

/// Every security-relevant setting with its recommendation (`security show`
/// and `security check` read this).
pub(crate) async fn security<S: Store>(State(ctx): State<Ctx<S>>, c: Caller) -> ApiResult {
    ctx.allow(&c, "security.read", Target::Any, "security")
        .await?;
    let st = store::Policies::policy_state(&ctx.store)
        .await
        .map_err(internal)?;
    let mut docs = Vec::with_capacity(st.policies.len());
    for p in st.policies {
        let Some(k) = policy::spec::kind(&p.kind) else {
            continue;
        };
        let fields = policy::fields_from_json(k, &p.fields_json).map_err(internal)?;
        let scope = match &p.scope {
            store::PolicyScope::Global => "global".to_string(),
            store::PolicyScope::Site(n) => format!("site:{n}"),
            store::PolicyScope::Named(n) => format!("named:{n}"),
        };
        docs.push((p.kind, scope, fields));
    }
    let admins = store::Admins::list_admins(&ctx.store)
        .await
        .map_err(internal)?;
    let tokens = store::Admins::tokens(&ctx.store).await.map_err(internal)?;
    let audit = ctx
        .store
        .audit_verify()
        .await
        .ok()
        .map(|r| r.problems.is_empty());
    let edges: Vec<crate::edges::EdgeRecord> = match ctx.edges {
        Some(_) => store::EdgePairings::edges(&ctx.store)
            .await
            .map_err(internal)?
            .into_iter()
            .map(crate::edges::record)
            .collect(),
        None => Vec::new(),
    };
    let live = ctx
        .ask(AdminCmd::Status)
        .await
        .map(|s| s.edges)
        .unwrap_or_default();
    let items = crate::security::assess(&crate::security::Facts {
        cfg: &ctx.cfg,
        docs: &docs,
        admins: &admins,
        tokens: &tokens,
        audit_intact: audit,
        now: sip_app::unix_now(),
        edges: &edges,
        live: &live,
    });
    Ok(json(StatusCode::OK, &items))
}
