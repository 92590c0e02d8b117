//! `parapet admin policy ...`.

use serde_json::{json, Value};

use super::args::{Output, PolicyCmd};
use super::client::{encode, Client};
use super::render::render;

pub(super) async fn policy(c: Client, cmd: PolicyCmd, out: Output) -> Result<(), String> {
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
            // Operator text becomes typed values by the same rules the
            // server checks again (the policy crate, linked into both).
            let spec = policy::spec::kind(&kind).ok_or_else(|| {
                let known: Vec<&str> = policy::spec::kinds().iter().map(|k| k.name).collect();
                format!(
                    "no policy kind {kind:?}; the kinds are {}",
                    known.join(", ")
                )
            })?;
            let mut typed = policy::spec::Fields::new();
            for f in fields {
                let (k, v) = f
                    .split_once('=')
                    .ok_or_else(|| format!("{f:?}: write FIELD=VALUE, e.g. lockout_threshold=3"))?;
                typed.insert(k.to_owned(), spec.parse(k, v).map_err(|e| e.0)?);
            }
            let set: Value =
                serde_json::from_str(&policy::fields_to_json(&typed)).map_err(|e| e.to_string())?;
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
