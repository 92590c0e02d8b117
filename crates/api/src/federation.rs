//! Federation for administrators: the partners this server has dealt with
//! (standing, counters, watch list), clearing a watch-listed partner, and
//! how the policy would decide a request (`explain`).

use axum::extract::State;
use axum::http::StatusCode;
use rbac::Target;
use serde::Deserialize;
use sip_app::policy_set::Modality;
use store::Store;

use super::access::Caller;
use super::extract::Q as Query;
use super::status::unavailable;
use super::{internal, json, problem, AdminCmd, ApiResult, Ctx};

pub(crate) async fn partners<S: Store>(State(ctx): State<Ctx<S>>, c: Caller) -> ApiResult {
    ctx.allow(&c, "policies.read", Target::Any, "federation partners")
        .await?;
    let v = ctx.ask(AdminCmd::Partners).await.ok_or_else(unavailable)?;
    Ok(json(StatusCode::OK, &v))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClearQuery {
    domain: String,
}

/// Takes a partner off the watch list (the lockout of partners: the same
/// permission as clearing users' lockouts), audited.
pub(crate) async fn clear<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    Query(q): Query<ClearQuery>,
) -> ApiResult {
    let domain = q.domain.trim().trim_end_matches('.').to_ascii_lowercase();
    if !policy::valid_domain(&domain) {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            "domain must be a partner's domain name, e.g. domain=partner.example",
        ));
    }
    ctx.allow(&c, "lockouts.clear", Target::All, "federation partners")
        .await?;
    let d = domain.clone();
    let cleared = ctx
        .ask(|reply| AdminCmd::ClearPartner { domain: d, reply })
        .await
        .ok_or_else(unavailable)?;
    let entry = store::AuditEntry {
        at: sip_app::unix_now(),
        actor: c.actor.clone(),
        source: c.source.clone(),
        action: "federation.partner.clear".into(),
        object: format!("partner:{domain}"),
        outcome: "ok".into(),
        detail: if cleared {
            "taken off the watch list".into()
        } else {
            "was not on the watch list".into()
        },
        before: None,
        after: None,
    };
    ctx.store.append_audit(entry).await.map_err(internal)?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "domain": domain, "cleared": cleared }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExplainQuery {
    from: String,
    to: String,
    modality: String,
}

pub(crate) async fn explain<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    Query(q): Query<ExplainQuery>,
) -> ApiResult {
    ctx.allow(&c, "policies.read", Target::Any, "federation explain")
        .await?;
    let Some(modality) = Modality::parse(&q.modality) else {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            "modality must be im, presence or calls",
        ));
    };
    if q.from.len() > 512 || q.to.len() > 512 {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            "from and to are addresses of at most 512 characters",
        ));
    }
    let r = ctx
        .ask(|reply| AdminCmd::Explain {
            from: q.from,
            to: q.to,
            modality,
            reply,
        })
        .await
        .ok_or_else(unavailable)?;
    match r {
        Ok(e) => Ok(json(StatusCode::OK, &e)),
        Err(why) => Err(problem(StatusCode::BAD_REQUEST, &why)),
    }
}
