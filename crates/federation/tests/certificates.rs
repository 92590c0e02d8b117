//! A table of generated certificates, each accepted or refused for the
//! partner domain `partner.test` as RFC 5922 says, through the verifiers a
//! partner connection uses (inbound: the partner is the TLS client;
//! outbound: we are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use federation::identity::{identities, Source};
use federation::verifier::PartnerTrust;

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, Ia5String,
    IsCa, KeyPair, SanType,
};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, Error, RootCertStore};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

const DOMAIN: &str = "partner.test";

/// What, the certificate, the inbound chain's verdict, whether its identity
/// covers DOMAIN, the outbound verdict.
type Case = (
    &'static str,
    CertificateDer<'static>,
    Result<(), Error>,
    bool,
    Result<(), Error>,
);

struct Ca {
    cert: Certificate,
    key: KeyPair,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    Ca {
        cert: p.self_signed(&key).unwrap(),
        key,
    }
}

#[derive(Default)]
struct Leaf {
    uris: &'static [&'static str],
    dns: &'static [&'static str],
    cn: Option<&'static str>,
    eku: &'static [ExtendedKeyUsagePurpose],
    expired: bool,
}

fn leaf(issuer: &Ca, l: &Leaf) -> CertificateDer<'static> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.subject_alt_names = l
        .uris
        .iter()
        .map(|u| SanType::URI(Ia5String::try_from(*u).unwrap()))
        .chain(
            l.dns
                .iter()
                .map(|d| SanType::DnsName(Ia5String::try_from(*d).unwrap())),
        )
        .collect();
    if let Some(cn) = l.cn {
        p.distinguished_name.push(DnType::CommonName, cn);
    }
    p.extended_key_usages = l.eku.to_vec();
    let now = time::OffsetDateTime::now_utc();
    if l.expired {
        p.not_before = now - time::Duration::days(30);
        p.not_after = now - time::Duration::days(1);
    } else {
        p.not_before = now - time::Duration::days(1);
        p.not_after = now + time::Duration::days(30);
    }
    let key = KeyPair::generate().unwrap();
    p.signed_by(&key, &issuer.cert, &issuer.key)
        .unwrap()
        .der()
        .clone()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Inbound: (chain accepted, identity covers DOMAIN). Outbound: the
/// verifier's verdict for DOMAIN.
fn judge(
    trust: &PartnerTrust,
    cert: &CertificateDer<'static>,
) -> (Result<(), Error>, bool, Result<(), Error>) {
    let now = UnixTime::now();
    let inbound = trust
        .inbound()
        .verify_client_cert(cert, &[], now)
        .map(|_| ());
    let covers = identities(cert).map(|i| i.covers(DOMAIN)).unwrap_or(false);
    let name = ServerName::try_from(DOMAIN).unwrap();
    let outbound = trust
        .outbound()
        .verify_server_cert(cert, &[], &name, &[], now)
        .map(|_| ());
    (inbound, covers, outbound)
}

#[test]
fn certificates_are_accepted_or_refused_as_rfc_5922_says() {
    use ExtendedKeyUsagePurpose::{ClientAuth, CodeSigning, ServerAuth};
    let ours = ca("partner CA");
    let stranger = ca("unknown CA");
    let trust = PartnerTrust::new(&[ours.cert.der().clone()], provider()).unwrap();
    let not_for_name = Err(Error::InvalidCertificate(CertificateError::NotValidForName));
    let bad_purpose = Err(Error::InvalidCertificate(CertificateError::InvalidPurpose));
    let unknown = Err(Error::InvalidCertificate(CertificateError::UnknownIssuer));
    let expired = Err(Error::InvalidCertificate(CertificateError::Expired));
    // (what, certificate, inbound chain, inbound identity, outbound)
    let cases: Vec<Case> = vec![
        (
            "URI SAN sip:partner.test",
            leaf(
                &ours,
                &Leaf {
                    uris: &["sip:partner.test"],
                    eku: &[ServerAuth, ClientAuth],
                    ..Leaf::default()
                },
            ),
            Ok(()),
            true,
            Ok(()),
        ),
        (
            "URI SAN in another case",
            leaf(
                &ours,
                &Leaf {
                    uris: &["sip:Partner.TEST"],
                    ..Leaf::default()
                },
            ),
            Ok(()),
            true,
            Ok(()),
        ),
        (
            "DNS SAN only",
            leaf(
                &ours,
                &Leaf {
                    dns: &["partner.test"],
                    ..Leaf::default()
                },
            ),
            Ok(()),
            true,
            Ok(()),
        ),
        (
            "a sip: URI for another domain hides a matching DNS SAN",
            leaf(
                &ours,
                &Leaf {
                    uris: &["sip:other.test"],
                    dns: &["partner.test"],
                    ..Leaf::default()
                },
            ),
            Ok(()),
            false,
            not_for_name.clone(),
        ),
        (
            "wildcard DNS SAN",
            leaf(
                &ours,
                &Leaf {
                    dns: &["*.test"],
                    ..Leaf::default()
                },
            ),
            Ok(()),
            false,
            not_for_name.clone(),
        ),
        (
            "CN only, no subjectAltName",
            leaf(
                &ours,
                &Leaf {
                    cn: Some("partner.test"),
                    ..Leaf::default()
                },
            ),
            Ok(()),
            true,
            Ok(()),
        ),
        (
            "CN ignored when subjectAltNames exist",
            leaf(
                &ours,
                &Leaf {
                    cn: Some("partner.test"),
                    dns: &["other.test"],
                    ..Leaf::default()
                },
            ),
            Ok(()),
            false,
            not_for_name.clone(),
        ),
        (
            "wrong domain",
            leaf(
                &ours,
                &Leaf {
                    uris: &["sip:other.test"],
                    ..Leaf::default()
                },
            ),
            Ok(()),
            false,
            not_for_name.clone(),
        ),
        (
            "user part in the URI",
            leaf(
                &ours,
                &Leaf {
                    uris: &["sip:alice@partner.test"],
                    ..Leaf::default()
                },
            ),
            Ok(()),
            false,
            not_for_name.clone(),
        ),
        (
            "serverAuth-only EKU",
            leaf(
                &ours,
                &Leaf {
                    uris: &["sip:partner.test"],
                    eku: &[ServerAuth],
                    ..Leaf::default()
                },
            ),
            Ok(()),
            true,
            Ok(()),
        ),
        (
            "clientAuth-only EKU: a client, not a server we connect to",
            leaf(
                &ours,
                &Leaf {
                    uris: &["sip:partner.test"],
                    eku: &[ClientAuth],
                    ..Leaf::default()
                },
            ),
            Ok(()),
            true,
            bad_purpose.clone(),
        ),
        (
            "codeSigning-only EKU",
            leaf(
                &ours,
                &Leaf {
                    uris: &["sip:partner.test"],
                    eku: &[CodeSigning],
                    ..Leaf::default()
                },
            ),
            bad_purpose.clone(),
            true,
            bad_purpose.clone(),
        ),
        (
            "expired",
            leaf(
                &ours,
                &Leaf {
                    uris: &["sip:partner.test"],
                    expired: true,
                    ..Leaf::default()
                },
            ),
            expired.clone(),
            true,
            expired.clone(),
        ),
        (
            "unknown CA",
            leaf(
                &stranger,
                &Leaf {
                    uris: &["sip:partner.test"],
                    ..Leaf::default()
                },
            ),
            unknown.clone(),
            true,
            unknown.clone(),
        ),
    ];
    for (what, cert, inbound, covers, outbound) in cases {
        assert_eq!(judge(&trust, &cert), (inbound, covers, outbound), "{what}");
    }
}

#[test]
fn the_stock_client_verifier_refuses_what_partners_now_present() {
    // Why verifier.rs exists: rustls's own client verifier requires
    // clientAuth when the certificate lists any EKU.
    let ours = ca("partner CA");
    let cert = leaf(
        &ours,
        &Leaf {
            uris: &["sip:partner.test"],
            eku: &[ExtendedKeyUsagePurpose::ServerAuth],
            ..Leaf::default()
        },
    );
    let mut roots = RootCertStore::empty();
    roots.add(ours.cert.der().clone()).unwrap();
    let stock = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .unwrap();
    assert!(matches!(
        stock.verify_client_cert(&cert, &[], UnixTime::now()),
        Err(Error::InvalidCertificate(
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. }
        ))
    ));
    let trust = PartnerTrust::new(&[ours.cert.der().clone()], provider()).unwrap();
    assert!(trust
        .inbound()
        .verify_client_cert(&cert, &[], UnixTime::now())
        .is_ok());
}

#[test]
fn identities_come_from_sip_uris_then_dns_names_then_the_common_name() {
    let ours = ca("partner CA");
    let i = identities(&leaf(
        &ours,
        &Leaf {
            uris: &["sip:partner.test", "https://x.test"],
            dns: &["a.test"],
            ..Leaf::default()
        },
    ))
    .unwrap();
    assert_eq!(
        (i.source, i.names),
        (Source::SipUri, vec!["partner.test".to_string()])
    );
    let i = identities(&leaf(
        &ours,
        &Leaf {
            dns: &["a.test", "b.test"],
            cn: Some("c.test"),
            ..Leaf::default()
        },
    ))
    .unwrap();
    assert_eq!(
        (i.source, i.names),
        (
            Source::DnsName,
            vec!["a.test".to_string(), "b.test".to_string()]
        )
    );
    let i = identities(&leaf(
        &ours,
        &Leaf {
            cn: Some("c.test"),
            ..Leaf::default()
        },
    ))
    .unwrap();
    assert_eq!(
        (i.source, i.names),
        (Source::CommonName, vec!["c.test".to_string()])
    );
}

#[test]
fn an_empty_trust_list_is_refused() {
    assert!(PartnerTrust::new(&[], provider()).is_err());
}
