//! The pool's edges as the front end sees them: which connections are a
//! paired edge's, what the edge says about who sent a request, and which
//! connection reaches an edge now.
//!
//! An edge is known by its internal certificate (issued by this pool's CA
//! when it was paired, and verified by the TLS listener); its SHA-256 must
//! be one of the paired edges'. Only on such a connection is the edge's
//! trust header read: it names the client's own address, which then stands
//! for the source everywhere (rate limits, the lockout filter, overload
//! control, logs). On any other connection the header means nothing and is
//! never passed on.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sip::Message;
use sip_transport::{fingerprint, FlowId, Source};

/// The header an edge stamps on requests it relays inward, and this server
/// on its answers to an edge (the sign-in outcome its security filter counts).
pub const EDGE_HEADER: &str = "P-Parapet-Edge";

/// The sign-in outcome of the request being handled, for the edge it came
/// through: set by the authentication step, taken by the response built
/// next. (An atomic only because the core is shared across awaits.)
#[derive(Debug, Default)]
pub(crate) struct Outcome(std::sync::atomic::AtomicU8);

impl Outcome {
    pub(crate) fn set(&self, signed_in: Option<bool>) {
        let v = match signed_in {
            None => 0,
            Some(true) => 1,
            Some(false) => 2,
        };
        self.0.store(v, std::sync::atomic::Ordering::Relaxed);
    }

    /// The header value to send, once.
    pub(crate) fn take(&self) -> Option<&'static str> {
        match self.0.swap(0, std::sync::atomic::Ordering::Relaxed) {
            1 => Some("sign-in=ok"),
            2 => Some("sign-in=failed"),
            _ => None,
        }
    }
}

/// One paired edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairedEdge {
    pub name: String,
    /// SHA-256 of its internal certificate (DER).
    pub fingerprint: [u8; 32],
    /// Its internal listener, which Record-Route and Path entries name.
    pub internal: SocketAddr,
}

/// Loads the store's paired edges into an [`EdgeSetup`] (the server's:
/// certificates and keys); run on a blocking thread.
pub type EdgeLoader =
    std::sync::Arc<dyn Fn(&[store::EdgeRow]) -> Result<EdgeSetup, String> + Send + Sync>;

/// What the server hands the core about its edges.
#[derive(Debug, Default, Clone)]
pub struct EdgeSetup {
    pub paired: Vec<PairedEdge>,
    /// Signs the configuration snapshots edges fetch (`None` until an edge
    /// was first paired).
    pub signer: Option<std::sync::Arc<ring::signature::Ed25519KeyPair>>,
    /// The pool's own CA certificate (DER), when it issues edges'.
    pub own_ca: Option<Vec<u8>>,
    /// For connecting to an edge's internal listener: this front end's
    /// certificate presented, the edge's verified against the pool's CA
    /// for its internal address.
    pub dial: Option<std::sync::Arc<rustls::ClientConfig>>,
}

/// How long a paired edge may go without a link to this front end before
/// the front end connects to its internal listener itself (the edge's own
/// connections may be refused by the firewall between the two, as the DMZ
/// rule often is: nothing from the DMZ in).
const DIAL_AFTER: Duration = Duration::from_secs(3);
const DIAL_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The front end's attempts to reach one edge's internal listener.
#[derive(Debug)]
struct Dial {
    busy: bool,
    retry_at: Instant,
    backoff: Duration,
}

/// The paired edges and their live connections.
#[derive(Debug, Default)]
pub(crate) struct Edges {
    paired: Vec<PairedEdge>,
    signer: Option<std::sync::Arc<ring::signature::Ed25519KeyPair>>,
    own_ca: Option<Vec<u8>>,
    /// Connections known to be an edge's (index into `paired`).
    flows: HashMap<FlowId, usize>,
    /// Connections presenting a certificate that is no paired edge's.
    others: HashSet<FlowId>,
    /// Of those, the ones whose certificate the pool's own CA issued (an
    /// unpaired edge, or a server of the pool): they stand for nobody.
    unpaired: HashSet<FlowId>,
    /// What each edge last reported (index into `paired`): the snapshot
    /// version it holds and its external listeners.
    reported: HashMap<usize, (u64, Vec<String>)>,
    dial: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// Edge name -> connecting to its internal listener.
    dials: HashMap<String, Dial>,
}

impl Edges {
    /// Replaces the paired list (pairing or unpairing): connections are
    /// classified again, so an unpaired edge's stop counting at once.
    pub(crate) fn set(&mut self, setup: EdgeSetup) {
        self.paired = setup.paired;
        self.signer = setup.signer;
        self.own_ca = setup.own_ca;
        self.dial = setup.dial;
        self.dials.clear();
        self.flows.clear();
        self.others.clear();
        self.unpaired.clear();
        self.reported.clear();
    }

    /// The paired edge a connection belongs to, if any.
    pub(crate) fn classify(&mut self, src: &Source) -> Option<&PairedEdge> {
        if self.paired.is_empty() && self.own_ca.is_none() {
            return None;
        }
        if let Some(&i) = self.flows.get(&src.flow) {
            return self.paired.get(i);
        }
        if self.others.contains(&src.flow) {
            return None;
        }
        let leaf = src.peer_certificates.as_ref().and_then(|c| c.first())?;
        let fp = fingerprint(leaf);
        match self.paired.iter().position(|e| e.fingerprint == fp) {
            Some(i) => {
                tracing::info!(edge = %self.paired[i].name, remote = %src.remote, "edge connected");
                self.flows.insert(src.flow, i);
                self.paired.get(i)
            }
            None => {
                if self.own_issued(leaf) {
                    tracing::warn!(remote = %src.remote, "a certificate of the pool's CA that is no paired edge's: refused");
                    self.unpaired.insert(src.flow);
                }
                self.others.insert(src.flow);
                None
            }
        }
    }

    /// Whether a connection presented a certificate of the pool's own CA
    /// that is no paired edge's (as classified already).
    pub(crate) fn is_unpaired(&self, flow: FlowId) -> bool {
        self.unpaired.contains(&flow)
    }

    /// Whether a certificate was issued by the pool's own CA (and so, if
    /// it is not a paired edge's, stands for nobody: not a partner).
    fn own_issued(&self, leaf: &[u8]) -> bool {
        self.own_ca
            .as_deref()
            .is_some_and(|ca| federation::identity::issued_by(leaf, ca))
    }

    /// Whether a connection is a paired edge's (as classified already).
    pub(crate) fn is_edge(&self, flow: FlowId) -> bool {
        self.flows.contains_key(&flow)
    }

    pub(crate) fn closed(&mut self, flow: FlowId) {
        if let Some(i) = self.flows.remove(&flow) {
            if let Some(e) = self.paired.get(i) {
                tracing::warn!(edge = %e.name, "edge connection closed");
            }
        }
        self.others.remove(&flow);
        self.unpaired.remove(&flow);
    }

    pub(crate) fn signer(&self) -> Option<&ring::signature::Ed25519KeyPair> {
        self.signer.as_deref()
    }

    /// Each paired edge and how many of its connections are open.
    pub(crate) fn status(&self) -> Vec<crate::command::EdgeStatus> {
        self.paired
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let (version, listeners) = self.reported.get(&i).cloned().unwrap_or_default();
                crate::command::EdgeStatus {
                    name: e.name.clone(),
                    internal: e.internal.to_string(),
                    links: self.flows.values().filter(|&&j| j == i).count(),
                    snapshot_version: version,
                    external_listeners: listeners,
                }
            })
            .collect()
    }

    /// Records what an edge reported with its snapshot request
    /// (`status;snapshot="N";listeners="tls://A wss://B"`), bounded.
    pub(crate) fn report(&mut self, flow: FlowId, msg: &Message) {
        let Some(&i) = self.flows.get(&flow) else {
            return;
        };
        let Some(v) = msg
            .headers_named(EDGE_HEADER)
            .map(|h| h.value)
            .find(|v| v.starts_with("status;"))
        else {
            return;
        };
        let param = |name: &str| {
            v.split(';')
                .find_map(|p| p.strip_prefix(name)?.strip_prefix("=\"")?.strip_suffix('"'))
        };
        let version = param("snapshot").and_then(|n| n.parse().ok()).unwrap_or(0);
        let listeners = param("listeners")
            .unwrap_or("")
            .split(' ')
            .filter(|l| !l.is_empty())
            .take(16)
            .map(|l| l.chars().take(64).collect())
            .collect();
        self.reported.insert(i, (version, listeners));
    }

    /// The relays the edges reported (`turn:` and `turns:` URIs), each
    /// once.
    pub(crate) fn relay_urls(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (_, listeners) in self.reported.values() {
            for l in listeners {
                if (l.starts_with("turn:") || l.starts_with("turns:")) && !out.contains(l) {
                    out.push(l.clone());
                }
            }
        }
        out
    }

    /// Whether any edge is paired (then partners are reached through them).
    /// Every paired edge: its name and internal listener.
    pub(crate) fn paired_list(&self) -> Vec<(String, SocketAddr)> {
        self.paired
            .iter()
            .map(|e| (e.name.clone(), e.internal))
            .collect()
    }

    pub(crate) fn any_paired(&self) -> bool {
        !self.paired.is_empty()
    }

    /// A live connection from any paired edge.
    pub(crate) fn any_link(&self) -> Option<FlowId> {
        self.flows.keys().min().copied()
    }

    /// The edges that have had no live link for [`DIAL_AFTER`] and are due
    /// another attempt: (name, internal address, client configuration).
    pub(crate) fn due_dials(
        &mut self,
        now: Instant,
        live: impl Fn(FlowId) -> bool,
    ) -> Vec<(String, SocketAddr, std::sync::Arc<rustls::ClientConfig>)> {
        let Some(cfg) = self.dial.clone() else {
            return Vec::new();
        };
        let mut due = Vec::new();
        for (i, e) in self.paired.iter().enumerate() {
            let linked = self.flows.iter().any(|(f, &j)| j == i && live(*f));
            if linked {
                self.dials.remove(&e.name);
                continue;
            }
            let d = self.dials.entry(e.name.clone()).or_insert(Dial {
                busy: false,
                retry_at: now + DIAL_AFTER,
                backoff: Duration::from_secs(1),
            });
            if !d.busy && now >= d.retry_at {
                d.busy = true;
                due.push((e.name.clone(), e.internal, cfg.clone()));
            }
        }
        due
    }

    /// A connection to the named edge's internal listener opened (or not).
    pub(crate) fn dialed(&mut self, name: &str, flow: Option<FlowId>, now: Instant) {
        let Some(i) = self.paired.iter().position(|e| e.name == name) else {
            return;
        };
        match flow {
            Some(f) => {
                tracing::info!(edge = %name, "connected to the edge's internal listener (it had no link to this front end)");
                self.flows.insert(f, i);
                self.dials.remove(name);
            }
            None => {
                if let Some(d) = self.dials.get_mut(name) {
                    d.busy = false;
                    d.retry_at = now + d.backoff;
                    d.backoff = (d.backoff * 2).min(DIAL_BACKOFF_MAX);
                }
            }
        }
    }

    /// The paired edge a known connection belongs to.
    pub(crate) fn flow_edge(&self, flow: FlowId) -> Option<&PairedEdge> {
        self.paired.get(*self.flows.get(&flow)?)
    }

    /// A live connection from the named edge.
    /// The newest of an edge's connections that `live` says the transport
    /// still holds. The transport sees a link close before the core does
    /// (it learns on its next tick, up to 100 ms later): a restarted edge
    /// has its new link and its dead one here for that while, and a request
    /// given the dead one is lost, its transaction waiting out timer F.
    pub(crate) fn flow_of(&self, name: &str, live: impl Fn(FlowId) -> bool) -> Option<FlowId> {
        let i = self.paired.iter().position(|e| e.name == name)?;
        self.flows
            .iter()
            .filter(|&(&f, &j)| j == i && live(f))
            .map(|(f, _)| *f)
            .max_by_key(|f| f.0)
    }

    /// The paired edge whose internal listener a route entry names.
    pub(crate) fn at(&self, host: &str, port: Option<u16>) -> Option<&PairedEdge> {
        self.paired.iter().find(|e| {
            let h = match e.internal.ip() {
                std::net::IpAddr::V4(a) => a.to_string(),
                std::net::IpAddr::V6(a) => format!("[{a}]"),
            };
            h.eq_ignore_ascii_case(host) && port.is_none_or(|p| p == e.internal.port())
        })
    }
}

impl<S: store::Store> crate::Core<S> {
    /// Connects to the internal listener of each paired edge that has had
    /// no link to this front end for a while (in tasks; the outcome comes
    /// back as [`crate::Event::EdgeDialed`]).
    pub(crate) fn dial_edges(&mut self) {
        let transport = &self.transport;
        let due = self
            .edges
            .due_dials(Instant::now(), |f| transport.flow_local(f).is_some());
        for (name, addr, config) in due {
            let (transport, events) = (self.transport.clone(), self.events_tx.clone());
            tokio::spawn(async move {
                let tls = sip_transport::ClientTls {
                    config,
                    server_name: rustls_pki_types::ServerName::IpAddress(addr.ip().into()),
                };
                let flow = match transport.open(addr, Some(tls)).await {
                    Ok(f) => Some(f),
                    Err(e) => {
                        static FAILED: sip_transport::logging::RateLimited =
                            sip_transport::logging::RateLimited::new();
                        if let Some(suppressed) = FAILED.allow() {
                            tracing::warn!(edge = %name, %addr, error = %e, suppressed, "cannot reach the edge's internal listener");
                        }
                        None
                    }
                };
                let _ = events.send(crate::Event::EdgeDialed { name, flow }).await;
            });
        }
    }

    /// The connection to an edge's internal listener opened (or not): the
    /// edge learns it is the pool's from a first request on it (OPTIONS
    /// with Max-Forwards 0, which it answers itself).
    pub(crate) async fn edge_dialed(&mut self, name: String, flow: Option<FlowId>) {
        self.edges.dialed(&name, flow, Instant::now());
        let Some(f) = flow else { return };
        let Some(edge) = self.edges.flow_edge(f) else {
            return;
        };
        let internal = edge.internal;
        let domain = self.cfg.domain.clone();
        let via = self.via_for(sip_transport::Protocol::Tls);
        let tag = self.next_tag();
        let hello = format!(
            "OPTIONS sip:{internal};transport=tls SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 0\r\n\
             From: <sip:{domain}>;tag={tag}\r\nTo: <sip:{internal}>\r\nCall-ID: edge-hello-{tag}\r\n\
             CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        let _ = self
            .transport
            .send(sip_transport::Target::Flow(f), bytes::Bytes::from(hello))
            .await;
    }

    /// The signed configuration snapshot, to an edge that asked (OPTIONS
    /// with `Accept` of its type): 200 with it, or 503 when this server
    /// has no signing key yet.
    pub(crate) async fn answer_snapshot(&mut self, r: &crate::Req<'_>) {
        let Some(key) = self.edges.signer() else {
            return self
                .reply(
                    r,
                    503,
                    "Service Unavailable (No Snapshot Key)",
                    &[("Retry-After", "30")],
                )
                .await;
        };
        let now = u64::try_from(crate::unix_now()).unwrap_or(0);
        let snapshot =
            auth::edge_snapshot::Snapshot {
                version: u64::try_from(self.policies.version).unwrap_or(0),
                issued_at: now,
                expires_at: now + auth::edge_snapshot::LIFETIME_SECS,
                domain: self.cfg.domain.clone(),
                // The global thresholds (per-user ones still apply on the
                // front end).
                lockout: auth::edge_snapshot::Lockout::from_config(
                    &crate::policy_set::lockout_limits(&self.policies, "", *self.filter.config()),
                ),
                federation: crate::policy_set::federation_rules(&self.policies),
                limits: self.cfg.edges,
                revoked_devices: self
                    .devices
                    .revoked_since(
                        crate::unix_now()
                            - i64::try_from(auth::edge_snapshot::REVOKED_WINDOW_SECS).unwrap_or(30),
                    )
                    .iter()
                    .map(|f| pki::hex(f))
                    .collect(),
                relay_revoked: self.relay_control.recent(
                    std::time::Duration::from_secs(auth::edge_snapshot::REVOKED_WINDOW_SECS),
                    auth::edge_snapshot::MAX_REVOKED,
                    auth::edge_snapshot::MAX_BODY / 4,
                ),
            };
        let body = auth::edge_snapshot::sign(key, &snapshot);
        if body.len() > auth::edge_snapshot::MAX_BODY {
            tracing::error!(bytes = body.len(), "the edges' configuration snapshot is too large to send (federation.allowed_domains too long?)");
            return self
                .reply(r, 500, "Server Internal Error (Snapshot Too Large)", &[])
                .await;
        }
        self.answer_edge(r, auth::edge_snapshot::CONTENT_TYPE, &body)
            .await;
    }

    /// A paired edge's relay asking for a user's key (OPTIONS with
    /// `Accept` of `relay::pool_key`'s type, the question in the body):
    /// 200 with the answer, or 400 for a question that does not read.
    pub(crate) async fn answer_relay_key(&mut self, r: &crate::Req<'_>) {
        let answer = self
            .relay_key_for_edge(r.msg.body())
            .map(|a| relay::pool_key::encode_answer(&a));
        self.answer_edge_question(
            r,
            answer,
            relay::pool_key::CONTENT_TYPE,
            "Bad Request (Malformed Key Question)",
        )
        .await;
    }

    /// A paired edge's relay asking about users' calls (OPTIONS with
    /// `Accept` of `relay::pool_key::CALLS_TYPE`): 200 with them, or 400
    /// for a question that does not read.
    pub(crate) async fn answer_relay_calls(&mut self, r: &crate::Req<'_>) {
        let answer = self.relay_calls_for_edge(r.msg.body());
        self.answer_edge_question(
            r,
            answer,
            relay::pool_key::CALLS_TYPE,
            "Bad Request (Malformed Calls Question)",
        )
        .await;
    }

    /// A paired edge's relay telling of calls whose media it carried
    /// (OPTIONS with `Accept` of `relay::pool_key::RELAYED_TYPE`): noted
    /// for their call records, 200; 400 for a notice that does not read.
    pub(crate) async fn answer_relay_relayed(&mut self, r: &crate::Req<'_>) {
        let answer = relay::pool_key::parse_relayed(r.msg.body()).map(|ids| {
            let now = Instant::now();
            for id in ids {
                self.relay_control.calls.note_relayed(&id, now);
            }
            String::new()
        });
        self.answer_edge_question(
            r,
            answer,
            relay::pool_key::RELAYED_TYPE,
            "Bad Request (Malformed Relayed Notice)",
        )
        .await;
    }

    /// 200 with `answer` of `content_type` to an edge's question, or 400
    /// with `refusal` when the question did not read.
    async fn answer_edge_question(
        &mut self,
        r: &crate::Req<'_>,
        answer: Result<String, &'static str>,
        content_type: &str,
        refusal: &'static str,
    ) {
        match answer {
            Ok(body) => self.answer_edge(r, content_type, &body).await,
            Err(why) => {
                tracing::warn!(
                    why,
                    content_type,
                    "an edge's relay asked a malformed question"
                );
                self.reply(r, 400, refusal, &[]).await;
            }
        }
    }

    /// 200 to an edge's question, with `body` of `content_type`.
    async fn answer_edge(&mut self, r: &crate::Req<'_>, content_type: &str, body: &str) {
        let bytes = self.edge_answer(r)(content_type, body);
        self.txn
            .respond(r.id, 200, bytes, std::time::Instant::now(), &mut self.out);
        self.flush().await;
    }

    /// What makes the 200 to an edge's question `r`, given its body (built
    /// later, off the core, where the answer needs the store).
    fn edge_answer(&mut self, r: &crate::Req<'_>) -> impl FnOnce(&str, &str) -> bytes::Bytes {
        let tag = self.next_tag();
        let (rcv, rport) = sip::build::via_received_for(&r.f.top_via, r.src.remote);
        let msg = r.msg.clone();
        move |content_type, body| {
            sip::build::ResponseBuilder::new(&msg, 200, "OK")
                .via_received(rcv, rport)
                .to_tag(&tag)
                .body(content_type, body.as_bytes())
        }
    }

    /// A paired edge's relay asking whether a web client's session is
    /// still signed in (its credentials good only while it is): answered
    /// from the store, off the core.
    pub(crate) async fn answer_relay_session(&mut self, r: &crate::Req<'_>) {
        let q = match relay::pool_key::SessionQuestion::parse(r.msg.body()) {
            Ok(q) => q,
            Err(why) => {
                tracing::warn!(
                    why,
                    "an edge's relay asked about a session in a malformed question"
                );
                return self
                    .reply(r, 400, "Bad Request (Malformed Session Question)", &[])
                    .await;
            }
        };
        let Some(permit) = self.write_permit(r).await else {
            return;
        };
        let (store, events, id) = (self.store.clone(), self.events_tx.clone(), r.id);
        let answer = self.edge_answer(r);
        tokio::spawn(async move {
            let _permit = permit;
            let live = crate::session_live(&store, &q.aor, &q.session).await;
            let bytes = answer(
                relay::pool_key::SESSION_TYPE,
                &relay::pool_key::encode_live(live),
            );
            let _ = events
                .send(crate::Event::Respond {
                    id,
                    method: "OPTIONS",
                    status: 200,
                    bytes,
                })
                .await;
        });
    }
}

/// What an edge says about a request it relays: who sent it (the client's
/// or partner server's own address) and, for a partner's server, the
/// domain its certificate speaks for (checked by the edge against the
/// From domain) and the certificate's DNS names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub(crate) source: SocketAddr,
    pub(crate) partner: Option<(String, Vec<String>)>,
    /// The SHA-256 of the certificate a remote client presented at the
    /// edge (which proved it holds the key).
    pub(crate) device: Option<[u8; 32]>,
}

/// Reads the edge's stamp: `remote;source="ADDR"` (with
/// `;device="SHA-256 HEX"` for a client that presented a certificate) or
/// `partner;domain="D";hosts="H1 H2";source="ADDR"`. Exactly one.
pub(crate) fn stamp(msg: &Message) -> Option<Stamp> {
    let mut stamps = msg.headers_named(EDGE_HEADER);
    let value = stamps.next()?.value;
    if stamps.next().is_some() {
        return None;
    }
    let mut parts = value.split(';');
    let kind = parts.next()?;
    let mut params = std::collections::HashMap::new();
    for p in parts {
        let (k, v) = p.split_once('=')?;
        let v = v.strip_prefix('"')?.strip_suffix('"')?;
        if params.insert(k, v).is_some() {
            return None;
        }
    }
    let source = params.get("source")?.parse().ok()?;
    match (kind, params.len()) {
        ("remote", 1) => Some(Stamp {
            source,
            partner: None,
            device: None,
        }),
        ("remote", 2) => Some(Stamp {
            source,
            partner: None,
            device: Some(pki::registry::parse_fingerprint(params.get("device")?)?),
        }),
        ("partner", 3) => {
            let domain = params.get("domain")?.to_ascii_lowercase();
            if domain.is_empty() {
                return None;
            }
            let hosts = params
                .get("hosts")?
                .split(' ')
                .filter(|h| !h.is_empty())
                .map(str::to_owned)
                .collect();
            Some(Stamp {
                source,
                partner: Some((domain, hosts)),
                device: None,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn msg(extra: &str) -> Message {
        sip::parse_datagram(
            format!(
                "MESSAGE sip:b@example.test SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.11:5061;branch=z9hG4bKx\r\n\
                 From: <sip:a@example.test>;tag=1\r\nTo: <sip:b@example.test>\r\nCall-ID: c\r\n\
                 CSeq: 1 MESSAGE\r\n{extra}Content-Length: 0\r\n\r\n"
            )
            .into_bytes()
            .into(),
            &sip::Limits::DEFAULT,
        )
        .unwrap()
    }

    fn stamped_source(m: &Message) -> Option<SocketAddr> {
        stamp(m).filter(|s| s.partner.is_none()).map(|s| s.source)
    }

    #[test]
    fn a_partners_stamp_names_its_domain_and_hosts() {
        let s = stamp(&msg(
            "P-Parapet-Edge: partner;domain=\"Partner.Example\";hosts=\"sip.partner.example\";source=\"203.0.113.9:5061\"\r\n",
        ))
        .unwrap();
        assert_eq!(s.source, "203.0.113.9:5061".parse().unwrap());
        assert_eq!(
            s.partner,
            Some(("partner.example".into(), vec!["sip.partner.example".into()]))
        );
        for bad in [
            "P-Parapet-Edge: partner;domain=\"\";hosts=\"\";source=\"203.0.113.9:5061\"\r\n",
            "P-Parapet-Edge: partner;domain=\"p.example\";source=\"203.0.113.9:5061\"\r\n",
            "P-Parapet-Edge: partner;domain=\"p.example\";domain=\"q.example\";source=\"203.0.113.9:5061\"\r\n",
        ] {
            assert_eq!(stamp(&msg(bad)), None, "{bad}");
        }
    }

    #[test]
    fn the_stamp_names_one_address_or_nothing() {
        assert_eq!(
            stamped_source(&msg(
                "P-Parapet-Edge: remote;source=\"198.51.100.7:40001\"\r\n"
            )),
            Some("198.51.100.7:40001".parse().unwrap())
        );
        assert_eq!(
            stamped_source(&msg(
                "p-parapet-edge: remote;source=\"[2001:db8::1]:5061\"\r\n"
            )),
            Some("[2001:db8::1]:5061".parse().unwrap())
        );
        for bad in [
            "",
            "P-Parapet-Edge: remote;source=198.51.100.7:40001\r\n",
            "P-Parapet-Edge: partner;source=\"198.51.100.7:40001\"\r\n",
            "P-Parapet-Edge: remote;source=\"x\"\r\n",
            "P-Parapet-Edge: remote;source=\"198.51.100.7:1\"\r\nP-Parapet-Edge: remote;source=\"198.51.100.8:1\"\r\n",
            "P-Parapet-Edge: remote;source=\"198.51.100.7:1\";device=\"ab\"\r\n",
            "P-Parapet-Edge: remote;source=\"198.51.100.7:1\";hosts=\"x\"\r\n",
        ] {
            assert_eq!(stamped_source(&msg(bad)), None, "{bad}");
        }
        // A client's certificate, named by its SHA-256.
        let s = stamp(&msg(&format!(
            "P-Parapet-Edge: remote;source=\"198.51.100.7:1\";device=\"{}\"\r\n",
            "Ab".repeat(32)
        )))
        .unwrap();
        assert_eq!(s.device, Some([0xab; 32]));
        assert_eq!(s.partner, None);
    }

    fn src(flow: u64, cert: &[u8]) -> Source {
        Source {
            protocol: sip_transport::Protocol::Tls,
            remote: "127.0.0.11:40000".parse().unwrap(),
            local: "127.0.0.1:5061".parse().unwrap(),
            flow: FlowId(flow),
            peer_certificates: Some(Arc::new(vec![cert.to_vec().into()])),
        }
    }

    #[test]
    fn only_a_paired_certificate_makes_an_edge_and_unpairing_ends_it() {
        let mut e = Edges::default();
        let edge = PairedEdge {
            name: "edge1".into(),
            fingerprint: fingerprint(b"edge cert"),
            internal: "127.0.0.11:5061".parse().unwrap(),
        };
        e.set(EdgeSetup {
            paired: vec![edge.clone()],
            signer: None,
            own_ca: None,
            dial: None,
        });
        assert_eq!(
            e.classify(&src(1, b"edge cert")).map(|p| p.name.as_str()),
            Some("edge1")
        );
        assert!(e.classify(&src(2, b"partner cert")).is_none());
        assert!(e.is_edge(FlowId(1)) && !e.is_edge(FlowId(2)));
        assert_eq!(e.flow_of("edge1", |_| true), Some(FlowId(1)));
        assert_eq!(e.flow_of("edge1", |_| false), None, "its link is gone");
        assert_eq!(
            e.at("127.0.0.11", Some(5061)).map(|p| p.name.as_str()),
            Some("edge1")
        );
        assert!(e.at("127.0.0.11", Some(5062)).is_none());
        e.closed(FlowId(1));
        assert_eq!(e.flow_of("edge1", |_| true), None);
        assert!(e.classify(&src(3, b"edge cert")).is_some());
        // Restarted: its new link comes before the core hears the old one
        // closed. The live one is chosen, else the newest.
        assert!(e.classify(&src(5, b"edge cert")).is_some());
        assert_eq!(e.flow_of("edge1", |f| f != FlowId(5)), Some(FlowId(3)));
        assert_eq!(e.flow_of("edge1", |f| f != FlowId(3)), Some(FlowId(5)));
        assert_eq!(e.flow_of("edge1", |_| true), Some(FlowId(5)));
        e.set(EdgeSetup::default());
        assert!(e.classify(&src(3, b"edge cert")).is_none(), "unpaired");
    }

    #[test]
    fn an_edge_without_a_link_is_dialled_after_a_grace_then_with_back_off() {
        let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let mut e = Edges::default();
        e.set(EdgeSetup {
            paired: vec![PairedEdge {
                name: "edge1".into(),
                fingerprint: fingerprint(b"edge cert"),
                internal: "127.0.0.11:5061".parse().unwrap(),
            }],
            dial: Some(std::sync::Arc::new(cfg)),
            ..EdgeSetup::default()
        });
        let t0 = Instant::now();
        let none_live = |_| false;
        // Not at once: the edge's own link may be on its way.
        assert!(e.due_dials(t0, none_live).is_empty());
        let due = e.due_dials(t0 + DIAL_AFTER, none_live);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].1, "127.0.0.11:5061".parse().unwrap());
        // One attempt at a time; a failure waits 1 s, then 2 s.
        assert!(e.due_dials(t0 + DIAL_AFTER * 2, none_live).is_empty());
        let t1 = t0 + DIAL_AFTER * 2;
        e.dialed("edge1", None, t1);
        assert!(e
            .due_dials(t1 + Duration::from_millis(900), none_live)
            .is_empty());
        assert_eq!(e.due_dials(t1 + Duration::from_secs(1), none_live).len(), 1);
        let t2 = t1 + Duration::from_secs(1);
        e.dialed("edge1", None, t2);
        assert!(e
            .due_dials(t2 + Duration::from_millis(1900), none_live)
            .is_empty());
        assert_eq!(e.due_dials(t2 + Duration::from_secs(2), none_live).len(), 1);
        // Connected: the connection is the edge's, and nothing more is due
        // while it lives.
        e.dialed("edge1", Some(FlowId(9)), t2);
        assert_eq!(e.flow_of("edge1", |_| true), Some(FlowId(9)));
        assert!(e
            .due_dials(t2 + Duration::from_secs(60), |f| f == FlowId(9))
            .is_empty());
        // Its own link alone counts as well.
        e.closed(FlowId(9));
        assert!(e.classify(&src(4, b"edge cert")).is_some());
        assert!(e
            .due_dials(t2 + Duration::from_secs(120), |f| f == FlowId(4))
            .is_empty());
    }
}
