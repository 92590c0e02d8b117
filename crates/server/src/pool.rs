//! A node's certificate for the other nodes of its pool (several
//! `parapet serve` on one PostgreSQL database): issued at every start by
//! the pool's private CA, whose key the nodes share (`pki/`, copied to
//! each), naming `urn:parapet:node:NODE_ID`, for client authentication
//! only; kept in memory, never written. The other nodes accept a
//! connection presenting it as the node's (`sip_app::pool`); an edge is
//! never issued one.

use std::path::Path;
use std::sync::Arc;

use sip_app::pool::{PoolSetup, NODE_URI_PREFIX};

/// How long a node's certificate lasts (a node restarts well within it;
/// one running longer presents an expired one and is refused, saying so).
const CERT_DAYS: i64 = 397;

fn g(e: rcgen::Error) -> String {
    format!("node certificate: {e}")
}

/// The setup for reaching the other nodes as `node`: this node's
/// certificate presented, theirs verified against the pool's CA for the
/// domain. Needs the private CA's key in `pki/`.
pub(crate) fn setup(root: &Path, domain: &str, node: &str) -> Result<PoolSetup, String> {
    use rcgen::{
        CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
        KeyUsagePurpose,
    };
    let pki = root.join("pki");
    let read = |name: &str| {
        std::fs::read(pki.join(name)).map_err(|e| format!("{}: {e}", pki.join(name).display()))
    };
    let ca_pem = read("ca.pem")?;
    let ca_key_pem =
        String::from_utf8(read("ca-key.pem")?).map_err(|_| "pki/ca-key.pem is not PEM")?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(g)?;
    let ca = crate::datadir::ca_params(domain)
        .map_err(g)?
        .self_signed(&ca_key)
        .map_err(g)?;
    let now = time::OffsetDateTime::now_utc();
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(g)?;
    let uri = rcgen::Ia5String::try_from(format!("{NODE_URI_PREFIX}{node}")).map_err(g)?;
    p.subject_alt_names = vec![rcgen::SanType::URI(uri)];
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("{node} ({domain})"));
    p.distinguished_name = dn;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.use_authority_key_identifier_extension = true;
    p.not_before = now - time::Duration::minutes(5);
    p.not_after = now + time::Duration::days(CERT_DAYS);
    let key = KeyPair::generate().map_err(g)?;
    let cert = p.signed_by(&key, &ca, &ca_key).map_err(g)?;
    let ca_certs =
        sip_transport::tls::certs_from_pem(&ca_pem).map_err(|e| format!("pki/ca.pem: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in &ca_certs {
        roots
            .add(c.clone())
            .map_err(|e| format!("pki/ca.pem: {e}"))?;
    }
    let chain = vec![cert.der().clone()];
    let key = sip_transport::tls::key_from_pem(key.serialize_pem().as_bytes())
        .map_err(|e| format!("node key: {e}"))?;
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .map_err(|e| format!("node certificate: {e}"))?;
    Ok(PoolSetup {
        dial: Some(Arc::new(cfg)),
        own_ca: ca_certs.first().map(|c| c.to_vec()),
        server_name: domain.to_owned(),
    })
}
