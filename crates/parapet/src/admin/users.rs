//! `parapet admin user ...`.

use serde_json::{json, Value};

use super::args::{Output, UserCmd};
use super::client::{encode, secret_input, Client};
use super::render::render;

pub(super) async fn user(
    c: Client,
    cmd: UserCmd,
    out: Output,
    done: impl Fn(String),
) -> Result<(), String> {
    let path = |uri: &str, rest: &str| format!("/v1/users/{}{rest}", encode(uri));
    match cmd {
        UserCmd::List => render(&c.call("GET", "/v1/users".into(), None).await?, out),
        UserCmd::Show { uri } => render(&c.call("GET", path(&uri, ""), None).await?, out),
        UserCmd::Registrations { uri } => render(
            &c.call("GET", path(&uri, "/registrations"), None).await?,
            out,
        ),
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
            let users = tsv_users(&tsv).map_err(|e| format!("{}: {e}", file.display()))?;
            let v = c
                .call(
                    "POST",
                    "/v1/users/import".into(),
                    Some(json!({ "users": users })),
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
        UserCmd::Devices { uri } => {
            render(&c.call("GET", path(&uri, "/devices"), None).await?, out)
        }
        UserCmd::RevokeDevice { uri, device } => {
            c.call(
                "DELETE",
                path(&uri, &format!("/devices/{}", encode(&device))),
                None,
            )
            .await?;
            done(format!(
                "revoked device {device} of {uri}; its connections are closed"
            ));
        }
        UserCmd::RevokeDevices { uri } => {
            let v = c.call("DELETE", path(&uri, "/devices"), None).await?;
            done(if v.get("revoked").and_then(Value::as_bool) == Some(true) {
                format!("revoked every device of {uri}; their connections are closed")
            } else {
                format!("{uri} had no device to revoke")
            });
        }
        UserCmd::ResetSecondFactor { uri } => {
            let v = c.call("DELETE", path(&uri, "/second-factor"), None).await?;
            done(if v.get("removed").and_then(Value::as_bool) == Some(true) {
                format!("removed {uri}'s authenticator; they set up a new one on the user page")
            } else {
                format!("{uri} had no authenticator")
            });
        }
    }
    Ok(())
}

/// `parapet admin device enrollment-code URI [--expires D]`: prints the
/// code (the only time it is shown).
pub(super) async fn enrollment_code(
    c: Client,
    uri: String,
    expires: Option<String>,
    out: Output,
) -> Result<(), String> {
    let secs = expires.as_deref().map(duration_secs).transpose()?;
    let body = match secs {
        Some(s) => json!({ "expires_secs": s }),
        None => json!({}),
    };
    let v = c
        .call(
            "POST",
            format!("/v1/users/{}/enrollment-codes", encode(&uri)),
            Some(body),
        )
        .await?;
    match out {
        Output::Json => render(&v, out),
        Output::Table => {
            println!("{}", v.get("code").and_then(Value::as_str).unwrap_or(""));
            eprintln!(
                "single-use enrollment code for {uri}, until unix time {}: give it to the user (it is not shown again)",
                v.get("expires_at").map(|e| e.to_string()).unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// `90`, `30m`, `12h`, `3d` as seconds.
fn duration_secs(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let (num, unit) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], c),
        _ => (t, 's'),
    };
    let n: i64 = num.parse().map_err(|_| {
        format!("--expires {text:?}: give seconds, or a number with m, h or d (e.g. 3d)")
    })?;
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(format!("--expires {text:?}: the unit must be s, m, h or d")),
    };
    n.checked_mul(mult)
        .filter(|s| *s > 0)
        .ok_or_else(|| format!("--expires {text:?}: out of range"))
}

/// `uri<TAB>password[<TAB>display name]` lines (blank lines and `#` comments
/// skipped) as the import API's list; errors name the line.
pub(super) fn tsv_users(tsv: &str) -> Result<Vec<Value>, String> {
    let mut users = Vec::new();
    for (i, line) in tsv.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let mut cols = line.split('\t');
        let (Some(uri), Some(password)) = (cols.next(), cols.next()) else {
            return Err(format!(
                "line {n}: expected uri<TAB>password[<TAB>display name]"
            ));
        };
        let display = cols.next().filter(|d| !d.is_empty());
        if cols.next().is_some() {
            return Err(format!("line {n}: too many columns (expected at most 3)"));
        }
        users.push(json!({ "uri": uri, "password": password, "display_name": display }));
    }
    Ok(users)
}
