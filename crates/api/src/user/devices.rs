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

fn check_name(name: &str) -> Result<(), axum::response::Response> {
    if pki::ca::valid_device_name(name) {
        return Ok(());
    }
    Err(problem(
        StatusCode::BAD_REQUEST,
        format!(
            "name: give the device a name of 1 to {} characters, without control characters",
            pki::ca::MAX_DEVICE_NAME
        ),
    ))
}

/// A device as enrolment answers it: its record, its certificate and the
/// device CA's.
fn issued<S: Store>(ctx: &Ctx<S>, row: &store::DeviceRow) -> serde_json::Value {
    let mut v = view(row);
    if let Some(o) = v.as_object_mut() {
        o.insert("certificate".into(), row.certificate.clone().into());
        o.insert(
            "ca_certificate".into(),
            ctx.devices.ca.pem().to_owned().into(),
        );
    }
    v
}

pub(crate) async fn enroll<S: Store>(State(ctx): State<Ctx<S>>, me: Me, bytes: Bytes) -> ApiResult {
    let b: EnrollBody = body(&bytes)?;
    check_name(&b.name)?;
    let csr = pki::csr::parse(b.csr.as_bytes(), &me.aor).map_err(|e| {
        let status = match e {
            pki::csr::CsrError::NamesAnotherUser(_) => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        };
        problem(status, format!("csr: {e}"))
    })?;
    let rules = gate(&ctx, &me, b.enrollment_code.as_deref()).await?;
    let row = ctx
        .issue_device(&me, b.name.trim(), &csr, &csr.key_kind, &rules)
        .await?;
    Ok(json(StatusCode::CREATED, &issued(&ctx, &row)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BundleBody {
    name: String,
    enrollment_code: Option<String>,
}

/// For a device that cannot make a request: the server makes an ECDSA
/// P-256 key, issues its certificate and answers both in a PKCS#12
/// bundle under a passphrase made for this download; it keeps neither.
pub(crate) async fn bundle<S: Store>(State(ctx): State<Ctx<S>>, me: Me, bytes: Bytes) -> ApiResult {
    let b: BundleBody = body(&bytes)?;
    check_name(&b.name)?;
    let rules = gate(&ctx, &me, b.enrollment_code.as_deref()).await?;
    let key = rcgen::KeyPair::generate().map_err(internal)?;
    let name = b.name.trim();
    let row = ctx
        .issue_device(&me, name, &key, "ECDSA P-256 (made by the server)", &rules)
        .await?;
    let passphrase = pki::bundle::passphrase().map_err(internal)?;
    let der = sip_transport::tls::certs_from_pem(row.certificate.as_bytes())
        .map_err(internal)?
        .into_iter()
        .next()
        .ok_or_else(|| internal("the issued certificate is empty"))?;
    // Key derivation (PBKDF2) and encryption: off the runtime's threads.
    let (key_der, ca, name, pass) = (
        key.serialize_der(),
        ctx.devices.ca.certificate().clone(),
        name.to_owned(),
        passphrase.clone(),
    );
    let p12 =
        tokio::task::spawn_blocking(move || pki::bundle::pkcs12(&der, &key_der, &ca, &name, &pass))
            .await
            .map_err(internal)?
            .map_err(internal)?;
    let mut v = issued(&ctx, &row);
    if let Some(o) = v.as_object_mut() {
        o.insert("passphrase".into(), passphrase.into());
        o.insert("pkcs12".into(), data_encoding::BASE64.encode(&p12).into());
    }
    Ok(json(StatusCode::CREATED, &v))
}

/// What the authentication policy asks before a device is enrolled: a
/// session signed in with the second factor where `second_factor` is on,
/// a single-use enrollment code (consumed here) where `managed_devices`
/// is on. Returns the rules for the certificate.
async fn gate<S: Store>(
    ctx: &Ctx<S>,
    me: &Me,
    code: Option<&str>,
) -> Result<super::super::devices::EnrollRules, axum::response::Response> {
    if code.is_some_and(|c| c.chars().count() > 64) {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            "enrollment_code: at most 64 characters; give the code as issued",
        ));
    }
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
    // The cap, before a single-use code is spent on a device that would
    // then be refused (the store checks it again, atomically).
    let now = sip_app::unix_now();
    let active = ctx
        .store
        .devices(&me.aor)
        .await
        .map_err(internal)?
        .iter()
        .filter(|d| d.revoked_at.is_none() && d.expires_at > now)
        .count();
    if active >= rules.max_devices {
        return Err(super::super::devices::too_many(
            &format!("you already have {active} devices, the most the policy allows"),
            rules.max_devices,
        ));
    }
    if rules.managed {
        let Some(code) = code.filter(|c| !c.trim().is_empty()) else {
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
    Ok(rules)
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
    // Sessions first: a device being enrolled in one of them now is then
    // either stored before the revocation below (and revoked by it) or
    // refused by the store.
    let ended = ctx
        .store
        .remove_user_sessions(&me.aor)
        .await
        .map_err(internal)?;
    ctx.revoke(&me, &me.aor, None, "sign-out").await?;
    tracing::info!(user = %me.aor, sessions = ended, "user API: signed out everywhere");
    Ok(StatusCode::NO_CONTENT.into_response())
}
