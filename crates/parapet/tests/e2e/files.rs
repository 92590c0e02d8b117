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
pub(crate) const BOUNDARY: &str =
    "----------pSTpMYM9IQxnUYB2Ask4R7bvxUYHLtMRU5HdaPdfSxocx5wv9jEC51pBWSd";

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
pub(crate) fn authorization(
    challenge: &str,
    user: &str,
    password: &str,
    method: &str,
    uri: &str,
) -> String {
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
pub(crate) fn challenged(
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
pub(crate) fn multipart(name: &str, content_type: &str, bytes: &[u8]) -> Vec<u8> {
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

pub(crate) const ALICE: Account<'static> = Account {
    user: "alice",
    password: "correct horse battery",
};
pub(crate) const BOB: Account<'static> = Account {
    user: "bob",
    password: "battery staple horse",
};
pub(crate) const CAROL: Account<'static> = Account {
    user: "carol",
    password: "staple horse battery",
};

/// Both digest algorithms, MD5 first: SIPp reads only the first
/// challenge and knows only MD5.
pub(crate) const DIGEST: &str =
    "digest_algorithms = [\"MD5\", \"SHA-256\"]\ndigest_md5_unencrypted = true\n";

pub(crate) fn users(s: &Server) {
    for a in [ALICE, BOB, CAROL] {
        s.add_user(a.user, a.password);
    }
}

pub(crate) fn a_pdf(len: usize) -> Vec<u8> {
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

pub(crate) fn admin_ok(s: &Server, args: &[&str]) -> String {
    let o = s.admin(args, "");
    assert!(o.status.success(), "{args:?}: {}", out(&o));
    out(&o)
}

pub(crate) fn stored_file(s: &Server, url: &str) -> std::path::PathBuf {
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

    // Alice offers it to bob: relayed, and bob may fetch it. Messages
    // between users are archived here.
    let o = s.admin(
        &["policy", "set", "archiving", "global", "internal=true"],
        "",
    );
    assert!(o.status.success(), "{}", out(&o));
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
    // The transfer is a usage record (the offer that passed, not the
    // forged one): the file as stored, its size and type.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let files = loop {
        let o = s.admin(&["--output=json", "cdr", "list", "--kind", "file"], "");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let files = v["records"].as_array().cloned().unwrap_or_default();
        if !files.is_empty() || std::time::Instant::now() > deadline {
            break files;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(files.len(), 1, "{files:#?}");
    assert_eq!(files[0]["caller"], "sip:alice@example.test");
    assert_eq!(files[0]["callee"], "sip:bob@example.test");
    let sha256: String = ring::digest::digest(&ring::digest::SHA256, &bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        files[0]["detail"],
        format!(
            "report.pdf; {} bytes; application/pdf; sha256 {sha256}",
            bytes.len()
        )
        .as_str()
    );
    // The archive keeps the message and, beside it, the file transfer: the
    // file as stored, with its SHA-256 (alice's and bob's records).
    let o = s.admin(
        &[
            "--output=json",
            "archive",
            "search",
            "--user",
            "sip:alice@example.test",
        ],
        "",
    );
    assert!(o.status.success(), "{}", out(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let records = v["records"].as_array().unwrap();
    let transfer = records
        .iter()
        .find(|r| r["content_type"] == "application/vnd.parapet.file-transfer+json")
        .unwrap_or_else(|| panic!("no file transfer record: {v:#}"));
    let t: serde_json::Value = serde_json::from_str(transfer["body"].as_str().unwrap()).unwrap();
    assert_eq!(t["file"], "report.pdf");
    assert_eq!(t["size"], bytes.len());
    assert_eq!(t["content_type"], "application/pdf");
    assert_eq!(t["sha256"], sha256.as_str());
    assert_eq!(transfer["recipient"], "sip:bob@example.test");
    assert_eq!(transfer["result"], "delivered");
    assert!(
        records
            .iter()
            .any(|r| r["body"].as_str().is_some_and(|b| b.contains(&url))),
        "the offering message: {v:#}"
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
