//! # parapet-pki: device certificates
//!
//! Each device a user enrolls gets its own certificate after a strong
//! sign-in (password, and TOTP where policy asks for it). This crate holds
//! what that needs, with no I/O of its own:
//!
//! - [`csr`]: a device's certificate request (PKCS#10), read strictly and
//!   bounded: its signature verified, its key one of the types TLS clients
//!   use (ECDSA P-256/P-384, RSA 2048-4096, Ed25519), and every name it
//!   asks for the enrolling user's own.
//! - [`ca`]: the device CA (its own key, not the server's), issuing a
//!   device certificate: the user as a `sip:` URI, the device as
//!   `urn:parapet:device:ID`, the name the user gave, clientAuth only.
//! - [`registry`]: the certificates valid now, by SHA-256: what the
//!   listeners' handshake and the SIP core consult, so a revocation is in
//!   force the moment the registry is told.
//! - [`verifier`]: the TLS listeners' client-certificate check: device
//!   certificates against the device CA and the registry, anything else
//!   handed to the partners' verifier.
#![forbid(unsafe_code)]

pub mod bundle;
pub mod byo;
pub mod ca;
pub mod csr;
pub mod registry;
pub mod verifier;

/// SHA-256 of a certificate (DER).
pub fn fingerprint(der: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, der);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
