//! The Edge role on one machine: a front end on 127.0.0.2, an edge whose
//! external side is 127.0.0.10 and internal side 127.0.0.11, paired with
//! the documented command; remote baresip users on 127.0.0.20 reach the
//! pool only through the edge, internal ones (127.0.0.3) directly.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::baresip::{wait_count, Baresip, READY};
use crate::harness::*;

pub(crate) const EXTERNAL: &str = "127.0.0.10";
const INTERNAL: &str = "127.0.0.11";
pub(crate) const REMOTE: &str = "127.0.0.20";
const FRONT_END: &str = "127.0.0.2";
const INSIDE_CLIENT: &str = "127.0.0.3";

/// A running `parapet edge`.
pub(crate) struct Edge {
    child: Option<Child>,
    log: PathBuf,
    pub(crate) pairing: PathBuf,
    pub(crate) external: &'static str,
    pub(crate) internal: &'static str,
    /// The edge's configuration file, if any (e.g. `[federation]`).
    config: Option<PathBuf>,
    pub(crate) external_port: u16,
    pub(crate) wss_port: u16,
    pub(crate) metrics_port: u16,
    /// The media relay's UDP and TCP port on the external address (`None`:
    /// its defaults, 3478 and 5349).
    pub(crate) relay_port: Option<u16>,
    /// The network namespace it runs in (a laboratory's).
    pub(crate) netns: Option<String>,
    /// Started as the README says (only `--pairing` and the TLS listener:
    /// no WSS, health and metrics on their default port).
    as_readme: bool,
}

impl Edge {
    /// Pairs an edge with `fe` (`parapet admin edge pair`) and starts it.
    pub(crate) fn pair_and_start(fe: &Server, name: &str) -> Edge {
        Edge::pair_and_start_at(fe, name, EXTERNAL, INTERNAL)
    }

    /// The same, on other addresses (a second edge of the pool).
    pub(crate) fn pair_and_start_at(
        fe: &Server,
        name: &str,
        external: &'static str,
        internal: &'static str,
    ) -> Edge {
        Edge::pair_and_start_with(fe, name, external, internal, "")
    }

    /// The same, with a configuration file holding `toml`.
    pub(crate) fn pair_and_start_with(
        fe: &Server,
        name: &str,
        external: &'static str,
        internal: &'static str,
        toml: &str,
    ) -> Edge {
        Edge::pair_and_start_on(fe, name, external, internal, free_port(), toml)
    }

    /// The same, its TLS listener on `external_port` (known in advance to
    /// a partner's edge that routes to it).
    pub(crate) fn pair_and_start_on(
        fe: &Server,
        name: &str,
        external: &'static str,
        internal: &'static str,
        external_port: u16,
        toml: &str,
    ) -> Edge {
        let config = (!toml.is_empty()).then(|| {
            let p = fe.dir.join(format!("{name}.toml"));
            std::fs::write(&p, toml).unwrap();
            p
        });
        let pairing = fe.dir.join(format!("{name}.pairing.json"));
        // A port found free may be taken by a parallel test (or another
        // edge's connection from the same internal address) before the edge
        // binds it: then pair again on fresh ports (the external one stays:
        // a partner's route names it).
        for _ in 0..3 {
            let _ = std::fs::remove_file(&pairing);
            let o = fe.admin(
                &[
                    "edge",
                    "pair",
                    name,
                    "--internal",
                    &format!("{internal}:{}", free_port()),
                    "--external",
                    external,
                    "--out",
                    pairing.to_str().unwrap(),
                ],
                "",
            );
            assert!(o.status.success(), "{}", out(&o));
            let log = fe.dir.join(format!("{name}.log"));
            let _ = std::fs::remove_file(&log);
            let mut e = Edge {
                child: None,
                log,
                pairing: pairing.clone(),
                external,
                internal,
                config: config.clone(),
                external_port,
                wss_port: free_port(),
                metrics_port: free_port(),
                relay_port: Some(free_port()),
                netns: None,
                as_readme: false,
            };
            e.start();
            if !e.port_taken() {
                return e;
            }
            e.kill9();
        }
        panic!("the edge could not bind free ports three times");
    }

    /// Pairs an edge with `fe` (`parapet admin edge pair NAME --internal
    /// INTERNAL:PORT --external EXTERNAL` and `more`), not started; with
    /// `as_readme`, started as the README says (see [`Edge::as_readme`]).
    fn paired(fe: &Server, name: &str, more: &[&str], as_readme: bool) -> Edge {
        Edge::paired_on(fe, name, EXTERNAL, more, as_readme)
    }

    /// [`Edge::paired`], its external side on `external`.
    pub(crate) fn paired_on(
        fe: &Server,
        name: &str,
        external: &'static str,
        more: &[&str],
        as_readme: bool,
    ) -> Edge {
        let pairing = fe.dir.join(format!("{name}.json"));
        let internal = format!("{INTERNAL}:{}", free_port());
        let mut args = vec![
            "edge",
            "pair",
            name,
            "--internal",
            &internal,
            "--external",
            external,
            "--out",
            pairing.to_str().unwrap(),
        ];
        args.extend_from_slice(more);
        let o = fe.admin(&args, "");
        assert!(o.status.success(), "{}", out(&o));
        Edge {
            child: None,
            log: fe.dir.join(format!("{name}.log")),
            pairing,
            external,
            internal: INTERNAL,
            config: None,
            external_port: free_port(),
            wss_port: free_port(),
            metrics_port: if as_readme { 9061 } else { free_port() },
            relay_port: Some(free_port()),
            netns: None,
            as_readme,
        }
    }

    pub(crate) fn start(&mut self) {
        let before = self.log();
        let linked_before = before.matches("linked to the pool").count();
        let taken_before = before.matches("Address already in use").count();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_parapet")]);
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_parapet")),
        };
        // A working directory of its own: what the edge writes, if
        // anything, lands there.
        std::fs::create_dir_all(self.workdir()).unwrap();
        cmd.current_dir(self.workdir()).env("HOME", self.workdir());
        cmd.args(["edge", "--pairing"]).arg(&self.pairing);
        if let Some(c) = &self.config {
            cmd.arg("--config").arg(c);
        }
        cmd.arg(format!(
            "--listen=tls://{}:{}",
            self.external, self.external_port
        ));
        // Its relay's ports moved off the defaults as well, unless asked
        // (a front end on this one machine, or a parallel test's edge, may
        // hold them).
        if let Some(p) = self.relay_port {
            cmd.arg(format!("--relay-listen=udp://{}:{p}", self.external))
                .arg(format!("--relay-listen=tcp://{}:{p}", self.external));
        }
        if !self.as_readme {
            cmd.arg(format!(
                "--listen=wss://{}:{}",
                self.external, self.wss_port
            ))
            .arg(format!(
                "--metrics-listen={}:{}",
                self.internal, self.metrics_port
            ));
        }
        let child = cmd.stdout(Stdio::null()).stderr(log).spawn().unwrap();
        self.child = Some(child);
        // Linked (again, after a restart), or gone because a port it was
        // to bind was taken.
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.log().matches("linked to the pool").count() <= linked_before {
            // (Only this start's: the log is appended to across restarts.)
            if self.log().matches("Address already in use").count() > taken_before {
                // A first start tries other ports (see `pair_and_start_at`);
                // a restart must have its own back, which routes name.
                assert!(
                    linked_before == 0,
                    "the restarted edge could not bind its ports again:\n{}",
                    self.log()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the edge never linked:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the edge exited because a port it was to bind was taken
    /// (by a parallel test) before it bound it.
    fn port_taken(&mut self) -> bool {
        if !self.log().contains("Address already in use") {
            return false;
        }
        // It says so, then exits.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self
                .child
                .as_mut()
                .is_some_and(|c| c.try_wait().ok().flatten().is_some())
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        true
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The edge's working directory (and HOME).
    fn workdir(&self) -> PathBuf {
        self.log.with_extension("cwd")
    }

    /// The files the running edge has open.
    fn open_files(&self) -> Vec<PathBuf> {
        let pid = self.child.as_ref().expect("the edge runs").id();
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .collect()
    }

    /// Rewrites the edge's configuration file (read at its next start).
    pub(crate) fn edit_config(&self, f: impl FnOnce(String) -> String) {
        let path = self
            .config
            .as_ref()
            .expect("the edge has a configuration file");
        let toml = std::fs::read_to_string(path).unwrap();
        std::fs::write(path, f(toml)).unwrap();
    }

    /// Waits until the log shows `text` `n` times.
    pub(crate) fn wait_log(&self, text: &str, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.log().matches(text).count() < n {
            assert!(
                Instant::now() < deadline,
                "the edge never logged {text:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `GET path` on the edge's health and metrics listener (internal side):
    /// (status line, body).
    pub(crate) fn get(&self, path: &str) -> (String, String) {
        use std::io::{Read, Write};
        if let Some(ns) = &self.netns {
            let o = Command::new("ip")
                .args(["netns", "exec", ns, "curl", "-s", "-i"])
                .arg(format!(
                    "http://{}:{}{path}",
                    self.internal, self.metrics_port
                ))
                .output()
                .unwrap();
            let resp = String::from_utf8_lossy(&o.stdout).into_owned();
            let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
            return (
                head.lines().next().unwrap_or("").to_owned(),
                body.to_owned(),
            );
        }
        let mut c = std::net::TcpStream::connect((self.internal, self.metrics_port)).unwrap();
        write!(
            c,
            "GET {path} HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut resp = String::new();
        let _ = c.read_to_string(&mut resp);
        let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
        (
            head.lines().next().unwrap_or("").to_owned(),
            body.to_owned(),
        )
    }

    /// The outbound proxy remote clients use.
    pub(crate) fn outbound(&self) -> String {
        format!("{}:{}", self.external, self.external_port)
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Whether `line` names the address `ip` (not merely a longer one that
/// starts like it: 127.0.0.2 is not in 127.0.0.20).
pub(crate) fn mentions(line: &str, ip: &str) -> bool {
    line.match_indices(ip)
        .any(|(i, _)| !line[i + ip.len()..].starts_with(|c: char| c.is_ascii_digit()))
}

/// The lines of the SIP messages in a baresip trace (`-s`): each message
/// follows a `TLS a -> b` line and ends at the colour reset; SDP lines
/// (media, the relay's business) are left out.
pub(crate) fn sip_lines(trace: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for l in trace.lines() {
        if l.starts_with("TLS ") && l.contains(" -> ") {
            inside = true;
            continue;
        }
        if l.contains("[;m") {
            inside = false;
        }
        let sdp = l.len() > 1 && l.as_bytes()[1] == b'=' && l.as_bytes()[0].is_ascii_lowercase();
        if inside && !sdp && !l.trim().is_empty() {
            out.push(l.to_owned());
        }
    }
    out
}

#[test]
fn a_remote_user_signs_in_messages_and_calls_through_the_edge_and_sees_nothing_inside() {
    // Remote access is off by default: granted to alice (a named policy),
    // not to carol.
    let (s, edge) = pool("edge-pool");
    s.add_user("carol", "staple-battery-horse");
    // The pairing file holds keys: owner-only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&edge.pairing)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "pairing file mode {mode:o}");
    // The front end does not answer on the edge's addresses at all.
    assert!(std::net::TcpStream::connect((EXTERNAL, s.tls)).is_err());

    let front_end = format!("{FRONT_END}:{}", s.tls);
    let mut bob = Baresip::start_through(
        &s,
        "bob",
        "battery-staple-horse",
        "alice",
        INSIDE_CLIENT,
        &front_end,
    );
    bob.cmd("/answermode auto");
    let mut alice = Baresip::start_through(
        &s,
        "alice",
        "correct-horse-battery",
        "bob",
        REMOTE,
        &edge.outbound(),
    );
    // Messages both ways: bob's reaches alice through the edge by the Path
    // her registration recorded.
    alice.cmd("/message hello-from-outside");
    bob.wait_for("sip:alice@example.test: \"hello-from-outside\"");
    bob.cmd("/message hello-from-inside");
    alice.wait_for("sip:bob@example.test: \"hello-from-inside\"");
    // Alice calls bob; media flows; alice hangs up through the edge.
    alice.cmd("/dial sip:bob@example.test");
    bob.wait_for("Call established: sip:alice@example.test");
    alice.wait_for("Call established: sip:bob@example.test");
    bob.wait_for("incoming rtp for 'audio' established");
    alice.cmd("/hangup");
    bob.wait_for("BYE sip:bob");
    bob.wait_for("session closed");
    // Bob calls alice back (through the edge, by her Path) and hangs up.
    bob.cmd("/dial sip:alice@example.test");
    alice.wait_for("sip:bob@example.test - (press 'a' to accept)");
    alice.cmd("/accept");
    wait_count(&alice, "Call established: sip:bob@example.test", 2);
    wait_count(&bob, "Call established: sip:alice@example.test", 2);
    let ended = alice.output().matches("session closed").count();
    bob.cmd("/hangup");
    alice.wait_for("BYE sip:alice");
    wait_count(&alice, "session closed", ended + 1);

    // Nothing of the inside reached alice: no address of the front end, of
    // the edge's internal side or of bob's device, not bob's Contact, and
    // no trust header, in any SIP message she received or sent.
    let lines = sip_lines(&alice.output());
    assert!(lines.len() > 100, "the trace was read: {}", lines.len());
    let leaks: Vec<&String> = lines
        .iter()
        .filter(|l| {
            mentions(l, FRONT_END)
                || mentions(l, INTERNAL)
                || mentions(l, INSIDE_CLIENT)
                || l.contains("bob-0x")
                || l.to_ascii_lowercase().starts_with("p-parapet-edge")
        })
        .collect();
    assert!(
        leaks.is_empty(),
        "inside topology leaked to the outside: {leaks:#?}"
    );
    // A route token the edge gave alice, changed in one character, is
    // refused.
    let token_route = lines
        .iter()
        .find_map(|l| {
            l.strip_prefix("Record-Route: ")
                .filter(|v| v.starts_with("<sip:r"))
        })
        .expect("alice received the edge's Record-Route")
        .to_owned();
    let at = token_route.find('@').unwrap();
    let mut flipped = token_route.clone().into_bytes();
    let i = at / 2;
    flipped[i] = if flipped[i] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let mut conn = tls_from(&s, "127.0.0.26", &edge);
    let r = crate::defaults::exchange(
        &mut conn,
        &format!(
            "BYE sip:bob@example.test SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.26:5061;branch=z9hG4bKflip\r\n\
             Route: {flipped}\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.test>;tag=a\r\n\
             To: <sip:bob@example.test>;tag=b\r\nCall-ID: flip-test\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n"
        ),
    );
    assert!(
        r.starts_with("SIP/2.0 403 Forbidden (Invalid Route Token)"),
        "{r}"
    );

    // A user without remote access is refused at the front end (403),
    // whatever her password.
    let carol = Baresip::through_until(
        &s,
        "carol",
        "staple-battery-horse",
        "bob",
        REMOTE,
        &edge.outbound(),
        "403 Forbidden (Remote Access Not Allowed)",
    );
    assert!(
        !carol.output().contains(READY),
        "carol signed in without remote access"
    );
    assert!(s
        .log()
        .contains("remote access through the edge is not allowed"));
    alice.cmd("/quit");
    bob.cmd("/quit");
}

/// A front end on 127.0.0.2 with alice (remote access granted), bob and an
/// edge paired and running.
pub(crate) fn pool(name: &str) -> (Server, Edge) {
    pool_with(name, "")
}

/// [`pool`], the front end's configuration file also holding `extra`.
fn pool_with(name: &str, extra: &str) -> (Server, Edge) {
    let s = Server::org_at(name, "example.test", FRONT_END, extra);
    s.add_user("alice", "correct-horse-battery");
    s.add_user("bob", "battery-staple-horse");
    allow_remote(&s, "alice");
    let edge = Edge::pair_and_start(&s, &format!("{name}-e"));
    (s, edge)
}

/// The pool's named policy `remote` (remote access) made, and granted
/// to `user`.
fn allow_remote(s: &Server, user: &str) {
    let o = s.admin(
        &[
            "policy",
            "set",
            "external_access",
            "named:remote",
            "remote_access=true",
        ],
        "",
    );
    assert!(o.status.success(), "{}", out(&o));
    grant_remote(s, user);
}

/// Remote access for `user` too (the pool's named policy `remote`).
pub(crate) fn grant_remote(s: &Server, user: &str) {
    let who = format!("user:sip:{user}@example.test");
    let o = s.admin(&["grant", "add", "external_access", "remote", &who], "");
    assert!(o.status.success(), "{}", out(&o));
}

/// A TLS connection to the edge's external side as `partner`'s server
/// (its certificate presented), trusting `pool`'s CA.
fn as_partner(
    pool: &Server,
    partner: &Server,
    edge: &Edge,
) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    use rustls_pki_types::pem::PemObject;
    let pki = partner.data_dir().join("pki");
    let chain = rustls_pki_types::CertificateDer::pem_file_iter(pki.join("server.pem"))
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(pki.join("server-key.pem")).unwrap();
    with_certificate(pool, edge, chain, key)
}

/// A TLS connection to the edge's external side presenting `pem` (a
/// device's certificate, then its key).
fn as_device(
    pool: &Server,
    edge: &Edge,
    pem: &str,
) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    use rustls_pki_types::pem::PemObject;
    let chain = rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.unwrap())
        .collect();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap();
    with_certificate(pool, edge, chain, key)
}

fn with_certificate(
    pool: &Server,
    edge: &Edge,
    chain: Vec<rustls_pki_types::CertificateDer<'static>>,
    key: rustls_pki_types::PrivateKeyDer<'static>,
) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in
        rustls_pki_types::CertificateDer::pem_file_iter(pool.data_dir().join("pki/ca.pem")).unwrap()
    {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .unwrap();
    let name = rustls_pki_types::ServerName::IpAddress(
        EXTERNAL.parse::<std::net::IpAddr>().unwrap().into(),
    );
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(cfg), name).unwrap();
    let tcp = std::net::TcpStream::connect((EXTERNAL, edge.external_port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

/// A TLS connection to the edge's external side from `local` (a loopback
/// address of the test's choosing), trusting the pool's CA.
fn tls_from(
    s: &Server,
    local: &str,
    edge: &Edge,
) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    tls_to_port(s, local, edge.external_port)
}

/// [`tls_from`] to another port of the edge's external address.
fn tls_to_port(
    s: &Server,
    local: &str,
    port: u16,
) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
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
    let name = rustls_pki_types::ServerName::IpAddress(
        EXTERNAL.parse::<std::net::IpAddr>().unwrap().into(),
    );
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(cfg), name).unwrap();
    // std cannot bind before connecting; tokio's socket can.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let local: std::net::IpAddr = local.parse().unwrap();
    let remote: std::net::SocketAddr = format!("{EXTERNAL}:{port}").parse().unwrap();
    let tcp = rt
        .block_on(async {
            let sock = tokio::net::TcpSocket::new_v4()?;
            sock.bind((local, 0).into())?;
            sock.connect(remote).await
        })
        .unwrap()
        .into_std()
        .unwrap();
    tcp.set_nonblocking(false).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

#[test]
fn a_device_certificate_signs_a_remote_user_in_through_the_edge_until_revoked() {
    use crate::defaults::{exchange, register};
    use std::io::Read;
    let (s, edge) = pool("edge-device");
    crate::devices::certificates_only(&s);
    let token = crate::user_api::sign_in(&s, "alice", "correct-horse-battery");
    let (_, pem) = crate::devices::enroll_ok(&s, &token, "Alice's laptop");
    let local = format!("{EXTERNAL}:5061");
    // Her device's certificate, presented to the edge, signs her in: no
    // challenge, though passwords are refused.
    let mut c = as_device(&s, &edge, &pem);
    let r = exchange(&mut c, &register("TLS", &local, 1, None, "d", None));
    assert!(r.starts_with("SIP/2.0 200 OK"), "{r}\n{}", s.log());
    // A certificate the pool never issued signs nobody in.
    let stranger = {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.subject_alt_names = vec![rcgen::SanType::URI(
            "sip:alice@example.test".try_into().unwrap(),
        )];
        format!(
            "{}{}",
            p.self_signed(&key).unwrap().pem(),
            key.serialize_pem()
        )
    };
    let mut other = as_device(&s, &edge, &stranger);
    let r = exchange(&mut other, &register("TLS", &local, 1, None, "x", None));
    assert!(
        r.starts_with("SIP/2.0 403 Forbidden (Device Certificate Required)"),
        "{r}"
    );
    // Revoked: the edge closes her connection within a few seconds (it
    // hears of it in the pool's next snapshot), and the certificate no
    // longer signs her in.
    let o = s.admin(&["user", "revoke-devices", "sip:alice@example.test"], "");
    assert!(o.status.success(), "{}", out(&o));
    let started = Instant::now();
    let mut buf = [0u8; 64];
    assert!(
        !matches!(c.read(&mut buf), Ok(n) if n > 0),
        "her connection through the edge stayed open"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed by the read timeout, not by the edge\n{}",
        edge.log()
    );
    let mut again = as_device(&s, &edge, &pem);
    let r = exchange(&mut again, &register("TLS", &local, 2, None, "d", None));
    assert!(
        r.starts_with("SIP/2.0 403 Forbidden (Device Certificate Required)"),
        "{r}"
    );
}

#[test]
fn password_guessing_through_the_edge_ends_at_the_edge_and_the_user_still_signs_in() {
    use crate::defaults::{answer, challenges, exchange, register};
    let (s, edge) = pool("edge-filter");
    let attacker = "127.0.0.21";
    let mut conn = tls_from(&s, attacker, &edge);
    let local = format!("{attacker}:5061");
    let mut nonce = String::new();
    // The guesser also claims, in the edge's own trust header, to be
    // somewhere else: the edge replaces it.
    let spoofed = |req: String| {
        req.replace(
            "Max-Forwards: 70\r\n",
            "Max-Forwards: 70\r\nP-Parapet-Edge: remote;source=\"127.0.0.99:5060\"\r\n",
        )
    };
    // Five wrong passwords (the lockout threshold): each reaches the front
    // end, which challenges again.
    for n in 1..=5u32 {
        let r = exchange(
            &mut conn,
            &register("TLS", &local, n * 2, None, "guesser", None),
        );
        assert!(r.starts_with("SIP/2.0 401"), "{r}");
        nonce = challenges(&r)[0].1.clone();
        let a = answer(auth::digest::Algorithm::Md5, &nonce, "wrong-guess");
        let r = exchange(
            &mut conn,
            &spoofed(register(
                "TLS",
                &local,
                n * 2 + 1,
                None,
                "guesser",
                Some(&a),
            )),
        );
        assert!(r.starts_with("SIP/2.0 401"), "attempt {n}: {r}");
        assert!(
            r.contains("Server: Parapet"),
            "answered by the front end: {r}"
        );
    }
    // Further guesses end at the edge: refused there, not passed on.
    for n in 20..23u32 {
        let a = answer(auth::digest::Algorithm::Md5, &nonce, "another-guess");
        let r = exchange(
            &mut conn,
            &register("TLS", &local, n, None, "guesser", Some(&a)),
        );
        assert!(
            r.starts_with("SIP/2.0 403 Forbidden (Too Many Failed Sign-Ins)"),
            "{r}"
        );
        assert!(r.contains("Retry-After: "), "{r}");
        assert!(
            !r.contains("Server: Parapet"),
            "answered by the edge itself: {r}"
        );
    }
    edge.wait_log("sign-in refused at the edge", 1);
    // The fifth failure's lines on the front end and on the edge carry the
    // same correlation id (its transaction's), which no other line has.
    let corr_of = |log: &str, what: &str| -> String {
        let line = log
            .lines()
            .find(|l| l.contains(what))
            .unwrap_or_else(|| panic!("no {what:?} in:\n{log}"));
        let at = line
            .find("corr=")
            .unwrap_or_else(|| panic!("no correlation id: {line}"));
        let id: String = line[at + 5..].chars().take(16).collect();
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{line}");
        id
    };
    let corr = corr_of(&s.log(), "lockout: address refused for this account");
    assert_eq!(corr_of(&edge.log(), "lockout at the edge"), corr);
    assert_eq!(
        edge.log().matches(corr.as_str()).count(),
        1,
        "{}",
        edge.log()
    );
    // The front end locked out the guesser's real address, not the one it
    // claimed.
    let o = s.admin(&["--output=json", "lockout", "list"], "");
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .any(|r| r["source"] == attacker),
        "{rows}"
    );
    assert!(!rows.to_string().contains("127.0.0.99"), "{rows}");
    let (status, body) = edge.get("/metrics");
    assert!(status.contains("200"), "{status}");
    for line in [
        "parapet_edge_refused_total{reason=\"lockout\"} 3",
        "parapet_edge_sign_in_failures_total 5",
        "parapet_edge_lockouts_total 1",
        "parapet_edge_links 1",
    ] {
        assert!(body.contains(line), "{line} not in:\n{body}");
    }
    assert!(edge.get("/healthz").0.contains("200 OK"));
    // Health and metrics are not on the external side.
    assert!(std::net::TcpStream::connect((EXTERNAL, edge.metrics_port)).is_err());
    let (_, metrics) = s.http_get("/metrics", None);
    assert!(
        metrics.contains("parapet_auth_failures_total 5\n"),
        "the front end counted exactly the five that reached it:\n{metrics}"
    );
    // Alice herself, from her own address, is not locked out.
    let alice = Baresip::start_through(
        &s,
        "alice",
        "correct-horse-battery",
        "bob",
        REMOTE,
        &edge.outbound(),
    );
    drop(alice);
    // The administrator sees the edge linked, and in the security view.
    let o = s.admin(&["--output=json", "status"], "");
    let status: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(status["edges"][0]["name"], "edge-filter-e", "{status}");
    assert!(status["edges"][0]["links"].as_u64() >= Some(1), "{status}");
    let listening = format!("tls://{EXTERNAL}:{}", edge.external_port);
    assert!(
        status["edges"][0]["external_listeners"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == listening.as_str()),
        "{status}"
    );
    let o = s.admin(&["security", "show"], "");
    assert!(out(&o).contains("edge edge-filter-e"), "{}", out(&o));
    // Unpaired, the edge's link stands for nobody: what it relays is
    // refused.
    let o = s.admin(&["edge", "unpair", "edge-filter-e"], "");
    assert!(o.status.success(), "{}", out(&o));
    let mut conn = tls_from(&s, "127.0.0.22", &edge);
    let r = exchange(
        &mut conn,
        &register("TLS", "127.0.0.22:5061", 1, None, "late", None),
    );
    assert!(
        r.starts_with("SIP/2.0 403 Forbidden (Edge Not Paired)"),
        "{r}"
    );
}

#[test]
fn an_edge_restart_in_the_middle_of_a_call_loses_no_dialog() {
    let (s, mut edge) = pool("edge-restart");
    let mut bob = Baresip::start_through(
        &s,
        "bob",
        "battery-staple-horse",
        "alice",
        INSIDE_CLIENT,
        &format!("{FRONT_END}:{}", s.tls),
    );
    bob.cmd("/answermode auto");
    let mut alice = Baresip::start_through(
        &s,
        "alice",
        "correct-horse-battery",
        "bob",
        REMOTE,
        &edge.outbound(),
    );
    alice.cmd("/dial sip:bob@example.test");
    bob.wait_for("Call established: sip:alice@example.test");
    alice.wait_for("Call established: sip:bob@example.test");
    // The edge dies and comes back (same addresses, same pool key): it
    // kept no state about the call.
    edge.kill9();
    edge.start();
    // baresip prints nothing when its connection closes; a hang-up in the
    // same instant is lost inside baresip before any BYE is written (seen
    // here: no BYE in its trace at all). Give it a moment to notice.
    std::thread::sleep(Duration::from_secs(2));
    // Alice hangs up: her BYE goes to the edge on a new connection, with
    // the route set the old edge gave her, and reaches bob.
    alice.cmd("/hangup");
    bob.wait_for("BYE sip:bob");
    bob.wait_for("session closed");
    alice.cmd("/quit");
    bob.cmd("/quit");
}

#[test]
fn the_edge_enforces_the_pools_signed_snapshot_and_refuses_a_forged_one() {
    use crate::defaults::{answer, challenges, exchange, register};
    let (s, mut edge) = pool("edge-snapshot");
    edge.wait_log("configuration snapshot applied", 1);
    assert!(edge.get("/healthz").0.contains("200 OK"));
    // The pool tightens the lockout: the edge has it within seconds.
    let o = s.admin(
        &[
            "policy",
            "set",
            "authentication",
            "global",
            "lockout_threshold=3",
        ],
        "",
    );
    assert!(o.status.success(), "{}", out(&o));
    edge.wait_log("configuration snapshot applied", 2);
    // The pool's status shows which snapshot the edge holds (it says so
    // with every fetch).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let o = s.admin(&["--output=json", "status"], "");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        if v["edges"][0]["snapshot_version"].as_u64() >= Some(2) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the edge's snapshot never showed: {v}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let attacker = "127.0.0.23";
    let mut conn = tls_from(&s, attacker, &edge);
    let local = format!("{attacker}:5061");
    let mut nonce = String::new();
    for n in 1..=3u32 {
        let r = exchange(
            &mut conn,
            &register("TLS", &local, n * 2, None, "guesser", None),
        );
        nonce = challenges(&r)[0].1.clone();
        let a = answer(auth::digest::Algorithm::Md5, &nonce, "wrong-guess");
        let r = exchange(
            &mut conn,
            &register("TLS", &local, n * 2 + 1, None, "guesser", Some(&a)),
        );
        assert!(r.starts_with("SIP/2.0 401"), "attempt {n}: {r}");
    }
    let a = answer(auth::digest::Algorithm::Md5, &nonce, "fourth-guess");
    let r = exchange(
        &mut conn,
        &register("TLS", &local, 40, None, "guesser", Some(&a)),
    );
    assert!(
        r.starts_with("SIP/2.0 403 Forbidden (Too Many Failed Sign-Ins)")
            && !r.contains("Server: Parapet"),
        "the fourth guess ends at the edge under the pool's threshold of 3: {r}"
    );

    // An edge told the wrong key (as if snapshots were forged on the way)
    // refuses every snapshot and says it is not fit to serve.
    edge.kill9();
    let text = std::fs::read_to_string(&edge.pairing).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["snapshot_key"] = serde_json::json!("BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=");
    let forged = edge.pairing.with_extension("forged.json");
    std::fs::write(&forged, v.to_string()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&forged, std::fs::Permissions::from_mode(0o600)).unwrap();
    edge.pairing = forged;
    edge.start();
    edge.wait_log("configuration snapshot refused", 1);
    let (status, body) = edge.get("/healthz");
    assert!(status.contains("503"), "{status} {body}");
    assert!(body.contains("no configuration snapshot"), "{body}");
    let (_, metrics) = edge.get("/metrics");
    assert!(
        metrics.contains("parapet_edge_snapshot_version 0"),
        "{metrics}"
    );
}

#[test]
fn the_pools_per_source_limits_reach_its_edges_and_one_source_does_not_slow_another() {
    // The front end's [edges] section: two requests a second from one
    // address, a burst of three (the edge's own default is 100).
    let (s, edge) = pool_with(
        "edge-limits",
        "[edges]\nsource_rate = 2\nsource_burst = 3\nin_flight_per_connection = 64\n",
    );
    edge.wait_log("configuration snapshot applied", 1);
    let options = |n: u32, local: &str| {
        format!(
            "OPTIONS sip:example.test SIP/2.0\r\nVia: SIP/2.0/TLS {local}:5061;branch=z9hG4bKlim{n}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:probe@example.test>;tag=l{n}\r\nTo: <sip:example.test>\r\n\
             Call-ID: limits-{n}-{local}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
    };
    // One address sends ten at once: three pass (the burst), the rest are
    // refused by the edge itself (under its own default of 100 a second,
    // all ten would pass).
    let noisy = "127.0.0.24";
    let mut conn = tls_from(&s, noisy, &edge);
    let answers: Vec<String> = (0..10)
        .map(|n| crate::defaults::exchange(&mut conn, &options(n, noisy)))
        .collect();
    let refused = answers
        .iter()
        .filter(|r| r.starts_with("SIP/2.0 503 Service Unavailable (Rate Limit Exceeded)"))
        .count();
    assert!(
        refused >= 6
            && answers
                .iter()
                .filter(|r| r.starts_with("SIP/2.0 200"))
                .count()
                >= 2,
        "{answers:#?}"
    );
    // Another address meanwhile is served at once.
    let quiet = "127.0.0.25";
    let mut other = tls_from(&s, quiet, &edge);
    let r = crate::defaults::exchange(&mut other, &options(99, quiet));
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    let (_, m) = edge.get("/metrics");
    assert!(
        crate::federation::metric(&m, "parapet_edge_refused_total{reason=\"rate\"}") >= 6,
        "{m}"
    );
    // A request as large as the pool itself takes (64 Vias): with the
    // edge's own Via it would not parse there, and the front end would
    // close the link every user shares. The edge refuses it at its door;
    // the link stays up and the next request is served.
    let big = "127.0.0.26";
    let vias: String = (0..64)
        .map(|i| {
            format!(
                "Via: SIP/2.0/TLS {big}:{};branch=z9hG4bKbig{i}\r\n",
                2000 + i
            )
        })
        .collect();
    let mut conn = tls_from(&s, big, &edge);
    let r = crate::defaults::exchange(
        &mut conn,
        &options(0, big).replacen(
            &format!("Via: SIP/2.0/TLS {big}:5061;branch=z9hG4bKlim0\r\n"),
            &vias,
            1,
        ),
    );
    assert!(
        r.starts_with("SIP/2.0 4") || r.starts_with("SIP/2.0 5"),
        "{r}"
    );
    let r = crate::defaults::exchange(&mut other, &options(100, quiet));
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    assert!(
        !s.log().contains("edge connection closed"),
        "the front end lost the edge's link:\n{}",
        s.log()
    );
}

#[test]
fn browser_clients_over_wss_through_the_edge_message_and_watch_presence() {
    use crate::web_clients::{notify_says, WebClient};
    let (s, edge) = pool("edge-wss");
    // Both remote (remote access granted to both), on JsSIP and SIP.js.
    grant_remote(&s, "bob");
    s.add_each_other("alice", "bob");
    let ws = format!("wss://{EXTERNAL}:{}", edge.wss_port);
    let mut alice = WebClient::start_at(&s, "jssip", "alice", "correct-horse-battery", &ws);
    let mut bob = WebClient::start_at(&s, "sipjs", "bob", "battery-staple-horse", &ws);
    alice.wait_event("registered");
    bob.wait_event("registered");
    alice.cmd("message sip:bob@example.test hello through the edge");
    let m = bob.wait_event("message");
    assert_eq!(m["from"], "sip:alice@example.test");
    assert_eq!(m["body"], "hello through the edge");
    bob.cmd("message sip:alice@example.test and back");
    assert_eq!(alice.wait_event("message")["body"], "and back");
    // Presence: a subscription through the edge, NOTIFYs back through it.
    alice.cmd("subscribe sip:bob@example.test");
    alice.wait("bob open", |v| {
        notify_says(v, "sip:bob@example.test", "open")
    });
    bob.cmd("publish closed");
    alice.wait("bob closed", |v| {
        notify_says(v, "sip:bob@example.test", "closed")
    });
    let errors: Vec<_> = alice
        .events()
        .into_iter()
        .chain(bob.events())
        .filter(|v| v["event"] == "error" || v["event"] == "warning")
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    alice.quit();
    bob.quit();
    // Pages of other sites may not open a connection (cross-site WebSocket
    // hijacking); the organisation's own may.
    for (origin, expect) in [
        ("https://evil.example", "403"),
        ("https://example.test", "101"),
    ] {
        use std::io::{Read, Write};
        let mut c = tls_to_port(&s, "127.0.0.24", edge.wss_port);
        write!(
            c,
            "GET / HTTP/1.1\r\nHost: {EXTERNAL}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: sip\r\nOrigin: {origin}\r\n\r\n"
        )
        .unwrap();
        let mut buf = [0u8; 512];
        let n = c.read(&mut buf).unwrap_or(0);
        let head = String::from_utf8_lossy(&buf[..n]);
        assert!(
            head.starts_with(&format!("HTTP/1.1 {expect}")),
            "{origin}: {head}"
        );
    }
}

#[test]
fn two_edges_serve_one_pool_and_a_call_crosses_both() {
    let (s, edge1) = pool("edge-two");
    let edge2 = Edge::pair_and_start_at(&s, "edge-two-b", "127.0.0.12", "127.0.0.13");
    grant_remote(&s, "bob");
    let mut bob = Baresip::start_through(
        &s,
        "bob",
        "battery-staple-horse",
        "alice",
        "127.0.0.25",
        &edge2.outbound(),
    );
    bob.cmd("/answermode auto");
    let mut alice = Baresip::start_through(
        &s,
        "alice",
        "correct-horse-battery",
        "bob",
        REMOTE,
        &edge1.outbound(),
    );
    alice.cmd("/message across-two-edges");
    bob.wait_for("sip:alice@example.test: \"across-two-edges\"");
    alice.cmd("/dial sip:bob@example.test");
    bob.wait_for("Call established: sip:alice@example.test");
    alice.wait_for("Call established: sip:bob@example.test");
    alice.cmd("/hangup");
    bob.wait_for("BYE sip:bob");
    bob.wait_for("session closed");
    // Neither side saw the pool or the other edge's internal address.
    for (who, b) in [("alice", &alice), ("bob", &bob)] {
        let leaks: Vec<String> = sip_lines(&b.output())
            .into_iter()
            .filter(|l| {
                mentions(l, FRONT_END) || mentions(l, INTERNAL) || mentions(l, "127.0.0.13")
            })
            .collect();
        assert!(leaks.is_empty(), "{who} saw the inside: {leaks:#?}");
    }
    let (_, m1) = edge1.get("/metrics");
    let (_, m2) = edge2.get("/metrics");
    assert!(m1.contains("parapet_edge_links 1") && m2.contains("parapet_edge_links 1"));
    alice.cmd("/quit");
    bob.cmd("/quit");

    // The call's trace is one ladder across the three nodes: the INVITE
    // from alice's device at edge one, into the front end from that edge,
    // out to bob's device from edge two.
    let call_id = sip_lines(&alice.output())
        .windows(12)
        .find(|w| w[0].starts_with("INVITE sip:bob@example.test"))
        .and_then(|w| {
            w.iter()
                .find_map(|l| l.strip_prefix("Call-ID: ").map(str::to_owned))
        })
        .expect("alice's INVITE was traced by baresip");
    let ladder = |args: &[&str]| {
        let mut a = vec!["trace", "--call-id", call_id.as_str()];
        a.extend_from_slice(args);
        let o = s.admin(&a, "");
        assert!(o.status.success(), "{}", out(&o));
        o
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let v = loop {
        let v: serde_json::Value =
            serde_json::from_slice(&ladder(&["--output=json"]).stdout).unwrap();
        let nodes: std::collections::HashSet<&str> = v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| {
                m["first_line"]
                    .as_str()
                    .is_some_and(|l| l.starts_with("BYE "))
            })
            .filter_map(|m| m["node"].as_str())
            .collect();
        if nodes.len() == 3 || std::time::Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    };
    let msgs = v["messages"].as_array().unwrap();
    let first = |node: &str, dir: &str, remote_ip: &str| {
        msgs.iter()
            .position(|m| {
                m["node"] == node
                    && m["direction"] == dir
                    && m["first_line"]
                        .as_str()
                        .unwrap()
                        .starts_with("INVITE sip:bob")
                    && m["remote"]
                        .as_str()
                        .unwrap()
                        .starts_with(&format!("{remote_ip}:"))
            })
            .unwrap_or_else(|| panic!("no INVITE {dir} at {node} with {remote_ip}: {v:#}"))
    };
    // (baresip's TLS connections leave from 127.0.0.1.)
    let at_edge1 = first("edge-two-e", "in", "127.0.0.1");
    let at_front_end = first("front-end", "in", edge1.internal);
    let at_edge2 = first("edge-two-b", "out", "127.0.0.1");
    assert!(at_edge1 < at_front_end && at_front_end < at_edge2, "{v:#}");
    let times: Vec<i64> = msgs.iter().map(|m| m["at_ms"].as_i64().unwrap()).collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "in time order: {times:?}"
    );
    for e in v["edges"].as_array().unwrap() {
        assert_eq!(e["complete"], true, "{e}");
        assert!(e["messages"].as_u64().unwrap() >= 4, "{e}");
    }
    // Credentials and media keys never shown, whoever reads.
    let text = v.to_string();
    assert!(
        !text.contains("response=\\\""),
        "a digest answer in the trace"
    );
    for m in msgs {
        let body = m["message"].as_str().unwrap();
        for (i, _) in body.match_indices("inline:") {
            assert!(body[i..].starts_with("inline:[key cut]"), "{body}");
        }
    }
    let text = out(&ladder(&[]));
    assert!(text.contains(" edge-two-b --TLS--> 127.0.0.1:"), "{text}");
    assert!(text.contains("edge edge-two-e: "), "{text}");
}

#[test]
fn a_partners_server_reaches_the_pool_through_the_edge_under_the_pools_federation_rules() {
    use crate::federation::{alice_sends_to, contact, last_status, policy};
    // example.test: a front end with an edge. partner.test: a server whose
    // route to example.test is the edge's external address.
    let a = Server::org_at("edge-fed-a", "example.test", FRONT_END, "");
    let mut b = Server::org("edge-fed-b", "partner.test", "");
    let ca = |s: &Server| s.data_dir().join("pki/ca.pem").display().to_string();
    // The edge trusts partner.test's CA and finds its server by a static
    // route; the front end has no way to partner.test but its edge.
    let edge = Edge::pair_and_start_with(
        &a,
        "edge-fed-e",
        EXTERNAL,
        INTERNAL,
        &format!(
            "[federation]\ntrusted_cas = [\"{}\"]\nallow_private_addresses = true\nroutes = {{ \"partner.test\" = \"127.0.0.1:{}\" }}\n",
            ca(&b),
            b.tls
        ),
    );
    b.extra_config = format!(
        "[federation]\ntrusted_cas = [\"{}\"]\nallow_private_addresses = true\nroutes = {{ \"example.test\" = \"{EXTERNAL}:{}\" }}\n",
        ca(&a),
        edge.external_port
    );
    b.kill9();
    b.start();
    a.add_user("alice", "correct horse battery");
    b.add_user("alice", "correct horse battery");
    crate::federation::federate_both(&a, &b);
    contact(&a, "sip:alice@example.test", "sip:alice@partner.test");
    // The pool's rules reach the edge in its snapshot.
    edge.wait_log("configuration snapshot applied", 2);
    let receiver = register_and_listen(&a, "alice", "correct horse battery");
    let t = alice_sends_to(&b, "alice", "example.test");
    assert!(
        last_status(&t).contains("200"),
        "{}\n{}",
        last_status(&t),
        a.log()
    );
    let (ok, msgs) = receiver.finish();
    assert!(ok, "{msgs}");
    let (_, metrics) = a.http_get("/metrics", None);
    assert!(
        metrics.contains(
            "parapet_federation_requests_total{partner=\"partner.test\",direction=\"in\""
        ),
        "{metrics}"
    );
    // partner.test's certificate speaks for partner.test only (RFC 5922):
    // a request From another domain, or From the pool's own, ends at the
    // edge.
    for (from, expect) in [
        (
            "mallory@evil.test",
            "403 Forbidden (From Domain Does Not Match the Certificate)",
        ),
        (
            "bob@example.test",
            "403 Forbidden (Own Domain From Outside)",
        ),
    ] {
        let mut c = as_partner(&a, &b, &edge);
        let r = crate::defaults::exchange(
            &mut c,
            &format!(
                "MESSAGE sip:alice@example.test SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bKp{}\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:{from}>;tag=m\r\nTo: <sip:alice@example.test>\r\n\
                 Call-ID: rfc5922-{}\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi",
                from.len(),
                from.len()
            ),
        );
        assert!(r.starts_with(&format!("SIP/2.0 {expect}")), "{from}: {r}");
        assert!(!r.contains("Server: Parapet"), "answered by the edge: {r}");
    }
    // And back: the pool's user writes to partner.test; the front end hands
    // it to its edge, which opens the connection to partner.test's server.
    contact(&b, "sip:alice@partner.test", "sip:alice@example.test");
    let receiver = register_and_listen(&b, "alice", "correct horse battery");
    let t = alice_sends_to(&a, "alice", "partner.test");
    assert!(
        last_status(&t).contains("200"),
        "{}\n{}",
        last_status(&t),
        edge.log()
    );
    let (ok, msgs) = receiver.finish();
    assert!(ok, "{msgs}");
    edge.wait_log("connected to the partner's server", 1);
    let (_, m) = edge.get("/metrics");
    assert!(!m.contains("parapet_edge_outward_requests_total 0"), "{m}");
    // The pool stops federating: the edge refuses partner.test itself.
    policy(&a, &["federation", "global", "enabled=false"]);
    edge.wait_log("configuration snapshot applied", 3);
    let t = alice_sends_to(&b, "alice", "example.test");
    assert!(
        last_status(&t).contains("403 Forbidden (Federation Not Allowed)"),
        "{}",
        last_status(&t)
    );
    let (_, m) = edge.get("/metrics");
    assert!(
        m.contains("parapet_edge_refused_total{reason=\"partner\"} 3"),
        "{m}"
    );
}

#[test]
fn an_edge_paired_as_the_readme_says_serves_a_front_end_on_its_defaults() {
    // The front end exactly as the quickstart starts it: TLS on
    // 0.0.0.0:5061, every setting at its default.
    let s = Server::readme("edge-readme");
    s.add_user("alice", "correct-horse-battery");
    s.add_user("bob", "battery-staple-horse");
    // The README's two commands on the front end, with this machine's
    // addresses (its listener is on 0.0.0.0, so --front-end, as it says).
    let readme = readme();
    let section = readme
        .split("## Remote users through an edge")
        .nth(1)
        .expect("the README's edge section");
    for said in [
        "parapet admin edge pair edge1 --internal",
        "--front-end",
        "parapet admin policy set external_access global remote_access=true",
        "parapet edge --pairing edge1.json",
        "health and metrics on 10.0.0.2:9061",
    ] {
        assert!(section.contains(said), "the README no longer says {said:?}");
    }
    crate::federation::policy(&s, &["external_access", "global", "remote_access=true"]);
    // On the edge: `parapet edge --pairing edge1.json`, its TLS listener
    // moved off 0.0.0.0:5061 (the front end holds it on this one machine).
    let mut edge = Edge::paired(&s, "edge1", &["--front-end", "127.0.0.1:5061"], true);
    edge.start();
    // Healthy once linked and holding the pool's configuration snapshot,
    // which comes a moment after the link.
    edge.wait_log("configuration snapshot applied", 1);
    let (status, _) = edge.get("/healthz");
    assert!(status.contains("200"), "{status}\n{}", edge.log());
    // A remote user through the edge and an internal one on the front end
    // (the README's baresip recipe) message each other.
    let mut bob = Baresip::start(&s, "bob", "battery-staple-horse", "alice");
    let mut alice = Baresip::start_through(
        &s,
        "alice",
        "correct-horse-battery",
        "bob",
        REMOTE,
        &edge.outbound(),
    );
    alice.cmd("/message hello-from-outside");
    bob.wait_for("sip:alice@example.test: \"hello-from-outside\"");
    bob.cmd("/message hello-from-inside");
    alice.wait_for("sip:bob@example.test: \"hello-from-inside\"");
    let (_, m) = edge.get("/metrics");
    assert!(m.contains("parapet_edge_links 1"), "{m}");
    // No database and no user secret on the edge: it wrote nothing but its
    // SIP trace ring (beside the pairing file, named after it), has no
    // other file open (sockets, pipes and the log the test gave it as
    // stderr aside), the ring holds no credential and no message's text,
    // and the pairing file holds neither alice's password nor her digest
    // secret.
    let written: Vec<_> = std::fs::read_dir(edge.workdir()).unwrap().collect();
    assert!(written.is_empty(), "the edge wrote {written:?}");
    let ring = edge.pairing.with_file_name(format!(
        "{}-traces",
        edge.pairing.file_stem().unwrap().to_string_lossy()
    ));
    let files: Vec<PathBuf> = edge
        .open_files()
        .into_iter()
        .filter(|p| {
            p.is_absolute() && !p.starts_with("/dev") && *p != edge.log && !p.starts_with(&ring)
        })
        .collect();
    assert!(files.is_empty(), "the edge holds files open: {files:?}");
    let mut traced = Vec::new();
    for f in std::fs::read_dir(&ring).expect("the edge's trace ring") {
        traced.extend(std::fs::read(f.unwrap().path()).unwrap());
    }
    let traced = String::from_utf8_lossy(&traced);
    assert!(
        traced.contains("MESSAGE sip:"),
        "the ring holds the messages"
    );
    for secret in ["response=", "hello-from-outside", "hello-from-inside"] {
        assert!(
            !traced.contains(secret),
            "{secret} in the edge's trace ring"
        );
    }
    let pairing = std::fs::read_to_string(&edge.pairing).unwrap();
    for alg in [
        auth::digest::Algorithm::Md5,
        auth::digest::Algorithm::Sha256,
    ] {
        let ha1: String = auth::digest::ha1(alg, "alice", "example.test", "correct-horse-battery")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(!pairing.contains(&ha1));
    }
    assert!(!pairing.contains("correct-horse-battery"));
    alice.cmd("/quit");
    bob.cmd("/quit");
}

#[test]
fn a_front_end_reaches_an_edge_whose_own_connections_to_it_are_refused() {
    // As where the firewall lets nothing from the DMZ in: the edge's own
    // links fail (its pairing names a port where nothing listens), so the
    // front end connects to the edge's internal listener itself.
    let s = Server::org_at("edge-dial", "example.test", FRONT_END, "");
    s.add_user("alice", "correct-horse-battery");
    s.add_user("bob", "battery-staple-horse");
    crate::federation::policy(&s, &["external_access", "global", "remote_access=true"]);
    let nowhere = format!("{FRONT_END}:{}", free_port());
    let mut edge = Edge::paired(&s, "edge-dial-e", &["--front-end", &nowhere], false);
    edge.start();
    assert!(
        edge.log().contains("cannot link to the pool"),
        "{}",
        edge.log()
    );
    assert!(
        edge.log()
            .contains("linked to the pool (a front end connected to the internal listener)"),
        "{}",
        edge.log()
    );
    edge.wait_log("configuration snapshot applied", 1);
    let (status, _) = edge.get("/healthz");
    assert!(status.contains("200"), "{status}\n{}", edge.log());
    // Remote and internal users as usual, over the front end's connection.
    let front_end = format!("{FRONT_END}:{}", s.tls);
    let mut bob = Baresip::start_through(
        &s,
        "bob",
        "battery-staple-horse",
        "alice",
        INSIDE_CLIENT,
        &front_end,
    );
    let mut alice = Baresip::start_through(
        &s,
        "alice",
        "correct-horse-battery",
        "bob",
        REMOTE,
        &edge.outbound(),
    );
    alice.cmd("/message hello-over-the-dialled-link");
    bob.wait_for("sip:alice@example.test: \"hello-over-the-dialled-link\"");
    bob.cmd("/message hello-back");
    alice.wait_for("sip:bob@example.test: \"hello-back\"");
    assert!(
        s.log()
            .contains("connected to the edge's internal listener"),
        "{}",
        s.log()
    );
    alice.cmd("/quit");
    bob.cmd("/quit");
}

/// An edge that may not write where its trace ring would go relays all
/// the same, says so in its log, and a trace search says why nothing came
/// from it.
#[test]
fn an_edge_that_cannot_keep_a_trace_ring_relays_all_the_same() {
    let s = Server::org_at("edge-no-ring", "example.test", FRONT_END, "");
    let edge = Edge::pair_and_start_with(
        &s,
        "edge-no-ring-e",
        EXTERNAL,
        INTERNAL,
        "[trace]\ndir = \"/proc/parapet-no-ring\"\n",
    );
    // (Started: it linked to the pool.)
    assert!(
        edge.log().contains("no SIP trace ring on this edge"),
        "{}",
        edge.log()
    );
    let o = s.admin(&["trace", "--user", "sip:alice@example.test"], "");
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        out(&o).contains("edge edge-no-ring-e: the edge answered 404 No Trace Ring"),
        "{}",
        out(&o)
    );
}

/// An edge in front of a pool whose nodes all serve: paired through fe-a,
/// it is known to fe-b from the database (listed there, loaded from the
/// change log), its pairing file names both nodes as front ends and it
/// links to both; ann, remote, signs in through it, and she and ben,
/// connected straight to fe-b, message each other. Unpaired through fe-b,
/// its link stands for nobody on either node.
#[test]
fn an_edge_in_front_of_an_active_pool_serves_through_every_node() {
    use crate::defaults::{exchange, register};
    let (a, b, _, _) = crate::pool::two_nodes("pool_edge");
    // (The API answers once fe-b has the users too.)
    a.add_user("ann", "ann-long-passphrase");
    a.add_user("ben", "ben-long-passphrase");
    allow_remote(&a, "ann");
    let edge = Edge::pair_and_start(&a, "pool-e");
    // The pairing is the pool's, not fe-a's alone.
    let o = b.admin(&["--output=json", "edge", "list"], "");
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("\"pool-e\""),
        "{}",
        out(&o)
    );
    crate::postgres::wait_until(
        10,
        || b.log().contains("paired edges loaded edges=1"),
        || format!("fe-b never loaded the edge fe-a paired:\n{}", b.log()),
    );
    let bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&edge.pairing).unwrap()).unwrap();
    let front_ends = bundle["front_ends"].to_string();
    for s in [&a, &b] {
        let addr = format!("{}:{}", s.host, s.tls);
        assert!(front_ends.contains(&addr), "{addr} not in {front_ends}");
    }
    edge.wait_log("linked to the pool", 2);
    let linked: Vec<String> = edge
        .log()
        .lines()
        .filter(|l| l.contains("linked to the pool"))
        .map(str::to_owned)
        .collect();
    for s in [&a, &b] {
        assert!(
            linked.iter().any(|l| l.contains(&format!(":{}", s.tls))),
            "the edge never linked to the node on {}: {linked:#?}",
            s.tls
        );
    }

    let mut ben = Baresip::start_through(
        &b,
        "ben",
        "ben-long-passphrase",
        "ann",
        INSIDE_CLIENT,
        &format!("{}:{}", b.host, b.tls),
    );
    let mut ann = Baresip::start_through(
        &a,
        "ann",
        "ann-long-passphrase",
        "ben",
        REMOTE,
        &edge.outbound(),
    );
    ann.cmd("/message hello-from-outside");
    ben.wait_for("sip:ann@example.test: \"hello-from-outside\"");
    ben.cmd("/message hello-from-inside");
    ann.wait_for("sip:ben@example.test: \"hello-from-inside\"");
    ann.cmd("/quit");
    ben.cmd("/quit");

    // Unpaired through fe-b: whichever node the edge hands a request to
    // refuses it.
    let dropped = || a.log().matches("paired edges loaded edges=0").count();
    let before = dropped();
    let o = b.admin(&["edge", "unpair", "pool-e"], "");
    assert!(o.status.success(), "{}", out(&o));
    crate::postgres::wait_until(
        10,
        || dropped() > before,
        || format!("fe-a never dropped the edge fe-b unpaired:\n{}", a.log()),
    );
    for n in 1..=4 {
        let mut conn = tls_from(&a, "127.0.0.22", &edge);
        let r = exchange(
            &mut conn,
            &register("TLS", "127.0.0.22:5061", n, None, "late", None),
        );
        assert!(
            r.starts_with("SIP/2.0 403 Forbidden (Edge Not Paired)"),
            "{r}"
        );
    }
}
