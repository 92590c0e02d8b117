//! The audit log on SQLite: append-only (triggers refuse UPDATE and
//! DELETE) and hash-chained as `store::audit_chain` defines it.

use ring::hmac;
use rusqlite::{params, Connection, OptionalExtension};

use super::db;
use store::audit_chain::{head_mac, mac, Checker};
use store::{AuditEntry, AuditFilter, AuditRecord, AuditReport, Result, StoreError};

/// Most records one listing returns.
const MAX_LIST: usize = 1000;
/// Appends `e` inside the caller's transaction; returns its sequence number.
pub(super) fn append(c: &Connection, key: &hmac::Key, e: &AuditEntry) -> Result<i64> {
    let last: Option<(i64, Vec<u8>)> = c
        .query_row(
            "SELECT seq, mac FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(db)?;
    let (seq, prev) = match last {
        Some((s, m)) => (s + 1, m),
        None => (1, Vec::new()),
    };
    let m = mac(key, &prev, seq, e);
    c.prepare_cached(
        "INSERT INTO audit (seq, at, actor, source, action, object, outcome, detail, before, after, mac)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )
    .map_err(db)?
    .execute(params![
        seq, e.at, e.actor, e.source, e.action, e.object, e.outcome, e.detail, e.before, e.after, m
    ])
    .map_err(db)?;
    c.prepare_cached("INSERT INTO audit_head (id, seq, mac) VALUES (1, ?1, ?2) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, mac = excluded.mac")
        .map_err(db)?
        .execute(params![seq, head_mac(key, seq, &m)])
        .map_err(db)?;
    Ok(seq)
}

fn entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditEntry> {
    Ok(AuditEntry {
        at: r.get(1)?,
        actor: r.get(2)?,
        source: r.get(3)?,
        action: r.get(4)?,
        object: r.get(5)?,
        outcome: r.get(6)?,
        detail: r.get(7)?,
        before: r.get(8)?,
        after: r.get(9)?,
    })
}

const COLUMNS: &str = "seq, at, actor, source, action, object, outcome, detail, before, after, mac";

/// Recomputes the chain, one record at a time (memory does not grow with the log).
pub(super) fn verify(c: &Connection, key: &hmac::Key) -> Result<AuditReport> {
    let mut check = Checker::new(key);
    let mut st = c
        .prepare(&format!("SELECT {COLUMNS} FROM audit ORDER BY seq"))
        .map_err(db)?;
    let mut rows = st.query([]).map_err(db)?;
    while let Some(r) = rows.next().map_err(db)? {
        let seq: i64 = r.get(0).map_err(db)?;
        let e = entry(r).map_err(db)?;
        check.record(seq, &e, r.get(10).map_err(db)?);
    }
    let head: Option<(i64, Vec<u8>)> = c
        .query_row("SELECT seq, mac FROM audit_head WHERE id = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()
        .map_err(db)?;
    Ok(check.finish(head))
}

pub(super) fn list(c: &Connection, f: &AuditFilter) -> Result<Vec<AuditRecord>> {
    let limit = f.limit.clamp(1, MAX_LIST) as i64;
    let object = f.object.as_ref().map(|o| {
        let escaped = o
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        format!("{escaped}%")
    });
    let mut st = c
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM audit
             WHERE (?1 IS NULL OR actor = ?1)
               AND (?2 IS NULL OR object LIKE ?2 ESCAPE '\\')
               AND (?3 IS NULL OR at >= ?3)
               AND (?4 IS NULL OR at <= ?4)
             ORDER BY seq DESC LIMIT ?5"
        ))
        .map_err(db)?;
    let rows = st
        .query_map(params![f.actor, object, f.since, f.until, limit], |r| {
            Ok(AuditRecord {
                seq: r.get(0)?,
                entry: entry(r)?,
            })
        })
        .map_err(db)?;
    rows.collect::<rusqlite::Result<_>>().map_err(db)
}

pub(super) fn no_key() -> StoreError {
    StoreError::Setup("the store was opened without an audit key".into())
}
