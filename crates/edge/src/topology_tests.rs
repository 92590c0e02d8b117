//! Both directions of a call and a registration through the edge, checked
//! hop by hop: what the outside sees holds nothing of the inside, and what
//! comes back restores it exactly.

use super::*;
use bytes::Bytes;
use sip::headers::{RecordRoute, Route, Via};
use sip::Limits;

const INSIDE: [&str; 4] = ["fe1.corp.internal", "10.1.2.3", "127.0.0.11", "10.9.9.9"];

fn topo() -> Topology {
    Topology::new(
        Sealer::new(&[3u8; 32]),
        vec![(Protocol::Tls, Name::new("edge.example.test", 5061))],
        vec![Name::new("192.0.2.10", 5061)],
        Name::new("127.0.0.11", 5061),
    )
}

fn parse(b: impl Into<Bytes>) -> Message {
    sip::parse_datagram(b.into(), &Limits::DEFAULT).expect("parses")
}

fn text(b: &Bytes) -> &str {
    std::str::from_utf8(b).unwrap()
}

fn assert_hides_inside(b: &Bytes) {
    let t = text(b);
    for s in INSIDE {
        assert!(!t.contains(s), "{s} leaked in:\n{t}");
    }
    assert!(!t.contains(TRUST_HEADER), "trust header leaked:\n{t}");
}

fn alice() -> Sender {
    Sender {
        flow: FlowId(77),
        protocol: Protocol::Tls,
        remote: "198.51.100.7:40001".parse().unwrap(),
        account: None,
        device: None,
        partner: None,
    }
}

fn routes(m: &Message) -> Vec<String> {
    m.list_with_text::<Route>()
        .map(|r| r.unwrap().0.to_owned())
        .collect()
}

fn record_routes(m: &Message) -> Vec<String> {
    m.list_with_text::<RecordRoute>()
        .map(|r| r.unwrap().0.to_owned())
        .collect()
}

fn vias(m: &Message) -> Vec<String> {
    m.list_with_text::<Via>()
        .map(|r| r.unwrap().0.to_owned())
        .collect()
}

const FE_CALLER: &str = "<sip:ftAAAA@fe1.corp.internal:5061;transport=tls;lr>";
const FE_CALLEE: &str = "<sip:ftBBBB@fe1.corp.internal:5061;transport=tls;lr>";

#[test]
fn a_remote_caller_and_an_internal_callee() {
    let t = topo();
    // 1. Alice (outside) calls Bob through the edge, her outbound proxy.
    let invite = parse(
        "INVITE sip:bob@example.test SIP/2.0\r\n\
         Via: SIP/2.0/TLS 198.51.100.7:40001;branch=z9hG4bKa1;rport\r\n\
         Route: <sip:edge.example.test;transport=tls;lr>\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@example.test>;tag=a\r\nTo: <sip:bob@example.test>\r\n\
         Call-ID: c1\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@198.51.100.7:40001;transport=tls>\r\n\
         P-Parapet-Edge: partner;domain=\"forged.example\"\r\nContent-Length: 0\r\n\r\n",
    );
    let inward = t.inward_request(&invite, false, &alice()).unwrap();
    let m = parse(inward.bytes.clone());
    assert!(routes(&m).is_empty(), "our outbound-proxy entry is popped");
    let rr = record_routes(&m);
    assert_eq!(rr.len(), 2);
    assert_eq!(rr[0], "<sip:127.0.0.11:5061;transport=tls;lr>");
    assert!(rr[1].starts_with("<sip:r") && rr[1].contains("@edge.example.test:5061"));
    let stamps: Vec<_> = m.headers_named(TRUST_HEADER).map(|h| h.value).collect();
    assert_eq!(
        stamps,
        ["remote;source=\"198.51.100.7:40001\""],
        "forged mark replaced"
    );
    // A device's certificate is named to the pool by its SHA-256.
    let device = Sender {
        device: Some([0xab; 32]),
        ..alice()
    };
    let m2 = parse(t.inward_request(&invite, false, &device).unwrap().bytes);
    let stamps: Vec<_> = m2.headers_named(TRUST_HEADER).map(|h| h.value).collect();
    assert_eq!(
        stamps,
        [format!(
            "remote;source=\"198.51.100.7:40001\";device=\"{}\"",
            "ab".repeat(32)
        )]
    );
    let v = vias(&m);
    assert_eq!(v.len(), 2);
    assert!(v[0].starts_with("SIP/2.0/TLS 127.0.0.11:5061;branch=z9hG4bKv"));
    // The same request again (a CANCEL's Via, a retransmission) gets the
    // same branch.
    let again = t.inward_request(&invite, false, &alice()).unwrap();
    assert_eq!(vias(&parse(again.bytes))[0], v[0]);

    // 2. The front end relayed it; Bob's 200 comes back with the route set
    // the inside built and Bob's own Contact.
    let ok = format!(
        "SIP/2.0 200 OK\r\nVia: {}\r\nVia: {}\r\nRecord-Route: {FE_CALLEE}, {FE_CALLER}\r\n\
         Record-Route: {}, {}\r\nFrom: <sip:alice@example.test>;tag=a\r\n\
         To: <sip:bob@example.test>;tag=b\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n\
         Contact: \"Bob\" <sip:bob@10.1.2.3:5060;transport=udp>;+sip.instance=\"<urn:uuid:1>\"\r\n\
         Content-Length: 0\r\n\r\n",
        v[0], v[1], rr[0], rr[1]
    );
    let out = t.outward_response(&parse(ok)).unwrap();
    assert_eq!(out.flow, FlowId(77));
    assert_eq!(out.source, Some("198.51.100.7:40001".parse().unwrap()));
    assert_hides_inside(&out.bytes);
    let m = parse(out.bytes.clone());
    assert_eq!(
        vias(&m),
        ["SIP/2.0/TLS 198.51.100.7:40001;branch=z9hG4bKa1;rport"]
    );
    let outside_rr = record_routes(&m);
    assert_eq!(outside_rr.len(), 1);
    let contact = m.headers_of(HeaderKind::Contact).next().unwrap().value;
    assert!(contact.starts_with("\"Bob\" <sip:c"), "{contact}");
    assert!(
        contact.ends_with(";+sip.instance=\"<urn:uuid:1>\""),
        "{contact}"
    );
    let masked = contact[7..contact.find('>').unwrap()].to_owned();

    // 3. Alice hangs up: her route set is the one entry; the Request-URI is
    // Bob's masked Contact.
    let bye = format!(
        "BYE {masked} SIP/2.0\r\nVia: SIP/2.0/TLS 198.51.100.7:40001;branch=z9hG4bKa2\r\n\
         Route: {}\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.test>;tag=a\r\n\
         To: <sip:bob@example.test>;tag=b\r\nCall-ID: c1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
        outside_rr[0]
    );
    let inward = t.inward_request(&parse(bye), true, &alice()).unwrap();
    let m = parse(inward.bytes);
    assert_eq!(m.request_uri(), Some("sip:bob@10.1.2.3:5060;transport=udp"));
    assert_eq!(
        routes(&m),
        [FE_CALLER, FE_CALLEE],
        "the inside's route set, in order"
    );
    assert!(record_routes(&m).is_empty());

    // 4. Or Bob hangs up: the front end pops its entries and sends the rest
    // of Bob's route set (our two entries) to the edge.
    let bye = format!(
        "BYE sip:alice@198.51.100.7:40001;transport=tls SIP/2.0\r\n\
         Via: SIP/2.0/TLS fe1.corp.internal:5061;branch=z9hG4bKfe9\r\n\
         Via: SIP/2.0/UDP 10.1.2.3:5060;branch=z9hG4bKb9\r\n\
         Route: {}, {}\r\nMax-Forwards: 69\r\nFrom: <sip:bob@example.test>;tag=b\r\n\
         To: <sip:alice@example.test>;tag=a\r\nCall-ID: c1\r\nCSeq: 9 BYE\r\nContent-Length: 0\r\n\r\n",
        rr[0], rr[1]
    );
    let out = t
        .outward_request(&parse(bye), true, FlowId(5), None)
        .unwrap();
    assert_eq!(out.flow, FlowId(77));
    assert_hides_inside(&out.bytes);
    let m = parse(out.bytes);
    assert!(routes(&m).is_empty());
    let v = vias(&m);
    assert_eq!(v.len(), 1);
    // Alice's 200 comes back: the inside's Vias are restored.
    let ok = format!(
        "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: <sip:bob@example.test>;tag=b\r\n\
         To: <sip:alice@example.test>;tag=a\r\nCall-ID: c1\r\nCSeq: 9 BYE\r\nContent-Length: 0\r\n\r\n",
        v[0]
    );
    let back = t.inward_response(&parse(ok)).unwrap();
    assert_eq!(back.flow, FlowId(5));
    assert_eq!(
        vias(&parse(back.bytes)),
        [
            "SIP/2.0/TLS fe1.corp.internal:5061;branch=z9hG4bKfe9",
            "SIP/2.0/UDP 10.1.2.3:5060;branch=z9hG4bKb9"
        ]
    );
}

#[test]
fn an_internal_caller_reaches_a_remote_user_through_the_path_of_her_registration() {
    let t = topo();
    let register = parse(
        "REGISTER sip:example.test SIP/2.0\r\nVia: SIP/2.0/TLS 198.51.100.7:40001;branch=z9hG4bKr1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@example.test>;tag=r\r\nTo: <sip:alice@example.test>\r\n\
         Call-ID: r1\r\nCSeq: 1 REGISTER\r\nContact: <sip:alice@198.51.100.7:40001;transport=tls>\r\n\
         Content-Length: 0\r\n\r\n",
    );
    let inward = t.inward_request(&register, false, &alice()).unwrap();
    let m = parse(inward.bytes);
    let path: Vec<String> = m
        .list_with_text::<Path>()
        .map(|p| p.unwrap().0.to_owned())
        .collect();
    assert_eq!(path.len(), 1);
    assert!(path[0].contains("@127.0.0.11:5061;transport=tls;lr;ob>"));
    let v = vias(&m);
    // The registrar's 200 echoes Path and lists the user's own Contact.
    let ok = format!(
        "SIP/2.0 200 OK\r\nVia: {}\r\nVia: {}\r\nFrom: <sip:alice@example.test>;tag=r\r\n\
         To: <sip:alice@example.test>;tag=s\r\nCall-ID: r1\r\nCSeq: 1 REGISTER\r\n\
         Contact: <sip:alice@198.51.100.7:40001;transport=tls>;expires=600\r\nPath: {}\r\n\
         Content-Length: 0\r\n\r\n",
        v[0], v[1], path[0]
    );
    let out = t.outward_response(&parse(ok)).unwrap();
    assert_hides_inside(&out.bytes);
    let m = parse(out.bytes);
    assert_eq!(
        m.headers_of(HeaderKind::Contact).next().unwrap().value,
        "<sip:alice@198.51.100.7:40001;transport=tls>;expires=600",
        "a registration's own Contact is not masked"
    );

    // Bob calls Alice: the front end routes by her Path.
    let invite = format!(
        "INVITE sip:alice@198.51.100.7:40001;transport=tls SIP/2.0\r\n\
         Via: SIP/2.0/TLS fe1.corp.internal:5061;branch=z9hG4bKfe1\r\n\
         Via: SIP/2.0/UDP 10.1.2.3:5060;branch=z9hG4bKb1\r\nRoute: {}\r\n\
         Record-Route: {FE_CALLEE}, {FE_CALLER}\r\nMax-Forwards: 69\r\n\
         From: <sip:bob@example.test>;tag=b\r\nTo: <sip:alice@example.test>\r\nCall-ID: c2\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:bob@10.1.2.3:5060>\r\nContent-Length: 0\r\n\r\n",
        path[0]
    );
    let out = t
        .outward_request(&parse(invite), false, FlowId(5), None)
        .unwrap();
    assert_eq!(out.flow, FlowId(77));
    assert_hides_inside(&out.bytes);
    let m = parse(out.bytes);
    let v = vias(&m);
    // The front end's CANCEL (its own Via only, RFC 3261 §9.1) gets the
    // INVITE's branch, so Alice matches it to the INVITE.
    let cancel = format!(
        "CANCEL sip:alice@198.51.100.7:40001;transport=tls SIP/2.0\r\n\
         Via: SIP/2.0/TLS fe1.corp.internal:5061;branch=z9hG4bKfe1\r\nRoute: {}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:bob@example.test>;tag=b\r\nTo: <sip:alice@example.test>\r\n\
         Call-ID: c2\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n",
        path[0]
    );
    let c = t
        .outward_request(&parse(cancel), false, FlowId(5), None)
        .unwrap();
    let branch = |via: &str| {
        via.split(";branch=")
            .nth(1)
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned()
    };
    assert_eq!(branch(&vias(&parse(c.bytes))[0]), branch(&v[0]));
    let rr = record_routes(&m);
    assert_eq!(rr.len(), 1);
    let contact = m.headers_of(HeaderKind::Contact).next().unwrap().value;
    let bob_masked = contact[1..contact.find('>').unwrap()].to_owned();
    // Alice answers; her 200 carries the route set as she received it.
    let ok = format!(
        "SIP/2.0 200 OK\r\nVia: {}\r\nRecord-Route: {}\r\nFrom: <sip:bob@example.test>;tag=b\r\n\
         To: <sip:alice@example.test>;tag=a\r\nCall-ID: c2\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:alice@198.51.100.7:40001;transport=tls>\r\nContent-Length: 0\r\n\r\n",
        v[0], rr[0]
    );
    let back = t.inward_response(&parse(ok)).unwrap();
    assert_eq!(back.flow, FlowId(5));
    let m = parse(back.bytes);
    let inside_rr = record_routes(&m);
    assert_eq!(inside_rr.len(), 4);
    assert_eq!(inside_rr[1], "<sip:127.0.0.11:5061;transport=tls;lr>");
    assert_eq!(inside_rr[2..], [FE_CALLEE, FE_CALLER]);
    assert_eq!(vias(&m).len(), 2);

    // Alice hangs up: the inside's entries come back as her Route.
    let bye = format!(
        "BYE {bob_masked} SIP/2.0\r\nVia: SIP/2.0/TLS 198.51.100.7:40001;branch=z9hG4bKa3\r\n\
         Route: {}\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.test>;tag=a\r\n\
         To: <sip:bob@example.test>;tag=b\r\nCall-ID: c2\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
        rr[0]
    );
    let inward = parse(t.inward_request(&parse(bye), true, &alice()).unwrap().bytes);
    assert_eq!(routes(&inward), [FE_CALLEE, FE_CALLER]);
    assert_eq!(inward.request_uri(), Some("sip:bob@10.1.2.3:5060"));

    // Bob hangs up through our two entries: out on Alice's connection.
    let bye = format!(
        "BYE sip:alice@198.51.100.7:40001;transport=tls SIP/2.0\r\n\
         Via: SIP/2.0/TLS fe1.corp.internal:5061;branch=z9hG4bKfe2\r\n\
         Route: {}, {}\r\nMax-Forwards: 69\r\nFrom: <sip:bob@example.test>;tag=b\r\n\
         To: <sip:alice@example.test>;tag=a\r\nCall-ID: c2\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
        inside_rr[1], inside_rr[0]
    );
    let out = t
        .outward_request(&parse(bye), true, FlowId(5), None)
        .unwrap();
    assert_eq!(out.flow, FlowId(77));
}

fn bye_with_route(route: &str) -> Message {
    parse(format!(
        "BYE sip:bob@example.test SIP/2.0\r\nVia: SIP/2.0/TLS 198.51.100.7:40001;branch=z9hG4bKx\r\n\
         Route: {route}\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.test>;tag=a\r\n\
         To: <sip:bob@example.test>;tag=b\r\nCall-ID: c9\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n"
    ))
}

#[test]
fn a_route_token_changed_by_one_bit_is_refused() {
    let t = topo();
    let entry = t
        .external_route(FlowId(77), Protocol::Tls, &[FE_CALLER], None)
        .unwrap();
    assert!(t
        .inward_request(&bye_with_route(&entry), true, &alice())
        .is_ok());
    let user_start = entry.find(":r").unwrap() + 2;
    let user_end = entry.find('@').unwrap();
    let mut changed = 0;
    for i in user_start..user_end {
        let mut b = entry.clone().into_bytes();
        // Swap to another base64url character: a one-bit change of the
        // token's text.
        b[i] ^= if b[i] == b'-' || b[i] == b'_' {
            0
        } else {
            0x01
        };
        let Ok(s) = String::from_utf8(b) else {
            continue;
        };
        if s == entry
            || !s[user_start..user_end]
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        {
            continue;
        }
        changed += 1;
        let r = t.inward_request(&bye_with_route(&s), true, &alice());
        assert_eq!(
            r.err(),
            Some(Refused(403, "Forbidden (Invalid Route Token)")),
            "position {i}"
        );
    }
    assert!(changed > 20);
}

#[test]
fn the_outside_cannot_add_hops_after_ours_or_route_elsewhere() {
    let t = topo();
    let entry = t
        .external_route(FlowId(77), Protocol::Tls, &[], None)
        .unwrap();
    for route in [
        format!("{entry}, <sip:ftAAAA@fe1.corp.internal:5061;lr>"),
        "<sip:fe1.corp.internal;lr>".to_owned(),
        "<sip:edge.example.test;lr>, <sip:127.0.0.11:5061;lr>".to_owned(),
    ] {
        assert_eq!(
            t.inward_request(&bye_with_route(&route), true, &alice())
                .err(),
            Some(Refused(403, "Relaying Denied")),
            "{route}"
        );
    }
    // A masked Contact that is not ours is not a place to send to.
    let bogus = parse(
        "BYE sip:cAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA@edge.example.test SIP/2.0\r\n\
         Via: SIP/2.0/TLS 198.51.100.7:40001;branch=z9hG4bKx\r\nMax-Forwards: 70\r\n\
         From: <sip:alice@example.test>;tag=a\r\nTo: <sip:bob@example.test>;tag=b\r\n\
         Call-ID: c9\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(
        t.inward_request(&bogus, true, &alice()).err().map(|r| r.0),
        Some(404)
    );
}

#[test]
fn a_route_through_a_partners_connection_names_the_partner_and_can_be_redirected() {
    let t = topo();
    // A partner's server opened a dialog: our entry names its connection
    // and its domain.
    let partner = Sender {
        partner: Some(("partner.test".to_owned(), Vec::new())),
        ..alice()
    };
    let invite = parse(
        "INVITE sip:bob@example.test SIP/2.0\r\nVia: SIP/2.0/TLS 198.51.100.7:5061;branch=z9hG4bKp1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:carol@partner.test>;tag=p\r\nTo: <sip:bob@example.test>\r\n\
         Call-ID: pc\r\nCSeq: 1 INVITE\r\nContact: <sip:carol@198.51.100.7:5061;transport=tls>\r\n\
         Content-Length: 0\r\n\r\n",
    );
    let inward = parse(t.inward_request(&invite, false, &partner).unwrap().bytes);
    let rr = record_routes(&inward);
    let bye = |route: String| {
        parse(format!(
            "BYE sip:carol@198.51.100.7:5061;transport=tls SIP/2.0\r\n\
             Via: SIP/2.0/TLS fe1.corp.internal:5061;branch=z9hG4bKfe9\r\n\
             Route: {route}\r\nMax-Forwards: 69\r\nFrom: <sip:bob@example.test>;tag=b\r\n\
             To: <sip:carol@partner.test>;tag=p\r\nCall-ID: pc\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
        ))
    };
    let bye = bye(format!("{}, {}", rr[0], rr[1]));
    let out = t.outward_request(&bye, true, FlowId(5), None).unwrap();
    assert_eq!(
        (out.flow, out.partner.as_deref()),
        (FlowId(77), Some("partner.test"))
    );
    // That connection is gone: another to the partner takes the request
    // (a default hop does not override a token; a forced one does).
    let hop = |forced| Hop {
        flow: FlowId(90),
        protocol: Protocol::Tls,
        partner: Some("partner.test".to_owned()),
        forced,
    };
    let out = t
        .outward_request(&bye, true, FlowId(5), Some(hop(false)))
        .unwrap();
    assert_eq!(out.flow, FlowId(77));
    let out = t
        .outward_request(&bye, true, FlowId(5), Some(hop(true)))
        .unwrap();
    assert_eq!(out.flow, FlowId(90));
    assert_hides_inside(&out.bytes);
    // A remote user's route names no partner.
    let entry = t
        .external_route(FlowId(77), Protocol::Tls, &[], None)
        .unwrap();
    let internal = t.internal_route();
    let out = t
        .outward_request(
            &bye_with_route(&format!("{internal}, {entry}")),
            true,
            FlowId(5),
            None,
        )
        .unwrap();
    assert_eq!(out.partner, None);
}

#[test]
fn what_the_outside_may_send_still_fits_the_pool_once_the_edge_adds_its_part() {
    let t = topo();
    let request = |vias: usize| {
        let mut m = String::from("INVITE sip:bob@example.test SIP/2.0\r\n");
        for i in 0..vias {
            m.push_str(&format!(
                "Via: SIP/2.0/TLS 198.51.100.7:{};branch=z9hG4bKv{i}\r\n",
                1000 + i
            ));
        }
        m.push_str(
            "Max-Forwards: 70\r\nFrom: <sip:alice@example.test>;tag=a\r\nTo: <sip:bob@example.test>\r\n\
             Call-ID: many-vias\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@198.51.100.7:1000;transport=tls>\r\n\
             Content-Length: 0\r\n\r\n",
        );
        Bytes::from(m)
    };
    let outside = outside_limits();
    // As many Vias as the pool takes: refused at the edge's door (relayed
    // with the edge's own, the front end would refuse it and close the
    // link every user shares).
    assert!(sip::parse_datagram(request(64), &outside).is_err());
    assert!(sip::parse_datagram(request(64), &Limits::DEFAULT).is_ok());
    // One fewer: relayed, and the pool parses what goes in.
    let m = sip::parse_datagram(request(63), &outside).unwrap();
    let inward = t.inward_request(&m, false, &alice()).unwrap();
    assert!(fits_pool(&inward.bytes));
    assert_eq!(parse(inward.bytes).list::<Via>().count(), 64);
    // The other way: an inside client's largest request, with the front
    // end's Via, is still taken from the pool.
    let mut from_inside = String::from_utf8(request(64).to_vec()).unwrap();
    from_inside = from_inside.replacen(
        "Via:",
        "Via: SIP/2.0/TLS fe1.corp.internal:5061;branch=z9hG4bKfe0\r\nVia:",
        1,
    );
    assert!(sip::parse_datagram(Bytes::from(from_inside.clone()), &Limits::DEFAULT).is_err());
    assert!(sip::parse_datagram(Bytes::from(from_inside), &inside_limits()).is_ok());
}

#[test]
fn an_answer_from_outside_with_vias_below_ours_is_dropped() {
    let t = topo();
    let bye = parse(
        "BYE sip:alice@198.51.100.7:40001;transport=tls SIP/2.0\r\n\
         Via: SIP/2.0/TLS fe1.corp.internal:5061;branch=z9hG4bKfe7\r\nMax-Forwards: 69\r\n\
         From: <sip:bob@example.test>;tag=b\r\nTo: <sip:alice@example.test>;tag=a\r\n\
         Call-ID: c7\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
    );
    let out = t
        .outward_request(
            &bye,
            true,
            FlowId(5),
            Some(Hop {
                flow: FlowId(77),
                protocol: Protocol::Tls,
                partner: None,
                forced: false,
            }),
        )
        .unwrap();
    let ours = vias(&parse(out.bytes))[0].clone();
    let answer = |extra: &str| {
        parse(format!(
            "SIP/2.0 200 OK\r\nVia: {ours}\r\n{extra}From: <sip:bob@example.test>;tag=b\r\n\
             To: <sip:alice@example.test>;tag=a\r\nCall-ID: c7\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
        ))
    };
    assert!(t.inward_response(&answer("")).is_ok());
    assert!(t
        .inward_response(&answer("Via: SIP/2.0/TLS 203.0.113.9;branch=z9hG4bKx\r\n"))
        .is_err());
}

#[test]
fn responses_that_are_not_ours_are_dropped() {
    let t = topo();
    let forged = parse(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS 127.0.0.11:5061;branch=z9hG4bKvAAAA\r\n\
         From: <sip:a@example.test>;tag=a\r\nTo: <sip:b@example.test>;tag=b\r\nCall-ID: x\r\n\
         CSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(t.outward_response(&forged).is_err());
    assert!(t.inward_response(&forged).is_err());
}
