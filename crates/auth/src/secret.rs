//! Sealed digest secrets.
//!
//! For each user Parapet stores HA1 for both algorithms (MD5 for older clients,
//! SHA-256 per RFC 8760), computed when the password is set, then sealed with
//! ChaCha20-Poly1305 under a 256-bit key held in a file beside (not inside) the
//! database. The AOR is bound in as associated data, so a sealed blob copied to
//! another user's row does not open. The password itself is never stored.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

use crate::digest::{ha1, Algorithm};

/// Version byte of the sealed format.
const FORMAT: u8 = 1;

/// HA1 values of one user, in the clear (only in memory).
#[derive(Clone, PartialEq, Eq)]
pub struct DigestSecrets {
    pub md5: [u8; 16],
    pub sha256: [u8; 32],
}

impl std::fmt::Debug for DigestSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DigestSecrets(..)")
    }
}

impl DigestSecrets {
    /// Derives both HA1 values from a password. `user` is the digest username
    /// (the user part of the AOR), `realm` the server's realm.
    pub fn from_password(user: &str, realm: &str, password: &str) -> Self {
        let mut md5 = [0u8; 16];
        let mut sha256 = [0u8; 32];
        md5.copy_from_slice(&ha1(Algorithm::Md5, user, realm, password));
        sha256.copy_from_slice(&ha1(Algorithm::Sha256, user, realm, password));
        DigestSecrets { md5, sha256 }
    }

    pub fn ha1(&self, alg: Algorithm) -> &[u8] {
        match alg {
            Algorithm::Md5 => &self.md5,
            Algorithm::Sha256 => &self.sha256,
        }
    }
}

/// Why a secret could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealError {
    /// The blob is damaged, was sealed under another key, or belongs to another user.
    Invalid,
    /// The system random generator failed.
    Random,
}

/// The key that seals secrets.
pub struct SecretKey {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    /// A key from 32 bytes (read from the key file).
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, SealError> {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, bytes).map_err(|_| SealError::Invalid)?;
        Ok(SecretKey {
            key: LessSafeKey::new(unbound),
            rng: SystemRandom::new(),
        })
    }

    /// Fresh random key material for a new installation.
    pub fn generate() -> Result<[u8; 32], SealError> {
        let mut k = [0u8; 32];
        SystemRandom::new()
            .fill(&mut k)
            .map_err(|_| SealError::Random)?;
        Ok(k)
    }

    /// Seals `secrets` for `aor`: `FORMAT || nonce || ciphertext+tag`.
    pub fn seal(&self, aor: &str, secrets: &DigestSecrets) -> Result<Vec<u8>, SealError> {
        let mut data = Vec::with_capacity(48);
        data.extend_from_slice(&secrets.md5);
        data.extend_from_slice(&secrets.sha256);
        self.seal_bytes(aor, &data)
    }

    /// Opens what [`SecretKey::seal`] produced for the same `aor`.
    pub fn open(&self, aor: &str, sealed: &[u8]) -> Result<DigestSecrets, SealError> {
        let plain = self.open_bytes(aor, sealed)?;
        if plain.len() != 48 {
            return Err(SealError::Invalid);
        }
        let mut md5 = [0u8; 16];
        let mut sha256 = [0u8; 32];
        md5.copy_from_slice(&plain[..16]);
        sha256.copy_from_slice(&plain[16..48]);
        Ok(DigestSecrets { md5, sha256 })
    }

    /// Seals any secret (e.g. an administrator's TOTP key), bound to `context`
    /// (opening it under another context fails).
    pub fn seal_bytes(&self, context: &str, secret: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| SealError::Random)?;
        let mut data = Vec::with_capacity(secret.len() + 16);
        data.extend_from_slice(secret);
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut data,
            )
            .map_err(|_| SealError::Invalid)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + data.len());
        out.push(FORMAT);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&data);
        Ok(out)
    }

    /// Opens what [`SecretKey::seal_bytes`] produced for the same `context`.
    pub fn open_bytes(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let (&format, rest) = sealed.split_first().ok_or(SealError::Invalid)?;
        if format != FORMAT || rest.len() < NONCE_LEN {
            return Err(SealError::Invalid);
        }
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Invalid)?;
        let mut buf = ct.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut buf)
            .map_err(|_| SealError::Invalid)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open_bound_to_the_user() {
        let key = SecretKey::from_bytes(&SecretKey::generate().unwrap()).unwrap();
        let s = DigestSecrets::from_password("alice", "example.com", "correct horse");
        let sealed = key.seal("sip:alice@example.com", &s).unwrap();
        assert!(
            !sealed.windows(16).any(|w| w == s.md5),
            "HA1 is not visible in the blob"
        );
        assert_eq!(key.open("sip:alice@example.com", &sealed).unwrap(), s);
        assert_eq!(
            key.open("sip:mallory@example.com", &sealed),
            Err(SealError::Invalid)
        );
        let other = SecretKey::from_bytes(&SecretKey::generate().unwrap()).unwrap();
        assert_eq!(
            other.open("sip:alice@example.com", &sealed),
            Err(SealError::Invalid)
        );
        let mut damaged = sealed.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        assert_eq!(
            key.open("sip:alice@example.com", &damaged),
            Err(SealError::Invalid)
        );
        assert_eq!(
            key.open("sip:alice@example.com", &[]),
            Err(SealError::Invalid)
        );
        assert_ne!(
            key.seal("sip:alice@example.com", &s).unwrap(),
            sealed,
            "fresh nonce each time"
        );
    }
}
