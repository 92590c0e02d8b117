//! File transfer as Linphone does it (RCS file transfer via HTTP): the
//! upload and download requests written byte for byte as liblinphone 5.1
//! sends them (captured on the wire: an empty POST answered 401, the
//! retry carrying the multipart body on the same connection; the GET
//! likewise), the pointer relayed in a SIPp MESSAGE, and the policy's
//! decisions on upload and on relay. The real client is in
//! `linphone_files.rs`.

use std::io::{Read, Write};

use auth::digest::{expected_response, ha1, Algorithm};

use crate::federation::metric;
use crate::harness::*;

/// liblinphone's multipart boundary (10 dashes and 59 random characters).
const BOUNDARY: &str = "----------pSTpMYM9IQxnUYB2Ask4R7bvxUYHLtMRU5HdaPdfSxocx5wv9jEC51pBWSd";

/// One HTTP response.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) head: String,
    pub(crate) body: Vec<u8>,
}

impl Reply {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The values of header `name` (any case), in order.
    pub(crate) fn headers(&self, name: &str) -> Vec<String> {
        self.head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }
}

/// Reads one response (Content-Length framed, as the server answers).
pub(crate) fn read_reply(c: &mut impl Read) -> Reply {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match c.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => break,
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut r = Reply {
        status,
        head,
        body: Vec::new(),
    };
    let len: usize = r
        .headers("content-length")
        .first()
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    let mut got = 0;
    while got < len {
        match c.read(&mut body[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    body.truncate(got);
    r.body = body;
    r
}

/// The Authorization header liblinphone answers the first challenge it
/// supports with (two spaces after the colon, the algorithm quoted).
fn authorization(challenge: &str, user: &str, password: &str, method: &str, uri: &str) -> String {
    let param = |name: &str| {
        let at = challenge.find(&format!("{name}=")).unwrap() + name.len() + 1;
        let rest = &challenge[at..];
        match rest.strip_prefix('"') {
            Some(q) => q[..q.find('"').unwrap()].to_string(),
            None => rest.split([',', ' ']).next().unwrap().to_string(),
        }
    };
    let (realm, nonce) = (param("realm"), param("nonce"));
    let alg = match param("algorithm").as_str() {
        "SHA-256" => Algorithm::Sha256,
        _ => Algorithm::Md5,
    };
    let cnonce = "B4~dX~-PZx5ZXUBO";
    let response = expected_response(
        alg,
        &ha1(alg, user, &realm, password),
        &nonce,
        "00000001",
        cnonce,
        "auth",
        method,
        uri,
    );
    format!(
        "Authorization:  Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm=\"{}\", username=\"{user}\", response=\"{response}\", cnonce=\"{cnonce}\", nc=00000001, qop=auth, uri=\"{uri}\"\r\n",
        alg.name()
    )
}

/// A user with their password, as a Linphone account holds them.
#[derive(Clone, Copy)]
pub(crate) struct Account<'a> {
    pub(crate) user: &'a str,
    pub(crate) password: &'a str,
}

/// The probe and its answer, then `request` (its head up to the line
/// before Authorization, and what follows) on the same connection with
/// the answer to the challenge.
fn challenged(
    s: &Server,
    a: Account<'_>,
    method: &str,
    uri: &str,
    rest_of_head: &str,
    body: &[u8],
) -> (Reply, Reply) {
    let mut c = s.tls_to(s.web);
    let common = format!(
        "{method} {uri} HTTP/1.1\r\nUser-Agent: Unknown\r\nFrom: sip:{}@{}\r\nHost: {}:{}\r\n",
        a.user, s.domain, s.domain, s.web
    );
    c.write_all(format!("{common}\r\n").as_bytes()).unwrap();
    let first = read_reply(&mut c);
    let Some(challenge) = first.headers("www-authenticate").into_iter().next() else {
        return (
            first,
            Reply {
                status: 0,
                head: String::new(),
                body: vec![],
            },
        );
    };
    let (ct, auth_then) = rest_of_head
        .split_once("|AUTH|")
        .unwrap_or(("", rest_of_head));
    let mut req = format!(
        "{common}{ct}{}{auth_then}\r\n",
        authorization(&challenge, a.user, a.password, method, uri)
    )
    .into_bytes();
    req.extend_from_slice(body);
    c.write_all(&req).unwrap();
    (first, read_reply(&mut c))
}

/// The multipart body liblinphone sends for a file.
fn multipart(name: &str, content_type: &str, bytes: &[u8]) -> Vec<u8> {
    let mut b = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data;name=\"File\";filename=\"{name}\"\r\nContent-Type: {content_type}\r\n\r\n"
    )
    .into_bytes();
    b.extend_from_slice(bytes);
    b.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    b
}

/// Uploads as liblinphone does: (the answer to the probe, the answer to
/// the upload).
pub(crate) fn upload(s: &Server, a: Account<'_>, name: &str, bytes: &[u8]) -> (Reply, Reply) {
    let body = multipart(name, "application/octet-stream", bytes);
    let head = format!(
        "Content-Type: multipart/form-data;boundary={BOUNDARY}\r\n|AUTH|Content-Length: {}\r\n",
        body.len()
    );
    challenged(s, a, "POST", "/files", &head, &body)
}

/// Downloads as liblinphone does.
pub(crate) fn download(s: &Server, a: Account<'_>, url: &str) -> Reply {
    let path = &url[url.find("/files/").unwrap()..];
    challenged(s, a, "GET", path, "", b"").1
}

/// The `data url` of a pointer.
pub(crate) fn url_of(pointer: &str) -> String {
    let at = pointer.find("url=\"").expect(pointer) + 5;
    pointer[at..at + pointer[at..].find('"').unwrap()].to_string()
}

/// Sends a pointer to `url` from `from` to `to` with SIPp: the status line
/// of the last response.
pub(crate) fn offer(s: &Server, from: Account<'_>, to: &str, name: &str, url: &str) -> String {
    let (_, msgs) = s
        .sipp_start(
            "message_send_file.xml",
            to,
            from.user,
            from.password,
            "127.0.0.1",
            free_port(),
            &[from.user, name, url, "1"],
        )
        .finish();
    last_answer(&msgs)
}

/// The status line and Warning of the last response in a SIPp trace.
pub(crate) fn last_answer(msgs: &str) -> String {
    let mut last = String::new();
    for block in msgs.split("\n\n") {
        if let Some(line) = block.lines().find(|l| l.starts_with("SIP/2.0 ")) {
            let warning = block
                .lines()
                .find(|l| l.starts_with("Warning:"))
                .unwrap_or("");
            last = format!("{line} {warning}");
        }
    }
    last
}

const ALICE: Account<'static> = Account {
    user: "alice",
    password: "correct horse battery",
};
const BOB: Account<'static> = Account {
    user: "bob",
    password: "battery staple horse",
};
const CAROL: Account<'static> = Account {
    user: "carol",
    password: "staple horse battery",
};

/// Both digest algorithms, MD5 first: SIPp reads only the first
/// challenge and knows only MD5.
const DIGEST: &str = "digest_algorithms = [\"MD5\", \"SHA-256\"]\ndigest_md5_unencrypted = true\n";

fn users(s: &Server) {
    for a in [ALICE, BOB, CAROL] {
        s.add_user(a.user, a.password);
    }
}

fn a_pdf(len: usize) -> Vec<u8> {
    let mut b = b"%PDF-1.7\n".to_vec();
    let mut x: u32 = 2_463_534_242;
    while b.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        b.extend_from_slice(&x.to_le_bytes());
    }
    b.truncate(len);
    b
}

fn admin_ok(s: &Server, args: &[&str]) -> String {
    let o = s.admin(args, "");
    assert!(o.status.success(), "{args:?}: {}", out(&o));
    out(&o)
}

fn stored_file(s: &Server, url: &str) -> std::path::PathBuf {
    s.data_dir()
        .join("files")
        .join(&url[url.rfind('/').unwrap() + 1..])
}

#[test]
fn uploads_and_downloads_exactly_as_linphone_makes_them() {
    let s = Server::with_config("files", DIGEST);
    users(&s);
    let bytes = a_pdf(300_000);
    let (probe, up) = upload(&s, ALICE, "report.pdf", &bytes);
    // The probe: 401 with each algorithm the server accepts, in its order
    // (MD5 first here, for SIPp; the default offers SHA-256 first).
    assert_eq!(probe.status, 401, "{probe:?}");
    let challenges = probe.headers("www-authenticate");
    assert!(
        challenges.len() == 2
            && challenges[0].contains("algorithm=MD5")
            && challenges[1].contains("algorithm=SHA-256")
            && challenges[0].contains(&format!("realm=\"{DOMAIN}\"")),
        "{challenges:?}"
    );
    assert_eq!(up.status, 200, "{up:?}\n{}", s.log());
    assert_eq!(
        up.headers("content-type"),
        ["application/vnd.gsma.rcs-ft-http+xml"]
    );
    let pointer = up.text();
    assert!(
        pointer.contains("<file-name>report.pdf</file-name>")
            && pointer.contains("<file-size>300000</file-size>")
            && pointer.contains("<content-type>application/pdf</content-type>")
            && pointer.contains("until=\""),
        "{pointer}"
    );
    let url = url_of(&pointer);
    assert!(
        url.starts_with(&format!("https://{DOMAIN}:{}/files/", s.web)),
        "{url}"
    );
    // On disk, whole, for the server's user only.
    let path = stored_file(&s, &url);
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Before any message offered it, bob may not fetch it: 404, the same
    // answer as for a file that does not exist.
    let missing = download(
        &s,
        BOB,
        &format!("https://{DOMAIN}/files/0123456789abcdef0123456789abcdef"),
    );
    assert_eq!(missing.status, 404);
    let early = download(&s, BOB, &url);
    assert_eq!((early.status, early.text()), (404, missing.text()));

    // Alice offers it to bob: relayed, and bob may fetch it.
    let bob = register_then(&s, BOB.user, BOB.password, "receive_file_offer.xml");
    let status = offer(&s, ALICE, "bob", "report.pdf", &url);
    assert!(status.starts_with("SIP/2.0 200"), "{status}\n{}", s.log());
    let (ok, received) = bob.finish();
    assert!(ok && received.contains(&url), "{received}");
    let got = download(&s, BOB, &url);
    assert_eq!(got.status, 200, "{got:?}");
    assert!(got.body == bytes, "the downloaded bytes differ");
    assert_eq!(got.headers("content-type"), ["application/pdf"]);
    assert_eq!(got.headers("x-content-type-options"), ["nosniff"]);
    assert_eq!(
        got.headers("content-disposition"),
        ["attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"]
    );
    assert_eq!(
        got.headers("content-security-policy"),
        ["default-src 'none'; sandbox"]
    );
    // Its owner too; carol, signed in with valid credentials, gets 404.
    assert_eq!(download(&s, ALICE, &url).status, 200);
    let other = download(&s, CAROL, &url);
    assert_eq!((other.status, other.text()), (404, missing.text()));

    // A forged pointer (carol's message naming alice's file) is refused;
    // so is a pointer to a file id that does not exist.
    let status = offer(&s, CAROL, "bob", "report.pdf", &url);
    assert!(
        status.starts_with("SIP/2.0 403 Forbidden (Not the Sender's File)"),
        "{status}"
    );
    let status = offer(
        &s,
        ALICE,
        "bob",
        "report.pdf",
        &format!(
            "https://{DOMAIN}:{}/files/0123456789abcdef0123456789abcdef",
            s.web
        ),
    );
    assert!(status.contains("Not the Sender's File"), "{status}");
    assert!(
        metric(
            &s.http_get("/metrics", None).1,
            "parapet_file_offers_refused_total"
        ) >= 2
    );

    // Credentials: a wrong password is challenged again; the From header
    // must be the signed-in user.
    let wrong = Account {
        user: "alice",
        password: "not it",
    };
    assert_eq!(upload(&s, wrong, "x.pdf", b"%PDF-").1.status, 401);
    let mut c = s.tls_to(s.web);
    c.write_all(
        format!("POST /files HTTP/1.1\r\nFrom: sip:bob@{DOMAIN}\r\nHost: {DOMAIN}\r\n\r\n")
            .as_bytes(),
    )
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
        format!("POST /files HTTP/1.1\r\nFrom: sip:bob@{DOMAIN}\r\nHost: {DOMAIN}\r\n{auth}Content-Length: 0\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    let spoofed = read_reply(&mut c);
    assert_eq!(spoofed.status, 403, "{spoofed:?}");

    // Expiry: once its time is up, fetching it is 410 Gone and its bytes
    // are deleted; offering it again is refused.
    let db = s.data_dir().join("parapet.db");
    let o = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg("UPDATE files SET expires_at = 1")
        .output()
        .expect("sqlite3 is installed (scripts/install-test-deps.sh)");
    assert!(o.status.success(), "{}", out(&o));
    let gone = download(&s, BOB, &url);
    assert_eq!(gone.status, 410, "{gone:?}");
    assert!(!path.exists(), "the expired file's bytes are still on disk");
    let status = offer(&s, ALICE, "bob", "report.pdf", &url);
    assert!(status.contains("403 Forbidden (File Expired)"), "{status}");

    // Removed with their owner: carol uploads, is removed, and her file's
    // bytes go (the sweep spares only files younger than a minute, which
    // may be uploads being recorded: this one is made older).
    let (_, up) = upload(&s, CAROL, "notes.pdf", &a_pdf(1000));
    assert_eq!(up.status, 200, "{up:?}");
    let carols = stored_file(&s, &url_of(&up.text()));
    assert!(carols.exists());
    let o = std::process::Command::new("touch")
        .args(["-d", "2 hours ago"])
        .arg(&carols)
        .output()
        .unwrap();
    assert!(o.status.success());
    admin_ok(&s, &["user", "remove", &format!("sip:carol@{DOMAIN}")]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while carols.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(!carols.exists(), "a removed user's file is still on disk");
}

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
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
fn detail(r: &Reply) -> String {
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
