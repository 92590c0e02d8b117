//! SIP users: list, add, import, show, password, enable/disable, remove.

use super::extract::Bytes;
use super::extract::P as Path;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rbac::Target;
use serde::Deserialize;
use store::Store;

use super::access::Caller;
use super::{body, internal, json, problem, AdminCmd, ApiResult, Ctx};
use crate::manage::UserInfo;
use sip_app::policy_set::PolicySet;

/// A manager error: the user's fault (400/404/409) unless it is the store's.
pub(crate) fn refused(e: String) -> Response {
    let status = if e.starts_with("no user ") {
        StatusCode::NOT_FOUND
    } else if e.contains("already exists") || e.contains("import refused") {
        StatusCode::CONFLICT
    } else if e.starts_with("database") || e.starts_with("conflict") {
        return internal(e);
    } else {
        StatusCode::BAD_REQUEST
    };
    problem(status, e)
}

fn view(u: &UserInfo, set: &PolicySet) -> serde_json::Value {
    let (site, groups) = set.placement(&u.uri);
    serde_json::json!({
        "uri": u.uri,
        "display_name": u.display_name,
        "enabled": u.enabled,
        "created_at": u.created_at,
        "site": site,
        "groups": groups,
    })
}

pub(crate) async fn find<S: Store>(ctx: &Ctx<S>, aor: &str) -> Result<UserInfo, Response> {
    let users = ctx.users.list().await.map_err(internal)?;
    users.into_iter().find(|u| u.uri == aor).ok_or_else(|| {
        problem(
            StatusCode::NOT_FOUND,
            format!("no user {aor}; see `parapet admin user list`"),
        )
    })
}

/// The canonical AOR of a user URI from the path, or 400.
pub(crate) fn aor<S: Store>(ctx: &Ctx<S>, uri: &str) -> Result<String, Response> {
    ctx.users
        .parse_uri(uri)
        .map(|(aor, _)| aor)
        .map_err(|e| problem(StatusCode::BAD_REQUEST, e))
}

pub(crate) async fn list<S: Store>(State(ctx): State<Ctx<S>>, c: Caller) -> ApiResult {
    ctx.allow(&c, "users.read", Target::Any, "users").await?;
    let set = PolicySet::load(&ctx.store).await.map_err(internal)?;
    let users = ctx.users.list().await.map_err(internal)?;
    let visible: Vec<serde_json::Value> = users
        .iter()
        .filter(|u| {
            let (site, groups) = set.placement(&u.uri);
            c.role.permits(
                "users.read",
                Target::User {
                    site: site.as_deref(),
                    groups: &groups,
                },
            )
        })
        .map(|u| view(u, &set))
        .collect();
    Ok(json(StatusCode::OK, &visible))
}

pub(crate) async fn show<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    Path(uri): Path<String>,
) -> ApiResult {
    let aor = aor(&ctx, &uri)?;
    ctx.allow_user(&c, "users.read", &aor).await?;
    let u = find(&ctx, &aor).await?;
    let set = PolicySet::load(&ctx.store).await.map_err(internal)?;
    Ok(json(StatusCode::OK, &view(&u, &set)))
}

/// The user's registered devices, as the SIP core holds them now.
pub(crate) async fn registrations<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    Path(uri): Path<String>,
) -> ApiResult {
    let aor = aor(&ctx, &uri)?;
    ctx.allow_user(&c, "users.read", &aor).await?;
    find(&ctx, &aor).await?;
    let rows = ctx
        .ask(|reply| AdminCmd::Registrations { aor, reply })
        .await
        .ok_or_else(|| {
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "the SIP core is not answering; try again",
            )
        })?;
    Ok(json(StatusCode::OK, &rows))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddBody {
    uri: String,
    password: String,
    display_name: Option<String>,
}

pub(crate) async fn add<S: Store>(State(ctx): State<Ctx<S>>, c: Caller, bytes: Bytes) -> ApiResult {
    let b: AddBody = body(&bytes)?;
    let aor = aor(&ctx, &b.uri)?;
    // A scoped role cannot add users: a new user has no site or group yet.
    ctx.allow_user(&c, "users.write", &aor).await?;
    if let Some(d) = &b.display_name {
        if d.chars().count() > 128 || d.chars().any(char::is_control) {
            return Err(problem(
                StatusCode::BAD_REQUEST,
                "display_name must be one line of at most 128 characters",
            ));
        }
    }
    let after = serde_json::json!({ "uri": aor, "display_name": b.display_name, "enabled": true });
    let store = ctx.audited(&c, "users.write", &format!("user:{aor}"), None, Some(after));
    let added = ctx
        .users
        .with_store(store)
        .add(&aor, b.display_name, &b.password)
        .await
        .map_err(refused)?;
    ctx.publish_user(&added).await?;
    let u = find(&ctx, &added).await?;
    let set = PolicySet::load(&ctx.store).await.map_err(internal)?;
    Ok(json(StatusCode::CREATED, &view(&u, &set)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ImportBody {
    users: Vec<crate::manage::ImportUser>,
}

/// Most users one import takes.
const MAX_IMPORT: usize = 100_000;

pub(crate) async fn import<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    bytes: Bytes,
) -> ApiResult {
    let b: ImportBody = body(&bytes)?;
    if b.users.len() > MAX_IMPORT {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            format!(
                "{} users in one import; at most {MAX_IMPORT}: split the file",
                b.users.len()
            ),
        ));
    }
    ctx.allow(&c, "users.write", Target::All, "users").await?;
    let uris: Vec<&str> = b.users.iter().map(|u| u.uri.as_str()).collect();
    let after = serde_json::json!({ "imported": uris.len(), "users": uris });
    let store = ctx.audited(&c, "users.write", "users", None, Some(after));
    let n = ctx
        .users
        .with_store(store)
        .import(b.users)
        .await
        .map_err(refused)?;
    ctx.publish().await?;
    Ok(json(
        StatusCode::CREATED,
        &serde_json::json!({ "imported": n }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasswordBody {
    password: String,
}

pub(crate) async fn passwd<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    Path(uri): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let b: PasswordBody = body(&bytes)?;
    let aor = aor(&ctx, &uri)?;
    ctx.allow_user(&c, "users.write", &aor).await?;
    find(&ctx, &aor).await?;
    let store = ctx.audited(
        &c,
        "users.write",
        &format!("user:{aor}"),
        None,
        Some(serde_json::json!({ "password": "changed" })),
    );
    ctx.users
        .with_store(store)
        .passwd(&aor, &b.password)
        .await
        .map_err(refused)?;
    // The store revoked the user's devices with the old password.
    ctx.revoked_in_core(&aor, None).await;
    ctx.publish_user(&aor).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnabledBody {
    enabled: bool,
}

pub(crate) async fn set_enabled<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    Path(uri): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let b: EnabledBody = body(&bytes)?;
    let aor = aor(&ctx, &uri)?;
    ctx.allow_user(&c, "users.write", &aor).await?;
    let before = find(&ctx, &aor).await?;
    let store = ctx.audited(
        &c,
        "users.write",
        &format!("user:{aor}"),
        Some(serde_json::json!({ "enabled": before.enabled })),
        Some(serde_json::json!({ "enabled": b.enabled })),
    );
    ctx.users
        .with_store(store)
        .set_enabled(&aor, b.enabled)
        .await
        .map_err(refused)?;
    ctx.publish_user(&aor).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn remove<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    Path(uri): Path<String>,
) -> ApiResult {
    let aor = aor(&ctx, &uri)?;
    ctx.allow_user(&c, "users.write", &aor).await?;
    let before = find(&ctx, &aor).await?;
    let store = ctx.audited(
        &c,
        "users.write",
        &format!("user:{aor}"),
        Some(serde_json::json!({ "uri": before.uri, "display_name": before.display_name, "enabled": before.enabled })),
        None,
    );
    ctx.users
        .with_store(store)
        .remove(&aor)
        .await
        .map_err(refused)?;
    if let Some(files) = &ctx.files {
        // Their files' records went with them; now the bytes.
        files.sweep_now.notify_one();
    }
    ctx.publish_user(&aor).await?;
    // Memberships, site and grants went with the user.
    ctx.publish_policies().await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
