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
//! What changed is handed out for saving ([`SecurityFilter::take_changes`])
//! and read back at start ([`SecurityFilter::restore`]), so that a restart
//! forgives no guesser.

use std::collections::{HashMap, HashSet};
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

impl From<&Saved> for Counter {
    fn from(e: &Saved) -> Counter {
        Counter {
            window_start: e.window_start,
            failures: e.failures,
            lockouts: e.lockouts,
            locked_until: e.locked_until,
            last_seen: e.last_seen,
        }
    }
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

/// An entry of one of the filter's tables, as saved.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EntryKey {
    /// Failures of an account from one source.
    Pair(String, IpAddr),
    /// Failures of an account from all sources.
    Account(String),
    /// A source the account signed in from.
    Familiar(String, IpAddr),
}

/// An entry's state, as saved (a familiar source has `last_seen` only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    pub key: EntryKey,
    pub window_start: u64,
    pub failures: u32,
    pub lockouts: u32,
    pub locked_until: u64,
    pub last_seen: u64,
}

/// The entries changed since the last [`SecurityFilter::take_changes`]:
/// their state now, and those gone.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub put: Vec<Saved>,
    pub removed: Vec<EntryKey>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.put.is_empty() && self.removed.is_empty()
    }
}

/// A successful sign-in refreshes its source's saved time at most this
/// often (seconds): familiarity lasts weeks, and saving every REGISTER
/// refresh would cost a write each.
pub const FAMILIAR_SAVED_EVERY: u64 = 3600;

#[derive(Debug, Clone, Copy)]
struct Familiar {
    at: u64,
    /// When `at` was last marked for saving.
    saved: u64,
}

#[derive(Debug)]
pub struct SecurityFilter {
    cfg: LockoutConfig,
    pairs: HashMap<(String, IpAddr), Counter>,
    accounts: HashMap<String, Counter>,
    familiar: HashMap<(String, IpAddr), Familiar>,
    /// Entries changed since the last save (bounded, see [`mark`]).
    dirty: HashSet<EntryKey>,
    /// How many changes `dirty` holds at most: 0 for a filter whose state
    /// is not saved (an edge's).
    dirty_cap: usize,
}

impl SecurityFilter {
    pub fn new(cfg: LockoutConfig) -> Self {
        SecurityFilter {
            cfg,
            pairs: HashMap::new(),
            accounts: HashMap::new(),
            familiar: HashMap::new(),
            dirty: HashSet::new(),
            dirty_cap: 0,
        }
    }

    /// A filter whose changes are handed out for saving
    /// ([`SecurityFilter::take_changes`]); [`SecurityFilter::new`]'s are not
    /// tracked at all.
    pub fn saved(cfg: LockoutConfig) -> Self {
        SecurityFilter {
            dirty_cap: cfg.max_entries.saturating_mul(4),
            ..SecurityFilter::new(cfg)
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
        let account = &*account_key(account);
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
                .is_some_and(|f| now.saturating_sub(f.at) <= self.cfg.familiar_for);
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
        let account = &*account_key(account);
        let mut engaged = Vec::new();
        let cfg = self.cfg;
        for (a, s) in bound(
            &mut self.pairs,
            cfg.max_entries,
            |c| c.locked_until > now,
            |c| c.last_seen,
        ) {
            mark(&mut self.dirty, self.dirty_cap, EntryKey::Pair(a, s));
        }
        let pair = self.pairs.entry((account.to_owned(), source)).or_default();
        if pair.fail(now, &cfg, cfg.source_threshold) {
            engaged.push(Engaged::Source {
                account: account.to_owned(),
                source,
                until: pair.locked_until,
            });
        }
        mark(
            &mut self.dirty,
            self.dirty_cap,
            EntryKey::Pair(account.to_owned(), source),
        );
        for a in bound(
            &mut self.accounts,
            cfg.max_entries,
            |c| c.locked_until > now,
            |c| c.last_seen,
        ) {
            mark(&mut self.dirty, self.dirty_cap, EntryKey::Account(a));
        }
        let acc = self.accounts.entry(account.to_owned()).or_default();
        if acc.fail(now, &cfg, cfg.account_threshold) {
            engaged.push(Engaged::Account {
                account: account.to_owned(),
                until: acc.locked_until,
            });
        }
        mark(
            &mut self.dirty,
            self.dirty_cap,
            EntryKey::Account(account.to_owned()),
        );
        engaged
    }

    /// Records a successful sign-in: the source becomes familiar and its failure
    /// count for the account is reset.
    pub fn success(&mut self, account: &str, source: IpAddr, now: u64) {
        let key = (account_key(account).into_owned(), source);
        if self.pairs.remove(&key).is_some() {
            mark(
                &mut self.dirty,
                self.dirty_cap,
                EntryKey::Pair(key.0.clone(), source),
            );
        }
        let horizon = now.saturating_sub(self.cfg.familiar_for);
        for (a, s) in bound(
            &mut self.familiar,
            self.cfg.max_entries,
            |f| f.at > horizon,
            |f| f.at,
        ) {
            mark(&mut self.dirty, self.dirty_cap, EntryKey::Familiar(a, s));
        }
        let saved = match self.familiar.get(&key) {
            Some(f) if now.saturating_sub(f.saved) < FAMILIAR_SAVED_EVERY => f.saved,
            _ => {
                mark(
                    &mut self.dirty,
                    self.dirty_cap,
                    EntryKey::Familiar(key.0.clone(), source),
                );
                now
            }
        };
        self.familiar.insert(key, Familiar { at: now, saved });
    }

    /// The entries changed since the last call, as they are now.
    /// Whether a failure count or lockout changed since the last
    /// [`SecurityFilter::take_changes`] — what other nodes of a pool must
    /// learn at once; a familiar address alone can wait for the next
    /// regular save.
    pub fn counts_unsaved(&self) -> bool {
        self.dirty
            .iter()
            .any(|k| matches!(k, EntryKey::Pair(..) | EntryKey::Account(_)))
    }

    pub fn take_changes(&mut self) -> Changes {
        let mut out = Changes::default();
        for key in std::mem::take(&mut self.dirty) {
            let counter = match &key {
                EntryKey::Pair(a, s) => self.pairs.get(&(a.clone(), *s)).copied(),
                EntryKey::Account(a) => self.accounts.get(a).copied(),
                EntryKey::Familiar(a, s) => self.familiar.get(&(a.clone(), *s)).map(|f| Counter {
                    last_seen: f.at,
                    ..Counter::default()
                }),
            };
            match counter {
                Some(c) => out.put.push(Saved {
                    key,
                    window_start: c.window_start,
                    failures: c.failures,
                    lockouts: c.lockouts,
                    locked_until: c.locked_until,
                    last_seen: c.last_seen,
                }),
                None => out.removed.push(key),
            }
        }
        out
    }

    /// Marks entries changed again (a save that failed): the next
    /// [`SecurityFilter::take_changes`] hands them out as they are then.
    pub fn unsaved(&mut self, keys: impl IntoIterator<Item = EntryKey>) {
        for k in keys {
            mark(&mut self.dirty, self.dirty_cap, k);
        }
    }

    /// Takes saved entries back (at start), without marking them changed.
    /// Familiar sources older than `familiar_for` at `now` are left out;
    /// each table keeps at most `max_entries`: lockouts still running
    /// first (as the bound in memory keeps them), then the most recent.
    pub fn restore(&mut self, mut saved: Vec<Saved>, now: u64) {
        saved.sort_by_key(|e| (e.locked_until <= now, std::cmp::Reverse(e.last_seen)));
        let max = self.cfg.max_entries;
        for e in saved {
            let c = Counter::from(&e);
            match e.key {
                EntryKey::Pair(a, s) if self.pairs.len() < max => {
                    self.pairs.insert((a, s), c);
                }
                EntryKey::Account(a) if self.accounts.len() < max => {
                    self.accounts.insert(a, c);
                }
                EntryKey::Familiar(a, s)
                    if self.familiar.len() < max
                        && now.saturating_sub(e.last_seen) <= self.cfg.familiar_for =>
                {
                    self.familiar.insert(
                        (a, s),
                        Familiar {
                            at: e.last_seen,
                            saved: e.last_seen,
                        },
                    );
                }
                _ => {}
            }
        }
    }

    /// What the store holds for `account` now, read after another node of
    /// a pool saved it: each counter of the account moves to the store's
    /// when that is further on (a later window, more lockouts, or more
    /// failures in the same window) — so failures counted on any node
    /// count on all —, each familiar source to the later time; an entry
    /// the store no longer has (cleared by an administrator or a
    /// successful sign-in elsewhere) goes, unless it changed here since
    /// the last save. Nothing taken this way is marked for saving.
    pub fn merge(&mut self, account: &str, saved: Vec<Saved>) {
        let account = &*account_key(account);
        let progress = |c: &Counter| (c.window_start, c.lockouts, c.failures, c.locked_until);
        let mut present: HashSet<EntryKey> = HashSet::new();
        for e in saved {
            let c = Counter::from(&e);
            // The tables stay within their bound: what is new here is
            // taken only while there is room (a lockout in force first, as
            // `restore` does).
            let max = self.cfg.max_entries;
            let room = (
                self.pairs.len() < max,
                self.accounts.len() < max,
                self.familiar.len() < max,
            );
            match &e.key {
                EntryKey::Pair(a, s) if a == account => {
                    let k = (a.clone(), *s);
                    match self.pairs.get_mut(&k) {
                        Some(local) if progress(&c) > progress(local) => *local = c,
                        Some(_) => {}
                        None if room.0 => {
                            self.pairs.insert(k, c);
                        }
                        None => continue,
                    }
                }
                EntryKey::Account(a) if a == account => match self.accounts.get_mut(a) {
                    Some(local) if progress(&c) > progress(local) => *local = c,
                    Some(_) => {}
                    None if room.1 => {
                        self.accounts.insert(a.clone(), c);
                    }
                    None => continue,
                },
                EntryKey::Familiar(a, s) if a == account => {
                    let k = (a.clone(), *s);
                    match self.familiar.get_mut(&k) {
                        Some(local) if e.last_seen > local.at => {
                            local.at = e.last_seen;
                            local.saved = e.last_seen;
                        }
                        Some(_) => {}
                        None if room.2 => {
                            self.familiar.insert(
                                k,
                                Familiar {
                                    at: e.last_seen,
                                    saved: e.last_seen,
                                },
                            );
                        }
                        None => continue,
                    }
                }
                _ => continue,
            }
            present.insert(e.key);
        }
        let dirty = &self.dirty;
        let keep = |k: EntryKey| present.contains(&k) || dirty.contains(&k);
        self.pairs
            .retain(|(a, s), _| a != account || keep(EntryKey::Pair(a.clone(), *s)));
        self.accounts
            .retain(|a, _| a != account || keep(EntryKey::Account(a.clone())));
        self.familiar
            .retain(|(a, s), _| a != account || keep(EntryKey::Familiar(a.clone(), *s)));
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
        let key = account.map(account_key);
        let account = key.as_deref();
        let mut lifted = 0;
        let (dirty, max) = (&mut self.dirty, self.dirty_cap);
        self.pairs.retain(|(a, s), c| {
            let hit = account.is_none_or(|x| x == a) && source.is_none_or(|x| x == *s);
            if hit {
                lifted += usize::from(c.locked_until > now);
                mark(dirty, max, EntryKey::Pair(a.clone(), *s));
            }
            !hit
        });
        if source.is_none() {
            self.accounts.retain(|a, c| {
                let hit = account.is_none_or(|x| x == a);
                if hit {
                    lifted += usize::from(c.locked_until > now);
                    mark(dirty, max, EntryKey::Account(a.clone()));
                }
                !hit
            });
        }
        lifted
    }
}

/// Account names longer than this are kept under a digest of the name.
pub const MAX_ACCOUNT_KEY: usize = 256;

/// The name an account is counted under: itself, or, beyond
/// [`MAX_ACCOUNT_KEY`] bytes, its first 64 bytes and a SHA-256 of the
/// whole. Names are attacker-chosen (guesses at accounts that do not exist
/// count too) and a header line may be 8 KiB: each entry of the bounded
/// tables, and each row saved, stays small whatever is guessed at.
pub fn account_key(account: &str) -> std::borrow::Cow<'_, str> {
    if account.len() <= MAX_ACCOUNT_KEY {
        return std::borrow::Cow::Borrowed(account);
    }
    let mut cut = 64;
    while !account.is_char_boundary(cut) {
        cut -= 1;
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, account.as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    std::borrow::Cow::Owned(format!("{}...sha256:{hex}", &account[..cut]))
}

/// Marks an entry changed. The set is bounded: at `cap` (four times a
/// table's bound: saving has failed for a long while), further changes go
/// unsaved — they still decide in memory.
fn mark(dirty: &mut HashSet<EntryKey>, cap: usize, key: EntryKey) {
    if dirty.len() < cap {
        dirty.insert(key);
    }
}

/// Keeps a table under `max`: first drops entries `keep` rejects, then, if still
/// near the limit, the least recently active eighth in one pass, so the cost is
/// amortised over the inserts that follow rather than paid on each. Returns
/// the keys it dropped.
fn bound<K: Clone + std::hash::Hash + Eq, V>(
    map: &mut HashMap<K, V>,
    max: usize,
    keep: impl Fn(&V) -> bool,
    age: impl Fn(&V) -> u64,
) -> Vec<K> {
    let mut dropped = Vec::new();
    if map.len() < max {
        return dropped;
    }
    map.retain(|k, v| {
        let kept = keep(v);
        if !kept {
            dropped.push(k.clone());
        }
        kept
    });
    let target = max - max / 8 - 1;
    if map.len() <= target {
        return dropped;
    }
    let mut ages: Vec<(u64, K)> = map.iter().map(|(k, v)| (age(v), k.clone())).collect();
    let n = map.len() - target;
    if n < ages.len() {
        ages.select_nth_unstable_by_key(n, |a| a.0);
    }
    for (_, k) in ages.into_iter().take(n) {
        map.remove(&k);
        dropped.push(k);
    }
    dropped
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
        assert!(f.dirty.is_empty(), "a filter not saved tracks no changes");
        for n in 0..1_000u32 {
            f.success(&format!("user{n}"), ip(1), u64::from(n));
        }
        assert!(f.familiar.len() <= 100);
        assert!(
            f.familiar.contains_key(&("user999".to_string(), ip(1))),
            "the newest are kept"
        );
    }

    #[test]
    fn only_failure_counts_ask_for_a_save_at_once() {
        let mut f = SecurityFilter::saved(LockoutConfig::default());
        assert!(!f.counts_unsaved());
        f.success("alice", ip(1), 100);
        assert!(!f.counts_unsaved(), "a familiar address can wait");
        f.failure("alice", ip(2), 101);
        assert!(f.counts_unsaved(), "a failure cannot");
        let _ = f.take_changes();
        assert!(!f.counts_unsaved(), "saved");
    }

    #[test]
    fn changes_are_handed_out_once_and_restore_into_another_filter() {
        let cfg = LockoutConfig {
            base_backoff: 60,
            ..Default::default()
        };
        let mut f = SecurityFilter::saved(cfg);
        assert!(f.take_changes().is_empty());
        for i in 0..5 {
            f.failure("alice", ip(1), 100 + i);
        }
        f.failure("bob", ip(2), 100);
        let changes = f.take_changes();
        assert!(changes.removed.is_empty());
        let mut keys: Vec<_> = changes.put.iter().map(|e| e.key.clone()).collect();
        keys.sort_by_key(|k| format!("{k:?}"));
        assert_eq!(
            keys,
            vec![
                EntryKey::Account("alice".into()),
                EntryKey::Account("bob".into()),
                EntryKey::Pair("alice".into(), ip(1)),
                EntryKey::Pair("bob".into(), ip(2)),
            ]
        );
        let alice = changes
            .put
            .iter()
            .find(|e| e.key == EntryKey::Pair("alice".into(), ip(1)))
            .unwrap();
        assert_eq!((alice.lockouts, alice.locked_until), (1, 164));
        assert!(f.take_changes().is_empty(), "each change once");

        // A restarted server reads them back: alice's source is refused,
        // and nothing needs saving again.
        let mut g = SecurityFilter::saved(cfg);
        g.restore(changes.put.clone(), 120);
        assert_eq!(g.check("alice", ip(1), 120), Gate::Refuse { until: 164 });
        assert!(g.take_changes().is_empty());
        // The next lockout of that source doubles, as it would have here.
        for i in 0..5 {
            g.failure("alice", ip(1), 200 + i);
        }
        assert_eq!(g.check("alice", ip(1), 210), Gate::Refuse { until: 324 });

        // A success removes the source's count and makes it familiar.
        f.success("bob", ip(2), 300);
        let c = f.take_changes();
        assert_eq!(c.removed, vec![EntryKey::Pair("bob".into(), ip(2))]);
        assert_eq!(c.put.len(), 1);
        assert_eq!(c.put[0].key, EntryKey::Familiar("bob".into(), ip(2)));
        assert_eq!(c.put[0].last_seen, 300);
        // Signing in again within the hour saves nothing; after it, the
        // new time.
        f.success("bob", ip(2), 300 + FAMILIAR_SAVED_EVERY - 1);
        assert!(f.take_changes().is_empty());
        f.success("bob", ip(2), 300 + FAMILIAR_SAVED_EVERY);
        assert_eq!(
            f.take_changes().put[0].last_seen,
            300 + FAMILIAR_SAVED_EVERY
        );
        // Familiar sources restored stay familiar through an account lock.
        let mut h = SecurityFilter::new(LockoutConfig::default());
        h.restore(
            vec![Saved {
                key: EntryKey::Familiar("carol".into(), ip(9)),
                window_start: 0,
                failures: 0,
                lockouts: 0,
                locked_until: 0,
                last_seen: 1_000,
            }],
            2_000,
        );
        for n in 0..50u8 {
            h.failure("carol", ip(n), 2_000);
        }
        assert!(matches!(
            h.check("carol", ip(77), 2_001),
            Gate::Refuse { .. }
        ));
        assert_eq!(h.check("carol", ip(9), 2_001), Gate::Allow);

        // Clearing hands out what it removed.
        f.clear(Some("alice"), None, 400);
        let mut removed = f.take_changes().removed;
        removed.sort_by_key(|k| format!("{k:?}"));
        assert_eq!(
            removed,
            vec![
                EntryKey::Account("alice".into()),
                EntryKey::Pair("alice".into(), ip(1)),
            ]
        );
    }

    #[test]
    fn evicted_entries_are_saved_as_removed_and_unsaved_changes_stay_bounded() {
        let mut f = SecurityFilter::saved(LockoutConfig {
            max_entries: 16,
            ..Default::default()
        });
        for n in 0..16u8 {
            f.failure(&format!("user{n}"), ip(n), u64::from(n));
        }
        let _ = f.take_changes();
        f.failure("late", ip(200), 100);
        let c = f.take_changes();
        assert!(
            c.removed
                .iter()
                .any(|k| *k == EntryKey::Pair("user0".into(), ip(0))),
            "the oldest went, and is removed from what was saved: {c:?}"
        );
        // With no save for long, the set of changes stops growing.
        for n in 0..10_000u32 {
            f.failure(&format!("u{n}"), ip(1), 200 + u64::from(n));
        }
        assert!(f.dirty.len() <= 64);
        // A save that failed marks its keys again.
        let c = f.take_changes();
        assert!(f.take_changes().is_empty());
        let n = c.put.len() + c.removed.len();
        assert!(n > 0);
        f.unsaved(c.put.into_iter().map(|e| e.key).chain(c.removed));
        let again = f.take_changes();
        assert_eq!(again.put.len() + again.removed.len(), n);
    }

    #[test]
    fn long_account_names_are_counted_under_a_short_key() {
        let mut f = SecurityFilter::saved(LockoutConfig {
            base_backoff: 60,
            ..Default::default()
        });
        let long = format!("sip:{}@example.test", "é".repeat(4000));
        let other = format!("sip:{}x@example.test", "é".repeat(4000));
        for i in 0..5 {
            f.failure(&long, ip(1), 100 + i);
        }
        assert_eq!(f.check(&long, ip(1), 110), Gate::Refuse { until: 164 });
        assert_eq!(
            f.check(&other, ip(1), 110),
            Gate::Allow,
            "another name, another key"
        );
        let keys: Vec<_> = f.take_changes().put.into_iter().map(|e| e.key).collect();
        assert!(keys.iter().all(|k| match k {
            EntryKey::Pair(a, _) | EntryKey::Account(a) | EntryKey::Familiar(a, _) =>
                a.len() <= MAX_ACCOUNT_KEY && a.contains("sha256:"),
        }));
        assert_eq!(f.clear(Some(&long), None, 110), 1);
        assert_eq!(f.check(&long, ip(1), 110), Gate::Allow);
        assert_eq!(
            account_key("sip:alice@example.test"),
            "sip:alice@example.test"
        );
    }

    #[test]
    fn restore_keeps_running_lockouts_before_recent_counts() {
        let mut f = SecurityFilter::saved(LockoutConfig {
            max_entries: 2,
            ..Default::default()
        });
        let entry = |n: u8, locked_until, last_seen| Saved {
            key: EntryKey::Pair(format!("user{n}"), ip(n)),
            window_start: 0,
            failures: 1,
            lockouts: 1,
            locked_until,
            last_seen,
        };
        // Two fresh counts seen last, one lockout running since earlier.
        f.restore(
            vec![entry(1, 0, 900), entry(2, 0, 950), entry(3, 2_000, 100)],
            1_000,
        );
        assert_eq!(
            f.check("user3", ip(3), 1_000),
            Gate::Refuse { until: 2_000 }
        );
        assert_eq!(f.pairs.len(), 2);
        assert!(f.pairs.contains_key(&("user2".to_string(), ip(2))));
    }

    #[test]
    fn failures_counted_on_another_node_count_here_and_its_clearing_too() {
        let cfg = LockoutConfig::default();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let (mut a, mut b) = (SecurityFilter::saved(cfg), SecurityFilter::saved(cfg));
        let now = 1_000;
        // Round robin: each node records a failure, saves, and the other
        // takes what was saved before its own next failure.
        let mut n = 0;
        while matches!(a.check("alice", ip, now), Gate::Allow) {
            let (this, other) = if n % 2 == 0 {
                (&mut a, &mut b)
            } else {
                (&mut b, &mut a)
            };
            this.failure("alice", ip, now);
            let saved = this.take_changes().put;
            other.merge("alice", saved);
            n += 1;
            assert!(n < 100, "never locked");
        }
        assert_eq!(
            n, cfg.source_threshold,
            "locked after the threshold, counted across both"
        );
        assert!(matches!(b.check("alice", ip, now), Gate::Refuse { .. }));
        // Cleared on a (an administrator): the row goes, and b, which has
        // nothing of its own unsaved, lets go too.
        a.clear(Some("alice"), None, now);
        let _ = a.take_changes();
        b.merge("alice", Vec::new());
        assert!(matches!(b.check("alice", ip, now), Gate::Allow));
        // A further state that is behind what a node has is not taken.
        b.failure("alice", ip, now);
        let ahead = b.take_changes().put;
        b.failure("alice", ip, now);
        b.merge("alice", ahead);
        let mine = b.take_changes().put;
        assert!(
            mine.iter()
                .any(|e| matches!(e.key, EntryKey::Pair(..)) && e.failures == 2),
            "{mine:?}"
        );
    }
}
