//! Making administrator credentials, shared by the API and the break-glass
//! `parapet admin recover`.

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
        .seal_bytes(&crate::api::totp_context(name), &secret)
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
            created_at: crate::unix_now(),
        },
        password,
        totp_secret: rbac::totp::encode(&secret),
        otpauth_uri: rbac::totp::uri("Parapet", name, &secret),
        generated,
    })
}

/// Break-glass recovery: creates a new administrator with the
/// `administrator` role directly in the data directory (filesystem access to
/// it is the authority), with a generated password and TOTP secret, and
/// audits it in the same transaction. It never changes an existing account.
pub async fn recover(data_dir: &std::path::Path, name: &str) -> Result<NewAdmin, String> {
    rbac::check_name("administrator name", name).map_err(|e| e.0)?;
    let e = crate::datadir::DataDir::open_existing(data_dir)?;
    let cfg = store::SqliteConfig {
        workers: 1,
        audit_key: Some(e.audit_key),
        ..store::SqliteConfig::new(&e.db_path)
    };
    let store = tokio::task::spawn_blocking(move || store::Sqlite::open(&cfg))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let seal = SecretKey::from_bytes(&e.seal_key)
        .map_err(|_| "the data directory's key is unusable".to_string())?;
    let n = name.to_string();
    let made = tokio::task::spawn_blocking(move || new_admin(&seal, &n, "administrator", None))
        .await
        .map_err(|e| e.to_string())??;
    let uid = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let entry = store::AuditEntry {
        at: crate::unix_now(),
        actor: format!("recover:{uid}"),
        source: format!("local:{}", data_dir.display()),
        action: "admins.recover".into(),
        object: format!("admin:{name}"),
        outcome: "ok".into(),
        detail: "break-glass recovery created an administrator".into(),
        before: None,
        after: Some(serde_json::json!({ "name": name, "role": "administrator" }).to_string()),
    };
    match store::Admins::add_admin(&store.audited(entry), made.row.clone()).await {
        Ok(()) => Ok(made),
        Err(store::StoreError::Conflict(_)) => Err(format!(
            "administrator {name} already exists; recovery only creates new administrators: choose another name"
        )),
        Err(e) => Err(e.to_string()),
    }
}
