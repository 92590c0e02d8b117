//! Every table of an SQLite store moved into PostgreSQL reads back the
//! same through the store traits: ids, counters, the audit chain; and the
//! moved database goes on from where SQLite left off.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use store::*;
use store_postgres::{Postgres, PostgresConfig};
use store_sqlite::{Sqlite, SqliteConfig};
use store_tests::core::{binding, message, user};

const A: &str = "sip:alice@example.com";
const B: &str = "sip:bob@example.com";

async fn filled_sqlite() -> Sqlite {
    let dir = std::env::temp_dir().join(format!("parapet-move-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = SqliteConfig {
        audit_key: Some(store_tests::AUDIT_KEY),
        ..SqliteConfig::new(dir.join("parapet.db"))
    };
    let s = tokio::task::spawn_blocking(move || Sqlite::open(&cfg))
        .await
        .unwrap()
        .unwrap();
    let audited = s.audited(store_tests::admins::entry(1));
    audited.add_user(user(A)).await.unwrap();
    s.add_user(user(B)).await.unwrap();
    s.remove_user(B).await.unwrap(); // SQLite gives the id again
    s.add_user(user(B)).await.unwrap();
    s.upsert_binding(binding(A, "k1", i64::MAX / 2))
        .await
        .unwrap();
    for i in 0..3 {
        s.enqueue_message(message(B, &format!("m{i}")))
            .await
            .unwrap();
    }
    s.delete_message(1).await.unwrap();
    s.put_group(GroupRow {
        name: "sales".into(),
        priority: 7,
        description: "Sales".into(),
    })
    .await
    .unwrap();
    s.add_member("sales", A).await.unwrap();
    s.set_site(A, Some("paris".into())).await.unwrap();
    s.put_policy(PolicyRow {
        kind: "privacy".into(),
        scope: PolicyScope::Named("open".into()),
        fields_json: r#"{"presence_internal":"everyone"}"#.into(),
    })
    .await
    .unwrap();
    s.put_grant(GrantRow {
        kind: "privacy".into(),
        policy: "open".into(),
        target: GrantTargetRow::Group("sales".into()),
    })
    .await
    .unwrap();
    s.add_admin(store_tests::admins::admin("root"))
        .await
        .unwrap();
    s.put_role(RoleRow {
        name: "desk".into(),
        description: "help desk".into(),
        ops: vec!["users.read".into(), "users.write".into()],
        site: None,
        group: Some("sales".into()),
    })
    .await
    .unwrap();
    s.add_token(TokenRow {
        id: "t1".into(),
        hash: vec![1; 32],
        admin: "root".into(),
        kind: "api".into(),
        name: "ci".into(),
        role: "desk".into(),
        created_at: 1,
        expires_at: i64::MAX / 2,
    })
    .await
    .unwrap();
    for n in 2..=5 {
        s.append_audit(store_tests::admins::entry(n)).await.unwrap();
    }
    s.put_contact(ContactRow {
        owner: A.into(),
        contact: B.into(),
        relationship: "colleague".into(),
        display_name: Some("Bob".into()),
        groups: vec!["Team".into(), "Friends".into()],
        added_at: 3,
    })
    .await
    .unwrap();
    s.add_user_session(
        UserSessionRow {
            id: "s1".into(),
            hash: vec![2; 32],
            aor: A.into(),
            source: "127.0.0.1".into(),
            created_at: 1,
            expires_at: i64::MAX / 2,
            second_factor: true,
        },
        4,
    )
    .await
    .unwrap();
    s.add_device(store_tests::devices::device(A, "d1", 10), 3, None)
        .await
        .unwrap();
    assert!(s.set_totp_pending(A, vec![9]).await.unwrap());
    assert!(s.confirm_totp(A, vec![9], 5).await.unwrap());
    s.add_enrollment_code(EnrollmentCodeRow {
        hash: vec![3; 32],
        aor: B.into(),
        created_by: "admin:root".into(),
        created_at: 1,
        expires_at: i64::MAX / 2,
    })
    .await
    .unwrap();
    s.add_file(
        store_tests::files::file("f1", A, 100, 1_000),
        u64::MAX,
        u64::MAX,
    )
    .await
    .unwrap();
    s.grant_files(vec!["f1".into()], vec![B.into()])
        .await
        .unwrap();
    let mut identified = message(B, "with an id");
    identified.message_id = Some("imdn-1".into());
    s.enqueue_message(identified).await.unwrap();
    s.put_subscription(SubscriptionRow {
        id: "sub1".into(),
        event: "presence".into(),
        watcher: B.into(),
        resource: A.into(),
        call_id: "c1".into(),
        remote_tag: "t1".into(),
        from_value: format!("<{B}>;tag=t1"),
        to_value: format!("<{A}>"),
        remote_target: "sip:bob@192.0.2.2:5060".into(),
        route_set: vec!["<sip:p1;lr>".into()],
        source: "udp:192.0.2.2:5060".into(),
        event_id: None,
        local_cseq: 3,
        remote_cseq: 4,
        expires_at: i64::MAX / 2,
        node: String::new(),
    })
    .await
    .unwrap();
    s.put_publication(
        PublicationRow {
            etag: "e1".into(),
            aor: A.into(),
            expires_at: i64::MAX / 2,
            document: "<presence/>".into(),
        },
        None,
    )
    .await
    .unwrap();
    s
}

async fn everything<S: Store>(s: &S) -> String {
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
        s.list_users().await.unwrap(),
        s.live_bindings(0).await.unwrap(),
        s.pending_messages(B, 100).await.unwrap(),
        s.policy_state().await.unwrap(),
        s.list_admins().await.unwrap(),
        s.roles().await.unwrap(),
        s.tokens().await.unwrap(),
        s.audit_list(AuditFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap(),
        s.all_contacts().await.unwrap(),
        s.contact_groups(A).await.unwrap(),
        s.user_session("s1").await.unwrap(),
        s.devices(A).await.unwrap(),
        s.totp(A).await.unwrap(),
        s.file_for("f1", B).await.unwrap(),
        s.live_publications(0).await.unwrap(),
        s.live_subscriptions(0).await.unwrap(),
        s.users_version().await.unwrap() > 0,
        s.active_devices(0).await.unwrap(),
    )
}

#[tokio::test]
async fn every_table_reads_back_the_same_and_the_moved_store_goes_on() {
    let from = filled_sqlite().await;
    let pg = tokio::task::spawn_blocking(store_tests::pg::cluster)
        .await
        .unwrap();
    let into = Postgres::open(&PostgresConfig {
        audit_key: Some(store_tests::AUDIT_KEY),
        ..PostgresConfig::new(pg.url(&pg.database("move")))
    })
    .await
    .unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let (exported, imported) = tokio::join!(from.export(tx), into.import(rx));
    let (exported, imported) = (exported.unwrap(), imported.unwrap());
    assert_eq!(exported, imported);
    assert_eq!(
        exported.iter().find(|(t, _)| *t == "audit").map(|t| t.1),
        Some(5)
    );
    assert_eq!(everything(&from).await, everything(&into).await);
    let report = into.audit_verify().await.unwrap();
    assert_eq!((report.records, report.problems), (5, Vec::<String>::new()));
    assert!(into.use_enrollment_code(B, vec![3; 32], 2).await.unwrap());

    // The stored message's identifier moved with it: its retry is the same
    // message there.
    let mut retry = message(B, "with an id");
    retry.message_id = Some("imdn-1".into());
    assert_eq!(
        into.enqueue_message(retry).await.unwrap(),
        store::Enqueued { id: 4, new: false }
    );
    // New rows continue after the moved ones (a retry may use up an id).
    let id = into.enqueue_message(message(B, "after")).await.unwrap().id;
    assert!(id > 4, "{id}");
    let carol = into.add_user(user("sip:carol@example.com")).await.unwrap();
    assert_eq!(carol.id, 3);
    into.append_audit(store_tests::admins::entry(6))
        .await
        .unwrap();
    assert!(into.audit_verify().await.unwrap().problems.is_empty());

    // Into a database that holds data: refused, nothing changed.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let (_, again) = tokio::join!(from.export(tx), into.import(rx));
    assert!(
        matches!(&again, Err(StoreError::Conflict(m)) if m.contains("already holds data")),
        "{again:?}"
    );
}
