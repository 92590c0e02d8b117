//! # parapet-auth: who is asking, and whether to let them try
//!
//! - [`digest`]: HTTP digest for SIP (RFC 3261 §22, RFC 8760): SHA-256 and MD5,
//!   `qop=auth`, challenges and verification. Verifying returns an
//!   [`digest::Authenticated`] value, which nothing else can construct: code that
//!   needs an authenticated identity takes one.
//! - [`nonce`]: stateless nonces (a timestamp and random bytes under an HMAC), so
//!   issuing a challenge stores nothing; nonce-count replay protection keeps a
//!   bounded table of the nonces actually used.
//! - [`secret`]: what is stored for a user. Digest needs HA1 = H(user:realm:password),
//!   which is password-equivalent for digest, so it is sealed with
//!   ChaCha20-Poly1305 under a key kept outside the database: the database alone
//!   reveals nothing usable.
//! - [`lockout`]: the security filter. Failures are counted per (account,
//!   source) and per account; a source that fails too often for an account is
//!   refused for that account without the password being checked, with growing
//!   back-off, while a separate, much higher account-wide threshold keeps an
//!   attacker from locking a real user out from elsewhere.
#![forbid(unsafe_code)]

pub mod digest;
pub mod edge_snapshot;
pub mod flow_token;
pub mod lockout;
pub mod nonce;
pub mod ratelimit;
pub mod secret;

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// Equality that takes the same time wherever the inputs differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
