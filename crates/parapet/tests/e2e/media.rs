//! The media policy on real calls (SIPp over UDP, the README's server):
//! a call offering plain RTP, SDES keys over signalling that is not TLS,
//! a NULL cipher or no offer at all is refused with 488 and a Warning that
//! says why, and its callee never sees it; a callee answering an encrypted offer
//! with plain RTP has its 183 withheld and its 200 refused (the caller gets
//! 488, the callee ACK and BYE; a re-INVITE or UPDATE answered in the
//! clear ends the call the same way); with `encryption=optional` plain RTP goes through, and
//! the security check reports the policy as a high finding.

use crate::federation::metric;
use crate::files::last_answer;
use crate::harness::*;

const ALICE: &str = "correct horse battery";
const BOB: &str = "battery staple horse";
const KEY: &str =
    "crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR";

fn offer(s: &Server, proto: &str, attribute: &str) -> (bool, String) {
    alice_calls_bob(
        s,
        "call_uac_media_offer.xml",
        ALICE,
        &["alice", proto, attribute],
    )
    .finish()
}

#[test]
fn unencrypted_media_is_refused_unless_the_policy_allows_it() {
    let s = Server::new("media-policy");
    s.add_user("alice", ALICE);
    s.add_user("bob", BOB);
    // Bob is registered (his SIPp has gone: a call that got past the
    // check would time out, not be answered 488).
    passes!(
        s,
        s.sipp(
            "register_auth.xml",
            "bob",
            BOB,
            "127.0.0.1",
            free_port(),
            &[]
        )
    );

    let (ok, msgs) = offer(&s, "RTP/AVP", "sendrecv");
    assert!(ok, "{msgs}\n{}", s.log());
    assert_eq!(
        last_answer(&msgs),
        "SIP/2.0 488 Not Acceptable Here (Media Not Encrypted) Warning: 399 parapet \"the audio stream (m= line 1) is plain RTP: not encrypted; media must be encrypted (SRTP by DTLS-SRTP, or SDES over TLS)\""
    );
    // SDES keys in an offer that came over UDP would be readable on the
    // way: refused whatever the suite.
    let (ok, msgs) = offer(&s, "RTP/SAVP", KEY);
    assert!(ok, "{msgs}");
    assert!(
        last_answer(&msgs)
            .starts_with("SIP/2.0 488 Not Acceptable Here (SDES Keys Over Plain Signalling)"),
        "{msgs}"
    );
    // A NULL cipher is no cipher.
    let (ok, msgs) = offer(
        &s,
        "RTP/SAVP",
        "crypto:1 NULL_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
    );
    assert!(ok, "{msgs}");
    assert!(
        last_answer(&msgs).contains("offers only SRTP suites that are not allowed"),
        "{msgs}"
    );
    // No offer at all: it would come in the 2xx, which cannot be refused.
    let (ok, msgs) = alice_calls_bob(&s, "call_uac_no_offer.xml", ALICE, &["alice"]).finish();
    assert!(ok, "{msgs}");
    assert!(
        last_answer(&msgs).starts_with("SIP/2.0 488 Not Acceptable Here (No SDP Offer)"),
        "{msgs}"
    );
    let m = s.http_get("/metrics", None).1;
    assert_eq!(metric(&m, "parapet_media_refused_total"), 4, "{m}");

    // Allowed by the administrator: the same plain offer reaches bob and
    // the call is set up; the security check now fails on it.
    let o = s.admin(
        &["policy", "set", "media", "global", "encryption=optional"],
        "",
    );
    assert!(o.status.success(), "{}", out(&o));
    let bob = register_then(&s, "bob", BOB, "call_uas_bye.xml");
    let (ok, msgs) = offer(&s, "RTP/AVP", "sendrecv");
    assert!(ok, "{msgs}\n{}", s.log());
    let (ok, callee) = bob.finish();
    assert!(ok, "{callee}");
    assert!(
        callee.contains("m=audio") && callee.contains("RTP/AVP 0"),
        "{callee}"
    );
    let (code, text) = s.security_check();
    assert_eq!(code, Some(3), "{text}");
    assert!(text.contains("[HIGH] policy media.encryption"), "{text}");
}

#[test]
fn a_plain_answer_to_an_encrypted_offer_never_reaches_the_caller() {
    let s = Server::new("media-answer");
    s.add_user("alice", ALICE);
    s.add_user("bob", BOB);
    // Bob answers alice's DTLS-SRTP offer with plain RTP, first as early
    // media (183), then in his 200.
    let bob = register_then(&s, "bob", BOB, "call_uas_plain_answer.xml");
    let (ok, msgs) = alice_calls_bob(
        &s,
        "call_uac_answer_refused.xml",
        ALICE,
        &["alice", "203.0.113.7"],
    )
    .finish();
    // Alice got neither: only the 488, with the reason (her scenario fails
    // on any 18x or 200).
    assert!(ok, "{msgs}\n{}", s.log());
    assert_eq!(
        last_answer(&msgs),
        "SIP/2.0 488 Not Acceptable Here (Media Not Encrypted) Warning: 399 parapet \"the audio stream (m= line 1) is plain RTP: not encrypted; media must be encrypted (SRTP by DTLS-SRTP, or SDES over TLS)\""
    );
    // Bob's dialog was ended by the server: his 200 was ACKed, then a BYE
    // came, which he answered.
    let (ok, callee) = bob.finish();
    assert!(ok, "{callee}\n{}", s.log());
    let bye = callee.split("BYE sip:").nth(1).expect("bob received a BYE");
    assert!(bye.contains("CSeq: 3 BYE"), "{callee}");
    let m = s.http_get("/metrics", None).1;
    assert_eq!(metric(&m, "parapet_media_refused_total"), 2, "{m}");
    assert!(
        s.log().contains("the media policy refused a call's answer"),
        "{}",
        s.log()
    );
}

/// Alice's call is set up encrypted; bob answers her `request` (re-INVITE
/// or UPDATE, again DTLS-SRTP) with plain RTP by `uas`: her request gets
/// 488, bob's dialog is ended by the server (ACK first for a re-INVITE),
/// the call is over.
fn plain_in_dialog_answer_ends_the_call(name: &str, uac: &str, uas: &str) {
    let s = Server::new(name);
    s.add_user("alice", ALICE);
    s.add_user("bob", BOB);
    let bob = register_then_with(&s, "bob", BOB, uas, &["203.0.113.5", "203.0.113.6"]);
    let (ok, msgs) = alice_calls_bob(&s, uac, ALICE, &["alice", "198.51.100.7"]).finish();
    // (The 488 with its reason, wherever it came.)
    assert!(ok, "{msgs}\n{}", s.log());
    assert!(
        msgs.contains("SIP/2.0 488 Not Acceptable Here (Media Not Encrypted)\r\n")
            || msgs.contains("SIP/2.0 488 Not Acceptable Here (Media Not Encrypted)\n"),
        "{msgs}"
    );
    let (ok, callee) = bob.finish();
    assert!(ok, "{callee}\n{}", s.log());
    assert!(callee.contains("CSeq: 4 BYE"), "{callee}");
    let m = s.http_get("/metrics", None).1;
    assert_eq!(metric(&m, "parapet_media_refused_total"), 1, "{m}");
}

#[test]
fn a_plain_answer_to_a_re_invite_ends_the_call_instead() {
    plain_in_dialog_answer_ends_the_call(
        "media-reanswer",
        "call_uac_reinvite_refused.xml",
        "call_uas_reinvite_plain.xml",
    );
}

#[test]
fn a_plain_answer_to_an_update_ends_the_call_instead() {
    plain_in_dialog_answer_ends_the_call(
        "media-update",
        "call_uac_update_refused.xml",
        "call_uas_update_plain.xml",
    );
}

#[test]
fn a_re_invite_without_an_offer_is_refused_and_the_call_goes_on() {
    let s = Server::new("media-offerless");
    s.add_user("alice", ALICE);
    s.add_user("bob", BOB);
    // Bob never sees the re-INVITE: he answers the call, then the BYE.
    let bob = register_then_with(
        &s,
        "bob",
        BOB,
        "call_uas_relay.xml",
        &["203.0.113.5", "203.0.113.6"],
    );
    let (ok, msgs) = alice_calls_bob(
        &s,
        "call_uac_reinvite_offerless.xml",
        ALICE,
        &["alice", "198.51.100.7"],
    )
    .finish();
    assert!(ok, "{msgs}\n{}", s.log());
    assert!(
        msgs.contains(
            "Warning: 399 parapet \"a re-INVITE must carry its offer where media must be encrypted"
        ),
        "{msgs}"
    );
    let (ok, callee) = bob.finish();
    assert!(ok, "{callee}\n{}", s.log());
    assert_eq!(callee.matches("INVITE sip:bob").count(), 1, "{callee}");
}
