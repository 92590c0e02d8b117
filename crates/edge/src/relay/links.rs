//! The edge's links to the pool: opened from its internal address to
//! each front end, re-opened with back-off when they close, kept alive;
//! and the closed connections of both sides forgotten.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sip_transport::{FlowId, Target};

use super::Edge;

/// A link to the pool being opened or open.
#[derive(Debug)]
pub(super) struct Link {
    pub(super) addr: std::net::SocketAddr,
    pub(super) flow: Option<FlowId>,
    pub(super) connecting: bool,
    /// When to try again after a failure.
    pub(super) retry_at: Instant,
    pub(super) backoff: Duration,
}

impl Edge {
    pub(super) fn on_connected(&mut self, i: usize, flow: Option<FlowId>) {
        let Some(link) = self.links.get_mut(i) else {
            return;
        };
        link.connecting = false;
        match flow {
            Some(f) => {
                tracing::info!(front_end = %link.addr, "linked to the pool");
                link.flow = Some(f);
                link.backoff = Duration::from_millis(250);
                self.pool_flows.insert(f);
                self.metrics.links.fetch_add(1, Relaxed);
            }
            None => {
                link.retry_at = Instant::now() + link.backoff;
                link.backoff = (link.backoff * 2).min(Duration::from_secs(10));
            }
        }
    }

    /// Drops closed connections and (re)opens links to the pool.
    pub(super) fn housekeeping(&mut self) {
        self.expire_snapshot();
        self.media_housekeeping();
        for f in self.ext.closed_flows() {
            self.partners.remove(&f);
            self.devices.remove(&f);
            self.in_flight.remove(&f);
            // A partner's connection that closed is forgotten (the maps
            // hold only live connections, so they stay bounded by them).
            self.partner_closed(f);
        }
        for f in self.int.closed_flows() {
            self.pool_flows.remove(&f);
            if self.accepted.remove(&f) {
                self.metrics.links.fetch_sub(1, Relaxed);
                tracing::warn!("a front end's connection to the internal listener closed");
            }
            self.strangers.remove(&f);
            for l in &mut self.links {
                if l.flow == Some(f) {
                    self.metrics.links.fetch_sub(1, Relaxed);
                    tracing::warn!(front_end = %l.addr, "link to the pool closed");
                    l.flow = None;
                    l.retry_at = Instant::now();
                }
            }
        }
        let now = Instant::now();
        for (i, l) in self.links.iter_mut().enumerate() {
            if l.flow.is_some() || l.connecting || l.retry_at > now {
                continue;
            }
            l.connecting = true;
            let (int, tls, addr, done) = (
                self.int.clone(),
                self.client_tls.clone(),
                l.addr,
                self.connected.clone(),
            );
            tokio::spawn(async move {
                let flow = match int.open(addr, Some(tls)).await {
                    Ok(f) => Some(f),
                    Err(e) => {
                        tracing::warn!(front_end = %addr, error = %e, "cannot link to the pool");
                        None
                    }
                };
                let _ = done.send((i, flow)).await;
            });
        }
    }

    /// CRLF keep-alives (RFC 5626 §3.5.1) on the links, so no idle timer
    /// closes them between calls.
    pub(super) async fn keepalive(&mut self) {
        for f in self.links.iter().filter_map(|l| l.flow).collect::<Vec<_>>() {
            let _ = self
                .int
                .send(Target::Flow(f), Bytes::from_static(b"\r\n\r\n"))
                .await;
        }
    }
}
