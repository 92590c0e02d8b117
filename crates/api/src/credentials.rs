//! Making administrator credentials, shared by the admin API and the
//! break-glass `parapet admin recover` (in `server`).

use auth::secret::SecretKey;
use store::AdminRow;

/// A new administrator's row and the secrets shown once.
#[derive(Debug)]
pub struct NewAdmin {
    pub row: AdminRow,
    pub password: String,
    pub totp_secret: String,
    pub otpauth_uri: String,
    /// Whether the password was generated (and must be shown).
    pub generated: bool,
}

impl NewAdmin {
    pub fn secrets_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "name": self.row.name,
            "role": self.row.role,
            "totp_secret": self.totp_secret,
            "otpauth_uri": self.otpauth_uri,
        });
        if self.generated {
            v["password"] = self.password.clone().into();
        }
        v
    }
}

/// Hashes the password (or generates one), generates and seals a TOTP secret.
/// Blocking (Argon2): call from `spawn_blocking`.
pub fn new_admin(
    seal: &SecretKey,
    name: &str,
    role: &str,
    password: Option<String>,
) -> Result<NewAdmin, String> {
    let generated = password.is_none();
    let password = match password {
        Some(p) => p,
        None => rbac::password::generate().ok_or("the random generator failed")?,
    };
    let hash = rbac::password::hash(&password)?;
    let secret = rbac::totp::generate().ok_or("the random generator failed")?;
    let sealed = seal
        .seal_bytes(&crate::totp_context(name), &secret)
        .map_err(|_| "could not seal the TOTP secret".to_string())?;
    Ok(NewAdmin {
        row: AdminRow {
            name: name.to_string(),
            password: hash,
            totp: sealed,
            totp_last_step: None,
            role: role.to_string(),
            enabled: true,
            failed: 0,
            locked_until: 0,
            created_at: sip_app::unix_now(),
        },
        password,
        totp_secret: rbac::totp::encode(&secret),
        otpauth_uri: rbac::totp::uri("Parapet", name, &secret),
        generated,
    })
}
