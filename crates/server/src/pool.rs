//! A node's certificate for the other nodes of its pool (several
//! `parapet serve` on one PostgreSQL database): issued at every start by
//! the pool's private CA, whose key the nodes share (`pki/`, copied to
//! each), naming `urn:parapet:node:NODE_ID`, for client authentication
//! only; kept in memory, never written. The other nodes accept a
//! connection presenting it as the node's (`sip_app::pool`); an edge is
//! never issued one.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use config::{ListenUrl, Scheme};

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

/// Where a listener bound to `addr` is dialled from elsewhere: at `addr`,
/// or for a wildcard address at `node` (`None` when unknown).
pub(crate) fn dialled_at(addr: SocketAddr, node: Option<IpAddr>) -> Option<SocketAddr> {
    if !addr.ip().is_unspecified() {
        return Some(addr);
    }
    node.map(|ip| SocketAddr::new(ip, addr.port()))
}

/// The listeners a node records in its row, as the other nodes (and an
/// edge's pairing file) are to dial them: a TLS listener on a wildcard
/// address is written with `address` ([`node_address`]); every other
/// listener as configured. `None` for `address` leaves the wildcard,
/// which names no node to dial.
pub(crate) fn advertised(listen: &[ListenUrl], address: Option<IpAddr>) -> String {
    listen
        .iter()
        .map(|l| match (l.scheme, dialled_at(l.addr, address)) {
            (Scheme::Tls, Some(addr)) => ListenUrl {
                scheme: l.scheme,
                addr,
            }
            .to_string(),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Where the other nodes of a pool, and the pairing file of an edge in
/// front, reach this node's TLS listener when it is on a wildcard
/// address: `node_address` when set, else the address this machine's
/// route to the database leaves from; logged. `None` when no TLS listener
/// is on a wildcard address (each is dialled at its own), the store is
/// SQLite, or no address is known — a warning in the active mode, where
/// the other nodes need it; in the standby mode an edge is then paired
/// with the address given to `parapet admin edges pair --front-end`.
pub(crate) async fn node_address(config: &config::Config) -> Option<IpAddr> {
    let config::Database::Postgres {
        url,
        address,
        active,
        ..
    } = &config.database
    else {
        return None;
    };
    let wildcard = config
        .listen
        .iter()
        .find(|l| l.scheme == Scheme::Tls && l.addr.ip().is_unspecified())?;
    if let Some(ip) = address {
        tracing::info!(listener = %wildcard, %ip, "other nodes and paired edges reach this node's TLS listener at node_address");
        return Some(*ip);
    }
    let target = store_postgres::connect::parse(&url.0).ok()?;
    match store_postgres::connect::local_address_towards(&target).await {
        Some(ip) => {
            tracing::info!(listener = %wildcard, %ip, "other nodes and paired edges reach this node's TLS listener at the address its route to the database leaves from (set node_address to choose another)");
            Some(ip)
        }
        None if *active => {
            tracing::warn!(listener = %wildcard, "no address for the pool's other nodes to reach this node's TLS listener at (the database is reached over a Unix-domain socket, or has no route): set node_address, else the other nodes reach clients connected here only through a registration of their own");
            None
        }
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_tls_listener_is_advertised_at_the_node_address_and_the_rest_as_configured() {
        let listen: Vec<ListenUrl> = [
            "tls://0.0.0.0:5061",
            "tls://[::]:5062",
            "tls://10.0.0.12:5063",
            "wss://0.0.0.0:8443",
            "udp://0.0.0.0:5060",
        ]
        .iter()
        .map(|l| l.parse().unwrap())
        .collect();
        let ip: IpAddr = "10.0.0.11".parse().unwrap();
        assert_eq!(
            advertised(&listen, Some(ip)),
            "tls://10.0.0.11:5061 tls://10.0.0.11:5062 tls://10.0.0.12:5063 wss://0.0.0.0:8443 udp://0.0.0.0:5060"
        );
        assert_eq!(
            advertised(&listen, None),
            "tls://0.0.0.0:5061 tls://[::]:5062 tls://10.0.0.12:5063 wss://0.0.0.0:8443 udp://0.0.0.0:5060"
        );
        assert_eq!(
            dialled_at("0.0.0.0:5061".parse().unwrap(), Some(ip)),
            Some("10.0.0.11:5061".parse().unwrap())
        );
        assert_eq!(dialled_at("0.0.0.0:5061".parse().unwrap(), None), None);
        assert_eq!(
            dialled_at("10.0.0.12:5061".parse().unwrap(), Some(ip)),
            Some("10.0.0.12:5061".parse().unwrap())
        );
        // What the other nodes then dial (sip_app's reading of the row).
        assert_eq!(
            sip_app::pool::tls_listener(&advertised(&listen, Some(ip))),
            Some("10.0.0.11:5061".parse().unwrap())
        );
    }
}
