//! # parapet-rbac: who may administer what
//!
//! Administrators are separate from SIP users. Each signs in with a password
//! ([`password`], Argon2id) and a time-based one-time code ([`totp`], RFC
//! 6238), and acts through a bearer token ([`token`]: a sign-in session or an
//! API token for automation, stored only as a hash). Every token carries a
//! [`Role`]: a set of [operations](ops) and, for custom roles, a site and a
//! user group that bound which users it may touch. [`Role::permits`] is the
//! one check every admin API path goes through.
//!
//! Nothing here does I/O; the store keeps the rows and the server enforces.
#![forbid(unsafe_code)]

pub mod ops;
pub mod password;
mod role;
pub mod token;
pub mod totp;

pub use ops::{Op, OPS};
pub use role::{check_name, predefined, Role, RoleError, Target};
