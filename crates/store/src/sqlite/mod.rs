//! SQLite: WAL journal, `synchronous = FULL`, foreign keys on, a fixed pool of
//! worker threads with one connection each, and a bounded job queue.

mod bindings;
mod messages;
mod migrations;
mod users;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::{Result, StoreError};

/// Pool and connection settings.
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    pub path: PathBuf,
    /// Worker threads (each with its own connection). WAL lets readers run in
    /// parallel; writers queue on SQLite's lock.
    pub workers: usize,
    /// Jobs waiting for a worker; callers wait beyond this.
    pub queue: usize,
    /// How long a write waits for SQLite's lock before failing.
    pub busy_timeout: Duration,
}

impl SqliteConfig {
    pub fn new(path: impl AsRef<Path>) -> Self {
        SqliteConfig {
            path: path.as_ref().to_path_buf(),
            workers: 4,
            queue: 1024,
            busy_timeout: Duration::from_secs(5),
        }
    }
}

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// The SQLite store. Cloning shares the pool; the workers stop when the last
/// clone is dropped.
#[derive(Debug, Clone)]
pub struct Sqlite {
    jobs: mpsc::Sender<Job>,
}

impl Sqlite {
    /// Opens (creating if needed) and migrates the database, then starts the
    /// workers. Blocking: call it before serving, or from `spawn_blocking`.
    pub fn open(config: &SqliteConfig) -> Result<Sqlite> {
        let mut first = connect(config)?;
        migrations::migrate(&mut first)?;
        let (tx, rx) = mpsc::channel::<Job>(config.queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let mut conns = vec![first];
        for _ in 1..config.workers.max(1) {
            conns.push(connect(config)?);
        }
        for (i, mut conn) in conns.into_iter().enumerate() {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("sqlite-{i}"))
                .spawn(move || loop {
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
                })
                .map_err(|e| StoreError::Setup(format!("cannot start database worker: {e}")))?;
        }
        Ok(Sqlite { jobs: tx })
    }

    /// Runs `f` on a worker's connection and returns its result.
    pub(crate) async fn call<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let _ = tx.send(f(conn));
        });
        self.jobs.send(job).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
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
