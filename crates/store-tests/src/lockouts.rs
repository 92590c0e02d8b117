//! The sign-in lockout filter's state: saved, read back, replaced,
//! removed, and purged once it decides nothing.

use store::{LockoutKey, LockoutKind, LockoutRow, Store};

fn row(kind: LockoutKind, account: &str, source: &str, locked_until: i64, seen: i64) -> LockoutRow {
    LockoutRow {
        key: LockoutKey {
            kind,
            account: account.into(),
            source: source.into(),
        },
        window_start: seen - 5,
        failures: 3,
        lockouts: 2,
        locked_until,
        last_seen: seen,
    }
}

fn sorted(mut v: Vec<LockoutRow>) -> Vec<LockoutRow> {
    v.sort_by(|a, b| {
        (a.key.kind.as_str(), &a.key.account, &a.key.source).cmp(&(
            b.key.kind.as_str(),
            &b.key.account,
            &b.key.source,
        ))
    });
    v
}

pub async fn lockout_state_is_saved_replaced_removed_and_purged<S: Store>(s: S) {
    assert!(s.lockouts().await.unwrap().is_empty());
    s.save_lockouts(Vec::new(), Vec::new()).await.unwrap();
    // An account that does not exist is counted like one that does.
    let pair = row(
        LockoutKind::Pair,
        "sip:nobody@example.com",
        "192.0.2.7",
        2_000,
        1_000,
    );
    let account = row(
        LockoutKind::Account,
        "sip:alice@example.com",
        "",
        2_500,
        1_100,
    );
    let familiar = row(
        LockoutKind::Familiar,
        "sip:alice@example.com",
        "198.51.100.1",
        0,
        900,
    );
    // The same account and source under two kinds are two rows.
    let other_kind = row(
        LockoutKind::Pair,
        "sip:alice@example.com",
        "198.51.100.1",
        0,
        950,
    );
    s.save_lockouts(
        vec![
            pair.clone(),
            account.clone(),
            familiar.clone(),
            other_kind.clone(),
        ],
        Vec::new(),
    )
    .await
    .unwrap();
    assert_eq!(
        sorted(s.lockouts().await.unwrap()),
        sorted(vec![
            pair.clone(),
            account.clone(),
            familiar.clone(),
            other_kind.clone()
        ])
    );

    // Replaced in place, and removed by key, in one save.
    let mut again = pair.clone();
    again.failures = 0;
    again.lockouts = 3;
    again.locked_until = 4_000;
    s.save_lockouts(vec![again.clone()], vec![other_kind.key.clone()])
        .await
        .unwrap();
    assert_eq!(
        sorted(s.lockouts().await.unwrap()),
        sorted(vec![again.clone(), account.clone(), familiar.clone()])
    );
    // A save never takes a counter back: the row keeps the further of
    // the two (a later window, more lockouts, more failures in the same
    // window), as each node of a pool merges in memory — a node that had
    // not yet read another's further state does not overwrite it.
    let mut behind = again.clone();
    behind.lockouts = 2;
    behind.locked_until = 3_000;
    s.save_lockouts(vec![behind], Vec::new()).await.unwrap();
    assert_eq!(
        s.lockouts_of("sip:nobody@example.com").await.unwrap(),
        vec![again.clone()]
    );
    // Removing what is not there is no error.
    s.save_lockouts(Vec::new(), vec![other_kind.key.clone()])
        .await
        .unwrap();
    // One account's rows, every kind of them (what a node of a pool reads
    // when another saved them).
    assert_eq!(
        sorted(s.lockouts_of("sip:alice@example.com").await.unwrap()),
        sorted(vec![account.clone(), familiar.clone()])
    );
    assert_eq!(
        s.lockouts_of("sip:nobody@example.com").await.unwrap(),
        vec![again.clone()]
    );
    assert!(s
        .lockouts_of("sip:none@example.com")
        .await
        .unwrap()
        .is_empty());
    // Several accounts at once, in the order asked, none for one without.
    let each = s
        .lockouts_of_each(vec![
            "sip:none@example.com".into(),
            "sip:alice@example.com".into(),
            "sip:nobody@example.com".into(),
        ])
        .await
        .unwrap();
    assert_eq!(each.len(), 3);
    assert_eq!(each[0], ("sip:none@example.com".to_string(), Vec::new()));
    assert_eq!(each[1].0, "sip:alice@example.com");
    assert_eq!(
        sorted(each[1].1.clone()),
        sorted(vec![account.clone(), familiar.clone()])
    );
    assert_eq!(
        each[2],
        ("sip:nobody@example.com".to_string(), vec![again.clone()])
    );

    // Purge at 3,000: counters still locked stay (again, until 4,000);
    // the account's lock ended at 2,500 and it was last seen at 1,100,
    // before 1,200: gone. The familiar source seen at 900 stays while
    // familiar_before is 800, and goes when it is 1,000.
    assert_eq!(s.purge_lockouts(3_000, 1_200, 800).await.unwrap(), 1);
    assert_eq!(
        sorted(s.lockouts().await.unwrap()),
        sorted(vec![again.clone(), familiar.clone()])
    );
    assert_eq!(s.purge_lockouts(3_000, 1_200, 1_000).await.unwrap(), 1);
    assert_eq!(s.lockouts().await.unwrap(), vec![again.clone()]);
    // Past its lock and not seen since: gone.
    assert_eq!(s.purge_lockouts(4_000, 1_001, 0).await.unwrap(), 1);
    assert!(s.lockouts().await.unwrap().is_empty());
}
