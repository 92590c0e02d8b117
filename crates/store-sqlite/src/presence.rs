//! Publications and subscriptions on SQLite.

use rusqlite::{params, OptionalExtension, Row};

use super::{db, Sqlite};
use store::{PresenceState, PublicationRow, Result, SubscriptionRow};

fn publication(r: &Row<'_>) -> rusqlite::Result<PublicationRow> {
    Ok(PublicationRow {
        etag: r.get(0)?,
        aor: r.get(1)?,
        expires_at: r.get(2)?,
        document: r.get(3)?,
    })
}

/// Route values are stored one per line; a header value cannot hold a newline.
fn subscription(r: &Row<'_>) -> rusqlite::Result<SubscriptionRow> {
    let routes: String = r.get(9)?;
    Ok(SubscriptionRow {
        id: r.get(0)?,
        event: r.get(1)?,
        watcher: r.get(2)?,
        resource: r.get(3)?,
        call_id: r.get(4)?,
        remote_tag: r.get(5)?,
        from_value: r.get(6)?,
        to_value: r.get(7)?,
        remote_target: r.get(8)?,
        route_set: routes
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
        source: r.get(10)?,
        event_id: r.get(11)?,
        local_cseq: r.get(12)?,
        remote_cseq: r.get(13)?,
        expires_at: r.get(14)?,
        node: String::new(),
    })
}

impl PresenceState for Sqlite {
    async fn put_publication(&self, p: PublicationRow, replaces: Option<String>) -> Result<()> {
        self.write(move |c| {
            if let Some(old) = replaces.filter(|o| *o != p.etag) {
                c.prepare_cached("DELETE FROM presence_publications WHERE etag = ?1")
                    .and_then(|mut st| st.execute([old]))
                    .map_err(db)?;
            }
            c.prepare_cached(
                "INSERT INTO presence_publications (etag, aor, expires_at, document)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (etag) DO UPDATE SET expires_at = excluded.expires_at,
                    document = excluded.document",
            )
            .and_then(|mut st| st.execute(params![p.etag, p.aor, p.expires_at, p.document]))
            .map(|_| ())
            .map_err(db)
        })
        .await
    }

    async fn remove_publication(&self, etag: &str) -> Result<bool> {
        let etag = etag.to_owned();
        self.write(move |c| {
            c.prepare_cached("DELETE FROM presence_publications WHERE etag = ?1")
                .and_then(|mut st| st.execute([etag]))
                .map(|n| n == 1)
                .map_err(db)
        })
        .await
    }

    async fn publications_of(&self, aor: &str, now: i64) -> Result<Vec<PublicationRow>> {
        let aor = aor.to_owned();
        self.call(move |c| {
            let mut st = c
                .prepare_cached(
                    "SELECT etag, aor, expires_at, document FROM presence_publications
                     WHERE aor = ?1 AND expires_at > ?2 ORDER BY etag",
                )
                .map_err(db)?;
            let rows = st
                .query_map(rusqlite::params![aor, now], publication)
                .map_err(db)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db)
        })
        .await
    }

    async fn live_publications(&self, now: i64) -> Result<Vec<PublicationRow>> {
        self.call(move |c| {
            let mut st = c
                .prepare(
                    "SELECT etag, aor, expires_at, document FROM presence_publications
                     WHERE expires_at > ?1 ORDER BY aor, etag",
                )
                .map_err(db)?;
            let rows = st.query_map([now], publication).map_err(db)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db)
        })
        .await
    }

    async fn put_subscription(&self, s: SubscriptionRow) -> Result<()> {
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO subscriptions (id, event, watcher, resource, call_id, remote_tag,
                    from_value, to_value, remote_target, route_set, source, event_id,
                    local_cseq, remote_cseq, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
                 ON CONFLICT (id) DO UPDATE SET remote_target = excluded.remote_target,
                    source = excluded.source, local_cseq = excluded.local_cseq,
                    remote_cseq = excluded.remote_cseq, expires_at = excluded.expires_at",
            )
            .and_then(|mut st| {
                st.execute(params![
                    s.id,
                    s.event,
                    s.watcher,
                    s.resource,
                    s.call_id,
                    s.remote_tag,
                    s.from_value,
                    s.to_value,
                    s.remote_target,
                    s.route_set.join("\n"),
                    s.source,
                    s.event_id,
                    s.local_cseq,
                    s.remote_cseq,
                    s.expires_at
                ])
            })
            .map(|_| ())
            .map_err(db)
        })
        .await
    }

    async fn remove_subscription(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.write(move |c| {
            c.prepare_cached("DELETE FROM subscriptions WHERE id = ?1")
                .and_then(|mut st| st.execute([id]))
                .map(|n| n == 1)
                .map_err(db)
        })
        .await
    }

    async fn remove_subscriptions(&self, ids: Vec<String>) -> Result<usize> {
        self.write(move |c| {
            let mut n = 0;
            for id in &ids {
                n += c
                    .prepare_cached("DELETE FROM subscriptions WHERE id = ?1")
                    .and_then(|mut st| st.execute([id]))
                    .map_err(db)?;
            }
            Ok(n)
        })
        .await
    }

    async fn live_subscriptions(&self, now: i64) -> Result<Vec<SubscriptionRow>> {
        self.call(move |c| {
            let mut st = c
                .prepare(
                    "SELECT id, event, watcher, resource, call_id, remote_tag, from_value, to_value,
                        remote_target, route_set, source, event_id, local_cseq, remote_cseq, expires_at
                     FROM subscriptions WHERE expires_at > ?1 ORDER BY id",
                )
                .map_err(db)?;
            let rows = st.query_map([now], subscription).map_err(db)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db)
        })
        .await
    }

    async fn subscription(&self, id: &str, now: i64) -> Result<Option<SubscriptionRow>> {
        let id = id.to_owned();
        self.call(move |c| {
            c.prepare_cached(
                "SELECT id, event, watcher, resource, call_id, remote_tag, from_value, to_value,
                    remote_target, route_set, source, event_id, local_cseq, remote_cseq, expires_at
                 FROM subscriptions WHERE id = ?1 AND expires_at > ?2",
            )
            .and_then(|mut st| st.query_row(params![id, now], subscription).optional())
            .map_err(db)
        })
        .await
    }

    async fn purge_expired_presence(&self, now: i64) -> Result<usize> {
        self.write(move |c| {
            let a = c
                .execute(
                    "DELETE FROM presence_publications WHERE expires_at <= ?1",
                    [now],
                )
                .map_err(db)?;
            let b = c
                .execute("DELETE FROM subscriptions WHERE expires_at <= ?1", [now])
                .map_err(db)?;
            Ok(a + b)
        })
        .await
    }
}
