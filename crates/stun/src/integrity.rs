//! MESSAGE-INTEGRITY (HMAC-SHA1, RFC 8489 §14.5),
//! MESSAGE-INTEGRITY-SHA256 (§14.6) and FINGERPRINT (§14.7), checked
//! over the message as received, and the long-term key (§9.2.2).
//!
//! Each HMAC covers the message up to its own attribute, with the
//! header's length counting up to the end of that attribute; FINGERPRINT
//! is the CRC-32 of everything before it, XORed with `0x5354554e`.

use md5::{Digest as _, Md5};
use ring::digest::{digest, SHA256};
use ring::hmac;

use crate::attr::{self, PasswordAlgorithm};
use crate::{Message, HEADER};

/// FINGERPRINT's XOR constant ("STUN").
pub(crate) const FINGERPRINT_XOR: u32 = 0x5354_554e;

/// Which HMAC protects a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Integrity {
    Sha1,
    Sha256,
}

/// Why a message's integrity does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntegrityError {
    /// Neither MESSAGE-INTEGRITY nor MESSAGE-INTEGRITY-SHA256.
    Missing,
    /// The HMAC does not match: a wrong key, or a changed message.
    Mismatch,
}

/// The long-term key of `username` in `realm` (RFC 8489 §9.2.2): MD5 or
/// SHA-256 of `username:realm:password`. For a SIP user this is the
/// digest secret (HA1) the server already holds, so nothing new is
/// stored. (OpaqueString preparation of the password is the caller's.)
pub fn long_term_key(
    alg: PasswordAlgorithm,
    username: &str,
    realm: &str,
    password: &str,
) -> Vec<u8> {
    let input = format!("{username}:{realm}:{password}");
    match alg {
        PasswordAlgorithm::Md5 => Md5::digest(input.as_bytes()).to_vec(),
        PasswordAlgorithm::Sha256 => digest(&SHA256, input.as_bytes()).as_ref().to_vec(),
    }
}

/// Equality that takes the same time wherever the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The HMAC of `raw` up to `offset` (where an integrity attribute of
/// `len` value bytes starts), the header's length counting through it.
pub(crate) fn hmac_over(
    alg: Integrity,
    key: &[u8],
    raw: &[u8],
    offset: usize,
    len: usize,
) -> hmac::Tag {
    let key = hmac::Key::new(
        match alg {
            Integrity::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Integrity::Sha256 => hmac::HMAC_SHA256,
        },
        key,
    );
    let length = u16::try_from(offset + 4 + len - HEADER).unwrap_or(u16::MAX);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(&raw[..2]);
    ctx.update(&length.to_be_bytes());
    ctx.update(&raw[4..offset]);
    ctx.sign()
}

/// The FINGERPRINT value for `raw` up to `offset`, the header's length
/// counting through the 8-byte attribute.
pub(crate) fn fingerprint_over(raw: &[u8], offset: usize) -> u32 {
    let length = u16::try_from(offset + 8 - HEADER).unwrap_or(u16::MAX);
    let mut h = crc32fast::Hasher::new();
    h.update(&raw[..2]);
    h.update(&length.to_be_bytes());
    h.update(&raw[4..offset]);
    h.finalize() ^ FINGERPRINT_XOR
}

impl Message<'_> {
    /// Checks the message's integrity with `key`: by
    /// MESSAGE-INTEGRITY-SHA256 when present (the stronger), else by
    /// MESSAGE-INTEGRITY.
    pub fn verify(&self, key: &[u8]) -> Result<Integrity, IntegrityError> {
        let find = |kind| self.attributes().iter().find(|a| a.kind == kind);
        let (alg, a) = match (
            find(attr::MESSAGE_INTEGRITY_SHA256),
            find(attr::MESSAGE_INTEGRITY),
        ) {
            (Some(a), _) => (Integrity::Sha256, a),
            (None, Some(a)) => (Integrity::Sha1, a),
            (None, None) => return Err(IntegrityError::Missing),
        };
        let tag = hmac_over(alg, key, self.raw(), a.offset, a.value.len());
        // A truncated SHA-256 HMAC (16-28 bytes) is compared on its length.
        let expected = tag.as_ref().get(..a.value.len()).unwrap_or(tag.as_ref());
        if constant_time_eq(expected, a.value) {
            Ok(alg)
        } else {
            Err(IntegrityError::Mismatch)
        }
    }

    /// Whether FINGERPRINT matches: `None` without one.
    pub fn fingerprint_ok(&self) -> Option<bool> {
        let a = self
            .attributes()
            .iter()
            .find(|a| a.kind == attr::FINGERPRINT)?;
        let given = attr::u32_value(attr::FINGERPRINT, a.value).ok()?;
        Some(fingerprint_over(self.raw(), a.offset) == given)
    }
}
