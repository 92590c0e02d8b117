//! SUBSCRIBE (RFC 6665) for `presence` (RFC 3856), `presence.winfo`
//! (RFC 3857) and a user's contact list (RFC 4662).
//!
//! A new subscription is authenticated (407), written to the database, then
//! answered 200 with our dialog tag (128 random bits, also its id) and
//! followed by a NOTIFY with the current state (`notify`). Refreshes and
//! unsubscribes arrive inside that dialog and are not challenged again:
//! only the holder of the dialog's identifiers can send them; they are
//! rate-limited like new ones. Every watcher is answered the same way
//! whatever the privacy rules say (200, `active`), so a watcher cannot
//! learn that they are pending, blocked, or watching no one.

use std::time::Instant;

use bytes::Bytes;
use sip::headers::{Contact, Event as EventHeader, Expires};
use sip::{HeaderKind, Uri};
use sip_txn::TxnId;

use super::dialog::{Dialog, Parts};
use super::notify::{proto_name, Ending};
use super::state::{parse_tag, tag};
use super::{
    EventKind, Sub, DEFAULT_EXPIRES, MAX_DIALOG_STATE, MAX_EXPIRES, MAX_SUBSCRIPTIONS,
    MAX_TOTAL_SUBSCRIPTIONS, MIN_EXPIRES,
};
use crate::unix_now;
use crate::{Core, Event, Req};

const ALLOW_EVENTS: &str = "presence, presence.winfo";

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
    /// 500, or 503 when the database could not be reached.
    pub(crate) failed_status: u16,
}

impl<S: store::Store> Core<S> {
    pub(crate) async fn on_subscribe(&mut self, r: &Req<'_>) {
        let Some((kind, event_id)) = self.event_of(r) else {
            return self
                .reply(r, 489, "Bad Event", &[("Allow-Events", ALLOW_EVENTS)])
                .await;
        };
        let watcher = if let Some(w) = self.partner_sender(r) {
            // A partner's user, vouched for by the partner's certificate
            // (crate::federate checked the From domain).
            w
        } else {
            let Some(watcher) = self.authenticated_sender(r).await else {
                return;
            };
            if !self.is_our_domain(&r.f.request_uri) {
                return self.send_to_partner(r, &watcher).await;
            }
            watcher
        };
        let Uri::Sip(ruri) = r.f.request_uri else {
            return self.reply(r, 416, "Unsupported URI Scheme", &[]).await;
        };
        // A user name (or a list: name+contacts); anything else names no one.
        let Some(target_user) = ruri.user.filter(|u| {
            u.len() <= 64 + super::LIST_SUFFIX.len()
                && u.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_~-+".contains(c))
        }) else {
            return self.reply(r, 404, "Not Found", &[]).await;
        };
        let resource = format!("sip:{target_user}@{}", self.cfg.domain);
        let Some(kind) = self.subscription_kind(r, kind, &watcher, &resource).await else {
            return;
        };
        if !self.subscribe_allowed(r, &watcher).await {
            return;
        }
        if self
            .presence
            .per_watcher
            .get(watcher.as_str())
            .copied()
            .unwrap_or(0) as usize
            >= MAX_SUBSCRIPTIONS
        {
            return self
                .reply(r, 403, "Forbidden (Too Many Subscriptions)", &[])
                .await;
        }
        if self.presence.subs.len() >= MAX_TOTAL_SUBSCRIPTIONS {
            return self
                .reply(
                    r,
                    503,
                    "Service Unavailable (Subscription Table Full)",
                    &[("Retry-After", "60")],
                )
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
        let Some(id) = self.random_id().and_then(|t| parse_tag(&t)) else {
            return self.reply(r, 500, "Server Internal Error", &[]).await;
        };
        let routes = crate::routing::record_routes(r.msg);
        let value = |k: HeaderKind| r.msg.header(k).map(|h| h.value).unwrap_or("");
        let source = format!("{}:{}", proto_name(r.src.protocol), r.src.remote);
        let parts = Parts {
            call_id: r.f.call_id,
            remote_tag: r.f.from.tag().unwrap_or(""),
            from: value(HeaderKind::From),
            to: value(HeaderKind::To),
            target: &contact,
            source: &source,
            event_id: event_id.unwrap_or(""),
        };
        let size = [
            parts.call_id,
            parts.from,
            parts.to,
            parts.target,
            parts.event_id,
        ]
        .iter()
        .map(|s| s.len())
        .sum::<usize>()
            + routes.iter().map(String::len).sum::<usize>();
        let dialog = (size <= MAX_DIALOG_STATE)
            .then(|| Dialog::new(parts, &routes))
            .flatten();
        let Some(dialog) = dialog else {
            return self
                .reply(r, 400, "Bad Request (Dialog State Too Large)", &[])
                .await;
        };
        let sub = Box::new(Sub {
            id,
            kind,
            watcher: self.presence.intern(&watcher),
            resource: self.presence.intern(&resource),
            dialog,
            local_cseq: 0,
            remote_cseq: r.f.cseq.seq,
            expires_at: unix_now() + i64::from(expires),
            flow: r.src.protocol.is_reliable().then_some(r.src.flow),
            in_flight: None,
            last_sent: None,
            last_body: 0,
            dirty: true,
            version: 0,
        });
        let exp = expires.to_string();
        let contact = self.notifier_contact(r.src.protocol);
        let mut headers = vec![("Expires", exp.as_str()), ("Contact", contact.as_str())];
        if kind == EventKind::List {
            headers.push(("Require", "eventlist"));
        }
        // The dialog's route set goes back to the subscriber (RFC 3261
        // §12.1.1): a partner's watcher reaches us through its servers.
        for rr in r.msg.headers_of(HeaderKind::RecordRoute) {
            headers.push(("Record-Route", rr.value));
        }
        let ok = self.build_tagged(r, 200, "OK", &headers, &tag(id));
        self.store_subscription(r, sub, expires == 0, ok).await;
    }

    /// The kind of a new subscription to `resource` by `watcher`, or `None`
    /// once the request has been refused: watcher information and lists
    /// are their owner's only; a list needs `Supported: eventlist`.
    async fn subscription_kind(
        &mut self,
        r: &Req<'_>,
        kind: EventKind,
        watcher: &str,
        resource: &str,
    ) -> Option<EventKind> {
        if kind == EventKind::Winfo && resource != watcher {
            self.reply(
                r,
                403,
                "Forbidden (Watcher Information Is for Its Owner Only)",
                &[],
            )
            .await;
            return None;
        }
        let Some(owner) = super::list_owner(resource).filter(|_| kind == EventKind::Presence)
        else {
            return Some(kind);
        };
        if owner != watcher {
            self.reply(
                r,
                403,
                "Forbidden (A Contact List Is for Its Owner Only)",
                &[],
            )
            .await;
            return None;
        }
        let eventlist = r
            .msg
            .list::<sip::headers::Supported>()
            .filter_map(Result::ok)
            .any(|t| t.0.eq_ignore_ascii_case("eventlist"));
        if !eventlist {
            self.reply(r, 421, "Extension Required", &[("Require", "eventlist")])
                .await;
            return None;
        }
        Some(EventKind::List)
    }

    /// The per-user SUBSCRIBE rate; `false` once refused.
    async fn subscribe_allowed(&mut self, r: &Req<'_>, watcher: &str) -> bool {
        if self
            .subscribe_rate
            .allow(watcher.to_owned(), Instant::now())
        {
            return true;
        }
        self.reply(
            r,
            503,
            "Service Unavailable (Subscription Rate Exceeded)",
            &[("Retry-After", "5")],
        )
        .await;
        false
    }

    /// A SUBSCRIBE inside one of our subscription dialogs: refresh or end.
    /// Whether it went on to the store (`false`: answered already).
    pub(crate) async fn on_subscribe_in_dialog(&mut self, r: &Req<'_>) -> bool {
        let id = r.f.to.tag().and_then(parse_tag);
        let live = id.and_then(|id| self.presence.subs.get(&id)).filter(|s| {
            s.dialog.call_id() == r.f.call_id && Some(s.dialog.remote_tag()) == r.f.from.tag()
        });
        let Some(sub) = live else {
            self.reply(r, 481, "Subscription Does Not Exist", &[]).await;
            return false;
        };
        let (id, sub_kind, watcher) = (sub.id, sub.kind, sub.watcher.clone());
        let (remote_cseq, event_id) = (sub.remote_cseq, sub.dialog.event_id().map(str::to_owned));
        let Some((kind, req_event_id)) = self.event_of(r) else {
            self.reply(r, 489, "Bad Event", &[("Allow-Events", ALLOW_EVENTS)])
                .await;
            return false;
        };
        let kind = if sub_kind == EventKind::List && kind == EventKind::Presence {
            EventKind::List
        } else {
            kind
        };
        if kind != sub_kind || req_event_id != event_id.as_deref() {
            self.reply(r, 489, "Bad Event", &[("Allow-Events", ALLOW_EVENTS)])
                .await;
            return false;
        }
        if r.f.cseq.seq <= remote_cseq {
            self.reply(r, 500, "Server Internal Error (CSeq Out of Order)", &[])
                .await;
            return false;
        }
        if !self.subscribe_allowed(r, &watcher).await {
            return false;
        }
        let Some(expires) = self.granted_expires(r).await else {
            return false;
        };
        let contact = self.contact_of(r);
        let source = format!("{}:{}", proto_name(r.src.protocol), r.src.remote);
        let Some(sub) = self.presence.subs.get(&id) else {
            return false;
        };
        let dialog = contact
            .as_ref()
            .is_none_or(|c| c.len() <= MAX_DIALOG_STATE / 4)
            .then(|| sub.dialog.refreshed(contact.as_deref(), &source))
            .flatten();
        let Some(dialog) = dialog else {
            self.reply(r, 400, "Bad Request (Dialog State Too Large)", &[])
                .await;
            return false;
        };
        let (watcher, resource) = (sub.watcher.clone(), sub.resource.clone());
        let (local_cseq, last_sent, version) = (sub.local_cseq, sub.last_sent, sub.version);
        // Each Sub value holds its own count on the shared names.
        let refreshed = Box::new(Sub {
            id,
            kind,
            watcher: self.presence.intern(&watcher),
            resource: self.presence.intern(&resource),
            dialog,
            local_cseq,
            remote_cseq: r.f.cseq.seq,
            expires_at: unix_now() + i64::from(expires),
            flow: r.src.protocol.is_reliable().then_some(r.src.flow),
            in_flight: None,
            last_sent,
            last_body: 0,
            dirty: true,
            version,
        });
        let exp = expires.to_string();
        // SUBSCRIBE refreshes the target (RFC 6665 §4.1.2.1): in a pool,
        // the node that now serves the subscription.
        let ours = self.notifier_contact(r.src.protocol);
        let mut headers = vec![("Expires", exp.as_str()), ("Contact", ours.as_str())];
        if kind == EventKind::List {
            headers.push(("Require", "eventlist"));
        }
        let ok = self.build_tagged(r, 200, "OK", &headers, &tag(id));
        self.store_subscription(r, refreshed, expires == 0, ok)
            .await
    }

    /// The Contact of our side of a subscription's dialog, for a watcher
    /// on `proto`.
    fn notifier_contact(&self, proto: sip_transport::Protocol) -> String {
        format!(
            "<sip:{};transport={}>",
            self.our_host(proto),
            proto_name(proto)
        )
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

    /// Writes the subscription (or removes it, for Expires 0), then comes
    /// back through [`Event::Subscribed`]; `false` when no write could
    /// start (answered 503).
    async fn store_subscription(
        &mut self,
        r: &Req<'_>,
        sub: Box<Sub>,
        ending: bool,
        ok: Bytes,
    ) -> bool {
        let failed = self.build(
            r,
            500,
            "Server Internal Error (Subscription Not Stored)",
            &[],
        );
        let Some(permit) = self.write_permit(r).await else {
            self.presence.forget_names(&sub);
            return false;
        };
        let (store, events, txn) = (self.store.clone(), self.events_tx.clone(), r.id);
        let mut row = sub.row();
        // In a pool's active mode: this node sends its NOTIFYs.
        self.location.node().clone_into(&mut row.node);
        let known = self.presence.subs.contains_key(&sub.id);
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
            let (stored, failed_status, failed) = match result {
                Ok(()) => (true, 500, failed),
                Err(e) => {
                    tracing::error!(error = %e, "subscription not stored");
                    let (status, bytes) = crate::writes::not_stored(&e, failed);
                    (false, status, bytes)
                }
            };
            let _ = events
                .send(Event::Subscribed(Box::new(Subscribed {
                    id: txn,
                    sub,
                    ending,
                    stored,
                    ok,
                    failed,
                    failed_status,
                })))
                .await;
        });
        true
    }

    /// A subscription change was written: answer, then NOTIFY.
    pub(crate) async fn subscribed(&mut self, s: Subscribed) {
        let mut sub = s.sub;
        // Taken over from another node (`moved`) for this refresh.
        let adopted = self.presence.adopting.remove(&sub.id);
        if !s.stored {
            self.presence.forget_names(&sub);
            if adopted {
                // The other node still serves it.
                self.presence.remove(sub.id);
            }
            return self
                .respond_event(s.id, "SUBSCRIBE", s.failed_status, s.failed)
                .await;
        }
        let id = sub.id;
        // Served here now, whatever an earlier change of another node's
        // said (`remote`).
        self.presence.remote.forget(id);
        // A refresh replaces the live entry (keeping its CSeq and any NOTIFY
        // in flight).
        let was_live = match self.presence.remove(id) {
            Some(old) => {
                sub.local_cseq = sub.local_cseq.max(old.local_cseq);
                sub.in_flight = old.in_flight;
                true
            }
            None => false,
        };
        self.respond_event(s.id, "SUBSCRIBE", 200, s.ok).await;
        let (kind, watcher, resource) = (sub.kind, sub.watcher.clone(), sub.resource.clone());
        if s.ending {
            self.send_notify(&mut sub, Some(Ending::Timeout));
            self.presence.forget_names(&sub);
            if was_live {
                self.watchers_changed(kind, &watcher, &resource);
            }
        } else {
            // RFC 6665 §4.2.1.4: every SUBSCRIBE is followed by a NOTIFY,
            // whether the state changed or not.
            sub.last_body = 0;
            sub.last_sent = None;
            self.presence.insert(sub);
            if !was_live || adopted {
                self.watchers_changed(kind, &watcher, &resource);
            }
            self.notify_due(id, true);
        }
        self.flush().await;
    }
}
