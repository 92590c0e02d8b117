//! # parapet-server: the wiring of `parapet serve`
//!
//! [`serve`] opens the data directory ([`datadir`]: keys, the private CA and
//! the listeners' certificate), opens the store (SQLite, the embedded
//! default), binds the listeners, starts the admin and user APIs (`api`) and
//! runs the SIP application (`sip_app::Core`) until a signal. Nothing else
//! lives here: the SIP application, the APIs and the store are their own
//! crates, and the binary (`crates/parapet`) only parses flags and calls in
//! here.
#![forbid(unsafe_code)]

pub mod byo;
pub mod database;
pub mod datadir;
pub mod edges;
pub mod migrate;
pub mod partners;
mod pool;
pub mod recover;
mod relay_setup;
pub use relay_setup::machine_address;
pub use sip_app::identity::interface_addrs;
pub mod renew;

use std::sync::Arc;

use config::Config;
use sip_transport::{Listener, Transport, TransportConfig};

/// Runs the server until SIGINT/SIGTERM.
pub async fn serve(config: Config) -> Result<(), String> {
    let dir = datadir::DataDir::open_or_init(&config)?;
    if dir.created {
        tracing::info!(ca = %dir.ca_path.display(), "new data directory: clients must trust this CA certificate");
    }
    if config.allow_insecure_transports {
        tracing::warn!("insecure transports are enabled: SIP over plain UDP/TCP/WS is readable and forgeable on the network");
    }
    // What the other nodes of a pool dial (a wildcard TLS listener at
    // this node's address).
    let node_ip = pool::node_address(&config).await;
    let listeners = pool::advertised(&config.listen, node_ip);
    let opened = database::open(
        &config.database,
        &dir.db_path,
        dir.audit_key,
        None,
        database::Role::Serve { listeners },
    )
    .await?;
    if matches!(
        config.database,
        config::Database::Postgres {
            plain_text: true,
            ..
        }
    ) {
        tracing::warn!("the database connection is plain text (sslmode=disable): SIP users' digest secrets and every message cross the network readable");
    }
    // On PostgreSQL this node holds a lease (joined at open): if another
    // node declares it dead (the lease lapsed: the process was stopped,
    // or cut off from the database), none of its writes commits any more
    // and it stops; a clean stop leaves the pool at once.
    let pool = match &opened {
        database::Opened::Postgres(p) => Some(p.clone()),
        database::Opened::Sqlite(_) => None,
    };
    let fenced = pool.as_ref().and_then(store_postgres::Postgres::fenced);
    let result = with_store!(opened, store => run(config, dir, store, fenced, node_ip).await);
    if let (Ok(()), Some(p)) = (&result, pool) {
        match tokio::time::timeout(std::time::Duration::from_secs(5), p.leave()).await {
            Ok(Ok(())) => tracing::info!("left the pool"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not leave the pool: another node takes over when this node's lease lapses")
            }
            Err(_) => tracing::warn!(
                "leaving the pool timed out: another node takes over when this node's lease lapses"
            ),
        }
    }
    result
}

/// The server on an open store.
async fn run<S: store::Store>(
    config: Config,
    dir: datadir::DataDir,
    store: S,
    fenced: Option<tokio::sync::watch::Receiver<bool>>,
    node_ip: Option<std::net::IpAddr>,
) -> Result<(), String> {
    // The pool's own CA issues paired edges' internal certificates (only
    // when it issued the listeners' certificate too).
    let private_ca = config.tls_cert.is_none();
    let own_ca = if private_ca {
        let pem =
            std::fs::read(&dir.ca_path).map_err(|e| format!("{}: {e}", dir.ca_path.display()))?;
        sip_transport::tls::certs_from_pem(&pem)
            .map_err(|e| format!("{}: {e}", dir.ca_path.display()))?
    } else {
        Vec::new()
    };
    if dir.generated {
        renew::spawn(
            dir.root.join("pki"),
            renew::Names {
                domain: config.domain.clone(),
                host_names: config.host_names.clone(),
            },
            dir.cert.clone(),
        );
    }
    let partners = partners::setup(&config.federation, dir.cert.clone(), &own_ca)?;
    if partners.is_none() {
        tracing::info!("federation.trusted_cas is empty and the listeners use the operator's certificates: no partner or edge can connect");
    }
    // Device certificates: the device CA and the ones valid now. SIP over
    // TLS and WSS ask for a client certificate (never require one): a
    // device's is checked against the registry at the handshake, anything
    // else is the partners' verifier's to decide.
    let device_ca = pki::ca::DeviceCa::load(&dir.device_ca.0, &dir.device_ca.1, &config.domain)?;
    let registry = Arc::new(pki::registry::Registry::default());
    let active = store::Devices::active_devices(&store, sip_app::unix_now())
        .await
        .map_err(|e| e.to_string())?;
    // Parapet's own only: the organisation's certificates are recorded
    // again at their first use, with the chain their revocation is
    // checked against.
    registry.replace(
        active
            .into_iter()
            .filter(|d| device_ca.issued(d.certificate.as_bytes()))
            .filter_map(|d| {
                Some((
                    pki::registry::parse_fingerprint(&d.fingerprint)?,
                    pki::registry::Device {
                        aor: d.aor,
                        id: d.id,
                        not_after: d.expires_at,
                        org: None,
                    },
                ))
            }),
    );
    // Parapet's own revocations of the organisation's certificates.
    let revoked = store::Devices::revoked_devices(&store, sip_app::unix_now())
        .await
        .map_err(|e| e.to_string())?;
    registry.deny(
        revoked
            .iter()
            .filter_map(|d| pki::registry::parse_fingerprint(&d.fingerprint)),
    );
    let org = byo::setup(&config.client_certificates, &config.domain)?;
    let crl_refresh = config.client_certificates.crl_refresh;
    let mut crls = byo::Crls::new(config.client_certificates.crls.clone());
    if let Some(org) = &org {
        crls.refresh(org).await;
    }
    let client_tls = |with_partners: bool| {
        let v: Arc<dyn rustls::server::danger::ClientCertVerifier> =
            pki::verifier::ClientTrust::new(
                device_ca.certificate(),
                registry.clone(),
                org.clone(),
                partners
                    .as_ref()
                    .filter(|_| with_partners)
                    .map(|p| p.inbound.clone()),
            )?;
        sip_transport::tls::server_config_live(
            dir.cert.clone(),
            sip_transport::tls::ClientAuth::Verifier(v),
        )
        .map_err(|e| format!("TLS: {e}"))
    };
    let sip_tls = client_tls(true)?;
    // The user listener asks for device certificates (never partners'): a
    // device's certificate signs its file transfers in (Linphone's
    // uploads and downloads); a browser without one is asked nothing.
    let web_tls = client_tls(false)?;
    // WSS carries browsers, and Chromium cancels a WebSocket handshake
    // whenever the server asks for a certificate: the WSS listeners ask
    // only where the configuration says so (softphones over WSS).
    let wss_tls = if config.client_certificates.on_wss {
        web_tls.clone()
    } else {
        sip_transport::tls::server_config_live(
            dir.cert.clone(),
            sip_transport::tls::ClientAuth::None,
        )
        .map_err(|e| format!("TLS: {e}"))?
    };
    let listeners = config
        .listen
        .iter()
        .map(|l| match l.scheme {
            config::Scheme::Udp => Listener::Udp(l.addr),
            config::Scheme::Tcp => Listener::Tcp(l.addr),
            config::Scheme::Tls => Listener::Tls(l.addr, sip_tls.clone()),
            config::Scheme::Ws => Listener::Ws(l.addr),
            config::Scheme::Wss => Listener::Wss(l.addr, wss_tls.clone()),
        })
        .collect();
    let metrics = Arc::new(sip_app::metrics::Metrics::default());
    let tap = trace_tap(&config, &metrics)?;
    let tcfg = TransportConfig {
        limits: config.limits,
        max_connections_per_ip: config.max_connections_per_ip,
        ws_origins: config.ws_origins.clone(),
        tap,
        ..TransportConfig::default()
    };
    let (transport, inbound) = Transport::bind(tcfg, listeners)
        .await
        .map_err(|e| format!("cannot bind a listener: {e}"))?;
    for (p, addr, _) in transport.local_addrs() {
        tracing::info!(protocol = p.via_token(), %addr, "listening");
    }
    // What an edge paired with this server dials (a wildcard listener at
    // node_address or the route to the database, on PostgreSQL).
    let tls_listener = transport
        .local_addr(sip_transport::Protocol::Tls)
        .and_then(|a| pool::dialled_at(a, node_ip));
    let pairing = edges::Registry::new(&dir.root, &config.domain, tls_listener, private_ca);
    if let Some(r) = &pairing {
        edges::import_legacy(r, &store).await?;
    }
    let edge_registry: Option<Arc<dyn api::edges::EdgeRegistry>> =
        pairing.map(|r| Arc::new(r) as Arc<dyn api::edges::EdgeRegistry>);
    let (admin_tx, admin_rx) = tokio::sync::mpsc::channel(64);
    if !config.admin_listen.ip().is_loopback() {
        tracing::warn!(addr = %config.admin_listen, "the admin listener is not on a loopback address");
    }
    let config = Arc::new(config);
    let seal = Arc::new(
        auth::secret::SecretKey::from_bytes(&dir.seal_key).map_err(|_| "invalid sealing key")?,
    );
    let relay_plan = relay_setup::plan(&config, &dir)?;
    let archive_dir = config.archive_keys();
    let archive_keys = match tokio::task::spawn_blocking(move || {
        archive::Keyring::open(&archive_dir)
    })
    .await
    .map_err(|e| format!("archive keys: {e}"))?
    {
        Ok(k) => Some(Arc::new(k)),
        Err(e) => {
            tracing::error!(error = %e, "the IM archive cannot keep or read records: its key directory is unusable");
            None
        }
    };
    let bound = api::serve(api::AdminSetup {
        archive: archive_keys.clone(),
        relay: Some(relay_plan.access(&config)),
        addr: config.admin_listen,
        store: store.clone(),
        seal: seal.clone(),
        realm: config.domain.clone(),
        cfg: config.clone(),
        metrics: metrics.clone(),
        core: admin_tx.clone(),
        web: config.web_listen.map(|a| (a, web_tls.clone())),
        edges: edge_registry.clone(),
        devices: Arc::new(api::devices::DeviceAuthority {
            ca: device_ca,
            registry: registry.clone(),
        }),
        files: Some(api::files::FileService::open(dir.root.join("files"))?),
    })
    .await?;
    tracing::info!(addr = %bound.admin, "admin listener (/healthz, /metrics, the admin API under /v1)");
    if let Some(web) = bound.web {
        tracing::info!(addr = %web, "user listener (HTTPS: the user API under /user/v1, the self-service page at /)");
    }
    let keys = sip_app::Keys {
        seal: dir.seal_key,
        nonce: dir.nonce_key,
        archive: archive_keys.clone(),
    };
    let metrics_relay = metrics.relay.clone();
    let core = sip_app::Core::new(
        config.clone(),
        &keys,
        store.clone(),
        transport.clone(),
        metrics,
        partners.and_then(|p| p.setup),
        sip_app::DeviceTrust {
            registry: registry.clone(),
            org: org.clone(),
        },
    )
    .await?;
    let mut core = core;
    if let config::Database::Postgres {
        node_id,
        active: true,
        ..
    } = &config.database
    {
        if private_ca {
            core.set_pool(pool::setup(&dir.root, &config.domain, node_id)?);
        } else {
            tracing::warn!("the listeners use the operator's certificates: this node cannot reach the pool's other nodes (their node certificates come from the private CA); clients connected to another node are reached only through it");
        }
    }
    if let Some(reg) = edge_registry {
        let loader = reg.clone();
        core.set_edge_loader(Arc::new(move |rows: &[store::EdgeRow]| loader.setup(rows)));
        let rows = store::EdgePairings::edges(&store)
            .await
            .map_err(|e| format!("the paired edges: {e}"))?;
        let list = tokio::task::spawn_blocking(move || reg.setup(&rows))
            .await
            .map_err(|e| format!("edge registry: {e}"))??;
        let (reply, _) = tokio::sync::oneshot::channel();
        // Queued before the core runs: it knows its edges from the start.
        admin_tx
            .send(sip_app::command::AdminCmd::SetEdges(list, reply))
            .await
            .map_err(|_| "the SIP core is not running")?;
    }
    // The core runs as a task on the runtime, not on this thread: a datagram
    // received by a worker then wakes the core on the same worker (tokio's
    // LIFO slot) instead of waking another thread for every request.
    if let Some(org) = org {
        byo::spawn(
            crls,
            crl_refresh,
            org,
            registry,
            store.clone(),
            transport.clone(),
        );
    }
    let mut core = core;
    {
        relay_setup::start(
            relay_plan,
            &config,
            &dir,
            store.clone(),
            &metrics_relay,
            &admin_tx,
            &mut core,
        )
        .await?;
    }
    let writers = core.take_writers();
    let mut core_task = tokio::spawn(core.run(inbound, admin_rx));
    let fenced = async move {
        match fenced {
            Some(mut rx) => {
                let _ = rx.wait_for(|f| *f).await;
            }
            None => std::future::pending().await,
        }
    };
    let result = tokio::select! {
        r = &mut core_task => r.unwrap_or_else(|e| Err(format!("the SIP core stopped: {e}"))),
        _ = fenced => Err("this node's lease on the database lapsed and another node took over; stopping (nothing this node writes is accepted any more)".to_string()),
        _ = shutdown_signal() => {
            tracing::info!("shutting down");
            Ok(())
        }
    };
    core_task.abort();
    transport.shutdown();
    // The core is gone with its queues' senders: the archive's and call
    // records' writers write what they hold and end (at most 5 s).
    let _ = core_task.await;
    let drained = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        for w in writers {
            let _ = w.await;
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "archive or call records still being written at the stop were given up after 5 s"
        );
    }
    result
}

/// SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// The HEP collector `trace.hep` names; over TLS, its certificate checked
/// against `trace.hep_trusted_cas`.
fn hep_target(t: &config::HepTarget) -> Result<trace::Hep, String> {
    let (host, port, trusted_cas) = match t {
        config::HepTarget::Udp(a) => return Ok(trace::Hep::Udp(*a)),
        config::HepTarget::Tls {
            host,
            port,
            trusted_cas,
        } => (host, port, trusted_cas),
    };
    let files: Vec<(std::path::PathBuf, bool)> = trusted_cas
        .iter()
        .map(|p| {
            (
                p.clone(),
                p.as_path() == std::path::Path::new(config::SYSTEM_CA_BUNDLE),
            )
        })
        .collect();
    let (cas, warnings) = federation::verifier::read_cas(&files)
        .map_err(|e| format!("trace.hep_trusted_cas: {e}"))?;
    for w in warnings {
        tracing::warn!(error = %w, "trace.hep_trusted_cas: the system's CA bundle is unreadable (install ca-certificates)");
    }
    let mut roots = rustls::RootCertStore::empty();
    for c in cas {
        roots
            .add(c)
            .map_err(|e| format!("trace.hep_trusted_cas: {e}"))?;
    }
    if roots.is_empty() {
        return Err("trace.hep_trusted_cas: no CA certificate could be read, so the HEP collector could not be verified".into());
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(trace::Hep::Tls(trace::TlsCollector {
        host: host.clone(),
        port: *port,
        tls: Arc::new(tls),
    }))
}

/// The SIP trace ring (`DATA/traces`, or this node's directory under
/// `trace.dir` in a pool) and HEP export, as `[trace]` says: the
/// transport's tap, or `None` when both are off.
fn trace_tap(
    config: &config::Config,
    metrics: &Arc<sip_app::metrics::Metrics>,
) -> Result<Option<sip_transport::Tap>, String> {
    let t = &config.trace;
    if t.max_bytes == 0 && t.hep.is_none() {
        return Ok(None);
    }
    let caps = trace::Caps {
        max_bytes: t.max_bytes,
        max_age: t.max_age,
    };
    let hep = match &t.hep {
        Some((target, agent)) => Some((hep_target(target)?, *agent)),
        None => None,
    };
    let writer = match &config.database {
        // The pool's nodes keep their rings side by side (config::trace_ring).
        config::Database::Postgres { node_id, .. } => trace::start_pooled(
            &config.trace_root(),
            node_id,
            caps,
            hep,
            metrics.trace.clone(),
        )?,
        config::Database::Embedded => {
            trace::start(&config.trace_ring(), caps, hep, metrics.trace.clone())?
        }
    };
    match &t.hep {
        Some((config::HepTarget::Udp(to), _)) => {
            tracing::info!(collector = %to, "SIP messages sent to a HEP v3 collector over UDP")
        }
        Some((config::HepTarget::Tls { host, port, .. }, _)) => {
            tracing::info!(collector = %host, port, "SIP messages sent to a HEP v3 collector over TLS")
        }
        None => {}
    }
    Ok(Some(sip_transport::Tap(Arc::new(
        move |c: sip_transport::Captured| {
            writer.capture(trace::Record {
                at_ms: c.at_ms,
                inbound: c.inbound,
                protocol: c.protocol.via_token(),
                local: c.local,
                remote: c.remote,
                message: c.bytes,
            })
        },
    ))))
}
