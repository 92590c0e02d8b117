//! The security filter: refuses sign-in attempts that look like guessing, in a
//! way an attacker cannot turn against the account's owner.
//!
//! - Per (account, source address): after `source_threshold` failures within
//!   `window`, that source is refused *for that account* — before any password is
//!   checked — for `base_backoff`, doubling with each further lockout up to
//!   `max_backoff`. Other sources are unaffected.
//! - Per account: after `account_threshold` failures within `window` from all
//!   sources together (a distributed attack), the account is refused to every
//!   source *except* those it has signed in from successfully recently
//!   (`familiar_for`): the real user keeps working, the botnet does not.
//!
//! All state is in memory and bounded (`max_entries` per table; the least recently
//! active entries go first). It is visible and clearable (`entries`, `clear`).

use std::collections::HashMap;
use std::net::IpAddr;

/// Thresholds and durations, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutConfig {
    pub source_threshold: u32,
    pub account_threshold: u32,
    pub window: u64,
    pub base_backoff: u64,
    pub max_backoff: u64,
    pub familiar_for: u64,
    pub max_entries: usize,
}

impl Default for LockoutConfig {
    fn default() -> Self {
        LockoutConfig {
            source_threshold: 5,
            account_threshold: 50,
            window: 600,
            base_backoff: 600,
            max_backoff: 24 * 3600,
            familiar_for: 30 * 24 * 3600,
            max_entries: 100_000,
        }
    }
}

/// The verdict before a password is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Allow,
    /// Refuse (403) until this unix time.
    Refuse {
        until: u64,
    },
}

#[derive(Debug, Clone, Copy, Default)]
struct Counter {
    window_start: u64,
    failures: u32,
    lockouts: u32,
    locked_until: u64,
    last_seen: u64,
}

impl Counter {
    fn fail(&mut self, now: u64, cfg: &LockoutConfig, threshold: u32) -> bool {
        if now.saturating_sub(self.window_start) >= cfg.window {
            self.window_start = now;
            self.failures = 0;
        }
        self.failures += 1;
        self.last_seen = now;
        if self.failures >= threshold {
            self.lockouts = self.lockouts.saturating_add(1);
            let factor = 1u64
                .checked_shl(self.lockouts.saturating_sub(1).min(30))
                .unwrap_or(u64::MAX);
            let backoff = cfg.base_backoff.saturating_mul(factor).min(cfg.max_backoff);
            self.locked_until = now.saturating_add(backoff);
            self.failures = 0;
            self.window_start = now;
            return true;
        }
        false
    }
}

/// One row of `parapet admin lockout list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockoutEntry {
    pub account: String,
    /// `None` for an account-wide lock.
    pub source: Option<IpAddr>,
    pub until: u64,
    pub lockouts: u32,
}

/// A lockout that just started (for logs and metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Engaged {
    Source {
        account: String,
        source: IpAddr,
        until: u64,
    },
    Account {
        account: String,
        until: u64,
    },
}

#[derive(Debug)]
pub struct SecurityFilter {
    cfg: LockoutConfig,
    pairs: HashMap<(String, IpAddr), Counter>,
    accounts: HashMap<String, Counter>,
    familiar: HashMap<(String, IpAddr), u64>,
}

impl SecurityFilter {
    pub fn new(cfg: LockoutConfig) -> Self {
        SecurityFilter {
            cfg,
            pairs: HashMap::new(),
            accounts: HashMap::new(),
            familiar: HashMap::new(),
        }
    }

    pub fn config(&self) -> &LockoutConfig {
        &self.cfg
    }

    /// Replaces the thresholds (a policy change); counts are kept.
    pub fn set_config(&mut self, cfg: LockoutConfig) {
        self.cfg = cfg;
    }

    /// Decides before checking credentials.
    pub fn check(&self, account: &str, source: IpAddr, now: u64) -> Gate {
        let key = (account.to_owned(), source);
        if let Some(c) = self.pairs.get(&key) {
            if c.locked_until > now {
                return Gate::Refuse {
                    until: c.locked_until,
                };
            }
        }
        if let Some(c) = self.accounts.get(account) {
            let familiar = self
                .familiar
                .get(&key)
                .is_some_and(|&t| now.saturating_sub(t) <= self.cfg.familiar_for);
            if c.locked_until > now && !familiar {
                return Gate::Refuse {
                    until: c.locked_until,
                };
            }
        }
        Gate::Allow
    }

    /// [`SecurityFilter::failure`] with this account's thresholds and window
    /// (from its authentication policy) instead of the configured ones.
    pub fn failure_with(
        &mut self,
        account: &str,
        source: IpAddr,
        now: u64,
        limits: &LockoutConfig,
    ) -> Vec<Engaged> {
        let saved = self.cfg;
        self.cfg = LockoutConfig {
            source_threshold: limits.source_threshold,
            account_threshold: limits.account_threshold,
            window: limits.window,
            ..saved
        };
        let engaged = self.failure(account, source, now);
        self.cfg = saved;
        engaged
    }

    /// Records a failed attempt; returns the lockouts it started.
    pub fn failure(&mut self, account: &str, source: IpAddr, now: u64) -> Vec<Engaged> {
        let mut engaged = Vec::new();
        let cfg = self.cfg;
        bound(
            &mut self.pairs,
            cfg.max_entries,
            |c| c.locked_until > now,
            |c| c.last_seen,
        );
        let pair = self.pairs.entry((account.to_owned(), source)).or_default();
        if pair.fail(now, &cfg, cfg.source_threshold) {
            engaged.push(Engaged::Source {
                account: account.to_owned(),
                source,
                until: pair.locked_until,
            });
        }
        bound(
            &mut self.accounts,
            cfg.max_entries,
            |c| c.locked_until > now,
            |c| c.last_seen,
        );
        let acc = self.accounts.entry(account.to_owned()).or_default();
        if acc.fail(now, &cfg, cfg.account_threshold) {
            engaged.push(Engaged::Account {
                account: account.to_owned(),
                until: acc.locked_until,
            });
        }
        engaged
    }

    /// Records a successful sign-in: the source becomes familiar and its failure
    /// count for the account is reset.
    pub fn success(&mut self, account: &str, source: IpAddr, now: u64) {
        let key = (account.to_owned(), source);
        self.pairs.remove(&key);
        let horizon = now.saturating_sub(self.cfg.familiar_for);
        bound(
            &mut self.familiar,
            self.cfg.max_entries,
            |&t| t > horizon,
            |&t| t,
        );
        self.familiar.insert(key, now);
    }

    /// Active lockouts.
    pub fn entries(&self, now: u64) -> Vec<LockoutEntry> {
        let mut v: Vec<_> = self
            .pairs
            .iter()
            .filter(|(_, c)| c.locked_until > now)
            .map(|((a, s), c)| LockoutEntry {
                account: a.clone(),
                source: Some(*s),
                until: c.locked_until,
                lockouts: c.lockouts,
            })
            .chain(
                self.accounts
                    .iter()
                    .filter(|(_, c)| c.locked_until > now)
                    .map(|(a, c)| LockoutEntry {
                        account: a.clone(),
                        source: None,
                        until: c.locked_until,
                        lockouts: c.lockouts,
                    }),
            )
            .collect();
        v.sort_by(|a, b| (&a.account, a.source).cmp(&(&b.account, b.source)));
        v
    }

    /// Clears lockouts and failure counts matching `account` and/or `source`
    /// (both `None`: everything). Returns how many *active* lockouts were lifted.
    pub fn clear(&mut self, account: Option<&str>, source: Option<IpAddr>, now: u64) -> usize {
        let mut lifted = 0;
        self.pairs.retain(|(a, s), c| {
            let hit = account.is_none_or(|x| x == a) && source.is_none_or(|x| x == *s);
            if hit && c.locked_until > now {
                lifted += 1;
            }
            !hit
        });
        if source.is_none() {
            self.accounts.retain(|a, c| {
                let hit = account.is_none_or(|x| x == a);
                if hit && c.locked_until > now {
                    lifted += 1;
                }
                !hit
            });
        }
        lifted
    }
}

/// Keeps a table under `max`: first drops entries `keep` rejects, then, if still
/// near the limit, the least recently active eighth in one pass, so the cost is
/// amortised over the inserts that follow rather than paid on each.
fn bound<K: Clone + std::hash::Hash + Eq, V>(
    map: &mut HashMap<K, V>,
    max: usize,
    keep: impl Fn(&V) -> bool,
    age: impl Fn(&V) -> u64,
) {
    if map.len() < max {
        return;
    }
    map.retain(|_, v| keep(v));
    let target = max - max / 8 - 1;
    if map.len() <= target {
        return;
    }
    let mut ages: Vec<(u64, K)> = map.iter().map(|(k, v)| (age(v), k.clone())).collect();
    let n = map.len() - target;
    if n < ages.len() {
        ages.select_nth_unstable_by_key(n, |a| a.0);
    }
    for (_, k) in ages.into_iter().take(n) {
        map.remove(&k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([198, 51, 100, n])
    }

    #[test]
    fn one_source_is_locked_out_with_growing_backoff_others_are_not() {
        let mut f = SecurityFilter::new(LockoutConfig {
            base_backoff: 60,
            ..Default::default()
        });
        for i in 0..4 {
            assert!(f.failure("alice", ip(1), 100 + i).is_empty());
        }
        let e = f.failure("alice", ip(1), 104);
        assert_eq!(
            e,
            vec![Engaged::Source {
                account: "alice".into(),
                source: ip(1),
                until: 164
            }]
        );
        assert_eq!(f.check("alice", ip(1), 120), Gate::Refuse { until: 164 });
        assert_eq!(
            f.check("alice", ip(2), 120),
            Gate::Allow,
            "another source is not affected"
        );
        assert_eq!(
            f.check("bob", ip(1), 120),
            Gate::Allow,
            "another account is not affected"
        );
        assert_eq!(f.check("alice", ip(1), 164), Gate::Allow);
        for i in 0..5 {
            f.failure("alice", ip(1), 200 + i);
        }
        assert_eq!(
            f.check("alice", ip(1), 210),
            Gate::Refuse { until: 204 + 120 },
            "second lockout doubles"
        );
        assert_eq!(f.entries(210).len(), 1);
        assert_eq!(f.clear(Some("alice"), None, 210), 1);
        assert_eq!(f.check("alice", ip(1), 210), Gate::Allow);
    }

    #[test]
    fn distributed_attack_cannot_lock_out_the_real_user() {
        let mut f = SecurityFilter::new(LockoutConfig::default());
        f.success("alice", ip(200), 10);
        let mut engaged = Vec::new();
        for n in 0..50u8 {
            engaged.extend(f.failure("alice", ip(n), 100));
        }
        assert!(engaged.iter().any(|e| matches!(e, Engaged::Account { .. })));
        assert!(
            matches!(f.check("alice", ip(77), 101), Gate::Refuse { .. }),
            "new sources are refused"
        );
        assert_eq!(
            f.check("alice", ip(200), 101),
            Gate::Allow,
            "the user's familiar source still works"
        );
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let mut f = SecurityFilter::new(LockoutConfig::default());
        for i in 0..20 {
            f.failure("alice", ip(1), i * 200); // one every 200 s: at most 3 per 600 s window
        }
        assert_eq!(f.check("alice", ip(1), 4000), Gate::Allow);
    }

    #[test]
    fn memory_is_bounded() {
        let mut f = SecurityFilter::new(LockoutConfig {
            max_entries: 100,
            ..Default::default()
        });
        for n in 0..10_000u32 {
            f.failure(&format!("user{n}"), ip((n % 250) as u8), u64::from(n));
        }
        assert!(f.pairs.len() <= 100 && f.accounts.len() <= 100);
        for n in 0..1_000u32 {
            f.success(&format!("user{n}"), ip(1), u64::from(n));
        }
        assert!(f.familiar.len() <= 100);
        assert!(
            f.familiar.contains_key(&("user999".to_string(), ip(1))),
            "the newest are kept"
        );
    }
}
