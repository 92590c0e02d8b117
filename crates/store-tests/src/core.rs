//! The SQLite store against real database files in a temporary directory.

use store::{
    Binding, BindingChange, GrantRow, GrantTargetRow, GroupRow, NewUser, PendingMessage, PolicyRow,
    PolicyScope, Store, StoreError,
};

pub fn user(aor: &str) -> NewUser {
    NewUser {
        aor: aor.into(),
        display_name: Some("Alice".into()),
        secret: vec![1, 2, 3],
        created_at: 1_700_000_000,
    }
}

pub fn binding(aor: &str, key: &str, expires_at: i64) -> Binding {
    Binding {
        aor: aor.into(),
        key: key.into(),
        contact: format!("sip:{key}@192.0.2.1"),
        q: 1000,
        expires_at,
        call_id: "c".into(),
        cseq: 1,
        path: vec!["<sip:edge.example.com;lr>".into(), "<sip:p2;lr>".into()],
        source: "tls:192.0.2.1:40000".into(),
        user_agent: Some("baresip".into()),
        node: String::new(),
    }
}

pub fn message(to: &str, body: &str) -> PendingMessage {
    PendingMessage {
        id: 0,
        recipient: to.into(),
        sender: "sip:bob@example.com".into(),
        content_type: "text/plain".into(),
        body: body.as_bytes().to_vec(),
        received_at: 100,
        expires_at: 1_000,
        message_id: None,
    }
}

pub async fn users_lifecycle<S: Store>(s: S) {
    let u = s.add_user(user("sip:alice@example.com")).await.unwrap();
    assert!(u.enabled);
    assert!(matches!(
        s.add_user(user("sip:alice@example.com")).await,
        Err(StoreError::Conflict(_))
    ));
    s.add_user(user("sip:aaron@example.com")).await.unwrap();
    let names: Vec<_> = s
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.aor)
        .collect();
    assert_eq!(names, ["sip:aaron@example.com", "sip:alice@example.com"]);
    assert!(s.set_enabled("sip:alice@example.com", false).await.unwrap());
    assert!(s
        .set_secret("sip:alice@example.com", vec![9])
        .await
        .unwrap());
    let a = s.user("sip:alice@example.com").await.unwrap().unwrap();
    assert_eq!((a.enabled, a.secret), (false, vec![9]));
    assert!(!s.set_enabled("sip:nobody@example.com", true).await.unwrap());
    assert_eq!(s.user("sip:nobody@example.com").await.unwrap(), None);
    // Removing a user removes their bindings and pending messages.
    s.upsert_binding(binding("sip:alice@example.com", "k1", i64::MAX))
        .await
        .unwrap();
    s.enqueue_message(message("sip:alice@example.com", "hi"))
        .await
        .unwrap();
    assert!(s.remove_user("sip:alice@example.com").await.unwrap());
    assert!(s.live_bindings(0).await.unwrap().is_empty());
    assert_eq!(s.pending_count("sip:alice@example.com").await.unwrap(), 0);
}

pub async fn bulk_import_is_all_or_nothing<S: Store>(s: S) {
    let many: Vec<_> = (0..10_000)
        .map(|i| user(&format!("sip:u{i}@example.com")))
        .collect();
    assert_eq!(s.import_users(many).await.unwrap(), 10_000);
    assert_eq!(s.list_users().await.unwrap().len(), 10_000);
    let clash = vec![user("sip:new@example.com"), user("sip:u5@example.com")];
    assert!(matches!(
        s.import_users(clash).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        s.user("sip:new@example.com").await.unwrap(),
        None,
        "the failed import left nothing behind"
    );
}

pub async fn bindings_refresh_expire_and_keep_their_path<S: Store>(s: S) {
    s.add_user(user("sip:alice@example.com")).await.unwrap();
    s.upsert_binding(binding("sip:alice@example.com", "k1", 100))
        .await
        .unwrap();
    s.upsert_binding(binding("sip:alice@example.com", "k2", 200))
        .await
        .unwrap();
    let mut refreshed = binding("sip:alice@example.com", "k1", 300);
    refreshed.cseq = 2;
    s.upsert_binding(refreshed.clone()).await.unwrap();
    let live = s.live_bindings(150).await.unwrap();
    assert_eq!(live.len(), 2);
    assert_eq!(live[0], refreshed);
    assert_eq!(live[0].path, ["<sip:edge.example.com;lr>", "<sip:p2;lr>"]);
    assert_eq!(s.live_bindings(250).await.unwrap().len(), 1);
    assert_eq!(s.purge_expired_bindings(250).await.unwrap(), 1);
    assert!(s
        .remove_binding("sip:alice@example.com", "k1")
        .await
        .unwrap());
    assert!(!s
        .remove_binding("sip:alice@example.com", "k1")
        .await
        .unwrap());
    // A closed connection's binding goes only while it is still the one
    // registered from that connection.
    let mut again = binding("sip:alice@example.com", "k3", 400);
    again.source = "tls:192.0.2.1:40001".into();
    s.upsert_binding(again).await.unwrap();
    assert!(!s
        .remove_binding_from("sip:alice@example.com", "k3", "tls:192.0.2.1:40000")
        .await
        .unwrap());
    assert!(s
        .remove_binding_from("sip:alice@example.com", "k3", "tls:192.0.2.1:40001")
        .await
        .unwrap());
    // A binding needs an existing user.
    assert!(s
        .upsert_binding(binding("sip:ghost@example.com", "k", 1))
        .await
        .is_err());
}

pub async fn bindings_of_many_users_are_read_at_once<S: Store>(s: S) {
    for u in ["sip:alice@example.com", "sip:bob@example.com"] {
        s.add_user(user(u)).await.unwrap();
    }
    for (u, k, exp) in [
        ("sip:alice@example.com", "k1", 300),
        ("sip:alice@example.com", "k2", 100),
        ("sip:bob@example.com", "k1", 300),
    ] {
        s.upsert_binding(binding(u, k, exp)).await.unwrap();
    }
    let asked: Vec<String> = [
        "sip:bob@example.com",
        "sip:nobody@example.com",
        "sip:alice@example.com",
    ]
    .map(String::from)
    .into();
    let got = s.bindings_of_each(asked.clone(), 200).await.unwrap();
    let keys: Vec<(String, Vec<String>)> = got
        .into_iter()
        .map(|(a, l)| (a, l.into_iter().map(|b| b.key).collect()))
        .collect();
    // In the order asked; an address with none live gets an empty list
    // (what tells a node that another removed them).
    assert_eq!(
        keys,
        vec![
            (asked[0].clone(), vec!["k1".to_string()]),
            (asked[1].clone(), vec![]),
            (asked[2].clone(), vec!["k1".to_string()]),
        ]
    );
    assert!(s
        .bindings_of_each(Vec::new(), 200)
        .await
        .unwrap()
        .is_empty());
}

pub async fn expired_bindings_go_by_key_unless_refreshed_since<S: Store>(s: S) {
    s.add_user(user("sip:alice@example.com")).await.unwrap();
    s.add_user(user("sip:bob@example.com")).await.unwrap();
    for (aor, key) in [
        ("sip:alice@example.com", "k1"),
        ("sip:alice@example.com", "k2"),
        ("sip:bob@example.com", "k1"),
    ] {
        s.upsert_binding(binding(aor, key, 100)).await.unwrap();
    }
    // alice's k2 was refreshed after the registrar saw it expire.
    s.upsert_binding(binding("sip:alice@example.com", "k2", 500))
        .await
        .unwrap();
    let seen = vec![
        ("sip:alice@example.com".to_string(), "k1".to_string()),
        ("sip:alice@example.com".to_string(), "k2".to_string()),
    ];
    assert_eq!(s.remove_expired_bindings(seen, 150).await.unwrap(), 1);
    let live: Vec<(String, String)> = s
        .live_bindings(0)
        .await
        .unwrap()
        .into_iter()
        .map(|b| (b.aor, b.key))
        .collect();
    assert_eq!(
        live,
        [
            ("sip:alice@example.com".to_string(), "k2".to_string()),
            ("sip:bob@example.com".to_string(), "k1".to_string())
        ],
        "only the expired binding named went; bob's (not named) waits for the scan"
    );
    assert_eq!(s.purge_expired_bindings(150).await.unwrap(), 1);
    // Removing the user still removes their bindings (the cascade survives
    // the table's rebuild in schema 7).
    s.remove_user("sip:alice@example.com").await.unwrap();
    assert!(s.live_bindings(0).await.unwrap().is_empty());
}

pub async fn pending_messages_keep_arrival_order<S: Store>(s: S) {
    s.add_user(user("sip:bob@example.com")).await.unwrap();
    for i in 0..5 {
        s.enqueue_message(message("sip:bob@example.com", &format!("m{i}")))
            .await
            .unwrap();
    }
    let got = s.pending_messages("sip:bob@example.com", 3).await.unwrap();
    let bodies: Vec<_> = got
        .iter()
        .map(|m| String::from_utf8(m.body.clone()).unwrap())
        .collect();
    assert_eq!(bodies, ["m0", "m1", "m2"]);
    assert!(s.delete_message(got[0].id).await.unwrap());
    assert_eq!(s.pending_count("sip:bob@example.com").await.unwrap(), 4);
    assert_eq!(
        s.pending_recipients().await.unwrap(),
        [("sip:bob@example.com".to_string(), 4)]
    );
    let mut late = message("sip:bob@example.com", "late");
    late.expires_at = 5_000;
    s.enqueue_message(late).await.unwrap();
    assert_eq!(s.purge_expired_messages(1_000).await.unwrap(), 4);
    assert_eq!(s.pending_count("sip:bob@example.com").await.unwrap(), 1);
}

pub async fn a_message_sent_again_under_its_own_id_is_stored_once<S: Store>(s: S) {
    let (bob, alice) = ("sip:bob@example.com", "sip:alice@example.com");
    s.add_user(user(bob)).await.unwrap();
    let with_id = |sender: &str, id: &str, body: &str| {
        let mut m = message(bob, body);
        m.sender = sender.into();
        m.message_id = Some(id.into());
        m
    };
    let stored = s
        .enqueue_message(with_id(alice, "x1", "hello"))
        .await
        .unwrap();
    assert!(stored.new);
    let first = stored.id;
    // The retry (its 503 was in doubt): the same message, stored once.
    let again = s
        .enqueue_message(with_id(alice, "x1", "hello"))
        .await
        .unwrap();
    assert_eq!(
        again,
        store::Enqueued {
            id: first,
            new: false
        }
    );
    // Another sender's x1, or another id: other messages.
    let other = s
        .enqueue_message(with_id("sip:carol@example.com", "x1", "hi"))
        .await
        .unwrap();
    assert!(other.new && other.id != first);
    s.enqueue_message(with_id(alice, "x2", "second"))
        .await
        .unwrap();
    let got = s.pending_messages(bob, 10).await.unwrap();
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].message_id.as_deref(), Some("x1"));
    // Delivered (deleted), then retried once more: still not stored again.
    assert!(s.delete_message(first).await.unwrap());
    assert_eq!(
        s.enqueue_message(with_id(alice, "x1", "hello"))
            .await
            .unwrap(),
        store::Enqueued {
            id: first,
            new: false
        }
    );
    assert_eq!(s.pending_count(bob).await.unwrap(), 2);
    // Copies at once are one message.
    let ids: Vec<store::Enqueued> = {
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let s = s.clone();
                let m = with_id(alice, "x3", "at once");
                tokio::spawn(async move { s.enqueue_message(m).await.unwrap() })
            })
            .collect();
        let mut ids = Vec::new();
        for t in tasks {
            ids.push(t.await.unwrap());
        }
        ids
    };
    assert!(ids.iter().all(|i| i.id == ids[0].id), "{ids:?}");
    assert_eq!(ids.iter().filter(|i| i.new).count(), 1, "{ids:?}");
    assert_eq!(s.pending_count(bob).await.unwrap(), 3);
    // Once expired, the identifier is forgotten with the messages.
    s.purge_expired_messages(1_000).await.unwrap();
    assert_eq!(s.pending_count(bob).await.unwrap(), 0);
    let fresh = s
        .enqueue_message(with_id(alice, "x1", "hello"))
        .await
        .unwrap();
    assert!(fresh.new && fresh.id != first);
}

pub async fn many_concurrent_callers_are_served<S: Store>(s: S) {
    s.add_user(user("sip:bob@example.com")).await.unwrap();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                s.enqueue_message(message("sip:bob@example.com", &i.to_string()))
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(s.pending_count("sip:bob@example.com").await.unwrap(), 200);
}

pub async fn a_registers_changes_are_all_or_nothing<S: Store>(s: S) {
    s.add_user(user("sip:alice@example.com")).await.unwrap();
    s.upsert_binding(binding("sip:alice@example.com", "old", 500))
        .await
        .unwrap();
    // The second upsert names no user (foreign key): nothing of the set applies.
    let r = s
        .apply_bindings(vec![
            BindingChange::Remove {
                aor: "sip:alice@example.com".into(),
                key: "old".into(),
            },
            BindingChange::Upsert(binding("sip:alice@example.com", "new", 500)),
            BindingChange::Upsert(binding("sip:nobody@example.com", "x", 500)),
        ])
        .await;
    assert!(r.is_err());
    let keys: Vec<_> = s
        .live_bindings(0)
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.key)
        .collect();
    assert_eq!(keys, ["old"]);
    s.apply_bindings(vec![
        BindingChange::Remove {
            aor: "sip:alice@example.com".into(),
            key: "old".into(),
        },
        BindingChange::Upsert(binding("sip:alice@example.com", "new", 500)),
    ])
    .await
    .unwrap();
    let keys: Vec<_> = s
        .live_bindings(0)
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.key)
        .collect();
    assert_eq!(keys, ["new"]);
    // Within one set, the last change to a key is the one that stands.
    s.apply_bindings(vec![
        BindingChange::Upsert(binding("sip:alice@example.com", "twice", 500)),
        BindingChange::Remove {
            aor: "sip:alice@example.com".into(),
            key: "twice".into(),
        },
        BindingChange::Remove {
            aor: "sip:alice@example.com".into(),
            key: "new".into(),
        },
        BindingChange::Upsert(binding("sip:alice@example.com", "new", 900)),
    ])
    .await
    .unwrap();
    let left: Vec<_> = s
        .live_bindings(0)
        .await
        .unwrap()
        .into_iter()
        .map(|b| (b.key, b.expires_at))
        .collect();
    assert_eq!(left, [("new".to_string(), 900)]);
}

/// Many registrations at once (a store may write them together): each is
/// applied, and one that cannot be (its user is gone) fails alone.
pub async fn registrations_at_once_fail_alone<S: Store>(s: S) {
    for i in 0..20 {
        s.add_user(user(&format!("sip:u{i}@example.com")))
            .await
            .unwrap();
    }
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                let aor = if i == 77 {
                    "sip:nobody@example.com".to_string()
                } else {
                    format!("sip:u{}@example.com", i % 20)
                };
                s.apply_bindings(vec![BindingChange::Upsert(binding(
                    &aor,
                    &format!("k{i}"),
                    500,
                ))])
                .await
            })
        })
        .collect();
    let mut failed = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        if t.await.unwrap().is_err() {
            failed.push(i);
        }
    }
    assert_eq!(failed, [77]);
    assert_eq!(s.live_bindings(0).await.unwrap().len(), 199);
}

pub async fn policies_grants_groups_and_sites<S: Store>(s: S) {
    s.add_user(user("sip:alice@example.com")).await.unwrap();
    let v0 = s.policy_version().await.unwrap();
    let doc = |scope: PolicyScope, json: &str| PolicyRow {
        kind: "privacy".into(),
        scope,
        fields_json: json.into(),
    };
    s.put_policy(doc(PolicyScope::Global, r#"{"publish_location":false}"#))
        .await
        .unwrap();
    s.put_policy(doc(PolicyScope::Site("paris".into()), "{}"))
        .await
        .unwrap();
    s.put_policy(doc(
        PolicyScope::Named("open".into()),
        r#"{"presence_internal":"everyone"}"#,
    ))
    .await
    .unwrap();
    // Replacing a document keeps one row.
    s.put_policy(doc(PolicyScope::Global, r#"{"publish_location":true}"#))
        .await
        .unwrap();
    s.put_group(GroupRow {
        name: "sales".into(),
        priority: 10,
        description: "Sales".into(),
    })
    .await
    .unwrap();
    s.add_member("sales", "sip:alice@example.com")
        .await
        .unwrap();
    s.set_site("sip:alice@example.com", Some("paris".into()))
        .await
        .unwrap();
    s.put_grant(GrantRow {
        kind: "privacy".into(),
        policy: "open".into(),
        target: GrantTargetRow::Group("sales".into()),
    })
    .await
    .unwrap();
    let st = s.policy_state().await.unwrap();
    assert!(st.version > v0, "every change moves the counter");
    assert_eq!(st.policies.len(), 3);
    assert_eq!(st.policies[0].scope, PolicyScope::Global);
    assert_eq!(st.policies[0].fields_json, r#"{"publish_location":true}"#);
    assert_eq!(st.grants.len(), 1);
    assert_eq!(
        st.members,
        [("sales".to_string(), "sip:alice@example.com".to_string())]
    );
    assert_eq!(
        st.sites,
        [("sip:alice@example.com".to_string(), "paris".to_string())]
    );

    // Referential rules, with messages that say what to do.
    let e = s
        .put_grant(GrantRow {
            kind: "privacy".into(),
            policy: "missing".into(),
            target: GrantTargetRow::User("sip:alice@example.com".into()),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&e, StoreError::Conflict(m) if m.contains("create it first")),
        "{e}"
    );
    let e = s
        .put_grant(GrantRow {
            kind: "privacy".into(),
            policy: "open".into(),
            target: GrantTargetRow::Group("nope".into()),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&e, StoreError::Conflict(m) if m.contains("no group")),
        "{e}"
    );
    let e = s
        .remove_policy("privacy", PolicyScope::Named("open".into()))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, StoreError::Conflict(m) if m.contains("still granted")),
        "{e}"
    );
    assert!(matches!(
        s.add_member("sales", "sip:nobody@example.com").await,
        Err(StoreError::Conflict(_))
    ));

    // Removing the group takes its memberships and grants along; then the
    // named policy can go.
    assert!(s.remove_group("sales").await.unwrap());
    let st = s.policy_state().await.unwrap();
    assert!(st.grants.is_empty() && st.members.is_empty() && st.groups.is_empty());
    assert!(s
        .remove_policy("privacy", PolicyScope::Named("open".into()))
        .await
        .unwrap());
    // Removing a user takes their site and their grants along.
    s.put_policy(PolicyRow {
        kind: "privacy".into(),
        scope: PolicyScope::Named("again".into()),
        fields_json: "{}".into(),
    })
    .await
    .unwrap();
    s.put_grant(GrantRow {
        kind: "privacy".into(),
        policy: "again".into(),
        target: GrantTargetRow::User("sip:alice@example.com".into()),
    })
    .await
    .unwrap();
    assert!(s.remove_user("sip:alice@example.com").await.unwrap());
    let st = s.policy_state().await.unwrap();
    assert!(st.sites.is_empty() && st.grants.is_empty(), "{st:?}");
    assert!(s
        .remove_policy("privacy", PolicyScope::Named("again".into()))
        .await
        .unwrap());
    s.set_site("sip:x@example.com", None).await.unwrap();
}

/// Two hundred concurrent writes, every tenth of them a duplicate: each
/// duplicate fails alone, the others commit. Returns how many write
/// transactions committed meanwhile (a back end that groups commits
/// shows far fewer than 200).
pub async fn concurrent_writes_fail_alone<S: Store>(s: S) -> u64 {
    s.add_user(user("sip:taken@example.com")).await.unwrap();
    let before = s.commits();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                let aor = if i % 10 == 0 {
                    "sip:taken@example.com".to_string()
                } else {
                    format!("sip:u{i}@example.com")
                };
                (i, s.add_user(user(&aor)).await)
            })
        })
        .collect();
    for t in tasks {
        let (i, r) = t.await.unwrap();
        if i % 10 == 0 {
            assert!(matches!(r, Err(StoreError::Conflict(_))), "{i}: {r:?}");
        } else {
            assert_eq!(r.unwrap().aor, format!("sip:u{i}@example.com"));
        }
    }
    assert_eq!(s.list_users().await.unwrap().len(), 1 + 180);
    s.commits() - before
}

/// `other` is a second handle on the same database, as the CLI or another
/// node would hold: the counter moves for changes made through it.
pub async fn users_version_moves_on_every_change_from_any_handle<S: Store>(s: S, other: S) {
    let v0 = s.users_version().await.unwrap();
    other.add_user(user("sip:alice@example.com")).await.unwrap();
    let v1 = s.users_version().await.unwrap();
    assert_ne!(v0, v1);
    other
        .set_enabled("sip:alice@example.com", false)
        .await
        .unwrap();
    let v2 = s.users_version().await.unwrap();
    assert_ne!(v1, v2);
    other.remove_user("sip:alice@example.com").await.unwrap();
    assert_ne!(s.users_version().await.unwrap(), v2);
}
