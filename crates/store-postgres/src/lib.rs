//! # parapet-store-postgres: the `store` traits on PostgreSQL
//!
//! For a pool of front ends sharing one database. tokio-postgres on a
//! bounded pool of connections (deadpool-postgres), every statement
//! prepared once per connection, TLS that verifies the server
//! ([`connect`]), SCRAM as the server asks for it.
//!
//! Durability: a write returns `Ok` only after its COMMIT returned, so what
//! the server acknowledged is on the database's disk — and, with
//! `synchronous_commit = on` and a synchronous standby configured, on the
//! standby's too (docs/POSTGRES.md).
//!
//! Isolation: SQLite's single writer lets a check and the write it guards
//! (a quota, a device cap, a TOTP step used once) never interleave with
//! another write. Here writes run side by side, from every node, in READ
//! COMMITTED transactions; each check that guards a write first locks the
//! row it is about (the user's, for device caps, quotas and session caps;
//! the audit chain's lock row), so the check then sees every write that
//! committed before it, and the next one waits. Conditional updates (a
//! TOTP step later than the last) are atomic as single statements. The few
//! rare administrative writes whose check spans tables (a grant to a group,
//! removing a role) run SERIALIZABLE. A serialization failure or deadlock
//! is retried from the start. Counters that many writes move (the users'
//! and policies' versions) are rows every such write updates: under READ
//! COMMITTED they queue on the row's lock instead of failing.
#![forbid(unsafe_code)]

mod admins;
mod audit;
mod bindings;
pub mod changes;
pub mod connect;
mod contacts;
mod devices;
mod files;
mod import;
mod messages;
mod policies;
mod presence;
pub mod schema;
mod sessions;
mod users;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::error::SqlState;
use tokio_postgres::IsolationLevel;

use store::{AuditEntry, Result, StoreError};

pub use connect::Transport;

/// Pool and connection settings.
#[derive(Debug, Clone)]
pub struct PostgresConfig {
    /// `postgres://user@host/db?sslrootcert=...` (see [`connect`]). A
    /// password, if any, is part of the URL; it is never logged.
    pub url: String,
    /// Connections at most.
    pub pool_size: usize,
    /// How long a caller waits for a free connection, or for a new one to
    /// be made, before the write fails (the SIP layer answers 503).
    pub wait: Duration,
    /// The key of the audit log's MAC chain (kept outside the database).
    pub audit_key: Option<[u8; 32]>,
}

impl PostgresConfig {
    pub fn new(url: impl Into<String>) -> Self {
        PostgresConfig {
            url: url.into(),
            pool_size: 16,
            wait: Duration::from_secs(5),
            audit_key: None,
        }
    }
}

/// The advisory lock a serving node holds ("parapet" + 1).
const NODE_LOCK: i64 = 0x0070_6172_6170_6575;

/// The database claimed by one serving process; dropping it (or the
/// process ending) releases the claim.
pub struct Claim {
    _client: deadpool_postgres::ClientWrapper,
}

impl std::fmt::Debug for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Claim")
    }
}

/// Serialization failures retried at most, per write.
const MAX_RETRIES: u32 = 10;

/// The PostgreSQL store. Cloning shares the pool.
#[derive(Clone)]
pub struct Postgres {
    pool: Pool,
    transport: Transport,
    commits: Arc<AtomicU64>,
    audit_key: Option<Arc<ring::hmac::Key>>,
    /// Set on a handle from `Store::audited`: appended with every write.
    audit: Option<Arc<AuditEntry>>,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("transport", &self.transport)
            .field("commits", &self.commits.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// What a store operation fails with inside this crate: PostgreSQL's own
/// error (whose code decides retries and conflicts), or the store's.
#[derive(Debug)]
pub(crate) enum E {
    Pg(tokio_postgres::Error),
    Store(StoreError),
}

impl From<tokio_postgres::Error> for E {
    fn from(e: tokio_postgres::Error) -> Self {
        E::Pg(e)
    }
}

impl From<StoreError> for E {
    fn from(e: StoreError) -> Self {
        E::Store(e)
    }
}

/// Failing to get a connection (none free in time, none could be made,
/// the server refusing this database) is the database being unavailable,
/// whatever PostgreSQL's code for it.
impl From<deadpool_postgres::PoolError> for E {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        E::Store(StoreError::Unavailable(match e {
            deadpool_postgres::PoolError::Backend(e) => {
                format!("no database connection: {}", describe(&e))
            }
            other => format!("no database connection: {other}"),
        }))
    }
}

/// The error's text with PostgreSQL's own message and code when there is
/// one (tokio-postgres's Display says only "db error").
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{} ({})", d.message(), d.code().code()),
        None => e.to_string(),
    }
}

fn retryable(e: &E) -> bool {
    matches!(e, E::Pg(p) if matches!(p.code(), Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED))
}

pub(crate) fn store_error(e: E) -> StoreError {
    match e {
        E::Store(s) => s,
        E::Pg(p) => match p.code() {
            Some(c)
                if *c == SqlState::UNIQUE_VIOLATION
                    || *c == SqlState::FOREIGN_KEY_VIOLATION
                    || *c == SqlState::CHECK_VIOLATION
                    || *c == SqlState::NOT_NULL_VIOLATION
                    || *c == SqlState::RESTRICT_VIOLATION =>
            {
                StoreError::Conflict(describe(&p))
            }
            // Connection exceptions, the server shutting down or not
            // accepting connections yet, and errors without a SQLSTATE (the
            // connection itself failed): worth trying again later.
            Some(c)
                if c.code().starts_with("08")
                    || *c == SqlState::ADMIN_SHUTDOWN
                    || *c == SqlState::CRASH_SHUTDOWN
                    || *c == SqlState::CANNOT_CONNECT_NOW =>
            {
                StoreError::Unavailable(describe(&p))
            }
            None => StoreError::Unavailable(describe(&p)),
            _ => StoreError::Db(describe(&p)),
        },
    }
}

/// Results inside this crate.
pub(crate) type R<T> = std::result::Result<T, E>;
/// What reading a row's columns returns.
pub(crate) type Pg<T> = std::result::Result<T, tokio_postgres::Error>;

/// A write transaction's body.
pub(crate) type Tx<'t> = deadpool_postgres::Transaction<'t>;
/// What a body returns: boxed, because it borrows the transaction.
pub(crate) type Fut<'t, R> = Pin<Box<dyn Future<Output = std::result::Result<R, E>> + Send + 't>>;

impl Postgres {
    /// Connects, migrates the schema and builds the pool. Fails with a
    /// message that says what to fix when the database cannot be reached.
    pub async fn open(config: &PostgresConfig) -> Result<Postgres> {
        let target = connect::parse(&config.url)?;
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &target.transport {
            Transport::Verified { roots } => {
                Manager::from_config(target.config.clone(), connect::tls(roots)?, manager_config)
            }
            _ => Manager::from_config(target.config.clone(), tokio_postgres::NoTls, manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(config.wait))
            .create_timeout(Some(config.wait))
            .recycle_timeout(Some(config.wait))
            .build()
            .map_err(|e| StoreError::Setup(format!("database pool: {e}")))?;
        let store = Postgres {
            pool,
            transport: target.transport,
            commits: Arc::new(AtomicU64::new(0)),
            audit_key: config
                .audit_key
                .map(|k| Arc::new(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &k))),
            audit: None,
        };
        let mut client = store.pool.get().await.map_err(|e| {
            StoreError::Setup(format!(
                "cannot connect to the database: {} (check the URL, that the server runs and accepts this user, and its certificate)",
                match &e {
                    deadpool_postgres::PoolError::Backend(p) => describe(p),
                    other => other.to_string(),
                }
            ))
        })?;
        schema::migrate(&mut client).await?;
        Ok(store)
    }

    /// Claims the database for this process alone, for as long as the
    /// returned guard lives (a session advisory lock on a connection of
    /// its own). Several `parapet serve` nodes on one database need the
    /// change log and routing between nodes that are not built yet: until
    /// then a second node is refused at start, instead of serving from
    /// caches the first one's writes never reach. Tools that write through
    /// the store while the server runs (`parapet admin recover`) do not
    /// claim it.
    pub async fn claim(&self) -> Result<Claim> {
        let object = self.pool.get().await.map_err(|e| store_error(e.into()))?;
        let client = deadpool_postgres::Object::take(object);
        let got: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&NODE_LOCK])
            .await
            .and_then(|r| r.try_get(0))
            .map_err(|e| store_error(e.into()))?;
        if !got {
            return Err(StoreError::Setup(
                "another parapet serve is already using this database; pools of several nodes on one database are not supported yet (docs/POSTGRES.md)".into(),
            ));
        }
        Ok(Claim { _client: client })
    }

    /// How the connection to the database is protected (for the posture
    /// check).
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// Runs a read on a pooled connection.
    pub(crate) async fn read<R, F>(&self, f: F) -> Result<R>
    where
        F: for<'c> FnOnce(&'c deadpool_postgres::Client) -> Fut<'c, R>,
    {
        let client = self.pool.get().await.map_err(|e| store_error(e.into()))?;
        f(&client).await.map_err(store_error)
    }

    /// Runs `f` in a READ COMMITTED transaction (with this handle's
    /// audit record, if any, appended in it) and returns once it
    /// committed; `f` runs again, in a new transaction, after a
    /// serialization failure or a deadlock. `Ok` means committed.
    pub(crate) async fn write<R, F>(&self, f: F) -> Result<R>
    where
        R: Send,
        F: for<'t> Fn(&'t Tx<'t>) -> Fut<'t, R> + Send + Sync,
    {
        self.write_at(IsolationLevel::ReadCommitted, f).await
    }

    /// As [`Postgres::write`], SERIALIZABLE: for checks that span tables
    /// no single row lock covers.
    pub(crate) async fn write_serializable<R, F>(&self, f: F) -> Result<R>
    where
        R: Send,
        F: for<'t> Fn(&'t Tx<'t>) -> Fut<'t, R> + Send + Sync,
    {
        self.write_at(IsolationLevel::Serializable, f).await
    }

    async fn write_at<R, F>(&self, level: IsolationLevel, f: F) -> Result<R>
    where
        R: Send,
        F: for<'t> Fn(&'t Tx<'t>) -> Fut<'t, R> + Send + Sync,
    {
        let audit = match &self.audit {
            None => None,
            Some(e) => Some((e.clone(), self.audit_key.clone().ok_or_else(audit::no_key)?)),
        };
        let mut attempt = 0;
        loop {
            let outcome = self.attempt(level, &f, audit.as_ref()).await;
            match outcome {
                Ok(r) => {
                    self.commits.fetch_add(1, Ordering::Relaxed);
                    return Ok(r);
                }
                Err(e) if retryable(&e) && attempt < MAX_RETRIES => {
                    attempt += 1;
                    // Growing, with jitter, so that writers that collided
                    // do not collide again.
                    let ms = u64::from(attempt) * (1 + u64::from(rand_byte() % 8));
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                Err(e) => return Err(store_error(e)),
            }
        }
    }

    async fn attempt<R, F>(
        &self,
        level: IsolationLevel,
        f: &F,
        audit: Option<&(Arc<AuditEntry>, Arc<ring::hmac::Key>)>,
    ) -> std::result::Result<R, E>
    where
        F: for<'t> Fn(&'t Tx<'t>) -> Fut<'t, R> + Send + Sync,
    {
        let mut client = self.pool.get().await?;
        let tx = client
            .build_transaction()
            .isolation_level(level)
            .start()
            .await?;
        let r = f(&tx).await?;
        if let Some((entry, key)) = audit {
            audit::append(&tx, key, entry).await?;
        }
        tx.commit().await?;
        Ok(r)
    }
}

/// A byte of jitter from the clock (no RNG dependency for a back-off).
fn rand_byte() -> u8 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| (d.subsec_nanos() >> 10) as u8)
}

impl store::Store for Postgres {
    fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    fn audited(&self, entry: AuditEntry) -> Postgres {
        Postgres {
            audit: Some(Arc::new(entry)),
            ..self.clone()
        }
    }
}

/// `u64` and `usize` values the schema keeps as BIGINT.
pub(crate) fn big(v: impl TryInto<i64>) -> i64 {
    v.try_into().unwrap_or(i64::MAX)
}

/// A count PostgreSQL returned, as `usize`.
pub(crate) fn count(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Lines of a text column (paths, routes, groups) without empty ones.
pub(crate) fn lines(s: &str) -> Vec<String> {
    s.lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| big(d.as_secs()))
}
