//! # parapet-edge: the Edge role
//!
//! `parapet edge` runs in the DMZ between two firewalls: the only Parapet
//! process the Internet reaches. It keeps no database and no user secret.
//! Remote users' requests are relayed to the front end pool, which
//! authenticates them; the edge counts the outcomes and refuses password
//! guessing before it reaches the pool (the security filter). Nothing about
//! the inside leaves on the outside ([`topology`]): what the edge must
//! remember is sealed into the messages under a key the pool's edges share
//! ([`token`]), so an edge keeps no state per dialog and a restart loses none.
#![forbid(unsafe_code)]

pub mod observe;
pub mod pairing;
pub mod relay;
pub mod token;
pub mod topology;
pub mod traces;
