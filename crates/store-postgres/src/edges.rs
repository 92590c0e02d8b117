//! The pool's paired edges on PostgreSQL: every change is in the change
//! log (kind `edges`), so every node reloads them.

use super::{count, Postgres, Tx, E};
use store::{EdgePairings, EdgeRow, Result};

/// The columns of a paired edge, in [`row`]'s order.
const COLUMNS: &str =
    "name, internal, external_names, fingerprint, paired_at, expires_at, keys_check";

fn row(r: &tokio_postgres::Row) -> std::result::Result<EdgeRow, tokio_postgres::Error> {
    Ok(EdgeRow {
        name: r.try_get(0)?,
        internal: r.try_get(1)?,
        external_names: r
            .try_get::<_, &str>(2)?
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        fingerprint: r.try_get(3)?,
        paired_at: r.try_get(4)?,
        expires_at: r.try_get(5)?,
        keys_check: r.try_get(6)?,
    })
}

async fn insert(tx: &Tx<'_>, e: &EdgeRow) -> std::result::Result<usize, E> {
    let st = tx
        .prepare_cached(&format!(
            "INSERT INTO edges ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (fingerprint) DO NOTHING"
        ))
        .await?;
    let names = e.external_names.join(" ");
    Ok(count(
        tx.execute(
            &st,
            &[
                &e.name,
                &e.internal,
                &names,
                &e.fingerprint,
                &e.paired_at,
                &e.expires_at,
                &e.keys_check,
            ],
        )
        .await?,
    ))
}

/// Unpairs `name`'s edge, first forgetting unpaired certificates that
/// have expired; how many were unpaired.
async fn unpair(tx: &Tx<'_>, name: &str, now: i64) -> std::result::Result<usize, E> {
    let st = tx
        .prepare_cached("DELETE FROM edges WHERE unpaired_at IS NOT NULL AND expires_at < $1")
        .await?;
    tx.execute(&st, &[&now]).await?;
    let st = tx
        .prepare_cached("UPDATE edges SET unpaired_at = $2 WHERE name = $1 AND unpaired_at IS NULL")
        .await?;
    Ok(count(tx.execute(&st, &[&name, &now]).await?))
}

impl EdgePairings for Postgres {
    async fn put_edge(&self, e: EdgeRow, now: i64) -> Result<()> {
        self.write(|tx| {
            let e = e.clone();
            Box::pin(async move {
                unpair(tx, &e.name, now).await?;
                insert(tx, &e).await?;
                Ok(())
            })
        })
        .await
    }

    async fn edges(&self) -> Result<Vec<EdgeRow>> {
        self.read(|c| {
            Box::pin(async move {
                let st = c
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM edges WHERE unpaired_at IS NULL ORDER BY name"
                    ))
                    .await?;
                let rows = c.query(&st, &[]).await?;
                Ok(rows
                    .iter()
                    .map(row)
                    .collect::<std::result::Result<Vec<_>, _>>()?)
            })
        })
        .await
    }

    async fn remove_edge(&self, name: &str, now: i64) -> Result<bool> {
        self.write(|tx| {
            let name = name.to_owned();
            Box::pin(async move { Ok(unpair(tx, &name, now).await? > 0) })
        })
        .await
    }

    async fn import_edges(&self, rows: Vec<EdgeRow>) -> Result<usize> {
        self.write(|tx| {
            let rows = rows.clone();
            Box::pin(async move {
                let taken = tx
                    .prepare_cached("SELECT 1 FROM edges WHERE name = $1 AND unpaired_at IS NULL")
                    .await?;
                let mut n = 0;
                for e in &rows {
                    if tx.query_opt(&taken, &[&e.name]).await?.is_none() {
                        n += insert(tx, e).await?;
                    }
                }
                Ok(n)
            })
        })
        .await
    }
}
