//! Administrators, custom roles, bearer tokens and the audit log on SQLite.

use rusqlite::{params, OptionalExtension, Row};

use super::{audit, db, Sqlite};
use store::{
    AdminRow, AdminUpdate, Admins, AuditEntry, AuditFilter, AuditLog, AuditRecord, AuditReport,
    Result, RoleRow, SignIn, StoreError, TokenRow,
};

const ADMIN_COLUMNS: &str =
    "name, password, totp, totp_last_step, role, enabled, failed, locked_until, created_at";

fn admin_row(r: &Row<'_>) -> rusqlite::Result<AdminRow> {
    Ok(AdminRow {
        name: r.get(0)?,
        password: r.get(1)?,
        totp: r.get(2)?,
        totp_last_step: r.get(3)?,
        role: r.get(4)?,
        enabled: r.get(5)?,
        failed: r.get(6)?,
        locked_until: r.get(7)?,
        created_at: r.get(8)?,
    })
}

const TOKEN_COLUMNS: &str = "id, hash, admin, kind, name, role, created_at, expires_at";

fn token_row(r: &Row<'_>) -> rusqlite::Result<TokenRow> {
    Ok(TokenRow {
        id: r.get(0)?,
        hash: r.get(1)?,
        admin: r.get(2)?,
        kind: r.get(3)?,
        name: r.get(4)?,
        role: r.get(5)?,
        created_at: r.get(6)?,
        expires_at: r.get(7)?,
    })
}

fn role_row(r: &Row<'_>) -> rusqlite::Result<RoleRow> {
    let ops: String = r.get(2)?;
    Ok(RoleRow {
        name: r.get(0)?,
        description: r.get(1)?,
        ops: ops.split_whitespace().map(str::to_owned).collect(),
        site: r.get(3)?,
        group: r.get(4)?,
    })
}

impl Admins for Sqlite {
    async fn add_admin(&self, a: AdminRow) -> Result<()> {
        self.write(move |c| {
            c.execute(
                &format!("INSERT INTO admins ({ADMIN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
                params![a.name, a.password, a.totp, a.totp_last_step, a.role, a.enabled, a.failed, a.locked_until, a.created_at],
            )
            .map(|_| ())
            .map_err(db)
        })
        .await
    }

    async fn admin(&self, name: &str) -> Result<Option<AdminRow>> {
        let name = name.to_owned();
        self.call(move |c| {
            c.query_row(
                &format!("SELECT {ADMIN_COLUMNS} FROM admins WHERE name = ?1"),
                [name],
                admin_row,
            )
            .optional()
            .map_err(db)
        })
        .await
    }

    async fn list_admins(&self) -> Result<Vec<AdminRow>> {
        self.call(|c| {
            let mut st = c
                .prepare(&format!("SELECT {ADMIN_COLUMNS} FROM admins ORDER BY name"))
                .map_err(db)?;
            let rows = st.query_map([], admin_row).map_err(db)?;
            rows.collect::<rusqlite::Result<_>>().map_err(db)
        })
        .await
    }

    async fn update_admin(&self, name: &str, u: AdminUpdate) -> Result<bool> {
        let name = name.to_owned();
        self.write(move |c| {
            let n = c
                .execute(
                    "UPDATE admins SET
                        password = COALESCE(?2, password),
                        failed = CASE WHEN ?2 IS NULL THEN failed ELSE 0 END,
                        locked_until = CASE WHEN ?2 IS NULL THEN locked_until ELSE 0 END,
                        totp = COALESCE(?3, totp),
                        totp_last_step = CASE WHEN ?3 IS NULL THEN totp_last_step ELSE NULL END,
                        role = COALESCE(?4, role),
                        enabled = COALESCE(?5, enabled)
                     WHERE name = ?1",
                    params![name, u.password, u.totp, u.role, u.enabled],
                )
                .map_err(db)?;
            Ok(n == 1)
        })
        .await
    }

    async fn remove_admin(&self, name: &str) -> Result<bool> {
        let name = name.to_owned();
        self.write(move |c| {
            c.execute("DELETE FROM admins WHERE name = ?1", [name])
                .map(|n| n == 1)
                .map_err(db)
        })
        .await
    }

    async fn record_sign_in(&self, name: &str, s: SignIn) -> Result<bool> {
        let name = name.to_owned();
        self.write(move |c| {
            let n = match s {
                SignIn::Success { step } => c.execute(
                    "UPDATE admins SET totp_last_step = ?2, failed = 0, locked_until = 0
                     WHERE name = ?1 AND (totp_last_step IS NULL OR totp_last_step < ?2)",
                    params![name, step],
                ),
                SignIn::Failure { now, max_failures, lock_secs } => c.execute(
                    "UPDATE admins SET
                        locked_until = CASE WHEN failed + 1 >= ?3 THEN ?2 + ?4 ELSE locked_until END,
                        failed = CASE WHEN failed + 1 >= ?3 THEN 0 ELSE failed + 1 END
                     WHERE name = ?1",
                    params![name, now, max_failures, lock_secs],
                ),
            }
            .map_err(db)?;
            Ok(n == 1)
        })
        .await
    }

    async fn put_role(&self, r: RoleRow) -> Result<()> {
        self.write(move |c| {
            c.execute(
                "INSERT INTO admin_roles (name, description, ops, site, user_group) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (name) DO UPDATE SET description = excluded.description, ops = excluded.ops,
                    site = excluded.site, user_group = excluded.user_group",
                params![r.name, r.description, r.ops.join(" "), r.site, r.group],
            )
            .map(|_| ())
            .map_err(db)
        })
        .await
    }

    async fn remove_role(&self, name: &str) -> Result<bool> {
        let name = name.to_owned();
        self.write(move |c| {
            let used: i64 = c
                .query_row(
                    "SELECT (SELECT COUNT(*) FROM admins WHERE role = ?1) + (SELECT COUNT(*) FROM admin_tokens WHERE role = ?1)",
                    [&name],
                    |r| r.get(0),
                )
                .map_err(db)?;
            if used > 0 {
                return Err(StoreError::Conflict(format!(
                    "role {name} is held by {used} administrators or tokens"
                )));
            }
            c.execute("DELETE FROM admin_roles WHERE name = ?1", [name])
                .map(|n| n == 1)
                .map_err(db)
        })
        .await
    }

    async fn roles(&self) -> Result<Vec<RoleRow>> {
        self.call(|c| {
            let mut st = c
                .prepare("SELECT name, description, ops, site, user_group FROM admin_roles ORDER BY name")
                .map_err(db)?;
            let rows = st.query_map([], role_row).map_err(db)?;
            rows.collect::<rusqlite::Result<_>>().map_err(db)
        })
        .await
    }

    async fn add_token(&self, t: TokenRow) -> Result<()> {
        self.write(move |c| {
            c.execute(
                &format!("INSERT INTO admin_tokens ({TOKEN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
                params![t.id, t.hash, t.admin, t.kind, t.name, t.role, t.created_at, t.expires_at],
            )
            .map(|_| ())
            .map_err(db)
        })
        .await
    }

    async fn token(&self, id: &str) -> Result<Option<TokenRow>> {
        let id = id.to_owned();
        self.call(move |c| {
            c.prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS} FROM admin_tokens WHERE id = ?1"
            ))
            .map_err(db)?
            .query_row([id], token_row)
            .optional()
            .map_err(db)
        })
        .await
    }

    async fn tokens(&self) -> Result<Vec<TokenRow>> {
        self.call(|c| {
            let mut st = c
                .prepare(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM admin_tokens ORDER BY admin, created_at"
                ))
                .map_err(db)?;
            let rows = st.query_map([], token_row).map_err(db)?;
            rows.collect::<rusqlite::Result<_>>().map_err(db)
        })
        .await
    }

    async fn remove_token(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.write(move |c| {
            c.execute("DELETE FROM admin_tokens WHERE id = ?1", [id])
                .map(|n| n == 1)
                .map_err(db)
        })
        .await
    }

    async fn purge_expired_tokens(&self, now: i64) -> Result<usize> {
        self.write(move |c| {
            c.execute("DELETE FROM admin_tokens WHERE expires_at <= ?1", [now])
                .map_err(db)
        })
        .await
    }
}

impl AuditLog for Sqlite {
    async fn append_audit(&self, e: AuditEntry) -> Result<i64> {
        let key = self.audit_key.clone().ok_or_else(audit::no_key)?;
        self.write(move |c| audit::append(c, &key, &e)).await
    }

    async fn audit_list(&self, f: AuditFilter) -> Result<Vec<AuditRecord>> {
        self.call(move |c| audit::list(c, &f)).await
    }

    async fn audit_verify(&self) -> Result<AuditReport> {
        let key = self.audit_key.clone().ok_or_else(audit::no_key)?;
        self.call(move |c| audit::verify(c, &key)).await
    }
}
