//! Files uploaded for transfer, and who may fetch them, on SQLite.

use rusqlite::{params, OptionalExtension, Row};

use super::{db, Sqlite};
use store::{FileAdded, FileRow, Files, Result, StoreError};

const DAY: i64 = 86_400;

const COLUMNS: &str =
    "id, owner, name, content_type, kind, inner, size, created_at, expires_at, deleted_at, sha256";

fn row(r: &Row<'_>) -> rusqlite::Result<FileRow> {
    let inner: String = r.get(5)?;
    Ok(FileRow {
        id: r.get(0)?,
        owner: r.get(1)?,
        name: r.get(2)?,
        content_type: r.get(3)?,
        kind: r.get(4)?,
        inner: inner
            .split(' ')
            .filter(|e| !e.is_empty())
            .map(str::to_owned)
            .collect(),
        size: u64::try_from(r.get::<_, i64>(6)?).unwrap_or(0),
        created_at: r.get(7)?,
        expires_at: r.get(8)?,
        deleted_at: r.get(9)?,
        sha256: r.get(10)?,
    })
}

fn size(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// `?1, ?2, ...` for `n` values.
fn placeholders(n: usize) -> String {
    (1..=n)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Files for Sqlite {
    async fn add_file(&self, f: FileRow, daily_limit: u64, total_limit: u64) -> Result<FileAdded> {
        self.write(move |c| {
            let exists: bool = c
                .prepare_cached("SELECT 1 FROM users WHERE aor = ?1")
                .and_then(|mut st| st.query_row([&f.owner], |_| Ok(())).optional())
                .map_err(db)?
                .is_some();
            if !exists {
                return Err(StoreError::Conflict(format!("no user {}", f.owner)));
            }
            let (daily, total): (i64, i64) = c
                .prepare_cached(
                    "SELECT coalesce(sum(size) FILTER (WHERE created_at > ?2), 0),
                            coalesce(sum(size) FILTER (WHERE deleted_at IS NULL), 0)
                     FROM files WHERE owner = ?1",
                )
                .and_then(|mut st| {
                    st.query_row(params![f.owner, f.created_at - DAY], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                })
                .map_err(db)?;
            let (daily, total) = (
                u64::try_from(daily).unwrap_or(0),
                u64::try_from(total).unwrap_or(0),
            );
            if daily.saturating_add(f.size) > daily_limit {
                return Ok(FileAdded::DailyQuota { used: daily });
            }
            if total.saturating_add(f.size) > total_limit {
                return Ok(FileAdded::TotalQuota { used: total });
            }
            c.prepare_cached(&format!(
                "INSERT INTO files ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL, ?10)"
            ))
            .and_then(|mut st| {
                st.execute(params![
                    f.id,
                    f.owner,
                    f.name,
                    f.content_type,
                    f.kind,
                    f.inner.join(" "),
                    size(f.size),
                    f.created_at,
                    f.expires_at,
                    f.sha256
                ])
            })
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(x, _)
                    if x.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    StoreError::Conflict(format!("file {} exists", f.id))
                }
                e => db(e),
            })?;
            Ok(FileAdded::Added)
        })
        .await
    }

    async fn file(&self, id: &str) -> Result<Option<FileRow>> {
        let id = id.to_owned();
        self.call(move |c| {
            c.prepare_cached(&format!("SELECT {COLUMNS} FROM files WHERE id = ?1"))
                .and_then(|mut st| st.query_row([id], row).optional())
                .map_err(db)
        })
        .await
    }

    async fn file_for(&self, id: &str, user: &str) -> Result<Option<(FileRow, bool)>> {
        let (id, user) = (id.to_owned(), user.to_owned());
        self.call(move |c| {
            c.prepare_cached(&format!(
                "SELECT {COLUMNS}, owner = ?2 OR EXISTS (
                    SELECT 1 FROM file_grants WHERE file_id = files.id AND recipient = ?2)
                 FROM files WHERE id = ?1"
            ))
            .and_then(|mut st| {
                st.query_row(params![id, user], |r| Ok((row(r)?, r.get::<_, bool>(11)?)))
                    .optional()
            })
            .map_err(db)
        })
        .await
    }

    async fn grant_files(&self, ids: Vec<String>, recipients: Vec<String>) -> Result<()> {
        self.write(move |c| {
            let mut st = c
                .prepare_cached(
                    "INSERT OR IGNORE INTO file_grants (file_id, recipient)
                     SELECT id, ?2 FROM files WHERE id = ?1",
                )
                .map_err(db)?;
            for id in &ids {
                for r in &recipients {
                    st.execute(params![id, r]).map_err(db)?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn expired_files(&self, now: i64, limit: usize) -> Result<Vec<String>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.call(move |c| {
            let mut st = c
                .prepare_cached(
                    "SELECT id FROM files WHERE expires_at <= ?1 AND deleted_at IS NULL
                     ORDER BY expires_at LIMIT ?2",
                )
                .map_err(db)?;
            let rows = st
                .query_map(params![now, limit], |r| r.get(0))
                .map_err(db)?;
            rows.collect::<rusqlite::Result<Vec<String>>>().map_err(db)
        })
        .await
    }

    async fn mark_files_deleted(&self, ids: Vec<String>, now: i64) -> Result<usize> {
        self.write(move |c| {
            let mut st = c
                .prepare_cached(
                    "UPDATE files SET deleted_at = ?2 WHERE id = ?1 AND deleted_at IS NULL",
                )
                .map_err(db)?;
            let mut n = 0;
            for id in &ids {
                n += st.execute(params![id, now]).map_err(db)?;
            }
            Ok(n)
        })
        .await
    }

    async fn kept_files(&self, ids: Vec<String>) -> Result<Vec<String>> {
        self.call(move |c| {
            let mut kept = Vec::new();
            // SQLite binds at most 32,766 values; 500 a statement.
            for chunk in ids.chunks(500) {
                let mut st = c
                    .prepare(&format!(
                        "SELECT id FROM files WHERE deleted_at IS NULL AND id IN ({}) ORDER BY id",
                        placeholders(chunk.len())
                    ))
                    .map_err(db)?;
                let rows = st
                    .query_map(rusqlite::params_from_iter(chunk), |r| r.get(0))
                    .map_err(db)?;
                for r in rows {
                    kept.push(r.map_err(db)?);
                }
            }
            Ok(kept)
        })
        .await
    }

    async fn purge_file_records(&self, before: i64) -> Result<usize> {
        self.write(move |c| {
            c.execute(
                "DELETE FROM files WHERE deleted_at IS NOT NULL AND deleted_at < ?1",
                [before],
            )
            .map_err(db)
        })
        .await
    }
}
