//! File transfer with a real liblinphone client (tests/linphone/ftclient.c,
//! built against Debian's liblinphone-dev) against a server started as the
//! README says: alice's Linphone uploads a file to the user listener and
//! offers it in a MESSAGE over TLS; bob's Linphone receives the offer and
//! downloads the file, which arrives byte for byte. A file the policy
//! blocks never leaves alice's client.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::harness::*;

/// The client, compiled once per test run.
fn ftclient() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/linphone/ftclient.c");
        let bin = std::env::temp_dir().join(format!("parapet-ftclient-{}", std::process::id()));
        let flags = Command::new("pkg-config")
            .args(["--cflags", "--libs", "linphone"])
            .output()
            .expect("pkg-config is installed (scripts/install-test-deps.sh)");
        assert!(
            flags.status.success(),
            "liblinphone-dev is installed (scripts/install-test-deps.sh): {}",
            out(&flags)
        );
        let flags = String::from_utf8_lossy(&flags.stdout).to_string();
        // Debian's linphone.pc leaves -llinphone out.
        let o = Command::new("cc")
            .args(["-O1", "-Wall", "-Wno-deprecated-declarations", "-o"])
            .arg(&bin)
            .arg(&src)
            .args(flags.split_whitespace())
            .arg("-llinphone")
            .output()
            .unwrap();
        assert!(o.status.success(), "ftclient did not build: {}", out(&o));
        bin
    })
}

/// A Linphone account for `user` on the README's server (TLS by name, the
/// server's CA), told the file-transfer server's URL (`misc`) or told to
/// fetch the server's provisioning document, which names it.
fn rc(s: &Server, user: &str, password: &str, misc: &str) -> PathBuf {
    let dir = s.dir.join(format!("ft-{user}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let rc = format!(
        "[sip]\nsip_port=-1\nsip_tcp_port=-1\nsip_tls_port=-1\nroot_ca={ca}\nverify_server_certs=1\n\
         verify_server_cn=1\ndefault_proxy=0\nguess_hostname=0\nregister_only_when_network_is_up=0\n\n\
         [net]\nipv6=0\n\n[rtp]\naudio_rtp_port=-1\nvideo_rtp_port=-1\n\n[sound]\nechocancellation=0\n\n\
         [video]\ncapture=0\ndisplay=0\nautomatically_initiate=0\nautomatically_accept=0\n\n\
         [storage]\nuri={db}\n\n[misc]\n{misc}\n\n\
         [proxy_0]\nreg_proxy=<sip:localhost:5061;transport=tls>\nreg_route=<sip:localhost:5061;transport=tls;lr>\n\
         reg_identity=sip:{user}@{DOMAIN}\nreg_expires=3600\nreg_sendregister=1\npublish=0\n\n\
         [auth_info_0]\nusername={user}\nuserid={user}\npasswd={password}\nrealm={DOMAIN}\ndomain={DOMAIN}\n",
        ca = s.data_dir().join("pki/ca.pem").display(),
        db = dir.join("chat.db").display(),
    );
    let path = dir.join("rc");
    std::fs::write(&path, rc).unwrap();
    path
}

fn registered(s: &Server, user: &str) -> bool {
    let o = s.admin(
        &["user", "registrations", &format!("sip:{user}@{DOMAIN}")],
        "",
    );
    out(&o).contains("tls")
}

fn send(s: &Server, rc: &Path, to: &str, file: &Path) -> (bool, String) {
    let o: Output = Command::new(ftclient())
        .arg(rc)
        .args(["send", &format!("sip:{to}@{DOMAIN}")])
        .arg(file)
        .env("FT_TIMEOUT", "40")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = s;
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).to_string(),
    )
}

#[test]
fn linphone_uploads_offers_and_linphone_downloads_the_file() {
    let s = Server::readme("linphone-files");
    s.add_user("alice", "correct horse battery");
    s.add_user("bob", "battery staple horse");
    // Alice's Linphone learns where to upload from the server's
    // provisioning document (fetched at start); bob's is told.
    let alice = rc(
        &s,
        "alice",
        "correct horse battery",
        "config-uri=https://localhost:4443/provisioning",
    );
    let bob_rc = rc(
        &s,
        "bob",
        "battery staple horse",
        "file_transfer_server_url=https://localhost:4443/files",
    );
    let inbox = s.dir.join("bob-inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let bob = Command::new(ftclient())
        .arg(&bob_rc)
        .arg("receive")
        .arg(&inbox)
        .env("FT_TIMEOUT", "60")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !registered(&s, "bob") {
        assert!(
            Instant::now() < deadline,
            "bob's Linphone did not register; log:\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // A document: uploaded, offered, downloaded, the same bytes.
    let doc = s.dir.join("minutes.pdf");
    let mut bytes = b"%PDF-1.4\n".to_vec();
    bytes.extend((0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    std::fs::write(&doc, &bytes).unwrap();
    let (ok, state) = send(&s, &alice, "bob", &doc);
    assert!(ok, "alice's Linphone: {state}\nserver log:\n{}", s.log());
    let received = bob.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&received.stdout).to_string();
    assert!(
        received.status.success()
            && said.contains("content-type: application/vnd.gsma.rcs-ft-http+xml")
            && said.contains("file-name: minutes.pdf"),
        "bob's Linphone: {said}\nserver log:\n{}",
        s.log()
    );
    assert!(
        std::fs::read(inbox.join("minutes.pdf")).unwrap() == bytes,
        "the file bob's Linphone saved differs from alice's"
    );
    // It is kept on the server under its id, once.
    let kept: Vec<_> = std::fs::read_dir(s.data_dir().join("files"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().unwrap().is_file())
        .collect();
    assert_eq!(kept.len(), 1);

    // A Windows program renamed as a document is refused at upload (403):
    // alice's Linphone shows the message as not delivered; nothing is kept.
    let disguised = s.dir.join("invoice.pdf");
    std::fs::write(&disguised, b"MZ\x90\x00\x03\x00\x00\x00 not a document").unwrap();
    let (ok, state) = send(&s, &alice, "bob", &disguised);
    assert!(
        !ok && (state.contains("NotDelivered") || state.contains("FileTransferError")),
        "{state}"
    );
    let kept = std::fs::read_dir(s.data_dir().join("files"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().unwrap().is_file())
        .count();
    assert_eq!(kept, 1);
    let metrics = s.http_get("/metrics", None).1;
    let metric = |name| crate::federation::metric(&metrics, name);
    assert_eq!(
        (
            metric("parapet_files_uploaded_total"),
            metric("parapet_files_upload_refused_total"),
            metric("parapet_files_downloaded_total")
        ),
        (1, 1, 1),
        "{metrics}"
    );
}
