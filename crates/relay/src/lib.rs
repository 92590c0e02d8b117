//! The media relay (TURN, RFC 8656): [`serve`] (the listeners and the
//! relayed sockets), [`engine`] (allocations, permissions, channels,
//! quotas: every decision, no I/O), [`auth`] (the long-term credential
//! mechanism with a SIP user's digest secret as the key), [`calls`] (the
//! calls the proxy relays and the addresses their SDP names: the only
//! peers a permission is granted to), [`peer`] (the addresses never
//! relayed to), [`credentials`] (web clients' short-lived credentials),
//! [`pool_key`] (an edge's relay asking the pool for a user's key).
//! The wire format is the `stun` crate's.

#![forbid(unsafe_code)]

pub mod auth;
pub mod calls;
pub mod credentials;
pub mod engine;
pub mod metrics;
pub mod peer;
pub mod pool_key;
pub mod serve;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What the SIP core tells the relay, shared: the calls it relays, and
/// users whose access ended (disabled, removed, a new password, signed
/// out everywhere) — their allocations made before then end at the
/// relay's next tick.
#[derive(Debug, Default)]
pub struct Control {
    pub calls: calls::Calls,
    /// Users, and web clients' sessions, whose allocations made before
    /// the time given end.
    revoked: Mutex<HashMap<String, Instant>>,
    revocations: AtomicU64,
    /// Woken at each revocation: the relay acts on it at once rather than
    /// at its next tick.
    pub(crate) revoked_now: tokio::sync::Notify,
}

/// How long a revocation is remembered: many ticks of the relay.
const REVOCATION_MEMORY: Duration = Duration::from_secs(60);

impl Control {
    pub fn new() -> Control {
        Control::default()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.revoked.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn insert(&self, key: String, at: Instant) {
        let now = Instant::now();
        let mut m = self.map();
        m.retain(|_, t| now.saturating_duration_since(*t) < REVOCATION_MEMORY);
        match m.get_mut(&key) {
            // Told again: nothing new.
            Some(t) if *t >= at => return,
            Some(t) => *t = at,
            None => {
                m.insert(key, at);
            }
        }
        drop(m);
        self.revocations.fetch_add(1, Ordering::AcqRel);
        self.revoked_now.notify_one();
    }

    /// `aor`'s allocations made until now end.
    pub fn revoke(&self, aor: &str) {
        self.insert(format!("u {aor}"), Instant::now());
    }

    /// `aor`'s allocations made until `at` end (an edge's relay, told by
    /// the pool when the user lost access; told again each second while
    /// the pool remembers it, which changes nothing once applied).
    pub fn revoke_at(&self, aor: &str, at: Instant) {
        self.insert(format!("u {aor}"), at);
    }

    /// The allocations made with web credentials of user-API session
    /// `session` (its public id) end: it was signed out.
    pub fn revoke_session(&self, session: &str) {
        self.insert(format!("s {session}"), Instant::now());
    }

    /// Whether an allocation of `aor`'s made at `made` (with the web
    /// credentials of `session`, if any) has been revoked.
    pub fn revoked(&self, aor: &str, session: Option<&str>, made: Instant) -> bool {
        let m = self.map();
        let hit = |k: String| m.get(&k).is_some_and(|at| made <= *at);
        hit(format!("u {aor}")) || session.is_some_and(|s| hit(format!("s {s}")))
    }

    pub fn revocation_generation(&self) -> u64 {
        self.revocations.load(Ordering::Acquire)
    }
}
