//! What the core holds for presence: publications per user, subscriptions
//! (compact, by a 128-bit id that is also their dialog tag) with indexes by
//! resource, contact-list owner and watcher, the NOTIFYs in flight, and the
//! contact lists. Loaded from the store at start.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Instant;

use presence::{Availability, Presence as Doc};
use sip_transport::FlowId;
use sip_txn::TxnId;
use store::SubscriptionRow;

use super::dialog::Dialog;
use super::{ContactTable, EventKind, Publication};

/// A live subscription.
#[derive(Debug)]
pub(crate) struct Sub {
    /// Our dialog tag, as a number (its text: [`tag`]).
    pub(crate) id: u128,
    pub(crate) kind: EventKind,
    pub(crate) watcher: Arc<str>,
    /// The presentity; for a contact list, the list's URI.
    pub(crate) resource: Arc<str>,
    pub(crate) dialog: Dialog,
    pub(crate) local_cseq: u32,
    pub(crate) remote_cseq: u32,
    /// Unix seconds.
    pub(crate) expires_at: i64,
    /// The connection the last SUBSCRIBE came on (none after a restart).
    pub(crate) flow: Option<FlowId>,
    /// The NOTIFY waiting for its response.
    pub(crate) in_flight: Option<TxnId>,
    /// When the last NOTIFY went out.
    pub(crate) last_sent: Option<Instant>,
    /// Hash of the last body sent: a NOTIFY goes only when it would differ.
    pub(crate) last_body: u64,
    /// Set when the watcher's view changed since the last NOTIFY.
    pub(crate) dirty: bool,
    /// Version of the watcher-information or list document.
    pub(crate) version: u32,
}

impl Sub {
    /// The row the store keeps.
    pub(crate) fn row(&self) -> SubscriptionRow {
        let mut r = SubscriptionRow {
            id: tag(self.id),
            event: self.kind.name().to_string(),
            watcher: self.watcher.to_string(),
            resource: self.resource.to_string(),
            call_id: String::new(),
            remote_tag: String::new(),
            from_value: String::new(),
            to_value: String::new(),
            remote_target: String::new(),
            route_set: Vec::new(),
            source: String::new(),
            event_id: None,
            local_cseq: self.local_cseq,
            remote_cseq: self.remote_cseq,
            expires_at: self.expires_at,
            node: String::new(),
        };
        self.dialog.fill(&mut r);
        r
    }
}

/// A subscription id as its dialog tag (32 hex digits).
pub(crate) fn tag(id: u128) -> String {
    format!("{id:032x}")
}

/// The id of a dialog tag, if it is one of ours.
pub(crate) fn parse_tag(tag: &str) -> Option<u128> {
    (tag.len() == 32 && tag.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u128::from_str_radix(tag, 16).ok())
        .flatten()
}

/// Everything presence the core owns.
#[derive(Debug, Default)]
pub(crate) struct PresenceState {
    pub(crate) publications: HashMap<String, Vec<Publication>>,
    /// Who published over each open connection (so a closed one costs a
    /// lookup); an entry goes when its connection closes.
    pub(crate) publication_flows: HashMap<u64, Vec<String>>,
    pub(crate) subs: HashMap<u128, Box<Sub>>,
    /// Presence subscriptions per resource.
    pub(crate) watchers: HashMap<Arc<str>, Vec<u128>>,
    /// Watcher-information subscriptions per user.
    pub(crate) winfo: HashMap<Arc<str>, Vec<u128>>,
    /// Contact-list subscriptions per owner.
    pub(crate) lists: HashMap<Arc<str>, Vec<u128>>,
    /// Subscriptions per watcher (the per-user cap).
    pub(crate) per_watcher: HashMap<Arc<str>, u32>,
    /// Addresses shared by subscriptions, with how many hold each.
    names: HashMap<Arc<str>, u32>,
    /// NOTIFY client transactions → subscription.
    pub(crate) notifies: HashMap<TxnId, u128>,
    /// Subscriptions with a NOTIFY to send.
    pub(crate) dirty: HashSet<u128>,
    /// Subscriptions ended here whose rows are still in the store.
    pub(crate) removals: Vec<u128>,
    /// Subscriptions taken over from another node of the pool whose
    /// refresh is not yet stored (`moved`): let go again if it is not.
    pub(crate) adopting: HashSet<u128>,
    /// Rows being read for SUBSCRIBEs in dialogs this node does not hold.
    pub(crate) lookups: usize,
    /// The subscriptions the pool's other nodes serve (names only).
    pub(crate) remote: super::remote::RemoteSubs,
    pub(crate) contacts: ContactTable,
    hasher: std::collections::hash_map::RandomState,
}

impl PresenceState {
    /// The shared copy of an address (one allocation per distinct address).
    pub(crate) fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(n) = self.names.get_mut(s) {
            *n += 1;
            if let Some((k, _)) = self.names.get_key_value(s) {
                return k.clone();
            }
        }
        let k: Arc<str> = Arc::from(s);
        self.names.insert(k.clone(), 1);
        k
    }

    /// Releases the names of a subscription that is not (or no longer) in
    /// the table.
    pub(crate) fn forget_names(&mut self, sub: &Sub) {
        self.release(&sub.watcher);
        self.release(&sub.resource);
    }

    fn release(&mut self, s: &Arc<str>) {
        if let Some(n) = self.names.get_mut(s) {
            *n -= 1;
            if *n == 0 {
                self.names.remove(s);
            }
        }
    }

    fn index(&mut self, kind: EventKind) -> &mut HashMap<Arc<str>, Vec<u128>> {
        match kind {
            EventKind::Presence => &mut self.watchers,
            EventKind::Winfo => &mut self.winfo,
            EventKind::List => &mut self.lists,
        }
    }

    /// The index key: the resource; for a list, its owner.
    fn key(sub: &Sub) -> Arc<str> {
        match sub.kind {
            EventKind::List => sub.watcher.clone(),
            _ => sub.resource.clone(),
        }
    }

    /// Adds a subscription whose names came from [`PresenceState::intern`].
    pub(crate) fn insert(&mut self, sub: Box<Sub>) {
        let key = Self::key(&sub);
        self.index(sub.kind).entry(key).or_default().push(sub.id);
        *self.per_watcher.entry(sub.watcher.clone()).or_insert(0) += 1;
        self.subs.insert(sub.id, sub);
    }

    pub(crate) fn remove(&mut self, id: u128) -> Option<Box<Sub>> {
        let sub = self.subs.remove(&id)?;
        let key = Self::key(&sub);
        let index = self.index(sub.kind);
        if let Some(v) = index.get_mut(&key) {
            v.retain(|s| *s != id);
            if v.is_empty() {
                index.remove(&key);
            }
        }
        if let Some(n) = self.per_watcher.get_mut(&sub.watcher) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_watcher.remove(&sub.watcher);
            }
        }
        self.dirty.remove(&id);
        self.release(&sub.watcher);
        self.release(&sub.resource);
        Some(sub)
    }

    pub(crate) fn body_hash(&self, body: &str) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write(body.as_bytes());
        h.finish()
    }

    /// The user's full state: the most engaged of their publications (the
    /// latest-expiring among equals).
    pub(crate) fn published(&self, aor: &str) -> Option<&Doc> {
        let pubs = self.publications.get(aor)?;
        pubs.iter()
            .max_by_key(|p| (Availability::of(&p.doc), p.expires_at))
            .map(|p| &p.doc)
    }
}

/// Loads what survives a restart: live publications, subscriptions (each
/// marked for a NOTIFY with the current state, so watchers resynchronise)
/// and the contact lists. `node`: this node's name in a pool whose nodes
/// all serve (empty otherwise); another node's subscriptions are its own
/// to notify, and are left to it.
pub(crate) async fn load(
    store: &(impl store::PresenceState + store::Contacts),
    now: i64,
    node: &str,
) -> Result<PresenceState, String> {
    let mut state = PresenceState {
        contacts: ContactTable::from_rows(store.all_contacts().await.map_err(|e| e.to_string())?),
        ..PresenceState::default()
    };
    for row in store
        .live_publications(now)
        .await
        .map_err(|e| e.to_string())?
    {
        let aor = row.aor.clone();
        if let Some(p) = Publication::stored(row) {
            state.publications.entry(aor).or_default().push(p);
        }
    }
    for row in store
        .live_subscriptions(now)
        .await
        .map_err(|e| e.to_string())?
    {
        if !node.is_empty() && row.node != node {
            // Another node's to notify: known here by name (`remote`). A
            // row naming no node (written before every node of the pool
            // served) is claimed by one of them (`claim_subscriptions`),
            // not taken by each.
            state.remote.note(&row);
            continue;
        }
        let Some(sub) = state.stored_sub(&row) else {
            tracing::warn!(id = %row.id, "stored subscription unusable; skipped");
            continue;
        };
        let id = sub.id;
        state.insert(sub);
        state.dirty.insert(id);
    }
    tracing::info!(
        publications = state.publications.values().map(Vec::len).sum::<usize>(),
        subscriptions = state.subs.len(),
        other_nodes_subscriptions = state.remote.len(),
        "presence state loaded"
    );
    Ok(state)
}

/// See [`load`]: more than the NOTIFYs one subscription can be sent between
/// two writes of its row.
const CSEQ_RESTART_GAP: u32 = 100_000;

impl PresenceState {
    /// A subscription as its stored row says (`None` if the row is
    /// unusable), to be notified afresh: after a restart, or taken over
    /// from another node of the pool.
    pub(crate) fn stored_sub(&mut self, row: &SubscriptionRow) -> Option<Box<Sub>> {
        let kind = super::remote::kind_of(row);
        let id = parse_tag(&row.id)?;
        let dialog = Dialog::from_row(row)?;
        Some(Box::new(Sub {
            id,
            kind,
            watcher: self.intern(&row.watcher),
            resource: self.intern(&row.resource),
            dialog,
            // NOTIFYs sent since the row was written are not counted on
            // disk: jump ahead so the next CSeq is still higher than any
            // sent (at most one per NOTIFY_INTERVAL over a MAX_EXPIRES
            // lifetime).
            local_cseq: row.local_cseq.saturating_add(CSEQ_RESTART_GAP),
            remote_cseq: row.remote_cseq,
            expires_at: row.expires_at,
            flow: None,
            in_flight: None,
            last_sent: None,
            last_body: 0,
            dirty: true,
            version: 0,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_and_strangers_are_not_ours() {
        let id = 0x0123_4567_89ab_cdef_0011_2233_4455_6677u128;
        assert_eq!(parse_tag(&tag(id)), Some(id));
        assert_eq!(tag(1).len(), 32);
        for t in ["", "pp1234", &"g".repeat(32), &"0".repeat(33)] {
            assert_eq!(parse_tag(t), None, "{t}");
        }
    }
}
