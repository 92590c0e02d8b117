//! # parapet-store-postgres: the `store` traits on PostgreSQL
//!
//! For a pool of front ends sharing one database. tokio-postgres on a
//! bounded pool of connections (deadpool-postgres), the statements of the
//! hot paths prepared once per connection, TLS that verifies the server
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
//! committed before it, and the next one waits; the writes that end what a
//! user holds (a new password, disabling, signing out) lock the same row
//! first. A grant to a group holds the group's row against its removal; a
//! role in use holds the role's row against its removal. Conditional
//! updates (a TOTP step later than the last) are atomic as single
//! statements. A serialization failure or deadlock is retried from the
//! start. Counters that many writes move (the users'
//! and policies' versions) are rows every such write updates: under READ
//! COMMITTED they queue on the row's lock instead of failing.
#![forbid(unsafe_code)]

mod admins;
mod archive;
mod audit;
mod bindings;
mod cdr;
pub mod changes;
pub mod connect;
mod contacts;
mod devices;
mod edges;
mod files;
mod import;
mod lockouts;
mod messages;
pub mod nodes;
mod policies;
mod presence;
pub mod schema;
mod sessions;
mod users;
mod wake;

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
pub use nodes::NodeConfig;

/// Pool and connection settings. Its Debug form shows neither the URL (a
/// password may be in it) nor the audit key.
#[derive(Clone)]
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
    /// Join the pool as this node after migrating (the serving process;
    /// see [`nodes`]): its writes are then fenced by its epoch. `None` for
    /// tools writing beside a running server (`parapet admin recover`).
    pub node: Option<NodeConfig>,
}

impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("pool_size", &self.pool_size)
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

impl PostgresConfig {
    pub fn new(url: impl Into<String>) -> Self {
        PostgresConfig {
            url: url.into(),
            pool_size: 16,
            wait: Duration::from_secs(5),
            audit_key: None,
            node: None,
        }
    }
}

/// How long the change log keeps a change (pruned every minute by the
/// serving node).
pub const CHANGES_KEPT: Duration = Duration::from_secs(600);

/// A node's id and epoch as a one-statement write passes them to
/// [`FENCE_ANY`] (both `None` for a process that did not join).
pub(crate) struct NodeArgs {
    pub(crate) id: Option<String>,
    pub(crate) epoch: Option<i64>,
}

/// The fence as the main query of a one-statement write whose changes are
/// data-modifying CTEs (which run whatever the main query reads): the
/// node's id and epoch are $1 and $2, and a process that did not join
/// passes NULL for both.
pub(crate) const FENCE_ANY: &str =
    "SELECT CASE WHEN $1::text IS NULL THEN NULL ELSE parapet_fence($1, $2) END";

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
    /// This process's membership of the pool, when it joined at open.
    node: Option<Arc<nodes::Node>>,
    /// The serving node's group commit for registrations.
    registrations: Option<Arc<bindings::Registrations>>,
    /// The follower of the other nodes' changes (`Store::follow_start`).
    feed: Arc<tokio::sync::Mutex<Option<changes::Feed>>>,
    /// Where the database is (for the listening connection of `wake`).
    target: Arc<connect::Target>,
    /// Woken when another node commits a change (`Store::change_hint`).
    wake: Arc<wake::Wake>,
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
            // Without a SQLSTATE: the connection closed or its socket
            // failed is an outage; anything else (a row that did not
            // convert, a wrong row count) is a fault here, not worth a retry.
            None if p.is_closed()
                || std::error::Error::source(&p).is_some_and(|s| s.is::<std::io::Error>()) =>
            {
                StoreError::Unavailable(describe(&p))
            }
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
        // Making a connection may try each host in turn, each for up to
        // its connect timeout: the pool waits for all of them.
        let hosts = u32::try_from(target.config.get_hosts().len())
            .unwrap_or(1)
            .max(1);
        let per_host = target
            .config
            .get_connect_timeout()
            .copied()
            .unwrap_or(Duration::from_secs(5));
        let create = (per_host * hosts + Duration::from_secs(1)).max(config.wait);
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(config.wait))
            .create_timeout(Some(create))
            .recycle_timeout(Some(config.wait))
            .build()
            .map_err(|e| StoreError::Setup(format!("database pool: {e}")))?;
        let store = Postgres {
            pool,
            transport: target.transport.clone(),
            commits: Arc::new(AtomicU64::new(0)),
            audit_key: config
                .audit_key
                .map(|k| Arc::new(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &k))),
            audit: None,
            node: None,
            registrations: None,
            feed: Arc::default(),
            target: Arc::new(target),
            wake: Arc::default(),
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
        if let Some(key) = &store.audit_key {
            check_keys(&client, key).await?;
        }
        drop(client);
        let mut store = store;
        if let Some(node) = &config.node {
            store.node = Some(nodes::join(&store.pool, node).await?);
            store.registrations = Some(Arc::new(bindings::Registrations::start(store.clone())));
        }
        Ok(store)
    }

    /// When this process joined the pool at open: a receiver that turns
    /// `true` when it learns another node declared it dead (its lease
    /// lapsed). The node must stop serving: none of its writes commits.
    pub fn fenced(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        self.node.as_ref().map(|n| n.fenced())
    }

    /// Stops renewing this node's lease, as a stopped process would (for
    /// the tests of what other nodes do then).
    #[doc(hidden)]
    pub fn stop_heartbeat(&self) {
        if let Some(n) = &self.node {
            n.stop_heartbeat();
        }
    }

    /// Leaves the pool cleanly (at shutdown): another node may take over at
    /// once instead of after the lease.
    pub async fn leave(&self) -> Result<()> {
        match &self.node {
            Some(n) => nodes::leave(&self.pool, n).await,
            None => Ok(()),
        }
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

    /// Runs the read-only `f` in one REPEATABLE READ snapshot (what it
    /// reads agrees with itself); the transaction ends when it returns, or
    /// rolls back if the caller goes away meanwhile.
    pub(crate) async fn read_snapshot<R, F>(&self, f: F) -> Result<R>
    where
        F: for<'t> FnOnce(&'t Tx<'t>) -> Fut<'t, R>,
    {
        let mut client = self.pool.get().await.map_err(|e| store_error(e.into()))?;
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(|e| store_error(e.into()))?;
        let r = f(&tx).await.map_err(store_error)?;
        tx.commit().await.map_err(|e| store_error(e.into()))?;
        Ok(r)
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

    /// Runs a write that is one statement on its own, without BEGIN and
    /// COMMIT (PostgreSQL commits it when it ends: one round trip). The
    /// statement must include the fence for this node — `f` gets the
    /// node's id and epoch (`None` for a process that did not join) as
    /// [`FENCE_ANY`] expects them. Retried like [`Postgres::write`]; a
    /// handle carrying an audit record must use `write` instead.
    pub(crate) async fn write_statement<R, F>(&self, f: F) -> Result<R>
    where
        R: Send,
        F: for<'c> Fn(&'c deadpool_postgres::Client, &'c NodeArgs) -> Fut<'c, R> + Send + Sync,
    {
        let args = NodeArgs {
            id: self.node.as_ref().map(|n| n.id.clone()),
            epoch: self.node.as_ref().map(|n| n.epoch),
        };
        self.retrying(|| async {
            let client = self.pool.get().await?;
            f(&client, &args).await
        })
        .await
    }

    /// Runs `go` until it succeeds, a serialization failure or deadlock
    /// again at most [`MAX_RETRIES`] times (growing, with jitter, so that
    /// writers that collided do not collide again); counts the commit; a
    /// refusal by this node's fence becomes the node's own error.
    async fn retrying<R, G, Fu>(&self, mut go: G) -> Result<R>
    where
        G: FnMut() -> Fu,
        Fu: Future<Output = std::result::Result<R, E>>,
    {
        let mut attempt = 0;
        loop {
            match go().await {
                Ok(r) => {
                    self.commits.fetch_add(1, Ordering::Relaxed);
                    return Ok(r);
                }
                Err(e) if retryable(&e) && attempt < MAX_RETRIES => {
                    attempt += 1;
                    let ms = u64::from(attempt) * (1 + u64::from(rand_byte() % 8));
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                Err(e) => {
                    let e = match &self.node {
                        Some(n) => n.check(e),
                        None => e,
                    };
                    return Err(store_error(e));
                }
            }
        }
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
        self.retrying(|| self.attempt(level, &f, audit.as_ref()))
            .await
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
        let r = match &self.node {
            None => f(&tx).await?,
            // The fence first, pipelined with the write's own statements
            // (no extra round trip); if it refuses, the transaction is
            // aborted and nothing of it commits.
            Some(node) => {
                let st = tx.prepare_cached(nodes::FENCE).await?;
                let args: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&node.id, &node.epoch];
                let fence = tx.execute(&st, &args);
                let (fenced, r) = tokio::join!(fence, f(&tx));
                fenced?;
                r?
            }
        };
        if let Some((entry, key)) = audit {
            audit::append(&tx, key, entry).await?;
        }
        tx.commit().await?;
        Ok(r)
    }
}

/// Every node of a pool must hold the same keys (the seal key the users'
/// secrets are sealed with, and the audit key derived from it): a node
/// started from another data directory would refuse every password and
/// break the audit chain. The first process records a value derived from
/// the audit key; one with other keys is refused at open.
async fn check_keys(client: &deadpool_postgres::Client, key: &ring::hmac::Key) -> Result<()> {
    let tag = ring::hmac::sign(key, b"parapet: the pool's keys");
    let mut first = [0u8; 8];
    first.copy_from_slice(tag.as_ref().get(..8).unwrap_or(&[0; 8]));
    let mine = i64::from_be_bytes(first);
    let go = async {
        client
            .execute(
                "INSERT INTO meta (name, value) VALUES ('key_check', $1) ON CONFLICT (name) DO NOTHING",
                &[&mine],
            )
            .await?;
        let have: i64 = client
            .query_one("SELECT value FROM meta WHERE name = 'key_check'", &[])
            .await?
            .try_get(0)?;
        R::Ok(have)
    };
    let have = go.await.map_err(store_error)?;
    if have != mine {
        return Err(StoreError::Setup(
            "this data directory's keys are not the ones this database was written with: every node of a pool needs the same keys/ directory (copy it from an existing node; docs/POSTGRES.md)".into(),
        ));
    }
    Ok(())
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

    async fn nodes(&self) -> Result<Vec<store::NodeRow>> {
        nodes::list(&self.pool, self.node.as_deref()).await
    }

    fn report_applied(&self, policy_version: i64, users_version: i64) {
        if let Some(n) = &self.node {
            n.report_applied(policy_version, users_version);
        }
    }

    fn node_identity(&self) -> Option<(String, i64)> {
        self.node.as_ref().map(|n| (n.id.clone(), n.epoch))
    }

    async fn follow_start(&self) -> Result<()> {
        self.follow_start_shared().await
    }

    async fn followed_changes(&self) -> Result<Vec<store::Change>> {
        self.followed().await
    }

    async fn change_hint(&self) {
        self.wake.wait().await;
    }
}

/// Locks the user's row for the rest of the transaction: the writes that
/// check something about a user (device caps, quotas, sessions) and the
/// ones that end what a user holds (a new password, disabling, signing out)
/// take it first, so each sees the other's committed result.
pub(crate) async fn lock_user(tx: &Tx<'_>, aor: &str) -> std::result::Result<Option<bool>, E> {
    let st = tx
        .prepare_cached("SELECT enabled FROM users WHERE aor = $1 FOR NO KEY UPDATE")
        .await?;
    Ok(tx
        .query_opt(&st, &[&aor])
        .await?
        .map(|r| r.try_get::<_, bool>(0))
        .transpose()?)
}

/// `rows` grouped under each of `keys` (by `key_of`), in `keys`' order; a
/// key no row has gets an empty list.
pub(crate) fn each_key<T>(
    keys: Vec<String>,
    rows: Vec<T>,
    key_of: impl Fn(&T) -> &String,
) -> Vec<(String, Vec<T>)> {
    let mut by: std::collections::HashMap<String, Vec<T>> = std::collections::HashMap::new();
    for r in rows {
        by.entry(key_of(&r).clone()).or_default().push(r);
    }
    keys.into_iter()
        .map(|k| {
            let rows = by.remove(&k).unwrap_or_default();
            (k, rows)
        })
        .collect()
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
