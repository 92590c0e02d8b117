//! Calls between local users: INVITE (authenticated like MESSAGE, forked to
//! every binding, Record-Routed), CANCEL, and requests inside a dialog (BYE,
//! re-INVITE, UPDATE, INFO, ACK for 2xx) that come back through our
//! Record-Route.
//!
//! Requests inside a dialog are not challenged: they follow a dialog whose
//! INVITE was, and they can only reach a destination this server already
//! knows — a connection named by a flow token we signed, or the address a
//! registered binding came from. Anything else is refused (no open relay).

use sip::forward::Forward;
use sip::headers::Route;
use sip::{Message, Method, RequestFields, Uri};
use sip_transport::{FlowId, Protocol, Source, Target};

use super::files::Direction;
use super::fork::{ForkKind, Hop};
use super::{Core, Req};
use crate::unix_now;

/// How many Route entries a request carries.
fn msg_routes(msg: &Message) -> usize {
    msg.list::<Route>().count()
}

impl<S: store::Store> Core<S> {
    /// A new call.
    pub(crate) async fn on_invite(&mut self, r: &Req<'_>) {
        let Some(caller_aor) = self.authenticated_sender(r).await else {
            return;
        };
        if !self.is_our_domain(&r.f.request_uri) {
            if !self
                .peer_offers_allowed(r, &caller_aor, "", Direction::ToPartner)
                .await
            {
                return;
            }
            // Partners' connections are TLS.
            if !self.media_allowed(r, &[&caller_aor], true).await {
                return;
            }
            return self.send_to_partner(r, &caller_aor).await;
        }
        let Uri::Sip(ruri) = r.f.request_uri else {
            return self.reply(r, 416, "Unsupported URI Scheme", &[]).await;
        };
        let Some(callee) = ruri.user else {
            return self.reply(r, 404, "Not Found", &[]).await;
        };
        let callee_aor = format!("sip:{callee}@{}", self.cfg.domain);
        if !self.users.get(&callee_aor).is_some_and(|u| u.enabled) {
            return self.reply(r, 404, "Not Found", &[]).await;
        }
        if r.f.max_forwards == Some(0) {
            return self.reply(r, 483, "Too Many Hops", &[]).await;
        }
        if !self
            .peer_offers_allowed(r, &caller_aor, &callee_aor, Direction::Internal)
            .await
        {
            return;
        }
        self.ring(r, &callee_aor).await;
    }

    /// Forks a call (already accepted) to the callee's bindings, Record-Routed.
    pub(crate) async fn ring(&mut self, r: &Req<'_>, callee_aor: &str) {
        self.cdr_started(r, callee_aor);
        let targets = self.location.lookup(callee_aor, unix_now());
        let hops = self.hops_for(&targets, r.own_routes, r.f.call_id);
        if hops.is_empty() {
            return self.reply(r, 480, "Temporarily Unavailable", &[]).await;
        }
        let caller = self.our_party(&r.f.from).unwrap_or_default();
        let out_secure = hops.iter().all(|h| super::media::secure(h.proto));
        if !self
            .media_allowed(r, &[&caller, callee_aor], out_secure)
            .await
        {
            return;
        }
        let timeout = self.build(r, 408, "Request Timeout", &[]);
        let kind = ForkKind::Relay {
            server: r.id,
            method: "INVITE",
            timeout,
        };
        if self.start_fork(kind, r.msg, Some(r.f), hops, Some(r.src)) == 0 {
            return self.reply(r, 480, "Temporarily Unavailable", &[]).await;
        }
        self.flush().await;
    }

    /// CANCEL: answered 200 at once (or 481), and every branch of the INVITE
    /// still ringing is cancelled; the INVITE then ends with the 487 its
    /// branches send back.
    pub(crate) async fn on_cancel(&mut self, r: &Req<'_>) {
        let Some(invite) = self.txn.cancel_target(r.f) else {
            return self
                .reply(r, 481, "Call/Transaction Does Not Exist", &[])
                .await;
        };
        self.reply(r, 200, "OK", &[]).await;
        // The relay's permissions for the call go, unless it was answered.
        self.relay_call_unanswered(r.msg);
        if let Some(&fork) = self.server_fork.get(&invite) {
            self.cancel_pending(fork);
        }
        self.flush().await;
    }

    /// Where a request inside a dialog goes: pops our own Route entries and
    /// resolves the next hop, or says why it cannot go anywhere.
    pub(crate) fn in_dialog_hop(
        &self,
        msg: &Message,
        f: &RequestFields<'_>,
    ) -> Result<Hop, (u16, &'static str)> {
        let mut ours = 0;
        let mut token_flow = None;
        let mut last_proto = None;
        for route in msg.list::<Route>() {
            let Ok(route) = route else {
                return Err((400, "Malformed Route Header"));
            };
            let Uri::Sip(u) = route.uri else { break };
            if !self.is_our_route(&u) {
                // A route set that goes on beyond us (a partner's server
                // in a federated dialog) is followed only from our own
                // entry, to the connection its token names.
                if ours > 0 && token_flow.is_some() {
                    break;
                }
                return Err((403, "Relaying Denied"));
            }
            ours += 1;
            token_flow = u.user.and_then(|t| self.flow_tokens.verify(t, f.call_id));
            last_proto = u
                .params
                .get("transport")
                .flatten()
                .map(str::to_ascii_lowercase);
        }
        if let Some(flow) = token_flow {
            let proto = match last_proto.as_deref() {
                Some("tls") => Protocol::Tls,
                Some("tcp") => Protocol::Tcp,
                Some("ws") => Protocol::Ws,
                Some("wss") => Protocol::Wss,
                _ => Protocol::Tls,
            };
            return Ok(Hop {
                proto,
                target: Target::Flow(FlowId(flow)),
                request_uri: None,
                routes: Vec::new(),
                pop_routes: ours,
                flow: Some(flow),
            });
        }
        // UDP: only to an address a registered binding came from.
        let Uri::Sip(ruri) = f.request_uri else {
            return Err((416, "Unsupported URI Scheme"));
        };
        let dest = format!("{}:{}", ruri.host, ruri.port.unwrap_or(5060));
        let known = self.location.bound_source(&format!("udp:{dest}"));
        let (Some(addr), true) = (dest.parse().ok(), known) else {
            return Err((404, "Not Found (No Such Dialog Peer)"));
        };
        let sock = self
            .transport
            .local_addrs()
            .iter()
            .find(|l| l.0 == Protocol::Udp)
            .and_then(|l| l.2)
            .ok_or((404, "Not Found (No Such Dialog Peer)"))?;
        Ok(Hop {
            proto: Protocol::Udp,
            target: Target::Udp {
                flow: sock,
                dest: addr,
            },
            request_uri: None,
            routes: Vec::new(),
            pop_routes: ours,
            flow: None,
        })
    }

    /// Whether the first Route entry after our own `ours` names a paired
    /// edge: `Some` with its live link (if any), `None` if it is no edge.
    fn next_route_edge(&self, msg: &Message, ours: usize) -> Option<Option<FlowId>> {
        let entry = msg.list_with_text::<Route>().nth(ours)?.ok()?.0;
        let na = sip::headers::NameAddr::parse(entry).ok()?;
        let Uri::Sip(u) = na.uri else { return None };
        let edge = self.edges.at(&u.host.to_string(), u.port)?;
        Some(
            self.edges
                .flow_of(&edge.name, |f| self.transport.flow_local(f).is_some()),
        )
    }

    /// A request inside a dialog (it has a To tag): relayed statefully.
    pub(crate) async fn on_in_dialog(&mut self, r: &Req<'_>) {
        let hop = match self.in_dialog_hop(r.msg, r.f) {
            Ok(h) => h,
            Err((status, reason)) => return self.reply(r, status, reason, &[]).await,
        };
        // A message inside a call speaks for one of its two parties: one
        // naming someone else would be filtered under, delivered and
        // archived as that user's.
        if r.f.method == sip::Method::Message && !self.cdr_parties_match(r) {
            return self
                .reply(r, 403, "Forbidden (Not a Party to This Call)", &[])
                .await;
        }
        // What it carries, under the policies (crate::dialog_content).
        let out_secure = super::media::secure(hop.proto);
        let Some(replaced) = self.in_dialog_content(r, out_secure).await else {
            return;
        };
        match replaced {
            Some(m) => {
                if let Ok(f) = RequestFields::extract(&m) {
                    self.in_dialog_onward(&r.with(&m, &f), hop).await;
                }
            }
            None => self.in_dialog_onward(r, hop).await,
        }
    }

    /// [`Self::on_in_dialog`] once its content passed.
    async fn in_dialog_onward(&mut self, r: &Req<'_>, mut hop: Hop) {
        if !self.archive_in_dialog(r).await {
            return;
        }
        // Towards a partner (the route set goes on beyond our entries) over
        // a connection that has closed since: another one to that partner.
        if let Target::Flow(f) = hop.target {
            let beyond = msg_routes(r.msg) > hop.pop_routes;
            if beyond && self.transport.flow_local(f).is_none() {
                // Towards an edge (its link replaced since, e.g. it
                // restarted): over its live link, or 430 (RFC 5626).
                match self.next_route_edge(r.msg, hop.pop_routes) {
                    Some(Some(edge_flow)) => {
                        hop.target = Target::Flow(edge_flow);
                        hop.flow = Some(edge_flow.0);
                    }
                    Some(None) => return self.reply(r, 430, "Flow Failed", &[]).await,
                    None => return self.in_dialog_to_partner(r, hop.pop_routes).await,
                }
            } else if self.transport.flow_local(f).is_none() {
                // The connection is gone (or the token is another
                // process's). From our user towards a partner's server:
                // over another connection to it. Towards a client: it
                // must re-establish its flow (RFC 5626 §5.3).
                if self.dialog_partner(r.f).is_some() && self.partner_of(r.src).is_none() {
                    return self.in_dialog_to_partner(r, hop.pop_routes).await;
                }
                return self.reply(r, 430, "Flow Failed", &[]).await;
            }
        }
        if r.f.max_forwards == Some(0) {
            return self.reply(r, 483, "Too Many Hops", &[]).await;
        }
        self.relay_in_dialog(r, hop).await;
    }

    /// Relays a request inside a dialog along `hop`.
    async fn relay_in_dialog(&mut self, r: &Req<'_>, hop: Hop) {
        let method = crate::metrics::method_label(r.f.method);
        let timeout = self.build(r, 408, "Request Timeout", &[]);
        let kind = ForkKind::Relay {
            server: r.id,
            method,
            timeout,
        };
        if r.f.method == Method::Bye {
            // The relay's permissions for the call go with it.
            self.relay_call_ended(r.msg);
            self.cdr_bye(r);
        }
        // A re-INVITE may refresh the route set: Record-Route it again.
        let dialog_from = (r.f.method == Method::Invite).then_some(r.src);
        if self.start_fork(kind, r.msg, Some(r.f), vec![hop], dialog_from) == 0 {
            return self.reply(r, 480, "Temporarily Unavailable", &[]).await;
        }
        self.flush().await;
    }

    /// An ACK for a 2xx: not a transaction, relayed statelessly along the route.
    pub(crate) async fn route_ack(&mut self, msg: &Message, f: &RequestFields<'_>, src: &Source) {
        if let Some(loose) = self.loosen_strict_route(msg, f) {
            let converted = sip::parse_datagram(loose, &self.forward_limits());
            if let Ok(m) = converted {
                if let Ok(f) = RequestFields::extract(&m) {
                    self.route_loose_ack(&m, &f, src).await;
                }
            }
            return;
        }
        self.route_loose_ack(msg, f, src).await;
    }

    async fn route_loose_ack(&mut self, msg: &Message, f: &RequestFields<'_>, src: &Source) {
        let Ok(hop) = self.in_dialog_hop(msg, f) else {
            tracing::debug!(remote = %src.remote, "ACK with no route through this server dropped");
            return;
        };
        self.relay_note_ack(msg, f);
        let via = self.via_for(hop.proto);
        let mut edit = Forward::new(msg)
            .push_via(via)
            .remove_all(sip::HeaderKind::ProxyAuthorization)
            .remove_named(crate::edges::EDGE_HEADER);
        for _ in 0..hop.pop_routes {
            edit = edit.pop_route();
        }
        let Ok(edit) = edit.decrement_max_forwards() else {
            return;
        };
        self.send(hop.target, edit.serialize()).await;
    }
}
