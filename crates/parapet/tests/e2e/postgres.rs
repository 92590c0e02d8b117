//! `parapet serve` with `database = "postgres://..."`: the same server on a
//! real PostgreSQL (TLS verified, SCRAM, a role without privileges),
//! driven as users and operators drive it. What it acknowledged is in
//! PostgreSQL and survives `kill -9` of the server.

use crate::harness::*;

/// Waits up to `secs` for `done`, polling; fails with `why()` after.
pub(crate) fn wait_until(secs: u64, mut done: impl FnMut() -> bool, why: impl Fn() -> String) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "{}", why());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn on_postgres(name: &str) -> (Server, &'static store_tests::pg::Cluster, String) {
    let pg = store_tests::pg::cluster();
    let db = pg.database(name);
    let s = Server::with_config(name, &format!("database = \"{}\"\n", pg.url(&db)));
    (s, pg, db)
}

#[test]
fn registrations_and_stored_messages_live_in_postgresql_and_survive_kill_9() {
    let (mut s, pg, db) = on_postgres("pg_serve");
    s.add_user("alice", "correct horse battery");
    s.add_user("carol", "battery staple horse");
    // alice registers; carol is offline and gets a message stored for her.
    let port = free_port();
    passes!(
        s,
        s.sipp(
            "register_auth.xml",
            "alice",
            "correct horse battery",
            "127.0.0.1",
            port,
            &[]
        )
    );
    let (ok, msgs) = s
        .sipp_start(
            "message_send_stored.xml",
            "carol",
            "alice",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &["alice", "stored-pg"],
        )
        .finish();
    assert!(
        ok && msgs.contains("SIP/2.0 202 Accepted (Stored for Later Delivery)"),
        "{msgs}"
    );
    // It is PostgreSQL that holds them, not a file beside the keys.
    let q = |sql: &str| pg.psql(&db, sql).unwrap().trim().to_string();
    assert_eq!(
        q("SELECT string_agg(aor, ',' ORDER BY aor) FROM users"),
        "sip:alice@example.test,sip:carol@example.test"
    );
    assert_eq!(
        q("SELECT count(*) FROM bindings WHERE aor = 'sip:alice@example.test'"),
        "1"
    );
    assert_eq!(
        q("SELECT count(*) FROM pending_messages WHERE recipient = 'sip:carol@example.test'"),
        "1"
    );
    assert!(!s.data_dir().join("parapet.db").exists());

    s.kill9();
    s.start();
    // alice's binding came back from PostgreSQL...
    let (ok, msgs) = s.sipp(
        "register_query.xml",
        "alice",
        "correct horse battery",
        "127.0.0.1",
        free_port(),
        &[],
    );
    assert!(ok, "{msgs}");
    assert!(
        msgs.contains(&format!("Contact: <sip:alice@127.0.0.1:{port}>;expires=")),
        "the binding made before kill -9 is listed: {msgs}"
    );
    // ...and carol gets her message when she registers.
    let (ok, received) = register_and_listen(&s, "carol", "battery staple horse").finish();
    assert!(ok, "{received}\nserver:\n{}", s.log());
    assert!(
        received.contains("Hello from alice: stored-pg"),
        "{received}"
    );
    // Deleted once carol's 200 came back (after SIPp saw the message).
    wait_until(
        5,
        || q("SELECT count(*) FROM pending_messages") == "0",
        || "the delivered message is still stored".into(),
    );

    // The audit chain, written by the server into PostgreSQL, verifies.
    let o = s.admin(&["audit", "verify"], "");
    assert!(
        o.status.success() && out(&o).contains("audit log intact"),
        "{}",
        out(&o)
    );
    assert_ne!(q("SELECT count(*) FROM audit"), "0");
    // A node started from another data directory (other keys) is refused
    // at start, before it binds anything: it could unseal no password.
    let second = s.dir.join("second.toml");
    std::fs::write(&second, format!("database = \"{}\"\n", pg.url(&db))).unwrap();
    let o = std::process::Command::new("timeout")
        .arg("30")
        .arg(env!("CARGO_BIN_EXE_parapet"))
        .args(["serve", "--domain", "example.test", "--config"])
        .arg(&second)
        .arg("--data-dir")
        .arg(s.dir.join("second-data"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("same keys/ directory"), "{}", out(&o));
    // A verified TLS connection to the database is no finding (plain TCP
    // is a high one: the security module's unit tests).
    let (_, text) = s.security_check();
    assert!(text.contains("[HIGH] config listen"), "{text}");
    assert!(!text.contains("config database"), "{text}");
}

/// Two nodes of one pool: the second waits as a standby while the first
/// holds its lease; the first is stopped (SIGSTOP) and the standby takes
/// over once the lease lapsed; when the first comes back (SIGCONT) it
/// learns it was declared dead and stops, and nothing it was sent meanwhile
/// is written.
#[test]
fn a_stopped_node_is_taken_over_by_its_standby_and_writes_nothing_when_it_comes_back() {
    use std::time::{Duration, Instant};
    let pg = store_tests::pg::cluster();
    let db = pg.database("pg_lease");
    // The nodes' trace rings in one directory both mount (here: inside
    // fe-a's test directory, removed with it).
    let traces = std::env::temp_dir()
        .join(format!("parapet-e2e-{}-pg_lease_a", std::process::id()))
        .join("pool-traces");
    let mut a = Server::with_config(
        "pg_lease_a",
        &format!(
            "node_id = \"fe-a\"\ndatabase = \"{}\"\n[trace]\ndir = \"{}\"\n",
            pg.url(&db),
            traces.display()
        ),
    );
    let q = |sql: &str| pg.psql(&db, sql).unwrap().trim().to_string();
    a.add_user("alice", "correct horse battery");
    a.add_user("carol", "battery staple horse");
    // A guesser locks dave's account out of 127.0.0.1 on fe-a (the
    // lockout state is saved every second).
    a.add_user("dave", "staple battery horse");
    passes!(
        a,
        a.sipp(
            "register_lockout.xml",
            "dave",
            "guess guess",
            "127.0.0.1",
            free_port(),
            &[]
        )
    );
    std::thread::sleep(Duration::from_millis(2500));
    let mut b = a.another_node("pg_lease_b", "fe-b");
    b.spawn();
    wait_until(
        30,
        || b.log().contains("standby: node fe-a serves this database"),
        || format!("no standby:\n{}", b.log()),
    );
    // The standby binds nothing meanwhile.
    assert!(std::net::TcpStream::connect(("127.0.0.1", b.admin)).is_err());
    let status = |s: &Server| -> serde_json::Value {
        let o = s.admin(&["--output=json", "status"], "");
        assert!(o.status.success(), "{}", out(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let v = status(&a);
    assert_eq!(v["nodes"][0]["id"], "fe-a", "{v}");
    assert_eq!(v["nodes"][0]["state"], "serving", "{v}");
    assert_eq!(v["nodes"][0]["this"], true, "{v}");
    let table = a.admin(&["status"], "");
    assert!(
        out(&table).contains("nodes:") && out(&table).contains("fe-a"),
        "{}",
        out(&table)
    );

    // alice's client registers with fe-a over TLS; its answer to fe-a's
    // challenge is kept, to be replayed to fe-b.
    use crate::defaults::{answer, challenges, exchange, register};
    let mut c = a.tls_to(a.tls);
    let resp = exchange(
        &mut c,
        &register("TLS", "127.0.0.1:5996", 1, None, "test", None),
    );
    let ch = challenges(&resp);
    let md5 = ch
        .iter()
        .find(|(alg, _)| alg == "MD5")
        .expect("an MD5 challenge");
    let captured = answer(
        auth::digest::Algorithm::Md5,
        &md5.1,
        "correct horse battery",
    );
    let resp = exchange(
        &mut c,
        &register("TLS", "127.0.0.1:5996", 2, None, "test", Some(&captured)),
    );
    assert!(resp.starts_with("SIP/2.0 200 "), "{resp}");
    drop(c);
    // Its connection closed, fe-a removes that binding (written before
    // fe-a is stopped: nothing it writes afterwards would land).
    wait_until(
        10,
        || {
            q("SELECT count(*) FROM bindings WHERE aor = 'sip:alice@example.test' AND source LIKE 'tls:%'")
                == "0"
        },
        || q("SELECT aor, source FROM bindings"),
    );

    // The trace ladder of that registration (its Call-ID), as a node
    // answers: (node, method or status) in order.
    let call_id = format!("defaults-{}@test", std::process::id());
    let ladder = |s: &Server| -> Vec<(String, String)> {
        let o = s.admin(&["--output=json", "trace", "--call-id", &call_id], "");
        assert!(o.status.success(), "{}", out(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let line = m["first_line"].as_str().unwrap();
                // The method, or the status code.
                let what = match line.strip_prefix("SIP/2.0 ") {
                    Some(status) => status[..3].to_string(),
                    None => line.split(' ').next().unwrap().to_string(),
                };
                (m["node"].as_str().unwrap().to_string(), what)
            })
            .collect()
    };
    // In fe-a's ring before it stops (written within a moment).
    wait_until(10, || ladder(&a).len() >= 4, || format!("{:?}", ladder(&a)));

    // fe-a stops; fe-b takes over once the lease lapsed (5 s).
    a.signal("STOP");
    let stopped = Instant::now();
    assert!(
        b.wait_ready(),
        "the standby did not take over:\n{}",
        b.log()
    );
    assert!(
        stopped.elapsed() < Duration::from_secs(30),
        "{:?}",
        stopped.elapsed()
    );
    assert!(b.log().contains("declared dead"), "{}", b.log());
    // A digest answer given to fe-a is stale at fe-b (nonces name the
    // process that issued them).
    let mut c = b.tls_to(b.tls);
    let resp = exchange(
        &mut c,
        &register("TLS", "127.0.0.1:5996", 3, None, "test", Some(&captured)),
    );
    assert!(
        resp.starts_with("SIP/2.0 401 ") && resp.contains("stale=true"),
        "{resp}"
    );
    drop(c);
    // One ladder across the pool: asked of fe-b, the registration's
    // exchanges with fe-a (stopped now) and then with fe-b, in order,
    // each named by its node.
    wait_until(10, || ladder(&b).len() >= 6, || format!("{:?}", ladder(&b)));
    let step = |n: &str, w: &str| (n.to_string(), w.to_string());
    assert_eq!(
        ladder(&b),
        vec![
            step("fe-a", "REGISTER"),
            step("fe-a", "401"),
            step("fe-a", "REGISTER"),
            step("fe-a", "200"),
            step("fe-b", "REGISTER"),
            step("fe-b", "401"),
        ]
    );
    assert!(traces.join("fe-a").is_dir() && traces.join("fe-b").is_dir());
    // The node that took over forgives the guesser nothing.
    passes!(
        b,
        b.sipp(
            "register_refused.xml",
            "dave",
            "staple battery horse",
            "127.0.0.1",
            free_port(),
            &[]
        )
    );
    passes!(
        b,
        b.sipp(
            "register_auth.xml",
            "alice",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &[]
        )
    );
    let v = status(&b);
    let node = |id: &str| {
        v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == id)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(node("fe-a")["state"], "dead", "{v}");
    assert_eq!(node("fe-b")["state"], "serving", "{v}");
    // Its metrics say which node and epoch they are from.
    let (_, metrics) = b.http_get("/metrics", None);
    assert!(
        metrics.contains(&format!(
            "parapet_node_info{{node=\"fe-b\",epoch=\"{}\"}} 1",
            node("fe-b")["epoch"]
        )),
        "{metrics}"
    );
    assert_eq!(node("fe-b")["this"], true, "{v}");
    // Each node's row says what its caches hold (written with its
    // heartbeat): fe-b holds the two users added before it started.
    let held = || {
        status(&b)["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == "fe-b")
            .and_then(|n| n["users_version"].as_i64())
            .unwrap_or(0)
    };
    wait_until(10, || held() >= 2, || format!("{}", status(&b)));

    // carol registers with fe-a while it is stopped; it comes back, learns
    // it is dead and stops, and her registration is not written.
    let carol = a.sipp_start(
        "register_auth.xml",
        "carol",
        "carol",
        "battery staple horse",
        "127.0.0.1",
        free_port(),
        &[],
    );
    std::thread::sleep(Duration::from_millis(500));
    a.signal("CONT");
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(st) = a.child.as_mut().unwrap().try_wait().unwrap() {
            break st.code();
        }
        assert!(Instant::now() < deadline, "fe-a did not stop:\n{}", a.log());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, Some(1), "{}", a.log());
    assert!(
        a.log()
            .contains("lease on the database lapsed and another node took over"),
        "{}",
        a.log()
    );
    let (ok, msgs) = carol.finish();
    assert!(!ok, "carol was registered by a dead node: {msgs}");
    assert_eq!(
        q("SELECT count(*) FROM bindings WHERE aor = 'sip:carol@example.test'"),
        "0"
    );
    assert_eq!(
        q("SELECT count(*) FROM bindings WHERE aor = 'sip:alice@example.test'"),
        "1"
    );
    // fe-b serves on.
    let (ok, msgs) = b.sipp(
        "register_query.xml",
        "alice",
        "correct horse battery",
        "127.0.0.1",
        free_port(),
        &[],
    );
    assert!(ok, "{msgs}");
}

/// The pool's nodes share one archive key directory: a message archived
/// by fe-a and one by fe-b after it took over are both kept and read under
/// the same day's key. fe-c's directory is a copy of the pool's made
/// before that day's key: it passes the start, makes its own key under
/// the day's name and refuses to seal with it — the record is not
/// written, its message still goes on, and the log says what to fix.
/// fe-d, with a directory of its own, is refused at start.
#[test]
fn the_pools_nodes_seal_with_one_key_per_day_and_one_with_its_own_keys_refuses() {
    let pg = store_tests::pg::cluster();
    let db = pg.database("pg_keys");
    let base = std::env::temp_dir().join(format!("parapet-e2e-{}-pg_keys_a", std::process::id()));
    let shared = base.join("pool-archive-keys");
    let a = Server::with_config(
        "pg_keys_a",
        &format!(
            "node_id = \"fe-a\"\ndatabase = \"{}\"\n[archive]\nkeys_dir = \"{}\"\n",
            pg.url(&db),
            shared.display()
        ),
    );
    let q = |sql: &str| pg.psql(&db, sql).unwrap().trim().to_string();
    crate::archive::users(&a);
    crate::archive::ok(
        &a,
        &["policy", "set", "archiving", "global", "internal=true"],
    );
    // Three more nodes, copies of fe-a's data directory as it is now:
    // fe-b with the shared key directory, fe-c with a copy of it, fe-d
    // with one of its own.
    let copied = base.join("copied-archive-keys");
    let cp = std::process::Command::new("cp")
        .arg("-a")
        .arg(&shared)
        .arg(&copied)
        .status()
        .unwrap();
    assert!(cp.success());
    let mut b = a.another_node("pg_keys_b", "fe-b");
    let keys_dir = |s: &mut Server, to: Option<&std::path::Path>| {
        s.extra_config = s
            .extra_config
            .lines()
            .filter(|l| !l.starts_with("keys_dir"))
            .map(|l| format!("{l}\n"))
            .chain(to.map(|p| format!("keys_dir = \"{}\"\n", p.display())))
            .collect();
    };
    let mut c = a.another_node("pg_keys_c", "fe-c");
    keys_dir(&mut c, Some(&copied));
    let mut d = a.another_node("pg_keys_d", "fe-d");
    keys_dir(&mut d, None);
    let to_carol = |s: &Server, text: &str| {
        crate::archive::send(
            s,
            "alice",
            "correct horse battery",
            "carol",
            text,
            "message_send_stored.xml",
        );
    };
    // Each takes over from the one before (a clean stop hands over at once).
    let take_over = |old: &Server, new: &mut Server| {
        new.spawn();
        wait_until(30, || new.log().contains("standby: node"), || new.log());
        old.signal("TERM");
    };
    to_carol(&a, "pool-1");
    wait_until(
        10,
        || q("SELECT count(*) FROM archive") == "2",
        || q("SELECT owner, key_id FROM archive"),
    );
    take_over(&a, &mut b);
    assert!(b.wait_ready(), "fe-b did not take over:\n{}", b.log());
    to_carol(&b, "pool-2");
    wait_until(
        10,
        || q("SELECT count(*) FROM archive") == "4",
        || q("SELECT owner, key_id FROM archive"),
    );
    // One key for the day, in the shared directory; both messages read on
    // fe-b.
    assert_eq!(q("SELECT count(DISTINCT key_id) FROM archive"), "1");
    let found = crate::archive::search(&b, &b.token, &["--user", "sip:alice@example.test"]);
    let text = found.to_string();
    assert!(
        text.contains("pool-1") && text.contains("pool-2"),
        "{found:#}"
    );

    // fe-c, with a copy of the directory, takes over: it starts, but its
    // own key of the day is not the pool's.
    take_over(&b, &mut c);
    assert!(c.wait_ready(), "fe-c did not take over:\n{}", c.log());
    to_carol(&c, "pool-3");
    wait_until(
        10,
        || {
            c.log().contains("archive key d")
                && c.log()
                    .contains("every node must use one shared archive.keys_dir")
        },
        || c.log(),
    );
    assert_eq!(q("SELECT count(*) FROM archive"), "4");
    // The message itself went on: stored for carol.
    assert_eq!(
        q("SELECT count(*) FROM pending_messages WHERE recipient = 'sip:carol@example.test'"),
        "3"
    );
    let (_, m) = c.http_get("/metrics", None);
    assert!(m.contains("parapet_archive_writable 0"), "{m}");

    // fe-d, with a directory of its own, does not start.
    take_over(&c, &mut d);
    assert!(!d.wait_ready(), "fe-d started:\n{}", d.log());
    assert!(
        d.log().contains("the archive key directory in")
            && d.log()
                .contains("every node must use one shared archive.keys_dir"),
        "{}",
        d.log()
    );
}

/// The README's command with `database` set (its defaults otherwise: TLS
/// and WSS only, SHA-256 and MD5 over TLS, encrypted media required), and
/// a real client: baresip registers over TLS, messages, is stored for
/// while offline and calls with SRTP — all of it from PostgreSQL.
#[test]
fn the_readme_defaults_on_postgresql_serve_baresip_over_tls() {
    use crate::baresip::Baresip;
    let pg = store_tests::pg::cluster();
    let db = pg.database("pg_readme");
    let s = Server::readme_with("pg_readme", &format!("database = \"{}\"\n", pg.url(&db)));
    let q = |sql: &str| pg.psql(&db, sql).unwrap().trim().to_string();
    s.add_user("alice", "correct-horse-battery");
    s.add_user("bob", "battery-staple-horse");
    let mut bob = Baresip::start(&s, "bob", "battery-staple-horse", "alice");
    bob.cmd("/answermode auto");
    let mut alice = Baresip::start(&s, "alice", "correct-horse-battery", "bob");
    // Registered over TLS, in PostgreSQL.
    assert_eq!(
        q("SELECT string_agg(aor || ' ' || split_part(source, ':', 1), ',' ORDER BY aor) FROM bindings"),
        "sip:alice@example.test tls,sip:bob@example.test tls"
    );
    alice.cmd("/message hello-from-alice");
    bob.wait_for("sip:alice@example.test: \"hello-from-alice\"");
    alice.cmd("/dial sip:bob@example.test");
    bob.wait_for("Call established: sip:alice@example.test");
    alice.wait_for("Call established: sip:bob@example.test");
    bob.wait_for("incoming rtp for 'audio' established");
    let trace = bob.output();
    assert!(
        trace.contains("RTP/SAVP") && trace.contains("a=crypto:"),
        "{trace}"
    );
    alice.cmd("/hangup");
    bob.wait_for("session closed");
    // bob goes away: his binding goes with his connection, and a message
    // to him is stored in PostgreSQL until he is back.
    bob.cmd("/quit");
    drop(bob);
    wait_until(
        10,
        || q("SELECT count(*) FROM bindings WHERE aor = 'sip:bob@example.test'") == "0",
        || "bob's binding outlived his connection".into(),
    );
    alice.cmd("/message while-you-were-away");
    wait_until(
        10,
        || {
            q("SELECT count(*) FROM pending_messages WHERE recipient = 'sip:bob@example.test'")
                == "1"
        },
        || format!("the message was not stored:\n{}", alice.output()),
    );
    let bob = Baresip::start(&s, "bob", "battery-staple-horse", "alice");
    bob.wait_for("while-you-were-away");
    alice.cmd("/quit");
}

#[test]
fn a_database_it_cannot_reach_stops_the_start_with_what_to_fix() {
    let dir = std::env::temp_dir().join(format!("parapet-e2e-{}-pg-down", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("parapet.toml");
    // No sslrootcert for a TCP host: refused before connecting.
    std::fs::write(
        &config,
        "database = \"postgres://parapet@127.0.0.1:9/parapet\"\n",
    )
    .unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_parapet"))
        .args(["serve", "--domain", "example.test", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(out(&o).contains("sslrootcert"), "{}", out(&o));
    // Written out as plain text, to a port where nothing listens: a clear
    // refusal, not a hang.
    std::fs::write(
        &config,
        "database = \"postgres://parapet@127.0.0.1:9/parapet?sslmode=disable\"\n",
    )
    .unwrap();
    let started = std::time::Instant::now();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_parapet"))
        .args(["serve", "--domain", "example.test", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        out(&o).contains("cannot connect to the database"),
        "{}",
        out(&o)
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}

#[test]
fn while_the_database_refuses_connections_registrations_get_503_and_service_comes_back() {
    let (s, pg, db) = on_postgres("pg_down");
    s.add_user("alice", "correct horse battery");
    passes!(
        s,
        s.sipp(
            "register_auth.xml",
            "alice",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &[]
        )
    );
    // The database stops taking this server's connections, and the ones
    // it had are cut.
    pg.psql(
        "postgres",
        &format!(
            "ALTER DATABASE {db} ALLOW_CONNECTIONS false; \
             SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{db}'"
        ),
    )
    .unwrap();
    // A registration cannot be made durable: 503 with Retry-After (the
    // client tries again), not a 500, and the server does not stop.
    passes!(
        s,
        s.sipp(
            "register_auth_503.xml",
            "alice",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &[]
        )
    );
    // An administrator's change gets 503 too.
    let o = s.admin(
        &["user", "add", "sip:dave@example.test", "--password-stdin"],
        "a long enough password",
    );
    assert!(!o.status.success(), "{}", out(&o));
    assert!(
        out(&o).contains("503") || out(&o).contains("try again"),
        "{}",
        out(&o)
    );
    // A wrong password meanwhile still counts (in memory); saving it
    // fails, which the metrics say, and is tried again.
    passes!(
        s,
        s.sipp(
            "register_bad_auth_once.xml",
            "alice",
            "wrong password!",
            "127.0.0.3",
            free_port(),
            &[]
        )
    );
    let metric = |name: &str| -> u64 {
        let (_, m) = s.http_get("/metrics", None);
        m.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    wait_until(
        30,
        || metric("parapet_lockout_saves_failed_total") > 0,
        || s.http_get("/metrics", None).1,
    );
    // The database is back: the next registration succeeds, nothing restarted.
    pg.psql(
        "postgres",
        &format!("ALTER DATABASE {db} ALLOW_CONNECTIONS true"),
    )
    .unwrap();
    // The failure counted during the outage reaches the database.
    let q = |sql: &str| pg.psql(&db, sql).unwrap().trim().to_string();
    wait_until(
        30,
        || q("SELECT count(*) FROM lockouts WHERE source = '127.0.0.3'") == "1",
        || q("SELECT kind, account, source FROM lockouts"),
    );
    passes!(
        s,
        s.sipp(
            "register_auth.xml",
            "alice",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &[]
        )
    );
    s.add_user("dave", "a long enough password");
}

#[test]
fn an_sqlite_deployment_moves_to_postgresql_and_goes_on_where_it_was() {
    let mut s = Server::new("pg_move");
    s.add_user("alice", "correct horse battery");
    s.add_user("carol", "battery staple horse");
    s.add_each_other("alice", "carol");
    // Alice is archived: her message to carol moves with its sealed record.
    let o = s.admin(
        &["policy", "set", "archiving", "global", "internal=true"],
        "",
    );
    assert!(o.status.success(), "{}", out(&o));
    let port = free_port();
    passes!(
        s,
        s.sipp(
            "register_auth.xml",
            "alice",
            "correct horse battery",
            "127.0.0.1",
            port,
            &[]
        )
    );
    let (ok, msgs) = s
        .sipp_start(
            "message_send_stored.xml",
            "carol",
            "alice",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &["alice", "moved-1"],
        )
        .finish();
    assert!(ok, "{msgs}");
    // A guesser at carol's password from 127.0.0.3 (saved every second).
    passes!(
        s,
        s.sipp(
            "register_lockout.xml",
            "carol",
            "guess guess",
            "127.0.0.3",
            free_port(),
            &[]
        )
    );
    // An edge paired (its record is the store's), and one an earlier
    // version recorded in the data directory (imported at the next start).
    pair_edge(&s, "mover", &s.dir.join("mover.json"));
    let legacy = s.data_dir().join("edges");
    std::fs::create_dir_all(&legacy).unwrap();
    let far = 4_000_000_000i64;
    std::fs::write(
        legacy.join("legacy.json"),
        format!(
            r#"{{"name":"legacy","internal":"127.0.0.12:5061","external_names":["old.example.test"],"fingerprint":"{}","paired_at":1,"expires_at":{far}}}"#,
            "ab".repeat(32)
        ),
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    s.kill9(); // the server is stopped for the move

    let pg = store_tests::pg::cluster();
    let db = pg.database("pg_move");
    let url = pg.url(&db);
    let data_dir = s.data_dir();
    let migrate = |s: &Server| {
        s.cli(
            &[
                "admin",
                "migrate-store",
                "--data-dir",
                data_dir.to_str().unwrap(),
                "--to",
                &url,
            ],
            "",
        )
    };
    let o = migrate(&s);
    assert!(o.status.success(), "{}", out(&o));
    let text = out(&o);
    assert!(text.contains("audit log verified in PostgreSQL"), "{text}");
    let q = |sql: &str| pg.psql(&db, sql).unwrap().trim().to_string();
    assert_eq!(q("SELECT count(*) FROM users"), "2");
    assert_eq!(q("SELECT count(*) FROM contacts"), "2");
    assert_eq!(q("SELECT count(*) FROM pending_messages"), "1");
    assert_eq!(q("SELECT count(*) FROM archive"), "2");
    assert_eq!(
        q("SELECT count(*) FROM lockouts WHERE kind = 'pair' AND source = '127.0.0.3' AND locked_until > 0"),
        "1"
    );
    assert_eq!(q("SELECT name FROM edges"), "mover");
    // Again into the same database: refused, nothing doubled.
    let o = migrate(&s);
    assert!(!o.status.success());
    assert!(out(&o).contains("already holds data"), "{}", out(&o));
    assert_eq!(q("SELECT count(*) FROM users"), "2");

    // The same data directory (its keys), now on PostgreSQL.
    s.extra_config = format!("database = \"{url}\"\n");
    s.start();
    // The administrator's session moved too.
    let o = s.admin(&["user", "list"], "");
    assert!(
        o.status.success() && out(&o).contains("sip:carol@example.test"),
        "{}",
        out(&o)
    );
    // Both edges are paired: the one moved, the one imported from its
    // file (renamed, so it is not imported again).
    let o = s.admin(&["edge", "list"], "");
    assert!(
        o.status.success() && out(&o).contains("mover") && out(&o).contains("legacy"),
        "{}",
        out(&o)
    );
    assert!(legacy.join("legacy.json.imported").exists());
    assert!(!legacy.join("legacy.json").exists());
    // The guesser is still locked out...
    passes!(
        s,
        s.sipp(
            "register_refused.xml",
            "carol",
            "battery staple horse",
            "127.0.0.3",
            free_port(),
            &[]
        )
    );
    // ...alice's binding, made on SQLite, is listed...
    let (ok, msgs) = s.sipp(
        "register_query.xml",
        "alice",
        "correct horse battery",
        "127.0.0.1",
        free_port(),
        &[],
    );
    assert!(ok, "{msgs}");
    assert!(
        msgs.contains(&format!("Contact: <sip:alice@127.0.0.1:{port}>;expires=")),
        "{msgs}"
    );
    // ...carol's stored message is delivered, and new ids do not collide.
    let (ok, received) = register_and_listen(&s, "carol", "battery staple horse").finish();
    assert!(ok, "{received}\nserver:\n{}", s.log());
    assert!(received.contains("Hello from alice: moved-1"), "{received}");
    s.add_user("dave", "a long enough password");
    // The archive moved and opens with the same keys.
    let o = s.admin(
        &[
            "archive",
            "search",
            "--counterpart",
            "sip:carol@example.test",
        ],
        "",
    );
    assert!(
        o.status.success() && out(&o).contains("Hello from alice: moved-1"),
        "{}",
        out(&o)
    );
    let o = s.admin(&["audit", "verify"], "");
    assert!(
        o.status.success() && out(&o).contains("audit log intact"),
        "{}",
        out(&o)
    );
}

#[test]
fn the_database_fails_over_to_its_standby_and_nothing_acknowledged_is_lost() {
    let pair = store_tests::pg::pair();
    let db = pair.primary.database("pg_failover");
    let s = Server::with_config(
        "pg_failover",
        &format!("database = \"{}\"\n", pair.url(&db)),
    );
    s.add_user("alice", "correct horse battery");
    s.add_user("carol", "battery staple horse");
    // Five messages for carol, each acknowledged (202) by the server.
    for n in 0..5 {
        let (ok, msgs) = s
            .sipp_start(
                "message_send_stored.xml",
                "carol",
                "alice",
                "correct horse battery",
                "127.0.0.1",
                free_port(),
                &["alice", &format!("before-{n}")],
            )
            .finish();
        assert!(ok && msgs.contains("202 Accepted"), "{msgs}");
    }
    // The primary's machine is lost; the standby is promoted.
    pair.receiving(false);
    pair.kill_primary();
    pair.receiving(true);
    let killed = std::time::Instant::now();
    pair.promote();
    // The server reconnects by itself: a registration succeeds again
    // within 10 s of the loss (503 with Retry-After until then).
    let resumed = loop {
        let (ok, _) = s.sipp(
            "register_auth.xml",
            "alice",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &[],
        );
        if ok {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < std::time::Duration::from_secs(10),
            "no registration within 10 s of the primary's loss:\n{}",
            s.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    eprintln!("service resumed {resumed:?} after the primary's loss");
    // Every acknowledged message is on the new primary, and carol gets one
    // of them (the oldest) as she registers.
    assert_eq!(
        pair.standby
            .psql(&db, "SELECT count(*) FROM pending_messages")
            .unwrap()
            .trim(),
        "5"
    );
    let (ok, received) = register_and_listen(&s, "carol", "battery staple horse").finish();
    assert!(ok, "{received}\nserver:\n{}", s.log());
    assert!(
        received.contains("Hello from alice: before-0"),
        "{received}"
    );
}

#[test]
fn a_restarted_node_knows_every_one_of_50000_users_once_it_says_it_is_ready() {
    use std::io::Write as _;
    const USERS: usize = 50_000;
    // One load source: its per-address limit for unauthenticated requests
    // lifted.
    let pg = store_tests::pg::cluster();
    let db = pg.database("pg_50k");
    let mut s = Server::with_config(
        "pg_50k",
        &format!(
            "database = \"{}\"\n[limits]\nunauthenticated_rate = 1000000\nunauthenticated_burst = 1000000\n",
            pg.url(&db)
        ),
    );
    // Users u0..u49999, each with a password of their own: the import file
    // and SIPp's (user;[authentication ...]) file for bench/sipp/register.xml.
    let tsv = s.dir.join("users.tsv");
    let csv = s.dir.join("users.csv");
    {
        let mut t = std::io::BufWriter::new(std::fs::File::create(&tsv).unwrap());
        let mut c = std::io::BufWriter::new(std::fs::File::create(&csv).unwrap());
        writeln!(c, "SEQUENTIAL").unwrap();
        for i in 0..USERS {
            writeln!(t, "sip:u{i}@{DOMAIN}\tpassword-{i:06}").unwrap();
            writeln!(
                c,
                "u{i};[authentication username=u{i} password=password-{i:06}]"
            )
            .unwrap();
        }
    }
    let o = s.admin(&["user", "import", tsv.to_str().unwrap()], "");
    assert!(
        o.status.success() && out(&o).contains("imported 50000 users"),
        "{}",
        out(&o)
    );

    // Killed and started again: /healthz says 503 until the state is
    // loaded (the admin listener is bound a few hundred milliseconds
    // before 50,000 users are), then 200.
    s.kill9();
    s.spawn();
    let mut starting = 0;
    wait_until(
        90,
        || {
            if std::net::TcpStream::connect(("127.0.0.1", s.admin)).is_err() {
                return false;
            }
            let (line, body) = s.http_get("/healthz", None);
            let ok = line.contains(" 200");
            if !ok {
                assert!(
                    line.contains(" 503") && body.starts_with("starting"),
                    "{line} {body}"
                );
                starting += 1;
            }
            ok
        },
        || format!("never ready:\n{}", s.log()),
    );
    assert!(
        starting > 0,
        "/healthz said 200 before the state was loaded"
    );
    // (The log's fields are coloured: escapes taken out.)
    let log: String = s
        .log()
        .split('\x1b')
        .map(|p| {
            p.find('m')
                .filter(|_| p.starts_with('['))
                .map_or(p, |i| &p[i + 1..])
        })
        .collect();
    let loaded = log
        .rfind("state loaded users=")
        .expect("the core logged its state");
    assert!(
        log[loaded..].starts_with("state loaded users=50000 "),
        "{}",
        &log[loaded..]
    );

    // At once, every user registers with their own password: all 50,000
    // are known (SIPp exits 0 only if every call passed). The load source
    // signs one user in first: a burst from an address a registration came
    // from is served, not shed as overload (which, on a busy machine, a
    // debug build's queue at this rate can bring on for a new address).
    let port = free_port();
    let (ok, trace) = s.sipp(
        "register_auth.xml",
        "u0",
        "password-000000",
        "127.0.0.1",
        port,
        &[],
    );
    assert!(ok, "{trace}");
    let errors = s.dir.join("register-50k.err");
    let status = std::process::Command::new("sipp")
        .arg("-sf")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/sipp/register.xml"))
        .arg("-inf")
        .arg(&csv)
        .args(["-m", &USERS.to_string(), "-l", "200", "-r", "2000"])
        .args(["-auth_uri", DOMAIN])
        .args([
            "-t",
            "u1",
            "-nostdin",
            "-timeout",
            "240s",
            "-i",
            "127.0.0.1",
        ])
        .args(["-p", &port.to_string(), "-trace_err", "-error_file"])
        .arg(&errors)
        .arg(format!("127.0.0.1:{}", s.udp))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("sipp is installed");
    assert!(
        status.success(),
        "{}\nserver:\n{}",
        std::fs::read_to_string(&errors).unwrap_or_default(),
        s.log()
    );
    let q = |sql: &str| pg.psql(&db, sql).unwrap().trim().to_string();
    assert_eq!(
        q("SELECT count(DISTINCT aor) FROM bindings"),
        USERS.to_string()
    );
}

/// A node started in the active mode does not join a database that a node
/// in the standby mode serves (that node writes no change log for it to
/// follow): `parapet serve` stops at its start, naming the serving node
/// and the setting to change.
#[test]
fn an_active_node_does_not_join_beside_a_standby_mode_node() {
    let pg = store_tests::pg::cluster();
    let db = pg.database("pg_mixed");
    let a = Server::with_config(
        "pg_mixed_a",
        &format!("node_id = \"fe-a\"\ndatabase = \"{}\"\n", pg.url(&db)),
    );
    let mut b = a.another_node("pg_mixed_b", "fe-b");
    b.extra_config.push_str("pool_mode = \"active\"\n");
    b.spawn();
    assert!(!b.wait_ready(), "fe-b served beside fe-a");
    let log = b.log();
    assert!(
        log.contains("node fe-a serves this database in the standby mode")
            && log.contains("pool_mode"),
        "{log}"
    );
    // fe-a goes on serving.
    assert!(
        a.http_get("/healthz", None).0.contains(" 200"),
        "{}",
        a.log()
    );
}

/// A server on PostgreSQL whose TLS listener is on a wildcard address
/// (the README's default) pairs an edge without being told where the edge
/// should reach it: the pairing file names the address its route to the
/// database leaves from (here 127.0.0.1), with the listener's port. (On
/// SQLite, or without a route, `--front-end` says it.)
#[test]
fn an_edge_paired_with_a_wildcard_listener_reaches_the_address_toward_the_database() {
    let pg = store_tests::pg::cluster();
    let db = pg.database("pg_edge_wildcard");
    let s = Server::org_at(
        "pg_edge_wildcard",
        DOMAIN,
        "0.0.0.0",
        &format!(
            "node_id = \"fe-a\"\ndatabase = \"{}\"\n[relay]\nlisten = [\"udp://127.0.0.1:0\"]\naddress = \"127.0.0.1\"\n",
            pg.url(&db)
        ),
    );
    let pairing = s.dir.join("wild.json");
    pair_edge(&s, "wild", &pairing);
    let file = std::fs::read_to_string(&pairing).unwrap();
    assert!(file.contains(&format!("127.0.0.1:{}", s.tls)), "{file}");
}

/// `parapet admin edge pair NAME` through `s` (internal 127.0.0.11, external
/// edge.example.test, no `--front-end`), its pairing file written to `to`.
fn pair_edge(s: &Server, name: &str, to: &std::path::Path) {
    let o = s.admin(
        &[
            "edge",
            "pair",
            name,
            "--internal",
            &format!("127.0.0.11:{}", free_port()),
            "--external",
            "edge.example.test",
            "--out",
            to.to_str().unwrap(),
        ],
        "",
    );
    assert!(o.status.success(), "{}", out(&o));
}
