//! The signed-in user's devices: enrolling one (a certificate for the
//! key in the device's request), listing, revoking one, and signing out
//! everywhere (every device revoked, every session ended).
//!
//! Enrolling needs what the authentication policy asks: a session signed
//! in with the second factor where `second_factor` is on, a single-use
//! enrollment code where `managed_devices` is on, and room under
//! `max_devices`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use store::Store;

use super::super::devices::{code_hash, rules, view};
use super::super::extract::{Bytes, P as Path};
use super::super::{body, internal, json, problem, ApiResult, Ctx};
use super::Me;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnrollBody {
    /// What the user calls the device ("Alice's phone").
    name: String,
    /// The device's certificate request (PEM).
    csr: String,
    /// The single-use code, where policy allows managed devices only.
    enrollment_code: Option<String>,
}

pub(crate) async fn list<S: Store>(State(ctx): State<Ctx<S>>, me: Me) -> ApiResult {
    let rows = ctx.store.devices(&me.aor).await.map_err(internal)?;
    Ok(json(
        StatusCode::OK,
        &rows.iter().map(view).collect::<Vec<_>>(),
    ))
}

pub(crate) async fn enroll<S: Store>(State(ctx): State<Ctx<S>>, me: Me, bytes: Bytes) -> ApiResult {
    let b: EnrollBody = body(&bytes)?;
    if !pki::ca::valid_device_name(&b.name) {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            format!(
                "name: give the device a name of 1 to {} characters, without control characters",
                pki::ca::MAX_DEVICE_NAME
            ),
        ));
    }
    let csr = pki::csr::parse(b.csr.as_bytes(), &me.aor).map_err(|e| {
        let status = match e {
            pki::csr::CsrError::NamesAnotherUser(_) => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        };
        problem(status, format!("csr: {e}"))
    })?;
    let set = sip_app::policy_set::PolicySet::load(&ctx.store)
        .await
        .map_err(internal)?;
    let rules = rules(&set, &me.aor);
    if rules.second_factor && !me.second_factor {
        return Err(problem(
            StatusCode::FORBIDDEN,
            if ctx.has_second_factor(&me.aor).await? {
                "your policy requires a second factor to enroll a device: sign in again with your authenticator's code"
            } else {
                "your policy requires a second factor to enroll a device: set up an authenticator app first (POST /user/v1/second-factor)"
            },
        ));
    }
    if rules.managed {
        let Some(code) = b
            .enrollment_code
            .as_deref()
            .filter(|c| !c.trim().is_empty())
        else {
            return Err(problem(
                StatusCode::FORBIDDEN,
                "your organisation allows managed devices only: give the enrollment code your administrator or device management issued (enrollment_code)",
            ));
        };
        let used = ctx
            .store
            .use_enrollment_code(&me.aor, code_hash(code), sip_app::unix_now())
            .await
            .map_err(internal)?;
        if !used {
            return Err(problem(
                StatusCode::FORBIDDEN,
                "enrollment_code: the code is wrong, expired or used already (each works once); ask for a new one",
            ));
        }
    }
    let row = ctx
        .issue_device(&me, &me.aor, b.name.trim(), &csr, &rules)
        .await?;
    let mut v = view(&row);
    if let Some(o) = v.as_object_mut() {
        o.insert("certificate".into(), row.certificate.clone().into());
        o.insert(
            "ca_certificate".into(),
            ctx.devices.ca.pem().to_owned().into(),
        );
    }
    Ok(json(StatusCode::CREATED, &v))
}

pub(crate) async fn revoke<S: Store>(
    State(ctx): State<Ctx<S>>,
    me: Me,
    Path(id): Path<String>,
) -> ApiResult {
    if !ctx.revoke(&me, &me.aor, Some(&id), "user").await? {
        return Err(problem(
            StatusCode::NOT_FOUND,
            format!("you have no device {id:?} that is not revoked"),
        ));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Every device revoked and every session ended, this one too.
pub(crate) async fn sign_out_everywhere<S: Store>(State(ctx): State<Ctx<S>>, me: Me) -> ApiResult {
    ctx.revoke(&me, &me.aor, None, "sign-out").await?;
    let ended = ctx
        .store
        .remove_user_sessions(&me.aor)
        .await
        .map_err(internal)?;
    tracing::info!(user = %me.aor, sessions = ended, "user API: signed out everywhere");
    Ok(StatusCode::NO_CONTENT.into_response())
}
