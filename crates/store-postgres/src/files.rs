//! Files uploaded for transfer, and who may fetch them, on PostgreSQL.

use tokio_postgres::Row;

use super::{big, count, Pg, Postgres};
use store::{FileAdded, FileRow, Files, Result, StoreError};

const DAY: i64 = 86_400;

const COLUMNS: &str = r#"id, owner, name, content_type, kind, "inner", size, created_at, expires_at, deleted_at, sha256"#;

fn row(r: &Row) -> Pg<FileRow> {
    let inner: &str = r.try_get(5)?;
    Ok(FileRow {
        id: r.try_get(0)?,
        owner: r.try_get(1)?,
        name: r.try_get(2)?,
        content_type: r.try_get(3)?,
        kind: r.try_get(4)?,
        inner: inner
            .split(' ')
            .filter(|e| !e.is_empty())
            .map(str::to_owned)
            .collect(),
        size: u64::try_from(r.try_get::<_, i64>(6)?).unwrap_or(0),
        created_at: r.try_get(7)?,
        expires_at: r.try_get(8)?,
        deleted_at: r.try_get(9)?,
        sha256: r.try_get(10)?,
    })
}

impl Files for Postgres {
    async fn add_file(&self, f: FileRow, daily_limit: u64, total_limit: u64) -> Result<FileAdded> {
        self.write(|tx| {
            let f = f.clone();
            Box::pin(async move {
                // The owner's row is the lock: of two uploads recorded at
                // once, the second sums the first.
                if super::lock_user(tx, &f.owner).await?.is_none() {
                    return Err(StoreError::Conflict(format!("no user {}", f.owner)).into());
                }
                let st = tx
                    .prepare_cached(
                        "SELECT coalesce(sum(size) FILTER (WHERE created_at > $2), 0)::bigint,
                                coalesce(sum(size) FILTER (WHERE deleted_at IS NULL), 0)::bigint
                         FROM files WHERE owner = $1",
                    )
                    .await?;
                let r = tx.query_one(&st, &[&f.owner, &(f.created_at - DAY)]).await?;
                let daily = u64::try_from(r.try_get::<_, i64>(0)?).unwrap_or(0);
                let total = u64::try_from(r.try_get::<_, i64>(1)?).unwrap_or(0);
                if daily.saturating_add(f.size) > daily_limit {
                    return Ok(FileAdded::DailyQuota { used: daily });
                }
                if total.saturating_add(f.size) > total_limit {
                    return Ok(FileAdded::TotalQuota { used: total });
                }
                let st = tx
                    .prepare_cached(&format!(
                        "INSERT INTO files ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, $10)"
                    ))
                    .await?;
                tx.execute(
                    &st,
                    &[
                        &f.id,
                        &f.owner,
                        &f.name,
                        &f.content_type,
                        &f.kind,
                        &f.inner.join(" "),
                        &big(f.size),
                        &f.created_at,
                        &f.expires_at,
                        &f.sha256,
                    ],
                )
                .await
                .map_err(|e| match e.code() {
                    Some(c) if *c == tokio_postgres::error::SqlState::UNIQUE_VIOLATION => {
                        StoreError::Conflict(format!("file {} exists", f.id)).into()
                    }
                    _ => super::E::from(e),
                })?;
                Ok(FileAdded::Added)
            })
        })
        .await
    }

    async fn file(&self, id: &str) -> Result<Option<FileRow>> {
        let id = id.to_owned();
        self.read(|c| {
            Box::pin(async move {
                let st = c
                    .prepare_cached(&format!("SELECT {COLUMNS} FROM files WHERE id = $1"))
                    .await?;
                Ok(c.query_opt(&st, &[&id])
                    .await?
                    .map(|r| row(&r))
                    .transpose()?)
            })
        })
        .await
    }

    async fn file_for(&self, id: &str, user: &str) -> Result<Option<(FileRow, bool)>> {
        let (id, user) = (id.to_owned(), user.to_owned());
        self.read(|c| {
            Box::pin(async move {
                let st = c
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS}, owner = $2 OR EXISTS (
                            SELECT 1 FROM file_grants WHERE file_id = files.id AND recipient = $2)
                         FROM files WHERE id = $1"
                    ))
                    .await?;
                Ok(c.query_opt(&st, &[&id, &user])
                    .await?
                    .map(|r| Ok::<_, tokio_postgres::Error>((row(&r)?, r.try_get::<_, bool>(11)?)))
                    .transpose()?)
            })
        })
        .await
    }

    async fn grant_files(&self, ids: Vec<String>, recipients: Vec<String>) -> Result<()> {
        self.write(|tx| {
            let (ids, recipients) = (ids.clone(), recipients.clone());
            Box::pin(async move {
                tx.execute(
                    "INSERT INTO file_grants (file_id, recipient)
                     SELECT f.id, r FROM files f, unnest($2::text[]) AS r WHERE f.id = ANY($1)
                     ON CONFLICT DO NOTHING",
                    &[&ids, &recipients],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn expired_files(&self, now: i64, limit: usize) -> Result<Vec<String>> {
        let limit = big(limit);
        self.read(|c| {
            Box::pin(async move {
                let rows = c
                    .query(
                        "SELECT id FROM files WHERE expires_at <= $1 AND deleted_at IS NULL
                         ORDER BY expires_at LIMIT $2",
                        &[&now, &limit],
                    )
                    .await?;
                Ok(rows.iter().map(|r| r.try_get(0)).collect::<Pg<_>>()?)
            })
        })
        .await
    }

    async fn mark_files_deleted(&self, ids: Vec<String>, now: i64) -> Result<usize> {
        self.write(|tx| {
            let ids = ids.clone();
            Box::pin(async move {
                let n = tx
                    .execute(
                        "UPDATE files SET deleted_at = $2 WHERE id = ANY($1) AND deleted_at IS NULL",
                        &[&ids, &now],
                    )
                    .await?;
                Ok(count(n))
            })
        })
        .await
    }

    async fn kept_files(&self, ids: Vec<String>) -> Result<Vec<String>> {
        self.read(|c| {
            Box::pin(async move {
                let rows = c
                    .query(
                        "SELECT id FROM files WHERE deleted_at IS NULL AND id = ANY($1) ORDER BY id",
                        &[&ids],
                    )
                    .await?;
                Ok(rows.iter().map(|r| r.try_get(0)).collect::<Pg<_>>()?)
            })
        })
        .await
    }

    async fn purge_file_records(&self, before: i64) -> Result<usize> {
        self.write(|tx| {
            Box::pin(async move {
                let n = tx
                    .execute(
                        "DELETE FROM files WHERE deleted_at IS NOT NULL AND deleted_at < $1",
                        &[&before],
                    )
                    .await?;
                Ok(count(n))
            })
        })
        .await
    }
}
