//! The nodes serving from the database: each one's lease and epoch.
//!
//! A node joins by writing its row in `nodes` with a new epoch (from a
//! sequence, so never one used before) and a lease of [`LEASE`], which it
//! renews every second on a connection of its own. Every write it makes
//! from then on first calls `parapet_fence(id, epoch)` in the same
//! transaction (pipelined with the write's own statements): the function
//! takes a shared lock on the node's epoch until the transaction ends and
//! fails (SQLSTATE `PR001`) unless the row still says `serving` under that
//! epoch. A node that finds another's lease lapsed declares it dead: it
//! takes the same lock exclusively — waiting for the writes of the old
//! node already under way — and marks the row `dead`. From then on nothing
//! the old node sends commits: a node that was stopped (SIGSTOP, a frozen
//! virtual machine, a network partition) and comes back finds its writes
//! refused and its heartbeat unanswered, and stops. Leases are measured by
//! the database's clock, so the nodes' clocks do not matter.
//!
//! A transaction a stopped node left open would hold its shared lock for
//! ever; every connection ends a transaction idle for 5 s
//! (`idle_in_transaction_session_timeout`, set in [`crate::connect`]).
//!
//! In the standby mode (the default) one node serves at a time: a node
//! starting while another holds a live lease waits, binding nothing, and
//! takes over when that lease lapses. In the active mode
//! (`pool_mode = "active"`) every node serves at once. Either way each
//! serving node's heartbeat also declares dead the nodes whose leases
//! have lapsed, so a stopped node is fenced within a lease and a second;
//! the others then stop routing to it. A node judges others only once it
//! has renewed its own lease without a break for a whole lease, so that
//! an outage of the database longer than the lease, after which every
//! lease has lapsed, does not make the first node back declare the rest
//! dead.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::watch;
use tokio_postgres::error::SqlState;

use store::{NodeRow, Result, StoreError};

use crate::{describe, store_error, E, R};

/// How long a node's lease lasts without a renewal.
pub const LEASE: Duration = Duration::from_secs(5);
/// How often a node renews it.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// The SQLSTATE `parapet_fence` raises.
const FENCED: &str = "PR001";
/// The advisory lock class of the nodes' epoch locks ("parp"), with the
/// hash of the node's id as the second key.
const CLASS: i32 = 0x7061_7270;

/// The statement every write of a node begins with.
pub(crate) const FENCE: &str = "SELECT parapet_fence($1, $2)";

/// Who this process is in the pool.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Its name, unique in the pool (`node_id`).
    pub id: String,
    /// Its SIP listeners, for `parapet admin status`.
    pub address: String,
    /// Wait as a standby while another node's lease is live; `false`:
    /// fail at once, saying which node serves.
    pub wait: bool,
    /// Serve beside the other nodes (`pool_mode = "active"`) instead of
    /// waiting for them: only a live lease under this node's own id waits.
    pub active: bool,
}

/// This process's membership, shared by every handle of the store.
pub(crate) struct Node {
    pub(crate) id: String,
    pub(crate) epoch: i64,
    fenced: Arc<watch::Sender<bool>>,
    heartbeat: tokio::task::JoinHandle<()>,
    /// The policy and users versions the node's caches hold, written with
    /// each heartbeat.
    applied: Arc<Applied>,
}

/// What a node's caches hold.
#[derive(Default)]
pub(crate) struct Applied {
    policy: AtomicI64,
    users: AtomicI64,
    /// The furthest change-log position read.
    change: AtomicI64,
    /// Wakes the heartbeat to write new versions at once: an
    /// administrator's change made through another node waits for them.
    reported: tokio::sync::Notify,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

impl Node {
    /// A receiver that turns `true` when this node learns it was declared
    /// dead (its heartbeat or a write refused).
    pub(crate) fn fenced(&self) -> watch::Receiver<bool> {
        self.fenced.subscribe()
    }

    /// The change log read up to `pos` (reported with the heartbeat).
    pub(crate) fn report_change(&self, pos: i64) {
        self.applied.change.fetch_max(pos, Ordering::Relaxed);
    }

    pub(crate) fn report_applied(&self, policy: i64, users: i64) {
        let was = (
            self.applied.policy.swap(policy, Ordering::Relaxed),
            self.applied.users.swap(users, Ordering::Relaxed),
        );
        if was != (policy, users) {
            self.applied.reported.notify_one();
        }
    }

    pub(crate) fn stop_heartbeat(&self) {
        self.heartbeat.abort();
    }

    /// A write failed: if the fence refused it, the node is no longer
    /// serving — say so to whoever watches, and fail the write as the
    /// database being unavailable here (the client tries another node).
    pub(crate) fn check(&self, e: E) -> E {
        match &e {
            E::Pg(p) if p.code().is_some_and(|c| c.code() == FENCED) => {
                if !*self.fenced.borrow() {
                    tracing::error!(node = %self.id, epoch = self.epoch, "a write was refused: another node declared this one dead after its lease lapsed");
                }
                let _ = self.fenced.send(true);
                E::Store(StoreError::Unavailable(format!(
                    "this node ({}) no longer serves: another node took over after its lease lapsed",
                    self.id
                )))
            }
            _ => e,
        }
    }
}

enum Joined {
    Epoch(i64),
    /// Another node's lease is live: (its id, milliseconds left).
    Busy(String, i64),
    /// An active node found this node serving in the standby mode.
    Mixed(String),
}

/// Joins the pool as `cfg.id`: waits while a node of the same id holds a
/// live lease — in the standby mode, while any node does — (logging it),
/// declares lapsed nodes dead, and starts the heartbeat. An unreachable
/// database fails the join.
pub(crate) async fn join(pool: &Pool, cfg: &NodeConfig) -> Result<Arc<Node>> {
    let mut waiting_for: Option<String> = None;
    let epoch = loop {
        match try_join(pool, cfg).await {
            Ok(Joined::Epoch(e)) => break e,
            Ok(Joined::Mixed(id)) => {
                return Err(StoreError::Setup(format!(
                    "node {id} serves this database in the standby mode: every node of a pool needs the same pool_mode (set pool_mode = \"active\" on node {id} too and restart it, or start this node in the standby mode)"
                )))
            }
            Ok(Joined::Busy(id, ms)) if !cfg.wait => {
                return Err(StoreError::Setup(format!(
                    "node {id} serves this database (its lease runs {ms} ms more): stop it first"
                )))
            }
            Ok(Joined::Busy(id, ms)) => {
                if waiting_for.as_deref() != Some(id.as_str()) {
                    if id == cfg.id {
                        tracing::warn!(node = %id, lease_left_ms = ms, "a node with this node_id holds a live lease: a previous run that did not stop cleanly (waiting for its lease to lapse), or another node configured with the same node_id");
                    } else {
                        tracing::warn!(serving = %id, lease_left_ms = ms, "standby: node {id} serves this database; this node takes over when its lease lapses (pool_mode = \"standby\")");
                    }
                    waiting_for = Some(id);
                }
                tokio::time::sleep(HEARTBEAT).await;
            }
            // The lapsed node's last writes did not end in time: next round.
            Err(E::Pg(p)) if p.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
                tokio::time::sleep(HEARTBEAT).await;
            }
            Err(e) => return Err(store_error(e)),
        }
    };
    tracing::info!(node = %cfg.id, epoch, "this node serves the database");
    let (tx, _) = watch::channel(false);
    let fenced = Arc::new(tx);
    let applied = Arc::new(Applied::default());
    let heartbeat = tokio::spawn(heartbeat(
        pool.clone(),
        cfg.id.clone(),
        epoch,
        fenced.clone(),
        applied.clone(),
    ));
    Ok(Arc::new(Node {
        id: cfg.id.clone(),
        epoch,
        fenced,
        heartbeat,
        applied,
    }))
}

fn lease_ms() -> i64 {
    crate::big(LEASE.as_millis())
}

/// Declares every node whose lease has lapsed dead, each under its epoch
/// lock (waiting for its writes under way): nothing it sends from now on
/// commits, and the others stop routing to it. Returns their ids.
async fn declare_lapsed_dead(tx: &tokio_postgres::Transaction<'_>) -> R<Vec<String>> {
    let mut dead = Vec::new();
    for r in tx
        .query(
            "SELECT id FROM nodes WHERE state = 'serving' AND lease_until <= now()",
            &[],
        )
        .await?
    {
        let id: String = r.try_get(0)?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&CLASS, &id],
        )
        .await?;
        let n = tx
            .execute(
                "UPDATE nodes SET state = 'dead' WHERE id = $1 AND state = 'serving' AND lease_until <= now()",
                &[&id],
            )
            .await?;
        if n == 1 {
            tracing::warn!(node = %id, "its lease lapsed: declared dead; nothing it writes from now on is accepted");
            dead.push(id);
        }
    }
    Ok(dead)
}

async fn try_join(pool: &Pool, cfg: &NodeConfig) -> R<Joined> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    // Joins one at a time; the lapsed node's writes under way get 15 s to
    // end (a stopped node's open transaction is ended after 5 s).
    tx.batch_execute(
        "SET LOCAL lock_timeout = '15s'; LOCK TABLE nodes IN SHARE ROW EXCLUSIVE MODE",
    )
    .await?;
    // A live lease under this node's own id is a previous run that did not
    // stop cleanly, or a second process given the same node_id: wait. In
    // the standby mode any live lease waits; a tool that must run alone
    // (`migrate-store`) is refused by any.
    let only_own = cfg.active && cfg.wait;
    let live = tx
        .query_opt(
            "SELECT id, (extract(epoch FROM lease_until - now()) * 1000)::bigint FROM nodes
             WHERE state = 'serving' AND lease_until > now() AND (id = $1 OR NOT $2)
             ORDER BY lease_until DESC LIMIT 1",
            &[&cfg.id, &only_own],
        )
        .await?;
    if let Some(r) = live {
        return Ok(Joined::Busy(r.try_get(0)?, r.try_get(1)?));
    }
    // An active node beside a node serving in the standby mode would
    // follow a change log that node does not write.
    if cfg.active {
        let standby = tx
            .query_opt(
                "SELECT id FROM nodes
                 WHERE state = 'serving' AND lease_until > now() AND NOT active AND id <> $1
                 LIMIT 1",
                &[&cfg.id],
            )
            .await?;
        if let Some(r) = standby {
            return Ok(Joined::Mixed(r.try_get(0)?));
        }
    }
    declare_lapsed_dead(&tx).await?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[&CLASS, &cfg.id],
    )
    .await?;
    let epoch: i64 = tx
        .query_one(
            "INSERT INTO nodes (id, epoch, state, address, started_at, heartbeat_at, lease_until, active)
             VALUES ($1, nextval('node_epochs'), 'serving', $2, now(), now(), now() + $3::bigint * interval '1 millisecond', $4)
             ON CONFLICT (id) DO UPDATE SET epoch = EXCLUDED.epoch, state = 'serving',
                 address = EXCLUDED.address, started_at = EXCLUDED.started_at,
                 heartbeat_at = EXCLUDED.heartbeat_at, lease_until = EXCLUDED.lease_until,
                 active = EXCLUDED.active
             RETURNING epoch",
            &[&cfg.id, &cfg.address, &lease_ms(), &cfg.active],
        )
        .await?
        .try_get(0)?;
    tx.commit().await?;
    Ok(Joined::Epoch(epoch))
}

/// One round of [`declare_lapsed_dead`] on the heartbeat's connection; a
/// node whose writes under way hold its lock for over 2 s waits for the
/// next round.
async fn reap(c: &mut tokio_postgres::Client) -> R<()> {
    let tx = c.transaction().await?;
    tx.batch_execute("SET LOCAL lock_timeout = '2s'").await?;
    declare_lapsed_dead(&tx).await?;
    tx.commit().await?;
    Ok(())
}

/// The lease's renewal, with what the caches hold, in one round trip
/// that also says whether another serving node's lease has lapsed: only
/// then does the round declare the dead ([`reap`]: a transaction of four
/// round trips, which an idle pool paid every second per node). The
/// `nodes` read sees the table as it was before this statement's own
/// update, so this node's old lease is left out by its id.
const RENEW: &str = "WITH renewed AS (
        UPDATE nodes SET heartbeat_at = now(), lease_until = now() + $3::bigint * interval '1 millisecond',
            policy_version = $4, users_version = $5, applied_change = $6
        WHERE id = $1 AND epoch = $2 AND state = 'serving'
        RETURNING 1)
    SELECT (SELECT count(*) FROM renewed),
        EXISTS (SELECT 1 FROM nodes WHERE state = 'serving' AND lease_until <= now() AND id <> $1)";

/// Renews the lease every second on a connection of its own (a busy pool
/// must not starve it), analyses the tables that grew fast every five
/// seconds, and prunes the change log every minute. Stops,
/// saying so, when the renewal finds the node declared dead.
async fn heartbeat(
    pool: Pool,
    id: String,
    epoch: i64,
    fenced: Arc<watch::Sender<bool>>,
    applied: Arc<Applied>,
) {
    let mut client: Option<deadpool_postgres::ClientWrapper> = None;
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u64;
    let mut failing = false;
    // Since when this node's renewals have all succeeded. It declares
    // others dead only once it has held its own lease for a whole lease:
    // after an outage of the database longer than the lease, every node's
    // lease has lapsed, and the first back would declare the others dead
    // before they had a round to renew theirs.
    let mut healthy_since: Option<tokio::time::Instant> = None;
    let mut analysing: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        // A round renews the lease and writes what the caches hold; one
        // woken by new versions does only that.
        let report_only = tokio::select! {
            _ = tick.tick() => false,
            () = applied.reported.notified() => true,
        };
        if !report_only {
            n += 1;
        }
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            client = pool.get().await.ok().map(deadpool_postgres::Object::take);
        }
        let renewed = match &client {
            None => Err("no database connection".to_owned()),
            Some(c) => c
                .query_one(
                    RENEW,
                    &[
                        &id,
                        &epoch,
                        &lease_ms(),
                        &applied.policy.load(Ordering::Relaxed),
                        &applied.users.load(Ordering::Relaxed),
                        &applied.change.load(Ordering::Relaxed),
                    ],
                )
                .await
                .and_then(|r| Ok((r.try_get::<_, i64>(0)?, r.try_get::<_, bool>(1)?)))
                .map_err(|e| describe(&e)),
        };
        let lapsed = match renewed {
            Ok((1, others_lapsed)) => {
                if failing {
                    tracing::info!("this node's lease is renewed again");
                    failing = false;
                }
                healthy_since.get_or_insert_with(tokio::time::Instant::now);
                others_lapsed
            }
            Ok(_) => {
                tracing::error!(node = %id, epoch, "this node's lease lapsed and another node declared it dead");
                let _ = fenced.send(true);
                return;
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "this node's lease could not be renewed; another node takes over if it lapses");
                    failing = true;
                }
                healthy_since = None;
                continue;
            }
        };
        if report_only {
            continue;
        }
        // The nodes whose leases lapsed are declared dead by whichever node
        // notices first (a stopped node is fenced within a second of its
        // lease's end), if that node has held its own lease for a lease.
        let judging = healthy_since.is_some_and(|t| t.elapsed() >= LEASE);
        if let Some(c) = client.as_mut().filter(|_| judging && lapsed) {
            if let Err(e) = reap(c).await {
                tracing::debug!(error = ?e, "lapsed nodes not declared dead this round");
            }
        }
        if n.is_multiple_of(ANALYSE_EVERY) && analysing.as_ref().is_none_or(|t| t.is_finished()) {
            analysing = Some(tokio::spawn(analyse_grown(pool.clone())));
        }
        // The change log kept bounded: what is older than CHANGES_KEPT is
        // gone (a follower that was away longer reloads).
        if n.is_multiple_of(60) {
            if let Some(c) = &client {
                let kept = crate::big(crate::CHANGES_KEPT.as_millis());
                if let Err(e) = c.execute(crate::changes::PRUNE, &[&kept]).await {
                    tracing::warn!(error = %describe(&e), "the change log could not be pruned");
                }
            }
        }
    }
}

/// How often (heartbeats) a serving node looks for tables that grew fast.
const ANALYSE_EVERY: u64 = 5;

/// The tables the hot paths read by key whose size can go from nothing to
/// thousands of rows within seconds (a new deployment's first sign-ins, a
/// restore): those modified by more rows than they held at their last
/// ANALYZE (at least 500).
const GROWN: &str = "SELECT c.relname::text FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
    WHERE c.relname IN ('bindings', 'lockouts', 'subscriptions', 'presence_publications', 'pending_messages')
      AND s.n_mod_since_analyze > greatest(500, c.reltuples)";

/// Analyses the tables [`GROWN`] lists. PostgreSQL's autovacuum would, but
/// it looks at a database once a minute and waits for a tenth of the rows
/// to change; meanwhile every plan made while a table was nearly empty
/// reads it whole — the followers' `aor = ANY(...)` re-reads of the
/// bindings in `bench/pool.sh` were sequential scans (2,000 rows read per
/// call) for the whole registration phase. An ANALYZE also makes
/// prepared statements plan again.
async fn analyse_grown(pool: Pool) {
    let go = async {
        let c = pool.get().await?;
        for row in c.query(GROWN, &[]).await? {
            let table: String = row.try_get(0)?;
            // (A name from GROWN's own list.)
            c.batch_execute(&format!("ANALYZE {table}")).await?;
            tracing::debug!(table, "analysed a table that grew fast");
        }
        R::Ok(())
    };
    if let Err(e) = go.await {
        tracing::debug!(error = ?e, "tables that grew fast not analysed this round");
    }
}

/// Marks the node as having left (a clean stop): another node may serve at
/// once. Waits for this node's writes under way.
pub(crate) async fn leave(pool: &Pool, node: &Node) -> Result<()> {
    node.heartbeat.abort();
    let go = async {
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&CLASS, &node.id],
        )
        .await?;
        tx.execute(
            "UPDATE nodes SET state = 'left', lease_until = now() WHERE id = $1 AND epoch = $2 AND state = 'serving'",
            &[&node.id, &node.epoch],
        )
        .await?;
        tx.commit().await?;
        R::Ok(())
    };
    go.await.map_err(store_error)
}

/// Every node's row.
pub(crate) async fn list(pool: &Pool, this: Option<&Node>) -> Result<Vec<NodeRow>> {
    let go = async {
        let client = pool.get().await?;
        let rows = client
            .query(
                "SELECT id, epoch, state, address,
                        extract(epoch FROM started_at)::bigint,
                        extract(epoch FROM heartbeat_at)::bigint,
                        extract(epoch FROM lease_until)::bigint,
                        (extract(epoch FROM lease_until - now()) * 1000)::bigint,
                        policy_version, users_version, applied_change
                 FROM nodes ORDER BY id COLLATE \"C\"",
                &[],
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let id: String = r.try_get(0)?;
            let epoch: i64 = r.try_get(1)?;
            out.push(NodeRow {
                this: this.is_some_and(|n| n.id == id && n.epoch == epoch),
                id,
                epoch,
                state: r.try_get(2)?,
                address: r.try_get(3)?,
                started_at: r.try_get(4)?,
                heartbeat_at: r.try_get(5)?,
                lease_until: r.try_get(6)?,
                lease_left_ms: r.try_get(7)?,
                policy_version: r.try_get(8)?,
                users_version: r.try_get(9)?,
                applied_change: r.try_get(10)?,
            });
        }
        R::Ok(out)
    };
    go.await.map_err(store_error)
}
