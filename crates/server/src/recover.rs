//! Break-glass recovery of administrator access, from the data directory.

use auth::secret::SecretKey;
use store::Store;

/// Break-glass recovery: creates a new administrator with the
/// `administrator` role directly in the data directory (filesystem access to
/// it is the authority), with a generated password and TOTP secret, and
/// audits it in the same transaction. It never changes an existing account.
/// `database` is the server's (`config::Database::Embedded`: the SQLite
/// file in the data directory).
pub async fn recover(
    data_dir: &std::path::Path,
    database: &config::Database,
    name: &str,
) -> Result<api::credentials::NewAdmin, String> {
    rbac::check_name("administrator name", name).map_err(|e| e.0)?;
    let e = crate::datadir::DataDir::open_existing(data_dir)?;
    let opened = crate::database::open(
        database,
        &e.db_path,
        e.audit_key,
        Some(1),
        crate::database::Role::Tool,
    )
    .await?;
    crate::with_store!(opened, store => create(store, &e, data_dir, name).await)
}

async fn create<S: Store>(
    store: S,
    e: &crate::datadir::Existing,
    data_dir: &std::path::Path,
    name: &str,
) -> Result<api::credentials::NewAdmin, String> {
    let seal = SecretKey::from_bytes(&e.seal_key)
        .map_err(|_| "the data directory's key is unusable".to_string())?;
    let n = name.to_string();
    let made = tokio::task::spawn_blocking(move || {
        api::credentials::new_admin(&seal, &n, "administrator", None)
    })
    .await
    .map_err(|e| e.to_string())??;
    let uid = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let entry = store::AuditEntry {
        at: sip_app::unix_now(),
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
