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

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use archive::Keyring;
use sip_txn::TxnId;
use tokio::sync::mpsc;

use super::{policy_set, Core, Req};

mod keycheck;
mod retention;
mod writer;

pub(crate) use keycheck::check_directory;

use writer::write_loop;

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
    /// Each owner with their retention in days and whether their policy
    /// keeps the content of files offered.
    owners: Vec<(String, i64, bool)>,
    at_ms: i64,
    sender: String,
    recipient: String,
    federated: bool,
    content_type: String,
    body: Vec<u8>,
    /// Files of this server the message offered (each archived as a file
    /// transfer record beside it).
    files: Vec<OfferedFile>,
}

/// A file offered in an archived message.
#[derive(Debug, Clone)]
pub(crate) struct OfferedFile {
    /// Its id in the file server's directory.
    id: String,
    name: String,
    size: u64,
    content_type: String,
    sha256: String,
}

/// The content type of a file transfer record: JSON with the file's name,
/// size, type and SHA-256, as stored when it was uploaded.
pub(crate) const FILE_TRANSFER: &str = "application/vnd.parapet.file-transfer+json";

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
        dirs: ContentDirs,
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
                    dirs,
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

/// Where files offered are read from, and where the archive keeps the
/// content its policy says to keep (`DATA/files`, `DATA/archive-files`).
#[derive(Debug, Clone)]
pub(crate) struct ContentDirs {
    pub(crate) files: std::path::PathBuf,
    pub(crate) content: std::path::PathBuf,
}

impl ContentDirs {
    pub(crate) fn in_data_dir(data: &std::path::Path) -> ContentDirs {
        ContentDirs {
            files: data.join("files"),
            content: data.join(archive::content::DIR),
        }
    }
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

/// Whether party `aor` (as [`party`] names it) is a user of `domain`.
pub(crate) fn in_domain(aor: &str, domain: &str) -> bool {
    aor.rsplit_once('@')
        .is_some_and(|(_, d)| d.eq_ignore_ascii_case(domain))
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
        let ours = |aor: &str| in_domain(aor, &domain);
        let federated = !(ours(sender) && ours(recipient));
        let mut owners = Vec::new();
        let mut block = false;
        for party in [sender, recipient] {
            if !ours(party) || owners.iter().any(|(o, _, _)| o == party) {
                continue;
            }
            let rule = policy_set::archiving(&self.policies, party);
            if (federated && rule.external) || (!federated && rule.internal) {
                owners.push((party.to_string(), rule.retention_days, rule.file_content));
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
            files: self
                .cdr
                .offered
                .as_ref()
                .filter(|(id, _)| *id == r.id)
                .map(|(_, files)| {
                    files
                        .iter()
                        .map(|f| OfferedFile {
                            id: f.id.clone(),
                            name: f.name.clone(),
                            size: f.size,
                            content_type: f.content_type.clone(),
                            sha256: f.sha256.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
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
            // Whether a key can be made (claiming no name: a node whose
            // keys are not the pool's must not take one from the others),
            // and the database answers. A key found not to be the pool's
            // keeps the archive failing until the node is put right and
            // restarted.
            let id = archive::day_id(now_ms(), 1);
            let r = ring.clone();
            let key = tokio::task::spawn_blocking(move || r.key(&id, true)).await;
            let store_ok = store::Archive::archive_holds(&store).await.is_ok();
            if ring.mismatched() {
                if let Some(suppressed) = WRITE_FAILED.allow() {
                    tracing::error!(dir = %ring.dir().display(), suppressed, "the IM archive cannot be written: its keys are not the pool's (every node must use one shared archive.keys_dir; restart once it does)");
                }
            } else if matches!(key, Ok(Ok(Some(_)))) && store_ok {
                metrics.archive.failing.store(false, Relaxed);
                tracing::info!("the IM archive can be written again");
            }
            busy.store(false, Relaxed);
        });
    }
}
