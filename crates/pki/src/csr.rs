//! A device's certificate request (PKCS#10, RFC 2986), read strictly.
//!
//! Only the public key is taken from a request: the certificate's names
//! come from the signed-in user and the device record, never from the
//! request. The request is still checked, so a mistake or an attempt shows
//! at once with a precise answer: at most [`MAX_CSR`] bytes, one PEM block
//! or DER with nothing after it, version 1, a signature that verifies (the
//! requester holds the key), a key of a type and size TLS clients use, and
//! no name of anyone but the enrolling user.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateSigningRequestDer;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

/// The largest request accepted (a 4096-bit RSA request in PEM is about
/// 1.7 KB).
pub const MAX_CSR: usize = 16 * 1024;

/// Why a request was refused; the text says what to do instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CsrError {
    TooLarge,
    /// Not one PEM `CERTIFICATE REQUEST` block or DER request.
    Malformed(String),
    /// The signature does not verify with the request's own key.
    BadSignature,
    /// A key type or size not accepted.
    Key(String),
    /// A subject or alternative name that is not the enrolling user's.
    NamesAnotherUser(String),
}

impl std::fmt::Display for CsrError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CsrError::TooLarge => write!(f, "the certificate request is larger than {MAX_CSR} bytes"),
            CsrError::Malformed(m) => write!(f, "the certificate request is not a PKCS#10 request ({m}); give one PEM block beginning -----BEGIN CERTIFICATE REQUEST-----"),
            CsrError::BadSignature => f.write_str("the certificate request's signature does not verify with its key; make the request again with the device's key"),
            CsrError::Key(m) => write!(f, "{m}; use an ECDSA P-256 or P-384 key, RSA of 2048 to 4096 bits, or Ed25519"),
            CsrError::NamesAnotherUser(n) => write!(f, "the certificate request names {n}, not you; leave the names out (the certificate names you and the device) or give your own address"),
        }
    }
}

impl std::error::Error for CsrError {}

/// The key a request carries, ready to be certified.
#[derive(Debug, Clone)]
pub struct Csr {
    /// The subjectPublicKey bits (an EC point, an RSAPublicKey, an Ed25519 key).
    key: Vec<u8>,
    alg: &'static rcgen::SignatureAlgorithm,
    /// `ECDSA P-256`, `RSA 2048` ... for the device list.
    pub key_kind: String,
}

impl rcgen::PublicKeyData for Csr {
    fn der_bytes(&self) -> &[u8] {
        &self.key
    }

    fn algorithm(&self) -> &rcgen::SignatureAlgorithm {
        self.alg
    }
}

/// Reads `input` (PEM or DER) as a request from the user `aor`
/// (`sip:user@domain`).
pub fn parse(input: &[u8], aor: &str) -> Result<Csr, CsrError> {
    if input.len() > MAX_CSR {
        return Err(CsrError::TooLarge);
    }
    let der: Vec<u8> = if input.starts_with(b"-----") || input.iter().take(64).all(|b| b.is_ascii())
    {
        let text = std::str::from_utf8(input)
            .map_err(|_| CsrError::Malformed("the PEM text is not UTF-8".into()))?;
        let blocks = text.matches("-----BEGIN ").count();
        if blocks != 1 {
            return Err(CsrError::Malformed(format!(
                "{blocks} PEM blocks where one is expected"
            )));
        }
        CertificateSigningRequestDer::from_pem_slice(input)
            .map_err(|e| CsrError::Malformed(format!("PEM: {e}")))?
            .as_ref()
            .to_vec()
    } else {
        input.to_vec()
    };
    let (rest, req) = X509CertificationRequest::from_der(&der)
        .map_err(|e| CsrError::Malformed(format!("DER: {e}")))?;
    if !rest.is_empty() {
        return Err(CsrError::Malformed("bytes after the request".into()));
    }
    let info = &req.certification_request_info;
    if info.version.0 != 0 {
        return Err(CsrError::Malformed(format!(
            "version {} (only version 1 exists)",
            info.version.0 + 1
        )));
    }
    let spki = &info.subject_pki;
    let (alg, key_kind) = key_type(spki)?;
    req.verify_signature().map_err(|_| CsrError::BadSignature)?;
    check_names(&req, aor)?;
    Ok(Csr {
        key: spki.subject_public_key.data.to_vec(),
        alg,
        key_kind,
    })
}

fn key_type(
    spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>,
) -> Result<(&'static rcgen::SignatureAlgorithm, String), CsrError> {
    let oid = &spki.algorithm.algorithm;
    if *oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .ok_or_else(|| CsrError::Key("an EC key without a named curve".into()))?;
        let point_len = spki.subject_public_key.data.len();
        if curve == OID_EC_P256 && point_len == 65 {
            Ok((&rcgen::PKCS_ECDSA_P256_SHA256, "ECDSA P-256".into()))
        } else if curve == OID_NIST_EC_P384 && point_len == 97 {
            Ok((&rcgen::PKCS_ECDSA_P384_SHA384, "ECDSA P-384".into()))
        } else {
            Err(CsrError::Key(format!(
                "an EC key on curve {curve} (or a compressed point)"
            )))
        }
    } else if *oid == OID_PKCS1_RSAENCRYPTION {
        let bits = match spki.parsed() {
            Ok(PublicKey::RSA(k)) => k.key_size(),
            _ => return Err(CsrError::Key("an unreadable RSA key".into())),
        };
        if !(2048..=4096).contains(&bits) {
            return Err(CsrError::Key(format!("an RSA key of {bits} bits")));
        }
        Ok((&rcgen::PKCS_RSA_SHA256, format!("RSA {bits}")))
    } else if *oid == OID_SIG_ED25519 {
        if spki.subject_public_key.data.len() != 32 {
            return Err(CsrError::Key("an Ed25519 key of the wrong length".into()));
        }
        Ok((&rcgen::PKCS_ED25519, "Ed25519".into()))
    } else {
        Err(CsrError::Key(format!("a key of type {oid}")))
    }
}

/// The names a request may carry: the user's `sip:` URI, the user's
/// `user@domain` as an e-mail or UPN-like common name, or a common name
/// without `@` (a device label such as `alice-laptop`).
fn check_names(req: &X509CertificationRequest<'_>, aor: &str) -> Result<(), CsrError> {
    let plain = aor.strip_prefix("sip:").unwrap_or(aor);
    let own = |n: &str| {
        let n = n.trim();
        n.eq_ignore_ascii_case(aor) || n.eq_ignore_ascii_case(plain)
    };
    for cn in req.certification_request_info.subject.iter_common_name() {
        let text = cn
            .as_str()
            .map_err(|_| CsrError::Malformed("a common name that is not text".into()))?;
        if (text.contains('@') || text.contains(':')) && !own(text) {
            return Err(CsrError::NamesAnotherUser(format!("{text:?}")));
        }
    }
    if let Some(exts) = req.requested_extensions() {
        for e in exts {
            if let ParsedExtension::SubjectAlternativeName(san) = e {
                for n in &san.general_names {
                    match n {
                        GeneralName::URI(u) | GeneralName::RFC822Name(u) if !own(u) => {
                            return Err(CsrError::NamesAnotherUser(format!("{u:?}")));
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const ALICE: &str = "sip:alice@example.test";

    fn request(key: &rcgen::KeyPair, cn: &str, sans: &[rcgen::SanType]) -> String {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        if !cn.is_empty() {
            p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        }
        p.subject_alt_names = sans.to_vec();
        p.serialize_request(key).unwrap().pem().unwrap()
    }

    fn uri(u: &str) -> rcgen::SanType {
        rcgen::SanType::URI(rcgen::Ia5String::try_from(u).unwrap())
    }

    #[test]
    fn a_request_for_each_accepted_key_type_is_read() {
        for (alg, kind) in [
            (&rcgen::PKCS_ECDSA_P256_SHA256, "ECDSA P-256"),
            (&rcgen::PKCS_ECDSA_P384_SHA384, "ECDSA P-384"),
            (&rcgen::PKCS_ED25519, "Ed25519"),
        ] {
            let key = rcgen::KeyPair::generate_for(alg).unwrap();
            let csr = parse(request(&key, "alice-laptop", &[]).as_bytes(), ALICE).unwrap();
            assert_eq!(csr.key_kind, kind);
            assert_eq!(rcgen::PublicKeyData::der_bytes(&csr), key.public_key_raw());
        }
    }

    #[test]
    fn der_is_read_as_well_as_pem() {
        let key = rcgen::KeyPair::generate().unwrap();
        let p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        let der = p.serialize_request(&key).unwrap();
        assert!(parse(der.der(), ALICE).is_ok());
    }

    #[test]
    fn the_users_own_names_are_accepted_and_anyone_elses_refused() {
        let key = rcgen::KeyPair::generate().unwrap();
        for ok in [
            request(
                &key,
                "sip:alice@example.test",
                &[uri("sip:alice@example.test")],
            ),
            request(
                &key,
                "alice@EXAMPLE.test",
                &[rcgen::SanType::Rfc822Name(
                    "alice@example.test".try_into().unwrap(),
                )],
            ),
        ] {
            assert!(parse(ok.as_bytes(), ALICE).is_ok());
        }
        for bad in [
            request(&key, "bob@example.test", &[]),
            request(&key, "x", &[uri("sip:bob@example.test")]),
            request(
                &key,
                "x",
                &[rcgen::SanType::Rfc822Name(
                    "bob@example.test".try_into().unwrap(),
                )],
            ),
        ] {
            assert!(matches!(
                parse(bad.as_bytes(), ALICE),
                Err(CsrError::NamesAnotherUser(_))
            ));
        }
    }

    #[test]
    fn a_request_whose_signature_fails_is_refused() {
        let key = rcgen::KeyPair::generate().unwrap();
        let p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut der = p.serialize_request(&key).unwrap().der().to_vec();
        let last = der.len() - 1;
        der[last] ^= 1;
        assert_eq!(parse(&der, ALICE).unwrap_err(), CsrError::BadSignature);
    }

    #[test]
    fn garbage_oversize_trailing_bytes_and_two_blocks_are_refused() {
        assert!(matches!(
            parse(b"hello", ALICE),
            Err(CsrError::Malformed(_))
        ));
        assert!(matches!(
            parse(&[0x30, 0x82, 0xff], ALICE),
            Err(CsrError::Malformed(_))
        ));
        assert_eq!(
            parse(&vec![b'a'; MAX_CSR + 1], ALICE).unwrap_err(),
            CsrError::TooLarge
        );
        let key = rcgen::KeyPair::generate().unwrap();
        let one = request(&key, "", &[]);
        let two = format!("{one}{one}");
        assert!(matches!(
            parse(two.as_bytes(), ALICE),
            Err(CsrError::Malformed(_))
        ));
        let p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut der = p.serialize_request(&key).unwrap().der().to_vec();
        der.push(0);
        assert!(matches!(parse(&der, ALICE), Err(CsrError::Malformed(_))));
        // A certificate is not a request.
        let cert = p.self_signed(&key).unwrap();
        assert!(matches!(
            parse(cert.pem().as_bytes(), ALICE),
            Err(CsrError::Malformed(_))
        ));
    }

    #[test]
    fn small_rsa_keys_and_other_key_types_are_refused() {
        // A 1024-bit RSA request made by openssl (tests/data).
        let pem = include_bytes!("../tests/data/rsa1024.csr");
        let e = parse(pem, ALICE).unwrap_err();
        assert_eq!(e, CsrError::Key("an RSA key of 1024 bits".into()));
        let pem = include_bytes!("../tests/data/rsa2048.csr");
        assert_eq!(parse(pem, ALICE).unwrap().key_kind, "RSA 2048");
        let pem = include_bytes!("../tests/data/secp256k1.csr");
        assert!(matches!(parse(pem, ALICE), Err(CsrError::Key(_))));
    }
}
