//! The file-transfer policy on real uploads and relayed offers: per group
//! and direction, block-list, allow-list and block-all; renamed
//! executables, direction-override names, archives in archives, a zip
//! bomb; files offered straight between clients (MSRP, Lync). The
//! requests are Linphone's (`files.rs`).

use std::io::Write;

use crate::federation::metric;
use crate::files::*;
use crate::harness::*;

pub(crate) fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    use zip::write::SimpleFileOptions;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in entries {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

const PE: &[u8] = b"MZ\x90\x00\x03\x00\x00\x00This program cannot be run in DOS mode";

/// The detail of a problem+json answer.
pub(crate) fn detail(r: &Reply) -> String {
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
    v["detail"].as_str().unwrap_or_default().to_string()
}

#[test]
fn the_file_policy_decides_per_group_and_direction_on_upload_and_relay() {
    let s = Server::with_config("files-policy", DIGEST);
    users(&s);
    s.add_user("dave", "horse battery staple");
    let dave = Account {
        user: "dave",
        password: "horse battery staple",
    };
    // bob's group accepts PDFs only; dave's none at all.
    for args in [
        &["group", "create", "pdf-only"][..],
        &[
            "group",
            "add-member",
            "pdf-only",
            &format!("sip:bob@{DOMAIN}"),
        ],
        &["group", "create", "no-files"],
        &[
            "group",
            "add-member",
            "no-files",
            &format!("sip:dave@{DOMAIN}"),
        ],
        &[
            "policy",
            "set",
            "file_transfer",
            "named:pdf",
            "mode=allow_listed",
            "allowed_extensions=.pdf",
        ],
        &["grant", "add", "file_transfer", "pdf", "group:pdf-only"],
        &[
            "policy",
            "set",
            "file_transfer",
            "named:none",
            "mode=block_all",
        ],
        &["grant", "add", "file_transfer", "none", "group:no-files"],
    ] {
        admin_ok(&s, args);
    }

    // Upload: what the uploader's rules refuse never reaches the disk.
    let started = std::time::Instant::now();
    let mut bomb_writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    bomb_writer
        .start_file(
            "zeros.bin",
            zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated),
        )
        .unwrap();
    for _ in 0..64 {
        bomb_writer.write_all(&vec![0u8; 1 << 20]).unwrap();
    }
    let bomb = bomb_writer.finish().unwrap().into_inner();
    let inner = zip_of(&[("payload.exe", b"x")]);
    let nested = zip_of(&[("readme.txt", b"hi"), ("more.zip", &inner)]);
    let refused: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "setup.exe",
            b"just bytes".to_vec(),
            ".exe files are blocked",
        ),
        (
            "library.jar",
            b"PK not really".to_vec(),
            ".jar files are blocked",
        ),
        ("manual.pdf", PE.to_vec(), "is a .exe file by its content"),
        (
            "photo\u{202E}gpj.exe",
            b"\xff\xd8\xff".to_vec(),
            ".exe files are blocked",
        ),
        (
            "invoice.exe.pdf",
            b"%PDF-".to_vec(),
            ".exe files are blocked",
        ),
        (
            "report.pdf:evil.exe",
            b"%PDF-".to_vec(),
            ".exe files are blocked",
        ),
        ("docs.zip", nested, "payload.exe"),
        ("bomb.zip", bomb, "zip bomb"),
    ];
    for (name, bytes, says) in &refused {
        let (_, r) = upload(&s, ALICE, name, bytes);
        assert!(
            r.status == 403 && detail(&r).contains(says),
            "{name}: {} {}",
            r.status,
            detail(&r)
        );
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "the refusals took {:?}",
        started.elapsed()
    );
    let kept = || {
        std::fs::read_dir(s.data_dir().join("files"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_type().unwrap().is_file())
            .count()
    };
    assert_eq!(kept(), 0);
    // dave may send nothing; bob only PDFs.
    let (_, r) = upload(&s, dave, "a.pdf", b"%PDF-");
    assert_eq!(r.status, 403, "{r:?}");
    let (_, r) = upload(&s, BOB, "notes.txt", b"hello");
    assert_eq!(r.status, 403, "{r:?}");
    let (_, r) = upload(&s, BOB, "a.pdf", b"%PDF-1.4\n");
    assert_eq!(r.status, 200, "{r:?}");

    // Relay: the recipient's rules too. Alice's text file may go to carol
    // (default rules), not to bob (PDFs only) nor dave (none).
    let (_, r) = upload(&s, ALICE, "notes.txt", b"minutes of the meeting");
    assert_eq!(r.status, 200, "{r:?}");
    let url = url_of(&r.text());
    let status = offer(&s, ALICE, "bob", "notes.txt", &url);
    assert!(
        status.starts_with("SIP/2.0 403 Forbidden (File Type Not Allowed)"),
        "{status}"
    );
    let status = offer(&s, ALICE, "dave", "notes.txt", &url);
    assert!(
        status.starts_with("SIP/2.0 403 Forbidden (File Transfer Not Allowed)"),
        "{status}"
    );
    // A zip whose contents carol's rules block though alice's allow:
    // judged at relay from what the upload recorded.
    admin_ok(
        &s,
        &[
            "policy",
            "set",
            "file_transfer",
            "named:open",
            "blocked_extensions=.exe",
        ],
    );
    admin_ok(
        &s,
        &[
            "grant",
            "add",
            "file_transfer",
            "open",
            &format!("user:sip:alice@{DOMAIN}"),
        ],
    );
    let (_, r) = upload(
        &s,
        ALICE,
        "tools.zip",
        &zip_of(&[("deploy.ps1", b"Write-Host hi")]),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let tools = url_of(&r.text());
    let status = offer(&s, ALICE, "carol", "tools.zip", &tools);
    assert!(
        status.contains("403") && status.contains(".ps1"),
        "{status}"
    );
    // The pointer's declared name is judged too.
    let status = offer(&s, ALICE, "carol", "notes.exe", &url);
    assert!(status.contains("403"), "{status}");
    // Carol, by default rules, receives the text file and may fetch it;
    // bob, refused, may not.
    let carol = register_then(&s, CAROL.user, CAROL.password, "receive_file_offer.xml");
    let status = offer(&s, ALICE, "carol", "notes.txt", &url);
    assert!(status.starts_with("SIP/2.0 200"), "{status}");
    let (ok, _) = carol.finish();
    assert!(ok);
    assert_eq!(download(&s, CAROL, &url).body, b"minutes of the meeting");
    assert_eq!(download(&s, BOB, &url).status, 404);

    // A pointer to a file elsewhere is a link: the default IM filter
    // defuses it, so it arrives as text with the link made unclickable; a
    // blocked name is refused.
    let carol = register_then(&s, CAROL.user, CAROL.password, "receive_file_offer.xml");
    let status = offer(
        &s,
        ALICE,
        "carol",
        "agenda.pdf",
        "https://files.elsewhere.example/agenda.pdf",
    );
    assert!(status.starts_with("SIP/2.0 200"), "{status}");
    let (ok, received) = carol.finish();
    assert!(
        ok && received.contains("Content-Type: text/plain")
            && received.contains("Links in this message were made unclickable.\nagenda.pdf (1 bytes): _https://files.elsewhere.example/agenda.pdf"),
        "{received}"
    );
    let status = offer(
        &s,
        ALICE,
        "carol",
        "agenda.scr",
        "https://files.elsewhere.example/agenda.scr",
    );
    assert!(status.contains("403"), "{status}");
}

#[test]
fn files_offered_directly_between_clients_are_held_to_the_policy() {
    let s = Server::with_config("files-direct", DIGEST);
    users(&s);
    let msrp = |name: &str| {
        let (_, msgs) = s
            .sipp_start(
                "call_uac_file_offer.xml",
                "bob",
                ALICE.user,
                ALICE.password,
                "127.0.0.1",
                free_port(),
                &["alice", name],
            )
            .finish();
        last_answer(&msgs)
    };
    // By default the policy requires inspection: a file that would go
    // straight between the clients (MSRP) is refused, whatever its name.
    let answer = msrp("notes.txt");
    assert!(
        answer.starts_with("SIP/2.0 403 Forbidden (File Cannot Be Inspected)")
            && answer.contains("MSRP"),
        "{answer}\n{}",
        s.log()
    );
    // Without that requirement, by name: a blocked type is refused, an
    // allowed one goes on to bob (not registered here: 480).
    admin_ok(
        &s,
        &[
            "policy",
            "set",
            "file_transfer",
            "global",
            "require_inspection=false",
        ],
    );
    let answer = msrp("My%20setup.exe");
    assert!(
        answer.starts_with("SIP/2.0 403 Forbidden (File Type Not Allowed)")
            && answer.contains("My setup.exe"),
        "{answer}"
    );
    let answer = msrp("notes.txt");
    assert!(answer.starts_with("SIP/2.0 480"), "{answer}");
    // The two refusals are counted.
    assert!(
        metric(
            &s.http_get("/metrics", None).1,
            "parapet_file_offers_refused_total"
        ) == 2
    );
}
