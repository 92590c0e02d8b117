//! The IM archive on PostgreSQL. A deleted record's bytes stay in the
//! table's dead tuples, the WAL and backups until they are recycled: the
//! record is unreadable from the moment its day's key is destroyed, which
//! is what holds here (see `archive` and docs/ARCHIVE.md).

use super::{count, Postgres};
use store::archive::MAX_FIND;
use store::{Archive, ArchiveFilter, ArchiveHold, ArchiveRow, Result};

fn row(r: &tokio_postgres::Row) -> std::result::Result<ArchiveRow, tokio_postgres::Error> {
    Ok(ArchiveRow {
        id: r.try_get(0)?,
        owner: r.try_get(1)?,
        at_ms: r.try_get(2)?,
        sender: r.try_get(3)?,
        recipient: r.try_get(4)?,
        federated: r.try_get(5)?,
        result: r.try_get(6)?,
        key_id: r.try_get(7)?,
        sealed: r.try_get(8)?,
    })
}

impl Archive for Postgres {
    async fn archive_put(&self, rows: Vec<ArchiveRow>) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let cols = PutColumns {
            owner: rows.iter().map(|r| r.owner.clone()).collect(),
            at: rows.iter().map(|r| r.at_ms).collect(),
            sender: rows.iter().map(|r| r.sender.clone()).collect(),
            rcpt: rows.iter().map(|r| r.recipient.clone()).collect(),
            fed: rows.iter().map(|r| r.federated).collect(),
            result: rows.iter().map(|r| r.result.clone()).collect(),
            key: rows.iter().map(|r| r.key_id.clone()).collect(),
        };
        let sealed: Vec<Vec<u8>> = rows.into_iter().map(|r| r.sealed).collect();
        self.write(|tx| {
            let c = cols.clone();
            let sealed = sealed.clone();
            Box::pin(async move {
                let st = tx
                    .prepare_cached(
                        "INSERT INTO archive (owner, at_ms, sender, recipient, federated, result, key_id, sealed)
                         SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[],
                            $5::boolean[], $6::text[], $7::text[], $8::bytea[])",
                    )
                    .await?;
                tx.execute(
                    &st,
                    &[&c.owner, &c.at, &c.sender, &c.rcpt, &c.fed, &c.result, &c.key, &sealed],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn archive_find(&self, f: ArchiveFilter) -> Result<Vec<ArchiveRow>> {
        let limit = i64::try_from(f.limit.clamp(1, MAX_FIND)).unwrap_or(1);
        self.read(|c| {
            Box::pin(async move {
                let st = c
                    .prepare_cached(
                        "SELECT id, owner, at_ms, sender, recipient, federated, result, key_id, sealed
                         FROM archive
                         WHERE id > $1
                           AND ($2::text IS NULL OR owner = $2)
                           AND ($3::text IS NULL OR sender = $3 OR recipient = $3)
                           AND ($4::bigint IS NULL OR at_ms >= $4)
                           AND ($5::bigint IS NULL OR at_ms < $5)
                           AND ($6::text IS NULL OR key_id = $6)
                         ORDER BY id LIMIT $7",
                    )
                    .await?;
                let rows = c
                    .query(
                        &st,
                        &[
                            &f.after_id,
                            &f.owner,
                            &f.counterpart,
                            &f.since_ms,
                            &f.until_ms,
                            &f.key_id,
                            &limit,
                        ],
                    )
                    .await?;
                Ok(rows.iter().map(row).collect::<std::result::Result<Vec<_>, _>>()?)
            })
        })
        .await
    }

    async fn archive_owners(&self) -> Result<Vec<String>> {
        self.read(|c| {
            Box::pin(async move {
                let st = c
                    .prepare_cached("SELECT DISTINCT owner FROM archive ORDER BY owner")
                    .await?;
                let rows = c.query(&st, &[]).await?;
                Ok(rows
                    .iter()
                    .map(|r| r.try_get(0))
                    .collect::<std::result::Result<Vec<String>, _>>()?)
            })
        })
        .await
    }

    async fn archive_purge(&self, owners: Vec<String>, before_ms: i64) -> Result<usize> {
        if owners.is_empty() {
            return Ok(0);
        }
        self.write(|tx| {
            let owners = owners.clone();
            Box::pin(async move {
                let st = tx
                    .prepare_cached(
                        "DELETE FROM archive a WHERE a.owner = ANY($1) AND a.at_ms < $2
                           AND NOT EXISTS (SELECT 1 FROM archive_holds h WHERE h.aor = a.owner)",
                    )
                    .await?;
                Ok(count(tx.execute(&st, &[&owners, &before_ms]).await?))
            })
        })
        .await
    }

    async fn archive_reseal(&self, rows: Vec<(i64, String, Vec<u8>)>) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
        let keys: Vec<String> = rows.iter().map(|r| r.1.clone()).collect();
        let sealed: Vec<Vec<u8>> = rows.into_iter().map(|r| r.2).collect();
        self.write(|tx| {
            let (ids, keys, sealed) = (ids.clone(), keys.clone(), sealed.clone());
            Box::pin(async move {
                let st = tx
                    .prepare_cached(
                        "UPDATE archive a SET key_id = n.key_id, sealed = n.sealed
                         FROM unnest($1::bigint[], $2::text[], $3::bytea[]) AS n(id, key_id, sealed)
                         WHERE a.id = n.id",
                    )
                    .await?;
                tx.execute(&st, &[&ids, &keys, &sealed]).await?;
                Ok(())
            })
        })
        .await
    }

    async fn archive_keys(&self) -> Result<Vec<String>> {
        self.read(|c| {
            Box::pin(async move {
                let st = c
                    .prepare_cached("SELECT DISTINCT key_id FROM archive ORDER BY key_id")
                    .await?;
                let rows = c.query(&st, &[]).await?;
                Ok(rows
                    .iter()
                    .map(|r| r.try_get(0))
                    .collect::<std::result::Result<Vec<String>, _>>()?)
            })
        })
        .await
    }

    async fn archive_key_claim(&self, id: String, fingerprint: Vec<u8>) -> Result<Vec<u8>> {
        self.write(|tx| {
            let (id, fingerprint) = (id.clone(), fingerprint.clone());
            Box::pin(async move {
                let st = tx
                    .prepare_cached(
                        "INSERT INTO archive_key_checks (id, fingerprint) VALUES ($1, $2)
                         ON CONFLICT (id) DO NOTHING",
                    )
                    .await?;
                tx.execute(&st, &[&id, &fingerprint]).await?;
                let st = tx
                    .prepare_cached("SELECT fingerprint FROM archive_key_checks WHERE id = $1")
                    .await?;
                Ok(tx.query_one(&st, &[&id]).await?.try_get(0)?)
            })
        })
        .await
    }

    async fn archive_key_forget(&self, ids: Vec<String>) -> Result<()> {
        self.write(|tx| {
            let ids = ids.clone();
            Box::pin(async move {
                let st = tx
                    .prepare_cached("DELETE FROM archive_key_checks WHERE id = ANY($1)")
                    .await?;
                tx.execute(&st, &[&ids]).await?;
                Ok(())
            })
        })
        .await
    }

    async fn archive_holds(&self) -> Result<Vec<ArchiveHold>> {
        self.read(|c| {
            Box::pin(async move {
                let st = c
                    .prepare_cached(
                        "SELECT aor, since, by_actor, reason FROM archive_holds ORDER BY aor",
                    )
                    .await?;
                let rows = c.query(&st, &[]).await?;
                Ok(rows
                    .iter()
                    .map(|r| {
                        Ok(ArchiveHold {
                            aor: r.try_get(0)?,
                            since: r.try_get(1)?,
                            by: r.try_get(2)?,
                            reason: r.try_get(3)?,
                        })
                    })
                    .collect::<std::result::Result<Vec<_>, tokio_postgres::Error>>()?)
            })
        })
        .await
    }

    async fn archive_hold(&self, hold: ArchiveHold) -> Result<bool> {
        self.write(|tx| {
            let h = hold.clone();
            Box::pin(async move {
                let st = tx
                    .prepare_cached(
                        "INSERT INTO archive_holds (aor, since, by_actor, reason) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (aor) DO NOTHING",
                    )
                    .await?;
                Ok(tx.execute(&st, &[&h.aor, &h.since, &h.by, &h.reason]).await? > 0)
            })
        })
        .await
    }

    async fn archive_release(&self, aor: String) -> Result<bool> {
        self.write(|tx| {
            let aor = aor.clone();
            Box::pin(async move {
                let st = tx
                    .prepare_cached("DELETE FROM archive_holds WHERE aor = $1")
                    .await?;
                Ok(tx.execute(&st, &[&aor]).await? > 0)
            })
        })
        .await
    }
}

/// Records to insert as columns, for one statement over unnest()ed arrays.
#[derive(Clone)]
struct PutColumns {
    owner: Vec<String>,
    at: Vec<i64>,
    sender: Vec<String>,
    rcpt: Vec<String>,
    fed: Vec<bool>,
    result: Vec<String>,
    key: Vec<String>,
}
