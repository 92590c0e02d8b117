//! Files uploaded for transfer: quotas checked with the insert, who may
//! fetch a file (owner, granted recipients, nobody else), expiry, and a
//! removed user's files gone with them.

use store::{FileAdded, FileRow, NewUser, Store, StoreError};

async fn add_user(s: &impl Store, aor: &str) {
    s.add_user(NewUser {
        aor: aor.into(),
        display_name: None,
        secret: vec![1],
        created_at: 1,
    })
    .await
    .unwrap();
}

pub fn file(id: &str, owner: &str, size: u64, at: i64) -> FileRow {
    FileRow {
        id: id.into(),
        owner: owner.into(),
        name: format!("{id}.pdf"),
        content_type: "application/pdf".into(),
        kind: String::new(),
        inner: vec![".txt".into(), ".exe".into()],
        size,
        sha256: format!("{:064x}", size),
        created_at: at,
        expires_at: at + 100,
        deleted_at: None,
    }
}

const A: &str = "sip:alice@example.test";
const B: &str = "sip:bob@example.test";
const C: &str = "sip:carol@example.test";
const DAY: i64 = 86_400;

pub async fn quotas_are_checked_with_the_insert<S: Store>(s: S) {
    add_user(&s, A).await;
    let t = 10 * DAY;
    assert_eq!(
        s.add_file(file("f1", A, 60, t), 100, 150).await.unwrap(),
        FileAdded::Added
    );
    // 60 + 50 > 100 in the same day.
    assert_eq!(
        s.add_file(file("f2", A, 50, t + 10), 100, 150)
            .await
            .unwrap(),
        FileAdded::DailyQuota { used: 60 }
    );
    // A day later the daily quota is free again; the total is not.
    assert_eq!(
        s.add_file(file("f3", A, 80, t + DAY + 1), 100, 150)
            .await
            .unwrap(),
        FileAdded::Added
    );
    assert_eq!(
        s.add_file(file("f4", A, 20, t + 2 * DAY + 2), 100, 150)
            .await
            .unwrap(),
        FileAdded::TotalQuota { used: 140 }
    );
    // Deleted files leave the total quota (not the day's).
    s.mark_files_deleted(vec!["f1".into()], t + 2 * DAY + 3)
        .await
        .unwrap();
    assert_eq!(
        s.add_file(file("f4", A, 20, t + 2 * DAY + 4), 100, 150)
            .await
            .unwrap(),
        FileAdded::Added
    );
    assert!(matches!(
        s.add_file(file("f5", "sip:nobody@example.test", 1, t), 100, 150)
            .await,
        Err(StoreError::Conflict(_))
    ));
    let f = s.file("f3").await.unwrap().unwrap();
    assert_eq!(f.inner, vec![".txt".to_string(), ".exe".to_string()]);
    assert_eq!((f.size, f.owner.as_str()), (80, A));
}

pub async fn only_the_owner_and_granted_recipients_may_fetch<S: Store>(s: S) {
    for u in [A, B, C] {
        add_user(&s, u).await;
    }
    s.add_file(file("f1", A, 1, 5), 100, 100).await.unwrap();
    let may = |user: &'static str| {
        let s = s.clone();
        async move { s.file_for("f1", user).await.unwrap().map(|(_, ok)| ok) }
    };
    assert_eq!(may(A).await, Some(true));
    assert_eq!(may(B).await, Some(false));
    s.grant_files(vec!["f1".into(), "nonexistent".into()], vec![B.into()])
        .await
        .unwrap();
    s.grant_files(vec!["f1".into()], vec![B.into()])
        .await
        .unwrap();
    assert_eq!(may(B).await, Some(true));
    assert_eq!(may(C).await, Some(false));
    assert!(s.file_for("nonexistent", A).await.unwrap().is_none());
}

pub async fn expiry_deletion_records_and_a_removed_owner<S: Store>(s: S) {
    add_user(&s, A).await;
    add_user(&s, B).await;
    s.add_file(file("f1", A, 1, 0), 100, 100).await.unwrap();
    s.add_file(file("f2", A, 1, 50), 100, 100).await.unwrap();
    s.add_file(file("f3", B, 1, 0), 100, 100).await.unwrap();
    assert_eq!(
        s.expired_files(120, 10).await.unwrap(),
        vec!["f1".to_string(), "f3".to_string()]
    );
    assert_eq!(
        s.mark_files_deleted(vec!["f1".into(), "f1".into()], 121)
            .await
            .unwrap(),
        1
    );
    assert_eq!(s.expired_files(120, 10).await.unwrap(), vec!["f3"]);
    let all: Vec<String> = ["f1", "f2", "f3", "zz"].map(String::from).into();
    assert_eq!(s.kept_files(all.clone()).await.unwrap(), vec!["f2", "f3"]);
    // The deleted file's record stays (410), then goes.
    assert!(s.file("f1").await.unwrap().unwrap().deleted_at.is_some());
    assert_eq!(s.purge_file_records(121).await.unwrap(), 0);
    assert_eq!(s.purge_file_records(122).await.unwrap(), 1);
    assert!(s.file("f1").await.unwrap().is_none());
    // Removing a user removes their files' records.
    assert!(s.remove_user(A).await.unwrap());
    assert_eq!(s.kept_files(all).await.unwrap(), vec!["f3"]);
}
