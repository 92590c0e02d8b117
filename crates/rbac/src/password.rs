//! Administrator passwords: Argon2id (RFC 9106) with a random salt, stored
//! in the PHC string format, parameters included, so they can be raised later
//! without breaking existing hashes.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use ring::rand::{SecureRandom, SystemRandom};

/// Shortest administrator password accepted.
pub const MIN_LEN: usize = 12;
/// Longest accepted, in characters (bounds the hashing work an attacker can ask for).
pub const MAX_LEN: usize = 1024;

/// Checks length bounds; the message says what to fix.
pub fn check(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < MIN_LEN {
        return Err(format!(
            "an administrator password needs at least {MIN_LEN} characters (this one has {n})"
        ));
    }
    if n > MAX_LEN {
        return Err(format!("a password is at most {MAX_LEN} characters"));
    }
    Ok(())
}

/// Hashes a password (OWASP's Argon2id parameters: 19 MiB, 2 passes).
pub fn hash(password: &str) -> Result<String, String> {
    check(password)?;
    let mut salt = [0u8; 16];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| "the random generator failed".to_string())?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches the stored `phc` string.
pub fn verify(password: &str, phc: &str) -> bool {
    if password.chars().count() > MAX_LEN {
        return false;
    }
    match PasswordHash::new(phc) {
        Ok(h) => Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// Spends the same work as [`verify`] for a name that does not exist, so the
/// answer time does not tell which administrator names are real.
pub fn verify_nobody(password: &str) {
    static DUMMY: OnceLock<Option<String>> = OnceLock::new();
    if let Some(h) = DUMMY.get_or_init(|| hash("not a real administrator").ok()) {
        let _ = verify(password, h);
    }
}

/// A random password for a newly recovered administrator: 24 characters
/// (144 bits), to be changed after the first sign-in.
pub fn generate() -> Option<String> {
    let mut b = [0u8; 18];
    SystemRandom::new().fill(&mut b).ok()?;
    Some(data_encoding::BASE64URL_NOPAD.encode(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = hash("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify("correct horse battery", &h));
        assert!(!verify("correct horse batterz", &h));
        assert!(!verify("correct horse battery", "not a hash"));
        assert_ne!(hash("correct horse battery").unwrap(), h, "salted");
        assert!(hash("short").unwrap_err().contains("at least 12"));
        assert!(check(&"x".repeat(MAX_LEN + 1)).is_err());
        assert_eq!(generate().unwrap().len(), 24);
    }
}
