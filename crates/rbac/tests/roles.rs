//! Roles and scopes: the decisions every admin API path relies on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rbac::{predefined, Role, Target};

fn role(name: &str) -> Role {
    predefined().into_iter().find(|r| r.name == name).unwrap()
}

#[test]
fn predefined_roles_cover_lync_and_least_privilege() {
    let names: Vec<String> = predefined().into_iter().map(|r| r.name).collect();
    for n in [
        "administrator",
        "user-administrator",
        "server-administrator",
        "voice-administrator",
        "view-only",
        "help-desk",
        "compliance-administrator",
        "persistent-chat-administrator",
    ] {
        assert!(names.iter().any(|x| x == n), "{n}");
    }
    let admin = role("administrator");
    for r in predefined() {
        assert!(admin.covers(&r), "administrator covers {}", r.name);
        if r.name != "administrator" {
            for op in ["admins.write", "roles.write", "tokens.write", "admins.read"] {
                assert!(!r.permits(op, Target::Any), "{} must not hold {op}", r.name);
            }
        }
        for op in &r.ops {
            assert!(rbac::ops::is_known(op), "{op}");
        }
    }
    let view = role("view-only");
    assert!(
        view.ops.iter().all(|o| rbac::ops::is_read(o)),
        "view-only only reads"
    );
    assert!(!view.permits("audit.read", Target::Any));
    let help = role("help-desk");
    assert!(help.permits("lockouts.clear", Target::Any));
    assert!(!help.permits("users.write", Target::Any));
    let voice = role("voice-administrator");
    assert!(voice.permits("policies.write.conferencing", Target::All));
    assert!(!voice.permits("policies.write.privacy", Target::All));
    let compliance = role("compliance-administrator");
    assert!(compliance.permits("audit.read", Target::Any));
    assert!(compliance.permits("policies.write.archiving", Target::All));
}

#[test]
fn custom_roles_are_bounded_to_site_and_group() {
    let r = Role::custom(
        "sales-helpdesk",
        "sales team users in Berlin",
        ["users.write".to_string(), "users.read".to_string()],
        Some("berlin".into()),
        Some("sales".into()),
    )
    .unwrap();
    let sales = vec!["sales".to_string()];
    let other = vec!["engineering".to_string()];
    let in_scope = Target::User {
        site: Some("berlin"),
        groups: &sales,
    };
    assert!(r.permits("users.write", in_scope));
    assert!(!r.permits(
        "users.write",
        Target::User {
            site: Some("paris"),
            groups: &sales
        }
    ));
    assert!(!r.permits(
        "users.write",
        Target::User {
            site: None,
            groups: &sales
        }
    ));
    assert!(!r.permits(
        "users.write",
        Target::User {
            site: Some("berlin"),
            groups: &other
        }
    ));
    assert!(!r.permits("users.write", Target::All), "no bulk changes");
    assert!(
        !r.permits("groups.write", in_scope),
        "operations not in the role"
    );
    assert!(r.permits("users.read", Target::Any));

    let site_only = Role::custom(
        "berlin",
        "",
        ["policies.write.privacy".to_string()],
        Some("berlin".into()),
        None,
    )
    .unwrap();
    assert!(site_only.permits("policies.write.privacy", Target::Site("berlin")));
    assert!(!site_only.permits("policies.write.privacy", Target::Site("paris")));
    assert!(
        !site_only.permits("policies.write.privacy", Target::All),
        "not the global policy"
    );

    // A token never gets more than its creator.
    assert!(role("administrator").covers(&r));
    assert!(r.covers(&Role {
        ops: ["users.read".to_string()].into(),
        ..r.clone()
    }));
    assert!(
        !r.covers(&Role {
            site: None,
            ..r.clone()
        }),
        "unscoped is wider"
    );
    assert!(!role("help-desk").covers(&role("user-administrator")));
}

#[test]
fn custom_role_validation_says_what_to_fix() {
    let err = |r: Result<Role, rbac::RoleError>| r.unwrap_err().0;
    assert!(err(Role::custom(
        "administrator",
        "",
        ["users.read".into()],
        None,
        None
    ))
    .contains("predefined"));
    assert!(err(Role::custom(
        "Bad Name",
        "",
        ["users.read".into()],
        None,
        None
    ))
    .contains("lowercase"));
    assert!(err(Role::custom("x", "", Vec::<String>::new(), None, None))
        .contains("at least one operation"));
    assert!(
        err(Role::custom("x", "", ["users.delete".into()], None, None))
            .contains("unknown operation \"users.delete\"")
    );
    assert!(err(Role::custom("x", "a\nb", ["users.read".into()], None, None)).contains("one line"));
    assert!(err(Role::custom(
        "x",
        "",
        ["users.read".into()],
        Some("Paris!".into()),
        None
    ))
    .contains("site"));
}
