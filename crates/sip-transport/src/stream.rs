//! Stream connections (TCP, TLS): accept with admission control, handshake with
//! a deadline, then one task per connection that frames messages, answers CRLF
//! keep-alives, writes queued outbound messages, and enforces the idle and
//! message-completion timeouts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use sip::framing::{Decoded, Framer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

use crate::flows::StreamFlow;
use crate::guard::ConnGuard;
use crate::logging;
use crate::transport::Ctx;
use crate::{Inbound, Protocol, Source};

const READ_CHUNK: usize = 8192;

/// The next admitted connection of a listener, or `None` once the transport
/// stops. Accept errors (out of descriptors...) back off instead of spinning;
/// connections over the limits are closed at once (logged at a bounded rate).
pub(crate) async fn accept_next(
    listener: &TcpListener,
    protocol: Protocol,
    ctx: &Ctx,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) -> Option<(TcpStream, SocketAddr, ConnGuard)> {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return None,
        };
        let (sock, remote) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        if let Some(guard) = crate::transport::admit(ctx, remote, protocol) {
            let _ = sock.set_nodelay(true);
            return Some((sock, remote, guard));
        }
    }
}

/// The address a listener is bound to (for `Source::local`).
pub(crate) fn bound_addr(listener: &TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}

/// Accepts TCP connections; `tls` makes them TLS.
pub(crate) async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>, ctx: Arc<Ctx>) {
    let local = bound_addr(&listener);
    let protocol = if tls.is_some() {
        Protocol::Tls
    } else {
        Protocol::Tcp
    };
    let mut shutdown = ctx.shutdown.clone();
    while let Some((sock, remote, guard)) =
        accept_next(&listener, protocol, &ctx, &mut shutdown).await
    {
        let ctx = ctx.clone();
        let tls = tls.clone();
        // The address this client reached (not the wildcard bound to).
        let local = sock.local_addr().unwrap_or(local);
        tokio::spawn(async move {
            match tls {
                None => serve(sock, protocol, remote, local, None, guard, ctx, None, false).await,
                Some(acceptor) => {
                    let hs =
                        tokio::time::timeout(ctx.config.handshake_timeout, acceptor.accept(sock))
                            .await;
                    match hs {
                        Ok(Ok(stream)) => {
                            let certs = crate::tls::peer_chain(stream.get_ref().1);
                            serve(
                                stream, protocol, remote, local, certs, guard, ctx, None, false,
                            )
                            .await
                        }
                        Ok(Err(e)) => tracing::debug!(%remote, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

/// Serves one connection until it closes, errs, idles out or the transport stops.
/// `ready` learns the flow id once the connection is registered (outbound use).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: S,
    protocol: Protocol,
    remote: SocketAddr,
    local: SocketAddr,
    peer_certificates: Option<Arc<Vec<rustls_pki_types::CertificateDer<'static>>>>,
    _guard: ConnGuard,
    ctx: Arc<Ctx>,
    ready: Option<tokio::sync::oneshot::Sender<crate::FlowId>>,
    wide: bool,
) {
    let flow = ctx.flows.next_id();
    let wide = wide
        || peer_certificates
            .as_ref()
            .and_then(|c| c.first())
            .is_some_and(|leaf| ctx.config.wide_peers.contains(leaf));
    let (queue, shares) = if wide {
        (ctx.config.wide_outbound_queue, ctx.config.inbound_queue / 2)
    } else {
        (
            ctx.config.max_outbound_queue,
            ctx.config.max_inbound_per_connection,
        )
    };
    let shares = crate::Shares::new(shares);
    let (tx, mut rx) = mpsc::channel(queue);
    let closer = Arc::new(tokio::sync::Notify::new());
    ctx.flows.insert(
        flow,
        StreamFlow {
            tx,
            protocol,
            remote,
            local,
            closer: closer.clone(),
            leaf: peer_certificates
                .as_ref()
                .and_then(|c| c.first())
                .map(|c| crate::fingerprint(c)),
        },
    );
    if let Some(r) = ready {
        let _ = r.send(flow);
    }
    let source = Source {
        protocol,
        remote,
        local,
        flow,
        peer_certificates,
    };
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut framer = Framer::new();
    let mut partial_since: Option<Instant> = None;
    let mut shutdown = ctx.shutdown.clone();
    let cfg = &ctx.config;
    'conn: loop {
        let idle = tokio::time::sleep(cfg.idle_timeout);
        let partial_deadline = partial_since.map(|t| t + cfg.message_timeout);
        tokio::select! {
            r = read_some(&mut io, &mut buf) => {
                match r {
                    Ok(0) | Err(_) => break 'conn,
                    Ok(_) => {}
                }
                loop {
                    match framer.decode(&mut buf, &cfg.limits) {
                        Ok(Decoded::Message(message)) => {
                            if let Some(t) = &ctx.config.tap {
                                t.capture(true, protocol, local, remote, message.as_bytes());
                            }
                            // Waiting here stops reading this connection: backpressure
                            // falls on the peer that causes it. (Writing stops too:
                            // a peer that floods without reading fills its outbound
                            // queue and is closed, which writing while waiting would
                            // put off until the socket's buffers, megabytes, were full.)
                            // The wait ends when the flow is closed (its queue
                            // overflowed) or the server stops.
                            let deliver = async {
                                let share = shares.take().await;
                                let item = Inbound { message, source: source.clone(), received: std::time::Instant::now(), share };
                                ctx.inbound.send(item).await.is_ok()
                            };
                            tokio::select! {
                                biased;
                                delivered = deliver => {
                                    if !delivered {
                                        break 'conn;
                                    }
                                }
                                _ = shutdown.changed() => break 'conn,
                                _ = closer.notified() => break 'conn,
                            }
                        }
                        Ok(Decoded::Ping) => {
                            if write_unless_closed(&mut io, b"\r\n", cfg, &closer).await.is_err() {
                                break 'conn;
                            }
                        }
                        Ok(Decoded::Pong) => {}
                        Ok(Decoded::Incomplete) => break,
                        Err(e) => {
                            let resp = sip::build::error_response(&buf, e.status(), &e.reason(), &ctx.tag());
                            if let Some(resp) = resp {
                                let _ = write(&mut io, &resp, cfg).await;
                            }
                            if let Some(suppressed) = logging::BAD_STREAM.allow() {
                                tracing::info!(%remote, ?protocol, error = %e, suppressed, "framing error: closing connection");
                            }
                            break 'conn;
                        }
                    }
                }
                partial_since = if buf.is_empty() { None } else { partial_since.or(Some(Instant::now())) };
            }
            out = rx.recv() => match out {
                Some(bytes) => {
                    if write_unless_closed(&mut io, &bytes, cfg, &closer).await.is_err() {
                        break 'conn;
                    }
                }
                // The registry dropped this flow (its queue overflowed).
                None => break 'conn,
            },
            _ = idle => {
                tracing::debug!(%remote, "idle connection closed");
                break 'conn;
            }
            _ = sleep_until_opt(partial_deadline) => {
                if let Some(suppressed) = logging::BAD_STREAM.allow() {
                    tracing::info!(%remote, buffered = buf.len(), suppressed, "message not completed in time: closing connection");
                }
                break 'conn;
            }
            _ = shutdown.changed() => break 'conn,
            _ = closer.notified() => break 'conn,
        }
    }
    ctx.flows.remove(flow);
    // A peer that reads nothing leaves the socket's buffer full, and a TLS
    // close_notify would wait for room forever (the task and the socket
    // with it): a moment to close politely, then the socket is dropped.
    let _ = tokio::time::timeout(CLOSE_WAIT, io.shutdown()).await;
}

/// How long a closing connection may take to close politely.
pub(crate) const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// [`write`], given up at once when the registry closes the flow (its
/// queue overflowed: the peer is not reading, so the write may never end).
async fn write_unless_closed<S: AsyncWrite + Unpin>(
    io: &mut S,
    bytes: &[u8],
    cfg: &crate::TransportConfig,
    closer: &tokio::sync::Notify,
) -> std::io::Result<()> {
    tokio::select! {
        r = write(io, bytes, cfg) => r,
        () = closer.notified() => Err(std::io::ErrorKind::ConnectionAborted.into()),
    }
}

async fn read_some<S: AsyncRead + Unpin>(io: &mut S, buf: &mut BytesMut) -> std::io::Result<usize> {
    buf.reserve(READ_CHUNK);
    io.read_buf(buf).await
}

/// Writes with a deadline so a peer that stops reading cannot pin the task.
async fn write<S: AsyncWrite + Unpin>(
    io: &mut S,
    bytes: &[u8],
    cfg: &crate::TransportConfig,
) -> std::io::Result<()> {
    match tokio::time::timeout(cfg.message_timeout, async {
        io.write_all(bytes).await?;
        io.flush().await
    })
    .await
    {
        Ok(r) => r,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
