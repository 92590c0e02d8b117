//! Role-based administration against a running server: the RBAC matrix over
//! the CLI and the API, the audit log (refusals recorded, tampering found),
//! and policy changes taking effect on the next SIP request.

use std::process::Output;

use crate::harness::*;

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// An API token with `role`, made by root.
fn token_for(s: &Server, role: &str) -> String {
    let o = s.admin(
        &[
            "--output=json",
            "token",
            "create",
            &format!("t-{role}"),
            "--expires-in-days",
            "1",
            "--role",
            role,
        ],
        "",
    );
    assert!(o.status.success(), "{}", out(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["token"].as_str().unwrap().to_string()
}

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
fn policy_changes_take_effect_on_the_next_sip_request() {
    let s = Server::new("policy");
    s.add_user("carol", "correct horse battery");
    // The default authentication policy allows only SHA-256 digest; SIPp
    // speaks MD5: the right password, refused by policy (the harness had
    // allowed MD5 globally; take that back).
    let o = s.admin(
        &["policy", "unset", "authentication", "global", "methods"],
        "",
    );
    assert!(o.status.success(), "{}", out(&o));
    let refused = |why: &[&str]| {
        let (ok, msgs) = s.sipp(
            "register_refused_after_auth.xml",
            "carol",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &[],
        );
        assert!(
            ok,
            "SIPp scenario failed:\n{msgs}\nserver log:\n{}",
            s.log()
        );
        for w in why {
            assert!(msgs.contains(w), "{w:?} not in:\n{msgs}");
        }
    };
    refused(&["403 Forbidden (Digest Algorithm Not Allowed by Policy)"]);
    let o = s.admin(
        &[
            "policy",
            "set",
            "authentication",
            "global",
            "methods=digest-sha256,digest-md5",
        ],
        "",
    );
    assert!(o.status.success(), "{}", out(&o));
    let sipp = |scenario: &str, password: &str| {
        s.sipp(scenario, "carol", password, "127.0.0.1", free_port(), &[])
    };
    // Default lockout threshold (5): one wrong password does not lock.
    passes!(s, sipp("register_bad_auth_once.xml", "wrong password"));
    passes!(s, sipp("register_auth.xml", "correct horse battery"));
    // Threshold 1 through the policy, no restart: one failure locks this address.
    let o = s.admin(
        &[
            "policy",
            "set",
            "authentication",
            "global",
            "lockout_threshold=1",
        ],
        "",
    );
    assert!(o.status.success(), "{}", out(&o));
    passes!(s, sipp("register_bad_auth_once.xml", "wrong password"));
    passes!(s, sipp("register_refused.xml", "correct horse battery"));
    let o = s.admin(&["lockout", "clear"], "");
    assert!(o.status.success(), "{}", out(&o));
    passes!(s, sipp("register_auth.xml", "correct horse battery"));
    // The client-version rule: SIPp is refused, with where to get a client.
    let o = s.admin(
        &[
            "policy",
            "set",
            "client_version",
            "global",
            "blocked_user_agents=sipp*",
            "block_url=https://intranet.example.test/clients",
        ],
        "",
    );
    assert!(o.status.success(), "{}", out(&o));
    refused(&[
        "403 Client Version Not Allowed",
        "Warning: 399 example.test \"This client version is not allowed; get an approved client at https://intranet.example.test/clients\"",
    ]);
    let o = s.admin(&["policy", "remove", "client_version", "global"], "");
    assert!(o.status.success(), "{}", out(&o));
    // The endpoint cap: carol has registered from several ports above.
    let o = s.admin(
        &[
            "policy",
            "set",
            "authentication",
            "global",
            "max_endpoints=1",
        ],
        "",
    );
    assert!(o.status.success(), "{}", out(&o));
    refused(&["403 Too Many Registered Endpoints"]);
    let o = s.admin(
        &[
            "policy",
            "unset",
            "authentication",
            "global",
            "max_endpoints",
        ],
        "",
    );
    assert!(o.status.success(), "{}", out(&o));
    passes!(s, sipp("register_auth.xml", "correct horse battery"));
    // Effective policy explains where each value came from.
    let o = s.admin(
        &[
            "policy",
            "effective",
            &format!("sip:carol@{DOMAIN}"),
            "--kind",
            "authentication",
        ],
        "",
    );
    let text = out(&o);
    assert!(
        text.contains("lockout_threshold")
            && text.contains("from global")
            && text.contains("from built-in default"),
        "{text}"
    );
    // Invalid values are refused with what to fix; nothing changes.
    let o = s.admin(
        &[
            "policy",
            "set",
            "authentication",
            "global",
            "lockout_threshold=0",
        ],
        "",
    );
    // The CLI checks with the server's own rules before sending...
    assert_eq!(o.status.code(), Some(1));
    assert!(
        out(&o).contains("lockout_threshold: 0 is out of range; use a number from 1 to 1000"),
        "{}",
        out(&o)
    );
    // ...and the server refuses it too, for any client.
    let (line, body) = s.http(
        "PATCH",
        "/v1/policies/authentication/global",
        Some(&s.token),
        r#"{"set":{"lockout_threshold":0}}"#,
    );
    assert!(
        line.contains(" 400") && body.contains("lockout_threshold: 0 is out of range"),
        "{line} {body}"
    );
}

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
    // This server runs plain UDP/TCP for SIPp: a high-severity finding, exit 3.
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
    assert_eq!(v["high"], 2, "{v}");
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
    assert_eq!(v["high"], 1, "{v}");
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

#[test]
fn sign_in_needs_the_password_and_a_fresh_code() {
    let s = Server::new("signin");
    let o = s.admin(
        &[
            "--output=json",
            "admins",
            "create",
            "ops",
            "--role",
            "view-only",
            "--password-stdin",
        ],
        "ops password 1234",
    );
    assert!(o.status.success(), "{}", out(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v.get("password").is_none(),
        "a chosen password is not echoed: {v}"
    );
    let secret = rbac::totp::decode(v["totp_secret"].as_str().unwrap()).unwrap();
    let server = format!("--server=http://127.0.0.1:{}", s.admin);
    let login = |password: &str, code: &str| {
        s.cli(
            &[
                "admin",
                &server,
                "login",
                "--name",
                "ops",
                "--password-stdin",
                "--code",
                code,
            ],
            password,
        )
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let code = rbac::totp::code(&secret, now);
    let wrong_code = format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000);
    let o = login("ops password 1234", &wrong_code);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        out(&o).contains("(401)") && out(&o).contains("name, password or code is wrong"),
        "{}",
        out(&o)
    );
    // The right password and code: a session kept in the session file.
    let o = login("ops password 1234", &code);
    assert!(
        o.status.success() && out(&o).contains("signed in as ops (role view-only)"),
        "{}",
        out(&o)
    );
    let o = s.cli(&["admin", &server, "whoami"], "");
    assert!(
        o.status.success() && out(&o).contains("view-only"),
        "{}",
        out(&o)
    );
    // The same code again is a replay.
    let o = login("ops password 1234", &code);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    // Logging out ends the session.
    let o = s.cli(&["admin", &server, "logout"], "");
    assert!(o.status.success(), "{}", out(&o));
    let o = s.cli(&["admin", &server, "whoami"], "");
    assert_eq!(o.status.code(), Some(1));
    assert!(out(&o).contains("not signed in"), "{}", out(&o));
    // Five wrong passwords lock the administrator, even with the right ones after.
    for _ in 0..5 {
        let o = login("not the password", &code);
        assert_eq!(o.status.code(), Some(1));
    }
    let next = rbac::totp::code(&secret, now + rbac::totp::STEP);
    let o = login("ops password 1234", &next);
    assert!(
        out(&o).contains("(403)") && out(&o).contains("locked"),
        "{}",
        out(&o)
    );
    // Every failed sign-in is in the audit log.
    let o = s.admin(
        &["--output=json", "audit", "list", "--object", "admin:ops"],
        "",
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let denied = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "session.create" && r["outcome"] == "denied")
        .count();
    assert_eq!(denied, 1 + 1 + 5 + 1, "{v}");
    // An administrator can lift the lock by resetting the password.
    let o = s.admin(
        &[
            "--output=json",
            "admins",
            "update",
            "ops",
            "--reset-password",
        ],
        "",
    );
    assert!(o.status.success(), "{}", out(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let fresh = v["password"].as_str().unwrap().to_string();
    let o = login(&fresh, &next);
    assert!(o.status.success(), "{}", out(&o));
    // The generated password is changed by its owner, who must know it.
    let passwd = |stdin: &str| s.cli(&["admin", &server, "passwd", "--password-stdin"], stdin);
    let o = passwd("not it\nops new password 5678");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        out(&o).contains("(403)") && out(&o).contains("current password is wrong"),
        "{}",
        out(&o)
    );
    let o = passwd(&format!("{fresh}\nshort"));
    assert!(
        out(&o).contains("(400)") && out(&o).contains("at least 12"),
        "{}",
        out(&o)
    );
    let o = passwd(&format!("{fresh}\nops new password 5678"));
    assert!(
        o.status.success() && out(&o).contains("password changed"),
        "{}",
        out(&o)
    );
}

#[test]
fn a_flood_of_sign_ins_is_bounded_and_the_server_stays_usable() {
    let s = Server::new("signin-flood");
    // Each attempt costs an Argon2id run (19 MiB): at most a few run at once,
    // a bounded number wait, the rest get 503 at once.
    let body = r#"{"name":"ghost","password":"not a real password","code":"000000"}"#;
    let answers: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..100)
            .map(|_| scope.spawn(|| s.http("POST", "/v1/session", None, body).0))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let busy = answers.iter().filter(|l| l.contains(" 503")).count();
    let refused = answers.iter().filter(|l| l.contains(" 401")).count();
    assert_eq!(busy + refused, 100, "{answers:?}");
    assert!(busy > 0, "no attempt was turned away: {answers:?}");
    assert!(refused > 0, "none was answered: {answers:?}");
    // The administrator's session and the API still work.
    let o = s.admin(&["whoami"], "");
    assert!(o.status.success(), "{}", out(&o));
}
