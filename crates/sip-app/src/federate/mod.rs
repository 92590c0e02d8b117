//! Requests to and from partner organisations' servers (federation).
//!
//! Partners' servers reach us, and we reach them, over mutual TLS only:
//!
//! - Inbound, the TLS listener asks for a certificate; a connection that
//!   presents one chaining to a CA trusted for partners
//!   ([`federation::verifier`]) is a partner's, and speaks for the domains
//!   the certificate names ([`federation::identity`]). Every request on it
//!   must have a From domain the certificate speaks for, never our own, and
//!   a Request-URI in our domain (no transit through us).
//! - Outbound, a local user's request for another domain goes, once the
//!   sender has proved who they are and the policy allows the pair, over a
//!   connection this server opened to the partner: located by
//!   [`federation::locate`] (static route, NAPTR, SRV, A/AAAA), verified as
//!   speaking for the partner's domain, presenting our certificate. One
//!   connection per partner, opened on first use and reused; requests that
//!   arrive while it is being opened wait (bounded) for it. A partner may
//!   send its own requests back over it (RFC 5923: the connection is
//!   mutually authenticated).
//!
//! The federation policy decides who: [`crate::policy_set::partner_status`]
//! for the domain, [`crate::policy_set::user_federates`] for the local user,
//! the recipient's privacy rules for senders, and a discovered (unlisted)
//! partner reaches only users who have the sender in their contacts.
//! Every refusal of a partner's request for a user looks the same (404),
//! whether the user does not exist or refuses: a partner cannot tell.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use federation::identity::{Identities, Source as IdSource};
use federation::locate::{LocateError, Locator};
use sip::{Message, RequestFields, Uri};
use sip_transport::{ClientTls, FlowId, Protocol, Source, Target, Transport};
use sip_txn::TxnId;

mod explain;
mod partners;

pub use explain::Explanation;
pub use partners::PartnerRow;
use partners::{DiscoveredLimits, Limit, PartnerBook};

use crate::fork::{ForkKind, Hop};
use crate::policy_set::{self, Direction, FederationRefusal, Modality, PartnerStatus};
use crate::{Core, Event, Req};

/// What the server gives the core for federation: whom to trust and how to
/// reach partners. `None` in [`Core::new`]: no CA is trusted for partners,
/// so nothing can be federated whatever the policy says.
#[derive(Clone)]
pub struct FederationSetup {
    /// Client configuration for connections to partners (our certificate,
    /// the partner's verified for its domain).
    pub client: Arc<rustls::ClientConfig>,
    pub locator: Arc<Locator>,
    /// Connections this server keeps open to one partner at most
    /// (`federation.max_connections_per_partner`).
    pub max_connections: usize,
}

impl std::fmt::Debug for FederationSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FederationSetup")
            .field("locator", &self.locator)
            .finish()
    }
}

/// Requests waiting for a partner's connection, per partner and partners.
const MAX_WAITING: usize = 256;
const MAX_WAITING_PARTNERS: usize = 1024;
/// Locating a partner and connecting to it, at most.
const CONNECT_LIMIT: Duration = Duration::from_secs(15);
/// Transactions awaiting their answer on every connection to a partner
/// before another is opened (up to the configured maximum).
const SPREAD_AT: u32 = 32;

/// A request waiting for the connection to its partner.
#[derive(Debug)]
pub(crate) struct Waiting {
    id: TxnId,
    msg: Message,
    src: Source,
    own_routes: usize,
}

/// Why no connection to a partner could be made.
#[derive(Debug, Clone)]
pub(crate) enum ConnectFailure {
    Locate(LocateError),
    /// Every server found failed (the last error), or time ran out.
    Unreachable(String),
}

impl std::fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectFailure::Locate(e) => write!(f, "{e}"),
            ConnectFailure::Unreachable(e) => write!(f, "no server answered: {e}"),
        }
    }
}

/// Our connections to one partner.
#[derive(Debug, Default)]
struct Pool {
    flows: Vec<FlowId>,
    opening: bool,
}

/// The core's federation state.
#[derive(Debug, Default)]
pub(crate) struct FedState {
    pub(crate) setup: Option<FederationSetup>,
    /// Partner domain → our connections to it (at most
    /// `max_connections`), and whether another is being opened.
    out: HashMap<String, Pool>,
    /// Our connections to partners → the identity each was verified for.
    out_flows: HashMap<FlowId, Arc<Identities>>,
    /// Inbound connections that presented a partner certificate.
    peers: HashMap<FlowId, Arc<Identities>>,
    /// Requests forwarded on each of our connections to partners and not
    /// answered yet (final responses arrive on the same connection).
    load: HashMap<FlowId, u32>,
    /// Partner domain → requests waiting for its connection.
    waiting: HashMap<String, Vec<Waiting>>,
    /// Counters, and discovered partners' limits and watch list.
    pub(crate) book: PartnerBook,
    /// Partner domain → subscriptions whose NOTIFY waits for a connection
    /// to it (at most [`MAX_WAITING`] per partner).
    notifies: HashMap<String, Vec<u128>>,
}

impl FedState {
    pub(crate) fn new(setup: Option<FederationSetup>) -> FedState {
        FedState {
            setup,
            ..FedState::default()
        }
    }

    /// Whether `flow` is a connection this server opened to a partner.
    pub(crate) fn is_outbound(&self, flow: FlowId) -> bool {
        self.out_flows.contains_key(&flow)
    }

    /// A connection closed: forget what was known about it.
    pub(crate) fn flow_closed(&mut self, flow: FlowId) {
        self.peers.remove(&flow);
        self.load.remove(&flow);
        if let Some(ids) = self.out_flows.remove(&flow) {
            for d in &ids.names {
                if let Some(pool) = self.out.get_mut(d) {
                    pool.flows.retain(|f| *f != flow);
                    if pool.flows.is_empty() && !pool.opening {
                        self.out.remove(d);
                    }
                }
            }
        }
    }

    /// A final response arrived on `flow`: one request fewer awaits there.
    pub(crate) fn answered(&mut self, flow: FlowId) {
        if let Some(n) = self.load.get_mut(&flow) {
            *n = n.saturating_sub(1);
        }
    }

    /// Our connections to partners now (for tests and status).
    pub(crate) fn connections_to(&self, domain: &str) -> usize {
        self.out.get(domain).map_or(0, |p| p.flows.len())
    }
}

/// The modality a request starts, and the way its content flows, for a
/// request sent in `dir` (`In`: from a partner; `Out`: to one). A
/// subscription carries presence the other way. `None`: not a modality
/// (OPTIONS), nothing to check.
fn modality_of(method: sip::Method<'_>, dir: Direction) -> Option<(Modality, Direction)> {
    let flip = |d| match d {
        Direction::In => Direction::Out,
        Direction::Out => Direction::In,
    };
    match method {
        sip::Method::Message => Some((Modality::Im, dir)),
        sip::Method::Invite => Some((Modality::Calls, dir)),
        sip::Method::Subscribe => Some((Modality::Presence, flip(dir))),
        _ => None,
    }
}

/// The lower-case host of a SIP URI with a user part.
fn user_domain(uri: &Uri<'_>) -> Option<(String, String)> {
    let Uri::Sip(u) = uri else {
        return None;
    };
    Some((u.user?.to_owned(), u.host.to_string().to_ascii_lowercase()))
}

impl<S: store::Store> Core<S> {
    /// The identity of the partner at the other end of `src`, if it is a
    /// partner's connection (one we opened to a partner, or an inbound TLS
    /// connection that presented a certificate trusted for partners).
    pub(crate) fn partner_of(&mut self, src: &Source) -> Option<Arc<Identities>> {
        if src.protocol != Protocol::Tls {
            return None;
        }
        if let Some(ids) = self.fed.out_flows.get(&src.flow) {
            return Some(ids.clone());
        }
        if let Some(ids) = self.fed.peers.get(&src.flow) {
            return Some(ids.clone());
        }
        let chain = src.peer_certificates.as_ref()?;
        let ids = match federation::identity::identities(chain.first()?) {
            Ok(ids) => Arc::new(ids),
            // Verified by rustls but unreadable here: no identity at all,
            // which no From domain matches.
            Err(_) => Arc::new(Identities {
                source: IdSource::SipUri,
                names: Vec::new(),
                hosts: Vec::new(),
            }),
        };
        self.fed.peers.insert(src.flow, ids.clone());
        Some(ids)
    }

    /// Checks a request that arrived on a partner's connection before any
    /// other processing: its From domain must be one the partner's
    /// certificate speaks for, and never ours. `false`: answered 403.
    pub(crate) async fn partner_may_send(&mut self, r: &Req<'_>, ids: &Identities) -> bool {
        // Refusals here are counted under the certificate's identity, never
        // the claimed From domain (which the peer chooses freely).
        let certified = ids.names.first().map_or("unknown", String::as_str);
        let Some((_, domain)) = user_domain(&r.f.from.uri) else {
            self.count_partner(certified, "in", "bad_from");
            self.reply(r, 403, "Forbidden (From Is Not a User of the Partner)", &[])
                .await;
            return false;
        };
        let ours = self
            .identity
            .names()
            .iter()
            .any(|n| n.eq_ignore_ascii_case(&domain));
        if ours {
            self.count_partner(certified, "in", "own_domain_from_outside");
            self.log_refusal(
                r,
                "a partner's request claims to come from this domain",
                &domain,
            );
            self.reply(r, 403, "Forbidden (Own Domain From Outside)", &[])
                .await;
            return false;
        }
        if !ids.covers(&domain) {
            self.count_partner(certified, "in", "from_not_certified");
            self.log_refusal(
                r,
                "a partner's From domain is not one its certificate speaks for",
                &domain,
            );
            self.reply(
                r,
                403,
                "Forbidden (From Domain Does Not Match the Certificate)",
                &[],
            )
            .await;
            return false;
        }
        true
    }

    /// A request outside a dialog from a partner (already checked by
    /// [`Core::partner_may_send`]).
    pub(crate) async fn on_partner_request(&mut self, r: &Req<'_>) {
        let Some((user, domain)) = user_domain(&r.f.from.uri) else {
            return self.reply(r, 403, "Forbidden", &[]).await;
        };
        let status = match policy_set::partner_status(&self.policies, &domain) {
            Ok(s) => s,
            Err(why) => {
                self.count_partner(&domain, "in", why.code());
                self.log_refusal(r, "federation policy refuses the partner", &domain);
                return self
                    .reply(r, 403, "Forbidden (Federation Not Allowed)", &[])
                    .await;
            }
        };
        if let Some((host, _)) = policy_set::pinned_server(&self.policies, &domain) {
            let pinned = self.fed.is_outbound(r.src.flow)
                || self
                    .partner_of(r.src)
                    .is_some_and(|ids| ids.names_host(&host));
            if !pinned {
                self.count_partner(&domain, "in", "not_pinned_server");
                self.log_refusal(
                    r,
                    "a partner's request from a server other than its pinned one",
                    &host,
                );
                return self
                    .reply(r, 403, "Forbidden (Not the Partner's Pinned Server)", &[])
                    .await;
            }
        }
        if let Some((m, d)) = modality_of(r.f.method, Direction::In) {
            if !policy_set::modality_allowed(&self.policies, &domain, m, d) {
                self.count_partner(&domain, "in", "modality_not_allowed");
                self.log_refusal(
                    r,
                    "the federation policy does not offer this to the partner",
                    &domain,
                );
                return self
                    .reply(r, 403, "Forbidden (Not Offered to This Partner)", &[])
                    .await;
            }
        }
        if !self.is_our_domain(&r.f.request_uri) {
            self.count_partner(&domain, "in", "transit");
            self.log_refusal(
                r,
                "relaying denied: a partner's request for another domain",
                "",
            );
            return self.reply(r, 403, "Relaying Denied", &[]).await;
        }
        if r.f.method != sip::Method::Options {
            let limits = (status == PartnerStatus::Discovered).then(|| {
                let (rate, max_users) = policy_set::discovered_limits(&self.policies);
                DiscoveredLimits { rate, max_users }
            });
            let target = match r.f.request_uri {
                Uri::Sip(u) => u.user.unwrap_or(""),
                _ => "",
            };
            let verdict = self.fed.book.inbound(
                &domain,
                limits,
                target,
                std::time::Instant::now(),
                crate::unix_now(),
            );
            match verdict {
                Ok(()) => {}
                Err(Limit::WatchListed) => {
                    self.count_partner(&domain, "in", "watch_listed");
                    return self
                        .reply(r, 403, "Forbidden (Partner on Watch List)", &[])
                        .await;
                }
                Err(Limit::Rate) => {
                    self.count_partner(&domain, "in", "rate_exceeded");
                    return self
                        .reply(
                            r,
                            503,
                            "Service Unavailable (Partner Rate Exceeded)",
                            &[("Retry-After", "1")],
                        )
                        .await;
                }
            }
        }
        match r.f.method {
            sip::Method::Message => {
                let sender = format!("sip:{user}@{domain}");
                self.on_partner_message(r, &domain, sender, status).await
            }
            sip::Method::Invite => {
                let sender = format!("sip:{user}@{domain}");
                self.on_partner_invite(r, &domain, sender, status).await
            }
            // Accepted like any watcher's: what the watcher sees is decided
            // per NOTIFY (Core::federated_view), so a refused or pending
            // subscription looks like an offline user.
            sip::Method::Subscribe => {
                self.count_partner(&domain, "in", "accepted");
                self.on_subscribe(r).await
            }
            sip::Method::Options if self.addressed_to_server(&r.f.request_uri) => {
                self.reply(
                    r,
                    200,
                    "OK",
                    &[(
                        "Allow",
                        "MESSAGE, INVITE, ACK, BYE, CANCEL, SUBSCRIBE, NOTIFY, OPTIONS",
                    )],
                )
                .await
            }
            _ => {
                self.count_partner(&domain, "in", "modality_not_offered");
                self.reply(r, 403, "Forbidden (Not Offered Across Federation)", &[])
                    .await
            }
        }
    }

    /// A partner's MESSAGE for one of our users.
    async fn on_partner_message(
        &mut self,
        r: &Req<'_>,
        domain: &str,
        sender: String,
        status: PartnerStatus,
    ) {
        if !self.message_fits(r).await {
            return;
        }
        let Some(rcpt) = self.partner_reaches(r, &sender, status) else {
            self.count_partner(domain, "in", "recipient_refuses");
            self.fed.book.failed(domain);
            return self.reply(r, 404, "Not Found", &[]).await;
        };
        if r.f.max_forwards == Some(0) {
            return self.reply(r, 483, "Too Many Hops", &[]).await;
        }
        self.count_partner(domain, "in", "accepted");
        self.relay_or_store(r, sender, rcpt).await;
    }

    /// A partner's call for one of our users.
    async fn on_partner_invite(
        &mut self,
        r: &Req<'_>,
        domain: &str,
        sender: String,
        status: PartnerStatus,
    ) {
        let Some(callee) = self.partner_reaches(r, &sender, status) else {
            self.count_partner(domain, "in", "recipient_refuses");
            self.fed.book.failed(domain);
            return self.reply(r, 404, "Not Found", &[]).await;
        };
        if r.f.max_forwards == Some(0) {
            return self.reply(r, 483, "Too Many Hops", &[]).await;
        }
        self.count_partner(domain, "in", "accepted");
        self.ring(r, &callee).await;
    }

    /// The local user a partner's request is for, if it may reach them:
    /// the user exists, is enabled, may federate, and accepts the sender
    /// (contacts only from a discovered or unverified partner). `None` for
    /// every refusal alike.
    fn partner_reaches(&self, r: &Req<'_>, sender: &str, status: PartnerStatus) -> Option<String> {
        let our = &self.cfg.domain;
        let Uri::Sip(u) = r.f.request_uri else {
            return None;
        };
        let rcpt = format!("sip:{}@{our}", u.user?);
        if !self.users.get(&rcpt).is_some_and(|u| u.enabled)
            || !policy_set::user_federates(&self.policies, &rcpt)
        {
            return None;
        }
        let who = crate::presence::watcher(&self.presence.contacts, our, &rcpt, sender);
        let accepted = if status == PartnerStatus::Discovered
            || policy_set::partners_unverified(&self.policies)
        {
            who.entry
                .is_some_and(|e| e != presence::Relationship::Blocked)
        } else {
            let strangers = crate::presence::privacy(&self.policies, &rcpt).strangers;
            presence::access::may_message(who, strangers)
        };
        accepted.then_some(rcpt)
    }

    /// The partner user a request on a partner's connection comes from.
    pub(crate) fn partner_sender(&mut self, r: &Req<'_>) -> Option<String> {
        self.partner_of(r.src)?;
        let (user, domain) = user_domain(&r.f.from.uri)?;
        Some(format!("sip:{user}@{domain}"))
    }

    /// Whether a watcher of another domain may see `resource`'s presence at
    /// all (the privacy policy's federated audience decides how much): the
    /// policy still allows the watcher's domain, the user may federate, and
    /// a discovered or unverified partner's users only as contacts.
    pub(crate) fn federated_view(
        &self,
        resource: &str,
        watcher: &str,
        w: presence::access::Watcher,
    ) -> bool {
        let Some((_, domain)) = watcher.rsplit_once('@') else {
            return false;
        };
        let Ok(status) = policy_set::partner_status(&self.policies, &domain.to_ascii_lowercase())
        else {
            return false;
        };
        if !policy_set::user_federates(&self.policies, resource) {
            return false;
        }
        if status == PartnerStatus::Discovered || policy_set::partners_unverified(&self.policies) {
            return w
                .entry
                .is_some_and(|e| e != presence::Relationship::Blocked);
        }
        true
    }

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
        self.via_partner(r, domain).await;
    }

    /// A request inside a federated dialog whose connection to the partner
    /// has closed (idle, or the partner restarted): it goes over another
    /// connection to the same partner - the domain of the dialog's party
    /// that is not ours - opened if need be, with our own `ours` Route
    /// entries removed and the partner's left in place.
    pub(crate) async fn in_dialog_to_partner(&mut self, r: &Req<'_>, ours: usize) {
        let mut domains = [&r.f.from.uri, &r.f.to.uri]
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
        let (Some(domain), None) = (domains.next(), domains.next()) else {
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

    /// Sends an accepted request to `domain` over the least loaded of our
    /// connections to it (opening another beside busy ones), or waits for
    /// the first to open.
    async fn via_partner(&mut self, r: &Req<'_>, domain: String) {
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
            let attempt = connect(&setup, &transport, &domain, pinned);
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
                let refusal = match why {
                    ConnectFailure::Locate(LocateError::InvalidDomain | LocateError::NotFound) => {
                        (404, "Not Found (No SIP Server for the Domain)", "not_found")
                    }
                    ConnectFailure::Locate(LocateError::PrivateAddress) => (
                        403,
                        "Forbidden (Partner Server at an Internal Address)",
                        "internal_address",
                    ),
                    ConnectFailure::Locate(LocateError::Dns(_))
                    | ConnectFailure::Unreachable(_) => (
                        503,
                        "Service Unavailable (Partner Unreachable)",
                        "unreachable",
                    ),
                };
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
        *self.fed.load.entry(flow).or_insert(0) += 1;
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

    fn count_partner(&self, partner: &str, direction: &'static str, outcome: &'static str) {
        self.metrics.count_federation(partner, direction, outcome);
    }
}

/// Locates `domain` (at its pinned server, if the policy pins one) and
/// opens a verified connection to the first of its servers that accepts one.
async fn connect(
    setup: &FederationSetup,
    transport: &Transport,
    domain: &str,
    pinned: Option<(String, u16)>,
) -> Result<FlowId, ConnectFailure> {
    let located = match pinned {
        Some((host, port)) => setup.locator.locate_pinned(domain, &host, port).await,
        None => setup.locator.locate(domain).await,
    };
    let servers = located.map_err(ConnectFailure::Locate)?;
    let name = rustls_pki_types::ServerName::try_from(domain.to_owned())
        .map_err(|_| ConnectFailure::Locate(LocateError::InvalidDomain))?;
    let mut last = String::from("no server");
    for s in servers {
        let tls = ClientTls {
            config: setup.client.clone(),
            server_name: name.clone(),
        };
        match transport.open(s.addr, Some(tls)).await {
            Ok(flow) => {
                setup.locator.succeeded(s.addr);
                return Ok(flow);
            }
            Err(e) => {
                setup.locator.failed(s.addr);
                tracing::info!(partner = %domain, server = %s.host, addr = %s.addr, error = %e, "a partner's server failed");
                last = format!("{} ({}): {e}", s.host, s.addr);
            }
        }
    }
    Err(ConnectFailure::Unreachable(last))
}
