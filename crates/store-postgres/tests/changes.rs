//! The change log: each change handed out once, in order, including a
//! transaction that commits after later ones did.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use store::{Bindings, Users};
use store_postgres::{Postgres, PostgresConfig};
use store_tests::core::{binding, user};

async fn open(name: &str) -> (Postgres, &'static store_tests::pg::Cluster, String) {
    let c = tokio::task::spawn_blocking(store_tests::pg::cluster)
        .await
        .unwrap();
    let db = c.database(name);
    let s = Postgres::open(&PostgresConfig::new(c.url(&db)))
        .await
        .unwrap();
    (s, c, db)
}

fn keys(changes: &[store_postgres::changes::Change]) -> Vec<(String, String)> {
    changes
        .iter()
        .map(|c| (c.kind.clone(), c.key.clone()))
        .collect()
}

#[tokio::test]
async fn a_follower_gets_each_change_once_even_when_its_transaction_commits_late() {
    let (s, c, db) = open("feed_late").await;
    s.add_user(user("sip:before@example.com")).await.unwrap();
    let mut feed = s.feed_start().await.unwrap();
    assert!(
        s.feed_poll(&mut feed).await.unwrap().is_empty(),
        "what was there at the start is applied"
    );

    // Another node's transaction writes first and commits last.
    let (late, conn) = tokio_postgres::connect(
        &format!(
            "host={} port={} user=postgres dbname={db}",
            c.socket.display(),
            c.port
        ),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    // (A binding: a user row would also take the users' version counter,
    // which every other user change then waits for.)
    late.batch_execute(
        "BEGIN; INSERT INTO bindings (aor, binding_key, contact, q, expires_at, call_id, cseq, path, source)
         VALUES ('sip:before@example.com', 'late', 'sip:late@192.0.2.9', 1000, 9999999999, 'c', 1, '', 'udp:192.0.2.9:5060');",
    )
    .await
    .unwrap();
    s.add_user(user("sip:alice@example.com")).await.unwrap();
    s.upsert_binding(binding("sip:alice@example.com", "k", i64::MAX / 2))
        .await
        .unwrap();
    let first = s.feed_poll(&mut feed).await.unwrap();
    assert_eq!(
        keys(&first),
        [
            ("users".into(), "sip:alice@example.com".into()),
            ("bindings".into(), "sip:alice@example.com".into())
        ]
    );
    late.batch_execute("COMMIT").await.unwrap();
    let second = s.feed_poll(&mut feed).await.unwrap();
    assert_eq!(
        keys(&second),
        [("bindings".into(), "sip:before@example.com".into())]
    );
    assert!(
        second[0].pos < first[0].pos,
        "its position was taken before alice's"
    );
    // Removal is a change too, and nothing is handed out twice.
    s.remove_user("sip:alice@example.com").await.unwrap();
    let third = keys(&s.feed_poll(&mut feed).await.unwrap());
    assert!(
        third.contains(&("users".into(), "sip:alice@example.com".into())),
        "{third:?}"
    );
    assert!(
        third.contains(&("bindings".into(), "sip:alice@example.com".into())),
        "{third:?}"
    );
    assert!(s.feed_poll(&mut feed).await.unwrap().is_empty());
    // A second follower started now has nothing to catch up on.
    let mut other = s.feed_start().await.unwrap();
    assert!(s.feed_poll(&mut other).await.unwrap().is_empty());
    // The log is bounded: what is older than the time kept goes; what is
    // newer stays.
    assert_eq!(
        s.prune_changes(std::time::Duration::from_secs(600))
            .await
            .unwrap(),
        0
    );
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert!(
        s.prune_changes(std::time::Duration::from_millis(10))
            .await
            .unwrap()
            >= 6
    );
    s.add_user(user("sip:after@example.com")).await.unwrap();
    assert_eq!(
        keys(&s.feed_poll(&mut feed).await.unwrap()),
        [("users".into(), "sip:after@example.com".into())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_concurrent_writers_every_change_arrives_exactly_once() {
    let (s, _, _) = open("feed_busy").await;
    let mut feed = s.feed_start().await.unwrap();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let s = s.clone();
            tokio::spawn(async move {
                for i in 0..100 {
                    s.add_user(user(&format!("sip:w{w}u{i}@example.com")))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let mut got = Vec::new();
    let mut done = false;
    while !done {
        done = writers.iter().all(|w| w.is_finished());
        got.extend(s.feed_poll(&mut feed).await.unwrap());
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    got.extend(s.feed_poll(&mut feed).await.unwrap());
    let mut aors: Vec<_> = got.iter().map(|c| c.key.clone()).collect();
    let n = aors.len();
    aors.sort();
    aors.dedup();
    assert_eq!(aors.len(), n, "a change handed out twice");
    assert_eq!(n, 400);
}

/// More changes than one statement reads (a page is 1,000): the rest come
/// from later statements of the same poll, and a transaction committing
/// between them is read once, by that poll or the next.
#[tokio::test]
async fn changes_beyond_one_page_arrive_once_each() {
    let (s, c, db) = open("feed_pages").await;
    let mut feed = s.feed_start().await.unwrap();
    c.psql(
        &db,
        "INSERT INTO users (aor, secret, created_at)
         SELECT 'sip:p' || i || '@example.com', '\\x00', 0 FROM generate_series(1, 2500) i",
    )
    .unwrap();
    let mut got = s.feed_poll(&mut feed).await.unwrap();
    assert_eq!(got.len(), 2500, "one poll reads every page");
    s.add_user(user("sip:later@example.com")).await.unwrap();
    got.extend(s.feed_poll(&mut feed).await.unwrap());
    assert!(s.feed_poll(&mut feed).await.unwrap().is_empty());
    let mut aors: Vec<_> = got.iter().map(|c| c.key.clone()).collect();
    assert_eq!(
        aors.last().map(String::as_str),
        Some("sip:later@example.com")
    );
    let n = aors.len();
    aors.sort();
    aors.dedup();
    assert_eq!(
        (aors.len(), n),
        (2501, 2501),
        "a change missed or handed out twice"
    );
}
