//! # parapet-presence: presence documents
//!
//! [`pidf`] parses and writes PIDF (RFC 3863) documents with the data model's
//! person element (RFC 4479) and the RPID activities, mood and place type
//! (RFC 4480) — what SIP clients publish. Parsing is strict and bounded: a
//! size limit, a depth and element budget, no DTD (so no entity expansion),
//! UTF-8 only, PIDF elements checked against the RFC's grammar; elements of
//! other namespaces are skipped, as PIDF's extensibility requires.
//! [`availability`] maps documents to and from the Lync availability states
//! and aggregates a user's devices into one view; [`privacy`] cuts the view
//! each watcher gets by relationship level (blocked, external, colleague,
//! workgroup, personal) and gives watchers who may see nothing the same
//! offline document as for an offline or unknown user; [`access`] combines
//! the privacy policy with the presentity's contact list; [`watcherinfo`]
//! writes RFC 3857 watcher lists; [`rlmi`] the RFC 4662 list notifications.
#![forbid(unsafe_code)]

pub mod access;
pub mod availability;
pub mod pidf;
pub mod privacy;
pub mod rlmi;
pub mod watcherinfo;

pub use availability::{aggregate, Availability};
pub use pidf::{Basic, Person, PidfError, Presence, Tuple};
pub use privacy::{offline, view, Relationship};
