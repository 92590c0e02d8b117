//! The user API on the user listener (HTTPS, trusting the server's CA), as
//! a user's own client would use it: signing in with the SIP password,
//! managing the contact list, approving and denying watchers — asserted on
//! what the watchers then receive over SIP — the lockout shared with SIP,
//! when sessions end, and precise refusals of bad input.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;
use crate::presence::{
    admin_ok, notify_bodies, publish, sip, users, watch, watch_for_a_change, PW,
};

/// Signs `user` in; returns the session token.
pub(crate) fn sign_in(s: &Server, user: &str, password: &str) -> String {
    let (code, head, body) = s.https(
        "POST",
        "/user/v1/session",
        None,
        &json!({ "user": user, "password": password }).to_string(),
    );
    assert_eq!(code, 201, "{head}\n{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["user"],
        sip(user.trim_start_matches("sip:").split('@').next().unwrap())
    );
    v["token"].as_str().unwrap().to_string()
}

/// A request that must succeed; returns the JSON answer (`null` for 204).
fn ok(s: &Server, method: &str, path: &str, token: &str, body: Value) -> Value {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let (code, head, text) = s.https(method, path, Some(token), &body);
    assert!(
        (200..300).contains(&code),
        "{method} {path}: {head}\n{text}"
    );
    if code == 204 {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    }
}

/// A request that must be refused with `want`; returns the problem detail.
fn refused(
    s: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
    want: u16,
) -> String {
    let (code, head, text) = s.https(method, path, token, body);
    assert_eq!(code, want, "{method} {path} {body}: {head}\n{text}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{head}"
    );
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["status"], want);
    v["detail"].as_str().unwrap().to_string()
}

fn enc(uri: &str) -> String {
    uri.replace(':', "%3A").replace('@', "%40")
}

#[test]
fn users_approve_and_deny_their_watchers_and_watchers_see_the_difference() {
    let s = Server::new("user-api-watchers");
    users(&s, &["alice", "carol"]);
    publish(&s, "alice", "writing", "busy");
    // Carol watches alice; privacy is contacts-only, so she is pending and
    // sees alice offline until alice decides.
    let carol = watch_for_a_change(&s, "carol", "alice");
    let alice = sign_in(&s, "alice", PW);
    let mut pending = Value::Null;
    for _ in 0..100 {
        pending = ok(&s, "GET", "/user/v1/watchers", &alice, Value::Null);
        if pending["watchers"]
            .as_array()
            .is_some_and(|w| !w.is_empty())
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        pending,
        json!({ "watchers": [{ "watcher": sip("carol"), "status": "pending" }] })
    );
    // Alice approves her; carol's next NOTIFY carries alice's state.
    let entry = ok(
        &s,
        "PUT",
        &format!("/user/v1/watchers/{}", enc(&sip("carol"))),
        &alice,
        json!({ "decision": "approve" }),
    );
    assert_eq!(entry["relationship"], "colleague", "{entry}");
    let (ok_run, trace) = carol.finish();
    assert!(ok_run, "{trace}\nserver:\n{}", s.log());
    let bodies = notify_bodies(&trace);
    assert!(
        bodies[0].contains("<basic>closed</basic>"),
        "pending: {}",
        bodies[0]
    );
    assert!(
        bodies[1].contains("<rpid:busy/>") && bodies[1].contains("writing"),
        "approved as a colleague (availability and note): {}",
        bodies[1]
    );
    // The administrators see what the user did, recorded as the user.
    let listed = admin_ok(&s, &["contacts", "list", &sip("alice")]);
    assert!(
        listed.contains(&sip("carol")) && listed.contains("colleague"),
        "{listed}"
    );
    let audit = admin_ok(
        &s,
        &[
            "audit",
            "list",
            "--actor",
            &format!("user:{}", sip("alice")),
        ],
    );
    assert!(audit.contains("contacts.write"), "{audit}");

    // Alice puts carol in a group and names her; then denies her: the entry
    // keeps its name and group, carol sees alice offline, and her messages
    // are refused.
    ok(
        &s,
        "PUT",
        "/user/v1/contact-groups/Friends",
        &alice,
        Value::Null,
    );
    ok(
        &s,
        "PUT",
        &format!("/user/v1/contacts/{}", enc(&sip("carol"))),
        &alice,
        json!({ "relationship": "personal", "display_name": "Carol C.", "groups": ["Friends"] }),
    );
    let denied = ok(
        &s,
        "PUT",
        &format!("/user/v1/watchers/{}", enc(&sip("carol"))),
        &alice,
        json!({ "decision": "deny" }),
    );
    assert_eq!(
        (
            &denied["relationship"],
            &denied["display_name"],
            &denied["groups"]
        ),
        (&json!("blocked"), &json!("Carol C."), &json!(["Friends"])),
        "{denied}"
    );
    let seen = watch(&s, "carol", "alice");
    assert!(
        seen.contains("<basic>closed</basic>")
            && !seen.contains("busy")
            && !seen.contains("writing"),
        "denied: {seen}"
    );
    passes!(
        s,
        s.sipp_start(
            "message_send_refused.xml",
            "alice",
            "carol",
            PW,
            "127.0.0.1",
            free_port(),
            &["carol", "hi"]
        )
        .finish()
    );
    // Removing the group leaves carol in the list, outside it; removing
    // carol leaves the list empty.
    ok(
        &s,
        "DELETE",
        "/user/v1/contact-groups/Friends",
        &alice,
        Value::Null,
    );
    let list = ok(&s, "GET", "/user/v1/contacts", &alice, Value::Null);
    assert_eq!(list["groups"], json!([]), "{list}");
    assert_eq!(list["contacts"][0]["groups"], json!([]), "{list}");
    ok(
        &s,
        "DELETE",
        &format!("/user/v1/contacts/{}", enc(&sip("carol"))),
        &alice,
        Value::Null,
    );
    let list = ok(&s, "GET", "/user/v1/contacts", &alice, Value::Null);
    assert_eq!(list["contacts"], json!([]), "{list}");
}

#[test]
fn failed_sign_ins_on_the_user_api_count_toward_the_sip_lockout() {
    let s = Server::new("user-api-lockout");
    users(&s, &["bob"]);
    admin_ok(
        &s,
        &[
            "policy",
            "set",
            "authentication",
            "global",
            "lockout_threshold=3",
        ],
    );
    let wrong = json!({ "user": "bob", "password": "guess guess" }).to_string();
    for _ in 0..3 {
        let d = refused(&s, "POST", "/user/v1/session", None, &wrong, 401);
        assert!(d.contains("address or password is wrong"), "{d}");
    }
    // Now even the right password is refused from this address, with when
    // to try again ...
    let right = json!({ "user": "sip:bob@example.test", "password": PW }).to_string();
    let (code, head, body) = s.https("POST", "/user/v1/session", None, &right);
    assert_eq!(code, 403, "{head}\n{body}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: "),
        "{head}"
    );
    assert!(body.contains("too many failed sign-ins"), "{body}");
    // ... and so is SIP from it: one lockout, whichever door was knocked on.
    passes!(
        s,
        s.sipp(
            "register_refused.xml",
            "bob",
            PW,
            "127.0.0.1",
            free_port(),
            &[]
        )
    );
    // The real user elsewhere is not locked out.
    passes!(
        s,
        s.sipp(
            "register_auth.xml",
            "bob",
            PW,
            "127.0.0.2",
            free_port(),
            &[]
        )
    );
    let listed = admin_ok(&s, &["lockout", "list"]);
    assert!(
        listed.contains("sip:bob@example.test") && listed.contains("127.0.0.1"),
        "{listed}"
    );
    admin_ok(
        &s,
        &["lockout", "clear", "--account", "sip:bob@example.test"],
    );
    sign_in(&s, "bob", PW);
    // A policy that allows device certificates only on SIP still lets the
    // user page sign her in with the password: that is where a device gets
    // its certificate (devices.rs).
    admin_ok(
        &s,
        &[
            "policy",
            "set",
            "authentication",
            "global",
            "methods=client-certificate",
        ],
    );
    sign_in(&s, "bob", PW);
}

#[test]
fn sessions_end_at_sign_out_new_password_and_disablement_and_survive_a_restart() {
    let mut s = Server::new("user-api-sessions");
    users(&s, &["dave"]);
    let first = sign_in(&s, "dave", PW);
    let second = sign_in(&s, "dave@example.test", PW);
    let me = ok(&s, "GET", "/user/v1/me", &first, Value::Null);
    assert_eq!(me["user"], sip("dave"));
    // Signing out ends that session only.
    ok(&s, "DELETE", "/user/v1/session", &first, Value::Null);
    let d = refused(&s, "GET", "/user/v1/me", Some(&first), "", 401);
    assert!(d.contains("session has ended"), "{d}");
    ok(&s, "GET", "/user/v1/me", &second, Value::Null);
    // A session acknowledged before kill -9 is still valid after it.
    s.kill9();
    s.start();
    ok(&s, "GET", "/user/v1/me", &second, Value::Null);
    // The administrators' and the users' tokens do not pass for each other.
    let d = refused(&s, "GET", "/user/v1/me", Some(&s.token), "", 401);
    assert!(d.contains("not a user session"), "{d}");
    let (line, _) = s.http_get("/v1/me", Some(&second));
    assert!(line.contains(" 401"), "{line}");
    // A new password ends every session; the old password no longer works.
    let o = s.admin(
        &["user", "passwd", &sip("dave"), "--password-stdin"],
        "a brand new passphrase",
    );
    assert!(o.status.success(), "{}", out(&o));
    refused(&s, "GET", "/user/v1/me", Some(&second), "", 401);
    refused(
        &s,
        "POST",
        "/user/v1/session",
        None,
        &json!({ "user": "dave", "password": PW }).to_string(),
        401,
    );
    let third = sign_in(&s, "dave", "a brand new passphrase");
    // Disabling the account ends its sessions and refuses sign-in, with the
    // same answer as a wrong password.
    admin_ok(&s, &["user", "disable", &sip("dave")]);
    refused(&s, "GET", "/user/v1/me", Some(&third), "", 401);
    let d = refused(
        &s,
        "POST",
        "/user/v1/session",
        None,
        &json!({ "user": "dave", "password": "a brand new passphrase" }).to_string(),
        401,
    );
    assert!(d.contains("address or password is wrong"), "{d}");
    admin_ok(&s, &["user", "enable", &sip("dave")]);
    sign_in(&s, "dave", "a brand new passphrase");
}

#[test]
fn bad_input_gets_a_precise_answer() {
    let s = Server::new("user-api-bad-input");
    users(&s, &["erin"]);
    let t = sign_in(&s, "erin", PW);
    let tok = Some(t.as_str());
    // No token: 401 with a challenge naming the scheme.
    let (code, head, _) = s.https("GET", "/user/v1/contacts", None, "");
    assert_eq!(code, 401);
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: bearer realm=\"parapet-user\""),
        "{head}"
    );
    let d = refused(&s, "POST", "/user/v1/session", None, "{not json", 400);
    assert!(d.contains("not valid"), "{d}");
    let d = refused(
        &s,
        "POST",
        "/user/v1/session",
        None,
        &json!({ "user": "sip:erin@elsewhere.test", "password": PW }).to_string(),
        400,
    );
    assert!(d.contains("not in this server's domain"), "{d}");
    let pat = enc("sip:pat@partner.example");
    for (contact, body, code, says) in [
        (
            "bob".to_string(),
            "{}",
            400,
            "write it as sip:bob@example.test",
        ),
        (enc(&sip("erin")), "{}", 409, "own contact"),
        (
            enc(&sip("nobody")),
            "{}",
            404,
            "no user sip:nobody@example.test",
        ),
        (
            pat.clone(),
            r#"{"relationship":"boss"}"#,
            400,
            "use blocked, external, colleague, workgroup or personal",
        ),
        (pat.clone(), r#"{"colour":"red"}"#, 400, "colour"),
    ] {
        let d = refused(
            &s,
            "PUT",
            &format!("/user/v1/contacts/{contact}"),
            tok,
            body,
            code,
        );
        assert!(d.contains(says), "{contact} {body}: {d}");
    }
    let watcher = format!("/user/v1/watchers/{}", enc("sip:pat@partner.example"));
    let d = refused(&s, "PUT", &watcher, tok, r#"{"decision":"maybe"}"#, 400);
    assert!(d.contains("use \"approve\" or \"deny\""), "{d}");
    let d = refused(
        &s,
        "PUT",
        &watcher,
        tok,
        r#"{"decision":"approve","relationship":"blocked"}"#,
        400,
    );
    assert!(d.contains("\"deny\""), "{d}");
    let d = refused(&s, "PUT", "/user/v1/contact-groups/%20x", tok, "", 400);
    assert!(d.contains("no leading or trailing space"), "{d}");
    let d = refused(&s, "DELETE", "/user/v1/contact-groups/none", tok, "", 404);
    assert!(d.contains("no contact group"), "{d}");
    let d = refused(&s, "GET", "/user/v1/nothing", tok, "", 404);
    assert!(d.contains("/user/v1/openapi.json"), "{d}");
    // A federated contact (no such user to check) is accepted as external.
    let e = ok(
        &s,
        "PUT",
        &format!("/user/v1/contacts/{}", enc("sip:pat@partner.example")),
        &t,
        json!({}),
    );
    assert_eq!(e["relationship"], "external", "{e}");
    // A body over the limit (256 KiB) is refused before it is read whole.
    let big = format!("{{\"display_name\":\"{}\"}}", "x".repeat(300 * 1024));
    let (code, _, _) = s.https(
        "PUT",
        &format!("/user/v1/contacts/{}", enc("sip:pat@partner.example")),
        tok,
        &big,
    );
    assert_eq!(code, 413);
    // Every answer carries the security headers.
    let (code, head, page) = s.https("GET", "/", None, "");
    assert_eq!(code, 200);
    let head = head.to_ascii_lowercase();
    for h in [
        "content-security-policy: default-src 'none'",
        "x-frame-options: deny",
        "x-content-type-options: nosniff",
        "strict-transport-security: max-age=",
    ] {
        assert!(head.contains(h), "{h}: {head}");
    }
    assert!(page.contains("<script src=\"/app.js\""), "{page}");
}

#[test]
fn a_users_request_rate_is_limited_without_affecting_others() {
    let s = Server::with_config(
        "user-api-rate",
        "[limits]\nuser_api_rate = 1\nuser_api_burst = 5",
    );
    users(&s, &["hal", "ida"]);
    let hal = sign_in(&s, "hal", PW);
    let ida = sign_in(&s, "ida", PW);
    let mut answers = Vec::new();
    for _ in 0..12 {
        answers.push(s.https("GET", "/user/v1/me", Some(&hal), ""));
    }
    assert!(
        answers[..5].iter().all(|a| a.0 == 200),
        "the burst is served"
    );
    let limited = answers
        .iter()
        .find(|a| a.0 == 429)
        .expect("a request over the rate is refused");
    assert!(
        limited.1.to_ascii_lowercase().contains("retry-after: 1"),
        "{}",
        limited.1
    );
    assert!(
        limited.2.contains("requests a second from this user"),
        "{}",
        limited.2
    );
    ok(&s, "GET", "/user/v1/me", &ida, Value::Null);
}

#[test]
fn the_user_api_matches_its_document_under_schemathesis() {
    // The per-user rate is raised so that schemathesis tests the operations
    // rather than the rate limit (a_users_request_rate_is_limited tests that).
    let s = Server::with_config(
        "user-api-schemathesis",
        "[limits]\nuser_api_rate = 1000\nuser_api_burst = 1000",
    );
    users(&s, &["frank", "gina"]);
    let token = sign_in(&s, "frank", PW);
    // Every documented path is routed.
    let (code, _, doc) = s.https("GET", "/user/v1/openapi.json", None, "");
    assert_eq!(code, 200);
    let doc: Value = serde_json::from_str(&doc).unwrap();
    for (path, methods) in doc["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{contact}", &enc(&sip("gina")))
            .replace("{watcher}", &enc(&sip("gina")))
            .replace("{name}", "Team")
            .replace("{id}", "0000000000000000");
        // Create before remove.
        let mut order: Vec<&String> = methods.as_object().unwrap().keys().collect();
        order.sort_by_key(|m| m.as_str() == "delete");
        for method in order {
            if path == "/user/v1/session" || path == "/user/v1/sign-out-everywhere" {
                continue; // signing in and out is covered above, and in devices.rs
            }
            let m = method.to_uppercase();
            let body = if m == "PUT" && path.contains("watchers") {
                r#"{"decision":"approve"}"#
            } else if m == "PUT" && path.contains("/contacts/") {
                "{}"
            } else {
                ""
            };
            let (code, head, text) = s.https(&m, &concrete, Some(&token), body);
            if path.starts_with("/user/v1/devices") || path.ends_with("/confirm") {
                // These need a request, a code or an existing device
                // (devices.rs): routed means answered by their handler.
                assert!(
                    !text.contains("no such path") && code != 405,
                    "{m} {path}: {head}\n{text}"
                );
                continue;
            }
            assert!((200..300).contains(&code), "{m} {path}: {head}\n{text}");
        }
    }
    let report = crate::api::run_schemathesis(
        &s,
        &format!("https://127.0.0.1:{}/user/v1/openapi.json", s.web),
        &token,
        &[
            "--exclude-operation-id",
            "delete_user_v1_session",
            "--exclude-operation-id",
            "post_user_v1_sign_out_everywhere",
        ],
    );
    assert!(report.contains("passed"), "{report}");
}

#[test]
fn a_body_over_the_limit_gets_its_413_not_a_reset() {
    use std::io::{Read, Write};
    let s = Server::new("user-api-large-body");
    users(&s, &["erin"]);
    let t = sign_in(&s, "erin", PW);
    // A client sends as clients do: headers first, then the body, then it
    // reads the answer. The server must read what it refuses (up to 8 MiB),
    // or the client's writes fail before it can read why (before: "Broken
    // pipe" here, and schemathesis's "EOF occurred in violation of
    // protocol" now and then). Bodies larger than the socket buffers hold.
    let send = |port: u16, path: &str, auth: Option<&str>, size: usize| -> String {
        let mut c = s.tls_to(port);
        let body = vec![b'x'; size];
        let auth = auth
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            c,
            "POST {path} HTTP/1.1\r\nHost: {}\r\n{auth}\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            s.domain,
            body.len()
        )
        .unwrap();
        c.write_all(&body)
            .unwrap_or_else(|e| panic!("{path}: the server closed while the body was sent: {e}"));
        c.flush().unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = c.read(&mut buf).unwrap();
            assert!(n > 0, "{path}: closed without an answer");
            head.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&head).to_string()
    };
    for _ in 0..2 {
        // 24 times the user listener's limit, signed in: 413.
        let head = send(s.web, "/user/v1/devices", Some(&t), 6 * 1024 * 1024);
        assert!(head.starts_with("HTTP/1.1 413 "), "{head}");
        assert!(head.contains("application/problem+json"), "{head}");
        // The same without a token: refused before any handler, still 413.
        let head = send(s.web, "/user/v1/devices", None, 6 * 1024 * 1024);
        assert!(head.starts_with("HTTP/1.1 413 "), "{head}");
    }
}
