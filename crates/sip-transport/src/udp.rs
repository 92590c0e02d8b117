//! UDP: one receive loop per socket. A datagram is one message (RFC 3261 §18.3);
//! an unparseable request is answered statelessly when possible, otherwise
//! dropped, and logged at a bounded rate.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tokio::net::UdpSocket;

use crate::logging;
use crate::transport::Ctx;
use crate::{FlowId, Inbound, Protocol, Source};

/// Room for the largest datagram.
const RECV_CHUNK: usize = 65_536;

/// The socket buffers asked for. With Linux's default (208 KiB) a closed
/// loop of 400 registrations overflowed the receive buffer 897 times in ten
/// seconds (each a retransmission half a second later) while the core was
/// not saturated; overload control, not the kernel, should decide what is
/// dropped. The kernel caps the size at `net.core.rmem_max` / `wmem_max`
/// (208 KiB on a stock Debian); the size obtained is logged.
pub(crate) const SOCKET_BUFFER: usize = 4 << 20;

/// Binds a UDP socket with large buffers.
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(
        Domain::for_address(addr),
        Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    // Best effort: a smaller buffer still works.
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    let (recv, send) = (s.recv_buffer_size()?, s.send_buffer_size()?);
    if recv < SOCKET_BUFFER {
        tracing::info!(%addr, receive_buffer = recv, send_buffer = send, wanted = SOCKET_BUFFER, "UDP socket buffers smaller than wanted: raise net.core.rmem_max and net.core.wmem_max to absorb bursts");
    } else {
        tracing::debug!(%addr, receive_buffer = recv, send_buffer = send, "UDP socket buffers");
    }
    UdpSocket::from_std(s.into())
}

pub(crate) async fn run(sock: Arc<UdpSocket>, flow: FlowId, local: SocketAddr, ctx: Arc<Ctx>) {
    // One buffer for every datagram, each then copied out at its own size.
    // Datagrams split off a shared chunk instead each kept the whole chunk
    // (64-256 KiB) alive while any of them lived — a transaction in
    // progress holds its request —, and a fresh chunk every few hundred
    // datagrams was faulted in page by page: three times the page faults,
    // and 86-92% of a core where this takes 75-82% for the same rate of
    // registrations (bench/README.md, "Capacity under overload").
    let mut buf = vec![0u8; RECV_CHUNK];
    let mut shutdown = ctx.shutdown.clone();
    loop {
        let received = tokio::select! {
            r = sock.recv_from(&mut buf) => r,
            _ = shutdown.changed() => return,
        };
        let (len, remote) = match received {
            Ok(r) => r,
            Err(e) => {
                // ICMP errors surface here on some systems; they concern one peer only.
                tracing::debug!(error = %e, "udp receive error");
                continue;
            }
        };
        let datagram = Bytes::copy_from_slice(&buf[..len]);
        handle(&sock, datagram, remote, local, flow, &ctx).await;
    }
}

async fn handle(
    sock: &UdpSocket,
    datagram: Bytes,
    remote: SocketAddr,
    local: SocketAddr,
    flow: FlowId,
    ctx: &Ctx,
) {
    // CRLF keep-alives and stray white space carry nothing.
    if datagram.iter().all(|b| b.is_ascii_whitespace()) {
        return;
    }
    match sip::parse_datagram(datagram.clone(), &ctx.config.limits) {
        Ok(message) => {
            if let Some(t) = &ctx.config.tap {
                t.capture(true, Protocol::Udp, local, remote, message.as_bytes());
            }
            let source = Source {
                protocol: Protocol::Udp,
                remote,
                local,
                flow,
                peer_certificates: None,
            };
            if ctx
                .inbound
                .try_send(Inbound {
                    message,
                    source,
                    received: std::time::Instant::now(),
                    share: crate::Share::default(),
                })
                .is_err()
            {
                if let Some(suppressed) = logging::QUEUE_FULL.allow() {
                    tracing::warn!(%remote, suppressed, "inbound queue full: datagram dropped");
                }
            }
        }
        Err(e) => {
            let answered =
                match sip::build::error_response(&datagram, e.status(), &e.reason(), &ctx.tag()) {
                    Some(resp) if crate::transport::allowed_destination(remote) => {
                        sock.send_to(&resp, remote).await.is_ok()
                    }
                    _ => false,
                };
            if let Some(suppressed) = logging::BAD_DATAGRAM.allow() {
                tracing::info!(%remote, error = %e, answered, len = datagram.len(), suppressed, "unparseable datagram");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn udp_sockets_get_the_buffers_the_kernel_allows() {
        let s = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let max = |f: &str| -> usize {
            std::fs::read_to_string(f)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        let sock = socket2::SockRef::from(&s);
        // Linux reports twice what it grants (bookkeeping included).
        assert!(
            sock.recv_buffer_size().unwrap()
                >= SOCKET_BUFFER.min(max("/proc/sys/net/core/rmem_max"))
        );
        assert!(
            sock.send_buffer_size().unwrap()
                >= SOCKET_BUFFER.min(max("/proc/sys/net/core/wmem_max"))
        );
        // A default socket has less, or the test proves nothing here.
        let plain = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let default = socket2::SockRef::from(&plain).recv_buffer_size().unwrap();
        if max("/proc/sys/net/core/rmem_max") > 2 * default {
            assert!(sock.recv_buffer_size().unwrap() > default);
        }
    }
}
