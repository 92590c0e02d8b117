//! The archive's writer task: messages noted and answered, sealed once
//! per owner with the day's key off the runtime's threads, written in
//! batches with retries.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use archive::{Key, Keyring};
use store::ArchiveRow;
use tokio::sync::mpsc;

use super::keycheck::KeyError;
use super::{Draft, BATCH, GATHER, RETRIES, WRITE_FAILED};

pub(super) async fn write_loop<S: store::Store>(
    mut rx: mpsc::Receiver<(Draft, String)>,
    store: S,
    keyring: Arc<Keyring>,
    metrics: Arc<crate::metrics::Metrics>,
    queued_bytes: Arc<std::sync::atomic::AtomicUsize>,
    dirs: super::ContentDirs,
) {
    let m = &metrics.archive;
    while let Some(first) = rx.recv().await {
        // Records wait up to GATHER for more to share their commit: nobody
        // waits for an archive record, and one commit (one fsync) per
        // message made archiving cost more than the message itself
        // (bench/archive.sh).
        let mut batch = vec![first];
        let until = tokio::time::Instant::now() + GATHER;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(Some(d)) => batch.push(d),
                Ok(None) | Err(_) => break,
            }
        }
        let bytes: usize = batch.iter().map(|(d, _)| d.body.len()).sum();
        let owners: u64 = batch.iter().map(|(d, _)| d.owners.len() as u64).sum();
        // The keys the batch needs, each checked to be the pool's.
        let ids: BTreeSet<String> = batch
            .iter()
            .flat_map(|(d, _)| {
                d.owners
                    .iter()
                    .map(|(_, days, _)| archive::day_id(d.at_ms, *days))
            })
            .collect();
        let mut keys = HashMap::new();
        for id in ids {
            // A key not the pool's is so for good; one that could not be
            // made or checked is tried again, as a write is.
            let mut attempt = 0;
            loop {
                match super::keycheck::sealing_key(&store, &keyring, &id).await {
                    Ok(k) => {
                        keys.insert(id, k);
                        break;
                    }
                    Err(KeyError::Unavailable(e)) if attempt + 1 < RETRIES => {
                        attempt += 1;
                        m.failing.store(true, Relaxed);
                        if let Some(suppressed) = WRITE_FAILED.allow() {
                            tracing::error!(error = %e, attempt, suppressed, "no archive key to seal with yet; retrying");
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(e) => {
                        if let Some(suppressed) = WRITE_FAILED.allow() {
                            tracing::error!(error = %e, suppressed, "archive records lost: no key to seal them with");
                        }
                        break;
                    }
                }
            }
        }
        let d = dirs.clone();
        let sealed = tokio::task::spawn_blocking(move || seal_all(&keys, &d, batch)).await;
        let (rows, lost) = match sealed {
            Ok(r) => r,
            Err(_) => (Vec::new(), owners),
        };
        if lost > 0 {
            m.lost.fetch_add(lost, Relaxed);
            m.failing.store(true, Relaxed);
        }
        if rows.is_empty() {
            queued_bytes.fetch_sub(bytes, Relaxed);
            continue;
        }
        let n = rows.len() as u64;
        let mut attempt = 0;
        loop {
            match store::Archive::archive_put(&store, rows.clone()).await {
                Ok(()) => {
                    m.archived.fetch_add(n, Relaxed);
                    if lost == 0 {
                        m.failing.store(false, Relaxed);
                    }
                    break;
                }
                Err(e) => {
                    m.write_failures.fetch_add(1, Relaxed);
                    m.failing.store(true, Relaxed);
                    attempt += 1;
                    if let Some(suppressed) = WRITE_FAILED.allow() {
                        tracing::error!(error = %e, records = n, attempt, suppressed, "archive records not written; retrying");
                    }
                    if attempt >= RETRIES {
                        tracing::error!(
                            records = n,
                            "archive records given up after 30 s of failed writes"
                        );
                        m.lost.fetch_add(n, Relaxed);
                        break;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        queued_bytes.fetch_sub(bytes, Relaxed);
    }
}

/// Seals each message once per owner with `keys` (by id); returns the
/// rows and how many records could not be sealed (no key for them).
fn seal_all(
    keys: &HashMap<String, Arc<Key>>,
    dirs: &super::ContentDirs,
    batch: Vec<(Draft, String)>,
) -> (Vec<ArchiveRow>, u64) {
    let mut rows = Vec::new();
    let mut lost = 0;
    for (d, result) in batch {
        for (owner, days, keep_content) in &d.owners {
            let key_id = archive::day_id(d.at_ms, *days);
            let Some(key) = keys.get(&key_id) else {
                lost += 1;
                continue;
            };
            let aad = archive::aad(owner, d.at_ms, &d.sender, &d.recipient);
            // The message, then each file it offered as a record of its own.
            let files = d.files.iter().map(|f| {
                let mut j = serde_json::json!({
                    "file": f.name, "size": f.size, "content_type": f.content_type,
                    "sha256": f.sha256,
                });
                if *keep_content {
                    match seal_content(key, &aad, dirs, &f.id) {
                        Ok(rel) => j["content"] = rel.into(),
                        Err(e) => {
                            if let Some(suppressed) = WRITE_FAILED.allow() {
                                tracing::error!(error = %e, suppressed, "a file's content could not be archived; its record says so");
                            }
                            j["content_error"] = e.into();
                        }
                    }
                }
                j.to_string().into_bytes()
            });
            let contents = std::iter::once((d.content_type.as_str(), d.body.clone()))
                .chain(files.map(|b| (super::FILE_TRANSFER, b)));
            for (content_type, body) in contents {
                match archive::seal(key, &aad, content_type, &body) {
                    Ok(sealed) => rows.push(ArchiveRow {
                        id: 0,
                        owner: owner.clone(),
                        at_ms: d.at_ms,
                        sender: d.sender.clone(),
                        recipient: d.recipient.clone(),
                        federated: d.federated,
                        result: result.clone(),
                        key_id: key_id.clone(),
                        sealed,
                    }),
                    Err(_) => lost += 1,
                }
            }
        }
    }
    (rows, lost)
}

/// Seals file `id`'s bytes under `key` into the archive's content
/// directory, `KEY_ID/RANDOM.sealed` (what the record names): written to a
/// temporary name, synced, renamed, the directory synced. Content goes
/// with its key: when retention destroys the key, its directory is
/// removed.
fn seal_content(
    key: &archive::Key,
    aad: &[u8],
    dirs: &super::ContentDirs,
    id: &str,
) -> Result<String, String> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let mut src = std::fs::File::open(dirs.files.join(id))
        .map_err(|e| format!("the offered file is not readable: {e}"))?;
    let dir = dirs.content.join(key.id());
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut name = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut name)
        .map_err(|_| "the system random generator failed".to_string())?;
    let name: String = name.iter().map(|b| format!("{b:02x}")).collect();
    let rel = format!("{}/{name}.sealed", key.id());
    let tmp = dir.join(format!("{name}.tmp"));
    let result = (|| {
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        let mut w = std::io::BufWriter::with_capacity(archive::content::CHUNK, &mut out);
        archive::content::seal_stream(key, &archive::content::aad(aad, &rel), &mut src, &mut w)?;
        std::io::Write::flush(&mut w).map_err(|e| e.to_string())?;
        drop(w);
        out.sync_all().map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, dir.join(format!("{name}.sealed"))).map_err(|e| e.to_string())?;
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| e.to_string())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|()| rel)
}
