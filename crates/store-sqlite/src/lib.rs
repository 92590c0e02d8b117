//! # parapet-store-sqlite: the `store` traits on SQLite
//!
//! WAL journal, `synchronous = FULL`, foreign keys on; one writer thread that
//! commits waiting writes together (group commit) and a fixed pool of reader
//! threads, each with its own connection and fed by a bounded queue.
//!
//! Durability: every write commits before the call returns, so what the
//! server acknowledged survives a crash or a `kill -9`. Writes that wait
//! together commit together (one fsync for the batch, each write atomic in its
//! own savepoint).
//!
//! Async discipline: SQLite calls block, so they never run on the async
//! runtime. [`Sqlite`] owns one writer thread and a fixed set of reader
//! threads, each with its own connection, fed through bounded queues; callers
//! await the result. When a queue is full callers wait (backpressure) rather
//! than the queue growing.
//!
//! The SQL sticks to what PostgreSQL also speaks (INTEGER/TEXT/BLOB columns,
//! `ON CONFLICT` upserts, no SQLite-only functions).
#![forbid(unsafe_code)]

mod admins;
mod archive;
mod audit;
mod bindings;
mod cdr;
mod contacts;
mod devices;
mod edges;
mod export;
mod files;
mod lockouts;
mod messages;
mod migrations;
mod policies;
mod presence;
mod sessions;
mod users;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use store::{AuditEntry, Result, StoreError};

/// Pool and connection settings.
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    pub path: PathBuf,
    /// Reader threads (each with its own connection); WAL lets them run in
    /// parallel with the writer.
    pub workers: usize,
    /// Jobs waiting for a reader, and separately for the writer; callers wait
    /// beyond this.
    pub queue: usize,
    /// How long a write waits for SQLite's lock (held by another process, such
    /// as `parapet user add`) before failing.
    pub busy_timeout: Duration,
    /// Writes committed together at most (group commit).
    pub max_batch: usize,
    /// Under steady load (the previous commit ended less than ten of these
    /// ago), how long the writer waits for more writes before committing a
    /// batch that is not full: one fsync then covers more writes. A lone
    /// write after a quiet spell commits at once. Zero: never wait.
    pub commit_linger: Duration,
    /// The key of the audit log's MAC chain (kept outside the database).
    /// Without it, audit appends and verification fail.
    pub audit_key: Option<[u8; 32]>,
}

impl SqliteConfig {
    pub fn new(path: impl AsRef<Path>) -> Self {
        SqliteConfig {
            path: path.as_ref().to_path_buf(),
            workers: 2,
            queue: 1024,
            busy_timeout: Duration::from_secs(5),
            max_batch: 256,
            commit_linger: Duration::from_millis(2),
            audit_key: None,
        }
    }
}

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// Page cache sizes (negative: KiB, as SQLite's `cache_size` takes them).
const WRITER_CACHE_KIB: i64 = -1024;
const READER_CACHE_KIB: i64 = -256;

/// What a write job reports once it ran inside the batch transaction: whether
/// its own statements succeeded, and how to hand the caller its result once the
/// batch's COMMIT has (or has not) reached the disk.
struct Ran {
    ok: bool,
    finish: Box<dyn FnOnce(Result<()>) + Send>,
}

/// A write job. `None`: the batch could not start; report the error without
/// running.
type WriteJob = Box<dyn FnOnce(Option<&Connection>) -> Ran + Send>;

/// The SQLite store. Cloning shares the pool; the workers stop when the last
/// clone is dropped.
#[derive(Debug, Clone)]
pub struct Sqlite {
    reads: mpsc::Sender<Job>,
    writes: mpsc::Sender<WriteJob>,
    commits: Arc<AtomicU64>,
    audit_key: Option<Arc<ring::hmac::Key>>,
    /// Set on a handle from `Store::audited`: appended with every write.
    audit: Option<Arc<AuditEntry>>,
}

impl Sqlite {
    /// Opens (creating if needed) and migrates the database, then starts one
    /// writer and `workers` readers. Blocking: call it before serving, or from
    /// `spawn_blocking`.
    pub fn open(config: &SqliteConfig) -> Result<Sqlite> {
        let mut writer = connect(config)?;
        migrations::migrate(&mut writer)?;
        writer
            .pragma_update(None, "cache_size", WRITER_CACHE_KIB)
            .map_err(db)?;
        let (wtx, wrx) = mpsc::channel::<WriteJob>(config.queue.max(1));
        let max_batch = config.max_batch.max(1);
        let linger = config.commit_linger;
        let commits = Arc::new(AtomicU64::new(0));
        let counter = commits.clone();
        spawn("sqlite-writer".into(), move || {
            write_loop(&mut writer, wrx, max_batch, linger, &counter)
        })?;
        let (tx, rx) = mpsc::channel::<Job>(config.queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..config.workers.max(1) {
            let mut conn = connect(config)?;
            // Readers never write: every write goes through the writer's batch.
            conn.pragma_update(None, "query_only", "ON").map_err(db)?;
            // Reads are off the hot path (loading at start, stored messages):
            // a small page cache each (the default is 2 MB per connection).
            conn.pragma_update(None, "cache_size", READER_CACHE_KIB)
                .map_err(db)?;
            let rx = rx.clone();
            spawn(format!("sqlite-{i}"), move || loop {
                // Holding the lock while waiting is fine: only one worker can
                // take the next job anyway, and no async code touches this lock.
                let job = match rx.lock() {
                    Ok(mut r) => r.blocking_recv(),
                    Err(_) => None,
                };
                match job {
                    Some(job) => job(&mut conn),
                    None => return,
                }
            })?;
        }
        Ok(Sqlite {
            reads: tx,
            writes: wtx,
            commits,
            audit_key: config
                .audit_key
                .map(|k| Arc::new(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &k))),
            audit: None,
        })
    }

    /// Runs the read-only `f` on a reader's connection and returns its result.
    pub(crate) async fn call<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let _ = tx.send(f(conn));
        });
        self.reads.send(job).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Checkpoints the WAL into the database and truncates it to nothing,
    /// so pages written before (a deleted record's) are no longer in it.
    /// Best effort: a reader holding an old snapshot at that moment keeps
    /// the WAL until the next checkpoint, and that is reported, not failed.
    pub(crate) async fn truncate_wal(&self) -> Result<()> {
        let busy: i64 = self
            .call(|c| {
                c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
                    .map_err(db)
            })
            .await?;
        if busy != 0 {
            tracing::info!(
                "the WAL could not be truncated now (a reader was busy); the next checkpoint will"
            );
        }
        Ok(())
    }

    /// Runs `f` on the writer's connection inside a transaction shared with
    /// the other writes waiting at that moment, and returns its result once
    /// that transaction has committed to disk. `f`'s statements are atomic: if
    /// it fails, they are rolled back and the other writes still commit.
    pub(crate) async fn write<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let audit = match &self.audit {
            None => None,
            Some(e) => Some((e.clone(), self.audit_key.clone().ok_or_else(audit::no_key)?)),
        };
        let job: WriteJob = Box::new(move |conn| {
            let result = match conn {
                Some(c) => f(c).and_then(|r| match &audit {
                    Some((e, key)) => audit::append(c, key, e).map(|_| r),
                    None => Ok(r),
                }),
                None => Err(StoreError::Db(
                    "the write transaction could not start".into(),
                )),
            };
            Ran {
                ok: result.is_ok(),
                finish: Box::new(move |commit| {
                    let _ = tx.send(commit.and(result));
                }),
            }
        });
        self.writes
            .send(job)
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> Result<()> {
    std::thread::Builder::new()
        .name(name)
        .spawn(f)
        .map(|_| ())
        .map_err(|e| StoreError::Setup(format!("cannot start database worker: {e}")))
}

/// Group commit: whatever writes are waiting when the writer becomes free go
/// into one transaction, each in its own savepoint, and one COMMIT (one fsync
/// of the WAL) makes them all durable. Under steady load the writer first
/// lingers (`commit_linger`) so that one fsync covers the writes arriving
/// meanwhile; a lone write after a quiet spell commits at once. Measured in
/// bench/README.md.
fn write_loop(
    conn: &mut Connection,
    mut rx: mpsc::Receiver<WriteJob>,
    max_batch: usize,
    linger: Duration,
    commits: &AtomicU64,
) {
    let mut batch = Vec::with_capacity(max_batch);
    let mut last_commit: Option<std::time::Instant> = None;
    let drain = |rx: &mut mpsc::Receiver<WriteJob>, batch: &mut Vec<WriteJob>| {
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
    };
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        drain(&mut rx, &mut batch);
        let busy = last_commit.is_some_and(|t| t.elapsed() < linger * 10);
        if busy && !linger.is_zero() && batch.len() < max_batch {
            std::thread::sleep(linger);
            drain(&mut rx, &mut batch);
        }
        if run_batch(conn, &mut batch) {
            commits.fetch_add(1, Ordering::Relaxed);
        }
        last_commit = Some(std::time::Instant::now());
    }
}

/// Runs one statement of transaction control, prepared once: parsing
/// BEGIN, SAVEPOINT, RELEASE and COMMIT afresh cost a tenth of the
/// writer's CPU for a one-row write (bench/files.sh under perf).
fn control(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// Returns whether the batch committed.
fn run_batch(conn: &Connection, batch: &mut Vec<WriteJob>) -> bool {
    if let Err(e) = control(conn, "BEGIN IMMEDIATE") {
        let msg = e.to_string();
        for job in batch.drain(..) {
            (job(None).finish)(Err(StoreError::Db(msg.clone())));
        }
        return false;
    }
    let mut finishes = Vec::with_capacity(batch.len());
    let mut broken = None;
    for job in batch.drain(..) {
        if broken.is_some() {
            finishes.push(job(None).finish);
            continue;
        }
        if let Err(e) = control(conn, "SAVEPOINT job") {
            broken = Some(e.to_string());
            finishes.push(job(None).finish);
            continue;
        }
        let ran = job(Some(conn));
        let end = if ran.ok {
            control(conn, "RELEASE job")
        } else {
            control(conn, "ROLLBACK TO job").and_then(|()| control(conn, "RELEASE job"))
        };
        if let Err(e) = end {
            broken = Some(e.to_string());
        }
        finishes.push(ran.finish);
    }
    let commit = match broken {
        None => control(conn, "COMMIT").map_err(|e| e.to_string()),
        Some(m) => Err(m),
    };
    if commit.is_err() {
        let _ = control(conn, "ROLLBACK");
    }
    let committed = commit.is_ok();
    for finish in finishes {
        finish(commit.clone().map_err(StoreError::Db));
    }
    committed
}

impl store::Store for Sqlite {
    fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    fn audited(&self, entry: AuditEntry) -> Sqlite {
        Sqlite {
            audit: Some(Arc::new(entry)),
            ..self.clone()
        }
    }
}

fn connect(config: &SqliteConfig) -> Result<Connection> {
    let conn = Connection::open(&config.path).map_err(|e| {
        StoreError::Setup(format!(
            "cannot open {}: {e} (check that the directory exists and is writable)",
            config.path.display()
        ))
    })?;
    conn.busy_timeout(config.busy_timeout).map_err(db)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(db)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(db)?;
    conn.pragma_update(None, "foreign_keys", "ON").map_err(db)?;
    // What is deleted is overwritten in the file, not left in free space
    // (the archive's purge relies on it; the cost is writing zeros into
    // pages a delete changes anyway).
    conn.pragma_update(None, "secure_delete", "ON")
        .map_err(db)?;
    // Every statement the store runs stays prepared (there are about a
    // hundred); the default of 16 would parse most of them again.
    conn.set_prepared_statement_cache_capacity(256);
    Ok(conn)
}

pub(crate) fn db(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(f, msg)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::Conflict(msg.unwrap_or_else(|| "constraint violated".into()))
        }
        other => StoreError::Db(other.to_string()),
    }
}
