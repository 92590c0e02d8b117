//! Sign-in (password + TOTP code → session token), sign-out, who am I, and
//! changing one's own password.

use super::extract::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use store::Store;
use store::{AdminUpdate, AuditEntry, SignIn, TokenRow};

use super::access::Caller;
use super::{body, internal, json, problem, ApiResult, Ctx};

/// How long a sign-in session lasts.
pub(crate) const SESSION_SECS: i64 = 8 * 3600;
/// Failed sign-ins in a row before an administrator is locked, and for how long.
const MAX_FAILURES: i64 = 5;
const LOCK_SECS: i64 = 15 * 60;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignInBody {
    name: String,
    password: String,
    code: String,
}

/// The AAD binding an administrator's sealed TOTP secret to their name.
pub(crate) fn totp_context(name: &str) -> String {
    format!("admin-totp:{name}")
}

const WRONG: &str = "the name, password or code is wrong (codes come from the authenticator app enrolled for this administrator, and each works once)";

async fn password_ok<S: Store>(
    ctx: &Ctx<S>,
    password: String,
    phc: Option<String>,
) -> Result<bool, Response> {
    ctx.hashing(move || match phc {
        Some(h) => rbac::password::verify(&password, &h),
        None => {
            rbac::password::verify_nobody(&password);
            false
        }
    })
    .await
}

pub(crate) async fn sign_in<S: Store>(
    State(ctx): State<Ctx<S>>,
    super::access::Source(source): super::access::Source,
    bytes: Bytes,
) -> ApiResult {
    let b: SignInBody = body(&bytes)?;
    let now = sip_app::unix_now();
    let admin = if rbac::check_name("name", &b.name).is_ok() {
        ctx.store.admin(&b.name).await.map_err(internal)?
    } else {
        None
    };
    let object = format!("admin:{}", b.name.chars().take(64).collect::<String>());
    let deny = |detail: &str| {
        let (ctx, source, object, detail) = (
            ctx.clone(),
            source.clone(),
            object.clone(),
            detail.to_string(),
        );
        async move {
            ctx.record_refusal("anonymous", &source, "session.create", &object, &detail)
                .await;
        }
    };
    if let Some(a) = &admin {
        if a.locked_until > now {
            deny("locked after repeated failures").await;
            return Err(problem(
                StatusCode::FORBIDDEN,
                format!("sign-in for {} is locked for {} more seconds after repeated failures; another administrator can lift it by resetting the password (`parapet admin admins update {} --reset-password`)", a.name, a.locked_until - now, a.name),
            ));
        }
    }
    let pw_ok = password_ok(&ctx, b.password, admin.as_ref().map(|a| a.password.clone())).await?;
    let step = match &admin {
        Some(a) if pw_ok && a.enabled => ctx
            .seal
            .open_bytes(&totp_context(&a.name), &a.totp)
            .ok()
            .and_then(|secret| {
                let last = a.totp_last_step.and_then(|s| u64::try_from(s).ok());
                rbac::totp::verify(&secret, &b.code, u64::try_from(now).unwrap_or(0), last)
            }),
        _ => None,
    };
    let accepted = match (&admin, step) {
        (Some(a), Some(step)) => ctx
            .store
            .record_sign_in(
                &a.name,
                SignIn::Success {
                    step: i64::try_from(step).unwrap_or(i64::MAX),
                },
            )
            .await
            .map_err(internal)?,
        _ => false,
    };
    let Some(a) = admin.clone().filter(|_| accepted) else {
        if let Some(a) = &admin {
            let f = SignIn::Failure {
                now,
                max_failures: MAX_FAILURES,
                lock_secs: LOCK_SECS,
            };
            ctx.store
                .record_sign_in(&a.name, f)
                .await
                .map_err(internal)?;
        }
        deny("wrong name, password or code").await;
        return Err(problem(StatusCode::UNAUTHORIZED, WRONG));
    };
    let minted = rbac::token::mint().ok_or_else(|| internal("random generator failed"))?;
    let row = TokenRow {
        id: minted.id.clone(),
        hash: minted.hash,
        admin: a.name.clone(),
        kind: "session".into(),
        name: String::new(),
        role: a.role.clone(),
        created_at: now,
        expires_at: now + SESSION_SECS,
    };
    let audited = ctx.store.audited(AuditEntry {
        at: now,
        actor: format!("admin:{}", a.name),
        source,
        action: "session.create".into(),
        object: format!("admin:{}", a.name),
        outcome: "ok".into(),
        detail: format!("session {}", minted.id),
        before: None,
        after: None,
    });
    audited.add_token(row).await.map_err(internal)?;
    Ok(json(
        StatusCode::CREATED,
        &serde_json::json!({
            "token": minted.text,
            "id": minted.id,
            "admin": a.name,
            "role": a.role,
            "expires_at": now + SESSION_SECS,
        }),
    ))
}

pub(crate) async fn sign_out<S: Store>(State(ctx): State<Ctx<S>>, c: Caller) -> ApiResult {
    let object = format!("token:{}", c.token_id);
    ctx.audited(&c, "session.delete", &object, None, None)
        .remove_token(&c.token_id)
        .await
        .map_err(internal)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn me(c: Caller) -> Response {
    json(
        StatusCode::OK,
        &serde_json::json!({
            "name": c.admin,
            "role": c.role.name,
            "operations": c.role.ops,
            "site": c.role.site,
            "group": c.role.group,
            "token": { "id": c.token_id, "kind": c.kind },
        }),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasswordBody {
    current: String,
    new: String,
}

pub(crate) async fn change_password<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    bytes: Bytes,
) -> ApiResult {
    let b: PasswordBody = body(&bytes)?;
    rbac::password::check(&b.new).map_err(|e| problem(StatusCode::BAD_REQUEST, e))?;
    let a = ctx.store.admin(&c.admin).await.map_err(internal)?;
    let Some(a) = a else {
        return Err(problem(
            StatusCode::NOT_FOUND,
            "this administrator no longer exists",
        ));
    };
    if !password_ok(&ctx, b.current, Some(a.password)).await? {
        let object = format!("admin:{}", c.admin);
        ctx.record_refusal(
            &c.actor,
            &c.source,
            "me.password",
            &object,
            "wrong current password",
        )
        .await;
        return Err(problem(
            StatusCode::FORBIDDEN,
            "the current password is wrong",
        ));
    }
    let new = b.new;
    let hash = ctx
        .hashing(move || rbac::password::hash(&new))
        .await?
        .map_err(|e| problem(StatusCode::BAD_REQUEST, e))?;
    let object = format!("admin:{}", c.admin);
    let u = AdminUpdate {
        password: Some(hash),
        ..Default::default()
    };
    ctx.audited(&c, "me.password", &object, None, None)
        .update_admin(&c.admin, u)
        .await
        .map_err(internal)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
