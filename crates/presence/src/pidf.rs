//! PIDF (RFC 3863) with the data model's person (RFC 4479) and RPID
//! (RFC 4480): the parts Parapet reads and writes.

use xml::Node;

pub const NS_PIDF: &str = "urn:ietf:params:xml:ns:pidf";
pub const NS_DM: &str = "urn:ietf:params:xml:ns:pidf:data-model";
pub const NS_RPID: &str = "urn:ietf:params:xml:ns:pidf:rpid";

/// RFC 4480 §3.2 activities.
pub const ACTIVITIES: &[&str] = &[
    "appointment",
    "away",
    "breakfast",
    "busy",
    "dinner",
    "holiday",
    "in-transit",
    "looking-for-work",
    "meal",
    "meeting",
    "on-the-phone",
    "performance",
    "permanent-absence",
    "playing",
    "presentation",
    "shopping",
    "sleeping",
    "spectator",
    "steering",
    "travel",
    "tv",
    "unknown",
    "vacation",
    "working",
    "worship",
];

/// Most tuples, notes, activities or moods kept from one document.
const MAX_ITEMS: usize = 32;
/// Longest note, in characters.
pub const MAX_NOTE: usize = 1024;

/// Why a document was refused; the text says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PidfError(pub String);

impl std::fmt::Display for PidfError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PidfError {}

impl From<xml::XmlError> for PidfError {
    fn from(e: xml::XmlError) -> Self {
        PidfError(e.0)
    }
}

fn bad<T>(msg: impl Into<String>) -> Result<T, PidfError> {
    Err(PidfError(msg.into()))
}

/// `<basic>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basic {
    Open,
    Closed,
}

/// One `<tuple>`: a device or service of the presentity.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tuple {
    pub id: String,
    pub basic: Option<Basic>,
    pub contact: Option<String>,
    pub notes: Vec<String>,
    pub timestamp: Option<String>,
}

/// The data model's `<person>` with its RPID elements.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Person {
    pub id: String,
    /// RPID activity names (e.g. `busy`, `on-the-phone`); `other` text as `other:TEXT`.
    pub activities: Vec<String>,
    pub moods: Vec<String>,
    pub place_type: Option<String>,
    pub notes: Vec<String>,
}

/// A presence document.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Presence {
    /// The presentity (`pres:` or `sip:` URI).
    pub entity: String,
    pub tuples: Vec<Tuple>,
    pub person: Option<Person>,
    pub notes: Vec<String>,
}

/// An `id` attribute: an XML NCName, bounded.
fn check_id(what: &str, id: &str) -> Result<(), PidfError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        bad(format!("{what} id {id:?} is not a valid identifier"))
    }
}

fn note(n: &Node) -> Result<String, PidfError> {
    let t = n.text.trim();
    if t.chars().count() > MAX_NOTE {
        return bad(format!("a note is longer than {MAX_NOTE} characters"));
    }
    if t.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return bad("a note contains control characters");
    }
    Ok(t.to_string())
}

fn push<T>(list: &mut Vec<T>, v: T, what: &str) -> Result<(), PidfError> {
    if list.len() >= MAX_ITEMS {
        return bad(format!("more than {MAX_ITEMS} {what}"));
    }
    list.push(v);
    Ok(())
}

/// A harmless deviation from RFC 3863 that popular clients send, accepted
/// with the meaning given (the caller may note it once per client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Leniency {
    /// `<basic>unknown</basic>` (baresip's first PUBLISH at every start):
    /// taken as a tuple without status, i.e. no information.
    BasicUnknown,
}

fn tuple(n: &Node, lenient: &mut Vec<Leniency>) -> Result<Tuple, PidfError> {
    let id = n
        .attr("id")
        .map(str::to_string)
        .ok_or_else(|| PidfError("a tuple has no id".into()))?;
    check_id("tuple", &id)?;
    let mut t = Tuple {
        id,
        ..Tuple::default()
    };
    let mut status = false;
    for c in &n.children {
        if c.ns != NS_PIDF {
            continue;
        }
        match c.name.as_str() {
            "status" if !status => {
                status = true;
                let mut seen_basic = false;
                for b in c.children.iter().filter(|b| b.ns == NS_PIDF) {
                    let first = !seen_basic;
                    seen_basic |= b.name == "basic";
                    match (b.name.as_str(), b.text.trim()) {
                        ("basic", "open") if first => t.basic = Some(Basic::Open),
                        ("basic", "closed") if first => t.basic = Some(Basic::Closed),
                        ("basic", "unknown") if first => {
                            if !lenient.contains(&Leniency::BasicUnknown) {
                                lenient.push(Leniency::BasicUnknown);
                            }
                        }
                        ("basic", other) => {
                            return bad(format!(
                                "basic must be open or closed (once), not {other:?}"
                            ))
                        }
                        (other, _) => {
                            return bad(format!("unknown PIDF element {other} in status"))
                        }
                    }
                }
            }
            "contact" if t.contact.is_none() => {
                let v = c.text.trim();
                if v.is_empty() || v.len() > 1024 || v.chars().any(char::is_whitespace) {
                    return bad("a contact must be one URI");
                }
                t.contact = Some(v.to_string());
            }
            "note" => push(&mut t.notes, note(c)?, "notes")?,
            "timestamp" if t.timestamp.is_none() => {
                let v = c.text.trim();
                if v.is_empty() || v.len() > 64 {
                    return bad("a timestamp must be an RFC 3339 date-time");
                }
                t.timestamp = Some(v.to_string());
            }
            other => return bad(format!("unexpected PIDF element {other} in a tuple")),
        }
    }
    if !status {
        return bad(format!("tuple {} has no status", t.id));
    }
    Ok(t)
}

/// Child element names in the RPID namespace (`<rpid:busy/>`...).
fn tokens(n: &Node, what: &str) -> Result<Vec<String>, PidfError> {
    let mut out = Vec::new();
    for c in n.children.iter().filter(|c| c.ns == NS_RPID) {
        let v = if c.name == "other" {
            let t = c.text.trim();
            if t.is_empty() || t.chars().count() > 64 || t.chars().any(char::is_control) {
                return bad(format!("{what}: other needs a short text"));
            }
            format!("other:{t}")
        } else {
            c.name.clone()
        };
        push(&mut out, v, what)?;
    }
    Ok(out)
}

fn person(n: &Node) -> Result<Person, PidfError> {
    let id = n
        .attr("id")
        .map(str::to_string)
        .ok_or_else(|| PidfError("the person has no id".into()))?;
    check_id("person", &id)?;
    let mut p = Person {
        id,
        ..Person::default()
    };
    for c in &n.children {
        match (c.ns.as_str(), c.name.as_str()) {
            (NS_RPID, "activities") => {
                for a in tokens(c, "activities")? {
                    if !a.starts_with("other:") && !ACTIVITIES.contains(&a.as_str()) {
                        return bad(format!("{a:?} is not an RPID activity"));
                    }
                    p.activities.push(a);
                }
            }
            (NS_RPID, "mood") => p.moods = tokens(c, "moods")?,
            (NS_RPID, "place-type") => p.place_type = tokens(c, "place types")?.into_iter().next(),
            (NS_DM, "note") => push(&mut p.notes, note(c)?, "notes")?,
            _ => {} // other elements (timestamps, other extensions) are skipped
        }
    }
    Ok(p)
}

impl Presence {
    /// Parses a PIDF document.
    pub fn parse(input: &[u8]) -> Result<Presence, PidfError> {
        Presence::parse_lenient(input).map(|(p, _)| p)
    }

    /// Parses a PIDF document, also saying which harmless deviations it
    /// accepted ([`Leniency`]).
    pub fn parse_lenient(input: &[u8]) -> Result<(Presence, Vec<Leniency>), PidfError> {
        let mut lenient = Vec::new();
        let root = xml::parse(input)?;
        if !root.is("urn:ietf:params:xml:ns:pidf", "presence") {
            return bad(format!(
                "the root element is {{{}}}{}, not PIDF's presence",
                root.ns, root.name
            ));
        }
        let entity = root
            .attr("entity")
            .ok_or_else(|| PidfError("presence has no entity".into()))?;
        if !(entity.starts_with("pres:")
            || entity.starts_with("sip:")
            || entity.starts_with("sips:"))
            || entity.len() > 512
            || entity.chars().any(char::is_whitespace)
        {
            return bad(format!("entity {entity:?} is not a pres: or sip: URI"));
        }
        let mut p = Presence {
            entity: entity.to_string(),
            ..Presence::default()
        };
        for c in &root.children {
            match (c.ns.as_str(), c.name.as_str()) {
                (NS_PIDF, "tuple") => {
                    let t = tuple(c, &mut lenient)?;
                    if p.tuples.iter().any(|o| o.id == t.id) {
                        return bad(format!("two tuples have id {}", t.id));
                    }
                    push(&mut p.tuples, t, "tuples")?;
                }
                (NS_PIDF, "note") => push(&mut p.notes, note(c)?, "notes")?,
                (NS_PIDF, other) => return bad(format!("unexpected PIDF element {other}")),
                (NS_DM, "person") if p.person.is_none() => p.person = Some(person(c)?),
                (NS_DM, "person") => return bad("more than one person element"),
                _ => {} // devices and other namespaces: not used
            }
        }
        Ok((p, lenient))
    }

    /// Writes the document (UTF-8, escaped, namespaces declared on the root).
    pub fn to_xml(&self) -> String {
        let e = |s: &str| quick_xml::escape::escape(s).into_owned();
        let mut out = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<presence xmlns=\"{NS_PIDF}\" xmlns:dm=\"{NS_DM}\" xmlns:rpid=\"{NS_RPID}\" entity=\"{}\">\n",
            e(&self.entity)
        );
        for t in &self.tuples {
            out.push_str(&format!(" <tuple id=\"{}\">\n  <status>", e(&t.id)));
            match t.basic {
                Some(Basic::Open) => out.push_str("<basic>open</basic>"),
                Some(Basic::Closed) => out.push_str("<basic>closed</basic>"),
                None => {}
            }
            out.push_str("</status>\n");
            if let Some(c) = &t.contact {
                out.push_str(&format!("  <contact>{}</contact>\n", e(c)));
            }
            for n in &t.notes {
                out.push_str(&format!("  <note>{}</note>\n", e(n)));
            }
            if let Some(ts) = &t.timestamp {
                out.push_str(&format!("  <timestamp>{}</timestamp>\n", e(ts)));
            }
            out.push_str(" </tuple>\n");
        }
        if let Some(p) = &self.person {
            out.push_str(&format!(" <dm:person id=\"{}\">\n", e(&p.id)));
            let list = |out: &mut String, tag: &str, items: &[String]| {
                if items.is_empty() {
                    return;
                }
                out.push_str(&format!("  <rpid:{tag}>"));
                for i in items {
                    match i.strip_prefix("other:") {
                        Some(t) => out.push_str(&format!("<rpid:other>{}</rpid:other>", e(t))),
                        None => out.push_str(&format!("<rpid:{}/>", e(i))),
                    }
                }
                out.push_str(&format!("</rpid:{tag}>\n"));
            };
            list(&mut out, "activities", &p.activities);
            list(&mut out, "mood", &p.moods);
            if let Some(pt) = &p.place_type {
                list(&mut out, "place-type", std::slice::from_ref(pt));
            }
            for n in &p.notes {
                out.push_str(&format!("  <dm:note>{}</dm:note>\n", e(n)));
            }
            out.push_str(" </dm:person>\n");
        }
        for n in &self.notes {
            out.push_str(&format!(" <note>{}</note>\n", e(n)));
        }
        out.push_str("</presence>\n");
        out
    }
}
