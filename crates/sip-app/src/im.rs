//! Instant messages (RFC 3428) between local users.
//!
//! The sender must be a local user and proves it (407 digest); From must be that
//! user (no spoofing). The recipient is the Request-URI's user:
//! - unknown or disabled: 404 Not Found;
//! - registered: the MESSAGE is relayed to every binding and the best answer
//!   comes back (normally the recipient's 200);
//! - not registered (or stored messages still waiting for them): the message is
//!   written to the database and the sender gets **202 Accepted** with reason
//!   "Stored for Later Delivery". When the recipient next registers, stored
//!   messages are delivered one at a time, oldest first, each deleted only after
//!   a 2xx from the recipient.

use std::sync::Arc;

use sip::build::RequestBuilder;
use sip::{RequestFields, Uri};
use store::PendingMessage;

use super::files::{Checked, Direction};
use super::fork::ForkKind;
use super::{policy_set, Core, Event, Req};
use crate::unix_now;

/// How long a stored message waits for its recipient.
const STORED_MESSAGE_LIFETIME: i64 = 30 * 24 * 3600;

impl<S: store::Store> Core<S> {
    pub(crate) async fn on_message(&mut self, r: &Req<'_>) {
        if !self.message_fits(r).await {
            return;
        }
        // Partners' users arrive over partners' connections
        // (crate::federate), never from clients.
        let Some(sender_aor) = self.authenticated_sender(r).await else {
            return;
        };
        let domain = self.cfg.domain.clone();
        if !self.is_our_domain(&r.f.request_uri) {
            // To a partner: the sender's filter for federated messages.
            let rules = self.im_rules(&sender_aor, true);
            return match self
                .check_file_offer(r, &sender_aor, "", Direction::ToPartner, rules.as_ref())
                .await
            {
                Checked::Pass => self.filter_to_partner(r, rules, &sender_aor).await,
                Checked::Replace(m) => {
                    if let Ok(f) = RequestFields::extract(&m) {
                        self.send_to_partner(&r.with(&m, &f), &sender_aor).await
                    }
                }
                Checked::Refused | Checked::Pending => {}
            };
        }
        let Uri::Sip(ruri) = r.f.request_uri else {
            return self.reply(r, 416, "Unsupported URI Scheme", &[]).await;
        };
        let Some(rcpt) = ruri.user else {
            return self.reply(r, 404, "Not Found", &[]).await;
        };
        let rcpt_aor = format!("sip:{rcpt}@{domain}");
        if !self.users.get(&rcpt_aor).is_some_and(|u| u.enabled) {
            return self.reply(r, 404, "Not Found", &[]).await;
        }
        // The recipient's rules: blocked senders, and strangers as the
        // privacy policy says. One answer for both, so a sender cannot tell
        // a block from the policy.
        let who =
            super::presence::watcher(&self.presence.contacts, &domain, &rcpt_aor, &sender_aor);
        let strangers = super::presence::privacy(&self.policies, &rcpt_aor).strangers;
        if !presence::access::may_message(who, strangers) {
            return self
                .reply(r, 403, "Forbidden (Not Accepted by Recipient)", &[])
                .await;
        }
        if r.f.max_forwards == Some(0) {
            return self.reply(r, 483, "Too Many Hops", &[]).await;
        }
        // Between our users: the stricter of the two users' filters.
        let rules = content::im_filter::strictest(
            self.im_rules(&sender_aor, false),
            self.im_rules(&rcpt_aor, false),
        );
        self.relay_filtered(r, rules, sender_aor, rcpt_aor, Direction::Internal)
            .await;
    }

    /// The IM filter on a MESSAGE to a partner's user, then on its way.
    async fn filter_to_partner(
        &mut self,
        r: &Req<'_>,
        rules: Option<Arc<content::im_filter::Rules>>,
        sender_aor: &str,
    ) {
        let Some(filtered) = self.im_filtered(r, rules).await else {
            return;
        };
        match filtered
            .as_ref()
            .and_then(|m| Some((m, RequestFields::extract(m).ok()?)))
        {
            Some((m, f)) => self.send_to_partner(&r.with(m, &f), sender_aor).await,
            None => self.send_to_partner(r, sender_aor).await,
        }
    }

    /// Relays or stores a MESSAGE for a local recipient as `rules` let it
    /// through (changed, or not at all).
    pub(crate) async fn relay_filtered(
        &mut self,
        r: &Req<'_>,
        rules: Option<Arc<content::im_filter::Rules>>,
        sender_aor: String,
        rcpt_aor: String,
        direction: Direction,
    ) {
        match self
            .check_file_offer(r, &sender_aor, &rcpt_aor, direction, rules.as_ref())
            .await
        {
            Checked::Pass => {
                self.relay_filtered_checked(r, rules, sender_aor, rcpt_aor)
                    .await
            }
            Checked::Replace(m) => {
                if let Ok(f) = RequestFields::extract(&m) {
                    self.relay_or_store(&r.with(&m, &f), sender_aor, rcpt_aor)
                        .await
                }
            }
            Checked::Refused | Checked::Pending => {}
        }
    }

    /// [`Self::relay_filtered`] once the file offer, if any, has passed.
    pub(crate) async fn relay_filtered_checked(
        &mut self,
        r: &Req<'_>,
        rules: Option<Arc<content::im_filter::Rules>>,
        sender_aor: String,
        rcpt_aor: String,
    ) {
        let Some(filtered) = self.im_filtered(r, rules).await else {
            return;
        };
        match filtered
            .as_ref()
            .and_then(|m| Some((m, RequestFields::extract(m).ok()?)))
        {
            Some((m, f)) => {
                self.relay_or_store(&r.with(m, &f), sender_aor, rcpt_aor)
                    .await
            }
            None => self.relay_or_store(r, sender_aor, rcpt_aor).await,
        }
    }

    /// `aor`'s IM filter for messages inside the organisation or with
    /// partners, from the cache while the policies stay the same.
    pub(crate) fn im_rules(
        &mut self,
        aor: &str,
        federated: bool,
    ) -> Option<Arc<content::im_filter::Rules>> {
        let slot = usize::from(federated);
        if let Some(Some(r)) = self.im_rules.get(aor).map(|e| &e[slot]) {
            return r.clone();
        }
        let rules =
            policy_set::im_filter(&self.policies, aor, federated, &self.cfg.domain).map(Arc::new);
        if self.im_rules.len() >= 200_000 {
            self.im_rules.clear();
        }
        self.im_rules.entry(aor.to_owned()).or_default()[slot] = Some(rules.clone());
        rules
    }

    /// The IM filter on a MESSAGE about to go on: `None` when it was
    /// refused (and answered); `Some(None)` to send it as it is;
    /// `Some(Some(..))` the message to send instead, its body rewritten.
    pub(crate) async fn im_filtered(
        &mut self,
        r: &Req<'_>,
        rules: Option<Arc<content::im_filter::Rules>>,
    ) -> Option<Option<sip::Message>> {
        use content::im_filter::{Action, Outcome};
        use std::sync::atomic::Ordering::Relaxed;
        let Some(rules) = rules else {
            return Some(None);
        };
        let content_type = super::files::content_type_of(r.msg);
        match content::im_filter::filter_body(&rules, &content_type, r.msg.body()) {
            Outcome::Unchanged => Some(None),
            Outcome::Rewritten(body) => {
                let counter = match rules.action {
                    Action::Warn => &self.metrics.im_warned,
                    _ => &self.metrics.im_defused,
                };
                counter.fetch_add(1, Relaxed);
                let bytes = sip::forward::Forward::new(r.msg).body(body).serialize();
                let rewritten = sip::parse_datagram(bytes, &self.forward_limits())
                    .ok()
                    .filter(|m| RequestFields::extract(m).is_ok());
                if rewritten.is_none() {
                    self.reply(r, 513, "Message Too Large", &[]).await;
                }
                rewritten.map(Some)
            }
            Outcome::Blocked(why) => {
                self.metrics.im_blocked.fetch_add(1, Relaxed);
                let detail = why.detail();
                self.log_refusal(r, "the IM filter refused a message", &detail);
                let warning = format!("399 parapet \"{detail}\"");
                self.reply(r, 403, why.reason(), &[("Warning", &warning)])
                    .await;
                None
            }
            Outcome::Unreadable(why) => {
                self.metrics.im_unreadable.fetch_add(1, Relaxed);
                self.log_refusal(r, "the IM filter could not read a message", &why);
                let warning = format!("399 parapet \"{}\"", why.replace('"', "'"));
                self.reply(
                    r,
                    415,
                    "Unsupported Media Type (Not Readable by the IM Filter)",
                    &[("Warning", &warning)],
                )
                .await;
                None
            }
        }
    }

    /// Whether the body is within `im.max_bytes`; `false`: answered 513.
    pub(crate) async fn message_fits(&mut self, r: &Req<'_>) -> bool {
        if r.msg.body().len() <= self.cfg.im_max_bytes {
            return true;
        }
        let limit = self.cfg.im_max_bytes.to_string();
        self.reply(
            r,
            513,
            "Message Too Large",
            &[(
                "Warning",
                &format!("399 parapet \"instant messages are limited to {limit} bytes\""),
            )],
        )
        .await;
        false
    }

    /// Relays an accepted MESSAGE to the recipient's bindings, or stores it
    /// for their next registration (202).
    pub(crate) async fn relay_or_store(
        &mut self,
        r: &Req<'_>,
        sender_aor: String,
        rcpt_aor: String,
    ) {
        if !self.archive_begin(r, &sender_aor, &rcpt_aor).await {
            return;
        }
        let now = unix_now();
        let targets = self.location.lookup(&rcpt_aor, now);
        // While stored messages are being handed over, newer ones queue behind them.
        if !targets.is_empty() && !self.delivering.contains(&rcpt_aor) {
            let timeout = self.build(r, 408, "Request Timeout", &[]);
            let hops = self.hops_for(&targets, r.own_routes, r.f.call_id);
            let started = self.start_fork(
                ForkKind::Relay {
                    server: r.id,
                    method: "MESSAGE",
                    timeout,
                },
                r.msg,
                Some(r.f),
                hops,
                None,
            );
            if started > 0 {
                self.metrics
                    .messages_relayed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return self.flush().await;
            }
        }
        self.store_for_later(r, sender_aor, rcpt_aor, now).await;
    }

    async fn store_for_later(&mut self, r: &Req<'_>, sender: String, recipient: String, now: i64) {
        let content_type = super::files::content_type_of(r.msg);
        // The sender's own id of the message, if any: a retry of it (after
        // a 503 while its commit was in doubt) is then stored once.
        let is_cpim = content_type
            .split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("message/cpim"));
        let message_id = is_cpim
            .then(|| content::cpim::Cpim::parse(r.msg.body()).ok())
            .flatten()
            .and_then(|c| c.imdn_message_id().map(str::to_owned));
        let pending = PendingMessage {
            id: 0,
            recipient,
            sender,
            content_type,
            body: r.msg.body().to_vec(),
            received_at: now,
            expires_at: now + STORED_MESSAGE_LIFETIME,
            message_id,
        };
        let Some(permit) = self.write_permit(r).await else {
            return;
        };
        let accepted = self.build(r, 202, "Accepted (Stored for Later Delivery)", &[]);
        let failed = self.build(r, 500, "Server Internal Error (Message Not Stored)", &[]);
        let (store, events, id, metrics) = (
            self.store.clone(),
            self.events_tx.clone(),
            r.id,
            self.metrics.clone(),
        );
        let aor = pending.recipient.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let event = match store.enqueue_message(pending).await {
                Ok(stored) => {
                    // A retry of a message stored before (same IMDN id) is
                    // acknowledged again, and counted once.
                    if stored.new {
                        let _ = events.send(Event::Enqueued { aor }).await;
                        metrics
                            .messages_stored
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Event::Respond {
                        id,
                        method: "MESSAGE",
                        status: 202,
                        bytes: accepted,
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "message not stored");
                    let (status, bytes) = crate::writes::not_stored(&e, failed);
                    Event::Respond {
                        id,
                        method: "MESSAGE",
                        status,
                        bytes,
                    }
                }
            };
            let _ = events.send(event).await;
        });
    }

    /// The user just registered: hand over what waits for them, oldest first.
    pub(crate) fn start_delivery(&mut self, aor: String) {
        if !self.waiting.contains_key(&aor) || !self.delivering.insert(aor.clone()) {
            return;
        }
        self.fetch_next(aor);
    }

    fn fetch_next(&mut self, aor: String) {
        let (store, events) = (self.store.clone(), self.events_tx.clone());
        tokio::spawn(async move {
            let next = match store.pending_messages(&aor, 1).await {
                Ok(mut v) => v.pop(),
                Err(e) => {
                    tracing::warn!(error = %e, %aor, "could not read stored messages");
                    None
                }
            };
            let _ = events.send(Event::Stored { aor, next }).await;
        });
    }

    /// Sends one stored message to the recipient's bindings.
    pub(crate) fn deliver(&mut self, aor: String, next: Option<PendingMessage>) {
        let Some(m) = next else {
            self.delivering.remove(&aor);
            self.waiting.remove(&aor);
            return;
        };
        let targets = self.location.lookup(&aor, unix_now());
        let call_id = format!("{}-{}@{}", self.boot_id, m.id, self.cfg.domain);
        let tag = self.next_tag();
        // No Via yet: each branch of the fork pushes its own.
        let req = RequestBuilder::new("MESSAGE", &aor)
            .header("Max-Forwards", "70")
            .header("From", &format!("<{}>;tag={tag}", m.sender))
            .header("To", &format!("<{aor}>"))
            .header("Call-ID", &call_id)
            .header("CSeq", "1 MESSAGE")
            .header("Date", &http_date(m.received_at))
            .body(&m.content_type, &m.body);
        let Ok(msg) = sip::parse_datagram(req, &self.cfg.limits) else {
            tracing::error!(
                id = m.id,
                "a stored message could not be rebuilt; it stays stored"
            );
            self.delivering.remove(&aor);
            return;
        };
        let hops = self.hops_for(&targets, 0, &call_id);
        if self.start_fork(
            ForkKind::Delivery {
                aor: aor.clone(),
                id: m.id,
            },
            &msg,
            None,
            hops,
            None,
        ) == 0
        {
            self.delivering.remove(&aor);
        }
    }

    /// A stored message's delivery ended: delete it and go on, or stop and keep it.
    pub(crate) fn delivery_done(&mut self, aor: String, id: i64, delivered: bool) {
        if delivered {
            if let Some(n) = self.waiting.get_mut(&aor) {
                *n = n.saturating_sub(1);
            }
            self.metrics
                .messages_delivered
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        } else {
            static KEPT: sip_transport::logging::RateLimited =
                sip_transport::logging::RateLimited::new();
            if let Some(suppressed) = KEPT.allow() {
                tracing::info!(%aor, id, suppressed, "stored message not accepted by the recipient; kept for the next registration");
            }
            self.delivering.remove(&aor);
            return;
        }
        let (store, events) = (self.store.clone(), self.events_tx.clone());
        tokio::spawn(async move {
            if let Err(e) = store.delete_message(id).await {
                tracing::warn!(error = %e, id, "delivered message could not be deleted");
            }
            let next = store
                .pending_messages(&aor, 1)
                .await
                .ok()
                .and_then(|mut v| v.pop());
            let _ = events.send(Event::Stored { aor, next }).await;
        });
    }
}

/// RFC 1123 date in GMT, for the Date of a stored message.
pub(crate) fn http_date(unix: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, m, d, secs) = civil(unix);
    let wd = DAYS[usize::try_from(unix.div_euclid(86_400).rem_euclid(7)).unwrap_or(0)];
    let mon = MONTHS[usize::try_from(m - 1).unwrap_or(0)];
    format!(
        "{wd}, {d:02} {mon} {y} {:02}:{:02}:{:02} GMT",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Unix seconds as an RFC 3339 UTC time (`2026-12-12T10:00:00Z`).
pub fn rfc3339(unix: i64) -> String {
    let (y, m, d, secs) = civil(unix);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Year, month, day and seconds into the day of unix seconds.
fn civil(unix: i64) -> (i64, i64, i64, i64) {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, secs)
}

#[cfg(test)]
mod tests {
    use super::{http_date, rfc3339};

    #[test]
    fn dates() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(1_289_690_940), "Sat, 13 Nov 2010 23:29:00 GMT");
        assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(rfc3339(951_782_400 + 3661), "2000-02-29T01:01:01Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
