//! Presence (RFC 3856 over RFC 6665 and RFC 3903): the state the core keeps
//! — published documents per user, subscriptions with their dialogs, the
//! contact lists that decide what each watcher sees — and the decisions
//! over it. `publish` handles PUBLISH, `subscribe` SUBSCRIBE, `notify` the
//! NOTIFYs this server sends and what they carry, `state` what is kept
//! (`dialog`: a subscription's dialog, compact), `contacts` the in-memory
//! contact lists, `moved` a subscription moving between a pool's nodes,
//! `remote` who watches whom through the pool's other nodes.
//!
//! What a watcher receives is cut by [`presence::access::level`] from the
//! presentity's privacy policy and contact list; a watcher who may see
//! nothing receives the offline document, byte-identical to that of an
//! offline or unknown user, and is notified of nothing, so neither the
//! content nor the timing of NOTIFYs leaks.

pub(crate) mod contacts;
mod dialog;
pub(crate) mod moved;
mod notify;
pub(crate) mod publish;
pub(crate) mod remote;
mod state;
pub(crate) mod subscribe;

use presence::access::{Audience, Strangers, Watcher};
use presence::Presence as Doc;

use crate::policy_set::PolicySet;
pub(crate) use contacts::ContactTable;
pub(crate) use state::parse_tag;
pub(crate) use state::{load, PresenceState, Sub};

/// Shortest and longest subscription and publication lifetimes granted.
pub(crate) const MIN_EXPIRES: u32 = 60;
pub(crate) const MAX_EXPIRES: u32 = 3600;
/// Lifetime when the request names none (RFC 3856 §6.4, RFC 3903 §4).
pub(crate) const DEFAULT_EXPIRES: u32 = 3600;
/// Publications one user may hold (devices); beyond, the oldest is dropped.
pub(crate) const MAX_PUBLICATIONS: usize = 16;
/// Subscriptions one user may hold as a watcher.
pub(crate) const MAX_SUBSCRIPTIONS: usize = 1000;
/// Subscriptions the server holds in all; beyond, 503.
pub(crate) const MAX_TOTAL_SUBSCRIPTIONS: usize = 1_000_000;
/// Bytes of dialog state (From, To, Contact, Call-ID, routes) one
/// subscription may keep; beyond, 400.
pub(crate) const MAX_DIALOG_STATE: usize = 2048;
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
    /// The connection it was published over (a stream transport; not kept
    /// across restarts): when it closes, the device is gone.
    pub(crate) flow: Option<u64>,
    /// Read from the store (at start, or after another node of the pool
    /// changed the user's publications) rather than published through
    /// this process: replaced as the store says when another node changes
    /// them.
    pub(crate) remote: bool,
}

impl Publication {
    /// A publication read from the store (`remote`), or `None` (logged)
    /// when its document no longer parses.
    pub(crate) fn stored(row: store::PublicationRow) -> Option<Publication> {
        match presence::Presence::parse(row.document.as_bytes()) {
            Ok(doc) => Some(Publication {
                etag: row.etag,
                expires_at: row.expires_at,
                doc,
                flow: None,
                remote: true,
            }),
            Err(e) => {
                tracing::warn!(etag = %row.etag, error = %e.0, "stored publication unreadable; skipped");
                None
            }
        }
    }
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

/// The user part suffix of a contact list's URI: `sip:alice+contacts@domain`
/// is alice's list. `+` is not allowed in user names, so no user has it.
pub(crate) const LIST_SUFFIX: &str = "+contacts";

/// The owner's AOR of a list URI, if `uri` is one.
pub(crate) fn list_owner(uri: &str) -> Option<String> {
    let (user, domain) = uri.strip_prefix("sip:")?.split_once('@')?;
    let owner = user.strip_suffix(LIST_SUFFIX)?;
    (!owner.is_empty()).then(|| format!("sip:{owner}@{domain}"))
}
