//! UDP: one receive loop per socket. A datagram is one message (RFC 3261 §18.3);
//! an unparseable request is answered statelessly when possible, otherwise
//! dropped, and logged at a bounded rate.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::net::UdpSocket;

use crate::logging;
use crate::transport::Ctx;
use crate::{FlowId, Inbound, Protocol, Source};

/// Room for the largest datagram.
const RECV_CHUNK: usize = 65_536;

pub(crate) async fn run(sock: Arc<UdpSocket>, flow: FlowId, local: SocketAddr, ctx: Arc<Ctx>) {
    let mut buf = BytesMut::with_capacity(RECV_CHUNK * 4);
    let mut shutdown = ctx.shutdown.clone();
    loop {
        buf.reserve(RECV_CHUNK);
        let received = tokio::select! {
            r = sock.recv_buf_from(&mut buf) => r,
            _ = shutdown.changed() => return,
        };
        let (_, remote) = match received {
            Ok(r) => r,
            Err(e) => {
                // ICMP errors surface here on some systems; they concern one peer only.
                tracing::debug!(error = %e, "udp receive error");
                buf.clear();
                continue;
            }
        };
        let datagram = buf.split().freeze();
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
