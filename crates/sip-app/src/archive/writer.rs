//! The archive's writer task: messages noted and answered, sealed once
//! per owner with the day's key off the runtime's threads, written in
//! batches with retries.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use archive::Keyring;
use store::ArchiveRow;
use tokio::sync::mpsc;

use super::{Draft, BATCH, GATHER, RETRIES, WRITE_FAILED};

pub(super) async fn write_loop<S: store::Store>(
    mut rx: mpsc::Receiver<(Draft, String)>,
    store: S,
    keyring: Arc<Keyring>,
    metrics: Arc<crate::metrics::Metrics>,
    queued_bytes: Arc<std::sync::atomic::AtomicUsize>,
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
        let ring = keyring.clone();
        let sealed = tokio::task::spawn_blocking(move || seal_all(&ring, batch)).await;
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

/// Seals each message once per owner; returns the rows and how many
/// records could not be sealed (no key could be made).
fn seal_all(ring: &Keyring, batch: Vec<(Draft, String)>) -> (Vec<ArchiveRow>, u64) {
    let mut rows = Vec::new();
    let mut lost = 0;
    for (d, result) in batch {
        for (owner, days) in &d.owners {
            let key_id = archive::day_id(d.at_ms, *days);
            let key = match ring.key(&key_id, true) {
                Ok(Some(k)) => k,
                Ok(None) | Err(_) => {
                    if let Some(suppressed) = WRITE_FAILED.allow() {
                        tracing::error!(key = %key_id, dir = %ring.dir().display(), suppressed, "no archive key could be made: records lost");
                    }
                    lost += 1;
                    continue;
                }
            };
            let aad = archive::aad(owner, d.at_ms, &d.sender, &d.recipient);
            // The message, then each file it offered as a record of its own.
            let files = d.files.iter().map(|(name, size, content_type, sha256)| {
                serde_json::json!({
                    "file": name, "size": size, "content_type": content_type, "sha256": sha256,
                })
                .to_string()
                .into_bytes()
            });
            let contents = std::iter::once((d.content_type.as_str(), d.body.clone()))
                .chain(files.map(|b| (super::FILE_TRANSFER, b)));
            for (content_type, body) in contents {
                match archive::seal(&key, &aad, content_type, &body) {
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
