//! A user's TOTP second factor (RFC 6238): enrolment (the secret shown as
//! a QR code and as text, confirmed by a first code), and the check at
//! sign-in. Each code works once: the step used is recorded in the store
//! only if it is later than the last, so two requests cannot both use it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use store::Store;

use super::super::extract::Bytes;
use super::super::{body, internal, json, problem, ApiResult, Ctx};
use super::Me;

/// The sealing context of a user's TOTP secret (bound to the address).
fn context(aor: &str) -> String {
    format!("user-totp:{aor}")
}

/// What a code check found.
pub(crate) enum Code {
    /// Right, and now used.
    Accepted,
    /// Wrong, malformed, or already used.
    Refused,
}

impl<S: Store> Ctx<S> {
    /// Whether `aor` has a confirmed second factor.
    pub(crate) async fn has_second_factor(&self, aor: &str) -> Result<bool, Response> {
        Ok(self
            .store
            .totp(aor)
            .await
            .map_err(internal)?
            .is_some_and(|t| t.secret.is_some()))
    }

    /// Checks `code` against `aor`'s confirmed secret and uses it.
    pub(crate) async fn check_code(&self, aor: &str, code: &str) -> Result<Code, Response> {
        let Some(row) = self.store.totp(aor).await.map_err(internal)? else {
            return Ok(Code::Refused);
        };
        let Some(sealed) = row.secret else {
            return Ok(Code::Refused);
        };
        let secret = self
            .seal
            .open_bytes(&context(aor), &sealed)
            .map_err(|_| internal("a user's TOTP secret does not open with the seal key"))?;
        let now = u64::try_from(sip_app::unix_now()).unwrap_or(0);
        let last = row.last_step.and_then(|s| u64::try_from(s).ok());
        let Some(step) = rbac::totp::verify(&secret, code.trim(), now, last) else {
            return Ok(Code::Refused);
        };
        let step = i64::try_from(step).map_err(internal)?;
        Ok(
            if self
                .store
                .use_totp_step(aor, step)
                .await
                .map_err(internal)?
            {
                Code::Accepted
            } else {
                Code::Refused
            },
        )
    }
}

pub(crate) async fn status<S: Store>(State(ctx): State<Ctx<S>>, me: Me) -> ApiResult {
    let set = sip_app::policy_set::PolicySet::load(&ctx.store)
        .await
        .map_err(internal)?;
    let rules = super::super::devices::rules(&set, &me.aor);
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "enrolled": ctx.has_second_factor(&me.aor).await?,
            "required": rules.second_factor,
            "this_session": me.second_factor,
        }),
    ))
}

/// Starts enrolment: a new secret, pending until its first code.
pub(crate) async fn start<S: Store>(State(ctx): State<Ctx<S>>, me: Me) -> ApiResult {
    if ctx.has_second_factor(&me.aor).await? && !me.second_factor {
        return Err(problem(
            StatusCode::FORBIDDEN,
            "you have an authenticator already: sign in again with its code to replace it, or ask an administrator to reset it",
        ));
    }
    let secret = rbac::totp::generate().ok_or_else(|| internal("random generator failed"))?;
    let sealed = ctx
        .seal
        .seal_bytes(&context(&me.aor), &secret)
        .map_err(|_| internal("sealing failed"))?;
    let store = ctx.audited(
        &me,
        "users.second-factor.start",
        &format!("user:{}", me.aor),
        None,
        None,
    );
    if !store
        .set_totp_pending(&me.aor, sealed)
        .await
        .map_err(internal)?
    {
        return Err(problem(
            StatusCode::NOT_FOUND,
            "your account no longer exists",
        ));
    }
    let account = me.aor.strip_prefix("sip:").unwrap_or(&me.aor);
    let uri = rbac::totp::uri("Parapet", account, &secret);
    let svg = qrcode::QrCode::new(uri.as_bytes())
        .map_err(internal)?
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build();
    Ok(json(
        StatusCode::CREATED,
        &serde_json::json!({
            "secret": rbac::totp::encode(&secret),
            "uri": uri,
            "qr_svg": svg,
        }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfirmBody {
    code: String,
}

/// The first code: the pending secret becomes the user's, and this
/// session counts as signed in with it.
pub(crate) async fn confirm<S: Store>(
    State(ctx): State<Ctx<S>>,
    me: Me,
    bytes: Bytes,
) -> ApiResult {
    let b: ConfirmBody = body(&bytes)?;
    let row = ctx.store.totp(&me.aor).await.map_err(internal)?;
    let Some(sealed) = row.and_then(|r| r.pending) else {
        return Err(problem(
            StatusCode::CONFLICT,
            "no enrolment is in progress: start one (POST /user/v1/second-factor) first",
        ));
    };
    let secret = ctx
        .seal
        .open_bytes(&context(&me.aor), &sealed)
        .map_err(|_| internal("a user's TOTP secret does not open with the seal key"))?;
    let now = u64::try_from(sip_app::unix_now()).unwrap_or(0);
    let Some(step) = rbac::totp::verify(&secret, b.code.trim(), now, None) else {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            "code: the 6-digit code is wrong; check the authenticator app's clock and type the code it shows now",
        ));
    };
    let step = i64::try_from(step).map_err(internal)?;
    let store = ctx.audited(
        &me,
        "users.second-factor.enroll",
        &format!("user:{}", me.aor),
        None,
        None,
    );
    if !store
        .confirm_totp(&me.aor, sealed, step)
        .await
        .map_err(internal)?
    {
        return Err(problem(
            StatusCode::CONFLICT,
            "the enrolment was replaced; start again",
        ));
    }
    ctx.store
        .upgrade_user_session(&me.session)
        .await
        .map_err(internal)?;
    tracing::info!(user = %me.aor, "user API: second factor enrolled");
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "enrolled": true }),
    ))
}
