//! Digest authentication for SIP (RFC 3261 §22, RFC 7616 computations, RFC 8760
//! SHA-256), `qop=auth` only.

use std::sync::Mutex;

use md5::{Digest as _, Md5};
use ring::digest::{digest, SHA256};
use ring::hmac;
use sip::headers::AuthValue;

use crate::nonce::{NonceCounts, NonceKey, NonceState};
use crate::secret::DigestSecrets;
use crate::{constant_time_eq, hex};

/// Digest hash algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    /// From the `algorithm` parameter; absent means MD5. `-sess` variants and
    /// anything else are refused.
    pub fn parse(v: Option<&str>) -> Option<Algorithm> {
        match v {
            None => Some(Algorithm::Md5),
            Some(a) if a.eq_ignore_ascii_case("MD5") => Some(Algorithm::Md5),
            Some(a) if a.eq_ignore_ascii_case("SHA-256") => Some(Algorithm::Sha256),
            Some(_) => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    fn h(self, data: &[u8]) -> Vec<u8> {
        match self {
            Algorithm::Md5 => Md5::digest(data).to_vec(),
            Algorithm::Sha256 => digest(&SHA256, data).as_ref().to_vec(),
        }
    }
}

/// HA1 = H(username ":" realm ":" password), raw bytes.
pub fn ha1(alg: Algorithm, user: &str, realm: &str, password: &str) -> Vec<u8> {
    alg.h(format!("{user}:{realm}:{password}").as_bytes())
}

/// The `response` value a client with `ha1` must send, in lower-case hex.
#[allow(clippy::too_many_arguments)]
pub fn expected_response(
    alg: Algorithm,
    ha1: &[u8],
    nonce: &str,
    nc: &str,
    cnonce: &str,
    qop: &str,
    method: &str,
    uri: &str,
) -> String {
    let ha2 = hex(&alg.h(format!("{method}:{uri}").as_bytes()));
    hex(&alg.h(format!("{}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}", hex(ha1)).as_bytes()))
}

/// Proof that a request's credentials verified. Only [`Verifier::verify`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    username: String,
    algorithm: Algorithm,
}

impl Authenticated {
    /// The digest username that was proven.
    pub fn username(&self) -> &str {
        &self.username
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

/// Why credentials did not verify. Callers answer every variant but `Stale` with
/// the same failure, so that nothing tells a known user from an unknown one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// Expired or forgotten nonce: challenge again with `stale=true`.
    Stale,
    /// Missing or malformed parameters, wrong realm or URI, unsupported algorithm or qop.
    Malformed,
    /// A nonce we did not issue.
    BadNonce,
    /// A nonce count that does not increase.
    Replay,
    /// Wrong password, or no such user.
    WrongResponse,
}

/// Verifies digest credentials for one realm.
pub struct Verifier {
    realm: String,
    algorithms: Vec<Algorithm>,
    nonces: NonceKey,
    counts: Mutex<NonceCounts>,
    dummy: hmac::Key,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Verifier(realm={})", self.realm)
    }
}

impl Verifier {
    /// `secret` keys the nonces and the stand-in secrets of unknown users;
    /// `nonce_lifetime` in seconds; `max_tracked_nonces` bounds replay state;
    /// `algorithms` are offered in this order and nothing else is accepted.
    pub fn new(
        realm: &str,
        secret: &[u8; 32],
        nonce_lifetime: u64,
        max_tracked_nonces: usize,
        algorithms: &[Algorithm],
    ) -> Self {
        Verifier {
            realm: realm.to_owned(),
            algorithms: if algorithms.is_empty() {
                vec![Algorithm::Sha256]
            } else {
                algorithms.to_vec()
            },
            nonces: NonceKey::new(secret, nonce_lifetime),
            counts: Mutex::new(NonceCounts::new(max_tracked_nonces)),
            // A second key derived from the first, for stand-in secrets.
            dummy: hmac::Key::new(
                hmac::HMAC_SHA256,
                hmac::sign(
                    &hmac::Key::new(hmac::HMAC_SHA256, secret),
                    b"parapet unknown-user stand-in",
                )
                .as_ref(),
            ),
        }
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// Forgets nonce counts of nonces that have expired anyway (call it
    /// periodically: it keeps the replay table to what is still usable).
    pub fn housekeeping(&self, now: u64) {
        if let Ok(mut c) = self.counts.lock() {
            c.expire(now, self.nonces.lifetime);
        }
    }

    /// The challenge header values to send, one per enabled algorithm in order of
    /// preference (RFC 8760 §2.4). `None` if randomness failed.
    pub fn challenges(&self, now: u64, stale: bool) -> Option<Vec<String>> {
        self.challenges_with(now, stale, &self.algorithms)
    }

    /// The challenge header values for `algorithms`, in that order, sharing
    /// one nonce. `None` if randomness failed.
    pub fn challenges_with(
        &self,
        now: u64,
        stale: bool,
        algorithms: &[Algorithm],
    ) -> Option<Vec<String>> {
        let nonce = self.nonces.issue(&self.realm, now)?;
        let stale = if stale { ", stale=true" } else { "" };
        Some(
            algorithms
                .iter()
                .map(|a| {
                    format!(
                        "Digest realm=\"{}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"{stale}",
                        self.realm,
                        a.name()
                    )
                })
                .collect(),
        )
    }

    /// Whether `creds` answer a challenge of ours that is still valid (its
    /// nonce verifies and has not expired). One HMAC, no user lookup: cheap
    /// enough to tell, under overload, the second leg of a sign-in from a
    /// new request.
    pub fn answers_our_challenge(&self, creds: &AuthValue<'_>, now: u64) -> bool {
        creds.is_scheme("Digest")
            && creds.param("realm") == Some(self.realm.as_str())
            && creds.param("nonce").is_some_and(|n| {
                matches!(
                    self.nonces.check(n, &self.realm, now),
                    NonceState::Valid { .. }
                )
            })
    }

    /// Stand-in secrets for a user who does not exist: the same computation runs,
    /// and fails, as for a wrong password.
    fn stand_in(&self, username: &str) -> DigestSecrets {
        let tag = hmac::sign(&self.dummy, username.as_bytes());
        let t = tag.as_ref();
        let mut md5 = [0u8; 16];
        let mut sha256 = [0u8; 32];
        md5.copy_from_slice(&t[..16]);
        sha256.copy_from_slice(&t[..32]);
        DigestSecrets { md5, sha256 }
    }

    /// The user's secrets, or for a user who does not exist the stand-in.
    fn or_stand_in<'a>(
        &self,
        username: &str,
        secrets: Option<&'a DigestSecrets>,
    ) -> std::borrow::Cow<'a, DigestSecrets> {
        match secrets {
            Some(s) => std::borrow::Cow::Borrowed(s),
            None => std::borrow::Cow::Owned(self.stand_in(username)),
        }
    }

    /// Checks `creds` for a request with `method` and `request_uri`. `secrets` is
    /// the user's, or `None` if no such user exists (or it is disabled).
    pub fn verify(
        &self,
        creds: &AuthValue<'_>,
        method: &str,
        request_uri: &str,
        secrets: Option<&DigestSecrets>,
        now: u64,
    ) -> Result<Authenticated, Failure> {
        if !creds.is_scheme("Digest") {
            return Err(Failure::Malformed);
        }
        let p = |n: &str| creds.param(n);
        let (Some(username), Some(realm), Some(nonce), Some(uri), Some(response)) = (
            p("username"),
            p("realm"),
            p("nonce"),
            p("uri"),
            p("response"),
        ) else {
            return Err(Failure::Malformed);
        };
        let alg = Algorithm::parse(p("algorithm")).ok_or(Failure::Malformed)?;
        if !self.algorithms.contains(&alg) {
            return Err(Failure::Malformed);
        }
        let (Some(qop), Some(nc), Some(cnonce)) = (p("qop"), p("nc"), p("cnonce")) else {
            return Err(Failure::Malformed);
        };
        if !qop.eq_ignore_ascii_case("auth") || realm != self.realm || uri != request_uri {
            return Err(Failure::Malformed);
        }
        if nc.len() != 8 {
            return Err(Failure::Malformed);
        }
        let nc_value = u32::from_str_radix(nc, 16).map_err(|_| Failure::Malformed)?;
        let issued = match self.nonces.check(nonce, &self.realm, now) {
            NonceState::Valid { issued } => issued,
            NonceState::Stale => return Err(Failure::Stale),
            NonceState::Invalid => return Err(Failure::BadNonce),
        };
        let secrets = self.or_stand_in(username, secrets);
        let expected = expected_response(
            alg,
            secrets.ha1(alg),
            nonce,
            nc,
            cnonce,
            "auth",
            method,
            uri,
        );
        let matches = constant_time_eq(
            expected.as_bytes(),
            response.to_ascii_lowercase().as_bytes(),
        );
        if !matches {
            return Err(Failure::WrongResponse);
        }
        let fresh = self
            .counts
            .lock()
            .map(|mut c| c.accept(nonce, issued, nc_value))
            .unwrap_or(false);
        if !fresh {
            return Err(Failure::Replay);
        }
        Ok(Authenticated {
            username: username.to_owned(),
            algorithm: alg,
        })
    }

    /// Checks a password given in the clear (a sign-in over HTTPS) against
    /// the user's SHA-256 HA1. `secrets` is `None` for an unknown or disabled
    /// user: the same hash is computed and compared against a stand-in, so
    /// the answer and its timing do not tell the cases apart. The result is
    /// a [`PasswordProof`], which nothing else can construct.
    pub fn verify_password(
        &self,
        username: &str,
        password: &str,
        secrets: Option<&DigestSecrets>,
    ) -> Option<PasswordProof> {
        let secrets = self.or_stand_in(username, secrets);
        let given = ha1(Algorithm::Sha256, username, &self.realm, password);
        constant_time_eq(&given, secrets.ha1(Algorithm::Sha256)).then(|| PasswordProof {
            username: username.to_owned(),
        })
    }
}

/// Proof that a user's password was given. Only [`Verifier::verify_password`]
/// makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordProof {
    username: String,
}

impl PasswordProof {
    /// The digest username whose password was proven.
    pub fn username(&self) -> &str {
        &self.username
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7616_md5_and_sha256_vectors() {
        // RFC 7616 §3.9.1 (HTTP, but the computation is the same).
        let (user, realm, pw) = ("Mufasa", "http-auth@example.org", "Circle of Life");
        let nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        let md5 = expected_response(
            Algorithm::Md5,
            &ha1(Algorithm::Md5, user, realm, pw),
            nonce,
            "00000001",
            cnonce,
            "auth",
            "GET",
            "/dir/index.html",
        );
        assert_eq!(md5, "8ca523f5e9506fed4657c9700eebdbec");
        let sha = expected_response(
            Algorithm::Sha256,
            &ha1(Algorithm::Sha256, user, realm, pw),
            nonce,
            "00000001",
            cnonce,
            "auth",
            "GET",
            "/dir/index.html",
        );
        assert_eq!(
            sha,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    fn creds(
        v: &Verifier,
        alg: Algorithm,
        user: &str,
        pw: &str,
        nonce: &str,
        nc: &str,
        uri: &str,
    ) -> String {
        let h = ha1(alg, user, v.realm(), pw);
        let r = expected_response(alg, &h, nonce, nc, "c0ffee", "auth", "REGISTER", uri);
        format!(
            "Digest username=\"{user}\", realm=\"{}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{r}\", algorithm={}, qop=auth, nc={nc}, cnonce=\"c0ffee\"",
            v.realm(),
            alg.name()
        )
    }

    fn nonce_of(challenge: &str) -> String {
        challenge
            .split("nonce=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn verify_paths() {
        let v = Verifier::new(
            "example.com",
            &[3; 32],
            300,
            1000,
            &[Algorithm::Sha256, Algorithm::Md5],
        );
        let ch = v.challenges(1000, false).unwrap();
        assert!(ch[0].contains("algorithm=SHA-256") && ch[1].contains("algorithm=MD5"));
        let nonce = nonce_of(&ch[0]);
        let alice = DigestSecrets::from_password("alice", "example.com", "pw");
        let uri = "sip:example.com";
        let check = |s: &str, secrets: Option<&DigestSecrets>, now: u64| {
            let a = AuthValue::parse(s).unwrap();
            v.verify(&a, "REGISTER", uri, secrets, now)
        };
        for alg in [Algorithm::Sha256, Algorithm::Md5] {
            let nc = if alg == Algorithm::Sha256 {
                "00000001"
            } else {
                "00000002"
            };
            let ok = check(
                &creds(&v, alg, "alice", "pw", &nonce, nc, uri),
                Some(&alice),
                1010,
            )
            .unwrap();
            assert_eq!((ok.username(), ok.algorithm()), ("alice", alg));
        }
        // Replay of the same nc.
        assert_eq!(
            check(
                &creds(&v, Algorithm::Md5, "alice", "pw", &nonce, "00000002", uri),
                Some(&alice),
                1020
            ),
            Err(Failure::Replay)
        );
        // Wrong password, and an unknown user, fail the same way.
        assert_eq!(
            check(
                &creds(&v, Algorithm::Md5, "alice", "nope", &nonce, "00000003", uri),
                Some(&alice),
                1020
            ),
            Err(Failure::WrongResponse)
        );
        assert_eq!(
            check(
                &creds(&v, Algorithm::Md5, "ghost", "pw", &nonce, "00000004", uri),
                None,
                1020
            ),
            Err(Failure::WrongResponse)
        );
        // Expired nonce: stale, so the client retries without asking the user.
        assert_eq!(
            check(
                &creds(&v, Algorithm::Md5, "alice", "pw", &nonce, "00000005", uri),
                Some(&alice),
                2000
            ),
            Err(Failure::Stale)
        );
        // A URI other than the Request-URI, a foreign nonce, qop missing.
        assert_eq!(
            check(
                &creds(
                    &v,
                    Algorithm::Md5,
                    "alice",
                    "pw",
                    &nonce,
                    "00000006",
                    "sip:other"
                ),
                Some(&alice),
                1020
            ),
            Err(Failure::Malformed)
        );
        let foreign = Verifier::new("example.com", &[4; 32], 300, 10, &[Algorithm::Md5])
            .challenges(1000, false)
            .unwrap();
        assert_eq!(
            check(
                &creds(
                    &v,
                    Algorithm::Md5,
                    "alice",
                    "pw",
                    &nonce_of(&foreign[0]),
                    "00000001",
                    uri
                ),
                Some(&alice),
                1020
            ),
            Err(Failure::BadNonce)
        );
        let no_qop = creds(&v, Algorithm::Md5, "alice", "pw", &nonce, "00000007", uri)
            .replace(", qop=auth", "");
        assert_eq!(check(&no_qop, Some(&alice), 1020), Err(Failure::Malformed));
        let sess = creds(&v, Algorithm::Md5, "alice", "pw", &nonce, "00000008", uri)
            .replace("algorithm=MD5", "algorithm=MD5-sess");
        assert_eq!(check(&sess, Some(&alice), 1020), Err(Failure::Malformed));
        // An algorithm the server does not offer is refused even with the right password.
        let sha_only = Verifier::new("example.com", &[3; 32], 300, 1000, &[Algorithm::Sha256]);
        let md5_creds = creds(&v, Algorithm::Md5, "alice", "pw", &nonce, "00000009", uri);
        let a = AuthValue::parse(&md5_creds).unwrap();
        assert_eq!(
            sha_only.verify(&a, "REGISTER", uri, Some(&alice), 1020),
            Err(Failure::Malformed)
        );
        assert_eq!(sha_only.challenges(1000, false).unwrap().len(), 1);
    }

    #[test]
    fn passwords_in_the_clear() {
        let v = Verifier::new("example.com", &[3; 32], 300, 1000, &[Algorithm::Md5]);
        let alice = DigestSecrets::from_password("alice", "example.com", "pw");
        let proof = v.verify_password("alice", "pw", Some(&alice)).unwrap();
        assert_eq!(proof.username(), "alice");
        assert_eq!(v.verify_password("alice", "pW", Some(&alice)), None);
        assert_eq!(v.verify_password("alice", "", Some(&alice)), None);
        // Another user's name with alice's password: HA1 binds the name.
        assert_eq!(v.verify_password("bob", "pw", Some(&alice)), None);
        // Unknown users: compared with a stand-in, never accepted.
        assert_eq!(v.verify_password("nobody", "pw", None), None);
        assert_eq!(v.verify_password("nobody", "", None), None);
        // Another realm's HA1 does not verify here.
        let foreign = DigestSecrets::from_password("alice", "example.org", "pw");
        assert_eq!(v.verify_password("alice", "pw", Some(&foreign)), None);
    }
}
