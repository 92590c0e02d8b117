//! Checks and the writes they guard, raced: a back end that runs writes
//! side by side (PostgreSQL, several nodes) must still let exactly as many
//! through as one writer at a time would.

use store::{FileAdded, Store, StoreError};

use crate::core::user;

const A: &str = "sip:alice@example.com";

async fn all<T: Send + 'static>(
    n: usize,
    f: impl Fn(usize) -> tokio::task::JoinHandle<T>,
) -> Vec<T> {
    let tasks: Vec<_> = (0..n).map(f).collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

pub async fn checks_and_their_writes_do_not_interleave<S: Store>(s: S) {
    s.add_user(user(A)).await.unwrap();

    // The device cap: 16 at once, 3 allowed.
    let added = all(16, |i| {
        let s = s.clone();
        tokio::spawn(async move {
            let mut d = crate::devices::device(A, &format!("d{i}"), 1_000);
            d.fingerprint = format!("fp{i}");
            s.add_device(d, 3, None).await
        })
    })
    .await;
    let ok = added.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 3, "{added:?}");
    assert!(added
        .iter()
        .all(|r| r.is_ok() || matches!(r, Err(StoreError::Conflict(_)))));

    // One TOTP step is used once, however many present it together.
    assert!(s.set_totp_pending(A, vec![1]).await.unwrap());
    assert!(s.confirm_totp(A, vec![1], 1).await.unwrap());
    let used = all(16, |_| {
        let s = s.clone();
        tokio::spawn(async move { s.use_totp_step(A, 7).await.unwrap() })
    })
    .await;
    assert_eq!(used.iter().filter(|u| **u).count(), 1);

    // The total quota: ten files of 100 bytes at once, 500 allowed.
    let files = all(10, |i| {
        let s = s.clone();
        tokio::spawn(async move {
            s.add_file(
                crate::files::file(&format!("f{i}"), A, 100, 1_000),
                u64::MAX,
                500,
            )
            .await
            .unwrap()
        })
    })
    .await;
    assert_eq!(
        files.iter().filter(|f| **f == FileAdded::Added).count(),
        5,
        "{files:?}"
    );

    // Audit records appended together form one chain.
    all(16, |i| {
        let s = s.clone();
        tokio::spawn(async move {
            s.append_audit(crate::admins::entry(i as i64))
                .await
                .unwrap()
        })
    })
    .await;
    let report = s.audit_verify().await.unwrap();
    assert_eq!(
        (report.records, report.problems),
        (16, Vec::<String>::new())
    );
}

/// A device being added within a sign-in session while the password
/// changes: the certificate is refused (its session ended) or stored and
/// then revoked by the new password; never left valid.
pub async fn a_device_never_outlives_a_password_change_made_at_the_same_time<S: Store>(s: S) {
    use store::UserSessionRow;
    let aor = "sip:racer@example.com";
    s.add_user(user(aor)).await.unwrap();
    for round in 0..20 {
        let session = format!("s{round}");
        s.add_user_session(
            UserSessionRow {
                id: session.clone(),
                hash: vec![0; 32],
                aor: aor.into(),
                source: "127.0.0.1".into(),
                created_at: 1,
                expires_at: i64::MAX,
                second_factor: true,
            },
            100,
        )
        .await
        .unwrap();
        let mut d = crate::devices::device(aor, &format!("r{round}"), 1_000);
        d.fingerprint = format!("race-{round}");
        let (a, b) = (s.clone(), s.clone());
        let add = tokio::spawn(async move { a.add_device(d, 100, Some(session)).await });
        let change = tokio::spawn(async move { b.set_secret(aor, vec![round as u8]).await });
        let (added, changed) = (add.await.unwrap(), change.await.unwrap());
        assert!(changed.unwrap());
        assert!(
            added.is_ok() || matches!(added, Err(StoreError::Conflict(_))),
            "{added:?}"
        );
        let live: Vec<_> = s
            .devices(aor)
            .await
            .unwrap()
            .into_iter()
            .filter(|d| d.revoked_at.is_none())
            .collect();
        assert!(
            live.is_empty(),
            "round {round}: {live:?} survived the new password"
        );
    }
}
