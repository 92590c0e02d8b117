//! `parapet admin ...`: the admin API's client. It authenticates like any
//! other client (a session from `parapet admin login`, or an API token in
//! PARAPET_ADMIN_TOKEN); only `recover` works on the data directory itself.

use std::io::Read;
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Value};

#[derive(Args)]
pub(crate) struct AdminArgs {
    /// The admin listener of the running server.
    #[arg(
        long = "server",
        env = "PARAPET_ADMIN_URL",
        default_value = "http://127.0.0.1:9060",
        global = true
    )]
    server: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "table", global = true)]
    output: Output,
    #[command(subcommand)]
    cmd: AdminCmd,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Subcommand)]
enum AdminCmd {
    /// Sign in with password and TOTP code; the session is kept in
    /// ~/.config/parapet/session (or PARAPET_ADMIN_SESSION) for 8 hours.
    ///
    /// Example: parapet admin login --name root
    Login {
        #[arg(long)]
        name: String,
        /// Read the password from standard input instead of the terminal.
        #[arg(long)]
        password_stdin: bool,
        /// The current code from the authenticator app (asked for if omitted).
        #[arg(long)]
        code: Option<String>,
        /// Print the session token instead of saving it (for scripts).
        #[arg(long)]
        print_token: bool,
    },
    /// End the session.
    Logout,
    /// Who the current token belongs to, and what it may do.
    Whoami,
    /// Break-glass: create a new administrator directly in the data directory
    /// (needs filesystem access to it; audited). Also how the first
    /// administrator is made. Prints the password and TOTP secret once.
    ///
    /// Example: parapet admin recover --data-dir /var/lib/parapet --name root
    Recover {
        #[arg(long, env = "PARAPET_DATA_DIR", default_value = "/var/lib/parapet")]
        data_dir: PathBuf,
        #[arg(long)]
        name: String,
    },
    /// Server status and warnings.
    Status,
    /// Sign-in lockouts.
    #[command(subcommand)]
    Lockout(LockoutCmd),
    /// SIP users.
    #[command(subcommand)]
    User(UserCmd),
    /// User groups (departments, teams).
    #[command(subcommand)]
    Group(GroupCmd),
    /// Policy documents and effective policy.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Grants of named policies to users and groups.
    #[command(subcommand)]
    Grant(GrantCmd),
    /// Roles and the operation catalog.
    #[command(subcommand)]
    Role(RoleCmd),
    /// Administrators.
    #[command(subcommand)]
    Admins(AdminsCmd),
    /// API tokens for automation.
    #[command(subcommand)]
    Token(TokenCmd),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Every security-relevant setting in one view.
    #[command(subcommand)]
    Security(SecurityShowCmd),
    /// Print shell completions (bash, zsh, fish, elvish, powershell).
    ///
    /// Example: parapet admin completions bash > /etc/bash_completion.d/parapet
    Completions { shell: clap_complete::Shell },
}

#[derive(Subcommand)]
enum SecurityShowCmd {
    /// Each setting (configuration and policy) grouped, with its current
    /// value, the recommended value, why, and the command that changes it.
    ///
    /// Example: parapet admin security show --output json
    Show,
}

/// `parapet security ...`.
#[derive(Args)]
pub(crate) struct SecurityArgs {
    /// The admin listener of the running server.
    #[arg(
        long = "server",
        env = "PARAPET_ADMIN_URL",
        default_value = "http://127.0.0.1:9060",
        global = true
    )]
    server: String,
    #[command(subcommand)]
    cmd: SecurityCmd,
}

#[derive(Subcommand)]
enum SecurityCmd {
    /// The posture check: each finding with severity, explanation and the
    /// command that fixes it. Exit status 3 when a high-severity finding
    /// exists (1 for errors, 0 otherwise). Needs a token with security.read.
    ///
    /// Example: parapet security check --json
    Check {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum LockoutCmd {
    List,
    /// Example: parapet admin lockout clear --account sip:alice@example.com --source 198.51.100.7
    Clear {
        #[arg(long)]
        account: Option<String>,
        #[arg(long)]
        source: Option<String>,
    },
}

#[derive(Subcommand)]
enum UserCmd {
    List,
    Show {
        uri: String,
    },
    /// The password is read from standard input (--password-stdin) or the terminal.
    ///
    /// Example: echo 'correct horse battery' | parapet admin user add sip:alice@example.com --password-stdin
    Add {
        uri: String,
        #[arg(long)]
        display_name: Option<String>,
        #[arg(long)]
        password_stdin: bool,
    },
    Passwd {
        uri: String,
        #[arg(long)]
        password_stdin: bool,
    },
    Enable {
        uri: String,
    },
    Disable {
        uri: String,
    },
    Remove {
        uri: String,
    },
    /// TSV lines: uri<TAB>password[<TAB>display name]; all or nothing.
    Import {
        file: PathBuf,
    },
    /// Set a user's home site (or --clear it).
    Site {
        uri: String,
        site: Option<String>,
        #[arg(long)]
        clear: bool,
    },
}

#[derive(Subcommand)]
enum GroupCmd {
    List,
    /// Example: parapet admin group create sales --priority 10 --description "Sales team"
    Create {
        name: String,
        #[arg(long, default_value_t = 0)]
        priority: u32,
        #[arg(long, default_value = "")]
        description: String,
    },
    Remove {
        name: String,
    },
    AddMember {
        name: String,
        uri: String,
    },
    RemoveMember {
        name: String,
        uri: String,
    },
}

#[derive(Subcommand)]
enum PolicyCmd {
    /// Every kind with its fields, types, defaults and documentation.
    Kinds,
    List,
    /// Set fields: SCOPE is global, site:NAME or named:NAME.
    ///
    /// Example: parapet admin policy set authentication global lockout_threshold=3
    Set {
        kind: String,
        scope: String,
        #[arg(required = true, value_name = "FIELD=VALUE")]
        fields: Vec<String>,
    },
    /// Remove fields from a document (they fall back to wider scopes).
    Unset {
        kind: String,
        scope: String,
        #[arg(required = true)]
        fields: Vec<String>,
    },
    Remove {
        kind: String,
        scope: String,
    },
    /// Each field's effective value for a user and where it came from.
    ///
    /// Example: parapet admin policy effective sip:alice@example.com --kind privacy
    Effective {
        uri: String,
        #[arg(long)]
        kind: Option<String>,
    },
}

#[derive(Subcommand)]
enum GrantCmd {
    List,
    /// TARGET is user:sip:alice@example.com or group:NAME.
    ///
    /// Example: parapet admin grant add privacy strict group:sales
    Add {
        kind: String,
        policy: String,
        target: String,
    },
    Remove {
        kind: String,
        target: String,
    },
}

#[derive(Subcommand)]
enum RoleCmd {
    List,
    Operations,
    /// Create or replace a custom role.
    ///
    /// Example: parapet admin role set berlin-desk --operation users.read --operation lockouts.clear --site berlin
    Set {
        name: String,
        #[arg(long = "operation", required = true)]
        operations: Vec<String>,
        #[arg(long)]
        site: Option<String>,
        #[arg(long)]
        group: Option<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
    Remove {
        name: String,
    },
}

#[derive(Subcommand)]
enum AdminsCmd {
    List,
    /// Prints the TOTP secret to enrol (and the password, if generated) once.
    Create {
        name: String,
        #[arg(long)]
        role: String,
        /// Read the password from standard input (else one is generated).
        #[arg(long)]
        password_stdin: bool,
    },
    Update {
        name: String,
        #[arg(long)]
        role: Option<String>,
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        #[arg(long)]
        disable: bool,
        #[arg(long)]
        reset_password: bool,
        #[arg(long)]
        reset_totp: bool,
    },
    Remove {
        name: String,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    List,
    /// Example: parapet admin token create ci --expires-in-days 30 --role view-only
    Create {
        name: String,
        #[arg(long)]
        expires_in_days: i64,
        #[arg(long)]
        role: Option<String>,
    },
    Revoke {
        id: String,
    },
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Example: parapet admin audit list --actor admin:root --object user: --since 1767225600
    List {
        #[arg(long)]
        actor: Option<String>,
        #[arg(long)]
        object: Option<String>,
        /// Unix seconds.
        #[arg(long)]
        since: Option<i64>,
        #[arg(long)]
        until: Option<i64>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Recompute the hash chain; exits 1 if a record was changed or removed.
    Verify,
}

fn session_file() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PARAPET_ADMIN_SESSION") {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("parapet/session"))
}

fn token() -> Result<String, String> {
    if let Ok(t) = std::env::var("PARAPET_ADMIN_TOKEN") {
        return Ok(t.trim().to_owned());
    }
    let path = session_file()
        .ok_or("no session: run `parapet admin login` (or set PARAPET_ADMIN_TOKEN)")?;
    std::fs::read_to_string(&path)
        .map(|t| t.trim().to_owned())
        .map_err(|_| "not signed in: run `parapet admin login --name NAME` (or set PARAPET_ADMIN_TOKEN to an API token)".to_string())
}

fn save_session(token: &str) -> Result<PathBuf, String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path =
        session_file().ok_or("cannot tell where to keep the session: set PARAPET_ADMIN_SESSION")?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let _ = std::fs::remove_file(&path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(token.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// Percent-encodes a path segment or query value.
pub(crate) fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

struct Client {
    server: String,
    token: Option<String>,
}

impl Client {
    /// Calls the API; a refusal becomes an error carrying the server's detail.
    async fn call(
        &self,
        method: &'static str,
        path: String,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let url = format!("{}{path}", self.server.trim_end_matches('/'));
        let server = self.server.clone();
        let token = self.token.clone();
        tokio::task::spawn_blocking(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
            let auth = token.map(|t| format!("Bearer {t}"));
            let unreachable = |e: ureq::Error| format!("cannot reach the server at {server}: {e} (is `parapet serve` running? see --server)");
            let resp = match method {
                "GET" | "DELETE" => {
                    let mut r = if method == "GET" { agent.get(&url) } else { agent.delete(&url) };
                    if let Some(a) = &auth {
                        r = r.header("Authorization", a);
                    }
                    r.call()
                }
                _ => {
                    let mut r = match method {
                        "PUT" => agent.put(&url),
                        "PATCH" => agent.patch(&url),
                        _ => agent.post(&url),
                    };
                    if let Some(a) = &auth {
                        r = r.header("Authorization", a);
                    }
                    r.header("Content-Type", "application/json").send(body.unwrap_or(json!({})).to_string())
                }
            };
            let mut resp = resp.map_err(unreachable)?;
            let status = resp.status().as_u16();
            let text = resp.body_mut().read_to_string().map_err(|e| e.to_string())?;
            let v: Value = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).map_err(|_| format!("unexpected answer from {server}: {text}"))? };
            if status >= 400 {
                let detail = v.get("detail").and_then(|d| d.as_str()).unwrap_or("");
                return Err(format!("the server refused ({status}): {detail}"));
            }
            Ok(v)
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

fn read_stdin_line(what: &str) -> Result<String, String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .map_err(|e| format!("reading the {what} from standard input: {e}"))?;
    Ok(s.lines().next().unwrap_or("").to_owned())
}

fn secret_input(from_stdin: bool, prompt: &str) -> Result<String, String> {
    if from_stdin {
        return read_stdin_line("password");
    }
    crate::read_password(false, prompt)
}

fn render(v: &Value, output: Output) {
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        return;
    }
    let cell = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    };
    match v {
        Value::Array(rows) if rows.is_empty() => println!("(none)"),
        Value::Array(rows) => {
            let cols: Vec<String> = rows[0]
                .as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default();
            if cols.is_empty() {
                rows.iter().for_each(|r| println!("{}", cell(r)));
                return;
            }
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    cols.iter()
                        .map(|c| cell(r.get(c).unwrap_or(&Value::Null)))
                        .collect()
                })
                .collect();
            let widths: Vec<usize> = cols
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    table
                        .iter()
                        .map(|r| r[i].chars().count())
                        .max()
                        .unwrap_or(0)
                        .max(c.len())
                        .min(60)
                })
                .collect();
            let line = |cells: Vec<String>| {
                cells
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect::<Vec<_>>()
                    .join("  ")
                    .trim_end()
                    .to_owned()
            };
            println!("{}", line(cols.iter().map(|c| c.to_uppercase()).collect()));
            for r in table {
                println!("{}", line(r));
            }
        }
        Value::Object(o) => {
            let w = o.keys().map(String::len).max().unwrap_or(0);
            for (k, val) in o {
                println!("{k:<w$}  {}", cell(val));
            }
        }
        Value::Null => {}
        other => println!("{}", cell(other)),
    }
}

pub(crate) async fn run(a: AdminArgs) -> Result<(), String> {
    let out = a.output;
    let anon = Client {
        server: a.server.clone(),
        token: None,
    };
    let authed = || -> Result<Client, String> {
        Ok(Client {
            server: a.server.clone(),
            token: Some(token()?),
        })
    };
    let done = |msg: String| {
        if out == Output::Json {
            println!("{}", json!({ "ok": true, "message": msg }));
        } else {
            println!("{msg}");
        }
    };
    match a.cmd {
        AdminCmd::Security(SecurityShowCmd::Show) => {
            let v = authed()?.call("GET", "/v1/security".into(), None).await?;
            if out == Output::Json {
                render(&v, out);
                return Ok(());
            }
            let mut group = "";
            for i in v.as_array().into_iter().flatten() {
                let g = i["group"].as_str().unwrap_or("");
                if g != group {
                    println!("\n== {g}");
                    group = g;
                }
                let mark = if i["finding"].as_bool().unwrap_or(false) {
                    format!("[{}]", i["severity"].as_str().unwrap_or("").to_uppercase())
                } else {
                    "[ok]".into()
                };
                println!("{mark:<9}{}", i["setting"].as_str().unwrap_or(""));
                println!(
                    "         current:     {}",
                    i["current"].as_str().unwrap_or("")
                );
                println!(
                    "         recommended: {}",
                    i["recommended"].as_str().unwrap_or("")
                );
                println!("         why:         {}", i["why"].as_str().unwrap_or(""));
                println!(
                    "         change with: {}",
                    i["command"].as_str().unwrap_or("")
                );
            }
        }
        AdminCmd::Completions { shell } => {
            let mut cmd = <crate::Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "parapet", &mut std::io::stdout());
        }
        AdminCmd::Recover { data_dir, name } => {
            let made = server::admins::recover(&data_dir, &name).await?;
            if out == Output::Json {
                println!("{}", made.secrets_json());
            } else {
                println!("created administrator {name} with the administrator role (audited)");
                println!("password:     {}", made.password);
                println!("TOTP secret:  {}", made.totp_secret);
                println!("enrol URI:    {}", made.otpauth_uri);
                println!("Add the secret to an authenticator app, then: parapet admin login --name {name}");
                println!("Change the password after signing in: parapet admin me-password (PUT /v1/me/password)");
            }
        }
        AdminCmd::Login {
            name,
            password_stdin,
            code,
            print_token,
        } => {
            let password = if password_stdin {
                read_stdin_line("password")?
            } else {
                rpassword::prompt_password(format!("Password for administrator {name}: "))
                    .map_err(|e| e.to_string())?
            };
            let code = match code {
                Some(c) => c,
                None => {
                    eprint!("Code from the authenticator app: ");
                    let mut s = String::new();
                    std::io::stdin()
                        .read_line(&mut s)
                        .map_err(|e| e.to_string())?;
                    s.trim().to_owned()
                }
            };
            let v = anon
                .call(
                    "POST",
                    "/v1/session".into(),
                    Some(json!({ "name": name, "password": password, "code": code })),
                )
                .await?;
            let t = v
                .get("token")
                .and_then(|t| t.as_str())
                .ok_or("the server sent no token")?;
            if print_token {
                println!("{t}");
            } else {
                let path = save_session(t)?;
                done(format!(
                    "signed in as {name} (role {}); session kept in {}",
                    v.get("role").and_then(|r| r.as_str()).unwrap_or("?"),
                    path.display()
                ));
            }
        }
        AdminCmd::Logout => {
            authed()?.call("DELETE", "/v1/session".into(), None).await?;
            if let Some(p) = session_file() {
                let _ = std::fs::remove_file(p);
            }
            done("signed out".into());
        }
        AdminCmd::Whoami => render(&authed()?.call("GET", "/v1/me".into(), None).await?, out),
        AdminCmd::Status => render(
            &authed()?.call("GET", "/v1/status".into(), None).await?,
            out,
        ),
        AdminCmd::Lockout(LockoutCmd::List) => render(
            &authed()?.call("GET", "/v1/lockouts".into(), None).await?,
            out,
        ),
        AdminCmd::Lockout(LockoutCmd::Clear { account, source }) => {
            let mut q = Vec::new();
            if let Some(a) = &account {
                q.push(format!("account={}", encode(a)));
            }
            if let Some(s) = &source {
                q.push(format!("source={}", encode(s)));
            }
            let path = format!(
                "/v1/lockouts/clear{}{}",
                if q.is_empty() { "" } else { "?" },
                q.join("&")
            );
            let v = authed()?.call("POST", path, None).await?;
            done(format!(
                "cleared {} active lockouts",
                v.get("cleared").map(|c| c.to_string()).unwrap_or_default()
            ));
        }
        AdminCmd::User(cmd) => user(authed()?, cmd, out, done).await?,
        AdminCmd::Group(cmd) => {
            let c = authed()?;
            match cmd {
                GroupCmd::List => render(&c.call("GET", "/v1/groups".into(), None).await?, out),
                GroupCmd::Create {
                    name,
                    priority,
                    description,
                } => {
                    c.call(
                        "PUT",
                        format!("/v1/groups/{}", encode(&name)),
                        Some(json!({ "priority": priority, "description": description })),
                    )
                    .await?;
                    done(format!("group {name} saved"));
                }
                GroupCmd::Remove { name } => {
                    c.call("DELETE", format!("/v1/groups/{}", encode(&name)), None)
                        .await?;
                    done(format!("removed group {name}"));
                }
                GroupCmd::AddMember { name, uri } => {
                    c.call(
                        "PUT",
                        format!("/v1/groups/{}/members/{}", encode(&name), encode(&uri)),
                        None,
                    )
                    .await?;
                    done(format!("{uri} is now a member of {name}"));
                }
                GroupCmd::RemoveMember { name, uri } => {
                    c.call(
                        "DELETE",
                        format!("/v1/groups/{}/members/{}", encode(&name), encode(&uri)),
                        None,
                    )
                    .await?;
                    done(format!("{uri} removed from {name}"));
                }
            }
        }
        AdminCmd::Policy(cmd) => policy(authed()?, cmd, out).await?,
        AdminCmd::Grant(cmd) => {
            let c = authed()?;
            match cmd {
                GrantCmd::List => render(&c.call("GET", "/v1/grants".into(), None).await?, out),
                GrantCmd::Add {
                    kind,
                    policy,
                    target,
                } => {
                    c.call(
                        "PUT",
                        format!("/v1/grants/{}/{}", encode(&kind), encode(&target)),
                        Some(json!({ "policy": policy })),
                    )
                    .await?;
                    done(format!("{kind} policy {policy} granted to {target}"));
                }
                GrantCmd::Remove { kind, target } => {
                    c.call(
                        "DELETE",
                        format!("/v1/grants/{}/{}", encode(&kind), encode(&target)),
                        None,
                    )
                    .await?;
                    done(format!("{kind} grant to {target} revoked"));
                }
            }
        }
        AdminCmd::Role(cmd) => {
            let c = authed()?;
            match cmd {
                RoleCmd::List => render(&c.call("GET", "/v1/roles".into(), None).await?, out),
                RoleCmd::Operations => {
                    render(&c.call("GET", "/v1/operations".into(), None).await?, out)
                }
                RoleCmd::Set {
                    name,
                    operations,
                    site,
                    group,
                    description,
                } => {
                    let v = c.call("PUT", format!("/v1/roles/{}", encode(&name)), Some(json!({ "operations": operations, "site": site, "group": group, "description": description }))).await?;
                    render(&v, out);
                }
                RoleCmd::Remove { name } => {
                    c.call("DELETE", format!("/v1/roles/{}", encode(&name)), None)
                        .await?;
                    done(format!("removed role {name}"));
                }
            }
        }
        AdminCmd::Admins(cmd) => {
            let c = authed()?;
            match cmd {
                AdminsCmd::List => render(&c.call("GET", "/v1/admins".into(), None).await?, out),
                AdminsCmd::Create {
                    name,
                    role,
                    password_stdin,
                } => {
                    let password = if password_stdin {
                        Some(read_stdin_line("password")?)
                    } else {
                        None
                    };
                    let v = c
                        .call(
                            "POST",
                            "/v1/admins".into(),
                            Some(json!({ "name": name, "role": role, "password": password })),
                        )
                        .await?;
                    render(&v, out);
                }
                AdminsCmd::Update {
                    name,
                    role,
                    enable,
                    disable,
                    reset_password,
                    reset_totp,
                } => {
                    let enabled = if enable {
                        Some(true)
                    } else if disable {
                        Some(false)
                    } else {
                        None
                    };
                    let v = c.call("PATCH", format!("/v1/admins/{}", encode(&name)), Some(json!({ "role": role, "enabled": enabled, "reset_password": reset_password, "reset_totp": reset_totp }))).await?;
                    render(&v, out);
                }
                AdminsCmd::Remove { name } => {
                    c.call("DELETE", format!("/v1/admins/{}", encode(&name)), None)
                        .await?;
                    done(format!("removed administrator {name}"));
                }
            }
        }
        AdminCmd::Token(cmd) => {
            let c = authed()?;
            match cmd {
                TokenCmd::List => render(&c.call("GET", "/v1/tokens".into(), None).await?, out),
                TokenCmd::Create {
                    name,
                    expires_in_days,
                    role,
                } => {
                    let v = c.call("POST", "/v1/tokens".into(), Some(json!({ "name": name, "expires_in_days": expires_in_days, "role": role }))).await?;
                    render(&v, out);
                }
                TokenCmd::Revoke { id } => {
                    c.call("DELETE", format!("/v1/tokens/{}", encode(&id)), None)
                        .await?;
                    done(format!("revoked token {id}"));
                }
            }
        }
        AdminCmd::Audit(AuditCmd::List {
            actor,
            object,
            since,
            until,
            limit,
        }) => {
            let mut q = vec![format!("limit={limit}")];
            for (k, v) in [("actor", actor), ("object", object)] {
                if let Some(v) = v {
                    q.push(format!("{k}={}", encode(&v)));
                }
            }
            for (k, v) in [("since", since), ("until", until)] {
                if let Some(v) = v {
                    q.push(format!("{k}={v}"));
                }
            }
            render(
                &authed()?
                    .call("GET", format!("/v1/audit?{}", q.join("&")), None)
                    .await?,
                out,
            );
        }
        AdminCmd::Audit(AuditCmd::Verify) => {
            let v = authed()?
                .call("GET", "/v1/audit/verify".into(), None)
                .await?;
            let intact = v.get("intact").and_then(|i| i.as_bool()).unwrap_or(false);
            if out == Output::Json {
                render(&v, out);
            } else if intact {
                println!(
                    "audit log intact: {} records verified",
                    v.get("records").map(|r| r.to_string()).unwrap_or_default()
                );
            } else {
                println!("AUDIT LOG DAMAGED:");
                for p in v
                    .get("problems")
                    .and_then(|p| p.as_array())
                    .into_iter()
                    .flatten()
                {
                    println!("  {}", p.as_str().unwrap_or_default());
                }
            }
            if !intact {
                return Err(
                    "the audit log does not verify: records were changed or removed".into(),
                );
            }
        }
    }
    Ok(())
}

async fn user(c: Client, cmd: UserCmd, out: Output, done: impl Fn(String)) -> Result<(), String> {
    let path = |uri: &str, rest: &str| format!("/v1/users/{}{rest}", encode(uri));
    match cmd {
        UserCmd::List => render(&c.call("GET", "/v1/users".into(), None).await?, out),
        UserCmd::Show { uri } => render(&c.call("GET", path(&uri, ""), None).await?, out),
        UserCmd::Add {
            uri,
            display_name,
            password_stdin,
        } => {
            let pw = secret_input(password_stdin, &uri)?;
            let v = c
                .call(
                    "POST",
                    "/v1/users".into(),
                    Some(json!({ "uri": uri, "password": pw, "display_name": display_name })),
                )
                .await?;
            done(format!(
                "added {}",
                v.get("uri").and_then(|u| u.as_str()).unwrap_or(&uri)
            ));
        }
        UserCmd::Passwd {
            uri,
            password_stdin,
        } => {
            let pw = secret_input(password_stdin, &uri)?;
            c.call(
                "PUT",
                path(&uri, "/password"),
                Some(json!({ "password": pw })),
            )
            .await?;
            done(format!("password changed for {uri}"));
        }
        UserCmd::Enable { uri } => {
            c.call(
                "PUT",
                path(&uri, "/enabled"),
                Some(json!({ "enabled": true })),
            )
            .await?;
            done(format!("enabled {uri}"));
        }
        UserCmd::Disable { uri } => {
            c.call(
                "PUT",
                path(&uri, "/enabled"),
                Some(json!({ "enabled": false })),
            )
            .await?;
            done(format!("disabled {uri}"));
        }
        UserCmd::Remove { uri } => {
            c.call("DELETE", path(&uri, ""), None).await?;
            done(format!("removed {uri}"));
        }
        UserCmd::Import { file } => {
            let tsv =
                std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let v = c
                .call(
                    "POST",
                    "/v1/users/import".into(),
                    Some(json!({ "tsv": tsv })),
                )
                .await?;
            done(format!(
                "imported {} users",
                v.get("imported").map(|n| n.to_string()).unwrap_or_default()
            ));
        }
        UserCmd::Site { uri, site, clear } => {
            if site.is_none() && !clear {
                return Err("give a site name, or --clear to remove the user's site".into());
            }
            c.call("PUT", path(&uri, "/site"), Some(json!({ "site": site })))
                .await?;
            done(match site {
                Some(s) => format!("{uri} is now homed at site {s}"),
                None => format!("{uri} has no site"),
            });
        }
    }
    Ok(())
}

async fn policy(c: Client, cmd: PolicyCmd, out: Output) -> Result<(), String> {
    let path = |k: &str, s: &str| format!("/v1/policies/{}/{}", encode(k), encode(s));
    match cmd {
        PolicyCmd::Kinds => {
            let v = c.call("GET", "/v1/policy-kinds".into(), None).await?;
            if out == Output::Json {
                return {
                    render(&v, out);
                    Ok(())
                };
            }
            for k in v.as_array().into_iter().flatten() {
                println!(
                    "{}: {}",
                    k["kind"].as_str().unwrap_or(""),
                    k["doc"].as_str().unwrap_or("")
                );
                for f in k["fields"].as_array().into_iter().flatten() {
                    println!(
                        "  {:<28} {:<28} default {}  {}",
                        f["name"].as_str().unwrap_or(""),
                        f["type"].as_str().unwrap_or(""),
                        f["default"],
                        f["doc"].as_str().unwrap_or("")
                    );
                }
            }
        }
        PolicyCmd::List => render(&c.call("GET", "/v1/policies".into(), None).await?, out),
        PolicyCmd::Set {
            kind,
            scope,
            fields,
        } => {
            let mut set = serde_json::Map::new();
            for f in fields {
                let (k, v) = f
                    .split_once('=')
                    .ok_or_else(|| format!("{f:?}: write FIELD=VALUE, e.g. lockout_threshold=3"))?;
                set.insert(k.to_owned(), Value::String(v.to_owned()));
            }
            render(
                &c.call("PATCH", path(&kind, &scope), Some(json!({ "set": set })))
                    .await?,
                out,
            );
        }
        PolicyCmd::Unset {
            kind,
            scope,
            fields,
        } => {
            render(
                &c.call(
                    "PATCH",
                    path(&kind, &scope),
                    Some(json!({ "unset": fields })),
                )
                .await?,
                out,
            );
        }
        PolicyCmd::Remove { kind, scope } => {
            c.call("DELETE", path(&kind, &scope), None).await?;
            println!("removed the {kind} policy at {scope}");
        }
        PolicyCmd::Effective { uri, kind } => {
            let q = kind
                .map(|k| format!("?kind={}", encode(&k)))
                .unwrap_or_default();
            let v = c
                .call(
                    "GET",
                    format!("/v1/users/{}/effective{q}", encode(&uri)),
                    None,
                )
                .await?;
            if out == Output::Json {
                render(&v, out);
                return Ok(());
            }
            println!("effective policy for {}", v["user"].as_str().unwrap_or(""));
            for p in v["policies"].as_array().into_iter().flatten() {
                println!("{}:", p["kind"].as_str().unwrap_or(""));
                for f in p["fields"].as_array().into_iter().flatten() {
                    println!(
                        "  {:<28} {:<30} from {}",
                        f["name"].as_str().unwrap_or(""),
                        f["value"].to_string(),
                        f["origin"].as_str().unwrap_or("")
                    );
                }
            }
        }
    }
    Ok(())
}

const SEVERITIES: [&str; 4] = ["high", "medium", "low", "info"];

/// `parapet security check`.
pub(crate) async fn security(a: SecurityArgs) -> Result<bool, String> {
    let SecurityCmd::Check { json } = a.cmd;
    let c = Client {
        server: a.server,
        token: Some(token()?),
    };
    let v = c.call("GET", "/v1/security".into(), None).await?;
    let mut findings: Vec<Value> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["finding"].as_bool().unwrap_or(false))
        .cloned()
        .collect();
    let rank = |i: &Value| {
        SEVERITIES
            .iter()
            .position(|s| i["severity"] == *s)
            .unwrap_or(SEVERITIES.len())
    };
    findings.sort_by_key(rank);
    let high = findings.iter().filter(|i| i["severity"] == "high").count();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "findings": findings, "high": high }))
                .unwrap_or_default()
        );
    } else if findings.is_empty() {
        println!("no findings: every checked setting is at its recommended value");
    } else {
        for i in &findings {
            println!(
                "[{}] {}: {}",
                i["severity"].as_str().unwrap_or("").to_uppercase(),
                i["setting"].as_str().unwrap_or(""),
                i["current"].as_str().unwrap_or("")
            );
            println!(
                "    recommended: {}",
                i["recommended"].as_str().unwrap_or("")
            );
            println!("    why:         {}", i["why"].as_str().unwrap_or(""));
            println!("    fix:         {}", i["command"].as_str().unwrap_or(""));
        }
        println!("{} findings, {high} high-severity", findings.len());
    }
    Ok(high > 0)
}
