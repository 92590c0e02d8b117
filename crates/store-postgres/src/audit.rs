//! The audit log on PostgreSQL: append-only (a trigger refuses UPDATE,
//! DELETE and TRUNCATE) and hash-chained as `store::audit_chain` defines
//! it. Appends take the head row's lock, so records from every node form
//! one chain.

use ring::hmac;
use tokio_postgres::Row;

use super::{Fut, Pg, Postgres, Tx, R};
use store::audit_chain::{head_mac, mac, Checker};
use store::{AuditEntry, AuditFilter, AuditLog, AuditRecord, AuditReport, Result, StoreError};

/// Most records one listing returns.
const MAX_LIST: usize = 1000;

const COLUMNS: &str = "seq, at, actor, source, action, object, outcome, detail, before, after, mac";

/// Appends `e` inside the caller's transaction; returns its sequence number.
pub(crate) async fn append(tx: &Tx<'_>, key: &hmac::Key, e: &AuditEntry) -> R<i64> {
    // One row is the chain's lock (it exists before the first record):
    // every append updates it, so a second append waits for the first to
    // commit, and (READ COMMITTED: each statement sees what committed
    // before it) then reads the chain as the first left it.
    let lock = tx
        .prepare_cached("UPDATE meta SET value = value + 1 WHERE name = 'audit_lock'")
        .await?;
    tx.execute(&lock, &[]).await?;
    let last = tx
        .prepare_cached("SELECT seq, mac FROM audit ORDER BY seq DESC LIMIT 1")
        .await?;
    let (seq, prev) = match tx.query_opt(&last, &[]).await? {
        Some(r) => (r.try_get::<_, i64>(0)? + 1, r.try_get::<_, Vec<u8>>(1)?),
        None => (1, Vec::new()),
    };
    let m = mac(key, &prev, seq, e);
    let insert = tx
        .prepare_cached(&format!(
            "INSERT INTO audit ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        ))
        .await?;
    tx.execute(
        &insert,
        &[
            &seq, &e.at, &e.actor, &e.source, &e.action, &e.object, &e.outcome, &e.detail,
            &e.before, &e.after, &m,
        ],
    )
    .await?;
    let put = tx
        .prepare_cached(
            "INSERT INTO audit_head (id, seq, mac) VALUES (1, $1, $2)
             ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, mac = excluded.mac",
        )
        .await?;
    tx.execute(&put, &[&seq, &head_mac(key, seq, &m)]).await?;
    Ok(seq)
}

fn entry(r: &Row) -> Pg<AuditEntry> {
    Ok(AuditEntry {
        at: r.try_get(1)?,
        actor: r.try_get(2)?,
        source: r.try_get(3)?,
        action: r.try_get(4)?,
        object: r.try_get(5)?,
        outcome: r.try_get(6)?,
        detail: r.try_get(7)?,
        before: r.try_get(8)?,
        after: r.try_get(9)?,
    })
}

pub(crate) fn no_key() -> StoreError {
    StoreError::Setup("the store was opened without an audit key".into())
}

/// Records read per round trip while verifying (memory stays bounded).
const VERIFY_PAGE: i64 = 1000;

impl AuditLog for Postgres {
    async fn append_audit(&self, e: AuditEntry) -> Result<i64> {
        let key = self.audit_key.clone().ok_or_else(no_key)?;
        self.write(move |tx| -> Fut<'_, i64> {
            let (key, e) = (key.clone(), e.clone());
            Box::pin(async move { append(tx, &key, &e).await })
        })
        .await
    }

    async fn audit_list(&self, f: AuditFilter) -> Result<Vec<AuditRecord>> {
        let limit = store_limit(f.limit);
        let object = f.object.as_ref().map(|o| {
            let escaped = o
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("{escaped}%")
        });
        self.read(move |c| -> Fut<'_, Vec<AuditRecord>> {
            Box::pin(async move {
                let st = c
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM audit
                         WHERE ($1::text IS NULL OR actor = $1)
                           AND ($2::text IS NULL OR object ILIKE $2 ESCAPE '\\')
                           AND ($3::bigint IS NULL OR at >= $3)
                           AND ($4::bigint IS NULL OR at <= $4)
                         ORDER BY seq DESC LIMIT $5"
                    ))
                    .await?;
                let rows = c
                    .query(&st, &[&f.actor, &object, &f.since, &f.until, &limit])
                    .await?;
                rows.iter()
                    .map(|r| {
                        Ok(AuditRecord {
                            seq: r.try_get(0)?,
                            entry: entry(r)?,
                        })
                    })
                    .collect()
            })
        })
        .await
    }

    async fn audit_verify(&self) -> Result<AuditReport> {
        let key = self.audit_key.clone().ok_or_else(no_key)?;
        // One snapshot: an append meanwhile is not taken for a cut tail.
        self.read_snapshot(move |c| -> Fut<'_, AuditReport> {
            Box::pin(async move {
                let mut check = Checker::new(&key);
                let page = c
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2"
                    ))
                    .await?;
                let mut after = 0i64;
                loop {
                    let rows = c.query(&page, &[&after, &VERIFY_PAGE]).await?;
                    for r in &rows {
                        let seq: i64 = r.try_get(0)?;
                        check.record(seq, &entry(r)?, r.try_get(10)?);
                        after = seq;
                    }
                    if (rows.len() as i64) < VERIFY_PAGE {
                        break;
                    }
                }
                let head = c
                    .query_opt("SELECT seq, mac FROM audit_head WHERE id = 1", &[])
                    .await?
                    .map(|r| Ok::<_, tokio_postgres::Error>((r.try_get(0)?, r.try_get(1)?)))
                    .transpose()?;
                Ok(check.finish(head))
            })
        })
        .await
    }
}

fn store_limit(limit: usize) -> i64 {
    super::big(limit.clamp(1, MAX_LIST))
}
