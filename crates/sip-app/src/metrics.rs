//! Counters and gauges, rendered for Prometheus (`/metrics`). Label sets are
//! bounded by construction: methods are the known ones or `other`, status codes
//! are 100–699.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use sip::Method;

/// The modalities usage is counted by, in their counters' order.
pub const MODALITIES: [&str; 3] = ["call", "im", "file"];

/// One partner's usage (or `internal`): uses per modality, and seconds of
/// answered calls.
#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    uses: [u64; 3],
    call_seconds: u64,
}

#[derive(Debug, Default)]
pub struct Metrics {
    /// The media relay's counters (zero where no relay runs).
    pub relay: std::sync::Arc<relay::metrics::Metrics>,
    /// (method, status) → final responses sent by server transactions.
    transactions: Mutex<BTreeMap<(&'static str, u16), u64>>,
    /// (partner, direction, outcome) → requests to and from partners.
    federation: Mutex<BTreeMap<(String, &'static str, &'static str), u64>>,
    /// (modality, partner or `internal`) → (uses, seconds): answered
    /// calls and their seconds, instant messages, files offered.
    usage: Mutex<BTreeMap<String, Usage>>,
    /// 1 once the SIP core has loaded its state and runs (what `/healthz`
    /// reports), 0 before.
    pub ready: AtomicU64,
    /// This process's name and epoch in a PostgreSQL pool, if it is a
    /// node of one.
    pub node: Mutex<Option<(String, i64)>>,
    /// In a pool whose nodes all serve: how long the others' changes take
    /// to reach this node's core.
    pub pool_change_lag: crate::change_lag::LagHistogram,
    pub auth_failures: AtomicU64,
    pub lockouts: AtomicU64,
    pub lockout_saves_failed: AtomicU64,
    /// The IM archive (crate::archive).
    pub archive: crate::archive::ArchiveMetrics,
    /// Calls and call detail records (crate::cdr).
    pub cdr: crate::cdr::CdrMetrics,
    /// The SIP trace ring and HEP export (the server starts the writer).
    pub trace: trace::Counters,
    pub rate_limited: AtomicU64,
    pub messages_relayed: AtomicU64,
    pub messages_stored: AtomicU64,
    pub messages_delivered: AtomicU64,
    /// The IM filter: messages whose links were defused, delivered with a
    /// warning, refused by policy, refused as unreadable.
    pub im_defused: AtomicU64,
    pub im_warned: AtomicU64,
    pub im_blocked: AtomicU64,
    /// MESSAGEs refused for the file they offer.
    pub files_refused: AtomicU64,
    /// Offers and answers refused by the media policy (unencrypted media,
    /// SDES keys over a hop that is not TLS, SDP that cannot be read).
    pub media_refused: AtomicU64,
    /// Files uploaded and kept.
    pub files_uploaded: AtomicU64,
    /// Uploads refused by the file-transfer policy.
    pub files_upload_refused: AtomicU64,
    /// Files downloaded (the owner's or a recipient's GET answered 200).
    pub files_downloaded: AtomicU64,
    pub im_unreadable: AtomicU64,
    pub registrations: AtomicU64,
    pub transactions_live: AtomicU64,
    pub transactions_completed: AtomicU64,
    pub transactions_completed_bytes: AtomicU64,
    pub transactions_completed_evicted: AtomicU64,
    pub transactions_refused_full: AtomicU64,
    pub shed_inbound_queue: AtomicU64,
    pub shed_store_queue: AtomicU64,
    pub connections: AtomicU64,
    pub pending_writes: AtomicU64,
    pub db_commits: AtomicU64,
    pub inbound_queue: AtomicU64,
    /// The longest a received message waited for the core over the last
    /// second, in microseconds.
    pub inbound_delay_us: AtomicU64,
    pub notifies_sent: AtomicU64,
    pub publications: AtomicU64,
    pub subscriptions: AtomicU64,
}

/// Partners named in metric labels at most (bounded cardinality).
pub const MAX_PARTNER_LABELS: usize = 1000;

/// The method label: a known method's name, otherwise `other` (bounded).
pub fn method_label(m: Method<'_>) -> &'static str {
    m.known_name().unwrap_or("other")
}

impl Metrics {
    pub fn count_response(&self, method: &'static str, status: u16) {
        if !(100..700).contains(&status) || status < 200 {
            return;
        }
        if let Ok(mut t) = self.transactions.lock() {
            *t.entry((method, status)).or_insert(0) += 1;
        }
    }

    /// Counts a request to (`out`) or from (`in`) a partner by outcome.
    /// Partners beyond the first [`MAX_PARTNER_LABELS`] count as `other`.
    pub fn count_federation(&self, partner: &str, direction: &'static str, outcome: &'static str) {
        let Ok(mut t) = self.federation.lock() else {
            return;
        };
        let partner = partner.to_ascii_lowercase();
        let key = (partner, direction, outcome);
        if let Some(n) = t.get_mut(&key) {
            *n += 1;
            return;
        }
        let known = t.keys().any(|k| k.0 == key.0);
        let partners = if known {
            0
        } else {
            let mut names: Vec<&String> = t.keys().map(|k| &k.0).collect();
            names.dedup();
            names.len()
        };
        let key = if known || partners < MAX_PARTNER_LABELS {
            key
        } else {
            ("other".to_string(), direction, outcome)
        };
        *t.entry(key).or_insert(0) += 1;
    }

    /// Counts one use of `modality` (one of [`MODALITIES`]) with `partner`
    /// (compared in lower case; empty: between our users), and `seconds`
    /// (a call's).
    /// Partners beyond the first [`MAX_PARTNER_LABELS`] count as `other`.
    /// Nothing is allocated for a partner seen before (a message's path).
    pub fn count_usage(&self, modality: &'static str, partner: &str, seconds: u64) {
        let Some(i) = MODALITIES.iter().position(|m| *m == modality) else {
            return;
        };
        let Ok(mut t) = self.usage.lock() else {
            return;
        };
        // Domains come in lower case (partner_of); another form is folded.
        let folded;
        let partner = if partner.is_empty() {
            "internal"
        } else if partner.bytes().any(|b| b.is_ascii_uppercase()) {
            folded = partner.to_ascii_lowercase();
            folded.as_str()
        } else {
            partner
        };
        let e = match t.get_mut(partner) {
            Some(e) => e,
            None => {
                let key = if t.len() <= MAX_PARTNER_LABELS {
                    partner
                } else {
                    "other"
                };
                t.entry(key.to_owned()).or_default()
            }
        };
        e.uses[i] += 1;
        e.call_seconds += seconds;
    }

    fn render_usage(&self, s: &mut String) {
        let Ok(t) = self.usage.lock() else {
            return;
        };
        let _ = writeln!(s, "# HELP parapet_usage_total Uses by modality (call: answered calls, counted when they end; im: instant messages that went on; file: files offered) and partner organisation (internal: between our users).");
        let _ = writeln!(s, "# TYPE parapet_usage_total counter");
        let label = |p: &str| {
            p.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
        };
        for (p, u) in t.iter() {
            for (m, n) in MODALITIES.iter().zip(u.uses) {
                if n > 0 {
                    let _ = writeln!(
                        s,
                        "parapet_usage_total{{modality=\"{m}\",partner=\"{}\"}} {n}",
                        label(p)
                    );
                }
            }
        }
        let _ = writeln!(s, "# HELP parapet_usage_call_seconds_total Seconds of answered calls by partner organisation (internal: between our users).");
        let _ = writeln!(s, "# TYPE parapet_usage_call_seconds_total counter");
        for (p, u) in t.iter().filter(|(_, u)| u.uses[0] > 0) {
            let _ = writeln!(
                s,
                "parapet_usage_call_seconds_total{{partner=\"{}\"}} {}",
                label(p),
                u.call_seconds
            );
        }
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        self.render_usage(&mut s);
        if let Some((id, epoch)) = self.node.lock().ok().and_then(|n| n.clone()) {
            let _ = writeln!(s, "# HELP parapet_node_info The node of the PostgreSQL pool these metrics are from, and the epoch it serves under.");
            let _ = writeln!(s, "# TYPE parapet_node_info gauge");
            // node_id is [A-Za-z0-9._-] (checked by the configuration).
            let _ = writeln!(s, "parapet_node_info{{node=\"{id}\",epoch=\"{epoch}\"}} 1");
            self.pool_change_lag.render(&mut s);
        }
        if let Ok(t) = self.federation.lock() {
            let _ = writeln!(s, "# HELP parapet_federation_requests_total Requests to (out) and from (in) partner organisations' servers, by partner and outcome.");
            let _ = writeln!(s, "# TYPE parapet_federation_requests_total counter");
            for ((p, d, o), n) in t.iter() {
                // A partner's name can come from its certificate's common
                // name: escaped as Prometheus label values must be.
                let p = p
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = writeln!(
                    s,
                    "parapet_federation_requests_total{{partner=\"{p}\",direction=\"{d}\",outcome=\"{o}\"}} {n}"
                );
            }
        }
        let _ = writeln!(s, "# HELP parapet_sip_transactions_total Final responses to SIP requests, by method and status.");
        let _ = writeln!(s, "# TYPE parapet_sip_transactions_total counter");
        if let Ok(t) = self.transactions.lock() {
            for ((m, c), n) in t.iter() {
                let _ = writeln!(
                    s,
                    "parapet_sip_transactions_total{{method=\"{m}\",code=\"{c}\"}} {n}"
                );
            }
        }
        let counters: [(&str, &str, &AtomicU64); 20] = [
            (
                "parapet_sip_transactions_completed_evicted_total",
                "Completed transactions dropped before timer J to stay within limits.max_completed_bytes (a retransmission of their request is then handled again).",
                &self.transactions_completed_evicted,
            ),
            (
                "parapet_sip_transactions_refused_total",
                "Requests answered 503 because limits.max_transactions transactions were in progress.",
                &self.transactions_refused_full,
            ),
            (
                "parapet_auth_failures_total",
                "Sign-ins whose credentials did not verify.",
                &self.auth_failures,
            ),
            (
                "parapet_lockout_saves_failed_total",
                "Saves of the sign-in lockout state to the database that failed (the state still decides in memory; a restart would start from the last save).",
                &self.lockout_saves_failed,
            ),
            (
                "parapet_lockouts_total",
                "Lockouts engaged by the security filter.",
                &self.lockouts,
            ),
            (
                "parapet_rate_limited_total",
                "Unauthenticated requests refused by the per-address rate limit.",
                &self.rate_limited,
            ),
            (
                "parapet_im_relayed_total",
                "Instant messages relayed to a registered recipient.",
                &self.messages_relayed,
            ),
            (
                "parapet_im_stored_total",
                "Instant messages stored for an offline recipient.",
                &self.messages_stored,
            ),
            (
                "parapet_im_delivered_total",
                "Stored instant messages delivered.",
                &self.messages_delivered,
            ),
            (
                "parapet_im_filter_defused_total",
                "Instant messages delivered with their links defused by the IM filter.",
                &self.im_defused,
            ),
            (
                "parapet_im_filter_warned_total",
                "Instant messages delivered with the IM filter's warning.",
                &self.im_warned,
            ),
            (
                "parapet_im_filter_blocked_total",
                "Instant messages refused by the IM filter (links, too many links, links to blocked files).",
                &self.im_blocked,
            ),
            (
                "parapet_im_filter_unreadable_total",
                "Instant messages refused because the IM filter could not read them (not UTF-8, malformed CPIM).",
                &self.im_unreadable,
            ),
            (
                "parapet_file_offers_refused_total",
                "Instant messages refused for the file they offer (policy, not the sender's file, expired, encrypted where inspection is required).",
                &self.files_refused,
            ),
            (
                "parapet_media_refused_total",
                "Calls and call changes refused by the media policy (media not encrypted, SDES keys on a hop that is not TLS, SDP that cannot be read).",
                &self.media_refused,
            ),
            (
                "parapet_files_uploaded_total",
                "Files uploaded to the file-transfer server and kept.",
                &self.files_uploaded,
            ),
            (
                "parapet_files_upload_refused_total",
                "Uploads refused by the file-transfer policy (name, content, archive contents).",
                &self.files_upload_refused,
            ),
            (
                "parapet_files_downloaded_total",
                "Files served to their owner or a recipient.",
                &self.files_downloaded,
            ),
            (
                "parapet_presence_notifies_total",
                "NOTIFY requests sent to presence and watcher-information subscribers.",
                &self.notifies_sent,
            ),
            (
                "parapet_db_commits_total",
                "Database write transactions committed (group commit: each carries one or more writes).",
                &self.db_commits,
            ),
        ];
        for (name, help, v) in counters
            .into_iter()
            .chain(self.archive.counters())
            .chain(self.cdr.counters())
        {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        for (name, help, v) in [
            (
                "parapet_trace_messages_total",
                "SIP messages written to the trace ring.",
                &self.trace.written,
            ),
            (
                "parapet_trace_dropped_total",
                "SIP messages not traced because the trace writer was behind.",
                &self.trace.dropped,
            ),
            (
                "parapet_trace_hep_sent_total",
                "HEP v3 packets sent to the collector (trace.hep).",
                &self.trace.hep_sent,
            ),
            (
                "parapet_trace_hep_failed_total",
                "HEP v3 packets that could not be sent.",
                &self.trace.hep_failed,
            ),
        ] {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            s,
            "# HELP parapet_archive_writable 1 while the IM archive's last write succeeded (or none failed yet), 0 while it fails: users whose archiving policy blocks on failure get 503 for instant messages meanwhile.\n# TYPE parapet_archive_writable gauge\nparapet_archive_writable {}",
            u64::from(self.archive.writable())
        );
        let _ = writeln!(
            s,
            "# HELP parapet_sip_requests_shed_total New requests answered 503 (Overloaded) under pressure: messages waiting too long for the core (inbound_queue) or database writes slow or piling up (store_queue).\n\
             # TYPE parapet_sip_requests_shed_total counter\n\
             parapet_sip_requests_shed_total{{reason=\"inbound_queue\"}} {}\n\
             parapet_sip_requests_shed_total{{reason=\"store_queue\"}} {}",
            self.shed_inbound_queue.load(Ordering::Relaxed),
            self.shed_store_queue.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            s,
            "# HELP parapet_inbound_delay_seconds The longest a received message waited for the SIP core over the last second (overload control sheds when waits stay above limits.overload_delay_ms).\n\
             # TYPE parapet_inbound_delay_seconds gauge\n\
             parapet_inbound_delay_seconds {:.6}",
            self.inbound_delay_us.load(Ordering::Relaxed) as f64 / 1e6,
        );
        let gauges: [(&str, &str, &AtomicU64); 10] = [
            (
                "parapet_sip_transactions_completed",
                "Completed non-INVITE server transactions kept for retransmissions until timer J.",
                &self.transactions_completed,
            ),
            (
                "parapet_sip_transactions_completed_bytes",
                "Memory those hold, in bytes (bounded by limits.max_completed_bytes).",
                &self.transactions_completed_bytes,
            ),
            (
                "parapet_inbound_queue",
                "Received messages waiting for the SIP core.",
                &self.inbound_queue,
            ),
            (
                "parapet_presence_publications",
                "Live presence publications (one per publishing device).",
                &self.publications,
            ),
            (
                "parapet_presence_subscriptions",
                "Live presence and watcher-information subscriptions.",
                &self.subscriptions,
            ),
            (
                "parapet_ready",
                "1 once the SIP core has loaded its state (users, registrations, policies, lockouts) and serves; 0 while it loads.",
                &self.ready,
            ),
            (
                "parapet_registrations",
                "Live registrar bindings.",
                &self.registrations,
            ),
            (
                "parapet_sip_transactions_live",
                "SIP transactions in progress (bounded by limits.max_transactions).",
                &self.transactions_live,
            ),
            (
                "parapet_connections",
                "Open SIP stream connections.",
                &self.connections,
            ),
            (
                "parapet_db_pending_writes",
                "Database writes in flight (queue depth).",
                &self.pending_writes,
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        self.relay.render(&mut s);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_counted_by_modality_and_partner_with_bounded_labels() {
        let m = Metrics::default();
        m.count_usage("call", "", 61);
        m.count_usage("call", "Partner.test", 5);
        m.count_usage("call", "partner.test", 4);
        m.count_usage("im", "", 0);
        for i in 0..(MAX_PARTNER_LABELS + 5) {
            m.count_usage("file", &format!("p{i}.test"), 0);
        }
        let out = m.render();
        assert!(
            out.contains("parapet_usage_total{modality=\"call\",partner=\"internal\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("parapet_usage_total{modality=\"call\",partner=\"partner.test\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("parapet_usage_call_seconds_total{partner=\"partner.test\"} 9\n"),
            "{out}"
        );
        assert!(
            out.contains("parapet_usage_call_seconds_total{partner=\"internal\"} 61\n"),
            "{out}"
        );
        assert!(
            out.contains("parapet_usage_total{modality=\"im\",partner=\"internal\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("parapet_usage_total{modality=\"file\",partner=\"other\"}"),
            "{out}"
        );
        let labels = out
            .lines()
            .filter(|l| l.starts_with("parapet_usage_total{modality=\"file\""))
            .count();
        assert!(labels <= MAX_PARTNER_LABELS + 1, "{labels}");
    }

    #[test]
    fn partner_labels_are_escaped_and_bounded() {
        let m = Metrics::default();
        m.count_federation("Evil\"}x 1\n\\", "in", "from_not_certified");
        let out = m.render();
        assert!(
            out.contains(r#"partner="evil\"}x 1\n\\",direction="in""#),
            "{out}"
        );
        for i in 0..MAX_PARTNER_LABELS + 5 {
            m.count_federation(&format!("p{i}.test"), "out", "forwarded");
        }
        let out = m.render();
        assert!(
            out.contains(r#"partner="other",direction="out",outcome="forwarded"} 6"#),
            "{out}"
        );
        assert!(!out.contains(r#"partner="p1004.test""#), "{out}");
    }
}
