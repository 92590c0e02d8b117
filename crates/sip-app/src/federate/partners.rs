//! What this server knows of each partner it has dealt with: counters for
//! administrators, and the limits on discovered partners (Lync's): a rate
//! of requests a second (1 a second once most of them fail, e.g. a partner
//! guessing user names), at most so many distinct local users reached in an
//! hour, past which the partner goes on the watch list and is refused until
//! an administrator clears it.
//!
//! Bounded: at most [`MAX_PARTNERS`] partners are tracked (the least
//! recently seen that is not watch-listed makes room), and a discovered
//! partner's distinct users are kept as 64-bit keyed hashes, at most the
//! policy's `discovered_max_contacts` of them.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Partners tracked at most.
pub(crate) const MAX_PARTNERS: usize = 10_000;
/// The window over which distinct users and failures are counted.
const WINDOW: Duration = Duration::from_secs(3600);
/// Requests in a window before its failure share can throttle a partner.
const FAILURE_MIN_REQUESTS: u32 = 20;

/// One partner as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartnerRow {
    pub domain: String,
    /// `allowed` (listed), `discovered`, or `refused` (by the policy now).
    pub standing: String,
    /// Unix seconds since it has been on the watch list.
    pub watch_listed_at: Option<i64>,
    /// Held to 1 request a second: most of its requests this hour failed.
    pub throttled: bool,
    /// Distinct local users it reached this hour (discovered partners).
    pub users_this_hour: usize,
    pub requests_in: u64,
    pub refused_in: u64,
    pub requests_out: u64,
    /// Our connections open to it now.
    pub connections: usize,
    pub last_seen_at: i64,
}

#[derive(Debug)]
struct Partner {
    discovered: bool,
    last_seen_at: i64,
    last_touch: Instant,
    requests_in: u64,
    refused_in: u64,
    requests_out: u64,
    /// Token bucket: tokens and when it was last filled.
    tokens: f64,
    filled: Instant,
    window_start: Instant,
    users: HashSet<u64>,
    window_requests: u32,
    window_failures: u32,
    watch_listed: Option<i64>,
}

impl Partner {
    fn new(discovered: bool, now: Instant, unix: i64) -> Partner {
        Partner {
            discovered,
            last_seen_at: unix,
            last_touch: now,
            requests_in: 0,
            refused_in: 0,
            requests_out: 0,
            tokens: f64::MAX,
            filled: now,
            window_start: now,
            users: HashSet::new(),
            window_requests: 0,
            window_failures: 0,
            watch_listed: None,
        }
    }

    fn throttled(&self) -> bool {
        self.window_requests >= FAILURE_MIN_REQUESTS
            && self.window_failures * 2 > self.window_requests
    }

    fn roll(&mut self, now: Instant) {
        if now.duration_since(self.window_start) >= WINDOW {
            self.window_start = now;
            self.users.clear();
            self.window_requests = 0;
            self.window_failures = 0;
        }
    }
}

/// Why a discovered partner's request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    /// On the watch list (an administrator clears it).
    WatchListed,
    /// Over its rate this second.
    Rate,
}

/// The limits a discovered partner's requests meet (from the policy).
#[derive(Debug, Clone, Copy)]
pub(crate) struct DiscoveredLimits {
    pub(crate) rate: u32,
    pub(crate) max_users: usize,
}

#[derive(Debug, Default)]
pub(crate) struct PartnerBook {
    partners: HashMap<String, Partner>,
    keys: std::collections::hash_map::RandomState,
}

impl PartnerBook {
    fn entry(&mut self, domain: &str, discovered: bool, now: Instant, unix: i64) -> &mut Partner {
        if !self.partners.contains_key(domain) && self.partners.len() >= MAX_PARTNERS {
            let oldest = self
                .partners
                .iter()
                .filter(|(_, p)| p.watch_listed.is_none())
                .min_by_key(|(_, p)| p.last_touch)
                .map(|(d, _)| d.clone());
            if let Some(d) = oldest {
                self.partners.remove(&d);
            }
        }
        let p = self
            .partners
            .entry(domain.to_owned())
            .or_insert_with(|| Partner::new(discovered, now, unix));
        p.discovered = discovered;
        p.last_seen_at = unix;
        p.last_touch = now;
        p.roll(now);
        p
    }

    /// A request from `domain` for local user `user`: counted, and for a
    /// discovered partner held to its limits. Reaching a new user past
    /// `max_users` this hour puts the partner on the watch list.
    pub(crate) fn inbound(
        &mut self,
        domain: &str,
        discovered: Option<DiscoveredLimits>,
        user: &str,
        now: Instant,
        unix: i64,
    ) -> Result<(), Limit> {
        let key = self.keys.hash_one(user);
        let p = self.entry(domain, discovered.is_some(), now, unix);
        p.requests_in += 1;
        let Some(limits) = discovered else {
            return Ok(());
        };
        if p.watch_listed.is_some() {
            p.refused_in += 1;
            return Err(Limit::WatchListed);
        }
        let rate = if p.throttled() {
            1.0
        } else {
            f64::from(limits.rate.max(1))
        };
        let elapsed = now.duration_since(p.filled).as_secs_f64();
        p.tokens = (p.tokens.min(rate) + elapsed * rate).min(rate);
        p.filled = now;
        if p.tokens < 1.0 {
            p.refused_in += 1;
            return Err(Limit::Rate);
        }
        p.tokens -= 1.0;
        if !p.users.contains(&key) {
            if p.users.len() >= limits.max_users {
                p.watch_listed = Some(unix);
                p.refused_in += 1;
                tracing::warn!(partner = %domain, users = p.users.len(), "a discovered partner reached more distinct users than allowed this hour: watch-listed");
                return Err(Limit::WatchListed);
            }
            p.users.insert(key);
        }
        p.window_requests += 1;
        Ok(())
    }

    /// The request was refused for the user (unknown, refusing...): counts
    /// towards the failure share that throttles a discovered partner.
    pub(crate) fn failed(&mut self, domain: &str) {
        if let Some(p) = self.partners.get_mut(domain) {
            p.refused_in += 1;
            p.window_failures += 1;
        }
    }

    /// A request sent to `domain`.
    pub(crate) fn outbound(&mut self, domain: &str, discovered: bool, now: Instant, unix: i64) {
        self.entry(domain, discovered, now, unix).requests_out += 1;
    }

    /// Whether `domain` is on the watch list.
    pub(crate) fn watch_listed(&self, domain: &str) -> bool {
        self.partners
            .get(domain)
            .is_some_and(|p| p.watch_listed.is_some())
    }

    /// Takes `domain` off the watch list and forgets its counts this hour.
    pub(crate) fn clear(&mut self, domain: &str) -> bool {
        let Some(p) = self.partners.get_mut(domain) else {
            return false;
        };
        let was = p.watch_listed.take().is_some() || p.throttled();
        p.users.clear();
        p.window_requests = 0;
        p.window_failures = 0;
        was
    }

    /// Every tracked partner, by domain; `standing` says how the policy
    /// treats a domain now.
    pub(crate) fn rows(&self, standing: impl Fn(&str) -> &'static str) -> Vec<PartnerRow> {
        let mut rows: Vec<PartnerRow> = self
            .partners
            .iter()
            .map(|(d, p)| PartnerRow {
                domain: d.clone(),
                standing: standing(d).to_owned(),
                watch_listed_at: p.watch_listed,
                throttled: p.discovered && p.throttled(),
                users_this_hour: p.users.len(),
                requests_in: p.requests_in,
                refused_in: p.refused_in,
                requests_out: p.requests_out,
                connections: 0,
                last_seen_at: p.last_seen_at,
            })
            .collect();
        rows.sort_by(|a, b| a.domain.cmp(&b.domain));
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: DiscoveredLimits = DiscoveredLimits {
        rate: 20,
        max_users: 1000,
    };

    #[test]
    fn a_discovered_partner_is_held_to_its_rate() {
        let mut b = PartnerBook::default();
        let t = Instant::now();
        for i in 0..20 {
            assert_eq!(b.inbound("d.test", Some(LIMITS), "u", t, 0), Ok(()), "{i}");
        }
        assert_eq!(
            b.inbound("d.test", Some(LIMITS), "u", t, 0),
            Err(Limit::Rate)
        );
        // Half a second later, ten more.
        let later = t + Duration::from_millis(500);
        for _ in 0..10 {
            assert_eq!(b.inbound("d.test", Some(LIMITS), "u", later, 0), Ok(()));
        }
        assert_eq!(
            b.inbound("d.test", Some(LIMITS), "u", later, 0),
            Err(Limit::Rate)
        );
        // A listed partner is counted, never limited.
        for _ in 0..100 {
            assert_eq!(b.inbound("p.test", None, "u", t, 0), Ok(()));
        }
    }

    #[test]
    fn reaching_too_many_users_watch_lists_until_cleared() {
        let mut b = PartnerBook::default();
        let mut t = Instant::now();
        for i in 0..1000 {
            // 20 a second stay within the rate.
            t += Duration::from_millis(50);
            assert_eq!(
                b.inbound("d.test", Some(LIMITS), &format!("u{i}"), t, 7),
                Ok(())
            );
        }
        // The same users again: fine.
        t += Duration::from_millis(50);
        assert_eq!(b.inbound("d.test", Some(LIMITS), "u5", t, 7), Ok(()));
        t += Duration::from_millis(50);
        assert_eq!(
            b.inbound("d.test", Some(LIMITS), "u1000", t, 7),
            Err(Limit::WatchListed)
        );
        t += Duration::from_secs(10);
        assert_eq!(
            b.inbound("d.test", Some(LIMITS), "u5", t, 7),
            Err(Limit::WatchListed),
            "watch-listed for everyone"
        );
        let row = &b.rows(|_| "discovered")[0];
        assert_eq!(row.watch_listed_at, Some(7));
        assert!(b.clear("d.test"));
        assert_eq!(b.inbound("d.test", Some(LIMITS), "u1000", t, 7), Ok(()));
    }

    #[test]
    fn a_partner_whose_requests_mostly_fail_drops_to_one_a_second() {
        let mut b = PartnerBook::default();
        let mut t = Instant::now();
        for i in 0..20 {
            t += Duration::from_millis(100);
            assert_eq!(
                b.inbound("g.test", Some(LIMITS), &format!("guess{i}"), t, 0),
                Ok(())
            );
            b.failed("g.test");
        }
        assert!(b.rows(|_| "discovered")[0].throttled);
        t += Duration::from_secs(1);
        assert_eq!(b.inbound("g.test", Some(LIMITS), "x", t, 0), Ok(()));
        assert_eq!(
            b.inbound("g.test", Some(LIMITS), "y", t, 0),
            Err(Limit::Rate)
        );
        // After the hour the window starts again.
        t += WINDOW;
        assert_eq!(b.inbound("g.test", Some(LIMITS), "z", t, 0), Ok(()));
        assert_eq!(b.inbound("g.test", Some(LIMITS), "w", t, 0), Ok(()));
        assert!(!b.rows(|_| "discovered")[0].throttled);
    }

    #[test]
    fn the_book_is_bounded() {
        let mut b = PartnerBook::default();
        let t = Instant::now();
        for i in 0..MAX_PARTNERS + 50 {
            let _ = b.inbound(
                &format!("p{i}.test"),
                None,
                "u",
                t + Duration::from_millis(i as u64),
                0,
            );
        }
        assert_eq!(b.partners.len(), MAX_PARTNERS);
        assert!(
            !b.partners.contains_key("p0.test"),
            "the least recently seen went first"
        );
    }
}
