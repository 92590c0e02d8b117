//! Relaying a request to the bindings of a user: one client transaction per
//! binding (parallel forking), the best final response sent back (RFC 3261
//! §16.7: any 2xx at once; otherwise a 6xx, else the lowest class), a timeout
//! or an unreachable set answered with what was prepared for it.

use std::time::Instant;

use bytes::Bytes;
use sip::forward::Forward;
use sip::{Message, RequestFields};
use sip_transport::{FlowId, Protocol, Source, Target};
use sip_txn::{Reliability, TxnId};
use store::Binding;

use super::Core;

/// What a set of client transactions is for.
#[derive(Debug)]
pub(crate) enum ForkKind {
    /// Relaying a request; the answer goes to server transaction `server`.
    /// `timeout` is the prepared 408 for when no branch answers.
    Relay {
        server: TxnId,
        method: &'static str,
        timeout: Bytes,
    },
    /// Delivering stored message `id` to `aor`.
    Delivery { aor: String, id: i64 },
}

#[derive(Debug)]
pub(crate) struct Fork {
    pub(crate) kind: ForkKind,
    /// Branches without a final response yet.
    pub(crate) pending: usize,
    /// The best non-2xx final response so far: (status, response bytes for upstream).
    pub(crate) best: Option<(u16, Bytes)>,
    pub(crate) answered: bool,
    /// Each branch's request and where it went (to CANCEL the pending ones).
    pub(crate) branches: Vec<(TxnId, Message, Target, Reliability)>,
    /// When the fork started or last heard a provisional response (timer C).
    pub(crate) last_progress: Instant,
    /// The pending branches were CANCELled (by the caller or timer C).
    pub(crate) cancelled: bool,
}

/// One next hop of a fork.
#[derive(Debug, Clone)]
pub(crate) struct Hop {
    pub(crate) proto: Protocol,
    pub(crate) target: Target,
    /// A new Request-URI (a binding's contact), or `None` to keep it.
    pub(crate) request_uri: Option<String>,
    /// Route values to add above the existing ones (a binding's Path).
    pub(crate) routes: Vec<String>,
    /// Entries of our own to remove from the top of the Route set.
    pub(crate) pop_routes: usize,
    /// The next hop's connection, for its Record-Route flow token.
    pub(crate) flow: Option<u64>,
}

/// Lower is better (§16.7 step 6): 6xx first, then the lowest class.
fn rank(status: u16) -> u16 {
    if status >= 600 {
        0
    } else {
        status
    }
}

/// Where a binding is reached: its protocol and transport target, if reachable.
pub(crate) fn binding_protocol(b: &Binding) -> Option<Protocol> {
    source_protocol(&b.source)
}

/// The protocol of a recorded source (`udp:1.2.3.4:5060`, `tls:...`).
pub(crate) fn source_protocol(source: &str) -> Option<Protocol> {
    let proto = source.split(':').next()?;
    Some(match proto {
        "udp" => Protocol::Udp,
        // Registered through an edge: reached over the pool's link to it.
        "edge" => Protocol::Tls,
        "tcp" => Protocol::Tcp,
        "tls" => Protocol::Tls,
        "ws" => Protocol::Ws,
        "wss" => Protocol::Wss,
        _ => return None,
    })
}

impl<S: store::Store> Core<S> {
    /// A fresh RFC 3261 branch.
    pub(crate) fn new_branch(&mut self) -> String {
        self.branch_seq += 1;
        format!("{}{:x}", self.branch_prefix, self.branch_seq)
    }

    /// The transport target for a binding: its connection (RFC 5626 flow) or, for
    /// UDP, the address its REGISTER came from. `None`: not reachable now (a
    /// connection-oriented client must re-register after a restart).
    pub(crate) fn target_for(
        &self,
        b: &Binding,
        flow: Option<registrar::Flow>,
    ) -> Option<(Protocol, Target)> {
        // Another node of the pool holds the client's flow: reached
        // through it (`hops_for`), never straight from here.
        if self.location.is_remote(b) {
            return None;
        }
        let proto = binding_protocol(b)?;
        if b.source.starts_with("edge:") {
            return self
                .edge_target(b.path.first()?)
                .map(|f| (proto, Target::Flow(f)));
        }
        match proto {
            Protocol::Udp => {
                let addr = b.source.strip_prefix("udp:")?.parse().ok()?;
                let sock = self
                    .transport
                    .local_addrs()
                    .iter()
                    .find(|l| l.0 == Protocol::Udp)?
                    .2?;
                Some((
                    proto,
                    Target::Udp {
                        flow: sock,
                        dest: addr,
                    },
                ))
            }
            _ => flow.map(|f| (proto, Target::Flow(FlowId(f.0)))),
        }
    }

    /// A live connection to the edge a route entry (a Path or Record-Route
    /// value) names.
    pub(crate) fn edge_target(&self, entry: &str) -> Option<FlowId> {
        let na = sip::headers::NameAddr::parse(entry).ok()?;
        let sip::Uri::Sip(u) = na.uri else {
            return None;
        };
        let edge = self.edges.at(&u.host.to_string(), u.port)?;
        self.edges
            .flow_of(&edge.name, |f| self.transport.flow_local(f).is_some())
    }

    /// Our Via sent-by for `proto`: the listener's address, or the domain when
    /// the listener is bound to all interfaces.
    pub(crate) fn via_for(&mut self, proto: Protocol) -> String {
        self.via_with_loop_hash(proto, None)
    }

    /// Our Via for a forwarded request: the branch ends with `.` and the
    /// request's loop-detection hash ([`Core::looped`] recomputes it).
    pub(crate) fn via_with_loop_hash(&mut self, proto: Protocol, hash: Option<u64>) -> String {
        let mut branch = self.new_branch();
        if let Some(h) = hash {
            use std::fmt::Write as _;
            let _ = write!(branch, ".{h:016x}");
        }
        let host = self.our_host(proto);
        format!("SIP/2.0/{} {host};branch={branch}", proto.via_token())
    }

    /// The hops for a user's bindings (unreachable ones left out) in the
    /// dialog `call_id`. `own_routes`: leading Route entries naming us,
    /// removed on every hop.
    pub(crate) fn hops_for(
        &self,
        targets: &[(Binding, Option<registrar::Flow>)],
        own_routes: usize,
        call_id: &str,
    ) -> Vec<Hop> {
        targets
            .iter()
            .filter_map(|(b, flow)| {
                if self.location.is_remote(b) {
                    let (proto, target, route) = self.remote_target(b, call_id)?;
                    return Some(Hop {
                        proto,
                        target,
                        request_uri: Some(b.contact.clone()),
                        // The binding's Path (an edge) is the holding
                        // node's to add when it sends the request on.
                        routes: vec![route],
                        pop_routes: own_routes,
                        flow: match target {
                            Target::Flow(f) => Some(f.0),
                            Target::Udp { .. } => None,
                        },
                    });
                }
                let (proto, target) = self.target_for(b, *flow)?;
                Some(Hop {
                    proto,
                    target,
                    request_uri: Some(b.contact.clone()),
                    routes: b.path.clone(),
                    pop_routes: own_routes,
                    flow: match target {
                        Target::Flow(f) => Some(f.0),
                        Target::Udp { .. } => flow.map(|f| f.0),
                    },
                })
            })
            .collect()
    }

    /// Our host:port facing `proto`: the listener's address, or the domain
    /// with its port when the listener is bound to all interfaces.
    pub(crate) fn our_host(&self, proto: Protocol) -> String {
        match self.transport.local_addr(proto) {
            Some(a) if !a.ip().is_unspecified() => a.to_string(),
            Some(a) => format!("{}:{}", self.cfg.domain, a.port()),
            None => self.cfg.domain.clone(),
        }
    }

    /// The host:port a request from `src` reached: the connection's own
    /// address, or (a datagram to a wildcard socket) [`Core::our_host`].
    fn reached_at(&self, src: &Source) -> String {
        if src.local.ip().is_unspecified() {
            self.our_host(src.protocol)
        } else {
            src.local.to_string()
        }
    }

    /// Record-Route values for a dialog from `caller` over `hop`, in push order
    /// (the caller-facing one first; the callee-facing one ends up on top).
    /// Two entries unless both sides are UDP (RFC 5658), each carrying a signed
    /// flow token for a connection-oriented side (RFC 5626), so that requests
    /// later in the dialog return over the right connection.
    fn record_routes(&self, caller: &Source, hop: &Hop, call_id: &str) -> Vec<String> {
        let t = |p: Protocol| p.via_token().to_ascii_lowercase();
        if caller.protocol == Protocol::Udp && hop.proto == Protocol::Udp {
            return vec![format!("<sip:{};lr>", self.reached_at(caller))];
        }
        let user = |flow: Option<u64>| {
            flow.map(|f| format!("{}@", self.flow_tokens.sign(f, call_id)))
                .unwrap_or_default()
        };
        let caller_flow = caller.protocol.is_reliable().then_some(caller.flow.0);
        vec![
            format!(
                "<sip:{}{};transport={};lr>",
                user(caller_flow),
                self.reached_at(caller),
                t(caller.protocol)
            ),
            format!(
                "<sip:{}{};transport={};lr>",
                user(hop.flow),
                // A connection we opened (to a partner) has an ephemeral
                // local port: name our listener instead.
                hop.flow
                    .filter(|f| !self.fed.is_outbound(sip_transport::FlowId(*f)))
                    .filter(|f| !self.pool.is_dialed(sip_transport::FlowId(*f)))
                    .and_then(|f| self.transport.flow_local(sip_transport::FlowId(f)))
                    .filter(|a| !a.ip().is_unspecified())
                    .map_or_else(|| self.our_host(hop.proto), |a| a.to_string()),
                t(hop.proto)
            ),
        ]
    }

    /// Sends `msg` over every hop as one fork; returns how many branches
    /// started. Each branch is edited (Request-URI, Via, Route, Record-Route
    /// for dialogs from `dialog_from`, Max-Forwards) in one copy. `fields`:
    /// those of a received request being forwarded (its loop hash goes into
    /// our branches); `None` for a request this server originates.
    pub(crate) fn start_fork(
        &mut self,
        kind: ForkKind,
        msg: &Message,
        fields: Option<&RequestFields<'_>>,
        hops: Vec<Hop>,
        dialog_from: Option<&Source>,
    ) -> usize {
        let fork_id = self.next_fork;
        self.next_fork += 1;
        let mut branches = Vec::new();
        let loop_hash = fields.map(|f| self.loop_hash(msg, f, f.top_via.branch()));
        let grown = self.forward_limits();
        // Record-Route tokens are bound to the dialog's Call-ID (borrowed:
        // nothing is read or copied for a request that makes no dialog).
        let extracted;
        let call_id: &str = match (dialog_from, fields) {
            (None, _) => "",
            (Some(_), Some(f)) => f.call_id,
            (Some(_), None) => {
                extracted = sip::RequestFields::extract(msg).ok();
                extracted.as_ref().map_or("", |f| f.call_id)
            }
        };
        for hop in hops {
            // A connection the transport has closed, though the core has
            // not yet heard it (it learns each tick): the request would be
            // lost in it and its transaction wait out timer F (RFC 3261
            // §17.1.4 makes a transport error a failed branch).
            if let Target::Flow(f) = hop.target {
                if self.transport.flow_local(f).is_none() {
                    tracing::debug!(flow = f.0, "connection closed: branch not started");
                    continue;
                }
            }
            let via = self.via_with_loop_hash(hop.proto, loop_hash);
            let mut edit = Forward::new(msg)
                .push_via(via)
                .routes(hop.routes.iter().cloned())
                // Credentials consumed here must not reach the recipient, who could
                // otherwise attack the sender's password offline.
                .remove_all(sip::HeaderKind::ProxyAuthorization)
                // An edge's mark is for this server only.
                .remove_named(crate::edges::EDGE_HEADER);
            if let Some(uri) = &hop.request_uri {
                edit = edit.request_uri(uri.clone());
            }
            for _ in 0..hop.pop_routes {
                edit = edit.pop_route();
            }
            if let Some(caller) = dialog_from {
                for rr in self.record_routes(caller, &hop, call_id) {
                    edit = edit.record_route(rr);
                }
            }
            let Ok(edit) = edit.decrement_max_forwards() else {
                continue;
            };
            // To a partner's server or an edge, only what a server on
            // default limits takes (ours, at least): a message it refuses
            // on a stream closes the connection every user's traffic there
            // shares (a client's 64 Vias with ours are 65), and its answer
            // would be as large.
            let shared = matches!(hop.target, Target::Flow(f)
                if self.fed.is_partner_flow(f) || self.edges.is_edge(f));
            let limits = if shared { sip::Limits::DEFAULT } else { grown };
            let Ok(req) = sip::parse_datagram(edit.serialize(), &limits) else {
                continue;
            };
            let reliability = if hop.proto.is_reliable() {
                Reliability::Reliable
            } else {
                Reliability::Unreliable
            };
            match self.txn.send_request(
                req.clone(),
                hop.target,
                reliability,
                Instant::now(),
                &mut self.out,
            ) {
                Ok(cid) => {
                    self.by_client.insert(cid, fork_id);
                    branches.push((cid, req, hop.target, reliability));
                }
                Err(e) => tracing::warn!(?e, "could not start a client transaction"),
            }
        }
        let started = branches.len();
        if started > 0 {
            if let ForkKind::Relay { server, .. } = &kind {
                self.server_fork.insert(*server, fork_id);
            }
            self.forks.insert(
                fork_id,
                Fork {
                    kind,
                    pending: started,
                    best: None,
                    answered: false,
                    branches,
                    last_progress: Instant::now(),
                    cancelled: false,
                },
            );
        }
        started
    }

    /// A provisional response on a branch: relayed upstream for INVITE (not 100,
    /// which this proxy already sent).
    pub(crate) fn branch_provisional(&mut self, cid: TxnId, status: u16, resp: &Message) {
        let Some(&fork_id) = self.by_client.get(&cid) else {
            return;
        };
        let Some(fork) = self.forks.get_mut(&fork_id) else {
            return;
        };
        fork.last_progress = Instant::now();
        if let ForkKind::Relay {
            server,
            method: "INVITE",
            ..
        } = fork.kind
        {
            if status > 100 && !fork.answered {
                // Early media the policy refuses is not passed on.
                let initial = fork
                    .branches
                    .iter()
                    .find(|b| !resp.body().is_empty() && b.0 == cid)
                    .filter(|b| initial_invite(&b.1))
                    .map(|b| b.1.clone());
                if let Some(refusal) = initial.and_then(|req| self.answer_refused(&req, resp)) {
                    self.metrics
                        .media_refused
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::info!(status, why = %refusal.2, "a provisional answer the media policy refuses was not relayed");
                    return;
                }
                self.relay_note_response(resp, status, true);
                let bytes = Forward::new(resp).pop_via().serialize();
                self.txn
                    .respond(server, status, bytes, Instant::now(), &mut self.out);
            }
        }
    }

    /// Timer C: CANCELs the ringing branches of INVITE forks that have had no
    /// progress for `timer_c` (RFC 3261 §16.6 step 11, §16.8).
    pub(crate) fn run_timer_c(&mut self) {
        let limit = self.cfg.timer_c;
        let expired: Vec<u64> = self
            .forks
            .iter()
            .filter(|(_, f)| {
                matches!(
                    f.kind,
                    ForkKind::Relay {
                        method: "INVITE",
                        ..
                    }
                ) && !f.answered
                    && !f.cancelled
                    && f.last_progress.elapsed() >= limit
            })
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            tracing::info!(
                fork = id,
                "timer C: cancelling a call that rang without an answer"
            );
            self.cancel_pending(id);
        }
    }

    /// CANCELs every branch of a fork still waiting for a final response.
    pub(crate) fn cancel_pending(&mut self, fork_id: u64) {
        let Some(fork) = self.forks.get_mut(&fork_id) else {
            return;
        };
        fork.cancelled = true;
        let fork = &*fork;
        let pending: Vec<(Message, Target, Reliability)> = fork
            .branches
            .iter()
            .filter(|(cid, ..)| self.by_client.contains_key(cid))
            .map(|(_, req, target, rel)| (req.clone(), *target, *rel))
            .collect();
        for (req, target, rel) in pending {
            if let Some(cancel) = cancel_for(&req) {
                if let Err(e) =
                    self.txn
                        .send_request(cancel, target, rel, Instant::now(), &mut self.out)
                {
                    tracing::debug!(?e, "CANCEL not sent");
                }
            }
        }
    }

    /// A final response (or a timeout, `resp = None`) on one branch.
    pub(crate) fn branch_final(&mut self, cid: TxnId, status: u16, resp: Option<&Message>) {
        if self.presence.notifies.contains_key(&cid) {
            return self.notify_done(cid, status);
        }
        let Some(fork_id) = self.by_client.remove(&cid) else {
            return;
        };
        let Some(fork) = self.forks.get_mut(&fork_id) else {
            return;
        };
        fork.pending = fork.pending.saturating_sub(1);
        // A 2xx to a call's INVITE whose answer the media policy refuses:
        // the callee's dialog ends here and the branch counts as refused.
        let mut status = status;
        let mut refused = None;
        let answering = matches!(
            fork.kind,
            ForkKind::Relay {
                method: "INVITE" | "UPDATE" | "PRACK",
                ..
            }
        ) && (200..300).contains(&status)
            && resp.is_some_and(|m| !m.body().is_empty());
        // (The branch's request is copied only for a 2xx with a body.)
        let branch = fork
            .branches
            .iter()
            .find(|b| answering && b.0 == cid)
            .map(|b| (b.1.clone(), b.2, b.3));
        if let (true, Some(resp), Some((req, target, rel))) = (answering, resp, branch) {
            if let Some(refusal) = self.answer_refused(&req, resp) {
                status = refusal.0;
                let upstream = Forward::new(resp).pop_via().serialize();
                refused = Some(self.refuse_answer(&req, resp, &upstream, (target, rel), refusal));
                if !initial_invite(&req) {
                    // A re-INVITE's: the callee's dialog is gone, the call
                    // with it.
                    self.relay_call_ended(&req);
                }
            }
        }
        let Some(fork) = self.forks.get_mut(&fork_id) else {
            return;
        };
        if let (ForkKind::Relay { method, .. }, Some(resp), None) = (&fork.kind, resp, &refused) {
            if matches!(*method, "INVITE" | "UPDATE" | "PRACK") {
                let invite = *method == "INVITE";
                self.relay_note_response(resp, status, invite);
                if invite && (200..300).contains(&status) {
                    self.cdr_answered(resp);
                }
            }
        }
        let Some(fork) = self.forks.get_mut(&fork_id) else {
            return;
        };
        let success = (200..300).contains(&status);
        let upstream = match refused {
            Some(r) => r,
            None => resp.map(|m| Forward::new(m).pop_via().serialize()),
        };
        let mut cancel_after = None;
        match &fork.kind {
            ForkKind::Relay { server, method, .. } => {
                let (server, method) = (*server, *method);
                // Every 2xx of an INVITE goes upstream (forked calls may be
                // answered twice; the caller's UA sorts it out, RFC 3261 §16.7).
                if success && (!fork.answered || method == "INVITE") {
                    let first = !fork.answered;
                    fork.answered = true;
                    if first && method == "INVITE" && fork.pending > 0 {
                        cancel_after = Some(fork_id);
                    }
                    if let Some(bytes) = upstream {
                        self.metrics.count_response(method, status);
                        self.txn
                            .respond(server, status, bytes, Instant::now(), &mut self.out);
                        self.archive_answered(server, || "delivered".into());
                    }
                } else if !fork.answered {
                    if let Some(bytes) = upstream {
                        if fork
                            .best
                            .as_ref()
                            .is_none_or(|(s, _)| rank(status) < rank(*s))
                        {
                            fork.best = Some((status, bytes));
                        }
                    }
                }
            }
            ForkKind::Delivery { .. } => {
                if success {
                    fork.answered = true;
                }
            }
        }
        if let Some(f) = cancel_after {
            self.cancel_pending(f);
        }
        if self.forks.get(&fork_id).is_none_or(|f| f.pending > 0) {
            return;
        }
        let Some(fork) = self.forks.remove(&fork_id) else {
            return;
        };
        if let ForkKind::Relay { server, .. } = &fork.kind {
            self.server_fork.remove(server);
        }
        match fork.kind {
            ForkKind::Relay {
                server,
                method,
                timeout,
            } => {
                if !fork.answered {
                    let (status, bytes) = fork.best.unwrap_or((408, timeout));
                    if method == "INVITE" {
                        if let Some((_, req, ..)) = fork.branches.first() {
                            self.relay_call_unanswered(req);
                            self.cdr_unanswered(req, status);
                        }
                    }
                    self.metrics.count_response(method, status);
                    self.txn
                        .respond(server, status, bytes, Instant::now(), &mut self.out);
                    self.archive_answered(server, || format!("not delivered {status}"));
                }
            }
            ForkKind::Delivery { aor, id } => self.delivery_done(aor, id, fork.answered),
        }
    }
}

/// Whether `req` (a branch's request) is an INVITE that opens a call.
fn initial_invite(req: &Message) -> bool {
    req.method() == Some(sip::Method::Invite)
        && req
            .typed::<sip::headers::To>()
            .ok()
            .flatten()
            .is_some_and(|t| t.tag().is_none())
}

/// The CANCEL for a branch's INVITE (RFC 3261 §9.1): same Request-URI, top Via,
/// From, To, Call-ID, CSeq number and Route.
fn cancel_for(invite: &Message) -> Option<Message> {
    use sip::HeaderKind as K;
    let v = |k: K| invite.header(k).map(|h| h.value);
    let top_via = v(K::Via)?.split(',').next()?;
    let seq = invite.typed::<sip::headers::CSeq>().ok().flatten()?.seq;
    let mut b = sip::build::RequestBuilder::new("CANCEL", invite.request_uri()?)
        .header("Via", top_via)
        .header("Max-Forwards", "70")
        .header("From", v(K::From)?)
        .header("To", v(K::To)?)
        .header("Call-ID", v(K::CallId)?)
        .header("CSeq", &format!("{seq} CANCEL"));
    for r in invite.headers_of(K::Route) {
        b = b.header("Route", r.value);
    }
    sip::parse_datagram(b.finish(), &sip::Limits::DEFAULT).ok()
}
