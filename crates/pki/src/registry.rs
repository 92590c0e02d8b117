//! The device certificates valid now, by SHA-256 of the certificate.
//!
//! For Parapet's own device certificates an allow-list: a certificate of
//! the device CA that is not here (revoked, expired, or never recorded) is
//! refused. Certificates from the organisation's CA (bring your own PKI)
//! are recorded here when first used, and Parapet's own revocations of
//! them are kept in a deny-list ([`Registry::is_denied`]), since the
//! organisation's CA may issue new ones at any time. The TLS listeners
//! consult it at the handshake and the SIP core at every request that
//! relies on a certificate, so a revocation is in force as soon as
//! [`Registry::remove`] returns. The locks are held only to read or change
//! the maps, never across an await.

use std::collections::HashMap;
use std::sync::RwLock;

/// Whose a device certificate is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// `sip:user@domain`.
    pub aor: String,
    /// The device id.
    pub id: String,
    /// Unix seconds.
    pub not_after: i64,
    /// The chain as the device presented it (DER, its certificate first)
    /// when it is the organisation's, for checking it again when the
    /// revocation lists change; `None` for Parapet's own.
    pub org: Option<std::sync::Arc<Vec<Vec<u8>>>>,
}

/// The valid device certificates.
#[derive(Debug, Default)]
pub struct Registry {
    by_fingerprint: RwLock<HashMap<[u8; 32], Device>>,
    /// Revoked here; refused whatever CA issued them.
    denied: RwLock<std::collections::HashSet<[u8; 32]>>,
    /// The latest revocations (unix seconds), at most [`RECENT`], for the
    /// edges: they close the connections that presented one.
    recent: std::sync::Mutex<std::collections::VecDeque<(i64, [u8; 32])>>,
}

/// How many recent revocations are kept for the edges.
pub const RECENT: usize = 256;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Parses a lower-case or upper-case hex SHA-256.
pub fn parse_fingerprint(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl Registry {
    /// The device a certificate with this SHA-256 belongs to, if it is
    /// valid now.
    pub fn get(&self, fingerprint: &[u8; 32]) -> Option<Device> {
        let m = self.by_fingerprint.read().ok()?;
        m.get(fingerprint).filter(|d| d.not_after > now()).cloned()
    }

    /// Whether the certificate `der` is a valid device's.
    pub fn device_of(&self, der: &[u8]) -> Option<Device> {
        self.get(&crate::fingerprint(der))
    }

    /// Replaces everything (at start).
    pub fn replace(&self, devices: impl IntoIterator<Item = ([u8; 32], Device)>) {
        if let Ok(mut m) = self.by_fingerprint.write() {
            *m = devices.into_iter().collect();
        }
    }

    pub fn insert(&self, fingerprint: [u8; 32], device: Device) {
        if let Ok(mut m) = self.by_fingerprint.write() {
            m.insert(fingerprint, device);
        }
    }

    /// Revokes certificates (out of the allow-list, into the deny-list);
    /// returns how many were valid here.
    pub fn remove<'a>(&self, fingerprints: impl IntoIterator<Item = &'a [u8; 32]>) -> usize {
        let fingerprints: Vec<[u8; 32]> = fingerprints.into_iter().copied().collect();
        self.deny(fingerprints.iter().copied());
        self.note_revoked(&fingerprints);
        let Ok(mut m) = self.by_fingerprint.write() else {
            return 0;
        };
        fingerprints
            .iter()
            .filter(|f| m.remove(*f).is_some())
            .count()
    }

    /// Forgets certificates without revoking them (an organisation's that
    /// no longer verifies, or one whose record could not be stored): the
    /// next handshake decides again.
    pub fn forget<'a>(&self, fingerprints: impl IntoIterator<Item = &'a [u8; 32]>) {
        if let Ok(mut m) = self.by_fingerprint.write() {
            for f in fingerprints {
                m.remove(f);
            }
        }
    }

    /// Revokes every certificate of `aor` recorded here; returns their
    /// fingerprints.
    pub fn remove_user(&self, aor: &str) -> Vec<[u8; 32]> {
        let gone: Vec<[u8; 32]> = match self.by_fingerprint.write() {
            Ok(mut m) => {
                let gone: Vec<[u8; 32]> = m
                    .iter()
                    .filter(|(_, d)| d.aor == aor)
                    .map(|(f, _)| *f)
                    .collect();
                for f in &gone {
                    m.remove(f);
                }
                gone
            }
            Err(_) => Vec::new(),
        };
        self.deny(gone.iter().copied());
        self.note_revoked(&gone);
        gone
    }

    /// Adds to the deny-list (revocations kept in the store, at start).
    pub fn deny(&self, fingerprints: impl IntoIterator<Item = [u8; 32]>) {
        if let Ok(mut d) = self.denied.write() {
            d.extend(fingerprints);
        }
    }

    /// Remembers revocations made now, for [`Registry::revoked_since`].
    fn note_revoked(&self, fingerprints: &[[u8; 32]]) {
        let t = now();
        if let Ok(mut r) = self.recent.lock() {
            for f in fingerprints {
                if r.len() == RECENT {
                    r.pop_front();
                }
                r.push_back((t, *f));
            }
        }
    }

    /// Certificates revoked at or after `since` (unix seconds), of the
    /// latest [`RECENT`] revocations.
    pub fn revoked_since(&self, since: i64) -> Vec<[u8; 32]> {
        self.recent
            .lock()
            .map(|r| {
                r.iter()
                    .filter(|(t, _)| *t >= since)
                    .map(|(_, f)| *f)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether Parapet revoked this certificate.
    pub fn is_denied(&self, fingerprint: &[u8; 32]) -> bool {
        self.denied
            .read()
            .map(|d| d.contains(fingerprint))
            .unwrap_or(true)
    }

    /// The organisation's certificates recorded here, by fingerprint.
    pub fn org_certificates(&self) -> Vec<([u8; 32], Device)> {
        self.by_fingerprint
            .read()
            .map(|m| {
                m.iter()
                    .filter(|(_, d)| d.org.is_some())
                    .map(|(f, d)| (*f, d.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Valid certificates (expired ones are dropped on the way).
    pub fn len(&self) -> usize {
        let t = now();
        let Ok(mut m) = self.by_fingerprint.write() else {
            return 0;
        };
        m.retain(|_, d| d.not_after > t);
        m.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn dev(aor: &str, id: &str, not_after: i64) -> Device {
        Device {
            aor: aor.into(),
            id: id.into(),
            not_after,
            org: None,
        }
    }

    #[test]
    fn a_certificate_is_valid_until_removed_or_expired() {
        let r = Registry::default();
        r.insert([1; 32], dev("sip:a@x", "1", i64::MAX));
        r.insert([2; 32], dev("sip:a@x", "2", i64::MAX));
        r.insert([3; 32], dev("sip:b@x", "3", i64::MAX));
        r.insert([4; 32], dev("sip:b@x", "4", 1));
        assert_eq!(r.get(&[1; 32]).unwrap().id, "1");
        assert!(r.get(&[4; 32]).is_none(), "expired");
        assert_eq!(r.len(), 3);
        assert_eq!(r.remove([&[3; 32], &[9; 32]]), 1);
        let mut gone = r.remove_user("sip:a@x");
        gone.sort();
        assert_eq!(gone, [[1; 32], [2; 32]]);
        assert!(r.is_empty());
        // What was revoked stays refused, whoever issued it.
        for f in [[1; 32], [2; 32], [3; 32], [9; 32]] {
            assert!(r.is_denied(&f));
        }
        assert!(!r.is_denied(&[4; 32]));
        // Forgotten is not revoked.
        r.insert([5; 32], dev("sip:c@x", "5", i64::MAX));
        r.forget([&[5; 32]]);
        assert!(r.get(&[5; 32]).is_none());
        assert!(!r.is_denied(&[5; 32]));
        // The edges hear of the latest revocations, a bounded number.
        let mut recent = r.revoked_since(now() - 5);
        recent.sort();
        assert_eq!(recent, [[1; 32], [2; 32], [3; 32], [9; 32]]);
        assert!(r.revoked_since(now() + 5).is_empty());
        for i in 0..300u16 {
            let mut f = [0u8; 32];
            f[..2].copy_from_slice(&i.to_be_bytes());
            r.remove([&f]);
        }
        assert_eq!(r.revoked_since(0).len(), RECENT);
    }

    #[test]
    fn fingerprints_are_read_from_hex() {
        let f = crate::fingerprint(b"x");
        assert_eq!(parse_fingerprint(&crate::hex(&f)), Some(f));
        assert_eq!(parse_fingerprint(&crate::hex(&f).to_uppercase()), Some(f));
        assert_eq!(parse_fingerprint("00"), None);
        assert_eq!(parse_fingerprint(&"zz".repeat(32)), None);
        assert_eq!(parse_fingerprint(&"é".repeat(32)), None);
    }
}
