//! TLS configuration: rustls, TLS 1.2 and 1.3 only, the provider's default
//! suites (all AEAD with forward secrecy), optional client certificates.

use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Whether and how to ask clients for a certificate.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// Do not ask.
    None,
    /// Ask; accept clients without one; verify any presented chain against these roots.
    Optional(Vec<CertificateDer<'static>>),
    /// Require a chain that verifies against these roots (mutual TLS between servers).
    Required(Vec<CertificateDer<'static>>),
    /// Ask, with this verifier deciding what is accepted and whether a
    /// certificate is required (partners' servers, whose certificates a
    /// stock verifier would refuse: see the federation crate).
    Verifier(Arc<dyn rustls::server::danger::ClientCertVerifier>),
}

/// Why a TLS configuration could not be built; the message says what to fix.
#[derive(Debug)]
pub struct TlsError(pub String);

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

/// Parses PEM certificates (leaf first).
pub fn certs_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem).collect();
    let certs = certs.map_err(|e| TlsError(format!("certificate PEM is not readable: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError(
            "no CERTIFICATE block found in the certificate PEM".into(),
        ));
    }
    Ok(certs)
}

/// Parses a PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn key_from_pem(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem)
        .map_err(|e| TlsError(format!("private key PEM is not readable: {e}")))
}

/// A certificate and key that can be replaced while listeners and
/// outbound connections use it (a renewed server certificate takes effect
/// at the next handshake, without a restart). Serves as both the server's
/// certificate and the client certificate presented to partners.
#[derive(Debug)]
pub struct LiveCert {
    current: std::sync::RwLock<Arc<rustls::sign::CertifiedKey>>,
}

fn certified(
    chain: Vec<CertificateDer<'static>>,
    key: &PrivateKeyDer<'static>,
) -> Result<Arc<rustls::sign::CertifiedKey>, TlsError> {
    let signer = rustls::crypto::ring::sign::any_supported_type(key)
        .map_err(|e| TlsError(format!("private key: {e}")))?;
    let ck = rustls::sign::CertifiedKey::new(chain, signer);
    match ck.keys_match() {
        // A key whose public half the provider cannot show is checked at
        // the first handshake instead (as rustls's own builder does).
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(e) => {
            return Err(TlsError(format!(
                "certificate and key do not form a usable pair: {e}"
            )))
        }
    }
    Ok(Arc::new(ck))
}

impl LiveCert {
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: &PrivateKeyDer<'static>,
    ) -> Result<Arc<LiveCert>, TlsError> {
        Ok(Arc::new(LiveCert {
            current: std::sync::RwLock::new(certified(chain, key)?),
        }))
    }

    /// Uses `chain` and `key` from the next handshake on.
    pub fn replace(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key: &PrivateKeyDer<'static>,
    ) -> Result<(), TlsError> {
        let new = certified(chain, key)?;
        if let Ok(mut c) = self.current.write() {
            *c = new;
        }
        Ok(())
    }

    fn get(&self) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.current.read().ok().map(|c| c.clone())
    }

    /// The leaf certificate in use now.
    pub fn leaf(&self) -> Option<CertificateDer<'static>> {
        self.get().and_then(|c| c.cert.first().cloned())
    }
}

impl rustls::server::ResolvesServerCert for LiveCert {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.get()
    }
}

impl rustls::client::ResolvesClientCert for LiveCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.get()
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Builds a server configuration from a certificate chain and its key.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_auth: ClientAuth,
) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_live(LiveCert::new(chain, &key)?, client_auth)
}

/// Builds a server configuration whose certificate can be replaced while
/// it serves ([`LiveCert`]).
pub fn server_config_live(
    cert: Arc<LiveCert>,
    client_auth: ClientAuth,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError(format!("TLS versions: {e}")))?;
    let roots = |certs: Vec<CertificateDer<'static>>| -> Result<Arc<RootCertStore>, TlsError> {
        let mut store = RootCertStore::empty();
        for c in certs {
            store
                .add(c)
                .map_err(|e| TlsError(format!("client CA certificate rejected: {e}")))?;
        }
        Ok(Arc::new(store))
    };
    let builder = match client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Optional(cas) => {
            let v = WebPkiClientVerifier::builder_with_provider(roots(cas)?, provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError(format!("client verifier: {e}")))?;
            builder.with_client_cert_verifier(v)
        }
        ClientAuth::Required(cas) => {
            let v = WebPkiClientVerifier::builder_with_provider(roots(cas)?, provider)
                .build()
                .map_err(|e| TlsError(format!("client verifier: {e}")))?;
            builder.with_client_cert_verifier(v)
        }
        ClientAuth::Verifier(v) => builder.with_client_cert_verifier(v),
    };
    let mut config = builder.with_cert_resolver(cert);
    config.alpn_protocols = Vec::new();
    Ok(Arc::new(config))
}

/// The verified peer chain of an accepted connection, if the client sent one.
pub(crate) fn peer_chain(
    conn: &rustls::ServerConnection,
) -> Option<Arc<Vec<CertificateDer<'static>>>> {
    conn.peer_certificates()
        .map(|c| Arc::new(c.iter().map(|c| c.clone().into_owned()).collect()))
}
