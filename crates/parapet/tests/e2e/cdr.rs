//! Call detail records: answered, refused and cancelled calls recorded as
//! the callers and callees saw them; read (and audited) by those allowed;
//! exported as CSV; deleted after retention.

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
    let mut s = Server::with_config("cdr", "[monitoring]\ncdr_retention_days = 1\n");
    s.add_user("alice", "correct horse battery");
    s.add_user("bob", "battery staple horse");
    s.add_user("carol", "staple horse battery");
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
        let v = list(&s, &officer, &[]);
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
        list(&s, &officer, &["--user", "sip:bob@example.test"]).len(),
        2
    );

    // CSV for a spreadsheet.
    let file = s.dir.join("calls.csv");
    let o = s.admin_as(
        &officer,
        &[
            "cdr",
            "export",
            "--format",
            "csv",
            "--out",
            file.to_str().unwrap(),
        ],
        "",
    );
    assert!(
        o.status.success() && out(&o).contains("exported 3 calls"),
        "{}",
        out(&o)
    );
    let csv = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4, "{csv}");
    assert!(lines[0].starts_with("id,call_id,caller,callee,"), "{csv}");
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

    // Two days on (the retention clock moved for this process): gone.
    s.kill9();
    s.env.push((
        "PARAPET_ARCHIVE_CLOCK_OFFSET_SECS".into(),
        (2 * 86_400).to_string(),
    ));
    s.start();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while !list(&s, &s.token, &[]).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "not purged:\n{}",
            s.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}
