//! Signing in over HTTP with SIP credentials: the file-transfer server
//! answers Linphone's uploads and downloads with an HTTP Digest challenge
//! (RFC 7616) in the SIP realm, as its SIP account expects, or takes a
//! device certificate the TLS handshake verified. Through the same gates
//! as a SIP sign-in — the per-address rate, the lockout filter, the user
//! table, the authentication policy — so HTTP is no way around any of
//! them, and a failure counts toward the same lockout.

use auth::digest::Failure;
use auth::lockout::Gate;
use sip::headers::AuthValue;
use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;

use super::Core;
use crate::unix_now;

/// One HTTP request's credentials.
#[derive(Debug)]
pub struct HttpCredentials {
    pub method: String,
    /// The request target as sent (path and query): digest's `uri`.
    pub uri: String,
    /// The `Authorization` header's value, if any.
    pub authorization: Option<String>,
    pub source: IpAddr,
    /// The SHA-256 of the client certificate the handshake verified.
    pub device: Option<[u8; 32]>,
}

/// The outcome of [`HttpCredentials`].
#[derive(Debug, PartialEq, Eq)]
pub enum HttpSignIn {
    /// Signed in as this address of record (`by_certificate`: a device's),
    /// with the user's file-transfer rules and limits as the policy says
    /// now (so the file server need not load the policies itself).
    Signed {
        aor: String,
        by_certificate: bool,
        rules: content::files::FileRules,
        limits: crate::policy_set::FileLimits,
    },
    /// 401 with these `WWW-Authenticate` values (no credentials, a wrong
    /// password, a stale nonce).
    Challenge(Vec<String>),
    /// Refused without a challenge: the status, why, and for a lockout or
    /// the rate limit when to try again.
    Refused {
        status: u16,
        detail: &'static str,
        retry_after: Option<u64>,
    },
}

fn refused(status: u16, detail: &'static str) -> HttpSignIn {
    HttpSignIn::Refused {
        status,
        detail,
        retry_after: None,
    }
}

impl<S: store::Store> Core<S> {
    /// Decides an HTTP request's sign-in.
    pub(crate) fn http_sign_in(&mut self, c: &HttpCredentials) -> HttpSignIn {
        let now = u64::try_from(unix_now()).unwrap_or(0);
        if let Some(device) = c.device.and_then(|fp| self.devices.get(&fp)) {
            let enabled = self.users.get(&device.aor).is_some_and(|u| u.enabled);
            if enabled && crate::policy_set::certificate_allowed(&self.policies, &device.aor) {
                return self.signed(device.aor, true);
            }
        }
        let outcome = self.http_digest(c, now);
        // What is not a sign-in (a challenge, a refusal) counts toward the
        // address's rate of unauthenticated requests, as in SIP; beyond
        // it, 503. A client that signs in is not held to it (an upload is
        // two requests, the challenge and the answer).
        if !matches!(outcome, HttpSignIn::Signed { .. })
            && !self.rate.allow(c.source, std::time::Instant::now())
        {
            self.metrics.rate_limited.fetch_add(1, Relaxed);
            return HttpSignIn::Refused {
                status: 503,
                detail: "too many sign-in attempts from this address; try again shortly",
                retry_after: Some(1),
            };
        }
        outcome
    }

    fn signed(&self, aor: String, by_certificate: bool) -> HttpSignIn {
        HttpSignIn::Signed {
            rules: crate::policy_set::file_rules(&self.policies, &aor, false),
            limits: crate::policy_set::file_limits(&self.policies, &aor),
            aor,
            by_certificate,
        }
    }

    fn http_digest(&mut self, c: &HttpCredentials, now: u64) -> HttpSignIn {
        let realm = self.verifier.realm().to_owned();
        let creds = c
            .authorization
            .as_deref()
            .and_then(|h| AuthValue::parse(h).ok())
            .filter(|a| a.param("realm") == Some(realm.as_str()));
        let challenge = |core: &Self, stale: bool| {
            let offer = core.cfg.digest.accepted(true);
            match core.verifier.challenges_with(now, stale, &offer) {
                Some(v) => HttpSignIn::Challenge(v),
                None => refused(500, "no randomness for a challenge"),
            }
        };
        let Some(creds) = creds else {
            return challenge(self, false);
        };
        let Some(user) = creds.param("username").map(str::to_owned) else {
            return refused(400, "the Authorization header has no username");
        };
        let aor = format!("sip:{user}@{}", self.cfg.domain);
        if !crate::policy_set::any_digest_allowed(&self.policies, &aor) {
            return refused(
                403,
                "the authentication policy allows device certificates only",
            );
        }
        if let Gate::Refuse { until } = self.filter.check(&aor, c.source, now) {
            return HttpSignIn::Refused {
                status: 403,
                detail: "too many failed sign-ins; try again later",
                retry_after: Some(until.saturating_sub(now)),
            };
        }
        if let Some(alg) = creds
            .param("algorithm")
            .and_then(|a| auth::digest::Algorithm::parse(Some(a)))
        {
            if !self.cfg.digest.accepts(alg, true) {
                return refused(403, "this digest algorithm is not accepted");
            }
        }
        let secrets = self
            .users
            .get(&aor)
            .filter(|u| u.enabled)
            .map(|u| u.secrets.clone());
        match self
            .verifier
            .verify(&creds, &c.method, &c.uri, secrets.as_ref(), now)
        {
            Ok(a) => {
                if !crate::policy_set::digest_allowed(&self.policies, &aor, a.algorithm()) {
                    return refused(
                        403,
                        "the authentication policy does not allow this digest algorithm",
                    );
                }
                self.filter.success(&aor, c.source, now);
                self.signed(aor, false)
            }
            Err(Failure::Stale) => challenge(self, true),
            Err(Failure::Malformed) => refused(400, "the Authorization header is malformed"),
            Err(Failure::Replay) => challenge(self, false),
            Err(_) => {
                self.failed_from(&aor, c.source, now);
                challenge(self, false)
            }
        }
    }
}
