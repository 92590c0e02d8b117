//! The certificates a server started as the README says makes for itself:
//! its TLS, WSS and HTTPS listeners meet Mozilla's "intermediate" profile
//! as sslyze judges it (certificate path to the private CA included); a
//! server certificate from before the current rules (two years, no Key
//! Usage, Extended Key Usage or Authority Key Identifier) is replaced at
//! start by one from the same CA, which clients trusting that CA accept.

use std::path::PathBuf;
use std::process::Command;

use crate::harness::*;

fn sslyze() -> PathBuf {
    let venv = std::env::var_os("PARAPET_SSLYZE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME"))
                .join(".cache/parapet/sslyze-venv")
        });
    let bin = venv.join("bin/sslyze");
    assert!(
        bin.exists(),
        "sslyze is not installed at {}: run scripts/install-test-deps.sh",
        bin.display()
    );
    bin
}

#[test]
fn the_listeners_meet_the_mozilla_intermediate_profile_under_sslyze() {
    let s = Server::readme("sslyze");
    let o = Command::new(sslyze())
        .args([
            "--quiet",
            "--mozilla_config=intermediate",
            "--certinfo_ca_file",
        ])
        .arg(s.data_dir().join("pki/ca.pem"))
        // TLS (SIP), WSS and the user listener (HTTPS), by a name in the
        // certificate.
        .args(["localhost:5061", "localhost:8443", "localhost:4443"])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for port in [5061, 8443, 4443] {
        assert!(
            report.contains(&format!("localhost:{port}: OK - Compliant.")),
            "{report}"
        );
    }
}

fn openssl(dir: &std::path::Path, args: &[&str]) -> String {
    let o = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn an_old_server_certificate_is_renewed_from_the_same_ca_at_start() {
    let mut s = Server::new("cert-renew");
    let pki = s.data_dir().join("pki");
    let fresh = openssl(&pki, &["x509", "-in", "server.pem", "-noout", "-text"]);
    for ext in [
        "X509v3 Authority Key Identifier",
        "Digital Signature",
        "TLS Web Server Authentication, TLS Web Client Authentication",
    ] {
        assert!(fresh.contains(ext), "{ext} missing:\n{fresh}");
    }
    let dates = openssl(
        &pki,
        &[
            "x509",
            "-in",
            "server.pem",
            "-noout",
            "-startdate",
            "-enddate",
        ],
    );
    assert!(!dates.is_empty());
    // Stopped; its certificate replaced by one of the old kind from the
    // same CA (two years, its names, no other extension).
    s.kill9();
    let old = pki.join("old.pem");
    std::fs::write(
        pki.join("old.ext"),
        "subjectAltName=DNS:example.test,DNS:localhost,IP:127.0.0.1,URI:sip:example.test\n",
    )
    .unwrap();
    openssl(
        &pki,
        &[
            "req",
            "-new",
            "-key",
            "server-key.pem",
            "-subj",
            "/CN=example.test",
            "-out",
            "old.csr",
        ],
    );
    openssl(
        &pki,
        &[
            "x509",
            "-req",
            "-in",
            "old.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-days",
            "730",
            "-extfile",
            "old.ext",
            "-out",
            "old.pem",
        ],
    );
    std::fs::copy(&old, pki.join("server.pem")).unwrap();
    s.start();
    let renewed = std::fs::read(pki.join("server.pem")).unwrap();
    assert_ne!(renewed, std::fs::read(&old).unwrap(), "replaced at start");
    let text = openssl(&pki, &["x509", "-in", "server.pem", "-noout", "-text"]);
    assert!(text.contains("TLS Web Server Authentication"), "{text}");
    let verified = openssl(&pki, &["verify", "-CAfile", "ca.pem", "server.pem"]);
    assert!(verified.contains("server.pem: OK"), "{verified}");
    assert!(
        s.log()
            .contains("server certificate renewed from the private CA"),
        "{}",
        s.log()
    );
    // A client that trusts the CA connects as before, to the new one.
    let mut c = s.tls_to(s.tls);
    let r = crate::defaults::exchange(
        &mut c,
        &crate::defaults::register("TLS", "127.0.0.1:5999", 1, None, "t", None),
    );
    assert!(r.starts_with("SIP/2.0 401"), "{r}");
}
