//! Call detail records: kept, found by party and start time with a cursor,
//! purged once the time they were to be kept until has passed.

use store::{CdrFilter, CdrRow, Store};

fn call(n: i64, caller: &str, callee: &str, answered: bool) -> CdrRow {
    CdrRow {
        id: 0,
        call_id: format!("call-{n}"),
        caller: caller.into(),
        callee: callee.into(),
        caller_device: "baresip".into(),
        callee_device: if answered {
            "Linphone".into()
        } else {
            String::new()
        },
        federated: callee.ends_with("partner.test"),
        started_ms: n * 1000,
        answered_ms: if answered { n * 1000 + 500 } else { 0 },
        ended_ms: n * 1000 + 9000,
        status: if answered { 200 } else { 486 },
        ended_by: if answered {
            "callee".into()
        } else {
            "nobody".into()
        },
        kind: "call".into(),
        partner: if callee.ends_with("partner.test") {
            "partner.test".into()
        } else {
            String::new()
        },
        media_relayed: n == 3,
        keep_until_ms: n * 1000 + 10_000,
        ..CdrRow::default()
    }
}

const A: &str = "sip:alice@example.test";
const B: &str = "sip:bob@example.test";
const P: &str = "sip:pat@partner.test";

pub async fn usage_records_are_found_by_party_and_time_and_purged_when_due<S: Store>(s: S) {
    s.cdr_put(Vec::new()).await.unwrap();
    s.cdr_put(vec![
        call(1, A, B, true),
        call(2, B, A, false),
        call(3, A, P, true),
        CdrRow {
            kind: "im".into(),
            call_id: "im-4".into(),
            caller: A.into(),
            callee: B.into(),
            started_ms: 4000,
            ended_ms: 99_000,
            status: 200,
            messages: 7,
            ended_by: "idle".into(),
            // Ended last, kept the shortest (its parties' policies).
            keep_until_ms: 5000,
            ..CdrRow::default()
        },
    ])
    .await
    .unwrap();
    let all = |f: CdrFilter| {
        let s = s.clone();
        async move { s.cdr_find(CdrFilter { limit: 100, ..f }).await.unwrap() }
    };
    let every = all(CdrFilter::default()).await;
    assert_eq!(every.len(), 4);
    // Each kind kept whole, and found by kind.
    assert_eq!(every[3].messages, 7);
    assert_eq!(
        (every[3].kind.as_str(), every[3].ended_by.as_str()),
        ("im", "idle")
    );
    assert!(every[2].media_relayed && every[2].partner == "partner.test");
    let calls = all(CdrFilter {
        kind: Some("call".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(calls.len(), 3);
    assert_eq!(
        every[0],
        CdrRow {
            id: every[0].id,
            ..call(1, A, B, true)
        }
    );
    assert!(every[2].federated && every[1].status == 486);
    // As caller or callee.
    assert_eq!(
        all(CdrFilter {
            user: Some(B.into()),
            ..Default::default()
        })
        .await
        .len(),
        3
    );
    assert_eq!(
        all(CdrFilter {
            user: Some(P.into()),
            ..Default::default()
        })
        .await
        .len(),
        1
    );
    let window = all(CdrFilter {
        since_ms: Some(2000),
        until_ms: Some(3000),
        ..Default::default()
    })
    .await;
    assert_eq!(
        window
            .iter()
            .map(|r| r.call_id.as_str())
            .collect::<Vec<_>>(),
        vec!["call-2"]
    );
    let page = s
        .cdr_find(CdrFilter {
            after_id: every[0].id,
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page[0].id, every[1].id);
    assert_eq!(every[3].keep_until_ms, 5000);
    // At 12,500 the records to be kept until 11,000, 12,000 and 5,000 go
    // (not the order they ended in).
    assert_eq!(s.cdr_purge(12_500).await.unwrap(), 3);
    let left = all(CdrFilter::default()).await;
    assert_eq!(
        left.iter().map(|r| r.call_id.as_str()).collect::<Vec<_>>(),
        vec!["call-3"]
    );
    // A record written before records were stamped (0) is never purged
    // until stamped.
    s.cdr_put(vec![CdrRow {
        keep_until_ms: 0,
        ..call(5, A, B, true)
    }])
    .await
    .unwrap();
    assert_eq!(s.cdr_purge(100_000).await.unwrap(), 1);
    assert_eq!(s.cdr_stamp_unstamped(1000).await.unwrap(), 1);
    assert_eq!(s.cdr_stamp_unstamped(1000).await.unwrap(), 0);
    let left = all(CdrFilter::default()).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].keep_until_ms, 5000 + 9000 + 1000);
    assert_eq!(s.cdr_purge(100_000).await.unwrap(), 1);
}
