//! Opening the store the configuration names: the embedded SQLite database
//! in the data directory, or PostgreSQL. The server runs generically over
//! either ([`Opened`] says which), so the SIP application and the APIs
//! never know.

use std::path::Path;

use config::Database;

/// An open store of either kind.
#[derive(Debug)]
pub enum Opened {
    Sqlite(store_sqlite::Sqlite),
    Postgres(store_postgres::Postgres),
}

/// Who opens the store. On PostgreSQL the serving node joins the pool
/// under its `node_id` (in the standby mode waiting while another node's
/// lease is live; in the active mode serving beside the others) and its
/// writes are fenced by its epoch; `migrate-store` joins
/// too, but refuses to wait; a tool writing beside a running server
/// (`recover`) does not join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// `parapet serve`, with its SIP listeners (for `admin status`).
    Serve {
        listeners: String,
    },
    /// `parapet admin migrate-store`: no node may be serving.
    Migrate,
    Tool,
}

/// Opens (creating or migrating) the configured store. `workers`: SQLite
/// reader threads (the default when `None`).
pub async fn open(
    database: &Database,
    db_path: &Path,
    audit_key: [u8; 32],
    workers: Option<usize>,
    role: Role,
) -> Result<Opened, String> {
    match database {
        Database::Embedded => {
            let defaults = store_sqlite::SqliteConfig::new(db_path);
            let cfg = store_sqlite::SqliteConfig {
                audit_key: Some(audit_key),
                workers: workers.unwrap_or(defaults.workers),
                ..defaults
            };
            tokio::task::spawn_blocking(move || store_sqlite::Sqlite::open(&cfg))
                .await
                .map_err(|e| format!("database open task failed: {e}"))?
                .map(Opened::Sqlite)
                .map_err(|e| e.to_string())
        }
        Database::Postgres {
            url,
            pool_size,
            node_id,
            active,
            ..
        } => {
            let node = match role {
                Role::Serve { listeners } => Some(store_postgres::NodeConfig {
                    id: node_id.clone(),
                    address: listeners,
                    wait: true,
                    active: *active,
                }),
                Role::Migrate => Some(store_postgres::NodeConfig {
                    id: "parapet-migrate-store".into(),
                    address: String::new(),
                    wait: false,
                    active: false,
                }),
                Role::Tool => None,
            };
            let cfg = store_postgres::PostgresConfig {
                pool_size: *pool_size,
                audit_key: Some(audit_key),
                node,
                ..store_postgres::PostgresConfig::new(url.0.clone())
            };
            let store = store_postgres::Postgres::open(&cfg)
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!(transport = ?store.transport(), schema = store_postgres::schema::version(), "PostgreSQL store open");
            Ok(Opened::Postgres(store))
        }
    }
}

/// Runs `$body` with `$store` bound to the open store, whichever kind it
/// is (the body is compiled once per kind).
#[macro_export]
macro_rules! with_store {
    ($opened:expr, $store:ident => $body:expr) => {
        match $opened {
            $crate::database::Opened::Sqlite($store) => $body,
            $crate::database::Opened::Postgres($store) => $body,
        }
    };
}
