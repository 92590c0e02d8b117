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
//!
//! This file holds the state and the inbound side; [`outbound`] the
//! connections to partners and what goes over them, [`partners`] the
//! per-partner counters and discovered partners' limits, [`explain`] the
//! decision for administrators.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use federation::identity::{Identities, Source as IdSource};
use federation::locate::Locator;
use sip::{Message, Uri};
use sip_transport::{FlowId, Protocol, Source};
use sip_txn::TxnId;

mod explain;
mod outbound;
mod partners;

pub use explain::Explanation;
pub use partners::PartnerRow;
use partners::{DiscoveredLimits, Limit, PartnerBook};

use crate::policy_set::{self, Direction, Modality, PartnerStatus};
use crate::{Core, Req};

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

pub(crate) use federation::connect::ConnectFailure;

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

    /// Whether `flow` is a partner's connection, either way: it carries
    /// many users' traffic to a server whose limits are not ours.
    pub(crate) fn is_partner_flow(&self, flow: FlowId) -> bool {
        self.out_flows.contains_key(&flow) || self.peers.contains_key(&flow)
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
        // Another node of the pool speaks for the domain itself.
        if self.pool.classify(src).is_some() {
            return None;
        }
        if self.edges.is_edge(src.flow) {
            // Through an edge: the partner its stamp names, if any (never
            // cached per connection: an edge's link carries many).
            return self.edge_partner.clone();
        }
        if let Some(ids) = self.fed.out_flows.get(&src.flow) {
            return Some(ids.clone());
        }
        if let Some(ids) = self.fed.peers.get(&src.flow) {
            return Some(ids.clone());
        }
        if self.edges.is_unpaired(src.flow) {
            // The pool's own CA (trusted here for its edges): an unpaired
            // edge or another server of the pool, never a partner.
            return None;
        }
        let chain = src.peer_certificates.as_ref()?;
        let leaf = chain.first()?;
        if self.devices.device_of(leaf).is_some()
            || self
                .org_identity(src, leaf)
                .is_some_and(|who| who != Err(String::new()))
        {
            // A user's device, signed in by its certificate (Parapet's,
            // or the organisation's CA's).
            return None;
        }
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
        // From a partner: the recipient's filter for federated messages.
        let rules = self.im_rules(&rcpt, true);
        self.relay_filtered(r, rules, sender, rcpt, crate::files::Direction::FromPartner)
            .await;
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
        if !self
            .peer_offers_allowed(r, &sender, &callee, crate::files::Direction::FromPartner)
            .await
        {
            return;
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

    fn count_partner(&self, partner: &str, direction: &'static str, outcome: &'static str) {
        self.metrics.count_federation(partner, direction, outcome);
    }
}
