//! The security view and the posture check against a running server.

use crate::harness::*;

#[test]
fn the_security_view_and_the_posture_check_name_the_fix() {
    let s = Server::new("security");
    let check = |token: &str, extra: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_parapet"));
        c.arg("security")
            .arg(format!("--server=http://127.0.0.1:{}", s.admin))
            .arg("check")
            .args(extra)
            .env("PARAPET_ADMIN_TOKEN", token);
        c.output().unwrap()
    };
    // This server runs plain UDP/TCP for SIPp, with MD5 digest on them: two
    // high-severity findings, exit 3.
    let o = check(&s.token, &[]);
    let text = out(&o);
    assert_eq!(o.status.code(), Some(3), "{text}");
    assert!(
        text.contains("[HIGH] config listen") && text.contains("remove udp://, tcp:// and ws://"),
        "{text}"
    );
    // Open partner discovery: another high finding, with the command that fixes it.
    let o = s.admin(
        &[
            "policy",
            "set",
            "federation",
            "global",
            "partner_discovery=true",
        ],
        "",
    );
    assert!(o.status.success(), "{}", out(&o));
    let o = check(&s.token, &["--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["high"], 3, "{v}");
    let fix = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["setting"] == "policy federation.partner_discovery")
        .unwrap();
    let fix = fix["command"].as_str().unwrap().to_string();
    assert_eq!(
        fix,
        "parapet admin policy set federation global partner_discovery=false"
    );
    // Running exactly that command clears the finding.
    let args: Vec<&str> = fix.split_whitespace().skip(2).collect();
    let o = s.admin(&args, "");
    assert!(o.status.success(), "{}", out(&o));
    let o = check(&s.token, &["--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["high"], 2, "{v}");
    // The full view: grouped, every setting with current, recommended, why, command.
    let o = s.admin(&["security", "show"], "");
    let text = out(&o);
    for want in [
        "== Transport",
        "== Authentication",
        "== Administration",
        "== Privacy",
        "[ok]",
        "policy privacy.presence_federated",
        "change with: parapet admin policy set privacy global presence_federated=contacts",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    // security.read is needed: view-only has it, help-desk does not.
    let o = check(&token_for(&s, "view-only"), &[]);
    assert_eq!(o.status.code(), Some(3), "{}", out(&o));
    let o = check(&token_for(&s, "help-desk"), &[]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("(403)"), "{}", out(&o));
}
