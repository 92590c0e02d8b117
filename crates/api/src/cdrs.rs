//! Usage records for operators and compliance officers: calls (who called
//! whom, when, how long, how it ended, relayed or not), conversations,
//! files offered, sign-ins and sign-outs. Each read is audited.

use axum::extract::State;
use axum::http::StatusCode;
use rbac::Target;
use serde::Deserialize;

use super::access::Caller;
use super::extract::Q as Query;
use super::{internal, json, ApiResult, Ctx};
use store::{CdrFilter, CdrRow, Store};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CdrQuery {
    user: Option<String>,
    /// One kind of record (`store::cdr::KINDS`).
    kind: Option<String>,
    /// Unix seconds (the call's start).
    since: Option<i64>,
    until: Option<i64>,
    limit: Option<usize>,
    after: Option<i64>,
}

fn row_json(r: &CdrRow) -> serde_json::Value {
    let secs = if r.answered_ms > 0 {
        (r.ended_ms - r.answered_ms).max(0) / 1000
    } else {
        0
    };
    serde_json::json!({
        "id": r.id, "kind": r.kind, "call_id": r.call_id, "caller": r.caller, "callee": r.callee,
        "caller_device": r.caller_device, "callee_device": r.callee_device,
        "federated": r.federated, "started_ms": r.started_ms,
        "answered_ms": if r.answered_ms > 0 { Some(r.answered_ms) } else { None },
        "ended_ms": r.ended_ms, "duration_secs": secs, "status": r.status, "ended_by": r.ended_by,
        "partner": r.partner, "media_relayed": r.media_relayed, "messages": r.messages,
        "detail": r.detail, "keep_until_ms": r.keep_until_ms,
    })
}

/// `GET /v1/cdrs`: call detail records, oldest first; `next` continues.
pub(crate) async fn list<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    Query(q): Query<CdrQuery>,
) -> ApiResult {
    let user = match &q.user {
        Some(u) => {
            let aor = super::users::aor(&ctx, u)?;
            ctx.allow_user(&c, "cdrs.read", &aor).await?;
            Some(aor)
        }
        None => {
            ctx.allow(&c, "cdrs.read", Target::All, "cdrs:*").await?;
            None
        }
    };
    super::archive::check_page(q.since, q.until, q.limit, q.after)?;
    if let Some(k) = &q.kind {
        if !store::cdr::KINDS.contains(&k.as_str()) {
            return Err(super::problem(
                StatusCode::BAD_REQUEST,
                format!("kind must be one of {}", store::cdr::KINDS.join(", ")),
            ));
        }
    }
    let limit = q.limit.unwrap_or(100);
    let detail = serde_json::json!({ "user": user, "kind": q.kind, "since": q.since, "until": q.until, "after": q.after });
    let object = format!("cdrs:{}", user.as_deref().unwrap_or("*"));
    super::archive::audit_read(&ctx, &c, "cdrs.read", &object, detail.to_string()).await?;
    let rows = ctx
        .store
        .cdr_find(CdrFilter {
            user,
            kind: q.kind.clone(),
            since_ms: q.since.map(|s| s * 1000),
            until_ms: q.until.map(|s| s * 1000),
            after_id: q.after.unwrap_or(0),
            limit,
        })
        .await
        .map_err(internal)?;
    let next = (rows.len() == limit)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "records": rows.iter().map(row_json).collect::<Vec<_>>(), "next": next }),
    ))
}
