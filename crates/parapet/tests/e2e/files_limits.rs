//! The file server's limits and defences: bad input refused precisely
//! with nothing kept, clamd scanning (failing closed), device
//! certificates and quotas, and file offers to and from partners.

use std::io::Write;

use crate::files::*;
use crate::files_policy::{detail, zip_of};
use crate::harness::*;

#[test]
fn bad_uploads_are_refused_precisely_and_nothing_is_kept() {
    let s = Server::with_config("files-bad", DIGEST);
    users(&s);
    admin_ok(
        &s,
        &["policy", "set", "file_transfer", "global", "max_file_mb=1"],
    );
    let incoming = s.data_dir().join("files/incoming");
    let raw = |head: &str, body: &[u8]| -> Reply {
        let body_ct =
            format!("Content-Type: multipart/form-data;boundary={BOUNDARY}\r\n|AUTH|{head}");
        challenged(&s, ALICE, "POST", "/files", &body_ct, body).1
    };
    // Truncated: the closing boundary never comes.
    let mut truncated = multipart("a.txt", "text/plain", b"hello");
    truncated.truncate(truncated.len() - 10);
    let r = raw(
        &format!("Content-Length: {}\r\n", truncated.len()),
        &truncated,
    );
    assert!(
        r.status == 400 && detail(&r).contains("closing boundary"),
        "{r:?}"
    );
    // No part named File.
    let other = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data;name=\"Other\";filename=\"a.txt\"\r\n\r\nx\r\n--{BOUNDARY}--\r\n"
    );
    let r = raw(
        &format!("Content-Length: {}\r\n", other.len()),
        other.as_bytes(),
    );
    assert!(
        r.status == 400 && detail(&r).contains("no part named File"),
        "{r:?}"
    );
    // Not multipart at all.
    let (_, r) = challenged(
        &s,
        ALICE,
        "POST",
        "/files",
        "Content-Type: application/octet-stream\r\n|AUTH|Content-Length: 3\r\n",
        b"abc",
    );
    assert!(
        r.status == 400 && detail(&r).contains("multipart/form-data"),
        "{r:?}"
    );
    // Too large by its declared length: refused before any of it is read.
    let r = raw(&format!("Content-Length: {}\r\n", 3 << 20), b"");
    assert!(
        r.status == 400 && detail(&r).contains("larger than 1 MiB"),
        "{r:?}"
    );
    // Too large as it arrives (a length that hides it would be a lie: the
    // body is counted, not trusted).
    let big = multipart(
        "big.bin",
        "application/octet-stream",
        &vec![7u8; (1 << 20) + 10],
    );
    let r = raw(&format!("Content-Length: {}\r\n", big.len()), &big);
    assert!(
        r.status == 400 && detail(&r).contains("larger than 1 MiB"),
        "{r:?}"
    );
    // A name with path separators, control characters and markup: kept as
    // its last component, cleaned, and escaped in the pointer.
    let (_, r) = upload(
        &s,
        ALICE,
        "..\\../etc/<img src=x onerror=alert(1)>\u{1}&.txt",
        b"text",
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.text()
            .contains("<file-name>&lt;img src=x onerror=alert(1)&gt;&amp;.txt</file-name>"),
        "{}",
        r.text()
    );
    // A slow upload ends in bounded time: 15 s plus a second per 32 KiB
    // declared.
    let started = std::time::Instant::now();
    let slow = multipart("slow.txt", "text/plain", &[b'x'; 1000]);
    let mut c = s.tls_to(s.web);
    c.write_all(format!("POST /files HTTP/1.1\r\nHost: {DOMAIN}\r\n\r\n").as_bytes())
        .unwrap();
    let probe = read_reply(&mut c);
    let auth = authorization(
        &probe.headers("www-authenticate")[0],
        ALICE.user,
        ALICE.password,
        "POST",
        "/files",
    );
    c.write_all(
        format!(
            "POST /files HTTP/1.1\r\nHost: {DOMAIN}\r\nContent-Type: multipart/form-data;boundary={BOUNDARY}\r\n{auth}Content-Length: {}\r\n\r\n",
            slow.len()
        )
        .as_bytes(),
    )
    .unwrap();
    c.write_all(&slow[..100]).unwrap();
    c.get_ref()
        .set_read_timeout(Some(std::time::Duration::from_secs(40)))
        .unwrap();
    let r = read_reply(&mut c);
    assert_eq!(r.status, 408, "{r:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    // Nothing partial is left behind.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(std::fs::read_dir(&incoming).unwrap().count(), 0);
    let kept = std::fs::read_dir(s.data_dir().join("files"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().unwrap().is_file())
        .count();
    assert_eq!(kept, 1, "only the one accepted file");
}

/// clamd (Debian clamav-daemon) on a socket of its own, with one local
/// signature (the EICAR test file's MD5): nothing is downloaded.
struct Clamd {
    child: std::process::Child,
    socket: std::path::PathBuf,
}

impl Clamd {
    fn start(dir: &std::path::Path) -> Clamd {
        let db = dir.join("clamav-db");
        std::fs::create_dir_all(&db).unwrap();
        std::fs::write(
            db.join("parapet-test.hdb"),
            "44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n",
        )
        .unwrap();
        let socket = dir.join("clamd.sock");
        let conf = dir.join("clamd.conf");
        std::fs::write(
            &conf,
            format!(
                "LocalSocket {}\nForeground yes\nDatabaseDirectory {}\nLogFile {}\nTemporaryDirectory {}\nBytecode no\nStreamMaxLength 20M\nAlertEncrypted yes\n",
                socket.display(),
                db.display(),
                dir.join("clamd.log").display(),
                dir.display()
            ),
        )
        .unwrap();
        let child = std::process::Command::new("clamd")
            .arg(format!("--config-file={}", conf.display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("clamd is installed (scripts/install-test-deps.sh installs clamav-daemon)");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "clamd did not start: {}",
                std::fs::read_to_string(dir.join("clamd.log")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Clamd { child, socket }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Clamd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The EICAR anti-virus test file (harmless; every scanner detects it).
const EICAR: &[u8] = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

#[test]
fn uploads_are_scanned_by_clamd_and_refused_while_it_is_down() {
    let dir = std::env::temp_dir().join(format!("parapet-e2e-{}-clamd", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut clamd = Clamd::start(&dir);
    let s = Server::with_config(
        "files-clamd",
        &format!("{DIGEST}[files]\nclamd = \"{}\"\n", clamd.socket.display()),
    );
    users(&s);
    let (_, r) = upload(&s, ALICE, "report.pdf", &a_pdf(100_000));
    assert_eq!(r.status, 200, "{r:?}\n{}", s.log());
    let clean = url_of(&r.text());
    for (name, bytes) in [
        ("eicar.txt", EICAR.to_vec()),
        (
            "docs.zip",
            zip_of(&[("readme.txt", b"hi"), ("test-file.txt", EICAR)]),
        ),
    ] {
        let (_, r) = upload(&s, ALICE, name, &bytes);
        assert!(
            r.status == 403 && detail(&r).contains("the virus scanner found Eicar-Test-Signature"),
            "{name}: {r:?}"
        );
    }
    // clamd stops: uploads are refused (fail closed), nothing is kept; the
    // file scanned clean before is still offered and fetched.
    clamd.stop();
    let (_, r) = upload(&s, ALICE, "later.pdf", &a_pdf(1000));
    assert!(
        r.status == 503
            && r.headers("retry-after") == ["30"]
            && detail(&r).contains("virus scanner is unavailable"),
        "{r:?}"
    );
    let kept = std::fs::read_dir(s.data_dir().join("files"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().unwrap().is_file())
        .count();
    assert_eq!(kept, 1);
    // The refused upload's partial file is deleted as its request ends.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        std::fs::read_dir(s.data_dir().join("files/incoming"))
            .unwrap()
            .count(),
        0
    );
    let status = offer(&s, ALICE, "bob", "report.pdf", &clean);
    assert!(status.starts_with("SIP/2.0 202"), "{status}");
    assert_eq!(download(&s, BOB, &clean).status, 200);
    // The security view says scanning is on.
    let view = admin_ok(&s, &["security", "show"]);
    assert!(
        view.contains(&format!("clamd at {}", clamd.socket.display())),
        "{view}"
    );
}

#[test]
fn a_device_certificate_signs_the_file_server_in_and_quotas_hold() {
    let s = Server::with_config("files-device", DIGEST);
    users(&s);
    let token = crate::user_api::sign_in(&s, "alice", ALICE.password);
    let (_, pem) = crate::devices::enroll_ok(&s, &token, "alice-phone");
    // The probe is answered 204 at once: the certificate signed it in.
    let mut c = crate::devices::tls_as_device(&s, s.web, &pem);
    let host = format!("Host: {DOMAIN}:{}\r\n", s.web);
    c.write_all(
        format!("POST /files HTTP/1.1\r\nFrom: sip:alice@{DOMAIN}\r\n{host}\r\n").as_bytes(),
    )
    .unwrap();
    let probe = read_reply(&mut c);
    assert_eq!(probe.status, 204, "{probe:?}");
    let png = b"\x89PNG\r\n\x1a\n holiday picture".to_vec();
    let body = multipart("holiday.png", "image/png", &png);
    let mut req = format!(
        "POST /files HTTP/1.1\r\nFrom: sip:alice@{DOMAIN}\r\n{host}Content-Type: multipart/form-data;boundary={BOUNDARY}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    c.write_all(&req).unwrap();
    let up = read_reply(&mut c);
    assert_eq!(up.status, 200, "{up:?}");
    assert!(up.text().contains("<content-type>image/png</content-type>"));
    let url = url_of(&up.text());
    let path = &url[url.find("/files/").unwrap()..];
    c.write_all(format!("GET {path} HTTP/1.1\r\n{host}\r\n").as_bytes())
        .unwrap();
    let got = read_reply(&mut c);
    assert_eq!((got.status, got.body.clone()), (200, png));
    // Someone else's device is someone else: bob's certificate gets 404.
    let bob_token = crate::user_api::sign_in(&s, "bob", BOB.password);
    let (_, bob_pem) = crate::devices::enroll_ok(&s, &bob_token, "bob-phone");
    let mut b = crate::devices::tls_as_device(&s, s.web, &bob_pem);
    b.write_all(format!("GET {path} HTTP/1.1\r\n{host}\r\n").as_bytes())
        .unwrap();
    assert_eq!(read_reply(&mut b).status, 404);

    // Quotas: a day's uploads, then the total kept.
    admin_ok(
        &s,
        &[
            "policy",
            "set",
            "file_transfer",
            "global",
            "daily_quota_mb=1",
            "total_quota_mb=2",
        ],
    );
    let (_, r) = upload(&s, CAROL, "a.pdf", &a_pdf(700_000));
    assert_eq!(r.status, 200, "{r:?}");
    let (_, r) = upload(&s, CAROL, "b.pdf", &a_pdf(700_000));
    assert!(
        r.status == 400 && detail(&r).contains("in the last 24 hours; the most is 1 MiB"),
        "{r:?}"
    );
}

/// A file pointer from `from` on `s` to `to`@`domain`, a partner's user:
/// the status line and Warning of the last answer.
fn offer_to_partner(
    s: &Server,
    from: Account<'_>,
    to: &str,
    domain: &str,
    name: &str,
    url: &str,
) -> String {
    let (_, msgs) = s
        .sipp_start(
            "message_send_file_federated.xml",
            to,
            from.user,
            from.password,
            "127.0.0.1",
            free_port(),
            &[from.user, domain, name, url],
        )
        .finish();
    last_answer(&msgs)
}

#[test]
fn file_offers_to_and_from_partners_follow_the_federated_rules() {
    use crate::federation::{contact, federate_both, policy, settle, two_orgs, Meet, A, B};
    let (a, b, _net) = two_orgs("fed-files", Meet::Direct);
    a.add_user(ALICE.user, ALICE.password);
    b.add_user(BOB.user, BOB.password);
    federate_both(&a, &b);
    // Each accepts the other (privacy: strangers from outside are refused).
    contact(&a, &format!("sip:alice@{A}"), &format!("sip:bob@{B}"));
    contact(&b, &format!("sip:bob@{B}"), &format!("sip:alice@{A}"));
    settle();
    // Out: by default no files with partners; with `federated = same`,
    // still never a pointer to our files (a partner's user cannot sign in
    // here to fetch it).
    let (_, r) = upload(&a, ALICE, "report.pdf", &a_pdf(5000));
    assert_eq!(r.status, 200, "{r:?}");
    let url = url_of(&r.text());
    let answer = offer_to_partner(&a, ALICE, "bob", B, "report.pdf", &url);
    assert!(
        answer.starts_with("SIP/2.0 403 Forbidden (File Transfer Not Allowed)"),
        "{answer}\n{}",
        a.log()
    );
    policy(&a, &["file_transfer", "global", "federated=same"]);
    settle();
    let answer = offer_to_partner(&a, ALICE, "bob", B, "report.pdf", &url);
    assert!(
        answer.starts_with("SIP/2.0 403 Forbidden (Not the Sender's File)")
            && answer.contains("cannot sign in"),
        "{answer}"
    );
    // In: a partner's pointer to a file on its side. The partner lets it
    // out (its rules allow it, its IM filter leaves federated messages
    // alone); here the recipient's federated rules decide, then the IM
    // filter treats the pointer as a link.
    policy(&b, &["file_transfer", "global", "federated=same"]);
    policy(&b, &["im_filter", "global", "federated=false"]);
    policy(&a, &["file_transfer", "global", "federated=block_all"]);
    settle();
    let theirs = "https://files.partner.test/agenda.pdf";
    let answer = offer_to_partner(&b, BOB, "alice", A, "agenda.pdf", theirs);
    assert!(
        answer.starts_with("SIP/2.0 403 Forbidden (File Transfer Not Allowed)"),
        "{answer}\n{}",
        a.log()
    );
    policy(&a, &["file_transfer", "global", "federated=same"]);
    settle();
    let alice = register_then(&a, ALICE.user, ALICE.password, "receive_file_offer.xml");
    let answer = offer_to_partner(&b, BOB, "alice", A, "agenda.pdf", theirs);
    assert!(answer.starts_with("SIP/2.0 200"), "{answer}\n{}", a.log());
    let (ok, received) = alice.finish();
    assert!(
        ok && received.contains("agenda.pdf (1 bytes): _https://files.partner.test/agenda.pdf"),
        "{received}"
    );
    // A blocked type from a partner is refused like one from inside.
    let answer = offer_to_partner(
        &b,
        BOB,
        "alice",
        A,
        "agenda.pdf.exe",
        "https://files.partner.test/a.exe",
    );
    assert!(answer.contains("403"), "{answer}");
}
