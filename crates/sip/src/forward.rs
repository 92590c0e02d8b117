//! Proxy edits (RFC 3261 §16.6) applied while serializing, so a forwarded
//! request or response costs exactly one copy of the message and no reparse.

use std::fmt::Write as _;

use bytes::{BufMut, Bytes, BytesMut};

use crate::message::{HeaderEntry, Message, StartLine};
use crate::name::HeaderKind;
use crate::scan::CommaSplit;

/// Max-Forwards reached zero: answer 483 Too Many Hops instead of forwarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyHops;

/// A set of edits to apply to `msg` when it is written out.
#[derive(Debug)]
pub struct Forward<'m> {
    msg: &'m Message,
    request_uri: Option<String>,
    push_via: Option<String>,
    pop_via: bool,
    max_forwards: Option<u8>,
    add_max_forwards: bool,
    prepend: Vec<(&'static str, String)>,
    routes: Vec<String>,
    pop_routes: usize,
    drop_last_route: bool,
    remove: Vec<HeaderKind>,
    replace: Vec<(HeaderKind, &'static str, Vec<String>)>,
    remove_named: Vec<&'static str>,
    append: Vec<(&'static str, String)>,
    body: Option<Bytes>,
}

impl<'m> Forward<'m> {
    pub fn new(msg: &'m Message) -> Self {
        Forward {
            msg,
            request_uri: None,
            push_via: None,
            pop_via: false,
            max_forwards: None,
            add_max_forwards: false,
            prepend: Vec::new(),
            routes: Vec::new(),
            pop_routes: 0,
            drop_last_route: false,
            remove: Vec::new(),
            replace: Vec::new(),
            remove_named: Vec::new(),
            append: Vec::new(),
            body: None,
        }
    }

    /// Replaces the body (same content type), with a Content-Length for
    /// it (a proxy that changes a body, as the IM filter does).
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.remove.push(HeaderKind::ContentLength);
        self.body = Some(body.into());
        self
    }

    /// Removes every line of an extension header by name (any case).
    pub fn remove_named(mut self, name: &'static str) -> Self {
        self.remove_named.push(name);
        self
    }

    /// Adds a header line at the end of the header block.
    pub fn append(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.append.push((name, value.into()));
        self
    }

    /// Replaces every line of a header kind by `values`, one line each,
    /// written where the first line of that kind was (at the end of the
    /// header block when there was none; nothing when `values` is empty).
    /// Takes the place of any other edit of that kind (`pop_via`,
    /// `pop_route`): a proxy that hides its side's topology rewrites the
    /// whole list.
    pub fn replace(mut self, kind: HeaderKind, name: &'static str, values: Vec<String>) -> Self {
        self.replace.retain(|r| r.0 != kind);
        self.replace.push((kind, name, values));
        self
    }

    /// Replaces the Request-URI (requests only; ignored for responses).
    pub fn request_uri(mut self, uri: impl Into<String>) -> Self {
        self.request_uri = Some(uri.into());
        self
    }

    /// Pushes a new top Via (the value, e.g. `SIP/2.0/TLS host:5061;branch=...`).
    pub fn push_via(mut self, value: impl Into<String>) -> Self {
        self.push_via = Some(value.into());
        self
    }

    /// Removes the top Via entry (a proxy forwarding a response).
    pub fn pop_via(mut self) -> Self {
        self.pop_via = true;
        self
    }

    /// Decrements Max-Forwards, or adds `Max-Forwards: 70` when absent (§16.6 step 3).
    pub fn decrement_max_forwards(mut self) -> Result<Self, TooManyHops> {
        match self.msg.typed::<crate::headers::MaxForwards>() {
            Ok(Some(m)) if m.0 == 0 => Err(TooManyHops),
            Ok(Some(m)) => {
                self.max_forwards = Some(m.0 - 1);
                Ok(self)
            }
            // Present but not a number in range: replaced, never left
            // beside a new one.
            Err(_) => {
                self.max_forwards = Some(70);
                Ok(self)
            }
            Ok(None) => {
                self.add_max_forwards = true;
                Ok(self)
            }
        }
    }

    /// Adds a Record-Route value above the existing ones.
    pub fn record_route(mut self, value: impl Into<String>) -> Self {
        self.prepend.push(("Record-Route", value.into()));
        self
    }

    /// Adds a Path value above the existing ones (RFC 3327).
    pub fn path(mut self, value: impl Into<String>) -> Self {
        self.prepend.push(("Path", value.into()));
        self
    }

    /// Adds Route values, in order, above the existing ones (e.g. a binding's
    /// Path, RFC 3327 §5.4).
    pub fn routes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, values: I) -> Self {
        self.routes.extend(values.into_iter().map(Into::into));
        self
    }

    /// Removes every line of a header kind (e.g. the Proxy-Authorization this
    /// proxy consumed: credentials must not travel on to the next hop).
    pub fn remove_all(mut self, kind: HeaderKind) -> Self {
        self.remove.push(kind);
        self
    }

    /// Removes the top Route entry (it named this proxy).
    pub fn pop_route(mut self) -> Self {
        self.pop_routes += 1;
        self
    }

    /// Removes the last Route entry (a strict router's remote target, moved to
    /// the Request-URI; RFC 3261 §16.4).
    pub fn drop_last_route(mut self) -> Self {
        self.drop_last_route = true;
        self
    }

    /// Writes the edited message. CR/LF in inserted values become spaces. A
    /// Content-Length is added if the original had none (stream transports need it).
    pub fn serialize(&self) -> Bytes {
        let m = self.msg;
        let extra = self.request_uri.as_ref().map_or(0, String::len)
            + self
                .replace
                .iter()
                .flat_map(|(_, n, vs)| vs.iter().map(move |v| n.len() + v.len() + 4))
                .sum::<usize>()
            + self.push_via.as_ref().map_or(0, |v| v.len() + 8)
            + self
                .prepend
                .iter()
                .map(|(n, v)| n.len() + v.len() + 4)
                .sum::<usize>()
            + self
                .append
                .iter()
                .map(|(n, v)| n.len() + v.len() + 4)
                .sum::<usize>()
            + self.body.as_ref().map_or(0, Bytes::len)
            + 48;
        let mut out = BytesMut::with_capacity(m.buf.len() + extra);
        match (m.start, &self.request_uri) {
            (StartLine::Request { method, .. }, Some(uri)) => {
                out.put_slice(&m.buf[method.range()]);
                out.put_u8(b' ');
                put_clean(&mut out, uri.as_bytes());
                out.put_slice(b" SIP/2.0\r\n");
            }
            _ => out.put_slice(&m.buf[..m.start_line_end as usize]),
        }
        if let Some(v) = &self.push_via {
            put_header(&mut out, "Via", v);
        }
        for (name, value) in self.prepend.iter().rev() {
            put_header(&mut out, name, value);
        }
        for value in &self.routes {
            put_header(&mut out, "Route", value);
        }
        if self.add_max_forwards {
            out.put_slice(b"Max-Forwards: 70\r\n");
        }
        let mut via_done = !self.pop_via;
        let mut routes_to_pop = self.pop_routes;
        let last_route = if self.drop_last_route {
            m.headers.iter().rposition(|e| e.kind == HeaderKind::Route)
        } else {
            None
        };
        let mut replaced = vec![false; self.replace.len()];
        for (i, e) in m.headers.iter().enumerate() {
            if self.remove.contains(&e.kind) {
                continue;
            }
            if e.kind == HeaderKind::Other && !self.remove_named.is_empty() {
                let name = m.str_at(e.name);
                if self
                    .remove_named
                    .iter()
                    .any(|n| n.eq_ignore_ascii_case(name))
                {
                    continue;
                }
            }
            if let Some(r) = self.replace.iter().position(|r| r.0 == e.kind) {
                if !replaced[r] {
                    replaced[r] = true;
                    let (_, name, values) = &self.replace[r];
                    for v in values {
                        put_header(&mut out, name, v);
                    }
                }
                continue;
            }
            match e.kind {
                HeaderKind::Via if !via_done => {
                    via_done = true;
                    write_without_first(&mut out, m, e);
                }
                HeaderKind::Route if routes_to_pop > 0 || last_route == Some(i) => {
                    routes_to_pop =
                        write_route_line(&mut out, m, e, routes_to_pop, last_route == Some(i));
                }
                HeaderKind::MaxForwards if self.max_forwards.is_some() => {
                    let _ = write!(out, "Max-Forwards: {}\r\n", self.max_forwards.unwrap_or(0));
                }
                _ => out.put_slice(&m.buf[e.name.start as usize..e.line_end as usize]),
            }
        }
        for ((_, name, values), done) in self.replace.iter().zip(replaced) {
            if !done {
                for v in values {
                    put_header(&mut out, name, v);
                }
            }
        }
        for (name, value) in &self.append {
            put_header(&mut out, name, value);
        }
        let body = self.body.as_deref().unwrap_or(m.body());
        if m.content_length.is_none() || self.body.is_some() {
            let _ = write!(out, "Content-Length: {}\r\n", body.len());
        }
        out.put_slice(b"\r\n");
        out.put_slice(body);
        out.freeze()
    }
}

/// Writes a list header line without its first element (drops the line if that
/// was the only one).
fn write_without_first(out: &mut BytesMut, m: &Message, e: &HeaderEntry) {
    write_skipping(out, m, e, 1);
}

/// Writes a list header line without its first `skip` elements (dropping the
/// line if nothing is left); returns how many more are still to skip on later
/// lines.
fn write_skipping(out: &mut BytesMut, m: &Message, e: &HeaderEntry, skip: usize) -> usize {
    let text = m.str_at(e.value);
    let value = text.as_bytes();
    let mut split = CommaSplit::new(text);
    let mut skipped = 0;
    while skipped < skip {
        match split.next() {
            Some(_) => skipped += 1,
            None => return skip - skipped,
        }
    }
    if let Some(Ok((a, _))) = split.next() {
        out.put_slice(&m.buf[e.name.range()]);
        out.put_slice(b": ");
        out.put_slice(&value[a..]);
        out.put_slice(b"\r\n");
    }
    0
}

/// Writes a Route line without its first `skip` elements and, if `drop_last`,
/// without its last one (dropping the line if nothing is left); returns how
/// many more are still to skip on later lines.
fn write_route_line(
    out: &mut BytesMut,
    m: &Message,
    e: &HeaderEntry,
    skip: usize,
    drop_last: bool,
) -> usize {
    if !drop_last {
        return write_skipping(out, m, e, skip);
    }
    let text = m.str_at(e.value);
    let elements: Vec<(usize, usize)> = CommaSplit::new(text).filter_map(Result::ok).collect();
    let keep_end = elements.len().saturating_sub(1);
    let kept = elements.get(skip.min(keep_end)..keep_end).unwrap_or(&[]);
    if let (Some(first), Some(last)) = (kept.first(), kept.last()) {
        out.put_slice(&m.buf[e.name.range()]);
        out.put_slice(b": ");
        out.put_slice(&text.as_bytes()[first.0..last.1]);
        out.put_slice(b"\r\n");
    }
    skip.saturating_sub(elements.len())
}

fn put_clean(out: &mut BytesMut, v: &[u8]) {
    for &b in v {
        out.put_u8(if b == b'\r' || b == b'\n' { b' ' } else { b });
    }
}

fn put_header(out: &mut BytesMut, name: &str, value: &str) {
    out.put_slice(name.as_bytes());
    out.put_slice(b": ");
    put_clean(out, value.as_bytes());
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::{MaxForwards, RecordRoute, Route, Via};
    use crate::{parse_datagram, Limits};

    const REQ: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP a.example.com;branch=z9hG4bK1\r\n\
        Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\nMax-Forwards: 3\r\n\
        To: <sip:bob@example.com>\r\nFrom: <sip:alice@example.com>;tag=1\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\
        Content-Length: 4\r\n\r\nv=0\n";

    fn msg(b: &'static [u8]) -> Message {
        parse_datagram(Bytes::from_static(b), &Limits::DEFAULT).unwrap()
    }

    #[test]
    fn unmodified_is_byte_exact() {
        let m = msg(REQ);
        assert_eq!(Forward::new(&m).serialize(), Bytes::from_static(REQ));
    }

    #[test]
    fn a_new_body_gets_its_own_content_length() {
        let m = msg(REQ);
        let out = Forward::new(&m).body(&b"v=0\r\no=x\r\n"[..]).serialize();
        let again = parse_datagram(out.clone(), &Limits::DEFAULT).unwrap();
        assert_eq!(again.body(), b"v=0\r\no=x\r\n");
        let text = std::str::from_utf8(&out).unwrap();
        assert_eq!(text.matches("Content-Length").count(), 1, "{text}");
        assert!(text.contains("Content-Length: 10\r\n"), "{text}");
    }

    #[test]
    fn replace_rewrites_every_line_of_a_kind_in_place_or_appends() {
        let m = msg(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS a;branch=z9hG4bK1\r\nRecord-Route: <sip:x;lr>\r\n\
            From: <sip:a@b>;tag=1\r\nRecord-Route: <sip:y;lr>, <sip:z;lr>\r\nTo: <sip:a@b>\r\nCall-ID: c\r\n\
            CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n");
        let texts: Vec<_> = m
            .list_with_text::<RecordRoute>()
            .map(|r| r.unwrap().0)
            .collect();
        assert_eq!(texts, ["<sip:x;lr>", "<sip:y;lr>", "<sip:z;lr>"]);
        let out = Forward::new(&m)
            .replace(
                HeaderKind::RecordRoute,
                "Record-Route",
                vec!["<sip:t;lr>".into()],
            )
            .replace(HeaderKind::Path, "Path", vec!["<sip:p;lr>".into()])
            .serialize();
        let text = std::str::from_utf8(&out).unwrap();
        assert_eq!(
            text,
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS a;branch=z9hG4bK1\r\nRecord-Route: <sip:t;lr>\r\n\
            From: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\
            Content-Length: 0\r\nPath: <sip:p;lr>\r\n\r\n"
        );
        let none = Forward::new(&m)
            .replace(HeaderKind::RecordRoute, "Record-Route", Vec::new())
            .serialize();
        assert!(!std::str::from_utf8(&none).unwrap().contains("Record-Route"));
    }

    #[test]
    fn an_unusable_max_forwards_is_replaced_not_duplicated() {
        let m = msg(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TLS a;branch=z9hG4bK1\r\nMax-Forwards: 300\r\n\
            From: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n");
        let out = Forward::new(&m)
            .decrement_max_forwards()
            .unwrap()
            .serialize();
        let f = parse_datagram(out, &Limits::DEFAULT).unwrap();
        assert_eq!(f.typed::<MaxForwards>().unwrap().unwrap().0, 70);
    }

    #[test]
    fn proxy_edits() {
        let m = msg(REQ);
        let out = Forward::new(&m)
            .request_uri("sip:bob@192.0.2.9:5070;transport=tcp")
            .push_via("SIP/2.0/TLS proxy.example.com;branch=z9hG4bKp")
            .record_route("<sip:proxy.example.com;lr>")
            .pop_route()
            .decrement_max_forwards()
            .unwrap()
            .serialize();
        let f = parse_datagram(out, &Limits::DEFAULT).unwrap();
        assert_eq!(
            f.request_uri(),
            Some("sip:bob@192.0.2.9:5070;transport=tcp")
        );
        let vias: Vec<_> = f
            .list::<Via>()
            .map(|v| v.unwrap().host.to_string())
            .collect();
        assert_eq!(vias, ["proxy.example.com", "a.example.com"]);
        let routes: Vec<_> = f
            .list::<Route>()
            .map(|r| r.unwrap().uri.as_sip().unwrap().raw)
            .collect();
        assert_eq!(routes, ["sip:p2.example.com;lr"]);
        assert_eq!(f.list::<RecordRoute>().count(), 1);
        assert_eq!(f.typed::<MaxForwards>(), Ok(Some(MaxForwards(2))));
        assert_eq!(f.body(), b"v=0\n");
    }

    #[test]
    fn routes_are_added_in_order_above_existing_ones() {
        let m = msg(REQ);
        let out = Forward::new(&m)
            .pop_route()
            .routes(["<sip:edge1;lr>", "<sip:edge2;lr>"])
            .serialize();
        let f = parse_datagram(out, &Limits::DEFAULT).unwrap();
        let routes: Vec<_> = f
            .list::<Route>()
            .map(|r| r.unwrap().uri.as_sip().unwrap().raw)
            .collect();
        assert_eq!(
            routes,
            ["sip:edge1;lr", "sip:edge2;lr", "sip:p2.example.com;lr"]
        );
    }

    fn routes_of(out: Bytes) -> Vec<String> {
        let f = parse_datagram(out, &Limits::DEFAULT).unwrap();
        f.list::<Route>()
            .map(|r| r.unwrap().uri.as_sip().unwrap().raw.to_string())
            .collect()
    }

    #[test]
    fn the_last_route_is_dropped_from_the_last_line() {
        let m = msg(b"BYE sip:p0;lr SIP/2.0\r\nRoute: <sip:p1;lr>\r\nRoute: <sip:p2;lr>, <sip:bob@192.0.2.5>\r\nContent-Length: 0\r\n\r\n");
        let out = Forward::new(&m)
            .request_uri("sip:bob@192.0.2.5")
            .routes(["<sip:p0;lr>"])
            .drop_last_route()
            .serialize();
        assert_eq!(routes_of(out), ["sip:p0;lr", "sip:p1;lr", "sip:p2;lr"]);
        // Popping from the top and dropping the last on the same line.
        let out = Forward::new(&m)
            .pop_route()
            .pop_route()
            .drop_last_route()
            .serialize();
        assert!(routes_of(out).is_empty());
        let out = Forward::new(&m).pop_route().drop_last_route().serialize();
        assert_eq!(routes_of(out), ["sip:p2;lr"]);
        // A lone Route line with one entry disappears.
        let m = msg(
            b"BYE sip:p0;lr SIP/2.0\r\nRoute: <sip:bob@192.0.2.5>\r\nContent-Length: 0\r\n\r\n",
        );
        let out = Forward::new(&m).drop_last_route().serialize();
        assert!(!String::from_utf8_lossy(&out).contains("Route"));
    }

    #[test]
    fn several_routes_are_popped_across_lines() {
        let m = msg(b"BYE sip:b@x SIP/2.0\r\nRoute: <sip:p1;lr>\r\nRoute: <sip:p2;lr>, <sip:p3;lr>\r\nContent-Length: 0\r\n\r\n");
        let out = Forward::new(&m).pop_route().pop_route().serialize();
        let f = parse_datagram(out, &Limits::DEFAULT).unwrap();
        let routes: Vec<_> = f
            .list::<Route>()
            .map(|r| r.unwrap().uri.as_sip().unwrap().raw)
            .collect();
        assert_eq!(routes, ["sip:p3;lr"]);
    }

    #[test]
    fn consumed_credentials_are_removed() {
        let m = msg(b"MESSAGE sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nProxy-Authorization: Digest username=\"a\"\r\nSubject: s\r\nProxy-Authorization: Digest username=\"b\"\r\nContent-Length: 0\r\n\r\n");
        let out = Forward::new(&m)
            .remove_all(HeaderKind::ProxyAuthorization)
            .serialize();
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(!text.contains("Proxy-Authorization"), "{text}");
        assert!(text.contains("Subject: s\r\n"));
    }

    #[test]
    fn response_pop_via_and_hops() {
        let resp = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS p;branch=z9hG4bKp\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n";
        let m = msg(resp);
        let out = Forward::new(&m).pop_via().serialize();
        assert_eq!(
            &out[..],
            &b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n"[..]
        );
        let zero = msg(b"OPTIONS sip:a@b SIP/2.0\r\nMax-Forwards: 0\r\n\r\n");
        assert_eq!(
            Forward::new(&zero).decrement_max_forwards().unwrap_err(),
            TooManyHops
        );
        let none = msg(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP a\r\n\r\n");
        let out = Forward::new(&none)
            .decrement_max_forwards()
            .unwrap()
            .serialize();
        let f = parse_datagram(out, &Limits::DEFAULT).unwrap();
        assert_eq!(f.typed::<MaxForwards>(), Ok(Some(MaxForwards(70))));
        assert_eq!(f.content_length(), Some(0));
    }
}
