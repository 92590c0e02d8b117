//! The IM archive on SQLite. Deleted records are overwritten in the file
//! (`secure_delete`, on for the writer), and after a purge the WAL is
//! checkpointed and truncated, so their bytes are gone from both.

use rusqlite::params;

use super::{db, Sqlite};
use store::archive::MAX_FIND;
use store::{Archive, ArchiveFilter, ArchiveHold, ArchiveRow, Result};

const COLUMNS: &str = "id, owner, at_ms, sender, recipient, federated, result, key_id, sealed";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ArchiveRow> {
    Ok(ArchiveRow {
        id: r.get(0)?,
        owner: r.get(1)?,
        at_ms: r.get(2)?,
        sender: r.get(3)?,
        recipient: r.get(4)?,
        federated: r.get::<_, i64>(5)? != 0,
        result: r.get(6)?,
        key_id: r.get(7)?,
        sealed: r.get(8)?,
    })
}

impl Archive for Sqlite {
    async fn archive_put(&self, rows: Vec<ArchiveRow>) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        self.write(move |c| {
            let mut st = c
                .prepare_cached(
                    "INSERT INTO archive (owner, at_ms, sender, recipient, federated, result, key_id, sealed)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(db)?;
            for r in &rows {
                st.execute(params![
                    r.owner,
                    r.at_ms,
                    r.sender,
                    r.recipient,
                    i64::from(r.federated),
                    r.result,
                    r.key_id,
                    r.sealed
                ])
                .map_err(db)?;
            }
            Ok(())
        })
        .await
    }

    async fn archive_find(&self, f: ArchiveFilter) -> Result<Vec<ArchiveRow>> {
        self.call(move |c| {
            let sql = format!(
                "SELECT {COLUMNS} FROM archive
                 WHERE id > ?1
                   AND (?2 IS NULL OR owner = ?2)
                   AND (?3 IS NULL OR sender = ?3 OR recipient = ?3)
                   AND (?4 IS NULL OR at_ms >= ?4)
                   AND (?5 IS NULL OR at_ms < ?5)
                   AND (?6 IS NULL OR key_id = ?6)
                 ORDER BY id LIMIT ?7"
            );
            let mut st = c.prepare_cached(&sql).map_err(db)?;
            let limit = i64::try_from(f.limit.clamp(1, MAX_FIND)).unwrap_or(1);
            let rows = st
                .query_map(
                    params![
                        f.after_id,
                        f.owner,
                        f.counterpart,
                        f.since_ms,
                        f.until_ms,
                        f.key_id,
                        limit
                    ],
                    row,
                )
                .map_err(db)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db)
        })
        .await
    }

    async fn archive_owners(&self) -> Result<Vec<String>> {
        self.call(|c| {
            let mut st = c
                .prepare_cached("SELECT DISTINCT owner FROM archive ORDER BY owner")
                .map_err(db)?;
            let rows = st.query_map([], |r| r.get(0)).map_err(db)?;
            rows.collect::<rusqlite::Result<Vec<String>>>().map_err(db)
        })
        .await
    }

    async fn archive_purge(&self, owners: Vec<String>, before_ms: i64) -> Result<usize> {
        if owners.is_empty() {
            return Ok(0);
        }
        let n = self
            .write(move |c| {
                let mut st = c
                    .prepare_cached(
                        "DELETE FROM archive WHERE owner = ?1 AND at_ms < ?2
                           AND NOT EXISTS (SELECT 1 FROM archive_holds h WHERE h.aor = ?1)",
                    )
                    .map_err(db)?;
                let mut n = 0;
                for o in &owners {
                    n += st.execute(params![o, before_ms]).map_err(db)?;
                }
                Ok(n)
            })
            .await?;
        if n > 0 {
            self.truncate_wal().await?;
        }
        Ok(n)
    }

    async fn archive_reseal(&self, rows: Vec<(i64, String, Vec<u8>)>) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        self.write(move |c| {
            let mut st = c
                .prepare_cached("UPDATE archive SET key_id = ?2, sealed = ?3 WHERE id = ?1")
                .map_err(db)?;
            for (id, key, sealed) in &rows {
                st.execute(params![id, key, sealed]).map_err(db)?;
            }
            Ok(())
        })
        .await?;
        // The bytes sealed under the old key are gone from the WAL too.
        self.truncate_wal().await
    }

    async fn archive_keys(&self) -> Result<Vec<String>> {
        self.call(|c| {
            let mut st = c
                .prepare_cached("SELECT DISTINCT key_id FROM archive ORDER BY key_id")
                .map_err(db)?;
            let rows = st.query_map([], |r| r.get(0)).map_err(db)?;
            rows.collect::<rusqlite::Result<Vec<String>>>().map_err(db)
        })
        .await
    }

    async fn archive_key_claim(&self, id: String, fingerprint: Vec<u8>) -> Result<Vec<u8>> {
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO archive_key_checks (id, fingerprint) VALUES (?1, ?2)
                 ON CONFLICT (id) DO NOTHING",
            )
            .and_then(|mut st| st.execute(params![id, fingerprint]))
            .map_err(db)?;
            c.prepare_cached("SELECT fingerprint FROM archive_key_checks WHERE id = ?1")
                .and_then(|mut st| st.query_row(params![id], |r| r.get(0)))
                .map_err(db)
        })
        .await
    }

    async fn archive_key_forget(&self, ids: Vec<String>) -> Result<()> {
        self.write(move |c| {
            let mut st = c
                .prepare_cached("DELETE FROM archive_key_checks WHERE id = ?1")
                .map_err(db)?;
            for id in &ids {
                st.execute(params![id]).map_err(db)?;
            }
            Ok(())
        })
        .await
    }

    async fn archive_holds(&self) -> Result<Vec<ArchiveHold>> {
        self.call(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT aor, since, by_actor, reason FROM archive_holds ORDER BY aor",
                )
                .map_err(db)?;
            let rows = st
                .query_map([], |r| {
                    Ok(ArchiveHold {
                        aor: r.get(0)?,
                        since: r.get(1)?,
                        by: r.get(2)?,
                        reason: r.get(3)?,
                    })
                })
                .map_err(db)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db)
        })
        .await
    }

    async fn archive_hold(&self, hold: ArchiveHold) -> Result<bool> {
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO archive_holds (aor, since, by_actor, reason) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (aor) DO NOTHING",
            )
            .and_then(|mut st| st.execute(params![hold.aor, hold.since, hold.by, hold.reason]))
            .map(|n| n > 0)
            .map_err(db)
        })
        .await
    }

    async fn archive_release(&self, aor: String) -> Result<bool> {
        self.write(move |c| {
            c.prepare_cached("DELETE FROM archive_holds WHERE aor = ?1")
                .and_then(|mut st| st.execute(params![aor]))
                .map(|n| n > 0)
                .map_err(db)
        })
        .await
    }
}
