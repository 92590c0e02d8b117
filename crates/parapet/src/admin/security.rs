//! `parapet security check`: the posture check.

use serde_json::{json, Value};

use super::args::{SecurityArgs, SecurityCmd};
use super::client::{token, Client};

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
