//! Registrar bindings on PostgreSQL.

use tokio_postgres::Row;

use super::{count, lines, Pg, Postgres, Tx, R};
use store::{Binding, BindingChange, Bindings, Result};

const COLUMNS: &str =
    "aor, binding_key, contact, q, expires_at, call_id, cseq, path, source, user_agent, node";

/// Path values are stored one per line; a Path value cannot hold a newline.
fn row(r: &Row) -> Pg<Binding> {
    Ok(Binding {
        aor: r.try_get(0)?,
        key: r.try_get(1)?,
        contact: r.try_get(2)?,
        q: u16::try_from(r.try_get::<_, i32>(3)?).unwrap_or(0),
        expires_at: r.try_get(4)?,
        call_id: r.try_get(5)?,
        cseq: u32::try_from(r.try_get::<_, i64>(6)?).unwrap_or(0),
        path: lines(r.try_get(7)?),
        source: r.try_get(8)?,
        user_agent: r.try_get(9)?,
        node: r.try_get(10)?,
    })
}

async fn upsert(tx: &Tx<'_>, b: &Binding) -> R<()> {
    let st = tx
        .prepare_cached(&format!(
            "INSERT INTO bindings ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (aor, binding_key) DO UPDATE SET contact = excluded.contact, q = excluded.q,
               expires_at = excluded.expires_at, call_id = excluded.call_id, cseq = excluded.cseq,
               path = excluded.path, source = excluded.source, user_agent = excluded.user_agent,
               node = excluded.node"
        ))
        .await?;
    tx.execute(
        &st,
        &[
            &b.aor,
            &b.key,
            &b.contact,
            &i32::from(b.q),
            &b.expires_at,
            &b.call_id,
            &i64::from(b.cseq),
            &b.path.join("\n"),
            &b.source,
            &b.user_agent,
            &b.node,
        ],
    )
    .await?;
    Ok(())
}

async fn remove(tx: &Tx<'_>, aor: &str, key: &str) -> R<bool> {
    let st = tx
        .prepare_cached("DELETE FROM bindings WHERE aor = $1 AND binding_key = $2")
        .await?;
    Ok(tx.execute(&st, &[&aor, &key]).await? == 1)
}

/// Bindings to upsert and to remove, as columns for `unnest`: the last
/// change to each (aor, key) only (a statement may not touch a row twice),
/// in key order (concurrent writers lock rows in one order).
#[derive(Default)]
struct Batch {
    aor: Vec<String>,
    key: Vec<String>,
    contact: Vec<String>,
    q: Vec<i32>,
    expires_at: Vec<i64>,
    call_id: Vec<String>,
    cseq: Vec<i64>,
    path: Vec<String>,
    source: Vec<String>,
    user_agent: Vec<Option<String>>,
    node: Vec<String>,
    gone_aor: Vec<String>,
    gone_key: Vec<String>,
}

impl Batch {
    fn of(changes: Vec<BindingChange>) -> Batch {
        let mut last = std::collections::BTreeMap::new();
        for c in changes {
            let k = match &c {
                BindingChange::Upsert(b) => (b.aor.clone(), b.key.clone()),
                BindingChange::Remove { aor, key } => (aor.clone(), key.clone()),
            };
            last.insert(k, c);
        }
        let mut out = Batch::default();
        for (_, c) in last {
            match c {
                BindingChange::Upsert(b) => {
                    out.aor.push(b.aor);
                    out.key.push(b.key);
                    out.contact.push(b.contact);
                    out.q.push(i32::from(b.q));
                    out.expires_at.push(b.expires_at);
                    out.call_id.push(b.call_id);
                    out.cseq.push(i64::from(b.cseq));
                    out.path.push(b.path.join("\n"));
                    out.source.push(b.source);
                    out.user_agent.push(b.user_agent);
                    out.node.push(b.node);
                }
                BindingChange::Remove { aor, key } => {
                    out.gone_aor.push(aor);
                    out.gone_key.push(key);
                }
            }
        }
        out
    }
}

/// Registrations' changes (each one registration's, all or nothing) as
/// one statement: one round trip, fenced inside.
async fn apply_one(store: &Postgres, sets: Vec<Vec<BindingChange>>) -> Result<()> {
    let batch = std::sync::Arc::new(Batch::of(sets.into_iter().flatten().collect()));
    store
        .write_statement(|c, node| {
            let batch = batch.clone();
            Box::pin(async move {
                let st = c.prepare_cached(&APPLY).await?;
                c.execute(
                    &st,
                    &[
                        &node.id,
                        &node.epoch,
                        &batch.aor,
                        &batch.key,
                        &batch.contact,
                        &batch.q,
                        &batch.expires_at,
                        &batch.call_id,
                        &batch.cseq,
                        &batch.path,
                        &batch.source,
                        &batch.user_agent,
                        &batch.gone_aor,
                        &batch.gone_key,
                        &batch.node,
                    ],
                )
                .await?;
                Ok(())
            })
        })
        .await
}

/// Group commit for registrations: the serving node's REGISTERs that wait
/// at the same moment are written by one statement (one round trip, one
/// commit, one fence) — at most [`GROUPS_IN_FLIGHT`] such statements at
/// once; while they run, the next ones gather. A group that fails for a
/// reason of one of its registrations (a user removed meanwhile) is
/// written again one registration at a time, so only that one fails; an
/// unreachable database fails them all.
pub(crate) struct Registrations {
    tx: tokio::sync::mpsc::Sender<Waiting>,
    task: tokio::task::JoinHandle<()>,
}

type Waiting = (Vec<BindingChange>, tokio::sync::oneshot::Sender<Result<()>>);

/// Group statements in flight at once.
const GROUPS_IN_FLIGHT: usize = 4;
/// Under steady load (the previous group went out less than ten of these
/// ago), how long a group's first registration waits for more before the
/// group goes: one statement and one commit — one WAL flush, and with a
/// synchronous standby one round trip to it — then cover the
/// registrations arriving meanwhile. A registration after a quiet spell
/// goes at once. The SQLite store's writer does the same with 2 ms; a
/// commit here costs more (bench/README.md, "On PostgreSQL").
pub(crate) const LINGER: std::time::Duration = std::time::Duration::from_millis(10);
/// Registrations in one group at most.
const GROUP_MAX: usize = 256;
/// Registrations waiting for a group at most (callers wait beyond).
const QUEUE: usize = 4096;

impl Drop for Registrations {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Registrations {
    /// Starts the grouping task over `store` (a handle without a
    /// `Registrations` of its own).
    pub(crate) fn start(store: Postgres) -> Registrations {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Waiting>(QUEUE);
        let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(GROUPS_IN_FLIGHT));
        let task = tokio::spawn(async move {
            let mut last_sent: Option<tokio::time::Instant> = None;
            loop {
                // A slot first: while every slot is busy, registrations
                // gather in the queue and go out as one group.
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let Some(first) = rx.recv().await else {
                    return;
                };
                let mut group = vec![first];
                while group.len() < GROUP_MAX {
                    match rx.try_recv() {
                        Ok(w) => group.push(w),
                        Err(_) => break,
                    }
                }
                let steady = last_sent.is_some_and(|t| t.elapsed() < LINGER * 10);
                if steady {
                    let until = tokio::time::Instant::now() + LINGER;
                    while group.len() < GROUP_MAX {
                        match tokio::time::timeout_at(until, rx.recv()).await {
                            Ok(Some(w)) => group.push(w),
                            Ok(None) | Err(_) => break,
                        }
                    }
                }
                last_sent = Some(tokio::time::Instant::now());
                let store = store.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    write_group(&store, group).await;
                });
            }
        });
        Registrations { tx, task }
    }

    async fn apply(&self, changes: Vec<BindingChange>) -> Result<()> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.tx
            .send((changes, reply))
            .await
            .map_err(|_| store::StoreError::Closed)?;
        answer.await.map_err(|_| store::StoreError::Closed)?
    }
}

async fn write_group(store: &Postgres, group: Vec<Waiting>) {
    if group.len() == 1 {
        for (changes, reply) in group {
            let _ = reply.send(apply_one(store, vec![changes]).await);
        }
        return;
    }
    let (sets, replies): (Vec<_>, Vec<_>) = group.into_iter().unzip();
    match apply_one(store, sets.clone()).await {
        Ok(()) => {
            for r in replies {
                let _ = r.send(Ok(()));
            }
        }
        Err(store::StoreError::Unavailable(m)) => {
            for r in replies {
                let _ = r.send(Err(store::StoreError::Unavailable(m.clone())));
            }
        }
        // One of them is at fault: each on its own.
        Err(_) => {
            for (changes, r) in sets.into_iter().zip(replies) {
                let _ = r.send(apply_one(store, vec![changes]).await);
            }
        }
    }
}

/// A registration's changes in one statement: the removals and the upserts
/// as data-modifying CTEs (never the same row: [`Batch::of`]), the fence as
/// the main query.
static APPLY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH gone AS (
            DELETE FROM bindings b USING unnest($13::text[], $14::text[]) AS g(aor, binding_key)
            WHERE b.aor = g.aor AND b.binding_key = g.binding_key
         ), put AS (
            INSERT INTO bindings ({COLUMNS})
            SELECT * FROM unnest($3::text[], $4::text[], $5::text[], $6::int[], $7::bigint[],
                                 $8::text[], $9::bigint[], $10::text[], $11::text[], $12::text[], $15::text[])
            ON CONFLICT (aor, binding_key) DO UPDATE SET contact = excluded.contact, q = excluded.q,
              expires_at = excluded.expires_at, call_id = excluded.call_id, cseq = excluded.cseq,
              path = excluded.path, source = excluded.source, user_agent = excluded.user_agent,
              node = excluded.node
         )
         {}",
        super::FENCE_ANY
    )
});

impl Bindings for Postgres {
    async fn upsert_binding(&self, b: Binding) -> Result<()> {
        self.write(|tx| {
            let b = b.clone();
            Box::pin(async move { upsert(tx, &b).await })
        })
        .await
    }

    async fn remove_binding(&self, aor: &str, key: &str) -> Result<bool> {
        let (aor, key) = (aor.to_owned(), key.to_owned());
        self.write(|tx| {
            let (aor, key) = (aor.clone(), key.clone());
            Box::pin(async move { remove(tx, &aor, &key).await })
        })
        .await
    }

    async fn remove_binding_from(&self, aor: &str, key: &str, source: &str) -> Result<bool> {
        let (aor, key, source) = (aor.to_owned(), key.to_owned(), source.to_owned());
        self.write(|tx| {
            let (aor, key, source) = (aor.clone(), key.clone(), source.clone());
            Box::pin(async move {
                let st = tx
                    .prepare_cached(
                        "DELETE FROM bindings WHERE aor = $1 AND binding_key = $2 AND source = $3",
                    )
                    .await?;
                Ok(tx.execute(&st, &[&aor, &key, &source]).await? == 1)
            })
        })
        .await
    }

    async fn apply_bindings(&self, changes: Vec<BindingChange>) -> Result<()> {
        if self.audit.is_none() {
            // Registrations waiting at the same moment go out together.
            if let Some(g) = &self.registrations {
                return g.apply(changes).await;
            }
            return apply_one(self, vec![changes]).await;
        }
        self.write(|tx| {
            let changes = changes.clone();
            Box::pin(async move {
                for change in &changes {
                    match change {
                        BindingChange::Upsert(b) => upsert(tx, b).await?,
                        BindingChange::Remove { aor, key } => {
                            remove(tx, aor, key).await?;
                        }
                    }
                }
                Ok(())
            })
        })
        .await
    }

    async fn remove_all_bindings(&self, aor: &str) -> Result<usize> {
        let aor = aor.to_owned();
        self.write(|tx| {
            let aor = aor.clone();
            Box::pin(async move {
                let n = tx
                    .execute("DELETE FROM bindings WHERE aor = $1", &[&aor])
                    .await?;
                Ok(count(n))
            })
        })
        .await
    }

    async fn live_bindings(&self, now: i64) -> Result<Vec<Binding>> {
        self.read(|c| {
            Box::pin(async move {
                let rows = c
                    .query(
                        &format!(
                            "SELECT {COLUMNS} FROM bindings WHERE expires_at > $1 ORDER BY aor COLLATE \"C\", binding_key COLLATE \"C\""
                        ),
                        &[&now],
                    )
                    .await?;
                Ok(rows.iter().map(row).collect::<Pg<_>>()?)
            })
        })
        .await
    }

    async fn bindings_of(&self, aor: &str, now: i64) -> Result<Vec<Binding>> {
        let aor = aor.to_owned();
        self.read(|c| {
            let aor = aor.clone();
            Box::pin(async move {
                let st = c
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM bindings WHERE aor = $1 AND expires_at > $2"
                    ))
                    .await?;
                let rows = c.query(&st, &[&aor, &now]).await?;
                Ok(rows.iter().map(row).collect::<Pg<_>>()?)
            })
        })
        .await
    }

    async fn bindings_of_each(
        &self,
        aors: Vec<String>,
        now: i64,
    ) -> Result<Vec<(String, Vec<Binding>)>> {
        let found = self
            .read(|c| {
                let aors = aors.clone();
                Box::pin(async move {
                    // (Planned well once the table has statistics: a node
                    // analyses the bindings when they grow fast, as after
                    // a new deployment's first registrations — see
                    // `nodes::analyse_grown`.)
                    let st = c
                        .prepare_cached(&format!(
                            "SELECT {COLUMNS} FROM bindings WHERE aor = ANY($1) AND expires_at > $2"
                        ))
                        .await?;
                    let rows = c.query(&st, &[&aors, &now]).await?;
                    Ok(rows.iter().map(row).collect::<Pg<Vec<Binding>>>()?)
                })
            })
            .await?;
        Ok(crate::each_key(aors, found, |b| &b.aor))
    }

    async fn remove_expired_bindings(
        &self,
        keys: Vec<(String, String)>,
        now: i64,
    ) -> Result<usize> {
        self.write(|tx| {
            let keys = keys.clone();
            Box::pin(async move {
                let st = tx
                    .prepare_cached(
                        "DELETE FROM bindings WHERE aor = $1 AND binding_key = $2 AND expires_at <= $3",
                    )
                    .await?;
                let mut n = 0;
                for (aor, key) in &keys {
                    n += count(tx.execute(&st, &[aor, key, &now]).await?);
                }
                Ok(n)
            })
        })
        .await
    }

    async fn purge_expired_bindings(&self, now: i64) -> Result<usize> {
        self.write(|tx| {
            Box::pin(async move {
                let n = tx
                    .execute("DELETE FROM bindings WHERE expires_at <= $1", &[&now])
                    .await?;
                Ok(count(n))
            })
        })
        .await
    }
}
