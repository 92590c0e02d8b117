//! The external listeners' client-certificate check. Two kinds of peer
//! present one: partners' servers (TLS only), checked against the CAs
//! trusted for partners, and remote users' devices, whose certificates
//! only the pool can judge: it holds the list of device certificates
//! valid now, and the edge holds no user data. For those the handshake
//! proves that the client holds the certificate's key, and the edge tells
//! the pool which certificate it was (its SHA-256, in the trust stamp); a
//! certificate the pool does not know signs nobody in. A certificate is
//! asked for, never required.

use std::sync::Arc;

use federation::verifier::Signatures;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};

#[derive(Debug)]
pub(super) struct ClientCerts {
    /// Partners' servers (the TLS listener, when partners' CAs are set).
    partners: Option<Arc<dyn ClientCertVerifier>>,
    signatures: Signatures,
}

impl ClientCerts {
    pub(super) fn new(
        partners: Option<Arc<dyn ClientCertVerifier>>,
        provider: Arc<CryptoProvider>,
    ) -> Arc<ClientCerts> {
        Arc::new(ClientCerts {
            partners,
            signatures: Signatures(provider),
        })
    }
}

impl ClientCertVerifier for ClientCerts {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        if let Some(p) = &self.partners {
            if p.verify_client_cert(end_entity, intermediates, now).is_ok() {
                return Ok(ClientCertVerified::assertion());
            }
        }
        // A device's, for the pool to judge: it must be a certificate
        // (its key then proves possession in the handshake's signature).
        rustls::server::ParsedCertificate::try_from(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.signatures.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.signatures.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.signatures.schemes()
    }
}
