//! Rate limits: a token bucket per key (a source IP for unauthenticated
//! requests, a user for subscriptions), bounded in memory (idle, full
//! buckets are dropped first).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::Instant;

#[derive(Debug)]
pub struct RateLimiter<K = IpAddr> {
    rate: f64,
    burst: f64,
    /// The rate and burst as configured (`rate` and `burst` are this
    /// process's share of them: [`RateLimiter::share`]).
    configured: (f64, f64),
    max_entries: usize,
    buckets: HashMap<K, (f64, Instant)>,
    /// When the table was last swept for idle buckets: at most once a second,
    /// so a flood of new (possibly spoofed) addresses cannot make every request
    /// pay for a full sweep.
    last_sweep: Option<Instant>,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    pub fn new(rate_per_sec: u32, burst: u32, max_entries: usize) -> Self {
        RateLimiter {
            rate: f64::from(rate_per_sec),
            burst: f64::from(burst.max(1)),
            configured: (f64::from(rate_per_sec), f64::from(burst.max(1))),
            max_entries,
            buckets: HashMap::new(),
            last_sweep: None,
        }
    }

    /// Enforces `1/parts` of the configured rate and burst (the burst at
    /// least one request): with `parts` processes each enforcing its share,
    /// a key spread over all of them gets no more than the configured
    /// limits in total. `parts` 0 or 1: the whole of them.
    pub fn share(&mut self, parts: usize) {
        let parts = u32::try_from(parts.max(1)).unwrap_or(u32::MAX);
        let n = f64::from(parts);
        self.rate = self.configured.0 / n;
        self.burst = (self.configured.1 / n).ceil().max(1.0);
    }

    /// Takes one token for `ip`; `false` when the key is over its rate.
    pub fn allow(&mut self, ip: K, now: Instant) -> bool {
        if self.buckets.len() >= self.max_entries && !self.buckets.contains_key(&ip) {
            let due = self
                .last_sweep
                .is_none_or(|t| now.duration_since(t).as_secs() >= 1);
            if due {
                self.last_sweep = Some(now);
                let (rate, burst) = (self.rate, self.burst);
                self.buckets.retain(|_, (tokens, at)| {
                    *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
                });
            }
            if self.buckets.len() >= self.max_entries {
                // Everyone is busy: refuse newcomers rather than grow.
                return false;
            }
        }
        let (tokens, at) = self.buckets.entry(ip).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_rate() {
        let mut r: RateLimiter = RateLimiter::new(10, 5, 100);
        let ip: IpAddr = [192, 0, 2, 1].into();
        let t0 = Instant::now();
        assert_eq!((0..10).filter(|_| r.allow(ip, t0)).count(), 5);
        assert!(
            r.allow(ip, t0 + Duration::from_millis(100)),
            "refilled at 10/s"
        );
        assert!(
            r.allow([192, 0, 2, 2].into(), t0),
            "other addresses unaffected"
        );
    }

    #[test]
    fn three_shares_together_allow_what_one_whole_does() {
        let ip: IpAddr = [192, 0, 2, 1].into();
        let t0 = Instant::now();
        let mut parts: Vec<RateLimiter> = (0..3)
            .map(|_| {
                let mut r = RateLimiter::new(30, 9, 100);
                r.share(3);
                r
            })
            .collect();
        // The burst: 3 from each, 9 in all.
        let burst: usize = parts
            .iter_mut()
            .map(|r| (0..10).filter(|_| r.allow(ip, t0)).count())
            .sum();
        assert_eq!(burst, 9);
        // A second on: 10 more from each (30/s in all), capped by each
        // share's burst of 3.
        let later = t0 + Duration::from_secs(1);
        let refill: usize = parts
            .iter_mut()
            .map(|r| (0..20).filter(|_| r.allow(ip, later)).count())
            .sum();
        assert_eq!(refill, 9);
        let mut r = RateLimiter::new(30, 9, 100);
        r.share(3);
        r.share(1);
        assert_eq!(
            (0..20).filter(|_| r.allow(ip, t0)).count(),
            9,
            "whole again"
        );
        r.share(0);
        assert_eq!(r.rate, 30.0);
    }

    #[test]
    fn a_full_table_is_swept_at_most_once_a_second() {
        // 10/s: after 500 ms both buckets would be full (idle) again, so only
        // the throttle keeps a second sweep from freeing room.
        let mut r: RateLimiter = RateLimiter::new(10, 2, 2);
        let t0 = Instant::now();
        assert!(r.allow([10, 0, 0, 1].into(), t0));
        assert!(r.allow([10, 0, 0, 2].into(), t0));
        // Full of busy buckets: a newcomer is refused, and sweeping is now throttled.
        assert!(!r.allow([10, 0, 0, 3].into(), t0));
        let later = t0 + std::time::Duration::from_millis(500);
        assert!(
            !r.allow([10, 0, 0, 4].into(), later),
            "no second sweep within a second"
        );
        // Two seconds on, the first buckets are full again (idle) and are dropped.
        let much_later = t0 + std::time::Duration::from_secs(3);
        assert!(r.allow([10, 0, 0, 5].into(), much_later));
    }

    #[test]
    fn memory_is_bounded() {
        let mut r: RateLimiter = RateLimiter::new(1, 1, 10);
        let t0 = Instant::now();
        for i in 0..100u8 {
            r.allow([10, 0, 0, i].into(), t0);
        }
        assert!(r.buckets.len() <= 10);
    }
}
