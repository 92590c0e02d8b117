//! # parapet-registrar: REGISTER processing and the location service
//!
//! [`Location`] holds every live binding in memory (the hot path: a proxy lookup
//! never waits on disk). [`Location::register`] applies RFC 3261 §10.3 to one
//! authenticated REGISTER and returns what to answer and which [`Change`]s to
//! write through to the store *before* answering, so an acknowledged
//! registration survives a crash. [`Location::load`] rebuilds the table from the
//! store at start.
//!
//! Supported: bindings with expiry and q; RFC 5626 outbound (`+sip.instance` and
//! `reg-id` identify a binding and its flow); RFC 3327 Path; min/max expires
//! (423 Interval Too Brief with Min-Expires); a per-user endpoint cap;
//! un-REGISTER (expires 0) and the `*` wildcard; query REGISTERs (no Contact).
#![forbid(unsafe_code)]

mod location;
mod register;

pub use location::{Location, RegistrarConfig};
pub use register::{Change, Flow, RegisterError, Registered};
