//! The IM archive in sessions and with real clients: messages inside a
//! call, baresip on the README's defaults, federated messages by the
//! external switch, a clean stop right after a message, and a message
//! inside a call in someone else's name.

use crate::archive::{ok, records, search, send, sqlite, users, wait_for};
use crate::harness::*;

/// Instant messages inside a call (a session) are archived as outside one;
/// what the IM filter refuses was not delivered and is not in the archive.
#[test]
fn messages_inside_a_call_are_archived_as_delivered() {
    let s = Server::new("archive-dialog");
    s.add_user("alice", "correct horse battery");
    s.add_user("bob", "battery staple horse");
    ok(
        &s,
        &["policy", "set", "archiving", "global", "internal=true"],
    );
    ok(
        &s,
        &["policy", "set", "im_filter", "global", "action=block"],
    );
    let bob = register_then(
        &s,
        "bob",
        "battery staple horse",
        "call_uas_in_dialog_content.xml",
    );
    let (ok_call, msgs) = s
        .sipp_start(
            "call_uac_in_dialog_content.xml",
            "bob",
            "alice",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &["alice", "see http://evil.example/x"],
        )
        .finish();
    assert!(ok_call, "{msgs}\n{}", s.log());
    assert!(bob.finish().0);
    let all = wait_for(&s, &s.token, 2);
    // Once in alice's archive and once in bob's.
    assert_eq!(all.len(), 2, "{all:#?}");
    for r in &all {
        assert_eq!(r["sender"], "sip:alice@example.test", "{r}");
        assert_eq!(r["recipient"], "sip:bob@example.test", "{r}");
        assert_eq!(r["result"], "delivered", "{r}");
        assert!(
            r["body"]
                .as_str()
                .unwrap()
                .contains("hello inside the call"),
            "{r}"
        );
    }
    let owners: std::collections::BTreeSet<&str> =
        all.iter().filter_map(|r| r["owner"].as_str()).collect();
    assert_eq!(owners.len(), 2, "{all:#?}");
}

/// Real clients on the README's defaults: baresip's instant message is in
/// both archives as delivered; its calls — answered and hung up, cancelled
/// while ringing, refused — each leave one call detail record.
#[test]
fn baresip_messages_are_archived_and_its_calls_recorded() {
    use crate::baresip::Baresip;
    let s = Server::readme("archive-baresip");
    s.add_user("alice", "correct-horse-battery");
    s.add_user("bob", "battery-staple-horse");
    s.add_user("carol", "staple-horse-battery");
    ok(
        &s,
        &["policy", "set", "archiving", "global", "internal=true"],
    );
    let mut bob = Baresip::start(&s, "bob", "battery-staple-horse", "alice");
    bob.cmd("/answermode auto");
    let mut alice = Baresip::start(&s, "alice", "correct-horse-battery", "bob");
    alice.cmd("/message archived-from-baresip");
    bob.wait_for("sip:alice@example.test: \"archived-from-baresip\"");
    // Answered, two seconds of media, hung up by alice.
    alice.cmd("/dial sip:bob@example.test");
    bob.wait_for("incoming rtp for 'audio' established");
    std::thread::sleep(std::time::Duration::from_millis(2100));
    alice.cmd("/hangup");
    bob.wait_for("session closed");
    // Cancelled while ringing.
    bob.cmd("/answermode manual");
    alice.cmd("/dial sip:bob@example.test");
    crate::baresip::wait_count(&bob, "INVITE sip:bob", 2);
    std::thread::sleep(std::time::Duration::from_millis(500));
    alice.cmd("/hangup");
    alice.wait_for("SIP/2.0 487");
    // Refused: carol has no device registered.
    alice.cmd("/dial sip:carol@example.test");
    alice.wait_for("SIP/2.0 480 Temporarily Unavailable");

    let all = wait_for(&s, &s.token, 2);
    assert_eq!(all.len(), 2, "{all:#?}");
    for r in &all {
        assert_eq!(r["sender"], "sip:alice@example.test");
        assert_eq!(r["recipient"], "sip:bob@example.test");
        assert_eq!(r["result"], "delivered");
        assert_eq!(r["body"], "archived-from-baresip");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let calls = loop {
        let o = s.admin(&["--output=json", "cdr", "list", "--kind", "call"], "");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let c = records(&v);
        if c.len() >= 3 || std::time::Instant::now() > deadline {
            break c;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let statuses: Vec<i64> = calls.iter().filter_map(|c| c["status"].as_i64()).collect();
    assert_eq!(statuses, vec![200, 487, 480], "{calls:#?}");
    let answered = &calls[0];
    assert_eq!(answered["caller"], "sip:alice@example.test");
    assert_eq!(answered["callee"], "sip:bob@example.test");
    assert_eq!(answered["ended_by"], "caller");
    let secs = answered["duration_secs"].as_i64().unwrap();
    assert!((2..=5).contains(&secs), "{answered}");
    assert!(
        answered["caller_device"]
            .as_str()
            .unwrap()
            .contains("baresip"),
        "{answered}"
    );
    assert!(
        answered["callee_device"]
            .as_str()
            .unwrap()
            .contains("baresip"),
        "{answered}"
    );
    assert_eq!(calls[1]["ended_by"], "caller");
    assert_eq!(calls[2]["callee"], "sip:carol@example.test");
    assert_eq!(calls[2]["ended_by"], "nobody");
    alice.cmd("/quit");
    bob.cmd("/quit");
}

/// Messages with a partner's users are archived where the `external`
/// switch is on, and only there: here partner.test archives, example.test
/// (internal only) does not, until it turns external on.
#[test]
fn federated_messages_are_archived_as_the_external_switch_says() {
    use crate::federation::{alice_sends_to, contact, federate_both, two_orgs, Meet, B};
    let (a, b, net) = two_orgs("archive-fed", Meet::Direct);
    a.add_user("alice", "correct horse battery");
    b.add_user("bob", "battery staple horse");
    federate_both(&a, &b);
    contact(&b, "sip:bob@partner.test", "sip:alice@example.test");
    ok(
        &a,
        &["policy", "set", "archiving", "global", "internal=true"],
    );
    ok(
        &b,
        &["policy", "set", "archiving", "global", "external=true"],
    );
    net.settle();
    let send = |n: usize| {
        let bob = register_and_listen(&b, "bob", "battery staple horse");
        let t = alice_sends_to(&a, "bob", B);
        assert!(t.contains("SIP/2.0 200"), "{t}");
        assert!(bob.finish().0, "message {n} did not reach bob");
    };
    send(1);
    let theirs = wait_for(&b, &b.token, 1);
    assert_eq!(theirs.len(), 1, "{theirs:#?}");
    assert_eq!(theirs[0]["owner"], "sip:bob@partner.test");
    assert_eq!(theirs[0]["sender"], "sip:alice@example.test");
    assert_eq!(theirs[0]["federated"], true);
    assert!(
        theirs[0]["body"]
            .as_str()
            .unwrap()
            .contains("across federation"),
        "{theirs:#?}"
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(
        records(&search(&a, &a.token, &[])).is_empty(),
        "example.test archives internal messages only"
    );
    // example.test turns external archiving on: the next one is kept there.
    ok(
        &a,
        &["policy", "set", "archiving", "global", "external=true"],
    );
    net.settle();
    send(2);
    let ours = wait_for(&a, &a.token, 1);
    assert_eq!(ours.len(), 1, "{ours:#?}");
    assert_eq!(ours[0]["owner"], "sip:alice@example.test");
    assert_eq!(ours[0]["recipient"], "sip:bob@partner.test");
    assert_eq!(ours[0]["result"], "delivered");
    assert_eq!(wait_for(&b, &b.token, 2).len(), 2);
}

/// A clean stop right after a message: its archive records, still being
/// gathered for a commit, are written before the process ends.
#[test]
fn a_clean_stop_writes_the_archive_records_it_holds() {
    let mut s = Server::new("archive-stop");
    users(&s);
    ok(
        &s,
        &["policy", "set", "archiving", "global", "internal=true"],
    );
    let bob = register_and_listen(&s, "bob", "battery staple horse");
    send(
        &s,
        "alice",
        "correct horse battery",
        "bob",
        "just-before-the-stop",
        "message_send.xml",
    );
    assert!(bob.finish().0);
    s.signal("TERM");
    let status = s.child.as_mut().unwrap().wait().unwrap();
    assert!(status.success(), "{status:?}\n{}", s.log());
    s.child = None;
    assert_eq!(
        sqlite(&s, "SELECT count(*) FROM archive"),
        "2",
        "{}",
        s.log()
    );
}

/// A message inside a call must name the call's parties: one in carol's
/// name is refused (not passed on, not archived under her name), the
/// call's own goes on.
#[test]
fn a_message_inside_a_call_in_someone_elses_name_is_refused() {
    let s = Server::new("archive-forged");
    users(&s);
    ok(
        &s,
        &["policy", "set", "archiving", "global", "internal=true"],
    );
    // Bob's side takes only the call's own MESSAGE, or fails.
    let bob = register_then(
        &s,
        "bob",
        "battery staple horse",
        "call_uas_in_dialog_content.xml",
    );
    let (ok_call, msgs) = s
        .sipp_start(
            "call_uac_in_dialog_forged.xml",
            "bob",
            "alice",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &["alice", "carol"],
        )
        .finish();
    assert!(ok_call, "{msgs}\n{}", s.log());
    assert!(
        msgs.contains("403 Forbidden (Not a Party to This Call)"),
        "{msgs}"
    );
    assert!(bob.finish().0);
    let all = wait_for(&s, &s.token, 2);
    assert_eq!(all.len(), 2, "{all:#?}");
    for r in &all {
        assert_eq!(r["sender"], "sip:alice@example.test", "{r}");
        assert!(
            r["body"]
                .as_str()
                .unwrap()
                .contains("hello inside the call"),
            "{r}"
        );
    }
}

/// Where the policy says `file_content`, a file offered is kept in the
/// archive too: sealed (its bytes nowhere in clear outside the file
/// server's own copy), read back whole by a compliance officer (audited),
/// and gone with its key when retention runs.
#[test]
fn a_files_content_is_archived_sealed_read_back_whole_and_purged_with_its_key() {
    use crate::files::{a_pdf, offer, upload, url_of, ALICE, BOB, DIGEST};
    let mut s = Server::with_config("archive-file-content", DIGEST);
    crate::files::users(&s);
    ok(
        &s,
        &[
            "policy",
            "set",
            "archiving",
            "global",
            "internal=true",
            "file_content=true",
            "retention_days=1",
        ],
    );
    let bytes = a_pdf(200_000);
    let (_, up) = upload(&s, ALICE, "plans.pdf", &bytes);
    assert_eq!(up.status, 200, "{up:?}");
    let url = url_of(&up.text());
    let bob = register_then(&s, BOB.user, BOB.password, "receive_file_offer.xml");
    let status = offer(&s, ALICE, "bob", "plans.pdf", &url);
    assert!(status.starts_with("SIP/2.0 200"), "{status}\n{}", s.log());
    assert!(bob.finish().0);
    // Alice's and bob's archives each hold the message and the transfer.
    let all = wait_for(&s, &s.token, 4);
    let transfers: Vec<&serde_json::Value> = all
        .iter()
        .filter(|r| r["content_type"] == "application/vnd.parapet.file-transfer+json")
        .collect();
    assert_eq!(transfers.len(), 2, "{all:#?}");
    let t: serde_json::Value =
        serde_json::from_str(transfers[0]["body"].as_str().unwrap()).unwrap();
    let rel = t["content"].as_str().expect("content kept").to_string();
    // Read back whole by the officer, and audited.
    let officer = token_for(&s, "compliance-administrator");
    let out_file = s.dir.join("plans-from-archive.pdf");
    let id = transfers[0]["id"].as_i64().unwrap().to_string();
    let o = s.admin_as(
        &officer,
        &["archive", "file", &id, "--out", out_file.to_str().unwrap()],
        "",
    );
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        std::fs::read(&out_file).unwrap() == bytes,
        "not the same bytes"
    );
    let o = s.admin(
        &["--output=json", "audit", "list", "--object", "archive:"],
        "",
    );
    let audit: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        audit.iter().any(|r| r["action"] == "archive.read"
            && r["detail"]
                .as_str()
                .is_some_and(|d| d.contains("\"file_content\":true"))),
        "{audit:#?}"
    );
    // A help-desk administrator may not.
    let helpdesk = token_for(&s, "help-desk");
    let other = s.dir.join("helpdesk.pdf");
    let o = s.admin_as(
        &helpdesk,
        &["archive", "file", &id, "--out", other.to_str().unwrap()],
        "",
    );
    assert!(!o.status.success() && !other.exists(), "{}", out(&o));
    // Sealed: a slice of the file is in the file server's copy only.
    let sample = &bytes[100_000..100_064];
    let holding = crate::archive::files_holding(&s.data_dir(), sample);
    assert!(
        holding.iter().all(|p| p.contains("/files/")),
        "the file's bytes in clear elsewhere: {holding:?}"
    );
    let sealed = s.data_dir().join("archive-files").join(&rel);
    assert!(sealed.exists(), "{}", sealed.display());
    let key_dir = sealed.parent().unwrap().to_path_buf();

    // Two days on, retention deletes the records and destroys the day's
    // key, and the sealed content goes with it.
    s.kill9();
    s.env.push((
        "PARAPET_ARCHIVE_CLOCK_OFFSET_SECS".into(),
        (2 * 86_400).to_string(),
    ));
    s.start();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while key_dir.exists() || sqlite(&s, "SELECT count(*) FROM archive") != "0" {
        assert!(
            std::time::Instant::now() < deadline,
            "the content stayed: {}\n{}",
            key_dir.display(),
            s.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let gone = s.dir.join("gone.pdf");
    let o = s.admin_as(
        &officer,
        &["archive", "file", &id, "--out", gone.to_str().unwrap()],
        "",
    );
    assert!(
        !o.status.success() && out(&o).contains("no such archive record"),
        "{}",
        out(&o)
    );
    assert!(!gone.exists());
}
