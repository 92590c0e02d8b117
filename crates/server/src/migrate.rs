//! `parapet admin migrate-store`: a deployment's data moved from its
//! SQLite database to an empty PostgreSQL database, with the server
//! stopped. Every table is copied in one PostgreSQL transaction (all or
//! nothing); then the row counts are compared table by table and the
//! audit log's chain is verified in its new home, under the same key.

use store::AuditLog;
use tokio::sync::mpsc;

/// What was moved.
#[derive(Debug)]
pub struct Moved {
    /// Rows per table.
    pub tables: Vec<(&'static str, u64)>,
    /// Audit records verified in PostgreSQL.
    pub audit_records: u64,
}

/// Moves the data directory's SQLite database into the PostgreSQL
/// database at `to` (which must be empty; its schema is made here).
pub async fn migrate_store(data_dir: &std::path::Path, to: &str) -> Result<Moved, String> {
    let e = crate::datadir::DataDir::open_existing(data_dir)?;
    if !e.db_path.exists() {
        return Err(format!(
            "{} holds no SQLite database to move",
            data_dir.display()
        ));
    }
    let target = config::database(Some(config::DatabaseUrl(to.to_owned())), Some(4))?;
    if target == config::Database::Embedded {
        return Err("--to needs a PostgreSQL URL".into());
    }
    let from = match crate::database::open(
        &config::Database::Embedded,
        &e.db_path,
        e.audit_key,
        Some(1),
        crate::database::Role::Tool,
    )
    .await?
    {
        crate::database::Opened::Sqlite(s) => s,
        crate::database::Opened::Postgres(_) => return Err("the source is not SQLite".into()),
    };
    // A chain that does not verify here would not verify there either;
    // say so now, before anything moves.
    let before = from.audit_verify().await.map_err(|e| e.to_string())?;
    if !before.problems.is_empty() {
        return Err(format!(
            "the SQLite database's audit log does not verify ({}); keep that database as evidence and do not move it",
            before.problems.join("; ")
        ));
    }
    // Joined as a node that will not wait: no server may serve from the
    // target meanwhile (none may be serving now).
    let into = match crate::database::open(
        &target,
        &e.db_path,
        e.audit_key,
        None,
        crate::database::Role::Migrate,
    )
    .await?
    {
        crate::database::Opened::Postgres(p) => p,
        crate::database::Opened::Sqlite(_) => return Err("--to needs a PostgreSQL URL".into()),
    };
    let moved = move_into(&from, &into, before.records).await;
    // Left at once, so that a server may start on it without waiting for
    // the lease to lapse.
    if let Err(e) = into.leave().await {
        tracing::warn!(error = %e, "could not leave the pool after moving");
    }
    moved
}

/// Moves every table and checks what arrived.
async fn move_into(
    from: &store_sqlite::Sqlite,
    into: &store_postgres::Postgres,
    records: u64,
) -> Result<Moved, String> {
    let (tx, rx) = mpsc::channel(4);
    let (exported, imported) = tokio::join!(from.export(tx), into.import(rx));
    // The importer's error says why; the exporter's is then only that its
    // reader went away.
    let imported = imported.map_err(|e| format!("nothing was moved: {e}"))?;
    let exported = exported.map_err(|e| format!("nothing was moved: {e}"))?;
    for ((table, out), (_, got)) in exported.iter().zip(&imported) {
        // meta's counters existed on both sides; every other table must
        // hold exactly what was read.
        if out != got && *table != "meta" {
            return Err(format!(
                "{table}: {out} rows read from SQLite but {got} written to PostgreSQL"
            ));
        }
    }
    let after = into.audit_verify().await.map_err(|e| e.to_string())?;
    if !after.problems.is_empty() || after.records != records {
        return Err(format!(
            "the audit log in PostgreSQL does not verify ({} records of {}: {})",
            after.records,
            records,
            after.problems.join("; ")
        ));
    }
    Ok(Moved {
        tables: imported,
        audit_records: after.records,
    })
}
