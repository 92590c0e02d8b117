//! RFC 4475 and RFC 5118 torture messages: each gets exactly the verdict and the
//! reaction its INDEX.tsv requires, when handled the way a registrar/UAS built on
//! this crate handles a UDP datagram (parse → RequestFields → §8.2 admission).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use bytes::Bytes;
use sip::admission::{self, Capabilities, Rejection};
use sip::build::error_response;
use sip::headers::{Contact, To};
use sip::{parse_datagram, HeaderKind, Limits, Method, RequestFields, Uri};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Reaction {
    /// Nothing is sent back.
    Drop,
    /// A response with this status; the response bytes are kept for inspection.
    Respond(u16, String),
}

const METHODS: &[Method<'static>] = &[
    Method::Register,
    Method::Options,
    Method::Message,
    Method::Invite,
    Method::Ack,
    Method::Bye,
    Method::Cancel,
];

fn caps() -> Capabilities<'static> {
    Capabilities {
        methods: METHODS,
        schemes: &["sip", "sips"],
        supported: &["path", "outbound"],
        check_proxy_require: true,
        accept: &[
            ("application", "sdp"),
            ("text", "plain"),
            ("message", "cpim"),
        ],
    }
}

fn respond(raw: &[u8], status: u16, reason: &str, extra: &[(&str, String)]) -> Reaction {
    match error_response(raw, status, reason, "srv") {
        Some(r) => {
            let mut text = String::from_utf8_lossy(&r).into_owned();
            for (n, v) in extra {
                let at = text.len() - "Content-Length: 0\r\n\r\n".len();
                text.insert_str(at, &format!("{n}: {v}\r\n"));
            }
            Reaction::Respond(status, text)
        }
        None => Reaction::Drop,
    }
}

/// The reaction of a registrar that requires digest authentication and also
/// answers OPTIONS/MESSAGE/INVITE as a UAS.
fn react(raw: &[u8]) -> Reaction {
    let msg = match parse_datagram(Bytes::copy_from_slice(raw), &Limits::DEFAULT) {
        Ok(m) => m,
        Err(e) => return respond(raw, e.status(), &e.reason(), &[]),
    };
    if msg.is_response() {
        return Reaction::Drop;
    }
    let raw = msg.as_bytes().clone();
    let fields = match RequestFields::extract(&msg) {
        Ok(f) => f,
        Err(e) => return respond(&raw, e.status(), &e.reason(), &[]),
    };
    if let Err(rej) = admission::check(&msg, &caps()) {
        return respond(&raw, rej.status(), &rej.reason(), &rej.headers());
    }
    match fields.method {
        Method::Invite => {
            if let Err(rej) = admission::check_accept(&msg, &[("application", "sdp")]) {
                return respond(&raw, rej.status(), &rej.reason(), &[]);
            }
            respond(&raw, 200, "OK", &[])
        }
        Method::Register => {
            // A registrar's To must be a SIP/SIPS address of record.
            let to_ok = msg
                .typed::<To>()
                .ok()
                .flatten()
                .is_some_and(|t| matches!(t.uri, Uri::Sip(_)));
            if !to_ok {
                return respond(&raw, 400, "Invalid AOR in To", &[]);
            }
            if msg.list::<Contact>().any(|c| c.is_err()) {
                let e = sip::ParseError::BadHeader(HeaderKind::Contact);
                return respond(&raw, e.status(), &e.reason(), &[]);
            }
            // No valid credentials in any torture message: challenge.
            respond(&raw, 401, "Unauthorized", &[])
        }
        Method::Ack => Reaction::Drop,
        _ => respond(&raw, 200, "OK", &[]),
    }
}

fn status(r: &Reaction) -> Option<u16> {
    match r {
        Reaction::Drop => None,
        Reaction::Respond(c, _) => Some(*c),
    }
}

fn load(dir: &str, name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/{dir}/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Expected outcomes per RFC 4475 message: the acceptable statuses (`None` = no
/// response at all).
fn expected_4475(file: &str) -> &'static [Option<u16>] {
    match file {
        "wsinv.dat" | "esc01.dat" | "lwsdisp.dat" | "longreq.dat" | "semiuri.dat"
        | "transports.dat" | "zeromf.dat" | "inv2543.dat" => &[Some(200)],
        "escnull.dat" | "dblreq.dat" | "cparam01.dat" | "cparam02.dat" | "regescrt.dat"
        | "regaut01.dat" => &[Some(401)],
        "intmeth.dat" | "esc02.dat" => &[Some(501), Some(405)],
        "mpart01.dat" => &[Some(200), Some(415)],
        "unreason.dat" | "noreason.dat" | "scalarlg.dat" | "bigcode.dat" | "bcast.dat" => &[None],
        "badinv01.dat" | "clerr.dat" | "ncl.dat" | "scalar02.dat" | "quotbal.dat"
        | "ltgtruri.dat" | "lwsruri.dat" | "baddn.dat" | "mismatch01.dat" | "insuf.dat"
        | "multi01.dat" | "mcl01.dat" | "unksm2.dat" => &[Some(400)],
        "lwsstart.dat" | "trws.dat" | "escruri.dat" | "badaspec.dat" | "badbranch.dat" => {
            &[Some(400), Some(200)]
        }
        "baddate.dat" => &[Some(200), Some(400)],
        "regbadct.dat" => &[Some(400), Some(401)],
        "badvers.dat" => &[Some(505)],
        "mismatch02.dat" => &[Some(501), Some(400)],
        "unkscm.dat" => &[Some(416)],
        "novelsc.dat" => &[Some(416), Some(404)],
        "bext01.dat" => &[Some(420)],
        "invut.dat" => &[Some(415)],
        "sdp01.dat" => &[Some(406)],
        "test.dat" => &[Some(400), None],
        other => panic!("no expectation for {other}"),
    }
}

#[test]
fn rfc4475_every_message_gets_its_reaction() {
    let index = String::from_utf8(load("rfc4475", "INDEX.tsv")).unwrap();
    let mut n = 0;
    for line in index.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (file, category) = (cols[0], cols[4]);
        let r = react(&load("rfc4475", file));
        let allowed = expected_4475(file);
        assert!(
            allowed.contains(&status(&r)),
            "{file}: got {r:?}, want one of {allowed:?}"
        );
        if matches!(category, "valid" | "backward-compat") {
            assert_ne!(
                status(&r),
                Some(400),
                "{file}: a valid message must never get 400"
            );
        }
        n += 1;
    }
    assert_eq!(n, 50);
}

#[test]
fn rfc4475_specific_reactions() {
    // bext01: 420 with Unsupported listing every unknown tag.
    let Reaction::Respond(420, text) = react(&load("rfc4475", "bext01.dat")) else {
        panic!()
    };
    for tag in [
        "nothingSupportsThis",
        "nothingSupportsThisEither",
        "noProxiesSupportThis",
        "norDoAnyProxiesSupportThis",
    ] {
        assert!(text.contains(tag), "{text}");
    }
    assert!(text.contains("\r\nUnsupported: "));
    // invut: 415 carries Accept.
    let Reaction::Respond(415, text) = react(&load("rfc4475", "invut.dat")) else {
        panic!()
    };
    assert!(text.contains("\r\nAccept: application/sdp"));
    // badvers: 505 whose reason says so.
    let Reaction::Respond(505, text) = react(&load("rfc4475", "badvers.dat")) else {
        panic!()
    };
    assert!(text.starts_with("SIP/2.0 505 Version Not Supported\r\n"));
}

#[test]
fn rfc4475_parse_details() {
    let l = Limits::DEFAULT;
    let m = |f: &str| parse_datagram(Bytes::from(load("rfc4475", f)), &l).unwrap();
    // dblreq: only the REGISTER; the trailing INVITE is discarded.
    let d = m("dblreq.dat");
    assert_eq!(d.method(), Some(Method::Register));
    assert!(d.body().is_empty());
    assert!(!std::str::from_utf8(d.as_bytes())
        .unwrap()
        .contains("INVITE"));
    // esc02: the method is not REGISTER, and there are exactly two Contacts.
    let e = m("esc02.dat");
    assert_eq!(e.method(), Some(Method::Extension("RE%47IST%45R")));
    assert_eq!(e.list::<Contact>().count(), 2);
    // cparam01: unknownparam is a contact param; cparam02: a URI param.
    let c1 = m("cparam01.dat");
    let c = c1.list::<Contact>().next().unwrap().unwrap();
    let na = c.name_addr().unwrap();
    assert!(na.params.contains("unknownparam"));
    assert!(!na.uri.as_sip().unwrap().params.contains("unknownparam"));
    let c2 = m("cparam02.dat");
    let c = c2.list::<Contact>().next().unwrap().unwrap();
    let na = c.name_addr().unwrap();
    assert!(na.uri.as_sip().unwrap().params.contains("unknownparam"));
    // regescrt: the binding keeps its escaped ?Route= header.
    let r = m("regescrt.dat");
    let c = r.list::<Contact>().next().unwrap().unwrap();
    assert!(c
        .name_addr()
        .unwrap()
        .uri
        .as_sip()
        .unwrap()
        .headers
        .unwrap()
        .starts_with("Route=%3C"));
    // Every valid message serializes back byte-exact.
    for f in [
        "wsinv.dat",
        "intmeth.dat",
        "esc01.dat",
        "longreq.dat",
        "mpart01.dat",
        "inv2543.dat",
    ] {
        assert_eq!(m(f).as_bytes().as_ref(), &load("rfc4475", f)[..], "{f}");
    }
}

#[test]
fn rfc4475_responses_are_never_answered() {
    for f in [
        "unreason.dat",
        "noreason.dat",
        "scalarlg.dat",
        "bigcode.dat",
        "bcast.dat",
    ] {
        assert_eq!(react(&load("rfc4475", f)), Reaction::Drop, "{f}");
    }
}

#[test]
fn rfc5118_ipv6_messages() {
    let expect: &[(&str, &[Option<u16>])] = &[
        ("ipv6-good", &[Some(401)]),
        ("ipv6-bad", &[Some(400)]),
        ("port-ambiguous", &[Some(401)]),
        ("port-unambiguous", &[Some(401)]),
        ("via-received-param-with-delim", &[Some(200)]),
        ("via-received-param-no-delim", &[Some(200)]),
        ("ipv6-in-sdp", &[Some(200)]),
        ("mult-ip-in-header", &[Some(200)]),
        ("mult-ip-in-sdp", &[Some(200)]),
        ("ipv4-mapped-ipv6", &[Some(200)]),
        ("ipv6-bug-abnf-3-colons", &[Some(400)]),
        ("ipv6-correct-abnf-2-colons", &[Some(200)]),
    ];
    for (f, allowed) in expect {
        let r = react(&load("rfc5118", f));
        assert!(allowed.contains(&status(&r)), "{f}: got {r:?}");
    }
    // §4.3 / §4.4: the port is never read from inside the brackets.
    let l = Limits::DEFAULT;
    let amb = parse_datagram(Bytes::from(load("rfc5118", "port-ambiguous")), &l).unwrap();
    let Uri::Sip(u) = Uri::parse(amb.request_uri().unwrap()).unwrap() else {
        panic!()
    };
    assert_eq!(
        (u.host.to_string(), u.port),
        ("[2001:db8::10:5070]".to_string(), None)
    );
    let un = parse_datagram(Bytes::from(load("rfc5118", "port-unambiguous")), &l).unwrap();
    let Uri::Sip(u) = Uri::parse(un.request_uri().unwrap()).unwrap() else {
        panic!()
    };
    assert_eq!(
        (u.host.to_string(), u.port),
        ("[2001:db8::10]".to_string(), Some(5070))
    );
}

#[test]
fn rejection_reasons_are_precise() {
    let r = Rejection::BadExtension {
        unsupported: "x".into(),
    };
    assert_eq!((r.status(), r.reason().as_ref()), (420, "Bad Extension"));
}
