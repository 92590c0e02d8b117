//! The IM filter on real traffic: SIPp senders and receivers against the
//! server as the README starts it, the policy set with the admin CLI.
//! What the recipient's endpoint receives is read from its trace.

use crate::federation::metric;
use crate::harness::*;

fn send(s: &Server, scenario: &str, to: &str, text: &str) -> (bool, String) {
    s.sipp_start(
        scenario,
        to,
        "alice",
        "correct horse battery",
        "127.0.0.1",
        free_port(),
        &["alice", text],
    )
    .finish()
}

fn policy(s: &Server, fields: &[&str]) {
    let mut args = vec!["policy", "set", "im_filter", "global"];
    args.extend_from_slice(fields);
    let o = s.admin(&args, "");
    assert!(o.status.success(), "{}", out(&o));
}

fn metrics(s: &Server) -> String {
    s.http_get("/metrics", None).1
}

#[test]
fn links_are_defused_warned_or_refused_as_the_policy_says_relayed_stored_and_in_cpim() {
    let s = Server::new("im-filter");
    s.add_user("alice", "correct horse battery");
    s.add_user("bob", "battery staple horse");
    s.add_user("carol", "staple horse battery");

    // The default policy defuses: an underscore before the outside link,
    // the organisation's own left alone, the notice first.
    let bob = register_and_listen(&s, "bob", "battery staple horse");
    let (ok, msgs) = send(
        &s,
        "message_send.xml",
        "bob",
        "see http://evil.example/x and http://wiki.example.test/y",
    );
    assert!(ok, "{msgs}\n{}", s.log());
    let (ok, received) = bob.finish();
    assert!(ok, "{received}");
    assert!(
        received.contains(
            "Links in this message were made unclickable.\nHello from alice: see _http://evil.example/x and http://wiki.example.test/y"
        ),
        "{received}"
    );

    // Inside CPIM too, with the look-alike host shown as punycode.
    let bob = register_and_listen(&s, "bob", "battery staple horse");
    let (ok, msgs) = send(
        &s,
        "message_send_cpim.xml",
        "bob",
        "log in at https://exаmple.test/login",
    );
    assert!(ok, "{msgs}\n{}", s.log());
    let (ok, received) = bob.finish();
    assert!(ok, "{received}");
    assert!(
        received.contains("Content-Type: message/cpim"),
        "{received}"
    );
    assert!(
        received.contains("Hello from alice: log in at _https://xn--exmple-4nf.test/login"),
        "{received}"
    );

    // Blocked: the sender is told why; nothing is relayed or stored.
    policy(&s, &["action=block"]);
    let before = metrics(&s);
    let (ok, msgs) = send(
        &s,
        "message_send_filtered.xml",
        "carol",
        "try www.evil.example",
    );
    assert!(ok, "{msgs}\n{}", s.log());
    assert!(msgs.contains("403 Forbidden (Links Not Allowed)"), "{msgs}");
    assert!(
        msgs.contains(
            "Warning: 399 parapet \"the IM filter policy does not allow links in messages\""
        ),
        "{msgs}"
    );
    let after = metrics(&s);
    for (name, more) in [
        ("parapet_im_filter_blocked_total", 1),
        ("parapet_im_stored_total", 0),
        ("parapet_im_relayed_total", 0),
    ] {
        assert_eq!(metric(&after, name), metric(&before, name) + more, "{name}");
    }
    // A message without links still goes.
    let bob = register_and_listen(&s, "bob", "battery staple horse");
    let (ok, msgs) = send(&s, "message_send.xml", "bob", "no links here");
    assert!(ok, "{msgs}");
    let (ok, received) = bob.finish();
    assert!(ok, "{received}");
    assert!(
        received.contains("Hello from alice: no links here")
            && !received.contains("links;")
            && !received.contains("unclickable"),
        "{received}"
    );

    // Links to blocked file types are refused whatever the action.
    policy(&s, &["action=warn"]);
    let (ok, msgs) = send(
        &s,
        "message_send_filtered.xml",
        "carol",
        "run http://evil.example/tool.exe",
    );
    assert!(ok, "{msgs}");
    assert!(
        msgs.contains("403 Forbidden (Link to a Blocked File Type)"),
        "{msgs}"
    );

    // Stored for later with the warning, as filtered when it was stored.
    let (ok, msgs) = send(
        &s,
        "message_send_stored.xml",
        "carol",
        "read www.news.example",
    );
    assert!(ok, "{msgs}");
    let carol = register_and_listen(&s, "carol", "staple horse battery");
    let (ok, received) = carol.finish();
    assert!(ok, "{received}\n{}", s.log());
    assert!(
        received.contains(
            "This message contains links; open them only if you trust the sender.\nHello from alice: read www.news.example"
        ),
        "{received}"
    );

    // A warning policy without a warning is refused when it is set.
    let o = s.admin(
        &[
            "policy",
            "set",
            "im_filter",
            "global",
            "action=warn",
            "warn_message=",
        ],
        "",
    );
    assert!(!o.status.success());
    assert!(out(&o).contains("needs a warn_message"), "{}", out(&o));
}

/// A call once set up is no way around the policies: inside it, a MESSAGE
/// passes the IM filter and a re-INVITE's MSRP file offer the file policy,
/// as outside it; what is refused never reaches the callee (its scenario
/// expects only the plain MESSAGE and the BYE).
#[test]
fn inside_a_call_messages_and_file_offers_are_held_to_the_same_policies() {
    let s = Server::new("im-filter-dialog");
    s.add_user("alice", "correct horse battery");
    s.add_user("bob", "battery staple horse");
    policy(&s, &["action=block"]);
    let bob = register_then(
        &s,
        "bob",
        "battery staple horse",
        "call_uas_in_dialog_content.xml",
    );
    let (ok, msgs) = s
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
    assert!(ok, "{msgs}\n{}", s.log());
    let (ok, received) = bob.finish();
    assert!(ok, "{received}");
    assert!(!received.contains("evil.example"), "{received}");
    assert!(!received.contains("file-selector"), "{received}");
    assert!(
        msgs.contains(
            "Warning: 399 parapet \"the IM filter policy does not allow links in messages\""
        ),
        "{msgs}"
    );
    assert!(
        msgs.contains("403 Forbidden (File Cannot Be Inspected)"),
        "{msgs}"
    );
    let m = metrics(&s);
    assert_eq!(metric(&m, "parapet_im_filter_blocked_total"), 1, "{m}");
    assert_eq!(metric(&m, "parapet_file_offers_refused_total"), 1, "{m}");
}
