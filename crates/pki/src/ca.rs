//! The device CA: a key of its own (not the server's, not the private CA's
//! that signs the listeners' certificate), used for nothing but users'
//! device certificates, which only this server verifies.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use ring::rand::SecureRandom;
use rustls_pki_types::CertificateDer;

/// Longest device name, in characters.
pub const MAX_DEVICE_NAME: usize = 64;

/// The device CA, loaded.
pub struct DeviceCa {
    cert: CertificateDer<'static>,
    pem: String,
    /// The same subject and key, signed again: what rcgen signs with (it
    /// cannot read a certificate back without x509-parser 0.16, a second
    /// copy of the parser this crate already has).
    issuer: rcgen::Certificate,
    key: KeyPair,
}

impl std::fmt::Debug for DeviceCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCa").finish_non_exhaustive()
    }
}

/// A device certificate as issued.
#[derive(Debug, Clone)]
pub struct Issued {
    pub pem: String,
    pub der: CertificateDer<'static>,
    /// SHA-256 of the DER.
    pub fingerprint: [u8; 32],
    /// Lower-case hex.
    pub serial: String,
    /// Unix seconds: when it was issued, and its validity (from five
    /// minutes before, for devices whose clocks lag).
    pub issued_at: i64,
    pub not_before: i64,
    pub not_after: i64,
}

fn err(e: rcgen::Error) -> String {
    format!("device certificate: {e}")
}

fn params(domain: &str) -> Result<CertificateParams, String> {
    let now = time::OffsetDateTime::now_utc();
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        format!("Parapet device CA for {domain}"),
    );
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = now - time::Duration::minutes(5);
    p.not_after = now + time::Duration::days(3650);
    Ok(p)
}

/// Whether `name` is a device name a user may give: 1 to
/// [`MAX_DEVICE_NAME`] characters, no control characters, not only spaces.
pub fn valid_device_name(name: &str) -> bool {
    let n = name.chars().count();
    (1..=MAX_DEVICE_NAME).contains(&n)
        && !name.chars().any(char::is_control)
        && !name.trim().is_empty()
}

/// 16 random bytes, the top bit clear (a positive INTEGER) and the first
/// byte non-zero (the shortest encoding is 16 bytes).
fn serial() -> Result<[u8; 16], String> {
    let mut s = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut s)
        .map_err(|_| "the system random generator failed".to_string())?;
    s[0] = (s[0] & 0x7f) | 0x01;
    Ok(s)
}

impl DeviceCa {
    /// A new device CA for `domain` (ten years): its certificate and key,
    /// both PEM, for the data directory.
    pub fn create(domain: &str) -> Result<(String, String), String> {
        let key = KeyPair::generate().map_err(err)?;
        let cert = params(domain)?.self_signed(&key).map_err(err)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Loads the CA from its certificate and key (PEM).
    pub fn load(cert_pem: &str, key_pem: &str, domain: &str) -> Result<DeviceCa, String> {
        use rustls_pki_types::pem::PemObject;
        let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| format!("device CA certificate: {e}"))?;
        let key = KeyPair::from_pem(key_pem).map_err(|e| format!("device CA key: {e}"))?;
        let issuer = params(domain)?.self_signed(&key).map_err(err)?;
        Ok(DeviceCa {
            cert,
            pem: cert_pem.to_owned(),
            issuer,
            key,
        })
    }

    /// The CA certificate (the trust anchor for device certificates).
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// Whether this CA issued the certificate `der` (PEM or DER), by its
    /// issuer name: for telling the store's records of Parapet's own
    /// device certificates from the organisation's.
    pub fn issued(&self, cert: &[u8]) -> bool {
        use rustls_pki_types::pem::PemObject;
        use x509_parser::prelude::{FromDer, X509Certificate};
        let der = match CertificateDer::from_pem_slice(cert) {
            Ok(d) => d.to_vec(),
            Err(_) => cert.to_vec(),
        };
        match (
            X509Certificate::from_der(&self.cert),
            X509Certificate::from_der(&der),
        ) {
            (Ok((_, ca)), Ok((_, c))) => c.issuer().as_raw() == ca.subject().as_raw(),
            _ => false,
        }
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// Certifies `key` for the device `device_id` of `aor`
    /// (`sip:user@domain`), named `name` by its user, for `days`.
    pub fn issue(
        &self,
        key: &impl rcgen::PublicKeyData,
        aor: &str,
        device_id: &str,
        name: &str,
        days: u32,
    ) -> Result<Issued, String> {
        if !valid_device_name(name) {
            return Err(format!(
                "the device name must be 1 to {MAX_DEVICE_NAME} characters without control characters"
            ));
        }
        let now = time::OffsetDateTime::now_utc();
        let mut p = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        p.distinguished_name = dn;
        let uri = |u: String| rcgen::Ia5String::try_from(u).map(SanType::URI).map_err(err);
        p.subject_alt_names = vec![
            uri(aor.to_owned())?,
            uri(format!("urn:parapet:device:{device_id}"))?,
        ];
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.use_authority_key_identifier_extension = true;
        let serial = serial()?;
        p.serial_number = Some(SerialNumber::from_slice(&serial));
        // A device whose clock is a little behind still accepts it.
        p.not_before = now - time::Duration::minutes(5);
        p.not_after = now + time::Duration::days(i64::from(days.max(1)));
        let (not_before, not_after) = (p.not_before.unix_timestamp(), p.not_after.unix_timestamp());
        let cert = p.signed_by(key, &self.issuer, &self.key).map_err(err)?;
        let der = cert.der().clone();
        Ok(Issued {
            issued_at: now.unix_timestamp(),
            pem: cert.pem(),
            fingerprint: crate::fingerprint(&der),
            der,
            serial: crate::hex(&serial),
            not_before,
            not_after,
        })
    }
}

/// A random device id: 16 hex characters.
pub fn device_id() -> Result<String, String> {
    let mut b = [0u8; 8];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| "the system random generator failed".to_string())?;
    Ok(crate::hex(&b))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use x509_parser::prelude::*;

    #[test]
    fn a_device_certificate_names_the_user_and_device_for_client_auth_only() {
        let (cert, key) = DeviceCa::create("example.test").unwrap();
        let ca = DeviceCa::load(&cert, &key, "example.test").unwrap();
        let device_key = rcgen::KeyPair::generate().unwrap();
        let req = rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .serialize_request(&device_key)
            .unwrap();
        let csr = crate::csr::parse(req.der(), "sip:alice@example.test").unwrap();
        let issued = ca
            .issue(
                &csr,
                "sip:alice@example.test",
                "0123456789abcdef",
                "Alice's phone",
                30,
            )
            .unwrap();
        let (_, x) = X509Certificate::from_der(&issued.der).unwrap();
        assert_eq!(crate::hex(x.raw_serial()), issued.serial);
        assert!(ca.issued(&issued.der) && ca.issued(issued.pem.as_bytes()));
        let (other, other_key) = DeviceCa::create("other.test").unwrap();
        let other = DeviceCa::load(&other, &other_key, "other.test").unwrap();
        assert!(!other.issued(&issued.der));
        assert!(!ca.issued(b"not a certificate"));
        let sans: Vec<String> = x
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|g| g.to_string())
            .collect();
        assert_eq!(
            sans,
            [
                "URI(sip:alice@example.test)",
                "URI(urn:parapet:device:0123456789abcdef)"
            ]
        );
        let eku = x.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        assert!(x.key_usage().unwrap().unwrap().value.digital_signature());
        assert!(!x.is_ca());
        let aki = x.extensions().iter().any(|e| {
            matches!(
                e.parsed_extension(),
                ParsedExtension::AuthorityKeyIdentifier(_)
            )
        });
        assert!(aki, "the Authority Key Identifier is present");
        let days = (issued.not_after - issued.not_before) / 86_400;
        assert_eq!(days, 30);
        assert_eq!(x.subject().to_string(), "CN=Alice's phone");
        // It chains to the stored CA certificate (not the re-signed copy).
        let anchor = webpki::anchor_from_trusted_cert(ca.certificate()).unwrap();
        let ee = webpki::EndEntityCert::try_from(&issued.der).unwrap();
        let provider = rustls::crypto::ring::default_provider();
        ee.verify_for_usage(
            provider.signature_verification_algorithms.all,
            &[anchor],
            &[],
            rustls_pki_types::UnixTime::now(),
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .unwrap();
    }

    #[test]
    fn device_names_are_bounded_and_printable() {
        assert!(valid_device_name("Alice's phone"));
        assert!(valid_device_name(&"é".repeat(64)));
        assert!(!valid_device_name(&"a".repeat(65)));
        assert!(!valid_device_name(""));
        assert!(!valid_device_name("   "));
        assert!(!valid_device_name("a\nb"));
    }
}
