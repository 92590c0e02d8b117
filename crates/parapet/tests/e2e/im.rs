//! Instant messages: relayed, stored for offline users, loops, spoofing.

use crate::harness::*;

#[test]
fn message_is_relayed_between_registered_users() {
    let s = Server::new("im");
    s.add_user("alice", "correct horse battery");
    s.add_user("bob", "battery staple horse");
    let bob = register_and_listen(&s, "bob", "battery staple horse");
    let (ok, msgs) = s
        .sipp_start(
            "message_send.xml",
            "bob",
            "alice",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &["alice", "live-1"],
        )
        .finish();
    assert!(
        ok,
        "alice's MESSAGE was not answered 200:\n{msgs}\nserver:\n{}",
        s.log()
    );
    let (ok, received) = bob.finish();
    assert!(
        ok,
        "bob did not receive the MESSAGE (or it carried alice's credentials):\n{received}"
    );
    assert!(received.contains("Hello from alice: live-1"), "{received}");
    assert!(
        received.contains("From: <sip:alice@example.test>"),
        "{received}"
    );
}

#[test]
fn a_request_that_comes_back_unchanged_is_a_loop() {
    let s = Server::new("loop");
    s.add_user("alice", "correct horse battery");
    s.add_user("bob", "battery staple horse");
    // Bob's endpoint accepts the MESSAGE and sends it straight back to the
    // server, as a call-forward pointing at itself would.
    let bob = register_then(&s, "bob", "battery staple horse", "bounce_message.xml");
    let (ok, msgs) = s
        .sipp_start(
            "message_send.xml",
            "bob",
            "alice",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &["alice", "loop-1"],
        )
        .finish();
    assert!(ok, "alice's MESSAGE was not answered 200:\n{msgs}");
    let (ok, bounced) = bob.finish();
    assert!(
        ok,
        "the bounced MESSAGE was not refused as a loop:\n{bounced}\nserver:\n{}",
        s.log()
    );
    assert!(bounced.contains("SIP/2.0 482 Loop Detected"), "{bounced}");
}

#[test]
fn message_to_offline_user_is_stored_and_delivered_on_registration() {
    let mut s = Server::new("offline");
    s.add_user("alice", "correct horse battery");
    s.add_user("carol", "battery staple horse");
    let (ok, msgs) = s
        .sipp_start(
            "message_send_stored.xml",
            "carol",
            "alice",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &["alice", "stored-1"],
        )
        .finish();
    assert!(ok, "expected 202 for an offline recipient:\n{msgs}");
    assert!(
        msgs.contains("SIP/2.0 202 Accepted (Stored for Later Delivery)"),
        "{msgs}"
    );
    // Acknowledged means durable: it survives kill -9.
    s.kill9();
    s.start();
    // Delivery starts at registration; UDP retransmissions reach the listener
    // that starts right after.
    let (ok, received) = register_and_listen(&s, "carol", "battery staple horse").finish();
    assert!(
        ok,
        "carol did not receive the stored MESSAGE:\n{received}\nserver:\n{}",
        s.log()
    );
    assert!(
        received.contains("Hello from alice: stored-1"),
        "{received}"
    );
    assert!(
        received.contains("Date: "),
        "a stored message carries its original date: {received}"
    );
}

/// A client that sends a message again under the same IMDN Message-ID (as
/// after a 503 while the server's commit was in doubt, or an answer lost on
/// the way) has it stored once; the recipient gets it once.
#[test]
fn a_message_sent_twice_under_its_own_id_is_stored_once() {
    let s = Server::new("imdn_once");
    s.add_user("alice", "correct horse battery");
    s.add_user("carol", "battery staple horse");
    for (id, text) in [("m-7f3a", "once"), ("m-7f3a", "once"), ("m-9c1d", "other")] {
        let (ok, msgs) = s
            .sipp_start(
                "message_send_cpim_imdn_stored.xml",
                "carol",
                "alice",
                "correct horse battery",
                "127.0.0.1",
                free_port(),
                &["alice", text, id],
            )
            .finish();
        assert!(ok, "each copy is acknowledged (202):\n{msgs}");
    }
    let stored = std::process::Command::new("sqlite3")
        .arg(s.data_dir().join("parapet.db"))
        .arg("SELECT message_id FROM pending_messages ORDER BY id")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&stored.stdout),
        "m-7f3a\nm-9c1d\n",
        "{}",
        String::from_utf8_lossy(&stored.stderr)
    );
    // Counted as stored once too.
    let (_, metrics) = s.http_get("/metrics", None);
    assert!(
        metrics.lines().any(|l| l == "parapet_im_stored_total 2"),
        "{metrics}"
    );
    let (ok, received) = register_and_listen(&s, "carol", "battery staple horse").finish();
    assert!(ok, "{received}");
    assert!(received.contains("imdn.Message-ID: m-7f3a"), "{received}");
}

#[test]
fn message_sender_must_prove_who_they_are() {
    let s = Server::new("spoof");
    s.add_user("alice", "correct horse battery");
    s.add_user("bob", "battery staple horse");
    // bob's credentials on a MESSAGE From alice do not verify as alice: challenged
    // again, never relayed or stored.
    let (ok, msgs) = s
        .sipp_start(
            "message_send.xml",
            "alice",
            "bob",
            "battery staple horse",
            "127.0.0.1",
            free_port(),
            &["alice", "spoof"],
        )
        .finish();
    assert!(!ok);
    let answers: Vec<&str> = msgs.lines().filter(|l| l.starts_with("SIP/2.0 ")).collect();
    assert_eq!(
        answers.first(),
        Some(&"SIP/2.0 407 Proxy Authentication Required")
    );
    assert!(
        answers.iter().all(|a| a.starts_with("SIP/2.0 407")),
        "{answers:?}"
    );
}
