//! Policy kinds, documents, grants, and a user's effective policy.

use std::collections::BTreeMap;
use store::Store;

use super::extract::Bytes;
use super::extract::{P as Path, Q as Query};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use policy::spec::{kind, kinds as all_kinds, Fields, KindSpec};
use policy::Value;
use rbac::ops::{policy_grant, policy_write};
use rbac::Target;
use serde::Deserialize;
use store::{GrantRow, GrantTargetRow, PolicyRow, PolicyScope, StoreError};

use super::access::Caller;
use super::users::aor;
use super::{body, internal, json, problem, ApiResult, Ctx};
use sip_app::policy_set::PolicySet;

fn kind_or_404(name: &str) -> Result<&'static KindSpec, Response> {
    kind(name).ok_or_else(|| {
        let known: Vec<&str> = all_kinds().iter().map(|k| k.name).collect();
        problem(
            StatusCode::NOT_FOUND,
            format!(
                "no policy kind {name:?}; the kinds are {}",
                known.join(", ")
            ),
        )
    })
}

/// `global`, `site:NAME` or `named:NAME`.
fn scope(text: &str) -> Result<PolicyScope, Response> {
    let bad = || {
        problem(
            StatusCode::BAD_REQUEST,
            format!("scope {text:?} is not valid: write global, site:NAME or named:NAME"),
        )
    };
    let s = match text.split_once(':') {
        None if text == "global" => PolicyScope::Global,
        Some(("site", n)) => PolicyScope::Site(n.to_string()),
        Some(("named", n)) => PolicyScope::Named(n.to_string()),
        _ => return Err(bad()),
    };
    if let PolicyScope::Site(n) | PolicyScope::Named(n) = &s {
        rbac::check_name("name", n).map_err(|e| problem(StatusCode::BAD_REQUEST, e.0))?;
    }
    Ok(s)
}

fn scope_text(s: &PolicyScope) -> String {
    match s {
        PolicyScope::Global => "global".into(),
        PolicyScope::Site(n) => format!("site:{n}"),
        PolicyScope::Named(n) => format!("named:{n}"),
    }
}

fn value_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Int(n) => serde_json::Value::from(*n),
        Value::Text(s) => serde_json::Value::String(s.clone()),
        Value::List(l) => serde_json::Value::from(l.clone()),
    }
}

fn fields_json(f: &Fields) -> serde_json::Value {
    f.iter()
        .map(|(k, v)| (k.clone(), value_json(v)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

pub(crate) async fn kinds<S: Store>(State(ctx): State<Ctx<S>>, c: Caller) -> ApiResult {
    ctx.allow(&c, "policies.read", Target::Any, "policies")
        .await?;
    let out: Vec<serde_json::Value> = all_kinds()
        .iter()
        .map(|k| {
            let fields: Vec<serde_json::Value> = k
                .fields
                .iter()
                .map(|f| serde_json::json!({
                    "name": f.name, "type": f.ty.describe(), "default": value_json(&f.default.value()),
                    "doc": f.doc, "lync": f.lync,
                }))
                .collect();
            serde_json::json!({ "kind": k.name, "doc": k.doc, "fields": fields })
        })
        .collect();
    Ok(json(StatusCode::OK, &out))
}

/// Every stored document, fields validated on the way out.
async fn documents<S: Store>(ctx: &Ctx<S>) -> Result<Vec<(PolicyRow, Fields)>, Response> {
    let st = ctx.store.policy_state().await.map_err(internal)?;
    st.policies
        .into_iter()
        .map(|p| {
            let k = kind_or_404(&p.kind)?;
            let f = policy::fields_from_json(k, &p.fields_json).map_err(internal)?;
            Ok((p, f))
        })
        .collect()
}

pub(crate) async fn list<S: Store>(State(ctx): State<Ctx<S>>, c: Caller) -> ApiResult {
    ctx.allow(&c, "policies.read", Target::Any, "policies")
        .await?;
    let out: Vec<serde_json::Value> = documents(&ctx)
        .await?
        .iter()
        .map(|(p, f)| serde_json::json!({ "kind": p.kind, "scope": scope_text(&p.scope), "fields": fields_json(f) }))
        .collect();
    Ok(json(StatusCode::OK, &out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatchBody {
    /// Field values as typed JSON (`true`, `5`, `"text"`, `["a", "b"]`).
    #[serde(default)]
    set: BTreeMap<String, serde_json::Value>,
    /// Fields to remove (they fall back to wider scopes).
    #[serde(default)]
    unset: Vec<String>,
}

fn target_of(s: &PolicyScope) -> Target<'_> {
    match s {
        PolicyScope::Site(n) => Target::Site(n),
        _ => Target::All,
    }
}

pub(crate) async fn patch<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    Path((kind_name, scope_str)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult {
    let k = kind_or_404(&kind_name)?;
    let sc = scope(&scope_str)?;
    let b: PatchBody = body(&bytes)?;
    let object = format!("policy:{}/{}", k.name, scope_text(&sc));
    ctx.allow(&c, &policy_write(k.name), target_of(&sc), &object)
        .await?;
    let bad = |e: policy::ValueError| problem(StatusCode::BAD_REQUEST, e.0);
    let before = documents(&ctx)
        .await?
        .into_iter()
        .find(|(p, _)| p.kind == k.name && p.scope == sc)
        .map(|(_, f)| f);
    let mut fields = before.clone().unwrap_or_default();
    for name in &b.unset {
        if k.field(name).is_none() {
            return Err(bad(policy::ValueError(format!(
                "{}: no field {name:?}; see `parapet admin policy kinds`",
                k.name
            ))));
        }
        fields.remove(name);
    }
    let typed = serde_json::Value::Object(b.set.into_iter().collect()).to_string();
    fields.extend(policy::fields_from_json(k, &typed).map_err(bad)?);
    k.check_all(&fields).map_err(bad)?;
    let after = fields_json(&fields);
    ctx.audited(
        &c,
        &policy_write(k.name),
        &object,
        before.as_ref().map(fields_json),
        Some(after.clone()),
    )
    .put_policy(PolicyRow {
        kind: k.name.to_string(),
        scope: sc.clone(),
        fields_json: policy::fields_to_json(&fields),
    })
    .await
    .map_err(internal)?;
    ctx.publish_policies().await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "kind": k.name, "scope": scope_text(&sc), "fields": after }),
    ))
}

pub(crate) async fn remove<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    Path((kind_name, scope_str)): Path<(String, String)>,
) -> ApiResult {
    let k = kind_or_404(&kind_name)?;
    let sc = scope(&scope_str)?;
    let object = format!("policy:{}/{}", k.name, scope_text(&sc));
    ctx.allow(&c, &policy_write(k.name), target_of(&sc), &object)
        .await?;
    let before = documents(&ctx)
        .await?
        .into_iter()
        .find(|(p, _)| p.kind == k.name && p.scope == sc)
        .map(|(_, f)| fields_json(&f));
    let removed = ctx
        .audited(&c, &policy_write(k.name), &object, before, None)
        .remove_policy(k.name, sc.clone())
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => problem(
                StatusCode::CONFLICT,
                format!(
                    "{} is still granted; revoke its grants first (`parapet admin grant list`)",
                    scope_text(&sc)
                ),
            ),
            other => internal(other),
        })?;
    if !removed {
        return Err(problem(
            StatusCode::NOT_FOUND,
            format!("no {} policy at {}", k.name, scope_text(&sc)),
        ));
    }
    ctx.publish_policies().await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn grants<S: Store>(State(ctx): State<Ctx<S>>, c: Caller) -> ApiResult {
    ctx.allow(&c, "policies.read", Target::Any, "grants")
        .await?;
    let st = ctx.store.policy_state().await.map_err(internal)?;
    let out: Vec<serde_json::Value> = st
        .grants
        .iter()
        .map(|g| serde_json::json!({ "kind": g.kind, "policy": g.policy, "target": target_text(&g.target) }))
        .collect();
    Ok(json(StatusCode::OK, &out))
}

fn target_text(t: &GrantTargetRow) -> String {
    match t {
        GrantTargetRow::User(u) => format!("user:{u}"),
        GrantTargetRow::Group(g) => format!("group:{g}"),
    }
}

/// `user:sip:...` or `group:NAME`; checks the caller may grant to it.
async fn grant_target<S: Store>(
    ctx: &Ctx<S>,
    c: &Caller,
    op: &str,
    text: &str,
) -> Result<GrantTargetRow, Response> {
    let t = match text.split_once(':') {
        Some(("user", uri)) => GrantTargetRow::User(aor(ctx, uri)?),
        Some(("group", g)) => {
            rbac::check_name("group", g).map_err(|e| problem(StatusCode::BAD_REQUEST, e.0))?;
            GrantTargetRow::Group(g.to_string())
        }
        _ => return Err(problem(StatusCode::BAD_REQUEST, format!("grant target {text:?} is not valid: write user:sip:alice@example.com or group:NAME"))),
    };
    match &t {
        GrantTargetRow::User(a) => {
            ctx.allow_user(c, op, a).await?;
            super::users::find(ctx, a).await?;
        }
        GrantTargetRow::Group(g) => {
            ctx.allow(c, op, Target::Group(g), &format!("group:{g}"))
                .await?
        }
    }
    Ok(t)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GrantBody {
    policy: String,
}

pub(crate) async fn grant<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    Path((kind_name, target)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult {
    let k = kind_or_404(&kind_name)?;
    let b: GrantBody = body(&bytes)?;
    rbac::check_name("policy", &b.policy).map_err(|e| problem(StatusCode::BAD_REQUEST, e.0))?;
    let op = policy_grant(k.name);
    let t = grant_target(&ctx, &c, &op, &target).await?;
    let object = format!("grant:{}/{}", k.name, target_text(&t));
    ctx.audited(&c, &op, &object, None, Some(serde_json::json!({ "policy": b.policy })))
        .put_grant(GrantRow { kind: k.name.to_string(), policy: b.policy.clone(), target: t.clone() })
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => problem(StatusCode::CONFLICT, format!("no named {} policy {:?} (create it with `parapet admin policy set {} named:{} ...`), or no such user or group", k.name, b.policy, k.name, b.policy)),
            other => internal(other),
        })?;
    ctx.publish_policies().await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "kind": k.name, "policy": b.policy, "target": target_text(&t) }),
    ))
}

pub(crate) async fn revoke<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    Path((kind_name, target)): Path<(String, String)>,
) -> ApiResult {
    let k = kind_or_404(&kind_name)?;
    let op = policy_grant(k.name);
    let t = grant_target(&ctx, &c, &op, &target).await?;
    let object = format!("grant:{}/{}", k.name, target_text(&t));
    let removed = ctx
        .audited(&c, &op, &object, None, None)
        .remove_grant(k.name, t)
        .await
        .map_err(internal)?;
    if !removed {
        return Err(problem(
            StatusCode::NOT_FOUND,
            format!("no {} grant to {target}", k.name),
        ));
    }
    ctx.publish_policies().await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EffectiveQuery {
    kind: Option<String>,
}

pub(crate) async fn effective<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    Path(uri): Path<String>,
    Query(q): Query<EffectiveQuery>,
) -> ApiResult {
    let aor = aor(&ctx, &uri)?;
    ctx.allow_user(&c, "users.read", &aor).await?;
    ctx.allow(&c, "policies.read", Target::Any, "policies")
        .await?;
    super::users::find(&ctx, &aor).await?;
    let wanted: Vec<&KindSpec> = match &q.kind {
        Some(n) => vec![kind_or_404(n)?],
        None => all_kinds().to_vec(),
    };
    let set = PolicySet::load(&ctx.store).await.map_err(internal)?;
    let mut out = Vec::new();
    for k in wanted {
        let eff = set.snapshot.effective(&aor, k.name).map_err(internal)?;
        let fields: Vec<serde_json::Value> = eff
            .fields
            .iter()
            .map(|(spec, v, origin)| serde_json::json!({ "name": spec.name, "value": value_json(v), "origin": origin.to_string() }))
            .collect();
        out.push(serde_json::json!({ "kind": k.name, "fields": fields }));
    }
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "user": aor, "policies": out }),
    ))
}
