//! Short-lived relay credentials for web clients (a browser's
//! `RTCIceServer` takes a user name and a credential; SIP clients use
//! their SIP password instead). They follow the convention browsers and
//! coturn's "REST API" use — the user name begins with the Unix time it
//! expires at, the credential is base64(HMAC-SHA1(secret, user name)) —
//! so the relay checks them with its secret alone, and adds what coturn's
//! cannot: the user name also names the signed-in session it was minted
//! for, so the relay can refuse it the moment that session ends.
//!
//! User name: `EXPIRY:SESSION:AOR` (the session's public id, never its
//! token). Default lifetime: ten minutes ([`DEFAULT_TTL`]).

use base64::Engine as _;
use ring::hmac;

/// How long a minted credential is valid, unless told otherwise.
pub const DEFAULT_TTL: i64 = 600;
/// The longest lifetime accepted when checking (a credential claiming
/// more was not minted here).
pub const MAX_TTL: i64 = 24 * 3600;

/// A user name and credential for a browser's `RTCIceServer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Minted {
    pub username: String,
    pub credential: String,
    pub expires_at: i64,
}

/// What a valid user name says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub aor: String,
    pub session: String,
    pub expires_at: i64,
}

/// Why a user name is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// Not `EXPIRY:SESSION:AOR`.
    Malformed,
    Expired,
    /// It claims a lifetime longer than [`MAX_TTL`].
    TooLong,
}

fn tag(secret: &[u8], username: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    base64::engine::general_purpose::STANDARD.encode(hmac::sign(&key, username.as_bytes()))
}

/// Credentials for `aor` signed in as `session`, valid `ttl` seconds from
/// `now`. `None` when the session id or address could not be parsed back
/// (a `:` in the session id, control characters).
/// The secret web credentials are minted and checked with, derived from
/// the pool's topology key (which every front end and paired edge holds):
/// the same everywhere in the pool, across restarts, and separate from
/// the key's own use.
pub fn secret_from_pool_key(key: &[u8; 32]) -> [u8; 32] {
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, key),
        b"parapet relay web credentials v1",
    );
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

pub fn mint(secret: &[u8], aor: &str, session: &str, now: i64, ttl: i64) -> Option<Minted> {
    let plain = |s: &str| !s.is_empty() && !s.chars().any(|c| c.is_control());
    if !plain(aor) || !plain(session) || session.contains(':') {
        return None;
    }
    let expires_at = now + ttl.clamp(1, MAX_TTL);
    let username = format!("{expires_at}:{session}:{aor}");
    Some(Minted {
        credential: tag(secret, &username),
        username,
        expires_at,
    })
}

/// Reads a user name and checks it has not expired at `now`. The
/// password to check the request's MESSAGE-INTEGRITY with is then
/// [`password`] (the relay's long-term key is derived from it as for any
/// user); that the session is still signed in is the caller's to check.
pub fn holder(username: &str, now: i64) -> Result<Holder, Invalid> {
    let mut f = username.splitn(3, ':');
    let (Some(expiry), Some(session), Some(aor)) = (f.next(), f.next(), f.next()) else {
        return Err(Invalid::Malformed);
    };
    if session.is_empty() || aor.is_empty() || !expiry.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Invalid::Malformed);
    }
    let expires_at: i64 = expiry.parse().map_err(|_| Invalid::Malformed)?;
    if expires_at <= now {
        return Err(Invalid::Expired);
    }
    if expires_at - now > MAX_TTL {
        return Err(Invalid::TooLong);
    }
    Ok(Holder {
        aor: aor.to_owned(),
        session: session.to_owned(),
        expires_at,
    })
}

/// The password a user name stands for under `secret` (what [`mint`]
/// handed out as the credential).
pub fn password(secret: &[u8], username: &str) -> String {
    tag(secret, username)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn minted_credentials_read_back_until_they_expire() {
        let m = mint(SECRET, "sip:alice@example.test", "s1", 1_000, DEFAULT_TTL).unwrap();
        assert_eq!(m.username, "1600:s1:sip:alice@example.test");
        assert_eq!(m.expires_at, 1_600);
        assert_eq!(password(SECRET, &m.username), m.credential);
        assert_ne!(password(b"another secret", &m.username), m.credential);
        assert_eq!(
            holder(&m.username, 1_599).unwrap(),
            Holder {
                aor: "sip:alice@example.test".into(),
                session: "s1".into(),
                expires_at: 1_600
            }
        );
        assert_eq!(holder(&m.username, 1_600), Err(Invalid::Expired));
    }

    #[test]
    fn the_credential_is_the_rest_api_convention() {
        // base64(HMAC-SHA1(secret, user name)), as coturn computes it.
        let m = mint(b"key", "sip:a@b", "x", 0, 10).unwrap();
        assert_eq!(m.username, "10:x:sip:a@b");
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, b"key");
        let raw = hmac::sign(&key, b"10:x:sip:a@b");
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(&m.credential)
                .unwrap(),
            raw.as_ref()
        );
    }

    #[test]
    fn bad_user_names_are_refused() {
        for u in [
            "",
            "abc",
            "1600:s1",
            "x:s1:sip:a@b",
            "1600::sip:a@b",
            "1600:s1:",
            "-5:s:a",
        ] {
            assert_eq!(holder(u, 0), Err(Invalid::Malformed), "{u:?}");
        }
        assert_eq!(holder("999999:s:a", 0), Err(Invalid::TooLong));
        assert!(mint(SECRET, "a", "s:1", 0, 60).is_none());
        assert!(mint(SECRET, "a\n", "s", 0, 60).is_none());
        // Lifetimes are bounded when minted too.
        assert_eq!(
            mint(SECRET, "a", "s", 0, 10 * MAX_TTL).unwrap().expires_at,
            MAX_TTL
        );
    }
}
