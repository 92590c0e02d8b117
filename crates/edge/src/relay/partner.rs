//! Partners' servers through the edge: inbound, what their certificate
//! speaks for and the pool's federation rules before anything goes in;
//! outbound, the connection to a partner's server the edge opens itself.

use super::*;

/// Partners with requests waiting for a connection, and requests waiting
/// per partner.
const MAX_PENDING_PARTNERS: usize = 256;
const MAX_PENDING: usize = 64;
/// Requests awaiting their answer on every connection to a partner before
/// another is opened beside them (as the front end does).
const SPREAD_AT: u32 = 32;

/// A request from the pool waiting for a connection to a partner; `forced`:
/// it goes there whatever its route tokens name.
pub(super) type Pending = (Message, Source, bool, bool);

/// The edge's connections to one partner's server.
#[derive(Debug, Default)]
pub(super) struct OutPool {
    flows: Vec<FlowId>,
    /// Another is being opened.
    opening: bool,
}

impl Edge {
    /// The identities a partner's connection speaks for (its certificate,
    /// verified against the CAs trusted for partners), if it is one; a
    /// certificate that is not a partner's is recorded as a device's.
    pub(super) fn partner_on(
        &mut self,
        src: &Source,
    ) -> Option<Arc<federation::identity::Identities>> {
        if let Some(ids) = self.partners.get(&src.flow) {
            return Some(ids.clone());
        }
        if self.devices.contains_key(&src.flow) {
            return None;
        }
        let chain = src.peer_certificates.as_ref()?;
        let leaf = chain.first()?;
        // The listener let any certificate through (a device's is the
        // pool's to judge): a partner's is one the partners' CAs verify.
        // (Partners' servers come over TLS; WSS carries devices only.)
        let partner = src.protocol == Protocol::Tls
            && self.partner_verifier.as_ref().is_some_and(|v| {
                v.verify_client_cert(
                    leaf,
                    chain.get(1..).unwrap_or(&[]),
                    rustls_pki_types::UnixTime::now(),
                )
                .is_ok()
            });
        if !partner {
            self.devices.insert(src.flow, Some(fingerprint(leaf)));
            return None;
        }
        let ids = Arc::new(federation::identity::identities(leaf).unwrap_or(
            // Verified but unreadable here: an identity no domain matches.
            federation::identity::Identities {
                source: federation::identity::Source::SipUri,
                names: Vec::new(),
                hosts: Vec::new(),
            },
        ));
        self.partners.insert(src.flow, ids.clone());
        Some(ids)
    }

    /// RFC 5922 and the pool's federation rules, before anything goes
    /// inward: the From domain must be one the certificate speaks for and
    /// not the pool's, the pool's snapshot must be in force (no federation
    /// without it) and its rules must allow the domain. `Ok`: the domain.
    pub(super) fn partner_may_send(
        &mut self,
        ids: &federation::identity::Identities,
        from: &sip::Uri<'_>,
    ) -> Result<String, (u16, &'static str)> {
        let forbid = |r: &'static str| (403, r);
        let sip::Uri::Sip(u) = from else {
            return Err(forbid("Forbidden (From Is Not a User of the Partner)"));
        };
        let domain = u.host.to_string().to_ascii_lowercase();
        if domain == self.domain {
            return Err(forbid("Forbidden (Own Domain From Outside)"));
        }
        if !ids.covers(&domain) {
            return Err(forbid(
                "Forbidden (From Domain Does Not Match the Certificate)",
            ));
        }
        let Some(s) = &self.snapshot else {
            return Err(forbid("Forbidden (Federation Unavailable)"));
        };
        let f = &s.federation;
        let standing = policy::kinds::federation::verdict(
            f.enabled,
            &f.allowed,
            &f.blocked,
            f.discovery,
            &domain,
        )
        .map_err(|_| forbid("Forbidden (Federation Not Allowed)"))?;
        if standing == policy::kinds::federation::Standing::Discovered {
            // Lync's throttle for partners nobody listed, at the door; the
            // front end keeps the distinct-user limit and the watch list.
            let rate = f.discovered_rate.max(1);
            if self.discovered_rate != rate {
                self.discovered_rate = rate;
                self.discovered = RateLimiter::new(rate, rate, 10_000);
            }
            if !self.discovered.allow(domain.clone(), Instant::now()) {
                return Err((503, "Service Unavailable (Partner Rate Exceeded)"));
            }
        }
        Ok(domain)
    }

    /// A request from the pool for a partner's user (no route of ours):
    /// under the pool's federation rules, over this edge's connection to
    /// the partner, opened on first use (requests wait for it, bounded).
    pub(super) async fn send_to_partner(&mut self, msg: Message, src: Source, to_tag: bool) {
        let int = self.int.clone();
        let domain = msg
            .request_uri()
            .and_then(|u| match sip::Uri::parse(u) {
                Ok(sip::Uri::Sip(s)) => Some(s.host.to_string().to_ascii_lowercase()),
                _ => None,
            })
            .unwrap_or_default();
        if domain == self.domain || domain.is_empty() {
            return self
                .reply(
                    &int,
                    &msg,
                    &src,
                    404,
                    "Not Found (No Route Through This Edge)",
                    &[],
                )
                .await;
        }
        let Some(s) = &self.snapshot else {
            return self
                .reply(
                    &int,
                    &msg,
                    &src,
                    403,
                    "Forbidden (Federation Unavailable)",
                    &[],
                )
                .await;
        };
        let f = &s.federation;
        if policy::kinds::federation::verdict(
            f.enabled,
            &f.allowed,
            &f.blocked,
            f.discovery,
            &domain,
        )
        .is_err()
        {
            return self
                .reply(
                    &int,
                    &msg,
                    &src,
                    403,
                    "Forbidden (Federation Not Allowed)",
                    &[],
                )
                .await;
        }
        self.via_partner(msg, src, to_tag, domain, false).await
    }

    /// Sends a request to `domain`'s server over the least loaded of the
    /// edge's connections to it (opening another beside busy ones), or
    /// waits for the first to open. `forced`: whatever its route tokens
    /// name (the connection they name is gone).
    pub(super) async fn via_partner(
        &mut self,
        msg: Message,
        src: Source,
        to_tag: bool,
        domain: String,
        forced: bool,
    ) {
        let int = self.int.clone();
        if self.partner_client.is_none() {
            return self
                .reply(
                    &int,
                    &msg,
                    &src,
                    503,
                    "Service Unavailable (No CA Trusted for Partners)",
                    &[],
                )
                .await;
        }
        let pinned = self
            .snapshot
            .as_ref()
            .and_then(|s| policy::kinds::federation::pinned(&s.federation.servers, &domain));
        if let Some(flow) = self.least_loaded(&domain) {
            let busy = self.partner_load.get(&flow).copied().unwrap_or(0) >= SPREAD_AT;
            let max = self.max_per_partner;
            let pool = self.partner_out.entry(domain.clone()).or_default();
            if busy && !pool.opening && pool.flows.len() < max {
                // Every connection has many requests in flight: one more
                // beside them (nothing waits for it).
                pool.opening = true;
                self.open_partner(domain.clone(), pinned);
            }
            let hop = Hop {
                flow,
                protocol: Protocol::Tls,
                partner: Some(domain),
                forced,
            };
            return self.outward(&msg, &src, to_tag, Some(hop)).await;
        }
        let full = match self.partner_pending.get(&domain) {
            Some(queue) => queue.len() >= MAX_PENDING,
            None => self.partner_pending.len() >= MAX_PENDING_PARTNERS,
        };
        if full {
            return self
                .reply(
                    &int,
                    &msg,
                    &src,
                    503,
                    "Service Unavailable (Partner Connection Busy)",
                    &[("Retry-After", "5")],
                )
                .await;
        }
        self.partner_pending
            .entry(domain.clone())
            .or_default()
            .push((msg, src, to_tag, forced));
        let pool = self.partner_out.entry(domain.clone()).or_default();
        if !pool.opening {
            pool.opening = true;
            self.open_partner(domain, pinned);
        }
    }

    /// The live connection to `domain` with the fewest requests awaiting
    /// an answer.
    fn least_loaded(&self, domain: &str) -> Option<FlowId> {
        self.partner_out
            .get(domain)?
            .flows
            .iter()
            .copied()
            .filter(|f| self.ext.flow_local(*f).is_some())
            .min_by_key(|f| self.partner_load.get(f).copied().unwrap_or(0))
    }

    /// A request went out on `flow`: if it is one of the edge's
    /// connections to a partner, one more awaits its answer there.
    pub(super) fn partner_sent(&mut self, flow: FlowId) {
        if let Some(n) = self.partner_load.get_mut(&flow) {
            *n = n.saturating_add(1);
        }
    }

    /// A final answer came back on `flow`.
    pub(super) fn partner_answered(&mut self, flow: FlowId) {
        if let Some(n) = self.partner_load.get_mut(&flow) {
            *n = n.saturating_sub(1);
        }
    }

    /// An external connection closed: if it was one to a partner, forget it.
    pub(super) fn partner_closed(&mut self, flow: FlowId) {
        if self.partner_load.remove(&flow).is_none() {
            return;
        }
        self.metrics.partner_connections.fetch_sub(1, Relaxed);
        self.partner_out.retain(|_, pool| {
            pool.flows.retain(|f| *f != flow);
            !pool.flows.is_empty() || pool.opening
        });
    }

    /// Opens a connection to `domain`'s server in a task; the outcome comes
    /// back on the partner channel.
    pub(super) fn open_partner(&self, domain: String, pinned: Option<(String, u16)>) {
        let (Some(client), Some(locator)) = (self.partner_client.clone(), self.locator.clone())
        else {
            return;
        };
        let (ext, done) = (self.ext.clone(), self.partner_tx.clone());
        tokio::spawn(async move {
            let attempt = federation::connect::connect(&locator, &client, &ext, &domain, pinned);
            let result = tokio::time::timeout(Duration::from_secs(15), attempt)
                .await
                .unwrap_or_else(|_| {
                    Err(federation::connect::ConnectFailure::Unreachable(
                        "timed out".into(),
                    ))
                });
            if let Err(e) = &result {
                tracing::warn!(partner = %domain, error = %e, "cannot reach the partner's server");
            }
            let _ = done.send((domain, result)).await;
        });
    }

    /// The connection to a partner opened (or not): send what waited, or
    /// answer it as the front end would.
    pub(super) async fn partner_connected(
        &mut self,
        domain: String,
        result: Result<FlowId, federation::connect::ConnectFailure>,
    ) {
        let waiting = self.partner_pending.remove(&domain).unwrap_or_default();
        let pool = self.partner_out.entry(domain.clone()).or_default();
        pool.opening = false;
        match &result {
            Ok(f) => {
                tracing::info!(partner = %domain, connections = pool.flows.len() + 1, "connected to the partner's server");
                pool.flows.push(*f);
                self.partner_load.insert(*f, 0);
                self.metrics.partner_connections.fetch_add(1, Relaxed);
            }
            Err(_) if pool.flows.is_empty() => {
                self.partner_out.remove(&domain);
            }
            Err(_) => {}
        }
        let int = self.int.clone();
        for (msg, src, to_tag, forced) in waiting {
            match &result {
                Ok(f) => {
                    let hop = Hop {
                        flow: *f,
                        protocol: Protocol::Tls,
                        partner: Some(domain.clone()),
                        forced,
                    };
                    self.outward(&msg, &src, to_tag, Some(hop)).await
                }
                Err(why) => {
                    let (status, reason, _) = why.answer();
                    self.reply(&int, &msg, &src, status, reason, &[]).await
                }
            }
        }
    }
}

/// SHA-256 of a certificate (how the pool names device certificates).
pub(super) fn fingerprint(der: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, der);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}
