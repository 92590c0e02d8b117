//! A load client for TURN relays (Parapet's and coturn, in `bench/relay.sh`),
//! measuring what `turnutils_uclient` cannot: the latency a relay adds and
//! how many allocations a second it makes.
//!
//! `flow`: PAIRS pairs of allocations bound to each other by a channel;
//! each pair's first client sends SIZE-byte ChannelData (a send timestamp
//! inside) to the second through the relay, at RATE packets a second in
//! all (0: as fast as it can) for SECS seconds. Prints what arrived, the
//! rate, and the one-way latency p50/p99/p99.9 in microseconds. The
//! sender has a thread of its own and keeps an even schedule (packets of
//! independent calls do not arrive in batches); the latency ends at the
//! kernel's receive timestamp (SO_TIMESTAMPNS), so the receivers' turns
//! on the load core are not counted as the relay's. `direct`: the same
//! traffic straight between the two clients' sockets, no relay — the
//! baseline the relay's added latency is measured against. `via`: the
//! same traffic through `forwarder` (run as its own process, SERVER its
//! address): a blocking receive and a send per datagram, the least any
//! relay could add on this machine. `allocs`:
//! WORKERS clients each Allocate (401, then with credentials) and delete
//! the allocation (Refresh 0) in a loop for SECS seconds; prints the
//! allocations made per second.
//!
//!   cargo run --release -p parapet-relay --example relay_load -- \
//!     flow|direct|via|forwarder|allocs SERVER USER PASSWORD REALM [PAIRS|WORKERS] [RATE] [SECS] [SIZE]
//!
//! Output is one line of `name=value` fields, for scripts.

// A load client: the first thing that is not as expected stops it, loudly.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use stun::attr::{self, PasswordAlgorithm};
use stun::integrity::{long_term_key, Integrity};
use stun::{method, Class, Encoder, Message};
use tokio::net::UdpSocket;

struct Args {
    mode: String,
    server: SocketAddr,
    user: String,
    password: String,
    realm: String,
    n: usize,
    rate: u64,
    secs: u64,
    size: usize,
}

fn args() -> Args {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let get = |i: usize, d: &str| a.get(i).cloned().unwrap_or_else(|| d.to_owned());
    if a.len() < 5 {
        eprintln!("usage: relay_load flow|direct|allocs SERVER USER PASSWORD REALM [N] [RATE] [SECS] [SIZE]");
        std::process::exit(2);
    }
    Args {
        mode: get(0, "flow"),
        server: get(1, "").parse().expect("SERVER is address:port"),
        user: get(2, ""),
        password: get(3, ""),
        realm: get(4, ""),
        n: get(5, "25").parse().expect("N"),
        rate: get(6, "0").parse().expect("RATE"),
        secs: get(7, "10").parse().expect("SECS"),
        // (Room for the sequence number, the timestamp and, through the
        // forwarder, where it goes: 22 bytes after a 4-byte header.)
        size: get(8, "172").parse::<usize>().expect("SIZE").max(26),
    }
}

/// One client of the relay.
struct Client {
    sock: UdpSocket,
    server: SocketAddr,
    key: Vec<u8>,
    user: String,
    realm: String,
    nonce: String,
    tid: u32,
}

impl Client {
    /// A client on loopback address `ip`.
    async fn from(a: &Args, ip: std::net::Ipv4Addr) -> Client {
        Client {
            sock: UdpSocket::bind((ip, 0)).await.expect("bind"),
            server: a.server,
            key: long_term_key(PasswordAlgorithm::Md5, &a.user, &a.realm, &a.password),
            user: a.user.clone(),
            realm: a.realm.clone(),
            nonce: String::new(),
            tid: 0,
        }
    }

    /// Sends a request (with credentials when `auth`) until its answer
    /// comes: (error code, 0 for success; the answer's bytes).
    async fn ask(&mut self, m: u16, auth: bool, build: impl Fn(&mut Encoder)) -> (u16, Vec<u8>) {
        self.tid = self.tid.wrapping_add(1);
        let mut tid = [7u8; 12];
        tid[..4].copy_from_slice(&self.tid.to_be_bytes());
        let mut e = Encoder::new(Class::Request, m, tid);
        build(&mut e);
        let bytes = if auth {
            e.attr(attr::USERNAME, self.user.as_bytes()).expect("user");
            e.attr(attr::REALM, self.realm.as_bytes()).expect("realm");
            e.attr(attr::NONCE, self.nonce.as_bytes()).expect("nonce");
            e.finish_with(Some((Integrity::Sha1, &self.key)), true)
        } else {
            e.finish_with(None, true)
        };
        let mut buf = vec![0u8; 2048];
        for _ in 0..10 {
            self.sock.send_to(&bytes, self.server).await.expect("send");
            let wait = tokio::time::timeout(Duration::from_millis(500), async {
                loop {
                    let (n, _) = self.sock.recv_from(&mut buf).await.expect("recv");
                    let Ok(r) = Message::parse(&buf[..n]) else {
                        continue;
                    };
                    if r.transaction_id != tid {
                        continue;
                    }
                    if let Some(v) = r.get(attr::NONCE) {
                        self.nonce = String::from_utf8_lossy(v).into_owned();
                    }
                    let code = r
                        .get(attr::ERROR_CODE)
                        .and_then(|v| attr::error_code(v).ok())
                        .map_or(0, |c| c.code);
                    return (code, buf[..n].to_vec());
                }
            })
            .await;
            if let Ok(r) = wait {
                return r;
            }
        }
        panic!("no answer from the relay at {}", self.server);
    }

    /// Allocates (401, then with credentials; again after 438): the
    /// relayed address, or the error code that refused it (437: the
    /// kernel gave this socket the port of an allocation the server has
    /// not forgotten yet).
    async fn try_allocate(&mut self) -> Result<SocketAddr, u16> {
        let transport = |e: &mut Encoder| {
            e.attr(attr::REQUESTED_TRANSPORT, &[attr::TRANSPORT_UDP, 0, 0, 0])
                .expect("transport");
        };
        let (code, _) = self.ask(method::ALLOCATE, false, transport).await;
        if code != 401 {
            return Err(code);
        }
        let (mut code, mut raw) = self.ask(method::ALLOCATE, true, transport).await;
        if code == 438 {
            (code, raw) = self.ask(method::ALLOCATE, true, transport).await;
        }
        if code != 0 {
            return Err(code);
        }
        let m = Message::parse(&raw).map_err(|_| 0u16)?;
        attr::xor_address(
            attr::XOR_RELAYED_ADDRESS,
            m.get(attr::XOR_RELAYED_ADDRESS).ok_or(0u16)?,
            &m.transaction_id,
        )
        .map_err(|_| 0u16)
    }

    async fn bind(&mut self, channel: u16, peer: SocketAddr) {
        let (code, _) = self
            .ask(method::CHANNEL_BIND, true, |e| {
                e.attr(
                    attr::CHANNEL_NUMBER,
                    &[(channel >> 8) as u8, channel as u8, 0, 0],
                )
                .expect("channel");
                e.xor_address(attr::XOR_PEER_ADDRESS, peer);
            })
            .await;
        assert_eq!(code, 0, "ChannelBind to {peer} refused");
    }

    async fn delete(&mut self) {
        let (code, _) = self
            .ask(method::REFRESH, true, |e| {
                e.u32(attr::LIFETIME, 0);
            })
            .await;
        assert_eq!(code, 0, "Refresh 0 refused");
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

const CHANNEL: u16 = 0x4000;

/// Nanoseconds since the Unix epoch: the clock the kernel stamps received
/// datagrams with (SO_TIMESTAMPNS).
fn wall_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Receives datagrams on `sock` until the task is dropped: for each, the
/// one-way latency from the sender's timestamp in it to the moment the
/// kernel queued it to this socket — so that this client's own wake-ups
/// and turns on its core are not counted as the relay's.
async fn receive(
    sock: UdpSocket,
    relayed: bool,
    lat: Rc<RefCell<Vec<u64>>>,
    got: Rc<RefCell<u64>>,
) {
    use nix::sys::socket::{
        recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrStorage,
    };
    use std::os::fd::AsRawFd;
    setsockopt(&sock, sockopt::ReceiveTimestampns, &true).expect("SO_TIMESTAMPNS");
    let mut buf = vec![0u8; 2048];
    let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
    loop {
        if sock.readable().await.is_err() {
            return;
        }
        loop {
            let read = sock.try_io(tokio::io::Interest::READABLE, || {
                let mut iov = [std::io::IoSliceMut::new(&mut buf)];
                let m = recvmsg::<SockaddrStorage>(
                    sock.as_raw_fd(),
                    &mut iov,
                    Some(&mut cmsg),
                    MsgFlags::empty(),
                )
                .map_err(std::io::Error::from)?;
                let stamp = m.cmsgs().ok().and_then(|mut c| {
                    c.find_map(|c| match c {
                        ControlMessageOwned::ScmTimestampns(t) => {
                            Some(t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
                        }
                        _ => None,
                    })
                });
                Ok((m.bytes, stamp))
            });
            let (n, stamp) = match read {
                Ok(x) => x,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => return,
            };
            // ChannelData (4-byte header) through the relay, the bare
            // payload directly.
            let payload = if relayed { buf.get(4..n) } else { buf.get(..n) };
            let Some(p) = payload.filter(|p| p.len() >= 16) else {
                continue;
            };
            let sent = u64::from_be_bytes(p[8..16].try_into().unwrap_or_default());
            let at = stamp.unwrap_or_else(wall_ns);
            lat.borrow_mut().push(at.saturating_sub(sent) / 1000);
            *got.borrow_mut() += 1;
        }
    }
}

/// Sends SIZE-byte frames round robin over `senders` for `secs` seconds:
/// at `rate` a second, each at its own moment of an even schedule (a
/// late one goes as soon as it can), or flat out (`rate` 0). Runs on a
/// thread of its own. Returns what was sent, for how long, and how late
/// the sender itself was at p99 (µs behind its schedule).
fn send(
    senders: Vec<(std::net::UdpSocket, SocketAddr, Option<SocketAddr>)>,
    relayed: bool,
    size: usize,
    rate: u64,
    secs: u64,
) -> (u64, f64, u64) {
    let mut frame = vec![0u8; if relayed { size } else { size - 4 }];
    let off = if relayed {
        frame[..2].copy_from_slice(&CHANNEL.to_be_bytes());
        frame[2..4].copy_from_slice(&((size - 4) as u16).to_be_bytes());
        4
    } else {
        0
    };
    let started = Instant::now();
    let end = started + Duration::from_secs(secs);
    let mut sent = 0u64;
    let mut late = Vec::new();
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if let Some(at) = (sent * 1_000_000_000).checked_div(rate) {
            let due = started + Duration::from_nanos(at);
            if now >= due {
                late.push((now - due).as_micros() as u64);
            }
            if now < due {
                let wait = due - now;
                if wait > Duration::from_micros(300) {
                    std::thread::sleep(wait - Duration::from_micros(200));
                } else {
                    // Short waits: give the core to the receivers if they
                    // need it, else keep time by polling.
                    std::thread::yield_now();
                }
                continue;
            }
        } else if sent.is_multiple_of(64) {
            std::thread::yield_now();
        }
        let (s, to, via) = &senders[(sent as usize) % senders.len()];
        frame[off..off + 8].copy_from_slice(&sent.to_be_bytes());
        frame[off + 8..off + 16].copy_from_slice(&wall_ns().to_be_bytes());
        if let Some(SocketAddr::V4(d)) = via {
            // For the forwarder: where it goes on to.
            frame[off + 16..off + 20].copy_from_slice(&d.ip().octets());
            frame[off + 20..off + 22].copy_from_slice(&d.port().to_be_bytes());
        }
        let _ = s.send_to(&frame, to);
        sent += 1;
    }
    late.sort_unstable();
    (
        sent,
        started.elapsed().as_secs_f64(),
        percentile(&late, 0.99),
    )
}

/// Allocates for `c`, on a new socket (at `ip`) while the kernel hands
/// out ports whose 5-tuple still has an allocation from an earlier run
/// (437): the relayed address.
async fn allocate_fresh(a: &Args, c: &mut Client, ip: std::net::Ipv4Addr) -> SocketAddr {
    for _ in 0..20 {
        match c.try_allocate().await {
            Ok(r) => return r,
            Err(437) => *c = Client::from(a, ip).await,
            Err(code) => panic!("Allocate refused: {code}"),
        }
    }
    panic!("Allocate refused: 437, twenty times");
}

/// How `flow` traffic goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    /// Through the TURN relay at SERVER (allocations bound by channels).
    Relay,
    /// Straight between the clients' sockets.
    Direct,
    /// Through `forwarder` at SERVER: the least any relay could add on
    /// this machine (a blocking receive and a send, nothing else).
    Via,
}

/// `forwarder`: receives on SERVER and sends each datagram on to the
/// address its bytes 16-21 name (IPv4, port), until killed.
fn forwarder(at: SocketAddr) {
    let sock = std::net::UdpSocket::bind(at).expect("bind the forwarder");
    let mut buf = vec![0u8; 2048];
    loop {
        let Ok((n, _)) = sock.recv_from(&mut buf) else {
            continue;
        };
        if n < 22 {
            continue;
        }
        let ip = std::net::Ipv4Addr::new(buf[16], buf[17], buf[18], buf[19]);
        let port = u16::from_be_bytes([buf[20], buf[21]]);
        let _ = sock.send_to(&buf[..n], (ip, port));
    }
}

/// `flow` (through the relay), `direct` or `via` (see [`Path`]).
async fn flow(a: &Args, path: Path) {
    let relayed = path == Path::Relay;
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for i in 0..a.n.min(250) {
        // Addresses of their own: no 5-tuple of an earlier run's
        // allocation, which a server keeps until it expires.
        let host = 1 + i as u8;
        let (mut x, mut y) = (
            Client::from(a, std::net::Ipv4Addr::new(127, 0, 2, host)).await,
            Client::from(a, std::net::Ipv4Addr::new(127, 0, 3, host)).await,
        );
        let (to, via) = match path {
            Path::Relay => {
                let rx = allocate_fresh(a, &mut x, std::net::Ipv4Addr::new(127, 0, 2, host)).await;
                let ry = allocate_fresh(a, &mut y, std::net::Ipv4Addr::new(127, 0, 3, host)).await;
                x.bind(CHANNEL, ry).await;
                y.bind(CHANNEL, rx).await;
                (a.server, None)
            }
            Path::Direct => (y.sock.local_addr().expect("local"), None),
            Path::Via => (a.server, Some(y.sock.local_addr().expect("local"))),
        };
        let s = x.sock.into_std().expect("std socket");
        // (A full send buffer blocks the sender, as it would a real one.)
        s.set_nonblocking(false).expect("blocking");
        senders.push((s, to, via));
        receivers.push(y.sock);
    }
    let latencies: Rc<RefCell<Vec<u64>>> = Rc::new(RefCell::new(Vec::new()));
    let received = Rc::new(RefCell::new(0u64));
    let mut tasks = Vec::new();
    for r in receivers {
        tasks.push(tokio::task::spawn_local(receive(
            r,
            relayed,
            latencies.clone(),
            received.clone(),
        )));
    }
    let (size, rate, secs) = (a.size, a.rate, a.secs);
    let sender = std::thread::spawn(move || send(senders, relayed, size, rate, secs));
    while !sender.is_finished() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (sent, elapsed, late_p99) = sender.join().expect("sender");
    tokio::time::sleep(Duration::from_millis(300)).await;
    for t in tasks {
        t.abort();
    }
    let mut l = latencies.borrow().clone();
    l.sort_unstable();
    let got = *received.borrow();
    println!(
        "mode={} sent={sent} received={got} loss_pct={:.2} rate={:.0} p50_us={} p99_us={} p999_us={} sender_behind_p99={late_p99}us",
        match path {
            Path::Relay => "flow",
            Path::Direct => "direct",
            Path::Via => "via",
        },
        100.0 * (sent.saturating_sub(got)) as f64 / sent.max(1) as f64,
        got as f64 / elapsed,
        percentile(&l, 0.5),
        percentile(&l, 0.99),
        percentile(&l, 0.999),
    );
}

async fn allocs(a: &Args) {
    // (allocations made, refused)
    let done = Rc::new(RefCell::new((0u64, 0u64)));
    let end = Instant::now() + Duration::from_secs(a.secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..a.n.min(200) {
        let done = done.clone();
        let (server, key, user, realm) = (
            a.server,
            a.password.clone(),
            a.user.clone(),
            a.realm.clone(),
        );
        tasks.push(tokio::task::spawn_local(async move {
            let args = Args {
                mode: String::new(),
                server,
                user,
                password: key,
                realm,
                n: 0,
                rate: 0,
                secs: 0,
                size: 0,
            };
            let mut n: u8 = 0;
            while Instant::now() < end {
                // A new client each time (a new 5-tuple), as calls bring,
                // spread over loopback addresses so that no 5-tuple comes
                // back while the server may remember it.
                n = n.wrapping_add(1);
                let ip = std::net::Ipv4Addr::new(127, 0, 1 + (w as u8), n.max(1));
                let mut c = Client::from(&args, ip).await;
                match c.try_allocate().await {
                    Ok(_) => {
                        done.borrow_mut().0 += 1;
                        c.delete().await;
                    }
                    Err(code) => {
                        done.borrow_mut().1 += 1;
                        if std::env::var_os("RELAY_LOAD_DEBUG").is_some() {
                            eprintln!("refused: {code}");
                        }
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let (n, refused) = *done.borrow();
    println!(
        "mode=allocs allocations={n} refused={refused} per_second={:.0}",
        n as f64 / started.elapsed().as_secs_f64()
    );
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        match a.mode.as_str() {
            "flow" => flow(&a, Path::Relay).await,
            "direct" => flow(&a, Path::Direct).await,
            "via" => flow(&a, Path::Via).await,
            "forwarder" => forwarder(a.server),
            "allocs" => allocs(&a).await,
            m => {
                eprintln!("relay_load: unknown mode {m:?} (flow, direct, via, forwarder, allocs)");
                std::process::exit(2);
            }
        }
    });
}
