//! HEP v3 over TLS: one connection to the collector on a thread of its
//! own, packets written back to back (HEP's length delimits them, as
//! Homer's heplify-server reads a TCP or TLS stream). A connection that
//! fails is re-opened with back-off (1 s doubling to 30 s). Packets wait
//! for the connection in a bounded queue; those beyond it, and those that
//! arrive while the collector cannot be reached, are dropped and counted,
//! never waited for.

use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;

/// Packets waiting for the connection at most.
const QUEUE: usize = 4_096;
/// How long a connection attempt or a write may take.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Written packets are flushed at the latest this long after.
const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// A collector reached over TLS.
#[derive(Debug, Clone)]
pub struct TlsCollector {
    /// The name its certificate must carry (or an address).
    pub host: String,
    pub port: u16,
    pub tls: Arc<rustls::ClientConfig>,
}

/// The handle the ring's writer hands packets to.
pub(crate) struct Sender {
    tx: SyncSender<Vec<u8>>,
    failed: Arc<AtomicU64>,
}

impl Sender {
    pub(crate) fn send(&self, packet: Vec<u8>) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(packet)
        {
            self.failed.fetch_add(1, Relaxed);
        }
    }
}

pub(crate) fn start(
    c: TlsCollector,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
) -> Result<Sender, String> {
    let name = ServerName::try_from(c.host.clone())
        .map_err(|_| format!("HEP: {:?} is not a name a certificate can carry", c.host))?;
    let (tx, rx) = sync_channel(QUEUE);
    let f = failed.clone();
    std::thread::Builder::new()
        .name("hep-tls".into())
        .spawn(move || run(c, name, rx, sent, f))
        .map_err(|e| format!("cannot start the HEP sender: {e}"))?;
    Ok(Sender { tx, failed })
}

type Stream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn connect(c: &TlsCollector, name: &ServerName<'static>) -> Result<Stream, String> {
    let mut last = String::from("no address");
    // Resolved at each attempt, on this thread (never the runtime's).
    let addrs = (c.host.as_str(), c.port)
        .to_socket_addrs()
        .map_err(|e| format!("{}: {e}", c.host))?;
    for a in addrs {
        match TcpStream::connect_timeout(&a, IO_TIMEOUT) {
            Ok(tcp) => {
                let _ = tcp.set_nodelay(true);
                tcp.set_write_timeout(Some(IO_TIMEOUT))
                    .and_then(|_| tcp.set_read_timeout(Some(IO_TIMEOUT)))
                    .map_err(|e| e.to_string())?;
                let conn = rustls::ClientConnection::new(c.tls.clone(), name.clone())
                    .map_err(|e| e.to_string())?;
                let mut s = rustls::StreamOwned::new(conn, tcp);
                // The handshake now, so that a certificate the collector
                // cannot prove fails here, not on the first packet.
                while s.conn.is_handshaking() {
                    s.conn
                        .complete_io(&mut s.sock)
                        .map_err(|e| format!("TLS with {a}: {e}"))?;
                }
                return Ok(s);
            }
            Err(e) => last = format!("{a}: {e}"),
        }
    }
    Err(last)
}

fn run(
    c: TlsCollector,
    name: ServerName<'static>,
    rx: Receiver<Vec<u8>>,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
) {
    let mut backoff = Duration::from_secs(1);
    let mut retry_at = Instant::now();
    let mut stream: Option<Stream> = None;
    let mut unflushed = false;
    let mut reported = false;
    loop {
        let packet = match rx.recv_timeout(FLUSH_EVERY) {
            Ok(p) => Some(p),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        if stream.is_none() && Instant::now() >= retry_at {
            match connect(&c, &name) {
                Ok(s) => {
                    tracing::info!(collector = %c.host, port = c.port, "HEP collector connected over TLS");
                    stream = Some(s);
                    backoff = Duration::from_secs(1);
                    reported = false;
                }
                Err(e) => {
                    // Once per outage, not at every attempt.
                    if !reported {
                        tracing::warn!(collector = %c.host, port = c.port, error = %e, "cannot reach the HEP collector over TLS; retrying with back-off");
                        reported = true;
                    }
                    retry_at = Instant::now() + backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
        let Some(s) = stream.as_mut() else {
            if packet.is_some() {
                failed.fetch_add(1, Relaxed);
            }
            continue;
        };
        let result = match &packet {
            Some(p) => s.write_all(p).map(|_| {
                unflushed = true;
            }),
            None if unflushed => s.flush().map(|_| {
                unflushed = false;
            }),
            None => Ok(()),
        };
        match result {
            Ok(()) if packet.is_some() => {
                sent.fetch_add(1, Relaxed);
            }
            Ok(()) => {}
            Err(e) => {
                if packet.is_some() {
                    failed.fetch_add(1, Relaxed);
                }
                tracing::warn!(collector = %c.host, port = c.port, error = %e, "the HEP collector's connection failed; re-opening it");
                stream = None;
                unflushed = false;
                reported = true;
                retry_at = Instant::now() + backoff;
            }
        }
    }
}
