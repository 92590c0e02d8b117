//! The running edge: the outside's listeners, the inside's link to the
//! pool, and the relay between them.
//!
//! Two transports, so nothing received on one side can pass for the other:
//! the external one (TLS and WSS for remote users) and the internal one
//! (mutual TLS only: the connections the edge opens to the front ends, from
//! its internal address, and its internal listener, which accepts only the
//! pool's front ends). One task relays both ways; it keeps no state per
//! transaction or dialog ([`crate::topology`]), only the links to the pool,
//! the security filter's counters and the per-source rates.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use auth::lockout::{Gate, LockoutConfig, SecurityFilter};
use auth::ratelimit::RateLimiter;
use bytes::Bytes;
use sip::headers::AuthValue;
use sip::{HeaderKind, Message, RequestFields};
use sip_transport::{ClientTls, FlowId, Inbound, Listener, Protocol, Source, Target, Transport};
use tokio::sync::mpsc;
use tracing::Instrument;

use auth::edge_snapshot::Snapshot;

use crate::pairing::Pairing;

mod client_certs;
mod links;
mod media;
mod partner;
mod snapshot;
mod tls;
use crate::token::Sealer;
use crate::topology::{Hop, Name, Refused, Sender, Topology, TRUST_HEADER};
use links::Link;
pub use media::MediaRelay;
use tls::tls;

/// Refused sign-ins and requests are logged at a bounded rate (with how
/// many were not).
static REFUSED_SIGN_IN: sip_transport::logging::RateLimited =
    sip_transport::logging::RateLimited::new();
static REFUSED_ROUTE: sip_transport::logging::RateLimited =
    sip_transport::logging::RateLimited::new();

/// How often the pool's snapshot is asked for.
const SNAPSHOT_EVERY: Duration = Duration::from_millis(500);

/// An external connection's count of unanswered requests lapses after this
/// long without an answer (longer than any transaction's timeout).
const IN_FLIGHT_LAPSE: Duration = Duration::from_secs(64);

/// How an edge runs: the pairing file's content and where to listen.
#[derive(Debug)]
pub struct EdgeConfig {
    pub pairing: Pairing,
    /// The external listeners: TLS and WSS.
    pub external: Vec<(Protocol, SocketAddr)>,
    /// The internal listener (mutual TLS, for the pool).
    pub internal: SocketAddr,
    /// Names the outside reaches the edge by; the first is advertised.
    pub external_names: Vec<String>,
    pub lockout: LockoutConfig,
    /// The per-source limits while no snapshot from the pool is in force.
    pub limits: auth::edge_snapshot::Limits,
    pub max_connections_per_ip: usize,
    /// Where `/healthz` and `/metrics` are served (an internal address).
    pub observe: Option<SocketAddr>,
    /// Which web pages may open WebSocket connections to the WSS listener.
    pub ws_origins: sip_transport::OriginPolicy,
    /// How partners' servers are found (DNS servers, static routes).
    pub locate: federation::locate::LocateConfig,
    /// The CAs trusted for partners' servers (their certificates are asked
    /// for on the TLS listener; empty: no partner can connect).
    pub partner_cas: Vec<rustls_pki_types::CertificateDer<'static>>,
    /// Connections the edge keeps open to one partner's server at most
    /// (`federation.max_connections_per_partner`).
    pub max_connections_per_partner: usize,
    /// The A/V edge's media relay (`None`: none).
    pub media: Option<MediaRelay>,
    /// The SIP trace ring (`None`: none).
    pub trace: Option<crate::traces::TraceRing>,
}

/// The relay's state.
struct Edge {
    /// The trace ring's directory (`None`: none).
    trace_dir: Option<std::path::PathBuf>,
    topo: Topology,
    ext: Transport,
    int: Transport,
    client_tls: ClientTls,
    links: Vec<Link>,
    /// Connections from the pool: the links the edge opened and those the
    /// front ends opened to the internal listener.
    pool_flows: HashSet<FlowId>,
    /// Internal connections seen that are not the pool's.
    strangers: HashSet<FlowId>,
    /// The pool's connections to the internal listener.
    accepted: HashSet<FlowId>,
    next_link: usize,
    domain: String,
    filter: SecurityFilter,
    rate: RateLimiter,
    tag_seq: u64,
    connected: mpsc::Sender<(usize, Option<FlowId>)>,
    metrics: Arc<crate::observe::Metrics>,
    /// The pool's configuration snapshot in force, if any.
    snapshot: Option<Snapshot>,
    /// The public key snapshots must be signed with.
    snapshot_key: Vec<u8>,
    /// The filter's settings while no snapshot is in force.
    fallback_lockout: LockoutConfig,
    snapshot_seq: u64,
    last_fetch: Instant,
    name: String,
    /// Partners' connections and what their certificates speak for.
    partners: HashMap<FlowId, Arc<federation::identity::Identities>>,
    /// Connections whose certificate is not a partner's: a device's, by
    /// its SHA-256, for the pool to judge (`None`: none presented).
    devices: HashMap<FlowId, Option<[u8; 32]>>,
    partner_verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
    /// Connections this edge opened to partners' servers, by domain.
    partner_out: HashMap<String, partner::OutPool>,
    /// Requests sent on each of those connections and not answered yet
    /// (final answers come back on the same connection).
    partner_load: HashMap<FlowId, u32>,
    max_per_partner: usize,
    /// Requests from the pool waiting for a partner connection to open.
    partner_pending: HashMap<String, Vec<partner::Pending>>,
    partner_tx: mpsc::Sender<(String, Result<FlowId, federation::connect::ConnectFailure>)>,
    /// For opening connections to partners: this edge's external
    /// certificate presented, the partner's checked for its domain.
    partner_client: Option<Arc<rustls::ClientConfig>>,
    locator: Option<Arc<federation::locate::Locator>>,
    /// Discovered partners' requests, per domain, at the snapshot's rate.
    discovered: RateLimiter<String>,
    discovered_rate: u32,
    /// The external listeners, as the pool's status shows them.
    listeners: Vec<String>,
    /// External connection -> requests relayed to the pool from it and not
    /// answered yet, and when it last had an answer.
    in_flight: HashMap<FlowId, (u32, Instant)>,
    /// The per-source limits in force (the snapshot's, else the edge's
    /// own), and the edge's own.
    limits: auth::edge_snapshot::Limits,
    fallback_limits: auth::edge_snapshot::Limits,
    /// The media relay, when it runs.
    media: Option<media::Media>,
}

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge").field("links", &self.links).finish()
    }
}

/// The span every line about one message is logged in: its transaction's
/// correlation id, the same the front end logs (`sip::correlation`).
fn corr_span(m: &Message) -> tracing::Span {
    tracing::info_span!(
        "sip",
        corr = sip::correlation::id(m).map(tracing::field::display)
    )
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Binds both sides and relays until the returned future is dropped or a
/// listener fails.
pub async fn run(cfg: EdgeConfig) -> Result<(), String> {
    let p = &cfg.pairing;
    let tls = tls(p, &cfg.partner_cas)?;
    let key = p.topology_key()?;
    let ext_listeners: Vec<Listener> = cfg
        .external
        .iter()
        .map(|(proto, a)| match proto {
            Protocol::Wss => Listener::Wss(*a, tls.external_wss.clone()),
            _ => Listener::Tls(*a, tls.external_tls.clone()),
        })
        .collect();
    // The ring is for diagnosis: an edge whose ring cannot be made (a
    // read-only directory beside the pairing file) relays all the same,
    // and says so.
    let (tap, trace_dir) = match &cfg.trace {
        Some(r) => match crate::traces::tap(r) {
            Ok(t) => (Some(t), Some(r.dir.clone())),
            Err(e) => {
                tracing::error!(error = %e, "no SIP trace ring on this edge (set trace.dir to a directory it may write, or trace.max_mb = 0)");
                (None, None)
            }
        },
        None => (None, None),
    };
    let ext_cfg = sip_transport::TransportConfig {
        tap,
        limits: crate::topology::outside_limits(),
        max_connections_per_ip: cfg.max_connections_per_ip,
        ws_origins: cfg.ws_origins.clone(),
        ..sip_transport::TransportConfig::default()
    };
    let (ext, mut ext_rx) = Transport::bind(ext_cfg, ext_listeners)
        .await
        .map_err(|e| format!("cannot bind an external listener: {e}"))?;
    let int_cfg = sip_transport::TransportConfig {
        limits: crate::topology::inside_limits(),
        connect_from: Some(cfg.internal.ip()).filter(|ip| !ip.is_unspecified()),
        // The pool's few connections carry everyone's traffic.
        max_outbound_queue: 65_536,
        max_inbound_per_connection: sip_transport::DEFAULT_INBOUND_QUEUE,
        ..sip_transport::TransportConfig::default()
    };
    let (int, mut int_rx) = Transport::bind(
        int_cfg,
        vec![Listener::Tls(cfg.internal, tls.internal.clone())],
    )
    .await
    .map_err(|e| format!("cannot bind the internal listener {}: {e}", cfg.internal))?;
    for (proto, addr, _) in ext.local_addrs() {
        tracing::info!(side = "external", protocol = proto.via_token(), %addr, "listening");
    }
    for (proto, addr, _) in int.local_addrs() {
        tracing::info!(side = "internal", protocol = proto.via_token(), %addr, "listening");
    }
    let first = cfg
        .external_names
        .first()
        .cloned()
        .unwrap_or_else(|| p.domain.clone());
    let port_of = |proto: Protocol| {
        ext.local_addrs()
            .iter()
            .find(|l| l.0 == proto)
            .map(|l| l.1.port())
    };
    let mut advertised = Vec::new();
    for proto in [Protocol::Tls, Protocol::Wss] {
        if let Some(port) = port_of(proto) {
            advertised.push((proto, Name::new(&first, port)));
        }
    }
    let mut names = Vec::new();
    for (_, addr, _) in ext.local_addrs() {
        for n in &cfg.external_names {
            names.push(Name::new(n, addr.port()));
        }
        if !addr.ip().is_unspecified() {
            names.push(Name::new(&host_text(addr.ip()), addr.port()));
        }
    }
    let int_addr = int
        .local_addr(Protocol::Tls)
        .ok_or("the internal listener did not bind")?;
    let topo = Topology::new(
        Sealer::new(&key),
        advertised,
        names,
        Name::new(&host_text(int_addr.ip()), int_addr.port()),
    );
    let (connected, mut connected_rx) = mpsc::channel(16);
    let (partner_tx, mut partner_rx) = mpsc::channel(64);
    let locator = if tls.partner_client.is_some() {
        Some(Arc::new(federation::locate::Locator::new(
            cfg.locate.clone(),
        )?))
    } else {
        None
    };
    let metrics = Arc::new(crate::observe::Metrics::default());
    let (media, mut asks) = match &cfg.media {
        Some(m) => {
            let (media, asks) = media::start(
                m,
                (tls.external_wss.clone(), &first),
                &p.domain,
                &key,
                &metrics,
            )
            .await?;
            (Some(media), Some(asks))
        }
        None => (None, None),
    };
    let media_listeners = media
        .as_ref()
        .map(|m| m.listeners.clone())
        .unwrap_or_default();
    let now = Instant::now();
    let mut edge = Edge {
        media,
        topo,
        ext: ext.clone(),
        int: int.clone(),
        client_tls: tls.client,
        links: p
            .front_ends
            .iter()
            .map(|a| Link {
                addr: *a,
                flow: None,
                connecting: false,
                retry_at: now,
                backoff: Duration::from_millis(250),
            })
            .collect(),
        pool_flows: HashSet::new(),
        strangers: HashSet::new(),
        accepted: HashSet::new(),
        next_link: 0,
        domain: p.domain.clone(),
        filter: SecurityFilter::new(cfg.lockout),
        rate: RateLimiter::new(cfg.limits.source_rate, cfg.limits.source_burst, 100_000),
        limits: cfg.limits,
        fallback_limits: cfg.limits,
        tag_seq: 0,
        connected,
        metrics,
        snapshot: None,
        snapshot_key: p.snapshot_key()?,
        fallback_lockout: cfg.lockout,
        snapshot_seq: 0,
        last_fetch: now,
        name: p.name.clone(),
        partners: HashMap::new(),
        devices: HashMap::new(),
        partner_verifier: tls.partner_verifier.clone(),
        partner_out: HashMap::new(),
        partner_load: HashMap::new(),
        in_flight: HashMap::new(),
        max_per_partner: cfg.max_connections_per_partner.max(1),
        partner_pending: HashMap::new(),
        partner_tx,
        partner_client: tls.partner_client.clone(),
        locator,
        discovered: RateLimiter::new(20, 20, 10_000),
        discovered_rate: 20,
        listeners: ext
            .local_addrs()
            .iter()
            .map(|(p, a, _)| format!("{}://{a}", p.via_token().to_ascii_lowercase()))
            .chain(media_listeners)
            .collect(),
        trace_dir,
    };
    if let Some(addr) = cfg.observe {
        let bound = crate::observe::serve(addr, edge.metrics.clone()).await?;
        tracing::info!(side = "internal", %bound, "health and metrics (/healthz, /metrics)");
    }
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut keepalive = tokio::time::interval(Duration::from_secs(30));
    loop {
        tokio::select! {
            Some(m) = ext_rx.recv() => {
                let span = corr_span(&m.message);
                edge.on_external(m).instrument(span).await
            }
            Some(m) = int_rx.recv() => {
                let span = corr_span(&m.message);
                edge.on_internal(m).instrument(span).await
            }
            Some((domain, result)) = partner_rx.recv() => edge.partner_connected(domain, result).await,
            Some(ask) = media::next_ask(&mut asks) => edge.on_relay_ask(ask).await,
            Some((i, flow)) = connected_rx.recv() => {
                let up = flow.is_some();
                edge.on_connected(i, flow);
                if up {
                    edge.fetch_snapshot().await;
                }
            }
            _ = tick.tick() => {
                edge.housekeeping();
                // The pool's snapshot, asked for twice a second: a change
                // of policy, or a user's lost access to the media relay,
                // reaches the edge within a second whatever the ticks (a
                // small signed body, cheap for both sides).
                if edge.last_fetch.elapsed() >= SNAPSHOT_EVERY {
                    edge.fetch_snapshot().await;
                    // And, as often, the calls the relay holds for the
                    // pool: ended ones end here within a second.
                    edge.refresh_pool_calls().await;
                }
                edge.report_relayed().await;
            }
            _ = keepalive.tick() => edge.keepalive().await,
            else => break,
        }
    }
    ext.shutdown();
    int.shutdown();
    Ok(())
}

/// A front end's certificate names the pool's SIP domain by a `sip:` URI
/// (RFC 5922); an edge's internal certificate does not.
fn is_front_end(leaf: &rustls_pki_types::CertificateDer<'_>, domain: &str) -> bool {
    federation::identity::identities(leaf)
        .is_ok_and(|ids| ids.source == federation::identity::Source::SipUri && ids.covers(domain))
}

fn host_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    }
}

/// `sip:user@realm` from a request's digest credentials, when they are for
/// this domain and name a possible user (1-64 of `[A-Za-z0-9_~-]`, as the
/// pool's user names are): the account the security filter counts against.
/// Anything else is no user's and is left to the pool (which fails it),
/// so the filter's table holds only short keys.
fn credentials_account(msg: &Message, domain: &str) -> Option<String> {
    [HeaderKind::Authorization, HeaderKind::ProxyAuthorization]
        .into_iter()
        .flat_map(|k| msg.headers_of(k))
        .filter_map(|h| AuthValue::parse(h.value).ok())
        .find(|a| {
            a.param("realm")
                .is_some_and(|r| r.eq_ignore_ascii_case(domain))
        })
        .and_then(|a| a.param("username"))
        .filter(|u| {
            (1..=64).contains(&u.len())
                && u.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'~' | b'-'))
        })
        .map(|u| format!("sip:{u}@{domain}"))
}

impl Edge {
    fn tag(&mut self) -> String {
        self.tag_seq += 1;
        format!("pe{:x}", self.tag_seq)
    }

    /// Answers a request ourselves (never an ACK).
    async fn reply(
        &mut self,
        side: &Transport,
        msg: &Message,
        src: &Source,
        status: u16,
        reason: &str,
        extra: &[(&str, &str)],
    ) {
        if msg.method().map(|m| m.as_str()) == Some("ACK") {
            return;
        }
        let tag = self.tag();
        let mut b = sip::build::ResponseBuilder::new(msg, status, reason).to_tag(&tag);
        for (n, v) in extra {
            b = b.header(n, v);
        }
        let target = match src.protocol {
            Protocol::Udp => Target::Udp {
                flow: src.flow,
                dest: src.remote,
            },
            _ => Target::Flow(src.flow),
        };
        let bytes = b.finish();
        // An answer to a request the pool sent copies its Vias: one built
        // from the largest the edge takes from the pool may not fit the
        // pool's parser, which would close the link.
        if !crate::topology::fits_pool(&bytes) {
            tracing::debug!(
                status,
                "an answer too large for the pool's limits: not sent"
            );
            return;
        }
        let _ = side.send(target, bytes).await;
    }

    /// A live connection to the pool, round robin.
    fn pool_flow(&mut self) -> Option<FlowId> {
        let live: Vec<FlowId> = self.links.iter().filter_map(|l| l.flow).collect();
        let pick = if live.is_empty() {
            self.pool_flows.iter().next().copied()
        } else {
            self.next_link = self.next_link.wrapping_add(1);
            live.get(self.next_link % live.len()).copied()
        };
        pick.filter(|f| self.int.flow_local(*f).is_some())
    }

    /// The live connection to the pool for `client`'s new requests: the
    /// same one for as long as the links stay the same. A front end's
    /// digest nonces are its own (another node answers one as stale), so a
    /// client whose requests were spread over the nodes of a pool whose
    /// nodes all serve was challenged again by each, for ever.
    fn pool_flow_for(&self, client: std::net::SocketAddr) -> Option<FlowId> {
        let live: Vec<FlowId> = self.links.iter().filter_map(|l| l.flow).collect();
        sticky(&live, client).filter(|f| self.int.flow_local(*f).is_some())
    }

    async fn send_inward(
        &mut self,
        prefer: Option<FlowId>,
        client: Option<std::net::SocketAddr>,
        bytes: Bytes,
    ) -> bool {
        let first = match client {
            Some(c) => self.pool_flow_for(c).or_else(|| self.pool_flow()),
            None => self.pool_flow(),
        };
        let mut tries = prefer
            .filter(|f| self.pool_flows.contains(f))
            .into_iter()
            .chain(first)
            .chain(self.pool_flow())
            .collect::<Vec<_>>();
        tries.dedup();
        for f in tries {
            if self.int.send(Target::Flow(f), bytes.clone()).await.is_ok() {
                return true;
            }
        }
        false
    }

    async fn on_external(&mut self, m: Inbound) {
        let (msg, src) = (m.message, m.source);
        if msg.is_response() {
            if sip::ResponseFields::extract(&msg).is_err() {
                return;
            }
            if msg.status().is_some_and(|s| s >= 200) {
                self.partner_answered(src.flow);
            }
            match self.topo.inward_response(&msg) {
                Ok(r) if !crate::topology::fits_pool(&r.bytes) => {
                    tracing::debug!(remote = %src.remote, "response from outside too large to relay once restored: dropped");
                }
                Ok(r) => {
                    self.metrics.inward_responses.fetch_add(1, Relaxed);
                    if !self.send_inward(Some(r.flow), None, r.bytes).await {
                        tracing::debug!("response from outside: no link to the pool");
                    }
                }
                Err(_) => {
                    tracing::debug!(remote = %src.remote, "response from outside that is not ours dropped")
                }
            }
            return;
        }
        let ext = self.ext.clone();
        let f = match RequestFields::extract(&msg) {
            Ok(f) => f,
            Err(e) => {
                let (status, reason) = (e.status(), e.reason());
                return self.reply(&ext, &msg, &src, status, &reason, &[]).await;
            }
        };
        let to_tag = f.to.tag().is_some();
        let is_ack = f.method.as_str() == "ACK";
        let ip = src.remote.ip();
        let partner_ids = self.partner_on(&src);
        // The per-source rate is for clients: a partner's server speaks for
        // many users (a discovered one has its own rate; the front end does
        // the same).
        if partner_ids.is_none() && !is_ack && !self.rate.allow(ip, Instant::now()) {
            self.metrics.refused_rate.fetch_add(1, Relaxed);
            return self
                .reply(
                    &ext,
                    &msg,
                    &src,
                    503,
                    "Service Unavailable (Rate Limit Exceeded)",
                    &[("Retry-After", "1")],
                )
                .await;
        }
        let partner = match partner_ids {
            None => None,
            Some(ids) => match self.partner_may_send(&ids, &f.from.uri) {
                Ok(domain) => Some((domain, ids.hosts.clone())),
                Err((status, reason)) => {
                    self.metrics.refused_partner.fetch_add(1, Relaxed);
                    if let Some(suppressed) = REFUSED_ROUTE.allow() {
                        tracing::warn!(remote = %src.remote, reason, suppressed, "partner's request refused at the edge");
                    }
                    let retry: &[(&str, &str)] = if status == 503 {
                        &[("Retry-After", "1")]
                    } else {
                        &[]
                    };
                    return self.reply(&ext, &msg, &src, status, reason, retry).await;
                }
            },
        };
        // Partners' servers do not sign in; their users are not counted.
        let account = partner
            .is_none()
            .then(|| credentials_account(&msg, &self.domain))
            .flatten();
        if let Some(a) = &account {
            let now = unix_now();
            if let Gate::Refuse { until } = self.filter.check(a, ip, now) {
                let retry = until.saturating_sub(now).to_string();
                self.metrics.refused_lockout.fetch_add(1, Relaxed);
                if let Some(suppressed) = REFUSED_SIGN_IN.allow() {
                    tracing::warn!(account = %a, source = %ip, until, suppressed, "sign-in refused at the edge after repeated failures (not passed to the pool)");
                }
                return self
                    .reply(
                        &ext,
                        &msg,
                        &src,
                        403,
                        "Forbidden (Too Many Failed Sign-Ins)",
                        &[("Retry-After", retry.as_str())],
                    )
                    .await;
            }
        }
        let sender = Sender {
            flow: src.flow,
            protocol: src.protocol,
            remote: src.remote,
            account,
            device: self.devices.get(&src.flow).copied().flatten(),
            partner,
        };
        if !is_ack && !self.may_add_in_flight(src.flow) {
            self.metrics.refused_in_flight.fetch_add(1, Relaxed);
            return self
                .reply(
                    &ext,
                    &msg,
                    &src,
                    503,
                    "Service Unavailable (Too Many Requests in Flight)",
                    &[("Retry-After", "1")],
                )
                .await;
        }
        match self.topo.inward_request(&msg, to_tag, &sender) {
            Ok(inward) if !crate::topology::fits_pool(&inward.bytes) => {
                // Within the outside's limits but not, with what the edge
                // adds, within the pool's: refused here, never sent in (the
                // front end would close the link everyone shares).
                self.metrics.refused_route.fetch_add(1, Relaxed);
                self.reply(&ext, &msg, &src, 513, "Message Too Large", &[])
                    .await;
            }
            Ok(inward) => {
                self.metrics.inward_requests.fetch_add(1, Relaxed);
                if self.send_inward(None, Some(src.remote), inward.bytes).await {
                    if !is_ack {
                        self.in_flight_added(src.flow);
                    }
                } else {
                    self.metrics.refused_no_pool.fetch_add(1, Relaxed);
                    self.reply(
                        &ext,
                        &msg,
                        &src,
                        503,
                        "Service Unavailable (No Front End Reachable)",
                        &[("Retry-After", "5")],
                    )
                    .await;
                }
            }
            Err(Refused(status, reason)) => {
                self.metrics.refused_route.fetch_add(1, Relaxed);
                if let Some(suppressed) = REFUSED_ROUTE.allow() {
                    tracing::warn!(remote = %src.remote, status, reason, suppressed, "request from outside refused at the edge");
                }
                self.reply(&ext, &msg, &src, status, reason, &[]).await;
            }
        }
    }

    /// Whether one more request from `flow` may go to the pool. Counts
    /// whose answers never came (the pool restarted) lapse after a minute
    /// without any answer.
    fn may_add_in_flight(&mut self, flow: FlowId) -> bool {
        let Some((n, last)) = self.in_flight.get_mut(&flow) else {
            return true;
        };
        let max = self.limits.in_flight_per_connection.max(1);
        if *n >= max && last.elapsed() > IN_FLIGHT_LAPSE {
            *n = 0;
        }
        *n < max
    }

    fn in_flight_added(&mut self, flow: FlowId) {
        let e = self.in_flight.entry(flow).or_insert((0, Instant::now()));
        e.0 = e.0.saturating_add(1);
    }

    fn in_flight_answered(&mut self, flow: FlowId) {
        if let Some((n, last)) = self.in_flight.get_mut(&flow) {
            *n = n.saturating_sub(1);
            *last = Instant::now();
        }
    }

    /// Whether an internal connection is the pool's: one the edge opened,
    /// or one whose certificate (already verified against the pool's CA)
    /// speaks for the pool's domain — another edge's certificate does not.
    fn is_pool_connection(&mut self, src: &Source) -> bool {
        if self.pool_flows.contains(&src.flow) {
            return true;
        }
        if self.strangers.contains(&src.flow) {
            return false;
        }
        let ok = src
            .peer_certificates
            .as_ref()
            .and_then(|c| c.first())
            .is_some_and(|leaf| is_front_end(leaf, &self.domain));
        if ok {
            // Not one of the edge's own links (those are known from the
            // start): a front end connected to the internal listener.
            tracing::info!(remote = %src.remote, "linked to the pool (a front end connected to the internal listener)");
            self.pool_flows.insert(src.flow);
            self.accepted.insert(src.flow);
            self.metrics.links.fetch_add(1, Relaxed);
        } else {
            tracing::warn!(remote = %src.remote, "internal connection from something that is not a front end of the pool: ignored");
            self.strangers.insert(src.flow);
        }
        ok
    }

    async fn on_internal(&mut self, m: Inbound) {
        let (msg, src) = (m.message, m.source);
        if !self.is_pool_connection(&src) {
            return;
        }
        if msg.is_response() {
            if sip::ResponseFields::extract(&msg).is_err() {
                return;
            }
            if self.is_snapshot_answer(&msg) {
                return self.on_snapshot(&msg);
            }
            if self.is_relay_answer(&msg) {
                return self.on_relay_answer(&msg);
            }
            let outcome = msg
                .headers_named(TRUST_HEADER)
                .map(|h| h.value.to_ascii_lowercase())
                .next();
            match self.topo.outward_response(&msg) {
                Ok(r) => {
                    if let (Some(account), Some(source), Some(outcome)) =
                        (&r.account, r.source, outcome)
                    {
                        let now = unix_now();
                        if outcome.contains("sign-in=failed") {
                            self.metrics.sign_in_failures.fetch_add(1, Relaxed);
                            for e in self.filter.failure(account, source.ip(), now) {
                                self.metrics.lockouts.fetch_add(1, Relaxed);
                                tracing::warn!(?e, "lockout at the edge");
                            }
                        } else if outcome.contains("sign-in=ok") {
                            self.metrics.sign_ins.fetch_add(1, Relaxed);
                            self.filter.success(account, source.ip(), now);
                        }
                    }
                    self.metrics.outward_responses.fetch_add(1, Relaxed);
                    if msg.status().is_some_and(|s| s >= 200) {
                        self.in_flight_answered(r.flow);
                    }
                    self.note_outward_response(&msg);
                    let _ = self.ext.send(Target::Flow(r.flow), r.bytes).await;
                }
                Err(_) => tracing::debug!("response from the pool that is not ours dropped"),
            }
            return;
        }
        let int = self.int.clone();
        let to_tag = match RequestFields::extract(&msg) {
            Ok(f) => f.to.tag().is_some(),
            Err(e) => {
                let (status, reason) = (e.status(), e.reason());
                return self.reply(&int, &msg, &src, status, &reason, &[]).await;
            }
        };
        if self.topo.for_the_edge(&msg) {
            let options = msg.method().map(|m| m.as_str()) == Some("OPTIONS");
            if let Some(filter) = crate::traces::question(&msg).filter(|_| options) {
                // The pool reading this edge's side of a call.
                let tag = self.tag();
                return crate::traces::answer(int, msg, src, tag, self.trace_dir.clone(), filter);
            }
            // A front end's OPTIONS on a connection it opened to the
            // internal listener: answered here, relayed nowhere.
            let (status, reason) = if options {
                (200, "OK")
            } else {
                (405, "Method Not Allowed")
            };
            return self.reply(&int, &msg, &src, status, reason, &[]).await;
        }
        if !self.topo.routed_here(&msg) {
            return self.send_to_partner(msg, src, to_tag).await;
        }
        self.outward(&msg, &src, to_tag, None).await;
    }

    /// Rewrites a request from the pool and sends it out (on the connection
    /// its route token names, else on `hop`), or answers it. A route token
    /// naming a partner's connection that is gone sends the request over
    /// another connection to that partner (opened if need be): a dialog
    /// outlives the connection between the organisations, as it does
    /// between front ends.
    async fn outward(&mut self, msg: &Message, src: &Source, to_tag: bool, hop: Option<Hop>) {
        let int = self.int.clone();
        let forced = hop.as_ref().is_some_and(|h| h.forced);
        match self.topo.outward_request(msg, to_tag, src.flow, hop) {
            Ok(out) => {
                if let Some(domain) = out.partner.filter(|_| !forced) {
                    if self.ext.flow_local(out.flow).is_none() {
                        return Box::pin(self.via_partner(
                            msg.clone(),
                            src.clone(),
                            to_tag,
                            domain,
                            true,
                        ))
                        .await;
                    }
                }
                self.metrics.outward_requests.fetch_add(1, Relaxed);
                if self
                    .ext
                    .send(Target::Flow(out.flow), out.bytes)
                    .await
                    .is_err()
                {
                    // RFC 5626 §5.3: the flow a route token names is gone.
                    self.reply(&int, msg, src, 430, "Flow Failed", &[]).await;
                } else {
                    self.note_outward_request(msg);
                    if msg.method().map(|m| m.as_str()) != Some("ACK") {
                        self.partner_sent(out.flow);
                    }
                }
            }
            Err(Refused(status, reason)) => {
                self.reply(&int, msg, src, status, reason, &[]).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(auth: &str) -> Message {
        sip::parse_datagram(
            format!(
                "REGISTER sip:example.test SIP/2.0\r\nVia: SIP/2.0/TLS 198.51.100.7:5061;branch=z9hG4bKx\r\n\
                 From: <sip:a@example.test>;tag=1\r\nTo: <sip:a@example.test>\r\nCall-ID: c\r\n\
                 CSeq: 1 REGISTER\r\n{auth}Content-Length: 0\r\n\r\n"
            )
            .into_bytes()
            .into(),
            &sip::Limits::DEFAULT,
        )
        .unwrap()
    }

    #[test]
    fn the_filter_counts_possible_users_of_this_domain_only() {
        let a = |u: &str, realm: &str| {
            msg(&format!(
                "Authorization: Digest username=\"{u}\", realm=\"{realm}\", nonce=\"n\", uri=\"sip:example.test\", response=\"r\"\r\n"
            ))
        };
        assert_eq!(
            credentials_account(&a("alice", "example.test"), "example.test").as_deref(),
            Some("sip:alice@example.test")
        );
        assert_eq!(
            credentials_account(&a("alice", "other.test"), "example.test"),
            None
        );
        assert_eq!(
            credentials_account(&a(&"x".repeat(65), "example.test"), "example.test"),
            None
        );
        assert_eq!(
            credentials_account(&a("al ice", "example.test"), "example.test"),
            None
        );
        assert_eq!(credentials_account(&msg(""), "example.test"), None);
    }
}

/// One of `live` chosen by `client`'s address alone: the same while `live`
/// is the same.
fn sticky(live: &[FlowId], client: std::net::SocketAddr) -> Option<FlowId> {
    use std::hash::{Hash, Hasher};
    if live.is_empty() {
        return None;
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    client.hash(&mut h);
    let n = u64::try_from(live.len()).unwrap_or(u64::MAX);
    let i = usize::try_from(h.finish() % n).unwrap_or(0);
    live.get(i).copied()
}

#[cfg(test)]
mod sticky_tests {
    use super::*;

    #[test]
    fn a_client_keeps_to_one_link_and_clients_spread_over_all() {
        let live = [FlowId(1), FlowId(2), FlowId(3)];
        let mut used = std::collections::HashSet::new();
        for port in 5000..5100u16 {
            let client = std::net::SocketAddr::from(([198, 51, 100, 7], port));
            let first = sticky(&live, client);
            assert!(first.is_some());
            assert!(
                (0..5).all(|_| sticky(&live, client) == first),
                "{client}: always the same link"
            );
            used.extend(first);
        }
        assert_eq!(used.len(), 3, "every link takes some clients");
        assert_eq!(
            sticky(&[], "198.51.100.7:5000".parse().expect("addr")),
            None
        );
    }
}
