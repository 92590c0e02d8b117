//! Pending instant messages on PostgreSQL.

use tokio_postgres::Row;

use super::{big, count, Pg, Postgres};
use store::{Enqueued, Messages, PendingMessage, Result};

fn row(r: &Row) -> Pg<PendingMessage> {
    Ok(PendingMessage {
        id: r.try_get(0)?,
        recipient: r.try_get(1)?,
        sender: r.try_get(2)?,
        content_type: r.try_get(3)?,
        body: r.try_get(4)?,
        received_at: r.try_get(5)?,
        expires_at: r.try_get(6)?,
        message_id: r.try_get(7)?,
    })
}

impl Messages for Postgres {
    async fn enqueue_message(&self, m: PendingMessage) -> Result<Enqueued> {
        self.write(|tx| {
            let m = m.clone();
            Box::pin(async move {
                // With an identifier, the identifier's row is claimed
                // first (with the id the message will have): of two copies
                // at once, the second waits on it, then finds the first's.
                let mut id: Option<i64> = None;
                if let Some(mid) = &m.message_id {
                    let claim = tx
                        .prepare_cached(
                            "INSERT INTO message_ids (recipient, sender, message_id, pending_id, expires_at)
                             VALUES ($1, $2, $3, nextval(pg_get_serial_sequence('pending_messages', 'id')), $4)
                             ON CONFLICT DO NOTHING RETURNING pending_id",
                        )
                        .await?;
                    match tx
                        .query_opt(&claim, &[&m.recipient, &m.sender, mid, &m.expires_at])
                        .await?
                    {
                        Some(r) => id = Some(r.try_get(0)?),
                        None => {
                            let r = tx
                                .query_one(
                                    "SELECT pending_id FROM message_ids
                                     WHERE recipient = $1 AND sender = $2 AND message_id = $3",
                                    &[&m.recipient, &m.sender, mid],
                                )
                                .await?;
                            return Ok(Enqueued {
                                id: r.try_get(0)?,
                                new: false,
                            });
                        }
                    }
                }
                let st = tx
                    .prepare_cached(
                        "INSERT INTO pending_messages (id, recipient, sender, content_type, body, received_at, expires_at, message_id)
                         OVERRIDING SYSTEM VALUE
                         VALUES (COALESCE($1, nextval(pg_get_serial_sequence('pending_messages', 'id'))), $2, $3, $4, $5, $6, $7, $8)
                         RETURNING id",
                    )
                    .await?;
                let r = tx
                    .query_one(
                        &st,
                        &[&id, &m.recipient, &m.sender, &m.content_type, &m.body, &m.received_at, &m.expires_at, &m.message_id],
                    )
                    .await?;
                Ok(Enqueued {
                    id: r.try_get(0)?,
                    new: true,
                })
            })
        })
        .await
    }

    async fn pending_messages(&self, recipient: &str, limit: usize) -> Result<Vec<PendingMessage>> {
        let recipient = recipient.to_owned();
        let limit = big(limit);
        self.read(|c| {
            Box::pin(async move {
                let st = c
                    .prepare_cached(
                        "SELECT id, recipient, sender, content_type, body, received_at, expires_at, message_id
                         FROM pending_messages WHERE recipient = $1 ORDER BY id LIMIT $2",
                    )
                    .await?;
                let rows = c.query(&st, &[&recipient, &limit]).await?;
                Ok(rows.iter().map(row).collect::<Pg<_>>()?)
            })
        })
        .await
    }

    async fn delete_message(&self, id: i64) -> Result<bool> {
        self.write(|tx| {
            Box::pin(async move {
                let st = tx
                    .prepare_cached("DELETE FROM pending_messages WHERE id = $1")
                    .await?;
                Ok(tx.execute(&st, &[&id]).await? == 1)
            })
        })
        .await
    }

    async fn pending_recipients(&self) -> Result<Vec<(String, u64)>> {
        self.read(|c| {
            Box::pin(async move {
                let rows = c
                    .query(
                        "SELECT recipient, COUNT(*) FROM pending_messages GROUP BY recipient",
                        &[],
                    )
                    .await?;
                Ok(rows
                    .iter()
                    .map(|r| {
                        Ok((
                            r.try_get::<_, String>(0)?,
                            u64::try_from(r.try_get::<_, i64>(1)?).unwrap_or(0),
                        ))
                    })
                    .collect::<Pg<_>>()?)
            })
        })
        .await
    }

    async fn pending_count(&self, recipient: &str) -> Result<usize> {
        let recipient = recipient.to_owned();
        self.read(|c| {
            Box::pin(async move {
                let r = c
                    .query_one(
                        "SELECT COUNT(*) FROM pending_messages WHERE recipient = $1",
                        &[&recipient],
                    )
                    .await?;
                Ok(usize::try_from(r.try_get::<_, i64>(0)?).unwrap_or(0))
            })
        })
        .await
    }

    async fn purge_expired_messages(&self, now: i64) -> Result<usize> {
        self.write(|tx| {
            Box::pin(async move {
                tx.execute("DELETE FROM message_ids WHERE expires_at <= $1", &[&now])
                    .await?;
                let n = tx
                    .execute(
                        "DELETE FROM pending_messages WHERE expires_at <= $1",
                        &[&now],
                    )
                    .await?;
                Ok(count(n))
            })
        })
        .await
    }
}
