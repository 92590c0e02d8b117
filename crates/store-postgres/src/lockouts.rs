//! The sign-in lockout filter's state on PostgreSQL.

use super::{count, Postgres};
use store::{LockoutKey, LockoutKind, LockoutRow, Lockouts, Result, StoreError};

impl Lockouts for Postgres {
    async fn save_lockouts(&self, put: Vec<LockoutRow>, remove: Vec<LockoutKey>) -> Result<()> {
        if put.is_empty() && remove.is_empty() {
            return Ok(());
        }
        let cols = Columns::of(&put, &remove);
        self.write(|tx| {
            let c = cols.clone();
            Box::pin(async move {
                if !c.kind.is_empty() {
                    let st = tx
                        .prepare_cached(
                            "INSERT INTO lockouts (kind, account, source, window_start, failures,
                                lockouts, locked_until, last_seen)
                             SELECT * FROM unnest($1::text[], $2::text[], $3::text[],
                                $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[])
                             ON CONFLICT (kind, account, source) DO UPDATE SET
                                window_start = EXCLUDED.window_start,
                                failures = EXCLUDED.failures,
                                lockouts = EXCLUDED.lockouts,
                                locked_until = EXCLUDED.locked_until,
                                last_seen = EXCLUDED.last_seen
                             WHERE (lockouts.window_start, lockouts.lockouts, lockouts.failures,
                                    lockouts.locked_until, lockouts.last_seen)
                                <= (EXCLUDED.window_start, EXCLUDED.lockouts, EXCLUDED.failures,
                                    EXCLUDED.locked_until, EXCLUDED.last_seen)",
                        )
                        .await?;
                    tx.execute(
                        &st,
                        &[
                            &c.kind,
                            &c.account,
                            &c.source,
                            &c.window,
                            &c.failures,
                            &c.lockouts,
                            &c.until,
                            &c.seen,
                        ],
                    )
                    .await?;
                }
                if !c.rm_kind.is_empty() {
                    let st = tx
                        .prepare_cached(
                            "DELETE FROM lockouts l USING unnest($1::text[], $2::text[], $3::text[])
                                AS k(kind, account, source)
                             WHERE l.kind = k.kind AND l.account = k.account AND l.source = k.source",
                        )
                        .await?;
                    tx.execute(&st, &[&c.rm_kind, &c.rm_account, &c.rm_source])
                        .await?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn lockouts(&self) -> Result<Vec<LockoutRow>> {
        self.lockout_rows(None).await
    }

    async fn lockouts_of(&self, account: &str) -> Result<Vec<LockoutRow>> {
        self.lockout_rows(Some(vec![account.to_owned()])).await
    }

    async fn lockouts_of_each(
        &self,
        accounts: Vec<String>,
    ) -> Result<Vec<(String, Vec<LockoutRow>)>> {
        let found = self.lockout_rows(Some(accounts.clone())).await?;
        Ok(crate::each_key(accounts, found, |r| &r.key.account))
    }

    async fn purge_lockouts(
        &self,
        now: i64,
        counters_before: i64,
        familiar_before: i64,
    ) -> Result<usize> {
        self.write(|tx| {
            Box::pin(async move {
                let st = tx
                    .prepare_cached(
                        "DELETE FROM lockouts WHERE
                            (kind <> 'familiar' AND locked_until <= $1 AND last_seen < $2)
                            OR (kind = 'familiar' AND last_seen < $3)",
                    )
                    .await?;
                Ok(count(
                    tx.execute(&st, &[&now, &counters_before, &familiar_before])
                        .await?,
                ))
            })
        })
        .await
    }
}

/// A save's rows as columns, for statements over unnest()ed arrays (one
/// round trip whatever the number of rows).
#[derive(Clone, Default)]
struct Columns {
    kind: Vec<&'static str>,
    account: Vec<String>,
    source: Vec<String>,
    window: Vec<i64>,
    failures: Vec<i64>,
    lockouts: Vec<i64>,
    until: Vec<i64>,
    seen: Vec<i64>,
    rm_kind: Vec<&'static str>,
    rm_account: Vec<String>,
    rm_source: Vec<String>,
}

impl Columns {
    fn of(put: &[LockoutRow], remove: &[LockoutKey]) -> Columns {
        let mut c = Columns::default();
        for r in put {
            c.kind.push(r.key.kind.as_str());
            c.account.push(r.key.account.clone());
            c.source.push(r.key.source.clone());
            c.window.push(r.window_start);
            c.failures.push(r.failures);
            c.lockouts.push(r.lockouts);
            c.until.push(r.locked_until);
            c.seen.push(r.last_seen);
        }
        for k in remove {
            c.rm_kind.push(k.kind.as_str());
            c.rm_account.push(k.account.clone());
            c.rm_source.push(k.source.clone());
        }
        c
    }
}

impl Postgres {
    /// Every row, or those of some accounts.
    async fn lockout_rows(&self, accounts: Option<Vec<String>>) -> Result<Vec<LockoutRow>> {
        let rows = self
            .read(|c| {
                let accounts = accounts.clone();
                Box::pin(async move {
                    const SELECT: &str = "SELECT kind, account, source, window_start, failures,
                        lockouts, locked_until, last_seen FROM lockouts";
                    let rows = match &accounts {
                        None => c.query(SELECT, &[]).await?,
                        // By the account index (schema 15).
                        Some(accounts) => {
                            let st = c
                                .prepare_cached(&format!("{SELECT} WHERE account = ANY($1)"))
                                .await?;
                            c.query(&st, &[accounts]).await?
                        }
                    };
                    let mut out = Vec::new();
                    for r in rows {
                        out.push((
                            r.try_get::<_, String>(0)?,
                            LockoutRow {
                                key: LockoutKey {
                                    kind: LockoutKind::Pair,
                                    account: r.try_get(1)?,
                                    source: r.try_get(2)?,
                                },
                                window_start: r.try_get(3)?,
                                failures: r.try_get(4)?,
                                lockouts: r.try_get(5)?,
                                locked_until: r.try_get(6)?,
                                last_seen: r.try_get(7)?,
                            },
                        ));
                    }
                    Ok(out)
                })
            })
            .await?;
        rows.into_iter()
            .map(|(kind, mut row)| {
                row.key.kind = LockoutKind::parse(&kind)
                    .ok_or_else(|| StoreError::Db(format!("lockouts: unknown kind {kind:?}")))?;
                Ok(row)
            })
            .collect()
    }
}
