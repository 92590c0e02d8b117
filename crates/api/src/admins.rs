//! Operations, roles, administrators and API tokens.

use super::extract::Bytes;
use super::extract::P as Path;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rbac::{Role, Target};
use serde::Deserialize;
use store::Store;
use store::{AdminRow, AdminUpdate, RoleRow, StoreError, TokenRow};

use super::access::Caller;
use super::{body, internal, json, problem, ApiResult, Ctx};
use crate::credentials::{new_admin, NewAdmin};

fn role_json(r: &Role) -> serde_json::Value {
    serde_json::json!({
        "name": r.name, "description": r.description, "operations": r.ops,
        "site": r.site, "group": r.group, "builtin": r.builtin,
    })
}

pub(crate) async fn operations<S: Store>(State(ctx): State<Ctx<S>>, c: Caller) -> ApiResult {
    ctx.allow(&c, "roles.read", Target::Any, "roles").await?;
    let out: Vec<serde_json::Value> = rbac::ops::all()
        .iter()
        .map(|o| serde_json::json!({ "name": o, "doc": rbac::ops::doc(o) }))
        .collect();
    Ok(json(StatusCode::OK, &out))
}

pub(crate) async fn roles<S: Store>(State(ctx): State<Ctx<S>>, c: Caller) -> ApiResult {
    ctx.allow(&c, "roles.read", Target::Any, "roles").await?;
    let mut out: Vec<serde_json::Value> = rbac::predefined().iter().map(role_json).collect();
    for r in ctx.store.roles().await.map_err(internal)? {
        if let Some(role) = ctx.role(&r.name).await? {
            out.push(role_json(&role));
        }
    }
    Ok(json(StatusCode::OK, &out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoleBody {
    #[serde(default)]
    description: String,
    operations: Vec<String>,
    site: Option<String>,
    group: Option<String>,
}

pub(crate) async fn put_role<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    Path(name): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let b: RoleBody = body(&bytes)?;
    if rbac::predefined().iter().any(|r| r.name == name) {
        // The role exists and is fixed: a conflict with the server's state.
        return Err(problem(
            StatusCode::CONFLICT,
            format!("{name} is a predefined role and cannot be changed; create a custom role with another name"),
        ));
    }
    let role = Role::custom(&name, &b.description, b.operations, b.site, b.group)
        .map_err(|e| problem(StatusCode::BAD_REQUEST, e.0))?;
    let object = format!("role:{name}");
    ctx.allow(&c, "roles.write", Target::All, &object).await?;
    let before = ctx.role(&name).await?.map(|r| role_json(&r));
    let row = RoleRow {
        name: role.name.clone(),
        description: role.description.clone(),
        ops: role.ops.iter().cloned().collect(),
        site: role.site.clone(),
        group: role.group.clone(),
    };
    ctx.audited(&c, "roles.write", &object, before, Some(role_json(&role)))
        .put_role(row)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => problem(
                StatusCode::CONFLICT,
                format!(
                    "no group {:?}; create it first with `parapet admin group create`",
                    role.group.as_deref().unwrap_or("")
                ),
            ),
            other => internal(other),
        })?;
    Ok(json(StatusCode::OK, &role_json(&role)))
}

pub(crate) async fn remove_role<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    Path(name): Path<String>,
) -> ApiResult {
    let object = format!("role:{name}");
    ctx.allow(&c, "roles.write", Target::All, &object).await?;
    if rbac::predefined().iter().any(|r| r.name == name) {
        return Err(problem(
            StatusCode::CONFLICT,
            format!("{name} is a predefined role and cannot be removed"),
        ));
    }
    let before = ctx.role(&name).await?.map(|r| role_json(&r));
    let removed = ctx
        .audited(&c, "roles.write", &object, before, None)
        .remove_role(&name)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(m) => problem(
                StatusCode::CONFLICT,
                format!("{m}; give them another role first"),
            ),
            other => internal(other),
        })?;
    if !removed {
        return Err(problem(
            StatusCode::NOT_FOUND,
            format!("no custom role {name}; see `parapet admin role list`"),
        ));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn admin_json(a: &AdminRow) -> serde_json::Value {
    serde_json::json!({
        "name": a.name, "role": a.role, "enabled": a.enabled,
        "locked_until": a.locked_until, "created_at": a.created_at,
    })
}

pub(crate) async fn list<S: Store>(State(ctx): State<Ctx<S>>, c: Caller) -> ApiResult {
    ctx.allow(&c, "admins.read", Target::Any, "admins").await?;
    let out: Vec<serde_json::Value> = ctx
        .store
        .list_admins()
        .await
        .map_err(internal)?
        .iter()
        .map(admin_json)
        .collect();
    Ok(json(StatusCode::OK, &out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateBody {
    name: String,
    role: String,
    /// Omitted: a random one is generated and returned once.
    password: Option<String>,
}

async fn existing_role<S: Store>(ctx: &Ctx<S>, name: &str) -> Result<Role, Response> {
    ctx.role(name).await?.ok_or_else(|| {
        problem(
            StatusCode::BAD_REQUEST,
            format!("no role {name:?}; see `parapet admin role list`"),
        )
    })
}

pub(crate) async fn create<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    bytes: Bytes,
) -> ApiResult {
    let b: CreateBody = body(&bytes)?;
    rbac::check_name("administrator name", &b.name)
        .map_err(|e| problem(StatusCode::BAD_REQUEST, e.0))?;
    if let Some(p) = &b.password {
        rbac::password::check(p).map_err(|e| problem(StatusCode::BAD_REQUEST, e))?;
    }
    let object = format!("admin:{}", b.name);
    ctx.allow(&c, "admins.write", Target::All, &object).await?;
    existing_role(&ctx, &b.role).await?;
    let (name, role, password) = (b.name.clone(), b.role.clone(), b.password);
    let seal = ctx.seal.clone();
    let made: NewAdmin = ctx
        .hashing(move || new_admin(&seal, &name, &role, password))
        .await?
        .map_err(internal)?;
    let after = serde_json::json!({ "name": b.name, "role": b.role, "enabled": true });
    ctx.audited(&c, "admins.write", &object, None, Some(after))
        .add_admin(made.row.clone())
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => problem(
                StatusCode::CONFLICT,
                format!("administrator {} already exists", b.name),
            ),
            other => internal(other),
        })?;
    Ok(json(StatusCode::CREATED, &made.secrets_json()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateBody {
    role: Option<String>,
    enabled: Option<bool>,
    #[serde(default)]
    reset_password: bool,
    #[serde(default)]
    reset_totp: bool,
}

/// Refuses to leave no enabled administrator with the `administrator` role.
async fn keeps_an_administrator<S: Store>(
    ctx: &Ctx<S>,
    name: &str,
    role_after: Option<&str>,
    enabled_after: bool,
) -> Result<(), Response> {
    let admins = ctx.store.list_admins().await.map_err(internal)?;
    let left = admins
        .iter()
        .filter(|a| {
            let (role, enabled) = if a.name == name {
                (role_after.unwrap_or(""), enabled_after)
            } else {
                (a.role.as_str(), a.enabled)
            };
            role == "administrator" && enabled
        })
        .count();
    if left == 0 {
        return Err(problem(StatusCode::CONFLICT, "this would leave no enabled administrator with the administrator role; create another first"));
    }
    Ok(())
}

pub(crate) async fn update<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    Path(name): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let b: UpdateBody = body(&bytes)?;
    let object = format!("admin:{name}");
    ctx.allow(&c, "admins.write", Target::All, &object).await?;
    let Some(before) = ctx.store.admin(&name).await.map_err(internal)? else {
        return Err(problem(
            StatusCode::NOT_FOUND,
            format!("no administrator {name}; see `parapet admin admins list`"),
        ));
    };
    if let Some(r) = &b.role {
        existing_role(&ctx, r).await?;
    }
    let role_after = b.role.clone().unwrap_or(before.role.clone());
    keeps_an_administrator(
        &ctx,
        &name,
        Some(&role_after),
        b.enabled.unwrap_or(before.enabled),
    )
    .await?;
    let mut update = AdminUpdate {
        role: b.role.clone(),
        enabled: b.enabled,
        ..Default::default()
    };
    let mut out = serde_json::Map::new();
    if b.reset_password || b.reset_totp {
        let (seal, n) = (ctx.seal.clone(), name.clone());
        let made = ctx
            .hashing(move || new_admin(&seal, &n, "", None))
            .await?
            .map_err(internal)?;
        if b.reset_password {
            update.password = Some(made.row.password.clone());
            out.insert("password".into(), made.password.clone().into());
        }
        if b.reset_totp {
            update.totp = Some(made.row.totp.clone());
            out.insert("totp_secret".into(), made.totp_secret.clone().into());
            out.insert("otpauth_uri".into(), made.otpauth_uri.clone().into());
        }
    }
    let after = serde_json::json!({
        "role": role_after, "enabled": b.enabled.unwrap_or(before.enabled),
        "password_reset": b.reset_password, "totp_reset": b.reset_totp,
    });
    ctx.audited(
        &c,
        "admins.write",
        &object,
        Some(admin_json(&before)),
        Some(after),
    )
    .update_admin(&name, update)
    .await
    .map_err(internal)?;
    out.insert("name".into(), name.into());
    Ok(json(StatusCode::OK, &serde_json::Value::Object(out)))
}

pub(crate) async fn remove<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    Path(name): Path<String>,
) -> ApiResult {
    let object = format!("admin:{name}");
    ctx.allow(&c, "admins.write", Target::All, &object).await?;
    let Some(before) = ctx.store.admin(&name).await.map_err(internal)? else {
        return Err(problem(
            StatusCode::NOT_FOUND,
            format!("no administrator {name}; see `parapet admin admins list`"),
        ));
    };
    keeps_an_administrator(&ctx, &name, None, false).await?;
    ctx.audited(&c, "admins.write", &object, Some(admin_json(&before)), None)
        .remove_admin(&name)
        .await
        .map_err(internal)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn token_json(t: &TokenRow) -> serde_json::Value {
    serde_json::json!({
        "id": t.id, "admin": t.admin, "kind": t.kind, "name": t.name, "role": t.role,
        "created_at": t.created_at, "expires_at": t.expires_at,
    })
}

/// One's own tokens; everyone's with `admins.read`.
pub(crate) async fn tokens<S: Store>(State(ctx): State<Ctx<S>>, c: Caller) -> ApiResult {
    let all = c.role.permits("admins.read", Target::Any);
    let now = sip_app::unix_now();
    let out: Vec<serde_json::Value> = ctx
        .store
        .tokens()
        .await
        .map_err(internal)?
        .iter()
        .filter(|t| (all || t.admin == c.admin) && t.expires_at > now)
        .map(token_json)
        .collect();
    Ok(json(StatusCode::OK, &out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenBody {
    name: String,
    /// Defaults to the caller's own role.
    role: Option<String>,
    /// 1-366 days.
    expires_in_days: i64,
}

pub(crate) async fn create_token<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    bytes: Bytes,
) -> ApiResult {
    let b: TokenBody = body(&bytes)?;
    rbac::check_name("token name", &b.name).map_err(|e| problem(StatusCode::BAD_REQUEST, e.0))?;
    if !(1..=366).contains(&b.expires_in_days) {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            "expires_in_days must be 1-366: tokens always expire",
        ));
    }
    let object = format!("token:{}/{}", c.admin, b.name);
    ctx.allow(&c, "tokens.write", Target::Any, &object).await?;
    let role = match &b.role {
        Some(r) => existing_role(&ctx, r).await?,
        None => c.role.clone(),
    };
    if !c.role.covers(&role) {
        let detail = format!(
            "role {} allows more than your role {}; a token never gets more than its creator",
            role.name, c.role.name
        );
        ctx.record_refusal(&c.actor, &c.source, "tokens.write", &object, &detail)
            .await;
        return Err(problem(StatusCode::FORBIDDEN, detail));
    }
    let minted = rbac::token::mint().ok_or_else(|| internal("random generator failed"))?;
    let now = sip_app::unix_now();
    let row = TokenRow {
        id: minted.id.clone(),
        hash: minted.hash,
        admin: c.admin.clone(),
        kind: "api".into(),
        name: b.name.clone(),
        role: role.name.clone(),
        created_at: now,
        expires_at: now + b.expires_in_days * 86_400,
    };
    let after = token_json(&row);
    ctx.audited(&c, "tokens.write", &object, None, Some(after.clone()))
        .add_token(row)
        .await
        .map_err(internal)?;
    let mut out = after;
    out["token"] = minted.text.into();
    Ok(json(StatusCode::CREATED, &out))
}

pub(crate) async fn revoke_token<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    Path(id): Path<String>,
) -> ApiResult {
    let object = format!("token:{id}");
    let Some(t) = ctx.store.token(&id).await.map_err(internal)? else {
        return Err(problem(
            StatusCode::NOT_FOUND,
            format!("no token {id}; see `parapet admin token list`"),
        ));
    };
    if t.admin != c.admin {
        ctx.allow(&c, "admins.write", Target::All, &object).await?;
    }
    ctx.audited(&c, "tokens.write", &object, Some(token_json(&t)), None)
        .remove_token(&id)
        .await
        .map_err(internal)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
