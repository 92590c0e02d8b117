//! The `parapet` command: parses flags and calls the server library.
//! Exit status: 0 success, 1 failure, 2 usage error.
#![forbid(unsafe_code)]

mod admin;
mod syslog;

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use config::RawConfig;

/// mimalloc, tuned (why: crates/alloc).
#[global_allocator]
static GLOBAL: parapet_alloc::Allocator = parapet_alloc::Allocator {};

#[derive(Parser)]
#[command(
    name = "parapet",
    version,
    about = "A security-first unified-communications server"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (SIP registrar with digest authentication and lockout).
    Serve(ServeArgs),
    /// Run an edge: the process in the DMZ that relays remote users to the
    /// front end pool (pair it first: `parapet admin edge pair`).
    Edge(EdgeArgs),
    /// Configuration helpers.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Administer a running server through its admin API: users, groups,
    /// policies, grants, roles, administrators, tokens, lockouts, audit log.
    /// Sign in first with `parapet admin login` (or set PARAPET_ADMIN_TOKEN).
    Admin(admin::AdminArgs),
    /// The security posture check of a running server (see `security check --help`).
    Security(admin::SecurityArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TOML configuration file (see `parapet config example`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory (database, keys, certificates).
    #[arg(long, env = "PARAPET_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The SIP domain (also the digest realm).
    #[arg(long)]
    domain: Option<String>,
    /// A listener, e.g. tls://0.0.0.0:5061 (repeatable; replaces the configured list).
    #[arg(long = "listen", value_name = "URL")]
    listen: Vec<String>,
    /// Permit udp://, tcp:// and ws:// listeners (unencrypted; for tests and benchmarks).
    #[arg(long)]
    allow_insecure_transports: bool,
    /// Log format: text or json.
    #[arg(long)]
    log_format: Option<String>,
    /// The admin listener address (default 127.0.0.1:9060).
    #[arg(long)]
    admin_listen: Option<String>,
    /// The user listener address (HTTPS: the user API and self-service
    /// page; default 0.0.0.0:4443; "" turns it off).
    #[arg(long)]
    web_listen: Option<String>,
}

#[derive(clap::Args)]
struct EdgeArgs {
    /// TOML configuration file (see `parapet config example --edge`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The pairing file `parapet admin edge pair` wrote.
    #[arg(long, env = "PARAPET_EDGE_PAIRING")]
    pairing: Option<PathBuf>,
    /// An external listener, tls:// or wss:// (repeatable; default
    /// tls://0.0.0.0:5061 and wss://0.0.0.0:443).
    #[arg(long = "listen", value_name = "URL")]
    listen: Vec<String>,
    /// The internal listener (mutual TLS with the pool; default: the
    /// address the pairing file names).
    #[arg(long)]
    internal_listen: Option<String>,
    /// Where `/healthz` and `/metrics` are served, on the internal side
    /// (default: the internal address, port 9061; "" turns it off).
    #[arg(long)]
    metrics_listen: Option<String>,
    /// Log format: text or json.
    #[arg(long)]
    log_format: Option<String>,
    /// A listener of the media relay, udp://, tcp:// or tls:// (repeatable;
    /// default ports 3478 and 5349 on the first external listener's
    /// address).
    #[arg(long = "relay-listen", value_name = "URL")]
    relay_listen: Vec<String>,
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Print an example configuration with every key, its default and meaning.
    Example {
        /// The edge's (`parapet edge --config`) instead of the server's.
        #[arg(long)]
        edge: bool,
    },
}

fn main() -> ExitCode {
    parapet_alloc::tune();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("parapet: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    if let Command::Security(a) = cli.command {
        return match rt.block_on(admin::security(a)) {
            Ok(false) => ExitCode::SUCCESS,
            // High-severity findings: distinct from failing to check.
            Ok(true) => ExitCode::from(3),
            Err(e) => {
                eprintln!("parapet: {e}");
                ExitCode::from(1)
            }
        };
    }
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("parapet: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Serve(a) => serve(a).await,
        Command::Edge(a) => edge(a).await,
        Command::Config(ConfigCmd::Example { edge }) => {
            if edge {
                print!("{}", config::edge::edge_example());
            } else {
                print!("{}", config::example());
            }
            Ok(())
        }
        Command::Admin(a) => admin::run(a).await,
        // Handled in main (it has its own exit status).
        Command::Security(_) => Ok(()),
    }
}

async fn serve(a: ServeArgs) -> Result<(), String> {
    let mut raw = match &a.config {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            RawConfig::from_toml(&text).map_err(|e| format!("{}: {e}", p.display()))?
        }
        None => RawConfig::default(),
    };
    if a.data_dir.is_some() {
        raw.data_dir = a.data_dir;
    }
    if a.domain.is_some() {
        raw.domain = a.domain;
    }
    if !a.listen.is_empty() {
        raw.listen = Some(a.listen);
    }
    if a.allow_insecure_transports {
        raw.allow_insecure_transports = Some(true);
    }
    if a.log_format.is_some() {
        raw.log_format = a.log_format;
    }
    if a.admin_listen.is_some() {
        raw.admin_listen = a.admin_listen;
    }
    if a.web_listen.is_some() {
        raw.web_listen = a.web_listen;
    }
    let config = raw.build()?;
    init_logs(config.json_logs, config.syslog.as_ref(), "parapet")?;
    server::serve(config).await
}

async fn edge(a: EdgeArgs) -> Result<(), String> {
    let mut raw = match &a.config {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            config::edge::RawEdgeConfig::from_toml(&text)
                .map_err(|e| format!("{}: {e}", p.display()))?
        }
        None => config::edge::RawEdgeConfig::default(),
    };
    if a.pairing.is_some() {
        raw.pairing = a.pairing;
    }
    if !a.listen.is_empty() {
        raw.listen = Some(a.listen);
    }
    if a.internal_listen.is_some() {
        raw.internal_listen = a.internal_listen;
    }
    if a.metrics_listen.is_some() {
        raw.metrics_listen = a.metrics_listen;
    }
    if a.log_format.is_some() {
        raw.log_format = a.log_format;
    }
    if !a.relay_listen.is_empty() {
        raw.relay.listen = Some(a.relay_listen);
    }
    let s = raw.build()?;
    init_logs(s.log_format == "json", s.syslog.as_ref(), "parapet-edge")?;
    let pairing = edge::pairing::Pairing::load(&s.pairing)?;
    let internal = s.internal_listen.unwrap_or(pairing.internal);
    let names = if s.external_names.is_empty() {
        pairing.external_names.clone()
    } else {
        s.external_names.clone()
    };
    let ws_origins = config::origin_policy(&s.ws_allowed_origins, &pairing.domain, &names)?;
    let cfg = edge::relay::EdgeConfig {
        observe: s
            .metrics_listen
            .unwrap_or(Some(std::net::SocketAddr::new(internal.ip(), 9061))),
        internal,
        external_names: names,
        ws_origins,
        partner_cas: server::partners::trusted(&s.federation)?,
        max_connections_per_partner: s.federation.max_connections_per_partner,
        locate: server::partners::locate_config(&s.federation),
        external: s
            .listen
            .iter()
            .map(|l| {
                let p = match l.scheme {
                    config::Scheme::Wss => sip_transport::Protocol::Wss,
                    _ => sip_transport::Protocol::Tls,
                };
                (p, l.addr)
            })
            .collect(),
        pairing,
        lockout: s.lockout,
        limits: s.limits,
        max_connections_per_ip: s.max_connections_per_ip,
        media: media_relay(&s),
        trace: s.trace.as_ref().map(|t| edge::traces::TraceRing {
            dir: t.dir.clone(),
            max_bytes: t.max_bytes,
            max_age: t.max_age,
        }),
    };
    tracing::info!(edge = %cfg.pairing.name, domain = %cfg.pairing.domain, "edge starting");
    tokio::select! {
        r = edge::relay::run(cfg) => r,
        _ = server::shutdown_signal() => {
            tracing::info!("shutting down");
            Ok(())
        }
    }
}

/// The A/V edge's relay as configured: relayed on `relay.address`, else on
/// the first external listener's address, else on the address this machine
/// reaches other networks from.
fn media_relay(s: &config::edge::EdgeSettings) -> Option<edge::relay::MediaRelay> {
    let r = &s.relay;
    if r.listen.is_empty() {
        tracing::info!("no media relay on this edge (relay.listen is empty)");
        return None;
    }
    let address = r.address.unwrap_or_else(|| {
        s.listen
            .first()
            .map(|l| l.addr.ip())
            .filter(|ip| !ip.is_unspecified())
            .unwrap_or_else(server::machine_address)
    });
    Some(edge::relay::MediaRelay {
        listen: r.listen.clone(),
        address,
        external: r.external_address.unwrap_or(address),
        ports: r.ports.0..=r.ports.1,
        limits: r.limits.clone(),
        source_rate: r.source_rate,
        interfaces: server::interface_addrs(),
    })
}

fn init_logs(
    json: bool,
    syslog: Option<&config::syslog::SyslogTarget>,
    app: &'static str,
) -> Result<(), String> {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::Layer as _;
    // rustls warns once per connection about a client's harmless deviation
    // (an IP address sent as SNI, as some softphones do): what matters of a
    // failed handshake the transport logs itself, rate-limited.
    let filter = tracing_subscriber::EnvFilter::try_from_env("PARAPET_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rustls=error"));
    // Colours only on a terminal: a log file or journal gets plain text.
    let ansi = std::io::stderr().is_terminal();
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let stderr = if json {
        stderr.json().boxed()
    } else {
        stderr.boxed()
    };
    let syslog = match syslog {
        Some(t) => Some(
            tracing_subscriber::fmt::layer()
                .json()
                .with_ansi(false)
                .with_writer(syslog::MakeSyslog(syslog::Syslog::open(t, app)?)),
        ),
        None => None,
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(syslog)
        .init();
    Ok(())
}

/// Reads a password from stdin (`--password-stdin`) or the terminal, never from argv.
fn read_password(from_stdin: bool, aor: &str) -> Result<String, String> {
    if from_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| format!("reading the password from standard input: {e}"))?;
        return Ok(s.trim_end_matches(['\r', '\n']).to_owned());
    }
    if !std::io::stdin().is_terminal() {
        return Err("no terminal to ask for the password on: pass --password-stdin and pipe the password in".into());
    }
    let p1 =
        rpassword::prompt_password(format!("Password for {aor}: ")).map_err(|e| e.to_string())?;
    let p2 = rpassword::prompt_password("Repeat it: ").map_err(|e| e.to_string())?;
    if p1 != p2 {
        return Err("the passwords do not match; nothing was changed".into());
    }
    Ok(p1)
}
