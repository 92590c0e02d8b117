//! `parapet admin archive ...`: the IM archive through the admin API.

use std::io::Write;

use serde_json::{json, Value};

use super::args::{ArchiveCmd, ArchiveFilters, Output};
use super::client::{encode, Client};
use super::render::{date, render};

fn query(f: &ArchiveFilters, extra: &[(&str, String)]) -> String {
    let mut q = Vec::new();
    for (k, v) in [
        ("user", &f.user),
        ("counterpart", &f.counterpart),
        ("text", &f.text),
    ] {
        if let Some(v) = v {
            q.push(format!("{k}={}", encode(v)));
        }
    }
    for (k, v) in [("since", f.since), ("until", f.until)] {
        if let Some(v) = v {
            q.push(format!("{k}={v}"));
        }
    }
    for (k, v) in extra {
        q.push(format!("{k}={}", encode(v)));
    }
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

/// Where an export goes: a new file (mode 0600; one that exists is not
/// overwritten), or standard output.
pub(super) fn export_sink(file: Option<&std::path::Path>) -> Result<Box<dyn Write + Send>, String> {
    use std::os::unix::fs::OpenOptionsExt;
    Ok(match file {
        Some(p) => Box::new(
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(p)
                .map_err(|e| {
                    format!("{}: {e} (the export file must not exist yet)", p.display())
                })?,
        ),
        None => Box::new(std::io::stdout()),
    })
}

/// The `records` of a search or list answer.
pub(super) fn records(v: &Value) -> Vec<Value> {
    v.get("records")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn time(ms: i64) -> String {
    date(ms.div_euclid(1000))
}

pub(super) async fn archive(
    c: Client,
    cmd: ArchiveCmd,
    out: Output,
    done: impl Fn(String),
) -> Result<(), String> {
    match cmd {
        ArchiveCmd::Search {
            filters,
            limit,
            after,
        } => {
            let mut extra = vec![("limit", limit.to_string())];
            if let Some(a) = after {
                extra.push(("after", a.to_string()));
            }
            let v = c
                .call(
                    "GET",
                    format!("/v1/archive/messages{}", query(&filters, &extra)),
                    None,
                )
                .await?;
            if out == Output::Json {
                render(&v, out);
                return Ok(());
            }
            let records = records(&v);
            for r in &records {
                let g = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("");
                println!(
                    "#{} {} {} -> {} [{}; {}{}]",
                    r.get("id").and_then(Value::as_i64).unwrap_or(0),
                    time(r.get("at_ms").and_then(Value::as_i64).unwrap_or(0)),
                    g("sender"),
                    g("recipient"),
                    g("result"),
                    if r.get("federated").and_then(Value::as_bool) == Some(true) {
                        "federated; "
                    } else {
                        ""
                    },
                    format_args!("kept for {}", g("owner")),
                );
                match r.get("body").and_then(Value::as_str) {
                    Some(b) => {
                        for line in b.lines() {
                            println!("    {line}");
                        }
                    }
                    None => println!("    ({}, not text)", g("content_type")),
                }
            }
            println!(
                "{} records (scanned {})",
                records.len(),
                v.get("scanned").and_then(Value::as_i64).unwrap_or(0)
            );
            if let Some(n) = v.get("next").and_then(Value::as_i64) {
                println!("more: --after {n}");
            }
        }
        ArchiveCmd::Export {
            filters,
            format,
            out: file,
        } => {
            if format != "jsonl" && format != "mbox" {
                return Err(format!("--format {format:?}: jsonl or mbox"));
            }
            let path = format!(
                "/v1/archive/export{}",
                query(&filters, &[("format", format.clone())])
            );
            let sink = export_sink(file.as_deref())?;
            let mbox = format == "mbox";
            let unit = if mbox {
                super::client::Unit::Mbox
            } else {
                super::client::Unit::Lines
            };
            let n = c.download(path, sink, unit).await?;
            if let Some(p) = file {
                done(format!("exported {n} messages to {}", p.display()));
            } else {
                eprintln!("exported {n} messages");
            }
        }
        ArchiveCmd::File { id, out: file } => {
            let sink = export_sink(Some(&file))?;
            let n = c
                .download(
                    format!("/v1/archive/files/{id}"),
                    sink,
                    super::client::Unit::Bytes,
                )
                .await;
            match n {
                Ok(n) => done(format!("wrote {n} bytes to {}", file.display())),
                Err(e) => {
                    // Nothing cut short is left to be taken for the file.
                    let _ = std::fs::remove_file(&file);
                    return Err(e);
                }
            }
        }
        ArchiveCmd::Holds => {
            let v = c.call("GET", "/v1/archive/holds".into(), None).await?;
            render(&v, out);
        }
        ArchiveCmd::Hold { user, reason } => {
            let v = c
                .call(
                    "PUT",
                    format!("/v1/archive/holds/{}", encode(&user)),
                    Some(json!({ "reason": reason })),
                )
                .await?;
            if out == Output::Json {
                render(&v, out);
            } else {
                done(format!(
                    "{} is on legal hold since {} (by {}): nothing of theirs is purged until released",
                    v.get("user").and_then(Value::as_str).unwrap_or(&user),
                    date(v.get("since").and_then(Value::as_i64).unwrap_or(0)),
                    v.get("by").and_then(Value::as_str).unwrap_or("")
                ));
            }
        }
        ArchiveCmd::Release { user } => {
            c.call(
                "DELETE",
                format!("/v1/archive/holds/{}", encode(&user)),
                None,
            )
            .await?;
            done(format!(
                "released the legal hold on {user}: retention applies again"
            ));
        }
    }
    Ok(())
}
