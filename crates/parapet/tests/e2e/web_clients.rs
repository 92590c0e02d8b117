//! Browser-style clients: JsSIP 3.13 and SIP.js 0.21 (npm, under
//! tests/sipjs) over secure WebSocket from Node, against a server started
//! as the README says — nothing changed for them.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

/// A JsSIP or SIP.js driver (tests/sipjs/*.mjs): commands on stdin, one
/// JSON event a line on stdout.
pub(crate) struct WebClient {
    name: String,
    child: Child,
    stdin: ChildStdin,
    events: Arc<Mutex<Vec<Value>>>,
}

impl WebClient {
    fn start(s: &Server, library: &str, user: &str, password: &str) -> WebClient {
        WebClient::start_at(s, library, user, password, "wss://127.0.0.1:8443")
    }

    /// Connected to the WebSocket URL `ws` (an edge's, for a remote user).
    pub(crate) fn start_at(
        s: &Server,
        library: &str,
        user: &str,
        password: &str,
        ws: &str,
    ) -> WebClient {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/sipjs");
        let stderr = std::fs::File::create(s.dir.join(format!("{library}-{user}.log"))).unwrap();
        let mut child = Command::new("node")
            .arg(dir.join(format!("{library}.mjs")))
            .args(["--ws", ws, "--user", user, "--password", password])
            .args(["--domain", DOMAIN])
            .env("NODE_EXTRA_CA_CERTS", s.data_dir().join("pki/ca.pem"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect(
                "node is installed and tests/sipjs has its packages (scripts/install-test-deps.sh)",
            );
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    sink.lock().unwrap().push(v);
                }
            }
        });
        WebClient {
            name: format!("{library} as {user}"),
            child,
            stdin,
            events,
        }
    }

    pub(crate) fn cmd(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Waits for an event matching `pred`; returns it.
    pub(crate) fn wait(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(v) = self.events.lock().unwrap().iter().find(|v| pred(v)) {
                return v.clone();
            }
            assert!(
                Instant::now() < deadline,
                "{}: no {what}; events: {:#?}",
                self.name,
                self.events.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub(crate) fn wait_event(&self, event: &str) -> Value {
        self.wait(event, |v| v["event"] == event)
    }

    pub(crate) fn events(&self) -> Vec<Value> {
        self.events.lock().unwrap().clone()
    }

    pub(crate) fn quit(mut self) {
        self.cmd("quit");
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "{} did not quit", self.name);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for WebClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn notify_says(v: &Value, from: &str, basic: &str) -> bool {
    v["event"] == "notify"
        && v["from"] == from
        && v["body"]
            .as_str()
            .is_some_and(|b| b.contains(&format!("<basic>{basic}</basic>")))
}

#[test]
fn jssip_and_sipjs_sign_in_message_and_watch_presence_over_wss() {
    let s = Server::readme("web-clients");
    s.add_user("alice", "alice password 1");
    s.add_user("bob", "bob password 1");
    s.add_each_other("alice", "bob");
    // alice on JsSIP, bob on SIP.js; both know only MD5 and answer the
    // last challenge.
    let mut alice = WebClient::start(&s, "jssip", "alice", "alice password 1");
    let mut bob = WebClient::start(&s, "sipjs", "bob", "bob password 1");
    alice.wait_event("registered");
    bob.wait_event("registered");

    // MESSAGE both ways.
    alice.cmd("message sip:bob@example.test hello bob, ünïcødé ✓");
    let m = bob.wait_event("message");
    assert_eq!(m["from"], "sip:alice@example.test");
    assert_eq!(m["body"], "hello bob, ünïcødé ✓");
    alice.wait_event("message_sent");
    bob.cmd("message sip:alice@example.test hi alice");
    let m = alice.wait_event("message");
    assert_eq!(m["from"], "sip:bob@example.test");
    assert_eq!(m["body"], "hi alice");
    bob.wait_event("message_sent");

    // SUBSCRIBE/NOTIFY both ways: each sees the other open (registered).
    alice.cmd("subscribe sip:bob@example.test");
    alice.wait("bob open", |v| {
        notify_says(v, "sip:bob@example.test", "open")
    });
    bob.cmd("subscribe sip:alice@example.test");
    bob.wait("alice open", |v| {
        notify_says(v, "sip:alice@example.test", "open")
    });

    // SIP.js PUBLISH: closed reaches alice; removing the publication gives
    // her the registration-based state (open) again, and SIP.js finds the
    // SIP-ETag RFC 3903 requires in the 2xx.
    bob.cmd("publish closed");
    bob.wait("published closed", |v| {
        v["event"] == "published" && v["state"] == "closed"
    });
    alice.wait("bob closed", |v| {
        notify_says(v, "sip:bob@example.test", "closed")
    });
    let before = alice.events().len();
    bob.cmd("publish remove");
    bob.wait("publication removed", |v| {
        v["event"] == "published" && v["state"] == "remove"
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while !alice.events()[before..]
        .iter()
        .any(|v| notify_says(v, "sip:bob@example.test", "open"))
    {
        assert!(
            Instant::now() < deadline,
            "bob never open again: {:#?}",
            alice.events()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    let warnings: Vec<Value> = bob
        .events()
        .into_iter()
        .filter(|v| v["event"] == "warning" || v["event"] == "error")
        .collect();
    assert!(warnings.is_empty(), "SIP.js warned: {warnings:#?}");
    assert!(
        alice.events().iter().all(|v| v["event"] != "error"),
        "{:#?}",
        alice.events()
    );

    alice.quit();
    bob.quit();
    // Both un-registered.
    let o = s.admin(&["--output=json", "status"], "");
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["registrations"], 0, "{v}");
}
