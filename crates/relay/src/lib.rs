//! The media relay (TURN, RFC 8656), built up from its decisions: so far
//! [`peer`], which addresses the relay may ever send to, and
//! [`credentials`], the short-lived credentials web clients get. The wire
//! format is the `stun` crate's.

#![forbid(unsafe_code)]

pub mod credentials;
pub mod peer;
