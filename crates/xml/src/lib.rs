//! # parapet-xml: a bounded element tree over quick-xml
//!
//! For the small documents SIP carries (PIDF, RCS file pointers): the
//! namespace of every element resolved, text joined (entity and character
//! references resolved), and everything outside a plain document refused
//! (DOCTYPE, processing instructions, undeclared prefixes), within limits
//! on size, depth, elements and text.
#![forbid(unsafe_code)]

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

/// Largest document accepted, in bytes.
pub const MAX_BYTES: usize = 64 * 1024;
/// Deepest element nesting.
pub const MAX_DEPTH: usize = 16;
/// Most elements in one document.
pub const MAX_ELEMENTS: usize = 1024;

/// Why a document was refused; the text says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlError(pub String);

impl std::fmt::Display for XmlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for XmlError {}

/// An element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The namespace URI (empty for none).
    pub ns: String,
    pub name: String,
    /// Attributes without a namespace prefix, by local name.
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Node>,
    pub text: String,
}

impl Node {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn is(&self, ns: &str, name: &str) -> bool {
        self.ns == ns && self.name == name
    }
}

fn bad(msg: impl Into<String>) -> XmlError {
    XmlError(msg.into())
}

fn namespace(ns: ResolveResult<'_>) -> Result<String, XmlError> {
    match ns {
        ResolveResult::Bound(n) => {
            String::from_utf8(n.as_ref().to_vec()).map_err(|_| bad("a namespace is not UTF-8"))
        }
        ResolveResult::Unbound => Ok(String::new()),
        ResolveResult::Unknown(p) => Err(bad(format!(
            "undeclared namespace prefix {:?}",
            String::from_utf8_lossy(&p)
        ))),
    }
}

fn start(
    decoder: quick_xml::encoding::Decoder,
    ns: String,
    e: &quick_xml::events::BytesStart<'_>,
) -> Result<Node, XmlError> {
    let name = std::str::from_utf8(e.local_name().as_ref())
        .map_err(|_| bad("an element name is not UTF-8"))?
        .to_string();
    let mut attrs = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|e| bad(format!("malformed attribute: {e}")))?;
        let key = a.key;
        if key.prefix().is_some() || key.as_ref().starts_with(b"xmlns") {
            continue; // namespaced attributes (and declarations) are not PIDF's
        }
        let k = std::str::from_utf8(key.as_ref())
            .map_err(|_| bad("an attribute name is not UTF-8"))?
            .to_string();
        let v = a
            .decode_and_unescape_value(decoder)
            .map_err(|e| bad(format!("attribute {k}: {e}")))?
            .into_owned();
        if attrs.iter().any(|(n, _)| *n == k) {
            return Err(bad(format!("attribute {k} given twice")));
        }
        attrs.push((k, v));
    }
    Ok(Node {
        ns,
        name,
        attrs,
        children: Vec::new(),
        text: String::new(),
    })
}

/// `s` as XML text or an attribute value: the five markup characters
/// escaped, and the control characters XML 1.0 does not allow at all
/// dropped.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

/// Parses `input` into its root element.
pub fn parse(input: &[u8]) -> Result<Node, XmlError> {
    if input.len() > MAX_BYTES {
        return Err(bad(format!(
            "the document is {} bytes; at most {MAX_BYTES} are accepted",
            input.len()
        )));
    }
    std::str::from_utf8(input).map_err(|_| bad("the document is not UTF-8"))?;
    let mut reader = NsReader::from_reader(input);
    reader.config_mut().check_end_names = true;
    reader.config_mut().expand_empty_elements = false;
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    let mut elements = 0usize;
    let decoder = reader.decoder();
    loop {
        let (ns, ev) = reader
            .read_resolved_event()
            .map_err(|e| bad(format!("not well-formed XML: {e}")))?;
        let ns = match ev {
            Event::Start(_) | Event::Empty(_) => namespace(ns)?,
            _ => String::new(),
        };
        let empty = matches!(ev, Event::Empty(_));
        match ev {
            Event::Start(e) | Event::Empty(e) => {
                elements += 1;
                if elements > MAX_ELEMENTS {
                    return Err(bad(format!("more than {MAX_ELEMENTS} elements")));
                }
                if root.is_some() {
                    return Err(bad("content after the root element"));
                }
                let node = start(decoder, ns, &e)?;
                stack.push(node);
                if stack.len() > MAX_DEPTH {
                    return Err(bad(format!("elements nested deeper than {MAX_DEPTH}")));
                }
                if empty {
                    close(&mut stack, &mut root);
                }
            }
            Event::End(_) => close(&mut stack, &mut root),
            Event::Text(t) => {
                let s = t.xml_content().map_err(|e| bad(format!("text: {e}")))?;
                push_text(&mut stack, &s)?;
            }
            Event::CData(c) => {
                let s = std::str::from_utf8(c.as_ref())
                    .map_err(|_| bad("CDATA is not UTF-8"))?
                    .to_string();
                push_text(&mut stack, &s)?;
            }
            Event::GeneralRef(r) => {
                let c = match r
                    .resolve_char_ref()
                    .map_err(|e| bad(format!("character reference: {e}")))?
                {
                    Some(c) => c.to_string(),
                    None => {
                        let name = r.decode().map_err(|e| bad(format!("entity: {e}")))?;
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .ok_or_else(|| bad(format!("unknown entity &{name};")))?
                            .to_string()
                    }
                };
                push_text(&mut stack, &c)?;
            }
            Event::DocType(_) => return Err(bad("a DOCTYPE is not allowed")),
            Event::PI(_) => return Err(bad("processing instructions are not allowed")),
            Event::Decl(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(bad("the document ends inside an element"));
    }
    root.ok_or_else(|| bad("the document has no root element"))
}

fn close(stack: &mut Vec<Node>, root: &mut Option<Node>) {
    if let Some(node) = stack.pop() {
        match stack.last_mut() {
            Some(parent) => parent.children.push(node),
            None => *root = Some(node),
        }
    }
}

/// Most text one element may hold, in bytes.
const MAX_TEXT: usize = 4096;

fn push_text(stack: &mut [Node], s: &str) -> Result<(), XmlError> {
    match stack.last_mut() {
        Some(n) => {
            if n.text.len() + s.len() > MAX_TEXT {
                return Err(bad(format!(
                    "an element holds more than {MAX_TEXT} bytes of text"
                )));
            }
            n.text.push_str(s);
            Ok(())
        }
        None if s.trim().is_empty() => Ok(()),
        None => Err(bad("text outside the root element")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn escaped_text_reads_back_as_given_without_forbidden_controls() {
        let given = "a<b>&\"c'\u{1}\td\u{e9}";
        let e = escape(given);
        assert_eq!(e, "a&lt;b&gt;&amp;&quot;c&apos;\td\u{e9}");
        let n = parse(format!("<x k=\"{e}\">{e}</x>").as_bytes()).unwrap();
        assert_eq!(n.text, "a<b>&\"c'\td\u{e9}");
    }

    #[test]
    fn a_plain_document_becomes_a_tree_with_namespaces_and_text() {
        let n = parse(b"<?xml version=\"1.0\"?><a xmlns=\"urn:x\" xmlns:p=\"urn:p\" k=\"v&amp;w\"><p:b>one &lt;two&gt; &#x41;<![CDATA[<c>]]></p:b><!-- note --></a>").unwrap();
        assert!(n.is("urn:x", "a"));
        assert_eq!(n.attr("k"), Some("v&w"));
        assert_eq!(n.children.len(), 1);
        assert!(n.children[0].is("urn:p", "b"));
        assert_eq!(n.children[0].text, "one <two> A<c>");
    }

    #[test]
    fn each_rule_refuses_with_its_reason() {
        let deep = format!("{}{}", "<a>".repeat(17), "</a>".repeat(17));
        let many = format!("<a>{}</a>", "<b/>".repeat(1024));
        let long_text = format!("<a>{}</a>", "x".repeat(4097));
        let large = vec![b' '; MAX_BYTES + 1];
        for (doc, says) in [
            (&b"<!DOCTYPE a><a/>"[..], "DOCTYPE"),
            (b"<?pi x?><a/>", "processing instructions"),
            (b"<p:a/>", "undeclared namespace prefix"),
            (b"<a/><b/>", "content after the root element"),
            (b"x<a/>", "text outside the root element"),
            (b"<a k=\"1\" k=\"2\"/>", "attribute"),
            (b"<a>", "ends inside an element"),
            (b"<a></b>", "not well-formed"),
            (b"", "no root element"),
            (b"<a>\xff</a>", "not UTF-8"),
            (b"<a>&bogus;</a>", "unknown entity"),
            (deep.as_bytes(), "nested deeper"),
            (many.as_bytes(), "elements"),
            (long_text.as_bytes(), "bytes of text"),
            (&large, "at most"),
        ] {
            let e = parse(doc).unwrap_err();
            assert!(e.0.contains(says), "{e} should say {says}");
        }
    }
}
