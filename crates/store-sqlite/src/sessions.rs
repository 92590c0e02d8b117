//! Users' sign-in sessions on SQLite.

use rusqlite::{params, OptionalExtension};

use super::{db, Sqlite};
use store::{Result, UserSessionRow, UserSessions};

impl UserSessions for Sqlite {
    async fn add_user_session(&self, s: UserSessionRow, max_per_user: usize) -> Result<()> {
        let keep = i64::try_from(max_per_user.max(1)).unwrap_or(i64::MAX);
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO user_sessions (id, aor, hash, source, created_at, expires_at, second_factor)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    s.id,
                    s.aor,
                    s.hash,
                    s.source,
                    s.created_at,
                    s.expires_at,
                    s.second_factor
                ])
            })
            .map_err(db)?;
            // The newest `keep` stay (ties broken by id, so exactly `keep`).
            c.prepare_cached(
                "DELETE FROM user_sessions WHERE aor = ?1 AND id NOT IN (
                    SELECT id FROM user_sessions WHERE aor = ?1
                    ORDER BY created_at DESC, id DESC LIMIT ?2)",
            )
            .and_then(|mut st| st.execute(params![s.aor, keep]))
            .map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn user_session(&self, id: &str) -> Result<Option<(UserSessionRow, bool)>> {
        let id = id.to_owned();
        self.call(move |c| {
            c.prepare_cached(
                "SELECT s.id, s.hash, s.aor, s.source, s.created_at, s.expires_at, u.enabled, s.second_factor
                 FROM user_sessions s JOIN users u ON u.aor = s.aor WHERE s.id = ?1",
            )
            .and_then(|mut st| {
                st.query_row([id], |r| {
                    Ok((
                        UserSessionRow {
                            id: r.get(0)?,
                            hash: r.get(1)?,
                            aor: r.get(2)?,
                            source: r.get(3)?,
                            created_at: r.get(4)?,
                            expires_at: r.get(5)?,
                            second_factor: r.get(7)?,
                        },
                        r.get(6)?,
                    ))
                })
                .optional()
            })
            .map_err(db)
        })
        .await
    }

    async fn remove_user_session(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.write(move |c| {
            c.execute("DELETE FROM user_sessions WHERE id = ?1", [id])
                .map(|n| n == 1)
                .map_err(db)
        })
        .await
    }

    async fn upgrade_user_session(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.write(move |c| {
            c.execute(
                "UPDATE user_sessions SET second_factor = 1 WHERE id = ?1",
                [id],
            )
            .map(|n| n == 1)
            .map_err(db)
        })
        .await
    }

    async fn remove_user_sessions(&self, aor: &str) -> Result<usize> {
        let aor = aor.to_owned();
        self.write(move |c| {
            c.execute("DELETE FROM user_sessions WHERE aor = ?1", [aor])
                .map_err(db)
        })
        .await
    }

    async fn purge_expired_user_sessions(&self, now: i64) -> Result<usize> {
        self.write(move |c| {
            c.execute("DELETE FROM user_sessions WHERE expires_at <= ?1", [now])
                .map_err(db)
        })
        .await
    }
}
