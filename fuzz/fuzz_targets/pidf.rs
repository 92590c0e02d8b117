//! PIDF/RPID documents as a client would PUBLISH them. Invariants: nothing
//! panics or runs away (the parser bounds size, depth, elements, text); what
//! parses is written out and parses again to the same document, with the same
//! availability; every watcher's view of it is a document that parses; and a
//! resource-list body (RFC 4662) carrying it, or any text, keeps its framing
//! (the boundary occurs only where the writer put it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use presence::rlmi::{multipart, Resource};
use presence::{view, Availability, Presence, Relationship};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    if let Ok(p) = Presence::parse(data) {
        let out = p.to_xml();
        let again = Presence::parse(out.as_bytes()).expect("our own output parses");
        assert_eq!(again, p, "round trip");
        assert_eq!(Availability::of(&again), Availability::of(&p));
        for level in [
            Relationship::Blocked,
            Relationship::External,
            Relationship::Colleague,
            Relationship::Workgroup,
            Relationship::Personal,
        ] {
            let v = view(&p, level).to_xml();
            Presence::parse(v.as_bytes()).expect("a watcher's view parses");
        }
    }
    let (ct, body) = multipart(
        "sip:a+contacts@example.com",
        1,
        "example.com",
        &[
            Resource {
                uri: text.clone(),
                pidf: text.clone(),
            },
            Resource {
                uri: "sip:b@example.com".into(),
                pidf: text,
            },
        ],
    );
    let boundary = ct
        .rsplit("boundary=\"")
        .next()
        .map(|b| b.trim_end_matches('"'))
        .expect("a boundary");
    assert_eq!(body.matches(&format!("--{boundary}\r\n")).count(), 3);
    assert_eq!(body.matches(&format!("--{boundary}--")).count(), 1);
});
