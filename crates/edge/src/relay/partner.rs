//! Partners' servers through the edge: inbound, what their certificate
//! speaks for and the pool's federation rules before anything goes in;
//! outbound, the connection to a partner's server the edge opens itself.

use super::*;

/// Partners with requests waiting for a connection, and requests waiting
/// per partner.
const MAX_PENDING_PARTNERS: usize = 256;
const MAX_PENDING: usize = 64;

impl Edge {
    /// The identities a partner's connection speaks for (its certificate,
    /// verified against the CAs trusted for partners), if it is one.
    pub(super) fn partner_on(
        &mut self,
        src: &Source,
    ) -> Option<Arc<federation::identity::Identities>> {
        if src.protocol != Protocol::Tls {
            return None;
        }
        if let Some(ids) = self.partners.get(&src.flow) {
            return Some(ids.clone());
        }
        let leaf = src.peer_certificates.as_ref()?.first()?;
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
        .map_err(|_| forbid("Forbidden (Partner Not Allowed)"))?;
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
                    "Forbidden (Partner Not Allowed)",
                    &[],
                )
                .await;
        }
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
        if let Some(&flow) = self.partner_out.get(&domain) {
            if self.ext.flow_local(flow).is_some() {
                return self.outward(&msg, &src, to_tag, Some(flow)).await;
            }
            self.partner_out.remove(&domain);
        }
        let known = self.partner_pending.contains_key(&domain);
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
            .push((msg, src, to_tag));
        if !known {
            let pinned = self
                .snapshot
                .as_ref()
                .and_then(|s| policy::kinds::federation::pinned(&s.federation.servers, &domain));
            self.open_partner(domain, pinned);
        }
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
            let flow = match tokio::time::timeout(Duration::from_secs(15), attempt).await {
                Ok(Ok(f)) => Some(f),
                Ok(Err(e)) => {
                    tracing::warn!(partner = %domain, error = %e, "cannot reach the partner's server");
                    None
                }
                Err(_) => None,
            };
            let _ = done.send((domain, flow)).await;
        });
    }

    /// The connection to a partner opened (or not): send what waited.
    pub(super) async fn partner_connected(&mut self, domain: String, flow: Option<FlowId>) {
        let waiting = self.partner_pending.remove(&domain).unwrap_or_default();
        if let Some(f) = flow {
            tracing::info!(partner = %domain, "connected to the partner's server");
            self.partner_out.insert(domain, f);
        }
        let int = self.int.clone();
        for (msg, src, to_tag) in waiting {
            match flow {
                Some(f) => self.outward(&msg, &src, to_tag, Some(f)).await,
                None => {
                    self.reply(
                        &int,
                        &msg,
                        &src,
                        503,
                        "Service Unavailable (Partner Unreachable)",
                        &[],
                    )
                    .await
                }
            }
        }
    }
}
