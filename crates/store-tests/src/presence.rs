//! Publications, subscriptions and contact lists on a real database file.

use store::{ContactRow, NewUser, PublicationRow, Store, StoreError, SubscriptionRow};

async fn users(s: &impl Store, names: &[&str]) {
    for n in names {
        s.add_user(NewUser {
            aor: format!("sip:{n}@example.com"),
            display_name: None,
            secret: vec![1],
            created_at: 1,
        })
        .await
        .unwrap();
    }
}

fn entry(owner: &str, contact: &str, rel: &str, groups: &[&str]) -> ContactRow {
    ContactRow {
        owner: format!("sip:{owner}@example.com"),
        contact: format!("sip:{contact}@example.com"),
        relationship: rel.into(),
        display_name: None,
        groups: groups.iter().map(|g| g.to_string()).collect(),
        added_at: 5,
    }
}

pub async fn publications_replace_expire_and_go_with_the_user<S: Store>(s: S) {
    users(&s, &["alice"]).await;
    let p = |etag: &str, exp: i64| PublicationRow {
        etag: etag.into(),
        aor: "sip:alice@example.com".into(),
        expires_at: exp,
        document: "<presence/>".into(),
    };
    s.put_publication(p("a", 100), None).await.unwrap();
    s.put_publication(p("b", 200), Some("a".into()))
        .await
        .unwrap();
    let live = s.live_publications(50).await.unwrap();
    assert_eq!(
        live.iter().map(|p| p.etag.as_str()).collect::<Vec<_>>(),
        ["b"]
    );
    assert!(s.live_publications(200).await.unwrap().is_empty());
    assert_eq!(s.purge_expired_presence(200).await.unwrap(), 1);
    s.put_publication(p("c", 300), None).await.unwrap();
    assert!(s.remove_user("sip:alice@example.com").await.unwrap());
    assert!(s.live_publications(0).await.unwrap().is_empty());
}

pub async fn subscriptions_round_trip_and_refresh<S: Store>(s: S) {
    let mut sub = SubscriptionRow {
        id: "t1".into(),
        event: "presence".into(),
        watcher: "sip:bob@example.com".into(),
        resource: "sip:alice@example.com".into(),
        call_id: "c1".into(),
        remote_tag: "r1".into(),
        from_value: "<sip:bob@example.com>;tag=r1".into(),
        to_value: "<sip:alice@example.com>".into(),
        remote_target: "sip:bob@127.0.0.1:5070".into(),
        route_set: vec!["<sip:p1;lr>".into(), "<sip:p2;lr>".into()],
        source: "udp:127.0.0.1:5070".into(),
        event_id: Some("7".into()),
        local_cseq: 3,
        remote_cseq: 1,
        expires_at: 100,
        node: String::new(),
    };
    s.put_subscription(sub.clone()).await.unwrap();
    assert_eq!(s.live_subscriptions(0).await.unwrap(), vec![sub.clone()]);
    sub.expires_at = 500;
    sub.remote_cseq = 2;
    s.put_subscription(sub.clone()).await.unwrap();
    assert_eq!(s.live_subscriptions(200).await.unwrap(), vec![sub.clone()]);
    // One by its id, while it lives.
    assert_eq!(s.subscription("t1", 499).await.unwrap(), Some(sub.clone()));
    assert_eq!(s.subscription("t1", 500).await.unwrap(), None);
    assert_eq!(s.subscription("t9", 0).await.unwrap(), None);
    // A bad event name is refused by the schema.
    let mut bad = sub.clone();
    bad.id = "t2".into();
    bad.event = "dialog".into();
    assert!(s.put_subscription(bad).await.is_err());
    assert!(s.remove_subscription("t1").await.unwrap());
    assert!(!s.remove_subscription("t1").await.unwrap());
    for id in ["a", "b"] {
        let mut x = sub.clone();
        x.id = id.into();
        s.put_subscription(x).await.unwrap();
    }
    assert_eq!(
        s.remove_subscriptions(vec!["a".into(), "b".into(), "c".into()])
            .await
            .unwrap(),
        2
    );
}

pub async fn contact_lists_with_groups<S: Store>(s: S) {
    users(&s, &["alice", "bob", "carol"]).await;
    s.put_contact(entry("alice", "bob", "colleague", &["Team", "Friends"]))
        .await
        .unwrap();
    s.put_contact(entry("alice", "carol", "blocked", &[]))
        .await
        .unwrap();
    assert_eq!(
        s.contact_groups("sip:alice@example.com").await.unwrap(),
        ["Team", "Friends"]
    );
    s.put_contact_group("sip:alice@example.com", "Later")
        .await
        .unwrap();
    s.put_contact_group("sip:alice@example.com", "Team")
        .await
        .unwrap();
    assert_eq!(
        s.contact_groups("sip:alice@example.com").await.unwrap(),
        ["Team", "Friends", "Later"]
    );
    // Replacing an entry keeps one row.
    s.put_contact(entry("alice", "bob", "personal", &["Friends"]))
        .await
        .unwrap();
    let list = s.contacts_of("sip:alice@example.com").await.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].relationship, "personal");
    assert!(s
        .remove_contact_group("sip:alice@example.com", "Friends")
        .await
        .unwrap());
    let list = s.contacts_of("sip:alice@example.com").await.unwrap();
    assert!(list[0].groups.is_empty(), "{list:?}");
    // Relationship names are checked; owners must exist.
    assert!(s
        .put_contact(entry("alice", "dave", "friend", &[]))
        .await
        .is_err());
    assert!(matches!(
        s.put_contact(entry("zed", "bob", "colleague", &[])).await,
        Err(StoreError::Conflict(m)) if m.contains("zed")
    ));
    // Adding several at once keeps what exists.
    let added = s
        .add_contacts(vec![
            entry("bob", "alice", "workgroup", &["eng"]),
            entry("alice", "bob", "workgroup", &["eng"]),
        ])
        .await
        .unwrap();
    assert_eq!(added, 1);
    assert_eq!(
        s.contacts_of("sip:alice@example.com").await.unwrap()[0].relationship,
        "personal"
    );
    assert_eq!(
        s.contact_groups("sip:bob@example.com").await.unwrap(),
        ["eng"]
    );
    // A removed user leaves every list, so a new account by that name
    // inherits nothing.
    s.remove_user("sip:carol@example.com").await.unwrap();
    let all = s.all_contacts().await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|e| e.contact != "sip:carol@example.com"));
}
