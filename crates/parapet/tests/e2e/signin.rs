//! Administrator sign-in: password and one-time code, replay, logout,
//! lockout, own password change, and a bounded flood.

use crate::harness::*;

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
