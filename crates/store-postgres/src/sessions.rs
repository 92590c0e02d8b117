//! Users' sign-in sessions on PostgreSQL.

use super::{big, count, Postgres};
use store::{Result, UserSessionRow, UserSessions};

impl UserSessions for Postgres {
    async fn add_user_session(&self, s: UserSessionRow, max_per_user: usize) -> Result<()> {
        let keep = big(max_per_user.max(1));
        self.write(|tx| {
            let s = s.clone();
            Box::pin(async move {
                // The user's row is the lock: the cap holds for sessions
                // made at once.
                super::lock_user(tx, &s.aor).await?;
                let st = tx
                    .prepare_cached(
                        "INSERT INTO user_sessions (id, aor, hash, source, created_at, expires_at, second_factor)
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .await?;
                tx.execute(
                    &st,
                    &[&s.id, &s.aor, &s.hash, &s.source, &s.created_at, &s.expires_at, &s.second_factor],
                )
                .await?;
                // The newest `keep` stay (ties broken by id, so exactly `keep`).
                let st = tx
                    .prepare_cached(
                        "DELETE FROM user_sessions WHERE aor = $1 AND id NOT IN (
                            SELECT id FROM user_sessions WHERE aor = $1
                            ORDER BY created_at DESC, id COLLATE \"C\" DESC LIMIT $2)",
                    )
                    .await?;
                tx.execute(&st, &[&s.aor, &keep]).await?;
                Ok(())
            })
        })
        .await
    }

    async fn user_session(&self, id: &str) -> Result<Option<(UserSessionRow, bool)>> {
        let id = id.to_owned();
        self.read(|c| {
            Box::pin(async move {
                let st = c
                    .prepare_cached(
                        "SELECT s.id, s.hash, s.aor, s.source, s.created_at, s.expires_at, u.enabled, s.second_factor
                         FROM user_sessions s JOIN users u ON u.aor = s.aor WHERE s.id = $1",
                    )
                    .await?;
                let Some(r) = c.query_opt(&st, &[&id]).await? else {
                    return Ok(None);
                };
                Ok(Some((
                    UserSessionRow {
                        id: r.try_get(0)?,
                        hash: r.try_get(1)?,
                        aor: r.try_get(2)?,
                        source: r.try_get(3)?,
                        created_at: r.try_get(4)?,
                        expires_at: r.try_get(5)?,
                        second_factor: r.try_get(7)?,
                    },
                    r.try_get(6)?,
                )))
            })
        })
        .await
    }

    async fn remove_user_session(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.write(|tx| {
            let id = id.clone();
            Box::pin(async move {
                // The session's user's row first (see lock_user).
                let owner: Option<String> = tx
                    .query_opt("SELECT aor FROM user_sessions WHERE id = $1", &[&id])
                    .await?
                    .map(|r| r.try_get(0))
                    .transpose()?;
                if let Some(aor) = &owner {
                    super::lock_user(tx, aor).await?;
                }
                Ok(tx
                    .execute("DELETE FROM user_sessions WHERE id = $1", &[&id])
                    .await?
                    == 1)
            })
        })
        .await
    }

    async fn upgrade_user_session(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.write(|tx| {
            let id = id.clone();
            Box::pin(async move {
                Ok(tx
                    .execute(
                        "UPDATE user_sessions SET second_factor = TRUE WHERE id = $1",
                        &[&id],
                    )
                    .await?
                    == 1)
            })
        })
        .await
    }

    async fn remove_user_sessions(&self, aor: &str) -> Result<usize> {
        let aor = aor.to_owned();
        self.write(|tx| {
            let aor = aor.clone();
            Box::pin(async move {
                super::lock_user(tx, &aor).await?;
                Ok(count(
                    tx.execute("DELETE FROM user_sessions WHERE aor = $1", &[&aor])
                        .await?,
                ))
            })
        })
        .await
    }

    async fn purge_expired_user_sessions(&self, now: i64) -> Result<usize> {
        self.write(|tx| {
            Box::pin(async move {
                Ok(count(
                    tx.execute("DELETE FROM user_sessions WHERE expires_at <= $1", &[&now])
                        .await?,
                ))
            })
        })
        .await
    }
}
