//! The server under test, SIPp runs, and helpers shared by the tests.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub(crate) const DOMAIN: &str = "example.test";

/// A port free for both UDP and TCP on 127.0.0.1. Taken below the
/// kernel's ephemeral range, so that no outgoing connection of a parallel
/// test (which gets an ephemeral port, on any local address) can take it
/// between this check and the bind; handed out in turn from a random
/// start, so two tests of one run never get the same. (A port the kernel
/// picked was in the ephemeral range: an edge once failed three times to
/// bind its fixed external port, taken by such a connection.)
pub(crate) fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    const FIRST: u32 = 10_000;
    if low <= FIRST + 1_000 {
        return kernel_port();
    }
    let span = low - FIRST;
    if NEXT.load(Ordering::Relaxed) == 0 {
        let seed = std::process::id()
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
        let _ = NEXT.compare_exchange(0, 1 + seed % span, Ordering::Relaxed, Ordering::Relaxed);
    }
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let p = u16::try_from(FIRST + n % span).unwrap_or(0);
        if p != 0
            && TcpListener::bind(("127.0.0.1", p)).is_ok()
            && UdpSocket::bind(("127.0.0.1", p)).is_ok()
        {
            return p;
        }
    }
    kernel_port()
}

/// A port the kernel finds free (for both UDP and TCP on 127.0.0.1).
fn kernel_port() -> u16 {
    loop {
        let t = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = t.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

/// The README, whose instructions some tests follow to the letter.
pub(crate) fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md")).unwrap()
}

pub(crate) fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/sipp")
        .join(name)
}

pub(crate) struct Server {
    pub(crate) child: Option<Child>,
    pub(crate) dir: PathBuf,
    pub(crate) udp: u16,
    pub(crate) tls: u16,
    pub(crate) admin: u16,
    /// The user listener (HTTPS).
    pub(crate) web: u16,
    /// The media relay's UDP and TCP listeners (3478 when started as the
    /// README says).
    pub(crate) relay: u16,
    /// A session token of the administrator `root`, made at start.
    pub(crate) token: String,
    /// More configuration (TOML) for this test's server.
    pub(crate) extra_config: String,
    /// The SIP domain (example.test unless a test names another).
    pub(crate) domain: String,
    /// The address its SIP and user listeners are on (127.0.0.1 unless a
    /// test gives another organisation its own; the admin listener stays
    /// on 127.0.0.1).
    pub(crate) host: String,
    /// Started as the README says (`readme`): default listeners, no
    /// configuration file. Holds the lock on the default ports.
    _defaults: Option<std::sync::MutexGuard<'static, ()>>,
    /// Started as the README says (with `extra_config` as its file, if any).
    readme_mode: bool,
    /// The network namespace the server, and the CLI and HTTP requests
    /// made to it, run in (a NAT laboratory's).
    pub(crate) netns: Option<String>,
    /// Environment variables for the server process.
    pub(crate) env: Vec<(String, String)>,
}

/// Servers on the default ports (5061, 8443, 4443, 9060) run one at a time.
static DEFAULT_PORTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The right to start a server on the default ports until the guard drops.
pub(crate) fn default_ports() -> std::sync::MutexGuard<'static, ()> {
    DEFAULT_PORTS.lock().unwrap_or_else(|e| e.into_inner())
}

impl Server {
    pub(crate) fn new(name: &str) -> Server {
        Server::with_config(name, "")
    }

    /// A server whose configuration file also has `extra` (TOML, top level).
    pub(crate) fn with_config(name: &str, extra: &str) -> Server {
        Server::org(name, DOMAIN, extra)
    }

    /// A server for another organisation's `domain` (federation tests).
    pub(crate) fn org(name: &str, domain: &str, extra: &str) -> Server {
        Server::org_at(name, domain, "127.0.0.1", extra)
    }

    /// The same, listening on its own loopback address `host` (127.0.0.x).
    pub(crate) fn org_at(name: &str, domain: &str, host: &str, extra: &str) -> Server {
        let dir = std::env::temp_dir().join(format!("parapet-e2e-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut s = Server {
            child: None,
            dir,
            udp: free_port(),
            tls: free_port(),
            admin: free_port(),
            web: free_port(),
            relay: free_port(),
            token: String::new(),
            extra_config: extra.to_string(),
            domain: domain.to_string(),
            host: host.to_string(),
            _defaults: None,
            readme_mode: false,
            netns: None,
            env: Vec::new(),
        };
        s.start();
        s.token = s.bootstrap_admin("root");
        s
    }

    /// A server started exactly as the README's quickstart does:
    /// `parapet serve --data-dir DIR --domain example.test`, nothing else —
    /// TLS on 5061, WSS on 8443, the user listener on 4443 and the admin
    /// listener on 127.0.0.1:9060, all on their default (wildcard)
    /// addresses, and every setting and policy at its default. Such servers
    /// run one at a time (the ports are fixed).
    pub(crate) fn readme(name: &str) -> Server {
        Server::readme_with(name, "")
    }

    /// [`Server::readme`] with `extra` as its configuration file (when not
    /// empty): `parapet serve --config FILE --data-dir DIR --domain
    /// example.test`.
    pub(crate) fn readme_with(name: &str, extra: &str) -> Server {
        Server::as_readme_says(name, None, extra)
    }

    /// A server started as the README says, inside network namespace
    /// `netns` (its own ports, so several run at once), with `extra` as
    /// its configuration file when not empty.
    pub(crate) fn readme_in(name: &str, netns: &str, extra: &str) -> Server {
        Server::as_readme_says(name, Some(netns), extra)
    }

    /// The README's command on the default ports: in `netns`, or here
    /// holding the lock on those ports.
    fn as_readme_says(name: &str, netns: Option<&str>, extra: &str) -> Server {
        let guard = netns.is_none().then(default_ports);
        let dir = std::env::temp_dir().join(format!("parapet-e2e-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut s = Server {
            child: None,
            dir,
            udp: 0,
            tls: 5061,
            admin: 9060,
            web: 4443,
            relay: 3478,
            token: String::new(),
            extra_config: extra.to_string(),
            domain: DOMAIN.to_string(),
            host: "127.0.0.1".to_string(),
            _defaults: guard,
            readme_mode: true,
            netns: netns.map(str::to_string),
            env: Vec::new(),
        };
        s.spawn();
        assert!(s.wait_ready(), "server did not start; log:\n{}", s.log());
        s.token = s.bootstrap_admin("root");
        s
    }

    /// Another node of this server's pool (PostgreSQL): a copy of its data
    /// directory (the pool's keys and certificates), its own ports, the
    /// same configuration with `node_id` set to `node_id`. Not started.
    pub(crate) fn another_node(&self, name: &str, node_id: &str) -> Server {
        self.another_node_at(name, node_id, &self.host.clone())
    }

    /// [`Server::another_node`] listening on its own loopback address
    /// `host` (127.0.0.x).
    pub(crate) fn another_node_at(&self, name: &str, node_id: &str, host: &str) -> Server {
        let dir = std::env::temp_dir().join(format!("parapet-e2e-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let copied = Command::new("cp")
            .arg("-a")
            .arg(self.data_dir())
            .arg(dir.join("data"))
            .status()
            .unwrap();
        assert!(copied.success());
        let extra: String = self
            .extra_config
            .lines()
            .filter(|l| !l.trim_start().starts_with("node_id"))
            .map(|l| format!("{l}\n"))
            .collect();
        Server {
            child: None,
            dir,
            udp: free_port(),
            tls: free_port(),
            admin: free_port(),
            web: free_port(),
            relay: free_port(),
            token: self.token.clone(),
            extra_config: format!("node_id = \"{node_id}\"\n{extra}"),
            domain: self.domain.clone(),
            host: host.to_string(),
            _defaults: None,
            readme_mode: false,
            netns: None,
            env: Vec::new(),
        }
    }

    /// Sends `signal` (`STOP`, `CONT`...) to the server process.
    pub(crate) fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("the server runs").id();
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(ok.success(), "kill -{signal} {pid}");
    }

    /// A command, run in the server's network namespace if it has one.
    pub(crate) fn command(&self, program: &str) -> Command {
        match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, program]);
                c
            }
            None => Command::new(program),
        }
    }

    /// Creates an administrator with `parapet admin recover` (break-glass,
    /// on the data directory) and signs in as it with a TOTP code computed
    /// from the secret it printed, as an authenticator app would. Returns
    /// the session token.
    pub(crate) fn bootstrap_admin(&self, name: &str) -> String {
        let data_dir = self.data_dir();
        let mut args = vec![
            "admin",
            "--output=json",
            "recover",
            "--name",
            name,
            "--data-dir",
            data_dir.to_str().unwrap(),
        ];
        // On PostgreSQL, the server's database too (as its operator would).
        let database = self.database_url();
        if let Some(url) = &database {
            args.extend(["--database", url]);
        }
        let o = self.cli(&args, "");
        assert!(
            o.status.success(),
            "recover: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let password = v["password"].as_str().unwrap().to_string();
        let secret = rbac::totp::decode(v["totp_secret"].as_str().unwrap()).unwrap();
        self.sign_in(name, &password, &secret)
    }

    /// Signs in through `parapet admin login --print-token`.
    pub(crate) fn sign_in(&self, name: &str, password: &str, secret: &[u8]) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        // A code is accepted once: sign-ins within one 30 s step use the next step's code.
        let step = now / rbac::totp::STEP;
        let last = self.dir.join(format!("totp-step-{name}"));
        let used: u64 = std::fs::read_to_string(&last)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let step = step.max(used + 1);
        std::fs::write(&last, step.to_string()).unwrap();
        let code = rbac::totp::code(secret, step * rbac::totp::STEP);
        let server = format!("--server=http://127.0.0.1:{}", self.admin);
        let o = self.cli(
            &[
                "admin",
                &server,
                "login",
                "--name",
                name,
                "--password-stdin",
                "--code",
                &code,
                "--print-token",
            ],
            password,
        );
        assert!(
            o.status.success(),
            "login: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// `parapet admin ARGS` against this server with the root session.
    pub(crate) fn admin(&self, args: &[&str], stdin: &str) -> Output {
        self.admin_as(&self.token, args, stdin)
    }

    /// `parapet admin ARGS` with the given token.
    pub(crate) fn admin_as(&self, token: &str, args: &[&str], stdin: &str) -> Output {
        let mut c = self
            .command(env!("CARGO_BIN_EXE_parapet"))
            .arg("admin")
            .arg(format!("--server=http://127.0.0.1:{}", self.admin))
            .args(args)
            .env("PARAPET_ADMIN_TOKEN", token)
            .env("PARAPET_ADMIN_SESSION", self.dir.join("session"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        c.wait_with_output().unwrap()
    }

    /// The `database` setting of the configuration file, if any.
    pub(crate) fn database_url(&self) -> Option<String> {
        self.extra_config.lines().find_map(|l| {
            let v = l.trim().strip_prefix("database")?.trim_start();
            Some(v.strip_prefix('=')?.trim().trim_matches('"').to_string())
        })
    }

    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub(crate) fn start(&mut self) {
        // A port found free can be taken by a parallel test before the server
        // binds it: if the server exits at start, try again on fresh ports.
        for attempt in 0..3 {
            if attempt > 0 {
                self.udp = free_port();
                self.tls = free_port();
                self.admin = free_port();
                self.web = free_port();
                self.relay = free_port();
            }
            self.spawn();
            if self.wait_ready() {
                return;
            }
            self.kill9();
        }
        panic!("server did not start; log:\n{}", self.log());
    }

    pub(crate) fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .unwrap();
        if self.readme_mode {
            let mut c = self.command(env!("CARGO_BIN_EXE_parapet"));
            c.args(["serve", "--data-dir"])
                .arg(self.data_dir())
                .args(["--domain", DOMAIN]);
            if !self.extra_config.is_empty() {
                let cfg = self.dir.join("parapet.toml");
                std::fs::write(&cfg, &self.extra_config).unwrap();
                c.arg("--config").arg(cfg);
            }
            let child = c
                .envs(self.env.iter().cloned())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap();
            self.child = Some(child);
            return;
        }
        let cfg = self.dir.join("parapet.toml");
        // SIPp 3.6 knows only MD5 digest and reads only the first challenge,
        // and Debian's has no TLS: MD5 alone, over UDP too (unless the test
        // sets its own digest settings); timer C is short so that a test can
        // see it fire.
        let digest = if self.extra_config.contains("digest_") {
            ""
        } else {
            "digest_algorithms = [\"MD5\"]\ndigest_md5_unencrypted = true\n"
        };
        // The media relay on this test's own ports and address (unless
        // the test sets it up itself).
        let relay = format!(
            "[relay]\nlisten = [\"udp://{h}:{p}\", \"tcp://{h}:{p}\"]\naddress = \"{h}\"\n",
            h = self.host,
            p = self.relay
        );
        let (extra, relay) = if self.extra_config.contains("[relay]\nlisten") {
            (self.extra_config.clone(), String::new())
        } else if self.extra_config.contains("[relay]\n") {
            (
                self.extra_config.replace("[relay]\n", &relay),
                String::new(),
            )
        } else {
            (self.extra_config.clone(), relay)
        };
        std::fs::write(
            &cfg,
            format!("{digest}{extra}\n[proxy]\ntimer_c_secs = 3\n[im]\nmax_bytes = 2000\n{relay}"),
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_parapet"))
            .args(["serve", "--config"])
            .arg(&cfg)
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--domain", &self.domain, "--allow-insecure-transports"])
            .arg(format!("--listen=udp://{}:{}", self.host, self.udp))
            .arg(format!("--listen=tcp://{}:{}", self.host, self.udp))
            .arg(format!("--listen=tls://{}:{}", self.host, self.tls))
            .arg(format!("--admin-listen=127.0.0.1:{}", self.admin))
            .arg(format!("--web-listen={}:{}", self.host, self.web))
            .envs(self.env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// Waits until the server answers OPTIONS over UDP (or, without UDP,
    /// its health check); `false` if it exited.
    pub(crate) fn wait_ready(&mut self) -> bool {
        if self.udp == 0 {
            let deadline = Instant::now() + Duration::from_secs(90);
            while Instant::now() < deadline {
                if let Some(c) = self.child.as_mut() {
                    if c.try_wait().ok().flatten().is_some() {
                        return false;
                    }
                }
                if (self.netns.is_some() || TcpStream::connect(("127.0.0.1", self.admin)).is_ok())
                    && self.http_get("/healthz", None).0.contains(" 200")
                {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            return false;
        }
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
            let ping = options(&sock, "ready").replace(DOMAIN, &self.domain);
            let _ = sock.send_to(ping.as_bytes(), (self.host.as_str(), self.udp));
            if let Ok((n, _)) = sock.recv_from(&mut buf) {
                if buf[..n].starts_with(b"SIP/2.0 200") {
                    return true;
                }
            }
        }
        false
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    pub(crate) fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap(); // SIGKILL
            c.wait().unwrap();
        }
    }

    pub(crate) fn cli(&self, args: &[&str], stdin: &str) -> Output {
        let mut c = self
            .command(env!("CARGO_BIN_EXE_parapet"))
            .args(args)
            .env_remove("PARAPET_ADMIN_TOKEN")
            .env("PARAPET_ADMIN_SESSION", self.dir.join("session"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        c.wait_with_output().unwrap()
    }

    /// [`Server::http`] inside the server's network namespace, by curl.
    fn curl(&self, method: &str, path: &str, token: Option<&str>, body: &str) -> (String, String) {
        let mut c = self.command("curl");
        c.args([
            "-sS",
            "-i",
            "-X",
            method,
            "-H",
            "Content-Type: application/json",
        ]);
        if let Some(t) = token {
            c.args(["-H", &format!("Authorization: Bearer {t}")]);
        }
        if !body.is_empty() {
            c.args(["--data-binary", body]);
        }
        let o = c
            .arg(format!("http://127.0.0.1:{}{path}", self.admin))
            .output()
            .unwrap();
        let resp = String::from_utf8_lossy(&o.stdout).replace("\r\n", "\n");
        let (head, body) = resp.split_once("\n\n").unwrap_or((&resp, ""));
        (
            head.lines().next().unwrap_or("").to_string(),
            body.to_string(),
        )
    }

    /// `parapet security check` against this server as root: its exit
    /// status and what it printed.
    pub(crate) fn security_check(&self) -> (Option<i32>, String) {
        let o = self
            .command(env!("CARGO_BIN_EXE_parapet"))
            .arg("security")
            .arg(format!("--server=http://127.0.0.1:{}", self.admin))
            .arg("check")
            .env("PARAPET_ADMIN_TOKEN", &self.token)
            .output()
            .unwrap();
        (
            o.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    }

    /// A plain HTTP GET on the admin listener; returns (status line, body).
    pub(crate) fn http_get(&self, path: &str, token: Option<&str>) -> (String, String) {
        self.http("GET", path, token, "")
    }

    /// A plain HTTP request on the admin listener; returns (status line, body).
    pub(crate) fn http(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> (String, String) {
        if self.netns.is_some() {
            return self.curl(method, path, token, body);
        }
        let mut c = TcpStream::connect(("127.0.0.1", self.admin)).unwrap();
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            c,
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
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

    /// A TLS session to `port` on 127.0.0.1, trusting the CA made on first
    /// start and checking the certificate names the domain.
    pub(crate) fn tls_to(
        &self,
        port: u16,
    ) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        let ca = self.data_dir().join("pki/ca.pem");
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
        let name = rustls_pki_types::ServerName::try_from(self.domain.clone()).unwrap();
        let conn = rustls::ClientConnection::new(std::sync::Arc::new(cfg), name).unwrap();
        let tcp = TcpStream::connect((self.host.as_str(), port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        rustls::StreamOwned::new(conn, tcp)
    }

    /// An HTTPS request on the user listener, as a client that trusts the
    /// server's CA; returns (status code, headers, body).
    pub(crate) fn https(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> (u16, String, String) {
        let mut c = self.tls_to(self.web);
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            c,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.domain,
            body.len()
        )
        .unwrap();
        let mut resp = Vec::new();
        // The server closes without close_notify only on error; either way
        // what was read is the answer.
        let _ = c.read_to_end(&mut resp);
        let resp = String::from_utf8_lossy(&resp).to_string();
        let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
        let code = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (code, head.to_string(), body.to_string())
    }

    /// Adds a user through the admin API; it is in effect when this returns
    /// (the API hands the core the new user table before answering).
    pub(crate) fn add_user(&self, user: &str, password: &str) {
        let o = self.admin(
            &[
                "user",
                "add",
                &format!("sip:{user}@{}", self.domain),
                "--password-stdin",
            ],
            password,
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }

    /// Puts `a` and `b` in each other's contact list (privacy mode, on by
    /// default, shows presence to contacts only).
    pub(crate) fn add_each_other(&self, a: &str, b: &str) {
        for (owner, contact) in [(a, b), (b, a)] {
            let o = self.admin(
                &[
                    "contacts",
                    "add",
                    &format!("sip:{owner}@{}", self.domain),
                    &format!("sip:{contact}@{}", self.domain),
                ],
                "",
            );
            assert!(o.status.success(), "{}", out(&o));
        }
    }

    /// Runs a SIPp scenario as `user` from `local_ip:local_port`; returns
    /// whether it passed, and SIPp's messages for diagnosis.
    pub(crate) fn sipp(
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
    pub(crate) fn sipp_start(
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
        let mut line = self.domain.clone();
        for f in fields {
            line.push(';');
            line.push_str(f);
        }
        std::fs::write(&csv, format!("SEQUENTIAL\n{line}\n")).unwrap();
        let msgs = self.dir.join(format!("{name}-{local_port}.msg"));
        let mut cmd = Command::new("sipp");
        if name.starts_with("message_")
            || name.starts_with("call_uac")
            || name.starts_with("presence_")
        {
            // The digest uri must be the Request-URI; SIPp defaults to ip:port.
            // Across federation the Request-URI is in the partner's domain
            // (the scenario's [field2]).
            let target = if name.ends_with("_federated.xml") {
                fields.get(1).copied().unwrap_or(&self.domain)
            } else {
                &self.domain
            };
            cmd.args(["-auth_uri", &format!("{service}@{target}")]); // SIPp adds "sip:"
        }
        // The terminating NOTIFY of an unsubscribe across two federated
        // hops is answered by SIPp itself (see the scenario).
        if name == "presence_watch_change_federated.xml" {
            cmd.arg("-aa");
        }
        // A watcher waiting for a person's action (the self-service page,
        // driven by a browser that a loaded machine starts slowly) gets
        // longer than a scenario that only waits for the server.
        let timeout = if name.starts_with("presence_watch_change") {
            "90s"
        } else {
            "20s"
        };
        let child = cmd
            .arg("-sf")
            .arg(scenario(name))
            .arg("-inf")
            .arg(&csv)
            .args([
                "-s", service, "-au", auth_user, "-ap", password, "-m", "1", "-l", "1", "-t", "u1",
                "-nostdin", "-timeout", timeout,
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
            .arg(format!("{}:{}", self.host, self.udp))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sipp is installed (scripts/test.sh installs Debian's sip-tester)");
        SippRun { child, msgs }
    }
}

/// A SIPp scenario running in the background.
pub(crate) struct SippRun {
    pub(crate) child: Child,
    pub(crate) msgs: PathBuf,
}

impl SippRun {
    pub(crate) fn finish(mut self) -> (bool, String) {
        let ok = self.child.wait().map(|s| s.success()).unwrap_or(false);
        (ok, std::fs::read_to_string(&self.msgs).unwrap_or_default())
    }
}

impl Drop for Server {
    /// Stops the server and removes its directory — unless the test is
    /// failing, when the directory (log, data, SIPp logs) is left for the
    /// reader. Left behind on success, a full run filled the disk of the
    /// machine CI runs on.
    fn drop(&mut self) {
        self.kill9();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

pub(crate) fn options(sock: &UdpSocket, call_id: &str) -> String {
    let port = sock.local_addr().unwrap().port();
    format!(
        "OPTIONS sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{call_id}{}\r\nMax-Forwards: 70\r\n\
         From: <sip:probe@{DOMAIN}>;tag=p\r\nTo: <sip:{DOMAIN}>\r\nCall-ID: {call_id}-{}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    )
}

/// Registers `user` from a fresh port (SIPp exits after the 200), then runs
/// `scenario` as a UAS on that port.
pub(crate) fn register_then(s: &Server, user: &str, password: &str, scenario: &str) -> SippRun {
    register_then_with(s, user, password, scenario, &[])
}

/// Alice (with `password`) calls bob from a fresh port by `scenario`,
/// given `fields`.
pub(crate) fn alice_calls_bob(
    s: &Server,
    scenario: &str,
    password: &str,
    fields: &[&str],
) -> SippRun {
    s.sipp_start(
        scenario,
        "bob",
        "alice",
        password,
        "127.0.0.1",
        free_port(),
        fields,
    )
}

/// [`register_then`], the scenario given `fields` (`[field0]`...).
pub(crate) fn register_then_with(
    s: &Server,
    user: &str,
    password: &str,
    scenario: &str,
    fields: &[&str],
) -> SippRun {
    let port = free_port();
    passes!(
        s,
        s.sipp("register_auth.xml", user, password, "127.0.0.1", port, &[])
    );
    s.sipp_start(scenario, user, user, password, "127.0.0.1", port, fields)
}

pub(crate) fn register_and_listen(s: &Server, user: &str, password: &str) -> SippRun {
    register_then(s, user, password, "receive_message.xml")
}

/// stdout and stderr of a finished command, for assertions.
pub(crate) fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// An API token with `role`, made by root.
pub(crate) fn token_for(s: &Server, role: &str) -> String {
    let o = s.admin(
        &[
            "--output=json",
            "token",
            "create",
            &format!("t-{role}"),
            "--expires-in-days",
            "1",
            "--role",
            role,
        ],
        "",
    );
    assert!(o.status.success(), "{}", out(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["token"].as_str().unwrap().to_string()
}
