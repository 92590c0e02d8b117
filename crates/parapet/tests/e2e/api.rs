//! The admin API against its own OpenAPI document: every path it lists is
//! routed, and schemathesis (valid and malformed input, every check) finds
//! no 5xx and no departure from the document.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::harness::*;

/// An administrator API token for the tools below.
fn admin_token(s: &Server) -> String {
    let o = s.admin(
        &[
            "--output=json",
            "token",
            "create",
            "api-test",
            "--expires-in-days",
            "1",
        ],
        "",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["token"].as_str().unwrap().to_string()
}

fn document(s: &Server) -> serde_json::Value {
    let (line, body) = s.http_get("/v1/openapi.json", None);
    assert!(line.contains(" 200"), "{line}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn every_documented_path_is_served() {
    let s = Server::new("openapi");
    let token = admin_token(&s);
    let doc = document(&s);
    assert_eq!(doc["openapi"], "3.0.3");
    let paths = doc["paths"].as_object().unwrap();
    let mut calls = 0;
    for (path, methods) in paths {
        let concrete = path
            .replace("{uri}", &format!("sip:nobody@{DOMAIN}"))
            .replace("{contact}", &format!("sip:somebody@{DOMAIN}"))
            .replace("{watcher}", &format!("sip:somebody@{DOMAIN}"))
            .replace("{name}", "nobody")
            .replace("{scope}", "named:nobody")
            .replace("{target}", "group:nobody")
            .replace("{id}", "0000000000000000");
        assert!(!concrete.contains('{'), "{path}");
        for method in methods.as_object().unwrap().keys() {
            if path == "/v1/session" && method == "delete" {
                continue; // would end the token used here; the CLI's logout covers it
            }
            let m = method.to_uppercase();
            let body = if m == "GET" || m == "DELETE" {
                ""
            } else {
                "{}"
            };
            let (line, resp) = s.http(&m, &concrete, Some(&token), body);
            assert!(
                !line.contains(" 405") && !resp.contains("no such path"),
                "{m} {path} is documented but not routed: {line} {resp}"
            );
            assert!(!line.contains(" 5"), "{m} {path}: {line} {resp}");
            calls += 1;
        }
    }
    // Every kind has its policy and grant paths.
    assert!(calls > 70, "{calls}");
    // And an undocumented path is a problem+json 404 that says where the document is.
    let (line, resp) = s.http("GET", "/v1/nothing-here", Some(&token), "");
    assert!(
        line.contains(" 404") && resp.contains("/v1/openapi.json"),
        "{line} {resp}"
    );
}

fn schemathesis() -> PathBuf {
    let venv = std::env::var_os("PARAPET_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/parapet/venv")
        });
    let st = venv.join("bin/st");
    assert!(
        st.exists(),
        "schemathesis is not installed at {}: run scripts/install-test-deps.sh",
        st.display()
    );
    st
}

/// Runs schemathesis (every check, bounded in time) against the document
/// at `url` with `token`; fails the test on any finding; returns the report.
/// HTTPS documents are verified against the server's CA.
pub(crate) fn run_schemathesis(s: &Server, url: &str, token: &str, extra: &[&str]) -> String {
    let config = scenario("../schemathesis/schemathesis.toml");
    let ca = s.data_dir().join("pki/ca.pem");
    // Bounded: schemathesis stops generating after --max-time, a request the
    // server does not answer in 10 s is a failure, and the whole run is
    // killed if it overruns by far.
    let report = s.dir.join(format!("schemathesis-{}.txt", s.web));
    let mut child = Command::new(schemathesis())
        .arg("--config-file")
        .arg(&config)
        .args([
            "run",
            url,
            "--max-time",
            "60",
            "--request-timeout",
            "10",
            "--workers",
            "2",
            "--tls-verify",
        ])
        .arg(&ca)
        .args(extra)
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_HOOKS", scenario("../schemathesis/hooks.py"))
        .stdout(std::fs::File::create(&report).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(400);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            let text = std::fs::read_to_string(&report).unwrap_or_default();
            panic!(
                "schemathesis ran past its bound:\n{text}\nserver log:\n{}",
                s.log()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = std::fs::read_to_string(&report).unwrap_or_default();
    assert!(
        status.success(),
        "schemathesis found problems:\n{text}\nserver log:\n{}",
        s.log()
    );
    text
}

#[test]
fn schemathesis_finds_no_server_error_and_no_departure_from_the_document() {
    let s = Server::new("schemathesis");
    let token = admin_token(&s);
    let url = format!("http://127.0.0.1:{}/v1/openapi.json", s.admin);
    let text = run_schemathesis(
        &s,
        &url,
        &token,
        &["--exclude-operation-id", "delete_v1_session"],
    );
    // It did exercise the API (not an empty run), and the server is still up.
    assert!(text.contains("passed"), "{text}");
    let (line, _) = s.http_get("/healthz", None);
    assert!(line.contains(" 200"), "{line}");
}
