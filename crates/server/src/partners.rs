//! Federation's transport from the configuration: the CAs trusted for
//! partners, the TLS settings both ways, and the partner locator.

use std::sync::Arc;

use config::{FederationConfig, TrustSource, SYSTEM_CA_BUNDLE};
use federation::locate::{LocateConfig, Locator};
use federation::verifier::PartnerTrust;
use rustls_pki_types::CertificateDer;

/// What `serve` needs for federation.
#[derive(Debug)]
pub struct Partners {
    /// Asks TLS clients for a certificate and checks it against the
    /// partner CAs and the pool's own CA (which issues paired edges'
    /// certificates); clients without one are users' devices.
    pub inbound: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    /// `None`: no CA is trusted for partners, so no federation.
    pub setup: Option<sip_app::FederationSetup>,
}

/// The CA certificates the configuration trusts for partners.
pub fn trusted(cfg: &FederationConfig) -> Result<Vec<CertificateDer<'static>>, String> {
    let files: Vec<(std::path::PathBuf, bool)> = cfg
        .trusted_cas
        .iter()
        .map(|s| match s {
            // The default must not stop a machine without the system's
            // bundle from starting; an explicit file must exist.
            TrustSource::System => (std::path::PathBuf::from(SYSTEM_CA_BUNDLE), true),
            TrustSource::File(p) => (p.clone(), false),
        })
        .collect();
    let (cas, warnings) = federation::verifier::read_cas(&files)
        .map_err(|e| format!("federation.trusted_cas: {e}"))?;
    for w in warnings {
        tracing::warn!(error = %w, "federation.trusted_cas: the system's CA bundle is unreadable (install ca-certificates); public CAs are not trusted for partners");
    }
    Ok(cas)
}

/// How partners' servers are found, from `[federation]`.
pub fn locate_config(cfg: &FederationConfig) -> LocateConfig {
    LocateConfig {
        resolvers: cfg.resolvers.clone(),
        allow_private: cfg.allow_private_addresses,
        routes: cfg.routes.clone().into_iter().collect(),
        ..LocateConfig::default()
    }
}

/// Builds federation's transport and the TLS listener's client
/// certificate check. `Ok(None)`: no CA is trusted for partners
/// (`trusted_cas = []`) and the pool has no CA of its own for edges.
pub fn setup(
    cfg: &FederationConfig,
    ours: Arc<sip_transport::tls::LiveCert>,
    own_ca: &[CertificateDer<'static>],
) -> Result<Option<Partners>, String> {
    let cas = trusted(cfg)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut inbound_cas = cas.clone();
    inbound_cas.extend(own_ca.iter().cloned());
    if inbound_cas.is_empty() {
        return Ok(None);
    }
    let inbound = PartnerTrust::new(&inbound_cas, provider.clone())
        .map_err(|e| format!("federation.trusted_cas: {e}"))?
        .inbound_optional();
    if cas.is_empty() {
        return Ok(Some(Partners {
            inbound,
            setup: None,
        }));
    }
    let trust =
        PartnerTrust::new(&cas, provider).map_err(|e| format!("federation.trusted_cas: {e}"))?;
    let client = trust.client_config_live(ours)?;
    let locator = Locator::new(locate_config(cfg))?;
    Ok(Some(Partners {
        inbound,
        setup: Some(sip_app::FederationSetup {
            client,
            locator: Arc::new(locator),
            max_connections: cfg.max_connections_per_partner,
        }),
    }))
}
