//! `[federation]`: how this server reaches and trusts partners' servers.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawFederation {
    pub trusted_cas: Option<Vec<String>>,
    pub resolvers: Option<Vec<String>>,
    pub allow_private_addresses: Option<bool>,
    pub max_connections_per_partner: Option<usize>,
    pub routes: Option<std::collections::BTreeMap<String, String>>,
}

/// Where the CAs trusted for partners come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustSource {
    /// The operating system's roots.
    System,
    /// A PEM bundle file.
    File(PathBuf),
}

/// The operating system's CA bundle (Debian's `ca-certificates`).
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// How this server reaches and trusts partners' servers. Whether it
/// federates at all is the federation policy's; this is the transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederationConfig {
    pub trusted_cas: Vec<TrustSource>,
    pub resolvers: Vec<SocketAddr>,
    pub allow_private_addresses: bool,
    pub max_connections_per_partner: usize,
    /// Lower-case partner domain → (host, port).
    pub routes: std::collections::BTreeMap<String, (String, u16)>,
}

impl RawFederation {
    /// Validates, with `d`'s values where this has none.
    pub fn build(self, d: RawFederation) -> Result<FederationConfig, String> {
        let cas = self.trusted_cas.or(d.trusted_cas).unwrap_or_default();
        let trusted_cas = cas
            .iter()
            .map(|c| match c.trim() {
                "system" => Ok(TrustSource::System),
                "" => Err(
                    "federation.trusted_cas: an empty entry; use \"system\" or a PEM file's path"
                        .to_string(),
                ),
                p => Ok(TrustSource::File(PathBuf::from(p))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let resolvers = self
            .resolvers
            .unwrap_or_default()
            .iter()
            .map(|r| {
                r.parse::<SocketAddr>().map_err(|_| {
                    format!(
                        "federation.resolvers: {r:?} is not an address:port, e.g. 192.0.2.53:53"
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut routes = std::collections::BTreeMap::new();
        for (domain, to) in self.routes.unwrap_or_default() {
            let domain = domain.trim_end_matches('.').to_ascii_lowercase();
            if domain.is_empty()
                || domain.parse::<std::net::IpAddr>().is_ok()
                || sip::Uri::parse(&format!("sip:{domain}")).is_err()
            {
                return Err(format!(
                    "federation.routes: {domain:?} is not a partner domain name"
                ));
            }
            let bad = || {
                format!("federation.routes: {to:?} (for {domain}) is not host:port, e.g. \"sip.partner.example:5061\"")
            };
            let (host, port) = to.rsplit_once(':').ok_or_else(bad)?;
            let port: u16 = port.parse().ok().filter(|p| *p != 0).ok_or_else(bad)?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if host.is_empty() {
                return Err(bad());
            }
            routes.insert(domain, (host.to_ascii_lowercase(), port));
        }
        let max_connections_per_partner = self.max_connections_per_partner.unwrap_or(4);
        if !(1..=64).contains(&max_connections_per_partner) {
            return Err("federation.max_connections_per_partner must be between 1 and 64".into());
        }
        Ok(FederationConfig {
            max_connections_per_partner,
            trusted_cas,
            resolvers,
            allow_private_addresses: self.allow_private_addresses.unwrap_or(false),
            routes,
        })
    }
}
