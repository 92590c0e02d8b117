//! A bounded element tree over quick-xml: the namespace of every element
//! resolved, text joined (entity and character references resolved), and
//! everything outside a plain document refused.

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

use crate::pidf::PidfError;

/// Largest document accepted, in bytes.
pub(crate) const MAX_BYTES: usize = 64 * 1024;
/// Deepest element nesting.
pub(crate) const MAX_DEPTH: usize = 16;
/// Most elements in one document.
pub(crate) const MAX_ELEMENTS: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    /// The namespace URI (empty for none).
    pub(crate) ns: String,
    pub(crate) name: String,
    /// Attributes without a namespace prefix, by local name.
    pub(crate) attrs: Vec<(String, String)>,
    pub(crate) children: Vec<Node>,
    pub(crate) text: String,
}

impl Node {
    pub(crate) fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn is(&self, ns: &str, name: &str) -> bool {
        self.ns == ns && self.name == name
    }
}

fn bad(msg: impl Into<String>) -> PidfError {
    PidfError(msg.into())
}

fn namespace(ns: ResolveResult<'_>) -> Result<String, PidfError> {
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
) -> Result<Node, PidfError> {
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

/// Parses `input` into its root element.
pub(crate) fn parse(input: &[u8]) -> Result<Node, PidfError> {
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

fn push_text(stack: &mut [Node], s: &str) -> Result<(), PidfError> {
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
