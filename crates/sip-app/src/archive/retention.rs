//! Retention: records past their owner's retention deleted, a held
//! user's sealed again under the hold key, keys no record uses destroyed.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use archive::Keyring;
use store::ArchiveFilter;

use super::{now_ms, Core};
use crate::policy_set;

impl<S: store::Store> Core<S> {
    /// Runs retention in a task (one at a time).
    pub(crate) fn archive_purge_due(&mut self) {
        let Some(ring) = self.archive.keyring.clone() else {
            return;
        };
        if self.archive_purging.swap(true, Relaxed) {
            return;
        }
        let (store, policies, metrics, busy) = (
            self.store.clone(),
            self.policies.clone(),
            self.metrics.clone(),
            self.archive_purging.clone(),
        );
        tokio::spawn(async move {
            match purge(&store, &ring, &policies, now_ms()).await {
                Ok(done) => {
                    metrics
                        .archive
                        .purged
                        .fetch_add(done.deleted as u64, Relaxed);
                    metrics
                        .archive
                        .keys_destroyed
                        .fetch_add(done.keys_destroyed as u64, Relaxed);
                    if done.deleted + done.resealed + done.keys_destroyed > 0 {
                        tracing::info!(
                            deleted = done.deleted,
                            resealed_for_hold = done.resealed,
                            keys_destroyed = done.keys_destroyed,
                            "archive retention ran"
                        );
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "archive retention failed; it runs again in ten minutes")
                }
            }
            busy.store(false, Relaxed);
        });
    }
}

/// What a retention run did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Purged {
    pub(crate) deleted: usize,
    pub(crate) resealed: usize,
    pub(crate) keys_destroyed: usize,
}

const DAY_MS: i64 = 86_400_000;

/// One retention run at `now_ms` (see the module's text).
pub(crate) async fn purge<S: store::Store>(
    store: &S,
    ring: &Arc<Keyring>,
    policies: &policy_set::PolicySet,
    now_ms: i64,
) -> Result<Purged, String> {
    let mut done = Purged::default();
    let owners = store.archive_owners().await.map_err(|e| e.to_string())?;
    let held: HashSet<String> = store
        .archive_holds()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|h| h.aor)
        .collect();
    let mut by_days: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    let mut held_due = Vec::new();
    for o in owners {
        let days = policy_set::archiving(policies, &o).retention_days;
        if held.contains(&o) {
            held_due.push((o, days));
        } else {
            by_days.entry(days).or_default().push(o);
        }
    }
    for (days, owners) in by_days {
        for chunk in owners.chunks(1000) {
            done.deleted += store
                .archive_purge(chunk.to_vec(), now_ms - days * DAY_MS)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    // Held records due: sealed again under the hold key, so that their
    // day's key can go.
    for (owner, days) in held_due {
        done.resealed += reseal_held(store, ring, &owner, now_ms - days * DAY_MS, now_ms).await?;
    }
    // Keys no record uses: destroyed, from two days back (a record of
    // yesterday may still be on its way; a hold key made today may be
    // about to be used). One that cannot be destroyed is logged and the
    // others still go.
    let in_use: HashSet<String> = store
        .archive_keys()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .collect();
    let cutoff = archive::day_of(now_ms - DAY_MS);
    let ring2 = ring.clone();
    done.keys_destroyed = tokio::task::spawn_blocking(move || -> Result<usize, String> {
        let mut n = 0;
        for id in ring2.ids()? {
            let old = archive::key_day(&id).is_some_and(|d| d < cutoff.as_str());
            if !old || in_use.contains(&id) {
                continue;
            }
            match ring2.destroy(&id) {
                Ok(()) => n += 1,
                Err(e) => {
                    tracing::error!(key = %id, error = %e, "an archive key could not be destroyed")
                }
            }
        }
        Ok(n)
    })
    .await
    .map_err(|e| e.to_string())??;
    Ok(done)
}

/// Seals `owner`'s records older than `before_ms` (not under a hold key
/// yet) again under the hold key; returns how many.
async fn reseal_held<S: store::Store>(
    store: &S,
    ring: &Arc<Keyring>,
    owner: &str,
    before_ms: i64,
    now_ms: i64,
) -> Result<usize, String> {
    let mut after_id = 0;
    let mut n = 0;
    loop {
        let rows = store
            .archive_find(ArchiveFilter {
                owner: Some(owner.to_string()),
                until_ms: Some(before_ms),
                after_id,
                limit: store::archive::MAX_FIND,
                ..ArchiveFilter::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        let Some(last) = rows.last() else {
            return Ok(n);
        };
        after_id = last.id;
        let ring = ring.clone();
        let hold_id = archive::hold_id(now_ms);
        let again =
            tokio::task::spawn_blocking(move || -> Result<Vec<(i64, String, Vec<u8>)>, String> {
                // The hold key in use, if any, else one made today.
                let current = ring
                    .ids()?
                    .into_iter()
                    .filter(|i| archive::is_hold(i))
                    .max()
                    .unwrap_or(hold_id);
                let hold = ring
                    .key(&current, true)?
                    .ok_or_else(|| "the hold key could not be made".to_string())?;
                let mut out = Vec::new();
                for r in rows.iter().filter(|r| !archive::is_hold(&r.key_id)) {
                    let aad = archive::aad(&r.owner, r.at_ms, &r.sender, &r.recipient);
                    // A record whose key is unreadable stays as it is (and
                    // keeps its key): the others are still held.
                    let key = match ring.key(&r.key_id, false) {
                        Ok(Some(k)) => k,
                        Ok(None) => continue,
                        Err(e) => {
                            tracing::error!(record = r.id, error = %e, "a held record could not be sealed again");
                            continue;
                        }
                    };
                    let Some((ct, body)) = archive::open(&key, &aad, &r.sealed) else {
                        tracing::error!(record = r.id, key = %r.key_id, "a held record does not open with its key");
                        continue;
                    };
                    out.push((
                        r.id,
                        current.clone(),
                        archive::seal(&hold, &aad, &ct, &body)?,
                    ));
                }
                Ok(out)
            })
            .await
            .map_err(|e| e.to_string())??;
        n += again.len();
        store
            .archive_reseal(again)
            .await
            .map_err(|e| e.to_string())?;
    }
}
