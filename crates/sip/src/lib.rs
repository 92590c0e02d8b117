//! # parapet-sip: SIP messages without I/O
//!
//! A zero-copy SIP parser and serializer. A [`Message`] keeps the received bytes in
//! one [`bytes::Bytes`] and records where the start line and each header line sit;
//! typed headers ([`headers`]) are parsed on demand and borrow from that buffer.
//!
//! Strict where RFC 3261 is strict: ASCII tokens, CRLF line ends, singleton headers
//! not repeated, Content-Length that matches the body on stream transports, scalar
//! ranges, and explicit [`Limits`] on everything an attacker can inflate. Every
//! failure is a [`ParseError`] that maps to one status code and a reason phrase
//! naming the fault.
//!
//! Layers:
//! - [`parse_datagram`] / [`parse_stream_frame`]: structure and the header index;
//!   [`framing`] finds message boundaries in a stream.
//! - [`headers`]: one typed header family per module.
//! - [`RequestFields`]: the fields a proxy needs, validated in one pass.
//! - [`admission`]: the RFC 3261 §8.2 checks a UAS makes (416, 420, 415, ...).
//! - [`build`]: responses and requests; [`forward`]: proxy edits with one copy.
#![forbid(unsafe_code)]

pub mod admission;
pub mod build;
pub mod correlation;
mod error;
mod fields;
pub mod forward;
pub mod framing;
pub mod headers;
mod limits;
mod message;
mod method;
mod name;
mod params;
mod parse;
mod scan;
pub mod uri;

pub use error::ParseError;
pub use fields::{RequestFields, ResponseFields};
pub use limits::Limits;
pub use message::{Header, Message};
pub use method::Method;
pub use name::HeaderKind;
pub use params::{unquote, Param, ParamIter, Params};
pub use parse::{parse_datagram, parse_stream_frame, Transport};
pub use scan::{Invalid, Scan};
pub use uri::{Host, Uri};
