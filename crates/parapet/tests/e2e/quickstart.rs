//! The README's quickstart, run line by line as written, in a fresh
//! directory: what a new operator types is what is tested.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

/// The command lines of the README's quickstart block, comments dropped.
fn quickstart_lines() -> Vec<String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let section = readme
        .split("## Quickstart")
        .nth(1)
        .expect("a Quickstart section");
    let block = section
        .split("```sh")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a sh block in the Quickstart");
    block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

struct Shell {
    dir: PathBuf,
}

impl Shell {
    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new(program);
        c.args(args)
            .current_dir(&self.dir)
            .env("HOME", self.dir.join("home"))
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("PARAPET_ADMIN_SESSION")
            .env_remove("PARAPET_ADMIN_TOKEN")
            .env_remove("PARAPET_ADMIN_URL")
            .env_remove("PARAPET_DATA_DIR");
        c
    }

    /// A line as bash runs it, with `input` on standard input.
    fn run(&self, line: &str, input: &str) -> Output {
        let mut c = self
            .command("bash", &["-c", line])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        c.wait_with_output().unwrap()
    }

    /// A line that asks on the terminal (passwords): run on a pseudo-terminal
    /// (util-linux `script`), `input` typed into it.
    fn run_on_terminal(&self, line: &str, input: &str) -> Output {
        let mut c = self
            .command("script", &["-qec", line, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = c.stdin.take().unwrap();
        // One answer a prompt, as a person types them.
        for answer in input.lines() {
            std::thread::sleep(Duration::from_millis(700));
            writeln!(stdin, "{answer}").unwrap();
        }
        drop(stdin);
        c.wait_with_output().unwrap()
    }
}

fn field<'a>(text: &'a str, label: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(label))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {label:?} in:\n{text}"))
}

#[test]
fn the_readme_quickstart_works_as_written() {
    let _ports = default_ports();
    let dir = std::env::temp_dir().join(format!("parapet-e2e-{}-quickstart", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("home")).unwrap();
    // `cargo build --release -p parapet` made ./target/release/parapet; the
    // binary under test stands in for it.
    std::fs::create_dir_all(dir.join("target/release")).unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_parapet"),
        dir.join("target/release/parapet"),
    )
    .unwrap();
    let sh = Shell { dir: dir.clone() };
    let mut server: Option<Child> = None;
    let (mut password, mut secret) = (String::new(), Vec::new());
    let mut last_step = 0;
    let lines = quickstart_lines();
    assert!(lines.len() >= 10, "{lines:?}");
    for line in &lines {
        let shown = |o: &Output| {
            format!(
                "{line}\nexit {:?}\n{}{}",
                o.status.code(),
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        };
        if line.starts_with("cargo build") {
            continue;
        }
        if let Some(bg) = line.strip_suffix('&') {
            let log = std::fs::File::create(dir.join("server.log")).unwrap();
            server = Some(
                sh.command("bash", &["-c", &format!("exec {bg}")])
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .unwrap(),
            );
            let deadline = Instant::now() + Duration::from_secs(90);
            while !std::net::TcpStream::connect("127.0.0.1:9060").is_ok_and(|mut c| {
                let _ =
                    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let mut r = String::new();
                let _ = std::io::Read::read_to_string(&mut c, &mut r);
                r.starts_with("HTTP/1.1 200")
            }) {
                assert!(
                    Instant::now() < deadline,
                    "the server did not start:\n{}",
                    std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            assert!(
                dir.join("parapet-data/pki/ca.pem").exists(),
                "the CA the README points at"
            );
            continue;
        }
        let o = if line.contains("admin login") {
            // The password recover printed, then the authenticator's code.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let step = (now / rbac::totp::STEP).max(last_step + 1);
            last_step = step;
            let code = rbac::totp::code(&secret, step * rbac::totp::STEP);
            sh.run_on_terminal(line, &format!("{password}\n{code}\n"))
        } else if line.contains("admin passwd") {
            let new = "a-new-and-longer-passphrase-for-root";
            let o = sh.run_on_terminal(line, &format!("{password}\n{new}\n{new}\n"));
            password = new.to_string();
            o
        } else {
            sh.run(line, "")
        };
        assert!(o.status.success(), "{}", shown(&o));
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        if line.contains("admin recover") {
            password = field(&text, "password:").to_string();
            secret = rbac::totp::decode(field(&text, "TOTP secret:")).unwrap();
        } else if line.contains("admin user list") {
            assert!(text.contains("sip:alice@example.test"), "{}", shown(&o));
        } else if line.contains("admin status") {
            assert!(
                text.contains("example.test") && text.contains("tls://0.0.0.0:5061"),
                "{}",
                shown(&o)
            );
        } else if line.contains("policy effective") {
            let l = text
                .lines()
                .find(|l| l.contains("lockout_threshold"))
                .unwrap_or("");
            assert!(l.contains('3') && l.contains("global"), "{}", shown(&o));
        } else if line.contains("security show") {
            assert!(text.contains("digest_md5_unencrypted"), "{}", shown(&o));
        } else if line.contains("admin login") {
            assert!(text.contains("signed in as root"), "{}", shown(&o));
        } else if line.contains("security check") {
            // Exit 0 above: the defaults have no high-severity finding.
            assert!(!text.contains("[HIGH]"), "{}", shown(&o));
        }
    }
    let mut srv = server.expect("the quickstart starts the server");
    let _ = srv.kill();
    let _ = srv.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
