//! TCP and TLS clients: connections bounded in all and per address,
//! frames (STUN and padded ChannelData, RFC 8656 §12.6) read in turn, and
//! what goes back written by a task of the connection's own.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::{received, Back, Shared, MAX_CONNECTIONS, MAX_CONNECTIONS_PER_IP, STREAM_QUEUE};
use crate::engine::{Client, Transport};

pub(super) async fn stream_listener(
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
