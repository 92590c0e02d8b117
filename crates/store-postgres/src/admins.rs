//! Administrators, custom roles and bearer tokens on PostgreSQL.

use tokio_postgres::Row;

use super::{count, Pg, Postgres};
use store::{AdminRow, AdminUpdate, Admins, Result, RoleRow, SignIn, StoreError, TokenRow};

const ADMIN_COLUMNS: &str =
    "name, password, totp, totp_last_step, role, enabled, failed, locked_until, created_at";

fn admin_row(r: &Row) -> Pg<AdminRow> {
    Ok(AdminRow {
        name: r.try_get(0)?,
        password: r.try_get(1)?,
        totp: r.try_get(2)?,
        totp_last_step: r.try_get(3)?,
        role: r.try_get(4)?,
        enabled: r.try_get(5)?,
        failed: r.try_get(6)?,
        locked_until: r.try_get(7)?,
        created_at: r.try_get(8)?,
    })
}

const TOKEN_COLUMNS: &str = "id, hash, admin, kind, name, role, created_at, expires_at";

fn token_row(r: &Row) -> Pg<TokenRow> {
    Ok(TokenRow {
        id: r.try_get(0)?,
        hash: r.try_get(1)?,
        admin: r.try_get(2)?,
        kind: r.try_get(3)?,
        name: r.try_get(4)?,
        role: r.try_get(5)?,
        created_at: r.try_get(6)?,
        expires_at: r.try_get(7)?,
    })
}

fn role_row(r: &Row) -> Pg<RoleRow> {
    let ops: String = r.try_get(2)?;
    Ok(RoleRow {
        name: r.try_get(0)?,
        description: r.try_get(1)?,
        ops: ops.split_whitespace().map(str::to_owned).collect(),
        site: r.try_get(3)?,
        group: r.try_get(4)?,
    })
}

/// Holds a custom role's row (if `role` is one) until commit, so that the
/// role cannot be removed while it is being given.
async fn hold_role(tx: &super::Tx<'_>, role: &str) -> super::R<()> {
    let st = tx
        .prepare_cached("SELECT 1 FROM admin_roles WHERE name = $1 FOR KEY SHARE")
        .await?;
    tx.query_opt(&st, &[&role]).await?;
    Ok(())
}

impl Admins for Postgres {
    async fn add_admin(&self, a: AdminRow) -> Result<()> {
        self.write(|tx| {
            let a = a.clone();
            Box::pin(async move {
                hold_role(tx, &a.role).await?;
                tx.execute(
                    &format!("INSERT INTO admins ({ADMIN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"),
                    &[&a.name, &a.password, &a.totp, &a.totp_last_step, &a.role, &a.enabled, &a.failed, &a.locked_until, &a.created_at],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn admin(&self, name: &str) -> Result<Option<AdminRow>> {
        let name = name.to_owned();
        self.read(|c| {
            Box::pin(async move {
                let st = c
                    .prepare_cached(&format!(
                        "SELECT {ADMIN_COLUMNS} FROM admins WHERE name = $1"
                    ))
                    .await?;
                Ok(c.query_opt(&st, &[&name])
                    .await?
                    .map(|r| admin_row(&r))
                    .transpose()?)
            })
        })
        .await
    }

    async fn list_admins(&self) -> Result<Vec<AdminRow>> {
        self.read(|c| {
            Box::pin(async move {
                let rows = c
                    .query(
                        &format!("SELECT {ADMIN_COLUMNS} FROM admins ORDER BY name COLLATE \"C\""),
                        &[],
                    )
                    .await?;
                Ok(rows.iter().map(admin_row).collect::<Pg<_>>()?)
            })
        })
        .await
    }

    async fn update_admin(&self, name: &str, u: AdminUpdate) -> Result<bool> {
        let name = name.to_owned();
        self.write(|tx| {
            let (name, u) = (name.clone(), u.clone());
            Box::pin(async move {
                if let Some(role) = &u.role {
                    hold_role(tx, role).await?;
                }
                let n = tx
                    .execute(
                        "UPDATE admins SET
                            password = COALESCE($2::text, password),
                            failed = CASE WHEN $2::text IS NULL THEN failed ELSE 0 END,
                            locked_until = CASE WHEN $2::text IS NULL THEN locked_until ELSE 0 END,
                            totp = COALESCE($3::bytea, totp),
                            totp_last_step = CASE WHEN $3::bytea IS NULL THEN totp_last_step ELSE NULL END,
                            role = COALESCE($4::text, role),
                            enabled = COALESCE($5::boolean, enabled)
                         WHERE name = $1",
                        &[&name, &u.password, &u.totp, &u.role, &u.enabled],
                    )
                    .await?;
                Ok(n == 1)
            })
        })
        .await
    }

    async fn remove_admin(&self, name: &str) -> Result<bool> {
        let name = name.to_owned();
        self.write(|tx| {
            let name = name.clone();
            Box::pin(async move {
                Ok(tx
                    .execute("DELETE FROM admins WHERE name = $1", &[&name])
                    .await?
                    == 1)
            })
        })
        .await
    }

    async fn record_sign_in(&self, name: &str, s: SignIn) -> Result<bool> {
        let name = name.to_owned();
        self.write(|tx| {
            let name = name.clone();
            Box::pin(async move {
                let n = match s {
                    SignIn::Success { step } => {
                        tx.execute(
                            "UPDATE admins SET totp_last_step = $2, failed = 0, locked_until = 0
                             WHERE name = $1 AND (totp_last_step IS NULL OR totp_last_step < $2)",
                            &[&name, &step],
                        )
                        .await?
                    }
                    SignIn::Failure {
                        now,
                        max_failures,
                        lock_secs,
                    } => {
                        tx.execute(
                            "UPDATE admins SET
                                locked_until = CASE WHEN failed + 1 >= $3::bigint THEN $2::bigint + $4::bigint ELSE locked_until END,
                                failed = CASE WHEN failed + 1 >= $3::bigint THEN 0 ELSE failed + 1 END
                             WHERE name = $1",
                            &[&name, &now, &max_failures, &lock_secs],
                        )
                        .await?
                    }
                };
                Ok(n == 1)
            })
        })
        .await
    }

    async fn put_role(&self, r: RoleRow) -> Result<()> {
        self.write(|tx| {
            let r = r.clone();
            Box::pin(async move {
                tx.execute(
                    "INSERT INTO admin_roles (name, description, ops, site, user_group) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (name) DO UPDATE SET description = excluded.description, ops = excluded.ops,
                        site = excluded.site, user_group = excluded.user_group",
                    &[&r.name, &r.description, &r.ops.join(" "), &r.site, &r.group],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn remove_role(&self, name: &str) -> Result<bool> {
        let name = name.to_owned();
        self.write(|tx| {
            let name = name.clone();
            Box::pin(async move {
                // The role's row first: an administrator or token being
                // given the role finishes (and is counted) or waits.
                tx.execute(
                    "SELECT 1 FROM admin_roles WHERE name = $1 FOR UPDATE",
                    &[&name],
                )
                .await?;
                let used: i64 = tx
                    .query_one(
                        "SELECT (SELECT COUNT(*) FROM admins WHERE role = $1) + (SELECT COUNT(*) FROM admin_tokens WHERE role = $1)",
                        &[&name],
                    )
                    .await?
                    .try_get(0)?;
                if used > 0 {
                    return Err(StoreError::Conflict(format!(
                        "role {name} is held by {used} administrators or tokens"
                    ))
                    .into());
                }
                Ok(tx
                    .execute("DELETE FROM admin_roles WHERE name = $1", &[&name])
                    .await?
                    == 1)
            })
        })
        .await
    }

    async fn roles(&self) -> Result<Vec<RoleRow>> {
        self.read(|c| {
            Box::pin(async move {
                let rows = c
                    .query(
                        "SELECT name, description, ops, site, user_group FROM admin_roles ORDER BY name COLLATE \"C\"",
                        &[],
                    )
                    .await?;
                Ok(rows.iter().map(role_row).collect::<Pg<_>>()?)
            })
        })
        .await
    }

    async fn add_token(&self, t: TokenRow) -> Result<()> {
        self.write(|tx| {
            let t = t.clone();
            Box::pin(async move {
                hold_role(tx, &t.role).await?;
                tx.execute(
                    &format!("INSERT INTO admin_tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"),
                    &[&t.id, &t.hash, &t.admin, &t.kind, &t.name, &t.role, &t.created_at, &t.expires_at],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn token(&self, id: &str) -> Result<Option<TokenRow>> {
        let id = id.to_owned();
        self.read(|c| {
            Box::pin(async move {
                let st = c
                    .prepare_cached(&format!(
                        "SELECT {TOKEN_COLUMNS} FROM admin_tokens WHERE id = $1"
                    ))
                    .await?;
                Ok(c.query_opt(&st, &[&id])
                    .await?
                    .map(|r| token_row(&r))
                    .transpose()?)
            })
        })
        .await
    }

    async fn tokens(&self) -> Result<Vec<TokenRow>> {
        self.read(|c| {
            Box::pin(async move {
                let rows = c
                    .query(
                        &format!(
                            "SELECT {TOKEN_COLUMNS} FROM admin_tokens ORDER BY admin COLLATE \"C\", created_at"
                        ),
                        &[],
                    )
                    .await?;
                Ok(rows.iter().map(token_row).collect::<Pg<_>>()?)
            })
        })
        .await
    }

    async fn remove_token(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.write(|tx| {
            let id = id.clone();
            Box::pin(async move {
                Ok(tx
                    .execute("DELETE FROM admin_tokens WHERE id = $1", &[&id])
                    .await?
                    == 1)
            })
        })
        .await
    }

    async fn purge_expired_tokens(&self, now: i64) -> Result<usize> {
        self.write(|tx| {
            Box::pin(async move {
                Ok(count(
                    tx.execute("DELETE FROM admin_tokens WHERE expires_at <= $1", &[&now])
                        .await?,
                ))
            })
        })
        .await
    }
}
