//! The ring of segment files: `DIR/<first record's ms>.trace`, each up to
//! an eighth of the byte cap; the oldest deleted when the total is over the
//! cap or a segment's last record is older than the age cap. One writer
//! thread takes what was captured every 20 ms, appends it (buffered,
//! flushed every 200 ms) and sends it to the HEP collector; messages
//! beyond what may wait are dropped and counted, never waited for. A
//! round that finds nothing flushes and parks the thread until the next
//! capture wakes it: an idle server's writer does not wake 50 times a
//! second.

use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::record::{parse_segment, redact_for_disk, Record};

/// Messages waiting for the writer at most, and their bytes.
const QUEUE: usize = 16_384;
const QUEUE_BYTES: usize = 32 << 20;
/// How often the writer takes what was captured. Woken for each message
/// instead (a channel), the writer thread doubled the CPU a relayed
/// MESSAGE cost on a one-core server — a wake-up and two context switches
/// per message (bench/README.md, "The SIP trace's cost").
const TAKE_EVERY: Duration = Duration::from_millis(20);
const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// How long a parked writer sleeps at most (it then sees whether every
/// [`Writer`] is gone). Long in the unit tests, so that a capture that
/// failed to wake it shows.
#[cfg(not(test))]
const PARKED_AT_MOST: Duration = Duration::from_secs(1);
#[cfg(test)]
const PARKED_AT_MOST: Duration = Duration::from_secs(60);

/// How much the ring keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub max_bytes: u64,
    pub max_age: Duration,
}

/// What the writer did, for the metrics.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// Messages dropped because the writer was behind.
    pub dropped: Arc<AtomicU64>,
    /// Messages written to the ring.
    pub written: Arc<AtomicU64>,
    /// HEP packets sent, and those that could not be.
    pub hep_sent: Arc<AtomicU64>,
    pub hep_failed: Arc<AtomicU64>,
}

/// Messages captured and not yet taken by the writer.
#[derive(Debug, Default)]
struct Pending {
    records: Vec<Record>,
    bytes: usize,
    /// The writer found nothing at its last round and waits on the
    /// condition variable: the next capture wakes it.
    parked: bool,
}

/// What the capturing threads and the writer share.
#[derive(Debug, Default)]
struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
    /// The writer's rounds (each a wake-up of its thread).
    rounds: AtomicU64,
}

/// The writer's handle: cheap to clone, never blocks on the writer (a
/// short lock the writer holds only to swap the batch out).
#[derive(Debug, Clone)]
pub struct Writer {
    shared: Arc<Shared>,
    pub counters: Counters,
}

impl Writer {
    /// Hands a message to the writer (credentials are cut before it is
    /// kept); drops it, counted, if the writer is behind.
    pub fn capture(&self, r: Record) {
        let Ok(mut p) = self.shared.pending.lock() else {
            self.counters.dropped.fetch_add(1, Relaxed);
            return;
        };
        if p.records.len() >= QUEUE || p.bytes + r.message.len() > QUEUE_BYTES {
            drop(p);
            self.counters.dropped.fetch_add(1, Relaxed);
            return;
        }
        p.bytes += r.message.len();
        p.records.push(r);
        // Only the first message after a quiet spell wakes the writer;
        // while messages keep coming it takes them every TAKE_EVERY.
        if std::mem::take(&mut p.parked) {
            self.shared.wake.notify_one();
        }
    }
}

/// Starts the writer thread over `dir` (made, mode 0700), sending to
/// `hep` (with `agent` as capture agent id) as well when set. `caps.max_bytes`
/// of 0 keeps nothing on disk (HEP only).
pub fn start(
    dir: &Path,
    caps: Caps,
    hep: Option<(Hep, u32)>,
    counters: Counters,
) -> Result<Writer, String> {
    start_ring(dir, None, caps, hep, counters)
}

/// [`start`] for node `node` of a pool whose nodes keep their rings side
/// by side under `root` ([`search_nodes`] reads them all): the ring is
/// `root/node`, and each time it starts a segment it also deletes what
/// is past the age cap in the other nodes' directories — a node that died
/// or was renamed leaves a ring nobody else writes — and the directories
/// emptied so.
pub fn start_pooled(
    root: &Path,
    node: &str,
    caps: Caps,
    hep: Option<(Hep, u32)>,
    counters: Counters,
) -> Result<Writer, String> {
    start_ring(&root.join(node), Some(root), caps, hep, counters)
}

fn start_ring(
    dir: &Path,
    pool_root: Option<&Path>,
    caps: Caps,
    hep: Option<(Hep, u32)>,
    counters: Counters,
) -> Result<Writer, String> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("{}: cannot create the trace directory: {e}", dir.display()))?;
    let socket = match hep {
        Some((Hep::Udp(to), agent)) => {
            let bind: SocketAddr = if to.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let s = std::net::UdpSocket::bind(bind)
                .map_err(|e| format!("HEP: cannot open a UDP socket: {e}"))?;
            s.set_nonblocking(true)
                .map_err(|e| format!("HEP: cannot open a UDP socket: {e}"))?;
            Some((HepOut::Udp(s, to), agent))
        }
        Some((Hep::Tls(c), agent)) => Some((
            HepOut::Tls(super::hep_tls::start(
                c,
                counters.hep_sent.clone(),
                counters.hep_failed.clone(),
            )?),
            agent,
        )),
        None => None,
    };
    let shared = Arc::new(Shared::default());
    let w = Writer {
        shared: shared.clone(),
        counters,
    };
    let state = Ring {
        dir: dir.to_path_buf(),
        pool_root: pool_root.map(Path::to_path_buf),
        caps,
        current: None,
        written: w.counters.written.clone(),
        hep: socket,
        hep_sent: w.counters.hep_sent.clone(),
        hep_failed: w.counters.hep_failed.clone(),
    };
    std::thread::Builder::new()
        .name("sip-trace".into())
        .spawn(move || state.run(shared))
        .map_err(|e| format!("cannot start the trace writer: {e}"))?;
    Ok(w)
}

/// Where HEP v3 packets go.
#[derive(Debug, Clone)]
pub enum Hep {
    /// Datagrams to an address.
    Udp(SocketAddr),
    /// A TLS connection (`hep_tls`).
    Tls(super::hep_tls::TlsCollector),
}

enum HepOut {
    Udp(std::net::UdpSocket, SocketAddr),
    Tls(super::hep_tls::Sender),
}

struct Segment {
    file: std::io::BufWriter<fs::File>,
    bytes: u64,
    opened: Instant,
}

struct Ring {
    dir: PathBuf,
    /// The pool's root, when the nodes' rings are side by side.
    pool_root: Option<PathBuf>,
    caps: Caps,
    current: Option<Segment>,
    written: Arc<AtomicU64>,
    hep: Option<(HepOut, u32)>,
    hep_sent: Arc<AtomicU64>,
    hep_failed: Arc<AtomicU64>,
}

impl Ring {
    fn segment_cap(&self) -> u64 {
        (self.caps.max_bytes / 8).max(64 * 1024)
    }

    /// Takes what was captured every [`TAKE_EVERY`] until every
    /// [`Writer`] is gone, then writes what is left and stops. A round
    /// that finds nothing flushes and parks until a capture wakes it (or
    /// [`PARKED_AT_MOST`]).
    fn run(mut self, shared: Arc<Shared>) {
        let mut last_flush = Instant::now();
        let mut buf = Vec::with_capacity(4096);
        let mut batch = Vec::new();
        loop {
            shared.rounds.fetch_add(1, Relaxed);
            // Ours is the last handle: nothing more can come.
            let last = Arc::strong_count(&shared) == 1;
            let idle = shared.pending.lock().is_ok_and(|p| p.records.is_empty());
            if idle && !last {
                // The file is written out with the lock released: the
                // capturing threads (the runtime's) never wait on it.
                self.flush();
                last_flush = Instant::now();
                if let Ok(mut p) = shared.pending.lock() {
                    // (Something captured meanwhile did not see it parked:
                    // it is taken at the next round instead.)
                    if p.records.is_empty() {
                        p.parked = true;
                        let (mut p, waited) = shared
                            .wake
                            .wait_timeout_while(p, PARKED_AT_MOST, |p| p.parked)
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        p.parked = false;
                        drop(p);
                        // Woken by a capture: what came with it and just
                        // after goes as one batch, as under load.
                        if !waited.timed_out() {
                            std::thread::sleep(TAKE_EVERY);
                        }
                    }
                }
                continue;
            }
            if let Ok(mut p) = shared.pending.lock() {
                std::mem::swap(&mut batch, &mut p.records);
                p.bytes = 0;
            }
            for r in batch.drain(..) {
                self.take(r, &mut buf);
            }
            if last {
                self.flush();
                return;
            }
            if last_flush.elapsed() >= FLUSH_EVERY {
                last_flush = Instant::now();
                self.flush();
            }
            std::thread::sleep(TAKE_EVERY);
        }
    }

    /// One message: to the HEP collector, and into the ring.
    fn take(&mut self, mut r: Record, buf: &mut Vec<u8>) {
        if let std::borrow::Cow::Owned(m) = redact_for_disk(&r.message) {
            r.message = m.into();
        }
        match &self.hep {
            Some((HepOut::Udp(sock, to), agent)) => {
                let packet = super::hep::encode(&r, *agent);
                match sock.send_to(&packet, *to) {
                    Ok(_) => self.hep_sent.fetch_add(1, Relaxed),
                    Err(_) => self.hep_failed.fetch_add(1, Relaxed),
                };
            }
            Some((HepOut::Tls(sender), agent)) => sender.send(super::hep::encode(&r, *agent)),
            None => {}
        }
        if self.caps.max_bytes > 0 {
            buf.clear();
            r.encode(buf);
            self.append(buf, r.at_ms);
        }
    }

    fn append(&mut self, bytes: &[u8], at_ms: i64) {
        let cap = self.segment_cap();
        let rotate = self.current.as_ref().is_none_or(|s| {
            s.bytes + bytes.len() as u64 > cap || s.opened.elapsed() >= self.caps.max_age / 8
        });
        if rotate {
            self.flush();
            self.current = None;
            self.trim(at_ms);
            let path = self.dir.join(format!("{at_ms:016}.trace"));
            match fs::OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(f) => {
                    self.current = Some(Segment {
                        file: std::io::BufWriter::with_capacity(256 * 1024, f),
                        bytes: 0,
                        opened: Instant::now(),
                    })
                }
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "the SIP trace segment cannot be opened");
                    return;
                }
            }
        }
        if let Some(s) = &mut self.current {
            if s.file.write_all(bytes).is_ok() {
                s.bytes += bytes.len() as u64;
                self.written.fetch_add(1, Relaxed);
            }
        }
    }

    fn flush(&mut self) {
        if let Some(s) = &mut self.current {
            let _ = s.file.flush();
        }
    }

    /// Deletes the oldest segments while the ring is over its byte cap
    /// (counting the next segment), or their successor began before the
    /// age cap (so everything in them is older).
    fn trim(&self, now_ms: i64) {
        let mut segs = segments(&self.dir);
        let max_age_ms = i64::try_from(self.caps.max_age.as_millis()).unwrap_or(i64::MAX);
        let mut total: u64 = segs.iter().map(|s| s.2).sum::<u64>() + self.segment_cap();
        while let Some((start, path, size)) = segs.first().cloned() {
            let next_start = segs.get(1).map(|s| s.0).unwrap_or(now_ms);
            let too_old = now_ms.saturating_sub(next_start) > max_age_ms;
            if total <= self.caps.max_bytes && !too_old {
                break;
            }
            let _ = start;
            if fs::remove_file(&path).is_ok() {
                total = total.saturating_sub(size);
            }
            segs.remove(0);
        }
        if let Some(root) = &self.pool_root {
            trim_others(root, &self.dir, self.caps.max_age);
        }
    }
}

/// In a pool's trace `root`: every file not written for `max_age` outside
/// this node's `own` directory deleted (other nodes' segments, and any
/// left in the root itself), then the directories that leaves empty. A
/// live node's current segment is never that old (it starts a new one
/// every eighth of the age cap).
fn trim_others(root: &Path, own: &Path, max_age: std::time::Duration) {
    let old = |e: &fs::DirEntry| {
        e.metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > max_age)
    };
    let Ok(rd) = fs::read_dir(root) else { return };
    for e in rd.flatten().take(MAX_NODES * 4) {
        let path = e.path();
        if path == own {
            continue;
        }
        match e.file_type() {
            Ok(t) if t.is_dir() => {
                if let Ok(inner) = fs::read_dir(&path) {
                    for f in inner.flatten() {
                        if f.file_type().is_ok_and(|t| t.is_file()) && old(&f) {
                            let _ = fs::remove_file(f.path());
                        }
                    }
                }
                // Only an empty directory goes.
                let _ = fs::remove_dir(&path);
            }
            Ok(t) if t.is_file() && old(&e) => {
                let _ = fs::remove_file(&path);
            }
            _ => {}
        }
    }
}

/// The segment files of `dir`: (first record's ms, path, size), oldest first.
fn segments(dir: &Path) -> Vec<(i64, PathBuf, u64)> {
    let mut out: Vec<(i64, PathBuf, u64)> = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let name = e.file_name();
                    let start: i64 = name.to_str()?.strip_suffix(".trace")?.parse().ok()?;
                    let size = e.metadata().ok()?.len();
                    Some((start, e.path(), size))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort_by_key(|s| s.0);
    out
}

/// Which messages [`search`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Messages of this call (Call-ID).
    pub call_id: Option<String>,
    /// Messages whose Request-URI, From or To names this user (a `sip:`
    /// address, compared without case), and then every message of the
    /// calls (Call-IDs) those messages belong to.
    pub user: Option<String>,
    /// Unix milliseconds.
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Messages returned at most: the oldest matching a call or user, or
    /// the newest when neither is named.
    pub limit: usize,
}

fn names_user(r: &Record, user: &str) -> bool {
    let start = r.first_line().to_ascii_lowercase();
    let has = |v: Option<&str>| v.is_some_and(|v| v.to_ascii_lowercase().contains(user));
    start.contains(user) || has(r.header("From", Some("f"))) || has(r.header("To", Some("t")))
}

/// The messages in `dir` matching `filter`, oldest first. Reads each
/// segment whole (segments are at most an eighth of the ring's cap).
pub fn search(dir: &Path, filter: &Filter) -> Vec<Record> {
    let user = filter.user.as_ref().map(|u| u.to_ascii_lowercase());
    let mut records = Vec::new();
    for (_, path, _) in segments(dir) {
        let Ok(data) = fs::read(&path) else { continue };
        records.extend(parse_segment(&data).into_iter().filter(|r| {
            filter.since_ms.is_none_or(|s| r.at_ms >= s)
                && filter.until_ms.is_none_or(|u| r.at_ms < u)
        }));
    }
    records.sort_by_key(|r| r.at_ms);
    let mut calls: std::collections::HashSet<String> = std::collections::HashSet::new();
    if let Some(c) = &filter.call_id {
        calls.insert(c.clone());
    }
    if let Some(u) = &user {
        for r in &records {
            if names_user(r, u) {
                if let Some(c) = r.header("Call-ID", Some("i")) {
                    calls.insert(c.to_string());
                }
            }
        }
    }
    let limit = filter.limit.max(1);
    if filter.call_id.is_none() && user.is_none() {
        // No call named: the newest messages.
        let skip = records.len().saturating_sub(limit);
        return records.into_iter().skip(skip).collect();
    }
    records
        .into_iter()
        .filter(|r| {
            r.header("Call-ID", Some("i"))
                .is_some_and(|c| calls.contains(c))
        })
        .take(limit)
        .collect()
}

/// Nodes' rings a search reads at most under one root.
const MAX_NODES: usize = 64;

/// The messages matching `filter` in every node's ring under `root` (a
/// pool's nodes each keep theirs in a directory named after the node),
/// each with its node's name, oldest first: a call that crossed several
/// nodes — or a node that has since died — as one ladder.
pub fn search_nodes(root: &Path, filter: &Filter) -> Vec<(String, Record)> {
    // The most recently written first, when there are more than are read.
    let mut nodes: Vec<(std::time::SystemTime, String, PathBuf)> = fs::read_dir(root)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter_map(|e| {
                    let modified = e.metadata().and_then(|m| m.modified()).ok()?;
                    Some((modified, e.file_name().into_string().ok()?, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    nodes.sort_by_key(|n| std::cmp::Reverse(n.0));
    nodes.truncate(MAX_NODES);
    let mut all: Vec<(String, Record)> = nodes
        .into_iter()
        .flat_map(|(_, node, path)| {
            search(&path, filter)
                .into_iter()
                .map(move |r| (node.clone(), r))
        })
        .collect();
    all.sort_by_key(|(_, r)| r.at_ms);
    let limit = filter.limit.max(1);
    if filter.call_id.is_none() && filter.user.is_none() {
        let skip = all.len().saturating_sub(limit);
        all.drain(..skip);
    } else {
        all.truncate(limit);
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("parapet-trace-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn msg(call: &str, from: &str, n: usize) -> Record {
        Record {
            at_ms: 1_000 + n as i64,
            inbound: n.is_multiple_of(2),
            protocol: "UDP",
            local: "127.0.0.1:5060".parse().unwrap(),
            remote: "127.0.0.1:5070".parse().unwrap(),
            message: format!(
                "MESSAGE sip:bob@example.test SIP/2.0\r\nCall-ID: {call}\r\nFrom: <{from}>;tag=1\r\nTo: <sip:bob@example.test>\r\nAuthorization: Digest username=\"a\", response=\"secret{n}\"\r\nContent-Length: 0\r\n\r\n"
            )
            .into_bytes()
            .into(),
        }
    }

    fn wait_for(d: &Path, n: usize) -> Vec<Record> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let all = search(
                d,
                &Filter {
                    limit: 100_000,
                    ..Filter::default()
                },
            );
            if all.len() >= n || Instant::now() > deadline {
                return all;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[test]
    fn messages_are_found_by_call_and_by_user_without_their_credentials() {
        let d = dir("search");
        let w = start(
            &d,
            Caps {
                max_bytes: 1 << 20,
                max_age: Duration::from_secs(3600),
            },
            None,
            Counters::default(),
        )
        .unwrap();
        w.capture(msg("c1", "sip:alice@example.test", 0));
        w.capture(msg("c2", "sip:carol@example.test", 1));
        w.capture(msg("c1", "sip:ALICE@example.test", 2));
        let all = wait_for(&d, 3);
        assert_eq!(all.len(), 3);
        let on_disk: Vec<u8> = fs::read_dir(&d)
            .unwrap()
            .flatten()
            .flat_map(|e| fs::read(e.path()).unwrap())
            .collect();
        assert!(
            !on_disk.windows(6).any(|w| w == b"secret"),
            "credentials on disk"
        );
        let c1 = search(
            &d,
            &Filter {
                call_id: Some("c1".into()),
                limit: 10,
                ..Filter::default()
            },
        );
        assert_eq!(
            c1.iter().map(|r| r.at_ms).collect::<Vec<_>>(),
            vec![1000, 1002]
        );
        let carol = search(
            &d,
            &Filter {
                user: Some("sip:carol@example.test".into()),
                limit: 10,
                ..Filter::default()
            },
        );
        assert_eq!(carol.len(), 1);
        let since = search(
            &d,
            &Filter {
                since_ms: Some(1001),
                limit: 10,
                ..Filter::default()
            },
        );
        assert_eq!(since.len(), 2);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_node_trims_what_dead_nodes_left_past_the_age_cap() {
        let root = dir("pool-trim");
        let own = root.join("fe-a");
        for d in ["fe-a", "fe-dead", "fe-live"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        let two_days_ago = std::time::SystemTime::now() - Duration::from_secs(2 * 86_400);
        let file = |p: PathBuf, old: bool| {
            fs::write(&p, b"x").unwrap();
            if old {
                fs::File::options()
                    .write(true)
                    .open(&p)
                    .unwrap()
                    .set_modified(two_days_ago)
                    .unwrap();
            }
        };
        file(own.join("0000000000000001.trace"), true);
        file(root.join("fe-dead/0000000000000002.trace"), true);
        file(root.join("fe-live/0000000000000003.trace"), true);
        file(root.join("fe-live/0000000000000004.trace"), false);
        // A segment from before the rings were per node.
        file(root.join("0000000000000005.trace"), true);
        trim_others(&root, &own, Duration::from_secs(86_400));
        assert!(!root.join("fe-dead").exists());
        assert!(!root.join("0000000000000005.trace").exists());
        assert!(!root.join("fe-live/0000000000000003.trace").exists());
        assert!(root.join("fe-live/0000000000000004.trace").exists());
        // Its own ring is its own writer's business.
        assert!(own.join("0000000000000001.trace").exists());
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn a_pools_rings_are_read_as_one_ladder_named_by_node() {
        let root = dir("pool");
        let caps = Caps {
            max_bytes: 1 << 20,
            max_age: Duration::from_secs(3600),
        };
        let a = start(&root.join("fe-a"), caps, None, Counters::default()).unwrap();
        let b = start(&root.join("fe-b"), caps, None, Counters::default()).unwrap();
        // The call began on fe-a and went on on fe-b.
        a.capture(msg("c1", "sip:alice@example.test", 0));
        a.capture(msg("c1", "sip:alice@example.test", 1));
        b.capture(msg("c1", "sip:alice@example.test", 2));
        b.capture(msg("c2", "sip:carol@example.test", 3));
        a.capture(msg("c1", "sip:alice@example.test", 4));
        wait_for(&root.join("fe-a"), 3);
        wait_for(&root.join("fe-b"), 2);
        // A file beside the nodes' directories is no node.
        fs::write(root.join("stray"), b"x").unwrap();
        let c1 = search_nodes(
            &root,
            &Filter {
                call_id: Some("c1".into()),
                limit: 10,
                ..Filter::default()
            },
        );
        assert_eq!(
            c1.iter()
                .map(|(n, r)| (n.as_str(), r.at_ms))
                .collect::<Vec<_>>(),
            vec![
                ("fe-a", 1000),
                ("fe-a", 1001),
                ("fe-b", 1002),
                ("fe-a", 1004)
            ]
        );
        // Oldest first up to the limit with a call named; newest without.
        let first = search_nodes(
            &root,
            &Filter {
                user: Some("sip:alice@example.test".into()),
                limit: 3,
                ..Filter::default()
            },
        );
        assert_eq!(first.last().map(|(_, r)| r.at_ms), Some(1002));
        let newest = search_nodes(
            &root,
            &Filter {
                limit: 2,
                ..Filter::default()
            },
        );
        assert_eq!(
            newest
                .iter()
                .map(|(n, r)| (n.as_str(), r.at_ms))
                .collect::<Vec<_>>(),
            vec![("fe-b", 1003), ("fe-a", 1004)]
        );
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn an_idle_writer_parks_and_the_next_capture_wakes_it() {
        let d = dir("parks");
        let caps = Caps {
            max_bytes: 1 << 20,
            max_age: Duration::from_secs(3600),
        };
        let w = start(&d, caps, None, Counters::default()).unwrap();
        w.capture(msg("first", "alice", 0));
        assert_eq!(wait_for(&d, 1).len(), 1);
        // Quiet: at most the round that found nothing and parked (one
        // every 20 ms, 25 in this time, without parking).
        std::thread::sleep(Duration::from_millis(200));
        let before = w.shared.rounds.load(Relaxed);
        std::thread::sleep(Duration::from_millis(500));
        let quiet = w.shared.rounds.load(Relaxed) - before;
        assert!(quiet <= 1, "{quiet} rounds while idle");
        // The next capture wakes it (parked for a minute in this build:
        // only the wake gets the message written within the wait).
        w.capture(msg("second", "alice", 1));
        assert_eq!(wait_for(&d, 2).len(), 2);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn the_ring_stays_within_its_byte_cap() {
        let d = dir("cap");
        let w = start(
            &d,
            Caps {
                max_bytes: 600 * 1024,
                max_age: Duration::from_secs(3600),
            },
            None,
            Counters::default(),
        )
        .unwrap();
        for n in 0..8000 {
            let mut m = msg(&format!("call-{n}"), "sip:alice@example.test", n);
            m.at_ms = 1_000_000 + n as i64;
            w.capture(m);
            if n.is_multiple_of(1000) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while w.counters.written.load(Relaxed) + w.counters.dropped.load(Relaxed) < 8000
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(400));
        let total: u64 = segments(&d).iter().map(|s| s.2).sum();
        assert!(total <= 600 * 1024 + 64 * 1024, "{total} bytes on disk");
        // The newest are kept.
        let kept = search(
            &d,
            &Filter {
                limit: 100_000,
                ..Filter::default()
            },
        );
        assert!(
            kept.last().is_some_and(|r| r.at_ms == 1_000_000 + 7999),
            "{:?}",
            kept.last().map(|r| r.at_ms)
        );
        let _ = fs::remove_dir_all(&d);
    }
}
