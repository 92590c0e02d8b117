//! Users' devices, TOTP second factors and enrollment codes on SQLite.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{db, Sqlite};
use store::{DeviceRow, Devices, EnrollmentCodeRow, Result, StoreError, TotpRow};

const COLUMNS: &str = "aor, id, name, fingerprint, serial, certificate, issued_at, expires_at, revoked_at, revoked_reason, last_seen, user_agent";

fn row(r: &Row<'_>) -> rusqlite::Result<DeviceRow> {
    Ok(DeviceRow {
        aor: r.get(0)?,
        id: r.get(1)?,
        name: r.get(2)?,
        fingerprint: r.get(3)?,
        serial: r.get(4)?,
        certificate: r.get(5)?,
        issued_at: r.get(6)?,
        expires_at: r.get(7)?,
        revoked_at: r.get(8)?,
        revoked_reason: r.get(9)?,
        last_seen: r.get(10)?,
        user_agent: r.get(11)?,
    })
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn query(c: &Connection, sql: &str, args: impl rusqlite::Params) -> Result<Vec<DeviceRow>> {
    let mut st = c.prepare_cached(sql).map_err(db)?;
    let rows = st
        .query_map(args, row)
        .map_err(db)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db);
    rows
}

/// Revokes every device of `aor` not yet revoked, inside the caller's
/// transaction (a disabled account, a new password); returns them.
pub(crate) fn revoke_all(
    c: &Connection,
    aor: &str,
    reason: &str,
    at: i64,
) -> Result<Vec<DeviceRow>> {
    let rows = query(
        c,
        &format!("SELECT {COLUMNS} FROM devices WHERE aor = ?1 AND revoked_at IS NULL"),
        [aor],
    )?;
    c.prepare_cached(
        "UPDATE devices SET revoked_at = ?2, revoked_reason = ?3
         WHERE aor = ?1 AND revoked_at IS NULL",
    )
    .and_then(|mut st| st.execute(params![aor, at, reason]))
    .map_err(db)?;
    Ok(rows
        .into_iter()
        .map(|mut d| {
            d.revoked_at = Some(at);
            d.revoked_reason = Some(reason.to_owned());
            d
        })
        .collect())
}

impl Devices for Sqlite {
    async fn add_device(
        &self,
        d: DeviceRow,
        max_active: usize,
        session: Option<String>,
    ) -> Result<()> {
        let max = i64::try_from(max_active).unwrap_or(i64::MAX);
        self.write(move |c| {
            let enabled: Option<bool> = c
                .query_row("SELECT enabled FROM users WHERE aor = ?1", [&d.aor], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(db)?;
            match enabled {
                None => return Err(StoreError::Conflict(format!("no user {}", d.aor))),
                Some(false) => {
                    return Err(StoreError::Conflict(format!("user {} is disabled", d.aor)))
                }
                Some(true) => {}
            }
            if let Some(id) = session {
                let live: Option<i64> = c
                    .query_row(
                        "SELECT 1 FROM user_sessions WHERE id = ?1 AND aor = ?2",
                        params![id, d.aor],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(db)?;
                if live.is_none() {
                    return Err(StoreError::Conflict("the sign-in session has ended".into()));
                }
            }
            let active: i64 = c
                .query_row(
                    "SELECT count(*) FROM devices
                     WHERE aor = ?1 AND revoked_at IS NULL AND expires_at > ?2",
                    params![d.aor, d.issued_at],
                    |r| r.get(0),
                )
                .map_err(db)?;
            if active >= max {
                return Err(StoreError::Conflict(format!(
                    "the user already has {active} devices, the most the policy allows"
                )));
            }
            c.prepare_cached(&format!(
                "INSERT INTO devices ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
            ))
            .and_then(|mut st| {
                st.execute(params![
                    d.aor,
                    d.id,
                    d.name,
                    d.fingerprint,
                    d.serial,
                    d.certificate,
                    d.issued_at,
                    d.expires_at,
                    d.revoked_at,
                    d.revoked_reason,
                    d.last_seen,
                    d.user_agent
                ])
            })
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    StoreError::Conflict("a device with this id or certificate exists".into())
                }
                e => db(e),
            })?;
            Ok(())
        })
        .await
    }

    async fn devices(&self, aor: &str) -> Result<Vec<DeviceRow>> {
        let aor = aor.to_owned();
        self.call(move |c| {
            query(
                c,
                &format!(
                    "SELECT {COLUMNS} FROM devices WHERE aor = ?1 ORDER BY issued_at DESC, id"
                ),
                [aor],
            )
        })
        .await
    }

    async fn active_devices(&self, now: i64) -> Result<Vec<DeviceRow>> {
        self.call(move |c| {
            query(
                c,
                &format!(
                    "SELECT {COLUMNS} FROM devices WHERE revoked_at IS NULL AND expires_at > ?1"
                ),
                [now],
            )
        })
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
        self.write(move |c| {
            let n = c
                .prepare_cached(
                    "UPDATE devices SET revoked_at = ?3, revoked_reason = ?4
                     WHERE aor = ?1 AND id = ?2 AND revoked_at IS NULL",
                )
                .and_then(|mut st| st.execute(params![aor, id, now, reason]))
                .map_err(db)?;
            if n == 0 {
                return Ok(None);
            }
            Ok(query(
                c,
                &format!("SELECT {COLUMNS} FROM devices WHERE aor = ?1 AND id = ?2"),
                params![aor, id],
            )?
            .pop())
        })
        .await
    }

    async fn revoke_devices(&self, aor: &str, reason: &str, now: i64) -> Result<Vec<DeviceRow>> {
        let (aor, reason) = (aor.to_owned(), reason.to_owned());
        self.write(move |c| revoke_all(c, &aor, &reason, now)).await
    }

    async fn touch_device(
        &self,
        fingerprint: &str,
        seen_at: i64,
        user_agent: Option<String>,
    ) -> Result<bool> {
        let fp = fingerprint.to_owned();
        self.write(move |c| {
            c.prepare_cached(
                "UPDATE devices SET last_seen = ?2, user_agent = coalesce(?3, user_agent)
                 WHERE fingerprint = ?1",
            )
            .and_then(|mut st| st.execute(params![fp, seen_at, user_agent]))
            .map(|n| n == 1)
            .map_err(db)
        })
        .await
    }

    async fn revoked_devices(&self, now: i64) -> Result<Vec<DeviceRow>> {
        self.call(move |c| {
            query(
                c,
                &format!(
                    "SELECT {COLUMNS} FROM devices WHERE revoked_at IS NOT NULL AND expires_at > ?1"
                ),
                [now],
            )
        })
        .await
    }

    async fn totp(&self, aor: &str) -> Result<Option<TotpRow>> {
        let aor = aor.to_owned();
        self.call(move |c| {
            c.query_row(
                "SELECT t.secret, t.pending, t.last_step FROM users u
                 LEFT JOIN totp t ON t.aor = u.aor WHERE u.aor = ?1",
                [aor],
                |r| {
                    Ok(TotpRow {
                        secret: r.get(0)?,
                        pending: r.get(1)?,
                        last_step: r.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(db)
        })
        .await
    }

    async fn set_totp_pending(&self, aor: &str, sealed: Vec<u8>) -> Result<bool> {
        let aor = aor.to_owned();
        self.write(move |c| {
            c.execute(
                "INSERT INTO totp (aor, pending) SELECT aor, ?2 FROM users WHERE aor = ?1
                 ON CONFLICT (aor) DO UPDATE SET pending = excluded.pending",
                params![aor, sealed],
            )
            .map(|n| n == 1)
            .map_err(db)
        })
        .await
    }

    async fn confirm_totp(&self, aor: &str, pending: Vec<u8>, step: i64) -> Result<bool> {
        let aor = aor.to_owned();
        self.write(move |c| {
            c.execute(
                "UPDATE totp SET secret = pending, pending = NULL, last_step = ?2
                 WHERE aor = ?1 AND pending = ?3",
                params![aor, step, pending],
            )
            .map(|n| n == 1)
            .map_err(db)
        })
        .await
    }

    async fn use_totp_step(&self, aor: &str, step: i64) -> Result<bool> {
        let aor = aor.to_owned();
        self.write(move |c| {
            c.execute(
                "UPDATE totp SET last_step = ?2
                 WHERE aor = ?1 AND secret IS NOT NULL AND (last_step IS NULL OR last_step < ?2)",
                params![aor, step],
            )
            .map(|n| n == 1)
            .map_err(db)
        })
        .await
    }

    async fn remove_totp(&self, aor: &str) -> Result<bool> {
        let aor = aor.to_owned();
        self.write(move |c| {
            c.execute("DELETE FROM totp WHERE aor = ?1", [aor])
                .map(|n| n == 1)
                .map_err(db)
        })
        .await
    }

    async fn add_enrollment_code(&self, e: EnrollmentCodeRow) -> Result<()> {
        self.write(move |c| {
            c.execute(
                "INSERT INTO enrollment_codes (hash, aor, created_by, created_at, expires_at)
                 SELECT ?1, aor, ?3, ?4, ?5 FROM users WHERE aor = ?2",
                params![e.hash, e.aor, e.created_by, e.created_at, e.expires_at],
            )
            .map_err(db)
            .and_then(|n| {
                if n == 1 {
                    Ok(())
                } else {
                    Err(StoreError::Conflict(format!("no user {}", e.aor)))
                }
            })
        })
        .await
    }

    async fn use_enrollment_code(&self, aor: &str, hash: Vec<u8>, now: i64) -> Result<bool> {
        let aor = aor.to_owned();
        self.write(move |c| {
            c.execute("DELETE FROM enrollment_codes WHERE expires_at <= ?1", [now])
                .map_err(db)?;
            c.execute(
                "DELETE FROM enrollment_codes WHERE hash = ?1 AND aor = ?2",
                params![hash, aor],
            )
            .map(|n| n == 1)
            .map_err(db)
        })
        .await
    }
}
