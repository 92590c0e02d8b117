//! # parapet-content: what is inside instant messages
//!
//! Pure functions over message bodies, no I/O: [`im_filter`], Lync's
//! Intelligent IM Filter done on the server (links found after Unicode
//! normalisation, then defused, flagged or refused as the policy says),
//! and [`cpim`], the strict reader and writer of the `message/cpim`
//! wrapper (RFC 3862) whose inner body the filter examines.
#![forbid(unsafe_code)]

pub mod cpim;
pub mod im_filter;
