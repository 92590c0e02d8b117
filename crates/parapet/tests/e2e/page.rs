//! The self-service page in a real browser: Debian's chromium driven by
//! playwright-core (tests/browser/page.mjs) signs in, approves a watcher
//! who is subscribed over SIP at that moment, manages contacts and signs
//! out; this side checks what the watcher then receives and what the
//! server stored.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::presence::{admin_ok, notify_bodies, publish, sip, users, watch_for_a_change_held, PW};

#[test]
fn a_user_manages_contacts_and_approves_a_watcher_in_the_browser() {
    let s = Server::new("page");
    users(&s, &["alice", "carol", "bob"]);
    publish(&s, "alice", "in the lab", "busy");
    let browser = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser");
    assert!(
        browser.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run scripts/install-test-deps.sh"
    );
    let shot = s.dir.join("page.png");
    let mut node = Command::new("node")
        .arg(browser.join("page.mjs"))
        .env("PAGE_URL", format!("https://127.0.0.1:{}/", s.web))
        .env("PAGE_USER", sip("alice"))
        .env("PAGE_PASSWORD", PW)
        .env("PAGE_WATCHER", sip("carol"))
        .env("PAGE_CONTACT", sip("bob"))
        .env("PAGE_CERT", s.data_dir().join("pki/server.pem"))
        .env("PAGE_SHOT", &shot)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node is installed (scripts/install-test-deps.sh)");
    // Once alice is signed in, carol subscribes to her presence: the page
    // shows her as pending within its polling interval.
    let mut lines = BufReader::new(node.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut carol = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        let signed_in = line.contains("the header names the user");
        seen.push(line);
        if signed_in {
            carol = Some(watch_for_a_change_held(&s, "carol", "alice"));
            break;
        }
        assert!(Instant::now() < deadline, "the page did not sign in");
    }
    seen.extend(lines.map_while(Result::ok));
    let out = node.wait_with_output().unwrap();
    let transcript = format!(
        "{}\n{}",
        seen.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the browser run failed:\n{transcript}\nserver log:\n{}",
        s.log()
    );
    assert!(
        transcript.contains("ok: still signed out after a reload"),
        "{transcript}"
    );
    assert!(shot.exists(), "the screenshot was not written");
    // Carol, pending while she waited, got alice's state once approved.
    let (ok, trace) = carol.expect("carol subscribed").finish();
    assert!(ok, "{trace}\nserver:\n{}", s.log());
    let bodies = notify_bodies(&trace);
    assert!(bodies[0].contains("<basic>closed</basic>"), "{}", bodies[0]);
    assert!(bodies[1].contains("<rpid:busy/>"), "{}", bodies[1]);
    // What the page did is what the server stored.
    let v: serde_json::Value = serde_json::from_str(&admin_ok(
        &s,
        &["contacts", "list", &sip("alice"), "--output", "json"],
    ))
    .unwrap();
    assert_eq!(v["groups"], serde_json::json!(["Team"]), "{v}");
    assert_eq!(
        v["contacts"],
        serde_json::json!([{
            "contact": sip("bob"),
            "relationship": "personal",
            "display_name": "Bob <b>B.</b>",
            "groups": ["Team"],
            "added_at": v["contacts"][0]["added_at"],
        }]),
        "{v}"
    );
}
