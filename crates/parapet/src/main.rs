//! The `parapet` command: parses flags and calls the server library.
//! Exit status: 0 success, 1 failure, 2 usage error.
#![forbid(unsafe_code)]

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use server::manage::Manager;
use server::RawConfig;

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
