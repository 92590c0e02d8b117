//! `parapet admin trace`: a call's SIP messages as a ladder.

use serde_json::Value;

use super::args::Output;
use super::client::{encode, Client};
use super::render::render;

pub(super) struct Query {
    pub(super) call_id: Option<String>,
    pub(super) user: Option<String>,
    pub(super) since: Option<i64>,
    pub(super) until: Option<i64>,
    pub(super) limit: usize,
}

fn clock(ms: i64) -> String {
    let secs = ms.div_euclid(1000).rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60,
        ms.rem_euclid(1000)
    )
}

/// One line of the ladder: the time, who sent it to whom over what (the
/// node that traced it — this front end or one of its edges — on one
/// side), and its start line.
pub(super) fn ladder_line(m: &Value) -> String {
    let g = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("");
    let node = match g("node") {
        "" => "parapet",
        n => n,
    };
    let (from, to) = if g("direction") == "in" {
        (g("remote"), node)
    } else {
        (node, g("remote"))
    };
    format!(
        "{}  {:>22} --{}--> {:<22}  {}",
        clock(m.get("at_ms").and_then(Value::as_i64).unwrap_or(0)),
        from,
        g("protocol"),
        to,
        g("first_line")
    )
}

pub(super) async fn trace(c: Client, q: Query, messages: bool, out: Output) -> Result<(), String> {
    let mut p = vec![format!("limit={}", q.limit)];
    for (k, v) in [("call_id", &q.call_id), ("user", &q.user)] {
        if let Some(v) = v {
            p.push(format!("{k}={}", encode(v)));
        }
    }
    for (k, v) in [("since", q.since), ("until", q.until)] {
        if let Some(v) = v {
            p.push(format!("{k}={v}"));
        }
    }
    let v = c
        .call("GET", format!("/v1/traces?{}", p.join("&")), None)
        .await?;
    if out == Output::Json {
        render(&v, out);
        return Ok(());
    }
    let list = v
        .get("messages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for m in &list {
        println!("{}", ladder_line(m));
        if messages {
            for line in m
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .lines()
            {
                println!("      | {line}");
            }
        }
    }
    for e in v
        .get("edges")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        let g = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("");
        let n = e.get("messages").and_then(Value::as_u64).unwrap_or(0);
        match g("error") {
            "" if e.get("complete").and_then(Value::as_bool) == Some(false) => println!(
                "edge {}: the oldest {n} messages only (narrow with --since/--until)",
                g("edge")
            ),
            "" => println!("edge {}: {n} messages", g("edge")),
            err => println!("edge {}: {err}", g("edge")),
        }
    }
    println!(
        "{} messages{}",
        list.len(),
        if v.get("bodies_shown").and_then(Value::as_bool) == Some(true) {
            ""
        } else {
            " (bodies not shown: your role lacks traces.read_content)"
        }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_ladder_line_says_who_sent_what_to_whom() {
        let m = serde_json::json!({
            "at_ms": 1_796_645_045_123i64, "direction": "in", "protocol": "UDP",
            "remote": "127.0.0.1:5070", "first_line": "INVITE sip:bob@example.test SIP/2.0",
            "node": "front-end",
        });
        assert_eq!(
            super::ladder_line(&m),
            "12:04:05.123          127.0.0.1:5070 --UDP--> front-end               INVITE sip:bob@example.test SIP/2.0"
        );
        let m = serde_json::json!({
            "at_ms": 1_796_645_045_124i64, "direction": "out", "protocol": "TLS",
            "remote": "203.0.113.9:40001", "first_line": "SIP/2.0 200 OK", "node": "edge1",
        });
        assert_eq!(
            super::ladder_line(&m),
            "12:04:05.124                   edge1 --TLS--> 203.0.113.9:40001       SIP/2.0 200 OK"
        );
    }
}
