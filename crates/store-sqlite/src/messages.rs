//! Pending instant messages on SQLite.

use rusqlite::{params, OptionalExtension, Row};

use super::{db, Sqlite};
use store::{Enqueued, Messages, PendingMessage, Result};

fn row(r: &Row<'_>) -> rusqlite::Result<PendingMessage> {
    Ok(PendingMessage {
        id: r.get(0)?,
        recipient: r.get(1)?,
        sender: r.get(2)?,
        content_type: r.get(3)?,
        body: r.get(4)?,
        received_at: r.get(5)?,
        expires_at: r.get(6)?,
        message_id: r.get(7)?,
    })
}

impl Messages for Sqlite {
    async fn enqueue_message(&self, m: PendingMessage) -> Result<Enqueued> {
        self.write(move |c| {
            if let Some(mid) = &m.message_id {
                let seen: Option<i64> = c
                    .prepare_cached(
                        "SELECT pending_id FROM message_ids
                         WHERE recipient = ?1 AND sender = ?2 AND message_id = ?3",
                    )
                    .and_then(|mut st| {
                        st.query_row(params![m.recipient, m.sender, mid], |r| r.get(0))
                            .optional()
                    })
                    .map_err(db)?;
                if let Some(id) = seen {
                    return Ok(Enqueued { id, new: false });
                }
            }
            let id: i64 = c
                .prepare_cached(
                    "INSERT INTO pending_messages (recipient, sender, content_type, body, received_at, expires_at, message_id)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
                )
                .and_then(|mut st| {
                    st.query_row(
                        params![m.recipient, m.sender, m.content_type, m.body, m.received_at, m.expires_at, m.message_id],
                        |r| r.get(0),
                    )
                })
                .map_err(db)?;
            if let Some(mid) = &m.message_id {
                c.prepare_cached(
                    "INSERT INTO message_ids (recipient, sender, message_id, pending_id, expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .and_then(|mut st| st.execute(params![m.recipient, m.sender, mid, id, m.expires_at]))
                .map_err(db)?;
            }
            Ok(Enqueued { id, new: true })
        })
        .await
    }

    async fn pending_messages(&self, recipient: &str, limit: usize) -> Result<Vec<PendingMessage>> {
        let recipient = recipient.to_owned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.call(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT id, recipient, sender, content_type, body, received_at, expires_at, message_id
                     FROM pending_messages WHERE recipient = ?1 ORDER BY id LIMIT ?2",
                )
                .map_err(db)?;
            let rows = stmt.query_map(params![recipient, limit], row).map_err(db)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db)
        })
        .await
    }

    async fn delete_message(&self, id: i64) -> Result<bool> {
        self.write(move |c| {
            c.prepare_cached("DELETE FROM pending_messages WHERE id = ?1")
                .and_then(|mut st| st.execute([id]))
                .map(|n| n == 1)
                .map_err(db)
        })
        .await
    }

    async fn pending_recipients(&self) -> Result<Vec<(String, u64)>> {
        self.call(|c| {
            let mut stmt = c
                .prepare("SELECT recipient, COUNT(*) FROM pending_messages GROUP BY recipient")
                .map_err(db)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                    ))
                })
                .map_err(db)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db)
        })
        .await
    }

    async fn pending_count(&self, recipient: &str) -> Result<usize> {
        let recipient = recipient.to_owned();
        self.call(move |c| {
            c.query_row(
                "SELECT COUNT(*) FROM pending_messages WHERE recipient = ?1",
                [recipient],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| usize::try_from(n).unwrap_or(0))
            .map_err(db)
        })
        .await
    }

    async fn purge_expired_messages(&self, now: i64) -> Result<usize> {
        self.write(move |c| {
            c.execute("DELETE FROM message_ids WHERE expires_at <= ?1", [now])
                .map_err(db)?;
            c.execute("DELETE FROM pending_messages WHERE expires_at <= ?1", [now])
                .map_err(db)
        })
        .await
    }
}
