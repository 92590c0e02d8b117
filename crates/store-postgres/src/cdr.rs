//! Call detail records on PostgreSQL.

use super::{count, Postgres};
use store::cdr::MAX_CDR_FIND;
use store::{CdrFilter, CdrRow, Cdrs, Result};

impl Cdrs for Postgres {
    async fn cdr_put(&self, rows: Vec<CdrRow>) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let c = Columns::of(&rows);
        self.write(|tx| {
            let c = c.clone();
            Box::pin(async move {
                let st = tx
                    .prepare_cached(
                        "INSERT INTO cdrs (call_id, caller, callee, caller_device, callee_device,
                            federated, started_ms, answered_ms, ended_ms, status, ended_by,
                            kind, partner, media_relayed, messages, detail, keep_until_ms)
                         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
                            $5::text[], $6::boolean[], $7::bigint[], $8::bigint[], $9::bigint[],
                            $10::integer[], $11::text[], $12::text[], $13::text[], $14::boolean[],
                            $15::integer[], $16::text[], $17::bigint[])",
                    )
                    .await?;
                tx.execute(
                    &st,
                    &[
                        &c.call_id,
                        &c.caller,
                        &c.callee,
                        &c.caller_device,
                        &c.callee_device,
                        &c.federated,
                        &c.started,
                        &c.answered,
                        &c.ended,
                        &c.status,
                        &c.ended_by,
                        &c.kind,
                        &c.partner,
                        &c.media_relayed,
                        &c.messages,
                        &c.detail,
                        &c.keep_until,
                    ],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn cdr_find(&self, f: CdrFilter) -> Result<Vec<CdrRow>> {
        let limit = i64::try_from(f.limit.clamp(1, MAX_CDR_FIND)).unwrap_or(1);
        self.read(|c| {
            Box::pin(async move {
                let st = c
                    .prepare_cached(
                        "SELECT id, call_id, caller, callee, caller_device, callee_device, federated,
                            started_ms, answered_ms, ended_ms, status, ended_by,
                            kind, partner, media_relayed, messages, detail, keep_until_ms
                         FROM cdrs
                         WHERE id > $1
                           AND ($2::text IS NULL OR caller = $2 OR callee = $2)
                           AND ($3::bigint IS NULL OR started_ms >= $3)
                           AND ($4::bigint IS NULL OR started_ms < $4)
                           AND ($6::text IS NULL OR kind = $6)
                         ORDER BY id LIMIT $5",
                    )
                    .await?;
                let rows = c
                    .query(
                        &st,
                        &[&f.after_id, &f.user, &f.since_ms, &f.until_ms, &limit, &f.kind],
                    )
                    .await?;
                let mut out = Vec::with_capacity(rows.len());
                for r in &rows {
                    out.push(CdrRow {
                        id: r.try_get(0)?,
                        call_id: r.try_get(1)?,
                        caller: r.try_get(2)?,
                        callee: r.try_get(3)?,
                        caller_device: r.try_get(4)?,
                        callee_device: r.try_get(5)?,
                        federated: r.try_get(6)?,
                        started_ms: r.try_get(7)?,
                        answered_ms: r.try_get(8)?,
                        ended_ms: r.try_get(9)?,
                        status: u16::try_from(r.try_get::<_, i32>(10)?).unwrap_or(0),
                        ended_by: r.try_get(11)?,
                        kind: r.try_get(12)?,
                        partner: r.try_get(13)?,
                        media_relayed: r.try_get(14)?,
                        messages: u32::try_from(r.try_get::<_, i32>(15)?).unwrap_or(0),
                        detail: r.try_get(16)?,
                        keep_until_ms: r.try_get(17)?,
                    });
                }
                Ok(out)
            })
        })
        .await
    }

    async fn cdr_purge(&self, now_ms: i64) -> Result<usize> {
        self.write(|tx| {
            Box::pin(async move {
                let st = tx
                    .prepare_cached(
                        "DELETE FROM cdrs WHERE keep_until_ms > 0 AND keep_until_ms < $1",
                    )
                    .await?;
                Ok(count(tx.execute(&st, &[&now_ms]).await?))
            })
        })
        .await
    }

    async fn cdr_stamp_unstamped(&self, keep_ms: i64) -> Result<usize> {
        self.write(|tx| {
            Box::pin(async move {
                let st = tx
                    .prepare_cached(
                        "UPDATE cdrs SET keep_until_ms = ended_ms + $1 WHERE keep_until_ms = 0",
                    )
                    .await?;
                Ok(count(tx.execute(&st, &[&keep_ms]).await?))
            })
        })
        .await
    }
}

/// Records as columns, for one statement over unnest()ed arrays.
#[derive(Clone)]
struct Columns {
    call_id: Vec<String>,
    caller: Vec<String>,
    callee: Vec<String>,
    caller_device: Vec<String>,
    callee_device: Vec<String>,
    federated: Vec<bool>,
    started: Vec<i64>,
    answered: Vec<i64>,
    ended: Vec<i64>,
    status: Vec<i32>,
    ended_by: Vec<String>,
    kind: Vec<String>,
    partner: Vec<String>,
    media_relayed: Vec<bool>,
    messages: Vec<i32>,
    detail: Vec<String>,
    keep_until: Vec<i64>,
}

impl Columns {
    fn of(rows: &[CdrRow]) -> Columns {
        Columns {
            call_id: rows.iter().map(|r| r.call_id.clone()).collect(),
            caller: rows.iter().map(|r| r.caller.clone()).collect(),
            callee: rows.iter().map(|r| r.callee.clone()).collect(),
            caller_device: rows.iter().map(|r| r.caller_device.clone()).collect(),
            callee_device: rows.iter().map(|r| r.callee_device.clone()).collect(),
            federated: rows.iter().map(|r| r.federated).collect(),
            started: rows.iter().map(|r| r.started_ms).collect(),
            answered: rows.iter().map(|r| r.answered_ms).collect(),
            ended: rows.iter().map(|r| r.ended_ms).collect(),
            status: rows.iter().map(|r| i32::from(r.status)).collect(),
            ended_by: rows.iter().map(|r| r.ended_by.clone()).collect(),
            kind: rows.iter().map(|r| r.kind.clone()).collect(),
            partner: rows.iter().map(|r| r.partner.clone()).collect(),
            media_relayed: rows.iter().map(|r| r.media_relayed).collect(),
            messages: rows
                .iter()
                .map(|r| i32::try_from(r.messages).unwrap_or(i32::MAX))
                .collect(),
            detail: rows.iter().map(|r| r.detail.clone()).collect(),
            keep_until: rows.iter().map(|r| r.keep_until_ms).collect(),
        }
    }
}
