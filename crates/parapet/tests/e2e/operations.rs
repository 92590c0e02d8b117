//! The operator's side: admin listener, user management while running, logs.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

#[test]
fn status_health_and_metrics_on_the_admin_listener() {
    let s = Server::new("admin");
    s.add_user("frank", "correct horse battery");
    passes!(
        s,
        s.sipp(
            "register_auth.xml",
            "frank",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &[]
        )
    );
    let (line, body) = s.http_get("/healthz", None);
    assert!(line.contains("200"), "{line}");
    assert_eq!(body.trim(), "ok");
    let (_, metrics) = s.http_get("/metrics", None);
    assert!(
        metrics.contains("parapet_sip_transactions_total{method=\"REGISTER\",code=\"200\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("parapet_sip_transactions_total{method=\"REGISTER\",code=\"401\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("\nparapet_inbound_queue "), "{metrics}");
    assert!(
        metrics.contains("\nparapet_inbound_delay_seconds "),
        "{metrics}"
    );
    // The API wants a token, and says how to get one.
    let (line, body) = s.http_get("/v1/status", None);
    assert!(
        line.contains("401") && body.contains("parapet admin login"),
        "{line} {body}"
    );
    let o = s.admin(&["status"], "");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        out.contains("domain")
            && out.contains("example.test")
            && out.contains("registrations        1"),
        "{out}"
    );
    assert!(out.contains("insecure transports are enabled"), "{out}");
}

#[test]
fn users_managed_while_running_take_effect() {
    let s = Server::new("manage");
    s.add_user("dave", "correct horse battery");
    passes!(
        s,
        s.sipp(
            "register_auth.xml",
            "dave",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &[]
        )
    );
    let o = s.admin(&["user", "disable", &format!("sip:dave@{DOMAIN}")], "");
    assert!(o.status.success());
    passes!(
        s,
        s.sipp(
            "register_bad_auth_once.xml",
            "dave",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &[]
        )
    );
    let o = s.admin(&["--output=json", "user", "list"], "");
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"enabled\": false"));
    let dave = format!("sip:dave@{DOMAIN}");
    let register = |password: &str, scenario: &str| {
        passes!(
            s,
            s.sipp(scenario, "dave", password, "127.0.0.1", free_port(), &[])
        );
    };
    // Enabled again: signs in again.
    assert!(s.admin(&["user", "enable", &dave], "").status.success());
    register("correct horse battery", "register_auth.xml");
    // A new password (from stdin): the old one fails, the new one works.
    let o = s.admin(
        &["user", "passwd", &dave, "--password-stdin"],
        "tr0ub4dor & 3",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    register("correct horse battery", "register_bad_auth_once.xml");
    register("tr0ub4dor & 3", "register_auth.xml");
    // Removed: gone from the list, and refused like any unknown user.
    assert!(s.admin(&["user", "remove", &dave], "").status.success());
    let o = s.admin(&["user", "list"], "");
    assert!(!String::from_utf8_lossy(&o.stdout).contains("dave"));
    register("tr0ub4dor & 3", "register_bad_auth_once.xml");
    // Failures say what is wrong, with exit status 1; usage errors 2.
    let o = s.admin(&["user", "remove", &dave], "");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("dave"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    s.add_user("erin", "correct horse battery");
    let o = s.admin(
        &[
            "user",
            "add",
            &format!("sip:erin@{DOMAIN}"),
            "--password-stdin",
        ],
        "another one",
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("exists"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = s.admin(&["user", "passwd"], "");
    assert_eq!(o.status.code(), Some(2));
    let o = s.admin(
        &["user", "add", "not a uri", "--password-stdin"],
        "pw long enough",
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("write it as sip:"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = std::env::temp_dir().join(format!("parapet-e2e-{}-jsonlog", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_parapet"))
        .args(["serve", "--log-format", "json", "--data-dir"])
        .arg(dir.join("data"))
        .args(["--domain", DOMAIN, "--allow-insecure-transports"])
        .arg(format!("--listen=udp://127.0.0.1:{port}"))
        .arg(format!("--admin-listen=127.0.0.1:{}", free_port()))
        .arg(format!("--web-listen=127.0.0.1:{}", free_port()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    // A server that hangs without writing must not hang the test: past the
    // deadline a watchdog ends it, which ends the read below.
    // It stands down as soon as the reading is over (the pid may be reused
    // once this server is gone).
    let pid = child.id().to_string();
    let (done, stand_down) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if stand_down.recv_timeout(Duration::from_secs(61)).is_err() {
            let _ = Command::new("kill").arg("-9").arg(&pid).status();
        }
    });
    // Read until the server says it is listening (or gives up).
    while Instant::now() < deadline {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut err, &mut line).unwrap_or(0) == 0 {
            break;
        }
        let done = line.contains("listening");
        lines.push(line);
        if done {
            break;
        }
    }
    let _ = done.send(());
    watchdog.join().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(lines.iter().any(|l| l.contains("listening")), "{lines:?}");
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string(), "{line}");
        assert!(v["timestamp"].is_string(), "{line}");
        assert!(v["fields"].is_object(), "{line}");
    }
    // The insecure-transport warning is there, as a structured event.
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"level\":\"WARN\"") && l.contains("insecure")),
        "{lines:?}"
    );
}

#[test]
fn cli_help_has_examples_and_completions_cover_the_admin_commands() {
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_parapet"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let help = run(&["admin", "login", "--help"]);
    assert!(
        help.contains("Example: parapet admin login --name root"),
        "{help}"
    );
    let help = run(&["admin", "policy", "set", "--help"]);
    assert!(
        help.contains(
            "Example: parapet admin policy set authentication global lockout_threshold=3"
        ),
        "{help}"
    );
    let bash = run(&["admin", "completions", "bash"]);
    for word in [
        "parapet", "recover", "lockout", "grant", "audit", "verify", "security",
    ] {
        assert!(bash.contains(word), "{word} missing from bash completions");
    }
    // A mistyped command is a usage error (2) that names the valid ones.
    let o = Command::new(env!("CARGO_BIN_EXE_parapet"))
        .args(["admin", "usr", "list"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("user"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The metric names a PromQL expression reads.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("parapet_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        rest = &rest[i + name.len()..];
        out.push(name);
    }
    out
}

/// docs/grafana/parapet.json, the dashboard operators import, is a Grafana
/// dashboard whose every query reads metrics this server exports (a name
/// changed in the server and not in the dashboard fails here).
#[test]
fn the_grafana_dashboard_reads_only_metrics_the_server_exports() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/grafana/parapet.json");
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(dash["uid"], "parapet-usage");
    assert!(
        dash["schemaVersion"].as_i64().unwrap() >= 36,
        "{}",
        dash["schemaVersion"]
    );
    let panels = dash["panels"].as_array().unwrap();
    let mut ids = std::collections::HashSet::new();
    let mut exprs = Vec::new();
    for p in panels {
        assert!(
            ids.insert(p["id"].as_i64().unwrap()),
            "panel ids repeat: {p}"
        );
        assert!(
            p["gridPos"]["w"]
                .as_i64()
                .is_some_and(|w| (1..=24).contains(&w)),
            "{p}"
        );
        assert!(!p["title"].as_str().unwrap().is_empty());
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{p}");
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{p}");
        for t in targets {
            let e = t["expr"].as_str().unwrap().to_string();
            let depth = e.chars().fold(0i32, |d, c| match c {
                '(' | '{' | '[' => d + 1,
                ')' | '}' | ']' => d - 1,
                _ => d,
            });
            assert_eq!(depth, 0, "unbalanced: {e}");
            exprs.push(e);
        }
    }
    for v in dash["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["query"].as_str() {
            exprs.push(q.to_string());
        }
    }
    let s = Server::new("grafana");
    let (status, metrics) = s.http_get("/metrics", None);
    assert!(status.contains("200"), "{status}");
    let exported: std::collections::HashSet<&str> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let mut read = 0;
    for e in &exprs {
        for name in metric_names(e) {
            read += 1;
            assert!(
                exported.contains(name.as_str()),
                "the dashboard reads {name}, which the server does not export ({e})"
            );
        }
    }
    assert!(
        read >= 30,
        "{read} metric reads: the dashboard lost its panels?"
    );
}

/// The correlation id as `sip::correlation` documents it (64-bit FNV-1a of
/// Call-ID, CSeq number and method), computed here independently.
fn fnv_corr(call_id: &str, n: u32, method: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in format!("{call_id}\n{n}\n{method}").bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[test]
fn logs_reach_syslog_as_json_with_the_transactions_correlation_id() {
    use crate::defaults::{answer, challenges, register};
    let collector = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    collector
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let s = Server::with_config(
        "syslog",
        &format!(
            "log_format = \"json\"\nlog_syslog = \"udp://{}\"\n",
            collector.local_addr().unwrap()
        ),
    );
    s.add_user("alice", "the right one");
    // Five wrong passwords from one address: the fifth locks it out, and
    // that line is logged while the fifth REGISTER is handled.
    let sock = std::net::UdpSocket::bind(format!("{}:0", s.host)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    sock.connect((s.host.as_str(), s.udp)).unwrap();
    let local = sock.local_addr().unwrap().to_string();
    let mut buf = vec![0u8; 65536];
    let mut ask = |req: String| -> String {
        sock.send(req.as_bytes()).unwrap();
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    for n in 1..=5u32 {
        let r = ask(register("UDP", &local, n * 2, None, "syslog-test", None));
        let nonce = challenges(&r)[0].1.clone();
        let a = answer(auth::digest::Algorithm::Md5, &nonce, "wrong");
        let r = ask(register(
            "UDP",
            &local,
            n * 2 + 1,
            None,
            "syslog-test",
            Some(&a),
        ));
        assert!(r.starts_with("SIP/2.0 401"), "{r}");
    }
    let call_id = format!("defaults-{}@test", std::process::id());
    let corr = fnv_corr(&call_id, 11, "REGISTER");
    // The lockout line arrives as an RFC 5424 message: priority daemon.warning
    // (3*8+4), version 1, the host, the application, its process id, then the
    // JSON line, whose span carries the correlation id.
    let pid = s.child.as_ref().unwrap().id();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    let line = loop {
        assert!(
            Instant::now() < deadline,
            "no lockout line; got:\n{seen:#?}"
        );
        let mut b = [0u8; 9000];
        let Ok(n) = collector.recv(&mut b) else {
            continue;
        };
        let m = String::from_utf8(b[..n].to_vec()).expect("UTF-8");
        if m.contains("lockout: address refused") {
            break m;
        }
        seen.push(m);
    };
    assert!(line.starts_with("<28>1 "), "{line}");
    let head: Vec<&str> = line.splitn(8, ' ').collect();
    assert_eq!(head[3], "parapet", "{line}");
    assert_eq!(head[4], pid.to_string(), "{line}");
    assert_eq!((head[5], head[6]), ("-", "-"), "{line}");
    let json: serde_json::Value = serde_json::from_str(head[7]).expect("a JSON line");
    assert_eq!(json["level"], "WARN", "{json}");
    assert_eq!(json["span"]["corr"], corr.as_str(), "{json}");
    // Info lines came too (the server's start), and stderr has the same
    // line with the same id.
    assert!(
        seen.iter()
            .any(|m| m.starts_with("<30>1 ") && m.contains("listening")),
        "{seen:#?}"
    );
    let stderr = s.log();
    let on_stderr = stderr
        .lines()
        .find(|l| l.contains("lockout: address refused"))
        .expect("on stderr too");
    assert!(
        on_stderr.contains(&format!("\"corr\":\"{corr}\"")),
        "{on_stderr}"
    );
    assert!(
        !on_stderr.contains('\u{1b}'),
        "no colour codes in a log file"
    );
    // An API request's id: the caller's when it sets a valid one, else one
    // made up; either way returned.
    let head_of = |extra: &str| -> String {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", s.admin)).unwrap();
        write!(
            c,
            "GET /healthz HTTP/1.1\r\nHost: localhost\r\n{extra}Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut r = String::new();
        c.read_to_string(&mut r).unwrap();
        r.to_ascii_lowercase()
    };
    assert!(head_of("X-Request-Id: ops-7f3a\r\n").contains("x-request-id: ops-7f3a\r\n"));
    let made = head_of("X-Request-Id: bad id\"\r\n");
    assert!(!made.contains("bad id"), "{made}");
    let id = made
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .expect("an id is made");
    assert_eq!(id.trim().len(), 16, "{made}");
}
