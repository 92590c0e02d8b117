//! The transport handle: binds listeners, owns the flow registry, sends.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use rustls::ServerConfig;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::flows::{FlowId, Flows};
use crate::guard::{Admission, ConnGuard, Refusal};
use crate::{logging, Inbound, Protocol, TransportConfig};

/// A listener to bind.
#[derive(Debug, Clone)]
pub enum Listener {
    Udp(SocketAddr),
    Tcp(SocketAddr),
    Tls(SocketAddr, Arc<ServerConfig>),
    Ws(SocketAddr),
    Wss(SocketAddr, Arc<ServerConfig>),
}

/// What an outbound TLS connection needs: the client configuration (roots,
/// optional client certificate for mutual TLS) and the name the server's
/// certificate must carry.
#[derive(Debug, Clone)]
pub struct ClientTls {
    pub config: Arc<rustls::ClientConfig>,
    pub server_name: rustls_pki_types::ServerName<'static>,
}

/// Where to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Over an existing stream connection (TCP, TLS, WS, WSS).
    Flow(FlowId),
    /// A UDP datagram from the socket `flow` to `dest`.
    Udp { flow: FlowId, dest: SocketAddr },
}

/// Why a send failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum SendError {
    /// The connection is gone (closed, or never existed).
    NoSuchFlow,
    /// The peer is not reading: its queue is full and its connection was closed.
    QueueFull,
    /// Broadcast, multicast and unspecified addresses are never sent to.
    ForbiddenDestination,
    /// The connection limits leave no room for another connection.
    ConnectionLimit,
    Io(io::Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::NoSuchFlow => f.write_str("no such connection"),
            SendError::QueueFull => f.write_str("peer not reading: connection closed"),
            SendError::ForbiddenDestination => f.write_str("destination address is not unicast"),
            SendError::ConnectionLimit => f.write_str("connection limit reached"),
            SendError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for SendError {}

/// Shared state of listeners and connections.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) config: TransportConfig,
    pub(crate) flows: Flows,
    pub(crate) inbound: mpsc::Sender<Inbound>,
    pub(crate) admission: Arc<Admission>,
    pub(crate) shutdown: watch::Receiver<bool>,
    tag_seq: AtomicU64,
    udp: Vec<(FlowId, Arc<UdpSocket>, SocketAddr)>,
}

impl Ctx {
    /// A To tag for stateless error responses.
    pub(crate) fn tag(&self) -> String {
        format!("pt{:x}", self.tag_seq.fetch_add(1, Ordering::Relaxed))
    }
}

/// Admits a new connection or logs (at a bounded rate) why not.
pub(crate) fn admit(ctx: &Ctx, remote: SocketAddr, protocol: Protocol) -> Option<ConnGuard> {
    match ctx.admission.admit(remote.ip()) {
        Ok(g) => Some(g),
        Err(why) => {
            if let Some(suppressed) = logging::REFUSED_CONNECTION.allow() {
                let reason = match why {
                    Refusal::TooManyTotal => "connection limit reached",
                    Refusal::TooManyFromIp => "per-address connection limit reached",
                };
                tracing::warn!(%remote, ?protocol, reason, suppressed, "connection refused");
            }
            None
        }
    }
}

/// Unicast only: never broadcast, multicast or unspecified (RFC 4475 §3.3.10).
pub(crate) fn allowed_destination(dest: SocketAddr) -> bool {
    let ip = dest.ip();
    let bad = match ip {
        IpAddr::V4(a) => a.is_broadcast() || a.is_multicast() || a.is_unspecified(),
        IpAddr::V6(a) => a.is_multicast() || a.is_unspecified(),
    };
    !bad && dest.port() != 0
}

/// A running transport. Cloning shares it.
#[derive(Debug, Clone)]
pub struct Transport {
    ctx: Arc<Ctx>,
    locals: Arc<Vec<(Protocol, SocketAddr, Option<FlowId>)>>,
    tasks: Arc<Vec<JoinHandle<()>>>,
    stop: Arc<watch::Sender<bool>>,
}

impl Transport {
    /// Binds every listener and starts serving. Messages arrive on the returned
    /// receiver, whose capacity is [`TransportConfig::inbound_queue`].
    pub async fn bind(
        config: TransportConfig,
        listeners: Vec<Listener>,
    ) -> io::Result<(Transport, mpsc::Receiver<Inbound>)> {
        let (tx, rx) = mpsc::channel(config.inbound_queue.max(1));
        let (stop, shutdown) = watch::channel(false);
        let admission = Admission::new(config.max_connections, config.max_connections_per_ip);
        let flows = Flows::new();
        // Bind everything first so that an error leaves nothing running.
        enum Bound {
            Udp(Arc<UdpSocket>, SocketAddr, FlowId),
            Stream(TcpListener, Protocol, Option<TlsAcceptor>),
        }
        let mut bound = Vec::new();
        for l in listeners {
            bound.push(match l {
                Listener::Udp(a) => {
                    let s = crate::udp::bind(a)?;
                    let local = s.local_addr()?;
                    Bound::Udp(Arc::new(s), local, flows.next_id())
                }
                Listener::Tcp(a) => Bound::Stream(TcpListener::bind(a).await?, Protocol::Tcp, None),
                Listener::Tls(a, c) => Bound::Stream(
                    TcpListener::bind(a).await?,
                    Protocol::Tls,
                    Some(TlsAcceptor::from(c)),
                ),
                Listener::Ws(a) => Bound::Stream(TcpListener::bind(a).await?, Protocol::Ws, None),
                Listener::Wss(a, c) => Bound::Stream(
                    TcpListener::bind(a).await?,
                    Protocol::Wss,
                    Some(TlsAcceptor::from(c)),
                ),
            });
        }
        let udp = bound
            .iter()
            .filter_map(|b| match b {
                Bound::Udp(s, a, f) => Some((*f, s.clone(), *a)),
                Bound::Stream(..) => None,
            })
            .collect();
        let ctx = Arc::new(Ctx {
            config,
            flows,
            inbound: tx,
            admission,
            shutdown,
            tag_seq: AtomicU64::new(1),
            udp,
        });
        let mut locals = Vec::new();
        let mut tasks = Vec::new();
        for b in bound {
            match b {
                Bound::Udp(s, local, flow) => {
                    locals.push((Protocol::Udp, local, Some(flow)));
                    tasks.push(tokio::spawn(crate::udp::run(s, flow, local, ctx.clone())));
                }
                Bound::Stream(l, protocol, tls) => {
                    locals.push((protocol, l.local_addr()?, None));
                    let task = match protocol {
                        Protocol::Ws | Protocol::Wss => {
                            tokio::spawn(crate::ws::accept_loop(l, tls, ctx.clone()))
                        }
                        _ => tokio::spawn(crate::stream::accept_loop(l, tls, ctx.clone())),
                    };
                    tasks.push(task);
                }
            }
        }
        Ok((
            Transport {
                ctx,
                locals: Arc::new(locals),
                tasks: Arc::new(tasks),
                stop: Arc::new(stop),
            },
            rx,
        ))
    }

    /// The peers whose connections get the wide outbound queue (see
    /// [`TransportConfig::wide_peers`]).
    pub fn wide_peers(&self) -> &crate::WidePeers {
        &self.ctx.config.wide_peers
    }

    /// The bound addresses, with the UDP sockets' flow ids.
    pub fn local_addrs(&self) -> &[(Protocol, SocketAddr, Option<FlowId>)] {
        &self.locals
    }

    /// The first bound address of `protocol`.
    pub fn local_addr(&self, protocol: Protocol) -> Option<SocketAddr> {
        self.locals.iter().find(|l| l.0 == protocol).map(|l| l.1)
    }

    /// Open stream connections.
    pub fn connections(&self) -> usize {
        self.ctx.flows.len()
    }

    /// Sends `bytes` to `target`. Stream sends are queued (bounded); a full queue
    /// closes that connection.
    pub async fn send(&self, target: Target, bytes: Bytes) -> Result<(), SendError> {
        match target {
            Target::Udp { flow, dest } => {
                if !allowed_destination(dest) {
                    return Err(SendError::ForbiddenDestination);
                }
                let (sock, local) = self
                    .ctx
                    .udp
                    .iter()
                    .find(|(f, ..)| *f == flow)
                    .map(|(_, s, a)| (s.clone(), *a))
                    .ok_or(SendError::NoSuchFlow)?;
                if let Some(t) = &self.ctx.config.tap {
                    t.capture(false, Protocol::Udp, local, dest, &bytes);
                }
                sock.send_to(&bytes, dest)
                    .await
                    .map(|_| ())
                    .map_err(SendError::Io)
            }
            Target::Flow(flow) => {
                let f = self.ctx.flows.get(flow).ok_or(SendError::NoSuchFlow)?;
                if let Some(t) = &self.ctx.config.tap {
                    t.capture(false, f.protocol, f.local, f.remote, &bytes);
                }
                match f.tx.try_send(bytes) {
                    Ok(()) => Ok(()),
                    Err(mpsc::error::TrySendError::Closed(_)) => Err(SendError::NoSuchFlow),
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        // Out of the registry, and its task told to close
                        // now (not after draining the queue).
                        self.ctx.flows.remove(flow);
                        f.closer.notify_one();
                        if let Some(suppressed) = logging::QUEUE_FULL.allow() {
                            tracing::warn!(remote = %f.remote, protocol = ?f.protocol, suppressed, "peer not reading: connection closed");
                        }
                        Err(SendError::QueueFull)
                    }
                }
            }
        }
    }

    /// Closes every connection whose peer presented one of these
    /// certificates (SHA-256 of the DER), at once: a revoked device's.
    /// Returns how many were closed.
    pub fn close_certified(&self, certs: &std::collections::HashSet<[u8; 32]>) -> usize {
        self.ctx.flows.close_certified(certs)
    }

    /// The connections closed since the last call, oldest first (the
    /// owner polls: bindings and subscriptions that lived on them go).
    pub fn closed_flows(&self) -> Vec<FlowId> {
        self.ctx.flows.take_closed()
    }

    /// This side's address of a live connection (the address the peer
    /// reached, not a wildcard).
    pub fn flow_local(&self, flow: FlowId) -> Option<SocketAddr> {
        self.ctx.flows.get(flow).map(|f| f.local)
    }

    /// A live connection of `protocol` to `remote`, if one exists (RFC 5923 reuse).
    pub fn flow_to(&self, protocol: Protocol, remote: SocketAddr) -> Option<FlowId> {
        self.ctx.flows.find(protocol, remote)
    }

    /// Opens a TCP or TLS connection to `remote` (or reuses a live one) and serves
    /// it like an accepted one: what the peer sends arrives on the inbound channel.
    /// TLS needs the client configuration and the name to verify.
    pub async fn connect(
        &self,
        remote: SocketAddr,
        tls: Option<ClientTls>,
    ) -> Result<FlowId, SendError> {
        let protocol = if tls.is_some() {
            Protocol::Tls
        } else {
            Protocol::Tcp
        };
        if let Some(id) = self.flow_to(protocol, remote) {
            return Ok(id);
        }
        self.open(remote, tls).await
    }

    /// Opens a new TCP or TLS connection to `remote`, never reusing one: a
    /// connection verified for one partner domain is not another's, even
    /// where both are hosted at the same address.
    pub async fn open(
        &self,
        remote: SocketAddr,
        tls: Option<ClientTls>,
    ) -> Result<FlowId, SendError> {
        self.open_as(remote, tls, false).await
    }

    /// [`Transport::open`] for a connection that carries many users'
    /// traffic (to another node of a pool): the wide outbound queue and
    /// half the inbound one, as a wide peer's.
    pub async fn open_wide(
        &self,
        remote: SocketAddr,
        tls: Option<ClientTls>,
    ) -> Result<FlowId, SendError> {
        self.open_as(remote, tls, true).await
    }

    async fn open_as(
        &self,
        remote: SocketAddr,
        tls: Option<ClientTls>,
        wide: bool,
    ) -> Result<FlowId, SendError> {
        let protocol = if tls.is_some() {
            Protocol::Tls
        } else {
            Protocol::Tcp
        };
        if !allowed_destination(remote) {
            return Err(SendError::ForbiddenDestination);
        }
        let guard = admit(&self.ctx, remote, protocol).ok_or(SendError::ConnectionLimit)?;
        let deadline = self.ctx.config.handshake_timeout;
        let connect = async {
            match self.ctx.config.connect_from {
                None => tokio::net::TcpStream::connect(remote).await,
                Some(ip) => {
                    let sock = if ip.is_ipv4() {
                        tokio::net::TcpSocket::new_v4()?
                    } else {
                        tokio::net::TcpSocket::new_v6()?
                    };
                    sock.bind(SocketAddr::new(ip, 0))?;
                    sock.connect(remote).await
                }
            }
        };
        let tcp = tokio::time::timeout(deadline, connect)
            .await
            .map_err(|_| SendError::Io(io::ErrorKind::TimedOut.into()))?
            .map_err(SendError::Io)?;
        let _ = tcp.set_nodelay(true);
        let local = tcp.local_addr().map_err(SendError::Io)?;
        let ctx = self.ctx.clone();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        match tls {
            None => {
                tokio::spawn(crate::stream::serve(
                    tcp,
                    protocol,
                    remote,
                    local,
                    None,
                    guard,
                    ctx,
                    Some(ready_tx),
                    wide,
                ));
            }
            Some(ClientTls {
                config,
                server_name,
            }) => {
                let connector = tokio_rustls::TlsConnector::from(config);
                let stream = tokio::time::timeout(deadline, connector.connect(server_name, tcp))
                    .await
                    .map_err(|_| SendError::Io(io::ErrorKind::TimedOut.into()))?
                    .map_err(SendError::Io)?;
                let certs = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .map(|c| Arc::new(c.iter().map(|c| c.clone().into_owned()).collect()));
                tokio::spawn(crate::stream::serve(
                    stream,
                    protocol,
                    remote,
                    local,
                    certs,
                    guard,
                    ctx,
                    Some(ready_tx),
                    wide,
                ));
            }
        }
        ready_rx.await.map_err(|_| SendError::NoSuchFlow)
    }

    /// Stops every listener and connection.
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
        for t in self.tasks.iter() {
            t.abort();
        }
    }
}
