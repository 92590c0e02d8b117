//! Bring your own PKI: client certificates from the organisation's CA.
//!
//! A certificate that chains to one of the organisation's CAs (with
//! clientAuth, or no extended key usage) signs its user in like a device
//! certificate Parapet issued. Its user is the one a subject alternative
//! name gives (`sip:` URI, e-mail, or Microsoft UPN, as configured), in
//! this server's domain. Where revocation lists are configured, every
//! certificate of the chain must be covered by a current list and not on
//! it (fail closed: a list that could not be fetched and has expired
//! refuses everyone, rather than admitting the revoked); lists are
//! replaced whole when fetched again ([`OrgTrust::set_crls`]).

use std::sync::{Arc, RwLock};

use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use webpki::{CertRevocationList, OwnedCertRevocationList};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Which subject alternative name names the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapBy {
    SipUri,
    Email,
    Upn,
}

/// Microsoft's User Principal Name otherName.
const UPN: &str = "1.3.6.1.4.1.311.20.2.3";

/// The largest revocation list accepted, in bytes.
pub const MAX_CRL: usize = 16 * 1024 * 1024;

/// The organisation's CAs and revocation lists.
#[derive(Debug)]
pub struct OrgTrust {
    anchors: Vec<TrustAnchor<'static>>,
    map_by: MapBy,
    /// This server's SIP domain: the users certificates may name.
    domain: String,
    /// Revocation is checked (lists are configured).
    revocation: bool,
    crls: RwLock<Arc<Vec<CertRevocationList<'static>>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

/// Reads revocation lists: DER, or PEM with one or more `X509 CRL` blocks.
pub fn parse_crls(bytes: &[u8]) -> Result<Vec<CertRevocationList<'static>>, String> {
    use rustls_pki_types::pem::PemObject;
    if bytes.len() > MAX_CRL {
        return Err(format!("larger than {MAX_CRL} bytes"));
    }
    let ders: Vec<Vec<u8>> = if bytes.starts_with(b"-----") {
        rustls_pki_types::CertificateRevocationListDer::pem_slice_iter(bytes)
            .map(|c| c.map(|c| c.as_ref().to_vec()))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("PEM: {e}"))?
    } else {
        vec![bytes.to_vec()]
    };
    if ders.is_empty() {
        return Err("no X509 CRL block".into());
    }
    ders.iter()
        .map(|d| {
            OwnedCertRevocationList::from_der(d)
                .map(CertRevocationList::from)
                .map_err(|e| format!("not a revocation list: {e}"))
        })
        .collect()
}

impl OrgTrust {
    /// Trusts `cas` for users' certificates; `revocation`: lists are
    /// configured, so a certificate no current list covers is refused.
    pub fn new(
        cas: &[CertificateDer<'_>],
        map_by: MapBy,
        revocation: bool,
        domain: &str,
    ) -> Result<Arc<OrgTrust>, String> {
        if cas.is_empty() {
            return Err("no CA certificate in client_certificates.trusted_cas".into());
        }
        let anchors = cas
            .iter()
            .enumerate()
            .map(|(i, c)| {
                webpki::anchor_from_trusted_cert(c)
                    .map(|a| a.to_owned())
                    .map_err(|e| format!("CA certificate {} is unusable: {e}", i + 1))
            })
            .collect::<Result<_, _>>()?;
        Ok(Arc::new(OrgTrust {
            anchors,
            map_by,
            domain: domain.to_ascii_lowercase(),
            revocation,
            crls: RwLock::new(Arc::new(Vec::new())),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        }))
    }

    /// Uses these lists from now on (all of them, replacing the previous).
    pub fn set_crls(&self, crls: Vec<CertRevocationList<'static>>) {
        if let Ok(mut c) = self.crls.write() {
            *c = Arc::new(crls);
        }
    }

    /// Whether `end_entity` chains to the organisation's CAs for client
    /// authentication and (where lists are configured) is not revoked.
    pub fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), webpki::Error> {
        let cert = webpki::EndEntityCert::try_from(end_entity)?;
        let crls = self.crls.read().map(|c| c.clone()).unwrap_or_default();
        let refs: Vec<&CertRevocationList<'_>> = crls.iter().collect();
        let revocation = if self.revocation {
            match webpki::RevocationOptionsBuilder::new(&refs) {
                Ok(b) => Some(
                    b.with_depth(webpki::RevocationCheckDepth::Chain)
                        .with_status_policy(webpki::UnknownStatusPolicy::Deny)
                        .with_expiration_policy(webpki::ExpirationPolicy::Enforce)
                        .build(),
                ),
                // Lists configured, none held: nobody is admitted.
                Err(_) => return Err(webpki::Error::UnknownRevocationStatus),
            }
        } else {
            None
        };
        cert.verify_for_usage(
            self.provider.signature_verification_algorithms.all,
            &self.anchors,
            intermediates,
            now,
            webpki::KeyUsage::client_auth(),
            revocation,
            None,
        )
        .map(|_| ())
    }

    /// What a client certificate is to the organisation: a user's
    /// ([`Verdict::User`]), refused because its revocation status says
    /// so ([`Verdict::Revoked`]: the chain reached the organisation's CA),
    /// or not a user's certificate of the organisation at all
    /// ([`Verdict::NotOurs`]: another CA's, or the organisation's CA
    /// certifying a server, which partners' verifier then decides).
    pub fn classify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Verdict {
        match self.verify(end_entity, intermediates, now) {
            Ok(()) => match self.user_of(end_entity) {
                Ok(aor) => Verdict::User(aor),
                Err(_) => Verdict::NotOurs(None),
            },
            Err(e) if is_revocation(&e) => Verdict::Revoked(e),
            Err(webpki::Error::UnknownIssuer | webpki::Error::InvalidSignatureForPublicKey) => {
                Verdict::NotOurs(None)
            }
            Err(e) => Verdict::NotOurs(Some(e)),
        }
    }

    /// The user (`sip:user@domain`) a certificate names in this server's
    /// domain, by the configured subject alternative name; the error says
    /// why none.
    pub fn user_of(&self, leaf: &[u8]) -> Result<String, String> {
        let domain = self.domain.as_str();
        let (_, x) = X509Certificate::from_der(leaf).map_err(|e| format!("unreadable: {e}"))?;
        let san = x
            .subject_alternative_name()
            .map_err(|e| format!("subject alternative names unreadable: {e}"))?
            .ok_or("no subject alternative name")?;
        let mut found = Vec::new();
        for n in &san.value.general_names {
            let addr = match (self.map_by, n) {
                (MapBy::SipUri, GeneralName::URI(u)) => u.strip_prefix("sip:").map(str::to_string),
                (MapBy::Email, GeneralName::RFC822Name(e)) => Some((*e).to_string()),
                (MapBy::Upn, GeneralName::OtherName(oid, value)) if oid.to_id_string() == UPN => {
                    upn_text(value)
                }
                _ => None,
            };
            if let Some(a) = addr {
                found.push(a);
            }
        }
        let ours: Vec<String> = found
            .iter()
            .filter_map(|a| {
                let (user, host) = a.rsplit_once('@')?;
                (host.eq_ignore_ascii_case(domain) && valid_user(user))
                    .then(|| format!("sip:{user}@{domain}"))
            })
            .collect();
        match ours.as_slice() {
            [one] => Ok(one.clone()),
            [] if found.is_empty() => Err(format!(
                "no {} subject alternative name",
                match self.map_by {
                    MapBy::SipUri => "sip: URI",
                    MapBy::Email => "e-mail",
                    MapBy::Upn => "UPN",
                }
            )),
            [] => Err(format!("names no user of {domain} ({})", found.join(", "))),
            _ => Err(format!("names several users ({})", ours.join(", "))),
        }
    }
}

/// See [`OrgTrust::classify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The organisation's certificate of this user (`sip:user@domain`).
    User(String),
    /// It chains to the organisation's CA, and its revocation status
    /// refuses it (revoked, or no current list covers it).
    Revoked(webpki::Error),
    /// Not a user's certificate of the organisation; with the error it
    /// met when it seemed the organisation's (expired, wrong usage), for
    /// the log if nothing else accepts it.
    NotOurs(Option<webpki::Error>),
}

/// Errors of the revocation check (which runs only on a chain that
/// reached one of the organisation's CAs).
fn is_revocation(e: &webpki::Error) -> bool {
    use webpki::Error as E;
    matches!(
        e,
        E::CertRevoked
            | E::UnknownRevocationStatus
            | E::CrlExpired { .. }
            | E::InvalidCrlNumber
            | E::InvalidCrlSignatureForPublicKey
            | E::IssuerNotCrlSigner
            | E::UnsupportedCrlIssuingDistributionPoint
            | E::UnsupportedCrlVersion
            | E::UnsupportedDeltaCrl
            | E::UnsupportedIndirectCrl
            | E::UnsupportedRevocationReason
            | E::UnsupportedRevocationReasonsPartitioning
            | E::UnsupportedCrlSignatureAlgorithmContext(_)
            | E::UnsupportedCrlSignatureAlgorithmForPublicKeyContext(_)
    )
}

/// A user name as a SIP URI carries it: 1-64 of letters, digits and
/// `. _ ~ -` (the characters Parapet's user names use).
fn valid_user(u: &str) -> bool {
    (1..=64).contains(&u.len())
        && u.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._~-".contains(&b))
}

/// The UTF8String inside a UPN otherName value (`[0] EXPLICIT
/// UTF8String`, or the string alone).
fn upn_text(value: &[u8]) -> Option<String> {
    let inner = match value {
        [0xa0, len, rest @ ..] if usize::from(*len) == rest.len() => rest,
        v => v,
    };
    match inner {
        [0x0c, len, s @ ..] if usize::from(*len) == s.len() => {
            std::str::from_utf8(s).ok().map(str::to_string)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    struct Org {
        ca: rcgen::Certificate,
        key: rcgen::KeyPair,
    }

    fn org() -> Org {
        org_named("Org Test CA")
    }

    fn org_named(name: &str) -> Org {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        Org {
            ca: p.self_signed(&key).unwrap(),
            key,
        }
    }

    fn user_cert(org: &Org, sans: Vec<rcgen::SanType>, serial: u8) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.subject_alt_names = sans;
        p.serial_number = Some(rcgen::SerialNumber::from(vec![serial]));
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        p.signed_by(&key, &org.ca, &org.key).unwrap().der().clone()
    }

    fn crl(org: &Org, revoked: &[u8]) -> CertRevocationList<'static> {
        let now = time::OffsetDateTime::now_utc();
        let p = rcgen::CertificateRevocationListParams {
            this_update: now - time::Duration::minutes(1),
            next_update: now + time::Duration::days(1),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|s| rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from(vec![*s]),
                    revocation_time: now - time::Duration::minutes(1),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let der = p.signed_by(&org.ca, &org.key).unwrap();
        parse_crls(der.der()).unwrap().pop().unwrap()
    }

    fn email(e: &str) -> rcgen::SanType {
        rcgen::SanType::Rfc822Name(e.try_into().unwrap())
    }

    #[test]
    fn a_certificate_of_the_organisation_maps_to_its_user() {
        let o = org();
        let t = OrgTrust::new(&[o.ca.der().clone()], MapBy::Email, false, "example.test").unwrap();
        let c = user_cert(&o, vec![email("carol@Example.test")], 1);
        t.verify(&c, &[], UnixTime::now()).unwrap();
        assert_eq!(t.user_of(&c).unwrap(), "sip:carol@example.test");
        let other = user_cert(&o, vec![email("carol@elsewhere.test")], 2);
        assert!(t.user_of(&other).unwrap_err().contains("names no user"));
        let uri =
            OrgTrust::new(&[o.ca.der().clone()], MapBy::SipUri, false, "example.test").unwrap();
        let c = user_cert(
            &o,
            vec![rcgen::SanType::URI(
                "sip:dave@example.test".try_into().unwrap(),
            )],
            3,
        );
        assert_eq!(uri.user_of(&c).unwrap(), "sip:dave@example.test");
        assert!(t.user_of(&c).unwrap_err().contains("no e-mail"));
        let two = user_cert(
            &o,
            vec![email("a@example.test"), email("b@example.test")],
            4,
        );
        assert!(t.user_of(&two).unwrap_err().contains("several"));
        // Another CA's certificate does not chain.
        let stranger = org_named("Stranger CA");
        let s = user_cert(&stranger, vec![email("carol@example.test")], 1);
        assert_eq!(
            t.verify(&s, &[], UnixTime::now()),
            Err(webpki::Error::UnknownIssuer)
        );
    }

    #[test]
    fn upn_names_are_read_from_their_other_name() {
        // [0] { UTF8String "erin@example.test" }
        let mut v = vec![0xa0, 19, 0x0c, 17];
        v.extend_from_slice(b"erin@example.test");
        assert_eq!(upn_text(&v).as_deref(), Some("erin@example.test"));
        assert_eq!(upn_text(&[0xa0, 5, 0x0c, 1]), None);
    }

    #[test]
    fn revocation_lists_refuse_the_revoked_and_everyone_when_missing() {
        let o = org();
        let t = OrgTrust::new(&[o.ca.der().clone()], MapBy::Email, true, "example.test").unwrap();
        let good = user_cert(&o, vec![email("carol@example.test")], 7);
        let bad = user_cert(&o, vec![email("dave@example.test")], 9);
        // Lists configured, none fetched yet: fail closed.
        assert!(t.verify(&good, &[], UnixTime::now()).is_err());
        t.set_crls(vec![crl(&o, &[9])]);
        t.verify(&good, &[], UnixTime::now()).unwrap();
        assert_eq!(
            t.verify(&bad, &[], UnixTime::now()),
            Err(webpki::Error::CertRevoked)
        );
        // The revoked are refused, not handed on to partners' verifier;
        // a certificate of the CA naming nobody here (a server's) is.
        assert_eq!(
            t.classify(&bad, &[], UnixTime::now()),
            Verdict::Revoked(webpki::Error::CertRevoked)
        );
        assert_eq!(
            t.classify(&good, &[], UnixTime::now()),
            Verdict::User("sip:carol@example.test".into())
        );
        let server = user_cert(&o, vec![email("sip@partner.test")], 8);
        assert_eq!(
            t.classify(&server, &[], UnixTime::now()),
            Verdict::NotOurs(None)
        );
        let stranger = org_named("Stranger CA");
        let s = user_cert(&stranger, vec![email("carol@example.test")], 7);
        assert_eq!(t.classify(&s, &[], UnixTime::now()), Verdict::NotOurs(None));
        assert!(parse_crls(b"garbage").is_err());
        assert!(parse_crls(b"-----BEGIN X509 CRL-----\n-----END X509 CRL-----\n").is_err());
    }
}
