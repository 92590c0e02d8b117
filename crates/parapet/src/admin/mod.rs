//! `parapet admin ...`: the admin API's client. It authenticates like any
//! other client (a session from `parapet admin login`, or an API token in
//! PARAPET_ADMIN_TOKEN); only `recover` works on the data directory itself.

mod archive;
mod args;
mod cdr;
mod client;
mod contacts;
mod policy;
mod render;
mod security;
mod trace;
mod users;

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;

use serde_json::json;

use args::*;
pub(crate) use args::{AdminArgs, SecurityArgs};
use client::{encode, read_stdin_line, save_session, session_file, token, Client};
use render::render;
pub(crate) use security::security;

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
        AdminCmd::MigrateStore { data_dir, to } => {
            let moved = server::migrate::migrate_store(&data_dir, &to).await?;
            if out == Output::Json {
                let tables: serde_json::Map<String, serde_json::Value> = moved
                    .tables
                    .iter()
                    .map(|(t, n)| (t.to_string(), serde_json::json!(n)))
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({ "tables": tables, "audit_records_verified": moved.audit_records })
                );
            } else {
                for (table, n) in &moved.tables {
                    println!("{table:<24} {n:>10} rows");
                }
                println!(
                    "audit log verified in PostgreSQL: {} records",
                    moved.audit_records
                );
                println!("Now set database = \"<the same URL>\" in the configuration and start parapet serve; keep the SQLite file until you are satisfied.");
            }
        }
        AdminCmd::Recover {
            data_dir,
            database,
            name,
        } => {
            let database = config::database(database.map(config::DatabaseUrl), None)?;
            let made = server::recover::recover(&data_dir, &database, &name).await?;
            if out == Output::Json {
                println!("{}", made.secrets_json());
            } else {
                println!("created administrator {name} with the administrator role (audited)");
                println!("password:     {}", made.password);
                println!("TOTP secret:  {}", made.totp_secret);
                println!("enrol URI:    {}", made.otpauth_uri);
                println!("Add the secret to an authenticator app, then: parapet admin login --name {name}");
                println!("Change the password after signing in: parapet admin passwd");
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
        AdminCmd::Passwd { password_stdin } => {
            let (current, new) = if password_stdin {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                    .map_err(|e| format!("reading standard input: {e}"))?;
                let mut l = text.lines();
                match (l.next(), l.next()) {
                    (Some(c), Some(n)) => (c.to_owned(), n.to_owned()),
                    _ => return Err("--password-stdin expects two lines: the current password, then the new one".into()),
                }
            } else {
                let current =
                    rpassword::prompt_password("Current password: ").map_err(|e| e.to_string())?;
                (current, crate::read_password(false, "the new password")?)
            };
            authed()?
                .call(
                    "PUT",
                    "/v1/me/password".into(),
                    Some(json!({ "current": current, "new": new })),
                )
                .await?;
            done("password changed".into());
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
        AdminCmd::DnsRecords => {
            let v = authed()?
                .call("GET", "/v1/dns-records".into(), None)
                .await?;
            if out == Output::Json {
                render(&v, out);
            } else {
                print!("{}", v["zone"].as_str().unwrap_or_default());
            }
        }
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
        AdminCmd::Edge(EdgeCmd::Pair {
            name,
            internal,
            external,
            front_end,
            out: file,
        }) => {
            let body = serde_json::json!({
                "name": name,
                "internal": internal,
                "external_names": external,
                "front_end": front_end,
            });
            // Created before asking, so a file that cannot be written does
            // not leave a pairing nobody holds.
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&file)
                .map_err(|e| {
                    format!(
                        "{}: {e} (the pairing file is never overwritten)",
                        file.display()
                    )
                })?;
            let v = match authed()?.call("POST", "/v1/edges".into(), Some(body)).await {
                Ok(v) => v,
                Err(e) => {
                    let _ = std::fs::remove_file(&file);
                    return Err(e);
                }
            };
            let text = serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?;
            f.write_all(text.as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| format!("{}: {e}", file.display()))?;
            done(format!(
                "edge {name} paired; start it with: parapet edge --pairing {} (the file holds its keys: keep it private)",
                file.display()
            ));
        }
        AdminCmd::Edge(EdgeCmd::List) => {
            render(&authed()?.call("GET", "/v1/edges".into(), None).await?, out)
        }
        AdminCmd::Edge(EdgeCmd::Unpair { name }) => {
            let path = format!("/v1/edges/{}", encode(&name));
            authed()?.call("DELETE", path, None).await?;
            done(format!(
                "edge {name} unpaired: its certificate is no longer accepted"
            ));
        }
        AdminCmd::Federation(FederationCmd::Partners) => render(
            &authed()?
                .call("GET", "/v1/federation/partners".into(), None)
                .await?,
            out,
        ),
        AdminCmd::Federation(FederationCmd::Clear { domain }) => {
            let path = format!("/v1/federation/partners/clear?domain={}", encode(&domain));
            let v = authed()?.call("POST", path, None).await?;
            done(
                if v.get("cleared").and_then(serde_json::Value::as_bool) == Some(true) {
                    format!("{domain} taken off the watch list")
                } else {
                    format!("{domain} was not on the watch list; its counts this hour were reset")
                },
            );
        }
        AdminCmd::Federation(FederationCmd::Explain { from, to, modality }) => {
            let path = format!(
                "/v1/federation/explain?from={}&to={}&modality={}",
                encode(&from),
                encode(&to),
                encode(&modality)
            );
            let v = authed()?.call("GET", path, None).await?;
            if out == Output::Json {
                render(&v, out);
            } else {
                let allowed = v.get("allowed").and_then(serde_json::Value::as_bool) == Some(true);
                println!(
                    "{} ({} {}, partner {})",
                    if allowed { "ALLOWED" } else { "REFUSED" },
                    modality,
                    v.get("direction").and_then(|d| d.as_str()).unwrap_or(""),
                    v.get("partner").and_then(|d| d.as_str()).unwrap_or("")
                );
                for step in v
                    .get("steps")
                    .and_then(|s| s.as_array())
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.as_str())
                {
                    println!("  - {step}");
                }
            }
        }
        AdminCmd::User(cmd) => users::user(authed()?, cmd, out, done).await?,
        AdminCmd::Device(DeviceCmd::EnrollmentCode { uri, expires }) => {
            users::enrollment_code(authed()?, uri, expires, out).await?
        }
        AdminCmd::Contacts(cmd) => contacts::contacts(authed()?, cmd, out, done).await?,
        AdminCmd::Archive(cmd) => archive::archive(authed()?, cmd, out, done).await?,
        AdminCmd::Cdr(cmd) => cdr::cdr(authed()?, cmd, out, done).await?,
        AdminCmd::Trace {
            call_id,
            user,
            since,
            until,
            limit,
            messages,
        } => {
            let q = trace::Query {
                call_id,
                user,
                since,
                until,
                limit,
            };
            trace::trace(authed()?, q, messages, out).await?
        }
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
        AdminCmd::Policy(cmd) => policy::policy(authed()?, cmd, out).await?,
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
