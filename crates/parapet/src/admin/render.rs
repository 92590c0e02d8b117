//! Output: JSON as received, or tables and key/value lines for people.

use serde_json::Value;

use super::args::Output;

/// Fields that hold a time as Unix seconds (JSON keeps the number; tables
/// show a date).
fn is_time(key: &str) -> bool {
    key == "at" || key == "until" || key.ends_with("_at") || key.ends_with("_until")
}

/// Unix seconds as `2026-12-04 16:30:05 UTC`.
pub(super) fn date(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
            ))
            .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

pub(super) fn render(v: &Value, output: Output) {
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        return;
    }
    let timed = |key: &str, v: &Value| match v.as_i64() {
        Some(secs) if is_time(key) => Value::String(date(secs)),
        _ => v.clone(),
    };
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
                        .map(|c| cell(&timed(c, r.get(c).unwrap_or(&Value::Null))))
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
            // Lists of records (a status's nodes, edges) as tables after
            // the values.
            let listed = |v: &Value| {
                v.as_array()
                    .is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_object))
            };
            let w = o
                .iter()
                .filter(|(_, v)| !listed(v))
                .map(|(k, _)| k.len())
                .max()
                .unwrap_or(0);
            for (k, val) in o.iter().filter(|(_, v)| !listed(v)) {
                println!("{k:<w$}  {}", cell(&timed(k, val)));
            }
            for (k, val) in o.iter().filter(|(_, v)| listed(v)) {
                println!("\n{k}:");
                render(val, output);
            }
        }
        Value::Null => {}
        other => println!("{}", cell(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_dates() {
        assert_eq!(date(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(date(1_796_400_000), "2026-12-04 16:00:00 UTC");
        assert!(is_time("expires_at") && is_time("until") && is_time("locked_until"));
        assert!(!is_time("status") && !is_time("expires_in_secs"));
    }
}
