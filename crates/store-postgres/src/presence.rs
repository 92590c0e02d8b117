//! Publications and subscriptions on PostgreSQL.

use tokio_postgres::Row;

use super::{count, lines, Pg, Postgres};
use store::{PresenceState, PublicationRow, Result, SubscriptionRow};

fn publication(r: &Row) -> Pg<PublicationRow> {
    Ok(PublicationRow {
        etag: r.try_get(0)?,
        aor: r.try_get(1)?,
        expires_at: r.try_get(2)?,
        document: r.try_get(3)?,
    })
}

const SUBSCRIPTION_COLUMNS: &str = "id, event, watcher, resource, call_id, remote_tag, from_value, to_value, remote_target, route_set, source, event_id, local_cseq, remote_cseq, expires_at, node";

/// Route values are stored one per line; a header value cannot hold a newline.
fn subscription(r: &Row) -> Pg<SubscriptionRow> {
    let cseq = |i: usize| -> Pg<u32> { Ok(u32::try_from(r.try_get::<_, i64>(i)?).unwrap_or(0)) };
    Ok(SubscriptionRow {
        id: r.try_get(0)?,
        event: r.try_get(1)?,
        watcher: r.try_get(2)?,
        resource: r.try_get(3)?,
        call_id: r.try_get(4)?,
        remote_tag: r.try_get(5)?,
        from_value: r.try_get(6)?,
        to_value: r.try_get(7)?,
        remote_target: r.try_get(8)?,
        route_set: lines(r.try_get(9)?),
        source: r.try_get(10)?,
        event_id: r.try_get(11)?,
        local_cseq: cseq(12)?,
        remote_cseq: cseq(13)?,
        expires_at: r.try_get(14)?,
        node: r.try_get(15)?,
    })
}

impl PresenceState for Postgres {
    async fn put_publication(&self, p: PublicationRow, replaces: Option<String>) -> Result<()> {
        self.write(|tx| {
            let (p, replaces) = (p.clone(), replaces.clone());
            Box::pin(async move {
                if let Some(old) = replaces.filter(|o| *o != p.etag) {
                    let st = tx
                        .prepare_cached("DELETE FROM presence_publications WHERE etag = $1")
                        .await?;
                    tx.execute(&st, &[&old]).await?;
                }
                let st = tx
                    .prepare_cached(
                        "INSERT INTO presence_publications (etag, aor, expires_at, document)
                         VALUES ($1, $2, $3, $4)
                         ON CONFLICT (etag) DO UPDATE SET expires_at = excluded.expires_at,
                            document = excluded.document",
                    )
                    .await?;
                tx.execute(&st, &[&p.etag, &p.aor, &p.expires_at, &p.document])
                    .await?;
                Ok(())
            })
        })
        .await
    }

    async fn remove_publication(&self, etag: &str) -> Result<bool> {
        let etag = etag.to_owned();
        self.write(|tx| {
            let etag = etag.clone();
            Box::pin(async move {
                let st = tx
                    .prepare_cached("DELETE FROM presence_publications WHERE etag = $1")
                    .await?;
                Ok(tx.execute(&st, &[&etag]).await? == 1)
            })
        })
        .await
    }

    async fn publications_of(&self, aor: &str, now: i64) -> Result<Vec<PublicationRow>> {
        let aor = aor.to_owned();
        self.read(|c| {
            let aor = aor.clone();
            Box::pin(async move {
                let rows = c
                    .query(
                        "SELECT etag, aor, expires_at, document FROM presence_publications
                         WHERE aor = $1 AND expires_at > $2 ORDER BY etag COLLATE \"C\"",
                        &[&aor, &now],
                    )
                    .await?;
                Ok(rows.iter().map(publication).collect::<Pg<_>>()?)
            })
        })
        .await
    }

    async fn live_publications(&self, now: i64) -> Result<Vec<PublicationRow>> {
        self.read(|c| {
            Box::pin(async move {
                let rows = c
                    .query(
                        "SELECT etag, aor, expires_at, document FROM presence_publications
                         WHERE expires_at > $1 ORDER BY aor COLLATE \"C\", etag COLLATE \"C\"",
                        &[&now],
                    )
                    .await?;
                Ok(rows.iter().map(publication).collect::<Pg<_>>()?)
            })
        })
        .await
    }

    async fn put_subscription(&self, s: SubscriptionRow) -> Result<()> {
        self.write(|tx| {
            let s = s.clone();
            Box::pin(async move {
                let st = tx
                    .prepare_cached(&format!(
                        "INSERT INTO subscriptions ({SUBSCRIPTION_COLUMNS})
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
                         ON CONFLICT (id) DO UPDATE SET remote_target = excluded.remote_target,
                            source = excluded.source, local_cseq = excluded.local_cseq,
                            remote_cseq = excluded.remote_cseq, expires_at = excluded.expires_at,
                            node = excluded.node"
                    ))
                    .await?;
                tx.execute(
                    &st,
                    &[
                        &s.id,
                        &s.event,
                        &s.watcher,
                        &s.resource,
                        &s.call_id,
                        &s.remote_tag,
                        &s.from_value,
                        &s.to_value,
                        &s.remote_target,
                        &s.route_set.join("\n"),
                        &s.source,
                        &s.event_id,
                        &i64::from(s.local_cseq),
                        &i64::from(s.remote_cseq),
                        &s.expires_at,
                        &s.node,
                    ],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn remove_subscription(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.write(|tx| {
            let id = id.clone();
            Box::pin(async move {
                let st = tx
                    .prepare_cached("DELETE FROM subscriptions WHERE id = $1")
                    .await?;
                Ok(tx.execute(&st, &[&id]).await? == 1)
            })
        })
        .await
    }

    async fn remove_subscriptions(&self, ids: Vec<String>) -> Result<usize> {
        let me = self
            .node
            .as_ref()
            .map_or_else(String::new, |n| n.id.clone());
        self.write(|tx| {
            let (ids, me) = (ids.clone(), me.clone());
            Box::pin(async move {
                let n = tx
                    .execute(
                        "DELETE FROM subscriptions WHERE id = ANY($1) AND node IN ($2, '')",
                        &[&ids, &me],
                    )
                    .await?;
                Ok(count(n))
            })
        })
        .await
    }

    async fn live_subscriptions(&self, now: i64) -> Result<Vec<SubscriptionRow>> {
        self.read(|c| {
            Box::pin(async move {
                let rows = c
                    .query(
                        &format!(
                            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE expires_at > $1 ORDER BY id COLLATE \"C\""
                        ),
                        &[&now],
                    )
                    .await?;
                Ok(rows.iter().map(subscription).collect::<Pg<_>>()?)
            })
        })
        .await
    }

    async fn subscription(&self, id: &str, now: i64) -> Result<Option<SubscriptionRow>> {
        let id = id.to_owned();
        self.read(|c| {
            Box::pin(async move {
                let row = c
                    .query_opt(
                        &format!(
                            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = $1 AND expires_at > $2"
                        ),
                        &[&id, &now],
                    )
                    .await?;
                Ok(row.as_ref().map(subscription).transpose()?)
            })
        })
        .await
    }

    async fn claim_subscriptions(&self, now: i64, limit: usize) -> Result<Vec<SubscriptionRow>> {
        let Some(me) = self.node.as_ref().map(|n| n.id.clone()) else {
            return Ok(Vec::new());
        };
        // Fenced as every write: a node declared dead itself claims
        // nothing.
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.write(|tx| {
            let me = me.clone();
            Box::pin(async move {
                // Rows of nodes no longer serving, of no node (written
                // before the pool's nodes all served: the standby mode, a
                // single server moved here) or of a node the table no
                // longer lists. SKIP LOCKED: nodes claiming at once each
                // take other rows.
                let rows = tx
                    .query(
                        &format!(
                            "UPDATE subscriptions SET node = $1
                             WHERE id IN (
                                SELECT id FROM subscriptions
                                WHERE node <> $1
                                  AND NOT EXISTS (SELECT 1 FROM nodes n
                                                  WHERE n.id = subscriptions.node AND n.state = 'serving')
                                  AND expires_at > $2
                                LIMIT $3 FOR UPDATE SKIP LOCKED)
                             RETURNING {SUBSCRIPTION_COLUMNS}"
                        ),
                        &[&me, &now, &limit],
                    )
                    .await?;
                Ok(rows.iter().map(subscription).collect::<Pg<_>>()?)
            })
        })
        .await
    }

    async fn purge_expired_presence(&self, now: i64) -> Result<usize> {
        self.write(|tx| {
            Box::pin(async move {
                let a = tx
                    .execute(
                        "DELETE FROM presence_publications WHERE expires_at <= $1",
                        &[&now],
                    )
                    .await?;
                let b = tx
                    .execute("DELETE FROM subscriptions WHERE expires_at <= $1", &[&now])
                    .await?;
                Ok(count(a + b))
            })
        })
        .await
    }
}
