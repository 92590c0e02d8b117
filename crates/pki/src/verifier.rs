//! The TLS listeners' client-certificate check: a certificate is asked for,
//! never required (most clients sign in with digest, and partners' servers
//! present theirs). A device certificate (one that chains to the device CA)
//! must be in the [`Registry`] now; one of the organisation's CA (bring
//! your own PKI) must pass its revocation lists and not be revoked here;
//! else the handshake fails with the reason logged. Any other certificate
//! goes to the verifier for partners' servers and paired edges, when there
//! is one, and is refused when there is none.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};

use crate::registry::Registry;

/// The check, for one or more listeners.
#[derive(Debug)]
pub struct ClientTrust {
    devices: Vec<TrustAnchor<'static>>,
    registry: Arc<Registry>,
    org: Option<Arc<crate::byo::OrgTrust>>,
    others: Option<Arc<dyn ClientCertVerifier>>,
    provider: Arc<CryptoProvider>,
}

/// Refusals logged at most once a second (a client retrying with a revoked
/// certificate must not fill the log).
static LAST_LOG: AtomicU64 = AtomicU64::new(0);

fn log_refusal(why: &str, fingerprint: &[u8; 32]) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if LAST_LOG.swap(now, Ordering::Relaxed) != now {
        tracing::info!(
            certificate = %crate::hex(&fingerprint[..8]),
            why,
            "TLS handshake refused: client certificate"
        );
    }
}

impl ClientTrust {
    /// Device certificates chain to `device_ca` and must be in `registry`;
    /// others are `others`' to decide.
    pub fn new(
        device_ca: &CertificateDer<'_>,
        registry: Arc<Registry>,
        org: Option<Arc<crate::byo::OrgTrust>>,
        others: Option<Arc<dyn ClientCertVerifier>>,
    ) -> Result<Arc<ClientTrust>, String> {
        let anchor = webpki::anchor_from_trusted_cert(device_ca)
            .map_err(|e| format!("device CA certificate: {e}"))?
            .to_owned();
        Ok(Arc::new(ClientTrust {
            devices: vec![anchor],
            registry,
            org,
            others,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        }))
    }
}

fn pki_error(e: webpki::Error) -> Error {
    use rustls::CertificateError as C;
    Error::InvalidCertificate(match e {
        webpki::Error::CertExpired { .. } => C::Expired,
        webpki::Error::CertNotValidYet { .. } => C::NotValidYet,
        webpki::Error::UnknownIssuer => C::UnknownIssuer,
        webpki::Error::InvalidSignatureForPublicKey => C::BadSignature,
        webpki::Error::CertRevoked => C::Revoked,
        e => C::Other(rustls::OtherError(Arc::new(e))),
    })
}

impl ClientTrust {
    /// The organisation's CA, then partners' servers and edges. A user's
    /// certificate of the organisation is decided here (revoked here or
    /// by the organisation's lists: refused); anything else of its CA (a
    /// partner's server certified by the same CA) is the partners'
    /// verifier's to decide.
    fn not_a_device(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let mut org_error = None;
        if let Some(org) = &self.org {
            match org.classify(end_entity, intermediates, now) {
                crate::byo::Verdict::User(_) => {
                    let fp = crate::fingerprint(end_entity);
                    if self.registry.is_denied(&fp) {
                        log_refusal("the organisation's certificate was revoked here", &fp);
                        return Err(Error::InvalidCertificate(rustls::CertificateError::Revoked));
                    }
                    return Ok(ClientCertVerified::assertion());
                }
                crate::byo::Verdict::Revoked(e) => {
                    log_refusal(
                        &format!("the organisation's certificate: {e}"),
                        &crate::fingerprint(end_entity),
                    );
                    return Err(pki_error(e));
                }
                crate::byo::Verdict::NotOurs(e) => org_error = e,
            }
        }
        let others = match &self.others {
            Some(v) => v.verify_client_cert(end_entity, intermediates, now),
            None => Err(Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            )),
        };
        match (others, org_error) {
            // What made the organisation's certificate unusable says more
            // than "unknown issuer".
            (Err(_), Some(e)) => {
                log_refusal(
                    &format!("the organisation's certificate: {e}"),
                    &crate::fingerprint(end_entity),
                );
                Err(pki_error(e))
            }
            (r, _) => r,
        }
    }
}

impl ClientCertVerifier for ClientTrust {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let cert = webpki::EndEntityCert::try_from(end_entity).map_err(pki_error)?;
        let chained = cert.verify_for_usage(
            self.provider.signature_verification_algorithms.all,
            &self.devices,
            intermediates,
            now,
            webpki::KeyUsage::client_auth(),
            None,
            None,
        );
        match chained {
            Ok(_) => {
                let fp = crate::fingerprint(end_entity);
                if self.registry.get(&fp).is_some() {
                    Ok(ClientCertVerified::assertion())
                } else {
                    log_refusal("revoked, or not issued by this server", &fp);
                    Err(Error::InvalidCertificate(rustls::CertificateError::Revoked))
                }
            }
            // Not the device CA's (another CA, perhaps of the same name).
            Err(webpki::Error::UnknownIssuer | webpki::Error::InvalidSignatureForPublicKey) => {
                self.not_a_device(end_entity, intermediates, now)
            }
            Err(e) => {
                log_refusal(&format!("{e}"), &crate::fingerprint(end_entity));
                Err(pki_error(e))
            }
        }
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
