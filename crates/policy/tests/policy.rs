//! Policy kinds, validation and effective-policy resolution.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use policy::spec::{kind, kinds, Fields};
use policy::{
    Directory, FieldOrigin, Grant, GrantTarget, Group, PolicyDoc, Scope, Snapshot, Value,
};

fn fields(pairs: &[(&str, Value)]) -> Fields {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn doc(kind: &str, scope: Scope, pairs: &[(&str, Value)]) -> PolicyDoc {
    PolicyDoc {
        kind: kind.into(),
        scope,
        fields: fields(pairs),
    }
}

fn named(n: &str) -> Scope {
    Scope::Named(n.into())
}

fn directory() -> Directory {
    let mut d = Directory::default();
    for (name, priority) in [("sales", 20), ("engineering", 10), ("security", 10)] {
        d.groups.insert(
            name.into(),
            Group {
                name: name.into(),
                priority,
            },
        );
    }
    d.sites
        .insert("sip:alice@example.test".into(), "paris".into());
    d.sites
        .insert("sip:bob@example.test".into(), "paris".into());
    d.members.insert(
        "sip:alice@example.test".into(),
        vec!["sales".into(), "engineering".into()],
    );
    d.members
        .insert("sip:bob@example.test".into(), vec!["sales".into()]);
    d
}

#[test]
fn every_kind_has_valid_unique_documented_defaults() {
    let mut names = Vec::new();
    for k in kinds() {
        assert!(!names.contains(&k.name), "{} twice", k.name);
        names.push(k.name);
        assert!(!k.doc.is_empty());
        let defaults: Fields = k
            .fields
            .iter()
            .map(|f| (f.name.to_string(), f.default.value()))
            .collect();
        assert_eq!(
            defaults.len(),
            k.fields.len(),
            "{}: a field name twice",
            k.name
        );
        k.check_all(&defaults)
            .unwrap_or_else(|e| panic!("{}: default invalid: {e}", k.name));
        for f in k.fields {
            assert!(!f.doc.is_empty(), "{}.{} undocumented", k.name, f.name);
        }
    }
    assert_eq!(
        names,
        [
            "authentication",
            "external_access",
            "federation",
            "privacy",
            "im_filter",
            "file_transfer",
            "media",
            "client_version",
            "conferencing",
            "archiving"
        ]
    );
}

#[test]
fn defaults_are_the_secure_choice() {
    let s = Snapshot::new(vec![], vec![], Directory::default()).unwrap();
    let u = "sip:nobody@example.test";
    let fed = s.effective(u, "federation").unwrap();
    assert!(!fed.flag("enabled"));
    assert!(!fed.flag("partner_discovery"));
    let ext = s.effective(u, "external_access").unwrap();
    assert!(ext.fields.iter().all(|(_, v, _)| *v == Value::Bool(false)));
    let privacy = s.effective(u, "privacy").unwrap();
    assert_eq!(privacy.text("presence_internal"), Some("contacts"));
    assert_eq!(privacy.text("presence_federated"), Some("contacts"));
    let files = s.effective(u, "file_transfer").unwrap();
    assert!(files.list("blocked_extensions").iter().any(|e| e == ".jar"));
    assert_eq!(files.text("federated"), Some("block_all"));
    let media = s.effective(u, "media").unwrap();
    assert_eq!(media.text("encryption"), Some("required"));
    let conf = s.effective(u, "conferencing").unwrap();
    assert_eq!(conf.text("file_transfer"), Some("follow_policy"));
    assert!(!conf.flag("anonymous_participants"));
    assert!(privacy
        .fields
        .iter()
        .all(|(_, _, o)| *o == FieldOrigin::Default));
}

#[test]
fn the_narrowest_grant_wins_field_by_field() {
    let docs = vec![
        doc(
            "authentication",
            Scope::Global,
            &[
                ("lockout_threshold", Value::Int(10)),
                ("max_endpoints", Value::Int(4)),
                ("lockout_window_secs", Value::Int(900)),
            ],
        ),
        doc(
            "authentication",
            Scope::Site("paris".into()),
            &[
                ("lockout_threshold", Value::Int(8)),
                ("max_endpoints", Value::Int(6)),
            ],
        ),
        doc(
            "authentication",
            named("sales-auth"),
            &[("max_endpoints", Value::Int(2))],
        ),
        doc(
            "authentication",
            named("eng-auth"),
            &[("second_factor", Value::Bool(true))],
        ),
        doc(
            "authentication",
            named("alice-auth"),
            &[("lockout_threshold", Value::Int(3))],
        ),
    ];
    let grants = vec![
        Grant {
            kind: "authentication".into(),
            policy: "sales-auth".into(),
            target: GrantTarget::Group("sales".into()),
        },
        Grant {
            kind: "authentication".into(),
            policy: "eng-auth".into(),
            target: GrantTarget::Group("engineering".into()),
        },
        Grant {
            kind: "authentication".into(),
            policy: "alice-auth".into(),
            target: GrantTarget::User("sip:alice@example.test".into()),
        },
    ];
    let s = Snapshot::new(docs, grants, directory()).unwrap();

    let alice = s
        .effective("sip:alice@example.test", "authentication")
        .unwrap();
    // The user's own grant.
    assert_eq!(alice.int("lockout_threshold"), Some(3));
    assert_eq!(
        alice.origin("lockout_threshold"),
        Some(&FieldOrigin::User {
            policy: "alice-auth".into()
        })
    );
    // A group grant: engineering (priority 10) before sales (20).
    assert!(alice.flag("second_factor"));
    assert_eq!(
        alice.origin("second_factor"),
        Some(&FieldOrigin::Group {
            group: "engineering".into(),
            policy: "eng-auth".into()
        })
    );
    // Sales sets max_endpoints; engineering does not: sales' value applies.
    assert_eq!(alice.int("max_endpoints"), Some(2));
    // Global, past a site that does not set the field.
    assert_eq!(alice.int("lockout_window_secs"), Some(900));
    assert_eq!(
        alice.origin("lockout_window_secs"),
        Some(&FieldOrigin::Global)
    );
    // Nobody set it.
    assert_eq!(alice.int("client_certificate_days"), Some(180));
    assert_eq!(
        alice.origin("client_certificate_days"),
        Some(&FieldOrigin::Default)
    );

    let bob = s
        .effective("sip:bob@example.test", "authentication")
        .unwrap();
    assert_eq!(bob.int("lockout_threshold"), Some(8));
    assert_eq!(
        bob.origin("lockout_threshold"),
        Some(&FieldOrigin::Site {
            site: "paris".into()
        })
    );
    assert!(!bob.flag("second_factor"));

    // Someone the directory does not know gets Global and defaults.
    let carol = s
        .effective("sip:carol@example.test", "authentication")
        .unwrap();
    assert_eq!(carol.int("lockout_threshold"), Some(10));
    assert_eq!(carol.int("max_endpoints"), Some(4));
}

#[test]
fn equal_priority_groups_are_ordered_by_name() {
    let mut d = directory();
    d.members.insert(
        "sip:erin@example.test".into(),
        vec!["security".into(), "engineering".into()],
    );
    let docs = vec![
        doc(
            "archiving",
            named("a"),
            &[("retention_days", Value::Int(30))],
        ),
        doc(
            "archiving",
            named("b"),
            &[("retention_days", Value::Int(90))],
        ),
    ];
    let grants = vec![
        Grant {
            kind: "archiving".into(),
            policy: "b".into(),
            target: GrantTarget::Group("security".into()),
        },
        Grant {
            kind: "archiving".into(),
            policy: "a".into(),
            target: GrantTarget::Group("engineering".into()),
        },
    ];
    let s = Snapshot::new(docs, grants, d).unwrap();
    let e = s.effective("sip:erin@example.test", "archiving").unwrap();
    // engineering < security by name at equal priority.
    assert_eq!(e.int("retention_days"), Some(30));
}

#[test]
fn invalid_snapshots_say_what_to_fix() {
    let err = |docs: Vec<PolicyDoc>, grants: Vec<Grant>| {
        Snapshot::new(docs, grants, directory()).unwrap_err().0
    };
    assert!(err(vec![doc("colour", Scope::Global, &[])], vec![])
        .starts_with("no policy kind \"colour\"; the kinds are authentication, "));
    assert!(err(
        vec![doc(
            "privacy",
            Scope::Global,
            &[("presence", Value::Bool(true))]
        )],
        vec![]
    )
    .contains("no field \"presence\"; the fields are presence_internal"));
    assert_eq!(
        err(
            vec![doc(
                "authentication",
                Scope::Global,
                &[("lockout_threshold", Value::Int(0))]
            )],
            vec![]
        ),
        "authentication (global): authentication.lockout_threshold: 0 is out of range; use a number from 1 to 1000"
    );
    assert!(err(
        vec![doc(
            "authentication",
            Scope::Global,
            &[("methods", Value::List(vec![]))]
        )],
        vec![]
    )
    .contains("at least 1 of digest-sha256, digest-md5, client-certificate must stay listed"));
    assert!(err(
        vec![doc(
            "federation",
            Scope::Global,
            &[
                (
                    "allowed_domains",
                    Value::List(vec!["partner.example".into()])
                ),
                (
                    "blocked_domains",
                    Value::List(vec!["partner.example".into()])
                ),
            ]
        )],
        vec![]
    )
    .contains("partner.example is both allowed and blocked"));
    assert!(err(
        vec![
            doc("privacy", Scope::Global, &[]),
            doc("privacy", Scope::Global, &[])
        ],
        vec![]
    )
    .contains("two privacy documents at global"));
    let grant = |policy: &str, target: GrantTarget| Grant {
        kind: "privacy".into(),
        policy: policy.into(),
        target,
    };
    assert!(err(
        vec![],
        vec![grant(
            "missing",
            GrantTarget::User("sip:a@example.test".into())
        )]
    )
    .contains("no such named policy"));
    assert!(err(
        vec![doc("privacy", named("p"), &[])],
        vec![grant("p", GrantTarget::Group("nope".into()))]
    )
    .contains("no such group"));
    assert!(err(
        vec![
            doc("privacy", named("p"), &[]),
            doc("privacy", named("q"), &[])
        ],
        vec![
            grant("p", GrantTarget::User("sip:a@example.test".into())),
            grant("q", GrantTarget::User("sip:a@example.test".into()))
        ]
    )
    .contains("one per kind"));
}

#[test]
fn operator_text_is_parsed_with_the_fields_rules() {
    let k = kind("federation").unwrap();
    assert_eq!(
        k.parse("allowed_domains", "Partner.Example, other.example")
            .unwrap(),
        Value::List(vec!["partner.example".into(), "other.example".into()])
    );
    assert_eq!(
        k.parse("verification", "sometimes").unwrap_err().0,
        "federation.verification: \"sometimes\" is not one of: verified, unverified"
    );
    assert!(k.parse("colour", "red").unwrap_err().0.contains("no field"));
    assert_eq!(
        k.parse(
            "partner_modalities",
            "Partner.Example:IM, partner.example:presence-out"
        )
        .unwrap(),
        Value::List(vec![
            "partner.example:im".into(),
            "partner.example:presence-out".into()
        ])
    );
    for bad in [
        "partner.example:files",
        "partner.example:im-both",
        "partner.example",
        "192.0.2.1:im",
        ":im",
    ] {
        let e = k.parse("partner_modalities", bad).unwrap_err().0;
        assert!(e.contains("partner.example:MODALITY"), "{bad}: {e}");
    }
    assert!(k
        .parse(
            "partner_servers",
            "partner.example:sip.partner.example,b.example:edge.b.example:5062"
        )
        .is_ok());
    for bad in [
        "partner.example",
        "partner.example:192.0.2.1",
        "partner.example:sip.partner.example:0",
        "partner.example:sip.partner.example:65536",
        "partner.example:sip.partner.example:5061:1",
    ] {
        let e = k.parse("partner_servers", bad).unwrap_err().0;
        assert!(
            e.contains("partner.example:sip.partner.example"),
            "{bad}: {e}"
        );
    }
    let e = k
        .parse(
            "partner_servers",
            "p.example:a.p.example,p.example:b.p.example",
        )
        .unwrap_err()
        .0;
    assert!(e.contains("pinned twice"), "{e}");
}
