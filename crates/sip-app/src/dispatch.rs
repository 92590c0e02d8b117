//! A message from the transport, from the transaction layer to the
//! method's handler: admission, overload, route processing and dispatch.

use std::time::Instant;

use sip::build::error_response;
use sip::headers::{ProxyRequire, Require};
use sip::{Message, Method, RequestFields, ResponseFields, Uri};
use sip_transport::{Inbound, Source};
use sip_txn::{ClientEvent, Reliability, ServerEvent, TxnId};

use crate::{reply_target, routing, Core, Req, ALLOW, SUPPORTED};

impl<S: store::Store> Core<S> {
    pub(crate) async fn on_inbound(&mut self, m: Inbound) {
        let Inbound {
            message, source, ..
        } = m;
        if message.is_response() {
            let Ok(fields) = ResponseFields::extract(&message) else {
                return;
            };
            if self.edges.is_edge(source.flow) && self.edge_trace_answer(&message) {
                return;
            }
            if fields.status >= 200 && self.fed.is_outbound(source.flow) {
                self.fed.answered(source.flow);
            }
            match self
                .txn
                .on_response(&message, &fields, Instant::now(), &mut self.out)
            {
                ClientEvent::Deliver(cid) if fields.status >= 200 => {
                    self.branch_final(cid, fields.status, Some(&message))
                }
                ClientEvent::Deliver(cid) => self.branch_provisional(cid, fields.status, &message),
                // Provisional responses to relayed MESSAGEs are not passed on
                // (RFC 3261 §16.7 allows it for non-INVITE); stray responses are
                // dropped, never forwarded along a Via we did not add.
                _ => {}
            }
            return self.flush().await;
        }
        let mut source = source;
        self.edge_outcome.set(None);
        self.edge_partner = None;
        self.edge_device = None;
        if self.pool.classify(&source).is_none() && self.edges.classify(&source).is_some() {
            // The sender's own address stands for the source from here
            // on: the edge relays for many. A partner's server relayed by
            // the edge speaks for what its certificate did at the edge.
            match crate::edges::stamp(&message) {
                Some(s) => {
                    source.remote = s.source;
                    self.edge_device = s.device;
                    self.edge_partner = s.partner.map(|(domain, hosts)| {
                        std::sync::Arc::new(federation::identity::Identities {
                            source: federation::identity::Source::SipUri,
                            names: vec![domain],
                            hosts,
                        })
                    });
                }
                None => tracing::debug!("request from an edge without its mark"),
            }
        }
        let fields = match RequestFields::extract(&message) {
            Ok(f) => f,
            Err(e) => {
                if message.method() != Some(Method::Ack) {
                    let tag = self.next_tag();
                    if let Some(resp) =
                        error_response(message.as_bytes(), e.status(), &e.reason(), &tag)
                    {
                        self.send(reply_target(&source), resp).await;
                    }
                }
                return;
            }
        };
        let reliability = if source.protocol.is_reliable() {
            Reliability::Reliable
        } else {
            Reliability::Unreliable
        };
        let now = Instant::now();
        let event = self.txn.on_request(
            &message,
            &fields,
            reply_target(&source),
            reliability,
            now,
            &mut self.out,
        );
        let id = match event {
            Ok(ServerEvent::New(id)) => id,
            Ok(ServerEvent::AckForTu) => {
                self.flush().await;
                return self.route_ack(&message, &fields, &source).await;
            }
            Ok(_) => {
                self.flush().await;
                return;
            }
            Err(sip_txn::Full) => {
                self.metrics
                    .transactions_refused_full
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let resp = sip_txn::service_unavailable(&message, 5);
                self.send(reply_target(&source), resp).await;
                return;
            }
        };
        self.flush().await;
        if let Some(why) = self.shed(&message, &fields, &source) {
            let r = Req {
                id,
                msg: &message,
                f: &fields,
                src: &source,
                own_routes: 0,
            };
            return self.answer_shed(&r, why).await;
        }
        self.dispatch(id, &message, &fields, &source).await;
    }

    pub(crate) async fn dispatch(
        &mut self,
        id: TxnId,
        msg: &Message,
        f: &RequestFields<'_>,
        src: &Source,
    ) {
        let Some(loose) = self.loosen_strict_route(msg, f) else {
            return self.dispatch_routed(id, msg, f, src).await;
        };
        let converted = sip::parse_datagram(loose, &self.forward_limits())
            .ok()
            .and_then(|m| RequestFields::extract(&m).is_ok().then_some(m));
        let Some(m) = converted else {
            let r = Req {
                id,
                msg,
                f,
                src,
                own_routes: 0,
            };
            return self
                .reply(&r, 400, "Bad Request (Unusable Route Set)", &[])
                .await;
        };
        if let Ok(f) = RequestFields::extract(&m) {
            self.dispatch_routed(id, &m, &f, src).await;
        }
    }

    /// Limits for a request after this server's edits (a Via, Record-Routes).
    pub(crate) fn forward_limits(&self) -> sip::Limits {
        sip::Limits {
            max_message_size: self.cfg.limits.max_message_size + 4096,
            max_headers: 256,
            max_vias: 128,
            ..self.cfg.limits
        }
    }

    pub(crate) async fn dispatch_routed(
        &mut self,
        id: TxnId,
        msg: &Message,
        f: &RequestFields<'_>,
        src: &Source,
    ) {
        let mut r = Req {
            id,
            msg,
            f,
            src,
            own_routes: 0,
        };
        // Every request must use a scheme we route and carry no extension we lack.
        if !matches!(f.request_uri, Uri::Sip(_)) {
            return self.reply(&r, 416, "Unsupported URI Scheme", &[]).await;
        }
        let mut unknown: Vec<&str> = Vec::new();
        for tag in msg
            .list::<Require>()
            .filter_map(Result::ok)
            .map(|r| r.0)
            .chain(
                msg.list::<ProxyRequire>()
                    .filter_map(Result::ok)
                    .map(|r| r.0),
            )
        {
            if !SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(tag)) && !unknown.contains(&tag) {
                unknown.push(tag);
            }
        }
        if !unknown.is_empty() && f.method != Method::Cancel {
            let list = unknown.join(", ");
            return self
                .reply(&r, 420, "Bad Extension", &[("Unsupported", &list)])
                .await;
        }
        if f.method != Method::Cancel && self.looped(msg, f) {
            return self.reply(&r, 482, "Loop Detected", &[]).await;
        }
        // An edge fetching the pool's configuration snapshot, or its media
        // relay asking for a user's key.
        if f.method == Method::Options && self.edges.is_edge(src.flow) {
            let wants = |t: &str| {
                msg.headers_of(sip::HeaderKind::Accept)
                    .any(|h| h.value.to_ascii_lowercase().contains(t))
            };
            if wants(auth::edge_snapshot::CONTENT_TYPE) {
                self.edges.report(src.flow, msg);
                let urls = self.edges.relay_urls();
                if !urls.is_empty() && self.relay.is_none() {
                    // An edge runs a relay: the calls the proxy relays are
                    // recorded for its questions (a relay here does anyway).
                    self.relay = Some(self.relay_control.clone());
                }
                self.relay_control.set_edge_urls(urls);
                return self.answer_snapshot(&r).await;
            }
            if wants(relay::pool_key::CONTENT_TYPE) {
                return self.answer_relay_key(&r).await;
            }
            if wants(relay::pool_key::SESSION_TYPE) {
                return self.answer_relay_session(&r).await;
            }
            if wants(relay::pool_key::CALLS_TYPE) {
                return self.answer_relay_calls(&r).await;
            }
            if wants(relay::pool_key::RELAYED_TYPE) {
                return self.answer_relay_relayed(&r).await;
            }
        }
        // Another node of the pool, for a binding this node holds.
        if self.pool_request(&r).await.is_some() {
            return;
        }
        if self.edges.is_unpaired(src.flow) {
            // A node's certificate (of a node that is not serving: a
            // machine taken out of the pool, or a name never used), or
            // an edge's that is not paired.
            let node = src
                .peer_certificates
                .as_ref()
                .and_then(|c| c.first())
                .and_then(|leaf| {
                    federation::identity::uri_after(leaf, crate::pool::NODE_URI_PREFIX)
                });
            let (why, reason) = match &node {
                Some(_) => (
                    "a node certificate of the pool's CA naming no serving node",
                    "Forbidden (Not a Serving Node)",
                ),
                None => (
                    "a certificate of the pool's CA that is no paired edge's (unpaired?)",
                    "Forbidden (Edge Not Paired)",
                ),
            };
            self.log_refusal(&r, why, node.as_deref().unwrap_or(""));
            return self.reply(&r, 403, reason, &[]).await;
        }
        // A partner's connection: its From must be one of its domains.
        let partner = self.partner_of(src);
        if let Some(ids) = &partner {
            if !self.partner_may_send(&r, ids).await {
                return;
            }
        }
        // Subscriptions this server is the notifier of (others, a local
        // user's subscription to a partner's user, follow the route set).
        if f.to.tag().is_some() && f.method == Method::Subscribe {
            let ours =
                f.to.tag()
                    .and_then(crate::presence::parse_tag)
                    .is_some_and(|id| self.presence.subs.contains_key(&id));
            if ours || self.in_dialog_hop(msg, f).is_err() {
                // One another node of the pool serves: read first
                // (`moved`). (A SUBSCRIBE going on through us is not.)
                if !ours && self.look_up_subscription(&r).await {
                    return;
                }
                self.on_subscribe_in_dialog(&r).await;
                return;
            }
        }
        // Inside a dialog (To tag): follow the route set through us.
        if f.to.tag().is_some() && f.method != Method::Cancel {
            return self.on_in_dialog(&r).await;
        }
        if f.method == Method::Cancel {
            return self.on_cancel(&r).await;
        }
        r.own_routes = match self.initial_routes(msg) {
            routing::RouteSet::Ours(n) => n,
            // Relaying beyond this server arrives with federation.
            routing::RouteSet::Elsewhere => {
                let route = msg
                    .headers_of(sip::HeaderKind::Route)
                    .next()
                    .map_or("", |h| h.value);
                self.log_refusal(
                    &r,
                    "relaying denied: a Route entry names another server",
                    route,
                );
                return self.reply(&r, 403, "Relaying Denied", &[]).await;
            }
            routing::RouteSet::Malformed => {
                return self.reply(&r, 400, "Malformed Route Header", &[]).await
            }
        };
        if partner.is_some() {
            return self.on_partner_request(&r).await;
        }
        let to_us = self.is_our_domain(&f.request_uri);
        // A local user's message for another domain is federation's to
        // decide once the sender is authenticated; with federation off (the
        // default) it is refused at once, as any relaying is.
        let federating = !to_us
            && matches!(
                f.method,
                Method::Message | Method::Invite | Method::Subscribe
            )
            && crate::policy_set::federation_enabled(&self.policies);
        match f.method {
            Method::Register if to_us => self.on_register(&r).await,
            Method::Register => {
                self.log_refusal(
                    &r,
                    "REGISTER for a domain not served here",
                    &self.cfg.domain.clone(),
                );
                self.reply(&r, 403, "Domain Not Served Here", &[]).await
            }
            Method::Message if to_us || federating => self.on_message(&r).await,
            Method::Invite if to_us || federating => self.on_invite(&r).await,
            Method::Publish if to_us => self.on_publish(&r).await,
            Method::Subscribe if to_us || federating => self.on_subscribe(&r).await,
            Method::Options if to_us && self.addressed_to_server(&f.request_uri) => {
                self.reply(
                    &r,
                    200,
                    "OK",
                    &[
                        ("Allow", ALLOW),
                        ("Allow-Events", "presence, presence.winfo"),
                        ("Accept", "application/sdp"),
                        ("Supported", "outbound, path"),
                    ],
                )
                .await
            }
            _ if !to_us => {
                self.log_refusal(
                    &r,
                    "relaying denied: the Request-URI names another domain",
                    "",
                );
                self.reply(&r, 403, "Relaying Denied", &[]).await
            }
            _ => {
                self.reply(&r, 405, "Method Not Allowed", &[("Allow", ALLOW)])
                    .await
            }
        }
    }

    pub(crate) fn is_our_domain(&self, uri: &Uri<'_>) -> bool {
        matches!(uri, Uri::Sip(u) if self.identity.is_our_host(&u.host))
    }

    pub(crate) fn addressed_to_server(&self, uri: &Uri<'_>) -> bool {
        matches!(uri, Uri::Sip(u) if u.user.is_none())
    }
}
