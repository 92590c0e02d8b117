//! The transaction table: creation, matching, timers, and the public API.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sip::Message;

use crate::key::TxnKey;
use crate::wheel::Wheel;
use crate::Reliability;

/// Timer values and table size.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// RTT estimate (default 500 ms).
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses (4 s).
    pub t2: Duration,
    /// Maximum time a message stays in the network (5 s).
    pub t4: Duration,
    /// Transactions in progress at most; further requests get [`Full`].
    pub max_transactions: usize,
    /// Memory that completed non-INVITE server transactions (kept for
    /// retransmissions until timer J) may hold; beyond, the oldest go.
    pub max_completed_bytes: usize,
    /// Retry-After value for the 503 sent when full, in seconds.
    pub retry_after_secs: u32,
    /// How long an INVITE transaction may stay in Proceeding (no final response)
    /// before it is abandoned with a Timeout. RFC 3261 leaves this to the TU (a
    /// proxy's timer C, > 3 min); the layer enforces it too so that a TU that never
    /// answers cannot leak table entries. Non-INVITE server transactions are
    /// abandoned after 64*T1, when their client has given up.
    pub max_invite_proceeding: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            max_transactions: 100_000,
            // 256 MiB: about 350,000 completed transactions of ~700 bytes,
            // 11,000 a second for all of timer J, on a machine with 24 GiB.
            max_completed_bytes: 256 << 20,
            retry_after_secs: 5,
            max_invite_proceeding: Duration::from_secs(300),
        }
    }
}

/// Identifies a live transaction; stale ids are detected (generation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TxnId {
    index: u32,
    gen: u32,
}

/// The table is full: answer 503 statelessly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// What the caller must do.
#[derive(Debug, Clone)]
pub enum Action<D> {
    /// Send `bytes` to `dest` (a retransmission, an automatic 100 Trying, an ACK
    /// for a non-2xx final response, or a response/request the TU asked for).
    Send { dest: D, bytes: Bytes },
    /// A client transaction got no final response (timer B or F): the TU acts as
    /// if it had received 408. For a server INVITE transaction: no ACK came
    /// (timer H).
    Timeout { id: TxnId },
    /// The transaction has ended and its id is no longer valid.
    Terminated { id: TxnId },
}

/// Outcome of feeding a request to the server side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerEvent {
    /// A new transaction: hand the request to the TU.
    New(TxnId),
    /// A retransmission, absorbed (the last response may have been resent).
    Retransmission(TxnId),
    /// A retransmission of a non-INVITE request already answered: the final
    /// response was sent again.
    Answered,
    /// An ACK for a non-2xx final response, absorbed by its INVITE transaction.
    AckAbsorbed(TxnId),
    /// An ACK that matches no transaction in Completed (an ACK for a 2xx): the TU
    /// handles it (a proxy forwards it statelessly).
    AckForTu,
}

/// Outcome of feeding a response to the client side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientEvent {
    /// Pass the response to the TU.
    Deliver(TxnId),
    /// A retransmitted final response, absorbed (an ACK may have been resent).
    Absorbed(TxnId),
    /// No transaction matches: a stray response (a proxy may forward a 2xx
    /// statelessly; anything else is dropped).
    Stray,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    InviteServer,
    NonInviteServer,
    InviteClient,
    NonInviteClient,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Client INVITE before any response.
    Calling,
    /// Non-INVITE before any response (client and server).
    Trying,
    Proceeding,
    Completed,
    /// Server INVITE after the ACK.
    Confirmed,
    /// RFC 6026: after a 2xx to INVITE.
    Accepted,
}

/// Which timer slot fired: retransmission (A, E, G) or the state's deadline
/// (B, D, F, H, I, J, K, L, M).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimerSlot {
    Retransmit,
    Deadline,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Armed {
    pub(crate) id: TxnId,
    pub(crate) slot: TimerSlot,
    pub(crate) gen: u32,
}

#[derive(Debug)]
pub(crate) struct Txn<D> {
    pub(crate) key: TxnKey,
    pub(crate) kind: Kind,
    pub(crate) state: State,
    pub(crate) reliability: Reliability,
    pub(crate) dest: D,
    /// Server: the last response sent. Client: the request.
    pub(crate) last_out: Option<Bytes>,
    /// Client INVITE: the request, to build the ACK for a non-2xx response.
    /// Boxed: only client INVITEs carry one, and an inline `Message` would make
    /// every transaction ~1 KB larger.
    pub(crate) request: Option<Box<Message>>,
    /// Client INVITE: the ACK sent for a non-2xx response.
    pub(crate) ack: Option<Bytes>,
    pub(crate) interval: Duration,
    pub(crate) retransmit_gen: u32,
    pub(crate) deadline_gen: u32,
}

/// A table slot. The transaction is boxed so that a slot is two words: the
/// table keeps its capacity at the peak of a burst, and with inline
/// transactions that capacity cost ~250 bytes per slot long after the burst
/// (measured with heaptrack: 8 MB kept after 10,000 registrations).
#[derive(Debug)]
struct Slot<D> {
    gen: u32,
    txn: Option<Box<Txn<D>>>,
}

/// The transaction layer. `D` is the caller's notion of a destination (a socket
/// address, a connection handle...), returned in [`Action::Send`].
#[derive(Debug)]
pub struct TxnLayer<D> {
    pub(crate) config: Config,
    slots: Vec<Slot<D>>,
    free: Vec<u32>,
    index: HashMap<TxnKey, TxnId>,
    pub(crate) wheel: Wheel<Armed>,
    live: usize,
    pub(crate) completed: crate::completed::Completed<D>,
}

impl<D: Clone> TxnLayer<D> {
    pub fn new(config: Config, now: Instant) -> Self {
        TxnLayer {
            config,
            slots: Vec::new(),
            free: Vec::new(),
            index: HashMap::new(),
            wheel: Wheel::new(now),
            live: 0,
            completed: crate::completed::Completed::new(config.max_completed_bytes),
        }
    }

    /// Transactions in progress (completed non-INVITE server transactions
    /// are counted by [`TxnLayer::completed_len`]).
    pub fn len(&self) -> usize {
        self.live
    }

    /// Completed non-INVITE server transactions kept for retransmissions.
    pub fn completed_len(&self) -> usize {
        self.completed.len()
    }

    /// The memory those hold, in bytes (as accounted against
    /// [`Config::max_completed_bytes`]).
    pub fn completed_bytes(&self) -> usize {
        self.completed.bytes()
    }

    /// Completed transactions dropped before timer J to stay within the bound.
    pub fn completed_evicted(&self) -> u64 {
        self.completed.evicted()
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// The earliest time [`TxnLayer::poll`] has work, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.wheel.next_deadline()
    }

    /// The destination of a live transaction.
    pub fn dest(&self, id: TxnId) -> Option<&D> {
        self.get(id).map(|t| &t.dest)
    }

    pub(crate) fn lookup(&self, key: &TxnKey) -> Option<TxnId> {
        self.index.get(key).copied()
    }

    pub(crate) fn get(&self, id: TxnId) -> Option<&Txn<D>> {
        let s = self.slots.get(id.index as usize)?;
        if s.gen == id.gen {
            s.txn.as_deref()
        } else {
            None
        }
    }

    pub(crate) fn get_mut(&mut self, id: TxnId) -> Option<&mut Txn<D>> {
        let s = self.slots.get_mut(id.index as usize)?;
        if s.gen == id.gen {
            s.txn.as_deref_mut()
        } else {
            None
        }
    }

    pub(crate) fn insert(&mut self, txn: Txn<D>) -> Result<TxnId, Full> {
        if self.live >= self.config.max_transactions {
            return Err(Full);
        }
        let key = txn.key.clone();
        let id = match self.free.pop() {
            Some(index) => {
                let s = &mut self.slots[index as usize];
                s.txn = Some(Box::new(txn));
                TxnId { index, gen: s.gen }
            }
            None => {
                let index = u32::try_from(self.slots.len()).map_err(|_| Full)?;
                self.slots.push(Slot {
                    gen: 0,
                    txn: Some(Box::new(txn)),
                });
                TxnId { index, gen: 0 }
            }
        };
        self.index.insert(key, id);
        self.live += 1;
        Ok(id)
    }

    pub(crate) fn terminate(&mut self, id: TxnId, out: &mut Vec<Action<D>>) {
        let Some(s) = self.slots.get_mut(id.index as usize) else {
            return;
        };
        if s.gen != id.gen {
            return;
        }
        if let Some(t) = s.txn.take() {
            if self.index.get(&t.key) == Some(&id) {
                self.index.remove(&t.key);
            }
            s.gen = s.gen.wrapping_add(1);
            self.free.push(id.index);
            self.live -= 1;
            out.push(Action::Terminated { id });
        }
    }

    /// Arms a timer slot, cancelling whatever that slot had armed.
    pub(crate) fn arm(&mut self, id: TxnId, slot: TimerSlot, at: Instant) {
        let Some(t) = self.get_mut(id) else { return };
        let gen = match slot {
            TimerSlot::Retransmit => {
                t.retransmit_gen = t.retransmit_gen.wrapping_add(1);
                t.retransmit_gen
            }
            TimerSlot::Deadline => {
                t.deadline_gen = t.deadline_gen.wrapping_add(1);
                t.deadline_gen
            }
        };
        self.wheel.insert(at, Armed { id, slot, gen });
    }

    /// Cancels a timer slot.
    pub(crate) fn disarm(&mut self, id: TxnId, slot: TimerSlot) {
        if let Some(t) = self.get_mut(id) {
            match slot {
                TimerSlot::Retransmit => t.retransmit_gen = t.retransmit_gen.wrapping_add(1),
                TimerSlot::Deadline => t.deadline_gen = t.deadline_gen.wrapping_add(1),
            }
        }
    }

    /// Fires every timer due at `now`.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<Action<D>>) {
        let mut due = Vec::new();
        self.wheel.advance(now, |a| due.push(a));
        for a in due {
            let current = match self.get(a.id) {
                Some(t) => match a.slot {
                    TimerSlot::Retransmit => t.retransmit_gen == a.gen,
                    TimerSlot::Deadline => t.deadline_gen == a.gen,
                },
                None => false,
            };
            if !current {
                continue;
            }
            let kind = match self.get(a.id) {
                Some(t) => t.kind,
                None => continue,
            };
            match kind {
                Kind::InviteServer | Kind::NonInviteServer => {
                    self.server_timer(a.id, a.slot, now, out)
                }
                Kind::InviteClient | Kind::NonInviteClient => {
                    self.client_timer(a.id, a.slot, now, out)
                }
            }
        }
        self.completed.expire(now);
        self.release_capacity();
    }

    /// After a burst the index keeps the capacity of its peak; give most of it
    /// back once the table has drained to a quarter of that. Rehashing is O(n)
    /// but happens only after the live count fell by three quarters, so it is
    /// amortised over the removals that got it there.
    fn release_capacity(&mut self) {
        const FLOOR: usize = 1024;
        let len = self.index.len();
        if self.index.capacity() > FLOOR && len.saturating_mul(4) < self.index.capacity() {
            self.index.shrink_to(len.saturating_mul(2).max(FLOOR));
        }
    }

    /// Linger time for Completed/Confirmed states: `unreliable` on UDP, zero otherwise.
    pub(crate) fn linger(&self, r: Reliability, unreliable: Duration) -> Duration {
        match r {
            Reliability::Reliable => Duration::ZERO,
            Reliability::Unreliable => unreliable,
        }
    }
}

/// The stateless 503 answer to a request that found the table full.
pub fn service_unavailable(req: &Message, retry_after_secs: u32) -> Bytes {
    sip::build::ResponseBuilder::new(req, 503, "Service Unavailable (Transaction Table Full)")
        .to_tag("tfull")
        .header("Retry-After", &retry_after_secs.to_string())
        .finish()
}
