//! Role-based administration against a running server: the RBAC matrix over
//! the CLI and the API, and the audit log (refusals recorded, tampering found).

use crate::harness::*;

#[test]
fn every_role_may_do_what_it_is_designed_for_and_nothing_else() {
    let s = Server::new("rbac");
    // Columns: status, list users, add a user, create a group, write the
    // privacy policy, write the archiving policy, clear all lockouts, read
    // the audit log, list administrators. The designed matrix, written out.
    let matrix: &[(&str, [bool; 9])] = &[
        (
            "administrator",
            [true, true, true, true, true, true, true, true, true],
        ),
        (
            "user-administrator",
            [true, true, true, true, false, false, true, false, false],
        ),
        (
            "server-administrator",
            [true, true, false, false, false, false, true, false, false],
        ),
        (
            "voice-administrator",
            [true, true, false, false, false, false, false, false, false],
        ),
        (
            "view-only",
            [true, true, false, false, false, false, false, false, false],
        ),
        (
            "help-desk",
            [true, true, false, false, false, false, true, false, false],
        ),
        (
            "compliance-administrator",
            [true, true, false, false, false, true, false, true, false],
        ),
        (
            "persistent-chat-administrator",
            [true, true, false, false, false, false, false, false, false],
        ),
    ];
    for (role, allowed) in matrix {
        let t = token_for(&s, role);
        let user = format!("sip:u-{role}@{DOMAIN}");
        let group = format!("g-{role}");
        let cli: [Vec<&str>; 9] = [
            vec!["status"],
            vec!["user", "list"],
            vec!["user", "add", &user, "--password-stdin"],
            vec!["group", "create", &group],
            vec![
                "policy",
                "set",
                "privacy",
                "global",
                "publish_location=false",
            ],
            vec!["policy", "set", "archiving", "global", "internal=true"],
            vec!["lockout", "clear"],
            vec!["audit", "list"],
            vec!["admins", "list"],
        ];
        for (i, args) in cli.iter().enumerate() {
            let o = s.admin_as(&t, args, "a long enough password");
            let text = out(&o);
            if allowed[i] {
                assert!(
                    o.status.success(),
                    "{role} {args:?} should be allowed: {text}"
                );
            } else {
                assert_eq!(
                    o.status.code(),
                    Some(1),
                    "{role} {args:?} should be refused: {text}"
                );
                assert!(
                    text.contains("(403)") && text.contains(&format!("role {role} does not allow")),
                    "{role} {args:?}: {text}"
                );
            }
        }
        // The same decisions over the API directly.
        let api: [(&str, String, String); 9] = [
            ("GET", "/v1/status".into(), String::new()),
            ("GET", "/v1/users".into(), String::new()),
            ("POST", "/v1/users".into(), format!("{{\"uri\":\"sip:api-{role}@{DOMAIN}\",\"password\":\"a long enough password\"}}")),
            ("PUT", format!("/v1/groups/api-{role}"), "{}".into()),
            ("PATCH", "/v1/policies/privacy/global".into(), "{\"set\":{\"publish_location\":false}}".into()),
            ("PATCH", "/v1/policies/archiving/global".into(), "{\"set\":{\"internal\":true}}".into()),
            ("POST", "/v1/lockouts/clear".into(), String::new()),
            ("GET", "/v1/audit".into(), String::new()),
            ("GET", "/v1/admins".into(), String::new()),
        ];
        for (i, (method, path, body)) in api.iter().enumerate() {
            let (line, resp) = s.http(method, path, Some(&t), body);
            if allowed[i] {
                assert!(
                    line.contains(" 20"),
                    "{role} {method} {path} should be allowed: {line} {resp}"
                );
            } else {
                assert!(
                    line.contains(" 403"),
                    "{role} {method} {path} should be refused: {line} {resp}"
                );
                assert!(resp.contains("\"detail\""), "problem+json: {resp}");
            }
        }
    }
    // A token never gets more than its creator; tokens can be revoked.
    let help = token_for(&s, "help-desk");
    let o = s.admin_as(
        &help,
        &[
            "token",
            "create",
            "x",
            "--expires-in-days",
            "1",
            "--role",
            "administrator",
        ],
        "",
    );
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let (line, body) = s.http(
        "GET",
        "/v1/status",
        Some("ppt_0000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        "",
    );
    assert!(
        line.contains(" 401") && body.contains("parapet admin login"),
        "{line} {body}"
    );
    // Refusals are in the audit log, with who, what and from where.
    let o = s.admin(
        &["--output=json", "audit", "list", "--actor", "anonymous"],
        "",
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .any(|r| r["outcome"] == "denied"
                && r["action"] == "authenticate"
                && r["source"] == "127.0.0.1"),
        "{v}"
    );
    let o = s.admin(
        &[
            "--output=json",
            "audit",
            "list",
            "--object",
            "admins",
            "--limit",
            "1000",
        ],
        "",
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let denied = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["outcome"] == "denied" && r["action"] == "admins.read")
        .count();
    assert_eq!(
        denied,
        2 * 7,
        "each role but administrator was refused twice (CLI and API): {v}"
    );
}

#[test]
fn changes_are_audited_and_tampering_is_detected() {
    let mut s = Server::new("audit");
    s.add_user("alice", "correct horse battery");
    let o = s.admin(&["user", "disable", &format!("sip:alice@{DOMAIN}")], "");
    assert!(o.status.success(), "{}", out(&o));
    let o = s.admin(
        &[
            "--output=json",
            "audit",
            "list",
            "--object",
            "user:sip:alice",
        ],
        "",
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let disable = &v[0];
    assert_eq!(disable["actor"], "admin:root");
    assert_eq!(disable["before"]["enabled"], true);
    assert_eq!(disable["after"]["enabled"], false);
    let o = s.admin(&["audit", "verify"], "");
    assert!(
        o.status.success() && out(&o).contains("audit log intact"),
        "{}",
        out(&o)
    );
    // Someone with SQL access rewrites who did it.
    s.kill9();
    let db = s.data_dir().join("parapet.db");
    let py = format!(
        "import sqlite3; c = sqlite3.connect({:?}); c.execute('DROP TRIGGER audit_no_update'); c.execute(\"UPDATE audit SET actor = 'admin:nobody' WHERE object LIKE 'user:sip:alice%' AND action = 'users.write'\"); c.commit()",
        db.to_str().unwrap()
    );
    let t = std::process::Command::new("python3")
        .args(["-c", &py])
        .output()
        .unwrap();
    assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stderr));
    s.start();
    let o = s.admin(&["audit", "verify"], "");
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        out(&o).contains("AUDIT LOG DAMAGED") && out(&o).contains("does not match its MAC"),
        "{}",
        out(&o)
    );
}

#[test]
fn the_last_administrator_stays_and_a_demotion_applies_at_once() {
    let s = Server::new("last-admin");
    for args in [
        vec!["admins", "remove", "root"],
        vec!["admins", "update", "root", "--disable"],
        vec!["admins", "update", "root", "--role", "view-only"],
    ] {
        let o = s.admin(&args, "");
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", out(&o));
        assert!(
            out(&o).contains("(409)") && out(&o).contains("no enabled administrator"),
            "{args:?}: {}",
            out(&o)
        );
    }
    // With a second administrator, root can be narrowed; root's own session
    // loses the rights on its next request.
    let o = s.admin(
        &["admins", "create", "second", "--role", "administrator"],
        "",
    );
    assert!(o.status.success(), "{}", out(&o));
    let o = s.admin(&["admins", "update", "root", "--role", "view-only"], "");
    assert!(o.status.success(), "{}", out(&o));
    let o = s.admin(&["admins", "list"], "");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        out(&o).contains("role view-only does not allow admins.read"),
        "{}",
        out(&o)
    );
    let o = s.admin(&["user", "list"], "");
    assert!(
        o.status.success(),
        "view-only still reads users: {}",
        out(&o)
    );
}

#[test]
fn a_flood_of_refused_requests_adds_a_bounded_number_of_audit_records() {
    let s = Server::new("refusal-flood");
    let forged = "ppt_0000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    for _ in 0..300 {
        let (line, _) = s.http("GET", "/v1/status", Some(forged), "");
        assert!(line.contains(" 401"), "{line}");
    }
    let o = s.admin(
        &[
            "--output=json",
            "audit",
            "list",
            "--actor",
            "anonymous",
            "--limit",
            "1000",
        ],
        "",
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let recorded = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "authenticate")
        .count();
    // 120 a minute per source; the run may straddle one minute boundary.
    assert!(
        (120..=240).contains(&recorded),
        "{recorded} records for 300 refusals"
    );
    let o = s.admin(&["audit", "verify"], "");
    assert!(o.status.success(), "{}", out(&o));
}
