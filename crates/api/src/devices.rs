//! Users' devices: issuing a device certificate from a request, listing
//! and revoking, and the enrollment codes managed devices need. The user
//! API (`user::devices`) and the admin API (here) share these; every
//! change is written through an audited store handle, and a revocation
//! reaches the core (registry, connections) before the answer.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use store::{DeviceRow, EnrollmentCodeRow, Store, StoreError};

use super::access::{Caller, Who};
use super::extract::{Bytes, P as Path};
use super::users::{aor, find};
use super::{body, internal, json, problem, AdminCmd, ApiResult, Ctx};
use sip_app::policy_set::PolicySet;

/// The device CA and the registry of valid device certificates.
#[derive(Debug)]
pub struct DeviceAuthority {
    pub ca: pki::ca::DeviceCa,
    pub registry: Arc<pki::registry::Registry>,
}

/// Longest lifetime of an enrollment code, and the default.
const CODE_MAX_SECS: i64 = 30 * 86_400;
const CODE_DEFAULT_SECS: i64 = 7 * 86_400;

/// A device as the APIs show it.
pub(crate) fn view(d: &DeviceRow) -> serde_json::Value {
    serde_json::json!({
        "id": d.id,
        "name": d.name,
        "issued_at": d.issued_at,
        "expires_at": d.expires_at,
        "revoked_at": d.revoked_at,
        "revoked_reason": d.revoked_reason,
        "last_seen": d.last_seen,
        "user_agent": d.user_agent,
        "fingerprint": d.fingerprint,
        "serial": d.serial,
    })
}

/// What the authentication policy says about enrolling devices.
pub(crate) struct EnrollRules {
    pub(crate) second_factor: bool,
    pub(crate) managed: bool,
    pub(crate) max_devices: usize,
    pub(crate) days: u32,
}

pub(crate) fn rules(set: &PolicySet, aor: &str) -> EnrollRules {
    let eff = set.effective(aor, "authentication");
    let int = |name: &str, d: i64| eff.as_ref().and_then(|e| e.int(name)).unwrap_or(d);
    let flag = |name: &str| eff.as_ref().is_some_and(|e| e.flag(name));
    EnrollRules {
        second_factor: flag("second_factor"),
        managed: flag("managed_devices"),
        max_devices: usize::try_from(int("max_devices", 8)).unwrap_or(8),
        days: u32::try_from(int("client_certificate_days", 180)).unwrap_or(180),
    }
}

/// SHA-256 of an enrollment code as typed (spaces and dashes ignored,
/// case folded).
pub(crate) fn code_hash(code: &str) -> Vec<u8> {
    let clean: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    ring::digest::digest(&ring::digest::SHA256, clean.as_bytes())
        .as_ref()
        .to_vec()
}

/// The answer when the user has as many devices as the policy allows.
pub(crate) fn too_many(why: &str, max: usize) -> Response {
    problem(
        StatusCode::CONFLICT,
        format!("{why} ({max}); revoke a device first"),
    )
}

impl<S: Store> Ctx<S> {
    /// Issues a certificate for `key` to the signed-in user's new device
    /// `name`, records it (audited as theirs, within the policy's device
    /// cap, while their sign-in session lasts) and makes it valid. Returns the record.
    ///
    /// The registry has it before the store does, and loses it again if
    /// the store refuses: a revocation of all the user's devices that
    /// commits between the two either finds the row (and takes the
    /// certificate out of the registry after it went in) or ended the
    /// session or the account first (and the store refuses the row).
    pub(crate) async fn issue_device(
        &self,
        me: &crate::user::Me,
        name: &str,
        key: &impl rcgen::PublicKeyData,
        key_kind: &str,
        rules: &EnrollRules,
    ) -> Result<DeviceRow, Response> {
        let (who, aor, session) = (me, me.aor.as_str(), me.session.as_str());
        let id = pki::ca::device_id().map_err(internal)?;
        let issued = self
            .devices
            .ca
            .issue(key, aor, &id, name, rules.days)
            .map_err(|e| problem(StatusCode::BAD_REQUEST, e))?;
        let row = DeviceRow {
            aor: aor.to_owned(),
            id: id.clone(),
            name: name.to_owned(),
            fingerprint: pki::hex(&issued.fingerprint),
            serial: issued.serial.clone(),
            certificate: issued.pem.clone(),
            issued_at: issued.issued_at,
            expires_at: issued.not_after,
            revoked_at: None,
            revoked_reason: None,
            last_seen: None,
            user_agent: None,
        };
        let store = self.audited(
            who,
            "devices.enroll",
            &format!("user:{aor}"),
            None,
            Some(serde_json::json!({ "device": id, "name": name, "key": key_kind, "expires_at": issued.not_after })),
        );
        self.devices.registry.insert(
            issued.fingerprint,
            pki::registry::Device {
                aor: aor.to_owned(),
                id,
                not_after: issued.not_after,
                org: None,
            },
        );
        let stored = store
            .add_device(row.clone(), rules.max_devices, Some(session.to_owned()))
            .await;
        if stored.is_err() {
            self.devices.registry.forget([&issued.fingerprint]);
        }
        match stored {
            Ok(()) => {}
            Err(StoreError::Conflict(m)) if m.starts_with("no user") => {
                return Err(problem(StatusCode::NOT_FOUND, m))
            }
            Err(StoreError::Conflict(m)) if m.contains("devices") => {
                return Err(too_many(&m, rules.max_devices))
            }
            Err(StoreError::Conflict(m)) if m.contains("disabled") => {
                return Err(problem(StatusCode::FORBIDDEN, m))
            }
            Err(StoreError::Conflict(m)) => {
                return Err(problem(
                    StatusCode::UNAUTHORIZED,
                    format!("{m}; sign in again"),
                ))
            }
            Err(e) => return Err(internal(e)),
        }
        tracing::info!(user = %aor, device = %row.id, "device certificate issued");
        Ok(row)
    }

    /// Revokes one device (`Some(id)`) or all of `aor`'s, audited as `who`
    /// with `reason`; the core closes their connections before this
    /// returns. `Ok(false)`: no such device (or none left).
    pub(crate) async fn revoke(
        &self,
        who: &impl Who,
        aor: &str,
        id: Option<&str>,
        reason: &str,
    ) -> Result<bool, Response> {
        let store = self.audited(
            who,
            "devices.revoke",
            &format!("user:{aor}"),
            None,
            Some(serde_json::json!({ "device": id.unwrap_or("*"), "reason": reason })),
        );
        let now = sip_app::unix_now();
        let gone = match id {
            Some(id) => store
                .revoke_device(aor, id, reason, now)
                .await
                .map_err(internal)?
                .into_iter()
                .collect::<Vec<_>>(),
            None => store
                .revoke_devices(aor, reason, now)
                .await
                .map_err(internal)?,
        };
        if id.is_none() {
            // All of them: the registry's too, which may hold an
            // organisation's certificate whose record is still being
            // written.
            self.revoked_in_core(aor, None).await;
            return Ok(!gone.is_empty());
        }
        if gone.is_empty() {
            return Ok(false);
        }
        let fingerprints = gone
            .iter()
            .filter_map(|d| pki::registry::parse_fingerprint(&d.fingerprint))
            .collect();
        self.revoked_in_core(aor, Some(fingerprints)).await;
        Ok(true)
    }

    /// Tells the core that certificates were revoked in the store (`None`:
    /// all of `aor`'s): out of the registry, connections closed.
    pub(crate) async fn revoked_in_core(&self, aor: &str, fingerprints: Option<Vec<[u8; 32]>>) {
        let aor = aor.to_owned();
        let closed = self
            .ask(|reply| AdminCmd::RevokeDevices {
                aor: aor.clone(),
                fingerprints: fingerprints.clone(),
                reply,
            })
            .await;
        if closed.is_none() {
            // The core is not running: the registry is still the check at
            // the next handshake.
            match fingerprints {
                Some(f) => {
                    self.devices.registry.remove(f.iter());
                }
                None => {
                    self.devices.registry.remove_user(&aor);
                }
            }
        }
    }
}

pub(crate) async fn list<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    Path(uri): Path<String>,
) -> ApiResult {
    let aor = aor(&ctx, &uri)?;
    ctx.allow_user(&c, "users.read", &aor).await?;
    find(&ctx, &aor).await?;
    let rows = ctx.store.devices(&aor).await.map_err(internal)?;
    Ok(json(
        StatusCode::OK,
        &rows.iter().map(view).collect::<Vec<_>>(),
    ))
}

pub(crate) async fn revoke_one<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    Path((uri, id)): Path<(String, String)>,
) -> ApiResult {
    let aor = aor(&ctx, &uri)?;
    ctx.allow_user(&c, "users.write", &aor).await?;
    find(&ctx, &aor).await?;
    if !ctx.revoke(&c, &aor, Some(&id), "admin").await? {
        return Err(problem(
            StatusCode::NOT_FOUND,
            format!("{aor} has no device {id:?} that is not revoked; see `parapet admin user devices {aor}`"),
        ));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn revoke_all<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    Path(uri): Path<String>,
) -> ApiResult {
    let aor = aor(&ctx, &uri)?;
    ctx.allow_user(&c, "users.write", &aor).await?;
    find(&ctx, &aor).await?;
    let any = ctx.revoke(&c, &aor, None, "admin").await?;
    Ok(json(StatusCode::OK, &serde_json::json!({ "revoked": any })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct CodeBody {
    /// Seconds the code stays usable (default 7 days, at most 30).
    expires_secs: Option<i64>,
}

pub(crate) async fn enrollment_code<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    Path(uri): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let b: CodeBody = if bytes.is_empty() {
        CodeBody::default()
    } else {
        body(&bytes)?
    };
    let secs = b.expires_secs.unwrap_or(CODE_DEFAULT_SECS);
    if !(60..=CODE_MAX_SECS).contains(&secs) {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            format!("expires_secs: give 60 to {CODE_MAX_SECS} seconds"),
        ));
    }
    let aor = aor(&ctx, &uri)?;
    ctx.allow_user(&c, "users.write", &aor).await?;
    find(&ctx, &aor).await?;
    let code = new_code().ok_or_else(|| internal("random generator failed"))?;
    let now = sip_app::unix_now();
    let store = ctx.audited(
        &c,
        "devices.enrollment-code",
        &format!("user:{aor}"),
        None,
        Some(serde_json::json!({ "expires_at": now + secs })),
    );
    store
        .add_enrollment_code(EnrollmentCodeRow {
            hash: code_hash(&code),
            aor: aor.clone(),
            created_by: c.actor().to_owned(),
            created_at: now,
            expires_at: now + secs,
        })
        .await
        .map_err(internal)?;
    Ok(json(
        StatusCode::CREATED,
        &serde_json::json!({ "user": aor, "code": code, "expires_at": now + secs }),
    ))
}

/// 20 characters from an alphabet without look-alikes (100 bits), in
/// groups of five.
fn new_code() -> Option<String> {
    use ring::rand::SecureRandom;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut raw = [0u8; 20];
    ring::rand::SystemRandom::new().fill(&mut raw).ok()?;
    let chars: Vec<char> = raw
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(b & 31)]))
        .collect();
    Some(
        chars
            .chunks(5)
            .map(|c| c.iter().collect::<String>())
            .collect::<Vec<_>>()
            .join("-"),
    )
}

pub(crate) async fn reset_second_factor<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    Path(uri): Path<String>,
) -> ApiResult {
    let aor = aor(&ctx, &uri)?;
    ctx.allow_user(&c, "users.write", &aor).await?;
    find(&ctx, &aor).await?;
    let store = ctx.audited(
        &c,
        "users.second-factor.reset",
        &format!("user:{aor}"),
        None,
        None,
    );
    let removed = store.remove_totp(&aor).await.map_err(internal)?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "removed": removed }),
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn enrollment_codes_are_typed_forgivingly_and_hashed() {
        let c = new_code().unwrap();
        assert_eq!(c.len(), 23);
        assert_eq!(
            code_hash(&c),
            code_hash(&c.to_lowercase().replace('-', " "))
        );
        assert_ne!(code_hash(&c), code_hash("AAAAA-AAAAA-AAAAA-AAAAA"));
    }
}
