//! The media relay (TURN, RFC 8656): [`serve`] (the listeners and the
//! relayed sockets), [`engine`] (allocations, permissions, channels,
//! quotas: every decision, no I/O), [`auth`] (the long-term credential
//! mechanism with a SIP user's digest secret as the key), [`calls`] (the
//! calls the proxy relays and the addresses their SDP names: the only
//! peers a permission is granted to), [`peer`] (the addresses never
//! relayed to), [`credentials`] (web clients' short-lived credentials).
//! The wire format is the `stun` crate's.

#![forbid(unsafe_code)]

pub mod auth;
pub mod calls;
pub mod credentials;
pub mod engine;
pub mod metrics;
pub mod peer;
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

    fn insert(&self, key: String) {
        let now = Instant::now();
        let mut m = self.map();
        m.retain(|_, at| now.saturating_duration_since(*at) < REVOCATION_MEMORY);
        m.insert(key, now);
        drop(m);
        self.revocations.fetch_add(1, Ordering::AcqRel);
    }

    /// `aor`'s allocations made until now end.
    pub fn revoke(&self, aor: &str) {
        self.insert(format!("u {aor}"));
    }

    /// The allocations made with web credentials of user-API session
    /// `session` (its public id) end: it was signed out.
    pub fn revoke_session(&self, session: &str) {
        self.insert(format!("s {session}"));
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
