//! The NOTIFYs this server sends as notifier, and what they carry.
//!
//! One NOTIFY in flight per subscription; changes while one is in flight or
//! within [`NOTIFY_INTERVAL`] of the last are coalesced, and a NOTIFY goes
//! only when the watcher's document actually differs (documents are
//! compared without their version). A NOTIFY answered with an error or
//! timing out ends the subscription. What a watcher sees is cut by
//! [`presence::access::level`] from the presentity's privacy policy and
//! contact list; a watcher who may see nothing gets the offline document
//! and, since it never changes, no NOTIFY when the presentity's state does.

use std::sync::Arc;
use std::time::Instant;

use sip::build::RequestBuilder;
use sip_transport::{Protocol, Target};
use sip_txn::{Reliability, TxnId};

use super::state::tag;
use super::{EventKind, Sub, NOTIFY_INTERVAL};
use crate::fork::source_protocol;
use crate::unix_now;
use crate::Core;

/// Why a subscription ends (the NOTIFY's `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Expired, or the subscriber unsubscribed (RFC 6665 §4.2.2).
    Timeout,
    /// The watcher's account was disabled or removed.
    Deactivated,
}

pub(crate) fn proto_name(p: Protocol) -> String {
    p.via_token().to_ascii_lowercase()
}

impl<S: store::Store> Core<S> {
    /// The state of `aor` changed (publication, registration, contacts,
    /// policy): every watcher whose document differs gets a NOTIFY.
    pub(crate) fn presence_changed(&mut self, aor: &str) {
        let mut ids: Vec<u128> = self.presence.watchers.get(aor).cloned().unwrap_or_default();
        // Contact-list subscriptions of everyone who follows `aor`.
        for owner in self.presence.contacts.followers(aor) {
            if let Some(v) = self.presence.lists.get(owner) {
                ids.extend_from_slice(v);
            }
        }
        for id in ids {
            self.notify_due(id, false);
        }
        self.winfo_changed(aor);
    }

    /// A subscription came or went: the watcher lists of what it watches
    /// changed.
    pub(crate) fn watchers_changed(&mut self, kind: EventKind, watcher: &str, resource: &str) {
        let watched: Vec<String> = match kind {
            EventKind::Presence => vec![resource.to_owned()],
            EventKind::List => self
                .presence
                .contacts
                .followed(watcher)
                .into_iter()
                .map(str::to_owned)
                .collect(),
            EventKind::Winfo => Vec::new(),
        };
        for aor in watched {
            self.winfo_changed(&aor);
        }
    }

    /// `owner`'s contact list changed: their list subscriptions hear.
    pub(crate) fn list_changed(&mut self, owner: &str) {
        let ids = self.presence.lists.get(owner).cloned().unwrap_or_default();
        for id in ids {
            self.notify_due(id, false);
        }
    }

    /// The watchers of `aor` changed: its watcher-information subscribers hear.
    pub(crate) fn winfo_changed(&mut self, aor: &str) {
        let ids = self.presence.winfo.get(aor).cloned().unwrap_or_default();
        for id in ids {
            self.notify_due(id, false);
        }
    }

    /// Sends the subscription's NOTIFY now if its document changed (or
    /// `force`) and the throttle allows; else leaves it marked for later.
    pub(crate) fn notify_due(&mut self, id: u128, force: bool) {
        let Some(sub) = self.presence.subs.get(&id) else {
            return;
        };
        // Compared without the document version (winfo, lists), which moves
        // with every NOTIFY: only a change of content sends one.
        let body = self.body_for(sub, 0);
        let hash = self.presence.body_hash(&body.1);
        let version = sub.version;
        let Some(sub) = self.presence.subs.get_mut(&id) else {
            return;
        };
        if !force && hash == sub.last_body && !sub.dirty {
            return;
        }
        if !force && hash == sub.last_body && sub.in_flight.is_none() {
            // Marked earlier but the document ended up as it was sent.
            sub.dirty = false;
            self.presence.dirty.remove(&id);
            return;
        }
        sub.dirty = true;
        let throttled =
            sub.in_flight.is_some() || sub.last_sent.is_some_and(|t| t.elapsed() < NOTIFY_INTERVAL);
        if throttled {
            self.presence.dirty.insert(id);
            return;
        }
        self.presence.dirty.remove(&id);
        let Some(mut sub) = self.presence.subs.remove(&id) else {
            return;
        };
        sub.dirty = false;
        sub.last_body = hash;
        let body = if sub.kind == EventKind::Presence || version == 0 {
            body
        } else {
            self.body_for(&sub, version)
        };
        self.send_notify_body(&mut sub, None, body);
        self.presence.subs.insert(id, sub);
    }

    /// Called from the tick: coalesced NOTIFYs whose interval has passed.
    pub(crate) fn flush_due_notifies(&mut self) {
        if self.presence.dirty.is_empty() {
            return;
        }
        let ids: Vec<u128> = self.presence.dirty.iter().copied().collect();
        for id in ids {
            let ready = self.presence.subs.get(&id).is_some_and(|s| {
                s.in_flight.is_none() && s.last_sent.is_none_or(|t| t.elapsed() >= NOTIFY_INTERVAL)
            });
            if ready {
                // A change undone within the interval sends nothing.
                self.notify_due(id, false);
            }
        }
    }

    /// The document this subscription's watcher is allowed to see now,
    /// with its Content-Type.
    fn body_for(&self, sub: &Sub, version: u32) -> (String, String) {
        match sub.kind {
            EventKind::Presence => (
                "application/pidf+xml".into(),
                self.presence_document(&sub.resource, &sub.watcher),
            ),
            EventKind::Winfo => (
                "application/watcherinfo+xml".into(),
                self.watcher_info(&sub.resource, version),
            ),
            EventKind::List => self.list_document(sub, version),
        }
    }

    /// RFC 4662: the owner's view of every contact they follow, as one
    /// multipart body (versioned; documents beyond the size budget are
    /// listed without state).
    fn list_document(&self, sub: &Sub, version: u32) -> (String, String) {
        let owner = &sub.watcher;
        let budget = self.cfg.limits.max_message_size.saturating_sub(2048);
        let mut used = 0;
        let resources: Vec<presence::rlmi::Resource> = self
            .presence
            .contacts
            .followed(owner)
            .into_iter()
            .map(|c| {
                let doc = self.presence_document(c, owner);
                used += doc.len() + 200;
                presence::rlmi::Resource {
                    uri: c.to_string(),
                    pidf: if used <= budget { doc } else { String::new() },
                }
            })
            .collect();
        presence::rlmi::multipart(&sub.resource, version, &self.cfg.domain, &resources)
    }

    /// `watcher`'s view of `resource`.
    pub(crate) fn presence_document(&self, resource: &str, watcher: &str) -> String {
        let exists = self.users.get(resource).is_some_and(|u| u.enabled);
        let w = super::watcher(&self.presence.contacts, &self.cfg.domain, resource, watcher);
        let p = super::privacy(&self.policies, resource);
        let level = presence::access::level(w, p.internal, p.federated)
            .filter(|_| w.internal || self.federated_view(resource, watcher, w));
        let (Some(level), true) = (level, exists) else {
            return presence::offline(resource).to_xml();
        };
        let full = match self.presence.published(resource) {
            Some(d) => d.clone(),
            None => presence::privacy::from_registration(
                resource,
                self.location.is_registered(resource, unix_now()),
            ),
        };
        presence::view(&full, level).to_xml()
    }

    /// The watcher list of `aor` (its presence subscribers, one per watcher).
    fn watcher_info(&self, aor: &str, version: u32) -> String {
        let list = self.watcher_entries(aor);
        presence::watcherinfo::full(aor, version, &list)
    }

    /// Who watches `aor`, with each watcher's status, for the admin API.
    pub(crate) fn watcher_statuses(&self, aor: &str) -> Vec<(String, String)> {
        use presence::access::WatcherStatus as S;
        self.watcher_entries(aor)
            .into_iter()
            .map(|w| {
                let st = match w.status {
                    S::Active => "active",
                    S::Pending => "pending",
                    S::Rejected => "rejected",
                };
                (w.uri, st.to_string())
            })
            .collect()
    }

    fn watcher_entries(&self, aor: &str) -> Vec<presence::watcherinfo::WatcherEntry> {
        let p = super::privacy(&self.policies, aor);
        let mut seen = std::collections::HashSet::new();
        let mut list = Vec::new();
        let direct = self
            .presence
            .watchers
            .get(aor)
            .into_iter()
            .flatten()
            .filter_map(|id| self.presence.subs.get(id))
            .map(|s| (s.id, s.watcher.clone()));
        // Owners following `aor` through a contact-list subscription.
        let listed = self
            .presence
            .contacts
            .followers(aor)
            .into_iter()
            .filter_map(|o| self.presence.lists.get(o)?.first())
            .filter_map(|id| self.presence.subs.get(id))
            .map(|s| (s.id, s.watcher.clone()));
        // And those the pool's other nodes serve (`remote`).
        let now = unix_now();
        let remote = &self.presence.remote;
        let remote_direct = remote
            .of(EventKind::Presence, aor, now)
            .map(|(id, s)| (id, s.watcher.clone()));
        let remote_listed = self
            .presence
            .contacts
            .followers(aor)
            .into_iter()
            .filter_map(|o| remote.of(EventKind::List, o, now).next())
            .map(|(id, s)| (id, s.watcher.clone()));
        for (id, who) in direct
            .chain(listed)
            .chain(remote_direct)
            .chain(remote_listed)
            .collect::<Vec<(u128, Arc<str>)>>()
        {
            if &*who == aor || !seen.insert(who.clone()) {
                continue;
            }
            let w = super::watcher(&self.presence.contacts, &self.cfg.domain, aor, &who);
            list.push(presence::watcherinfo::WatcherEntry {
                id: tag(id),
                uri: who.to_string(),
                status: presence::access::status(w, p.internal, p.federated),
            });
        }
        list.sort_by(|a, b| a.uri.cmp(&b.uri));
        list
    }

    /// Sends the subscription's NOTIFY with its current document.
    pub(crate) fn send_notify(&mut self, sub: &mut Sub, ending: Option<Ending>) {
        let body = self.body_for(sub, sub.version);
        self.send_notify_body(sub, ending, body);
    }

    fn send_notify_body(
        &mut self,
        sub: &mut Sub,
        ending: Option<Ending>,
        (content_type, body): (String, String),
    ) {
        let Some((proto, target)) = self.notify_target(sub) else {
            // Unreachable until the subscriber refreshes over a new
            // connection - or, for a partner's watcher, until a connection
            // to its partner opens (asked for here; the NOTIFY is retried
            // then with the document as it is by that time).
            sub.dirty = true;
            sub.last_body = 0;
            self.notify_via_partner(&sub.watcher.clone(), sub.id);
            return;
        };
        sub.local_cseq = sub.local_cseq.saturating_add(1);
        if sub.kind != EventKind::Presence {
            sub.version = sub.version.wrapping_add(1);
        }
        let state = match ending {
            Some(Ending::Timeout) => "terminated;reason=timeout".to_string(),
            Some(Ending::Deactivated) => "terminated;reason=deactivated".to_string(),
            None => {
                let left = (sub.expires_at - unix_now()).max(0);
                format!("active;expires={left}")
            }
        };
        let event = match sub.dialog.event_id() {
            Some(i) => format!("{};id={i}", sub.kind.name()),
            None => sub.kind.name().to_string(),
        };
        let via = self.via_for(proto);
        let host = self.our_host(proto);
        let d = &sub.dialog;
        let mut b = RequestBuilder::new("NOTIFY", d.target())
            .header("Via", &via)
            .header("Max-Forwards", "70")
            .header("From", &format!("{};tag={}", d.to(), tag(sub.id)))
            .header("To", d.from())
            .header("Call-ID", d.call_id())
            .header("CSeq", &format!("{} NOTIFY", sub.local_cseq))
            .header(
                "Contact",
                &format!("<sip:{host};transport={}>", proto_name(proto)),
            )
            .header("Event", &event)
            .header("Subscription-State", &state);
        for route in d.routes() {
            b = b.header("Route", route);
        }
        if sub.kind == EventKind::List {
            b = b.header("Require", "eventlist");
        }
        let bytes = b.body(&content_type, body.as_bytes());
        let Ok(msg) = sip::parse_datagram(bytes, &self.forward_limits()) else {
            tracing::warn!(id = %tag(sub.id), "a NOTIFY could not be built");
            return;
        };
        let reliability = if proto.is_reliable() {
            Reliability::Reliable
        } else {
            Reliability::Unreliable
        };
        match self
            .txn
            .send_request(msg, target, reliability, Instant::now(), &mut self.out)
        {
            Ok(cid) => {
                sub.in_flight = Some(cid);
                sub.last_sent = Some(Instant::now());
                self.presence.notifies.insert(cid, sub.id);
                self.metrics
                    .notifies_sent
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Err(e) => {
                sub.dirty = true;
                tracing::debug!(?e, "NOTIFY not sent");
            }
        }
    }

    /// Where the subscriber is reached: the connection its SUBSCRIBE came
    /// on, else (after a restart) a registered binding with the same
    /// contact, else for UDP the address it came from.
    fn notify_target(&self, sub: &Sub) -> Option<(Protocol, Target)> {
        let source = sub.dialog.source();
        let (_, addr) = source.split_once(':')?;
        let proto = source_protocol(source)?;
        if proto == Protocol::Udp {
            let sock = self
                .transport
                .local_addrs()
                .iter()
                .find(|l| l.0 == Protocol::Udp)?
                .2?;
            return Some((
                proto,
                Target::Udp {
                    flow: sock,
                    dest: addr.parse().ok()?,
                },
            ));
        }
        if let Some(f) = sub.flow {
            if self.transport.flow_local(f).is_some() {
                return Some((proto, Target::Flow(f)));
            }
        }
        if let Some(f) = self.partner_flow_for(&sub.watcher) {
            return Some((Protocol::Tls, Target::Flow(f)));
        }
        if sub.flow.is_some() {
            return None;
        }
        self.location
            .lookup(&sub.watcher, unix_now())
            .iter()
            .find(|(b, _)| b.contact == sub.dialog.target())
            .and_then(|(b, flow)| self.target_for(b, *flow))
    }

    /// A NOTIFY got its final response (or timed out, 408).
    pub(crate) fn notify_done(&mut self, cid: TxnId, status: u16) {
        let Some(id) = self.presence.notifies.remove(&cid) else {
            return;
        };
        let Some(sub) = self.presence.subs.get_mut(&id) else {
            return;
        };
        if sub.in_flight == Some(cid) {
            sub.in_flight = None;
        }
        if status >= 300 {
            // Watchers decide this, so it is logged at a bounded rate.
            static ENDED: sip_transport::logging::RateLimited =
                sip_transport::logging::RateLimited::new();
            if let Some(suppressed) = ENDED.allow() {
                tracing::info!(id = %tag(id), status, suppressed, "NOTIFY refused or unanswered; the subscription ends");
            }
            self.drop_subscription(id);
            return;
        }
        if sub.dirty {
            self.presence.dirty.insert(id);
        }
    }

    /// Forgets a subscription here, and later in the database (no NOTIFY).
    fn drop_subscription(&mut self, id: u128) {
        let Some(sub) = self.presence.remove(id) else {
            return;
        };
        self.watchers_changed(sub.kind, &sub.watcher, &sub.resource);
        self.presence.removals.push(id);
    }

    /// Ends a subscription with a final NOTIFY.
    fn end_subscription(&mut self, id: u128, why: Ending) {
        let Some(mut sub) = self.presence.remove(id) else {
            return;
        };
        self.send_notify(&mut sub, Some(why));
        self.watchers_changed(sub.kind, &sub.watcher, &sub.resource);
        self.presence.removals.push(id);
    }

    /// Subscriptions whose time is up end with `reason=timeout`; rows of
    /// ended subscriptions leave the database in one write.
    pub(crate) fn expire_subscriptions(&mut self, now: i64) {
        let due: Vec<u128> = self
            .presence
            .subs
            .values()
            .filter(|s| s.expires_at <= now)
            .map(|s| s.id)
            .collect();
        for id in due {
            self.end_subscription(id, Ending::Timeout);
        }
        if self.presence.removals.is_empty() {
            return;
        }
        // One write at a time; the rest wait for the next second.
        let Some(permit) = self.writes.try_acquire() else {
            return;
        };
        let ids: Vec<String> = self.presence.removals.drain(..).map(tag).collect();
        let store = self.store.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = store.remove_subscriptions(ids).await {
                tracing::warn!(error = %e, "ended subscriptions not removed from the database; they expire there");
            }
        });
    }

    /// A user was disabled or removed: their subscriptions end, and their
    /// watchers now see them offline.
    pub(crate) fn presence_user_gone(&mut self, aor: &str) {
        let mine: Vec<u128> = self
            .presence
            .subs
            .values()
            .filter(|s| &*s.watcher == aor)
            .map(|s| s.id)
            .collect();
        for id in mine {
            self.end_subscription(id, Ending::Deactivated);
        }
        self.presence.publications.remove(aor);
        self.presence_changed(aor);
    }
}
