//! The domains a partner's certificate speaks for (RFC 5922 §7.1).
//!
//! In order: every subjectAltName URI of the form `sip:domain` (scheme
//! `sip`, no user part, no port, no parameters or headers); only if there is
//! none, every DNS subjectAltName; only if the certificate has no
//! subjectAltName extension at all, its common names. A name with a
//! wildcard label never matches anything (RFC 5922 §7.2: "wildcards MUST
//! NOT be used"). Matching is exact and ignores ASCII case; a trailing dot
//! is not accepted on either side.

use sip::uri::Host;
use sip::Uri;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Where the identities were found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// subjectAltName URIs `sip:domain`.
    SipUri,
    /// DNS subjectAltNames (the certificate had no `sip:domain` URI).
    DnsName,
    /// The subject's common name (the certificate had no subjectAltName).
    CommonName,
}

/// The domains a certificate speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identities {
    pub source: Source,
    /// As written in the certificate, wildcard names included (they match
    /// nothing).
    pub names: Vec<String>,
    /// Every DNS subjectAltName, whatever `source` is: the host names the
    /// certificate speaks for, checked when a partner's server is pinned.
    pub hosts: Vec<String>,
}

impl Identities {
    /// Whether the certificate names `host` as a DNS name (exact, ignoring
    /// case, never a wildcard).
    pub fn names_host(&self, host: &str) -> bool {
        valid_domain(host)
            && self
                .hosts
                .iter()
                .any(|n| !n.contains('*') && n.eq_ignore_ascii_case(host))
    }

    /// Whether the certificate speaks for `domain`.
    pub fn covers(&self, domain: &str) -> bool {
        valid_domain(domain)
            && self
                .names
                .iter()
                .any(|n| !n.contains('*') && n.eq_ignore_ascii_case(domain))
    }
}

/// Why no identity could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityError {
    /// Not a DER X.509 certificate (or trailing bytes after it).
    Malformed,
    /// A subjectAltName extension that could not be parsed, or two of them.
    BadSubjectAltName,
}

impl std::fmt::Display for IdentityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IdentityError::Malformed => "the certificate is not valid DER X.509",
            IdentityError::BadSubjectAltName => "the certificate's subjectAltName is malformed",
        })
    }
}

impl std::error::Error for IdentityError {}

/// Whether `leaf` was issued by `ca` (its issuer is the CA's subject): a
/// certificate of the pool's own CA is a paired edge's or a server of the
/// pool, never a partner's.
pub fn issued_by(leaf: &[u8], ca: &[u8]) -> bool {
    let (Ok((_, leaf)), Ok((_, ca))) = (
        X509Certificate::from_der(leaf),
        X509Certificate::from_der(ca),
    ) else {
        return false;
    };
    leaf.issuer().as_raw() == ca.subject().as_raw()
}

/// The rest of the first subjectAltName URI of `der` that begins with
/// `prefix` (`urn:parapet:node:` gives the node's name), if any.
pub fn uri_after(der: &[u8], prefix: &str) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|g| match g {
        GeneralName::URI(u) => u.strip_prefix(prefix).map(str::to_owned),
        _ => None,
    })
}

/// Reads the identities of a DER certificate.
pub fn identities(der: &[u8]) -> Result<Identities, IdentityError> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(|_| IdentityError::Malformed)?;
    if !rest.is_empty() {
        return Err(IdentityError::Malformed);
    }
    let san = cert
        .subject_alternative_name()
        .map_err(|_| IdentityError::BadSubjectAltName)?;
    let Some(san) = san else {
        let names = cert
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok())
            .map(str::to_owned)
            .collect();
        return Ok(Identities {
            source: Source::CommonName,
            names,
            hosts: Vec::new(),
        });
    };
    let general = &san.value.general_names;
    let hosts: Vec<String> = general
        .iter()
        .filter_map(|g| match g {
            GeneralName::DNSName(d) => Some((*d).to_owned()),
            _ => None,
        })
        .collect();
    let uris: Vec<String> = general
        .iter()
        .filter_map(|g| match g {
            GeneralName::URI(u) => sip_domain(u),
            _ => None,
        })
        .collect();
    if !uris.is_empty() {
        return Ok(Identities {
            source: Source::SipUri,
            names: uris,
            hosts,
        });
    }
    Ok(Identities {
        source: Source::DnsName,
        names: hosts.clone(),
        hosts,
    })
}

/// The domain of a subjectAltName URI `sip:domain`, or `None` for any other
/// URI (a user part, a port, parameters, headers, `sips:`, an IP address).
fn sip_domain(uri: &str) -> Option<String> {
    let Ok(Uri::Sip(u)) = Uri::parse(uri) else {
        return None;
    };
    if u.secure || u.user.is_some() || u.password.is_some() || u.port.is_some() {
        return None;
    }
    if !u.params.is_empty() || u.headers.is_some() {
        return None;
    }
    match u.host {
        Host::Name(n) if valid_domain(n) => Some(n.to_owned()),
        _ => None,
    }
}

/// A domain name of LDH labels, at least two of them (a partner is never a
/// bare host name), no trailing dot, no wildcard.
pub(crate) fn valid_domain(d: &str) -> bool {
    d.len() <= 253
        && d.split('.').count() >= 2
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && !d.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_uris_name_a_domain_only_without_user_port_or_parameters() {
        assert_eq!(
            sip_domain("sip:partner.test").as_deref(),
            Some("partner.test")
        );
        assert_eq!(
            sip_domain("SIP:Partner.TEST").as_deref(),
            Some("Partner.TEST")
        );
        for bad in [
            "sip:alice@partner.test",
            "sip:partner.test:5061",
            "sip:partner.test;transport=tls",
            "sip:partner.test?subject=x",
            "sips:partner.test",
            "sip:192.0.2.1",
            "sip:[2001:db8::1]",
            "sip:*.partner.test",
            "sip:partner",
            "https://partner.test",
            "sip:partner.test.",
        ] {
            assert_eq!(sip_domain(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_match_is_exact_ignores_case_and_never_takes_a_wildcard() {
        let ids = Identities {
            source: Source::DnsName,
            names: vec!["*.partner.test".into(), "Sip.Partner.Test".into()],
            hosts: vec!["*.partner.test".into(), "Sip.Partner.Test".into()],
        };
        assert!(ids.names_host("sip.partner.test"));
        assert!(!ids.names_host("edge.partner.test"));
        assert!(ids.covers("sip.partner.test"));
        assert!(!ids.covers("partner.test"));
        assert!(
            !ids.covers("other.partner.test"),
            "the wildcard matches nothing"
        );
        assert!(!ids.covers("*.partner.test"));
        assert!(!ids.covers("sip.partner.test."));
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        assert_eq!(identities(b""), Err(IdentityError::Malformed));
        assert_eq!(
            identities(&[0x30, 0x82, 0xff]),
            Err(IdentityError::Malformed)
        );
    }
}
