//! Mutual TLS between two organisations' servers, both directions through
//! the partner verifiers, in real handshakes over loopback TCP: each side
//! presents an ordinary serverAuth-only certificate with a `sip:domain`
//! URI, each trusts only the other's CA.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use federation::identity::identities;
use federation::verifier::PartnerTrust;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, Ia5String, IsCa, KeyPair,
    SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

struct Org {
    ca: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

fn org(domain: &str) -> Org {
    let ca_key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(DnType::CommonName, format!("{domain} CA"));
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = p.self_signed(&ca_key).unwrap();
    let mut p = CertificateParams::new(vec![format!("sip.{domain}")]).unwrap();
    p.subject_alt_names.push(SanType::URI(
        Ia5String::try_from(format!("sip:{domain}")).unwrap(),
    ));
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let leaf = p.signed_by(&key, &ca, &ca_key).unwrap();
    Org {
        ca: ca.der().clone(),
        chain: vec![leaf.der().clone()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// `server` accepts a connection from `client` (each trusting only the CA
/// given for the other), which asks for `domain`. What the accepting side
/// learnt of the peer (its domains), or the first error either side saw.
async fn handshake(
    server: &Org,
    server_trusts: &CertificateDer<'static>,
    client: &Org,
    client_trusts: &CertificateDer<'static>,
    domain: &str,
) -> Result<Vec<String>, String> {
    let inbound = PartnerTrust::new(std::slice::from_ref(server_trusts), provider()).unwrap();
    let outbound = PartnerTrust::new(std::slice::from_ref(client_trusts), provider()).unwrap();
    let sc = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(inbound.inbound())
        .with_single_cert(server.chain.clone(), server.key.clone_key())
        .unwrap();
    let cc = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(outbound.outbound())
        .with_client_auth_cert(client.chain.clone(), client.key.clone_key())
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(sc));
    let accept = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        let peer = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        assert_eq!(&buf, b"PING");
        Ok::<_, String>(identities(&peer).unwrap().names)
    });
    let name = ServerName::try_from(domain.to_string()).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    match TlsConnector::from(Arc::new(cc)).connect(name, tcp).await {
        Ok(mut tls) => {
            // TLS 1.3: the server judges the client's certificate after the
            // client's side of the handshake ends; its verdict is awaited.
            let _ = tls.write_all(b"PING").await;
            let _ = tls.flush().await;
            accept.await.unwrap()
        }
        Err(e) => {
            accept.abort();
            Err(e.to_string())
        }
    }
}

#[tokio::test]
async fn partners_with_server_only_certificates_authenticate_each_other() {
    let example = org("example.test");
    let partner = org("partner.test");
    // partner.test connects to example.test, and back.
    assert_eq!(
        handshake(&example, &partner.ca, &partner, &example.ca, "example.test").await,
        Ok(vec!["partner.test".to_string()])
    );
    assert_eq!(
        handshake(&partner, &example.ca, &example, &partner.ca, "partner.test").await,
        Ok(vec!["example.test".to_string()])
    );
}

#[tokio::test]
async fn a_server_that_does_not_speak_for_the_domain_is_refused() {
    let example = org("example.test");
    let partner = org("partner.test");
    // Asking example.test's server for other.test: its certificate names
    // example.test only.
    let e = handshake(&example, &partner.ca, &partner, &example.ca, "other.test")
        .await
        .unwrap_err();
    assert!(e.contains("NotValidForName"), "{e}");
}

#[tokio::test]
async fn a_certificate_from_an_untrusted_ca_is_refused_both_ways() {
    let example = org("example.test");
    let partner = org("partner.test");
    // Someone else claiming partner.test, with a certificate from their CA.
    let impostor = org("partner.test");
    // Inbound: example.test trusts partner.test's CA only.
    let e = handshake(
        &example,
        &partner.ca,
        &impostor,
        &example.ca,
        "example.test",
    )
    .await
    .unwrap_err();
    assert!(
        e.contains("certificate") || e.contains("Certificate"),
        "{e}"
    );
    // Outbound: example.test connects to the impostor's server.
    let e = handshake(
        &impostor,
        &example.ca,
        &example,
        &partner.ca,
        "partner.test",
    )
    .await
    .unwrap_err();
    // Its CA has the same name as partner.test's: webpki finds it by name
    // and the signature does not verify.
    assert!(e.contains("invalid peer certificate"), "{e}");
}
