//! Users on PostgreSQL.

use tokio_postgres::Row;

use super::{count, devices, Pg, Postgres};
use store::{NewUser, Result, User, Users};

fn row(r: &Row) -> Pg<User> {
    Ok(User {
        id: r.try_get(0)?,
        aor: r.try_get(1)?,
        display_name: r.try_get(2)?,
        secret: r.try_get(3)?,
        enabled: r.try_get(4)?,
        created_at: r.try_get(5)?,
    })
}

const COLUMNS: &str = "id, aor, display_name, secret, enabled, created_at";

impl Users for Postgres {
    async fn users_version(&self) -> Result<i64> {
        self.read(|c| {
            Box::pin(async move {
                let r = c
                    .query_one("SELECT value FROM meta WHERE name = 'users_version'", &[])
                    .await?;
                Ok(r.try_get(0)?)
            })
        })
        .await
    }

    async fn add_user(&self, u: NewUser) -> Result<User> {
        self.write(|tx| {
            let u = u.clone();
            Box::pin(async move {
                let st = tx
                    .prepare_cached(&format!(
                        "INSERT INTO users (aor, display_name, secret, enabled, created_at)
                         VALUES ($1, $2, $3, TRUE, $4) RETURNING {COLUMNS}"
                    ))
                    .await?;
                let r = tx
                    .query_one(&st, &[&u.aor, &u.display_name, &u.secret, &u.created_at])
                    .await?;
                Ok(row(&r)?)
            })
        })
        .await
    }

    async fn import_users(&self, users: Vec<NewUser>) -> Result<usize> {
        // One transaction: all or nothing.
        self.write(|tx| {
            let users = users.clone();
            Box::pin(async move {
                let st = tx
                    .prepare_cached(
                        "INSERT INTO users (aor, display_name, secret, enabled, created_at)
                         VALUES ($1, $2, $3, TRUE, $4)",
                    )
                    .await?;
                for u in &users {
                    tx.execute(&st, &[&u.aor, &u.display_name, &u.secret, &u.created_at])
                        .await?;
                }
                Ok(users.len())
            })
        })
        .await
    }

    async fn user(&self, aor: &str) -> Result<Option<User>> {
        let aor = aor.to_owned();
        self.read(|c| {
            Box::pin(async move {
                let st = c
                    .prepare_cached(&format!("SELECT {COLUMNS} FROM users WHERE aor = $1"))
                    .await?;
                Ok(c.query_opt(&st, &[&aor])
                    .await?
                    .map(|r| row(&r))
                    .transpose()?)
            })
        })
        .await
    }

    async fn list_users(&self) -> Result<Vec<User>> {
        self.read(|c| {
            Box::pin(async move {
                let rows = c
                    .query(
                        &format!("SELECT {COLUMNS} FROM users ORDER BY aor COLLATE \"C\""),
                        &[],
                    )
                    .await?;
                Ok(rows.iter().map(row).collect::<Pg<_>>()?)
            })
        })
        .await
    }

    async fn set_secret(&self, aor: &str, secret: Vec<u8>) -> Result<bool> {
        let aor = aor.to_owned();
        self.write(|tx| {
            let (aor, secret) = (aor.clone(), secret.clone());
            Box::pin(async move {
                // A new password ends every sign-in session made with the
                // old one, and revokes every device certificate issued
                // under it (the user's row first: a device being added
                // now is then either seen here or refused there).
                super::lock_user(tx, &aor).await?;
                tx.execute("DELETE FROM user_sessions WHERE aor = $1", &[&aor])
                    .await?;
                devices::revoke_all(tx, &aor, "password", super::now()).await?;
                let n = tx
                    .execute(
                        "UPDATE users SET secret = $2 WHERE aor = $1",
                        &[&aor, &secret],
                    )
                    .await?;
                Ok(n == 1)
            })
        })
        .await
    }

    async fn set_enabled(&self, aor: &str, enabled: bool) -> Result<bool> {
        let aor = aor.to_owned();
        self.write(|tx| {
            let aor = aor.clone();
            Box::pin(async move {
                super::lock_user(tx, &aor).await?;
                if !enabled {
                    // A disabled account keeps no session and no device.
                    tx.execute("DELETE FROM user_sessions WHERE aor = $1", &[&aor])
                        .await?;
                    devices::revoke_all(tx, &aor, "disabled", super::now()).await?;
                }
                let n = tx
                    .execute(
                        "UPDATE users SET enabled = $2 WHERE aor = $1",
                        &[&aor, &enabled],
                    )
                    .await?;
                Ok(n == 1)
            })
        })
        .await
    }

    async fn remove_user(&self, aor: &str) -> Result<bool> {
        let aor = aor.to_owned();
        self.write(|tx| {
            let aor = aor.clone();
            Box::pin(async move {
                // Grants name users by text; others' contact entries and
                // the user's subscriptions go too (a new account under the
                // same address inherits nothing). The rest cascades.
                for sql in [
                    "DELETE FROM policy_grants WHERE target_kind = 'user' AND target = $1",
                    "DELETE FROM contacts WHERE contact = $1",
                    "DELETE FROM subscriptions WHERE watcher = $1",
                ] {
                    tx.execute(sql, &[&aor]).await?;
                }
                let n = tx
                    .execute("DELETE FROM users WHERE aor = $1", &[&aor])
                    .await?;
                Ok(count(n) == 1)
            })
        })
        .await
    }
}
