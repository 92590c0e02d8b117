//! The long-term credential mechanism (RFC 8489 §9.2) as the relay runs
//! it: stateless nonces bound to the client's address and the time they
//! were issued, the nonce cookie announcing PASSWORD-ALGORITHMS (so a
//! client may use SHA-256 and a downgrade is detected), and reading a
//! request's USERNAME, REALM, NONCE and algorithm before its
//! MESSAGE-INTEGRITY is checked with the user's key.

use std::net::IpAddr;

use base64::Engine as _;
use ring::hmac;
use stun::attr::{self, PasswordAlgorithm};
use stun::{Class, Encoder, Message};

/// How long a nonce is good for; after, 438 Stale Nonce with a new one.
pub const NONCE_LIFETIME: u64 = 600;
/// The nonce cookie (RFC 8489 §9.2): "obMatJos2", then the security
/// feature set in base64, here only "password algorithms" (its top bit).
pub const NONCE_COOKIE: &str = "obMatJos2gAAA";
/// The algorithms offered, in PASSWORD-ALGORITHMS, most preferred first.
pub const OFFERED: [PasswordAlgorithm; 2] = [PasswordAlgorithm::Sha256, PasswordAlgorithm::Md5];

/// Issues and checks nonces with a key of the process's.
pub struct Nonces {
    key: hmac::Key,
}

impl std::fmt::Debug for Nonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Nonces(..)")
    }
}

/// What a nonce is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceState {
    Valid,
    Stale,
    Invalid,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

impl Nonces {
    pub fn new(secret: &[u8; 32]) -> Nonces {
        Nonces {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    fn mac(&self, issued: u64, client: IpAddr) -> [u8; 12] {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(&issued.to_be_bytes());
        match client {
            IpAddr::V4(a) => ctx.update(&a.octets()),
            IpAddr::V6(a) => ctx.update(&a.octets()),
        }
        let tag = ctx.sign();
        let mut out = [0u8; 12];
        out.copy_from_slice(&tag.as_ref()[..12]);
        out
    }

    /// A nonce for `client`, issued at `now` (Unix seconds).
    pub fn issue(&self, client: IpAddr, now: u64) -> String {
        let mut raw = [0u8; 20];
        raw[..8].copy_from_slice(&now.to_be_bytes());
        raw[8..].copy_from_slice(&self.mac(now, client));
        format!("{NONCE_COOKIE}{}", b64().encode(raw))
    }

    /// Whether `nonce` was issued here to `client` and is still fresh.
    pub fn check(&self, nonce: &str, client: IpAddr, now: u64) -> NonceState {
        let Some(rest) = nonce.strip_prefix(NONCE_COOKIE) else {
            return NonceState::Invalid;
        };
        let Ok(raw) = b64().decode(rest) else {
            return NonceState::Invalid;
        };
        let Ok(raw) = <[u8; 20]>::try_from(raw.as_slice()) else {
            return NonceState::Invalid;
        };
        let issued = u64::from_be_bytes(raw[..8].try_into().unwrap_or([0; 8]));
        let expected = self.mac(issued, client);
        let differs = expected
            .iter()
            .zip(&raw[8..])
            .fold(0u8, |acc, (x, y)| acc | (x ^ y));
        if differs != 0 {
            return NonceState::Invalid;
        }
        if issued > now + 5 {
            NonceState::Invalid
        } else if now - issued.min(now) > NONCE_LIFETIME {
            NonceState::Stale
        } else {
            NonceState::Valid
        }
    }
}

/// A request's credentials, read and checked as far as can be without
/// the user's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Creds<'a> {
    pub username: &'a str,
    pub algorithm: PasswordAlgorithm,
}

/// Why a request's credentials are refused before its integrity is
/// checked: the error to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 401 with a challenge (no MESSAGE-INTEGRITY, another realm).
    Challenge,
    /// 438 Stale Nonce, with a new one.
    Stale,
    /// 400 Bad Request, and why.
    Bad(&'static str),
}

/// Reads `m`'s credentials (RFC 8489 §9.2.4).
pub fn credentials<'a>(
    m: &Message<'a>,
    nonces: &Nonces,
    realm: &str,
    client: IpAddr,
    now: u64,
) -> Result<Creds<'a>, Refusal> {
    if m.get(attr::MESSAGE_INTEGRITY).is_none() && m.get(attr::MESSAGE_INTEGRITY_SHA256).is_none() {
        return Err(Refusal::Challenge);
    }
    let text = |kind| m.get(kind).map(|v| attr::text(kind, v));
    let (Some(Ok(username)), Some(Ok(r)), Some(Ok(nonce))) =
        (text(attr::USERNAME), text(attr::REALM), text(attr::NONCE))
    else {
        return Err(Refusal::Bad("USERNAME, REALM and NONCE are required"));
    };
    if m.get(attr::USERHASH).is_some() {
        return Err(Refusal::Bad("USERHASH is not supported"));
    }
    if r != realm {
        return Err(Refusal::Challenge);
    }
    match nonces.check(nonce, client, now) {
        NonceState::Valid => {}
        NonceState::Stale => return Err(Refusal::Stale),
        NonceState::Invalid => return Err(Refusal::Challenge),
    }
    // A client that picked an algorithm must echo the list it was offered
    // exactly (RFC 8489 §9.2.4: otherwise a downgrade is under way).
    let algorithm = match m.get(attr::PASSWORD_ALGORITHM) {
        None => PasswordAlgorithm::Md5,
        Some(v) => {
            let offered = attr::password_algorithms_value(&OFFERED);
            if m.get(attr::PASSWORD_ALGORITHMS) != Some(offered.as_slice()) {
                return Err(Refusal::Bad(
                    "PASSWORD-ALGORITHMS differs from what was offered",
                ));
            }
            match attr::password_algorithms(attr::PASSWORD_ALGORITHM, v) {
                Ok(a) if a.len() == 1 => a[0].ok_or(Refusal::Bad("unknown PASSWORD-ALGORITHM"))?,
                _ => return Err(Refusal::Bad("PASSWORD-ALGORITHM is malformed")),
            }
        }
    };
    Ok(Creds {
        username,
        algorithm,
    })
}

/// What the pool decides when an edge's relay asks for a user's key
/// with the request that needs it (an edge gets a key only with proof that
/// the client it serves holds it: a request naming the user in this realm
/// whose integrity that key makes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// The request's integrity was made with the user's key.
    Holds,
    /// It was not: a wrong password.
    Fails,
    /// The request chose MD5 and the user's policy forbids it.
    Md5NotAllowed,
    /// Not a request for this user and realm, or not readable.
    Malformed(&'static str),
}

/// Checks `request` (a STUN request as the edge received it) against the
/// keys of SIP user `username` in `realm`: the algorithm is the one the
/// request itself chose (its PASSWORD-ALGORITHM, else MD5), with the same
/// downgrade check as [`credentials`].
pub fn proof(
    request: &[u8],
    username: &str,
    realm: &str,
    md5: &[u8; 16],
    sha256: &[u8; 32],
    md5_allowed: bool,
) -> Proof {
    let Ok(m) = Message::parse(request) else {
        return Proof::Malformed("not a STUN message");
    };
    if m.class != Class::Request {
        return Proof::Malformed("not a request");
    }
    let text = |kind| m.get(kind).and_then(|v| attr::text(kind, v).ok());
    if text(attr::USERNAME) != Some(username) || text(attr::REALM) != Some(realm) {
        return Proof::Malformed("USERNAME or REALM is not the one asked for");
    }
    let algorithm = match m.get(attr::PASSWORD_ALGORITHM) {
        None => PasswordAlgorithm::Md5,
        Some(v) => {
            let offered = attr::password_algorithms_value(&OFFERED);
            if m.get(attr::PASSWORD_ALGORITHMS) != Some(offered.as_slice()) {
                return Proof::Malformed("PASSWORD-ALGORITHMS differs from what was offered");
            }
            match attr::password_algorithms(attr::PASSWORD_ALGORITHM, v) {
                Ok(a) if a.len() == 1 => match a[0] {
                    Some(alg) => alg,
                    None => return Proof::Malformed("unknown PASSWORD-ALGORITHM"),
                },
                _ => return Proof::Malformed("PASSWORD-ALGORITHM is malformed"),
            }
        }
    };
    if algorithm == PasswordAlgorithm::Md5 && !md5_allowed {
        return Proof::Md5NotAllowed;
    }
    let key: &[u8] = match algorithm {
        PasswordAlgorithm::Md5 => md5,
        PasswordAlgorithm::Sha256 => sha256,
    };
    if m.verify(key).is_ok() {
        Proof::Holds
    } else {
        Proof::Fails
    }
}

/// An error response to `m` with a challenge: REALM, a new NONCE and
/// PASSWORD-ALGORITHMS (401 and 438).
pub fn challenge(m: &Message<'_>, code: u16, reason: &str, realm: &str, nonce: &str) -> Vec<u8> {
    let mut e = Encoder::new(Class::Error, m.method, m.transaction_id);
    e.error(code, reason);
    let _ = e.attr(attr::REALM, realm.as_bytes());
    let _ = e.attr(attr::NONCE, nonce.as_bytes());
    let _ = e.attr(
        attr::PASSWORD_ALGORITHMS,
        &attr::password_algorithms_value(&OFFERED),
    );
    e.finish_with(None, m.fingerprint_ok().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use stun::integrity::Integrity;

    const REALM: &str = "example.com";

    fn client() -> IpAddr {
        "203.0.113.9".parse().unwrap()
    }

    fn request(nonce: &str, extra: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut e = Encoder::new(Class::Request, stun::method::ALLOCATE, [7; 12]);
        e.attr(attr::USERNAME, b"alice").unwrap();
        e.attr(attr::REALM, REALM.as_bytes()).unwrap();
        e.attr(attr::NONCE, nonce.as_bytes()).unwrap();
        for (k, v) in extra {
            e.attr(*k, v).unwrap();
        }
        e.finish_with(Some((Integrity::Sha1, &[1; 16])), false)
    }

    #[test]
    fn the_pool_hands_a_key_only_with_a_request_it_signs() {
        let md5: [u8; 16] =
            stun::integrity::long_term_key(PasswordAlgorithm::Md5, "alice", REALM, "secret")
                .try_into()
                .unwrap();
        let sha: [u8; 32] =
            stun::integrity::long_term_key(PasswordAlgorithm::Sha256, "alice", REALM, "secret")
                .try_into()
                .unwrap();
        let signed = |key: &[u8], extra: &[(u16, Vec<u8>)]| {
            let mut e = Encoder::new(Class::Request, stun::method::ALLOCATE, [7; 12]);
            e.attr(attr::USERNAME, b"alice").unwrap();
            e.attr(attr::REALM, REALM.as_bytes()).unwrap();
            e.attr(attr::NONCE, b"n").unwrap();
            for (k, v) in extra {
                e.attr(*k, v).unwrap();
            }
            e.finish_with(Some((Integrity::Sha1, key)), false)
        };
        let good = signed(&md5, &[]);
        assert_eq!(proof(&good, "alice", REALM, &md5, &sha, true), Proof::Holds);
        assert_eq!(
            proof(&good, "alice", REALM, &md5, &sha, false),
            Proof::Md5NotAllowed
        );
        assert_eq!(
            proof(&signed(&[9; 16], &[]), "alice", REALM, &md5, &sha, true),
            Proof::Fails
        );
        // Another user's request, another realm, garbage: no key.
        assert!(matches!(
            proof(&good, "bob", REALM, &md5, &sha, true),
            Proof::Malformed(_)
        ));
        assert!(matches!(
            proof(&good, "alice", "other.test", &md5, &sha, true),
            Proof::Malformed(_)
        ));
        assert!(matches!(
            proof(b"hello", "alice", REALM, &md5, &sha, true),
            Proof::Malformed(_)
        ));
        // SHA-256 chosen with the offered list echoed: its key.
        let algs = attr::password_algorithms_value(&OFFERED);
        let chosen = attr::password_algorithms_value(&[PasswordAlgorithm::Sha256]);
        let sha_req = signed(
            &sha,
            &[
                (attr::PASSWORD_ALGORITHMS, algs.clone()),
                (attr::PASSWORD_ALGORITHM, chosen.clone()),
            ],
        );
        assert_eq!(
            proof(&sha_req, "alice", REALM, &md5, &sha, false),
            Proof::Holds
        );
        // The list not echoed: a downgrade, refused.
        let downgraded = signed(&sha, &[(attr::PASSWORD_ALGORITHM, chosen)]);
        assert!(matches!(
            proof(&downgraded, "alice", REALM, &md5, &sha, true),
            Proof::Malformed(_)
        ));
    }

    #[test]
    fn nonces_are_bound_to_the_client_and_go_stale() {
        let n = Nonces::new(&[3; 32]);
        let nonce = n.issue(client(), 1000);
        assert!(nonce.starts_with("obMatJos2gAAA"));
        assert_eq!(n.check(&nonce, client(), 1000), NonceState::Valid);
        assert_eq!(
            n.check(&nonce, client(), 1000 + NONCE_LIFETIME),
            NonceState::Valid
        );
        assert_eq!(
            n.check(&nonce, client(), 1001 + NONCE_LIFETIME),
            NonceState::Stale
        );
        let other: IpAddr = "203.0.113.10".parse().unwrap();
        assert_eq!(n.check(&nonce, other, 1000), NonceState::Invalid);
        assert_eq!(
            Nonces::new(&[4; 32]).check(&nonce, client(), 1000),
            NonceState::Invalid
        );
        assert_eq!(
            n.check("obMatJos2gAAAxx", client(), 1000),
            NonceState::Invalid
        );
        assert_eq!(n.check("", client(), 1000), NonceState::Invalid);
    }

    #[test]
    fn credentials_are_read_or_refused_precisely() {
        let n = Nonces::new(&[3; 32]);
        let nonce = n.issue(client(), 1000);
        let raw = request(&nonce, &[]);
        let m = Message::parse(&raw).unwrap();
        let c = credentials(&m, &n, REALM, client(), 1000).unwrap();
        assert_eq!(c.username, "alice");
        assert_eq!(c.algorithm, PasswordAlgorithm::Md5);
        assert_eq!(
            credentials(&m, &n, "other.org", client(), 1000),
            Err(Refusal::Challenge)
        );
        assert_eq!(
            credentials(&m, &n, REALM, client(), 2000),
            Err(Refusal::Stale)
        );
        // No integrity at all: a challenge.
        let mut e = Encoder::new(Class::Request, stun::method::ALLOCATE, [7; 12]);
        e.attr(attr::USERNAME, b"alice").unwrap();
        let raw = e.finish();
        let m = Message::parse(&raw).unwrap();
        assert_eq!(
            credentials(&m, &n, REALM, client(), 1000),
            Err(Refusal::Challenge)
        );
        // Integrity without a nonce: 400.
        let mut e = Encoder::new(Class::Request, stun::method::ALLOCATE, [7; 12]);
        e.attr(attr::USERNAME, b"alice").unwrap();
        let raw = e.finish_with(Some((Integrity::Sha1, &[1; 16])), false);
        let m = Message::parse(&raw).unwrap();
        assert!(matches!(
            credentials(&m, &n, REALM, client(), 1000),
            Err(Refusal::Bad(_))
        ));
    }

    #[test]
    fn sha256_is_taken_only_with_the_list_offered_echoed() {
        let n = Nonces::new(&[3; 32]);
        let nonce = n.issue(client(), 1000);
        let one = attr::password_algorithms_value(&[PasswordAlgorithm::Sha256]);
        let all = attr::password_algorithms_value(&OFFERED);
        let raw = request(
            &nonce,
            &[
                (attr::PASSWORD_ALGORITHMS, all),
                (attr::PASSWORD_ALGORITHM, one.clone()),
            ],
        );
        let m = Message::parse(&raw).unwrap();
        assert_eq!(
            credentials(&m, &n, REALM, client(), 1000)
                .unwrap()
                .algorithm,
            PasswordAlgorithm::Sha256
        );
        // A list cut down on the way: a downgrade.
        let md5 = attr::password_algorithms_value(&[PasswordAlgorithm::Md5]);
        let raw = request(
            &nonce,
            &[
                (attr::PASSWORD_ALGORITHMS, md5.clone()),
                (attr::PASSWORD_ALGORITHM, md5),
            ],
        );
        let m = Message::parse(&raw).unwrap();
        assert!(matches!(
            credentials(&m, &n, REALM, client(), 1000),
            Err(Refusal::Bad(_))
        ));
        let raw = request(&nonce, &[(attr::PASSWORD_ALGORITHM, one)]);
        let m = Message::parse(&raw).unwrap();
        assert!(matches!(
            credentials(&m, &n, REALM, client(), 1000),
            Err(Refusal::Bad(_))
        ));
    }

    #[test]
    fn a_challenge_carries_realm_nonce_and_the_algorithms() {
        let raw = request("x", &[]);
        let m = Message::parse(&raw).unwrap();
        let out = challenge(&m, 401, "Unauthenticated", REALM, "n1");
        let r = Message::parse(&out).unwrap();
        assert_eq!(r.class, Class::Error);
        assert_eq!(
            attr::error_code(r.get(attr::ERROR_CODE).unwrap())
                .unwrap()
                .code,
            401
        );
        assert_eq!(r.get(attr::REALM), Some(REALM.as_bytes()));
        assert_eq!(r.get(attr::NONCE), Some(&b"n1"[..]));
        assert!(r.get(attr::PASSWORD_ALGORITHMS).is_some());
        assert!(r.get(attr::SOFTWARE).is_none());
    }
}
