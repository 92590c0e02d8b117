//! Flows: each stream connection and each UDP socket has an id the core uses to
//! answer on it. Stream flows are registered while their connection lives.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::Protocol;

/// Identifies a connection or a UDP socket. Ids are unique to the process
/// that made them: they start at a random point (see [`Flows::new`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId(pub u64);

impl std::fmt::Display for FlowId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "flow-{}", self.0)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct StreamFlow {
    pub(crate) tx: mpsc::Sender<Bytes>,
    pub(crate) protocol: Protocol,
    pub(crate) remote: SocketAddr,
    /// This side's address of the connection.
    pub(crate) local: SocketAddr,
    /// Wakes the connection's task to close it now (its peer stopped
    /// reading): dropping the sender alone would let the task drain the
    /// queue first, and go on reading from a peer that does not read.
    pub(crate) closer: std::sync::Arc<tokio::sync::Notify>,
    /// SHA-256 of the certificate the peer presented, if any.
    pub(crate) leaf: Option<[u8; 32]>,
}

/// The live stream flows. The lock is held only to clone or remove an entry,
/// never across an await.
#[derive(Debug)]
pub(crate) struct Flows {
    next: AtomicU64,
    streams: Mutex<HashMap<FlowId, StreamFlow>>,
    /// Flows closed since the owner last asked ([`Flows::take_closed`]);
    /// at most [`MAX_CLOSED`], the oldest dropped beyond.
    closed: Mutex<std::collections::VecDeque<FlowId>>,
}

/// A random 62-bit number, or if the system's generator fails (it does not
/// on Linux), one from the clock and the process id.
fn random_start() -> u64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    let n = if ring::rand::SystemRandom::new().fill(&mut b).is_ok() {
        u64::from_be_bytes(b)
    } else {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        t.rotate_left(17) ^ u64::from(std::process::id()).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    };
    n >> 2
}

/// Closed flows remembered until the owner asks.
const MAX_CLOSED: usize = 65_536;

impl Flows {
    /// Ids are handed out from a random point below 2^62, not from 1: a
    /// flow id outlives its process inside what others keep — the flow
    /// tokens of a dialog's Record-Route (RFC 5626), an edge's sealed Path
    /// and Route tokens, a registration through an edge in the database —
    /// and counting from 1 again after a restart (or on another node or
    /// edge of the pool) gave such a token the connection of whoever came
    /// first: a request for one user delivered to another. Two processes'
    /// ranges meet with a chance of about (connections made) / 2^62.
    pub(crate) fn new() -> Flows {
        Flows {
            next: AtomicU64::new(random_start()),
            streams: Mutex::default(),
            closed: Mutex::default(),
        }
    }

    pub(crate) fn next_id(&self) -> FlowId {
        FlowId(self.next.fetch_add(1, Ordering::Relaxed) + 1)
    }

    pub(crate) fn insert(&self, id: FlowId, flow: StreamFlow) {
        if let Ok(mut m) = self.streams.lock() {
            m.insert(id, flow);
        }
    }

    pub(crate) fn remove(&self, id: FlowId) {
        let removed = self
            .streams
            .lock()
            .map(|mut m| m.remove(&id).is_some())
            .unwrap_or(false);
        if removed {
            if let Ok(mut c) = self.closed.lock() {
                if c.len() >= MAX_CLOSED {
                    c.pop_front();
                }
                c.push_back(id);
            }
        }
    }

    /// The flows closed since the last call, oldest first.
    pub(crate) fn take_closed(&self) -> Vec<FlowId> {
        self.closed
            .lock()
            .map(|mut c| c.drain(..).collect())
            .unwrap_or_default()
    }

    pub(crate) fn get(&self, id: FlowId) -> Option<StreamFlow> {
        self.streams.lock().ok()?.get(&id).cloned()
    }

    /// A live flow of `protocol` to `remote`, for connection reuse.
    pub(crate) fn find(&self, protocol: Protocol, remote: SocketAddr) -> Option<FlowId> {
        let m = self.streams.lock().ok()?;
        m.iter()
            .find(|(_, f)| f.protocol == protocol && f.remote == remote)
            .map(|(id, _)| *id)
    }

    /// Closes now every connection whose peer presented one of these
    /// certificates (by SHA-256); returns how many.
    pub(crate) fn close_certified(&self, certs: &std::collections::HashSet<[u8; 32]>) -> usize {
        let hit: Vec<(FlowId, StreamFlow)> = match self.streams.lock() {
            Ok(m) => m
                .iter()
                .filter(|(_, f)| f.leaf.is_some_and(|l| certs.contains(&l)))
                .map(|(id, f)| (*id, f.clone()))
                .collect(),
            Err(_) => return 0,
        };
        for (id, f) in &hit {
            self.remove(*id);
            f.closer.notify_one();
        }
        hit.len()
    }

    pub(crate) fn len(&self) -> usize {
        self.streams.lock().map(|m| m.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_process_counts_flows_from_its_own_random_point() {
        let (a, b) = (Flows::new(), Flows::new());
        let (first_a, first_b) = (a.next_id(), b.next_id());
        assert_ne!(first_a, first_b);
        assert!(first_a.0 <= 1 << 62 && first_b.0 <= 1 << 62);
        assert_eq!(a.next_id().0, first_a.0 + 1);
        // Not from 1, as every process did before.
        assert!(first_a.0 > 1 << 20 || first_b.0 > 1 << 20);
    }
}
