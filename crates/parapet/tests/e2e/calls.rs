//! Calls through the proxy: set-up, re-INVITE, UPDATE, BYE, strict routers, CANCEL, timer C.

use crate::harness::*;

/// Alice calls bob with `caller_scenario`; bob answers with call_uas.xml
/// (ringing, 200, then a re-INVITE, an UPDATE and the BYE through the
/// proxy). Both sides must pass; returns bob's SIPp trace.
fn call_bob(name: &str, caller_scenario: &str) -> String {
    let s = Server::new(name);
    s.add_user("alice", "correct horse battery");
    s.add_user("bob", "battery staple horse");
    let bob = register_then(&s, "bob", "battery staple horse", "call_uas.xml");
    let (ok, msgs) = s
        .sipp_start(
            caller_scenario,
            "bob",
            "alice",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &["alice"],
        )
        .finish();
    assert!(
        ok,
        "the call failed for alice ({caller_scenario}):\n{msgs}\nserver:\n{}",
        s.log()
    );
    let (ok, callee) = bob.finish();
    assert!(
        ok,
        "bob's side failed (or the INVITE carried credentials / no Record-Route):\n{callee}"
    );
    callee
}

#[test]
fn call_is_set_up_and_torn_down_through_the_proxy() {
    let callee = call_bob("call", "call_uac.xml");
    // The ACK, the re-INVITE (hold), the UPDATE and the BYE came to bob
    // through the proxy, along its Record-Route.
    assert!(callee.contains("ACK sip:bob@127.0.0.1:"), "{callee}");
    assert_eq!(
        callee.matches("INVITE sip:bob@127.0.0.1:").count(),
        2,
        "{callee}"
    );
    assert!(callee.contains("UPDATE sip:bob@127.0.0.1:"), "{callee}");
    assert!(callee.contains("BYE sip:bob@127.0.0.1:"), "{callee}");
    let vias_of_bye = callee
        .split("BYE sip:")
        .nth(1)
        .unwrap_or("")
        .lines()
        .take_while(|l| !l.is_empty())
        .filter(|l| l.starts_with("Via:"))
        .count();
    assert_eq!(
        vias_of_bye, 2,
        "the BYE passed the proxy (its Via above alice's): {callee}"
    );
}

#[test]
fn strict_router_requests_are_routed_like_loose_ones() {
    let callee = call_bob("strict", "call_uac_strict.xml");
    // The ACK, UPDATE and BYE reach bob with his Contact as Request-URI and
    // the route set consumed: no Route left.
    for method in ["ACK", "UPDATE", "BYE"] {
        let request = callee
            .split(&format!("{method} sip:"))
            .nth(1)
            .unwrap_or("")
            .lines()
            .take_while(|l| !l.is_empty())
            .collect::<Vec<_>>();
        assert!(
            request
                .first()
                .is_some_and(|l| l.starts_with("bob@127.0.0.1:")),
            "{method}: {callee}"
        );
        assert!(
            !request.iter().any(|l| l.starts_with("Route:")),
            "{method} kept a Route: {callee}"
        );
    }
}

#[test]
fn ringing_call_is_cancelled() {
    let s = Server::new("cancel");
    s.add_user("alice", "correct horse battery");
    s.add_user("bob", "battery staple horse");
    let bob = register_then(&s, "bob", "battery staple horse", "call_uas_cancel.xml");
    let (ok, msgs) = s
        .sipp_start(
            "call_uac_cancel.xml",
            "bob",
            "alice",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &["alice"],
        )
        .finish();
    assert!(
        ok,
        "alice's cancelled call went wrong:\n{msgs}\nserver:\n{}",
        s.log()
    );
    let (ok, callee) = bob.finish();
    assert!(ok, "bob was not cancelled properly:\n{callee}");
    assert!(callee.contains("CANCEL sip:bob@127.0.0.1:"), "{callee}");
}

#[test]
fn call_to_an_unregistered_user_is_temporarily_unavailable() {
    let s = Server::new("noanswer");
    s.add_user("alice", "correct horse battery");
    s.add_user("bob", "battery staple horse");
    let (ok, msgs) = s
        .sipp_start(
            "call_uac.xml",
            "bob",
            "alice",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &["alice"],
        )
        .finish();
    assert!(!ok);
    assert!(
        msgs.contains("SIP/2.0 480 Temporarily Unavailable"),
        "{msgs}"
    );
}

#[test]
fn unanswered_call_is_cancelled_by_timer_c() {
    let s = Server::new("timerc");
    s.add_user("alice", "correct horse battery");
    s.add_user("bob", "battery staple horse");
    // bob rings and never answers; the server cancels after timer C (3 s here).
    let bob = register_then(&s, "bob", "battery staple horse", "call_uas_cancel.xml");
    let (ok, msgs) = s
        .sipp_start(
            "call_uac_unanswered.xml",
            "bob",
            "alice",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &["alice"],
        )
        .finish();
    assert!(
        ok,
        "alice did not get 487 after timer C:\n{msgs}\nserver:\n{}",
        s.log()
    );
    let (ok, callee) = bob.finish();
    assert!(ok, "bob was not cancelled by the server:\n{callee}");
    assert!(s.log().contains("timer C: cancelling"), "{}", s.log());
}
