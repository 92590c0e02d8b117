//! The relay's I/O: client listeners over UDP, TCP and TLS (STUN and
//! ChannelData framed as RFC 8656 §12.6 says), one UDP socket per
//! allocation on the relay address and port range, and a tick that
//! expires what is due and applies the calls' and users' changes. Every
//! decision is the [`Engine`]'s, taken under one mutex held for map
//! operations only, never across an `.await`.
//!
//! An Allocate is authenticated by whoever answers [`Ask`]s (the SIP core:
//! the user's digest secret as the long-term key, its lockout filter, its
//! authentication policy), off the listener's loop, at most
//! [`MAX_PENDING_ASKS`] at once.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use stun::attr;
use stun::channel::{ChannelData, Kind};
use stun::{Class, Encoder, Message};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use crate::engine::{Allocation, Client, Dest, Engine, Framing, Limits, Transport};
use crate::metrics::Metrics;
use crate::Control;

mod allocate;
mod pool_calls;
mod stream;

use allocate::allocate;
use stream::stream_listener;

/// Allocate requests waiting for their user's key at once; beyond, they
/// are dropped (the client retransmits).
pub const MAX_PENDING_ASKS: usize = 256;
/// Stream connections at once, and from one address.
pub const MAX_CONNECTIONS: usize = 4096;
pub const MAX_CONNECTIONS_PER_IP: usize = 32;
/// Frames waiting to be written to one stream client; beyond, dropped.
const STREAM_QUEUE: usize = 512;
/// Sources whose request rate is tracked at once.
const MAX_SOURCES: usize = 65_536;
const TICK: Duration = Duration::from_millis(200);

/// How the relay is set up.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: Vec<(Transport, SocketAddr)>,
    /// For the TLS listeners.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Where relayed sockets are bound.
    pub relay_ip: IpAddr,
    /// What clients and peers are told (a 1:1 NAT's outside address, or
    /// `relay_ip`).
    pub external_ip: IpAddr,
    pub ports: RangeInclusive<u16>,
    pub realm: String,
    pub limits: Limits,
    /// Requests per second (and burst) from one address that holds no
    /// allocation: Binding, Allocate, their retries and 401s.
    pub source_rate: (u32, u32),
    /// The secret web clients' credentials are checked with (the user API
    /// mints them with it); `None`: SIP credentials only.
    pub web_secret: Option<Arc<[u8; 32]>>,
    /// The machine's addresses: a UDP listener on a wildcard address binds
    /// one socket on each of them instead, so that what it sends a client
    /// leaves from the address the client sent to (a socket on 0.0.0.0
    /// answers from whichever address the route picks, which a client —
    /// or a NAT in front of it — drops on a machine with several).
    pub interfaces: Vec<IpAddr>,
    /// An edge's relay: a peer in no call this relay knows of is asked
    /// about ([`Ask::Calls`]) before it is refused — the call may have
    /// been signalled through another edge, or to the front end directly.
    pub ask_calls: bool,
}

/// Where a UDP listener on `addr` binds: `addr`, or for a wildcard one,
/// each of `interfaces` of its family on its port (IPv6 link-local ones
/// aside: they need a scope), or the wildcard itself if there are none.
fn udp_binds(addr: SocketAddr, interfaces: &[IpAddr]) -> Vec<SocketAddr> {
    if !addr.ip().is_unspecified() {
        return vec![addr];
    }
    let mut out: Vec<SocketAddr> = interfaces
        .iter()
        .filter(|ip| ip.is_ipv4() == addr.is_ipv4())
        .filter(|ip| match ip {
            IpAddr::V6(a) => (a.segments()[0] & 0xffc0) != 0xfe80,
            IpAddr::V4(_) => true,
        })
        .map(|ip| SocketAddr::new(*ip, addr.port()))
        .collect();
    out.sort();
    out.dedup();
    if out.is_empty() {
        out.push(addr);
    }
    out
}

/// A question for the SIP core.
#[derive(Debug)]
pub enum Ask {
    /// The long-term keys of the SIP user named `username` asking from
    /// `source`, with the request that asks (an edge's relay hands it to
    /// the pool as proof that the client holds the key: see
    /// [`crate::auth::proof`]).
    Key {
        username: String,
        source: IpAddr,
        request: Vec<u8>,
        reply: oneshot::Sender<KeyAnswer>,
    },
    /// Whether user-API session `session` of `aor` is still signed in (its
    /// user enabled): web credentials are good only while it is.
    Session {
        aor: String,
        session: String,
        reply: oneshot::Sender<bool>,
    },
    /// The calls of user `aor` the pool knows (an edge's relay asks, with
    /// [`Settings::ask_calls`]): the answer is put in the relay's calls
    /// table (`crate::calls::Calls::mirror`), then `reply` is sent.
    Calls {
        aor: String,
        reply: oneshot::Sender<()>,
    },
    /// How checking that user's credentials went (for the lockout).
    Outcome {
        aor: String,
        source: IpAddr,
        ok: bool,
    },
}

/// The core's answer to [`Ask::Key`].
pub enum KeyAnswer {
    Key {
        aor: String,
        md5: [u8; 16],
        sha256: [u8; 32],
        /// Whether the authentication policy lets this user use MD5.
        md5_allowed: bool,
    },
    /// No such user, or disabled: the request fails like a wrong password.
    Unknown { aor: String },
    /// Refused before any check (locked out, certificates only): why.
    Refused(&'static str),
}

impl std::fmt::Debug for KeyAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyAnswer::Key { aor, .. } => write!(f, "Key({aor})"),
            KeyAnswer::Unknown { aor } => write!(f, "Unknown({aor})"),
            KeyAnswer::Refused(why) => write!(f, "Refused({why})"),
        }
    }
}

/// The way back to a client.
#[derive(Debug, Clone)]
enum Back {
    Udp(Arc<UdpSocket>),
    Stream(mpsc::Sender<Vec<u8>>),
}

/// What the server keeps per allocation.
#[derive(Debug)]
struct AllocIo {
    socket: Arc<UdpSocket>,
    back: Back,
    task: OnceLock<AbortHandle>,
}

type Io = Arc<AllocIo>;

#[derive(Debug, Clone, Copy)]
struct Tokens {
    tokens: f64,
    last: Instant,
}

struct Shared {
    engine: Mutex<Engine<Io>>,
    settings: Settings,
    asks: mpsc::Sender<Ask>,
    metrics: Arc<Metrics>,
    control: Arc<Control>,
    sources: Mutex<HashMap<IpAddr, Tokens>>,
    pending: AtomicUsize,
    connections: Mutex<HashMap<IpAddr, usize>>,
    next_conn: AtomicU64,
    /// Users whose calls are being asked about ([`Ask::Calls`]): the
    /// requests waiting for the same answer.
    calls_waiting: Mutex<HashMap<String, Vec<oneshot::Sender<()>>>>,
    /// Per user, how many more calls questions may be asked.
    calls_tokens: Mutex<HashMap<String, Tokens>>,
}

/// The running relay: its listeners' addresses.
#[derive(Debug)]
pub struct Handle {
    pub local: Vec<(Transport, SocketAddr)>,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn random_bytes<const N: usize>() -> [u8; N] {
    use ring::rand::SecureRandom as _;
    let mut b = [0u8; N];
    // (SystemRandom fails only without an OS random source, where the
    // process could not have started its TLS listeners either.)
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    b
}

/// Binds the listeners and starts the relay's tasks.
pub async fn start(
    settings: Settings,
    control: Arc<Control>,
    metrics: Arc<Metrics>,
    asks: mpsc::Sender<Ask>,
) -> io::Result<Handle> {
    let own = vec![settings.relay_ip, settings.external_ip];
    let engine = Engine::new(
        settings.realm.clone(),
        &random_bytes::<32>(),
        settings.limits.clone(),
        own,
        control.clone(),
        metrics.clone(),
    );
    let shared = Arc::new(Shared {
        engine: Mutex::new(engine),
        settings: settings.clone(),
        asks,
        metrics,
        control,
        sources: Mutex::new(HashMap::new()),
        pending: AtomicUsize::new(0),
        connections: Mutex::new(HashMap::new()),
        next_conn: AtomicU64::new(1),
        calls_waiting: Mutex::new(HashMap::new()),
        calls_tokens: Mutex::new(HashMap::new()),
    });
    let mut local = Vec::new();
    let mut index = 0u64;
    for (transport, addr) in settings.listen.iter() {
        match transport {
            Transport::Udp => {
                for at in udp_binds(*addr, &settings.interfaces) {
                    let sock = Arc::new(UdpSocket::bind(at).await?);
                    local.push((Transport::Udp, sock.local_addr()?));
                    tokio::spawn(udp_listener(shared.clone(), sock, index));
                    index += 1;
                }
            }
            Transport::Tcp | Transport::Tls => {
                let l = TcpListener::bind(addr).await?;
                local.push((*transport, l.local_addr()?));
                let tls = match transport {
                    Transport::Tls => Some(settings.tls.clone().ok_or_else(|| {
                        io::Error::other("a TLS relay listener needs a certificate")
                    })?),
                    _ => None,
                };
                tokio::spawn(stream_listener(shared.clone(), l, *transport, tls));
            }
        }
    }
    tokio::spawn(ticker(shared));
    Ok(Handle { local })
}

impl Shared {
    fn engine(&self) -> std::sync::MutexGuard<'_, Engine<Io>> {
        self.engine.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `ip` may make one more request while it holds no allocation.
    fn source_allows(&self, ip: IpAddr, now: Instant) -> bool {
        let (rate, burst) = self.settings.source_rate;
        let mut m = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        take_token(&mut m, ip, (f64::from(rate), f64::from(burst)), now)
    }

    fn count_response(&self, response: &[u8]) {
        if let Ok(m) = Message::parse(response) {
            if m.class == Class::Error {
                if let Some(Ok(e)) = m.get(attr::ERROR_CODE).map(attr::error_code) {
                    self.metrics.error(e.code);
                }
            }
        }
    }

    fn end(&self, gone: Vec<Allocation<Io>>) {
        for a in gone {
            if let Some(t) = a.io.task.get() {
                t.abort();
            }
        }
    }
}

/// A token from `key`'s bucket in `m` (refilled at `rate` a second up to
/// `burst`), if it has one. At most [`MAX_SOURCES`] buckets: when full,
/// the full ones are let go, and a new key gets none if none was.
fn take_token<K: std::hash::Hash + Eq>(
    m: &mut HashMap<K, Tokens>,
    key: K,
    (rate, burst): (f64, f64),
    now: Instant,
) -> bool {
    if m.len() >= MAX_SOURCES && !m.contains_key(&key) {
        // Keys that have been quiet long enough are full again.
        m.retain(|_, t| now.saturating_duration_since(t.last).as_secs_f64() * rate < burst);
        if m.len() >= MAX_SOURCES {
            return false;
        }
    }
    let t = m.entry(key).or_insert(Tokens {
        tokens: burst,
        last: now,
    });
    t.tokens = (t.tokens + now.saturating_duration_since(t.last).as_secs_f64() * rate).min(burst);
    t.last = now;
    if t.tokens >= 1.0 {
        t.tokens -= 1.0;
        true
    } else {
        false
    }
}

async fn send_back(back: &Back, client: SocketAddr, bytes: Vec<u8>) {
    match back {
        Back::Udp(s) => {
            let _ = s.send_to(&bytes, client).await;
        }
        Back::Stream(tx) => {
            let _ = tx.try_send(bytes);
        }
    }
}

async fn udp_listener(shared: Arc<Shared>, sock: Arc<UdpSocket>, index: u64) {
    let mut buf = vec![0u8; 65_536];
    let back = Back::Udp(sock.clone());
    loop {
        let (n, from) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "relay: UDP receive failed");
                continue;
            }
        };
        let client = Client {
            transport: Transport::Udp,
            conn: index,
            addr: from,
        };
        received(&shared, client, &buf[..n], &back).await;
    }
}

/// One datagram or stream frame from a client.
async fn received(shared: &Arc<Shared>, client: Client, bytes: &[u8], back: &Back) {
    let now = Instant::now();
    match stun::channel::classify(bytes) {
        Kind::ChannelData => {
            let Ok(cd) = ChannelData::parse(bytes) else {
                return;
            };
            let to = shared
                .engine()
                .channel_data(&client, cd.channel, cd.data.len(), now);
            if let Some((io, dest)) = to {
                forward(shared, &io, dest, cd.data);
            }
        }
        Kind::Stun => {
            let m = match Message::parse(bytes) {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!(client = %client.addr, error = %e, "relay: malformed STUN dropped");
                    return;
                }
            };
            stun_message(shared, client, &m, back, now).await;
        }
        Kind::Other => {}
    }
}

async fn stun_message(
    shared: &Arc<Shared>,
    client: Client,
    m: &Message<'_>,
    back: &Back,
    now: Instant,
) {
    if m.class == Class::Indication {
        if m.method == stun::method::SEND {
            let to = shared.engine().send_indication(&client, m, now);
            if let Some((io, dest, range)) = to {
                forward(shared, &io, dest, &m.raw()[range]);
            }
        }
        return;
    }
    if m.class != Class::Request {
        return;
    }
    let has_allocation = shared.engine().allocation_of(&client).is_some();
    if !has_allocation && !shared.source_allows(client.addr.ip(), now) {
        shared.metrics.dropped_rate.inc();
        return;
    }
    let unknown = m.unknown_required();
    if !unknown.is_empty() {
        let mut e = Encoder::new(Class::Error, m.method, m.transaction_id);
        e.error(420, "Unknown Attribute");
        let list: Vec<u8> = unknown.iter().flat_map(|k| k.to_be_bytes()).collect();
        let _ = e.attr(attr::UNKNOWN_ATTRIBUTES, &list);
        shared.metrics.error(420);
        return send_back(
            back,
            client.addr,
            e.finish_with(None, m.fingerprint_ok().is_some()),
        )
        .await;
    }
    let unix = unix_now();
    let response = match m.method {
        stun::method::BINDING => {
            let mut e = Encoder::new(Class::Success, m.method, m.transaction_id);
            e.xor_address(attr::XOR_MAPPED_ADDRESS, client.addr);
            e.finish_with(None, m.fingerprint_ok().is_some())
        }
        stun::method::ALLOCATE => {
            let again = shared.engine().allocate_again(&client, m);
            match again {
                Some(r) => r,
                None => return allocate(shared, client, m, back, unix).await,
            }
        }
        stun::method::REFRESH | stun::method::CREATE_PERMISSION | stun::method::CHANNEL_BIND => {
            let answer = shared.engine().request(&client, m, now, unix);
            if let Some(a) = answer.removed {
                shared.end(vec![a]);
            }
            if let Some(aor) = answer.unjustified.filter(|_| shared.settings.ask_calls) {
                if pool_calls::ask_then_answer(shared, client, m, back, aor, now) {
                    return;
                }
            }
            answer.response
        }
        _ => {
            let mut e = Encoder::new(Class::Error, m.method, m.transaction_id);
            e.error(400, "Bad Request");
            e.finish_with(None, m.fingerprint_ok().is_some())
        }
    };
    shared.count_response(&response);
    send_back(back, client.addr, response).await;
}

thread_local! {
    /// The buffer a runtime thread reads peers' datagrams into: ChannelData's
    /// 4-byte header goes in front of the data without a copy. One per
    /// thread rather than one per allocation (64 KiB each).
    static PEER_BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; 4 + 65_536]);
}

/// A client's `data` on its way: out of its allocation's socket, or to
/// another allocation here directly. A send that would block drops it.
fn forward(shared: &Shared, io: &AllocIo, dest: Dest, data: &[u8]) {
    match dest {
        Dest::Net(peer) => {
            if io.socket.try_send_to(data, peer).is_err() {
                shared.metrics.dropped_send.inc();
            }
        }
        Dest::Here { id, from } => PEER_BUF.with_borrow_mut(|buf| {
            let Some(room) = buf.get_mut(4..4 + data.len()) else {
                return;
            };
            room.copy_from_slice(data);
            to_client(shared, id, from, data.len(), buf);
        }),
    }
}

/// Datagrams read from one allocation's socket before other tasks get a turn.
const BATCH: usize = 64;

/// Reads what peers send to allocation `id` and hands it to its client:
/// on each readiness, every datagram waiting (up to [`BATCH`]) is read
/// and sent on without awaiting (a send that would block drops the
/// datagram, as a congested network would).
async fn peer_reader(shared: Arc<Shared>, id: u64, io: Io) {
    loop {
        if io.socket.readable().await.is_err() {
            continue;
        }
        let more = PEER_BUF.with_borrow_mut(|buf| {
            for _ in 0..BATCH {
                match io.socket.try_recv_from(&mut buf[4..]) {
                    Ok((n, from)) => to_client(&shared, id, from, n, buf),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                    Err(e) => {
                        tracing::debug!(error = %e, "relay: peer receive failed");
                        return false;
                    }
                }
            }
            true
        });
        if more {
            tokio::task::yield_now().await;
        }
    }
}

/// One datagram of `n` bytes (at `buf[4..]`) from `from` to allocation
/// `id`: to its client as ChannelData or a Data indication, or dropped.
fn to_client(shared: &Shared, id: u64, from: SocketAddr, n: usize, buf: &mut [u8]) {
    let decided = shared.engine().from_peer(id, from, n, Instant::now());
    let Some((io, client, framing)) = decided else {
        return;
    };
    let frame: Vec<u8>;
    let bytes: &[u8] = match framing {
        Framing::Channel(ch) => {
            // (A UDP datagram is shorter than 65,536 bytes; a longer read
            // could not be framed and is dropped.)
            let Ok(len) = u16::try_from(n) else {
                return;
            };
            buf[..2].copy_from_slice(&ch.to_be_bytes());
            buf[2..4].copy_from_slice(&len.to_be_bytes());
            &buf[..4 + n]
        }
        Framing::Indication => {
            // An indication's transaction id need only be unique.
            let seq = shared.next_conn.fetch_add(1, Relaxed);
            let mut tid = [0u8; 12];
            tid[4..].copy_from_slice(&seq.to_be_bytes());
            let mut e = Encoder::new(Class::Indication, stun::method::DATA, tid);
            e.xor_address(attr::XOR_PEER_ADDRESS, from);
            if e.attr(attr::DATA, &buf[4..4 + n]).is_err() {
                return;
            }
            frame = e.finish();
            &frame
        }
    };
    match &io.back {
        Back::Udp(s) => {
            if s.try_send_to(bytes, client.addr).is_err() {
                shared.metrics.dropped_send.inc();
            }
        }
        Back::Stream(tx) => {
            let mut v = bytes.to_vec();
            // On a stream, ChannelData is padded to a multiple of four.
            v.resize(v.len().div_ceil(4) * 4, 0);
            if tx.try_send(v).is_err() {
                shared.metrics.dropped_send.inc();
            }
        }
    }
}

async fn ticker(shared: Arc<Shared>) {
    let mut interval = tokio::time::interval(TICK);
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = shared.control.revoked_now.notified() => {}
        }
        n += 1;
        let now = Instant::now();
        if n.is_multiple_of(25) {
            shared.control.calls.expire(now);
        }
        let gone = shared.engine().tick(now);
        shared.end(gone);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_wildcard_udp_listener_binds_each_address_of_its_family() {
        let ips: Vec<IpAddr> = ["127.0.0.1", "198.51.100.1", "::1", "fe80::1", "2001:db8::1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(udp_binds(a("192.0.2.1:3478"), &ips), [a("192.0.2.1:3478")]);
        assert_eq!(
            udp_binds(a("0.0.0.0:3478"), &ips),
            [a("127.0.0.1:3478"), a("198.51.100.1:3478")]
        );
        assert_eq!(
            udp_binds(a("[::]:3478"), &ips),
            [a("[::1]:3478"), a("[2001:db8::1]:3478")]
        );
        assert_eq!(udp_binds(a("0.0.0.0:3478"), &[]), [a("0.0.0.0:3478")]);
    }
}
