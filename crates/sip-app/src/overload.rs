//! Overload control: when the core cannot keep up — messages wait in its
//! inbound queue longer than `limits.overload_delay_ms` without a break for
//! a tenth of a second (a standing queue, as CoDel judges a router's queue:
//! a burst that drains is not overload), the queue passes three quarters of
//! its size, or database writes take longer than half of SIP's T1 (250 ms,
//! so that no client retransmits because of the disk) for as long — new requests
//! from sources that are not signed in are answered 503 with Retry-After
//! before any digest verification or database work, so that what is
//! already under way finishes and registered users keep being served.
//! Judging by delay, not by length, is what lets the server run at its
//! full capacity: at 90% of it, queues of several hundred messages come and
//! go within milliseconds (measured in bench/README.md), and a length
//! threshold shed some of them.
//!
//! Never shed: responses, ACK and CANCEL, requests inside a dialog, and
//! requests answering one of our challenges (a nonce of ours that is still
//! valid: one HMAC to check). Shed last: new requests from an address a
//! live registration came from before the pressure began, or over a
//! connection one came on before it began, only when such requests alone
//! fill three quarters of a queue (they are served ahead of the rest while
//! the queue is that full: `priority`). The rest is shed as soon as pressure
//! begins. Each message is judged by the
//! state at that moment, and the first message that waited less than the
//! target ends the pressure, so full service returns the moment the queue
//! drains.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use sip::headers::AuthValue;
use sip::{HeaderKind, Message, Method, RequestFields};
use sip_transport::{Protocol, Source};

use super::writes::{Writes, MAX_PENDING_WRITES};
use super::Core;

/// Why a request was shed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pressure {
    /// Messages waiting for the core.
    InboundQueue,
    /// Database writes waiting for the store.
    StoreQueue,
}

impl Pressure {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Pressure::InboundQueue => "inbound_queue",
            Pressure::StoreQueue => "store_queue",
        }
    }
}

/// How long waits must stay above the target before they count as a
/// standing queue (CoDel's interval, scaled to a SIP core's work).
pub(crate) const STANDING_AFTER: Duration = Duration::from_millis(100);

/// A condition that counts only once it has held, at every look, for
/// `STANDING_AFTER`.
#[derive(Debug, Default)]
pub(crate) struct Standing {
    above_since: Option<Instant>,
}

impl Standing {
    pub(crate) fn update(&mut self, above: bool, now: Instant) {
        if !above {
            self.above_since = None;
        } else if self.above_since.is_none() {
            self.above_since = Some(now);
        }
    }

    pub(crate) fn holds(&self, now: Instant) -> bool {
        self.above_since
            .is_some_and(|t| now.saturating_duration_since(t) >= STANDING_AFTER)
    }
}

/// Watches how long messages waited for the core, and the store's queue.
#[derive(Debug)]
pub(crate) struct QueueDelay {
    target: Duration,
    delay: Standing,
    /// Database writes finishing later than `STORE_TARGET` after they were
    /// issued, or `STORE_SOFT` of them in flight (a stall: none finishes).
    /// A checkpoint of the database, or a disk shared with other work, can
    /// hold the writer for tens of milliseconds; the writes that queued
    /// meanwhile are a burst, not overload.
    store: Standing,
    /// The longest wait seen since the metrics last read it.
    pub(crate) worst: Duration,
}

impl QueueDelay {
    pub(crate) fn new(target: Duration) -> Self {
        QueueDelay {
            target,
            delay: Standing::default(),
            store: Standing::default(),
            worst: Duration::ZERO,
        }
    }

    /// A message received at `received` reaches the core at `now`, with
    /// `writes` as they are.
    pub(crate) fn observe(&mut self, received: Instant, now: Instant, writes: &Writes) {
        self.observe_with(received, now, writes.last_wait(), writes.in_flight());
    }

    fn observe_with(
        &mut self,
        received: Instant,
        now: Instant,
        write_wait: Duration,
        writes: usize,
    ) {
        let waited = now.saturating_duration_since(received);
        self.worst = self.worst.max(waited);
        self.delay.update(waited > self.target, now);
        // The last write's time counts only while writes are waiting: once
        // none is in flight the store keeps nobody waiting, however long
        // the last one took (a database that was unreachable, then back).
        self.store.update(
            (writes > 0 && write_wait > STORE_TARGET) || writes >= STORE_SOFT,
            now,
        );
    }

    /// Whether waits have stayed above the target for `STANDING_AFTER`.
    pub(crate) fn standing(&self, now: Instant) -> bool {
        self.delay.holds(now)
    }

    /// Whether writes have stayed slow (or piled up) for `STANDING_AFTER`.
    pub(crate) fn store_standing(&self, now: Instant) -> bool {
        self.store.holds(now)
    }

    /// Whether pressure may be building: the last message waited longer
    /// than the target, or the store's queue is long.
    pub(crate) fn rising(&self) -> bool {
        self.delay.above_since.is_some() || self.store.above_since.is_some()
    }
}

/// How long a write may take, from the core issuing it to its commit: half
/// of SIP's T1, so that a client never retransmits because of the disk.
/// Writes normally take a few milliseconds (group commit); a count of
/// writes in flight, the earlier signal, shed registrations in most runs of
/// bench/capacity.sh at half the capacity when the shared disk paused.
pub(crate) const STORE_TARGET: Duration = Duration::from_millis(250);

/// Store writes in flight where shedding starts (held for
/// `STANDING_AFTER`), and where even familiar sources are shed (at once).
const STORE_SOFT: usize = MAX_PENDING_WRITES / 2;
const STORE_HARD: usize = MAX_PENDING_WRITES * 7 / 8;

/// Inbound messages waiting where every new request from an unfamiliar
/// source is shed, and where familiar ones are once the first lane alone
/// holds as many: three quarters of the queue (beyond it the transport
/// drops datagrams).
pub(crate) fn hard_queue() -> usize {
    sip_transport::DEFAULT_INBOUND_QUEUE * 3 / 4
}

impl<S: store::Store> Core<S> {
    /// Whether this new request is to be shed, and why. Cheap when there is
    /// no pressure: two loads and two comparisons.
    pub(crate) fn shed(
        &self,
        msg: &Message,
        f: &RequestFields<'_>,
        src: &Source,
    ) -> Option<Pressure> {
        let queue = self.inbound_depth;
        let writes = self.writes.in_flight();
        let now = Instant::now();
        // The store's queue concerns the requests that always write; a
        // MESSAGE writes only for an offline recipient, and then meets the
        // write permits ("Storage Busy") itself.
        let writer = matches!(
            f.method,
            Method::Register | Method::Subscribe | Method::Publish
        );
        let store_hard = writer && writes >= STORE_HARD;
        let pressure = if queue >= hard_queue() || self.queue_delay.standing(now) {
            Pressure::InboundQueue
        } else if store_hard || (writer && self.queue_delay.store_standing(now)) {
            Pressure::StoreQueue
        } else {
            return None;
        };
        if f.to.tag().is_some() || matches!(f.method, Method::Ack | Method::Cancel) {
            return None;
        }
        if self.answers_our_challenge(msg) {
            return None;
        }
        // Those served first under pressure (`priority`) are shed only
        // when they alone fill most of the queue.
        let hard = self.lanes.first_len() >= hard_queue() || store_hard;
        if !hard && self.familiar(src) {
            return None;
        }
        Some(pressure)
    }

    /// Counts and answers a shed request (503, Retry-After; nothing kept).
    pub(crate) async fn answer_shed(&mut self, r: &super::Req<'_>, why: Pressure) {
        match why {
            Pressure::InboundQueue => self.metrics.shed_inbound_queue.fetch_add(1, Relaxed),
            Pressure::StoreQueue => self.metrics.shed_store_queue.fetch_add(1, Relaxed),
        };
        self.log_refusal(r, "shed: the server is overloaded", why.label());
        let bytes = self.build(
            r,
            503,
            "Service Unavailable (Overloaded)",
            &[("Retry-After", "2")],
        );
        self.metrics
            .count_response(crate::metrics::method_label(r.f.method), 503);
        self.txn
            .respond_and_forget(r.id, 503, bytes, std::time::Instant::now(), &mut self.out);
        self.flush().await;
    }

    pub(crate) fn answers_our_challenge(&self, msg: &Message) -> bool {
        let now = u64::try_from(crate::unix_now()).unwrap_or(0);
        msg.headers_of(HeaderKind::Authorization)
            .chain(msg.headers_of(HeaderKind::ProxyAuthorization))
            .filter_map(|h| AuthValue::parse(h.value).ok())
            .any(|a| self.verifier.answers_our_challenge(&a, now))
    }

    /// Whether a live registration came from this source before the
    /// pressure began (a flood whose registrations succeed must not make
    /// itself familiar): from its UDP address, or over its connection.
    pub(crate) fn familiar(&self, src: &Source) -> bool {
        let since = match src.protocol {
            Protocol::Udp => self.location.source_since(&format!("udp:{}", src.remote)),
            _ => self.location.flow_since(registrar::Flow(src.flow.0)),
        };
        since.is_some_and(|s| s <= self.pressure_seq.unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGET: Duration = Duration::from_millis(50);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_burst_that_drains_is_not_overload() {
        let t0 = Instant::now();
        let mut d = QueueDelay::new(TARGET);
        // Waits of 80 ms for 90 ms, then one message taken at once.
        for i in 0..10 {
            let now = t0 + ms(100 + i * 10);
            d.observe_with(now - ms(80), now, ms(0), 0);
            assert!(
                !d.standing(now),
                "at {i}: above the target for under 100 ms"
            );
        }
        let now = t0 + ms(195);
        d.observe_with(now - ms(1), now, ms(0), 0);
        assert!(!d.standing(now + ms(50)), "a short wait ends the episode");
        assert_eq!(d.worst, ms(80));
    }

    #[test]
    fn waits_above_the_target_for_the_interval_are_overload_until_one_is_short() {
        let t0 = Instant::now();
        let mut d = QueueDelay::new(TARGET);
        let mut now = t0 + ms(1000);
        d.observe_with(now - ms(51), now, ms(0), 0);
        assert!(!d.standing(now));
        now += ms(99);
        d.observe_with(now - ms(60), now, ms(0), 0);
        assert!(!d.standing(now));
        now += ms(1);
        d.observe_with(now - ms(70), now, ms(0), 0);
        assert!(d.standing(now), "100 ms above the target");
        // Nothing observed meanwhile: the state holds (the core was busy).
        assert!(d.standing(now + ms(500)));
        // Exactly the target is not above it; it ends the pressure at once.
        now += ms(10);
        d.observe_with(now - TARGET, now, ms(0), 0);
        assert!(!d.standing(now));
    }

    #[test]
    fn a_long_store_queue_counts_once_it_has_lasted() {
        let t0 = Instant::now();
        let mut d = QueueDelay::new(TARGET);
        d.observe_with(t0, t0, ms(0), STORE_SOFT);
        assert!(!d.store_standing(t0 + ms(99)));
        d.observe_with(t0 + ms(60), t0 + ms(60), ms(0), STORE_SOFT + 10);
        assert!(d.store_standing(t0 + ms(100)));
        assert!(!d.standing(t0 + ms(100)), "no wait above the target");
        d.observe_with(t0 + ms(120), t0 + ms(120), ms(0), STORE_SOFT - 1);
        assert!(!d.store_standing(t0 + ms(500)), "the queue drained");
    }

    #[test]
    fn slow_writes_count_once_they_have_lasted_and_a_fast_one_ends_them() {
        let t0 = Instant::now();
        let mut d = QueueDelay::new(TARGET);
        // A checkpoint: writes took 200 ms, then 260 ms for 90 ms.
        d.observe_with(t0, t0, ms(200), 100);
        assert!(!d.store_standing(t0 + ms(500)), "under the target");
        d.observe_with(t0, t0, STORE_TARGET + ms(10), 100);
        d.observe_with(t0 + ms(90), t0 + ms(90), STORE_TARGET + ms(10), 100);
        assert!(!d.store_standing(t0 + ms(99)));
        assert!(d.store_standing(t0 + ms(100)), "slow for 100 ms");
        d.observe_with(t0 + ms(110), t0 + ms(110), ms(3), 100);
        assert!(!d.store_standing(t0 + ms(500)), "a fast write ends it");
    }

    #[test]
    fn a_slow_last_write_counts_only_while_writes_wait() {
        let t0 = Instant::now();
        let mut d = QueueDelay::new(TARGET);
        // The database was unreachable: the last write took seconds, and
        // nothing is in flight now that it is back.
        d.observe_with(t0, t0, ms(5000), 0);
        d.observe_with(t0 + ms(200), t0 + ms(200), ms(5000), 0);
        assert!(!d.store_standing(t0 + ms(300)), "no write waits");
        d.observe_with(t0 + ms(300), t0 + ms(300), ms(5000), 1);
        d.observe_with(t0 + ms(400), t0 + ms(400), ms(5000), 1);
        assert!(
            d.store_standing(t0 + ms(400)),
            "a write waits behind slow ones"
        );
    }

    #[test]
    fn a_clock_that_reads_the_receive_time_after_now_counts_as_no_wait() {
        let t0 = Instant::now();
        let mut d = QueueDelay::new(TARGET);
        d.observe_with(t0 + ms(5), t0, ms(0), 0);
        assert_eq!(d.worst, Duration::ZERO);
        assert!(!d.standing(t0 + ms(500)));
    }
}
