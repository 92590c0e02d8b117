//! # parapet-sip-txn: RFC 3261 §17 transactions, sans-IO
//!
//! Client and server transactions, INVITE and non-INVITE, with timers A–K and the
//! RFC 6026 Accepted state (timers L and M). Nothing here does I/O or reads a
//! clock: the caller feeds messages and the current [`Instant`](std::time::Instant),
//! and gets back [`Action`]s (send these bytes to this destination, this client
//! transaction timed out, this transaction ended). Tests drive it with a fake
//! clock by passing instants they compute.
//!
//! All timers of all transactions live in one [`wheel::Wheel`]; there is no task
//! or timer object per transaction. Transactions in progress are bounded
//! ([`Config::max_transactions`]): when that many are, a new request is
//! refused with [`Full`], which the caller answers statelessly with 503 and
//! Retry-After ([`service_unavailable`]). A non-INVITE server transaction
//! that has sent its final response leaves the table: what it still needs
//! for timer J (its key, where to send, the response) is kept apart, bounded
//! in bytes ([`Config::max_completed_bytes`], oldest dropped first), and
//! never counts toward refusing new work.
#![forbid(unsafe_code)]

mod client;
mod completed;

pub use client::SendError;
mod key;
mod layer;
mod server;
pub mod wheel;

pub use key::{MethodKey, TxnKey};
pub use layer::{
    service_unavailable, Action, ClientEvent, Config, Full, ServerEvent, TxnId, TxnLayer,
};

/// Whether the transport retransmits for us (TCP, TLS, WS) or not (UDP). Reliable
/// transports disable retransmission timers and zero the linger timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reliability {
    Reliable,
    Unreliable,
}
