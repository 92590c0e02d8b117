//! SIP over WebSocket (RFC 7118): the `sip` subprotocol is required; each
//! WebSocket message carries exactly one SIP message.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::flows::StreamFlow;
use crate::guard::ConnGuard;
use crate::logging;
use crate::transport::Ctx;
use crate::{Inbound, Protocol, Source};

pub(crate) async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>, ctx: Arc<Ctx>) {
    let local = crate::stream::bound_addr(&listener);
    let protocol = if tls.is_some() {
        Protocol::Wss
    } else {
        Protocol::Ws
    };
    let mut shutdown = ctx.shutdown.clone();
    while let Some((sock, remote, guard)) =
        crate::stream::accept_next(&listener, protocol, &ctx, &mut shutdown).await
    {
        let ctx = ctx.clone();
        let tls = tls.clone();
        // The address this client reached (not the wildcard bound to).
        let local = sock.local_addr().unwrap_or(local);
        tokio::spawn(async move {
            let deadline = ctx.config.handshake_timeout;
            match tls {
                None => {
                    if let Ok(Some(ws)) =
                        tokio::time::timeout(deadline, handshake(sock, &ctx, remote)).await
                    {
                        serve(ws, protocol, remote, local, None, guard, ctx).await;
                    }
                }
                Some(acceptor) => {
                    let r = tokio::time::timeout(deadline, async {
                        let stream = acceptor.accept(sock).await.ok()?;
                        let certs = crate::tls::peer_chain(stream.get_ref().1);
                        Some((handshake(stream, &ctx, remote).await?, certs))
                    })
                    .await;
                    if let Ok(Some((ws, certs))) = r {
                        serve(ws, protocol, remote, local, certs, guard, ctx).await;
                    }
                }
            }
        });
    }
}

fn ws_config(ctx: &Ctx) -> WebSocketConfig {
    let max = ctx.config.limits.max_message_size;
    WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
}

/// The HTTP upgrade, refusing clients that do not offer the `sip` subprotocol.
async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    ctx: &Ctx,
    remote: SocketAddr,
) -> Option<tokio_tungstenite::WebSocketStream<S>> {
    // The callback's signature is tungstenite's; its error type is its HTTP response.
    #[allow(clippy::result_large_err)]
    let check = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        let origin = req
            .headers()
            .get("Origin")
            .map(|o| o.to_str().unwrap_or("?"));
        if !ctx.config.ws_origins.allows(origin) {
            if let Some(suppressed) = logging::REFUSED_CONNECTION.allow() {
                tracing::info!(%remote, origin = origin.unwrap_or(""), suppressed, "WebSocket handshake refused: a web page of this origin may not connect (setting ws_allowed_origins)");
            }
            let mut err =
                ErrorResponse::new(Some("this origin may not open SIP connections".into()));
            *err.status_mut() = StatusCode::FORBIDDEN;
            return Err(err);
        }
        let offers_sip = req
            .headers()
            .get_all("Sec-WebSocket-Protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim().eq_ignore_ascii_case("sip"));
        if offers_sip {
            resp.headers_mut()
                .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("sip"));
            Ok(resp)
        } else {
            if let Some(suppressed) = logging::REFUSED_CONNECTION.allow() {
                let offered: Vec<&str> = req
                    .headers()
                    .get_all("Sec-WebSocket-Protocol")
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .collect();
                tracing::info!(%remote, ?offered, suppressed, "WebSocket handshake refused: the client did not offer the \"sip\" subprotocol (RFC 7118)");
            }
            let mut err = ErrorResponse::new(Some(
                "the \"sip\" WebSocket subprotocol is required (RFC 7118)".into(),
            ));
            *err.status_mut() = StatusCode::BAD_REQUEST;
            Err(err)
        }
    };
    match tokio_tungstenite::accept_hdr_async_with_config(io, check, Some(ws_config(ctx))).await {
        Ok(ws) => Some(ws),
        Err(e) => {
            if let Some(suppressed) = logging::REFUSED_CONNECTION.allow() {
                tracing::info!(%remote, error = %e, suppressed, "WebSocket handshake refused");
            }
            None
        }
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut ws: tokio_tungstenite::WebSocketStream<S>,
    protocol: Protocol,
    remote: SocketAddr,
    local: SocketAddr,
    peer_certificates: Option<Arc<Vec<rustls_pki_types::CertificateDer<'static>>>>,
    _guard: ConnGuard,
    ctx: Arc<Ctx>,
) {
    let flow = ctx.flows.next_id();
    let (tx, mut rx) = mpsc::channel(ctx.config.max_outbound_queue);
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
    let source = Source {
        protocol,
        remote,
        local,
        flow,
        peer_certificates,
    };
    let shares = crate::Shares::new(ctx.config.max_inbound_per_connection);
    let mut shutdown = ctx.shutdown.clone();
    loop {
        let idle = tokio::time::sleep(ctx.config.idle_timeout);
        tokio::select! {
            m = ws.next() => {
                // Copied out at its own size: tungstenite hands out slices
                // of its read buffer, which a message would keep alive
                // whole while it lives (as udp.rs explains).
                let data = match m {
                    Some(Ok(WsMessage::Text(t))) => bytes::Bytes::copy_from_slice(t.as_bytes()),
                    Some(Ok(WsMessage::Binary(b))) => bytes::Bytes::copy_from_slice(&b),
                    Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_))) => continue,
                    Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => break,
                };
                if data.iter().all(|b| b.is_ascii_whitespace()) {
                    continue; // CRLF keep-alive
                }
                match sip::parse_datagram(data.clone(), &ctx.config.limits) {
                    Ok(message) => {
                        if let Some(t) = &ctx.config.tap {
                            t.capture(true, source.protocol, source.local, source.remote, message.as_bytes());
                        }
                        // As for TCP (stream.rs): the connection waits for its
                        // share, until the flow is closed or the server stops.
                        let deliver = async {
                            let share = shares.take().await;
                            ctx.inbound.send(Inbound { message, source: source.clone(), received: std::time::Instant::now(), share }).await.is_ok()
                        };
                        let delivered = tokio::select! {
                            biased;
                            delivered = deliver => delivered,
                            _ = shutdown.changed() => false,
                            _ = closer.notified() => false,
                        };
                        if !delivered {
                            break;
                        }
                    }
                    Err(e) => {
                        if let Some(resp) = sip::build::error_response(&data, e.status(), &e.reason(), &ctx.tag()) {
                            let _ = send_unless_closed(&mut ws, resp, &ctx.config, &closer).await;
                        }
                        if let Some(suppressed) = logging::BAD_STREAM.allow() {
                            tracing::info!(%remote, error = %e, suppressed, "unparseable WebSocket message");
                        }
                    }
                }
            }
            out = rx.recv() => match out {
                Some(bytes) => {
                    if !send_unless_closed(&mut ws, bytes, &ctx.config, &closer).await {
                        break;
                    }
                }
                None => break,
            },
            _ = idle => break,
            _ = shutdown.changed() => break,
            _ = closer.notified() => break,
        }
    }
    ctx.flows.remove(flow);
    // As stream.rs: a peer reading nothing would hold the close forever.
    let _ = tokio::time::timeout(crate::stream::CLOSE_WAIT, ws.close(None)).await;
}

/// Sends `bytes` within the message timeout, unless the registry closes
/// the flow meanwhile (its queue overflowed); `false` if not sent.
async fn send_unless_closed<S>(
    ws: &mut S,
    bytes: bytes::Bytes,
    cfg: &crate::TransportConfig,
    closer: &tokio::sync::Notify,
) -> bool
where
    S: futures_util::Sink<WsMessage> + Unpin,
{
    tokio::select! {
        sent = tokio::time::timeout(cfg.message_timeout, ws.send(to_ws(bytes))) => matches!(sent, Ok(Ok(()))),
        () = closer.notified() => false,
    }
}

/// SIP is text; a message that is not UTF-8 goes as a binary frame.
fn to_ws(b: bytes::Bytes) -> WsMessage {
    match tokio_tungstenite::tungstenite::Utf8Bytes::try_from(b.clone()) {
        Ok(t) => WsMessage::Text(t),
        Err(_) => WsMessage::Binary(b),
    }
}
