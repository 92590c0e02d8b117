//! Following the change log (schema 3): what every other node changed,
//! in commit-safe order, nothing missed.
//!
//! Positions are handed out when a row is written, not when its
//! transaction commits, so a follower that only remembered the last
//! position it read would skip a change whose transaction committed late.
//! The log records each change's transaction id instead. In one snapshot,
//! every transaction below the snapshot's `xmin` has ended, so its changes
//! are visible if it committed (and in every later snapshot). A poll reads
//! the changes of transactions from the previous poll's `xmin` on
//! (re-reading the few it has already seen, which it recognises by
//! position), then moves to the `xmin` of its first statement's snapshot:
//! a transaction still open then has an id at or above it and is read by
//! a later poll. A connection lost between polls loses nothing:
//! the state is these two values, kept by the follower.

use std::collections::HashMap;

use super::{describe, Postgres};
use store::{Result, StoreError};

/// One change: the table and the key of the row that changed (an address
/// of record for most, a subscription's id, a policy kind).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub pos: i64,
    pub kind: String,
    pub key: String,
    /// The node whose write it was ('' for a process that joined no pool).
    pub node: String,
    /// Microseconds between its write and this read, by the database's
    /// clock.
    pub age_us: u64,
}

/// A follower's place in the log.
#[derive(Debug, Clone)]
pub struct Feed {
    /// Changes of transactions from this id on may still be unread.
    xmin: u64,
    /// Changes already handed out whose transaction is at or above `xmin`
    /// (position → transaction id).
    seen: HashMap<i64, u64>,
}

/// Deletes the changes older than $1 milliseconds by the server's clock.
pub(crate) const PRUNE: &str = "DELETE FROM changes
    WHERE at < (extract(epoch FROM clock_timestamp()) * 1000)::bigint - $1";

/// Changes read per round trip within a poll.
const PAGE: i64 = 1000;
/// Changes a follower may have handed out and still be watching at once;
/// beyond (a transaction left open for very long while thousands of
/// others change things), the poll fails and the follower must reload.
const MAX_SEEN: usize = 100_000;

fn db(what: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError {
    move |e| super::store_error(super::E::Pg(e)).with_context(what)
}

trait Context {
    fn with_context(self, what: &str) -> StoreError;
}

impl Context for StoreError {
    fn with_context(self, what: &str) -> StoreError {
        match self {
            StoreError::Db(m) => StoreError::Db(format!("{what}: {m}")),
            other => other,
        }
    }
}

fn xid(text: &str) -> Result<u64> {
    text.parse()
        .map_err(|_| StoreError::Db(format!("a transaction id that is not a number: {text}")))
}

impl Postgres {
    /// Where a follower starts: the changes visible now are taken as
    /// applied (a node loads its caches in the same moment, or reloads
    /// them after this). Call it before loading, so that nothing written
    /// between the two is skipped (it is read again, harmlessly).
    pub async fn feed_start(&self) -> Result<Feed> {
        let mut feed = Feed {
            xmin: 0,
            seen: HashMap::new(),
        };
        // The first poll from xmin 0 would hand out the whole log: take
        // this snapshot's xmin and what is visible at or above it.
        let object = self
            .pool
            .get()
            .await
            .map_err(|e| super::store_error(e.into()))?;
        let row = object
            .query_one("SELECT pg_snapshot_xmin(pg_current_snapshot())::text", &[])
            .await
            .map_err(db("change log"))?;
        let xmin = xid(&row.try_get::<_, String>(0).map_err(db("change log"))?)?;
        feed.xmin = xmin;
        // Changes of transactions from xmin on that are visible now were
        // applied by whatever was loaded after this call.
        self.poll_into(&mut feed).await?;
        Ok(feed)
    }

    /// The changes committed since the last poll (or since the start),
    /// each once, in position order.
    pub async fn feed_poll(&self, feed: &mut Feed) -> Result<Vec<Change>> {
        self.poll_into(feed).await
    }

    /// [`Postgres::feed_start`] for the follower this handle keeps (the
    /// store's own, shared by its clones).
    pub(crate) async fn follow_start_shared(&self) -> Result<()> {
        let own = self.node.as_ref().map(|n| n.id.clone()).unwrap_or_default();
        self.wake.start(&self.target, own);
        let feed = self.feed_start().await?;
        *self.feed.lock().await = Some(feed);
        Ok(())
    }

    /// The other nodes' changes since the last call, from the follower
    /// [`Postgres::follow_start_shared`] started (none before it).
    pub(crate) async fn followed(&self) -> Result<Vec<store::Change>> {
        let mut guard = self.feed.lock().await;
        let Some(feed) = guard.as_mut() else {
            return Ok(Vec::new());
        };
        let own = self.node.as_ref().map(|n| n.id.as_str()).unwrap_or("");
        let read = self.poll_into(feed).await?;
        if let (Some(n), Some(pos)) = (&self.node, read.iter().map(|c| c.pos).max()) {
            n.report_change(pos);
        }
        Ok(read
            .into_iter()
            .filter(|c| c.node != own)
            .map(|c| store::Change {
                kind: c.kind,
                key: c.key,
                age_us: c.age_us,
            })
            .collect())
    }

    async fn poll_into(&self, feed: &mut Feed) -> Result<Vec<Change>> {
        let object = self
            .pool
            .get()
            .await
            .map_err(|e| super::store_error(e.into()))?;
        // One statement, one snapshot, one round trip (a transaction of
        // four statements before: half the statements the followers sent
        // in bench/pool.sh): the snapshot's xmin and the first page of the
        // changes of transactions from the feed's xmin on. Later pages
        // (more than PAGE changes) are read by later statements, with later
        // snapshots: a transaction they see that the first did not has an
        // id at or above the first's xmin, so moving to that xmin skips
        // nothing (it is read again, and recognised, by the next poll).
        let page = object
            .prepare_cached(
                // The transactions' changes first, by the xid index (few
                // rows), then ordered: with ORDER BY pos ... LIMIT alone the
                // planner walked the primary key from the first position,
                // the whole log, at every poll (3.5 ms a poll with 30,000
                // rows, the database's largest cost in bench/pool.sh).
                "WITH snap AS MATERIALIZED (
                    SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xmin
                 ), since AS MATERIALIZED (
                    SELECT pos, xid, kind, key, node, at FROM changes
                    WHERE xid >= $1::text::xid8
                 ), page AS (
                    SELECT pos, xid::text AS xid, kind, key, node,
                           (extract(epoch FROM clock_timestamp()) * 1000000)::bigint - at * 1000 AS age
                    FROM since WHERE pos > $2 ORDER BY pos LIMIT $3
                 )
                 SELECT snap.xmin, page.pos, page.xid, page.kind, page.key, page.node, page.age
                 FROM snap LEFT JOIN page ON true ORDER BY page.pos",
            )
            .await
            .map_err(db("change log"))?;
        let from = feed.xmin.to_string();
        let mut after = 0i64;
        let mut out = Vec::new();
        let mut now_xmin = None;
        loop {
            let rows = object
                .query(&page, &[&from, &after, &PAGE])
                .await
                .map_err(db("change log"))?;
            let mut read = 0i64;
            for r in &rows {
                if now_xmin.is_none() {
                    now_xmin = Some(xid(r.try_get::<_, &str>(0).map_err(db("change log"))?)?);
                }
                let Some(pos) = r.try_get::<_, Option<i64>>(1).map_err(db("change log"))? else {
                    continue;
                };
                read += 1;
                after = pos;
                if feed.seen.contains_key(&pos) {
                    continue;
                }
                let x = xid(r.try_get::<_, &str>(2).map_err(db("change log"))?)?;
                feed.seen.insert(pos, x);
                out.push(Change {
                    pos,
                    kind: r.try_get(3).map_err(db("change log"))?,
                    key: r.try_get(4).map_err(db("change log"))?,
                    node: r.try_get(5).map_err(db("change log"))?,
                    age_us: u64::try_from(r.try_get::<_, i64>(6).map_err(db("change log"))?)
                        .unwrap_or(0),
                });
            }
            if read < PAGE {
                break;
            }
        }
        // Transactions below the first snapshot's xmin have all ended and
        // been read.
        if let Some(x) = now_xmin {
            feed.xmin = feed.xmin.max(x);
        }
        let floor = feed.xmin;
        feed.seen.retain(|_, x| *x >= floor);
        if feed.seen.len() > MAX_SEEN {
            return Err(StoreError::Db(format!(
                "the change log follower holds {} changes of transactions still open; reload",
                feed.seen.len()
            )));
        }
        Ok(out)
    }

    /// Forgets the changes older than `kept` (by the database server's
    /// clock); every follower must have read them (nodes poll every few
    /// hundred milliseconds; a node that was away longer reloads). The
    /// serving node does this every minute with [`crate::CHANGES_KEPT`].
    pub async fn prune_changes(&self, kept: std::time::Duration) -> Result<usize> {
        let object = self
            .pool
            .get()
            .await
            .map_err(|e| super::store_error(e.into()))?;
        let n = object
            .execute(PRUNE, &[&super::big(kept.as_millis())])
            .await
            .map_err(|e| StoreError::Db(format!("change log: {}", describe(&e))))?;
        Ok(super::count(n))
    }
}
