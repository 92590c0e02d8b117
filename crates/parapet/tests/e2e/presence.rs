//! Presence through SIPp: PUBLISH, SUBSCRIBE/NOTIFY, what each watcher is
//! allowed to see (asserted on the NOTIFY bodies), watcher information and
//! approval, restarts, and a SUBSCRIBE flood.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::*;

pub(crate) const PW: &str = "correct horse battery";

/// The bodies of the NOTIFYs in a SIPp message trace, in order.
pub(crate) fn notify_bodies(trace: &str) -> Vec<String> {
    let trace = trace.replace("\r\n", "\n");
    trace
        .split("message received")
        .filter_map(|m| {
            let msg = m.split_once(":\n\n")?.1;
            if !msg.starts_with("NOTIFY ") {
                return None;
            }
            let body = msg.split_once("\n\n")?.1;
            // The trace separates messages with a dashed line.
            let body = body.split("\n-----").next().unwrap_or(body);
            Some(body.trim().to_string())
        })
        .collect()
}

pub(crate) fn users(s: &Server, names: &[&str]) {
    for n in names {
        s.add_user(n, PW);
    }
}

pub(crate) fn admin_ok(s: &Server, args: &[&str]) -> String {
    let o = s.admin(args, "");
    assert!(o.status.success(), "{args:?}: {}", out(&o));
    out(&o)
}

pub(crate) fn publish(s: &Server, user: &str, note: &str, activity: &str) {
    passes!(
        s,
        s.sipp(
            "presence_publish.xml",
            user,
            PW,
            "127.0.0.1",
            free_port(),
            &[user, note, activity]
        )
    );
}

/// `watcher` subscribes to `presentity` and unsubscribes after the first
/// NOTIFY; returns that NOTIFY's body.
pub(crate) fn watch(s: &Server, watcher: &str, presentity: &str) -> String {
    let run = s.sipp_start(
        "presence_watch.xml",
        presentity,
        watcher,
        PW,
        "127.0.0.1",
        free_port(),
        &[watcher],
    );
    let (ok, trace) = run.finish();
    assert!(
        ok,
        "{watcher} watching {presentity} failed:\n{trace}\nserver:\n{}",
        s.log()
    );
    let bodies = notify_bodies(&trace);
    assert_eq!(bodies.len(), 2, "an active and a final NOTIFY:\n{trace}");
    bodies[0].clone()
}

/// `watcher` subscribes to `presentity` in the background and takes two
/// NOTIFYs (the first, and one after a change the test makes), then
/// unsubscribes (presence_watch_change.xml).
/// Alice's pending watcher list (through `admin`) names carol, alice
/// approves her, and carol's subscription (`carol`, held by `holder`) is
/// told closed while pending, then alice's busy status.
pub(crate) fn carol_pending_then_approved(admin: &Server, carol: SippRun, holder: &Server) {
    let listed = admin_ok(
        admin,
        &["contacts", "list", &sip("alice"), "--output", "json"],
    );
    let v: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(
        v["watchers"],
        serde_json::json!([{ "watcher": sip("carol"), "status": "pending" }]),
        "{listed}"
    );
    admin_ok(
        admin,
        &["contacts", "approve", &sip("alice"), &sip("carol")],
    );
    let (ok, trace) = carol.finish();
    assert!(ok, "{trace}\nserver holding it:\n{}", holder.log());
    let bodies = notify_bodies(&trace);
    assert!(
        bodies[0].contains("<basic>closed</basic>"),
        "pending: {}",
        bodies[0]
    );
    assert!(
        bodies[1].contains("<rpid:busy/>"),
        "approved: {}",
        bodies[1]
    );
}

pub(crate) fn watch_for_a_change(s: &Server, watcher: &str, presentity: &str) -> SippRun {
    s.sipp_start(
        "presence_watch_change.xml",
        presentity,
        watcher,
        PW,
        "127.0.0.1",
        free_port(),
        &[watcher],
    )
}

/// [`watch_for_a_change`], staying subscribed 20 s after the second
/// NOTIFY (presence_watch_change_held.xml): for a page that polls.
pub(crate) fn watch_for_a_change_held(s: &Server, watcher: &str, presentity: &str) -> SippRun {
    s.sipp_start(
        "presence_watch_change_held.xml",
        presentity,
        watcher,
        PW,
        "127.0.0.1",
        free_port(),
        &[watcher],
    )
}

/// The NOTIFYs of `trace`: offline first, then away with the note "back
/// at 5" (what [`publish`] with those values makes).
pub(crate) fn offline_then_back_at_5(trace: &str) {
    let bodies = notify_bodies(trace);
    assert!(bodies[0].contains("<basic>closed</basic>"), "{}", bodies[0]);
    assert!(
        bodies[1].contains("<rpid:away/>") && bodies[1].contains("back at 5"),
        "{}",
        bodies[1]
    );
}

pub(crate) fn sip(user: &str) -> String {
    format!("sip:{user}@{DOMAIN}")
}

#[test]
fn each_watcher_sees_what_the_privacy_rules_allow() {
    let s = Server::new("presence-matrix");
    users(&s, &["alice", "bob", "carol", "dave", "erin", "frank"]);
    for (g, members) in [
        ("eng", &["alice", "carol", "erin"][..]),
        ("sales", &["frank"][..]),
    ] {
        admin_ok(&s, &["group", "create", g]);
        for m in members {
            admin_ok(&s, &["group", "add-member", g, &sip(m)]);
        }
    }
    admin_ok(&s, &["contacts", "add", &sip("alice"), &sip("bob")]);
    admin_ok(
        &s,
        &[
            "contacts",
            "add",
            &sip("alice"),
            &sip("erin"),
            "--relationship",
            "workgroup",
            "--group",
            "Team",
        ],
    );
    admin_ok(&s, &["contacts", "block", &sip("alice"), &sip("dave")]);

    // Before alice publishes or registers she is offline to everyone: this
    // is the one document every watcher who may not see her gets.
    let offline = watch(&s, "bob", "alice");
    assert!(offline.contains("<basic>closed</basic>"), "{offline}");
    assert!(!offline.contains("busy"), "{offline}");

    publish(&s, "alice", "in a meeting until 3", "busy");
    let leaks = |doc: &str| doc.contains("desk phone") || doc.contains("127.0.0.1");

    // Privacy mode on (the default: contacts only).
    let bob = watch(&s, "bob", "alice");
    assert!(
        bob.contains("<basic>open</basic>") && bob.contains("<rpid:busy/>"),
        "{bob}"
    );
    assert!(
        bob.contains("in a meeting until 3"),
        "a colleague sees the note: {bob}"
    );
    assert!(!bob.contains("office") && !bob.contains("happy"), "{bob}");
    let erin = watch(&s, "erin", "alice");
    assert!(
        erin.contains("in a meeting until 3")
            && erin.contains("<rpid:office/>")
            && erin.contains("<rpid:happy/>"),
        "workgroup sees place and mood: {erin}"
    );
    for stranger in ["carol", "frank", "dave"] {
        let doc = watch(&s, stranger, "alice");
        assert_eq!(
            doc, offline,
            "{stranger} must see exactly the offline document"
        );
    }
    let own = watch(&s, "alice", "alice");
    assert!(
        own.contains("<rpid:busy/>") && own.contains("<rpid:happy/>"),
        "{own}"
    );
    for doc in [&bob, &erin, &own] {
        assert!(!leaks(doc), "device details left the server: {doc}");
    }
    // A presentity that does not exist looks like an offline one.
    let nobody = watch(&s, "bob", "nobody");
    assert_eq!(nobody.replace("nobody", "alice"), offline);

    // Privacy mode off: everyone inside the organisation sees availability
    // and note (colleague level); the block still holds.
    admin_ok(
        &s,
        &[
            "policy",
            "set",
            "privacy",
            "global",
            "presence_internal=everyone",
        ],
    );
    for colleague in ["carol", "frank"] {
        let doc = watch(&s, colleague, "alice");
        assert!(
            doc.contains("<rpid:busy/>") && doc.contains("in a meeting until 3"),
            "{colleague}: {doc}"
        );
        assert!(!doc.contains("office"), "{colleague}: {doc}");
    }
    assert_eq!(watch(&s, "dave", "alice"), offline, "blocked stays offline");
    assert_eq!(watch(&s, "erin", "alice"), erin);
    // Nobody: not even contacts; the owner still sees themselves.
    admin_ok(
        &s,
        &[
            "policy",
            "set",
            "privacy",
            "global",
            "presence_internal=nobody",
        ],
    );
    assert_eq!(watch(&s, "bob", "alice"), offline);
    assert!(watch(&s, "alice", "alice").contains("<rpid:busy/>"));
}

#[test]
fn watchers_are_notified_of_changes_and_across_a_restart() {
    let mut s = Server::new("presence-notify");
    users(&s, &["alice", "bob"]);
    admin_ok(&s, &["contacts", "add", &sip("alice"), &sip("bob")]);
    let run = watch_for_a_change(&s, "bob", "alice");
    // After the first NOTIFY (alice offline), alice publishes.
    std::thread::sleep(Duration::from_millis(1500));
    publish(&s, "alice", "back at 5", "away");
    let (ok, trace) = run.finish();
    assert!(ok, "{trace}\nserver:\n{}", s.log());
    offline_then_back_at_5(&trace);

    // A subscription made before a crash is still served after it: the
    // restarted server sends the current state (the publication survived
    // too), and the unsubscribe inside the old dialog is recognised.
    let run = watch_for_a_change(&s, "bob", "alice");
    std::thread::sleep(Duration::from_millis(1500));
    s.kill9();
    s.start();
    let (ok, trace) = run.finish();
    assert!(ok, "{trace}\nserver:\n{}", s.log());
    let bodies = notify_bodies(&trace);
    assert!(
        bodies[1].contains("<rpid:away/>"),
        "after the restart: {}",
        bodies[1]
    );

    // A user who only registers (never publishes) is available while
    // registered, offline otherwise.
    admin_ok(&s, &["contacts", "add", &sip("bob"), &sip("alice")]);
    assert!(watch(&s, "alice", "bob").contains("<basic>closed</basic>"));
    passes!(
        s,
        s.sipp(
            "register_auth.xml",
            "bob",
            PW,
            "127.0.0.1",
            free_port(),
            &[]
        )
    );
    let doc = watch(&s, "alice", "bob");
    assert!(
        doc.contains("<basic>open</basic>") && !doc.contains("rpid:busy"),
        "{doc}"
    );
}

#[test]
fn a_burst_of_changes_is_coalesced_into_one_notify_with_the_last_state() {
    let s = Server::new("presence-churn");
    users(&s, &["alice", "bob"]);
    admin_ok(&s, &["contacts", "add", &sip("alice"), &sip("bob")]);
    // Bob takes exactly three NOTIFYs and then none for 2.5 s.
    let bob = s.sipp_start(
        "presence_watch_churn.xml",
        "alice",
        "bob",
        PW,
        "127.0.0.1",
        free_port(),
        &["bob"],
    );
    std::thread::sleep(Duration::from_millis(1500));
    // Five states within a fraction of a second.
    passes!(
        s,
        s.sipp(
            "presence_publish_churn.xml",
            "alice",
            PW,
            "127.0.0.1",
            free_port(),
            &["alice"]
        )
    );
    let (ok, trace) = bob.finish();
    assert!(
        ok,
        "more or fewer NOTIFYs than expected:\n{trace}\nserver:\n{}",
        s.log()
    );
    let bodies = notify_bodies(&trace);
    assert!(bodies[0].contains("<basic>closed</basic>"), "{}", bodies[0]);
    // The first change goes at once; the four after it, within the
    // interval, become one NOTIFY carrying the last state.
    assert!(
        bodies[1].contains("churn-1") && bodies[1].contains("<rpid:busy/>"),
        "{}",
        bodies[1]
    );
    assert!(
        bodies[2].contains("churn-5") && bodies[2].contains("<rpid:busy/>"),
        "{}",
        bodies[2]
    );
}

#[test]
fn pending_watchers_are_listed_and_approved() {
    let s = Server::new("presence-winfo");
    users(&s, &["alice", "carol"]);
    publish(&s, "alice", "writing", "busy");
    // Alice follows who watches her (RFC 3857); nobody yet.
    let winfo = s.sipp_start(
        "presence_winfo_change.xml",
        "alice",
        "alice",
        PW,
        "127.0.0.1",
        free_port(),
        &["alice"],
    );
    std::thread::sleep(Duration::from_millis(1500));
    // Carol watches; privacy mode on, so she sees alice offline while the
    // subscription is pending. Alice's approval changes that at once.
    let carol = watch_for_a_change(&s, "carol", "alice");
    let (ok, trace) = winfo.finish();
    assert!(ok, "{trace}\nserver:\n{}", s.log());
    let docs = notify_bodies(&trace);
    assert!(
        !docs[0].contains("<watcher "),
        "nobody watches yet: {}",
        docs[0]
    );
    assert!(
        docs[1].contains("status=\"pending\"")
            && docs[1].contains(">sip:carol@example.test</watcher>"),
        "carol is listed as pending: {}",
        docs[1]
    );
    carol_pending_then_approved(&s, carol, &s);
    let listed = admin_ok(&s, &["contacts", "list", &sip("alice")]);
    assert!(
        listed.contains("sip:carol@example.test") && listed.contains("colleague"),
        "{listed}"
    );
    // The one-shot view (presence_winfo.xml) now shows her active.
    let (ok, trace) = s
        .sipp_start(
            "presence_winfo.xml",
            "alice",
            "alice",
            PW,
            "127.0.0.1",
            free_port(),
            &["alice"],
        )
        .finish();
    assert!(ok, "{trace}");
    assert!(
        !notify_bodies(&trace)[0].contains("carol"),
        "carol unsubscribed: {trace}"
    );
    // Blocking and approving again keep the entry's name and groups.
    admin_ok(
        &s,
        &[
            "contacts",
            "add",
            &sip("alice"),
            &sip("carol"),
            "--group",
            "Lab",
            "--display-name",
            "Carol",
        ],
    );
    admin_ok(&s, &["contacts", "block", &sip("alice"), &sip("carol")]);
    admin_ok(&s, &["contacts", "approve", &sip("alice"), &sip("carol")]);
    let v: serde_json::Value = serde_json::from_str(&admin_ok(
        &s,
        &["contacts", "list", &sip("alice"), "--output", "json"],
    ))
    .unwrap();
    let e = &v["contacts"][0];
    assert_eq!(
        (&e["relationship"], &e["display_name"], &e["groups"]),
        (
            &serde_json::json!("colleague"),
            &serde_json::json!("Carol"),
            &serde_json::json!(["Lab"])
        ),
        "{v}"
    );
}

#[test]
fn blocked_senders_and_strangers_cannot_message() {
    let s = Server::new("presence-im");
    users(&s, &["alice", "bob", "carol", "dave"]);
    admin_ok(&s, &["contacts", "add", &sip("alice"), &sip("bob")]);
    admin_ok(&s, &["contacts", "block", &sip("alice"), &sip("dave")]);
    let refused = |from: &str| {
        s.sipp_start(
            "message_send_refused.xml",
            "alice",
            from,
            PW,
            "127.0.0.1",
            free_port(),
            &[from, "hi"],
        )
        .finish()
    };
    passes!(s, refused("dave"));
    // Strangers: allowed inside the organisation by default; not with "nobody".
    let listener = register_and_listen(&s, "alice", PW);
    passes!(
        s,
        s.sipp_start(
            "message_send.xml",
            "alice",
            "carol",
            PW,
            "127.0.0.1",
            free_port(),
            &["carol", "hello"]
        )
        .finish()
    );
    passes!(s, listener.finish());
    admin_ok(
        &s,
        &[
            "policy",
            "set",
            "privacy",
            "global",
            "strangers_may_im=nobody",
        ],
    );
    passes!(s, refused("carol"));
    let listener = register_and_listen(&s, "alice", PW);
    passes!(
        s,
        s.sipp_start(
            "message_send.xml",
            "alice",
            "bob",
            PW,
            "127.0.0.1",
            free_port(),
            &["bob", "contact"]
        )
        .finish()
    );
    passes!(s, listener.finish());
}

#[test]
fn a_subscribe_flood_from_one_user_is_limited_without_affecting_others() {
    // The per-address limit is lifted so that the per-user one is what acts.
    let s = Server::with_config(
        "presence-flood",
        "[limits]\nunauthenticated_rate = 100000\nunauthenticated_burst = 100000",
    );
    users(&s, &["alice", "mallory", "bob"]);
    // mallory's client is signed in from the address it floods from: a
    // burst from a registered user meets the per-user limit, not overload
    // control (which, on a busy machine, sheds a burst from an address not
    // yet registered before that limit is reached).
    let port = free_port();
    let (ok, trace) = s.sipp("register_auth.xml", "mallory", PW, "127.0.0.1", port, &[]);
    assert!(ok, "{trace}");
    let csv = s.dir.join("flood.csv");
    std::fs::write(&csv, format!("SEQUENTIAL\n{DOMAIN};mallory\n")).unwrap();
    let msgs = s.dir.join("flood.msg");
    let status = Command::new("sipp")
        .arg("-sf")
        .arg(scenario("presence_flood.xml"))
        .arg("-inf")
        .arg(&csv)
        .args(["-auth_uri", &format!("alice@{DOMAIN}")])
        .args(["-s", "alice", "-au", "mallory", "-ap", PW])
        .args([
            "-m", "400", "-r", "400", "-l", "400", "-t", "u1", "-nostdin", "-timeout", "60s",
        ])
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-trace_msg",
            "-message_file",
        ])
        .arg(&msgs)
        .arg(format!("127.0.0.1:{}", s.udp))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    let trace = std::fs::read_to_string(&msgs).unwrap_or_default();
    assert!(
        status.success(),
        "flood run failed (see trace)\n{}",
        &trace[..trace.len().min(4000)]
    );
    let limited = trace
        .matches("503 Service Unavailable (Subscription Rate Exceeded)")
        .count();
    let accepted = trace.matches("Subscription-State: active").count();
    assert!(limited >= 100, "{limited} refused, {accepted} accepted");
    assert!(
        accepted >= 190,
        "the burst is served: {limited} refused, {accepted} accepted"
    );
    // Another user is unaffected, at once.
    let doc = watch(&s, "bob", "alice");
    assert!(doc.contains("<basic>closed</basic>"), "{doc}");
}

#[test]
fn a_contact_list_is_one_subscription() {
    let s = Server::new("presence-list");
    users(&s, &["alice", "bob", "carol", "dave"]);
    for c in ["bob", "carol"] {
        admin_ok(&s, &["contacts", "add", &sip("alice"), &sip(c)]);
    }
    admin_ok(&s, &["contacts", "block", &sip("alice"), &sip("dave")]);
    // Carol lets alice see her; bob does not list alice (privacy mode on).
    admin_ok(&s, &["contacts", "add", &sip("carol"), &sip("alice")]);
    publish(&s, "bob", "on a call", "busy");
    publish(&s, "carol", "lunch", "away");
    let (ok, trace) = s
        .sipp_start(
            "presence_list.xml",
            "alice+contacts",
            "alice",
            PW,
            "127.0.0.1",
            free_port(),
            &["alice"],
        )
        .finish();
    assert!(ok, "{trace}\nserver:\n{}", s.log());
    let body = &notify_bodies(&trace)[0];
    assert!(
        body.contains(
            "<list xmlns=\"urn:ietf:params:xml:ns:rlmi\" uri=\"sip:alice+contacts@example.test\""
        ),
        "{body}"
    );
    assert!(
        body.contains("<resource uri=\"sip:bob@example.test\">"),
        "{body}"
    );
    assert!(
        body.contains("<resource uri=\"sip:carol@example.test\">"),
        "{body}"
    );
    assert!(
        !body.contains("dave"),
        "a blocked contact is not followed: {body}"
    );
    // Each document is cut by the contact's own rules.
    let part = |who: &str| {
        body.split("Content-Type: application/pidf+xml")
            .find(|p| p.contains(&format!("entity=\"sip:{who}@example.test\"")))
            .unwrap_or_else(|| panic!("no document for {who}: {body}"))
            .to_string()
    };
    assert!(part("carol").contains("<rpid:away/>") && part("carol").contains("lunch"));
    assert!(part("bob").contains("<basic>closed</basic>") && !part("bob").contains("on a call"));
}

#[test]
fn joining_a_team_brings_its_members_as_contacts_when_the_policy_says_so() {
    let s = Server::new("presence-auto");
    users(&s, &["alice", "bob", "carol"]);
    admin_ok(&s, &["group", "create", "eng"]);
    admin_ok(&s, &["group", "add-member", "eng", &sip("alice")]);
    admin_ok(&s, &["group", "add-member", "eng", &sip("bob")]);
    let list = |u: &str| -> serde_json::Value {
        let o = admin_ok(&s, &["contacts", "list", &sip(u), "--output", "json"]);
        serde_json::from_str(&o).unwrap()
    };
    // AutoInitiateContacts is on by default: bob gets alice, in group "eng".
    let bob = list("bob");
    assert_eq!(bob["contacts"][0]["contact"], sip("alice"), "{bob}");
    assert_eq!(bob["contacts"][0]["relationship"], "workgroup", "{bob}");
    assert_eq!(bob["groups"], serde_json::json!(["eng"]), "{bob}");
    assert_eq!(list("alice")["contacts"], serde_json::json!([]));
    // A named privacy policy that turns it off, granted to carol.
    admin_ok(
        &s,
        &[
            "policy",
            "set",
            "privacy",
            "named:quiet",
            "auto_initiate_contacts=false",
        ],
    );
    admin_ok(
        &s,
        &[
            "grant",
            "add",
            "privacy",
            "quiet",
            &format!("user:{}", sip("carol")),
        ],
    );
    admin_ok(&s, &["group", "add-member", "eng", &sip("carol")]);
    assert_eq!(list("carol")["contacts"], serde_json::json!([]));
    // The change is audited.
    let audit = admin_ok(
        &s,
        &["audit", "list", "--object", &format!("user:{}", sip("bob"))],
    );
    assert!(audit.contains("auto_initiated_from_group"), "{audit}");
}
