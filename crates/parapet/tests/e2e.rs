//! End-to-end: the real `parapet` binary on 127.0.0.1 ports, driven by SIPp
//! (Debian `sip-tester`, installed by scripts/test.sh) and the CLI, as an
//! operator and real clients would.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const DOMAIN: &str = "example.test";

fn free_port() -> u16 {
    // A port free for both UDP and TCP on 127.0.0.1.
    loop {
        let t = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = t.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/sipp")
        .join(name)
}

struct Server {
    child: Option<Child>,
    dir: PathBuf,
    udp: u16,
    tls: u16,
    admin: u16,
}

impl Server {
    fn new(name: &str) -> Server {
        let dir = std::env::temp_dir().join(format!("parapet-e2e-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut s = Server {
            child: None,
            dir,
            udp: free_port(),
            tls: free_port(),
            admin: free_port(),
        };
        s.start();
        s
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn start(&mut self) {
        // A port found free can be taken by a parallel test before the server
        // binds it: if the server exits at start, try again on fresh ports.
        for attempt in 0..3 {
            if attempt > 0 {
                self.udp = free_port();
                self.tls = free_port();
                self.admin = free_port();
            }
            self.spawn();
            if self.wait_ready() {
                return;
            }
            self.kill9();
        }
        panic!("server did not start; log:\n{}", self.log());
    }

    fn spawn(&mut self) {
        let cfg = self.dir.join("parapet.toml");
        // SIPp 3.6 knows only MD5 digest and reads only the first challenge;
        // timer C is short so that a test can see it fire.
        std::fs::write(
            &cfg,
            "digest_algorithms = [\"MD5\"]\n[proxy]\ntimer_c_secs = 3\n[im]\nmax_bytes = 2000\n",
        )
        .unwrap();
        let log = std::fs::File::create(self.dir.join("server.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_parapet"))
            .args(["serve", "--config"])
            .arg(&cfg)
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--domain", DOMAIN, "--allow-insecure-transports"])
            .arg(format!("--listen=udp://127.0.0.1:{}", self.udp))
            .arg(format!("--listen=tcp://127.0.0.1:{}", self.udp))
            .arg(format!("--listen=tls://127.0.0.1:{}", self.tls))
            .arg(format!("--admin-listen=127.0.0.1:{}", self.admin))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// Waits until the server answers OPTIONS over UDP; `false` if it exited.
    fn wait_ready(&mut self) -> bool {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        // Generous: CI machines may be busy.
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut() {
                if c.try_wait().ok().flatten().is_some() {
                    return false;
                }
            }
            let ping = options(&sock, "ready");
            let _ = sock.send_to(ping.as_bytes(), ("127.0.0.1", self.udp));
            if let Ok((n, _)) = sock.recv_from(&mut buf) {
                if buf[..n].starts_with(b"SIP/2.0 200") {
                    return true;
                }
            }
        }
        false
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap(); // SIGKILL
            c.wait().unwrap();
        }
    }

    fn cli(&self, args: &[&str], stdin: &str) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_parapet"))
            .args(args)
            .arg("--data-dir")
            .arg(self.data_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        c.wait_with_output().unwrap()
    }

    /// Runs an admin CLI command against this server.
    fn admin_cli(&self, args: &[&str]) -> Output {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.push(format!("--server=http://127.0.0.1:{}", self.admin));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        self.cli(&refs, "")
    }

    /// A plain HTTP GET on the admin listener; returns (status line, body).
    fn http_get(&self, path: &str, token: Option<&str>) -> (String, String) {
        let mut c = TcpStream::connect(("127.0.0.1", self.admin)).unwrap();
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            c,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut resp = String::new();
        c.read_to_string(&mut resp).unwrap();
        let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
        (
            head.lines().next().unwrap_or("").to_string(),
            body.to_string(),
        )
    }

    fn add_user(&self, user: &str, password: &str) {
        self.changing_users(|| {
            let o = self.cli(
                &[
                    "user",
                    "add",
                    &format!("sip:{user}@{DOMAIN}"),
                    "--password-stdin",
                ],
                password,
            );
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        });
    }

    /// Runs a user change through the CLI and waits until the running server
    /// has reloaded its user table (it polls once a second).
    fn changing_users(&self, change: impl FnOnce()) {
        let reloads = || self.log().matches("user table reloaded").count();
        let before = reloads();
        change();
        let deadline = Instant::now() + Duration::from_secs(10);
        while reloads() == before {
            assert!(
                Instant::now() < deadline,
                "the server did not pick up the user change; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs a SIPp scenario as `user` from `local_ip:local_port`; returns
    /// whether it passed, and SIPp's messages for diagnosis.
    fn sipp(
        &self,
        name: &str,
        user: &str,
        password: &str,
        local_ip: &str,
        local_port: u16,
        fields: &[&str],
    ) -> (bool, String) {
        let run = self.sipp_start(name, user, user, password, local_ip, local_port, fields);
        run.finish()
    }

    /// Starts a SIPp scenario in the background: `service` is SIPp's [service]
    /// (the target user), `auth_user`/`password` its digest credentials,
    /// `fields` the CSV columns after the domain ([field1], [field2], ...).
    #[allow(clippy::too_many_arguments)]
    fn sipp_start(
        &self,
        name: &str,
        service: &str,
        auth_user: &str,
        password: &str,
        local_ip: &str,
        local_port: u16,
        fields: &[&str],
    ) -> SippRun {
        let csv = self.dir.join(format!("{name}-{local_port}.csv"));
        let mut line = DOMAIN.to_string();
        for f in fields {
            line.push(';');
            line.push_str(f);
        }
        std::fs::write(&csv, format!("SEQUENTIAL\n{line}\n")).unwrap();
        let msgs = self.dir.join(format!("{name}-{local_port}.msg"));
        let mut cmd = Command::new("sipp");
        if name.starts_with("message_") || name.starts_with("call_uac") {
            // The digest uri must be the Request-URI; SIPp defaults to ip:port.
            cmd.args(["-auth_uri", &format!("{service}@{DOMAIN}")]); // SIPp adds "sip:"
        }
        let child = cmd
            .arg("-sf")
            .arg(scenario(name))
            .arg("-inf")
            .arg(&csv)
            .args([
                "-s", service, "-au", auth_user, "-ap", password, "-m", "1", "-l", "1", "-t", "u1",
                "-nostdin", "-timeout", "20s",
            ])
            .args([
                "-i",
                local_ip,
                "-p",
                &local_port.to_string(),
                "-trace_msg",
                "-message_file",
            ])
            .arg(&msgs)
            .arg(format!("127.0.0.1:{}", self.udp))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sipp is installed (scripts/test.sh installs Debian's sip-tester)");
        SippRun { child, msgs }
    }
}

/// A SIPp scenario running in the background.
struct SippRun {
    child: Child,
    msgs: PathBuf,
}

impl SippRun {
    fn finish(mut self) -> (bool, String) {
        let ok = self.child.wait().map(|s| s.success()).unwrap_or(false);
        (ok, std::fs::read_to_string(&self.msgs).unwrap_or_default())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn options(sock: &UdpSocket, call_id: &str) -> String {
    let port = sock.local_addr().unwrap().port();
    format!(
        "OPTIONS sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{call_id}{}\r\nMax-Forwards: 70\r\n\
         From: <sip:probe@{DOMAIN}>;tag=p\r\nTo: <sip:{DOMAIN}>\r\nCall-ID: {call_id}-{}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    )
}

macro_rules! passes {
    ($server:expr, $run:expr) => {{
        let (ok, msgs) = $run;
        assert!(
            ok,
            "SIPp scenario failed. Messages:\n{msgs}\nServer log:\n{}",
            $server.log()
        );
    }};
}

#[test]
fn sipp_registers_with_digest_authentication() {
    let s = Server::new("register");
    s.add_user("alice", "correct horse battery");
    passes!(
        s,
        s.sipp(
            "register_auth.xml",
            "alice",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &[]
        )
    );
}

#[test]
fn unknown_user_fails_exactly_like_a_wrong_password() {
    let s = Server::new("enumeration");
    s.add_user("alice", "correct horse battery");
    passes!(
        s,
        s.sipp(
            "register_bad_auth_once.xml",
            "alice",
            "wrong password!",
            "127.0.0.1",
            free_port(),
            &[]
        )
    );
    passes!(
        s,
        s.sipp(
            "register_bad_auth_once.xml",
            "nobody",
            "wrong password!",
            "127.0.0.1",
            free_port(),
            &[]
        )
    );
}

#[test]
fn wrong_passwords_lock_out_that_address_only() {
    let s = Server::new("lockout");
    s.add_user("bob", "correct horse battery");
    passes!(
        s,
        s.sipp(
            "register_lockout.xml",
            "bob",
            "guess guess",
            "127.0.0.1",
            free_port(),
            &[]
        )
    );
    // From the locked-out address even the right password is refused unchecked.
    passes!(
        s,
        s.sipp(
            "register_refused.xml",
            "bob",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &[]
        )
    );
    // The real user, elsewhere, is not locked out.
    passes!(
        s,
        s.sipp(
            "register_auth.xml",
            "bob",
            "correct horse battery",
            "127.0.0.2",
            free_port(),
            &[]
        )
    );
    // The operator sees the lockout and clears it.
    let o = s.admin_cli(&["lockout", "list"]);
    let listed = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        listed.contains("sip:bob@example.test") && listed.contains("127.0.0.1"),
        "{listed}"
    );
    let o = s.admin_cli(&["lockout", "clear", "--account", "sip:bob@example.test"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("cleared 1"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    passes!(
        s,
        s.sipp(
            "register_auth.xml",
            "bob",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &[]
        )
    );
}

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
    // The API wants the token from the data directory.
    let (line, body) = s.http_get("/v0/status", None);
    assert!(
        line.contains("401") && body.contains("admin.token"),
        "{line} {body}"
    );
    let o = s.admin_cli(&["status"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        out.contains("serving example.test") && out.contains("registrations: 1"),
        "{out}"
    );
    assert!(
        out.contains("WARNING: insecure transports are enabled"),
        "{out}"
    );
}

#[test]
fn bindings_survive_kill_9() {
    let mut s = Server::new("restart");
    s.add_user("carol", "correct horse battery");
    let port = free_port();
    passes!(
        s,
        s.sipp(
            "register_auth.xml",
            "carol",
            "correct horse battery",
            "127.0.0.1",
            port,
            &[]
        )
    );
    s.kill9();
    s.start();
    let (ok, msgs) = s.sipp(
        "register_query.xml",
        "carol",
        "correct horse battery",
        "127.0.0.1",
        free_port(),
        &[],
    );
    assert!(ok, "{msgs}");
    let listed = format!("Contact: <sip:carol@127.0.0.1:{port}>;expires=");
    assert!(
        msgs.contains(&listed),
        "the binding made before kill -9 is listed: {msgs}"
    );
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
    s.changing_users(|| {
        let o = s.cli(&["user", "disable", &format!("sip:dave@{DOMAIN}")], "");
        assert!(o.status.success());
    });
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
    let o = s.cli(&["user", "list", "--json"], "");
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"enabled\": false"));
    let dave = format!("sip:dave@{DOMAIN}");
    let register = |password: &str, scenario: &str| {
        passes!(
            s,
            s.sipp(scenario, "dave", password, "127.0.0.1", free_port(), &[])
        );
    };
    // Enabled again: signs in again.
    s.changing_users(|| assert!(s.cli(&["user", "enable", &dave], "").status.success()));
    register("correct horse battery", "register_auth.xml");
    // A new password (from stdin): the old one fails, the new one works.
    s.changing_users(|| {
        let o = s.cli(
            &["user", "passwd", &dave, "--password-stdin"],
            "tr0ub4dor & 3",
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    });
    register("correct horse battery", "register_bad_auth_once.xml");
    register("tr0ub4dor & 3", "register_auth.xml");
    // Removed: gone from the list, and refused like any unknown user.
    s.changing_users(|| assert!(s.cli(&["user", "remove", &dave], "").status.success()));
    let o = s.cli(&["user", "list"], "");
    assert!(!String::from_utf8_lossy(&o.stdout).contains("dave"));
    register("tr0ub4dor & 3", "register_bad_auth_once.xml");
    // Failures say what is wrong, with exit status 1; usage errors 2.
    let o = s.cli(&["user", "remove", &dave], "");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("dave"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    s.add_user("erin", "correct horse battery");
    let o = s.cli(
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
    let o = s.cli(&["user", "passwd"], "");
    assert_eq!(o.status.code(), Some(2));
    let o = s.cli(&["user", "add", "not a uri", "--password-stdin"], "pw");
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
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
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
fn bad_input_does_not_stop_service() {
    let s = Server::new("badinput");
    s.add_user("erin", "correct horse battery");
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    // Garbage, truncated and oversized datagrams.
    udp.send_to(b"\x00\xff garbage \x01", ("127.0.0.1", s.udp))
        .unwrap();
    let full = options(&udp, "trunc");
    udp.send_to(&full.as_bytes()[..40], ("127.0.0.1", s.udp))
        .unwrap();
    let big = format!(
        "{}X-Pad: {}\r\n\r\n",
        &full[..full.len() - 2],
        "a".repeat(60_000)
    );
    let _ = udp.send_to(big.as_bytes(), ("127.0.0.1", s.udp));
    // A malformed request is answered precisely.
    let bad = options(&udp, "bad").replace("CSeq: 1 OPTIONS", "CSeq: 99999999999 OPTIONS");
    udp.send_to(bad.as_bytes(), ("127.0.0.1", s.udp)).unwrap();
    let mut buf = [0u8; 65535];
    let mut got = String::new();
    while let Ok((n, _)) = udp.recv_from(&mut buf) {
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(got.contains("SIP/2.0 400 Malformed CSeq Header"), "{got}");
    // An instant message over the configured size (2000 bytes here) is refused
    // before any other work.
    let big_im = options(&udp, "bigim")
        .replace("OPTIONS sip:", "MESSAGE sip:erin@")
        .replace("1 OPTIONS", "1 MESSAGE")
        .replace(
            "Content-Length: 0\r\n\r\n",
            &format!(
                "Content-Type: text/plain\r\nContent-Length: 3000\r\n\r\n{}",
                "x".repeat(3000)
            ),
        );
    udp.send_to(big_im.as_bytes(), ("127.0.0.1", s.udp))
        .unwrap();
    let (n, _) = udp.recv_from(&mut buf).unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(
        answer.starts_with("SIP/2.0 513 Message Too Large"),
        "{answer}"
    );
    // TCP: garbage closes that connection only; TLS port: plaintext is refused.
    for port in [s.udp, s.tls] {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = c.write_all(b"NOT SIP AT ALL\r\n\r\n");
        let mut sink = Vec::new();
        let _ = c.read_to_end(&mut sink);
    }
    // A flood of REGISTERs for a real account from one address (bounded: 300
    // datagrams) hits the per-address rate limit for unauthenticated requests...
    let flooder = UdpSocket::bind("127.0.0.3:0").unwrap();
    flooder
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    for i in 0..300 {
        let r = options(&flooder, &format!("burst{i}"))
            .replace("OPTIONS sip:", "REGISTER sip:")
            .replace("1 OPTIONS", "1 REGISTER")
            .replace("<sip:probe@", "<sip:erin@")
            .replace("To: <sip:example.test>", "To: <sip:erin@example.test>");
        let _ = flooder.send_to(r.as_bytes(), ("127.0.0.1", s.udp));
    }
    let mut limited = 0;
    while let Ok((n, _)) = flooder.recv_from(&mut buf) {
        if buf[..n].starts_with(b"SIP/2.0 503 Service Unavailable (Rate Limit Exceeded)") {
            limited += 1;
        }
    }
    assert!(limited > 0, "the flood was never rate limited");
    // ...while everyone else is served throughout.
    passes!(
        s,
        s.sipp(
            "register_auth.xml",
            "erin",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &[]
        )
    );
}

/// A TLS session to the server's TLS listener, trusting the CA made on
/// first start.
fn tls_session(s: &Server) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let ca = s.data_dir().join("pki/ca.pem");
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(&ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from(DOMAIN).unwrap();
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(cfg), name).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", s.tls)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

/// OPTIONS over a TLS session; returns the server's first response line.
fn tls_options(
    tls: &mut rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    id: &str,
) -> String {
    let port = tls.sock.local_addr().unwrap().port();
    let req = format!(
        "OPTIONS sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:{port};branch=z9hG4bK{id}\r\nMax-Forwards: 70\r\n\
         From: <sip:probe@{DOMAIN}>;tag=p\r\nTo: <sip:{DOMAIN}>\r\nCall-ID: {id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    tls.write_all(req.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

/// Reads until the server closes the session; `true` if it did within the
/// read timeout.
fn closed_by_server(
    tls: &mut rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
) -> (bool, String) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match tls.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => {
                break e.kind() != std::io::ErrorKind::WouldBlock
                    && e.kind() != std::io::ErrorKind::TimedOut
            }
        }
    };
    (closed, String::from_utf8_lossy(&got).into_owned())
}

#[test]
fn garbage_inside_a_tls_session_ends_only_that_session() {
    let s = Server::new("tlsgarbage");
    s.add_user("erin", "correct horse battery");
    // A well-behaved session stays open throughout.
    let mut good = tls_session(&s);
    assert_eq!(tls_options(&mut good, "good-1"), "SIP/2.0 200 OK");
    // Garbage after a valid exchange in an established session: that session ends.
    let mut bad = tls_session(&s);
    assert_eq!(tls_options(&mut bad, "bad-1"), "SIP/2.0 200 OK");
    bad.write_all(b"\x00\xffNOT SIP AT ALL\r\n\r\n").unwrap();
    let (closed, answer) = closed_by_server(&mut bad);
    assert!(closed, "the server kept a session that sent garbage open");
    assert!(!answer.contains("200 OK"), "{answer}");
    // A message announcing a body larger than any message allowed: 513
    // without waiting for (or buffering) the body, and the session ends.
    let mut big = tls_session(&s);
    let port = big.sock.local_addr().unwrap().port();
    let head = format!(
        "MESSAGE sip:erin@{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:{port};branch=z9hG4bKbig\r\nMax-Forwards: 70\r\n\
         From: <sip:probe@{DOMAIN}>;tag=p\r\nTo: <sip:erin@{DOMAIN}>\r\nCall-ID: big\r\nCSeq: 1 MESSAGE\r\n\
         Content-Type: text/plain\r\nContent-Length: 100000000\r\n\r\nxxxx"
    );
    big.write_all(head.as_bytes()).unwrap();
    let (closed, answer) = closed_by_server(&mut big);
    assert!(closed, "the server waited for a 100 MB body: {answer}");
    assert!(
        answer.starts_with("SIP/2.0 513 Message Too Large"),
        "{answer}"
    );
    // A truncated message, then the client goes away: nothing to answer.
    let mut cut = tls_session(&s);
    cut.write_all(b"OPTIONS sip:example.test SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:1;bra")
        .unwrap();
    drop(cut);
    // The good session and new sessions are served as before.
    assert_eq!(tls_options(&mut good, "good-2"), "SIP/2.0 200 OK");
    let mut fresh = tls_session(&s);
    assert_eq!(tls_options(&mut fresh, "fresh-1"), "SIP/2.0 200 OK");
    passes!(
        s,
        s.sipp(
            "register_auth.xml",
            "erin",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &[]
        )
    );
}

/// Registers `user` from a fresh port (SIPp exits after the 200), then runs
/// `scenario` as a UAS on that port.
fn register_then(s: &Server, user: &str, password: &str, scenario: &str) -> SippRun {
    let port = free_port();
    passes!(
        s,
        s.sipp("register_auth.xml", user, password, "127.0.0.1", port, &[])
    );
    s.sipp_start(scenario, user, user, password, "127.0.0.1", port, &[])
}

fn register_and_listen(s: &Server, user: &str, password: &str) -> SippRun {
    register_then(s, user, password, "receive_message.xml")
}

#[test]
fn message_is_relayed_between_registered_users() {
    let s = Server::new("im");
    s.add_user("alice", "correct horse battery");
    s.add_user("bob", "battery staple horse");
    let bob = register_and_listen(&s, "bob", "battery staple horse");
    let (ok, msgs) = s
        .sipp_start(
            "message_send.xml",
            "bob",
            "alice",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &["alice", "live-1"],
        )
        .finish();
    assert!(
        ok,
        "alice's MESSAGE was not answered 200:\n{msgs}\nserver:\n{}",
        s.log()
    );
    let (ok, received) = bob.finish();
    assert!(
        ok,
        "bob did not receive the MESSAGE (or it carried alice's credentials):\n{received}"
    );
    assert!(received.contains("Hello from alice: live-1"), "{received}");
    assert!(
        received.contains("From: <sip:alice@example.test>"),
        "{received}"
    );
}

#[test]
fn a_request_that_comes_back_unchanged_is_a_loop() {
    let s = Server::new("loop");
    s.add_user("alice", "correct horse battery");
    s.add_user("bob", "battery staple horse");
    // Bob's endpoint accepts the MESSAGE and sends it straight back to the
    // server, as a call-forward pointing at itself would.
    let bob = register_then(&s, "bob", "battery staple horse", "bounce_message.xml");
    let (ok, msgs) = s
        .sipp_start(
            "message_send.xml",
            "bob",
            "alice",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &["alice", "loop-1"],
        )
        .finish();
    assert!(ok, "alice's MESSAGE was not answered 200:\n{msgs}");
    let (ok, bounced) = bob.finish();
    assert!(
        ok,
        "the bounced MESSAGE was not refused as a loop:\n{bounced}\nserver:\n{}",
        s.log()
    );
    assert!(bounced.contains("SIP/2.0 482 Loop Detected"), "{bounced}");
}

#[test]
fn message_to_offline_user_is_stored_and_delivered_on_registration() {
    let mut s = Server::new("offline");
    s.add_user("alice", "correct horse battery");
    s.add_user("carol", "battery staple horse");
    let (ok, msgs) = s
        .sipp_start(
            "message_send_stored.xml",
            "carol",
            "alice",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &["alice", "stored-1"],
        )
        .finish();
    assert!(ok, "expected 202 for an offline recipient:\n{msgs}");
    assert!(
        msgs.contains("SIP/2.0 202 Accepted (Stored for Later Delivery)"),
        "{msgs}"
    );
    // Acknowledged means durable: it survives kill -9.
    s.kill9();
    s.start();
    // Delivery starts at registration; UDP retransmissions reach the listener
    // that starts right after.
    let (ok, received) = register_and_listen(&s, "carol", "battery staple horse").finish();
    assert!(
        ok,
        "carol did not receive the stored MESSAGE:\n{received}\nserver:\n{}",
        s.log()
    );
    assert!(
        received.contains("Hello from alice: stored-1"),
        "{received}"
    );
    assert!(
        received.contains("Date: "),
        "a stored message carries its original date: {received}"
    );
}

#[test]
fn message_sender_must_prove_who_they_are() {
    let s = Server::new("spoof");
    s.add_user("alice", "correct horse battery");
    s.add_user("bob", "battery staple horse");
    // bob's credentials on a MESSAGE From alice do not verify as alice: challenged
    // again, never relayed or stored.
    let (ok, msgs) = s
        .sipp_start(
            "message_send.xml",
            "alice",
            "bob",
            "battery staple horse",
            "127.0.0.1",
            free_port(),
            &["alice", "spoof"],
        )
        .finish();
    assert!(!ok);
    let answers: Vec<&str> = msgs.lines().filter(|l| l.starts_with("SIP/2.0 ")).collect();
    assert_eq!(
        answers.first(),
        Some(&"SIP/2.0 407 Proxy Authentication Required")
    );
    assert!(
        answers.iter().all(|a| a.starts_with("SIP/2.0 407")),
        "{answers:?}"
    );
}

#[test]
fn call_is_set_up_and_torn_down_through_the_proxy() {
    let s = Server::new("call");
    s.add_user("alice", "correct horse battery");
    s.add_user("bob", "battery staple horse");
    let bob = register_then(&s, "bob", "battery staple horse", "call_uas.xml");
    let (ok, msgs) = s
        .sipp_start(
            "call_uac.xml",
            "bob",
            "alice",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &["alice"],
        )
        .finish();
    assert!(
        ok,
        "the call failed for alice:\n{msgs}\nserver:\n{}",
        s.log()
    );
    let (ok, callee) = bob.finish();
    assert!(
        ok,
        "bob's side failed (or the INVITE carried credentials / no Record-Route):\n{callee}"
    );
    // The ACK, the re-INVITE (hold), the UPDATE and the BYE came to bob
    // through the proxy, along its Record-Route.
    assert!(callee.contains("ACK sip:bob@127.0.0.1:"), "{callee}");
    assert_eq!(
        callee.matches("INVITE sip:bob@127.0.0.1:").count(),
        2,
        "{callee}"
    );
    assert!(callee.contains("UPDATE sip:bob@127.0.0.1:"), "{callee}");
    assert!(callee.contains("BYE sip:bob@127.0.0.1:"), "{callee}");
    let vias_of_bye = callee
        .split("BYE sip:")
        .nth(1)
        .unwrap_or("")
        .lines()
        .take_while(|l| !l.is_empty())
        .filter(|l| l.starts_with("Via:"))
        .count();
    assert_eq!(
        vias_of_bye, 2,
        "the BYE passed the proxy (its Via above alice's): {callee}"
    );
}

#[test]
fn strict_router_requests_are_routed_like_loose_ones() {
    let s = Server::new("strict");
    s.add_user("alice", "correct horse battery");
    s.add_user("bob", "battery staple horse");
    let bob = register_then(&s, "bob", "battery staple horse", "call_uas.xml");
    let (ok, msgs) = s
        .sipp_start(
            "call_uac_strict.xml",
            "bob",
            "alice",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &["alice"],
        )
        .finish();
    assert!(
        ok,
        "the strict-routed call failed for alice:\n{msgs}\nserver:\n{}",
        s.log()
    );
    let (ok, callee) = bob.finish();
    assert!(ok, "bob's side failed:\n{callee}");
    // The ACK, UPDATE and BYE reach bob with his Contact as Request-URI and
    // the route set consumed: no Route left.
    for method in ["ACK", "UPDATE", "BYE"] {
        let request = callee
            .split(&format!("{method} sip:"))
            .nth(1)
            .unwrap_or("")
            .lines()
            .take_while(|l| !l.is_empty())
            .collect::<Vec<_>>();
        assert!(
            request
                .first()
                .is_some_and(|l| l.starts_with("bob@127.0.0.1:")),
            "{method}: {callee}"
        );
        assert!(
            !request.iter().any(|l| l.starts_with("Route:")),
            "{method} kept a Route: {callee}"
        );
    }
}

#[test]
fn ringing_call_is_cancelled() {
    let s = Server::new("cancel");
    s.add_user("alice", "correct horse battery");
    s.add_user("bob", "battery staple horse");
    let bob = register_then(&s, "bob", "battery staple horse", "call_uas_cancel.xml");
    let (ok, msgs) = s
        .sipp_start(
            "call_uac_cancel.xml",
            "bob",
            "alice",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &["alice"],
        )
        .finish();
    assert!(
        ok,
        "alice's cancelled call went wrong:\n{msgs}\nserver:\n{}",
        s.log()
    );
    let (ok, callee) = bob.finish();
    assert!(ok, "bob was not cancelled properly:\n{callee}");
    assert!(callee.contains("CANCEL sip:bob@127.0.0.1:"), "{callee}");
}

#[test]
fn call_to_an_unregistered_user_is_temporarily_unavailable() {
    let s = Server::new("noanswer");
    s.add_user("alice", "correct horse battery");
    s.add_user("bob", "battery staple horse");
    let (ok, msgs) = s
        .sipp_start(
            "call_uac.xml",
            "bob",
            "alice",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &["alice"],
        )
        .finish();
    assert!(!ok);
    assert!(
        msgs.contains("SIP/2.0 480 Temporarily Unavailable"),
        "{msgs}"
    );
}

/// A baresip client (Debian `baresip-core`) driven through its stdio menu,
/// registered over TLS to the server and trusting the generated CA. It binds to
/// 127.0.0.1 only (`-n`), plays a generated tone file as its microphone, and
/// prints its SIP trace (`-s`) with its other output.
struct Baresip {
    child: Child,
    out: PathBuf,
    stdin: std::process::ChildStdin,
}

impl Baresip {
    fn start(s: &Server, user: &str, password: &str, contact: &str) -> Baresip {
        let dir = s.dir.join(format!("baresip-{user}"));
        std::fs::create_dir_all(&dir).unwrap();
        let wav = dir.join("tone.wav");
        std::fs::write(&wav, tone_wav()).unwrap();
        let config = format!(
            "poll_method\tepoll\nsip_listen\t127.0.0.1:{}\nsip_cafile\t{}\nmodule_path\t/usr/lib/baresip/modules\n\
             module\tstdio.so\nmodule\tg711.so\nmodule\taufile.so\nmodule_app\taccount.so\nmodule_app\tmenu.so\n\
             module_app\tcontact.so\naudio_source\taufile,{}\naudio_player\taufile,/dev/null\naudio_alert\taufile,/dev/null\n",
            free_port(),
            s.data_dir().join("pki/ca.pem").display(),
            wav.display()
        );
        std::fs::write(dir.join("config"), config).unwrap();
        std::fs::write(
            dir.join("accounts"),
            format!("<sip:{user}@{DOMAIN};transport=tls>;auth_pass={password};outbound=\"sip:127.0.0.1:{};transport=tls\";regint=600\n", s.tls),
        )
        .unwrap();
        std::fs::write(dir.join("contacts"), format!("<sip:{contact}@{DOMAIN}>\n")).unwrap();
        let out = dir.join("out.log");
        // baresip prints to both streams; keep them together.
        let log = std::fs::File::create(&out).unwrap();
        // Line-buffered, so the test sees each line as it is printed.
        let mut child = Command::new("stdbuf")
            .args(["-oL", "-eL", "baresip", "-s", "-n", "127.0.0.1", "-f"])
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("baresip is installed (scripts/test.sh installs Debian's baresip-core)");
        let stdin = child.stdin.take().unwrap();
        let b = Baresip { child, out, stdin };
        b.wait_for("{0/TLS/v4} 200 OK (Parapet");
        b
    }

    fn cmd(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }

    fn output(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.out).unwrap_or_default()).into_owned()
    }

    fn wait_for(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.output().contains(text) {
            assert!(
                Instant::now() < deadline,
                "baresip never printed {text:?}:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Five seconds of a 440 Hz tone, 8 kHz 16-bit mono WAV.
fn tone_wav() -> Vec<u8> {
    let samples: Vec<u8> = (0..40_000u32)
        .flat_map(|i| {
            (((f64::from(i) * 440.0 * std::f64::consts::TAU / 8000.0).sin() * 8000.0) as i16)
                .to_le_bytes()
        })
        .collect();
    let mut w = Vec::new();
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + samples.len() as u32).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes()); // PCM
    w.extend_from_slice(&1u16.to_le_bytes()); // mono
    w.extend_from_slice(&8000u32.to_le_bytes());
    w.extend_from_slice(&16000u32.to_le_bytes());
    w.extend_from_slice(&2u16.to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&(samples.len() as u32).to_le_bytes());
    w.extend_from_slice(&samples);
    w
}

#[test]
fn baresip_clients_message_and_call_over_tls() {
    let s = Server::new("baresip");
    s.add_user("alice", "correct-horse-battery");
    s.add_user("bob", "battery-staple-horse");
    let mut bob = Baresip::start(&s, "bob", "battery-staple-horse", "alice");
    bob.cmd("/answermode auto");
    let mut alice = Baresip::start(&s, "alice", "correct-horse-battery", "bob");
    // Instant messages both ways.
    alice.cmd("/message hello-from-alice");
    bob.wait_for("sip:alice@example.test: \"hello-from-alice\"");
    bob.cmd("/message hello-from-bob");
    alice.wait_for("sip:bob@example.test: \"hello-from-bob\"");
    // A call, answered automatically, media flowing, then hung up by alice.
    alice.cmd("/dial sip:bob@example.test");
    bob.wait_for("Call established: sip:alice@example.test");
    alice.wait_for("Call established: sip:bob@example.test");
    bob.wait_for("incoming rtp for 'audio' established");
    alice.cmd("/hangup");
    // The BYE reaches bob along the route set (over his TLS connection, by the
    // flow token in our Record-Route) and ends his side of the call.
    bob.wait_for("BYE sip:bob");
    bob.wait_for("session closed");
    alice.cmd("/quit");
    bob.cmd("/quit");
}

#[test]
fn unanswered_call_is_cancelled_by_timer_c() {
    let s = Server::new("timerc");
    s.add_user("alice", "correct horse battery");
    s.add_user("bob", "battery staple horse");
    // bob rings and never answers; the server cancels after timer C (3 s here).
    let bob = register_then(&s, "bob", "battery staple horse", "call_uas_cancel.xml");
    let (ok, msgs) = s
        .sipp_start(
            "call_uac_unanswered.xml",
            "bob",
            "alice",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &["alice"],
        )
        .finish();
    assert!(
        ok,
        "alice did not get 487 after timer C:\n{msgs}\nserver:\n{}",
        s.log()
    );
    let (ok, callee) = bob.finish();
    assert!(ok, "bob was not cancelled by the server:\n{callee}");
    assert!(s.log().contains("timer C: cancelling"), "{}", s.log());
}
