//! Call detail records on SQLite.

use rusqlite::params;

use super::{db, Sqlite};
use store::cdr::MAX_CDR_FIND;
use store::{CdrFilter, CdrRow, Cdrs, Result};

impl Cdrs for Sqlite {
    async fn cdr_put(&self, rows: Vec<CdrRow>) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        self.write(move |c| {
            let mut st = c
                .prepare_cached(
                    "INSERT INTO cdrs (call_id, caller, callee, caller_device, callee_device,
                        federated, started_ms, answered_ms, ended_ms, status, ended_by,
                        kind, partner, media_relayed, messages, detail, keep_until_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                        ?17)",
                )
                .map_err(db)?;
            for r in &rows {
                st.execute(params![
                    r.call_id,
                    r.caller,
                    r.callee,
                    r.caller_device,
                    r.callee_device,
                    i64::from(r.federated),
                    r.started_ms,
                    r.answered_ms,
                    r.ended_ms,
                    i64::from(r.status),
                    r.ended_by,
                    r.kind,
                    r.partner,
                    i64::from(r.media_relayed),
                    i64::from(r.messages),
                    r.detail,
                    r.keep_until_ms
                ])
                .map_err(db)?;
            }
            Ok(())
        })
        .await
    }

    async fn cdr_find(&self, f: CdrFilter) -> Result<Vec<CdrRow>> {
        self.call(move |c| {
            let mut st = c
                .prepare_cached(
                    "SELECT id, call_id, caller, callee, caller_device, callee_device, federated,
                        started_ms, answered_ms, ended_ms, status, ended_by,
                        kind, partner, media_relayed, messages, detail, keep_until_ms
                     FROM cdrs
                     WHERE id > ?1
                       AND (?2 IS NULL OR caller = ?2 OR callee = ?2)
                       AND (?3 IS NULL OR started_ms >= ?3)
                       AND (?4 IS NULL OR started_ms < ?4)
                       AND (?6 IS NULL OR kind = ?6)
                     ORDER BY id LIMIT ?5",
                )
                .map_err(db)?;
            let limit = i64::try_from(f.limit.clamp(1, MAX_CDR_FIND)).unwrap_or(1);
            let rows = st
                .query_map(
                    params![f.after_id, f.user, f.since_ms, f.until_ms, limit, f.kind],
                    |r| {
                        Ok(CdrRow {
                            id: r.get(0)?,
                            call_id: r.get(1)?,
                            caller: r.get(2)?,
                            callee: r.get(3)?,
                            caller_device: r.get(4)?,
                            callee_device: r.get(5)?,
                            federated: r.get::<_, i64>(6)? != 0,
                            started_ms: r.get(7)?,
                            answered_ms: r.get(8)?,
                            ended_ms: r.get(9)?,
                            status: u16::try_from(r.get::<_, i64>(10)?).unwrap_or(0),
                            ended_by: r.get(11)?,
                            kind: r.get(12)?,
                            partner: r.get(13)?,
                            media_relayed: r.get::<_, i64>(14)? != 0,
                            messages: u32::try_from(r.get::<_, i64>(15)?).unwrap_or(0),
                            detail: r.get(16)?,
                            keep_until_ms: r.get(17)?,
                        })
                    },
                )
                .map_err(db)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db)
        })
        .await
    }

    async fn cdr_purge(&self, now_ms: i64) -> Result<usize> {
        self.write(move |c| {
            c.prepare_cached("DELETE FROM cdrs WHERE keep_until_ms > 0 AND keep_until_ms < ?1")
                .and_then(|mut st| st.execute(params![now_ms]))
                .map_err(db)
        })
        .await
    }

    async fn cdr_stamp_unstamped(&self, keep_ms: i64) -> Result<usize> {
        self.write(move |c| {
            c.prepare_cached(
                "UPDATE cdrs SET keep_until_ms = ended_ms + ?1 WHERE keep_until_ms = 0",
            )
            .and_then(|mut st| st.execute(params![keep_ms]))
            .map_err(db)
        })
        .await
    }
}
