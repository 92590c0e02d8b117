//! Overload control: when the core cannot keep up — messages pile up in its
//! inbound queue, or database writes in the store's queue — new requests
//! from sources that are not signed in are answered 503 with Retry-After
//! before any digest verification or database work, so that what is
//! already under way finishes and registered users keep being served.
//!
//! Never shed: responses, ACK and CANCEL, requests inside a dialog, and
//! requests answering one of our challenges (a nonce of ours that is still
//! valid: one HMAC to check). Shed last: new requests from an address or
//! connection a live registration came from, only under heavy pressure. The
//! rest is shed as soon as pressure begins (`limits.overload_queue`). Each message is judged by the
//! state at that moment, so full service returns the moment the queues
//! drain.

use std::sync::atomic::Ordering::Relaxed;

use sip::headers::AuthValue;
use sip::{HeaderKind, Message, Method, RequestFields};
use sip_transport::{Protocol, Source};

use super::{Core, MAX_PENDING_WRITES};

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

/// Store writes in flight where shedding starts, and where even familiar
/// sources are shed.
const STORE_SOFT: usize = MAX_PENDING_WRITES / 2;
const STORE_HARD: usize = MAX_PENDING_WRITES * 7 / 8;

/// Inbound messages waiting where even familiar sources are shed: three
/// quarters of the queue (beyond it the transport drops datagrams).
pub(crate) fn hard_queue() -> usize {
    sip_transport::TransportConfig::default().inbound_queue * 3 / 4
}

impl Core {
    /// Whether this new request is to be shed, and why. Cheap when there is
    /// no pressure: two loads and two comparisons.
    pub(crate) fn shed(
        &self,
        msg: &Message,
        f: &RequestFields<'_>,
        src: &Source,
    ) -> Option<Pressure> {
        let queue = self.inbound_depth;
        let writes = MAX_PENDING_WRITES - self.writes.available_permits();
        let soft = self.cfg.overload_queue;
        let pressure = if queue >= soft {
            Pressure::InboundQueue
        } else if writes >= STORE_SOFT {
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
        let hard = queue >= hard_queue() || writes >= STORE_HARD;
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

    fn answers_our_challenge(&self, msg: &Message) -> bool {
        let now = u64::try_from(crate::unix_now()).unwrap_or(0);
        msg.headers_of(HeaderKind::Authorization)
            .chain(msg.headers_of(HeaderKind::ProxyAuthorization))
            .filter_map(|h| AuthValue::parse(h.value).ok())
            .any(|a| self.verifier.answers_our_challenge(&a, now))
    }

    /// Whether a live registration came from this source: its UDP address, or
    /// its connection.
    fn familiar(&self, src: &Source) -> bool {
        match src.protocol {
            Protocol::Udp => self.location.bound_source(&format!("udp:{}", src.remote)),
            _ => self.location.has_flow(registrar::Flow(src.flow.0)),
        }
    }
}
