//! Signing in with the SIP address and password, signing out, and who am I.
//!
//! The password is checked by the SIP core with the same per-address rate,
//! lockout filter and authentication policy as a SIP sign-in, so this is
//! no way around either: failures here count toward the same lockout.
//! A session is a random bearer token whose hash alone is stored; it ends
//! after [`SESSION_SECS`], at sign-out, when the password changes or the
//! account is disabled, and the oldest go beyond [`MAX_SESSIONS`] a user.

use std::net::{IpAddr, SocketAddr};
use store::Store;

use super::super::extract::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use store::{StoreError, UserSessionRow};

use super::super::{body, internal, json, problem, AdminCmd, ApiResult, Ctx};
use super::Me;
use sip_app::command::PasswordCheck;

/// How long a session lasts.
pub(crate) const SESSION_SECS: i64 = 12 * 3600;
/// Sessions one user may hold (devices, browsers); the oldest end first.
pub(crate) const MAX_SESSIONS: usize = 16;
/// The longest password accepted (as the admin API's).
const MAX_PASSWORD: usize = 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignInBody {
    /// `alice` or `sip:alice@DOMAIN`.
    user: String,
    password: String,
    /// The authenticator's 6-digit code, for a user who has enrolled one.
    totp: Option<String>,
}

const WRONG: &str = "the address or password is wrong (use your SIP address, e.g. sip:alice@DOMAIN, or the user name alone, and the password your SIP client uses)";

fn with_retry(mut r: Response, secs: u64) -> Response {
    if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// A 401 that asks for the second factor: the problem carries
/// `"second_factor": "totp"`, so a page knows to show the code field.
fn code_needed(detail: &str) -> Response {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": "Unauthorized",
        "status": 401,
        "detail": detail,
        "second_factor": "totp",
    });
    (
        StatusCode::UNAUTHORIZED,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

pub(crate) async fn sign_in<S: Store>(
    State(ctx): State<Ctx<S>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    bytes: Bytes,
) -> ApiResult {
    let b: SignInBody = body(&bytes)?;
    let given = if b.user.starts_with("sip:") {
        b.user.clone()
    } else if b.user.contains('@') {
        format!("sip:{}", b.user)
    } else {
        format!("sip:{}@{}", b.user, ctx.realm)
    };
    let (aor, _) = ctx
        .users
        .parse_uri(&given)
        .map_err(|e| problem(StatusCode::BAD_REQUEST, format!("user: {e}")))?;
    if b.password.is_empty() || b.password.len() > MAX_PASSWORD {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            format!("password: give 1-{MAX_PASSWORD} bytes"),
        ));
    }
    let source: IpAddr = remote.ip();
    // Whether a code must follow: then the password alone is not a
    // successful sign-in for the lockout filter.
    let has_second_factor = ctx.has_second_factor(&aor).await?;
    let check = ctx
        .ask(|reply| AdminCmd::CheckPassword {
            aor: aor.clone(),
            source,
            password: b.password,
            then_second_factor: has_second_factor,
            reply,
        })
        .await
        .ok_or_else(|| {
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is starting or stopping; retry in a moment",
            )
        })?;
    match check {
        PasswordCheck::Valid(_) => {}
        PasswordCheck::Wrong => {
            super::log_refusal(&source, "wrong address or password");
            return Err(problem(
                StatusCode::UNAUTHORIZED,
                WRONG.replace("DOMAIN", &ctx.realm),
            ));
        }
        PasswordCheck::LockedOut { retry_after } => {
            super::log_refusal(&source, "locked out");
            return Err(with_retry(
                problem(
                    StatusCode::FORBIDDEN,
                    format!("too many failed sign-ins for this account from this address; try again in {retry_after} seconds, or ask an administrator to clear the lockout"),
                ),
                retry_after,
            ));
        }
        PasswordCheck::RateLimited => {
            return Err(with_retry(
                problem(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many sign-in attempts from this address; slow down",
                ),
                1,
            ));
        }
    }
    // The second factor, for a user who has one: without it the password
    // alone opens nothing; a wrong code counts as a failed sign-in.
    let second_factor = if has_second_factor {
        let code = b.totp.as_deref().filter(|c| !c.trim().is_empty());
        let passed = match code {
            Some(code) => matches!(
                ctx.check_code(&aor, code).await?,
                super::second_factor::Code::Accepted
            ),
            None => false,
        };
        if code.is_some() || passed {
            // A code given: its outcome is the sign-in's for the lockout
            // filter (a wrong one counts like a wrong password).
            let _ = ctx
                .ask(|reply| AdminCmd::SecondFactor {
                    aor: aor.clone(),
                    source,
                    passed,
                    reply,
                })
                .await;
        }
        if !passed {
            if code.is_none() {
                return Err(code_needed(
                    "this account has a second factor: give the 6-digit code your authenticator app shows now (totp)",
                ));
            }
            super::log_refusal(&source, "wrong or used second-factor code");
            return Err(code_needed(
                "the code is wrong or was used already (each code works once); type the code your authenticator app shows now",
            ));
        }
        true
    } else {
        false
    };
    let minted = rbac::token::mint_with(rbac::token::USER_PREFIX)
        .ok_or_else(|| internal("random generator failed"))?;
    let now = sip_app::unix_now();
    let row = UserSessionRow {
        id: minted.id,
        hash: minted.hash,
        aor: aor.clone(),
        source: source.to_string(),
        created_at: now,
        expires_at: now + SESSION_SECS,
        second_factor,
    };
    let expires_at = row.expires_at;
    match ctx.store.add_user_session(row, MAX_SESSIONS).await {
        Ok(()) => {}
        // Removed between the check and now.
        Err(StoreError::Conflict(_)) => {
            return Err(problem(
                StatusCode::UNAUTHORIZED,
                WRONG.replace("DOMAIN", &ctx.realm),
            ))
        }
        Err(e) => return Err(internal(e)),
    }
    tracing::info!(user = %aor, %source, "user API: signed in");
    Ok(json(
        StatusCode::CREATED,
        &serde_json::json!({ "token": minted.text, "user": aor, "expires_at": expires_at, "second_factor": second_factor }),
    ))
}

pub(crate) async fn sign_out<S: Store>(State(ctx): State<Ctx<S>>, me: Me) -> ApiResult {
    ctx.store
        .remove_user_session(&me.session)
        .await
        .map_err(internal)?;
    // The relay's allocations made with this session's credentials end.
    if let Some(r) = &ctx.relay {
        r.control.revoke_session(&me.session);
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Who is signed in, and whether their instant messages are archived
/// (users are told, as Lync's clients told them).
pub(crate) async fn me<S: Store>(State(ctx): State<Ctx<S>>, me: Me) -> ApiResult {
    let set = sip_app::policy_set::PolicySet::load(&ctx.store)
        .await
        .map_err(internal)?;
    let a = sip_app::policy_set::archiving(&set, &me.aor);
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "user": me.aor, "expires_at": me.expires_at, "second_factor": me.second_factor,
            "archiving": { "internal": a.internal, "external": a.external, "retention_days": a.retention_days,
                "usage_retention_days": a.usage_retention_days },
        }),
    ))
}
