//! Call detail records: answered, refused and cancelled calls recorded as
//! the callers and callees saw them; read (and audited) by those allowed;
//! exported as CSV; deleted after the retention their parties' policies
//! set.

use crate::harness::*;

fn call(s: &Server, callee_scenario: Option<&str>, caller_scenario: &str, callee: &str) -> bool {
    let bob = callee_scenario.map(|sc| register_then(s, "bob", "battery staple horse", sc));
    let (ok, msgs) = s
        .sipp_start(
            caller_scenario,
            callee,
            "alice",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &["alice"],
        )
        .finish();
    if let Some(b) = bob {
        let (ok, trace) = b.finish();
        assert!(ok, "{trace}");
    }
    if !ok {
        assert!(msgs.contains("480 Temporarily Unavailable"), "{msgs}");
    }
    ok
}

fn list(s: &Server, token: &str, args: &[&str]) -> Vec<serde_json::Value> {
    let mut a = vec!["--output=json", "cdr", "list"];
    a.extend_from_slice(args);
    let o = s.admin_as(token, &a, "");
    assert!(o.status.success(), "{}", out(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["records"].as_array().cloned().unwrap_or_default()
}

#[test]
fn calls_are_recorded_as_they_went_read_by_those_allowed_and_deleted_after_retention() {
    let mut s = Server::new("cdr");
    s.add_user("alice", "correct horse battery");
    s.add_user("bob", "battery staple horse");
    s.add_user("carol", "staple horse battery");
    // Usage records kept a day, but a month for carol's.
    for args in [
        &[
            "policy",
            "set",
            "archiving",
            "global",
            "usage_retention_days=1",
        ][..],
        &[
            "policy",
            "set",
            "archiving",
            "named:long",
            "usage_retention_days=30",
        ],
        &[
            "grant",
            "add",
            "archiving",
            "long",
            "user:sip:carol@example.test",
        ],
    ] {
        let o = s.admin(args, "");
        assert!(o.status.success(), "{}", out(&o));
    }
    // Answered, then hung up by alice; refused (carol is not registered);
    // cancelled by alice while ringing.
    assert!(call(&s, Some("call_uas.xml"), "call_uac.xml", "bob"));
    assert!(!call(&s, None, "call_uac.xml", "carol"));
    assert!(call(
        &s,
        Some("call_uas_cancel.xml"),
        "call_uac_cancel.xml",
        "bob"
    ));

    let officer = token_for(&s, "compliance-administrator");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let calls = loop {
        let v = list(&s, &officer, &["--kind", "call"]);
        if v.len() >= 3 || std::time::Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(calls.len(), 3, "{calls:#?}");
    let answered = calls
        .iter()
        .find(|c| c["status"] == 200)
        .expect("the answered call");
    assert_eq!(answered["caller"], "sip:alice@example.test");
    assert_eq!(answered["callee"], "sip:bob@example.test");
    assert_eq!(answered["ended_by"], "caller");
    assert_eq!(answered["federated"], false);
    let (start, ans, end) = (
        answered["started_ms"].as_i64().unwrap(),
        answered["answered_ms"].as_i64().unwrap(),
        answered["ended_ms"].as_i64().unwrap(),
    );
    assert!(start <= ans && ans <= end, "{answered}");
    let refused = calls
        .iter()
        .find(|c| c["callee"] == "sip:carol@example.test")
        .unwrap();
    assert_eq!(refused["status"], 480, "{refused}");
    assert_eq!(refused["ended_by"], "nobody");
    assert!(refused["answered_ms"].is_null(), "{refused}");
    let cancelled = calls
        .iter()
        .find(|c| c["status"] == 487)
        .expect("the cancelled call");
    assert_eq!(cancelled["ended_by"], "caller");
    assert_eq!(cancelled["duration_secs"], 0);
    // By party.
    assert_eq!(
        list(&s, &officer, &["--user", "sip:carol@example.test"]).len(),
        1
    );
    assert_eq!(
        list(
            &s,
            &officer,
            &["--user", "sip:bob@example.test", "--kind", "call"]
        )
        .len(),
        2
    );
    // Bob's registrations (SIPp registers him for each call) are sign-ins.
    let sign_ins = list(
        &s,
        &officer,
        &["--user", "sip:bob@example.test", "--kind", "sign-in"],
    );
    assert!(!sign_ins.is_empty(), "{sign_ins:#?}");
    assert!(
        sign_ins[0]["detail"]
            .as_str()
            .unwrap()
            .starts_with("udp:127.0.0.1:"),
        "{sign_ins:#?}"
    );

    // CSV for a spreadsheet.
    let file = s.dir.join("calls.csv");
    let o = s.admin_as(
        &officer,
        &[
            "cdr",
            "export",
            "--kind",
            "call",
            "--format",
            "csv",
            "--out",
            file.to_str().unwrap(),
        ],
        "",
    );
    assert!(
        o.status.success() && out(&o).contains("exported 3 records"),
        "{}",
        out(&o)
    );
    let csv = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4, "{csv}");
    assert!(
        lines[0].starts_with("id,kind,call_id,caller,callee,"),
        "{csv}"
    );
    assert!(
        csv.contains(",sip:alice@example.test,sip:carol@example.test,"),
        "{csv}"
    );

    // Not for a view-only administrator; every read audited.
    let viewer = token_for(&s, "view-only");
    let o = s.admin_as(&viewer, &["cdr", "list"], "");
    assert!(out(&o).contains("does not allow cdrs.read"), "{}", out(&o));
    let o = s.admin(&["--output=json", "audit", "list", "--object", "cdrs:"], "");
    let audit: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        audit
            .iter()
            .any(|r| r["action"] == "cdrs.read" && r["outcome"] == "ok"),
        "{audit:#?}"
    );
    assert!(audit.iter().any(|r| r["outcome"] == "denied"), "{audit:#?}");
    let m = s.http_get("/metrics", None).1;
    assert!(m.contains("parapet_calls_answered_total 1"), "{m}");
    assert!(m.contains("parapet_calls_unanswered_total 2"), "{m}");

    // Kept a day, or a month with carol: each record says until when.
    let day = 86_400_000;
    for c in &calls {
        let kept = c["keep_until_ms"].as_i64().unwrap() - c["ended_ms"].as_i64().unwrap();
        let days = if c["callee"] == "sip:carol@example.test" {
            30
        } else {
            1
        };
        assert_eq!(kept, days * day, "{c:#?}");
    }

    // Two days on (the retention clock moved for this process): all gone
    // but the call to carol.
    s.kill9();
    s.env.push((
        "PARAPET_ARCHIVE_CLOCK_OFFSET_SECS".into(),
        (2 * 86_400).to_string(),
    ));
    s.start();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let left = list(&s, &s.token, &[]);
        if left.len() == 1 {
            assert_eq!(left[0]["callee"], "sip:carol@example.test", "{left:#?}");
            assert_eq!(left[0]["status"], 480, "{left:#?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not purged as the policies say: {left:#?}\n{}",
            s.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// `from`'s MESSAGE `text` to `to`, with SIPp (`scenario`: what `to`'s
/// side answers, 200 or 202).
fn message(s: &Server, to: &str, text: &str, scenario: &str) {
    let (ok, msgs) = s
        .sipp_start(
            scenario,
            to,
            "alice",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &["alice", text],
        )
        .finish();
    assert!(ok, "{msgs}\n{}", s.log());
}

#[test]
fn conversations_sign_ins_and_sign_outs_are_recorded_and_a_stop_closes_what_is_open() {
    let mut s = Server::new("usage-records");
    s.add_user("alice", "correct horse battery");
    s.add_user("bob", "battery staple horse");
    s.add_user("carol", "staple horse battery");
    // Bob signs in and gets one message; carol is away: three are stored
    // for her. Each pair is one conversation.
    let bob = register_and_listen(&s, "bob", "battery staple horse");
    message(&s, "bob", "hello bob", "message_send.xml");
    assert!(bob.finish().0);
    for n in 0..3 {
        message(&s, "carol", &format!("note {n}"), "message_send_stored.xml");
    }
    // An administrator disables bob: his registration ends with it.
    let o = s.admin(&["user", "disable", "sip:bob@example.test"], "");
    assert!(o.status.success(), "{}", out(&o));
    let officer = token_for(&s, "compliance-administrator");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let (sign_ins, sign_outs) = loop {
        let i = list(&s, &officer, &["--kind", "sign-in"]);
        let o = list(&s, &officer, &["--kind", "sign-out"]);
        if (!i.is_empty() && !o.is_empty()) || std::time::Instant::now() > deadline {
            break (i, o);
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(sign_ins.len(), 1, "{sign_ins:#?}");
    assert_eq!(sign_ins[0]["caller"], "sip:bob@example.test");
    assert_eq!(sign_ins[0]["caller_device"], "SIPp", "{sign_ins:#?}");
    assert_eq!(sign_outs.len(), 1, "{sign_outs:#?}");
    assert_eq!(sign_outs[0]["ended_by"], "removed", "{sign_outs:#?}");
    assert_eq!(sign_outs[0]["detail"], sign_ins[0]["detail"]);
    // Conversations are written when they end: none yet. The usage
    // counters have them already.
    assert!(list(&s, &officer, &["--kind", "im"]).is_empty());
    let m = s.http_get("/metrics", None).1;
    assert!(
        m.contains("parapet_usage_total{modality=\"im\",partner=\"internal\"} 4\n"),
        "{m}"
    );

    // A clean stop closes them; the records are there after the restart.
    s.signal("TERM");
    let status = s.child.as_mut().unwrap().wait().unwrap();
    assert!(status.success(), "{status:?}\n{}", s.log());
    s.child = None;
    s.start();
    let ims = list(&s, &officer, &["--kind", "im"]);
    assert_eq!(ims.len(), 2, "{ims:#?}");
    let with = |who: &str| {
        ims.iter()
            .find(|r| r["callee"] == who)
            .unwrap_or_else(|| panic!("no conversation with {who}: {ims:#?}"))
    };
    let carol = with("sip:carol@example.test");
    assert_eq!(carol["caller"], "sip:alice@example.test");
    assert_eq!(carol["messages"], 3, "{carol}");
    assert_eq!(carol["ended_by"], "server stopped");
    assert!(carol["started_ms"].as_i64() <= carol["ended_ms"].as_i64());
    assert_eq!(with("sip:bob@example.test")["messages"], 1);
    // What they said is nowhere in them.
    let text = serde_json::Value::Array(ims.clone()).to_string();
    assert!(
        !text.contains("note 1") && !text.contains("hello bob"),
        "{text}"
    );
}
