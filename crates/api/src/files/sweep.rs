//! Deleting what must go: the bytes of expired files (their records stay
//! a month, so fetching them answers 410), bytes whose record is gone (a
//! removed user's files, an upload whose recording crashed), and partial
//! uploads left by a crash. Every minute, and at once when a user is
//! removed (then bytes more than a minute old without a record go at
//! once; younger ones, which may be an upload being recorded, at the next
//! regular pass, within ten minutes).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use store::Store;

use super::{valid_id, FileService};

/// Expired files handled per pass.
const BATCH: usize = 500;
/// How long an expired file's record stays (410 rather than 404).
const TOMBSTONE_SECS: i64 = 30 * 86_400;
/// A file on disk younger than this may still be being recorded (an
/// upload renames its file into place, then records it).
const GRACE: Duration = Duration::from_secs(60);

/// Runs until the process ends.
pub(crate) async fn sweeper<S: Store>(store: S, files: Arc<FileService>) {
    let mut orphans_due = tokio::time::Instant::now();
    loop {
        let removed = tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(60)) => false,
            () = files.sweep_now.notified() => true,
        };
        if let Err(e) = expire(&store, &files).await {
            tracing::warn!(error = %e, "file sweep: expired files not deleted");
        }
        if removed || tokio::time::Instant::now() >= orphans_due {
            orphans_due = tokio::time::Instant::now() + Duration::from_secs(600);
            if let Err(e) = orphans(&store, &files).await {
                tracing::warn!(error = %e, "file sweep: files without records not deleted");
            }
        }
    }
}

async fn remove(path: std::path::PathBuf) -> std::io::Result<()> {
    match tokio::fs::remove_file(path).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Deletes expired files' bytes, then records that they are gone.
pub(crate) async fn expire<S: Store>(store: &S, files: &FileService) -> Result<usize, String> {
    let now = sip_app::unix_now();
    let mut total = 0;
    loop {
        let ids = store::Files::expired_files(store, now, BATCH)
            .await
            .map_err(|e| e.to_string())?;
        if ids.is_empty() {
            break;
        }
        let n = ids.len();
        delete(store, files, ids, now).await?;
        total += n;
        if n < BATCH {
            break;
        }
    }
    store::Files::purge_file_records(store, now - TOMBSTONE_SECS)
        .await
        .map_err(|e| e.to_string())?;
    if total > 0 {
        tracing::info!(files = total, "expired files deleted");
    }
    Ok(total)
}

/// Deletes these files' bytes, then records that they are gone.
pub(crate) async fn delete<S: Store>(
    store: &S,
    files: &FileService,
    ids: Vec<String>,
    now: i64,
) -> Result<(), String> {
    for id in &ids {
        remove(files.path(id)).await.map_err(|e| e.to_string())?;
    }
    store::Files::mark_files_deleted(store, ids, now)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Deletes bytes with no live record (older than the grace period), and
/// partial uploads older than a day.
pub(crate) async fn orphans<S: Store>(store: &S, files: &FileService) -> Result<usize, String> {
    let (dir, incoming) = (files.dir.clone(), files.incoming.clone());
    let (candidates, stale_partials) = tokio::task::spawn_blocking(move || {
        let old = |m: &std::fs::Metadata, age: Duration| {
            m.modified()
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|a| a >= age)
        };
        let mut ids = Vec::new();
        for e in std::fs::read_dir(&dir)?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if valid_id(&name) && e.metadata().is_ok_and(|m| old(&m, GRACE)) {
                ids.push(name);
            }
        }
        let mut partials = Vec::new();
        for e in std::fs::read_dir(&incoming)?.flatten() {
            if e.metadata()
                .is_ok_and(|m| old(&m, Duration::from_secs(86_400)))
            {
                partials.push(e.path());
            }
        }
        Ok::<_, std::io::Error>((ids, partials))
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    for p in stale_partials {
        remove(p).await.map_err(|e| e.to_string())?;
    }
    let kept: std::collections::HashSet<String> =
        store::Files::kept_files(store, candidates.clone())
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .collect();
    let mut n = 0;
    for id in candidates.into_iter().filter(|id| !kept.contains(id)) {
        remove(files.path(&id)).await.map_err(|e| e.to_string())?;
        n += 1;
    }
    if n > 0 {
        tracing::info!(files = n, "files without records deleted");
    }
    Ok(n)
}
