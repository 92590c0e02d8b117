//! Who goes first when the queue is nearly full. The transport's queue is
//! first come, first served: during a flood, a registered user's MESSAGE
//! waited behind every flooding request the queue held (on this project's
//! test machine, about 3,500 of them: over a second in the debug build),
//! and the queue's length then had it shed with the flood. So while the
//! queue (with what the core has taken from it) holds three quarters of its
//! size — where every new request from an unfamiliar source is shed
//! (`overload::hard_queue`) — the core takes what waits into two lanes of
//! its own and serves the first lane first: responses, ACK and CANCEL,
//! requests inside a dialog routed through us or of a subscription we
//! serve, requests answering one of our challenges, and new requests from a
//! source that registered before the pressure began ([`Core::shed`] exempts
//! the same). The rest is handled in arrival order after them — most of it
//! shed.
//!
//! Below that, nothing is taken early: each message goes straight from the
//! queue to the core, as it arrived, and pressure is judged by each
//! message's own wait. (Reordering from the first wait above the target
//! made new requests wait behind the rest in bursts the queue absorbs by
//! itself: in CI, SIPp retransmitted and took the second challenge for an
//! error, and a burst of SUBSCRIBEs from one user was shed as overload.)
//! The lanes hold at most as many messages as the transport's queue does;
//! beyond that, messages stay in the transport's queue.

use std::collections::VecDeque;

use sip::headers::Route;
use sip::uri::Uri;
use sip::{Method, RequestFields};
use sip_transport::Inbound;
use tokio::sync::mpsc;

use super::Core;

/// Messages the core has taken from the transport's queue, by lane.
#[derive(Debug, Default)]
pub(crate) struct Lanes {
    first: VecDeque<Inbound>,
    rest: VecDeque<Inbound>,
}

impl Lanes {
    /// The most the lanes hold (the transport's queue size).
    pub(crate) fn capacity() -> usize {
        sip_transport::DEFAULT_INBOUND_QUEUE
    }

    pub(crate) fn len(&self) -> usize {
        self.first.len() + self.rest.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.first.is_empty() && self.rest.is_empty()
    }

    /// Messages waiting in the first lane.
    pub(crate) fn first_len(&self) -> usize {
        self.first.len()
    }

    fn push(&mut self, m: Inbound, first: bool) {
        if first {
            self.first.push_back(m);
        } else {
            self.rest.push_back(m);
        }
    }

    /// The next message to handle: the first lane's, else the rest's.
    pub(crate) fn pop(&mut self) -> Option<Inbound> {
        self.first.pop_front().or_else(|| self.rest.pop_front())
    }
}

impl<S: store::Store> Core<S> {
    /// Takes what waits in `inbound` into the lanes, up to their capacity.
    pub(crate) fn take_waiting(&mut self, inbound: &mut mpsc::Receiver<Inbound>) {
        while self.lanes.len() < Lanes::capacity() {
            let Ok(m) = inbound.try_recv() else { break };
            let first = self.goes_first(&m);
            self.lanes.push(m, first);
        }
    }

    /// Puts `m` in its lane (the core took it with the queue nearly full).
    pub(crate) fn queue_in_lane(&mut self, m: Inbound) {
        let first = self.goes_first(&m);
        self.lanes.push(m, first);
    }

    /// Whether `m` is one of those served first (the module's comment).
    fn goes_first(&self, m: &Inbound) -> bool {
        let msg = &m.message;
        if msg.is_response() {
            return true;
        }
        let Ok(f) = RequestFields::extract(msg) else {
            return false;
        };
        if matches!(f.method, Method::Ack | Method::Cancel) {
            return true;
        }
        if let Some(tag) = f.to.tag() {
            // A tag alone is no dialog: anyone can write one.
            let our_subscription = crate::presence::parse_tag(tag)
                .is_some_and(|id| self.presence.subs.contains_key(&id));
            let routed_through_us = msg
                .list::<Route>()
                .next()
                .and_then(Result::ok)
                .is_some_and(|r| matches!(r.uri, Uri::Sip(u) if self.is_our_route(&u)));
            if our_subscription || routed_through_us {
                return true;
            }
        }
        self.answers_our_challenge(msg) || self.familiar(&m.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn inbound(text: &str, received: Instant) -> Inbound {
        let message = sip::parse_datagram(text.as_bytes().to_vec().into(), &sip::Limits::DEFAULT)
            .expect("parses");
        Inbound {
            message,
            source: sip_transport::Source {
                protocol: sip_transport::Protocol::Udp,
                remote: "192.0.2.1:5060".parse().expect("addr"),
                local: "127.0.0.1:5060".parse().expect("addr"),
                flow: sip_transport::FlowId(1),
                peer_certificates: None,
            },
            received,
            share: sip_transport::Share::default(),
        }
    }

    fn request(call: &str) -> String {
        format!(
            "OPTIONS sip:example.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK{call}\r\n\
             From: <sip:a@example.test>;tag=1\r\nTo: <sip:example.test>\r\nCall-ID: {call}\r\n\
             CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
    }

    #[test]
    fn the_first_lane_is_served_first_and_each_lane_in_arrival_order() {
        let t0 = Instant::now();
        let mut l = Lanes::default();
        for (i, first) in [false, true, false, true].into_iter().enumerate() {
            let at = t0 + Duration::from_millis(i as u64);
            l.push(inbound(&request(&format!("c{i}")), at), first);
        }
        assert_eq!(l.len(), 4);
        assert_eq!(l.first_len(), 2);
        let order: Vec<String> = std::iter::from_fn(|| l.pop())
            .map(|m| {
                RequestFields::extract(&m.message)
                    .expect("request")
                    .call_id
                    .to_owned()
            })
            .collect();
        assert_eq!(order, ["c1", "c3", "c0", "c2"]);
        assert!(l.is_empty());
    }
}
