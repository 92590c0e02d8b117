//! Presence (RFC 3856 over RFC 6665 and RFC 3903): the state the core keeps
//! — published documents per user, subscriptions with their dialogs, the
//! contact lists that decide what each watcher sees — and the decisions
//! over it. `publish` handles PUBLISH, `subscribe` SUBSCRIBE and the
//! NOTIFYs this server sends, `contacts` the in-memory contact lists.
//!
//! What a watcher receives is cut by [`presence::access::level`] from the
//! presentity's privacy policy and contact list; a watcher who may see
//! nothing receives the offline document, byte-identical to that of an
//! offline or unknown user, and is notified of nothing, so neither the
//! content nor the timing of NOTIFYs leaks.

pub(crate) mod contacts;
pub(crate) mod publish;
pub(crate) mod subscribe;

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::time::Instant;

use presence::access::{Audience, Strangers, Watcher};
use presence::{Availability, Presence as Doc};
use sip_transport::FlowId;
use sip_txn::TxnId;
use store::SubscriptionRow;

use crate::policy_set::PolicySet;
pub(crate) use contacts::ContactTable;

/// Shortest and longest subscription and publication lifetimes granted.
pub(crate) const MIN_EXPIRES: u32 = 60;
pub(crate) const MAX_EXPIRES: u32 = 3600;
/// Lifetime when the request names none (RFC 3856 §6.4, RFC 3903 §4).
pub(crate) const DEFAULT_EXPIRES: u32 = 3600;
/// Publications one user may hold (devices); beyond, the oldest is dropped.
pub(crate) const MAX_PUBLICATIONS: usize = 16;
/// Subscriptions one user may hold as a watcher.
pub(crate) const MAX_SUBSCRIPTIONS: usize = 1000;
/// SUBSCRIBEs per user per second, and the burst allowed.
pub(crate) const SUBSCRIBE_RATE: (u32, u32) = (20, 200);
/// The least time between two NOTIFYs of one subscription: changes in
/// between are coalesced into one NOTIFY carrying the latest state.
pub(crate) const NOTIFY_INTERVAL: std::time::Duration = std::time::Duration::from_millis(1000);

/// One published document.
#[derive(Debug, Clone)]
pub(crate) struct Publication {
    pub(crate) etag: String,
    pub(crate) expires_at: i64,
    pub(crate) doc: Doc,
}

/// Which event a subscription is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventKind {
    Presence,
    Winfo,
    /// `presence` of the subscriber's contact list (RFC 4662 `eventlist`).
    List,
}

impl EventKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            EventKind::Presence | EventKind::List => "presence",
            EventKind::Winfo => "presence.winfo",
        }
    }
}

/// A live subscription: its stored row and what the notifier tracks.
#[derive(Debug)]
pub(crate) struct Sub {
    pub(crate) row: SubscriptionRow,
    pub(crate) kind: EventKind,
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
    pub(crate) created: Instant,
    /// Version of the watcher-information document (RFC 3858).
    pub(crate) version: u32,
}

/// Everything presence the core owns.
#[derive(Debug, Default)]
pub(crate) struct PresenceState {
    pub(crate) publications: HashMap<String, Vec<Publication>>,
    pub(crate) subs: HashMap<String, Sub>,
    /// Presence subscriptions per resource.
    pub(crate) watchers: HashMap<String, Vec<String>>,
    /// Watcher-information subscriptions per user.
    pub(crate) winfo: HashMap<String, Vec<String>>,
    /// Contact-list subscriptions per owner.
    pub(crate) lists: HashMap<String, Vec<String>>,
    /// Subscriptions per watcher (the per-user cap).
    pub(crate) per_watcher: HashMap<String, usize>,
    /// NOTIFY client transactions → subscription id.
    pub(crate) notifies: HashMap<TxnId, String>,
    /// Subscriptions with a NOTIFY to send.
    pub(crate) dirty: HashSet<String>,
    pub(crate) contacts: ContactTable,
    pub(crate) hasher: std::collections::hash_map::RandomState,
}

impl PresenceState {
    pub(crate) fn insert(&mut self, sub: Sub) {
        let id = sub.row.id.clone();
        let (index, key) = self.index_of(&sub);
        index.entry(key).or_default().push(id.clone());
        *self.per_watcher.entry(sub.row.watcher.clone()).or_insert(0) += 1;
        self.subs.insert(id, sub);
    }

    pub(crate) fn remove(&mut self, id: &str) -> Option<Sub> {
        let sub = self.subs.remove(id)?;
        let (index, key) = self.index_of(&sub);
        if let Some(v) = index.get_mut(&key) {
            v.retain(|s| s != id);
            if v.is_empty() {
                index.remove(&key);
            }
        }
        if let Some(n) = self.per_watcher.get_mut(&sub.row.watcher) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_watcher.remove(&sub.row.watcher);
            }
        }
        self.dirty.remove(id);
        Some(sub)
    }

    /// The index a subscription is kept in, and its key there (the
    /// resource; for a list, its owner).
    fn index_of(&mut self, sub: &Sub) -> (&mut HashMap<String, Vec<String>>, String) {
        match sub.kind {
            EventKind::Presence => (&mut self.watchers, sub.row.resource.clone()),
            EventKind::Winfo => (&mut self.winfo, sub.row.resource.clone()),
            EventKind::List => (&mut self.lists, sub.row.watcher.clone()),
        }
    }

    pub(crate) fn body_hash(&self, body: &str) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write(body.as_bytes());
        h.finish()
    }

    /// The user's full state: the most engaged of their publications (the
    /// latest-expiring among equals), with the aggregated availability.
    pub(crate) fn published(&self, aor: &str) -> Option<&Doc> {
        let pubs = self.publications.get(aor)?;
        pubs.iter()
            .max_by_key(|p| (Availability::of(&p.doc), p.expires_at))
            .map(|p| &p.doc)
    }
}

/// The privacy policy's values for one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Privacy {
    pub(crate) internal: Audience,
    pub(crate) federated: Audience,
    pub(crate) strangers: Strangers,
}

/// The presentity's privacy policy (secure defaults if unreadable).
pub(crate) fn privacy(set: &PolicySet, aor: &str) -> Privacy {
    let eff = set.effective(aor, "privacy");
    let text = |f: &str| {
        eff.as_ref()
            .and_then(|e| e.text(f).map(str::to_owned))
            .unwrap_or_default()
    };
    Privacy {
        internal: Audience::parse(&text("presence_internal")).unwrap_or(Audience::Contacts),
        federated: Audience::parse(&text("presence_federated")).unwrap_or(Audience::Contacts),
        strangers: Strangers::parse(&text("strangers_may_im")).unwrap_or(Strangers::Internal),
    }
}

/// How `watcher` stands with `resource`, for the access rules.
pub(crate) fn watcher(
    contacts: &ContactTable,
    domain: &str,
    resource: &str,
    watcher: &str,
) -> Watcher {
    let internal = watcher
        .rsplit_once('@')
        .is_some_and(|(_, d)| d.eq_ignore_ascii_case(domain));
    Watcher {
        is_self: resource == watcher,
        internal,
        entry: contacts.get(resource, watcher),
    }
}

/// Loads what survives a restart: live publications, subscriptions (each
/// marked for a NOTIFY with the current state, so watchers resynchronise)
/// and the contact lists.
pub(crate) async fn load(store: &store::Sqlite, now: i64) -> Result<PresenceState, String> {
    use store::{Contacts, PresenceState as _};
    let mut state = PresenceState {
        contacts: ContactTable::from_rows(store.all_contacts().await.map_err(|e| e.to_string())?),
        ..PresenceState::default()
    };
    for row in store
        .live_publications(now)
        .await
        .map_err(|e| e.to_string())?
    {
        match Doc::parse(row.document.as_bytes()) {
            Ok(doc) => state
                .publications
                .entry(row.aor)
                .or_default()
                .push(Publication {
                    etag: row.etag,
                    expires_at: row.expires_at,
                    doc,
                }),
            Err(e) => {
                tracing::warn!(etag = %row.etag, error = %e.0, "stored publication unreadable; skipped")
            }
        }
    }
    for mut row in store
        .live_subscriptions(now)
        .await
        .map_err(|e| e.to_string())?
    {
        let kind = match row.event.as_str() {
            "presence" if list_owner(&row.resource).is_some() => EventKind::List,
            "presence" => EventKind::Presence,
            _ => EventKind::Winfo,
        };
        // NOTIFYs sent since the row was written are not counted on disk:
        // jump ahead so the next CSeq is still higher than any sent (at most
        // one per NOTIFY_INTERVAL over a MAX_EXPIRES lifetime).
        row.local_cseq = row.local_cseq.saturating_add(CSEQ_RESTART_GAP);
        let id = row.id.clone();
        state.insert(Sub {
            row,
            kind,
            flow: None,
            in_flight: None,
            last_sent: None,
            last_body: 0,
            dirty: true,
            created: Instant::now(),
            version: 0,
        });
        state.dirty.insert(id);
    }
    tracing::info!(
        publications = state.publications.values().map(Vec::len).sum::<usize>(),
        subscriptions = state.subs.len(),
        "presence state loaded"
    );
    Ok(state)
}

/// See [`load`]: more than the NOTIFYs one subscription can be sent between
/// two writes of its row.
const CSEQ_RESTART_GAP: u32 = 100_000;

/// The user part suffix of a contact list's URI: `sip:alice+contacts@domain`
/// is alice's list. `+` is not allowed in user names, so no user has it.
pub(crate) const LIST_SUFFIX: &str = "+contacts";

/// The owner's AOR of a list URI, if `uri` is one.
pub(crate) fn list_owner(uri: &str) -> Option<String> {
    let (user, domain) = uri.strip_prefix("sip:")?.split_once('@')?;
    let owner = user.strip_suffix(LIST_SUFFIX)?;
    (!owner.is_empty()).then(|| format!("sip:{owner}@{domain}"))
}
