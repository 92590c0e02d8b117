//! Call detail records: each call the proxy rings (between our users, and
//! with partners' users either way) is followed by Call-ID from its INVITE
//! to its end — answered (the first 2xx), refused or unanswered (the final
//! status that went back to the caller; 487 when the caller cancelled),
//! hung up (the BYE's sender is who hung up) — and written once it ended,
//! by a writer task, in batches, with whether the relay here carried its
//! media. A call answered and never hung up (a client that vanished) is
//! closed after 24 hours, `ended_by = unknown`; calls and conversations
//! still open when the core stops are written as `server stopped`. The
//! other kinds of usage record (conversations, files, sign-ins) are in
//! [`usage`]. Each record is kept for the longest `usage_retention_days`
//! among the archiving policies of our parties to it, as they stand when
//! it is written ([`Retention`]), and deleted within ten minutes after.
//! Usage counters (calls by outcome, minutes) follow in /metrics.

mod usage;

pub(crate) use usage::{sign_in, sign_out};

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sip::{Message, RequestFields};
use store::CdrRow;
use tokio::sync::mpsc;

use super::{Core, Req};

/// Calls followed at once at most (beyond, new ones are not recorded, and
/// counted).
const MAX_CALLS: usize = 100_000;
/// Records waiting for the writer at most.
const QUEUE: usize = 10_000;
/// An answered call with no BYE after this is closed as `unknown`.
const LONGEST_CALL: Duration = Duration::from_secs(24 * 3600);
/// A call with no final answer after this (timer C is 3 minutes) is closed.
const LONGEST_RINGING: Duration = Duration::from_secs(600);
pub(crate) const PURGE_EVERY: Duration = Duration::from_secs(600);

static WRITE_FAILED: sip_transport::logging::RateLimited =
    sip_transport::logging::RateLimited::per(Duration::from_secs(60), 1);

#[derive(Debug, Default)]
pub struct CdrMetrics {
    answered: AtomicU64,
    unanswered: AtomicU64,
    /// Seconds of answered calls that ended.
    seconds: AtomicU64,
    lost: AtomicU64,
}

impl CdrMetrics {
    pub(crate) fn counters(&self) -> [(&'static str, &'static str, &AtomicU64); 4] {
        [
            ("parapet_calls_answered_total", "Calls answered (counted when they end, with their call detail record).", &self.answered),
            ("parapet_calls_unanswered_total", "Calls refused, cancelled or not answered.", &self.unanswered),
            ("parapet_call_seconds_total", "Seconds of answered calls, from answer to hang-up (divide by 60 for minutes).", &self.seconds),
            ("parapet_cdr_lost_total", "Call detail records not written: more calls at once than followed, or writes that failed for 30 s.", &self.lost),
        ]
    }
}

/// A call being followed.
#[derive(Debug)]
struct Call {
    row: CdrRow,
    started: Instant,
    /// The From and To of the INVITE that made the dialog (what every
    /// request inside it names, one way or the other).
    parties: (String, String),
}

/// How long records are kept: the policies in force (replaced with them)
/// and our domain, to tell our parties from partners'.
#[derive(Debug, Clone)]
pub(crate) struct Retention {
    pub(crate) policies: crate::policy_set::PolicySet,
    domain: Arc<str>,
}

const DAY_MS: i64 = 86_400_000;

impl Retention {
    /// Sets `row.keep_until_ms`: its end plus the longest usage retention
    /// among its parties of ours (a partner's user has no policy here).
    fn stamp(&self, row: &mut CdrRow) {
        let days = [row.caller.as_str(), row.callee.as_str()]
            .into_iter()
            .filter(|p| crate::archive::in_domain(p, &self.domain))
            .map(|p| crate::policy_set::archiving(&self.policies, p).usage_retention_days)
            .max()
            // No party of ours (not recorded today): everyone's policy.
            .unwrap_or_else(|| {
                crate::policy_set::archiving(&self.policies, "").usage_retention_days
            });
        row.keep_until_ms = row.ended_ms.saturating_add(days.saturating_mul(DAY_MS));
    }
}

#[derive(Debug)]
pub(crate) struct Calls {
    calls: HashMap<String, Call>,
    /// Conversations of instant messages (see [`usage`]).
    conversations: HashMap<(String, String), usage::Conversation>,
    tx: mpsc::Sender<CdrRow>,
    /// The writer, for a clean stop to wait for.
    pub(crate) task: Option<tokio::task::JoinHandle<()>>,
    last_sweep: Instant,
    metrics: Arc<crate::metrics::Metrics>,
    /// The relays' shared state: whether the relay carried a call's media.
    pub(crate) relay: Option<Arc<relay::Control>>,
    /// The files of this server a MESSAGE being relayed offers (its
    /// transaction): recorded if it goes on.
    pub(crate) offered: Option<(sip_txn::TxnId, Vec<store::FileRow>)>,
    pub(crate) retention: Retention,
}

impl Calls {
    /// Hands a record to the writer; counted lost when it is behind.
    fn send(&self, mut row: CdrRow) {
        self.retention.stamp(&mut row);
        if self.tx.try_send(row).is_err() {
            self.metrics.cdr.lost.fetch_add(1, Relaxed);
        }
    }

    /// Closes call `id` (`status`, `by`) and hands its record on.
    fn end(&mut self, id: &str, status: u16, by: &str) {
        let Some(mut c) = self.calls.remove(id) else {
            return;
        };
        c.row.ended_ms = now_ms();
        c.row.status = status;
        c.row.ended_by = by.to_string();
        c.row.media_relayed = self
            .relay
            .as_ref()
            .is_some_and(|r| r.calls.take_relayed(id));
        let m = &self.metrics.cdr;
        if c.row.answered_ms > 0 {
            m.answered.fetch_add(1, Relaxed);
            let secs = (c.row.ended_ms - c.row.answered_ms).max(0) / 1000;
            let secs = u64::try_from(secs).unwrap_or(0);
            m.seconds.fetch_add(secs, Relaxed);
            self.metrics.count_usage("call", &c.row.partner, secs);
        } else {
            m.unanswered.fetch_add(1, Relaxed);
        }
        self.send(c.row);
    }
}

/// The core stopping (a clean stop drops it; the writer then drains):
/// calls in progress and open conversations are recorded as they stand.
impl Drop for Calls {
    fn drop(&mut self) {
        let open: Vec<(String, bool)> = self
            .calls
            .iter()
            .map(|(id, c)| (id.clone(), c.row.answered_ms > 0))
            .collect();
        for (id, answered) in open {
            self.end(&id, if answered { 200 } else { 503 }, "server stopped");
        }
        self.close_conversations(|_| true, "server stopped");
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn device(m: &Message) -> String {
    m.headers_named("User-Agent")
        .next()
        .or_else(|| m.headers_named("Server").next())
        .map(|h| {
            h.value
                .chars()
                .filter(|c| !c.is_control())
                .take(128)
                .collect()
        })
        .unwrap_or_default()
}

/// A request's or a response's Call-ID (as the parser reads it, compact
/// form `i` included).
fn call_id(m: &Message) -> Option<String> {
    if m.is_response() {
        return sip::ResponseFields::extract(m)
            .ok()
            .map(|f| f.call_id.to_string());
    }
    RequestFields::extract(m)
        .ok()
        .map(|f| f.call_id.to_string())
}

impl Calls {
    pub(crate) fn start<S: store::Store>(
        store: S,
        metrics: Arc<crate::metrics::Metrics>,
        policies: crate::policy_set::PolicySet,
        domain: &str,
    ) -> Calls {
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = Some(tokio::spawn(write_loop(rx, store, metrics.clone())));
        Calls {
            calls: HashMap::new(),
            conversations: HashMap::new(),
            metrics: metrics.clone(),
            relay: None,
            offered: None,
            retention: Retention {
                policies,
                domain: domain.into(),
            },
            tx,
            task,
            // The first sweep (and retention run) a few seconds after start.
            last_sweep: Instant::now()
                .checked_sub(Duration::from_secs(55))
                .unwrap_or_else(Instant::now),
        }
    }
}

async fn write_loop<S: store::Store>(
    mut rx: mpsc::Receiver<CdrRow>,
    store: S,
    metrics: Arc<crate::metrics::Metrics>,
) {
    while let Some(first) = rx.recv().await {
        // Gathered for up to 100 ms: one commit for many calls.
        let mut batch = vec![first];
        let until = tokio::time::Instant::now() + Duration::from_millis(100);
        while batch.len() < 256 {
            match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(Some(r)) => batch.push(r),
                Ok(None) | Err(_) => break,
            }
        }
        let mut attempt = 0;
        loop {
            match store::Cdrs::cdr_put(&store, batch.clone()).await {
                Ok(()) => break,
                Err(e) => {
                    attempt += 1;
                    if let Some(suppressed) = WRITE_FAILED.allow() {
                        tracing::error!(error = %e, records = batch.len(), attempt, suppressed, "call detail records not written; retrying");
                    }
                    if attempt >= 30 {
                        metrics.cdr.lost.fetch_add(batch.len() as u64, Relaxed);
                        break;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

impl<S: store::Store> Core<S> {
    /// A new call from `r`'s sender to `callee` is about to ring.
    pub(crate) fn cdr_started(&mut self, r: &Req<'_>, callee: &str) {
        let caller = crate::archive::party(&r.f.from.uri).unwrap_or_default();
        let domain = &self.cfg.domain;
        let ours = |a: &str| crate::archive::in_domain(a, domain);
        let federated = !(ours(&caller) && ours(callee));
        let partner = usage::partner_of(&caller, callee, domain);
        let key = r.f.call_id.to_string();
        if self.cdr.calls.contains_key(&key) {
            return;
        }
        if self.cdr.calls.len() >= MAX_CALLS {
            self.metrics.cdr.lost.fetch_add(1, Relaxed);
            return;
        }
        let row = CdrRow {
            kind: "call".into(),
            call_id: key.chars().take(256).collect(),
            caller,
            callee: callee.to_string(),
            caller_device: device(r.msg),
            federated,
            partner,
            started_ms: now_ms(),
            ..CdrRow::default()
        };
        self.cdr.calls.insert(
            key,
            Call {
                row,
                started: Instant::now(),
                parties: (
                    crate::archive::party(&r.f.from.uri).unwrap_or_default(),
                    crate::archive::party(&r.f.to.uri).unwrap_or_default(),
                ),
            },
        );
    }

    /// A 2xx to a call's INVITE went back to the caller.
    pub(crate) fn cdr_answered(&mut self, resp: &Message) {
        let Some(id) = call_id(resp) else { return };
        if let Some(c) = self.cdr.calls.get_mut(&id) {
            if c.row.answered_ms == 0 {
                c.row.answered_ms = now_ms();
                c.row.status = 200;
                c.row.callee_device = device(resp);
            }
        }
    }

    /// The INVITE of call `req` ended without a 2xx with `status` (the
    /// caller's CANCEL makes it 487). A re-INVITE refused in a call that
    /// was answered ends nothing here.
    pub(crate) fn cdr_unanswered(&mut self, req: &Message, status: u16) {
        let Some(id) = call_id(req) else { return };
        if self
            .cdr
            .calls
            .get(&id)
            .is_some_and(|c| c.row.answered_ms == 0)
        {
            let by = if status == 487 { "caller" } else { "nobody" };
            self.cdr_end(&id, status, by);
        }
    }

    /// This server refused the call's INVITE itself (`status`).
    pub(crate) fn cdr_refused(&mut self, r: &Req<'_>, status: u16) {
        if r.f.method == sip::Method::Invite && r.f.to.tag().is_none() && status >= 300 {
            let id = r.f.call_id.to_string();
            if self
                .cdr
                .calls
                .get(&id)
                .is_some_and(|c| c.row.answered_ms == 0)
            {
                self.cdr_end(&id, status, "nobody");
            }
        }
    }

    /// A BYE in call `msg` from `from` (its sender) is relayed.
    pub(crate) fn cdr_bye(&mut self, r: &Req<'_>) {
        let id = r.f.call_id.to_string();
        let Some(c) = self.cdr.calls.get(&id) else {
            return;
        };
        let from = crate::archive::party(&r.f.from.uri).unwrap_or_default();
        let by = if from == c.row.caller {
            "caller"
        } else {
            "callee"
        };
        let status = if c.row.answered_ms == 0 { 487 } else { 200 };
        self.cdr_end(&id, status, by);
    }

    /// Whether a request inside call `r` names the call's parties in its
    /// From and To (either way round); `true` for a call not followed
    /// (before a restart, or already ended).
    pub(crate) fn cdr_parties_match(&self, r: &Req<'_>) -> bool {
        let Some(c) = self.cdr.calls.get(r.f.call_id) else {
            return true;
        };
        let from = crate::archive::party(&r.f.from.uri).unwrap_or_default();
        let to = crate::archive::party(&r.f.to.uri).unwrap_or_default();
        let (a, b) = &c.parties;
        (&from == a && &to == b) || (&from == b && &to == a)
    }

    fn cdr_end(&mut self, id: &str, status: u16, by: &str) {
        self.cdr.end(id, status, by);
    }

    /// Once a minute: calls that never ended closed; every ten minutes
    /// (from the first sweep, a few seconds after start) records past
    /// retention deleted.
    pub(crate) fn cdr_housekeeping(&mut self) {
        if self.cdr.last_sweep.elapsed() < Duration::from_secs(60) {
            return;
        }
        self.cdr.last_sweep = Instant::now();
        let stale: Vec<(String, bool)> = self
            .cdr
            .calls
            .iter()
            .filter(|(_, c)| {
                let limit = if c.row.answered_ms > 0 {
                    LONGEST_CALL
                } else {
                    LONGEST_RINGING
                };
                c.started.elapsed() >= limit
            })
            .map(|(id, c)| (id.clone(), c.row.answered_ms > 0))
            .collect();
        for (id, answered) in stale {
            if answered {
                self.cdr_end(&id, 200, "unknown");
            } else {
                self.cdr_end(&id, 408, "nobody");
            }
        }
        self.cdr
            .close_conversations(|c| c.idle() >= usage::CONVERSATION_PAUSE, "idle");
        if self.last_cdr_purge.elapsed() >= PURGE_EVERY {
            self.last_cdr_purge = Instant::now();
            let store = self.store.clone();
            // Records written before records said how long they are kept:
            // as `monitoring.cdr_retention_days` said then, else as the
            // global policy says now.
            let legacy_days = self.cfg.legacy_cdr_retention_days.map_or_else(
                || crate::policy_set::archiving(&self.policies, "").usage_retention_days,
                i64::from,
            );
            tokio::spawn(async move {
                match store::Cdrs::cdr_stamp_unstamped(&store, legacy_days * DAY_MS).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(
                        records = n,
                        days = legacy_days,
                        "usage records written before their retention was recorded: kept as long as monitoring.cdr_retention_days or the global policy says"
                    ),
                    Err(e) => {
                        tracing::error!(error = %e, "older usage records could not be given their retention")
                    }
                }
                // The archive's clock: the same retention clock (tests move it).
                let now = crate::archive::now_ms();
                match store::Cdrs::cdr_purge(&store, now).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deleted = n, "usage records past retention deleted"),
                    Err(e) => {
                        tracing::error!(error = %e, "call detail records could not be purged")
                    }
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_responses_call_id_is_read_in_its_compact_form_too() {
        let resp = sip::parse_datagram(
            bytes::Bytes::from_static(
                b"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nf: <sip:a@x>;tag=1\r\nt: <sip:b@x>;tag=2\r\ni: compact@host\r\nCSeq: 1 INVITE\r\nl: 0\r\n\r\n",
            ),
            &sip::Limits::DEFAULT,
        )
        .unwrap();
        assert_eq!(super::call_id(&resp).as_deref(), Some("compact@host"));
    }
}
