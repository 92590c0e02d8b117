//! The configuration snapshot a front end gives its edges: what the pool
//! decides that an edge enforces (the security filter's thresholds, the
//! federation policy's server-wide rules, the per-source limits),
//! versioned, with a lifetime, and signed with the pool's Ed25519 key so an
//! edge can tell it from a forgery whatever path it took.
//!
//! An edge applies a snapshot only if the signature verifies under the key
//! in its pairing file, it is for the edge's domain, it has not expired, and
//! it is not older than the one it holds (no rollback).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::signature::{self, Ed25519KeyPair, KeyPair as _};
use serde::{Deserialize, Serialize};

use crate::lockout::LockoutConfig;

/// The media type of a signed snapshot in a SIP body.
pub const CONTENT_TYPE: &str = "application/x-parapet-edge-snapshot+json";

/// How long a snapshot may be used without a newer one.
pub const LIFETIME_SECS: u64 = 3600;

/// What the pool tells its edges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// The pool's policy change counter when it was made.
    pub version: u64,
    pub issued_at: u64,
    pub expires_at: u64,
    pub domain: String,
    /// The security filter's thresholds (global authentication policy over
    /// the front end's configuration).
    pub lockout: Lockout,
    /// The federation policy's server-wide rules.
    pub federation: Federation,
    /// What every edge of the pool holds each outside source to.
    pub limits: Limits,
    /// Device certificates revoked in the last [`REVOKED_WINDOW_SECS`]
    /// (SHA-256, hex; at most [`MAX_REVOKED`]): the edge closes the
    /// connections that presented one. (A device's later requests are
    /// refused by the pool in any case.)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revoked_devices: Vec<String>,
    /// Users (`u AOR`: disabled, removed, a new password, signed out
    /// everywhere) and web sessions (`s ID`: signed out) whose access to
    /// the media relay ended in the last [`REVOKED_WINDOW_SECS`], with
    /// when (Unix time, milliseconds; at most [`MAX_REVOKED`], the newest):
    /// the edge's relay ends their allocations made before then.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relay_revoked: Vec<(String, u64)>,
}

impl Snapshot {
    /// The revoked device certificates' SHA-256s (malformed entries
    /// skipped).
    pub fn revoked(&self) -> impl Iterator<Item = [u8; 32]> + '_ {
        self.revoked_devices.iter().filter_map(|hex| {
            if hex.len() != 64 {
                return None;
            }
            let mut out = [0u8; 32];
            for (i, o) in out.iter_mut().enumerate() {
                *o = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
            }
            Some(out)
        })
    }
}

/// How long a revocation stays in the snapshots (edges ask twice a second).
pub const REVOKED_WINDOW_SECS: u64 = 30;
/// The most revocations one snapshot carries.
pub const MAX_REVOKED: usize = 256;

/// What an edge holds each outside source to (`[edges]` in the front end's
/// configuration; the edge's own `[limits]` until a snapshot arrives).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Requests per second, and burst, from one client address (a
    /// partner's server is held to the federation policy instead).
    pub source_rate: u32,
    pub source_burst: u32,
    /// Requests from one connection relayed to the pool and not answered
    /// yet.
    pub in_flight_per_connection: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            source_rate: 100,
            source_burst: 200,
            in_flight_per_connection: 128,
        }
    }
}

impl Limits {
    /// Refuses values an edge could not apply; the message names `section`'s
    /// keys.
    pub fn check(&self, section: &str) -> Result<(), String> {
        if self.source_rate == 0 || self.source_burst == 0 {
            return Err(format!(
                "{section}.source_rate and {section}.source_burst must be at least 1"
            ));
        }
        if !(1..=65_536).contains(&self.in_flight_per_connection) {
            return Err(format!(
                "{section}.in_flight_per_connection must be between 1 and 65536"
            ));
        }
        Ok(())
    }
}

/// The security filter's thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lockout {
    pub source_threshold: u32,
    pub account_threshold: u32,
    pub window: u64,
    pub base_backoff: u64,
    pub max_backoff: u64,
    pub familiar_for: u64,
}

impl Lockout {
    pub fn from_config(c: &LockoutConfig) -> Lockout {
        Lockout {
            source_threshold: c.source_threshold,
            account_threshold: c.account_threshold,
            window: c.window,
            base_backoff: c.base_backoff,
            max_backoff: c.max_backoff,
            familiar_for: c.familiar_for,
        }
    }

    /// The filter's settings (its table bound is the edge's own).
    pub fn config(&self) -> LockoutConfig {
        LockoutConfig {
            source_threshold: self.source_threshold.max(1),
            account_threshold: self.account_threshold.max(self.source_threshold.max(1)),
            window: self.window,
            base_backoff: self.base_backoff,
            max_backoff: self.max_backoff,
            familiar_for: self.familiar_for,
            ..LockoutConfig::default()
        }
    }
}

/// Whom the pool federates with (the federation policy's server-wide
/// fields; per-user and per-modality rules stay with the front end).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Federation {
    pub enabled: bool,
    pub allowed: Vec<String>,
    pub blocked: Vec<String>,
    pub discovery: bool,
    /// Partners' servers pinned by the policy (`domain:host[:port]`).
    pub servers: Vec<String>,
    /// Requests per second a discovered partner may send.
    pub discovered_rate: u32,
}

/// The largest signed snapshot: it travels in one SIP response.
pub const MAX_BODY: usize = 48 * 1024;

/// Why a snapshot was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Malformed,
    BadSignature,
    WrongDomain,
    Expired,
    /// Older than the one held.
    Rollback,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::Malformed => "not a snapshot",
            Refusal::BadSignature => "the signature does not verify under the pool's key",
            Refusal::WrongDomain => "for another domain",
            Refusal::Expired => "expired",
            Refusal::Rollback => "older than the snapshot held",
        })
    }
}

/// Signs `s`: the body to send, `SIGNATURE.PAYLOAD` with both in base64.
pub fn sign(key: &Ed25519KeyPair, s: &Snapshot) -> String {
    // What is signed is exactly these bytes; the edge verifies them before
    // reading them, so no canonical form is needed.
    let payload = serde_json::to_string(s).unwrap_or_default();
    let sig = key.sign(payload.as_bytes());
    format!(
        "{}.{}",
        STANDARD.encode(sig.as_ref()),
        STANDARD.encode(payload.as_bytes())
    )
}

/// The public half of a signing key, base64 (for the pairing file).
pub fn public_key(key: &Ed25519KeyPair) -> String {
    STANDARD.encode(key.public_key().as_ref())
}

/// Checks a signed snapshot against the pool's public key, the domain,
/// the time and the version held.
pub fn verify(
    public_key: &[u8],
    body: &str,
    domain: &str,
    now: u64,
    held: Option<&Snapshot>,
) -> Result<Snapshot, Refusal> {
    if body.len() > MAX_BODY {
        return Err(Refusal::Malformed);
    }
    let (sig, payload) = body.trim().split_once('.').ok_or(Refusal::Malformed)?;
    let sig = STANDARD.decode(sig).map_err(|_| Refusal::Malformed)?;
    let payload = STANDARD.decode(payload).map_err(|_| Refusal::Malformed)?;
    signature::UnparsedPublicKey::new(&signature::ED25519, public_key)
        .verify(&payload, &sig)
        .map_err(|_| Refusal::BadSignature)?;
    let s: Snapshot = serde_json::from_slice(&payload).map_err(|_| Refusal::Malformed)?;
    if !s.domain.eq_ignore_ascii_case(domain) {
        return Err(Refusal::WrongDomain);
    }
    if now >= s.expires_at {
        return Err(Refusal::Expired);
    }
    if let Some(h) = held {
        if (s.version, s.issued_at) < (h.version, h.issued_at) {
            return Err(Refusal::Rollback);
        }
    }
    Ok(s)
}

/// A new Ed25519 signing key, PKCS#8.
pub fn generate_key() -> Option<Vec<u8>> {
    let rng = ring::rand::SystemRandom::new();
    Ed25519KeyPair::generate_pkcs8(&rng)
        .ok()
        .map(|k| k.as_ref().to_vec())
}

/// A signing key from its PKCS#8 bytes.
pub fn load_key(pkcs8: &[u8]) -> Option<Ed25519KeyPair> {
    Ed25519KeyPair::from_pkcs8(pkcs8).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(version: u64, issued_at: u64) -> Snapshot {
        Snapshot {
            version,
            issued_at,
            expires_at: issued_at + LIFETIME_SECS,
            domain: "example.test".into(),
            lockout: Lockout::from_config(&LockoutConfig {
                source_threshold: 3,
                ..LockoutConfig::default()
            }),
            federation: Federation {
                enabled: true,
                allowed: vec!["partner.example".into()],
                blocked: vec![],
                discovery: false,
                servers: vec![],
                discovered_rate: 20,
            },
            limits: Limits {
                source_rate: 7,
                ..Limits::default()
            },
            revoked_devices: vec!["ab".repeat(32)],
            relay_revoked: vec![("u sip:alice@example.test".into(), 1_700_000_000_000)],
        }
    }

    fn key() -> Ed25519KeyPair {
        load_key(&generate_key().unwrap()).unwrap()
    }

    #[test]
    fn a_signed_snapshot_verifies_and_reads_back() {
        let k = key();
        let pk = k.public_key().as_ref().to_vec();
        let body = sign(&k, &snap(7, 1000));
        assert_eq!(
            verify(&pk, &body, "example.test", 1001, None),
            Ok(snap(7, 1000))
        );
        let mut s = snap(7, 1000);
        s.revoked_devices.push("not hex".into());
        assert_eq!(s.revoked().collect::<Vec<_>>(), [[0xab; 32]]);
    }

    #[test]
    fn tampered_forged_expired_foreign_and_older_snapshots_are_refused() {
        let k = key();
        let pk = k.public_key().as_ref().to_vec();
        let body = sign(&k, &snap(7, 1000));
        // One changed character of the payload (threshold 3 -> 9).
        let (sig, payload) = body.split_once('.').unwrap();
        let text = String::from_utf8(STANDARD.decode(payload).unwrap()).unwrap();
        let changed = text.replace("\"source_threshold\":3", "\"source_threshold\":9");
        assert_ne!(changed, text);
        let tampered = format!("{sig}.{}", STANDARD.encode(changed));
        assert_eq!(
            verify(&pk, &tampered, "example.test", 1001, None),
            Err(Refusal::BadSignature)
        );
        let other = key();
        assert_eq!(
            verify(
                &pk,
                &sign(&other, &snap(7, 1000)),
                "example.test",
                1001,
                None
            ),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            verify(&pk, &body, "example.test", 1000 + LIFETIME_SECS, None),
            Err(Refusal::Expired)
        );
        assert_eq!(
            verify(&pk, &body, "other.test", 1001, None),
            Err(Refusal::WrongDomain)
        );
        assert_eq!(
            verify(&pk, &body, "example.test", 1001, Some(&snap(8, 900))),
            Err(Refusal::Rollback)
        );
        assert_eq!(
            verify(&pk, &body, "example.test", 1001, Some(&snap(7, 1000))),
            Ok(snap(7, 1000)),
            "the same snapshot again is fine"
        );
        for junk in ["", ".", "x.y", &"a".repeat(MAX_BODY + 1)] {
            assert!(verify(&pk, junk, "example.test", 1001, None).is_err());
        }
    }
}
