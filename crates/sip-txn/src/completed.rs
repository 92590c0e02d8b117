//! Completed non-INVITE server transactions (RFC 3261 §17.2.2, state
//! Completed, until timer J). All they still do is answer a retransmitted
//! request with the final response again, so all that is kept is the key,
//! where the request came from and that response — not a transaction slot —
//! and the memory they hold is bounded in bytes: when the bound is reached the
//! oldest go first. A retransmission that arrives after its entry went is a
//! new request to the TU, which for REGISTER and MESSAGE is harmless (the
//! registrar orders by Call-ID/CSeq; a MESSAGE's retransmission of one whose
//! entry was evicted under pressure is the price of not refusing new work).
//! They never count toward refusing new transactions.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use bytes::Bytes;

use crate::key::{MethodKey, TxnKey};

/// What one entry costs besides its key's text and its response: the map's
/// slot (key, entry, hash metadata) and the queue's.
const OVERHEAD: usize =
    2 * std::mem::size_of::<TxnKey>() + std::mem::size_of::<(Instant, u64)>() + 64 + 32;

struct Entry<D> {
    seq: u64,
    dest: D,
    response: Bytes,
    cost: usize,
}

/// The completed transactions, oldest first.
pub(crate) struct Completed<D> {
    map: HashMap<TxnKey, Entry<D>>,
    /// Expiry order, which is insertion order (timer J is one constant).
    queue: VecDeque<(Instant, u64, TxnKey)>,
    bytes: usize,
    max_bytes: usize,
    seq: u64,
    evicted: u64,
}

impl<D> std::fmt::Debug for Completed<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Completed(len={}, bytes={}, evicted={})",
            self.map.len(),
            self.bytes,
            self.evicted
        )
    }
}

/// Bytes of text a key holds.
fn key_text(k: &TxnKey) -> usize {
    let m = |m: &MethodKey| match m {
        MethodKey::Other(s) => s.len(),
        _ => 0,
    };
    match k {
        TxnKey::Rfc3261 {
            branch,
            sent_by,
            method,
        } => branch.len() + sent_by.len() + m(method),
        TxnKey::Rfc2543 {
            request_uri,
            from_tag,
            call_id,
            via,
            method,
            ..
        } => request_uri.len() + from_tag.len() + call_id.len() + via.len() + m(method),
        TxnKey::Client { branch, method } => branch.len() + m(method),
    }
}

impl<D: Clone> Completed<D> {
    pub(crate) fn new(max_bytes: usize) -> Self {
        Completed {
            map: HashMap::new(),
            queue: VecDeque::new(),
            bytes: 0,
            max_bytes,
            seq: 0,
            evicted: 0,
        }
    }

    /// Keeps `response` for retransmissions of the request `key` names until
    /// `until`; the oldest entries go if the bound is exceeded.
    pub(crate) fn insert(&mut self, key: TxnKey, dest: D, response: Bytes, until: Instant) {
        self.seq += 1;
        let cost = OVERHEAD + 2 * key_text(&key) + response.len();
        if let Some(old) = self.map.insert(
            key.clone(),
            Entry {
                seq: self.seq,
                dest,
                response,
                cost,
            },
        ) {
            self.bytes = self.bytes.saturating_sub(old.cost);
        }
        self.bytes += cost;
        self.queue.push_back((until, self.seq, key));
        while self.bytes > self.max_bytes {
            if !self.pop_front() {
                break;
            }
            self.evicted += 1;
        }
    }

    /// The response to send again for a retransmission of `key`.
    pub(crate) fn get(&self, key: &TxnKey) -> Option<(&D, &Bytes)> {
        self.map.get(key).map(|e| (&e.dest, &e.response))
    }

    /// Forgets the entries whose timer J has fired.
    pub(crate) fn expire(&mut self, now: Instant) {
        while self.queue.front().is_some_and(|(until, ..)| *until <= now) {
            self.pop_front();
        }
        if self.queue.capacity() > 1024 && self.queue.len() * 4 < self.queue.capacity() {
            self.queue.shrink_to(self.queue.len() * 2);
        }
        if self.map.capacity() > 1024 && self.map.len() * 4 < self.map.capacity() {
            self.map.shrink_to(self.map.len() * 2);
        }
    }

    /// Drops the oldest entry (skipping queue items of replaced entries);
    /// `false` when there is none.
    fn pop_front(&mut self) -> bool {
        while let Some((_, seq, key)) = self.queue.pop_front() {
            if self.map.get(&key).is_some_and(|e| e.seq == seq) {
                if let Some(e) = self.map.remove(&key) {
                    self.bytes = self.bytes.saturating_sub(e.cost);
                }
                return true;
            }
        }
        false
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn evicted(&self) -> u64 {
        self.evicted
    }
}
