//! Transport limits and timeouts.

use std::time::Duration;

/// [`TransportConfig::inbound_queue`] by default (a constant, so that the
/// core can compare with it per message without building a config).
pub const DEFAULT_INBOUND_QUEUE: usize = 4096;

/// Limits on what peers can make the transport hold. Defaults suit one server
/// facing thousands of clients.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Message limits (size, headers, ...), shared with the parser.
    pub limits: sip::Limits,
    /// Open stream connections (TCP, TLS, WS, WSS) in total.
    pub max_connections: usize,
    /// Open stream connections from one IP address.
    pub max_connections_per_ip: usize,
    /// Messages queued for sending on one connection; a peer that does not read
    /// loses its connection rather than growing this.
    pub max_outbound_queue: usize,
    /// Received messages waiting for the core. UDP drops beyond this; stream
    /// connections stop reading until there is room.
    pub inbound_queue: usize,
    /// Of those, how many one stream connection may hold (a wide peer's
    /// connection, below, half the queue): beyond it the connection is not
    /// read until the core has taken some, so that one peer's flood waits
    /// behind its own messages, not everyone's.
    pub max_inbound_per_connection: usize,
    /// TLS or WebSocket handshake must complete within this.
    pub handshake_timeout: Duration,
    /// A connection with no traffic at all for this long is closed. RFC 5626
    /// clients send CRLF keep-alives far more often (default 120 s or less).
    pub idle_timeout: Duration,
    /// A message whose first bytes arrived must be complete within this.
    pub message_timeout: Duration,
    /// Which web pages may open WebSocket connections (browsers send the
    /// page's Origin; other clients send none and are not affected).
    pub ws_origins: OriginPolicy,
    /// The local address connections this transport opens start from (an
    /// edge reaches its pool from its internal interface); any when unset.
    pub connect_from: Option<std::net::IpAddr>,
    /// Peers whose one connection carries many users' traffic (the pool's
    /// edges): a connection presenting one of their certificates queues up
    /// to `wide_outbound_queue` messages before it counts as not reading.
    pub wide_peers: WidePeers,
    pub wide_outbound_queue: usize,
    /// Told of every SIP message received or sent (the trace ring and HEP
    /// export); it must not block.
    pub tap: Option<Tap>,
}

/// One SIP message as it crossed the transport.
#[derive(Debug, Clone)]
pub struct Captured {
    /// Unix milliseconds.
    pub at_ms: i64,
    pub inbound: bool,
    pub protocol: crate::Protocol,
    pub local: std::net::SocketAddr,
    pub remote: std::net::SocketAddr,
    pub bytes: bytes::Bytes,
}

/// Where captured messages go.
#[derive(Clone)]
pub struct Tap(pub std::sync::Arc<dyn Fn(Captured) + Send + Sync>);

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tap(..)")
    }
}

impl Tap {
    pub(crate) fn capture(
        &self,
        inbound: bool,
        protocol: crate::Protocol,
        local: std::net::SocketAddr,
        remote: std::net::SocketAddr,
        bytes: &bytes::Bytes,
    ) {
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        (self.0)(Captured {
            at_ms,
            inbound,
            protocol,
            local,
            remote,
            bytes: bytes.clone(),
        });
    }
}

/// A rule for leaf certificates (DER) whose peers are wide whatever
/// their fingerprint (a pool's nodes, whose certificates are made at
/// each start).
pub type WideRule = std::sync::Arc<dyn Fn(&[u8]) -> bool + Send + Sync>;

/// The certificates (SHA-256 of the leaf) of peers that get the wide
/// outbound queue and half the inbound one, and a rule for more; the owner
/// changes them at run time (pairing an edge, joining a pool), for
/// connections made after.
#[derive(Clone, Default)]
pub struct WidePeers {
    fingerprints: std::sync::Arc<std::sync::RwLock<std::collections::HashSet<[u8; 32]>>>,
    rule: std::sync::Arc<std::sync::RwLock<Option<WideRule>>>,
}

impl std::fmt::Debug for WidePeers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WidePeers").finish_non_exhaustive()
    }
}

impl WidePeers {
    /// Replaces the set.
    pub fn set(&self, fingerprints: impl IntoIterator<Item = [u8; 32]>) {
        let mut s = self.fingerprints.write().unwrap_or_else(|e| e.into_inner());
        *s = fingerprints.into_iter().collect();
    }

    /// Replaces the rule.
    pub fn set_rule(&self, rule: Option<WideRule>) {
        *self.rule.write().unwrap_or_else(|e| e.into_inner()) = rule;
    }

    /// Whether a leaf certificate (DER) is one of them.
    pub fn contains(&self, leaf: &[u8]) -> bool {
        let listed = {
            let s = self.fingerprints.read().unwrap_or_else(|e| e.into_inner());
            !s.is_empty() && s.contains(&fingerprint(leaf))
        };
        listed || {
            let r = self.rule.read().unwrap_or_else(|e| e.into_inner()).clone();
            r.is_some_and(|r| r(leaf))
        }
    }
}

/// SHA-256 of a certificate's DER, as pairing records it.
pub fn fingerprint(der: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, der);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Which `Origin` a WebSocket handshake may carry (cross-site WebSocket
/// hijacking: any page a user visits could otherwise open a SIP connection
/// from their browser).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum OriginPolicy {
    /// Every origin.
    #[default]
    Any,
    /// Only these: `Host(name)` is any `https://name[:port]`; `Exact` an
    /// origin written in full (`https://portal.example.com:8443`), both
    /// compared without regard to case.
    Only(Vec<OriginRule>),
}

/// One allowed origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginRule {
    Host(String),
    Exact(String),
}

impl OriginPolicy {
    /// Whether a handshake with this `Origin` header (or none) may proceed.
    pub fn allows(&self, origin: Option<&str>) -> bool {
        let (OriginPolicy::Only(rules), Some(origin)) = (self, origin) else {
            return true;
        };
        let origin = origin.trim();
        let host = origin
            .strip_prefix("https://")
            .map(|rest| match rest.strip_prefix('[') {
                // An IPv6 literal keeps its brackets' content.
                Some(v6) => v6.split(']').next().unwrap_or(""),
                None => rest.split(':').next().unwrap_or(""),
            });
        rules.iter().any(|r| match r {
            OriginRule::Exact(o) => o.eq_ignore_ascii_case(origin),
            OriginRule::Host(h) => host.is_some_and(|x| x.eq_ignore_ascii_case(h)),
        })
    }
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            limits: sip::Limits::DEFAULT,
            max_connections: 10_000,
            max_connections_per_ip: 32,
            max_outbound_queue: 256,
            inbound_queue: DEFAULT_INBOUND_QUEUE,
            max_inbound_per_connection: 64,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            message_timeout: Duration::from_secs(30),
            ws_origins: OriginPolicy::Any,
            connect_from: None,
            wide_peers: WidePeers::default(),
            wide_outbound_queue: 65_536,
            tap: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let p = OriginPolicy::Only(vec![
            OriginRule::Host("example.test".into()),
            OriginRule::Host("::1".into()),
            OriginRule::Exact("https://portal.example.com:8443".into()),
        ]);
        assert!(p.allows(None), "not a browser");
        assert!(p.allows(Some("https://example.test")));
        assert!(p.allows(Some("https://EXAMPLE.test:4443")));
        assert!(p.allows(Some("https://[::1]:4443")));
        assert!(p.allows(Some("https://portal.example.com:8443")));
        assert!(!p.allows(Some("https://portal.example.com")));
        assert!(!p.allows(Some("http://example.test")), "not over https");
        assert!(!p.allows(Some("https://example.test.evil.test")));
        assert!(!p.allows(Some("https://evil.test")));
        assert!(!p.allows(Some("null")));
        assert!(OriginPolicy::Any.allows(Some("https://evil.test")));
    }
}
