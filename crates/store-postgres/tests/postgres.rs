//! What only PostgreSQL shows: how the connection is secured (and what is
//! refused), a second handle as another node holds one, the audit log
//! against someone with superuser access to the database, and the
//! role's privileges.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use store::{AuditLog, Bindings, Messages, StoreError, Users};
use store_postgres::{Postgres, PostgresConfig, Transport};
use store_tests::pg::{cluster, Cluster};

async fn pg() -> &'static Cluster {
    tokio::task::spawn_blocking(cluster).await.unwrap()
}

async fn open_url(url: String) -> Result<Postgres, StoreError> {
    Postgres::open(&PostgresConfig {
        audit_key: Some(store_tests::AUDIT_KEY),
        ..PostgresConfig::new(url)
    })
    .await
}

fn setup_message(r: Result<Postgres, StoreError>) -> String {
    match r {
        Err(StoreError::Setup(m)) => m,
        other => panic!("expected a setup error, got {other:?}"),
    }
}

#[tokio::test]
async fn the_connection_is_verified_tls_and_nothing_weaker_is_taken() {
    let c = pg().await;
    let db = c.database("tls");
    let s = open_url(c.url(&db)).await.unwrap();
    assert!(matches!(s.transport(), Transport::Verified { .. }));
    // The server really saw TLS (and the store's role).
    let seen = c
        .psql(
            "postgres",
            &format!("SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE ssl AND datname = '{db}' AND usename = 'parapet'"),
        )
        .unwrap();
    assert_ne!(seen.trim(), "0", "no TLS connection from the store");

    // Another CA's certificate is not this server's.
    let other = std::env::temp_dir().join(format!("parapet-other-ca-{}.pem", std::process::id()));
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    std::fs::write(&other, params.self_signed(&key).unwrap().pem()).unwrap();
    let url = c.url(&db).replace(
        &format!("sslrootcert={}", c.ca.display()),
        &format!("sslrootcert={}", other.display()),
    );
    let m = setup_message(open_url(url).await);
    assert!(m.contains("cannot connect"), "{m}");

    // No sslrootcert: refused before connecting, with what to write.
    let bare = format!("postgres://parapet@127.0.0.1:{}/{db}", c.port);
    let m = setup_message(open_url(bare.clone()).await);
    assert!(m.contains("sslrootcert"), "{m}");
    // A mode that would accept an unverified server is refused outright.
    let m = setup_message(open_url(format!("{bare}?sslmode=require")).await);
    assert!(m.contains("not supported"), "{m}");
    // Plain text, written out: this server refuses it (hostnossl reject).
    // (The role's own password: the refusal is pg_hba's, not a wrong one.)
    let plain = c.url(&db).replace(
        &format!("sslmode=verify-full&sslrootcert={}", c.ca.display()),
        "sslmode=disable",
    );
    assert!(plain.ends_with("sslmode=disable"), "{plain}");
    let m = setup_message(open_url(plain).await);
    assert!(m.contains("cannot connect"), "{m}");
}

#[tokio::test]
async fn nothing_listening_fails_at_once_with_a_message() {
    let started = std::time::Instant::now();
    let m = setup_message(
        open_url("postgres://parapet:x@127.0.0.1:9/parapet?sslmode=disable".into()).await,
    );
    assert!(m.contains("cannot connect"), "{m}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[tokio::test]
async fn a_second_handle_sees_every_change() {
    let c = pg().await;
    let url = c.url(&c.database("version"));
    let s = open_url(url.clone()).await.unwrap();
    let other = open_url(url).await.unwrap(); // as another node would
    store_tests::core::users_version_moves_on_every_change_from_any_handle(s, other).await;
}

#[tokio::test]
async fn concurrent_writes_fail_alone() {
    let c = pg().await;
    let s = open_url(c.url(&c.database("concurrent"))).await.unwrap();
    let commits = store_tests::core::concurrent_writes_fail_alone(s).await;
    // Each write is its own transaction here; the failed ones commit nothing.
    assert_eq!(commits, 180);
}

#[tokio::test]
async fn no_audit_without_its_key() {
    let c = pg().await;
    let s = Postgres::open(&PostgresConfig::new(c.url(&c.database("nokey"))))
        .await
        .unwrap();
    assert!(matches!(
        s.append_audit(store_tests::admins::entry(1)).await,
        Err(StoreError::Setup(_))
    ));
}

/// Tampering as a superuser of the database server would: the trigger
/// disabled, rows changed, removed, or the tail cut off with the head
/// fixed by hand. Each kind is detected.
#[tokio::test]
async fn audit_tampering_is_detected() {
    let c = pg().await;
    let db = c.database("tamper");
    let s = open_url(c.url(&db)).await.unwrap();
    for n in 1..=6 {
        s.append_audit(store_tests::admins::entry(n)).await.unwrap();
    }
    let report = s.audit_verify().await.unwrap();
    assert_eq!(
        (report.records, report.problems.len()),
        (6, 0),
        "{report:?}"
    );
    for sql in [
        "UPDATE audit SET detail = 'x' WHERE seq = 2",
        "DELETE FROM audit WHERE seq = 2",
        "TRUNCATE audit",
    ] {
        let e = c.psql(&db, sql).unwrap_err();
        assert!(e.contains("append-only"), "{sql}: {e}");
    }
    c.psql(
        &db,
        "ALTER TABLE audit DISABLE TRIGGER USER; UPDATE audit SET actor = 'admin:someone-else' WHERE seq = 3",
    )
    .unwrap();
    let r = s.audit_verify().await.unwrap();
    assert!(
        r.problems
            .iter()
            .any(|p| p.starts_with("record 3 does not match")),
        "{r:?}"
    );
    c.psql(&db, "DELETE FROM audit WHERE seq = 5").unwrap();
    let r = s.audit_verify().await.unwrap();
    assert!(
        r.problems.iter().any(|p| p == "records 5 to 5 are missing"),
        "{r:?}"
    );
    c.psql(
        &db,
        "DELETE FROM audit WHERE seq = 6; UPDATE audit_head SET seq = 4",
    )
    .unwrap();
    let r = s.audit_verify().await.unwrap();
    assert!(
        r.problems
            .iter()
            .any(|p| p.contains("removed from the end")),
        "{r:?}"
    );
}

#[tokio::test]
async fn the_store_needs_no_privilege_beyond_its_own_database() {
    let c = pg().await;
    let s = open_url(c.url(&c.database("privilege"))).await.unwrap();
    s.add_user(store_tests::core::user("sip:a@example.com"))
        .await
        .unwrap();
    let role = c
        .psql(
            "postgres",
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls FROM pg_roles WHERE rolname = 'parapet'",
        )
        .unwrap();
    assert_eq!(role.trim(), "f|f|f|f|f");
}

async fn open_node(url: String, id: &str, wait: bool) -> Result<Postgres, StoreError> {
    open_node_in(url, id, wait, false).await
}

async fn open_node_in(
    url: String,
    id: &str,
    wait: bool,
    active: bool,
) -> Result<Postgres, StoreError> {
    Postgres::open(&PostgresConfig {
        audit_key: Some(store_tests::AUDIT_KEY),
        node: Some(store_postgres::NodeConfig {
            id: id.into(),
            address: format!("tls://{id}:5061"),
            wait,
            active,
        }),
        ..PostgresConfig::new(url)
    })
    .await
}

/// In the active mode nodes join beside each other at once; each follows
/// the others' changes (never its own), and a binding names the node that
/// wrote it; a node that stops renewing its lease is declared dead by the
/// other's heartbeat within a second of the lease's end.
#[tokio::test]
async fn active_nodes_serve_together_and_follow_each_others_changes() {
    use std::time::{Duration, Instant};
    let c = pg().await;
    let db = c.database("active");
    let url = c.url(&db);
    let a = open_node_in(url.clone(), "fe-a", true, true).await.unwrap();
    let b = tokio::time::timeout(
        Duration::from_secs(5),
        open_node_in(url.clone(), "fe-b", true, true),
    )
    .await
    .expect("fe-b joined without waiting")
    .unwrap();
    store::Store::follow_start(&a).await.unwrap();
    store::Store::follow_start(&b).await.unwrap();
    // Each is woken once its listening connection is up; then only by
    // the other's commits (the notification arrives with the commit).
    let hinted = |s: &store_postgres::Postgres, ms: u64| {
        let s = s.clone();
        async move {
            tokio::time::timeout(Duration::from_millis(ms), store::Store::change_hint(&s))
                .await
                .is_ok()
        }
    };
    assert!(
        hinted(&a, 5000).await && hinted(&b, 5000).await,
        "listening"
    );
    a.add_user(store_tests::core::user("sip:ann@example.com"))
        .await
        .unwrap();
    assert!(hinted(&b, 2000).await, "fe-b woken by fe-a's commit");
    assert!(
        !hinted(&a, 500).await,
        "fe-a is not woken by its own commit"
    );
    let mut bound = store_tests::core::binding("sip:ann@example.com", "k1", i64::MAX / 2);
    bound.node = "fe-a".into();
    a.apply_bindings(vec![store::BindingChange::Upsert(bound.clone())])
        .await
        .unwrap();
    let seen = store::Store::followed_changes(&b).await.unwrap();
    let kinds: Vec<(&str, &str)> = seen
        .iter()
        .map(|c| (c.kind.as_str(), c.key.as_str()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("users", "sip:ann@example.com"),
            ("bindings", "sip:ann@example.com")
        ]
    );
    assert!(
        store::Store::followed_changes(&a).await.unwrap().is_empty(),
        "a node's own changes are not handed back to it"
    );
    assert!(
        store::Store::followed_changes(&b).await.unwrap().is_empty(),
        "each change once"
    );
    let read = store::Bindings::bindings_of(&b, "sip:ann@example.com", 0)
        .await
        .unwrap();
    assert_eq!(read, vec![bound]);
    // fe-a stops renewing: fe-b's heartbeat declares it dead, and its
    // writes are refused.
    a.stop_heartbeat();
    let t0 = Instant::now();
    loop {
        let rows = store::Store::nodes(&b).await.unwrap();
        if rows.iter().any(|r| r.id == "fe-a" && r.state == "dead") {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(15), "{rows:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(a
        .add_user(store_tests::core::user("sip:late@example.com"))
        .await
        .is_err());
}

/// A node whose lease lapses (a stopped process) is declared dead by the
/// node that takes over, and nothing it writes afterwards commits; a node
/// that cannot wait is told who serves.
#[tokio::test]
async fn a_node_whose_lease_lapsed_is_taken_over_and_cannot_write_again() {
    use std::time::{Duration, Instant};
    let c = pg().await;
    let db = c.database("lease");
    let url = c.url(&db);
    let a = open_node(url.clone(), "fe-a", true).await.unwrap();
    a.add_user(store_tests::core::user("sip:early@example.com"))
        .await
        .unwrap();
    let m = setup_message(open_node(url.clone(), "fe-b", false).await);
    assert!(m.contains("node fe-a serves this database"), "{m}");
    // Tools write beside the serving node without joining.
    let tool = open_url(url.clone()).await.unwrap();
    tool.add_user(store_tests::core::user("sip:tool@example.com"))
        .await
        .unwrap();
    let rows = store::Store::nodes(&tool).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0].id.as_str(), rows[0].state.as_str()),
        ("fe-a", "serving")
    );
    assert!(rows[0].lease_left_ms > 0 && !rows[0].this, "{rows:?}");

    // fe-a stops renewing; fe-b, waiting, takes over once the lease lapsed
    // (5 s), not before.
    let mut fenced = a.fenced().unwrap();
    a.stop_heartbeat();
    let t = Instant::now();
    let b = open_node(url.clone(), "fe-b", true).await.unwrap();
    let waited = t.elapsed();
    assert!(
        waited > Duration::from_secs(3) && waited < Duration::from_secs(12),
        "{waited:?}"
    );
    let rows = store::Store::nodes(&b).await.unwrap();
    let state = |id: &str| {
        rows.iter()
            .find(|r| r.id == id)
            .map(|r| (r.state.clone(), r.this))
    };
    assert_eq!(state("fe-a"), Some(("dead".into(), false)));
    assert_eq!(state("fe-b"), Some(("serving".into(), true)));

    // fe-a comes back: its write is refused, and it learns it is out.
    assert!(!*fenced.borrow());
    match a
        .add_user(store_tests::core::user("sip:late@example.com"))
        .await
    {
        Err(StoreError::Unavailable(m)) => assert!(m.contains("no longer serves"), "{m}"),
        other => panic!("a dead node's write: {other:?}"),
    }
    tokio::time::timeout(Duration::from_secs(1), fenced.wait_for(|f| *f))
        .await
        .unwrap()
        .unwrap();
    assert!(b.user("sip:late@example.com").await.unwrap().is_none());
    // A registration's one-statement write is fenced too.
    assert!(matches!(
        a.apply_bindings(vec![store::BindingChange::Upsert(store::Binding {
            aor: "sip:early@example.com".into(),
            key: "k".into(),
            contact: "<sip:early@192.0.2.1>".into(),
            q: 1000,
            expires_at: i64::MAX,
            call_id: "c".into(),
            cseq: 1,
            path: Vec::new(),
            source: "udp:192.0.2.1:5060".into(),
            user_agent: None,
            node: String::new(),
        })])
        .await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(b.live_bindings(0).await.unwrap().is_empty());
    assert!(b.user("sip:early@example.com").await.unwrap().is_some());
    b.add_user(store_tests::core::user("sip:after@example.com"))
        .await
        .unwrap();

    // A clean stop hands over at once; a node restarted under the same
    // name gets a new epoch, and the old one stays refused.
    b.leave().await.unwrap();
    let t = Instant::now();
    let b2 = open_node(url.clone(), "fe-b", false).await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert!(matches!(
        b.add_user(store_tests::core::user("sip:stale@example.com"))
            .await,
        Err(StoreError::Unavailable(_))
    ));
    b2.add_user(store_tests::core::user("sip:fresh@example.com"))
        .await
        .unwrap();
    let epochs = c
        .psql(&db, "SELECT id || ':' || epoch FROM nodes ORDER BY id")
        .unwrap();
    assert_eq!(epochs.lines().count(), 2, "{epochs}");
}

/// The primary is killed (SIGKILL) while messages are being stored, and its
/// synchronous standby promoted: every write the store acknowledged is on
/// the new primary, and writes succeed again within 10 s, with nothing
/// restarted on Parapet's side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_the_loss_of_the_primary() {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};
    let pair = tokio::task::spawn_blocking(store_tests::pg::pair)
        .await
        .unwrap();
    let db = pair.primary.database("failover");
    let s = open_url(pair.url(&db)).await.unwrap();
    s.add_user(store_tests::core::user("sip:bob@example.com"))
        .await
        .unwrap();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let resumed: Arc<Mutex<Option<Instant>>> = Arc::default();
    let killed: Arc<Mutex<Option<Instant>>> = Arc::default();
    let writer = {
        let (s, acked, resumed, killed) =
            (s.clone(), acked.clone(), resumed.clone(), killed.clone());
        tokio::spawn(async move {
            let start = Instant::now();
            let mut failures = 0u32;
            for i in 0.. {
                if start.elapsed() > Duration::from_secs(40) {
                    break;
                }
                let m = store_tests::core::message("sip:bob@example.com", &format!("m{i}"));
                match s.enqueue_message(m).await {
                    Ok(stored) => {
                        acked.lock().unwrap().push(stored.id);
                        let k = *killed.lock().unwrap();
                        if k.is_some() {
                            let mut r = resumed.lock().unwrap();
                            if r.is_none() {
                                *r = Some(Instant::now());
                            }
                            if Instant::now() > r.unwrap() + Duration::from_millis(500) {
                                break;
                            }
                        }
                    }
                    Err(e) => {
                        failures += 1;
                        assert!(
                            matches!(e, StoreError::Unavailable(_)),
                            "a lost primary is 'unavailable': {e:?}"
                        );
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            failures
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = acked.lock().unwrap().len();
    assert!(before > 10, "writes were flowing ({before})");
    // The standby falls behind for a moment (its WAL receiver stopped):
    // a write acknowledged meanwhile would exist on the primary alone.
    // Synchronous replication holds the acknowledgements back instead.
    pair.receiving(false);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let during = acked.lock().unwrap().len() - before;
    pair.kill_primary();
    pair.receiving(true);
    *killed.lock().unwrap() = Some(Instant::now());
    let t0 = Instant::now();
    let promote = tokio::task::spawn_blocking(move || {
        pair.promote();
        pair
    });
    let failures = writer.await.unwrap();
    let pair = promote.await.unwrap();
    let resumed_after = resumed
        .lock()
        .unwrap()
        .expect("writes never resumed")
        .duration_since(t0);
    assert!(
        resumed_after < Duration::from_secs(10),
        "writes resumed after {resumed_after:?}"
    );
    assert!(failures > 0, "the loss was noticed");
    let acked = acked.lock().unwrap().clone();
    let stored: std::collections::HashSet<i64> = pair
        .standby
        .psql(&db, "SELECT id FROM pending_messages")
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    let lost: Vec<_> = acked.iter().filter(|id| !stored.contains(id)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged messages lost: {lost:?}",
        lost.len(),
        acked.len()
    );
    eprintln!(
        "{} acknowledged ({before} before the standby stopped receiving, {during} while it did), {failures} refused meanwhile, writes resumed {resumed_after:?} after the kill",
        acked.len(),
    );
}

/// The database unreachable for longer than the lease while two nodes
/// serve at once: when it is back, both renew and both still serve —
/// neither is declared dead by the other for an outage they both had.
#[tokio::test]
async fn an_outage_longer_than_the_lease_declares_no_active_node_dead() {
    use std::time::Duration;
    let c = pg().await;
    let db = c.database("outage");
    let url = c.url(&db);
    let a = open_node_in(url.clone(), "fe-a", true, true).await.unwrap();
    let b = open_node_in(url.clone(), "fe-b", true, true).await.unwrap();
    // Both have held their leases for a while (each judges others).
    tokio::time::sleep(store_postgres::nodes::LEASE + Duration::from_secs(1)).await;
    c.psql(
        "postgres",
        &format!(
            "ALTER DATABASE {db} ALLOW_CONNECTIONS false; \
             SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{db}'"
        ),
    )
    .unwrap();
    tokio::time::sleep(store_postgres::nodes::LEASE + Duration::from_secs(2)).await;
    c.psql(
        "postgres",
        &format!("ALTER DATABASE {db} ALLOW_CONNECTIONS true"),
    )
    .unwrap();
    // A few heartbeats after the return (each node renews within its
    // first round; the other judges only after a lease).
    tokio::time::sleep(store_postgres::nodes::LEASE + Duration::from_secs(2)).await;
    let rows = store::Store::nodes(&a).await.unwrap();
    for id in ["fe-a", "fe-b"] {
        let r = rows.iter().find(|r| r.id == id).expect("a row");
        assert_eq!(r.state, "serving", "{id}: {rows:?}");
    }
    a.add_user(store_tests::core::user("sip:after-a@example.com"))
        .await
        .unwrap();
    b.add_user(store_tests::core::user("sip:after-b@example.com"))
        .await
        .unwrap();
}

/// The subscriptions of a node that left are taken over by one other
/// node: the rows name it from then on; those of a node still serving,
/// and expired ones, stay where they are.
#[tokio::test]
async fn a_stopped_nodes_subscriptions_are_claimed_once() {
    use store::PresenceState as _;
    let c = pg().await;
    let db = c.database("claim_subs");
    let url = c.url(&db);
    let a = open_node_in(url.clone(), "fe-a", true, true).await.unwrap();
    let b = open_node_in(url.clone(), "fe-b", true, true).await.unwrap();
    let d = open_node_in(url.clone(), "fe-d", true, true).await.unwrap();
    let row = |id: &str, node: &str, expires_at: i64| store::SubscriptionRow {
        id: id.into(),
        event: "presence".into(),
        watcher: "sip:bob@example.com".into(),
        resource: "sip:alice@example.com".into(),
        call_id: format!("call-{id}"),
        remote_tag: "r1".into(),
        from_value: "<sip:bob@example.com>;tag=r1".into(),
        to_value: "<sip:alice@example.com>".into(),
        remote_target: "sip:bob@127.0.0.1:5070".into(),
        route_set: Vec::new(),
        source: "udp:127.0.0.1:5070".into(),
        event_id: None,
        local_cseq: 1,
        remote_cseq: 1,
        expires_at,
        node: node.into(),
    };
    let now = 1_000;
    a.put_subscription(row("a-live", "fe-a", now + 600))
        .await
        .unwrap();
    a.put_subscription(row("a-expired", "fe-a", now - 1))
        .await
        .unwrap();
    b.put_subscription(row("b-live", "fe-b", now + 600))
        .await
        .unwrap();
    assert!(
        b.claim_subscriptions(now, 10).await.unwrap().is_empty(),
        "fe-a serves"
    );
    a.leave().await.unwrap();
    // fe-b and fe-d ask at once: one of them gets it.
    let (got_b, got_d) = tokio::join!(
        b.claim_subscriptions(now, 10),
        d.claim_subscriptions(now, 10)
    );
    let (got_b, got_d) = (got_b.unwrap(), got_d.unwrap());
    let ids: Vec<&str> = got_b.iter().chain(&got_d).map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["a-live"], "{got_b:?} {got_d:?}");
    let (claimer, other) = if got_b.is_empty() { (&d, &b) } else { (&b, &d) };
    let stored = b.subscription("a-live", now).await.unwrap().unwrap();
    assert_eq!(stored.node, if got_b.is_empty() { "fe-d" } else { "fe-b" });
    assert!(b.claim_subscriptions(now, 10).await.unwrap().is_empty());
    assert_eq!(
        b.subscription("b-live", now).await.unwrap().unwrap().node,
        "fe-b"
    );
    // What a node ends itself (expired, NOTIFYs refused) goes only if the
    // row is still its own: the node that lost it to a claim deletes
    // nothing of the claimer's.
    assert_eq!(
        other
            .remove_subscriptions(vec!["a-live".into()])
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        claimer
            .remove_subscriptions(vec!["a-live".into()])
            .await
            .unwrap(),
        1
    );
    // At most as many as asked at a time; the rest at the next claim.
    for i in 0..3 {
        d.put_subscription(row(&format!("d-{i}"), "fe-d", now + 600))
            .await
            .unwrap();
    }
    d.leave().await.unwrap();
    assert_eq!(b.claim_subscriptions(now, 2).await.unwrap().len(), 2);
    assert_eq!(b.claim_subscriptions(now, 2).await.unwrap().len(), 1);
    assert!(b.claim_subscriptions(now, 2).await.unwrap().is_empty());
    // Rows naming no node (a server alone, or the standby mode, wrote
    // them) and rows naming a node the table does not list are claimed
    // too; rows of a serving node are not.
    b.put_subscription(row("nobody", "", now + 600))
        .await
        .unwrap();
    b.put_subscription(row("unlisted", "fe-gone", now + 600))
        .await
        .unwrap();
    b.put_subscription(row("b-again", "fe-b", now + 600))
        .await
        .unwrap();
    let mut got: Vec<String> = b
        .claim_subscriptions(now, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    got.sort();
    assert_eq!(got, ["nobody", "unlisted"]);
    assert_eq!(
        b.subscription("nobody", now).await.unwrap().unwrap().node,
        "fe-b"
    );
}

/// A table that grows fast is analysed by the serving node within
/// seconds, so that plans made while it was nearly empty (whole-table
/// reads) do not stay: autovacuum, switched off here for the table, would
/// wait for its next look at the database, a minute or more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_that_grew_fast_is_analysed_by_the_serving_node() {
    use store::{LockoutKey, LockoutKind, LockoutRow, Lockouts as _};
    let c = pg().await;
    let db = c.database("analyse_grown");
    let a = open_node_in(c.url(&db), "fe-a", true, true).await.unwrap();
    c.psql(&db, "ALTER TABLE lockouts SET (autovacuum_enabled = false)")
        .unwrap();
    let rows: Vec<LockoutRow> = (0..700)
        .map(|i| LockoutRow {
            key: LockoutKey {
                kind: LockoutKind::Familiar,
                account: format!("sip:u{i}@example.com"),
                source: "192.0.2.1".into(),
            },
            window_start: 0,
            failures: 0,
            lockouts: 0,
            locked_until: 0,
            last_seen: 1,
        })
        .collect();
    a.save_lockouts(rows, Vec::new()).await.unwrap();
    let counted = || -> f64 {
        c.psql(
            &db,
            "SELECT reltuples FROM pg_class WHERE relname = 'lockouts'",
        )
        .unwrap()
        .trim()
        .parse()
        .unwrap()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while counted() < 700.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "lockouts not analysed: reltuples {}",
            counted()
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// In the standby mode nothing follows the change log (a node taking over
/// loads every table at its start), so the serving node's writes append
/// nothing to it; a process that joined no pool, and an active node,
/// still append. An active node does not join beside a node serving in
/// the standby mode: it would follow a log that node does not write.
#[tokio::test]
async fn a_standby_mode_node_writes_no_change_log_and_no_active_node_joins_beside_it() {
    use store::BindingChange;
    use store_tests::core::{binding, user};
    let c = pg().await;
    let db = c.database("unfollowed");
    let url = c.url(&db);
    let logged = || -> u64 {
        c.psql(&db, "SELECT count(*) FROM changes")
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let s = open_node(url.clone(), "fe-s", false).await.unwrap();
    s.add_user(user("sip:ann@example.com")).await.unwrap();
    s.apply_bindings(vec![BindingChange::Upsert(binding(
        "sip:ann@example.com",
        "k1",
        i64::MAX / 2,
    ))])
    .await
    .unwrap();
    assert_eq!(logged(), 0, "the standby-mode node's writes are not logged");
    assert_eq!(
        s.bindings_of("sip:ann@example.com", 0).await.unwrap().len(),
        1,
        "but written"
    );
    let refused = setup_message(open_node_in(url.clone(), "fe-a", true, true).await);
    assert!(
        refused.contains("node fe-s serves this database in the standby mode")
            && refused.contains("pool_mode"),
        "{refused}"
    );
    // A tool (no node) is logged: whoever follows must see it.
    let tool = open_url(url.clone()).await.unwrap();
    tool.add_user(user("sip:bob@example.com")).await.unwrap();
    let after_tool = logged();
    assert_eq!(after_tool, 1, "the tool's user");
    // Once the standby-mode node has left, an active node joins and is
    // logged.
    s.leave().await.unwrap();
    let a = open_node_in(url, "fe-a", true, true).await.unwrap();
    a.add_user(user("sip:carol@example.com")).await.unwrap();
    assert_eq!(logged(), after_tool + 1, "the active node's user");
}

/// A serving node's registrations arriving under steady load share
/// commits: one statement and one commit for those arriving within the
/// linger (10 ms), where each used to go alone once the previous one had
/// committed — 60 registrations 4 ms apart, each well under 4 ms alone.
#[tokio::test]
async fn registrations_under_steady_load_share_commits() {
    use std::time::Duration;
    use store::BindingChange;
    use store_tests::core::{binding, user};
    let c = pg().await;
    let db = c.database("linger");
    let s = open_node(c.url(&db), "fe-l", false).await.unwrap();
    for i in 0..60 {
        s.add_user(user(&format!("sip:u{i}@example.com")))
            .await
            .unwrap();
    }
    let before = store::Store::commits(&s);
    let mut tick = tokio::time::interval(Duration::from_millis(4));
    let mut writes = Vec::new();
    for i in 0..60 {
        tick.tick().await;
        let s = s.clone();
        writes.push(tokio::spawn(async move {
            s.apply_bindings(vec![BindingChange::Upsert(binding(
                &format!("sip:u{i}@example.com"),
                "k",
                i64::MAX / 2,
            ))])
            .await
        }));
    }
    for w in writes {
        w.await.unwrap().unwrap();
    }
    let commits = store::Store::commits(&s) - before;
    assert!(commits <= 30, "{commits} commits for 60 registrations");
    for i in [0, 59] {
        let aor = format!("sip:u{i}@example.com");
        assert_eq!(s.bindings_of(&aor, 0).await.unwrap().len(), 1, "{aor}");
    }
}
