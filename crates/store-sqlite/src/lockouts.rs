//! The sign-in lockout filter's state on SQLite.

use rusqlite::params;

use super::{db, Sqlite};
use store::{LockoutKey, LockoutKind, LockoutRow, Lockouts, Result, StoreError};

impl Lockouts for Sqlite {
    async fn save_lockouts(&self, put: Vec<LockoutRow>, remove: Vec<LockoutKey>) -> Result<()> {
        if put.is_empty() && remove.is_empty() {
            return Ok(());
        }
        self.write(move |c| {
            let mut up = c
                .prepare_cached(
                    "INSERT INTO lockouts (kind, account, source, window_start,
                        failures, lockouts, locked_until, last_seen)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (kind, account, source) DO UPDATE SET
                        window_start = excluded.window_start, failures = excluded.failures,
                        lockouts = excluded.lockouts, locked_until = excluded.locked_until,
                        last_seen = excluded.last_seen
                     WHERE (lockouts.window_start, lockouts.lockouts, lockouts.failures,
                            lockouts.locked_until, lockouts.last_seen)
                        <= (excluded.window_start, excluded.lockouts, excluded.failures,
                            excluded.locked_until, excluded.last_seen)",
                )
                .map_err(db)?;
            for r in &put {
                up.execute(params![
                    r.key.kind.as_str(),
                    r.key.account,
                    r.key.source,
                    r.window_start,
                    r.failures,
                    r.lockouts,
                    r.locked_until,
                    r.last_seen
                ])
                .map_err(db)?;
            }
            let mut del = c
                .prepare_cached(
                    "DELETE FROM lockouts WHERE kind = ?1 AND account = ?2 AND source = ?3",
                )
                .map_err(db)?;
            for k in &remove {
                del.execute(params![k.kind.as_str(), k.account, k.source])
                    .map_err(db)?;
            }
            Ok(())
        })
        .await
    }

    async fn lockouts(&self) -> Result<Vec<LockoutRow>> {
        self.lockout_rows(None).await
    }

    async fn lockouts_of(&self, account: &str) -> Result<Vec<LockoutRow>> {
        self.lockout_rows(Some(account.to_owned())).await
    }

    async fn purge_lockouts(
        &self,
        now: i64,
        counters_before: i64,
        familiar_before: i64,
    ) -> Result<usize> {
        self.write(move |c| {
            c.prepare_cached(
                "DELETE FROM lockouts WHERE
                    (kind <> 'familiar' AND locked_until <= ?1 AND last_seen < ?2)
                    OR (kind = 'familiar' AND last_seen < ?3)",
            )
            .and_then(|mut st| st.execute(params![now, counters_before, familiar_before]))
            .map_err(db)
        })
        .await
    }
}

impl Sqlite {
    /// Every row, or one account's.
    async fn lockout_rows(&self, account: Option<String>) -> Result<Vec<LockoutRow>> {
        self.call(move |c| {
            let mut st = c
                .prepare_cached(
                    "SELECT kind, account, source, window_start, failures, lockouts,
                        locked_until, last_seen FROM lockouts WHERE ?1 IS NULL OR account = ?1",
                )
                .map_err(db)?;
            let rows = st
                .query_map([&account], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        LockoutRow {
                            key: LockoutKey {
                                kind: LockoutKind::Pair,
                                account: r.get(1)?,
                                source: r.get(2)?,
                            },
                            window_start: r.get(3)?,
                            failures: r.get(4)?,
                            lockouts: r.get(5)?,
                            locked_until: r.get(6)?,
                            last_seen: r.get(7)?,
                        },
                    ))
                })
                .map_err(db)?;
            let mut out = Vec::new();
            for row in rows {
                let (kind, mut row) = row.map_err(db)?;
                row.key.kind = LockoutKind::parse(&kind)
                    .ok_or_else(|| StoreError::Db(format!("lockouts: unknown kind {kind:?}")))?;
                out.push(row);
            }
            Ok(out)
        })
        .await
    }
}
