//! SUBSCRIBE (RFC 6665) for `presence` (RFC 3856) and `presence.winfo`
//! (RFC 3857), and the NOTIFYs this server sends as notifier.
//!
//! A new subscription is authenticated (407), written to the database, then
//! answered 200 with our dialog tag (128 random bits, also its id) and
//! followed by a NOTIFY with the current state. Refreshes and unsubscribes
//! arrive inside that dialog and are not challenged again: only the holder
//! of the dialog's identifiers can send them. Every watcher is answered the
//! same way whatever the privacy rules say (200, `active`), so a watcher
//! cannot learn that they are pending, blocked, or watching no one.
//!
//! NOTIFYs: one in flight per subscription; changes while one is in flight
//! or within [`NOTIFY_INTERVAL`] of the last are coalesced, and a NOTIFY
//! goes only when the watcher's document actually differs. A NOTIFY
//! answered 481, timed out or refused ends the subscription.

use std::time::Instant;

use bytes::Bytes;
use sip::build::RequestBuilder;
use sip::headers::{Contact, Event as EventHeader, Expires, RecordRoute};
use sip::{HeaderKind, Uri};
use sip_transport::{Protocol, Target};
use sip_txn::{Reliability, TxnId};
use store::{PresenceState as _, SubscriptionRow};

use super::{
    EventKind, Sub, DEFAULT_EXPIRES, MAX_EXPIRES, MAX_SUBSCRIPTIONS, MIN_EXPIRES, NOTIFY_INTERVAL,
};
use crate::core::authn::Challenger;
use crate::core::fork::source_protocol;
use crate::core::{Core, Event, Req};
use crate::unix_now;

const ALLOW_EVENTS: &str = "presence, presence.winfo";

/// Why a subscription ends (the NOTIFY's `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Expired, or the subscriber unsubscribed (RFC 6665 §4.2.2).
    Timeout,
    /// The watcher's account was disabled or removed.
    Deactivated,
}

/// A subscription change written (or not), back in the core.
#[derive(Debug)]
pub(crate) struct Subscribed {
    pub(crate) id: TxnId,
    pub(crate) sub: Box<Sub>,
    /// Expires 0: the last NOTIFY, then gone.
    pub(crate) ending: bool,
    pub(crate) stored: bool,
    pub(crate) ok: Bytes,
    pub(crate) failed: Bytes,
}

impl Core {
    pub(crate) async fn on_subscribe(&mut self, r: &Req<'_>) {
        let Some((kind, event_id)) = self.event_of(r) else {
            return self
                .reply(r, 489, "Bad Event", &[("Allow-Events", ALLOW_EVENTS)])
                .await;
        };
        let Some((watcher, user)) = self.local_sender(r) else {
            // Federated watchers arrive with federation.
            return self.reply(r, 403, "Relaying Denied", &[]).await;
        };
        if !self
            .authenticate(r, &watcher, &user, Challenger::Proxy)
            .await
        {
            return;
        }
        let Uri::Sip(ruri) = r.f.request_uri else {
            return self.reply(r, 416, "Unsupported URI Scheme", &[]).await;
        };
        let Some(target_user) = ruri.user else {
            return self.reply(r, 404, "Not Found", &[]).await;
        };
        let resource = format!("sip:{target_user}@{}", self.cfg.domain);
        if kind == EventKind::Winfo && resource != watcher {
            return self
                .reply(
                    r,
                    403,
                    "Forbidden (Watcher Information Is for Its Owner Only)",
                    &[],
                )
                .await;
        }
        let mut kind = kind;
        if let Some(owner) = super::list_owner(&resource).filter(|_| kind == EventKind::Presence) {
            if owner != watcher {
                return self
                    .reply(
                        r,
                        403,
                        "Forbidden (A Contact List Is for Its Owner Only)",
                        &[],
                    )
                    .await;
            }
            let eventlist = r
                .msg
                .list::<sip::headers::Supported>()
                .filter_map(Result::ok)
                .any(|t| t.0.eq_ignore_ascii_case("eventlist"));
            if !eventlist {
                return self
                    .reply(r, 421, "Extension Required", &[("Require", "eventlist")])
                    .await;
            }
            kind = EventKind::List;
        }
        if !self.subscribe_rate.allow(watcher.clone(), Instant::now()) {
            return self
                .reply(
                    r,
                    503,
                    "Service Unavailable (Subscription Rate Exceeded)",
                    &[("Retry-After", "5")],
                )
                .await;
        }
        if self
            .presence
            .per_watcher
            .get(&watcher)
            .copied()
            .unwrap_or(0)
            >= MAX_SUBSCRIPTIONS
        {
            return self
                .reply(r, 403, "Forbidden (Too Many Subscriptions)", &[])
                .await;
        }
        let Some(expires) = self.granted_expires(r).await else {
            return;
        };
        let Some(contact) = self.contact_of(r) else {
            return self
                .reply(r, 400, "Bad Request (Missing or Invalid Contact)", &[])
                .await;
        };
        if r.f.max_forwards == Some(0) {
            return self.reply(r, 483, "Too Many Hops", &[]).await;
        }
        let Some(id) = self.random_id() else {
            return self.reply(r, 500, "Server Internal Error", &[]).await;
        };
        let route_set = r
            .msg
            .list::<RecordRoute>()
            .filter_map(Result::ok)
            .filter_map(|rr| match rr.uri {
                Uri::Sip(u) => Some(format!("<{}>", u.raw)),
                _ => None,
            })
            .collect();
        let from_value = r
            .msg
            .header(HeaderKind::From)
            .map(|h| h.value)
            .unwrap_or("");
        let to_value = r.msg.header(HeaderKind::To).map(|h| h.value).unwrap_or("");
        let row = SubscriptionRow {
            id: id.clone(),
            event: kind.name().into(),
            watcher,
            resource,
            call_id: r.f.call_id.to_owned(),
            remote_tag: r.f.from.tag().unwrap_or("").to_owned(),
            from_value: from_value.to_owned(),
            to_value: to_value.to_owned(),
            remote_target: contact,
            route_set,
            source: format!("{}:{}", proto_name(r.src.protocol), r.src.remote),
            event_id: event_id.map(str::to_owned),
            local_cseq: 0,
            remote_cseq: r.f.cseq.seq,
            expires_at: unix_now() + i64::from(expires),
        };
        let sub = Sub {
            row,
            kind,
            flow: r.src.protocol.is_reliable().then_some(r.src.flow),
            in_flight: None,
            last_sent: None,
            last_body: 0,
            dirty: true,
            created: Instant::now(),
            version: 0,
        };
        let exp = expires.to_string();
        let contact = format!(
            "<sip:{};transport={}>",
            self.our_host(r.src.protocol),
            proto_name(r.src.protocol)
        );
        let mut headers = vec![("Expires", exp.as_str()), ("Contact", contact.as_str())];
        if kind == EventKind::List {
            headers.push(("Require", "eventlist"));
        }
        let ok = self.build_tagged(r, 200, "OK", &headers, &id);
        let failed = self.build(
            r,
            500,
            "Server Internal Error (Subscription Not Stored)",
            &[],
        );
        self.store_subscription(r, Box::new(sub), expires == 0, ok, failed)
            .await;
    }

    /// A SUBSCRIBE inside one of our subscription dialogs: refresh or end.
    pub(crate) async fn on_subscribe_in_dialog(&mut self, r: &Req<'_>) {
        let tag = r.f.to.tag().unwrap_or("");
        let matches = self.presence.subs.get(tag).is_some_and(|s| {
            s.row.call_id == r.f.call_id && Some(s.row.remote_tag.as_str()) == r.f.from.tag()
        });
        if !matches {
            return self.reply(r, 481, "Subscription Does Not Exist", &[]).await;
        }
        let Some((kind, event_id)) = self.event_of(r) else {
            return self
                .reply(r, 489, "Bad Event", &[("Allow-Events", ALLOW_EVENTS)])
                .await;
        };
        let Some(sub) = self.presence.subs.get(tag) else {
            return;
        };
        let kind = if sub.kind == EventKind::List && kind == EventKind::Presence {
            EventKind::List
        } else {
            kind
        };
        if kind != sub.kind || event_id != sub.row.event_id.as_deref() {
            return self
                .reply(r, 489, "Bad Event", &[("Allow-Events", ALLOW_EVENTS)])
                .await;
        }
        if r.f.cseq.seq <= sub.row.remote_cseq {
            return self
                .reply(r, 500, "Server Internal Error (CSeq Out of Order)", &[])
                .await;
        }
        let Some(expires) = self.granted_expires(r).await else {
            return;
        };
        let contact = self.contact_of(r);
        let Some(sub) = self.presence.subs.get(tag) else {
            return;
        };
        let mut row = sub.row.clone();
        row.remote_cseq = r.f.cseq.seq;
        row.expires_at = unix_now() + i64::from(expires);
        row.source = format!("{}:{}", proto_name(r.src.protocol), r.src.remote);
        if let Some(c) = contact {
            row.remote_target = c;
        }
        let refreshed = Sub {
            row,
            kind,
            flow: r.src.protocol.is_reliable().then_some(r.src.flow),
            in_flight: None,
            last_sent: sub.last_sent,
            last_body: 0,
            dirty: true,
            created: sub.created,
            version: sub.version,
        };
        let exp = expires.to_string();
        let mut headers = vec![("Expires", exp.as_str())];
        if kind == EventKind::List {
            headers.push(("Require", "eventlist"));
        }
        let ok = self.build_tagged(r, 200, "OK", &headers, tag);
        let failed = self.build(
            r,
            500,
            "Server Internal Error (Subscription Not Stored)",
            &[],
        );
        self.store_subscription(r, Box::new(refreshed), expires == 0, ok, failed)
            .await;
    }

    /// The event package and id of the request, if one we serve.
    fn event_of<'m>(&self, r: &Req<'m>) -> Option<(EventKind, Option<&'m str>)> {
        let e = r.msg.typed::<EventHeader>().ok().flatten()?;
        let kind = if e.event_type.eq_ignore_ascii_case("presence") {
            EventKind::Presence
        } else if e.event_type.eq_ignore_ascii_case("presence.winfo") {
            EventKind::Winfo
        } else {
            return None;
        };
        Some((kind, e.id()))
    }

    /// The lifetime to grant, or `None` once the request has been answered.
    async fn granted_expires(&mut self, r: &Req<'_>) -> Option<u32> {
        let Ok(e) = r.msg.typed::<Expires>() else {
            self.reply(r, 400, "Bad Request (Invalid Expires)", &[])
                .await;
            return None;
        };
        let e = e.map_or(DEFAULT_EXPIRES, |e| e.0);
        if e != 0 && e < MIN_EXPIRES {
            let min = MIN_EXPIRES.to_string();
            self.reply(r, 423, "Interval Too Brief", &[("Min-Expires", &min)])
                .await;
            return None;
        }
        Some(e.min(MAX_EXPIRES))
    }

    /// The single SIP Contact URI of the request.
    fn contact_of(&self, r: &Req<'_>) -> Option<String> {
        let mut it = r.msg.list::<Contact>();
        let first = it.next()?.ok()?;
        if it.next().is_some() {
            return None;
        }
        let na = first.name_addr()?;
        match na.uri {
            Uri::Sip(u) => Some(u.raw.to_owned()),
            _ => None,
        }
    }

    async fn store_subscription(
        &mut self,
        r: &Req<'_>,
        sub: Box<Sub>,
        ending: bool,
        ok: Bytes,
        failed: Bytes,
    ) {
        let Ok(permit) = self.writes.clone().try_acquire_owned() else {
            return self
                .reply(
                    r,
                    503,
                    "Service Unavailable (Storage Busy)",
                    &[("Retry-After", "1")],
                )
                .await;
        };
        let (store, events, id) = (self.store.clone(), self.events_tx.clone(), r.id);
        let row = sub.row.clone();
        let known = self.presence.subs.contains_key(&row.id);
        tokio::spawn(async move {
            let _permit = permit;
            let result = if ending {
                // A fetch (a new subscription with Expires 0) is never stored.
                if known {
                    store.remove_subscription(&row.id).await.map(|_| ())
                } else {
                    Ok(())
                }
            } else {
                store.put_subscription(row).await
            };
            let stored = match result {
                Ok(()) => true,
                Err(e) => {
                    tracing::error!(error = %e, "subscription not stored");
                    false
                }
            };
            let _ = events
                .send(Event::Subscribed(Box::new(Subscribed {
                    id,
                    sub,
                    ending,
                    stored,
                    ok,
                    failed,
                })))
                .await;
        });
    }

    /// A subscription change was written: answer, then NOTIFY.
    pub(crate) async fn subscribed(&mut self, s: Subscribed) {
        if !s.stored {
            return self.respond_event(s.id, "SUBSCRIBE", 500, s.failed).await;
        }
        let mut sub = *s.sub;
        let id = sub.row.id.clone();
        // A refresh replaces the live entry (keeping its CSeq and any NOTIFY in flight).
        let was_live = match self.presence.remove(&id) {
            Some(old) => {
                sub.row.local_cseq = sub.row.local_cseq.max(old.row.local_cseq);
                sub.in_flight = old.in_flight;
                true
            }
            None => false,
        };
        self.respond_event(s.id, "SUBSCRIBE", 200, s.ok).await;
        if s.ending {
            self.send_notify(&mut sub, Some(Ending::Timeout));
            if was_live {
                self.watchers_changed(sub.kind, &sub.row.watcher, &sub.row.resource);
            }
        } else {
            let (kind, watcher, resource) =
                (sub.kind, sub.row.watcher.clone(), sub.row.resource.clone());
            self.presence.insert(sub);
            if !was_live {
                self.watchers_changed(kind, &watcher, &resource);
            }
            self.presence.dirty.insert(id.clone());
            // RFC 6665 §4.2.1.4: every SUBSCRIBE is followed by a NOTIFY,
            // whether the state changed or not.
            if let Some(sub) = self.presence.subs.get_mut(&id) {
                sub.last_body = 0;
                sub.last_sent = None;
            }
            self.notify_due(&id, true);
        }
        self.flush().await;
    }

    /// The state of `aor` changed (publication, registration, contacts,
    /// policy): every watcher whose document differs gets a NOTIFY.
    pub(crate) fn presence_changed(&mut self, aor: &str) {
        let ids: Vec<String> = self.presence.watchers.get(aor).cloned().unwrap_or_default();
        for id in ids {
            self.notify_due(&id, false);
        }
        // Contact-list subscriptions of everyone who follows `aor`.
        let lists: Vec<String> = self
            .presence
            .contacts
            .followers(aor)
            .iter()
            .filter_map(|o| self.presence.lists.get(*o))
            .flatten()
            .cloned()
            .collect();
        for id in lists {
            self.notify_due(&id, false);
        }
        self.winfo_changed(aor);
    }

    /// A subscription came or went: the watcher lists of what it watches
    /// changed.
    fn watchers_changed(&mut self, kind: EventKind, watcher: &str, resource: &str) {
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
        let ids: Vec<String> = self.presence.lists.get(owner).cloned().unwrap_or_default();
        for id in ids {
            self.notify_due(&id, false);
        }
    }

    /// The watchers of `aor` changed: its watcher-information subscribers hear.
    pub(crate) fn winfo_changed(&mut self, aor: &str) {
        let ids: Vec<String> = self.presence.winfo.get(aor).cloned().unwrap_or_default();
        for id in ids {
            self.notify_due(&id, false);
        }
    }

    /// Sends the subscription's NOTIFY now if its document changed (or
    /// `force`) and the throttle allows; else leaves it marked for later.
    pub(crate) fn notify_due(&mut self, id: &str, force: bool) {
        let Some(sub) = self.presence.subs.get(id) else {
            return;
        };
        // Compared without the document version (winfo, lists), which moves
        // with every NOTIFY: only a change of content sends one.
        let body = self.body_for(sub, 0);
        let hash = self.presence.body_hash(&body.1);
        let version = sub.version;
        let Some(sub) = self.presence.subs.get_mut(id) else {
            return;
        };
        if !force && hash == sub.last_body && !sub.dirty {
            return;
        }
        if !force && hash == sub.last_body && sub.in_flight.is_none() {
            // Marked earlier but the document ended up as it was sent.
            sub.dirty = false;
            self.presence.dirty.remove(id);
            return;
        }
        sub.dirty = true;
        let throttled =
            sub.in_flight.is_some() || sub.last_sent.is_some_and(|t| t.elapsed() < NOTIFY_INTERVAL);
        if throttled {
            self.presence.dirty.insert(id.to_owned());
            return;
        }
        self.presence.dirty.remove(id);
        let Some(mut sub) = self.presence.subs.remove(id) else {
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
        self.presence.subs.insert(id.to_owned(), sub);
    }

    /// Called from the tick: coalesced NOTIFYs whose interval has passed.
    pub(crate) fn flush_due_notifies(&mut self) {
        if self.presence.dirty.is_empty() {
            return;
        }
        let ids: Vec<String> = self.presence.dirty.iter().cloned().collect();
        for id in ids {
            let ready = self.presence.subs.get(&id).is_some_and(|s| {
                s.in_flight.is_none() && s.last_sent.is_none_or(|t| t.elapsed() >= NOTIFY_INTERVAL)
            });
            if ready {
                // A change undone within the interval sends nothing.
                self.notify_due(&id, false);
            }
        }
    }

    /// The document this subscription's watcher is allowed to see now,
    /// with its Content-Type.
    fn body_for(&self, sub: &Sub, version: u32) -> (String, String) {
        let resource = &sub.row.resource;
        match sub.kind {
            EventKind::Presence => (
                "application/pidf+xml".into(),
                self.presence_document(resource, &sub.row.watcher),
            ),
            EventKind::Winfo => (
                "application/watcherinfo+xml".into(),
                self.watcher_info(resource, version),
            ),
            EventKind::List => self.list_document(sub, version),
        }
    }

    /// RFC 4662: the owner's view of every contact they follow, as one
    /// multipart body (versioned; documents beyond the size budget are
    /// listed without state).
    fn list_document(&self, sub: &Sub, version: u32) -> (String, String) {
        let owner = &sub.row.watcher;
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
        presence::rlmi::multipart(&sub.row.resource, version, &self.cfg.domain, &resources)
    }

    /// `watcher`'s view of `resource`.
    pub(crate) fn presence_document(&self, resource: &str, watcher: &str) -> String {
        let exists = self.users.get(resource).is_some_and(|u| u.enabled);
        let w = super::watcher(&self.presence.contacts, &self.cfg.domain, resource, watcher);
        let p = super::privacy(&self.policies, resource);
        let level = presence::access::level(w, p.internal, p.federated);
        let (Some(level), true) = (level, exists) else {
            return presence::offline(resource).to_xml();
        };
        let full = match self.presence.published(resource) {
            Some(d) => d.clone(),
            None => presence::privacy::from_registration(
                resource,
                !self.location.lookup(resource, unix_now()).is_empty(),
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
        for id in self.presence.watchers.get(aor).into_iter().flatten() {
            let Some(s) = self.presence.subs.get(id) else {
                continue;
            };
            if s.row.watcher == aor || !seen.insert(s.row.watcher.clone()) {
                continue;
            }
            let w = super::watcher(
                &self.presence.contacts,
                &self.cfg.domain,
                aor,
                &s.row.watcher,
            );
            list.push(presence::watcherinfo::WatcherEntry {
                id: s.row.id.clone(),
                uri: s.row.watcher.clone(),
                status: presence::access::status(w, p.internal, p.federated),
            });
        }
        // Owners following `aor` through a contact-list subscription.
        for owner in self.presence.contacts.followers(aor) {
            let Some(id) = self.presence.lists.get(owner).and_then(|v| v.first()) else {
                continue;
            };
            let Some(s) = self.presence.subs.get(id) else {
                continue;
            };
            if owner == aor || !seen.insert(owner.to_string()) {
                continue;
            }
            let w = super::watcher(&self.presence.contacts, &self.cfg.domain, aor, owner);
            list.push(presence::watcherinfo::WatcherEntry {
                id: s.row.id.clone(),
                uri: owner.to_string(),
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
            // Unreachable until the subscriber refreshes over a new connection.
            sub.dirty = true;
            return;
        };
        sub.row.local_cseq = sub.row.local_cseq.saturating_add(1);
        if sub.kind != EventKind::Presence {
            sub.version = sub.version.wrapping_add(1);
        }
        let state = match ending {
            Some(Ending::Timeout) => "terminated;reason=timeout".to_string(),
            Some(Ending::Deactivated) => "terminated;reason=deactivated".to_string(),
            None => {
                let left = (sub.row.expires_at - unix_now()).max(0);
                format!("active;expires={left}")
            }
        };
        let event = match &sub.row.event_id {
            Some(i) => format!("{};id={i}", sub.kind.name()),
            None => sub.kind.name().to_string(),
        };
        let via = self.via_for(proto);
        let host = self.our_host(proto);
        let mut b = RequestBuilder::new("NOTIFY", &sub.row.remote_target)
            .header("Via", &via)
            .header("Max-Forwards", "70")
            .header("From", &format!("{};tag={}", sub.row.to_value, sub.row.id))
            .header("To", &sub.row.from_value)
            .header("Call-ID", &sub.row.call_id)
            .header("CSeq", &format!("{} NOTIFY", sub.row.local_cseq))
            .header(
                "Contact",
                &format!("<sip:{host};transport={}>", proto_name(proto)),
            )
            .header("Event", &event)
            .header("Subscription-State", &state);
        for route in &sub.row.route_set {
            b = b.header("Route", route);
        }
        if sub.kind == EventKind::List {
            b = b.header("Require", "eventlist");
        }
        let bytes = b.body(&content_type, body.as_bytes());
        let Ok(msg) = sip::parse_datagram(bytes, &self.forward_limits()) else {
            tracing::warn!(id = %sub.row.id, "a NOTIFY could not be built; the subscription ends");
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
                self.presence.notifies.insert(cid, sub.row.id.clone());
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
        let (_, addr) = sub.row.source.split_once(':')?;
        let proto = source_protocol(&sub.row.source)?;
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
            return Some((proto, Target::Flow(f)));
        }
        self.location
            .lookup(&sub.row.watcher, unix_now())
            .iter()
            .find(|(b, _)| b.contact == sub.row.remote_target)
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
            tracing::info!(%id, status, "NOTIFY refused or unanswered; the subscription ends");
            self.drop_subscription(&id);
            return;
        }
        if sub.dirty {
            self.presence.dirty.insert(id);
        }
    }

    /// Forgets a subscription here and in the database (no NOTIFY).
    pub(crate) fn drop_subscription(&mut self, id: &str) {
        let Some(sub) = self.presence.remove(id) else {
            return;
        };
        self.watchers_changed(sub.kind, &sub.row.watcher, &sub.row.resource);
        let store = self.store.clone();
        let id = id.to_owned();
        tokio::spawn(async move {
            if let Err(e) = store.remove_subscription(&id).await {
                tracing::warn!(error = %e, "could not remove a subscription");
            }
        });
    }

    /// Ends a subscription with a final NOTIFY.
    pub(crate) fn end_subscription(&mut self, id: &str, why: Ending) {
        let Some(mut sub) = self.presence.remove(id) else {
            return;
        };
        self.send_notify(&mut sub, Some(why));
        self.watchers_changed(sub.kind, &sub.row.watcher, &sub.row.resource);
        let store = self.store.clone();
        let id = id.to_owned();
        tokio::spawn(async move {
            if let Err(e) = store.remove_subscription(&id).await {
                tracing::warn!(error = %e, "could not remove a subscription");
            }
        });
    }

    /// Subscriptions whose time is up end with `reason=timeout`.
    pub(crate) fn expire_subscriptions(&mut self, now: i64) {
        let due: Vec<String> = self
            .presence
            .subs
            .iter()
            .filter(|(_, s)| s.row.expires_at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            self.end_subscription(&id, Ending::Timeout);
        }
    }

    /// A user was disabled or removed: their subscriptions end, and their
    /// watchers now see them offline.
    pub(crate) fn presence_user_gone(&mut self, aor: &str) {
        let mine: Vec<String> = self
            .presence
            .subs
            .iter()
            .filter(|(_, s)| s.row.watcher == aor)
            .map(|(id, _)| id.clone())
            .collect();
        for id in mine {
            self.end_subscription(&id, Ending::Deactivated);
        }
        self.presence.publications.remove(aor);
        self.presence_changed(aor);
    }
}

fn proto_name(p: Protocol) -> String {
    p.via_token().to_ascii_lowercase()
}
