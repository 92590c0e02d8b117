//! REGISTER processing rules, one test per rule.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use bytes::Bytes;
use registrar::{Change, Flow, Location, RegisterError, RegistrarConfig};
use sip::{parse_datagram, Limits, Message};

const AOR: &str = "sip:alice@example.com";

fn register(call_id: &str, cseq: u32, extra: &str) -> Message {
    let s = format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/TLS 192.0.2.1:5061;branch=z9hG4bK{cseq}{call_id}\r\n\
         Max-Forwards: 70\r\nFrom: <{AOR}>;tag=f\r\nTo: <{AOR}>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n\
         {extra}Content-Length: 0\r\n\r\n"
    );
    parse_datagram(Bytes::from(s), &Limits::DEFAULT).unwrap()
}

fn loc() -> Location {
    Location::new(RegistrarConfig::default())
}

#[test]
fn binding_with_expiry_is_listed_and_written_through() {
    let mut l = loc();
    let r = l
        .register(
            AOR,
            &register(
                "c1",
                1,
                "Contact: <sip:alice@192.0.2.1:5061;transport=tls>;expires=600\r\n",
            ),
            "tls:192.0.2.1:5061",
            Some(Flow(7)),
            1000,
        )
        .unwrap();
    assert_eq!(
        r.contacts,
        ["<sip:alice@192.0.2.1:5061;transport=tls>;expires=600"]
    );
    assert!(
        matches!(&r.changes[..], [Change::Upsert(b)] if b.expires_at == 1600 && b.source == "tls:192.0.2.1:5061")
    );
    let found = l.lookup(AOR, 1001);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].1, Some(Flow(7)));
    assert!(l.lookup(AOR, 1600).is_empty(), "expired on time");
}

#[test]
fn expires_header_default_and_clamp() {
    let mut l = loc();
    let r = l
        .register(
            AOR,
            &register("c1", 1, "Expires: 7200\r\nContact: <sip:a@192.0.2.1>\r\n"),
            "udp:x",
            None,
            0,
        )
        .unwrap();
    assert_eq!(
        r.contacts,
        ["<sip:a@192.0.2.1>;expires=3600"],
        "clamped to max"
    );
    let r = l
        .register(
            AOR,
            &register("c2", 1, "Contact: <sip:b@192.0.2.1>\r\n"),
            "udp:x",
            None,
            0,
        )
        .unwrap();
    assert!(
        r.contacts
            .contains(&"<sip:b@192.0.2.1>;expires=3600".to_string()),
        "default"
    );
}

#[test]
fn too_brief_gets_423_with_min_expires() {
    let mut l = loc();
    let e = l
        .register(
            AOR,
            &register("c1", 1, "Contact: <sip:a@192.0.2.1>;expires=30\r\n"),
            "udp:x",
            None,
            0,
        )
        .unwrap_err();
    assert_eq!(e, RegisterError::IntervalTooBrief { min_expires: 60 });
    assert_eq!((e.status(), e.reason()), (423, "Interval Too Brief"));
    assert!(l.is_empty(), "nothing applied");
}

#[test]
fn unregister_one_and_wildcard_all() {
    let mut l = loc();
    l.register(
        AOR,
        &register("c1", 1, "Contact: <sip:a@192.0.2.1>, <sip:b@192.0.2.2>\r\n"),
        "udp:x",
        None,
        0,
    )
    .unwrap();
    let r = l
        .register(
            AOR,
            &register("c1", 2, "Contact: <sip:a@192.0.2.1>;expires=0\r\n"),
            "udp:x",
            None,
            0,
        )
        .unwrap();
    assert_eq!(r.contacts, ["<sip:b@192.0.2.2>;expires=3600"]);
    assert_eq!(
        r.changes,
        [Change::Remove {
            aor: AOR.into(),
            key: "sip:a@192.0.2.1".into()
        }]
    );
    let e = l
        .register(AOR, &register("c1", 3, "Contact: *\r\n"), "udp:x", None, 0)
        .unwrap_err();
    assert_eq!(e, RegisterError::BadWildcard, "wildcard needs Expires: 0");
    let r = l
        .register(
            AOR,
            &register("c1", 3, "Expires: 0\r\nContact: *\r\n"),
            "udp:x",
            None,
            0,
        )
        .unwrap();
    assert!(r.contacts.is_empty());
    assert!(!l.is_registered(AOR, 0));
}

#[test]
fn query_lists_without_changing() {
    let mut l = loc();
    l.register(
        AOR,
        &register("c1", 1, "Contact: <sip:a@192.0.2.1>;q=0.5\r\n"),
        "udp:x",
        None,
        0,
    )
    .unwrap();
    let r = l
        .register(AOR, &register("c9", 1, ""), "udp:x", None, 100)
        .unwrap();
    assert_eq!(r.contacts, ["<sip:a@192.0.2.1>;expires=3500;q=0.500"]);
    assert!(r.changes.is_empty());
}

#[test]
fn out_of_order_cseq_is_refused() {
    let mut l = loc();
    l.register(
        AOR,
        &register("c1", 5, "Contact: <sip:a@192.0.2.1>\r\n"),
        "udp:x",
        None,
        0,
    )
    .unwrap();
    let e = l
        .register(
            AOR,
            &register("c1", 5, "Contact: <sip:a@192.0.2.1>;expires=0\r\n"),
            "udp:x",
            None,
            0,
        )
        .unwrap_err();
    assert_eq!(e, RegisterError::OutOfOrder);
    assert!(l.is_registered(AOR, 0));
    // A new Call-ID (client restarted) may update regardless of CSeq.
    assert!(l
        .register(
            AOR,
            &register("c2", 1, "Contact: <sip:a@192.0.2.1>;expires=0\r\n"),
            "udp:x",
            None,
            0
        )
        .is_ok());
}

#[test]
fn endpoint_cap() {
    let mut l = Location::new(RegistrarConfig {
        max_bindings: 2,
        ..Default::default()
    });
    l.register(
        AOR,
        &register("c1", 1, "Contact: <sip:a@192.0.2.1>, <sip:b@192.0.2.1>\r\n"),
        "udp:x",
        None,
        0,
    )
    .unwrap();
    let e = l
        .register(
            AOR,
            &register("c2", 1, "Contact: <sip:c@192.0.2.1>\r\n"),
            "udp:x",
            None,
            0,
        )
        .unwrap_err();
    assert_eq!(
        (e.status(), e.reason()),
        (403, "Too Many Registered Endpoints")
    );
    assert_eq!(l.lookup(AOR, 0).len(), 2);
}

#[test]
fn outbound_instance_and_reg_id_identify_the_binding() {
    let mut l = loc();
    let c = "Supported: outbound, path\r\nPath: <sip:edge.example.com;lr;ob>\r\nContact: <sip:alice@192.0.2.1:40000;transport=tls;ob>;+sip.instance=\"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>\";reg-id=1\r\n";
    let r = l
        .register(
            AOR,
            &register("c1", 1, c),
            "tls:192.0.2.1:40000",
            Some(Flow(1)),
            0,
        )
        .unwrap();
    assert!(r.outbound);
    assert_eq!(r.path, ["<sip:edge.example.com;lr;ob>"]);
    assert!(r.contacts[0]
        .contains(";+sip.instance=\"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>\";reg-id=1"));
    // The same instance re-registers from a new address and flow: replaced, not added.
    let c2 = c.replace("192.0.2.1:40000", "192.0.2.9:41000");
    l.register(
        AOR,
        &register("c2", 1, &c2),
        "tls:192.0.2.9:41000",
        Some(Flow(2)),
        10,
    )
    .unwrap();
    let found = l.lookup(AOR, 11);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].1, Some(Flow(2)));
    assert_eq!(found[0].0.path, ["<sip:edge.example.com;lr;ob>"]);
    // Its connection closes: the binding goes (the server cannot reach it).
    let gone = l.flow_closed(Flow(2));
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].source, "tls:192.0.2.9:41000");
    assert!(l.lookup(AOR, 12).is_empty());
    assert!(l.flow_closed(Flow(2)).is_empty());
}

#[test]
fn contacts_must_be_sip_and_well_formed() {
    let mut l = loc();
    for bad in [
        "Contact: <mailto:alice@example.com>\r\n",
        "Contact: <sip:a@b>;expires=soon\r\n",
        "Contact: <sip:a@b>, *\r\n",
    ] {
        assert!(
            l.register(AOR, &register("c1", 1, bad), "udp:x", None, 0)
                .is_err(),
            "{bad}"
        );
    }
}

#[test]
fn load_and_expire_for_restart() {
    let mut l = loc();
    let r = l
        .register(
            AOR,
            &register("c1", 1, "Contact: <sip:a@192.0.2.1>;expires=100\r\n"),
            "udp:x",
            None,
            0,
        )
        .unwrap();
    let Change::Upsert(b) = r.changes[0].clone() else {
        panic!()
    };
    let mut fresh = loc();
    fresh.load(vec![b]);
    assert!(fresh.is_registered(AOR, 50));
    assert_eq!(
        fresh.expire(100),
        vec![(AOR.to_string(), "sip:a@192.0.2.1".to_string())]
    );
    assert!(fresh.is_empty());
}

#[test]
fn source_index_follows_every_change() {
    let mut l = loc();
    let c = "Contact: <sip:a@192.0.2.1:5060>\r\n";
    l.register(AOR, &register("c1", 1, c), "udp:192.0.2.1:5060", None, 0)
        .unwrap();
    l.register(
        "sip:bob@example.com",
        &register("c2", 1, "Contact: <sip:b@192.0.2.1:5060>\r\n"),
        "udp:192.0.2.1:5060",
        None,
        0,
    )
    .unwrap();
    assert!(l.bound_source("udp:192.0.2.1:5060"));
    assert!(!l.bound_source("udp:192.0.2.9:5060"));
    // Two bindings share the source: it stays known until both are gone.
    l.register(
        AOR,
        &register("c1", 2, "Contact: <sip:a@192.0.2.1:5060>;expires=0\r\n"),
        "udp:192.0.2.1:5060",
        None,
        0,
    )
    .unwrap();
    assert!(l.bound_source("udp:192.0.2.1:5060"));
    l.remove_aor("sip:bob@example.com");
    assert!(!l.bound_source("udp:192.0.2.1:5060"));
    // Expiry and removal keep it in step too.
    l.register(
        AOR,
        &register("c3", 1, "Contact: <sip:a@192.0.2.2>;expires=100\r\n"),
        "udp:192.0.2.2:5060",
        None,
        0,
    )
    .unwrap();
    assert!(l.bound_source("udp:192.0.2.2:5060"));
    l.expire(100);
    assert!(!l.bound_source("udp:192.0.2.2:5060"));
    l.register(
        AOR,
        &register("c4", 1, "Contact: <sip:a@192.0.2.3>\r\n"),
        "udp:192.0.2.3:5060",
        None,
        0,
    )
    .unwrap();
    l.remove(AOR, "sip:a@192.0.2.3");
    assert!(!l.bound_source("udp:192.0.2.3:5060"));
    assert!(l.is_empty());
}

#[test]
fn a_source_keeps_its_place_while_it_refreshes_and_loses_it_when_gone() {
    let mut l = loc();
    let a = "Contact: <sip:a@192.0.2.1:5060>\r\n";
    l.register(AOR, &register("c1", 1, a), "udp:192.0.2.1:5060", None, 0)
        .unwrap();
    let first = l.source_since("udp:192.0.2.1:5060").unwrap();
    assert_eq!(l.source_seq(), first);
    l.register(
        "sip:bob@example.com",
        &register("c2", 1, "Contact: <sip:b@192.0.2.2:5060>\r\n"),
        "udp:192.0.2.2:5060",
        None,
        0,
    )
    .unwrap();
    let second = l.source_since("udp:192.0.2.2:5060").unwrap();
    assert!(second > first);
    // A refresh of its only binding keeps the first source's place.
    l.register(AOR, &register("c1", 2, a), "udp:192.0.2.1:5060", None, 10)
        .unwrap();
    assert_eq!(l.source_since("udp:192.0.2.1:5060"), Some(first));
    // Gone and back: a new place, after everyone else's.
    l.remove_aor(AOR);
    assert_eq!(l.source_since("udp:192.0.2.1:5060"), None);
    l.register(AOR, &register("c3", 1, a), "udp:192.0.2.1:5060", None, 20)
        .unwrap();
    assert!(l.source_since("udp:192.0.2.1:5060").unwrap() > second);
}

#[test]
fn a_closed_connection_takes_every_binding_made_over_it_and_no_other() {
    let mut l = loc();
    let bob = "sip:bob@example.com";
    let c = |n: u32| format!("Contact: <sip:dev{n}@192.0.2.1:5061;transport=tls>\r\n");
    l.register(
        AOR,
        &register("a1", 1, &c(1)),
        "tls:192.0.2.1:40000",
        Some(Flow(7)),
        10,
    )
    .unwrap();
    l.register(
        bob,
        &register("b1", 1, &c(2)),
        "tls:192.0.2.1:40000",
        Some(Flow(7)),
        10,
    )
    .unwrap();
    l.register(
        AOR,
        &register("a2", 1, &c(3)),
        "tls:192.0.2.1:40001",
        Some(Flow(8)),
        10,
    )
    .unwrap();
    let gone = l.flow_closed(Flow(7));
    assert_eq!(gone.len(), 2, "{gone:?}");
    assert!(l.lookup(bob, 11).is_empty());
    let left = l.lookup(AOR, 11);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].1, Some(Flow(8)));
    // The same contact registered again over a new connection: the old
    // connection's close no longer touches it.
    l.register(
        bob,
        &register("b1", 2, &c(2)),
        "tls:192.0.2.1:40002",
        Some(Flow(9)),
        12,
    )
    .unwrap();
    assert!(l.flow_closed(Flow(7)).is_empty());
    assert_eq!(l.flow_closed(Flow(9)).len(), 1);
}

#[test]
fn expiry_takes_exactly_what_is_due_through_refreshes_and_removals() {
    let mut l = loc();
    let reg = |l: &mut Location,
               aor: &str,
               call: &str,
               cseq: u32,
               contact: &str,
               exp: u32,
               now: i64| {
        let m = format!(
            "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK{cseq}{call}\r\n\
             Max-Forwards: 70\r\nFrom: <{aor}>;tag=f\r\nTo: <{aor}>\r\nCall-ID: {call}\r\nCSeq: {cseq} REGISTER\r\n\
             Contact: <{contact}>;expires={exp}\r\nContent-Length: 0\r\n\r\n"
        );
        let m = parse_datagram(Bytes::from(m), &Limits::DEFAULT).unwrap();
        l.register(aor, &m, "udp:192.0.2.1:5060", None, now)
            .unwrap();
    };
    let (a, b, c) = (
        "sip:a@example.com",
        "sip:b@example.com",
        "sip:c@example.com",
    );
    reg(&mut l, a, "a", 1, "sip:a@192.0.2.1", 100, 0);
    reg(&mut l, b, "b", 1, "sip:b@192.0.2.1", 200, 0);
    reg(&mut l, c, "c", 1, "sip:c1@192.0.2.1", 150, 0);
    reg(&mut l, c, "c", 2, "sip:c2@192.0.2.1", 300, 0);
    assert!(l.expire(99).is_empty());
    // a refreshes before it is due: now 400.
    reg(&mut l, a, "a", 2, "sip:a@192.0.2.1", 400, 0);
    assert!(l.expire(149).is_empty(), "a's old expiry is gone");
    assert_eq!(
        l.expire(150),
        vec![(c.to_string(), "sip:c1@192.0.2.1".to_string())]
    );
    assert!(l.is_registered(c, 151), "c keeps its other binding");
    assert_eq!(
        l.expire(250),
        vec![(b.to_string(), "sip:b@192.0.2.1".to_string())]
    );
    // c's remaining binding is found by its own expiry after the first went.
    assert_eq!(
        l.expire(300),
        vec![(c.to_string(), "sip:c2@192.0.2.1".to_string())]
    );
    // A removed AOR leaves nothing behind to expire.
    l.remove_aor(a);
    assert!(l.expire(i64::MAX).is_empty());
    assert!(l.is_empty());
}

#[test]
fn a_connection_keeps_its_place_while_it_refreshes_and_loses_it_when_closed() {
    let mut l = loc();
    let c = "Contact: <sip:a@192.0.2.1:5061;transport=tls>\r\n";
    l.register(
        AOR,
        &register("c1", 1, c),
        "tls:192.0.2.1:40000",
        Some(Flow(1)),
        0,
    )
    .unwrap();
    let first = l.flow_since(Flow(1)).expect("a binding on flow 1");
    assert_eq!(first, l.source_seq(), "the latest to appear");
    // Another connection appears later in the same sequence.
    l.register(
        "sip:bob@example.com",
        &register("c2", 1, "Contact: <sip:b@192.0.2.2:5061;transport=tls>\r\n"),
        "tls:192.0.2.2:40001",
        Some(Flow(2)),
        0,
    )
    .unwrap();
    assert!(l.flow_since(Flow(2)).unwrap() > first);
    // A refresh over the same connection keeps its place.
    l.register(
        AOR,
        &register("c1", 2, c),
        "tls:192.0.2.1:40000",
        Some(Flow(1)),
        10,
    )
    .unwrap();
    assert_eq!(l.flow_since(Flow(1)), Some(first));
    // Closed, then registered again over a new connection: a new place.
    l.flow_closed(Flow(1));
    assert_eq!(l.flow_since(Flow(1)), None);
    l.register(
        AOR,
        &register("c1", 3, c),
        "tls:192.0.2.1:40002",
        Some(Flow(3)),
        20,
    )
    .unwrap();
    assert!(l.flow_since(Flow(3)).unwrap() > l.flow_since(Flow(2)).unwrap());
}
