//! The media relay (`[relay]`) beside the SIP listeners: its addresses,
//! the listeners' certificate for its TLS listener, the secret web
//! clients' credentials are minted with (derived from the pool's topology
//! key, so this server's relay and every paired edge's take them, and
//! across restarts), and the link through which it asks the SIP core about
//! users and the store about web sessions, and learns the calls the proxy
//! relays. The relays' shared state exists even when no relay runs here:
//! the user API still mints credentials for the edges' relays.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use config::Config;
use relay::engine::Transport;
use relay::serve::Ask;
use sip_app::command::AdminCmd;
use tokio::sync::mpsc;

use crate::datadir::DataDir;

/// The address this machine reaches other networks from: the source the
/// kernel picks towards a documentation address (connecting a UDP socket
/// sends nothing), else its first address that is not loopback, else
/// loopback (the relay then serves only this machine, which is logged).
pub fn machine_address() -> IpAddr {
    let routed = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|s| {
            s.connect(SocketAddr::from(([192, 0, 2, 1], 9)))?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .ok()
        .filter(|ip| !ip.is_unspecified() && !ip.is_loopback());
    routed
        .or_else(|| {
            sip_app::identity::interface_addrs()
                .into_iter()
                .find(|a| a.is_ipv4() && !a.is_loopback())
        })
        .unwrap_or_else(|| {
            tracing::warn!("relay: this machine has no address but loopback; set relay.address");
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        })
}

/// The relays as they will run: decided before the APIs start, which mint
/// web credentials.
pub(crate) struct Plan {
    /// This server's relay: where it relays, what it advertises (`None`:
    /// none runs here).
    local: Option<(IpAddr, IpAddr)>,
    secret: Arc<[u8; 32]>,
    control: Arc<relay::Control>,
}

/// The relays' plan.
pub(crate) fn plan(config: &Config, dir: &DataDir) -> Result<Plan, String> {
    let r = &config.relay;
    let local = if r.listen.is_empty() {
        tracing::info!("no media relay here (relay.listen is empty); the edges' relays, if any, are handed to browsers");
        None
    } else {
        let address = r.address.unwrap_or_else(machine_address);
        Some((address, r.external_address.unwrap_or(address)))
    };
    let key = crate::edges::topology_key(&dir.root)?;
    Ok(Plan {
        local,
        secret: Arc::new(relay::credentials::secret_from_pool_key(&key)),
        control: Arc::new(relay::Control::new()),
    })
}

impl Plan {
    /// What the user API needs to mint web credentials: the relay's URIs
    /// (its outside address for UDP and TCP; for TLS the name its
    /// certificate carries).
    pub(crate) fn access(&self, config: &Config) -> api::RelayAccess {
        let urls = match self.local {
            None => Vec::new(),
            Some((_, external)) => {
                let host = match external {
                    IpAddr::V6(a) => format!("[{a}]"),
                    a => a.to_string(),
                };
                let name = config.host_names.first().unwrap_or(&config.domain);
                config
                    .relay
                    .listen
                    .iter()
                    .map(|(t, a)| match t {
                        Transport::Udp => format!("turn:{host}:{}?transport=udp", a.port()),
                        Transport::Tcp => format!("turn:{host}:{}?transport=tcp", a.port()),
                        Transport::Tls => format!("turns:{name}:{}?transport=tcp", a.port()),
                    })
                    .collect()
            }
        };
        api::RelayAccess {
            secret: self.secret.clone(),
            urls,
            ttl: relay::credentials::DEFAULT_TTL,
            control: self.control.clone(),
        }
    }
}

/// Starts this server's relay, if one runs here, and links it to the core
/// and the store; the core gets the relays' shared state either way.
pub(crate) async fn start<S: store::Store>(
    plan: Plan,
    config: &Config,
    dir: &DataDir,
    store: S,
    metrics: &Arc<relay::metrics::Metrics>,
    core_tx: &mpsc::Sender<AdminCmd>,
    core: &mut sip_app::Core<S>,
) -> Result<(), String> {
    let Some((address, external)) = plan.local else {
        core.set_relay(plan.control, false);
        return Ok(());
    };
    let r = &config.relay;
    let tls = sip_transport::tls::server_config_live(
        dir.cert.clone(),
        sip_transport::tls::ClientAuth::None,
    )
    .map_err(|e| format!("relay TLS: {e}"))?;
    let settings = relay::serve::Settings {
        listen: r.listen.clone(),
        tls: Some(tls),
        relay_ip: address,
        external_ip: external,
        ports: r.ports.0..=r.ports.1,
        realm: config.domain.clone(),
        limits: r.limits.clone(),
        source_rate: r.source_rate,
        web_secret: Some(plan.secret.clone()),
        interfaces: sip_app::identity::interface_addrs(),
        // The front end's table has every call its proxy relays.
        ask_calls: false,
    };
    let (asks, mut asked) = mpsc::channel(256);
    let handle = relay::serve::start(settings, plan.control.clone(), metrics.clone(), asks)
        .await
        .map_err(|e| format!("cannot start the media relay: {e} (relay.listen)"))?;
    for (t, a) in &handle.local {
        tracing::info!(transport = t.name(), addr = %a, relayed_on = %address, "media relay listening");
    }
    let core_tx = core_tx.clone();
    tokio::spawn(async move {
        while let Some(ask) = asked.recv().await {
            match ask {
                // Web sessions are the store's, read off the core.
                Ask::Session {
                    aor,
                    session,
                    reply,
                } => {
                    let store = store.clone();
                    tokio::spawn(async move {
                        let live = sip_app::session_live(&store, &aor, &session).await;
                        let _ = reply.send(live);
                    });
                }
                ask => {
                    if core_tx.send(AdminCmd::Relay(ask)).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    core.set_relay(plan.control, true);
    Ok(())
}
