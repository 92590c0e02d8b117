//! Who watches whom through the other nodes of a pool whose nodes all
//! serve: each subscription another node holds, as its row says (read at
//! start, then from the change log), so that watcher information
//! (RFC 3857) and the pending-watcher lists name every watcher in the
//! pool, not only those whose subscription this node holds. Only the
//! names are kept; the dialogs stay with the node that notifies.

use std::collections::HashMap;
use std::sync::Arc;

use store::SubscriptionRow;

use super::state::parse_tag;
use super::{list_owner, EventKind, MAX_TOTAL_SUBSCRIPTIONS};

/// A subscription another node serves.
#[derive(Debug, Clone)]
pub(crate) struct RemoteSub {
    pub(crate) kind: EventKind,
    pub(crate) watcher: Arc<str>,
    pub(crate) resource: Arc<str>,
    /// Unix seconds.
    pub(crate) expires_at: i64,
}

impl RemoteSub {
    /// What it is indexed by: the resource; for a contact list, its owner.
    fn key(&self) -> Arc<str> {
        match self.kind {
            EventKind::List => self.watcher.clone(),
            _ => self.resource.clone(),
        }
    }
}

/// The event kind a stored row is for.
pub(crate) fn kind_of(row: &SubscriptionRow) -> EventKind {
    match row.event.as_str() {
        "presence" if list_owner(&row.resource).is_some() => EventKind::List,
        "presence" => EventKind::Presence,
        _ => EventKind::Winfo,
    }
}

/// The other nodes' subscriptions, by id and by what they watch.
#[derive(Debug, Default)]
pub(crate) struct RemoteSubs {
    subs: HashMap<u128, RemoteSub>,
    by_key: HashMap<Arc<str>, Vec<u128>>,
}

impl RemoteSubs {
    /// Notes a row another node holds (replacing what was known of it).
    /// Returns the subscription as it was before, if any, and whether the
    /// row was taken (`false`: beyond the bound, or not one of ours).
    pub(crate) fn note(&mut self, row: &SubscriptionRow) -> (Option<RemoteSub>, bool) {
        let Some(id) = parse_tag(&row.id) else {
            return (None, false);
        };
        let before = self.forget(id);
        if self.subs.len() >= MAX_TOTAL_SUBSCRIPTIONS {
            return (before, false);
        }
        let sub = RemoteSub {
            kind: kind_of(row),
            watcher: Arc::from(row.watcher.as_str()),
            resource: Arc::from(row.resource.as_str()),
            expires_at: row.expires_at,
        };
        self.by_key.entry(sub.key()).or_default().push(id);
        self.subs.insert(id, sub);
        (before, true)
    }

    /// Forgets a subscription (it ended, or this node holds it now).
    pub(crate) fn forget(&mut self, id: u128) -> Option<RemoteSub> {
        let sub = self.subs.remove(&id)?;
        let key = sub.key();
        if let Some(v) = self.by_key.get_mut(&key) {
            v.retain(|s| *s != id);
            if v.is_empty() {
                self.by_key.remove(&key);
            }
        }
        Some(sub)
    }

    /// The live subscriptions of `kind` indexed under `key` (a presence
    /// subscription's resource, a list subscription's owner), with ids.
    pub(crate) fn of(
        &self,
        kind: EventKind,
        key: &str,
        now: i64,
    ) -> impl Iterator<Item = (u128, &RemoteSub)> + '_ {
        self.by_key
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(move |id| Some((*id, self.subs.get(id)?)))
            .filter(move |(_, s)| s.kind == kind && s.expires_at > now)
    }

    pub(crate) fn len(&self) -> usize {
        self.subs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: u128, event: &str, watcher: &str, resource: &str) -> SubscriptionRow {
        SubscriptionRow {
            id: super::super::state::tag(id),
            event: event.into(),
            watcher: watcher.into(),
            resource: resource.into(),
            call_id: "c".into(),
            remote_tag: "t".into(),
            from_value: String::new(),
            to_value: String::new(),
            remote_target: String::new(),
            route_set: Vec::new(),
            source: "udp:192.0.2.1:5060".into(),
            event_id: None,
            local_cseq: 1,
            remote_cseq: 1,
            expires_at: 100,
            node: "fe-b".into(),
        }
    }

    #[test]
    fn rows_are_indexed_by_what_they_watch_and_replaced_and_forgotten() {
        let mut r = RemoteSubs::default();
        let (a, b) = ("sip:alice@example.test", "sip:bob@example.test");
        assert!(r.note(&row(1, "presence", b, a)).1);
        // A contact-list subscription is indexed by its owner.
        assert!(
            r.note(&row(2, "presence", b, "sip:bob+contacts@example.test"))
                .1
        );
        assert!(r.note(&row(3, "presence.winfo", a, a)).1);
        fn ids(r: &RemoteSubs, kind: EventKind, key: &str, now: i64) -> Vec<u128> {
            r.of(kind, key, now).map(|(id, _)| id).collect()
        }
        assert_eq!(ids(&r, EventKind::Presence, a, 0), [1]);
        assert_eq!(ids(&r, EventKind::List, b, 0), [2]);
        assert_eq!(ids(&r, EventKind::Winfo, a, 0), [3]);
        assert!(ids(&r, EventKind::Presence, a, 100).is_empty(), "expired");
        // Noted again (refreshed elsewhere): replaced, not doubled.
        let (before, taken) = r.note(&row(1, "presence", b, a));
        assert!(taken && before.is_some());
        assert_eq!(r.len(), 3);
        assert!(r.forget(1).is_some());
        assert!(ids(&r, EventKind::Presence, a, 0).is_empty());
        assert!(r.forget(1).is_none());
        // Not one of our tags: not taken.
        let mut bad = row(9, "presence", b, a);
        bad.id = "nope".into();
        assert!(!r.note(&bad).1);
    }
}
