//! Database writes in flight: a bounded number of them, and how long the
//! last one to finish took from the moment the core issued it until its
//! commit reached the disk (the store's queueing delay, which overload
//! control judges as it judges the inbound queue's).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Database writes the core may have in flight; beyond, requests get 503.
/// At the measured capacity (about 19,000 registrations a second on one
/// core, bench/README.md) this is 200 ms of writes: a disk that stalls that
/// long is absorbed, not turned into refusals.
pub(crate) const MAX_PENDING_WRITES: usize = 4096;

#[derive(Debug)]
pub(crate) struct Writes {
    permits: Arc<Semaphore>,
    /// Microseconds the last finished write took.
    last_wait_us: Arc<AtomicU64>,
}

/// One write in flight; dropping it (when the write has finished) frees the
/// slot and records how long the write took.
#[derive(Debug)]
pub(crate) struct WritePermit {
    _permit: OwnedSemaphorePermit,
    issued: Instant,
    last_wait_us: Arc<AtomicU64>,
}

impl Drop for WritePermit {
    fn drop(&mut self) {
        let us = u64::try_from(self.issued.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.last_wait_us.store(us, Relaxed);
    }
}

impl Writes {
    pub(crate) fn new() -> Self {
        Writes {
            permits: Arc::new(Semaphore::new(MAX_PENDING_WRITES)),
            last_wait_us: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A slot, or `None` when `MAX_PENDING_WRITES` are in flight.
    pub(crate) fn try_acquire(&self) -> Option<WritePermit> {
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        Some(WritePermit {
            _permit: permit,
            issued: Instant::now(),
            last_wait_us: self.last_wait_us.clone(),
        })
    }

    pub(crate) fn in_flight(&self) -> usize {
        MAX_PENDING_WRITES - self.permits.available_permits()
    }

    /// How long the last write to finish took.
    pub(crate) fn last_wait(&self) -> Duration {
        Duration::from_micros(self.last_wait_us.load(Relaxed))
    }
}

/// What to answer for a write that failed: `failed` (a 500 built for the
/// request) as it is, or — when the database cannot be reached now — the
/// same response as 503 with Retry-After, so clients try again instead of
/// giving up. Returns the status and the bytes.
pub(crate) fn not_stored(e: &store::StoreError, failed: bytes::Bytes) -> (u16, bytes::Bytes) {
    if !matches!(e, store::StoreError::Unavailable(_)) {
        return (500, failed);
    }
    let Some(end) = failed.windows(2).position(|w| w == b"\r\n") else {
        return (500, failed);
    };
    let mut out = bytes::BytesMut::with_capacity(failed.len() + 64);
    out.extend_from_slice(
        b"SIP/2.0 503 Service Unavailable (Database Unreachable)\r\nRetry-After: 5",
    );
    out.extend_from_slice(&failed[end..]);
    (503, out.freeze())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_finished_write_frees_its_slot_and_records_its_wait() {
        let w = Writes::new();
        let p = w.try_acquire().expect("a slot");
        assert_eq!(w.in_flight(), 1);
        std::thread::sleep(Duration::from_millis(5));
        drop(p);
        assert_eq!(w.in_flight(), 0);
        assert!(w.last_wait() >= Duration::from_millis(5));
        let all: Vec<_> = (0..MAX_PENDING_WRITES)
            .map(|_| w.try_acquire().expect("a slot"))
            .collect();
        assert!(w.try_acquire().is_none(), "bounded");
        drop(all);
        assert!(w.try_acquire().is_some());
    }

    #[test]
    fn an_unreachable_database_turns_the_500_into_a_503_with_retry_after() {
        let failed = bytes::Bytes::from_static(
            b"SIP/2.0 500 Server Internal Error (Registration Not Stored)\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:a@example.com>;tag=2\r\nCall-ID: c\r\nCSeq: 2 REGISTER\r\nContent-Length: 0\r\n\r\n",
        );
        let (status, bytes) = not_stored(&store::StoreError::Db("x".into()), failed.clone());
        assert_eq!((status, &bytes), (500, &failed));
        let (status, bytes) = not_stored(&store::StoreError::Unavailable("down".into()), failed);
        assert_eq!(status, 503);
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.starts_with(
                "SIP/2.0 503 Service Unavailable (Database Unreachable)\r\nRetry-After: 5\r\nVia: "
            ),
            "{text}"
        );
        let m = sip::parse_datagram(bytes, &sip::Limits::default()).unwrap();
        assert!(m.is_response(), "{m:?}");
    }
}
