//! rustls verifiers for connections with partners' servers.
//!
//! Both directions check the peer's chain against the CAs trusted for
//! partners (`PartnerTrust`), with `webpki` directly rather than through
//! rustls's stock verifiers, for two reasons written here so that nobody
//! "simplifies" them away:
//!
//! - Inbound, the partner's server is a TLS *client*, and rustls's
//!   `WebPkiClientVerifier` requires the clientAuth extended key usage when
//!   the certificate lists any. Public CAs stopped issuing clientAuth in
//!   2026, so a partner's ordinary server certificate (serverAuth only)
//!   would be refused. [`ServerOrClientAuth`] accepts a certificate whose
//!   EKU lists serverAuth or clientAuth, or that has no EKU extension.
//! - Outbound, rustls's `WebPkiServerVerifier` matches the DNS name we
//!   connected to against DNS subjectAltNames. RFC 5922 wants the *domain*
//!   the request is for, matched against a `sip:domain` URI first, and no
//!   wildcards ([`crate::identity`]); the name handed to rustls is that
//!   domain, never the SRV target.
//!
//! The handshake signatures themselves are checked by rustls's own
//! functions with the provider's algorithms.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};
use webpki::{EndEntityCert, ExtendedKeyUsageValidator, KeyPurposeId, KeyPurposeIdIter};

use crate::identity;

/// Reads the CA certificates trusted for partners from PEM bundle files,
/// in order. A file marked optional (the operating system's bundle) that
/// cannot be read is skipped with a warning in the second value; any other
/// unreadable file is an error naming it.
pub fn read_cas(
    files: &[(std::path::PathBuf, bool)],
) -> Result<(Vec<CertificateDer<'static>>, Vec<String>), String> {
    use rustls_pki_types::pem::PemObject;
    let mut cas = Vec::new();
    let mut warnings = Vec::new();
    for (path, optional) in files {
        let pem = match std::fs::read(path) {
            Ok(pem) => pem,
            Err(e) if *optional => {
                warnings.push(format!("{}: {e}", path.display()));
                continue;
            }
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
        let certs =
            certs.map_err(|e| format!("{}: not a PEM certificate bundle: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: no CERTIFICATE block", path.display()));
        }
        cas.extend(certs);
    }
    Ok((cas, warnings))
}

/// id-kp-serverAuth (1.3.6.1.5.5.7.3.1) and id-kp-clientAuth
/// (1.3.6.1.5.5.7.3.2), DER-encoded OID contents.
const SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
const CLIENT_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];

/// The extended key usage a partner's certificate may have on an inbound
/// connection: serverAuth or clientAuth listed, or no EKU extension.
#[derive(Debug, Clone, Copy)]
pub struct ServerOrClientAuth;

impl ExtendedKeyUsageValidator for ServerOrClientAuth {
    fn validate(&self, iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        let wanted = [
            KeyPurposeId::new(SERVER_AUTH),
            KeyPurposeId::new(CLIENT_AUTH),
        ];
        let mut present = Vec::new();
        for id in iter {
            let id = id?;
            if wanted.contains(&id) {
                return Ok(());
            }
            present.push(id.to_decoded_oid());
        }
        if present.is_empty() {
            return Ok(());
        }
        Err(webpki::Error::RequiredEkuNotFoundContext(
            webpki::RequiredEkuNotFoundContext {
                required: webpki::KeyUsage::server_auth(),
                present,
            },
        ))
    }
}

/// The CAs trusted for partners, and the crypto provider.
#[derive(Debug, Clone)]
pub struct PartnerTrust {
    anchors: Arc<Vec<TrustAnchor<'static>>>,
    provider: Arc<CryptoProvider>,
}

impl PartnerTrust {
    /// Trusts the given CA certificates (a bundle file's, the system's, or
    /// both, as configured). Refuses an empty list: a verifier that trusts
    /// nothing is a configuration mistake, not a policy.
    pub fn new(cas: &[CertificateDer<'_>], provider: Arc<CryptoProvider>) -> Result<Self, String> {
        if cas.is_empty() {
            return Err("no CA certificates are trusted for partners".into());
        }
        let anchors = cas
            .iter()
            .enumerate()
            .map(|(i, c)| {
                webpki::anchor_from_trusted_cert(c)
                    .map(|a| a.to_owned())
                    .map_err(|e| format!("CA certificate {} is unusable: {e}", i + 1))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PartnerTrust {
            anchors: Arc::new(anchors),
            provider,
        })
    }

    fn verify_chain(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        usage: impl ExtendedKeyUsageValidator,
    ) -> Result<(), Error> {
        let cert = EndEntityCert::try_from(end_entity).map_err(pki_error)?;
        cert.verify_for_usage(
            self.provider.signature_verification_algorithms.all,
            &self.anchors,
            intermediates,
            now,
            usage,
            None,
            None,
        )
        .map(|_| ())
        .map_err(pki_error)
    }

    /// The verifier for connections partners open to us: a certificate is
    /// required and must chain to a partner CA; which partner it is comes
    /// from [`identity::identities`] once the handshake is done.
    pub fn inbound(&self) -> Arc<dyn ClientCertVerifier> {
        Arc::new(Inbound {
            trust: self.clone(),
            mandatory: true,
        })
    }

    /// The same, for a listener shared with clients (SIP over TLS on 5061):
    /// a certificate is asked for but not required; one that is presented
    /// must chain to a partner CA, else the handshake fails. Connections
    /// without one are clients, never partners.
    pub fn inbound_optional(&self) -> Arc<dyn ClientCertVerifier> {
        Arc::new(Inbound {
            trust: self.clone(),
            mandatory: false,
        })
    }

    /// The client configuration for connections to partners: this server's
    /// certificate presented (mutual TLS), the partner's checked by
    /// [`PartnerTrust::outbound`]; TLS 1.2 and 1.3 only.
    pub fn client_config(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key: rustls_pki_types::PrivateKeyDer<'static>,
    ) -> Result<Arc<rustls::ClientConfig>, String> {
        let config = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| format!("TLS versions: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(self.outbound())
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("this server's certificate and key: {e}"))?;
        Ok(Arc::new(config))
    }

    /// The same, presenting whatever certificate `ours` holds at each
    /// handshake (a renewed server certificate without a restart).
    pub fn client_config_live(
        &self,
        ours: Arc<dyn rustls::client::ResolvesClientCert>,
    ) -> Result<Arc<rustls::ClientConfig>, String> {
        let config = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| format!("TLS versions: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(self.outbound())
            .with_client_cert_resolver(ours);
        Ok(Arc::new(config))
    }

    /// The verifier for connections we open to a partner; the `ServerName`
    /// given to rustls must be the partner's domain (what the request is
    /// for), which the certificate must speak for.
    pub fn outbound(&self) -> Arc<dyn ServerCertVerifier> {
        Arc::new(Outbound(self.clone()))
    }

    fn signature_12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Signatures(self.provider.clone()).tls12(message, cert, dss)
    }

    fn signature_13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Signatures(self.provider.clone()).tls13(message, cert, dss)
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        Signatures(self.provider.clone()).schemes()
    }
}

/// The handshake-signature checks a certificate verifier makes, with a
/// provider's algorithms (shared by the verifiers of partners, edges and
/// devices).
#[derive(Debug, Clone)]
pub struct Signatures(pub Arc<rustls::crypto::CryptoProvider>);

impl Signatures {
    pub fn tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    pub fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    pub fn schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[derive(Debug)]
struct Inbound {
    trust: PartnerTrust,
    mandatory: bool,
}

impl ClientCertVerifier for Inbound {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.trust
            .verify_chain(end_entity, intermediates, now, ServerOrClientAuth)?;
        Ok(ClientCertVerified::assertion())
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.trust.signature_12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.trust.signature_13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.trust.schemes()
    }
}

#[derive(Debug)]
struct Outbound(PartnerTrust);

impl ServerCertVerifier for Outbound {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        self.0.verify_chain(
            end_entity,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
        )?;
        let ServerName::DnsName(domain) = server_name else {
            // A partner is a domain, never an address.
            return Err(Error::InvalidCertificate(CertificateError::NotValidForName));
        };
        let ids = identity::identities(end_entity)
            .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
        if ids.covers(domain.as_ref()) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(Error::InvalidCertificate(CertificateError::NotValidForName))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.signature_12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.signature_13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.schemes()
    }
}

/// webpki's verdict as rustls reports it (the alert the peer gets).
fn pki_error(e: webpki::Error) -> Error {
    use webpki::Error as E;
    Error::InvalidCertificate(match e {
        E::BadDer | E::BadDerTime | E::TrailingData(_) | E::MalformedExtensions => {
            CertificateError::BadEncoding
        }
        E::CertExpired { .. } | E::InvalidCertValidity => CertificateError::Expired,
        E::CertNotValidYet { .. } => CertificateError::NotValidYet,
        E::CertRevoked => CertificateError::Revoked,
        E::UnknownIssuer => CertificateError::UnknownIssuer,
        E::UnsupportedCriticalExtension => CertificateError::UnhandledCriticalExtension,
        E::RequiredEkuNotFoundContext(_) | E::EmptyEkuExtension => CertificateError::InvalidPurpose,
        E::InvalidSignatureForPublicKey => CertificateError::BadSignature,
        _ => CertificateError::ApplicationVerificationFailure,
    })
}
