//! # parapet-federation: who a partner's server is
//!
//! Federation joins Parapet to partner organisations' SIP servers over
//! mutual TLS. This crate holds what decides *who* is at the other end of
//! such a connection, in both directions, and nothing that needs a database
//! (the Edge links it):
//!
//! - [`identity`]: the domains a certificate speaks for, by RFC 5922 §7.1 — a
//!   subjectAltName URI `sip:domain` (no user part), and only where there is
//!   none, DNS subjectAltNames; the common name only when the certificate has
//!   no subjectAltName at all; exact, case-insensitive matches, never a
//!   wildcard.
//! - [`verifier`]: the rustls verifiers for partner connections, which check
//!   the chain to the CAs trusted for partners and accept a certificate whose
//!   extended key usage names serverAuth without clientAuth on an inbound
//!   connection (public CAs stopped issuing clientAuth in 2026), and check an
//!   outbound peer's identity by [`identity`] rather than by host name.
//! - [`locate`]: where a partner's servers are (RFC 3263 over TLS, Lync's
//!   `_sipfederationtls._tcp`, static routes), refusing internal addresses
//!   a partner's DNS might point at.
#![forbid(unsafe_code)]

pub mod connect;
pub mod identity;
pub mod locate;
pub mod verifier;
