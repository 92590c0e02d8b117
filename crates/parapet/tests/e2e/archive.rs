//! The IM archive: what the archiving policy selects is kept, sealed, with
//! the text as delivered; compliance officers search and export it (and
//! are audited doing so); retention deletes it and destroys its day's key,
//! except what a legal hold keeps.

use crate::harness::*;

pub(crate) fn ok(s: &Server, args: &[&str]) -> String {
    let o = s.admin(args, "");
    assert!(o.status.success(), "{args:?}: {}", out(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(crate) fn send(
    s: &Server,
    from: &str,
    password: &str,
    to: &str,
    text: &str,
    scenario: &str,
) -> String {
    let (ok, msgs) = s
        .sipp_start(
            scenario,
            to,
            from,
            password,
            "127.0.0.1",
            free_port(),
            &[from, text],
        )
        .finish();
    assert!(
        ok,
        "{from}'s MESSAGE to {to}:\n{msgs}\nserver:\n{}",
        s.log()
    );
    msgs
}

pub(crate) fn search(s: &Server, token: &str, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["--output=json", "archive", "search"];
    a.extend_from_slice(args);
    let o = s.admin_as(token, &a, "");
    assert!(o.status.success(), "{a:?}: {}", out(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

pub(crate) fn records(v: &serde_json::Value) -> Vec<serde_json::Value> {
    v["records"].as_array().cloned().unwrap_or_default()
}

/// Every file under `dir` that contains `needle`.
pub(crate) fn files_holding(dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p)
                .unwrap_or_default()
                .windows(needle.len())
                .any(|w| w == needle)
            {
                hits.push(p.display().to_string());
            }
        }
    }
    hits
}

pub(crate) fn sqlite(s: &Server, sql: &str) -> String {
    let o = std::process::Command::new("sqlite3")
        .arg("-readonly")
        .arg(s.data_dir().join("parapet.db"))
        .arg(sql)
        .output()
        .expect("sqlite3 is installed (scripts/install-test-deps.sh)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

pub(crate) fn key_files(s: &Server) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(s.data_dir().join("keys/archive"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".key"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

pub(crate) fn users(s: &Server) {
    s.add_user("alice", "correct horse battery");
    s.add_user("bob", "battery staple horse");
    s.add_user("carol", "staple horse battery");
}

/// The archive's records once `n` are there (the writer keeps each a
/// moment after its answer), or what is there after 10 s.
pub(crate) fn wait_for(s: &Server, token: &str, n: usize) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let v = records(&search(s, token, &[]));
        if v.len() >= n || std::time::Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn the_archive_keeps_what_the_policy_selects_as_delivered_and_every_read_is_audited() {
    let s = Server::new("archive");
    users(&s);
    // Alice alone is archived (a named policy granted to her); links in
    // messages are defused by the IM filter (its default) on their way.
    ok(
        &s,
        &[
            "policy",
            "set",
            "archiving",
            "named:kept",
            "internal=true",
            "external=true",
        ],
    );
    ok(
        &s,
        &[
            "grant",
            "add",
            "archiving",
            "kept",
            "user:sip:alice@example.test",
        ],
    );

    let bob = register_and_listen(&s, "bob", "battery staple horse");
    send(
        &s,
        "alice",
        "correct horse battery",
        "bob",
        "see http://evil.example/x",
        "message_send.xml",
    );
    let (ok_bob, received) = bob.finish();
    assert!(ok_bob, "{received}");
    // Carol is offline: stored for her.
    send(
        &s,
        "alice",
        "correct horse battery",
        "carol",
        "stored-2",
        "message_send_stored.xml",
    );
    // Between two users nobody archives: not kept.
    let bob = register_and_listen(&s, "bob", "battery staple horse");
    send(
        &s,
        "carol",
        "staple horse battery",
        "bob",
        "not-kept-3",
        "message_send.xml",
    );
    assert!(bob.finish().0);

    let officer = token_for(&s, "compliance-administrator");
    let all = wait_for(&s, &officer, 2);
    assert_eq!(all.len(), 2, "{all:#?}");
    assert!(
        all.iter().all(|r| r["owner"] == "sip:alice@example.test"),
        "{all:#?}"
    );
    let to_bob = &all[0];
    assert_eq!(to_bob["recipient"], "sip:bob@example.test");
    assert_eq!(to_bob["result"], "delivered");
    // The text as bob received it: the link defused by the filter.
    let body = to_bob["body"].as_str().unwrap();
    assert!(
        body.contains("Links in this message were made unclickable.\nHello from alice: see _http://evil.example/x"),
        "as delivered, not as sent: {body}"
    );
    assert!(
        received.contains(body.trim_end()),
        "{body:?} is not what bob got:\n{received}"
    );
    assert_eq!(all[1]["recipient"], "sip:carol@example.test");
    assert_eq!(all[1]["result"], "stored for later delivery");
    // Search by counterpart and text.
    let v = search(&s, &officer, &["--counterpart", "sip:carol@Example.TEST"]);
    assert_eq!(records(&v).len(), 1);
    let v = search(
        &s,
        &officer,
        &["--user", "sip:alice@example.test", "--text", "STORED-2"],
    );
    assert_eq!(records(&v).len(), 1);
    assert!(records(&search(&s, &officer, &["--user", "sip:bob@example.test"])).is_empty());

    // Sealed at rest: the text of a message delivered live is nowhere in
    // the data directory; the day's key is a file of its own.
    let hits = files_holding(&s.data_dir(), b"Hello from alice: see");
    assert!(hits.is_empty(), "in clear in {hits:?}");
    let keys = key_files(&s);
    assert_eq!(keys.len(), 1, "{keys:?}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(s.data_dir().join("keys/archive").join(&keys[0]))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // An export for reviewers, as mbox, to a new file.
    let file = s.dir.join("alice.mbox");
    let o = s.admin_as(
        &officer,
        &[
            "archive",
            "export",
            "--user",
            "sip:alice@example.test",
            "--format",
            "mbox",
            "--out",
            file.to_str().unwrap(),
        ],
        "",
    );
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("exported 2 messages"), "{}", out(&o));
    let mbox = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        mbox.matches("\nFrom alice@example.test ").count()
            + usize::from(mbox.starts_with("From alice@example.test ")),
        2,
        "{mbox}"
    );
    assert!(mbox.contains("stored-2"), "{mbox}");
    // JSON lines on standard output.
    let o = s.admin_as(
        &officer,
        &["archive", "export", "--counterpart", "sip:bob@example.test"],
        "",
    );
    assert!(o.status.success(), "{}", out(&o));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);

    // Who may: not a view-only or help-desk administrator, neither to
    // search nor to export, and the refusals are audited.
    for role in ["view-only", "help-desk"] {
        let t = token_for(&s, role);
        for args in [
            &["archive", "search"][..],
            &["archive", "export", "--user", "sip:alice@example.test"],
        ] {
            let o = s.admin_as(&t, args, "");
            assert_eq!(o.status.code(), Some(1), "{role} {args:?}: {}", out(&o));
            assert!(
                out(&o).contains(&format!("role {role} does not allow archive.read")),
                "{role} {args:?}: {}",
                out(&o)
            );
        }
    }
    // Every read is in the audit log, with its filters.
    let audit = ok(
        &s,
        &["--output=json", "audit", "list", "--object", "archive:"],
    );
    let audit: Vec<serde_json::Value> = serde_json::from_str(&audit).unwrap();
    let actions: Vec<&str> = audit.iter().filter_map(|r| r["action"].as_str()).collect();
    assert!(actions.contains(&"archive.read"), "{actions:?}");
    assert!(actions.contains(&"archive.export"), "{actions:?}");
    assert!(audit.iter().any(|r| r["outcome"] == "denied"), "{audit:#?}");
    assert!(
        audit
            .iter()
            .any(|r| r["detail"].as_str().unwrap_or("").contains("STORED-2")),
        "the filters are recorded: {audit:#?}"
    );
    // Users are told whether they are archived (the user API, and the
    // self-service page shows it).
    for (user, password, archived) in [
        ("alice", "correct horse battery", true),
        ("bob", "battery staple horse", false),
    ] {
        let token = crate::user_api::sign_in(&s, user, password);
        let (code, head, text) = s.https("GET", "/user/v1/me", Some(&token), "");
        assert_eq!(code, 200, "{head}\n{text}");
        let me: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(me["archiving"]["internal"], archived, "{user}: {me}");
        assert_eq!(me["archiving"]["external"], archived, "{user}: {me}");
        // And how long records of their calls and sign-ins are kept.
        assert_eq!(me["archiving"]["usage_retention_days"], 60, "{user}: {me}");
    }
    let m = s.http_get("/metrics", None).1;
    assert!(m.contains("parapet_archive_records_total 2"), "{m}");
    assert!(m.contains("parapet_archive_writable 1"), "{m}");
}

#[test]
fn retention_deletes_records_and_destroys_their_key_but_a_legal_hold_keeps_its_users() {
    let mut s = Server::new("archive-purge");
    s.add_user("alice", "correct horse battery");
    s.add_user("bob", "battery staple horse");
    ok(
        &s,
        &[
            "policy",
            "set",
            "archiving",
            "global",
            "internal=true",
            "retention_days=1",
        ],
    );
    let bob = register_and_listen(&s, "bob", "battery staple horse");
    send(
        &s,
        "alice",
        "correct horse battery",
        "bob",
        "purge-me",
        "message_send.xml",
    );
    assert!(bob.finish().0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while sqlite(&s, "SELECT count(*) FROM archive") != "2" {
        assert!(
            std::time::Instant::now() < deadline,
            "not archived:\n{}",
            s.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // The sealed bytes as they are on disk now (alice's and bob's copies).
    let sealed: Vec<Vec<u8>> = sqlite(&s, "SELECT hex(sealed) FROM archive ORDER BY id")
        .lines()
        .map(|h| {
            (0..h.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
                .collect()
        })
        .collect();
    assert_eq!(sealed.len(), 2);
    let day_key = key_files(&s);
    assert_eq!(day_key.len(), 1, "{day_key:?}");
    ok(
        &s,
        &[
            "archive",
            "hold",
            "sip:bob@example.test",
            "--reason",
            "matter 2026-118",
        ],
    );

    // Two days later (the archive's clock moved forward for this process).
    s.kill9();
    s.env.push((
        "PARAPET_ARCHIVE_CLOCK_OFFSET_SECS".into(),
        (2 * 86_400).to_string(),
    ));
    s.start();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while sqlite(&s, "SELECT count(*) FROM archive") != "1" || key_files(&s).contains(&day_key[0]) {
        assert!(
            std::time::Instant::now() < deadline,
            "retention did not run: {} records, keys {:?}\n{}",
            sqlite(&s, "SELECT count(*) FROM archive"),
            key_files(&s),
            s.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    // Alice's copy is gone, and so are its bytes, from the database, its
    // WAL and everything else in the data directory; the day's key with
    // it, so no copy of the database made before can be opened either.
    for (i, bytes) in sealed.iter().enumerate() {
        let hits = files_holding(&s.data_dir(), bytes);
        assert!(
            hits.is_empty(),
            "record {i}'s sealed bytes still in {hits:?}"
        );
    }
    let keys = key_files(&s);
    assert!(!keys.contains(&day_key[0]), "{keys:?}");
    assert!(keys.iter().all(|k| k.starts_with("hold-")), "{keys:?}");
    // Bob's, on hold, is still there and still readable (sealed again
    // under the hold key).
    let v = search(&s, &s.token, &[]);
    let left = records(&v);
    assert_eq!(left.len(), 1, "{left:#?}");
    assert_eq!(left[0]["owner"], "sip:bob@example.test");
    assert!(
        left[0]["body"].as_str().unwrap().contains("purge-me"),
        "{left:#?}"
    );
    let m = s.http_get("/metrics", None).1;
    assert!(m.contains("parapet_archive_purged_total 1"), "{m}");

    // Released: his record goes at the next run (a restart runs it); the
    // hold key, made this (moved) day, once two days have passed too.
    ok(&s, &["archive", "release", "sip:bob@example.test"]);
    for (days, what) in [(2, "the released hold's record"), (4, "the hold key")] {
        s.kill9();
        s.env = vec![(
            "PARAPET_ARCHIVE_CLOCK_OFFSET_SECS".into(),
            (days * 86_400).to_string(),
        )];
        s.start();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while sqlite(&s, "SELECT count(*) FROM archive") != "0"
            || (days == 4 && !key_files(&s).is_empty())
        {
            assert!(
                std::time::Instant::now() < deadline,
                "{what} stayed: keys {:?}\n{}",
                key_files(&s),
                s.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    }
    let audit = ok(
        &s,
        &[
            "--output=json",
            "audit",
            "list",
            "--object",
            "archive-hold:",
        ],
    );
    assert!(
        audit.contains("archive.hold") && audit.contains("archive.release"),
        "{audit}"
    );
}

#[test]
fn a_policy_that_blocks_on_failure_refuses_messages_while_the_archive_cannot_be_written() {
    // A key directory that cannot be made: nothing can be archived.
    let s = Server::with_config(
        "archive-block",
        "[archive]\nkeys_dir = \"/proc/parapet-archive-keys\"\n",
    );
    users(&s);
    ok(
        &s,
        &[
            "policy",
            "set",
            "archiving",
            "named:strict",
            "internal=true",
            "block_on_failure=true",
        ],
    );
    ok(
        &s,
        &[
            "grant",
            "add",
            "archiving",
            "strict",
            "user:sip:alice@example.test",
        ],
    );
    ok(
        &s,
        &["policy", "set", "archiving", "global", "internal=true"],
    );
    // Alice's policy blocks: her message is refused, and one to her too.
    send(
        &s,
        "alice",
        "correct horse battery",
        "bob",
        "blocked",
        "message_send_archive_unavailable.xml",
    );
    send(
        &s,
        "bob",
        "battery staple horse",
        "alice",
        "blocked too",
        "message_send_archive_unavailable.xml",
    );
    // Bob's and carol's policy (global) archives without blocking: their
    // messages go, unarchived, and are counted as lost.
    let carol = register_and_listen(&s, "carol", "staple horse battery");
    send(
        &s,
        "bob",
        "battery staple horse",
        "carol",
        "goes",
        "message_send.xml",
    );
    assert!(carol.finish().0);
    let m = s.http_get("/metrics", None).1;
    assert!(m.contains("parapet_archive_writable 0"), "{m}");
    assert!(m.contains("parapet_archive_records_lost_total 2"), "{m}");
    assert!(
        s.log()
            .contains("the IM archive cannot keep or read records"),
        "{}",
        s.log()
    );
}
