//! Transport limits and timeouts.

use std::time::Duration;

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
    /// TLS or WebSocket handshake must complete within this.
    pub handshake_timeout: Duration,
    /// A connection with no traffic at all for this long is closed. RFC 5626
    /// clients send CRLF keep-alives far more often (default 120 s or less).
    pub idle_timeout: Duration,
    /// A message whose first bytes arrived must be complete within this.
    pub message_timeout: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            limits: sip::Limits::DEFAULT,
            max_connections: 10_000,
            max_connections_per_ip: 32,
            max_outbound_queue: 256,
            inbound_queue: 4096,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            message_timeout: Duration::from_secs(30),
        }
    }
}
