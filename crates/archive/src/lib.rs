//! The IM archive's cryptography and formats.
//!
//! Each archived message is sealed (AES-256-GCM) with the key of the UTC
//! day it was archived on and its owner's retention, bound to its metadata (owner, time, sender,
//! recipient) so a sealed body cannot be moved to another record. The keys
//! live in files outside the database (`keys/archive/` in the data
//! directory unless configured elsewhere), one per day and retention: when retention has
//! deleted the last record of a day, its key file is overwritten and
//! removed, and whatever copies of the database exist — its WAL, backups,
//! a replica — hold only ciphertext nobody can open again. Records a legal
//! hold keeps past their day are sealed again under a hold key first, so
//! the day's key can still go.
//!
//! Everything here does blocking file I/O: call it off the async runtime's
//! threads (`spawn_blocking`).

#![forbid(unsafe_code)]

pub mod content;
mod format;
mod keys;

pub use format::{json_line, mbox_entry, Opened};
pub use keys::{day_id, day_of, hold_id, is_hold, key_day, Key, Keyring, HOLD_PREFIX};

use ring::aead::{Aad, LessSafeKey, Nonce, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

/// The most a sealed body may be: what an IM may carry (`im.max_bytes`
/// is at most 1 MiB) with room for the content type.
pub const MAX_PLAINTEXT: usize = 2 << 20;

/// What a record's seal is bound to.
pub fn aad(owner: &str, at_ms: i64, sender: &str, recipient: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(owner.len() + sender.len() + recipient.len() + 24);
    for part in [
        owner.as_bytes(),
        at_ms.to_string().as_bytes(),
        sender.as_bytes(),
        recipient.as_bytes(),
    ] {
        v.extend_from_slice(&(part.len() as u32).to_be_bytes());
        v.extend_from_slice(part);
    }
    v
}

/// Seals `content_type` and `body` under `key`: a random nonce followed by
/// the ciphertext and its tag.
pub fn seal(key: &Key, aad: &[u8], content_type: &str, body: &[u8]) -> Result<Vec<u8>, String> {
    let mut plain = Vec::with_capacity(content_type.len() + 1 + body.len());
    plain.extend_from_slice(content_type.as_bytes());
    plain.push(b'\n');
    plain.extend_from_slice(body);
    if plain.len() > MAX_PLAINTEXT {
        return Err(format!(
            "a message of {} bytes is beyond what the archive keeps",
            plain.len()
        ));
    }
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| "the system random generator failed".to_string())?;
    key.aead()
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut plain,
        )
        .map_err(|_| "sealing failed".to_string())?;
    let mut out = Vec::with_capacity(NONCE_LEN + plain.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&plain);
    Ok(out)
}

/// Opens what [`seal`] made: (content type, body), or `None` when the key,
/// the metadata or the bytes are not the ones it was sealed with.
pub fn open(key: &Key, aad: &[u8], sealed: &[u8]) -> Option<(String, Vec<u8>)> {
    if sealed.len() < NONCE_LEN + AES_256_GCM.tag_len() {
        return None;
    }
    let (n, rest) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(n).ok()?;
    let mut buf = rest.to_vec();
    let plain = key
        .aead()
        .open_in_place(nonce, Aad::from(aad), &mut buf)
        .ok()?;
    let nl = plain.iter().position(|&b| b == b'\n')?;
    let content_type = String::from_utf8(plain[..nl].to_vec()).ok()?;
    Some((content_type, plain[nl + 1..].to_vec()))
}

fn new_aead(bytes: &[u8]) -> Option<LessSafeKey> {
    let unbound = ring::aead::UnboundKey::new(&AES_256_GCM, bytes).ok()?;
    Some(LessSafeKey::new(unbound))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        Key::from_bytes("d20261206", &[7u8; 32]).unwrap()
    }

    #[test]
    fn a_sealed_body_opens_with_its_key_and_metadata_only() {
        let k = key();
        let a = aad(
            "sip:alice@example.test",
            1_000,
            "sip:alice@example.test",
            "sip:bob@example.test",
        );
        let s = seal(&k, &a, "text/plain", b"hello bob").unwrap();
        assert!(!s.windows(9).any(|w| w == b"hello bob"), "not in clear");
        assert_eq!(
            open(&k, &a, &s),
            Some(("text/plain".into(), b"hello bob".to_vec()))
        );
        // Moved to another record: refused.
        let other = aad(
            "sip:alice@example.test",
            1_001,
            "sip:alice@example.test",
            "sip:bob@example.test",
        );
        assert_eq!(open(&k, &other, &s), None);
        // Another key: refused.
        let k2 = Key::from_bytes("d20261207", &[8u8; 32]).unwrap();
        assert_eq!(open(&k2, &a, &s), None);
        // Damaged or cut short: refused, no panic.
        let mut bad = s.clone();
        bad[20] ^= 1;
        assert_eq!(open(&k, &a, &bad), None);
        assert_eq!(open(&k, &a, &s[..10]), None);
        assert_eq!(open(&k, &a, &[]), None);
    }

    #[test]
    fn two_seals_of_one_body_differ() {
        let k = key();
        let a = aad("o", 1, "s", "r");
        assert_ne!(
            seal(&k, &a, "t", b"x").unwrap(),
            seal(&k, &a, "t", b"x").unwrap()
        );
    }

    #[test]
    fn metadata_fields_cannot_be_shifted_into_each_other() {
        assert_ne!(aad("ab", 1, "c", "d"), aad("a", 1, "bc", "d"));
    }

    #[test]
    fn a_body_beyond_the_limit_is_refused() {
        let k = key();
        assert!(seal(&k, b"", "t", &vec![0u8; MAX_PLAINTEXT]).is_err());
    }
}
