//! Federation, dialogs across it: calls (with every request in the dialog
//! through both servers, also after the connection between them is gone),
//! presence under the presentity's privacy, and baresip users of two
//! organisations. The organisations and helpers are federation.rs's.

use std::time::Duration;

use crate::federation::{both_ways, contact, federate_both, policy, two_orgs, Meet, B};
use crate::harness::{free_port, out, Server};

both_ways!(
    a_call_crosses_federation_and_every_request_in_it_follows_both_servers,
    presence_crosses_federation_under_the_presentitys_privacy,
    baresip_users_of_two_organisations_message_call_and_watch_each_other,
    a_long_call_ends_after_the_connection_between_the_servers_is_gone,
    presence_reaches_a_partners_watcher_after_the_connection_is_gone,
);

fn a_call_crosses_federation_and_every_request_in_it_follows_both_servers(meet: Meet) {
    let (a, b, net) = two_orgs("fedcall", meet);
    a.add_user("alice", "correct horse battery");
    b.add_user("bob", "battery staple horse");
    federate_both(&a, &b);
    contact(&b, "sip:bob@partner.test", "sip:alice@example.test");
    // partner.test's server pinned to a host no SRV record names, on a
    // port where nothing listens: the call cannot get through.
    let pin = |port: u16| {
        policy(
            &a,
            &[
                "federation",
                "global",
                "enabled=true",
                "allowed_domains=partner.test",
                &format!("partner_servers=partner.test:edge.partner.test:{port}"),
            ],
        )
    };
    pin(free_port());
    net.settle();
    let (ok, msgs) = a
        .sipp_start(
            "call_uac_federated.xml",
            "bob",
            "alice",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &["alice", B],
        )
        .finish();
    assert!(!ok);
    assert!(
        msgs.contains("SIP/2.0 503 Service Unavailable (Partner Unreachable)"),
        "{msgs}"
    );
    // Pinned to that host on partner.test's port: the call goes there.
    pin(net.door(&b).1);
    net.settle();
    let bob = crate::harness::register_then(&b, "bob", "battery staple horse", "call_uas.xml");
    let (ok, msgs) = a
        .sipp_start(
            "call_uac_federated.xml",
            "bob",
            "alice",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &["alice", B],
        )
        .finish();
    assert!(
        ok,
        "the call failed for alice:\n{msgs}\nA:\n{}\nB:\n{}",
        a.log(),
        b.log()
    );
    let (ok, callee) = bob.finish();
    assert!(ok, "bob's side failed:\n{callee}");
    // Both organisations keep the call's detail record: the unreachable
    // attempt on example.test's side too.
    let cdrs = |s: &Server, n: usize| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let o = s.admin(&["--output=json", "cdr", "list", "--kind", "call"], "");
            assert!(o.status.success(), "{}", out(&o));
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            let r = v["records"].as_array().cloned().unwrap_or_default();
            if r.len() >= n || std::time::Instant::now() > deadline {
                return r;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    let ours = cdrs(&a, 2);
    let statuses: Vec<i64> = ours.iter().filter_map(|r| r["status"].as_i64()).collect();
    assert_eq!(statuses, vec![503, 200], "{ours:#?}");
    let theirs = cdrs(&b, 1);
    assert_eq!(theirs.len(), 1, "{theirs:#?}");
    for r in [&ours[1], &theirs[0]] {
        assert_eq!(r["caller"], "sip:alice@example.test", "{r}");
        assert_eq!(r["callee"], "sip:bob@partner.test", "{r}");
        assert_eq!(r["federated"], true, "{r}");
        assert_eq!(r["ended_by"], "caller", "{r}");
    }
    // Each side names the other as the partner, in its records and in its
    // usage counters.
    assert_eq!(ours[1]["partner"], "partner.test");
    assert_eq!(theirs[0]["partner"], "example.test");
    let m = a.http_get("/metrics", None).1;
    assert!(
        m.contains("parapet_usage_total{modality=\"call\",partner=\"partner.test\"} 1\n"),
        "{m}"
    );
    // The ACK, re-INVITE, UPDATE and BYE reached bob through both servers:
    // alice's Via, example.test's and partner.test's.
    for m in ["ACK sip:bob@", "UPDATE sip:bob@", "BYE sip:bob@"] {
        let vias = callee
            .split(m)
            .nth(1)
            .unwrap_or("")
            .lines()
            .take_while(|l| !l.is_empty())
            .filter(|l| l.starts_with("Via:"))
            .count();
        assert_eq!(vias, 3, "{m} did not pass both servers:\n{callee}");
    }
    // partner.test offers example.test IM only: the call is refused there.
    policy(
        &b,
        &[
            "federation",
            "global",
            "enabled=true",
            "allowed_domains=example.test",
            "partner_modalities=example.test:im",
        ],
    );
    // example.test lets its users receive calls from partner.test, not make them.
    policy(
        &a,
        &[
            "federation",
            "global",
            "enabled=true",
            "allowed_domains=partner.test",
            "partner_modalities=partner.test:calls-in,partner.test:im",
        ],
    );
    net.settle();
    let call = || {
        a.sipp_start(
            "call_uac_federated.xml",
            "bob",
            "alice",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &["alice", B],
        )
        .finish()
    };
    let (ok, msgs) = call();
    assert!(!ok);
    assert!(
        msgs.contains("SIP/2.0 403 Forbidden (Not Offered to This Partner)"),
        "{msgs}"
    );
    let (_, metrics) = a.http_get("/metrics", None);
    assert!(
        metrics.contains(
            "partner=\"partner.test\",direction=\"out\",outcome=\"modality_not_allowed\"} 1"
        ),
        "{metrics}"
    );
    policy(
        &a,
        &[
            "federation",
            "global",
            "enabled=true",
            "allowed_domains=partner.test",
            "partner_modalities=",
        ],
    );
    net.settle();
    let (ok, msgs) = call();
    assert!(!ok);
    assert!(
        msgs.contains("SIP/2.0 403 Forbidden (Not Offered to This Partner)"),
        "{msgs}"
    );
    let (_, metrics) = b.http_get("/metrics", None);
    assert!(
        metrics.contains(
            "partner=\"example.test\",direction=\"in\",outcome=\"modality_not_allowed\"} 1"
        ),
        "{metrics}"
    );
    policy(
        &b,
        &[
            "federation",
            "global",
            "enabled=true",
            "allowed_domains=example.test",
            "partner_modalities=",
        ],
    );

    // A caller without external access is refused by its own server.
    policy(&a, &["external_access", "global", "federation=false"]);
    net.settle();
    let (ok, msgs) = a
        .sipp_start(
            "call_uac_federated.xml",
            "bob",
            "alice",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &["alice", B],
        )
        .finish();
    assert!(!ok);
    assert!(
        msgs.contains("SIP/2.0 403 Forbidden (Federation Not Allowed for This User)"),
        "{msgs}"
    );
}

/// alice@example.test, registered, watches `whom`@partner.test from the
/// address she registered from (example.test relays the partner's NOTIFYs
/// over UDP only to registered addresses); returns SIPp's trace.
fn alice_watches(a: &Server, whom: &str) -> (bool, String) {
    let port = free_port();
    let (ok, msgs) = a.sipp(
        "register_auth.xml",
        "alice",
        "correct horse battery",
        "127.0.0.1",
        port,
        &[],
    );
    assert!(ok, "{msgs}");
    a.sipp_start(
        "presence_watch_federated.xml",
        whom,
        "alice",
        "correct horse battery",
        "127.0.0.1",
        port,
        &["alice", B],
    )
    .finish()
}

/// alice@example.test watches bob@partner.test; returns the first NOTIFY's
/// body (the unsubscribe follows the route set through both servers).
fn alice_watches_bob(a: &Server, b: &Server) -> String {
    let (ok, trace) = alice_watches(a, "bob");
    assert!(
        ok,
        "alice watching bob failed:\n{trace}\nA:\n{}\nB:\n{}",
        a.log(),
        b.log()
    );
    let bodies = crate::presence::notify_bodies(&trace);
    assert_eq!(bodies.len(), 2, "an active and a final NOTIFY:\n{trace}");
    bodies[0].clone()
}

fn presence_crosses_federation_under_the_presentitys_privacy(meet: Meet) {
    let (a, b, net) = two_orgs("fedpres", meet);
    a.add_user("alice", "correct horse battery");
    b.add_user("bob", "battery staple horse");
    federate_both(&a, &b);
    net.settle();
    // bob is registered (online); alice is no contact of his: she sees him
    // offline, exactly as an unknown user looks.
    let (ok, msgs) = b.sipp(
        "register_auth.xml",
        "bob",
        "battery staple horse",
        "127.0.0.1",
        free_port(),
        &[],
    );
    assert!(ok, "{msgs}");
    let stranger = alice_watches_bob(&a, &b);
    assert!(stranger.contains("<basic>closed</basic>"), "{stranger}");
    let (ok, trace) = alice_watches(&a, "nobody");
    assert!(ok, "{trace}");
    let unknown = crate::presence::notify_bodies(&trace)[0].replace("nobody", "bob");
    assert_eq!(stranger, unknown, "a refused watcher learns nothing");
    // In bob's contacts: the federated audience (contacts) sees him online.
    contact(&b, "sip:bob@partner.test", "sip:alice@example.test");
    net.settle();
    let seen = alice_watches_bob(&a, &b);
    assert!(seen.contains("<basic>open</basic>"), "{seen}");
    // bob without external access: offline again.
    policy(&b, &["external_access", "global", "federation=false"]);
    net.settle();
    let cut = alice_watches_bob(&a, &b);
    assert!(cut.contains("<basic>closed</basic>"), "{cut}");
    // partner.test offers example.test IM only: the subscription itself is
    // refused there.
    policy(
        &b,
        &[
            "federation",
            "global",
            "enabled=true",
            "allowed_domains=example.test",
            "partner_modalities=example.test:im",
        ],
    );
    net.settle();
    let (ok, trace) = alice_watches(&a, "bob");
    assert!(!ok);
    assert!(
        trace.contains("SIP/2.0 403 Forbidden (Not Offered to This Partner)"),
        "{trace}"
    );
}

fn baresip_users_of_two_organisations_message_call_and_watch_each_other(meet: Meet) {
    use crate::baresip::Baresip;
    let (a, b, net) = two_orgs("fedbaresip", meet);
    a.add_user("alice", "correct-horse-battery");
    b.add_user("bob", "battery-staple-horse");
    federate_both(&a, &b);
    // Each in the other's contacts (privacy: presence and messages from
    // outside are for contacts by default).
    contact(&a, "sip:alice@example.test", "sip:bob@partner.test");
    contact(&b, "sip:bob@partner.test", "sip:alice@example.test");
    net.settle();
    let mut bob = Baresip::start_with(
        &b,
        "bob",
        "battery-staple-horse",
        "alice@example.test",
        true,
    );
    bob.cmd("/answermode auto");
    let mut alice = Baresip::start_with(
        &a,
        "alice",
        "correct-horse-battery",
        "bob@partner.test",
        true,
    );
    // Presence both ways, through both servers.
    bob.wait_for("NOTIFY sip:bob");
    alice.wait_for("NOTIFY sip:alice");
    // alice's own presence reaches bob across federation (a NOTIFY from
    // example.test through partner.test): she goes offline, then online.
    std::thread::sleep(Duration::from_millis(1500));
    alice.cmd("/presence_offline");
    bob.wait_for("<sip:alice@example.test> changed status from \u{1b}[32mOnline\u{1b}[;m to \u{1b}[31mOffline");
    alice.cmd("/presence_online");
    bob.wait_for("<sip:alice@example.test> changed status from \u{1b}[31mOffline\u{1b}[;m to \u{1b}[32mOnline");
    // Messages both ways.
    alice.cmd("/message hello-across");
    bob.wait_for("sip:alice@example.test: \"hello-across\"");
    bob.cmd("/message hello-back");
    alice.wait_for("sip:bob@partner.test: \"hello-back\"");
    // A call with media, hung up by alice: the BYE crosses both servers.
    alice.cmd("/dial sip:bob@partner.test");
    bob.wait_for("Call established: sip:alice@example.test");
    alice.wait_for("Call established: sip:bob@partner.test");
    bob.wait_for("incoming rtp for 'audio' established");
    alice.cmd("/hangup");
    bob.wait_for("BYE sip:bob");
    bob.wait_for("session closed");
    if net.edges.is_some() {
        // Neither organisation's inside reached the other's client: no SIP
        // line either saw names the other side's front end or its edge's
        // internal address (example.test's front end shares 127.0.0.1 with
        // the clients, so partner.test's is the one to look for).
        use crate::edge::{mentions, sip_lines};
        use crate::federation::{A_EDGE, B_EDGE};
        for (who, client, other) in [
            ("alice", &alice, vec![b.host.as_str(), B_EDGE.1]),
            ("bob", &bob, vec![A_EDGE.1]),
        ] {
            let lines = sip_lines(&client.output());
            assert!(lines.len() > 50, "{who}'s trace was read");
            let foreign: Vec<&String> = lines
                .iter()
                .filter(|l| other.iter().any(|ip| mentions(l, ip)))
                .collect();
            assert!(
                foreign.is_empty(),
                "{who} saw the other organisation's inside: {foreign:#?}"
            );
        }
    }
    alice.cmd("/quit");
    bob.cmd("/quit");
}

fn a_long_call_ends_after_the_connection_between_the_servers_is_gone(meet: Meet) {
    let (a, mut b, mut net) = two_orgs("fedlong", meet);
    a.add_user("alice", "correct horse battery");
    b.add_user("bob", "battery staple horse");
    federate_both(&a, &b);
    contact(&b, "sip:bob@partner.test", "sip:alice@example.test");
    net.settle();
    let bob = crate::harness::register_then(&b, "bob", "battery staple horse", "call_uas_bye.xml");
    let alice = a.sipp_start(
        "call_uac_long_federated.xml",
        "bob",
        "alice",
        "correct horse battery",
        "127.0.0.1",
        free_port(),
        &["alice", B],
    );
    // Once the call is up, partner.test restarts (its edge, if it has
    // one): every connection between the organisations is gone when alice
    // hangs up five seconds later.
    std::thread::sleep(Duration::from_millis(2000));
    match net.edge_mut(&b) {
        Some(e) => {
            e.kill9();
            e.start();
        }
        None => {
            b.kill9();
            b.start();
        }
    }
    let (ok, msgs) = alice.finish();
    assert!(
        ok,
        "alice's BYE did not get through:\n{msgs}\nA:\n{}\nB:\n{}",
        a.log(),
        b.log()
    );
    let (ok, callee) = bob.finish();
    assert!(ok, "bob did not get the BYE:\n{callee}");
}

fn presence_reaches_a_partners_watcher_after_the_connection_is_gone(meet: Meet) {
    let (mut a, b, mut net) = two_orgs("fedpresconn", meet);
    a.add_user("alice", "correct horse battery");
    b.add_user("bob", "battery staple horse");
    federate_both(&a, &b);
    contact(&b, "sip:bob@partner.test", "sip:alice@example.test");
    net.settle();
    let (ok, msgs) = b.sipp(
        "register_auth.xml",
        "bob",
        "battery staple horse",
        "127.0.0.1",
        free_port(),
        &[],
    );
    assert!(ok, "{msgs}");
    // alice, registered, watches bob and waits for a change.
    let port = free_port();
    let (ok, msgs) = a.sipp(
        "register_auth.xml",
        "alice",
        "correct horse battery",
        "127.0.0.1",
        port,
        &[],
    );
    assert!(ok, "{msgs}");
    let alice = a.sipp_start(
        "presence_watch_change_federated.xml",
        "bob",
        "alice",
        "correct horse battery",
        "127.0.0.1",
        port,
        &["alice", B],
    );
    std::thread::sleep(Duration::from_millis(2500));
    // example.test restarts (its edge, if it has one): every connection
    // between the organisations is gone.
    match net.edge_mut(&a) {
        Some(e) => {
            e.kill9();
            e.start();
        }
        None => {
            a.kill9();
            a.start();
        }
    }
    // bob takes alice out of his contacts: partner.test must tell her,
    // over a connection it now opens itself.
    let o = b.admin(
        &[
            "contacts",
            "remove",
            "sip:bob@partner.test",
            "sip:alice@example.test",
        ],
        "",
    );
    assert!(o.status.success(), "{}", out(&o));
    let (ok, trace) = alice.finish();
    let edge_log = net.edge(&a).map(|e| e.log()).unwrap_or_default();
    assert!(
        ok,
        "alice did not hear of the change:\n{trace}\nA:\n{}\nB:\n{}\nA's edge:\n{edge_log}",
        a.log(),
        b.log()
    );
    let bodies = crate::presence::notify_bodies(&trace);
    assert!(bodies[0].contains("<basic>open</basic>"), "{}", bodies[0]);
    assert!(bodies[1].contains("<basic>closed</basic>"), "{}", bodies[1]);
}
