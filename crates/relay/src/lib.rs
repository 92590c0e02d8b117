//! The media relay (TURN, RFC 8656), built up from its decisions: so far
//! [`peer`], which addresses the relay may ever send to. The wire format
//! is the `stun` crate's.

#![forbid(unsafe_code)]

pub mod peer;
