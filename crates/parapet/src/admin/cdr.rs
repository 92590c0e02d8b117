//! `parapet admin cdr ...`: usage records (calls, conversations, files,
//! sign-ins) through the admin API.

use std::io::Write;

use serde_json::Value;

use super::args::{CdrCmd, CdrFilters, Output};
use super::client::{encode, Client};
use super::render::{date, render};

fn path(f: &CdrFilters, limit: usize, after: Option<i64>) -> String {
    let mut q = vec![format!("limit={limit}")];
    if let Some(u) = &f.user {
        q.push(format!("user={}", encode(u)));
    }
    if let Some(k) = &f.kind {
        q.push(format!("kind={}", encode(k)));
    }
    for (k, v) in [("since", f.since), ("until", f.until), ("after", after)] {
        if let Some(v) = v {
            q.push(format!("{k}={v}"));
        }
    }
    format!("/v1/cdrs?{}", q.join("&"))
}

const COLUMNS: [&str; 18] = [
    "id",
    "kind",
    "call_id",
    "caller",
    "callee",
    "caller_device",
    "callee_device",
    "federated",
    "started_ms",
    "answered_ms",
    "ended_ms",
    "duration_secs",
    "status",
    "ended_by",
    "partner",
    "media_relayed",
    "messages",
    "detail",
];

/// One record as a line of `cdr list`.
fn list_line(r: &Value) -> String {
    let g = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("");
    let n = |k: &str| r.get(k).and_then(Value::as_i64).unwrap_or(0);
    let head = format!("#{} {} {}", n("id"), time(&r["started_ms"]), g("kind"));
    let partner = match g("partner") {
        "" => String::new(),
        p => format!(" (federated with {p})"),
    };
    match g("kind") {
        "im" => format!(
            "{head} {} <-> {}: {} messages until {}, {}{partner}",
            g("caller"),
            g("callee"),
            n("messages"),
            time(&r["ended_ms"]),
            g("ended_by")
        ),
        "file" => format!("{head} {} -> {}: {}", g("caller"), g("callee"), g("detail")),
        "sign-in" => format!(
            "{head} {} from {} ({})",
            g("caller"),
            g("detail"),
            g("caller_device")
        ),
        "sign-out" => format!(
            "{head} {} from {}: {}",
            g("caller"),
            g("detail"),
            g("ended_by")
        ),
        _ => format!(
            "{head} {} -> {}: {} {}s, ended by {}{}{partner}",
            g("caller"),
            g("callee"),
            n("status"),
            n("duration_secs"),
            g("ended_by"),
            if r.get("media_relayed").and_then(Value::as_bool) == Some(true) {
                ", media relayed"
            } else {
                ""
            },
        ),
    }
}

/// A CSV field (RFC 4180): quoted when it holds a comma, quote or line
/// break; a leading `=`, `+`, `-` or `@` is prefixed with `'` so that a
/// spreadsheet does not run a caller's User-Agent as a formula.
fn csv_field(v: &Value) -> String {
    let text = match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let text = if matches!(v, Value::String(_)) && text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

fn time(ms: &Value) -> String {
    ms.as_i64()
        .map(|m| date(m.div_euclid(1000)))
        .unwrap_or_else(|| "-".into())
}

pub(super) async fn cdr(
    c: Client,
    cmd: CdrCmd,
    out: Output,
    done: impl Fn(String),
) -> Result<(), String> {
    match cmd {
        CdrCmd::List {
            filters,
            limit,
            after,
        } => {
            let v = c.call("GET", path(&filters, limit, after), None).await?;
            if out == Output::Json {
                render(&v, out);
                return Ok(());
            }
            let records = super::archive::records(&v);
            for r in &records {
                println!("{}", list_line(r));
            }
            println!("{} records", records.len());
            if let Some(n) = v.get("next").and_then(Value::as_i64) {
                println!("more: --after {n}");
            }
        }
        CdrCmd::Export {
            filters,
            format,
            out: file,
        } => {
            let csv = match format.as_str() {
                "csv" => true,
                "json" => false,
                other => return Err(format!("--format {other:?}: csv or json")),
            };
            let mut sink: Box<dyn Write + Send> = super::archive::export_sink(file.as_deref())?;
            let w = |sink: &mut Box<dyn Write + Send>, line: String| {
                writeln!(sink, "{line}").map_err(|e| format!("writing the export: {e}"))
            };
            if csv {
                w(&mut sink, COLUMNS.join(","))?;
            }
            let mut after = None;
            let mut n = 0u64;
            loop {
                let v = c.call("GET", path(&filters, 1000, after), None).await?;
                for r in v
                    .get("records")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let line = if csv {
                        COLUMNS
                            .iter()
                            .map(|k| csv_field(&r[*k]))
                            .collect::<Vec<_>>()
                            .join(",")
                    } else {
                        r.to_string()
                    };
                    w(&mut sink, line)?;
                    n += 1;
                }
                match v.get("next").and_then(Value::as_i64) {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            sink.flush()
                .map_err(|e| format!("writing the export: {e}"))?;
            match file {
                Some(p) => done(format!("exported {n} records to {}", p.display())),
                None => eprintln!("exported {n} records"),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_reads_as_a_line() {
        let r = serde_json::json!({"id": 4, "kind": "call", "started_ms": 0, "caller": "sip:a@x",
            "callee": "sip:b@y", "status": 200, "duration_secs": 61, "ended_by": "callee",
            "partner": "y", "media_relayed": true});
        assert_eq!(list_line(&r), format!("#4 {} call sip:a@x -> sip:b@y: 200 61s, ended by callee, media relayed (federated with y)", time(&r["started_ms"])));
        let r = serde_json::json!({"id": 5, "kind": "im", "started_ms": 0, "ended_ms": 0,
            "caller": "sip:a@x", "callee": "sip:b@x", "messages": 3, "ended_by": "idle", "partner": ""});
        assert!(
            list_line(&r)
                .ends_with("sip:a@x <-> sip:b@x: 3 messages until 1970-01-01 00:00:00, idle")
                || list_line(&r).contains("3 messages until")
        );
        let r = serde_json::json!({"id": 6, "kind": "sign-out", "started_ms": 0, "caller": "sip:a@x",
            "detail": "tls:192.0.2.1:5061", "ended_by": "expired"});
        assert!(list_line(&r).ends_with("sign-out sip:a@x from tls:192.0.2.1:5061: expired"));
    }

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(csv_field(&Value::String("baresip v3".into())), "baresip v3");
        assert_eq!(csv_field(&Value::String("a,b".into())), "\"a,b\"");
        assert_eq!(
            csv_field(&Value::String("say \"hi\"".into())),
            "\"say \"\"hi\"\"\""
        );
        assert_eq!(csv_field(&Value::String("=cmd()".into())), "'=cmd()");
        assert_eq!(csv_field(&serde_json::json!(-5)), "-5");
        assert_eq!(csv_field(&Value::Null), "");
        assert_eq!(csv_field(&serde_json::json!(true)), "true");
    }
}
