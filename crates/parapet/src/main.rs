//! The `parapet` command: parses flags and calls the server library.
//! Exit status: 0 success, 1 failure, 2 usage error.
#![forbid(unsafe_code)]

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use server::manage::Manager;
use server::RawConfig;

/// mimalloc instead of glibc's allocator. Measured (bench/README.md, memory
/// section): after a burst of 10,000 registrations the live heap is ~11 MB,
/// but glibc kept the burst's peak (transactions held for timer J) in
/// fragmented arenas: 46 MB resident in steady state, against 27 MB with
/// mimalloc (and 33 MB with jemalloc), with the same code.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "parapet",
    version,
    about = "A security-first unified-communications server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (SIP registrar with digest authentication and lockout).
    Serve(ServeArgs),
    /// Configuration helpers.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Manage SIP users (works whether or not the server is running).
    #[command(subcommand)]
    User(UserCmd),
    /// Show the running server's state and warnings.
    Status {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Lockouts engaged by the security filter (failed sign-ins).
    #[command(subcommand)]
    Lockout(LockoutCmd),
}

#[derive(clap::Args)]
struct AdminArgs {
    /// The admin listener of the running server.
    #[arg(
        long = "server",
        env = "PARAPET_ADMIN_URL",
        default_value = "http://127.0.0.1:9060"
    )]
    server: String,
    /// Data directory of the server (its admin token is read from there).
    #[arg(long, env = "PARAPET_DATA_DIR", default_value = "/var/lib/parapet")]
    data_dir: PathBuf,
}

#[derive(Subcommand)]
enum LockoutCmd {
    /// List active lockouts.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Clear lockouts (all, or for one account and/or one source address).
    ///
    /// Example: parapet lockout clear --account sip:alice@example.com --source 198.51.100.7
    Clear {
        #[arg(long)]
        account: Option<String>,
        #[arg(long)]
        source: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
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
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Print an example configuration with every key, its default and meaning.
    Example,
}

#[derive(clap::Args)]
struct DataDirArg {
    /// Data directory of the server.
    #[arg(long, env = "PARAPET_DATA_DIR", default_value = "/var/lib/parapet")]
    data_dir: PathBuf,
}

#[derive(Subcommand)]
enum UserCmd {
    /// Add a user. The password is read from standard input (--password-stdin) or
    /// asked for on the terminal; it is never a command-line argument.
    ///
    /// Example: echo 'correct horse battery' | parapet user add sip:alice@example.com --password-stdin
    Add {
        uri: String,
        #[arg(long)]
        display_name: Option<String>,
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        dir: DataDirArg,
    },
    /// Change a user's password.
    Passwd {
        uri: String,
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        dir: DataDirArg,
    },
    /// Disable a user: sign-ins fail and registrations are dropped.
    Disable {
        uri: String,
        #[command(flatten)]
        dir: DataDirArg,
    },
    /// Enable a disabled user.
    Enable {
        uri: String,
        #[command(flatten)]
        dir: DataDirArg,
    },
    /// Remove a user with their registrations and stored messages.
    Remove {
        uri: String,
        #[command(flatten)]
        dir: DataDirArg,
    },
    /// List users.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        dir: DataDirArg,
    },
    /// Import users from a TSV file: uri<TAB>password[<TAB>display name] per line.
    Import {
        file: PathBuf,
        #[command(flatten)]
        dir: DataDirArg,
    },
}

fn main() -> ExitCode {
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
        Command::Config(ConfigCmd::Example) => {
            print!("{}", server::config::example());
            Ok(())
        }
        Command::User(cmd) => user(cmd).await,
        Command::Status { json, admin } => status(json, admin).await,
        Command::Lockout(cmd) => lockout(cmd).await,
    }
}

/// Calls the admin API of the running server with the data directory's token.
async fn admin_call(
    admin: &AdminArgs,
    method: &'static str,
    path: String,
) -> Result<serde_json::Value, String> {
    let token = server::datadir::DataDir::open_existing(&admin.data_dir)?.admin_token;
    let url = format!("{}{path}", admin.server.trim_end_matches('/'));
    let server_url = admin.server.clone();
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let auth = format!("Bearer {token}");
        let resp = match method {
            "POST" => agent.post(&url).header("Authorization", &auth).send_empty(),
            _ => agent.get(&url).header("Authorization", &auth).call(),
        };
        let mut resp = resp.map_err(|e| format!("cannot reach the server at {server_url}: {e} (is `parapet serve` running? see --server)"))?;
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().map_err(|e| e.to_string())?;
        let json: serde_json::Value = serde_json::from_str(&body).map_err(|_| format!("unexpected answer from {server_url}: {body}"))?;
        if status >= 400 {
            let detail = json.get("detail").and_then(|d| d.as_str()).unwrap_or("");
            return Err(format!("the server refused ({status}): {detail}"));
        }
        Ok(json)
    })
    .await
    .map_err(|e| e.to_string())?
}

async fn status(json: bool, admin: AdminArgs) -> Result<(), String> {
    let s = admin_call(&admin, "GET", "/v0/status".into()).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&s).map_err(|e| e.to_string())?
        );
        return Ok(());
    }
    let field = |k: &str| {
        s.get(k)
            .map(|v| v.to_string().trim_matches('"').to_owned())
            .unwrap_or_default()
    };
    println!("Parapet {} serving {}", field("version"), field("domain"));
    if let Some(l) = s.get("listeners").and_then(|l| l.as_array()) {
        let list: Vec<String> = l
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        println!("listeners:     {}", list.join(", "));
    }
    println!("users:         {}", field("users"));
    println!("registrations: {}", field("registrations"));
    println!("connections:   {}", field("connections"));
    println!("uptime:        {}s", field("uptime_secs"));
    for w in s
        .get("warnings")
        .and_then(|w| w.as_array())
        .into_iter()
        .flatten()
    {
        println!("WARNING: {}", w.as_str().unwrap_or_default());
    }
    Ok(())
}

async fn lockout(cmd: LockoutCmd) -> Result<(), String> {
    match cmd {
        LockoutCmd::List { json, admin } => {
            let v = admin_call(&admin, "GET", "/v0/lockouts".into()).await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?
                );
                return Ok(());
            }
            let rows = v.as_array().cloned().unwrap_or_default();
            if rows.is_empty() {
                println!("no active lockouts");
            }
            for r in rows {
                let source = r
                    .get("source")
                    .and_then(|s| s.as_str())
                    .unwrap_or("(all unfamiliar addresses)");
                println!(
                    "{:<40} {:<24} until {} (lockout #{})",
                    r.get("account").and_then(|a| a.as_str()).unwrap_or(""),
                    source,
                    r.get("until").map(|u| u.to_string()).unwrap_or_default(),
                    r.get("lockouts").map(|u| u.to_string()).unwrap_or_default()
                );
            }
        }
        LockoutCmd::Clear {
            account,
            source,
            admin,
        } => {
            let mut q = Vec::new();
            if let Some(a) = &account {
                q.push(format!("account={}", encode(a)));
            }
            if let Some(s) = &source {
                q.push(format!("source={}", encode(s)));
            }
            let path = format!(
                "/v0/lockouts/clear{}{}",
                if q.is_empty() { "" } else { "?" },
                q.join("&")
            );
            let v = admin_call(&admin, "POST", path).await?;
            println!(
                "cleared {} active lockouts",
                v.get("cleared").map(|c| c.to_string()).unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
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
    let config = raw.build()?;
    init_logs(config.json_logs);
    server::serve(config).await
}

fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PARAPET_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        b.json().init();
    } else {
        b.init();
    }
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

async fn user(cmd: UserCmd) -> Result<(), String> {
    match cmd {
        UserCmd::Add {
            uri,
            display_name,
            password_stdin,
            dir,
        } => {
            let m = Manager::open(&dir.data_dir).await?;
            m.parse_uri(&uri)?;
            let pw = read_password(password_stdin, &uri)?;
            let aor = m.add(&uri, display_name, &pw).await?;
            println!("added {aor}");
        }
        UserCmd::Passwd {
            uri,
            password_stdin,
            dir,
        } => {
            let m = Manager::open(&dir.data_dir).await?;
            m.parse_uri(&uri)?;
            let pw = read_password(password_stdin, &uri)?;
            println!("password changed for {}", m.passwd(&uri, &pw).await?);
        }
        UserCmd::Disable { uri, dir } => println!(
            "disabled {}",
            Manager::open(&dir.data_dir)
                .await?
                .set_enabled(&uri, false)
                .await?
        ),
        UserCmd::Enable { uri, dir } => println!(
            "enabled {}",
            Manager::open(&dir.data_dir)
                .await?
                .set_enabled(&uri, true)
                .await?
        ),
        UserCmd::Remove { uri, dir } => println!(
            "removed {}",
            Manager::open(&dir.data_dir).await?.remove(&uri).await?
        ),
        UserCmd::List { json, dir } => {
            let users = Manager::open(&dir.data_dir).await?.list().await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&users).map_err(|e| e.to_string())?
                );
            } else {
                println!("{:<40} {:<8} DISPLAY NAME", "URI", "STATE");
                for u in users {
                    let state = if u.enabled { "enabled" } else { "disabled" };
                    println!(
                        "{:<40} {:<8} {}",
                        u.uri,
                        state,
                        u.display_name.unwrap_or_default()
                    );
                }
            }
        }
        UserCmd::Import { file, dir } => {
            let text =
                std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let n = Manager::open(&dir.data_dir).await?.import(&text).await?;
            println!("imported {n} users");
        }
    }
    Ok(())
}
