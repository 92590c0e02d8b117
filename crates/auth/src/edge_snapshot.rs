//! The configuration snapshot a front end gives its edges: what the pool
//! decides that an edge enforces (today the security filter's thresholds),
//! versioned, with a lifetime, and signed with the pool's Ed25519 key so an
//! edge can tell it from a forgery whatever path it took.
//!
//! An edge applies a snapshot only if the signature verifies under the key
//! in its pairing file, it is for the edge's domain, it has not expired, and
//! it is not older than the one it holds (no rollback).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::signature::{self, Ed25519KeyPair, KeyPair as _};

use crate::lockout::LockoutConfig;

/// The media type of a signed snapshot in a SIP body.
pub const CONTENT_TYPE: &str = "application/x-parapet-edge-snapshot+json";

/// How long a snapshot may be used without a newer one.
pub const LIFETIME_SECS: u64 = 3600;

/// What the pool tells its edges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The pool's policy change counter when it was made.
    pub version: u64,
    pub issued_at: u64,
    pub expires_at: u64,
    pub domain: String,
    /// The security filter's thresholds (global authentication policy over
    /// the front end's configuration).
    pub lockout: LockoutConfig,
}

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

fn json_of(s: &Snapshot) -> String {
    let l = &s.lockout;
    // A fixed field order: what is signed is exactly these bytes.
    format!(
        "{{\"version\":{},\"issued_at\":{},\"expires_at\":{},\"domain\":{},\"lockout\":{{\"source_threshold\":{},\"account_threshold\":{},\"window\":{},\"base_backoff\":{},\"max_backoff\":{},\"familiar_for\":{}}}}}",
        s.version,
        s.issued_at,
        s.expires_at,
        quote(&s.domain),
        l.source_threshold,
        l.account_threshold,
        l.window,
        l.base_backoff,
        l.max_backoff,
        l.familiar_for
    )
}

fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push('?'),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Signs `s`: the body to send, `SIGNATURE.PAYLOAD` with both in base64.
pub fn sign(key: &Ed25519KeyPair, s: &Snapshot) -> String {
    let payload = json_of(s);
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
    if body.len() > 16 * 1024 {
        return Err(Refusal::Malformed);
    }
    let (sig, payload) = body.trim().split_once('.').ok_or(Refusal::Malformed)?;
    let sig = STANDARD.decode(sig).map_err(|_| Refusal::Malformed)?;
    let payload = STANDARD.decode(payload).map_err(|_| Refusal::Malformed)?;
    signature::UnparsedPublicKey::new(&signature::ED25519, public_key)
        .verify(&payload, &sig)
        .map_err(|_| Refusal::BadSignature)?;
    let s = parse(std::str::from_utf8(&payload).map_err(|_| Refusal::Malformed)?)
        .ok_or(Refusal::Malformed)?;
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

/// Reads what [`json_of`] wrote (and only that shape).
fn parse(text: &str) -> Option<Snapshot> {
    let num = |key: &str| -> Option<u64> {
        let at = text.find(&format!("\"{key}\":"))? + key.len() + 3;
        let digits: String = text[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    let domain = {
        let at = text.find("\"domain\":\"")? + 10;
        let end = text[at..].find('"')?;
        text[at..at + end].to_owned()
    };
    let d = LockoutConfig::default();
    let s = Snapshot {
        version: num("version")?,
        issued_at: num("issued_at")?,
        expires_at: num("expires_at")?,
        domain,
        lockout: LockoutConfig {
            source_threshold: u32::try_from(num("source_threshold")?).ok()?,
            account_threshold: u32::try_from(num("account_threshold")?).ok()?,
            window: num("window")?,
            base_backoff: num("base_backoff")?,
            max_backoff: num("max_backoff")?,
            familiar_for: num("familiar_for")?,
            max_entries: d.max_entries,
        },
    };
    // Only what the signer writes: anything else is not a snapshot.
    (json_of(&s) == text && s.lockout.source_threshold >= 1).then_some(s)
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
            lockout: LockoutConfig {
                source_threshold: 3,
                ..LockoutConfig::default()
            },
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
        for junk in ["", ".", "x.y", &"a".repeat(20_000)] {
            assert!(verify(&pk, junk, "example.test", 1001, None).is_err());
        }
    }
}
