//! # parapet-policy: what administrators decide, as data
//!
//! A *policy kind* (privacy, external access, IM filter, file transfer, client
//! version, authentication, archiving, conferencing, federation) is a table of
//! typed fields, each with documentation, a secure default and validation
//! rules ([`spec`], one module per kind under [`kinds`]). A *policy document*
//! sets some fields of one kind at one [`Scope`]: Global, a Site, or a named
//! policy granted to users or user groups.
//!
//! The effective value of each field for a user is taken from the narrowest
//! scope that sets it — the user's own grant, then their groups' grants, then
//! their site, then Global, then the built-in default — and
//! [`Snapshot::effective`] says, field by field, where each value came from.
//!
//! A [`Snapshot`] is immutable: decisions are pure functions over request facts
//! and a snapshot, and a change builds a new snapshot that the server swaps in
//! whole. Nothing here does I/O.
#![forbid(unsafe_code)]

mod json;
pub mod kinds;
mod resolve;
mod scope;
pub mod spec;
mod value;

pub use json::{fields_from_json, fields_to_json};
pub use resolve::{Effective, FieldOrigin, Snapshot, SnapshotError};
pub use scope::{Directory, Grant, GrantTarget, Group, PolicyDoc, Scope};
pub use spec::{FieldSpec, KindSpec};
pub use value::{valid_domain, FieldType, Value, ValueError, MAX_INPUT};
