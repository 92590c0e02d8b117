//! Presence in a pool whose nodes all serve: a subscription moves to the
//! node its watcher refreshes it through, a lost node's subscriptions are
//! taken over, and watcher information names the watchers on every node.

use crate::harness::*;
use crate::pool::two_nodes;
use crate::postgres::wait_until;
use crate::presence::{admin_ok, notify_bodies, publish, sip, watch_for_a_change, PW};

/// carol (a new user, allowed by dave's contact list) watches dave
/// through `a` with `scenario`, which goes on to `b` (its fields 2 and 3;
/// the node-lost scenario answers whichever node notifies instead)
/// — once `b` knows both users and the list.
fn carol_watches_dave(a: &Server, b: &Server, scenario: &str) -> SippRun {
    a.add_user("carol", PW);
    a.add_user("dave", PW);
    admin_ok(a, &["contacts", "add", &sip("dave"), &sip("carol")]);
    // b has the new users (it polls the users' version every second) and
    // dave's list (from the change log).
    users_applied_everywhere(a);
    let b_udp = b.udp.to_string();
    a.sipp_start(
        scenario,
        "dave",
        "carol",
        PW,
        "127.0.0.1",
        free_port(),
        &["carol", &b.host, &b_udp],
    )
}

/// What carol's trace must show: her first NOTIFY from `a`, the three
/// after from `b` (dave offline, then away "back at 5").
fn notified_by_a_then_b(trace: &str, a: &Server, b: &Server) {
    assert_eq!(
        notify_senders(trace),
        [a.udp, b.udp, b.udp, b.udp],
        "{trace}"
    );
    let bodies = notify_bodies(trace);
    assert!(bodies[1].contains("<basic>closed</basic>"), "{}", bodies[1]);
    assert!(
        bodies[2].contains("<rpid:away/>") && bodies[2].contains("back at 5"),
        "{}",
        bodies[2]
    );
}

/// carol watches dave through fe-a, then sends her refresh to fe-b (her
/// client reconnected there): fe-b takes the subscription over — its
/// NOTIFYs come from fe-b from then on, dave's change published through
/// fe-a among them — and fe-a lets it go without a word to carol (a
/// NOTIFY from fe-a after the move would be one SIPp did not expect).
#[test]
fn a_subscription_moves_to_the_node_its_watcher_refreshes_it_through() {
    let (a, b, pg, db) = two_nodes("pool_sub_moves");
    let run = carol_watches_dave(&a, &b, "presence_watch_change_moving.xml");
    wait_until(
        30,
        || {
            b.log()
                .contains("subscription taken over from another node")
                && a.log().contains("subscription moved to another node")
        },
        || format!("no move seen:\nfe-a:\n{}\nfe-b:\n{}", a.log(), b.log()),
    );
    let node = pg.psql(&db, "SELECT node FROM subscriptions").unwrap();
    assert_eq!(node.trim(), "fe-b");
    wait_until(
        5,
        || live_subscriptions(&a).ends_with(" 0") && live_subscriptions(&b).ends_with(" 1"),
        || {
            format!(
                "fe-a: {}, fe-b: {}",
                live_subscriptions(&a),
                live_subscriptions(&b)
            )
        },
    );
    publish(&a, "dave", "back at 5", "away");
    let (ok, trace) = run.finish();
    assert!(ok, "{trace}\nfe-a:\n{}\nfe-b:\n{}", a.log(), b.log());
    notified_by_a_then_b(&trace, &a, &b);
    // Ended through fe-b: gone from the database.
    assert_eq!(
        pg.psql(&db, "SELECT count(*) FROM subscriptions")
            .unwrap()
            .trim(),
        "0"
    );
}

/// The port each NOTIFY of a SIPp trace came from (its Via), in order.
fn notify_senders(trace: &str) -> Vec<u16> {
    trace
        .replace("\r\n", "\n")
        .split("message received")
        .filter_map(|m| m.split_once(":\n\n").map(|(_, msg)| msg.to_owned()))
        .filter(|msg| msg.starts_with("NOTIFY "))
        .filter_map(|msg| {
            let via = msg.lines().find(|l| l.starts_with("Via:"))?;
            let hostport = via.split_whitespace().nth(2)?;
            hostport.split(';').next()?.rsplit(':').next()?.parse().ok()
        })
        .collect()
}

/// How many live subscriptions a node's metrics count.
fn live_subscriptions(s: &Server) -> String {
    let (_, m) = s.http_get("/metrics", None);
    m.lines()
        .find(|l| l.starts_with("parapet_presence_subscriptions "))
        .unwrap_or_default()
        .to_owned()
}

/// carol watches dave through `a` (presence_watch_change_node_lost.xml),
/// once `a` holds the subscription and her client has answered its first
/// NOTIFY (SIPp then waits for the next, from whichever node sends it).
fn carol_notified_by_a(a: &Server, b: &Server) -> SippRun {
    let run = carol_watches_dave(a, b, "presence_watch_change_node_lost.xml");
    wait_until(
        15,
        || live_subscriptions(a).ends_with(" 1"),
        || format!("fe-a: {}\n{}", live_subscriptions(a), a.log()),
    );
    wait_until(
        15,
        || notifies_answered(&run) >= 1,
        || "carol's client never answered fe-a's first NOTIFY".into(),
    );
    run
}

/// carol watches dave through fe-a; fe-a is killed. Once its lease lapses
/// and fe-b declares it dead, fe-b claims the subscription and notifies
/// carol at once with dave's state (no waiting for her refresh); dave's
/// change published through fe-b reaches her from fe-b.
#[test]
fn a_lost_nodes_subscriptions_are_taken_over_and_notified() {
    let (mut a, b, pg, db) = two_nodes("pool_sub_lost");
    let run = carol_notified_by_a(&a, &b);
    a.kill9();
    wait_until(
        30,
        || {
            b.log()
                .contains("subscriptions taken over from nodes no longer serving")
        },
        || format!("fe-b took nothing over:\n{}", b.log()),
    );
    assert_eq!(
        pg.psql(&db, "SELECT node FROM subscriptions")
            .unwrap()
            .trim(),
        "fe-b"
    );
    publish(&b, "dave", "back at 5", "away");
    let (ok, trace) = run.finish();
    assert!(ok, "{trace}\nfe-b:\n{}", b.log());
    notified_by_a_then_b(&trace, &a, &b);
}

/// A subscription row naming no node — as a server alone on the database,
/// or a pool in the standby mode (the default), writes them — once every
/// node serves is claimed by one node, not taken by each: after both
/// nodes restart, exactly one holds it (their metrics add up to one, and
/// the row names it) and notifies carol at once; dave's change then
/// reaches her once.
#[test]
fn a_subscription_written_before_every_node_served_is_claimed_by_one() {
    let (mut a, mut b, pg, db) = two_nodes("pool_sub_orphan");
    let run = carol_notified_by_a(&a, &b);
    a.kill9();
    b.kill9();
    pg.psql(&db, "UPDATE subscriptions SET node = ''").unwrap();
    a.spawn();
    b.spawn();
    assert!(a.wait_ready(), "fe-a did not start again:\n{}", a.log());
    assert!(b.wait_ready(), "fe-b did not start again:\n{}", b.log());
    let holder = || {
        pg.psql(&db, "SELECT node FROM subscriptions")
            .unwrap()
            .trim()
            .to_owned()
    };
    wait_until(
        30,
        || ["fe-a", "fe-b"].contains(&holder().as_str()),
        || {
            format!(
                "no node claimed the row ({:?}):\n{}\n{}",
                holder(),
                a.log(),
                b.log()
            )
        },
    );
    // Both have read the nodes since (every 2 s) and loaded long before.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let held = |s: &Server| -> u64 {
        live_subscriptions(s)
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    assert_eq!(
        (held(&a), held(&b)),
        if holder() == "fe-a" { (1, 0) } else { (0, 1) },
        "the row names {}",
        holder()
    );
    publish(&a, "dave", "back at 5", "away");
    let (ok, trace) = run.finish();
    assert!(ok, "{trace}\nfe-a:\n{}\nfe-b:\n{}", a.log(), b.log());
    // fe-a's first, the claimer's at once, dave's change, the last one.
    assert_eq!(notify_senders(&trace).len(), 4, "{trace}");
}

/// Watcher information is the pool's: alice follows who watches her
/// through fe-a, carol watches her through fe-b — alice's watcher list
/// (her winfo NOTIFY, and `contacts list` through fe-a) names carol as
/// pending, and alice's approval made through fe-a reaches carol's
/// subscription on fe-b.
#[test]
fn watcher_information_names_watchers_on_every_node() {
    // (alice's password is PW already.)
    let (a, b, _, _) = two_nodes("pool_winfo");
    a.add_user("carol", PW);
    publish(&a, "alice", "writing", "busy");
    // fe-b has the new users (it polls the users' version every second).
    users_applied_everywhere(&a);
    let winfo = a.sipp_start(
        "presence_winfo_change.xml",
        "alice",
        "alice",
        PW,
        "127.0.0.1",
        free_port(),
        &["alice"],
    );
    wait_until(
        15,
        || notifies_answered(&winfo) >= 1,
        || "alice's client never answered the first watcher-information NOTIFY".into(),
    );
    let carol = watch_for_a_change(&b, "carol", "alice");
    let (ok, trace) = winfo.finish();
    assert!(ok, "{trace}\nfe-a:\n{}", a.log());
    let docs = notify_bodies(&trace);
    assert!(!docs[0].contains("<watcher "), "nobody yet: {}", docs[0]);
    assert!(
        docs[1].contains("status=\"pending\"")
            && docs[1].contains(">sip:carol@example.test</watcher>"),
        "carol, watching through fe-b, listed on fe-a: {}",
        docs[1]
    );
    // Listed and approved through fe-a; carol's subscription is fe-b's.
    crate::presence::carol_pending_then_approved(&a, carol, &b);
}

/// Waits until every node of `s`'s pool reports its caches at the same
/// users' and policies' versions (a user added through one node is then
/// known on all).
fn users_applied_everywhere(s: &Server) {
    let agreed = || {
        let o = s.admin(&["--output=json", "status"], "");
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&o.stdout) else {
            return false;
        };
        let nodes = v["nodes"].as_array().cloned().unwrap_or_default();
        let versions = |key: &str| -> Vec<i64> {
            nodes
                .iter()
                .filter(|n| n["state"] == "serving")
                .map(|n| n[key].as_i64().unwrap_or(-1))
                .collect()
        };
        let (u, p) = (versions("users_version"), versions("policy_version"));
        u.len() > 1 && u.iter().all(|x| *x == u[0]) && p.iter().all(|x| *x == p[0])
    };
    wait_until(10, agreed, || {
        "the nodes never agreed on the users' version".into()
    });
}

/// How many NOTIFYs a running SIPp client has answered (its trace so far).
fn notifies_answered(run: &SippRun) -> usize {
    let trace = std::fs::read_to_string(&run.msgs)
        .unwrap_or_default()
        .replace("\r\n", "\n");
    trace
        .split("-----------------------------------------------")
        .filter(|m| m.contains("message sent") && m.contains("SIP/2.0 200 OK"))
        .filter(|m| {
            m.lines()
                .any(|l| l.starts_with("CSeq:") && l.ends_with(" NOTIFY"))
        })
        .count()
}
