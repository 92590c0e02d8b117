//! Linphone (Debian `linphone-cli`: linphone-daemon 5.1) over TLS against a
//! server started as the README says: it signs in with SHA-256 digest,
//! messages a baresip user both ways and calls them.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::baresip::Baresip;
use crate::harness::*;

/// A linphone-daemon, driven over its command socket (one command, one
/// answer; events are fetched with `pop-event`).
struct Linphone {
    child: Child,
    sock: UnixStream,
    log: PathBuf,
    events: Vec<String>,
}

impl Linphone {
    fn start(s: &Server, user: &str, password: &str) -> Linphone {
        let dir = s.dir.join(format!("linphone-{user}"));
        std::fs::create_dir_all(&dir).unwrap();
        // The certificate names localhost; Linphone cannot match an IP
        // address entry, so it connects by name (as the README advises).
        let rc = format!(
            "[sip]\nsip_port=0\nsip_tcp_port=0\nsip_tls_port=-1\nroot_ca={ca}\nverify_server_certs=1\n\
             verify_server_cn=1\ndefault_proxy=0\nmedia_encryption=srtp\nmedia_encryption_mandatory=1\n\n[rtp]\naudio_rtp_port=-1\nvideo_rtp_port=-1\n\n\
             [video]\ncapture=0\ndisplay=0\n\n[storage]\nuri={db}\n\n[proxy_0]\n\
             reg_proxy=<sip:localhost:5061;transport=tls>\nreg_route=<sip:localhost:5061;transport=tls;lr>\n\
             reg_identity=sip:{user}@{DOMAIN}\nreg_expires=3600\nreg_sendregister=1\npublish=0\n\n\
             [auth_info_0]\nusername={user}\npasswd={password}\nrealm={DOMAIN}\ndomain={DOMAIN}\n",
            ca = s.data_dir().join("pki/ca.pem").display(),
            db = dir.join("linphone.db").display(),
        );
        std::fs::write(dir.join("linphonerc"), rc).unwrap();
        // The daemon puts its socket at "/tmp/" + NAME.
        let sock_path = dir.join("pipe");
        let name = sock_path
            .strip_prefix("/tmp")
            .expect("the test directory is under /tmp")
            .to_str()
            .unwrap()
            .to_string();
        let log = dir.join("daemon.log");
        let child = Command::new("linphone-daemon")
            .arg("--config")
            .arg(dir.join("linphonerc"))
            .arg("--log")
            .arg(&log)
            .args(["--pipe", &name, "--disable-stats-events"])
            .env("HOME", &dir)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("linphone-daemon is installed (scripts/install-test-deps.sh)");
        let deadline = Instant::now() + Duration::from_secs(20);
        let sock = loop {
            if let Ok(c) = UnixStream::connect(&sock_path) {
                break c;
            }
            assert!(Instant::now() < deadline, "linphone-daemon made no socket");
            std::thread::sleep(Duration::from_millis(50));
        };
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Linphone {
            child,
            sock,
            log,
            events: Vec::new(),
        }
    }

    /// One command and its answer.
    fn cmd(&mut self, line: &str) -> String {
        self.sock.write_all(format!("{line}\n").as_bytes()).unwrap();
        let mut buf = vec![0u8; 65536];
        let n = self.sock.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// Waits until `pred` holds for an answer to `line`, asked again and again.
    fn poll(&mut self, line: &str, what: &str, pred: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let a = self.cmd(line);
            if pred(&a) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "linphone never {what}: {a}\nlog:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for an event containing every one of `parts`.
    fn wait_event(&mut self, parts: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(e) = self
                .events
                .iter()
                .find(|e| parts.iter().all(|p| e.contains(p)))
            {
                return e.clone();
            }
            let a = self.cmd("pop-event");
            if a.contains("Event-type:") {
                self.events.push(a);
                continue;
            }
            assert!(
                Instant::now() < deadline,
                "no linphone event with {parts:?}; events: {:#?}",
                self.events
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Linphone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn linphone_signs_in_with_sha256_messages_and_calls_baresip() {
    let s = Server::readme("linphone");
    s.add_user("alice", "alice-password-1");
    s.add_user("bob", "bob-password-1");
    let mut bob = Baresip::start(&s, "bob", "bob-password-1", "alice");
    bob.cmd("/answermode auto");
    let mut alice = Linphone::start(&s, "alice", "alice-password-1");
    alice.poll("register-status 1", "registered", |a| {
        a.contains("State: LinphoneRegistrationOk")
    });
    let log = std::fs::read_to_string(&alice.log).unwrap_or_default();
    assert!(
        log.contains("algorithm=SHA-256"),
        "Linphone answered with SHA-256"
    );
    // A message each way.
    let a = alice.cmd("message sip:bob@example.test hello-from-linphone");
    assert!(a.contains("Status: Ok"), "{a}");
    bob.wait_for("sip:alice@example.test: \"hello-from-linphone\"");
    alice.wait_event(&["message-state-changed", "LinphoneChatMessageStateDelivered"]);
    bob.cmd("/message hello-from-baresip");
    alice.wait_event(&[
        "message-received",
        "From: sip:bob@example.test",
        "hello-from-baresip",
    ]);
    // A call to baresip, answered, media running, hung up by Linphone: the
    // BYE reaches bob along the Record-Route.
    let a = alice.cmd("call sip:bob@example.test");
    assert!(a.contains("Status: Ok"), "{a}");
    alice.wait_event(&["call-state-changed", "LinphoneCallStreamsRunning"]);
    bob.wait_for("Call established: sip:alice@example.test");
    // Audio from baresip for a second (Linphone has no sound card here, so
    // it sends none).
    std::thread::sleep(Duration::from_secs(1));
    let a = alice.cmd("terminate 1");
    assert!(a.contains("Status: Ok"), "{a}");
    bob.wait_for("BYE sip:bob");
    bob.wait_for("session closed");
    alice.wait_event(&["call-state-changed", "LinphoneCallReleased"]);
    // Media really flowed: the RTP statistics Linphone logs at the end.
    let deadline = Instant::now() + Duration::from_secs(10);
    let received = loop {
        let log = std::fs::read_to_string(&alice.log).unwrap_or_default();
        let n = log
            .lines()
            .filter(|l| {
                l.contains("ortp-message-received") && l.ends_with("packets") && !l.contains("rtcp")
            })
            .filter_map(|l| l.split_whitespace().rev().nth(1)?.parse::<u64>().ok())
            .max();
        if let Some(n) = n {
            break n;
        }
        assert!(
            Instant::now() < deadline,
            "no RTP statistics in Linphone's log"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(received >= 20, "Linphone received {received} RTP packets");
    alice.cmd("quit");
    bob.cmd("/quit");
}
