//! Users' devices, TOTP second factors and enrollment codes on PostgreSQL.

use tokio_postgres::Row;

use super::{Pg, Postgres, Tx, R};
use store::{DeviceRow, Devices, EnrollmentCodeRow, Result, StoreError, TotpRow};

pub(crate) const COLUMNS: &str = "aor, id, name, fingerprint, serial, certificate, issued_at, expires_at, revoked_at, revoked_reason, last_seen, user_agent";

pub(crate) fn row(r: &Row) -> Pg<DeviceRow> {
    Ok(DeviceRow {
        aor: r.try_get(0)?,
        id: r.try_get(1)?,
        name: r.try_get(2)?,
        fingerprint: r.try_get(3)?,
        serial: r.try_get(4)?,
        certificate: r.try_get(5)?,
        issued_at: r.try_get(6)?,
        expires_at: r.try_get(7)?,
        revoked_at: r.try_get(8)?,
        revoked_reason: r.try_get(9)?,
        last_seen: r.try_get(10)?,
        user_agent: r.try_get(11)?,
    })
}

/// Revokes every device of `aor` not yet revoked, inside the caller's
/// transaction (a disabled account, a new password); returns them.
pub(crate) async fn revoke_all(tx: &Tx<'_>, aor: &str, reason: &str, at: i64) -> R<Vec<DeviceRow>> {
    let st = tx
        .prepare_cached(&format!(
            "UPDATE devices SET revoked_at = $2, revoked_reason = $3
             WHERE aor = $1 AND revoked_at IS NULL RETURNING {COLUMNS}"
        ))
        .await?;
    let rows = tx.query(&st, &[&aor, &at, &reason]).await?;
    Ok(rows.iter().map(row).collect::<Pg<_>>()?)
}

async fn query(c: &deadpool_postgres::Client, sql: &str, now: i64) -> R<Vec<DeviceRow>> {
    let st = c
        .prepare_cached(&format!("SELECT {COLUMNS} FROM devices WHERE {sql}"))
        .await?;
    let rows = c.query(&st, &[&now]).await?;
    Ok(rows.iter().map(row).collect::<Pg<_>>()?)
}

impl Devices for Postgres {
    async fn add_device(
        &self,
        d: DeviceRow,
        max_active: usize,
        session: Option<String>,
    ) -> Result<()> {
        let max = super::big(max_active);
        self.write(|tx| {
            let (d, session) = (d.clone(), session.clone());
            Box::pin(async move {
                // The user's row is the lock: of two devices added at
                // once, the second counts the first.
                let enabled = super::lock_user(tx, &d.aor).await?;
                match enabled {
                    None => return Err(StoreError::Conflict(format!("no user {}", d.aor)).into()),
                    Some(false) => {
                        return Err(StoreError::Conflict(format!("user {} is disabled", d.aor)).into())
                    }
                    Some(true) => {}
                }
                if let Some(id) = session {
                    let live = tx
                        .query_opt(
                            "SELECT 1 FROM user_sessions WHERE id = $1 AND aor = $2",
                            &[&id, &d.aor],
                        )
                        .await?;
                    if live.is_none() {
                        return Err(StoreError::Conflict("the sign-in session has ended".into()).into());
                    }
                }
                let active: i64 = tx
                    .query_one(
                        "SELECT count(*) FROM devices
                         WHERE aor = $1 AND revoked_at IS NULL AND expires_at > $2",
                        &[&d.aor, &d.issued_at],
                    )
                    .await?
                    .try_get(0)?;
                if active >= max {
                    return Err(StoreError::Conflict(format!(
                        "the user already has {active} devices, the most the policy allows"
                    ))
                    .into());
                }
                let st = tx
                    .prepare_cached(&format!(
                        "INSERT INTO devices ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
                    ))
                    .await?;
                tx.execute(
                    &st,
                    &[
                        &d.aor,
                        &d.id,
                        &d.name,
                        &d.fingerprint,
                        &d.serial,
                        &d.certificate,
                        &d.issued_at,
                        &d.expires_at,
                        &d.revoked_at,
                        &d.revoked_reason,
                        &d.last_seen,
                        &d.user_agent,
                    ],
                )
                .await
                .map_err(|e| match e.code() {
                    Some(c) if *c == tokio_postgres::error::SqlState::UNIQUE_VIOLATION => {
                        StoreError::Conflict("a device with this id or certificate exists".into()).into()
                    }
                    _ => super::E::from(e),
                })?;
                Ok(())
            })
        })
        .await
    }

    async fn devices(&self, aor: &str) -> Result<Vec<DeviceRow>> {
        let aor = aor.to_owned();
        self.read(|c| {
            Box::pin(async move {
                let st = c
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM devices WHERE aor = $1 ORDER BY issued_at DESC, id COLLATE \"C\""
                    ))
                    .await?;
                let rows = c.query(&st, &[&aor]).await?;
                Ok(rows.iter().map(row).collect::<Pg<_>>()?)
            })
        })
        .await
    }

    async fn active_devices(&self, now: i64) -> Result<Vec<DeviceRow>> {
        self.read(|c| Box::pin(query(c, "revoked_at IS NULL AND expires_at > $1", now)))
            .await
    }

    async fn revoke_device(
        &self,
        aor: &str,
        id: &str,
        reason: &str,
        now: i64,
    ) -> Result<Option<DeviceRow>> {
        let (aor, id, reason) = (aor.to_owned(), id.to_owned(), reason.to_owned());
        self.write(|tx| {
            let (aor, id, reason) = (aor.clone(), id.clone(), reason.clone());
            Box::pin(async move {
                let st = tx
                    .prepare_cached(&format!(
                        "UPDATE devices SET revoked_at = $3, revoked_reason = $4
                         WHERE aor = $1 AND id = $2 AND revoked_at IS NULL RETURNING {COLUMNS}"
                    ))
                    .await?;
                Ok(tx
                    .query_opt(&st, &[&aor, &id, &now, &reason])
                    .await?
                    .map(|r| row(&r))
                    .transpose()?)
            })
        })
        .await
    }

    async fn revoke_devices(&self, aor: &str, reason: &str, now: i64) -> Result<Vec<DeviceRow>> {
        let (aor, reason) = (aor.to_owned(), reason.to_owned());
        self.write(|tx| {
            let (aor, reason) = (aor.clone(), reason.clone());
            Box::pin(async move { revoke_all(tx, &aor, &reason, now).await })
        })
        .await
    }

    async fn touch_device(
        &self,
        fingerprint: &str,
        seen_at: i64,
        user_agent: Option<String>,
    ) -> Result<bool> {
        let fp = fingerprint.to_owned();
        self.write(|tx| {
            let (fp, user_agent) = (fp.clone(), user_agent.clone());
            Box::pin(async move {
                let st = tx
                    .prepare_cached(
                        "UPDATE devices SET last_seen = $2, user_agent = coalesce($3, user_agent)
                         WHERE fingerprint = $1",
                    )
                    .await?;
                Ok(tx.execute(&st, &[&fp, &seen_at, &user_agent]).await? == 1)
            })
        })
        .await
    }

    async fn revoked_devices(&self, now: i64) -> Result<Vec<DeviceRow>> {
        self.read(|c| Box::pin(query(c, "revoked_at IS NOT NULL AND expires_at > $1", now)))
            .await
    }

    async fn totp(&self, aor: &str) -> Result<Option<TotpRow>> {
        let aor = aor.to_owned();
        self.read(|c| {
            Box::pin(async move {
                let r = c
                    .query_opt(
                        "SELECT t.secret, t.pending, t.last_step FROM users u
                         LEFT JOIN totp t ON t.aor = u.aor WHERE u.aor = $1",
                        &[&aor],
                    )
                    .await?;
                Ok(r.map(|r| {
                    Ok::<_, tokio_postgres::Error>(TotpRow {
                        secret: r.try_get(0)?,
                        pending: r.try_get(1)?,
                        last_step: r.try_get(2)?,
                    })
                })
                .transpose()?)
            })
        })
        .await
    }

    async fn set_totp_pending(&self, aor: &str, sealed: Vec<u8>) -> Result<bool> {
        let aor = aor.to_owned();
        self.write(|tx| {
            let (aor, sealed) = (aor.clone(), sealed.clone());
            Box::pin(async move {
                Ok(tx
                    .execute(
                        "INSERT INTO totp (aor, pending) SELECT aor, $2 FROM users WHERE aor = $1
                         ON CONFLICT (aor) DO UPDATE SET pending = excluded.pending",
                        &[&aor, &sealed],
                    )
                    .await?
                    == 1)
            })
        })
        .await
    }

    async fn confirm_totp(&self, aor: &str, pending: Vec<u8>, step: i64) -> Result<bool> {
        let aor = aor.to_owned();
        self.write(|tx| {
            let (aor, pending) = (aor.clone(), pending.clone());
            Box::pin(async move {
                Ok(tx
                    .execute(
                        "UPDATE totp SET secret = pending, pending = NULL, last_step = $2
                         WHERE aor = $1 AND pending = $3",
                        &[&aor, &step, &pending],
                    )
                    .await?
                    == 1)
            })
        })
        .await
    }

    async fn use_totp_step(&self, aor: &str, step: i64) -> Result<bool> {
        let aor = aor.to_owned();
        self.write(|tx| {
            let aor = aor.clone();
            Box::pin(async move {
                Ok(tx
                    .execute(
                        "UPDATE totp SET last_step = $2
                         WHERE aor = $1 AND secret IS NOT NULL AND (last_step IS NULL OR last_step < $2)",
                        &[&aor, &step],
                    )
                    .await?
                    == 1)
            })
        })
        .await
    }

    async fn remove_totp(&self, aor: &str) -> Result<bool> {
        let aor = aor.to_owned();
        self.write(|tx| {
            let aor = aor.clone();
            Box::pin(async move {
                Ok(tx
                    .execute("DELETE FROM totp WHERE aor = $1", &[&aor])
                    .await?
                    == 1)
            })
        })
        .await
    }

    async fn add_enrollment_code(&self, e: EnrollmentCodeRow) -> Result<()> {
        self.write(|tx| {
            let e = e.clone();
            Box::pin(async move {
                let n = tx
                    .execute(
                        "INSERT INTO enrollment_codes (hash, aor, created_by, created_at, expires_at)
                         SELECT $1, aor, $3, $4, $5 FROM users WHERE aor = $2",
                        &[&e.hash, &e.aor, &e.created_by, &e.created_at, &e.expires_at],
                    )
                    .await?;
                if n == 1 {
                    Ok(())
                } else {
                    Err(StoreError::Conflict(format!("no user {}", e.aor)).into())
                }
            })
        })
        .await
    }

    async fn use_enrollment_code(&self, aor: &str, hash: Vec<u8>, now: i64) -> Result<bool> {
        let aor = aor.to_owned();
        self.write(|tx| {
            let (aor, hash) = (aor.clone(), hash.clone());
            Box::pin(async move {
                tx.execute(
                    "DELETE FROM enrollment_codes WHERE expires_at <= $1",
                    &[&now],
                )
                .await?;
                Ok(tx
                    .execute(
                        "DELETE FROM enrollment_codes WHERE hash = $1 AND aor = $2",
                        &[&hash, &aor],
                    )
                    .await?
                    == 1)
            })
        })
        .await
    }
}
