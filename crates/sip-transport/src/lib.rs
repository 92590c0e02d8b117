//! # parapet-sip-transport: SIP over UDP, TCP, TLS, WS and WSS
//!
//! Listeners turn bytes into parsed [`sip::Message`]s and hand them to the core
//! through one bounded channel as [`Inbound`] items; the core answers through
//! [`Transport::send`], naming either the flow a request came on (RFC 5923
//! connection reuse, RFC 3581 rport: responses and in-dialog requests go back the
//! way they came) or a UDP destination.
//!
//! Every resource a peer can claim is bounded ([`TransportConfig`]): connections
//! in total and per source IP, buffered bytes per connection (one message),
//! queued outbound messages per connection, TLS and WebSocket handshake time,
//! idle time, and the time a partly received message may take to complete. A
//! framing error closes only the connection it happened on; an unparseable
//! datagram is answered when it is a request we can answer, otherwise dropped,
//! and logged at a bounded rate.
//!
//! TLS is rustls with TLS 1.2 and 1.3 only and its default (AEAD-only) suites; a
//! client certificate can be requested, and the verified chain is passed up in
//! [`Source::peer_certificates`]. WebSocket (RFC 7118) requires the `sip`
//! subprotocol.
#![forbid(unsafe_code)]

mod config;
mod flows;
pub mod guard;
pub mod logging;
mod stream;
pub mod tls;
mod transport;
mod udp;
mod ws;

use std::net::SocketAddr;
use std::sync::Arc;

pub use config::{
    fingerprint, Captured, OriginPolicy, OriginRule, Tap, TransportConfig, WidePeers, WideRule,
    DEFAULT_INBOUND_QUEUE,
};
pub use flows::FlowId;
pub use transport::{ClientTls, Listener, SendError, Target, Transport};

/// The transport a message arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Udp,
    Tcp,
    Tls,
    Ws,
    Wss,
}

impl Protocol {
    /// The Via transport token.
    pub fn via_token(self) -> &'static str {
        match self {
            Protocol::Udp => "UDP",
            Protocol::Tcp => "TCP",
            Protocol::Tls => "TLS",
            Protocol::Ws => "WS",
            Protocol::Wss => "WSS",
        }
    }

    /// Whether the transport itself delivers reliably (no SIP retransmissions).
    pub fn is_reliable(self) -> bool {
        self != Protocol::Udp
    }

    /// Whether the hop is encrypted.
    pub fn is_secure(self) -> bool {
        matches!(self, Protocol::Tls | Protocol::Wss)
    }
}

/// Where a message came from.
#[derive(Debug, Clone)]
pub struct Source {
    pub protocol: Protocol,
    pub remote: SocketAddr,
    pub local: SocketAddr,
    /// The connection (stream transports) or the listening socket (UDP) to answer on.
    pub flow: FlowId,
    /// The client's certificate chain (end entity first), verified against the
    /// configured roots, when one was requested and presented.
    pub peer_certificates: Option<Arc<Vec<rustls_pki_types::CertificateDer<'static>>>>,
}

/// A received, parsed message.
#[derive(Debug)]
pub struct Inbound {
    pub message: sip::Message,
    pub source: Source,
    /// When the transport put the message in the core's queue: the time
    /// until the core takes it is the queueing delay that overload control
    /// watches.
    pub received: std::time::Instant,
    /// The connection's share of the core's queue this message holds until
    /// the core takes it apart (dropping it returns the share).
    pub share: Share,
}

/// One of the places in the core's queue a stream connection may hold
/// ([`TransportConfig::max_inbound_per_connection`]); none for UDP.
#[derive(Debug, Default)]
pub struct Share {
    _place: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// A connection's places in the core's queue: one connection writing as
/// fast as it can fills its share, then waits (TCP pushes back on it),
/// while everyone else's messages still find room — and a short wait — in
/// the queue. Without it, one flooding connection filled the whole queue,
/// and overload control then shed everyone's new requests with it.
#[derive(Debug, Clone)]
pub(crate) struct Shares(Arc<tokio::sync::Semaphore>);

impl Shares {
    pub(crate) fn new(places: usize) -> Self {
        Shares(Arc::new(tokio::sync::Semaphore::new(places.max(1))))
    }

    /// Waits for a free place (the connection is not read meanwhile).
    pub(crate) async fn take(&self) -> Share {
        // The semaphore is never closed: acquiring fails only then.
        Share {
            _place: self.0.clone().acquire_owned().await.ok(),
        }
    }
}
