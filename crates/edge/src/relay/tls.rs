//! The edge's TLS, built from its pairing file: the external listeners'
//! (WSS asks for no certificate; TLS asks for devices' and partners'),
//! the internal listener's and links' (mutual TLS under the pool's CA),
//! and connections to partners' servers.

use std::sync::Arc;

use sip_transport::ClientTls;

use super::client_certs;
use crate::pairing::Pairing;

/// What the edge's TLS needs, built from the pairing file.
#[derive(Debug)]
pub(super) struct Tls {
    /// The WSS listener's: asks for no certificate (Chromium cancels a
    /// WebSocket handshake whenever the server asks for one).
    pub(super) external_wss: Arc<rustls::ServerConfig>,
    /// The TLS listener's: also asks for a partner's certificate.
    pub(super) external_tls: Arc<rustls::ServerConfig>,
    /// Connections to partners' servers (`None`: no CA trusted for them).
    pub(super) partner_client: Option<Arc<rustls::ClientConfig>>,
    /// Which presented certificates are partners' servers' (the others
    /// are devices').
    pub(super) partner_verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
    pub(super) internal: Arc<rustls::ServerConfig>,
    pub(super) client: ClientTls,
}

pub(super) fn tls(
    p: &Pairing,
    partner_cas: &[rustls_pki_types::CertificateDer<'static>],
) -> Result<Tls, String> {
    use sip_transport::tls::{certs_from_pem, key_from_pem, server_config, ClientAuth};
    let ca = certs_from_pem(p.ca.as_bytes()).map_err(|e| format!("pairing: ca: {e}"))?;
    let chain = certs_from_pem(p.certificate.as_bytes())
        .map_err(|e| format!("pairing: certificate: {e}"))?;
    let key = key_from_pem(p.key.as_bytes()).map_err(|e| format!("pairing: key: {e}"))?;
    let ext_chain = certs_from_pem(p.external_certificate.as_bytes())
        .map_err(|e| format!("pairing: external_certificate: {e}"))?;
    let ext_key = key_from_pem(p.external_key.as_bytes())
        .map_err(|e| format!("pairing: external_key: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in &ca {
        roots
            .add(c.clone())
            .map_err(|e| format!("pairing: ca: {e}"))?;
    }
    let roots = Arc::new(roots);
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        roots.clone(),
        provider.clone(),
    )
    .build()
    .map_err(|e| format!("pairing: ca: {e}"))?;
    let internal = server_config(
        chain.clone(),
        key.clone_key(),
        ClientAuth::Verifier(verifier),
    )
    .map_err(|e| format!("internal TLS: {e}"))?;
    // On TLS a certificate is asked for, never required: devices present
    // theirs, and partners' servers. WSS carries browsers: not asked.
    let external_wss = server_config(ext_chain.clone(), ext_key.clone_key(), ClientAuth::None)
        .map_err(|e| format!("external TLS: {e}"))?;
    let external = server_config(
        ext_chain.clone(),
        ext_key.clone_key(),
        ClientAuth::Verifier(client_certs::ClientCerts::new(None, provider.clone())),
    )
    .map_err(|e| format!("external TLS: {e}"))?;
    let (external_tls, partner_client, partner_verifier) = if partner_cas.is_empty() {
        (external.clone(), None, None)
    } else {
        let trust = federation::verifier::PartnerTrust::new(partner_cas, provider.clone())
            .map_err(|e| format!("federation.trusted_cas: {e}"))?;
        let client = trust.client_config(ext_chain.clone(), ext_key.clone_key())?;
        let partners = trust.inbound_optional();
        let server = server_config(
            ext_chain,
            ext_key,
            ClientAuth::Verifier(client_certs::ClientCerts::new(
                Some(partners.clone()),
                provider.clone(),
            )),
        )
        .map_err(|e| format!("external TLS: {e}"))?;
        (server, Some(client), Some(partners))
    };
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("internal TLS: {e}"))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| format!("pairing: certificate and key: {e}"))?;
    let server_name =
        rustls_pki_types::ServerName::try_from(p.front_end_name.clone()).map_err(|_| {
            format!(
                "pairing: front_end_name {:?} is not a name",
                p.front_end_name
            )
        })?;
    Ok(Tls {
        external_wss,
        external_tls,
        partner_client,
        partner_verifier,
        internal,
        client: ClientTls {
            config: Arc::new(client),
            server_name,
        },
    })
}
