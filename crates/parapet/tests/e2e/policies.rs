//! Policy changes through the admin CLI take effect on the next SIP request
//! of a real client (SIPp), without a restart.

use crate::harness::*;

#[test]
fn policy_changes_take_effect_on_the_next_sip_request() {
    let s = Server::new("policy");
    s.add_user("carol", "correct horse battery");
    // A policy that allows only SHA-256 digest; SIPp speaks MD5: the right
    // password, refused by policy.
    let o = s.admin(
        &[
            "policy",
            "set",
            "authentication",
            "global",
            "methods=digest-sha256,client-certificate",
        ],
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
            "rules=linphone >= 5 allow; sipp* < 3.0 allow; sipp* block-with-url https://intranet.example.test/clients",
        ],
        "",
    );
    assert!(o.status.success(), "{}", out(&o));
    refused(&[
        "403 Client Version Not Allowed",
        "Warning: 399 example.test \"This client version is not allowed; get an approved client at https://intranet.example.test/clients\"",
    ]);
    // And to every request outside a dialog: a MESSAGE from the same client.
    s.add_user("dave", "correct horse battery");
    passes!(
        s,
        s.sipp_start(
            "message_send_client_refused.xml",
            "dave",
            "carol",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &["carol", "hi"],
        )
        .finish()
    );
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
