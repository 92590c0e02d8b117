//! The pool's configuration snapshot: asked for over a link, verified,
//! applied, and dropped when it expires.

use super::*;

/// The branch prefix of the edge's own snapshot requests: their answers
/// are the edge's, not to be relayed.
const SNAPSHOT_BRANCH: &str = "z9hG4bKpsnap";

/// The branch of a message's top Via.
pub(super) fn top_branch(msg: &Message) -> Option<&str> {
    msg.list::<sip::headers::Via>()
        .next()
        .and_then(Result::ok)
        .and_then(|v| v.branch())
}

impl Edge {
    /// Asks the pool for its configuration snapshot (OPTIONS with the
    /// snapshot's type in Accept), on a link.
    pub(super) async fn fetch_snapshot(&mut self) {
        let Some(flow) = self.pool_flow() else {
            return;
        };
        self.snapshot_seq += 1;
        self.last_fetch = Instant::now();
        let seq = self.snapshot_seq;
        let status = format!(
            "{TRUST_HEADER}: status;snapshot=\"{}\";listeners=\"{}\"\r\n",
            self.snapshot.as_ref().map_or(0, |s| s.version),
            self.listeners.join(" "),
        );
        let req = self.question_to_pool(
            flow,
            SNAPSHOT_BRANCH,
            seq,
            auth::edge_snapshot::CONTENT_TYPE,
            &status,
            None,
        );
        let _ = self.int.send(Target::Flow(flow), req).await;
    }

    /// An OPTIONS of the edge's own to the pool on `flow` (its answer is
    /// known by its branch, `prefix` then `seq`): `accept` says what it
    /// asks for, `extra` holds whole header lines, `body` goes with
    /// `accept` as its type.
    pub(super) fn question_to_pool(
        &self,
        flow: FlowId,
        prefix: &str,
        seq: u64,
        accept: &str,
        extra: &str,
        body: Option<&str>,
    ) -> Bytes {
        let local = self
            .int
            .flow_local(flow)
            .map_or_else(|| "0.0.0.0:0".to_owned(), |a| a.to_string());
        let domain = &self.domain;
        let name = &self.name;
        let (typed, body) = match body {
            Some(b) => (format!("Content-Type: {accept}\r\n"), b),
            None => (String::new(), ""),
        };
        Bytes::from(format!(
            "OPTIONS sip:{domain} SIP/2.0\r\nVia: SIP/2.0/TLS {local};branch={prefix}{seq}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{domain}>;tag=edge-{name}\r\nTo: <sip:{domain}>\r\n\
             Call-ID: {prefix}-{seq}-{name}\r\nCSeq: {seq} OPTIONS\r\nAccept: {accept}\r\n\
             {extra}{typed}Content-Length: {}\r\n\r\n{body}",
            body.len()
        ))
    }

    pub(super) fn is_snapshot_answer(&self, msg: &Message) -> bool {
        top_branch(msg).is_some_and(|b| b.starts_with(SNAPSHOT_BRANCH))
    }

    /// Applies the pool's answer if it is a snapshot signed with the pool's
    /// key, for this domain, current, and not older than the one held.
    pub(super) fn on_snapshot(&mut self, msg: &Message) {
        if msg.status() != Some(200) {
            tracing::warn!(
                status = msg.status(),
                "the pool gave no configuration snapshot"
            );
            return;
        }
        let body = String::from_utf8_lossy(msg.body());
        match auth::edge_snapshot::verify(
            &self.snapshot_key,
            &body,
            &self.domain,
            unix_now(),
            self.snapshot.as_ref(),
        ) {
            Ok(s) => {
                self.apply_relay_revocations(&s);
                if self.snapshot.as_ref() != Some(&s) {
                    let changed = self.snapshot.as_ref().is_none_or(|h| {
                        (h.version, h.lockout, h.limits) != (s.version, s.lockout, s.limits)
                    });
                    if changed {
                        tracing::info!(
                            version = s.version,
                            source_threshold = s.lockout.source_threshold,
                            account_threshold = s.lockout.account_threshold,
                            source_rate = s.limits.source_rate,
                            in_flight_per_connection = s.limits.in_flight_per_connection,
                            "configuration snapshot applied"
                        );
                    }
                    self.filter.set_config(s.lockout.config());
                    self.set_limits(s.limits);
                    self.close_revoked(&s);
                    self.metrics
                        .snapshot_version
                        .store(s.version.max(1), Relaxed);
                    self.snapshot = Some(s);
                }
            }
            Err(why) => {
                self.metrics.snapshot_refused.fetch_add(1, Relaxed);
                tracing::error!(reason = %why, "configuration snapshot refused; keeping the one held until it expires");
            }
        }
    }

    /// Closes the connections whose client presented a device
    /// certificate the pool has just revoked.
    fn close_revoked(&mut self, s: &Snapshot) {
        let set: HashSet<[u8; 32]> = s.revoked().collect();
        if set.is_empty() {
            return;
        }
        let closed = self.ext.close_certified(&set);
        if closed > 0 {
            tracing::info!(
                connections = closed,
                "closed the connections of device certificates the pool revoked"
            );
        }
    }

    /// Puts per-source limits in force; the rate's counters start afresh
    /// only when the rate itself changes.
    fn set_limits(&mut self, l: auth::edge_snapshot::Limits) {
        if (l.source_rate, l.source_burst) != (self.limits.source_rate, self.limits.source_burst) {
            self.rate = RateLimiter::new(l.source_rate.max(1), l.source_burst.max(1), 100_000);
        }
        self.limits = l;
    }

    /// A snapshot past its lifetime stops counting: the edge's own
    /// settings apply until the pool gives a new one.
    pub(super) fn expire_snapshot(&mut self) {
        let expired = self
            .snapshot
            .as_ref()
            .is_some_and(|s| unix_now() >= s.expires_at);
        if expired {
            tracing::error!("the pool's configuration snapshot expired without a newer one: back to the edge's own settings");
            self.snapshot = None;
            self.filter.set_config(self.fallback_lockout);
            self.set_limits(self.fallback_limits);
            self.metrics.snapshot_version.store(0, Relaxed);
        }
    }
}
