//! Users on SQLite.

use rusqlite::{params, OptionalExtension, Row};

use super::{db, Sqlite};
use store::{NewUser, Result, User, Users};

fn row(r: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        aor: r.get(1)?,
        display_name: r.get(2)?,
        secret: r.get(3)?,
        enabled: r.get(4)?,
        created_at: r.get(5)?,
    })
}

const COLUMNS: &str = "id, aor, display_name, secret, enabled, created_at";

impl Users for Sqlite {
    async fn users_version(&self) -> Result<i64> {
        self.call(|c| {
            c.query_row(
                "SELECT value FROM meta WHERE name = 'users_version'",
                [],
                |r| r.get(0),
            )
            .map_err(db)
        })
        .await
    }

    async fn add_user(&self, u: NewUser) -> Result<User> {
        self.write(move |c| {
            c.query_row(
                &format!("INSERT INTO users (aor, display_name, secret, enabled, created_at) VALUES (?1, ?2, ?3, 1, ?4) RETURNING {COLUMNS}"),
                params![u.aor, u.display_name, u.secret, u.created_at],
                row,
            )
            .map_err(db)
        })
        .await
    }

    async fn import_users(&self, users: Vec<NewUser>) -> Result<usize> {
        // One write job: atomic (its own savepoint in the batch transaction).
        self.write(move |c| {
            let mut stmt = c
                .prepare("INSERT INTO users (aor, display_name, secret, enabled, created_at) VALUES (?1, ?2, ?3, 1, ?4)")
                .map_err(db)?;
            for u in &users {
                stmt.execute(params![u.aor, u.display_name, u.secret, u.created_at]).map_err(db)?;
            }
            Ok(users.len())
        })
        .await
    }

    async fn user(&self, aor: &str) -> Result<Option<User>> {
        let aor = aor.to_owned();
        self.call(move |c| {
            c.query_row(
                &format!("SELECT {COLUMNS} FROM users WHERE aor = ?1"),
                [aor],
                row,
            )
            .optional()
            .map_err(db)
        })
        .await
    }

    async fn list_users(&self) -> Result<Vec<User>> {
        self.call(|c| {
            let mut stmt = c
                .prepare(&format!("SELECT {COLUMNS} FROM users ORDER BY aor"))
                .map_err(db)?;
            let rows = stmt.query_map([], row).map_err(db)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db)
        })
        .await
    }

    async fn set_secret(&self, aor: &str, secret: Vec<u8>) -> Result<bool> {
        let aor = aor.to_owned();
        self.write(move |c| {
            // A new password ends every sign-in session made with the old
            // one, and revokes every device certificate issued under it.
            c.execute("DELETE FROM user_sessions WHERE aor = ?1", [&aor])
                .map_err(db)?;
            super::devices::revoke_all(c, &aor, "password", super::devices::now())?;
            c.execute(
                "UPDATE users SET secret = ?2 WHERE aor = ?1",
                params![aor, secret],
            )
            .map(|n| n == 1)
            .map_err(db)
        })
        .await
    }

    async fn set_enabled(&self, aor: &str, enabled: bool) -> Result<bool> {
        let aor = aor.to_owned();
        self.write(move |c| {
            if !enabled {
                // A disabled account keeps no session (re-enabling does
                // not bring them back).
                c.execute("DELETE FROM user_sessions WHERE aor = ?1", [&aor])
                    .map_err(db)?;
                // Nor any device: re-enabled, the user enrolls again.
                super::devices::revoke_all(c, &aor, "disabled", super::devices::now())?;
            }
            c.execute(
                "UPDATE users SET enabled = ?2 WHERE aor = ?1",
                params![aor, enabled],
            )
            .map(|n| n == 1)
            .map_err(db)
        })
        .await
    }

    async fn remove_user(&self, aor: &str) -> Result<bool> {
        let aor = aor.to_owned();
        self.write(move |c| {
            // Grants name users by text (a grant may target a group too), so
            // they are removed here; memberships and sites cascade.
            c.execute(
                "DELETE FROM policy_grants WHERE target_kind = 'user' AND target = ?1",
                [&aor],
            )
            .map_err(db)?;
            // Others' contact entries for the user go too: a new account
            // under the same address must not inherit relationships.
            c.execute("DELETE FROM contacts WHERE contact = ?1", [&aor])
                .map_err(db)?;
            c.execute("DELETE FROM subscriptions WHERE watcher = ?1", [&aor])
                .map_err(db)?;
            c.execute("DELETE FROM users WHERE aor = ?1", [aor])
                .map(|n| n == 1)
                .map_err(db)
        })
        .await
    }
}
