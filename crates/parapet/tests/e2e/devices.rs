//! Device certificates: baresip enrolled by the README's recipe signs in
//! with no password, messages and calls, and loses its connection the
//! moment its account is disabled; a policy of certificates only refuses
//! the right password; enrollment follows the policy (second factor,
//! managed devices, device cap) and refuses bad input precisely.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::baresip::{wait_count, Baresip};
use crate::defaults::{answer, challenges, exchange, register, ReadWrite};
use crate::harness::*;
use crate::user_api::sign_in;

const ALICE: &str = "sip:alice@example.test";

/// A TLS connection to `port` presenting `cert_and_key` (PEM: the
/// certificate, then its key), trusting the server's CA.
pub(crate) fn tls_as_device(
    s: &Server,
    port: u16,
    cert_and_key: &str,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in
        rustls_pki_types::CertificateDer::pem_file_iter(s.data_dir().join("pki/ca.pem")).unwrap()
    {
        roots.add(cert.unwrap()).unwrap();
    }
    let chain: Vec<_> = rustls_pki_types::CertificateDer::pem_slice_iter(cert_and_key.as_bytes())
        .map(|c| c.unwrap())
        .collect();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(cert_and_key.as_bytes()).unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .unwrap();
    let name = rustls_pki_types::ServerName::try_from(s.domain.clone()).unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    let tcp = TcpStream::connect((s.host.as_str(), port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

/// A key and request for `cn` (ECDSA P-256, as the README's recipe makes).
fn key_and_csr(cn: &str) -> (rcgen::KeyPair, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    let csr = p.serialize_request(&key).unwrap().pem().unwrap();
    (key, csr)
}

/// POSTs a device enrollment; returns (status, JSON).
fn enroll(s: &Server, token: &str, body: Value) -> (u16, Value) {
    let (code, head, text) = s.https("POST", "/user/v1/devices", Some(token), &body.to_string());
    if code >= 400 {
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/problem+json"),
            "{head}\n{text}"
        );
    }
    (code, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Enrolls a device for the signed-in user; returns its id and PEM
/// (certificate then key).
pub(crate) fn enroll_ok(s: &Server, token: &str, name: &str) -> (String, String) {
    let (key, csr) = key_and_csr(name);
    let (code, v) = enroll(s, token, json!({ "name": name, "csr": csr }));
    assert_eq!(code, 201, "{v}");
    let pem = format!(
        "{}{}",
        v["certificate"].as_str().unwrap(),
        key.serialize_pem()
    );
    (v["id"].as_str().unwrap().to_string(), pem)
}

/// Sets the global authentication policy to device certificates alone.
pub(crate) fn certificates_only(s: &Server) {
    let o = s.admin(
        &[
            "policy",
            "set",
            "authentication",
            "global",
            "methods=client-certificate",
        ],
        "",
    );
    assert!(o.status.success(), "{}", out(&o));
}

/// The log without terminal colours (a server started as the README
/// says logs for a terminal).
fn plain_log(s: &Server) -> String {
    let log = s.log();
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn wait_log(s: &Server, text: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let log = plain_log(s);
        if let Some(line) = log.lines().find(|l| l.contains(text)) {
            return line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "the log never said {text:?}:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn devices(s: &Server) -> Vec<Value> {
    let o = s.admin(&["user", "devices", ALICE, "--output", "json"], "");
    assert!(o.status.success(), "{}", out(&o));
    serde_json::from_slice::<Value>(&o.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn a_device_certificate_signs_baresip_in_and_goes_with_the_account() {
    let s = Server::readme("devices");
    s.add_user("alice", "correct-horse-battery");
    s.add_user("bob", "battery-staple-horse");
    let mut bob = Baresip::start(&s, "bob", "battery-staple-horse", "alice");
    bob.cmd("/answermode auto");
    let mut alice = Baresip::start_with_device(&s, "alice", "correct-horse-battery", "bob", None);
    assert!(
        !alice.output().contains("401 Unauthorized"),
        "signed in by the certificate, never challenged:\n{}",
        alice.output()
    );
    alice.cmd("/message hello-from-alice");
    bob.wait_for("sip:alice@example.test: \"hello-from-alice\"");
    bob.cmd("/message hello-from-bob");
    alice.wait_for("sip:bob@example.test: \"hello-from-bob\"");
    assert!(
        !alice.output().contains("407 Proxy Authentication Required"),
        "her MESSAGE needed no password either:\n{}",
        alice.output()
    );
    alice.cmd("/dial sip:bob@example.test");
    bob.wait_for("Call established: sip:alice@example.test");
    alice.wait_for("Call established: sip:bob@example.test");
    bob.wait_for("incoming rtp for 'audio' established");
    alice.cmd("/hangup");
    bob.wait_for("session closed");
    // The administrator sees the device, and when it was last seen with
    // what software.
    let list = devices(&s);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["name"], "alice-laptop");
    assert!(list[0]["last_seen"].is_i64(), "{list:?}");
    assert!(
        list[0]["user_agent"]
            .as_str()
            .unwrap_or("")
            .contains("baresip"),
        "{list:?}"
    );
    let pem = std::fs::read_to_string(s.dir.join("baresip-alice/device.pem")).unwrap();
    // Disabled: her connection closes within a second.
    let t = Instant::now();
    let o = s.admin(&["user", "disable", ALICE], "");
    assert!(o.status.success(), "{}", out(&o));
    let line = wait_log(&s, "device certificates revoked", Duration::from_secs(1));
    assert!(line.contains("connections=1"), "{line}");
    assert!(t.elapsed() < Duration::from_secs(2));
    assert_eq!(devices(&s)[0]["revoked_reason"], "disabled");
    // Reconnecting with it fails at the handshake, with the reason logged.
    let refused = |s: &Server| {
        let mut c = tls_as_device(s, s.tls, &pem);
        let _ = c.write_all(register("TLS", "127.0.0.1:5999", 1, None, "t", None).as_bytes());
        let mut buf = [0u8; 512];
        assert!(
            !matches!(c.read(&mut buf), Ok(n) if n > 0),
            "a revoked certificate got an answer"
        );
    };
    refused(&s);
    wait_log(
        &s,
        "TLS handshake refused: client certificate",
        Duration::from_secs(2),
    );
    drop(alice);
    // Enabled again, the old certificate stays revoked; a new enrollment
    // works.
    let o = s.admin(&["user", "enable", ALICE], "");
    assert!(o.status.success(), "{}", out(&o));
    refused(&s);
    let _ = std::fs::remove_dir_all(s.dir.join("baresip-alice"));
    let mut alice = Baresip::start_with_device(&s, "alice", "correct-horse-battery", "bob", None);
    alice.cmd("/message hello-again");
    wait_count(&bob, "hello-again", 1);
    alice.cmd("/quit");
    bob.cmd("/quit");
}

#[test]
fn with_certificates_only_the_right_password_is_refused_and_the_certificate_works() {
    let s = Server::new("devices-only");
    s.add_user("alice", "correct-horse-battery");
    certificates_only(&s);
    // The right password over TLS: refused at once, with the reason.
    let mut c = s.tls_to(s.tls);
    let r = exchange(
        &mut c,
        &register("TLS", "127.0.0.1:5999", 1, None, "t", None),
    );
    assert!(
        r.starts_with("SIP/2.0 403 Forbidden (Device Certificate Required)"),
        "{r}"
    );
    let nonce = "deadbeef";
    let r = exchange(
        &mut c,
        &register(
            "TLS",
            "127.0.0.1:5999",
            2,
            None,
            "t",
            Some(&answer(
                auth::digest::Algorithm::Sha256,
                nonce,
                "correct-horse-battery",
            )),
        ),
    );
    assert!(
        r.starts_with("SIP/2.0 403 Forbidden (Device Certificate Required)"),
        "{r}"
    );
    // The user page still signs her in with the password: that is where
    // she gets a certificate.
    let token = sign_in(&s, "alice", "correct-horse-battery");
    let (_, pem) = enroll_ok(&s, &token, "alice-phone");
    let mut d = tls_as_device(&s, s.tls, &pem);
    let r = exchange(
        &mut d,
        &register("TLS", "127.0.0.1:5999", 3, None, "t", None),
    );
    assert!(r.starts_with("SIP/2.0 200 OK"), "{r}");
    // A device that cannot make a request gets a PKCS#12 bundle; what a
    // device imports from it (openssl here) signs in too.
    let (code, _, text) = s.https(
        "POST",
        "/user/v1/devices/bundle",
        Some(&token),
        &json!({ "name": "alice-tablet" }).to_string(),
    );
    assert_eq!(code, 201, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    let p12 = s.dir.join("tablet.p12");
    std::fs::write(&p12, data_decode(v["pkcs12"].as_str().unwrap())).unwrap();
    let opened = std::process::Command::new("openssl")
        .args(["pkcs12", "-in"])
        .arg(&p12)
        .args(["-nodes", "-passin"])
        .arg(format!("pass:{}", v["passphrase"].as_str().unwrap()))
        .output()
        .unwrap();
    assert!(
        opened.status.success(),
        "{}",
        String::from_utf8_lossy(&opened.stderr)
    );
    let tablet = String::from_utf8_lossy(&opened.stdout).into_owned();
    let wrong = std::process::Command::new("openssl")
        .args(["pkcs12", "-in"])
        .arg(&p12)
        .args(["-nodes", "-passin", "pass:not-the-passphrase"])
        .output()
        .unwrap();
    assert!(
        !wrong.status.success(),
        "the bundle opens only with its passphrase"
    );
    let mut t = tls_as_device(&s, s.tls, &tablet);
    let r = exchange(
        &mut t,
        &register("TLS", "127.0.0.1:5998", 5, None, "t", None),
    );
    assert!(r.starts_with("SIP/2.0 200 OK"), "{r}");
    // Her certificate is hers only: a REGISTER for bob over it is refused.
    s.add_user("bob", "battery-staple-horse");
    let bob = register("TLS", "127.0.0.1:5999", 4, None, "t", None).replace("alice@", "bob@");
    let r = exchange(&mut d, &bob);
    assert!(
        r.starts_with("SIP/2.0 403 Forbidden (Certificate Does Not Match the Sender)"),
        "{r}"
    );
    assert!(challenges(&r).is_empty());
    // `revoke-devices` revokes them all: both connections close at once.
    let o = s.admin(&["user", "revoke-devices", ALICE], "");
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("revoked every device"), "{}", out(&o));
    let mut buf = [0u8; 64];
    for c in [&mut d, &mut t] {
        assert!(!matches!(c.read(&mut buf), Ok(n) if n > 0), "closed");
    }
}

/// Standard base64, as the API answers binary data.
fn data_decode(b64: &str) -> Vec<u8> {
    let o = std::process::Command::new("base64")
        .arg("-d")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(b64.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(o.status.success());
    o.stdout
}

#[test]
fn enrollment_follows_the_policy_and_refuses_bad_input_precisely() {
    let s = Server::new("devices-enroll");
    s.add_user("alice", "correct-horse-battery");
    s.add_user("bob", "battery-staple-horse");
    let policy = |fields: &[&str]| {
        let mut args = vec!["policy", "set", "authentication", "global"];
        args.extend_from_slice(fields);
        let o = s.admin(&args, "");
        assert!(o.status.success(), "{}", out(&o));
    };
    policy(&["second_factor=true"]);
    let token = sign_in(&s, "alice", "correct-horse-battery");
    let (_, csr) = key_and_csr("alice-laptop");
    // No second factor yet: enrollment is refused until one is set up.
    let (code, v) = enroll(&s, &token, json!({ "name": "laptop", "csr": csr }));
    assert_eq!(code, 403, "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("set up an authenticator"),
        "{v}"
    );
    let (code, _, text) = s.https("POST", "/user/v1/second-factor", Some(&token), "");
    assert_eq!(code, 201, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(v["qr_svg"].as_str().unwrap().starts_with("<?xml"), "{v}");
    assert!(v["uri"]
        .as_str()
        .unwrap()
        .starts_with("otpauth://totp/Parapet:alice%40example.test?"));
    let secret = rbac::totp::decode(v["secret"].as_str().unwrap()).unwrap();
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let (code, _, text) = s.https(
        "POST",
        "/user/v1/second-factor/confirm",
        Some(&token),
        &json!({ "code": "000000" }).to_string(),
    );
    assert!(
        code == 400 || rbac::totp::code(&secret, now()) == "000000",
        "{text}"
    );
    let first = rbac::totp::code(&secret, now());
    let (code, _, text) = s.https(
        "POST",
        "/user/v1/second-factor/confirm",
        Some(&token),
        &json!({ "code": first }).to_string(),
    );
    assert_eq!(code, 200, "{text}");
    // This session now counts as signed in with the second factor.
    let (code, v) = enroll(&s, &token, json!({ "name": "laptop", "csr": csr }));
    assert_eq!(code, 201, "{v}");
    // A new sign-in needs a code; the one used to confirm is refused (a
    // code works once), a fresh step's is accepted.
    let signin = |code: Option<&str>| {
        let mut b = json!({ "user": "alice", "password": "correct-horse-battery" });
        if let Some(c) = code {
            b["totp"] = c.into();
        }
        s.https("POST", "/user/v1/session", None, &b.to_string())
    };
    let (code, _, text) = signin(None);
    assert_eq!(code, 401, "{text}");
    assert!(text.contains("\"second_factor\":\"totp\""), "{text}");
    let (code, _, text) = signin(Some(&first));
    assert_eq!(code, 401, "a replayed code: {text}");
    assert!(text.contains("used already"), "{text}");
    let next = rbac::totp::code(&secret, now() + rbac::totp::STEP);
    let (code, _, text) = signin(Some(&next));
    assert_eq!(code, 201, "{text}");
    let strong = serde_json::from_str::<Value>(&text).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    // Bad requests, each answered precisely.
    let bad = |body: Value, want: u16, says: &str| {
        let (code, v) = enroll(&s, &strong, body);
        assert_eq!(code, want, "{v}");
        let detail = v["detail"].as_str().unwrap();
        assert!(detail.contains(says), "{detail:?} should say {says:?}");
    };
    bad(
        json!({ "name": "x", "csr": "not a request" }),
        400,
        "not a PKCS#10 request",
    );
    bad(
        json!({ "name": "x", "csr": "a".repeat(17_000) }),
        400,
        "larger than",
    );
    let (_, for_bob) = key_and_csr("bob@example.test");
    bad(
        json!({ "name": "x", "csr": for_bob }),
        403,
        "names \"bob@example.test\", not you",
    );
    let weak = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../pki/tests/data/rsa1024.csr"
    ))
    .unwrap();
    bad(
        json!({ "name": "x", "csr": weak }),
        400,
        "an RSA key of 1024 bits",
    );
    bad(json!({ "name": "", "csr": csr }), 400, "name:");
    bad(
        json!({ "name": "x", "csr": csr, "pkcs12": true }),
        400,
        "unknown field",
    );
    // Managed devices: a code from an administrator, once.
    policy(&["managed_devices=true"]);
    bad(
        json!({ "name": "x", "csr": csr }),
        403,
        "managed devices only",
    );
    let o = s.admin(&["device", "enrollment-code", ALICE, "--expires", "1h"], "");
    assert!(o.status.success(), "{}", out(&o));
    let code = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert_eq!(code.len(), 23, "{code}");
    bad(
        json!({ "name": "x", "csr": csr, "enrollment_code": "AAAAA-AAAAA-AAAAA-AAAAA" }),
        403,
        "wrong, expired or used",
    );
    let (status, v) = enroll(
        &s,
        &strong,
        json!({ "name": "phone", "csr": csr, "enrollment_code": code.to_lowercase() }),
    );
    assert_eq!(status, 201, "{v}");
    let phone = v["id"].as_str().unwrap().to_string();
    bad(
        json!({ "name": "x", "csr": csr, "enrollment_code": code }),
        403,
        "wrong, expired or used",
    );
    // The device cap.
    policy(&["managed_devices=false", "max_devices=2"]);
    bad(
        json!({ "name": "third", "csr": csr }),
        409,
        "the most the policy allows",
    );
    // The user revokes one device, then signs out everywhere.
    let (status, _, text) = s.https(
        "DELETE",
        &format!("/user/v1/devices/{phone}"),
        Some(&strong),
        "",
    );
    assert_eq!(status, 204, "{text}");
    let (status, _, _) = s.https(
        "DELETE",
        &format!("/user/v1/devices/{phone}"),
        Some(&strong),
        "",
    );
    assert_eq!(status, 404);
    let (status, _, text) = s.https("POST", "/user/v1/sign-out-everywhere", Some(&strong), "");
    assert_eq!(status, 204, "{text}");
    let mut reasons: Vec<String> = devices(&s)
        .iter()
        .map(|d| d["revoked_reason"].as_str().unwrap_or("").to_string())
        .collect();
    reasons.sort();
    assert_eq!(reasons, ["sign-out", "user"], "{reasons:?}");
    let (status, _, _) = s.https("GET", "/user/v1/devices", Some(&strong), "");
    assert_eq!(status, 401, "every session ended");
    // Guessing codes with the right password is held to the lockout: the
    // right password does not reset the count, and after the threshold (5)
    // even the right code is refused.
    let valid: Vec<String> = [now() - 30, now(), now() + 30, now() + 60]
        .iter()
        .map(|t| rbac::totp::code(&secret, *t))
        .collect();
    let wrong = (0..)
        .map(|n: u32| format!("{:06}", n * 7919 % 1_000_000))
        .find(|c| !valid.contains(c))
        .unwrap();
    for _ in 0..5 {
        let (code, _, text) = signin(Some(&wrong));
        assert_eq!(code, 401, "{text}");
    }
    let (code, _, text) = signin(Some(&rbac::totp::code(&secret, now() + 60)));
    assert_eq!(code, 403, "locked out: {text}");
    assert!(text.contains("too many failed sign-ins"), "{text}");
    // Each step is in the audit log.
    let o = s.admin(&["audit", "list", "--output", "json"], "");
    let audit = String::from_utf8_lossy(&o.stdout);
    for action in [
        "devices.enroll",
        "devices.revoke",
        "devices.enrollment-code",
        "users.second-factor.enroll",
    ] {
        assert!(
            audit.contains(action),
            "{action} missing from the audit log"
        );
    }
}

#[test]
fn the_page_walks_a_user_through_an_authenticator_and_a_device_in_the_browser() {
    let s = Server::new("devices-page");
    s.add_user("alice", "correct-horse-battery");
    let o = s.admin(
        &[
            "policy",
            "set",
            "authentication",
            "global",
            "second_factor=true",
        ],
        "",
    );
    assert!(o.status.success(), "{}", out(&o));
    let browser = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser");
    assert!(
        browser.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run scripts/install-test-deps.sh"
    );
    let (key, csr) = key_and_csr("alice-laptop");
    let csr_file = s.dir.join("device.csr");
    std::fs::write(&csr_file, &csr).unwrap();
    let download = s.dir.join("downloaded.pem");
    let bundle = s.dir.join("phone.p12");
    let shot = s.dir.join("devices.png");
    let run = std::process::Command::new("node")
        .arg(browser.join("devices.mjs"))
        .env("PAGE_URL", format!("https://127.0.0.1:{}/", s.web))
        .env("PAGE_USER", ALICE)
        .env("PAGE_PASSWORD", "correct-horse-battery")
        .env("PAGE_CSR", &csr_file)
        .env("PAGE_DOWNLOAD", &download)
        .env("PAGE_BUNDLE", &bundle)
        .env("PAGE_CERT", s.data_dir().join("pki/server.pem"))
        .env("PAGE_SHOT", &shot)
        .output()
        .expect("node is installed (scripts/install-test-deps.sh)");
    let transcript = format!(
        "{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        run.status.success(),
        "the browser run failed:\n{transcript}\nserver log:\n{}",
        s.log()
    );
    assert!(transcript.contains("ok: signed out"), "{transcript}");
    assert!(shot.exists());
    // What was downloaded is the certificate the server issued and then
    // revoked at the user's request; with its key it no longer connects.
    let pem = std::fs::read_to_string(&download).unwrap();
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    let list = devices(&s);
    assert_eq!(list.len(), 2, "{list:?}");
    let laptop = list.iter().find(|d| d["name"] == "Alice laptop").unwrap();
    assert_eq!(laptop["fingerprint"], pki_hex(&der), "{list:?}");
    assert_eq!(laptop["revoked_reason"], "user", "{list:?}");
    // The bundle opens with the passphrase the page showed (openssl, as a
    // device's import would) and holds a key and the phone's certificate,
    // revoked by signing out everywhere.
    let passphrase = transcript
        .lines()
        .find_map(|l| l.strip_prefix("passphrase: "))
        .unwrap()
        .to_string();
    let opened = std::process::Command::new("openssl")
        .args(["pkcs12", "-in"])
        .arg(&bundle)
        .args(["-nodes", "-passin", &format!("pass:{passphrase}")])
        .output()
        .unwrap();
    let pem = String::from_utf8_lossy(&opened.stdout);
    assert!(
        opened.status.success(),
        "{}",
        String::from_utf8_lossy(&opened.stderr)
    );
    assert!(
        pem.contains("PRIVATE KEY") && pem.contains("Alice phone"),
        "{pem}"
    );
    let phone = list.iter().find(|d| d["name"] == "Alice phone").unwrap();
    assert_eq!(phone["revoked_reason"], "sign-out", "{list:?}");
    let mut c = tls_as_device(&s, s.tls, &format!("{pem}{}", key.serialize_pem()));
    let _ = c.write_all(register("TLS", "127.0.0.1:5999", 1, None, "t", None).as_bytes());
    let mut buf = [0u8; 512];
    assert!(
        !matches!(c.read(&mut buf), Ok(n) if n > 0),
        "a revoked certificate got an answer"
    );
    // Signing out everywhere ended the session the page had.
    let o = s.admin(&["audit", "list", "--output", "json"], "");
    let audit = String::from_utf8_lossy(&o.stdout);
    assert!(audit.contains("sign-out"), "{audit}");
}

/// SHA-256 of a certificate, lower-case hex (as the device list shows it).
fn pki_hex(der: &[u8]) -> String {
    use std::fmt::Write;
    let d = ring::digest::digest(&ring::digest::SHA256, der);
    let d = d.as_ref();
    d.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// An organisation's CA for the bring-your-own-PKI test.
struct OrgCa {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

fn org_ca(name: &str) -> OrgCa {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    OrgCa {
        cert: p.self_signed(&key).unwrap(),
        key,
    }
}

/// A user's certificate from `ca` naming `email`, with its key (PEM).
fn org_user(ca: &OrgCa, email: &str, serial: u64) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, format!("{email} laptop"));
    p.subject_alt_names = vec![rcgen::SanType::Rfc822Name(email.try_into().unwrap())];
    p.serial_number = Some(rcgen::SerialNumber::from(serial));
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    format!("{}{}", cert.pem(), key.serialize_pem())
}

/// The organisation's revocation list number `number` (DER), revoking
/// `serials`, current for a day.
fn org_crl(ca: &OrgCa, number: u64, serials: &[u64]) -> Vec<u8> {
    let now = time::OffsetDateTime::now_utc();
    rcgen::CertificateRevocationListParams {
        this_update: now - time::Duration::minutes(1),
        next_update: now + time::Duration::days(1),
        crl_number: rcgen::SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs: serials
            .iter()
            .map(|s| rcgen::RevokedCertParams {
                serial_number: rcgen::SerialNumber::from(*s),
                revocation_time: now - time::Duration::minutes(1),
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    }
    .signed_by(&ca.cert, &ca.key)
    .unwrap()
    .der()
    .to_vec()
}

/// Whether a TLS connection presenting `pem` gets an answer to a REGISTER
/// for `user`; returns the answer's first line.
fn register_as(s: &Server, pem: &str, user: &str) -> Option<String> {
    let mut c = tls_as_device(s, s.tls, pem);
    let req = register("TLS", "127.0.0.1:5999", 1, None, "t", None)
        .replace("alice@", &format!("{user}@"));
    if c.write_all(req.as_bytes()).is_err() {
        return None;
    }
    let mut buf = [0u8; 2048];
    match c.read(&mut buf) {
        Ok(n) if n > 0 => Some(
            String::from_utf8_lossy(&buf[..n])
                .lines()
                .next()
                .unwrap_or("")
                .to_string(),
        ),
        _ => None,
    }
}

#[test]
fn certificates_of_the_organisations_ca_sign_users_in_unless_revoked_there_or_here() {
    let dir = std::env::temp_dir().join(format!("parapet-e2e-{}-org-pki", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ca = org_ca("Example Corp Issuing CA");
    std::fs::write(dir.join("org-ca.pem"), ca.cert.pem()).unwrap();
    let carol = org_user(&ca, "carol@example.test", 7);
    let dave = org_user(&ca, "dave@example.test", 9);
    let erin = org_user(&org_ca("Somebody Else's CA"), "erin@example.test", 7);
    // The organisation's list revokes dave's certificate; it is served
    // over HTTP, as a CRL distribution point would serve it.
    std::fs::write(dir.join("org.crl"), org_crl(&ca, 1, &[9])).unwrap();
    let port = free_port();
    let mut http = std::process::Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--directory",
        ])
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 is installed");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the HTTP server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let s = Server::with_config(
        "devices-byo",
        &format!(
            "[client_certificates]\ntrusted_cas = [\"{}\"]\nmap_by = \"email\"\ncrls = [\"http://127.0.0.1:{port}/org.crl\"]\n",
            dir.join("org-ca.pem").display()
        ),
    );
    let _ = http.kill();
    let _ = http.wait();
    for u in ["carol", "dave", "erin"] {
        s.add_user(u, "correct-horse-battery");
    }
    // Carol's certificate from the organisation signs her in, no password.
    let answer = register_as(&s, &carol, "carol");
    assert_eq!(answer.as_deref(), Some("SIP/2.0 200 OK"), "{}", s.log());
    // Dave's is on the organisation's list; erin's is from another CA.
    assert_eq!(register_as(&s, &dave, "dave"), None);
    assert_eq!(register_as(&s, &erin, "erin"), None);
    let log = plain_log(&s);
    assert!(log.contains("revoked") || log.contains("Revoked"), "{log}");
    // Carol's certificate is recorded as one of her devices; revoked here,
    // her connection closes and the certificate is refused from then on,
    // though the organisation's list does not name it.
    let list = |s: &Server| {
        let o = s.admin(
            &[
                "user",
                "devices",
                "sip:carol@example.test",
                "--output",
                "json",
            ],
            "",
        );
        serde_json::from_slice::<Value>(&o.stdout).unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while list(&s).as_array().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "carol's certificate was not recorded"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let device = list(&s)[0].clone();
    assert_eq!(device["name"], "carol@example.test laptop", "{device}");
    let mut open = tls_as_device(&s, s.tls, &carol);
    let r = exchange(
        &mut open,
        &register("TLS", "127.0.0.1:5999", 2, None, "t", None).replace("alice@", "carol@"),
    );
    assert!(r.starts_with("SIP/2.0 200 OK"), "{r}");
    let o = s.admin(
        &[
            "user",
            "revoke-device",
            "sip:carol@example.test",
            device["id"].as_str().unwrap(),
        ],
        "",
    );
    assert!(o.status.success(), "{}", out(&o));
    let mut buf = [0u8; 64];
    assert!(
        !matches!(open.read(&mut buf), Ok(n) if n > 0),
        "her open connection was closed"
    );
    assert_eq!(register_as(&s, &carol, "carol"), None);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_certificate_the_organisations_list_revokes_later_loses_its_open_connection() {
    let dir = std::env::temp_dir().join(format!("parapet-e2e-{}-org-crl", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ca = org_ca("Example Corp Issuing CA");
    std::fs::write(dir.join("org-ca.pem"), ca.cert.pem()).unwrap();
    std::fs::write(dir.join("org.crl"), org_crl(&ca, 1, &[])).unwrap();
    let carol = org_user(&ca, "carol@example.test", 7);
    let s = Server::with_config(
        "devices-crl",
        &format!(
            "[client_certificates]\ntrusted_cas = [\"{}\"]\nmap_by = \"email\"\ncrls = [\"{}\"]\ncrl_refresh_secs = 10\n",
            dir.join("org-ca.pem").display(),
            dir.join("org.crl").display()
        ),
    );
    s.add_user("carol", "correct-horse-battery");
    let mut open = tls_as_device(&s, s.tls, &carol);
    let r = exchange(
        &mut open,
        &register("TLS", "127.0.0.1:5999", 1, None, "t", None).replace("alice@", "carol@"),
    );
    assert!(r.starts_with("SIP/2.0 200 OK"), "{r}\n{}", s.log());
    // The organisation revokes it; the next reading of its list (every
    // 10 s here) closes the connection and records the revocation.
    std::fs::write(dir.join("org.crl"), org_crl(&ca, 2, &[7])).unwrap();
    open.get_ref()
        .set_read_timeout(Some(Duration::from_secs(25)))
        .unwrap();
    let mut buf = [0u8; 64];
    let started = Instant::now();
    assert!(
        !matches!(open.read(&mut buf), Ok(n) if n > 0),
        "the connection stayed open"
    );
    assert!(
        started.elapsed() < Duration::from_secs(24),
        "closed by the read timeout, not by the server\n{}",
        s.log()
    );
    let o = s.admin(
        &[
            "user",
            "devices",
            "sip:carol@example.test",
            "--output",
            "json",
        ],
        "",
    );
    let list: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list[0]["revoked_reason"], "crl", "{list}");
    assert_eq!(register_as(&s, &carol, "carol"), None);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_new_password_or_removing_the_user_closes_the_devices_connections() {
    let s = Server::new("devices-account");
    s.add_user("alice", "correct-horse-battery");
    let token = sign_in(&s, "alice", "correct-horse-battery");
    let (_, pem) = enroll_ok(&s, &token, "alice-phone");
    let mut c = tls_as_device(&s, s.tls, &pem);
    let r = exchange(
        &mut c,
        &register("TLS", "127.0.0.1:5999", 1, None, "t", None),
    );
    assert!(r.starts_with("SIP/2.0 200 OK"), "{r}");
    // An administrator sets a new password: the certificate issued under
    // the old one is revoked and its connection closed.
    let o = s.admin(
        &["user", "passwd", ALICE, "--password-stdin"],
        "a-whole-new-passphrase\n",
    );
    assert!(o.status.success(), "{}", out(&o));
    let mut buf = [0u8; 64];
    assert!(
        !matches!(c.read(&mut buf), Ok(n) if n > 0),
        "closed at once"
    );
    assert_eq!(devices(&s)[0]["revoked_reason"], "password");
    assert_eq!(register_as(&s, &pem, "alice"), None);
    // A certificate enrolled since, then the user removed.
    let token = sign_in(&s, "alice", "a-whole-new-passphrase");
    let (_, pem) = enroll_ok(&s, &token, "alice-phone-2");
    let mut c = tls_as_device(&s, s.tls, &pem);
    let r = exchange(
        &mut c,
        &register("TLS", "127.0.0.1:5999", 2, None, "t", None),
    );
    assert!(r.starts_with("SIP/2.0 200 OK"), "{r}");
    let o = s.admin(&["user", "remove", ALICE], "");
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        !matches!(c.read(&mut buf), Ok(n) if n > 0),
        "closed at once"
    );
    assert_eq!(register_as(&s, &pem, "alice"), None);
    // Bundle requests with bad input get a precise answer.
    s.add_user("bob", "battery-staple-horse");
    let token = sign_in(&s, "bob", "battery-staple-horse");
    for (body, says) in [
        (json!({ "name": "" }), "name:"),
        (json!({ "name": "x", "csr": "-----BEGIN" }), "unknown field"),
        (
            json!({ "name": "x", "enrollment_code": "x".repeat(65) }),
            "enrollment_code",
        ),
        (json!(["x"]), "expected a JSON object"),
    ] {
        let (code, head, text) = s.https(
            "POST",
            "/user/v1/devices/bundle",
            Some(&token),
            &body.to_string(),
        );
        assert_eq!(code, 400, "{body}: {text}");
        assert!(
            head.to_ascii_lowercase()
                .contains("application/problem+json"),
            "{head}"
        );
        assert!(text.contains(says), "{body}: {text}");
    }
}

/// One SIP request over a WebSocket (RFC 7118) on `c`, already upgraded:
/// a masked text frame out, the first text frame back.
fn ws_exchange(c: &mut impl ReadWrite, sip: &str) -> String {
    let payload = sip.as_bytes();
    let mut frame = vec![0x81u8];
    if payload.len() < 126 {
        frame.push(0x80 | payload.len() as u8);
    } else {
        frame.push(0x80 | 126);
        frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    c.write_all(&frame).unwrap();
    let mut head = [0u8; 2];
    c.read_exact(&mut head).unwrap();
    let len = match head[1] & 0x7f {
        126 => {
            let mut l = [0u8; 2];
            c.read_exact(&mut l).unwrap();
            usize::from(u16::from_be_bytes(l))
        }
        127 => panic!("an answer over 64 KiB"),
        n => usize::from(n),
    };
    let mut body = vec![0u8; len];
    c.read_exact(&mut body).unwrap();
    String::from_utf8_lossy(&body).into_owned()
}

#[test]
fn a_device_certificate_signs_in_over_wss_too() {
    // Browsers cannot use WSS where the server asks for certificates
    // (Chromium cancels the handshake): asked only where configured.
    let s = Server::readme_with("devices-wss", "[client_certificates]\non_wss = true\n");
    s.add_user("alice", "correct-horse-battery");
    let o = s.admin(
        &[
            "policy",
            "set",
            "authentication",
            "global",
            "methods=client-certificate",
        ],
        "",
    );
    assert!(o.status.success(), "{}", out(&o));
    let token = sign_in(&s, "alice", "correct-horse-battery");
    let (id, pem) = enroll_ok(&s, &token, "alice-browser");
    let upgrade = |pem: &str| {
        let mut c = tls_as_device(&s, 8443, pem);
        write!(
            c,
            "GET / HTTP/1.1\r\nHost: {DOMAIN}:8443\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: sip\r\n\r\n"
        )
        .ok()?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match c.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => return None,
            }
        }
        String::from_utf8_lossy(&head).contains(" 101").then_some(c)
    };
    let mut c = upgrade(&pem).expect("the WebSocket upgrade");
    let r = ws_exchange(
        &mut c,
        &register("WSS", "df7jal23ls0d.invalid", 1, None, "t", None),
    );
    assert!(r.starts_with("SIP/2.0 200 OK"), "{r}");
    // Without a certificate, the policy (certificates only) refuses.
    let mut plain = s.tls_to(8443);
    write!(
        plain,
        "GET / HTTP/1.1\r\nHost: {DOMAIN}:8443\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: sip\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        plain.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let r = ws_exchange(
        &mut plain,
        &register("WSS", "df7jal23ls0d.invalid", 2, None, "t", None),
    );
    assert!(
        r.starts_with("SIP/2.0 403 Forbidden (Device Certificate Required)"),
        "{r}"
    );
    // Revoked by its user: the WebSocket closes, and the certificate is
    // refused at the next handshake.
    let (code, _, text) = s.https(
        "DELETE",
        &format!("/user/v1/devices/{id}"),
        Some(&token),
        "",
    );
    assert_eq!(code, 204, "{text}");
    let mut buf = [0u8; 64];
    match c.read(&mut buf) {
        // A WebSocket close frame, then the end.
        Ok(n) if n > 0 => {
            assert_eq!(buf[0], 0x88, "a close frame, not {:?}", &buf[..n]);
            assert!(!matches!(c.read(&mut buf), Ok(n) if n > 0), "closed");
        }
        _ => {}
    }
    assert!(upgrade(&pem).is_none());
}
