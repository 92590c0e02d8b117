//! Time-based one-time passwords (RFC 6238 over RFC 4226 HOTP): HMAC-SHA1,
//! 30-second steps, 6 digits — what every authenticator app speaks.
//!
//! A code is accepted for the current step and one step either side (clock
//! drift), and only for a step later than the last one accepted, so a code
//! seen once cannot be replayed.

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// Seconds per step.
pub const STEP: u64 = 30;
/// Digits per code.
pub const DIGITS: u32 = 6;
/// Bytes of a generated secret (RFC 4226 recommends 160 bits).
pub const SECRET_LEN: usize = 20;

/// A fresh random secret.
pub fn generate() -> Option<[u8; SECRET_LEN]> {
    let mut s = [0u8; SECRET_LEN];
    SystemRandom::new().fill(&mut s).ok()?;
    Some(s)
}

/// The HOTP value for `counter`.
pub fn hotp(secret: &[u8], counter: u64) -> u32 {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let tag = hmac::sign(&key, &counter.to_be_bytes());
    let h = tag.as_ref();
    let offset = usize::from(h[h.len() - 1] & 0x0f);
    let bin = (u32::from(h[offset]) & 0x7f) << 24
        | u32::from(h[offset + 1]) << 16
        | u32::from(h[offset + 2]) << 8
        | u32::from(h[offset + 3]);
    bin % 10u32.pow(DIGITS)
}

/// The code for unix time `now`, zero-padded.
pub fn code(secret: &[u8], now: u64) -> String {
    format!(
        "{:0width$}",
        hotp(secret, now / STEP),
        width = DIGITS as usize
    )
}

/// Checks `given` at unix time `now`. Returns the step it matched, which the
/// caller stores and passes back as `last_step` next time; `None` if the code
/// is wrong, malformed, or already used.
pub fn verify(secret: &[u8], given: &str, now: u64, last_step: Option<u64>) -> Option<u64> {
    if given.len() != DIGITS as usize || !given.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: u32 = given.parse().ok()?;
    let current = now / STEP;
    let mut found = None;
    // Every candidate is computed, so timing does not say which one matched.
    for step in [current.saturating_sub(1), current, current + 1] {
        if hotp(secret, step) == value && last_step.is_none_or(|l| step > l) {
            found = Some(step);
        }
    }
    found
}

/// The secret in base32 (no padding), as authenticator apps take it.
pub fn encode(secret: &[u8]) -> String {
    data_encoding::BASE32_NOPAD.encode(secret)
}

/// Reads a base32 secret (spaces and case ignored).
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let clean: String = text
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    data_encoding::BASE32_NOPAD
        .decode(clean.trim_end_matches('=').as_bytes())
        .ok()
}

/// An `otpauth://` URI for enrolling `account` in an authenticator app.
pub fn uri(issuer: &str, account: &str, secret: &[u8]) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP}",
        enc(issuer),
        enc(account),
        encode(secret),
        enc(issuer)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, SHA-1 rows (8-digit values; we use the last 6).
    #[test]
    fn rfc6238_vectors() {
        let secret = b"12345678901234567890";
        for (t, eight) in [
            (59u64, "94287082"),
            (1111111109, "07081804"),
            (1111111111, "14050471"),
            (1234567890, "89005924"),
            (2000000000, "69279037"),
            (20000000000, "65353130"),
        ] {
            assert_eq!(code(secret, t), eight[2..], "t={t}");
        }
    }

    /// RFC 4226 Appendix D.
    #[test]
    fn rfc4226_vectors() {
        let secret = b"12345678901234567890";
        let want = [
            755224, 287082, 359152, 969429, 338314, 254676, 287922, 162583, 399871, 520489,
        ];
        for (c, w) in want.iter().enumerate() {
            assert_eq!(hotp(secret, c as u64), *w);
        }
    }

    #[test]
    fn window_replay_and_format() {
        let s = b"12345678901234567890";
        let now = 1_111_111_111;
        let c = code(s, now);
        let step = verify(s, &c, now, None).unwrap();
        assert_eq!(step, now / STEP);
        assert_eq!(verify(s, &c, now, Some(step)), None, "replay refused");
        assert!(
            verify(s, &code(s, now - STEP), now, None).is_some(),
            "one step behind"
        );
        assert!(
            verify(s, &code(s, now + STEP), now, None).is_some(),
            "one step ahead"
        );
        assert_eq!(
            verify(s, &code(s, now - 3 * STEP), now, None),
            None,
            "too old"
        );
        assert_eq!(verify(s, "12345", now, None), None);
        assert_eq!(verify(s, "12a456", now, None), None);
        assert_eq!(verify(s, "+12345", now, None), None);
    }

    #[test]
    fn base32_round_trip_and_uri() {
        let s = generate().unwrap();
        let e = encode(&s);
        assert_eq!(decode(&e.to_lowercase()).unwrap(), s);
        assert_eq!(decode("not base32!"), None);
        let u = uri("Parapet", "root", &s);
        assert!(u.starts_with("otpauth://totp/Parapet:root?secret="), "{u}");
    }
}
