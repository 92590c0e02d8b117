//! Authentication of requests from local users: the lockout gate first, then
//! digest (401 + WWW-Authenticate for REGISTER, 407 + Proxy-Authenticate for
//! everything else), with unknown and disabled users answered exactly like a
//! wrong password.

use auth::digest::Failure;
use auth::lockout::{Engaged, Gate};
use sip::headers::AuthValue;
use sip::HeaderKind;

use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;

use super::{Core, Req};
use crate::unix_now;

/// The outcome of a password sign-in on the user API, decided by the same
/// gates as a SIP sign-in: the per-address rate, the lockout filter, the
/// user table and the authentication policy.
#[derive(Debug)]
pub enum PasswordCheck {
    /// The password is right and the policy lets the user sign in with it.
    Valid(auth::digest::PasswordProof),
    /// Wrong password, unknown or disabled user (one answer for all three);
    /// counted by the lockout filter.
    Wrong,
    /// The lockout filter refuses this account from this address.
    LockedOut { retry_after: u64 },
    /// Too many unauthenticated requests from this address.
    RateLimited,
}

/// What a device certificate says about a request.
enum DeviceSignIn {
    /// None, not a valid device's, or not a method the policy allows here.
    NoCertificate,
    /// Signed in by the certificate.
    Signed,
    /// Refused, with this reason phrase.
    Refused(&'static str),
}

/// Which challenge family a request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Challenger {
    /// REGISTER: 401, WWW-Authenticate / Authorization.
    Registrar,
    /// Everything else: 407, Proxy-Authenticate / Proxy-Authorization.
    Proxy,
}

impl<S: store::Store> Core<S> {
    /// Proves that the request comes from `user` (AOR `aor`), then applies
    /// the client version rules (REGISTER and every request outside a
    /// dialog come here). Returns `true` to proceed; otherwise the request
    /// has been answered (challenge or refusal).
    pub(crate) async fn authenticate(
        &mut self,
        r: &Req<'_>,
        aor: &str,
        user: &str,
        how: Challenger,
    ) -> bool {
        self.prove(r, aor, user, how).await && self.client_version_allowed(r, aor).await
    }

    /// The client version policy for a signed-in user's request: `false`
    /// when refused (403 with a Warning naming where to get a client).
    async fn client_version_allowed(&mut self, r: &Req<'_>, aor: &str) -> bool {
        let ua = r
            .msg
            .typed::<sip::headers::UserAgent>()
            .ok()
            .flatten()
            .map(|u| u.0);
        let Err(blocked) = crate::policy_set::client_allowed(&self.policies, aor, ua) else {
            return true;
        };
        self.log_refusal(
            r,
            "the client version policy refuses this client",
            ua.unwrap_or(""),
        );
        let warning = format!(
            "399 {} \"This client version is not allowed{}{}\"",
            self.cfg.domain,
            if blocked.url.is_empty() {
                ""
            } else {
                "; get an approved client at "
            },
            blocked.url.replace(['"', '\\'], "")
        );
        self.reply(
            r,
            403,
            "Client Version Not Allowed",
            &[("Warning", warning.as_str())],
        )
        .await;
        false
    }

    async fn prove(&mut self, r: &Req<'_>, aor: &str, user: &str, how: Challenger) -> bool {
        match self.device_sign_in(r, aor) {
            DeviceSignIn::Signed => return true,
            DeviceSignIn::Refused(reason) => {
                self.reply(r, 403, reason, &[]).await;
                return false;
            }
            DeviceSignIn::NoCertificate => {}
        }
        if !crate::policy_set::any_digest_allowed(&self.policies, aor) {
            // Only a device certificate may sign this user in: no
            // challenge (a password would be refused whatever it is).
            self.log_refusal(
                r,
                "the authentication policy allows device certificates only, and the request has none",
                aor,
            );
            self.reply(r, 403, "Forbidden (Device Certificate Required)", &[])
                .await;
            return false;
        }
        let now = u64::try_from(unix_now()).unwrap_or(0);
        let ip = r.src.remote.ip();
        if !self.rate.allow(ip, std::time::Instant::now()) {
            self.metrics.rate_limited.fetch_add(1, Relaxed);
            self.reply(
                r,
                503,
                "Service Unavailable (Rate Limit Exceeded)",
                &[("Retry-After", "1")],
            )
            .await;
            return false;
        }
        if let Gate::Refuse { until } = self.filter.check(aor, ip, now) {
            let retry = until.saturating_sub(now).to_string();
            self.log_refusal(r, "locked out after repeated failed sign-ins", aor);
            self.reply(
                r,
                403,
                "Forbidden (Too Many Failed Sign-Ins)",
                &[("Retry-After", retry.as_str())],
            )
            .await;
            return false;
        }
        let header = match how {
            Challenger::Registrar => HeaderKind::Authorization,
            Challenger::Proxy => HeaderKind::ProxyAuthorization,
        };
        let realm = self.verifier.realm().to_owned();
        let creds = r
            .msg
            .headers_of(header)
            .filter_map(|h| AuthValue::parse(h.value).ok())
            .find(|a| a.param("realm") == Some(realm.as_str()));
        let Some(creds) = creds else {
            self.challenge(r, how, false).await;
            return false;
        };
        let encrypted = r.src.protocol.is_secure();
        if let Some(alg) = creds
            .param("algorithm")
            .and_then(|a| auth::digest::Algorithm::parse(Some(a)))
            .filter(|a| !self.cfg.digest.accepts(*a, encrypted))
        {
            // Refused before the password is looked at: the answer says
            // nothing about the user, and is not a failed sign-in.
            self.log_refusal(
                r,
                "digest algorithm not accepted on this transport",
                alg.name(),
            );
            let reason = if alg == auth::digest::Algorithm::Md5 && !encrypted {
                "Forbidden (MD5 Digest Needs TLS or WSS)"
            } else {
                "Forbidden (Digest Algorithm Not Accepted)"
            };
            self.reply(r, 403, reason, &[]).await;
            return false;
        }
        let secrets = self
            .users
            .get(aor)
            .filter(|u| u.enabled)
            .map(|u| u.secrets.clone());
        let method = r.f.method.as_str();
        let uri = r.msg.request_uri().unwrap_or("");
        match self
            .verifier
            .verify(&creds, method, uri, secrets.as_ref(), now)
        {
            Ok(a) if a.username() == user => {
                if !crate::policy_set::digest_allowed(&self.policies, aor, a.algorithm()) {
                    // The password was right; the policy refuses the method.
                    // Not a failed sign-in for the lockout filter.
                    self.log_refusal(
                        r,
                        "the authentication policy does not allow this digest algorithm",
                        a.algorithm().name(),
                    );
                    self.reply(
                        r,
                        403,
                        "Forbidden (Digest Algorithm Not Allowed by Policy)",
                        &[],
                    )
                    .await;
                    return false;
                }
                self.filter.success(aor, ip, now);
                self.edge_outcome.set(Some(true));
                if self.edges.is_edge(r.src.flow)
                    && !crate::policy_set::user_remote_access(&self.policies, aor)
                {
                    self.log_refusal(
                        r,
                        "remote access through the edge is not allowed for this user",
                        aor,
                    );
                    self.reply(r, 403, "Forbidden (Remote Access Not Allowed)", &[])
                        .await;
                    return false;
                }
                true
            }
            Ok(_) => {
                self.log_refusal(r, "the digest user name is not the sender", aor);
                self.failed(aor, r, now);
                self.reply(
                    r,
                    403,
                    "Forbidden (Credentials Do Not Match the Sender)",
                    &[],
                )
                .await;
                false
            }
            Err(Failure::Stale) => {
                self.challenge(r, how, true).await;
                false
            }
            Err(Failure::Malformed) => {
                let reason = match how {
                    Challenger::Registrar => "Malformed Authorization Header",
                    Challenger::Proxy => "Malformed Proxy-Authorization Header",
                };
                self.reply(r, 400, reason, &[]).await;
                false
            }
            Err(Failure::Replay) => {
                // The right answer to a nonce, sent again (SIP.js repeats
                // its last Authorization on every refresh): no password was
                // guessed, so not a failed sign-in; a fresh challenge.
                self.log_quirk(r, "a digest answer sent again (nonce count not increased)");
                self.challenge(r, how, false).await;
                false
            }
            Err(e) => {
                let cause = match e {
                    Failure::WrongResponse => "wrong password, or no such user",
                    _ => "a nonce this server did not issue",
                };
                self.log_refusal(r, cause, aor);
                self.failed(aor, r, now);
                self.challenge(r, how, false).await;
                false
            }
        }
    }

    /// A request over a connection whose peer presented a valid device
    /// certificate: signed in without digest when the policy lists
    /// `client-certificate` and the certificate's user is the sender (the
    /// AOR, and From). Without a valid device certificate, or where the
    /// policy does not list the method, digest decides.
    fn device_sign_in(&mut self, r: &Req<'_>, aor: &str) -> DeviceSignIn {
        // Through an edge: the certificate the client presented there (the
        // edge proved the client holds its key); one known here signs in,
        // an organisation's not seen here yet does not (the edge does not
        // pass on its chain).
        let (fingerprint, leaf) = if self.edges.is_edge(r.src.flow) {
            match self.edge_device {
                Some(f) => (f, None),
                None => return DeviceSignIn::NoCertificate,
            }
        } else {
            match r.src.peer_certificates.as_ref().and_then(|c| c.first()) {
                Some(leaf) => (pki::fingerprint(leaf), Some(leaf)),
                None => return DeviceSignIn::NoCertificate,
            }
        };
        let device = match (self.devices.get(&fingerprint), leaf) {
            (Some(d), _) => d,
            (None, Some(leaf)) => match self.org_certificate(r, leaf, fingerprint) {
                Some(d) => d,
                None => return DeviceSignIn::NoCertificate,
            },
            (None, None) => return DeviceSignIn::NoCertificate,
        };
        if !crate::policy_set::certificate_allowed(&self.policies, aor) {
            return DeviceSignIn::NoCertificate;
        }
        let from = self.local_sender(r).map(|(a, _)| a);
        if device.aor != aor || from.as_deref() != Some(aor) {
            self.log_refusal(r, "the device certificate is another user's", &device.aor);
            return DeviceSignIn::Refused("Forbidden (Certificate Does Not Match the Sender)");
        }
        if !self.users.get(aor).is_some_and(|u| u.enabled) {
            // Revocation goes with disabling (and an organisation's
            // certificate may name a user who does not exist here).
            self.log_refusal(r, "the certificate's user is disabled or unknown", aor);
            return DeviceSignIn::Refused("Forbidden (Account Disabled or Unknown)");
        }
        if let (Some(leaf), true) = (
            leaf,
            device.org.is_some() && self.devices.get(&fingerprint).is_none(),
        ) {
            // First use of the organisation's certificate: recorded as one
            // of the user's devices (listed, revocable here).
            self.record_org_device(leaf, fingerprint, &device);
        }
        let ua = r
            .msg
            .typed::<sip::headers::UserAgent>()
            .ok()
            .flatten()
            .map(|u| u.0.to_owned());
        self.device_seen(fingerprint, ua);
        DeviceSignIn::Signed
    }

    /// A password sign-in from `ip` for `aor` (a user of this domain):
    /// through the same rate limit and lockout filter as SIP, so the user
    /// API is no way around either; a failure counts toward the same
    /// lockout.
    pub(crate) fn check_password(
        &mut self,
        aor: &str,
        ip: IpAddr,
        password: &str,
        then_second_factor: bool,
    ) -> PasswordCheck {
        let now = u64::try_from(unix_now()).unwrap_or(0);
        if !self.rate.allow(ip, std::time::Instant::now()) {
            self.metrics.rate_limited.fetch_add(1, Relaxed);
            return PasswordCheck::RateLimited;
        }
        if let Gate::Refuse { until } = self.filter.check(aor, ip, now) {
            return PasswordCheck::LockedOut {
                retry_after: until.saturating_sub(now),
            };
        }
        let user = aor
            .strip_prefix("sip:")
            .and_then(|r| r.split_once('@'))
            .map_or(aor, |(u, _)| u);
        let secrets = self
            .users
            .get(aor)
            .filter(|u| u.enabled)
            .map(|u| &u.secrets);
        match self.verifier.verify_password(user, password, secrets) {
            Some(proof) => {
                // Whatever the SIP methods: the user page is where a
                // password (and TOTP where policy asks) gets a device its
                // certificate. With a second factor to come, success is
                // only declared once it passes.
                if !then_second_factor {
                    self.filter.success(aor, ip, now);
                }
                PasswordCheck::Valid(proof)
            }
            None => {
                self.failed_from(aor, ip, now);
                PasswordCheck::Wrong
            }
        }
    }

    /// Records a device's sign-in in the store, at most once a minute per
    /// device and only when a write slot is free (best effort: the list's
    /// "last seen" is for people, not for security).
    fn device_seen(&mut self, fingerprint: [u8; 32], user_agent: Option<String>) {
        let now = std::time::Instant::now();
        if self
            .device_seen
            .get(&fingerprint)
            .is_some_and(|t| now.duration_since(*t) < std::time::Duration::from_secs(60))
        {
            return;
        }
        if self.device_seen.len() >= 65_536 {
            self.device_seen
                .retain(|_, t| now.duration_since(*t) < std::time::Duration::from_secs(60));
        }
        let Some(permit) = self.writes.try_acquire() else {
            return;
        };
        self.device_seen.insert(fingerprint, now);
        let store = self.store.clone();
        let fp = pki::hex(&fingerprint);
        let at = unix_now();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = store::Devices::touch_device(&store, &fp, at, user_agent).await {
                tracing::warn!(error = %e, "could not record a device's sign-in");
            }
        });
    }

    async fn challenge(&mut self, r: &Req<'_>, how: Challenger, stale: bool) {
        let now = u64::try_from(unix_now()).unwrap_or(0);
        let user_agent = r
            .msg
            .typed::<sip::headers::UserAgent>()
            .ok()
            .flatten()
            .map(|u| u.0);
        let offer = self
            .cfg
            .digest
            .challenge(r.src.protocol.is_secure(), user_agent);
        let Some(challenges) = self.verifier.challenges_with(now, stale, &offer) else {
            return self
                .reply(r, 500, "Server Internal Error (No Randomness)", &[])
                .await;
        };
        let (status, reason, name) = match how {
            Challenger::Registrar => (401, "Unauthorized", "WWW-Authenticate"),
            Challenger::Proxy => (407, "Proxy Authentication Required", "Proxy-Authenticate"),
        };
        let extra: Vec<(&str, &str)> = challenges.iter().map(|c| (name, c.as_str())).collect();
        // A challenge to a non-INVITE is not kept for timer J: a retransmitted
        // request simply gets a fresh challenge. Half of all REGISTER and
        // MESSAGE transactions are challenges. An INVITE's challenge stays
        // stateful (its ACK is absorbed).
        if r.f.method == sip::Method::Invite {
            return self.reply(r, status, reason, &extra).await;
        }
        let bytes = self.build(r, status, reason, &extra);
        self.metrics
            .count_response(crate::metrics::method_label(r.f.method), status);
        self.txn.respond_and_forget(
            r.id,
            status,
            bytes,
            std::time::Instant::now(),
            &mut self.out,
        );
        self.flush().await;
    }

    /// The second factor after a right password on the user API.
    pub(crate) fn second_factor(&mut self, aor: &str, ip: IpAddr, passed: bool) {
        let now = u64::try_from(unix_now()).unwrap_or(0);
        if passed {
            self.filter.success(aor, ip, now);
        } else {
            self.failed_from(aor, ip, now);
        }
    }

    fn failed(&mut self, aor: &str, r: &Req<'_>, now: u64) {
        self.failed_from(aor, r.src.remote.ip(), now);
    }

    pub(crate) fn failed_from(&mut self, aor: &str, ip: IpAddr, now: u64) {
        self.metrics.auth_failures.fetch_add(1, Relaxed);
        self.edge_outcome.set(Some(false));
        let limits = crate::policy_set::lockout_limits(&self.policies, aor, *self.filter.config());
        for e in self.filter.failure_with(aor, ip, now, &limits) {
            self.metrics.lockouts.fetch_add(1, Relaxed);
            match e {
                Engaged::Source {
                    account,
                    source,
                    until,
                } => {
                    tracing::warn!(%account, %source, until, "lockout: address refused for this account after repeated failures")
                }
                Engaged::Account { account, until } => {
                    tracing::warn!(%account, until, "lockout: account refused to unfamiliar addresses after failures from many")
                }
            }
        }
        // In a pool whose nodes all serve, the others count this failure
        // as soon as it is saved: save now rather than within the second.
        if !self.pool.node.is_empty() {
            self.save_lockouts();
        }
    }
}
