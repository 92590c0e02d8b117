//! Bearer tokens: `ppt_<id>_<secret>`. The id (8 random bytes, hex) finds the
//! row; only the SHA-256 of the secret (32 random bytes) is stored, so a copy
//! of the database does not hold usable tokens. Administrators' sign-in
//! sessions and API tokens share the format; users' sessions (the user API)
//! have their own prefix, `pus_`, so neither passes for the other.

use ring::digest::{digest, SHA256};
use ring::rand::{SecureRandom, SystemRandom};

const PREFIX: &str = "ppt_";
/// The prefix of users' sign-in sessions on the user API.
pub const USER_PREFIX: &str = "pus_";

/// A freshly minted token: the text handed out once, and what is stored.
#[derive(Debug)]
pub struct Minted {
    pub id: String,
    pub text: String,
    pub hash: Vec<u8>,
}

/// Mints an administrator's token.
pub fn mint() -> Option<Minted> {
    mint_with(PREFIX)
}

/// Mints a token with `prefix` (e.g. [`USER_PREFIX`]).
pub fn mint_with(prefix: &str) -> Option<Minted> {
    let rng = SystemRandom::new();
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    rng.fill(&mut id).ok()?;
    rng.fill(&mut secret).ok()?;
    let id = data_encoding::HEXLOWER.encode(&id);
    let secret = data_encoding::BASE64URL_NOPAD.encode(&secret);
    Some(Minted {
        text: format!("{prefix}{id}_{secret}"),
        hash: hash(&secret),
        id,
    })
}

/// Splits a presented administrator's token into (id, secret); `None` if
/// malformed.
pub fn parse(text: &str) -> Option<(&str, &str)> {
    parse_with(PREFIX, text)
}

/// Splits a presented token with `prefix` into (id, secret); `None` if
/// malformed or of another kind.
pub fn parse_with<'a>(prefix: &str, text: &'a str) -> Option<(&'a str, &'a str)> {
    let rest = text.strip_prefix(prefix)?;
    let (id, secret) = rest.split_once('_')?;
    let id_ok = id.len() == 16 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let secret_ok = secret.len() == 43
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (id_ok && secret_ok).then_some((id, secret))
}

pub fn hash(secret: &str) -> Vec<u8> {
    digest(&SHA256, secret.as_bytes()).as_ref().to_vec()
}

/// Whether `secret` hashes to `stored`, in constant time.
pub fn matches(secret: &str, stored: &[u8]) -> bool {
    let h = hash(secret);
    h.len() == stored.len() && h.iter().zip(stored).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mint_parse_match() {
        let m = mint().unwrap();
        let (id, secret) = parse(&m.text).unwrap();
        assert_eq!(id, m.id);
        assert!(matches(secret, &m.hash));
        assert!(!matches("x", &m.hash));
        assert!(!m.hash.is_empty() && !m.text.contains(&data_encoding::HEXLOWER.encode(&m.hash)));
        assert_eq!(parse("ppt_zz_abc"), None);
        assert_eq!(parse("Bearer x"), None);
        assert_eq!(parse(&m.text.replace("ppt_", "ppx_")), None);
        assert_eq!(parse(&format!("{}!", m.text)), None);
        // A user's session is not an administrator's token, nor the reverse.
        let u = mint_with(USER_PREFIX).unwrap();
        assert!(u.text.starts_with("pus_"));
        assert_eq!(parse(&u.text), None);
        assert_eq!(parse_with(USER_PREFIX, &m.text), None);
        let (id, secret) = parse_with(USER_PREFIX, &u.text).unwrap();
        assert_eq!(id, u.id);
        assert!(matches(secret, &u.hash));
    }
}
