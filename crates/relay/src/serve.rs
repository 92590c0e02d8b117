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
use stun::integrity::Integrity;

use stun::attr::{self, PasswordAlgorithm};
use stun::channel::{ChannelData, Kind};
use stun::{Class, Encoder, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use crate::auth::{self, Refusal};
use crate::engine::{Allocation, Client, Engine, Framing, Grant, Limits, Transport};
use crate::metrics::Metrics;
use crate::Control;

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
}

/// A question for the SIP core.
#[derive(Debug)]
pub enum Ask {
    /// The long-term keys of the SIP user named `username` asking from
    /// `source`.
    Key {
        username: String,
        source: IpAddr,
        reply: oneshot::Sender<KeyAnswer>,
    },
    /// Whether user-API session `session` of `aor` is still signed in (its
    /// user enabled): web credentials are good only while it is.
    Session {
        aor: String,
        session: String,
        reply: oneshot::Sender<bool>,
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
    });
    let mut local = Vec::new();
    for (i, (transport, addr)) in settings.listen.iter().enumerate() {
        match transport {
            Transport::Udp => {
                let sock = Arc::new(UdpSocket::bind(addr).await?);
                local.push((Transport::Udp, sock.local_addr()?));
                tokio::spawn(udp_listener(shared.clone(), sock, i as u64));
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
        let (rate, burst) = (f64::from(rate), f64::from(burst));
        let mut m = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= MAX_SOURCES && !m.contains_key(&ip) {
            // Sources that have been quiet long enough are full again.
            m.retain(|_, t| now.saturating_duration_since(t.last).as_secs_f64() * rate < burst);
            if m.len() >= MAX_SOURCES {
                return false;
            }
        }
        let t = m.entry(ip).or_insert(Tokens {
            tokens: burst,
            last: now,
        });
        t.tokens =
            (t.tokens + now.saturating_duration_since(t.last).as_secs_f64() * rate).min(burst);
        t.last = now;
        if t.tokens >= 1.0 {
            t.tokens -= 1.0;
            true
        } else {
            false
        }
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
            if let Some((io, peer)) = to {
                // A send that would block drops the datagram.
                if io.socket.try_send_to(cd.data, peer).is_err() {
                    shared.metrics.dropped_send.inc();
                }
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
            if let Some((io, peer, range)) = to {
                if io.socket.try_send_to(&m.raw()[range], peer).is_err() {
                    shared.metrics.dropped_send.inc();
                }
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

fn error_response(m: &Message<'_>, code: u16, reason: &str) -> Vec<u8> {
    let mut e = Encoder::new(Class::Error, m.method, m.transaction_id);
    e.error(code, reason);
    e.finish_with(None, m.fingerprint_ok().is_some())
}

/// An Allocate from a client without an allocation (RFC 8656 §7.2):
/// credentials first, then the request's own rules.
async fn allocate(shared: &Arc<Shared>, client: Client, m: &Message<'_>, back: &Back, unix: u64) {
    let s = &shared.settings;
    let ip = client.addr.ip();
    let creds = {
        let e = shared.engine();
        match auth::credentials(m, &e.nonces, &s.realm, ip, unix) {
            Ok(c) => Ok((c.username.to_owned(), c.algorithm)),
            Err(Refusal::Challenge) => Err(auth::challenge(
                m,
                401,
                "Unauthenticated",
                &s.realm,
                &e.nonces.issue(ip, unix),
            )),
            Err(Refusal::Stale) => Err(auth::challenge(
                m,
                438,
                "Stale Nonce",
                &s.realm,
                &e.nonces.issue(ip, unix),
            )),
            Err(Refusal::Bad(why)) => Err(error_response(m, 400, why)),
        }
    };
    let (username, algorithm) = match creds {
        Ok(c) => c,
        Err(response) => {
            shared.count_response(&response);
            return send_back(back, client.addr, response).await;
        }
    };
    if shared.pending.fetch_add(1, Relaxed) >= MAX_PENDING_ASKS {
        shared.pending.fetch_sub(1, Relaxed);
        shared.metrics.dropped_rate.inc();
        return;
    }
    let raw = m.raw().to_vec();
    let (shared, back) = (shared.clone(), back.clone());
    tokio::spawn(async move {
        let r = authenticated_allocate(&shared, client, &raw, &back, username, algorithm).await;
        shared.pending.fetch_sub(1, Relaxed);
        if let Some(response) = r {
            shared.count_response(&response);
            send_back(&back, client.addr, response).await;
        }
    });
}

/// Who is asking, by SIP credentials (the user's digest secret, through
/// the core's lockout and policy) or web credentials (checked with the
/// relay's secret, the session they name still signed in): the grant and
/// the integrity algorithm to answer with, or the response refusing it
/// (`Err(None)`: no answer, the core did not answer).
async fn authenticate(
    shared: &Arc<Shared>,
    m: &Message<'_>,
    ip: IpAddr,
    username: String,
    algorithm: PasswordAlgorithm,
) -> Result<(Grant, Integrity), Option<Vec<u8>>> {
    let unauthenticated = |shared: &Shared| {
        let nonce = shared.engine().nonces.issue(ip, unix_now());
        Some(auth::challenge(
            m,
            401,
            "Unauthenticated",
            &shared.settings.realm,
            &nonce,
        ))
    };
    if username.contains(':') {
        let Some(secret) = shared.settings.web_secret.clone() else {
            return Err(unauthenticated(shared));
        };
        let unix = unix_now();
        let holder =
            match crate::credentials::holder(&username, i64::try_from(unix).unwrap_or(i64::MAX)) {
                Ok(h) => h,
                Err(why) => {
                    shared.metrics.auth_failures.inc();
                    tracing::info!(source = %ip, ?why, "relay: web credentials refused");
                    return Err(unauthenticated(shared));
                }
            };
        let password = crate::credentials::password(&secret[..], &username);
        let key =
            stun::integrity::long_term_key(algorithm, &username, &shared.settings.realm, &password);
        let Ok(integrity) = m.verify(&key) else {
            shared.metrics.auth_failures.inc();
            tracing::info!(user = %holder.aor, source = %ip, "relay: wrong web credentials");
            return Err(unauthenticated(shared));
        };
        let (tx, rx) = oneshot::channel();
        let ask = Ask::Session {
            aor: holder.aor.clone(),
            session: holder.session.clone(),
            reply: tx,
        };
        shared.asks.send(ask).await.map_err(|_| None)?;
        let live = tokio::time::timeout(Duration::from_secs(5), rx)
            .await
            .map_err(|_| None)?
            .map_err(|_| None)?;
        if !live {
            tracing::info!(user = %holder.aor, source = %ip, "relay: web credentials of a session that has ended");
            return Err(unauthenticated(shared));
        }
        let expires = u64::try_from(holder.expires_at).unwrap_or(0);
        let grant = Grant {
            aor: holder.aor,
            username,
            key,
            web: Some((holder.session, expires)),
        };
        return Ok((grant, integrity));
    }
    let (tx, rx) = oneshot::channel();
    shared
        .asks
        .send(Ask::Key {
            username: username.clone(),
            source: ip,
            reply: tx,
        })
        .await
        .map_err(|_| None)?;
    let answer = tokio::time::timeout(Duration::from_secs(5), rx)
        .await
        .map_err(|_| None)?
        .map_err(|_| None)?;
    let (aor, key) = match answer {
        KeyAnswer::Refused(why) => {
            tracing::info!(user = %username, source = %ip, why, "relay: allocation refused");
            return Err(Some(error_response(m, 403, "Forbidden")));
        }
        KeyAnswer::Unknown { aor } => (aor, None),
        KeyAnswer::Key {
            aor,
            md5,
            sha256,
            md5_allowed,
        } => {
            if algorithm == PasswordAlgorithm::Md5 && !md5_allowed {
                return Err(Some(error_response(m, 403, "Forbidden")));
            }
            (aor, Some(crate::engine::key_for(algorithm, &md5, &sha256)))
        }
    };
    // An unknown user is checked against a key no one has, so the answer
    // and its timing are those of a wrong password.
    let check_key = key.clone().unwrap_or_else(|| random_bytes::<16>().to_vec());
    let verified = m.verify(&check_key);
    let ok = verified.is_ok() && key.is_some();
    let _ = shared
        .asks
        .send(Ask::Outcome {
            aor: aor.clone(),
            source: ip,
            ok,
        })
        .await;
    let (Ok(integrity), Some(key)) = (verified, key) else {
        shared.metrics.auth_failures.inc();
        tracing::info!(user = %aor, source = %ip, "relay: wrong credentials");
        return Err(unauthenticated(shared));
    };
    let grant = Grant {
        aor,
        username,
        key,
        web: None,
    };
    Ok((grant, integrity))
}

/// The rest of an Allocate, once its user's key is known: the response
/// to send (`None`: none, the core did not answer).
async fn authenticated_allocate(
    shared: &Arc<Shared>,
    client: Client,
    raw: &[u8],
    back: &Back,
    username: String,
    algorithm: PasswordAlgorithm,
) -> Option<Vec<u8>> {
    let m = Message::parse(raw).ok()?;
    let (grant, integrity) =
        match authenticate(shared, &m, client.addr.ip(), username, algorithm).await {
            Ok(g) => g,
            Err(response) => return response,
        };
    let key = grant.key.clone();
    let signed_error = |code: u16, reason: &str| {
        let mut e = Encoder::new(Class::Error, m.method, m.transaction_id);
        e.error(code, reason);
        e.finish_with(Some((integrity, &key)), m.fingerprint_ok().is_some())
    };
    // The request's own rules (RFC 8656 §7.2 steps 2-8).
    if m.get(attr::DONT_FRAGMENT).is_some() {
        let mut e = Encoder::new(Class::Error, m.method, m.transaction_id);
        e.error(420, "Unknown Attribute");
        let _ = e.attr(attr::UNKNOWN_ATTRIBUTES, &attr::DONT_FRAGMENT.to_be_bytes());
        return Some(e.finish_with(Some((integrity, &key)), m.fingerprint_ok().is_some()));
    }
    match m
        .get(attr::REQUESTED_TRANSPORT)
        .map(attr::requested_transport)
    {
        Some(Ok(attr::TRANSPORT_UDP)) => {}
        Some(Ok(_)) => return Some(signed_error(442, "Unsupported Transport Protocol")),
        _ => {
            return Some(signed_error(
                400,
                "Bad Request: REQUESTED-TRANSPORT is needed",
            ))
        }
    }
    if m.get(attr::RESERVATION_TOKEN).is_some() {
        return Some(signed_error(508, "Insufficient Capacity"));
    }
    let even = match m.get(attr::EVEN_PORT).map(attr::even_port_reserve) {
        None => false,
        Some(Ok(false)) => true,
        // Reserving the next port is not offered.
        Some(Ok(true)) => return Some(signed_error(508, "Insufficient Capacity")),
        Some(Err(_)) => return Some(signed_error(400, "Bad Request: EVEN-PORT is malformed")),
    };
    let v4 = shared.settings.relay_ip.is_ipv4();
    if let Some(v) = m.get(attr::REQUESTED_ADDRESS_FAMILY) {
        match attr::address_family(attr::REQUESTED_ADDRESS_FAMILY, v) {
            Ok(f) if (f == 1) == v4 => {}
            Ok(_) => return Some(signed_error(440, "Address Family not Supported")),
            Err(_) => {
                return Some(signed_error(
                    400,
                    "Bad Request: REQUESTED-ADDRESS-FAMILY is malformed",
                ))
            }
        }
    }
    let requested = match m
        .get(attr::LIFETIME)
        .map(|v| attr::u32_value(attr::LIFETIME, v))
    {
        None => None,
        Some(Ok(l)) => Some(l),
        Some(Err(_)) => return Some(signed_error(400, "Bad Request: LIFETIME is malformed")),
    };
    let session = grant.web.as_ref().map(|(s, _)| s.as_str());
    if shared.control.revoked(&grant.aor, session, Instant::now()) {
        // Revoked this very moment: not a new allocation either.
        return Some(signed_error(403, "Forbidden"));
    }
    let (lifetime, room) = {
        let e = shared.engine();
        let lifetime = match &grant.web {
            Some((_, expires)) => e.web_lifetime(requested, *expires, unix_now()),
            None => e.lifetime(requested),
        };
        (lifetime, e.room_for(&grant.aor))
    };
    if let Err((code, reason)) = room {
        tracing::info!(user = %grant.aor, code, "relay: allocation quota");
        return Some(signed_error(code, reason));
    }
    let Some(socket) = bind_relayed(&shared.settings, even) else {
        tracing::warn!("relay: no free port in the relay range");
        return Some(signed_error(508, "Insufficient Capacity"));
    };
    let local = socket.local_addr().ok()?;
    let relayed = SocketAddr::new(shared.settings.external_ip, local.port());
    let mut e = Encoder::new(Class::Success, m.method, m.transaction_id);
    e.xor_address(attr::XOR_RELAYED_ADDRESS, relayed);
    e.xor_address(attr::XOR_MAPPED_ADDRESS, client.addr);
    e.u32(attr::LIFETIME, lifetime);
    let response = e.finish_with(Some((integrity, &key)), m.fingerprint_ok().is_some());
    let io = Arc::new(AllocIo {
        socket: Arc::new(socket),
        back: back.clone(),
        task: OnceLock::new(),
    });
    let id = {
        let mut e = shared.engine();
        // (Checked again: other Allocates may have been made meanwhile.)
        if let Err((code, reason)) = e.room_for(&grant.aor) {
            drop(e);
            return Some(signed_error(code, reason));
        }
        if let Some(r) = e.allocate_again(&client, &m) {
            return Some(r);
        }
        e.insert(
            client,
            grant,
            local,
            relayed,
            lifetime,
            (m.transaction_id, response.clone()),
            io.clone(),
            Instant::now(),
        )
    };
    let task = tokio::spawn(peer_reader(shared.clone(), id, io.clone()));
    let _ = io.task.set(task.abort_handle());
    Some(response)
}

/// A UDP socket on the relay address, on a random port of the range
/// (even when asked).
fn bind_relayed(s: &Settings, even: bool) -> Option<UdpSocket> {
    let (lo, hi) = (*s.ports.start(), *s.ports.end());
    let span = u32::from(hi - lo) + 1;
    for _ in 0..64 {
        let r = u32::from_be_bytes(random_bytes::<4>()) % span;
        let mut port = lo + r as u16;
        if even && port % 2 == 1 {
            port = if port > lo { port - 1 } else { port + 1 };
            if port > hi {
                continue;
            }
        }
        if let Ok(sock) = std::net::UdpSocket::bind(SocketAddr::new(s.relay_ip, port)) {
            if sock.set_nonblocking(true).is_ok() {
                if let Ok(sock) = UdpSocket::from_std(sock) {
                    return Some(sock);
                }
            }
        }
    }
    None
}

thread_local! {
    /// The buffer a runtime thread reads peers' datagrams into: ChannelData's
    /// 4-byte header goes in front of the data without a copy. One per
    /// thread rather than one per allocation (64 KiB each).
    static PEER_BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; 4 + 65_536]);
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
            buf[..2].copy_from_slice(&ch.to_be_bytes());
            buf[2..4].copy_from_slice(&(n as u16).to_be_bytes());
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
        interval.tick().await;
        n += 1;
        let now = Instant::now();
        if n.is_multiple_of(25) {
            shared.control.calls.expire(now);
        }
        let gone = shared.engine().tick(now);
        shared.end(gone);
    }
}

async fn stream_listener(
    shared: Arc<Shared>,
    listener: TcpListener,
    transport: Transport,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let (tcp, from) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "relay: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        {
            let mut c = shared.connections.lock().unwrap_or_else(|e| e.into_inner());
            let total: usize = c.values().sum();
            let here = c.entry(from.ip()).or_insert(0);
            if total >= MAX_CONNECTIONS || *here >= MAX_CONNECTIONS_PER_IP {
                continue;
            }
            *here += 1;
        }
        let _ = tcp.set_nodelay(true);
        let shared = shared.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let conn = shared.next_conn.fetch_add(1, Relaxed);
            let client = Client {
                transport,
                conn,
                addr: from,
            };
            match acceptor {
                Some(a) => {
                    if let Ok(Ok(s)) =
                        tokio::time::timeout(Duration::from_secs(10), a.accept(tcp)).await
                    {
                        stream_client(&shared, client, s).await;
                    }
                }
                None => stream_client(&shared, client, tcp).await,
            }
            let gone = shared.engine().closed(&client);
            shared.end(gone.into_iter().collect());
            let mut c = shared.connections.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = c.get_mut(&from.ip()) {
                *n -= 1;
                if *n == 0 {
                    c.remove(&from.ip());
                }
            }
        });
    }
}

/// One stream client: frames read in turn, answers and relayed data
/// written by a task of its own from a bounded queue.
async fn stream_client<S>(shared: &Arc<Shared>, client: Client, stream: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(STREAM_QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if wr.write_all(&frame).await.is_err() {
                break;
            }
        }
    });
    let back = Back::Stream(tx);
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16_384];
    // A client that opens a connection and says nothing is closed.
    let idle = Duration::from_secs(30);
    loop {
        while let Some(len) = stun::channel::frame_len(&buf) {
            let Ok(len) = len else {
                writer.abort();
                return;
            };
            if buf.len() < len {
                break;
            }
            let frame: Vec<u8> = buf.drain(..len).collect();
            received(shared, client, &frame, &back).await;
        }
        let has_allocation = shared.engine().allocation_of(&client).is_some();
        let read = if has_allocation {
            rd.read(&mut chunk).await
        } else {
            match tokio::time::timeout(idle, rd.read(&mut chunk)).await {
                Ok(r) => r,
                Err(_) => break,
            }
        };
        match read {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    writer.abort();
}
