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
        let content = self.cfg.data_dir.join(archive::content::DIR);
        let (store, policies, metrics, busy) = (
            self.store.clone(),
            self.policies.clone(),
            self.metrics.clone(),
            self.archive_purging.clone(),
        );
        tokio::spawn(async move {
            match purge(&store, &ring, &content, &policies, now_ms()).await {
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
    content: &std::path::Path,
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
        done.resealed +=
            reseal_held(store, ring, content, &owner, now_ms - days * DAY_MS, now_ms).await?;
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
    let content = content.to_path_buf();
    let destroyed = tokio::task::spawn_blocking(move || -> Result<Vec<String>, String> {
        // The content directories first: each was made after its key, so
        // one whose key is not listed next has lost it for good.
        let dirs: Vec<String> = std::fs::read_dir(&content)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        let keys = ring2.ids()?;
        let mut gone = Vec::new();
        for id in &keys {
            let old = archive::key_day(id).is_some_and(|d| d < cutoff.as_str());
            if !old || in_use.contains(id) {
                continue;
            }
            match ring2.destroy(id) {
                Ok(()) => gone.push(id.clone()),
                Err(e) => {
                    tracing::error!(key = %id, error = %e, "an archive key could not be destroyed");
                    continue;
                }
            }
            if let Err(e) = archive::content::remove_key(&content, id) {
                tracing::error!(key = %id, error = %e, "archived file content whose key was destroyed could not be removed");
            }
        }
        for d in dirs.iter().filter(|d| !keys.contains(d)) {
            if let Err(e) = archive::content::remove_key(&content, d) {
                tracing::error!(key = %d, error = %e, "archived file content without a key could not be removed");
            }
        }
        Ok(gone)
    })
    .await
    .map_err(|e| e.to_string())??;
    done.keys_destroyed = destroyed.len();
    // Their fingerprints too (a name made again later is a new key).
    if !destroyed.is_empty() {
        if let Err(e) = store.archive_key_forget(destroyed).await {
            tracing::error!(error = %e, "the fingerprints of destroyed archive keys could not be forgotten");
        }
    }
    Ok(done)
}

/// Seals `owner`'s records older than `before_ms` (not under a hold key
/// yet) again under the hold key; returns how many.
async fn reseal_held<S: store::Store>(
    store: &S,
    ring: &Arc<Keyring>,
    content: &std::path::Path,
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
        let content = content.to_path_buf();
        let hold_id = archive::hold_id(now_ms);
        // The hold key in use, if any, else one made today — the pool's.
        let r = ring.clone();
        let current = tokio::task::spawn_blocking(move || -> Result<String, String> {
            Ok(r.ids()?
                .into_iter()
                .filter(|i| archive::is_hold(i))
                .max()
                .unwrap_or(hold_id))
        })
        .await
        .map_err(|e| e.to_string())??;
        let hold = super::keycheck::sealing_key(store, &ring, &current)
            .await
            .map_err(|e| e.to_string())?;
        let again =
            tokio::task::spawn_blocking(move || -> Result<Vec<(i64, String, Vec<u8>)>, String> {
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
                    // A file's content it keeps moves to the hold key too.
                    let body = if ct == super::FILE_TRANSFER {
                        match reseal_content(&content, &key, &hold, &aad, &body) {
                            Ok(b) => b,
                            Err(e) => {
                                tracing::error!(record = r.id, error = %e, "a held file's content could not be sealed again; the record stays under its day's key");
                                continue;
                            }
                        }
                    } else {
                        body
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

/// A file transfer record's body with its content (if it keeps any)
/// sealed again under `hold`, in the hold key's directory.
fn reseal_content(
    root: &std::path::Path,
    from: &archive::Key,
    hold: &archive::Key,
    aad: &[u8],
    body: &[u8],
) -> Result<Vec<u8>, String> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let mut j: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("a file transfer record: {e}"))?;
    let Some(rel) = j.get("content").and_then(|v| v.as_str()).map(str::to_owned) else {
        return Ok(body.to_vec());
    };
    let src_path = archive::content::path(root, &rel).ok_or("a content name that is not ours")?;
    let name = rel.rsplit('/').next().unwrap_or_default().to_string();
    let new_rel = format!("{}/{name}", hold.id());
    let dir = root.join(hold.id());
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let tmp = dir.join(format!("{name}.tmp"));
    let mut src =
        std::fs::File::open(&src_path).map_err(|e| format!("{}: {e}", src_path.display()))?;
    let result = (|| {
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| e.to_string())?;
        let mut w = std::io::BufWriter::new(&mut out);
        archive::content::reseal_stream(
            (from, &archive::content::aad(aad, &rel)),
            (hold, &archive::content::aad(aad, &new_rel)),
            &mut std::io::BufReader::new(&mut src),
            &mut w,
        )?;
        std::io::Write::flush(&mut w).map_err(|e| e.to_string())?;
        drop(w);
        out.sync_all().map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, dir.join(&name)).map_err(|e| e.to_string())?;
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| e.to_string())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    j["content"] = new_rel.into();
    Ok(j.to_string().into_bytes())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_held_files_content_moves_to_the_hold_key_and_opens_only_there() {
        let root = std::env::temp_dir().join(format!("parapet-reseal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let day = archive::Key::from_bytes("d20261206-r14", &[1; 32]).unwrap();
        let hold = archive::Key::from_bytes("hold-20261220", &[2; 32]).unwrap();
        let aad = archive::aad("sip:a@x", 5, "sip:a@x", "sip:b@x");
        let rel = "d20261206-r14/0123456789abcdef0123456789abcdef.sealed";
        let path = archive::content::path(&root, rel).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let plain: Vec<u8> = (0..150_000u32).map(|i| (i % 253) as u8).collect();
        let mut sealed = Vec::new();
        archive::content::seal_stream(
            &day,
            &archive::content::aad(&aad, rel),
            &mut plain.as_slice(),
            &mut sealed,
        )
        .unwrap();
        std::fs::write(&path, sealed).unwrap();
        let body = serde_json::json!({ "file": "x.pdf", "content": rel }).to_string();
        let again = super::reseal_content(&root, &day, &hold, &aad, body.as_bytes()).unwrap();
        let j: serde_json::Value = serde_json::from_slice(&again).unwrap();
        let new_rel = j["content"].as_str().unwrap();
        assert!(new_rel.starts_with("hold-20261220/"), "{new_rel}");
        let moved = std::fs::read(archive::content::path(&root, new_rel).unwrap()).unwrap();
        let mut back = Vec::new();
        archive::content::open_stream(
            &hold,
            &archive::content::aad(&aad, new_rel),
            &mut moved.as_slice(),
            &mut back,
        )
        .unwrap();
        assert!(back == plain);
        // A record without content is left as it is.
        let none = br#"{"file":"y.pdf"}"#;
        assert_eq!(
            super::reseal_content(&root, &day, &hold, &aad, none).unwrap(),
            none.to_vec()
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
