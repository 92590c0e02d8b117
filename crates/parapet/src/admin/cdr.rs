//! `parapet admin cdr ...`: call detail records through the admin API.

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
    for (k, v) in [("since", f.since), ("until", f.until), ("after", after)] {
        if let Some(v) = v {
            q.push(format!("{k}={v}"));
        }
    }
    format!("/v1/cdrs?{}", q.join("&"))
}

const COLUMNS: [&str; 13] = [
    "id",
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
];

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
                let g = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("");
                println!(
                    "#{} {} {} -> {}: {} {}s, ended by {}{}",
                    r.get("id").and_then(Value::as_i64).unwrap_or(0),
                    time(&r["started_ms"]),
                    g("caller"),
                    g("callee"),
                    r.get("status").and_then(Value::as_i64).unwrap_or(0),
                    r.get("duration_secs").and_then(Value::as_i64).unwrap_or(0),
                    g("ended_by"),
                    if r.get("federated").and_then(Value::as_bool) == Some(true) {
                        " (federated)"
                    } else {
                        ""
                    },
                );
            }
            println!("{} calls", records.len());
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
                Some(p) => done(format!("exported {n} calls to {}", p.display())),
                None => eprintln!("exported {n} calls"),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
