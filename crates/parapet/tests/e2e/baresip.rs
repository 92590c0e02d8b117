//! Real clients: two baresip instances over TLS, against a server started
//! as the README says (default listeners and policies), configured as the
//! README's recipe says.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

/// A baresip client (Debian `baresip-core`) driven through its stdio menu,
/// registered over TLS to the server and trusting the generated CA. It binds to
/// 127.0.0.1 only (`-n`), plays a generated tone file as its microphone, and
/// prints its SIP trace (`-s`) with its other output.
pub(crate) struct Baresip {
    child: Child,
    out: PathBuf,
    stdin: std::process::ChildStdin,
}

impl Baresip {
    pub(crate) fn start(s: &Server, user: &str, password: &str, contact: &str) -> Baresip {
        Baresip::start_with(s, user, password, contact, false)
    }

    /// With `presence`: the presence module subscribes to the contact and
    /// publishes the user's state every 60 s (`pubint`). A `contact`
    /// without `@` is in the server's domain.
    pub(crate) fn start_with(
        s: &Server,
        user: &str,
        password: &str,
        contact: &str,
        presence: bool,
    ) -> Baresip {
        let opts = Opts {
            presence,
            ..Opts::default()
        };
        Baresip::start_full(s, user, password, contact, &opts)
    }

    /// A remote user: bound to `local_ip`, with `outbound` (host:port, TLS)
    /// as its outbound proxy instead of the server (an edge).
    pub(crate) fn start_through(
        s: &Server,
        user: &str,
        password: &str,
        contact: &str,
        local_ip: &'static str,
        outbound: &str,
    ) -> Baresip {
        Baresip::through_until(s, user, password, contact, local_ip, outbound, READY)
    }

    /// [`Baresip::start_through`], waiting for `text` (e.g. a refusal)
    /// instead of a successful registration.
    pub(crate) fn through_until(
        s: &Server,
        user: &str,
        password: &str,
        contact: &str,
        local_ip: &'static str,
        outbound: &str,
        text: &str,
    ) -> Baresip {
        let opts = Opts {
            local_ip: Some(local_ip),
            outbound: Some(outbound.to_string()),
            ready: Some(text.to_string()),
            ..Opts::default()
        };
        Baresip::start_full(s, user, password, contact, &opts)
    }

    /// Without an outbound proxy: baresip finds the server through DNS
    /// (NAPTR, SRV, A) from the server at 127.0.0.1:`dns_port`.
    pub(crate) fn start_via_dns(
        s: &Server,
        user: &str,
        password: &str,
        contact: &str,
        dns_port: u16,
    ) -> Baresip {
        let opts = Opts {
            dns: Some(dns_port),
            ..Opts::default()
        };
        Baresip::start_full(s, user, password, contact, &opts)
    }

    /// Signed in by a device certificate, enrolled as the README's recipe
    /// says (openssl, curl and jq against the user listener), with no
    /// password in its account. Waits for `ready` ([`READY`] if `None`).
    pub(crate) fn start_with_device(
        s: &Server,
        user: &str,
        password: &str,
        contact: &str,
        ready: Option<&str>,
    ) -> Baresip {
        let opts = Opts {
            device: true,
            ready: ready.map(str::to_string),
            ..Opts::default()
        };
        Baresip::start_full(s, user, password, contact, &opts)
    }

    pub(crate) fn start_full(
        s: &Server,
        user: &str,
        password: &str,
        contact: &str,
        opts: &Opts,
    ) -> Baresip {
        let dir = s.dir.join(format!("baresip-{user}"));
        std::fs::create_dir_all(&dir).unwrap();
        if opts.device {
            enroll_by_readme(s, &dir, user, password);
        }
        let wav = dir.join("tone.wav");
        std::fs::write(&wav, tone_wav()).unwrap();
        // The listening port is found free, but another test may take it
        // before baresip binds it: then try again on a fresh one.
        for _ in 0..3 {
            let b = Baresip::spawn(s, &dir, &wav, user, password, contact, opts);
            let ready = opts.ready.as_deref().unwrap_or(READY);
            let taken = "Address already in use";
            if b.wait_for_either(ready, taken) == ready {
                return b;
            }
            drop(b);
        }
        panic!("baresip could not bind a free port three times");
    }

    fn spawn(
        s: &Server,
        dir: &std::path::Path,
        wav: &std::path::Path,
        user: &str,
        password: &str,
        contact: &str,
        opts: &Opts,
    ) -> Baresip {
        let (presence, dns) = (opts.presence, opts.dns);
        let local_ip = opts.local_ip.unwrap_or("127.0.0.1");
        // The README's recipe, with this test's port, CA and tone file.
        let (readme_config, readme_account) = readme_recipe();
        let mut config = readme_config
            .replace("127.0.0.1:26071", &format!("{local_ip}:{}", free_port()))
            .replace(
                "$PWD/../parapet-data/pki/ca.pem",
                &s.data_dir().join("pki/ca.pem").display().to_string(),
            )
            .replace("/path/to/some-8kHz-mono.wav", &wav.display().to_string());
        if presence {
            config.push_str("module_app    presence.so\n");
        }
        if let Some(p) = dns {
            config.push_str(&format!("dns_server    127.0.0.1:{p}\n"));
        }
        config.push_str(&opts.config_lines);
        if opts.device {
            // What the recipe's last two lines do.
            config.push_str(&format!(
                "sip_certificate {}\n",
                dir.join("device.pem").display()
            ));
        }
        std::fs::write(dir.join("config"), config).unwrap();
        let mut account = readme_account
            .replace(
                "sip:alice@example.test",
                &format!("sip:{user}@{}", s.domain),
            )
            .replace(
                "auth_pass=a-long-passphrase",
                &format!("auth_pass={password}"),
            )
            .replace(
                "127.0.0.1:5061",
                &opts
                    .outbound
                    .clone()
                    .unwrap_or_else(|| format!("{}:{}", s.host, s.tls)),
            );
        if let Some(m) = opts.mediaenc {
            assert!(account.contains(";mediaenc=srtp-mand"), "{account}");
            let with = if m.is_empty() {
                String::new()
            } else {
                format!(";mediaenc={m}")
            };
            account = account.replace(";mediaenc=srtp-mand", &with);
        }
        if !opts.account_params.is_empty() {
            let at = account
                .find(";outbound=")
                .expect("the README's account has an outbound proxy");
            account.insert_str(at, &opts.account_params);
        }
        if dns.is_some() {
            // No outbound proxy: baresip finds the server through DNS.
            let at = account
                .find(";outbound=")
                .expect("the README's account has an outbound proxy");
            account.truncate(at);
        }
        if presence {
            account.push_str(";pubint=60");
        }
        if opts.device {
            account = std::fs::read_to_string(dir.join("accounts.device"))
                .unwrap()
                .trim()
                .to_string();
        }
        std::fs::write(dir.join("accounts"), format!("{account}\n")).unwrap();
        let p2p = if presence { ";presence=p2p" } else { "" };
        let contact = if contact.contains('@') {
            contact.to_string()
        } else {
            format!("{contact}@{}", s.domain)
        };
        std::fs::write(dir.join("contacts"), format!("<sip:{contact}>{p2p}\n")).unwrap();
        let out = dir.join("out.log");
        // baresip prints to both streams; keep them together.
        let log = std::fs::File::create(&out).unwrap();
        // Line-buffered, so the test sees each line as it is printed.
        let mut command = match &opts.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "stdbuf"]);
                c
            }
            None => Command::new("stdbuf"),
        };
        let mut child = command
            .args(["-oL", "-eL", "baresip", "-s", "-v", "-n", local_ip, "-f"])
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("baresip is installed (scripts/test.sh installs Debian's baresip-core)");
        let stdin = child.stdin.take().unwrap();
        Baresip { child, out, stdin }
    }

    pub(crate) fn cmd(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }

    pub(crate) fn output(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.out).unwrap_or_default()).into_owned()
    }

    /// Waits until the output shows `a` or `b`; returns which.
    fn wait_for_either<'t>(&self, a: &'t str, b: &'t str) -> &'t str {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.output();
            if out.contains(a) {
                return a;
            }
            if out.contains(b) {
                return b;
            }
            assert!(
                Instant::now() < deadline,
                "baresip never printed {a:?}:\n{out}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn wait_for(&self, text: &str) {
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

/// What a registered client prints.
pub(crate) const READY: &str = "{0/TLS/v4} 200 OK (Parapet";

/// How a client is set up beyond the README's recipe.
#[derive(Default)]
pub(crate) struct Opts {
    /// What to wait for instead of [`READY`].
    pub(crate) ready: Option<String>,
    pub(crate) presence: bool,
    pub(crate) dns: Option<u16>,
    pub(crate) local_ip: Option<&'static str>,
    pub(crate) outbound: Option<String>,
    /// Sign in with a device certificate (the README's recipe).
    pub(crate) device: bool,
    /// The network namespace baresip runs in (a NAT laboratory's).
    pub(crate) netns: Option<String>,
    /// Account parameters added before `;outbound=` (e.g. the relay's).
    pub(crate) account_params: String,
    /// Lines added to the config file.
    pub(crate) config_lines: String,
    /// Media encryption instead of the README's `srtp-mand` (`""`: none).
    pub(crate) mediaenc: Option<&'static str>,
}

/// Runs the README's device-certificate recipe in `dir` for `user`: a key
/// and request made by openssl, the certificate from the user API, both
/// in `device.pem`; the account line it writes is kept as
/// `accounts.device`.
pub(crate) fn enroll_by_readme(s: &Server, dir: &std::path::Path, user: &str, password: &str) {
    let readme = readme();
    let section = readme
        .split("### A device certificate instead of a password")
        .nth(1)
        .expect("the README's device certificate section");
    let script = section
        .split("```sh\n")
        .nth(1)
        .and_then(|c| c.split("\n```").next())
        .expect("the README's device certificate recipe");
    assert!(script.contains("> accounts"), "{script}");
    let script = script
        .replace(
            "../parapet-data/pki/ca.pem",
            &s.data_dir().join("pki/ca.pem").display().to_string(),
        )
        .replace("alice-laptop", &format!("{user}-laptop"))
        .replace("\"user\":\"alice\"", &format!("\"user\":\"{user}\""))
        .replace("a-long-passphrase", password)
        .replace("sip:alice@", &format!("sip:{user}@"))
        .replace("> accounts", "> accounts.device");
    let o = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(dir)
        .output()
        .expect("bash runs");
    assert!(
        o.status.success(),
        "the README's recipe failed:\n{script}\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let pem = std::fs::read_to_string(dir.join("device.pem")).unwrap();
    assert!(
        pem.contains("BEGIN CERTIFICATE") && pem.contains("PRIVATE KEY"),
        "device.pem holds the certificate and its key:\n{pem}"
    );
}

/// The baresip recipe of the README: the `config` file's lines and alice's
/// account line, exactly as written there.
fn readme_recipe() -> (String, String) {
    let readme = readme();
    let section = readme
        .split("### Two baresip clients over TLS")
        .nth(1)
        .expect("the README's baresip section");
    let config = section
        .split("cat > config <<EOF\n")
        .nth(1)
        .and_then(|c| c.split("\nEOF\n").next())
        .expect("the README's baresip config");
    let account = section
        .lines()
        .find_map(|l| l.strip_prefix("echo '")?.strip_suffix("' > accounts"))
        .expect("the README's baresip account line");
    (format!("{config}\n"), account.to_string())
}

/// Waits until `text` shows `n` times in the client's output.
pub(crate) fn wait_count(b: &Baresip, text: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while b.output().matches(text).count() < n {
        assert!(
            Instant::now() < deadline,
            "baresip never printed {text:?} {n} times:\n{}",
            b.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Twelve seconds of a 440 Hz tone, 8 kHz 16-bit mono WAV (baresip ends
/// a call when its audio file ends).
fn tone_wav() -> Vec<u8> {
    let samples: Vec<u8> = (0..96_000u32)
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
    let s = Server::readme("baresip");
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
    // Its media is SRTP keyed by SDES (the README's recipe; the server
    // refuses anything unencrypted).
    let trace = bob.output();
    assert!(
        trace.contains("RTP/SAVP") && trace.contains("a=crypto:"),
        "{trace}"
    );
    alice.cmd("/hangup");
    // The BYE reaches bob along the route set (over his TLS connection, by the
    // flow token in our Record-Route) and ends his side of the call.
    bob.wait_for("BYE sip:bob");
    bob.wait_for("session closed");
    // A second call, hung up by bob: his BYE follows the Record-Route
    // entry facing him, which names the address his connection reached.
    alice.cmd("/dial sip:bob@example.test");
    wait_count(&bob, "Call established: sip:alice@example.test", 2);
    wait_count(&alice, "Call established: sip:bob@example.test", 2);
    bob.cmd("/hangup");
    alice.wait_for("BYE sip:alice");
    wait_count(&alice, "session closed", 1);
    alice.cmd("/quit");
    bob.cmd("/quit");
}

#[test]
fn baresip_clients_publish_and_watch_presence() {
    let s = Server::readme("baresip-presence");
    s.add_user("alice", "correct-horse-battery");
    s.add_user("bob", "battery-staple-horse");
    // Privacy mode is on by default: each must be in the other's contacts.
    s.add_each_other("alice", "bob");
    // Alice publishes (PUBLISH, open); bob watches her, and alice bob.
    let mut alice = Baresip::start_with(&s, "alice", "correct-horse-battery", "bob", true);
    let mut bob = Baresip::start_with(&s, "bob", "battery-staple-horse", "alice", true);
    bob.wait_for("NOTIFY sip:bob");
    alice.wait_for("NOTIFY sip:alice");
    std::thread::sleep(Duration::from_millis(1500));
    // Alice goes offline: her new PUBLISH reaches bob as a NOTIFY.
    alice.cmd("/presence_offline");
    bob.wait_for("<sip:alice@example.test> changed status from \u{1b}[32mOnline\u{1b}[;m to \u{1b}[31mOffline");
    std::thread::sleep(Duration::from_millis(1500));
    alice.cmd("/presence_online");
    bob.wait_for("<sip:alice@example.test> changed status from \u{1b}[31mOffline\u{1b}[;m to \u{1b}[32mOnline");
    alice.cmd("/quit");
    bob.cmd("/quit");
}

#[test]
fn a_client_killed_shows_offline_to_its_watchers_within_seconds() {
    let s = Server::readme("baresip-killed");
    s.add_user("alice", "correct-horse-battery");
    s.add_user("bob", "battery-staple-horse");
    s.add_each_other("alice", "bob");
    let alice = Baresip::start_with(&s, "alice", "correct-horse-battery", "bob", true);
    let mut bob = Baresip::start_with(&s, "bob", "battery-staple-horse", "alice", true);
    bob.wait_for("NOTIFY sip:bob");
    std::thread::sleep(Duration::from_millis(1500));
    // alice's process dies without a word (SIGKILL): no un-REGISTER, no
    // PUBLISH with Expires 0 — only her TLS connection closes.
    let killed = Instant::now();
    drop(alice);
    bob.wait_for("<sip:alice@example.test> changed status from \u{1b}[32mOnline\u{1b}[;m to \u{1b}[31mOffline");
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(5), "offline after {took:?}");
    // Her registration is gone too (the server cannot reach her any more).
    let o = s.admin(&["--output=json", "status"], "");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["registrations"], 1, "{v}");
    bob.cmd("/quit");
}
