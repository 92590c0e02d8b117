//! The IM archive, as the archiving policy selects: each instant message
//! between our users (`internal`) or with a partner's (`external`) is kept
//! for each of our users whose policy selects that kind — sealed with the
//! day's key (crate `archive`) by a writer task, with the body as it was
//! delivered (after the IM filter) and what became of it.
//!
//! A message is noted when it is about to go on (keyed by its server
//! transaction) and archived when its final answer goes back: `delivered`,
//! `stored for later delivery`, or `not delivered NNN` / `refused NNN`.
//! A user whose policy says `block_on_failure` cannot send or receive
//! instant messages while the archive cannot be written (503).
//!
//! Retention: every ten minutes (and a few seconds after start) records
//! older than their owner's `retention_days` are deleted, except a user's
//! on legal hold, whose records due are sealed again under a hold key; then
//! every key no record uses any more (from two days back: a record of
//! yesterday may still be on its way to the database, a hold key just made
//! not yet used) is destroyed. Records are sealed under the key of their
//! day and their owner's retention, so the records of one key fall due
//! together.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use archive::Keyring;
use sip_txn::TxnId;
use store::{ArchiveFilter, ArchiveRow};
use tokio::sync::mpsc;

use super::{policy_set, Core, Req};

/// Messages waiting for the writer at most; beyond, they are lost (and
/// counted) and the archive counts as failing.
const QUEUE: usize = 10_000;
/// Bytes of message bodies noted or waiting for the writer at most (each
/// body is at most `im.max_bytes`): beyond, a message goes unarchived
/// (counted), or is refused where the policy blocks on failure.
const MAX_BYTES: usize = 64 << 20;
/// How often a failing archive is tried again (a key for today, a read of
/// the store) while nothing else would clear it.
const PROBE_EVERY: Duration = Duration::from_secs(10);
/// Records written per transaction at most.
const BATCH: usize = 256;
/// How long the writer gathers records for one transaction.
const GATHER: Duration = Duration::from_millis(100);
/// How long a failed write is retried (once a second) before its records
/// are given up.
const RETRIES: u32 = 30;
/// Messages noted and not yet answered, at most (each is answered within
/// timer F; this bounds a pathological flood).
const MAX_NOTED: usize = 100_000;
/// How often retention runs.
pub(crate) const PURGE_EVERY: Duration = Duration::from_secs(600);

static WRITE_FAILED: sip_transport::logging::RateLimited =
    sip_transport::logging::RateLimited::per(Duration::from_secs(60), 1);

#[derive(Debug, Default)]
pub struct ArchiveMetrics {
    archived: AtomicU64,
    write_failures: AtomicU64,
    lost: AtomicU64,
    purged: AtomicU64,
    keys_destroyed: AtomicU64,
    /// Set while writes fail.
    failing: AtomicBool,
}

impl ArchiveMetrics {
    pub(crate) fn counters(&self) -> [(&'static str, &'static str, &AtomicU64); 5] {
        [
            ("parapet_archive_records_total", "Archived instant-message records written (one per archived party).", &self.archived),
            ("parapet_archive_write_failures_total", "Writes of archive records that failed (retried once a second for 30 s).", &self.write_failures),
            ("parapet_archive_records_lost_total", "Archive records given up: writes that failed for 30 s, or more waiting than the writer's queue holds.", &self.lost),
            ("parapet_archive_purged_total", "Archive records deleted by retention.", &self.purged),
            ("parapet_archive_keys_destroyed_total", "Archive day keys destroyed once no record used them.", &self.keys_destroyed),
        ]
    }

    pub(crate) fn writable(&self) -> bool {
        !self.failing.load(Relaxed)
    }
}

/// A message noted for the archive, waiting for its answer.
#[derive(Debug)]
pub(crate) struct Draft {
    /// Each owner with their retention in days.
    owners: Vec<(String, i64)>,
    at_ms: i64,
    sender: String,
    recipient: String,
    federated: bool,
    content_type: String,
    body: Vec<u8>,
}

/// The handle the core holds: the writer's queue and the messages noted.
#[derive(Debug)]
pub(crate) struct Archiver {
    tx: Option<mpsc::Sender<(Draft, String)>>,
    /// The writer, for a clean stop to wait for (it ends once every
    /// record handed to it is written, when `tx` is dropped).
    pub(crate) task: Option<tokio::task::JoinHandle<()>>,
    pub(crate) keyring: Option<Arc<Keyring>>,
    noted: HashMap<TxnId, Draft>,
    /// Bytes of the bodies in `noted`.
    noted_bytes: usize,
    /// Bytes of the bodies handed to the writer and not yet written.
    queued_bytes: Arc<std::sync::atomic::AtomicUsize>,
    probing: Arc<AtomicBool>,
    last_probe: std::time::Instant,
}

/// The archive's clock, Unix milliseconds. Debug builds (the tests) can
/// move it forward with `PARAPET_ARCHIVE_CLOCK_OFFSET_SECS`, to see
/// retention work without waiting days; release builds ignore it.
pub(crate) fn now_ms() -> i64 {
    let real = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    real + clock_offset_ms()
}

fn clock_offset_ms() -> i64 {
    if !cfg!(debug_assertions) {
        return 0;
    }
    std::env::var("PARAPET_ARCHIVE_CLOCK_OFFSET_SECS")
        .ok()
        .and_then(|v| v.parse::<i64>().ok())
        .map_or(0, |s| s.saturating_mul(1000))
}

impl Archiver {
    /// Starts the writer over the key directory (`None`: it could not be
    /// opened, as the server logged). Without it the archive is failing:
    /// messages of users whose policy blocks on failure are refused,
    /// others go on unarchived and counted as lost.
    pub(crate) fn start<S: store::Store>(
        keyring: Option<Arc<Keyring>>,
        store: S,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Archiver {
        let queued_bytes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (tx, task) = match &keyring {
            None => {
                metrics.archive.failing.store(true, Relaxed);
                (None, None)
            }
            Some(k) => {
                let (tx, rx) = mpsc::channel(QUEUE);
                let task = tokio::spawn(write_loop(
                    rx,
                    store,
                    k.clone(),
                    metrics,
                    queued_bytes.clone(),
                ));
                (Some(tx), Some(task))
            }
        };
        Archiver {
            tx,
            task,
            keyring,
            noted: HashMap::new(),
            noted_bytes: 0,
            queued_bytes,
            probing: Arc::default(),
            last_probe: std::time::Instant::now(),
        }
    }
}

async fn write_loop<S: store::Store>(
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
            match archive::seal(&key, &aad, &d.content_type, &d.body) {
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
    (rows, lost)
}

/// `sip:user@host` of a URI (host in lower case), as the archive names
/// parties.
pub(crate) fn party(uri: &sip::Uri<'_>) -> Option<String> {
    let sip::Uri::Sip(u) = uri else {
        return None;
    };
    Some(format!(
        "sip:{}@{}",
        u.user?,
        u.host.to_string().to_ascii_lowercase()
    ))
}

impl<S: store::Store> Core<S> {
    /// A MESSAGE inside a dialog (a session of instant messages): noted
    /// like one outside, From and To naming the parties. `false`: refused.
    pub(crate) async fn archive_in_dialog(&mut self, r: &Req<'_>) -> bool {
        if r.f.method != sip::Method::Message {
            return true;
        }
        let (Some(from), Some(to)) = (party(&r.f.from.uri), party(&r.f.to.uri)) else {
            return true;
        };
        self.archive_begin(r, &from, &to).await
    }

    /// A MESSAGE about to go on: noted for the archive (below) and counted
    /// in its parties' conversation (usage records). `false`: refused.
    pub(crate) async fn archive_begin(
        &mut self,
        r: &Req<'_>,
        sender: &str,
        recipient: &str,
    ) -> bool {
        if !self.archive_note(r, sender, recipient).await {
            return false;
        }
        self.cdr_message(r, sender, recipient);
        true
    }

    /// Notes a MESSAGE about to go on (its body as it goes, after the IM
    /// filter) for the parties whose archiving policy selects it. `false`:
    /// refused (503) because a selecting policy blocks on failure and the
    /// archive cannot be written now.
    async fn archive_note(&mut self, r: &Req<'_>, sender: &str, recipient: &str) -> bool {
        let domain = self.cfg.domain.clone();
        let ours = |aor: &str| {
            aor.rsplit_once('@')
                .is_some_and(|(_, d)| d.eq_ignore_ascii_case(&domain))
        };
        let federated = !(ours(sender) && ours(recipient));
        let mut owners = Vec::new();
        let mut block = false;
        for party in [sender, recipient] {
            if !ours(party) || owners.iter().any(|(o, _)| o == party) {
                continue;
            }
            let rule = policy_set::archiving(&self.policies, party);
            if (federated && rule.external) || (!federated && rule.internal) {
                owners.push((party.to_string(), rule.retention_days));
                block |= rule.block_on_failure;
            }
        }
        if owners.is_empty() {
            return true;
        }
        let body = r.msg.body().len();
        let full = self.archive.noted.len() >= MAX_NOTED
            || self.archive.noted_bytes + self.archive.queued_bytes.load(Relaxed) + body
                > MAX_BYTES;
        let writable = self.archive.tx.is_some() && self.metrics.archive.writable() && !full;
        if block && !writable {
            self.reply(
                r,
                503,
                "Service Unavailable (Archive Unavailable)",
                &[("Retry-After", "30")],
            )
            .await;
            return false;
        }
        if full {
            self.metrics
                .archive
                .lost
                .fetch_add(owners.len() as u64, Relaxed);
            return true;
        }
        self.archive.noted_bytes += body;
        let draft = Draft {
            owners,
            at_ms: now_ms(),
            sender: sender.to_string(),
            recipient: recipient.to_string(),
            federated,
            content_type: super::files::content_type_of(r.msg),
            body: r.msg.body().to_vec(),
        };
        self.archive.noted.insert(r.id, draft);
        true
    }

    /// The final answer to server transaction `id` went back: if it was a
    /// noted message, it is archived with what became of it.
    pub(crate) fn archive_answered(&mut self, id: TxnId, result: impl FnOnce() -> String) {
        if self.archive.noted.is_empty() {
            return;
        }
        let Some(draft) = self.archive.noted.remove(&id) else {
            return;
        };
        let bytes = draft.body.len();
        self.archive.noted_bytes = self.archive.noted_bytes.saturating_sub(bytes);
        let n = draft.owners.len() as u64;
        let Some(tx) = &self.archive.tx else {
            self.metrics.archive.lost.fetch_add(n, Relaxed);
            return;
        };
        self.archive.queued_bytes.fetch_add(bytes, Relaxed);
        if tx.try_send((draft, result())).is_err() {
            self.archive.queued_bytes.fetch_sub(bytes, Relaxed);
            self.metrics.archive.lost.fetch_add(n, Relaxed);
            self.metrics.archive.failing.store(true, Relaxed);
            if let Some(suppressed) = WRITE_FAILED.allow() {
                tracing::error!(suppressed, "the archive writer is behind: records lost");
            }
        }
    }

    /// While the archive fails and nothing is written that could clear it
    /// (every archived user's messages refused), tries it every ten
    /// seconds: a key for today made or read, and the store read. Both
    /// working clear the failure; a write that then fails sets it again.
    pub(crate) fn archive_probe(&mut self) {
        if self.metrics.archive.writable()
            || self.archive.last_probe.elapsed() < PROBE_EVERY
            || self.archive.probing.swap(true, Relaxed)
        {
            return;
        }
        self.archive.last_probe = std::time::Instant::now();
        let Some(ring) = self.archive.keyring.clone() else {
            self.archive.probing.store(false, Relaxed);
            return;
        };
        let (store, metrics, busy) = (
            self.store.clone(),
            self.metrics.clone(),
            self.archive.probing.clone(),
        );
        tokio::spawn(async move {
            let id = archive::day_id(now_ms(), 1);
            let key = tokio::task::spawn_blocking(move || ring.key(&id, true)).await;
            let store_ok = store::Archive::archive_holds(&store).await.is_ok();
            if matches!(key, Ok(Ok(Some(_)))) && store_ok {
                metrics.archive.failing.store(false, Relaxed);
                tracing::info!("the IM archive can be written again");
            }
            busy.store(false, Relaxed);
        });
    }

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
