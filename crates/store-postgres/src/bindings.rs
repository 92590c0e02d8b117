//! Registrar bindings on PostgreSQL.

use tokio_postgres::Row;

use super::{count, lines, Pg, Postgres, Tx, R};
use store::{Binding, BindingChange, Bindings, Result};

const COLUMNS: &str =
    "aor, binding_key, contact, q, expires_at, call_id, cseq, path, source, user_agent";

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
    })
}

async fn upsert(tx: &Tx<'_>, b: &Binding) -> R<()> {
    let st = tx
        .prepare_cached(&format!(
            "INSERT INTO bindings ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (aor, binding_key) DO UPDATE SET contact = excluded.contact, q = excluded.q,
               expires_at = excluded.expires_at, call_id = excluded.call_id, cseq = excluded.cseq,
               path = excluded.path, source = excluded.source, user_agent = excluded.user_agent"
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
