//! The IM archive: records kept, found by owner, counterpart, time and
//! key, purged by owner and age except under a legal hold, sealed again.

use store::{ArchiveFilter, ArchiveHold, ArchiveRow, Store};

fn rec(owner: &str, at_ms: i64, sender: &str, recipient: &str, key: &str) -> ArchiveRow {
    ArchiveRow {
        id: 0,
        owner: owner.into(),
        at_ms,
        sender: sender.into(),
        recipient: recipient.into(),
        federated: recipient.ends_with("partner.test"),
        result: "delivered".into(),
        key_id: key.into(),
        sealed: format!("sealed {owner} {at_ms}").into_bytes(),
    }
}

fn find(owner: Option<&str>) -> ArchiveFilter {
    ArchiveFilter {
        owner: owner.map(str::to_owned),
        limit: 100,
        ..ArchiveFilter::default()
    }
}

const A: &str = "sip:alice@example.test";
const B: &str = "sip:bob@example.test";
const P: &str = "sip:pat@partner.test";

pub async fn archive_records_are_found_purged_held_and_sealed_again<S: Store>(s: S) {
    assert!(s.archive_find(find(None)).await.unwrap().is_empty());
    s.archive_put(Vec::new()).await.unwrap();
    s.archive_put(vec![
        rec(A, 1_000, A, B, "d1"),
        rec(B, 1_000, A, B, "d1"),
        rec(A, 2_000, A, P, "d2"),
        rec(B, 3_000, P, B, "d2"),
    ])
    .await
    .unwrap();
    let all = s.archive_find(find(None)).await.unwrap();
    assert_eq!(all.len(), 4);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id), "oldest first");
    assert_eq!(all[2].sealed, b"sealed sip:alice@example.test 2000");
    assert!(all[2].federated && !all[0].federated);
    // By owner, counterpart, time, key, and from a cursor.
    assert_eq!(s.archive_find(find(Some(A))).await.unwrap().len(), 2);
    let with_p = s
        .archive_find(ArchiveFilter {
            counterpart: Some(P.into()),
            limit: 100,
            ..ArchiveFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(with_p.len(), 2);
    let window = s
        .archive_find(ArchiveFilter {
            since_ms: Some(1_500),
            until_ms: Some(3_000),
            limit: 100,
            ..ArchiveFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        window.iter().map(|r| r.at_ms).collect::<Vec<_>>(),
        vec![2_000]
    );
    let d2 = s
        .archive_find(ArchiveFilter {
            key_id: Some("d2".into()),
            limit: 100,
            ..ArchiveFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(d2.len(), 2);
    let page = s
        .archive_find(ArchiveFilter {
            after_id: all[1].id,
            limit: 1,
            ..ArchiveFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![all[2].id]
    );
    assert_eq!(
        s.archive_owners().await.unwrap(),
        vec![A.to_string(), B.to_string()]
    );
    assert_eq!(
        s.archive_keys().await.unwrap(),
        vec!["d1".to_string(), "d2".to_string()]
    );

    // Bob is on hold: purging everyone's records before 2,500 takes alice's only.
    let hold = ArchiveHold {
        aor: B.into(),
        since: 10,
        by: "admin:root".into(),
        reason: "case 42".into(),
    };
    assert!(s.archive_hold(hold.clone()).await.unwrap());
    assert!(!s.archive_hold(hold.clone()).await.unwrap(), "once");
    assert_eq!(s.archive_holds().await.unwrap(), vec![hold]);
    let n = s
        .archive_purge(vec![A.into(), B.into()], 2_500)
        .await
        .unwrap();
    assert_eq!(n, 2);
    let left = s.archive_find(find(None)).await.unwrap();
    assert_eq!(
        left.iter()
            .map(|r| (r.owner.as_str(), r.at_ms))
            .collect::<Vec<_>>(),
        vec![(B, 1_000), (B, 3_000)]
    );
    // Bob's old record sealed again under a hold key.
    s.archive_reseal(vec![(left[0].id, "hold-1".into(), b"again".to_vec())])
        .await
        .unwrap();
    let again = s.archive_find(find(Some(B))).await.unwrap();
    assert_eq!(
        (again[0].key_id.as_str(), again[0].sealed.as_slice()),
        ("hold-1", &b"again"[..])
    );
    assert_eq!(
        s.archive_keys().await.unwrap(),
        vec!["d2".to_string(), "hold-1".to_string()]
    );
    // Released: his records go like anyone's.
    assert!(s.archive_release(B.into()).await.unwrap());
    assert!(!s.archive_release(B.into()).await.unwrap());
    assert_eq!(s.archive_purge(vec![B.into()], 2_500).await.unwrap(), 1);
    assert_eq!(s.archive_purge(Vec::new(), i64::MAX).await.unwrap(), 0);
    assert_eq!(s.archive_find(find(None)).await.unwrap().len(), 1);
}

/// The first fingerprint recorded for a key name stays that name's; a
/// forgotten name may be claimed anew.
pub async fn an_archive_key_name_is_claimed_once_until_forgotten<S: Store>(s: S) {
    let first = s
        .archive_key_claim("d20261206-r14".into(), vec![1; 16])
        .await
        .unwrap();
    assert_eq!(first, vec![1; 16]);
    // Another node's own key under the same name: the first one stands.
    let again = s
        .archive_key_claim("d20261206-r14".into(), vec![2; 16])
        .await
        .unwrap();
    assert_eq!(again, vec![1; 16]);
    let other = s
        .archive_key_claim("hold-20261206".into(), vec![3; 16])
        .await
        .unwrap();
    assert_eq!(other, vec![3; 16]);
    s.archive_key_forget(vec!["d20261206-r14".into(), "d19990101-r1".into()])
        .await
        .unwrap();
    let anew = s
        .archive_key_claim("d20261206-r14".into(), vec![4; 16])
        .await
        .unwrap();
    assert_eq!(anew, vec![4; 16]);
    let kept = s
        .archive_key_claim("hold-20261206".into(), vec![5; 16])
        .await
        .unwrap();
    assert_eq!(kept, vec![3; 16]);
}
