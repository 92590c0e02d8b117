//! The lockout filter's state in the store: read back at start, what
//! changed saved every second (one save at a time, off the core's task),
//! rows that decide nothing purged every ten minutes. The filter in memory
//! decides; the store is what a restart, or a standby taking over,
//! starts from — so that neither forgives a guesser. In a pool whose nodes
//! all serve, each node saves a failure at once and takes the others'
//! saved state from the change log (`SecurityFilter::merge`), so a guesser
//! spreading attempts over the nodes is counted as against one.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use auth::lockout::{Changes, EntryKey, Saved};
use store::{LockoutKey, LockoutKind, LockoutRow};

use crate::{unix_now, Core, Event};

/// How often rows that decide nothing are deleted.
const PURGE_EVERY: Duration = Duration::from_secs(600);

/// Failed saves are logged at a bounded rate (the database may be out of
/// reach for minutes; a save is tried every second).
static SAVE_FAILED: sip_transport::logging::RateLimited =
    sip_transport::logging::RateLimited::per(Duration::from_secs(60), 1);

/// How long (seconds) a counter not locked is kept after it was last seen.
const COUNTERS_KEPT: u64 = 7 * 24 * 3600;

fn key_row(k: &EntryKey) -> LockoutKey {
    let (kind, account, source) = match k {
        EntryKey::Pair(a, s) => (LockoutKind::Pair, a, s.to_string()),
        EntryKey::Account(a) => (LockoutKind::Account, a, String::new()),
        EntryKey::Familiar(a, s) => (LockoutKind::Familiar, a, s.to_string()),
    };
    LockoutKey {
        kind,
        account: account.clone(),
        source,
    }
}

fn secs(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn unsigned(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// The rows to write for `changes` (account names are bounded by
/// `auth::lockout::account_key`, so every row fits an index).
pub(crate) fn rows(changes: &Changes) -> (Vec<LockoutRow>, Vec<LockoutKey>) {
    let put = changes
        .put
        .iter()
        .map(|e| LockoutRow {
            key: key_row(&e.key),
            window_start: secs(e.window_start),
            failures: i64::from(e.failures),
            lockouts: i64::from(e.lockouts),
            locked_until: secs(e.locked_until),
            last_seen: secs(e.last_seen),
        })
        .collect();
    (put, changes.removed.iter().map(key_row).collect())
}

/// The filter's entries in `rows`; a row whose source is not an address
/// (written by hand) is left out.
pub(crate) fn entries(rows: Vec<LockoutRow>) -> Vec<Saved> {
    rows.into_iter()
        .filter_map(|r| {
            let ip = || r.key.source.parse::<IpAddr>().ok();
            let key = match r.key.kind {
                LockoutKind::Pair => EntryKey::Pair(r.key.account.clone(), ip()?),
                LockoutKind::Account => EntryKey::Account(r.key.account.clone()),
                LockoutKind::Familiar => EntryKey::Familiar(r.key.account.clone(), ip()?),
            };
            Some(Saved {
                key,
                window_start: unsigned(r.window_start),
                failures: u32::try_from(r.failures.max(0)).unwrap_or(u32::MAX),
                lockouts: u32::try_from(r.lockouts.max(0)).unwrap_or(u32::MAX),
                locked_until: unsigned(r.locked_until),
                last_seen: unsigned(r.last_seen),
            })
        })
        .collect()
}

impl<S: store::Store> Core<S> {
    /// Another node of the pool saved `account`'s lockout state: `rows`.
    pub(crate) fn remote_lockouts(&mut self, account: &str, rows: Vec<LockoutRow>) {
        self.filter.merge(account, entries(rows));
    }

    /// Saves what changed in the filter since the last save, unless a save
    /// is still under way; purges now and then.
    pub(crate) fn save_lockouts(&mut self) {
        if self.saving_lockouts {
            return;
        }
        let changes = self.filter.take_changes();
        let purge = self.last_lockout_purge.elapsed() >= PURGE_EVERY;
        // Administrators' clearings waiting for this save to answer.
        let waiters = std::mem::take(&mut self.lockout_waiters);
        if changes.is_empty() && !purge {
            for (reply, n) in waiters {
                let _ = reply.send(Ok(n));
            }
            return;
        }
        self.saving_lockouts = true;
        let cfg = *self.filter.config();
        if purge {
            self.last_lockout_purge = Instant::now();
        }
        let (put, remove) = rows(&changes);
        let (store, events, metrics) = (
            self.store.clone(),
            self.events_tx.clone(),
            self.metrics.clone(),
        );
        tokio::spawn(async move {
            let result = store::Lockouts::save_lockouts(&store, put, remove).await;
            if result.is_err() {
                metrics
                    .lockout_saves_failed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            // A clearing is answered once it is saved (a crash after the
            // answer must not bring the lockout back); one that could not
            // be is answered with why (the API says 503; it is in force in
            // memory, and saved by a later try if the database was only
            // out of reach).
            for (reply, n) in waiters {
                let _ = reply.send(match &result {
                    Ok(()) => Ok(n),
                    Err(e) => Err(format!(
                        "the clearing is in force but could not be saved (a restart would bring the lockout back until it is): {e}"
                    )),
                });
            }
            let failed = match result {
                Ok(()) => None,
                // Anything but the database being out of reach would fail
                // again with the same rows: those changes stay unsaved
                // (they still decide in memory) rather than block every
                // later save.
                Err(e @ (store::StoreError::Unavailable(_) | store::StoreError::Closed)) => {
                    if let Some(suppressed) = SAVE_FAILED.allow() {
                        tracing::warn!(error = %e, suppressed, "could not save the sign-in lockout state; trying again every second");
                    }
                    Some(
                        changes
                            .put
                            .into_iter()
                            .map(|e| e.key)
                            .chain(changes.removed)
                            .collect(),
                    )
                }
                Err(e) => {
                    if let Some(suppressed) = SAVE_FAILED.allow() {
                        tracing::warn!(error = %e, suppressed, "could not save the sign-in lockout state; these changes stay unsaved");
                    }
                    None
                }
            };
            if purge {
                let now = unix_now();
                // Counters are kept a week after their last failure (or
                // longer, with a longer back-off and window): a policy may
                // set a longer window than the configured one, and the
                // number of lockouts doubles the next back-off.
                let counters_before = now
                    - secs(
                        cfg.max_backoff
                            .saturating_add(cfg.window)
                            .max(COUNTERS_KEPT),
                    );
                let familiar_before = now - secs(cfg.familiar_for);
                if let Err(e) =
                    store::Lockouts::purge_lockouts(&store, now, counters_before, familiar_before)
                        .await
                {
                    tracing::warn!(error = %e, "could not purge the sign-in lockout state");
                }
            }
            let _ = events.send(Event::LockoutsSaved(failed)).await;
        });
    }

    /// A save ended; `failed`: its entries, to be saved again.
    pub(crate) fn lockouts_saved(&mut self, failed: Option<Vec<EntryKey>>) {
        self.saving_lockouts = false;
        if let Some(keys) = failed {
            self.filter.unsaved(keys);
        }
        // A clearing made while that save ran waits for the next one: now.
        // In a pool whose nodes all serve, so do failures counted meanwhile
        // (the other nodes count them once saved); familiar addresses
        // alone wait for the save each second (one commit a second, not
        // one per sign-in: bench/README.md, the pool).
        if !self.lockout_waiters.is_empty()
            || (!self.pool.node.is_empty() && self.filter.counts_unsaved())
        {
            self.save_lockouts();
        }
    }

    /// An administrator cleared lockouts (`n` of them were active): the
    /// answer goes once the clearing is saved.
    pub(crate) fn lockouts_cleared(
        &mut self,
        reply: tokio::sync::oneshot::Sender<Result<usize, String>>,
        n: usize,
    ) {
        self.lockout_waiters.push((reply, n));
        self.save_lockouts();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_entries_convert_both_ways() {
        let ip: IpAddr = "2001:db8::7".parse().unwrap_or(IpAddr::from([0; 4]));
        let saved = vec![
            Saved {
                key: EntryKey::Pair("sip:a@x".into(), ip),
                window_start: 10,
                failures: 3,
                lockouts: 1,
                locked_until: 70,
                last_seen: 12,
            },
            Saved {
                key: EntryKey::Account("sip:a@x".into()),
                window_start: 10,
                failures: 4,
                lockouts: 0,
                locked_until: 0,
                last_seen: 12,
            },
            Saved {
                key: EntryKey::Familiar("sip:a@x".into(), IpAddr::from([192, 0, 2, 1])),
                window_start: 0,
                failures: 0,
                lockouts: 0,
                locked_until: 0,
                last_seen: 5,
            },
        ];
        let changes = Changes {
            put: saved.clone(),
            removed: vec![EntryKey::Account("sip:b@x".into())],
        };
        let (put, removed) = rows(&changes);
        assert_eq!(put[1].key.source, "");
        assert_eq!(put[0].key.source, "2001:db8::7");
        assert_eq!(removed[0].kind, LockoutKind::Account);
        assert_eq!(entries(put.clone()), saved);
        // A source that is no address is left out, not guessed at.
        let mut bad = put[0].clone();
        bad.key.source = "not-an-address".into();
        assert!(entries(vec![bad]).is_empty());
    }
}
