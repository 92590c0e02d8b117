//! A subscription moving between the nodes of a pool whose nodes all
//! serve. Each subscription's row names the node that sends its NOTIFYs.
//! When a SUBSCRIBE inside one reaches another node — its watcher's client
//! reconnected elsewhere, its node died, or DNS sent the refresh to another
//! node — that node reads the row, takes the subscription over (it is the
//! same dialog: same tag, same Call-ID, the watcher's CSeq still rising),
//! and handles the refresh as its own: its write names this node, its 200
//! carries this node's Contact (so the watcher's next requests come here),
//! and the NOTIFYs go from here. The node that served it learns of the
//! move from the change log and lets the subscription go without a word
//! to the watcher (no terminating NOTIFY: the dialog lives on elsewhere).
//!
//! A node that stops serving (declared dead when its lease lapsed, or
//! stopped) leaves subscriptions nobody notifies. The serving nodes claim
//! them as soon as they read that it stopped — each row goes to one node,
//! in bounded batches — and notify each watcher at once with the
//! current state, as after a restart: a watcher over UDP hears from its
//! new node within seconds instead of at its next refresh.

use std::collections::HashSet;

use sip::{Message, RequestFields};
use sip_transport::Source;
use sip_txn::TxnId;
use store::SubscriptionRow;

use super::state::parse_tag;
use crate::{unix_now, Core, Event, Req};

/// Subscription rows read at once for SUBSCRIBEs in dialogs this node
/// does not hold; beyond, 503 with a Retry-After.
const MAX_LOOKUPS: usize = 64;

/// A SUBSCRIBE waiting for the row of the subscription it belongs to.
#[derive(Debug)]
pub(crate) struct Adopting {
    id: TxnId,
    msg: Message,
    src: Source,
    sub: u128,
    /// What the request carried through an edge (the core's per-message
    /// state, restored when it is handled).
    edge_partner: Option<std::sync::Arc<federation::identity::Identities>>,
    edge_device: Option<[u8; 32]>,
    /// The row, if stored and live; `Err` when the store could not say.
    row: Result<Option<SubscriptionRow>, ()>,
}

/// Subscriptions claimed from stopped nodes at a time (the rest at the
/// next reading of the nodes, by this node or another).
const CLAIM_BATCH: usize = 10_000;

impl<S: store::Store> Core<S> {
    /// For an in-dialog SUBSCRIBE whose To tag is a subscription tag this
    /// node does not hold, in a pool whose nodes all serve: reads the row
    /// (back through [`Event::SubscriptionRead`]). `false` when there is
    /// nothing to look up.
    pub(crate) async fn look_up_subscription(&mut self, r: &Req<'_>) -> bool {
        if self.location.node().is_empty() {
            return false;
        }
        let Some(sub) = r.f.to.tag().and_then(parse_tag) else {
            return false;
        };
        if self.presence.subs.contains_key(&sub) {
            return false;
        }
        // Made-up tags cost a read each: at most so many at once.
        if self.presence.lookups >= MAX_LOOKUPS {
            self.reply(
                r,
                503,
                "Service Unavailable (Subscription Lookups Busy)",
                &[("Retry-After", "1")],
            )
            .await;
            return true;
        }
        self.presence.lookups += 1;
        let (store, events) = (self.store.clone(), self.events_tx.clone());
        let (id, msg, src) = (r.id, r.msg.clone(), r.src.clone());
        let (edge_partner, edge_device) = (self.edge_partner.clone(), self.edge_device);
        tokio::spawn(async move {
            let tag = super::state::tag(sub);
            let row = store::PresenceState::subscription(&store, &tag, unix_now())
                .await
                .map_err(|e| tracing::warn!(error = %e, "cannot read a subscription another node served"));
            let a = Adopting {
                id,
                msg,
                src,
                sub,
                edge_partner,
                edge_device,
                row,
            };
            let _ = events.send(Event::SubscriptionRead(Box::new(a))).await;
        });
        true
    }

    /// The row is read: takes the subscription over and handles the
    /// SUBSCRIBE as a refresh, or answers it as before (481 for a
    /// subscription that is no longer, 500 when the store could not say).
    pub(crate) async fn subscription_read(&mut self, a: Adopting) {
        self.presence.lookups = self.presence.lookups.saturating_sub(1);
        let Ok(f) = RequestFields::extract(&a.msg) else {
            return;
        };
        self.edge_outcome.set(None);
        self.edge_partner = a.edge_partner.clone();
        self.edge_device = a.edge_device;
        let r = Req {
            id: a.id,
            msg: &a.msg,
            f: &f,
            src: &a.src,
            own_routes: 0,
        };
        let row = match a.row {
            Ok(row) => row,
            Err(()) => {
                return self
                    .reply(
                        &r,
                        500,
                        "Server Internal Error (Subscription Not Readable)",
                        &[("Retry-After", "1")],
                    )
                    .await
            }
        };
        // The same dialog (the tag alone is guessable in form, not the
        // Call-ID and the watcher's tag with it), served by another node
        // (or by none: its node's row was never updated after a restart
        // elsewhere), and not taken over meanwhile by this node.
        let same_dialog = row.as_ref().is_some_and(|row| {
            row.call_id == f.call_id
                && Some(row.remote_tag.as_str()) == f.from.tag()
                && row.node != self.location.node()
        });
        let mut inserted = false;
        if let Some(row) = row.filter(|_| same_dialog) {
            if !self.presence.subs.contains_key(&a.sub) {
                if self.presence.subs.len() >= super::MAX_TOTAL_SUBSCRIPTIONS {
                    return self
                        .reply(
                            &r,
                            503,
                            "Service Unavailable (Subscription Table Full)",
                            &[("Retry-After", "60")],
                        )
                        .await;
                }
                let Some(sub) = self.presence.stored_sub(&row) else {
                    tracing::warn!(id = %row.id, "stored subscription unusable; not taken over");
                    return self
                        .reply(&r, 481, "Subscription Does Not Exist", &[])
                        .await;
                };
                tracing::info!(id = %row.id, from = %row.node, "subscription taken over from another node");
                self.presence.remote.forget(a.sub);
                self.presence.insert(sub);
                self.presence.adopting.insert(a.sub);
                inserted = true;
            }
        }
        // (Not one of the pool's subscriptions after all: 481.)
        let stored = self.on_subscribe_in_dialog(&r).await;
        // Refused before its write (rate, CSeq, event): the node that
        // served it still does (unless another request's refresh took it
        // over meanwhile).
        if !stored && inserted && self.presence.adopting.remove(&a.sub) {
            self.presence.remove(a.sub);
        }
    }

    /// Another node changed subscription `id`: if this node sends its
    /// NOTIFYs and the row now names another node (it was taken over), or
    /// is gone while it was still live here (ended through another node),
    /// this node lets it go, silently. An expired one is left to this
    /// node's own expiry, which tells the watcher. What other nodes serve
    /// is noted by name (`remote`): watcher information hears of it.
    pub(crate) fn remote_subscription(&mut self, id: &str, row: Option<SubscriptionRow>) {
        let Some(sub) = parse_tag(id) else { return };
        let me = self.location.node().to_owned();
        let elsewhere = row.as_ref().filter(|r| !r.node.is_empty() && r.node != me);
        if let Some(live) = self.presence.subs.get(&sub) {
            let gone = match &row {
                Some(_) => elsewhere.is_some(),
                None => live.expires_at > unix_now(),
            };
            if gone {
                if let Some(sub) = self.presence.remove(sub) {
                    tracing::info!(
                        %id,
                        to = elsewhere.map_or("", |r| r.node.as_str()),
                        "subscription moved to another node, or ended there"
                    );
                    self.presence.adopting.remove(&sub.id);
                    self.watchers_changed(sub.kind, &sub.watcher, &sub.resource);
                }
            }
        }
        let (before, now) = match elsewhere {
            Some(r) => {
                let (before, taken) = self.presence.remote.note(r);
                (
                    before,
                    taken.then(|| {
                        (
                            super::remote::kind_of(r),
                            r.watcher.clone(),
                            r.resource.clone(),
                        )
                    }),
                )
            }
            None => (self.presence.remote.forget(sub), None),
        };
        if let Some(b) = before {
            self.watchers_changed(b.kind, &b.watcher, &b.resource);
        }
        if let Some((kind, watcher, resource)) = now {
            self.watchers_changed(kind, &watcher, &resource);
        }
    }

    /// Claims the subscriptions of the nodes in `stopped` (no longer
    /// serving), unless a claim is under way; back through
    /// [`Event::SubscriptionsClaimed`].
    pub(crate) fn claim_subscriptions(&mut self, stopped: HashSet<String>) {
        if self.pool.claiming {
            return;
        }
        // No more than the table has room for.
        let limit = super::MAX_TOTAL_SUBSCRIPTIONS
            .saturating_sub(self.presence.subs.len())
            .min(CLAIM_BATCH);
        if limit == 0 {
            return;
        }
        self.pool.claiming = true;
        let (store, events) = (self.store.clone(), self.events_tx.clone());
        tokio::spawn(async move {
            let rows = store::PresenceState::claim_subscriptions(&store, unix_now(), limit)
                .await
                .map_err(|e| tracing::warn!(error = %e, "cannot claim the subscriptions of nodes no longer serving (tried again)"));
            let _ = events
                .send(Event::SubscriptionsClaimed {
                    from: stopped,
                    limit,
                    rows,
                })
                .await;
        });
    }

    /// Claimed subscriptions become this node's: each watcher is notified
    /// of the current state at once.
    pub(crate) fn subscriptions_claimed(
        &mut self,
        from: HashSet<String>,
        limit: usize,
        rows: Result<Vec<SubscriptionRow>, ()>,
    ) {
        self.pool.claiming = false;
        let Ok(rows) = rows else { return };
        // A full batch may have left more: claimed again at the next
        // reading of the nodes.
        if rows.len() < limit {
            self.pool.claimed_from.extend(from);
        }
        let mut taken = 0usize;
        for row in rows {
            let Some(sub) = self.presence.stored_sub(&row) else {
                tracing::warn!(id = %row.id, "claimed subscription unusable; skipped");
                continue;
            };
            let (id, kind) = (sub.id, sub.kind);
            if self.presence.subs.contains_key(&id) {
                self.presence.forget_names(&sub);
                continue;
            }
            let (watcher, resource) = (sub.watcher.clone(), sub.resource.clone());
            self.presence.remote.forget(id);
            self.presence.insert(sub);
            self.watchers_changed(kind, &watcher, &resource);
            self.notify_due(id, true);
            taken += 1;
        }
        if taken > 0 {
            tracing::info!(
                subscriptions = taken,
                "subscriptions taken over from nodes no longer serving"
            );
        }
    }
}
