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
/// out everywhere) — their allocations made before then end at once. On
/// a front end it also holds what the user API hands browsers: the
/// relays its edges run.
#[derive(Debug, Default)]
pub struct Control {
    pub calls: calls::Calls,
    /// Users (`u AOR`) and web clients' sessions (`s ID`) whose
    /// allocations made before the time given end; with that time as Unix
    /// milliseconds, for the edges' snapshot.
    revoked: Mutex<Revoked>,
    revocations: AtomicU64,
    /// Woken at each revocation: the relay acts on it at once rather than
    /// at its next tick.
    pub(crate) revoked_now: tokio::sync::Notify,
    /// The `turn:`/`turns:` URIs of the relays the pool's edges run, as
    /// they last reported them.
    edge_urls: Mutex<Vec<String>>,
}

/// The revocations remembered, and when the old ones were last let go.
#[derive(Debug, Default)]
struct Revoked {
    map: HashMap<String, (Instant, u64)>,
    swept: Option<Instant>,
}

/// The revocation of every allocation (when more users lost access at
/// once than a snapshot carries).
const EVERYONE: &str = "*";

/// How long a revocation is remembered: many ticks of the relay, and
/// longer than an edge's snapshot carries it.
const REVOCATION_MEMORY: Duration = Duration::from_secs(60);

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Control {
    pub fn new() -> Control {
        Control::default()
    }

    fn revoked_lock(&self) -> std::sync::MutexGuard<'_, Revoked> {
        self.revoked.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn insert(&self, key: String, at: Instant, at_ms: u64) {
        let now = Instant::now();
        let mut g = self.revoked_lock();
        // Old revocations are let go at most once a second (a reload that
        // revokes thousands of users must not sweep the map each time).
        if g.swept
            .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1))
        {
            g.map
                .retain(|_, t| now.saturating_duration_since(t.0) < REVOCATION_MEMORY);
            g.swept = Some(now);
        }
        let m = &mut g.map;
        match m.get_mut(&key) {
            // Told again: nothing new.
            Some(t) if t.0 >= at => return,
            Some(t) => *t = (at, at_ms),
            None => {
                m.insert(key, (at, at_ms));
            }
        }
        drop(g);
        self.revocations.fetch_add(1, Ordering::AcqRel);
        self.revoked_now.notify_one();
    }

    /// `aor`'s allocations made until now end.
    pub fn revoke(&self, aor: &str) {
        self.insert(format!("u {aor}"), Instant::now(), unix_ms());
    }

    /// The allocations made with web credentials of user-API session
    /// `session` (its public id) end: it was signed out.
    pub fn revoke_session(&self, session: &str) {
        self.insert(format!("s {session}"), Instant::now(), unix_ms());
    }

    /// The revocations of the last `window`, newest first, at most `max`
    /// and `max_bytes` of keys: each a key (`u AOR`, `s SESSION`) and its
    /// Unix time in ms — what a front end puts in its edges' snapshot.
    /// When there are more, the last place goes to `*` with the newest
    /// time left out: every allocation made until then ends (its clients
    /// allocate again), so none of those left out survives.
    pub fn recent(&self, window: Duration, max: usize, max_bytes: usize) -> Vec<(String, u64)> {
        let now = Instant::now();
        let mut v: Vec<(String, u64)> = self
            .revoked_lock()
            .map
            .iter()
            .filter(|(_, t)| now.saturating_duration_since(t.0) <= window)
            .map(|(k, t)| (k.clone(), t.1))
            .collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.1));
        let mut bytes = 0;
        let fit = v
            .iter()
            .take_while(|(k, _)| {
                bytes += k.len();
                bytes <= max_bytes
            })
            .count();
        let max = max.min(fit.max(1)).max(1);
        if v.len() > max {
            let newest_left_out = v[max - 1].1;
            v.truncate(max - 1);
            v.push((EVERYONE.to_owned(), newest_left_out));
        }
        v
    }

    /// A revocation an edge learned from the pool's snapshot (a key as
    /// [`Control::recent`] gives it) applies to allocations made until
    /// `at`. `false`: not a key.
    pub fn revoke_key_at(&self, key: &str, at: Instant, at_ms: u64) -> bool {
        let ok = (key.starts_with("u sip:") || key.starts_with("s ") || key == EVERYONE)
            && key.len() <= 300
            && !key.chars().any(char::is_control);
        if ok {
            self.insert(key.to_owned(), at, at_ms);
        }
        ok
    }

    /// Whether an allocation of `aor`'s made at `made` (with the web
    /// credentials of `session`, if any) has been revoked.
    pub fn revoked(&self, aor: &str, session: Option<&str>, made: Instant) -> bool {
        let g = self.revoked_lock();
        let hit = |k: String| g.map.get(&k).is_some_and(|at| made <= at.0);
        hit(format!("u {aor}"))
            || session.is_some_and(|s| hit(format!("s {s}")))
            || hit(EVERYONE.to_owned())
    }

    pub fn revocation_generation(&self) -> u64 {
        self.revocations.load(Ordering::Acquire)
    }

    /// The relays of the pool's edges (`turn:` and `turns:` URIs).
    pub fn edge_urls(&self) -> Vec<String> {
        self.edge_urls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces what the edges reported of their relays.
    pub fn set_edge_urls(&self, urls: Vec<String>) {
        *self.edge_urls.lock().unwrap_or_else(|e| e.into_inner()) = urls;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocations_end_what_was_made_before_and_travel_to_edges_with_their_time() {
        let c = Control::new();
        let before = Instant::now();
        c.revoke("sip:alice@example.test");
        c.revoke_session("S1");
        let after = Instant::now() + Duration::from_millis(5);
        assert!(c.revoked("sip:alice@example.test", None, before));
        assert!(!c.revoked("sip:alice@example.test", None, after));
        assert!(c.revoked("sip:bob@example.test", Some("S1"), before));
        assert!(!c.revoked("sip:bob@example.test", Some("S2"), before));
        let recent = c.recent(Duration::from_secs(30), 10, 4096);
        assert_eq!(recent.len(), 2);
        assert!(recent.iter().any(|(k, _)| k == "u sip:alice@example.test"));
        assert!(c.recent(Duration::from_secs(30), 1, 4096).len() == 1);
        // A byte budget bounds it too: a first key of 24 bytes is over 20.
        let tight = c.recent(Duration::from_secs(30), 10, 20);
        assert_eq!(tight.len(), 1, "{tight:?}");
        assert_eq!(tight[0].0, "*");
        // On an edge: applied once, told again changes nothing.
        let edge = Control::new();
        for (k, ms) in &recent {
            assert!(edge.revoke_key_at(k, after, *ms));
        }
        let g = edge.revocation_generation();
        for (k, ms) in &recent {
            assert!(edge.revoke_key_at(k, after, *ms));
        }
        assert_eq!(edge.revocation_generation(), g);
        assert!(edge.revoked("sip:alice@example.test", None, before));
        assert!(!edge.revoke_key_at("x sip:mallory@example.test", after, 0));
        // More than a snapshot carries: the oldest give way to everyone.
        let many = Control::new();
        for i in 0..5 {
            many.revoke(&format!("sip:u{i}@example.test"));
        }
        let five = many.recent(Duration::from_secs(30), 5, 4096);
        assert!(five.iter().all(|(k, _)| k != "*"), "{five:?}");
        let three = many.recent(Duration::from_secs(30), 3, 4096);
        assert_eq!(three.len(), 3);
        assert_eq!(three[2].0, "*");
        let edge2 = Control::new();
        for (k, ms) in &three {
            assert!(edge2.revoke_key_at(k, after, *ms));
        }
        assert!(edge2.revoked("sip:anyone@example.test", None, before));
        assert!(!edge2.revoked(
            "sip:anyone@example.test",
            None,
            after + Duration::from_millis(1)
        ));
        assert!(!edge.revoke_key_at("u nobody", after, 0));
    }
}
