//! Requests to partners: the connections this server opens to each
//! partner (located, verified for the partner's domain, our certificate
//! presented), how requests are spread over them, the requests that wait
//! for the first one, and requests inside dialogs and NOTIFYs whose
//! connection has closed since.

use std::sync::Arc;

use federation::identity::{Identities, Source as IdSource};
use sip::RequestFields;
use sip_transport::{FlowId, Protocol, Target};

use super::{
    modality_of, user_domain, ConnectFailure, FederationSetup, Waiting, CONNECT_LIMIT, MAX_WAITING,
    MAX_WAITING_PARTNERS, SPREAD_AT,
};
use crate::fork::{ForkKind, Hop};
use crate::policy_set::{self, Direction, FederationRefusal, PartnerStatus};
use crate::{Core, Event, Req};

impl<S: store::Store> Core<S> {
    /// Our live connection to the partner `watcher` belongs to, if any
    /// (NOTIFYs for a partner's watcher whose own connection closed).
    pub(crate) fn partner_flow_for(&self, watcher: &str) -> Option<FlowId> {
        let (_, domain) = watcher.rsplit_once('@')?;
        let pool = self.fed.out.get(&domain.to_ascii_lowercase())?;
        pool.flows
            .iter()
            .copied()
            .find(|f| self.transport.flow_local(*f).is_some())
    }

    /// A local user's (authenticated) MESSAGE, INVITE or SUBSCRIBE for a
    /// user of another domain.
    pub(crate) async fn send_to_partner(&mut self, r: &Req<'_>, sender_aor: &str) {
        let Some((_, domain)) = user_domain(&r.f.request_uri) else {
            return self.reply(r, 404, "Not Found", &[]).await;
        };
        let offered = modality_of(r.f.method, Direction::Out)
            .is_some_and(|(m, d)| policy_set::modality_allowed(&self.policies, &domain, m, d));
        let refused = match policy_set::partner_status(&self.policies, &domain) {
            Err(why) => Some(why),
            Ok(_) if !offered => {
                self.count_partner(&domain, "out", "modality_not_allowed");
                self.log_refusal(
                    r,
                    "the federation policy does not offer this to the partner",
                    &domain,
                );
                return self
                    .reply(r, 403, "Forbidden (Not Offered to This Partner)", &[])
                    .await;
            }
            Ok(_) if !policy_set::user_federates(&self.policies, sender_aor) => {
                Some(FederationRefusal::UserNotAllowed)
            }
            Ok(_) => None,
        };
        if let Some(why) = refused {
            self.count_partner(&domain, "out", why.code());
            self.log_refusal(r, "federation policy refuses the message", &domain);
            let reason = if why == FederationRefusal::UserNotAllowed {
                "Forbidden (Federation Not Allowed for This User)"
            } else {
                "Forbidden (Federation Not Allowed)"
            };
            return self.reply(r, 403, reason, &[]).await;
        }
        if r.f.max_forwards == Some(0) {
            return self.reply(r, 483, "Too Many Hops", &[]).await;
        }
        // A MESSAGE the policies let go, as it goes (after the IM filter):
        // noted for the archive.
        let rcpt = crate::archive::party(&r.f.request_uri)
            .unwrap_or_else(|| r.msg.request_uri().unwrap_or_default().to_string());
        if r.f.method == sip::Method::Message && !self.archive_begin(r, sender_aor, &rcpt).await {
            return;
        }
        // A call to a partner's user: followed for its detail record.
        if r.f.method == sip::Method::Invite && r.f.to.tag().is_none() {
            self.cdr_started(r, &rcpt);
        }
        self.via_partner(r, domain).await;
    }

    /// A request inside a federated dialog whose connection to the partner
    /// has closed (idle, or the partner restarted): it goes over another
    /// connection to the same partner - the domain of the dialog's party
    /// that is not ours - opened if need be, with our own `ours` Route
    /// entries removed and the partner's left in place.
    pub(crate) async fn in_dialog_to_partner(&mut self, r: &Req<'_>, ours: usize) {
        let Some(domain) = self.dialog_partner(r.f) else {
            return self
                .reply(r, 404, "Not Found (No Such Dialog Peer)", &[])
                .await;
        };
        if policy_set::partner_status(&self.policies, &domain).is_err() {
            self.count_partner(&domain, "out", "in_dialog_refused");
            return self
                .reply(r, 403, "Forbidden (Federation Not Allowed)", &[])
                .await;
        }
        let r = Req {
            own_routes: ours,
            ..*r
        };
        self.via_partner(&r, domain).await;
    }

    /// The partner's domain of a dialog between one of our users and one
    /// of a partner's (exactly one of From and To is not ours).
    pub(crate) fn dialog_partner(&self, f: &sip::RequestFields<'_>) -> Option<String> {
        let mut domains = [&f.from.uri, &f.to.uri]
            .into_iter()
            .filter_map(user_domain)
            .map(|(_, d)| d)
            .filter(|d| {
                !self
                    .identity
                    .names()
                    .iter()
                    .any(|n| n.eq_ignore_ascii_case(d))
            });
        match (domains.next(), domains.next()) {
            (Some(domain), None) => Some(domain),
            _ => None,
        }
    }

    /// Sends an accepted request to `domain` over the least loaded of our
    /// connections to it (opening another beside busy ones), or waits for
    /// the first to open.
    async fn via_partner(&mut self, r: &Req<'_>, domain: String) {
        if self.edges.any_paired() {
            // With edges, partners are reached only through them: the edge
            // locates the partner and holds the connection.
            let Some(flow) = self.edges.any_link() else {
                self.count_partner(&domain, "out", "no_edge");
                return self
                    .reply(
                        r,
                        503,
                        "Service Unavailable (No Edge Linked)",
                        &[("Retry-After", "5")],
                    )
                    .await;
            };
            return self.forward_to_partner(r, &domain, flow).await;
        }
        let Some(setup) = self.fed.setup.clone() else {
            self.count_partner(&domain, "out", "not_configured");
            return self
                .reply(
                    r,
                    503,
                    "Service Unavailable (No CA Trusted for Partners)",
                    &[],
                )
                .await;
        };
        if let Some(flow) = self.least_loaded(&domain) {
            let busy = self.fed.load.get(&flow).copied().unwrap_or(0) >= SPREAD_AT;
            let pool = self.fed.out.entry(domain.clone()).or_default();
            if busy && !pool.opening && pool.flows.len() < setup.max_connections {
                // Every connection has many requests in flight: open one
                // more beside them (nothing waits for it).
                pool.opening = true;
                self.open_partner_connection(setup, domain.clone());
            }
            return self.forward_to_partner(r, &domain, flow).await;
        }
        let partners = self.fed.waiting.len();
        let queue = self.fed.waiting.entry(domain.clone()).or_default();
        if queue.len() >= MAX_WAITING || (queue.is_empty() && partners >= MAX_WAITING_PARTNERS) {
            if queue.is_empty() {
                self.fed.waiting.remove(&domain);
            }
            self.count_partner(&domain, "out", "connection_backlog");
            return self
                .reply(
                    r,
                    503,
                    "Service Unavailable (Partner Connection Busy)",
                    &[("Retry-After", "5")],
                )
                .await;
        }
        let first = queue.is_empty();
        queue.push(Waiting {
            id: r.id,
            msg: r.msg.clone(),
            src: r.src.clone(),
            own_routes: r.own_routes,
        });
        if first {
            self.fed.out.entry(domain.clone()).or_default().opening = true;
            self.open_partner_connection(setup, domain);
        }
    }

    /// A NOTIFY for `watcher`, a partner's user, found no live connection:
    /// one to the partner is opened (if the policy still allows it) and the
    /// subscription is marked to send once it is up.
    pub(crate) fn notify_via_partner(&mut self, watcher: &str, id: u128) {
        let Some((_, domain)) = watcher.rsplit_once('@') else {
            return;
        };
        let domain = domain.to_ascii_lowercase();
        if self
            .identity
            .names()
            .iter()
            .any(|n| n.eq_ignore_ascii_case(&domain))
            || policy_set::partner_status(&self.policies, &domain).is_err()
        {
            return;
        }
        let Some(setup) = self.fed.setup.clone() else {
            return;
        };
        if !self.fed.notifies.contains_key(&domain)
            && self.fed.notifies.len() >= MAX_WAITING_PARTNERS
        {
            return;
        }
        let ids = self.fed.notifies.entry(domain.clone()).or_default();
        if ids.len() < MAX_WAITING && !ids.contains(&id) {
            ids.push(id);
        }
        let pool = self.fed.out.entry(domain.clone()).or_default();
        if !pool.opening {
            pool.opening = true;
            self.open_partner_connection(setup, domain);
        }
    }

    /// The live connection to `domain` with the fewest requests awaiting an
    /// answer; closed ones are forgotten on the way.
    fn least_loaded(&mut self, domain: &str) -> Option<FlowId> {
        let flows = self.fed.out.get(domain)?.flows.clone();
        let mut best: Option<(u32, FlowId)> = None;
        for f in flows {
            if self.transport.flow_local(f).is_none() {
                self.fed.flow_closed(f);
                continue;
            }
            let n = self.fed.load.get(&f).copied().unwrap_or(0);
            if best.is_none_or(|(m, _)| n < m) {
                best = Some((n, f));
            }
        }
        best.map(|(_, f)| f)
    }

    /// Locates the partner and opens a connection in a task; the outcome
    /// comes back as [`Event::Partner`].
    fn open_partner_connection(&self, setup: FederationSetup, domain: String) {
        let (transport, events) = (self.transport.clone(), self.events_tx.clone());
        let pinned = policy_set::pinned_server(&self.policies, &domain);
        tokio::spawn(async move {
            let attempt = federation::connect::connect(
                &setup.locator,
                &setup.client,
                &transport,
                &domain,
                pinned,
            );
            let result = tokio::time::timeout(CONNECT_LIMIT, attempt)
                .await
                .unwrap_or_else(|_| Err(ConnectFailure::Unreachable("timed out".into())));
            let _ = events.send(Event::Partner { domain, result }).await;
        });
    }

    /// The connection to a partner was opened (or could not be): send what
    /// waited for it, or answer it.
    pub(crate) async fn partner_connected(
        &mut self,
        domain: String,
        result: Result<FlowId, ConnectFailure>,
    ) {
        let waiting = self.fed.waiting.remove(&domain).unwrap_or_default();
        // Subscriptions whose NOTIFY waited: sent at the next flush (over
        // the new connection), or left for the watcher's next refresh.
        for id in self.fed.notifies.remove(&domain).unwrap_or_default() {
            if result.is_ok() && self.presence.subs.contains_key(&id) {
                self.presence.dirty.insert(id);
            }
        }
        // What the waiting requests get when there is no connection.
        let refusal = match &result {
            Ok(flow) => {
                tracing::info!(partner = %domain, flow = flow.0, "connected to a partner's server");
                // Verified for the domain; its host names do not matter
                // here (we chose where to connect, the pinned host if any).
                let ids = Arc::new(Identities {
                    source: IdSource::SipUri,
                    names: vec![domain.clone()],
                    hosts: Vec::new(),
                });
                let pool = self.fed.out.entry(domain.clone()).or_default();
                pool.opening = false;
                pool.flows.push(*flow);
                self.fed.out_flows.insert(*flow, ids);
                None
            }
            Err(why) => {
                if let Some(pool) = self.fed.out.get_mut(&domain) {
                    pool.opening = false;
                    if pool.flows.is_empty() {
                        self.fed.out.remove(&domain);
                    }
                }
                let refusal = why.answer();
                static FAILED: sip_transport::logging::RateLimited =
                    sip_transport::logging::RateLimited::new();
                if let Some(suppressed) = FAILED.allow() {
                    tracing::warn!(partner = %domain, reason = refusal.2, error = %why, suppressed, "no connection to a partner's server");
                }
                Some(refusal)
            }
        };
        for w in waiting {
            let Ok(f) = RequestFields::extract(&w.msg) else {
                continue;
            };
            let r = Req {
                id: w.id,
                msg: &w.msg,
                f: &f,
                src: &w.src,
                own_routes: w.own_routes,
            };
            match (&result, refusal) {
                (Ok(flow), _) => self.forward_to_partner(&r, &domain, *flow).await,
                (Err(_), Some((status, reason, code))) => {
                    self.count_partner(&domain, "out", code);
                    self.reply(&r, status, reason, &[]).await;
                }
                (Err(_), None) => {}
            }
        }
    }

    async fn forward_to_partner(&mut self, r: &Req<'_>, domain: &str, flow: FlowId) {
        let timeout = self.build(r, 408, "Request Timeout", &[]);
        let hop = Hop {
            proto: Protocol::Tls,
            target: Target::Flow(flow),
            request_uri: None,
            routes: Vec::new(),
            pop_routes: r.own_routes,
            flow: Some(flow.0),
        };
        let dialog = matches!(r.f.method, sip::Method::Invite | sip::Method::Subscribe);
        let started = self.start_fork(
            ForkKind::Relay {
                server: r.id,
                method: crate::metrics::method_label(r.f.method),
                timeout,
            },
            r.msg,
            Some(r.f),
            vec![hop],
            dialog.then_some(r.src),
        );
        if started == 0 {
            return self
                .reply(r, 500, "Server Internal Error (Not Forwarded)", &[])
                .await;
        }
        self.count_partner(domain, "out", "forwarded");
        if !self.edges.is_edge(flow) {
            *self.fed.load.entry(flow).or_insert(0) += 1;
        }
        let discovered =
            policy_set::partner_status(&self.policies, domain) == Ok(PartnerStatus::Discovered);
        self.fed.book.outbound(
            domain,
            discovered,
            std::time::Instant::now(),
            crate::unix_now(),
        );
        self.flush().await;
    }
}
