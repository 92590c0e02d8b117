//! PIDF/RPID parsing, writing, refusals and the availability mapping.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use presence::{aggregate, Availability, Basic, Presence};

/// RFC 3863 §3.4's example.
const RFC3863: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf"
    xmlns:im="urn:ietf:params:xml:ns:pidf:im"
    xmlns:myex="http://id.example.com/presence/"
    entity="pres:someone@example.com">
  <tuple id="bs35r9">
    <status>
      <basic>open</basic>
      <im:im>busy</im:im>
      <myex:location>home</myex:location>
    </status>
    <contact priority="0.8">im:someone@mobilecarrier.net</contact>
    <note xml:lang="en">Don't Disturb Me!</note>
    <note xml:lang="fr">Ne derangez pas, s'il vous plait</note>
    <timestamp>2001-10-27T16:49:29Z</timestamp>
  </tuple>
  <tuple id="eg92n8">
    <status>
      <basic>open</basic>
    </status>
    <contact priority="1.0">mailto:someone@example.com</contact>
  </tuple>
  <note>I'll be in Tokyo next week</note>
</presence>"#;

/// After RFC 4480's examples: a person with activities, mood and place type.
const RPID: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf"
     xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
     xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid"
     xmlns:lt="urn:ietf:params:xml:ns:location-type"
     entity="pres:someone@example.com">
  <tuple id="bs35r9">
    <status><basic>open</basic></status>
    <contact priority="0.8">sip:someone@example.com</contact>
  </tuple>
  <dm:person id="p1">
    <rpid:activities from="2005-05-30T12:00:00+05:00" until="2005-05-30T17:00:00+05:00">
      <rpid:on-the-phone/>
      <rpid:busy/>
    </rpid:activities>
    <rpid:mood><rpid:sleepy/></rpid:mood>
    <rpid:place-type><lt:residence/><rpid:other>home office</rpid:other></rpid:place-type>
    <dm:note>Calling the boss &amp; &#x263A;</dm:note>
  </dm:person>
</presence>"#;

#[test]
fn rfc3863_example() {
    let p = Presence::parse(RFC3863.as_bytes()).unwrap();
    assert_eq!(p.entity, "pres:someone@example.com");
    assert_eq!(p.tuples.len(), 2);
    assert_eq!(p.tuples[0].id, "bs35r9");
    assert_eq!(p.tuples[0].basic, Some(Basic::Open));
    assert_eq!(
        p.tuples[0].contact.as_deref(),
        Some("im:someone@mobilecarrier.net")
    );
    assert_eq!(
        p.tuples[0].notes,
        vec!["Don't Disturb Me!", "Ne derangez pas, s'il vous plait"]
    );
    assert_eq!(
        p.tuples[0].timestamp.as_deref(),
        Some("2001-10-27T16:49:29Z")
    );
    assert_eq!(p.notes, vec!["I'll be in Tokyo next week"]);
    assert_eq!(Availability::of(&p), Availability::Available);
}

#[test]
fn rpid_person_activities_mood_place_and_references() {
    let p = Presence::parse(RPID.as_bytes()).unwrap();
    let person = p.person.clone().unwrap();
    assert_eq!(person.activities, vec!["on-the-phone", "busy"]);
    assert_eq!(person.moods, vec!["sleepy"]);
    assert_eq!(
        person.place_type.as_deref(),
        Some("other:home office"),
        "the location-type element is another namespace"
    );
    assert_eq!(person.notes, vec!["Calling the boss & \u{263A}"]);
    assert_eq!(Availability::of(&p), Availability::Busy);
    // Written out and read back: the same document.
    let again = Presence::parse(p.to_xml().as_bytes()).unwrap();
    assert_eq!(again, p);
}

#[test]
fn every_availability_round_trips_through_pidf() {
    for a in [
        Availability::Offline,
        Availability::Away,
        Availability::BeRightBack,
        Availability::Available,
        Availability::Busy,
        Availability::DoNotDisturb,
    ] {
        let doc = a
            .to_presence("sip:alice@example.com", Some("<at lunch> & back soon"))
            .to_xml();
        let p = Presence::parse(doc.as_bytes()).unwrap();
        assert_eq!(Availability::of(&p), a, "{doc}");
        assert_eq!(p.person.unwrap().notes, vec!["<at lunch> & back soon"]);
    }
    assert_eq!(
        aggregate([
            Availability::Away,
            Availability::Busy,
            Availability::Available
        ]),
        Availability::Busy
    );
    assert_eq!(
        aggregate([Availability::Away, Availability::BeRightBack]),
        Availability::BeRightBack
    );
    assert_eq!(aggregate([]), Availability::Offline);
}

fn refused(doc: &str, want: &str) {
    let e = Presence::parse(doc.as_bytes()).unwrap_err().0;
    assert!(e.contains(want), "{want:?} not in {e:?} for {doc}");
}

const HEAD: &str = r#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@example.com">"#;

#[test]
fn refusals_name_the_rule() {
    // No DTD, so no entity expansion (billion laughs, external entities).
    refused(
        r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">]><presence/>"#,
        "DOCTYPE",
    );
    refused(
        &format!("{HEAD}<note>&lol;</note></presence>"),
        "unknown entity",
    );
    refused(
        &format!("{HEAD}<?php x?></presence>"),
        "processing instructions",
    );
    refused(
        "<presence entity=\"sip:a@example.com\"/>",
        "not PIDF's presence",
    );
    refused(
        r#"<presence xmlns="urn:ietf:params:xml:ns:pidf"/>"#,
        "no entity",
    );
    refused(
        r#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="http://x"/>"#,
        "not a pres: or sip: URI",
    );
    refused(
        &format!("{HEAD}<tuple id=\"t\"/></presence>"),
        "has no status",
    );
    refused(
        &format!("{HEAD}<tuple><status/></tuple></presence>"),
        "no id",
    );
    refused(
        &format!("{HEAD}<tuple id=\"1t\"><status/></tuple></presence>"),
        "not a valid identifier",
    );
    refused(
        &format!("{HEAD}<tuple id=\"t\"><status><basic>maybe</basic></status></tuple></presence>"),
        "open or closed",
    );
    refused(
        &format!(
            "{HEAD}<tuple id=\"t\"><status/></tuple><tuple id=\"t\"><status/></tuple></presence>"
        ),
        "two tuples",
    );
    refused(
        &format!("{HEAD}<bogus/></presence>"),
        "unexpected PIDF element bogus",
    );
    refused(
        &format!("{HEAD}<x:y/></presence>"),
        "undeclared namespace prefix",
    );
    refused(&format!("{HEAD}</presence>trailing"), "outside the root");
    refused(
        &format!("{HEAD}<tuple id=\"t\"><status></tuple></presence>"),
        "not well-formed",
    );
    refused(&format!("{HEAD}<tuple id=\"t\">"), "ends inside an element");
    refused("", "no root element");
    let rpid = r#"<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:a@example.com">"#;
    refused(&format!("{rpid}<dm:person id=\"p\"><rpid:activities><rpid:napping/></rpid:activities></dm:person></presence>"), "not an RPID activity");
    refused(
        &format!("{rpid}<dm:person id=\"p\"/><dm:person id=\"q\"/></presence>"),
        "more than one person",
    );
    // Bounds: size, depth, elements, text, items.
    refused(
        &format!("{HEAD}<note>{}</note></presence>", "x".repeat(70_000)),
        "at most 65536",
    );
    refused(
        &format!(
            "{HEAD}{}{}</presence>",
            "<a:x xmlns:a=\"u\">".repeat(20),
            "</a:x>".repeat(20)
        ),
        "deeper than 16",
    );
    refused(
        &format!("{HEAD}{}</presence>", "<a:x xmlns:a=\"u\"/>".repeat(1100)),
        "more than 1024 elements",
    );
    refused(
        &format!("{HEAD}<note>{}</note></presence>", "x".repeat(5000)),
        "more than 4096 bytes of text",
    );
    refused(
        &format!("{HEAD}<note>{}</note></presence>", "x".repeat(1100)),
        "longer than 1024",
    );
    let many: String = (0..33)
        .map(|i| format!("<tuple id=\"t{i}\"><status/></tuple>"))
        .collect();
    refused(&format!("{HEAD}{many}</presence>"), "more than 32 tuples");
    refused(
        &format!("{HEAD}<note>\u{7}</note></presence>"),
        "control characters",
    );
    assert!(Presence::parse(b"\xff\xfe")
        .unwrap_err()
        .0
        .contains("not UTF-8"));
}

#[test]
fn other_namespaces_are_skipped() {
    let doc = format!("{HEAD}<tuple id=\"t\"><status><basic>closed</basic></status><x:extra xmlns:x=\"urn:x\"><x:deep/></x:extra></tuple><y:z xmlns:y=\"urn:y\">text</y:z></presence>");
    let p = Presence::parse(doc.as_bytes()).unwrap();
    assert_eq!(p.tuples[0].basic, Some(Basic::Closed));
    assert_eq!(Availability::of(&p), Availability::Offline);
}

#[test]
fn basic_unknown_is_taken_as_no_information() {
    // baresip's first PUBLISH at every start.
    let doc = br#"<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.test">
  <tuple id="t1"><status><basic>unknown</basic></status></tuple>
</presence>"#;
    let (p, lenient) = Presence::parse_lenient(doc).unwrap();
    assert_eq!(p.tuples.len(), 1);
    assert_eq!(p.tuples[0].basic, None);
    assert_eq!(lenient, [presence::pidf::Leniency::BasicUnknown]);
    // Other values stay errors, and a second basic too.
    let bad = String::from_utf8_lossy(doc).replace("unknown", "maybe");
    assert!(Presence::parse(bad.as_bytes()).is_err());
    let twice = String::from_utf8_lossy(doc).replace(
        "<basic>unknown</basic>",
        "<basic>unknown</basic><basic>open</basic>",
    );
    assert!(Presence::parse(twice.as_bytes()).is_err());
}
