//! Building messages: responses to a parsed request, stateless error responses to
//! requests that failed parsing, and new requests.

use std::fmt::Write as _;
use std::net::IpAddr;

use bytes::{BufMut, Bytes, BytesMut};

use crate::headers::Via;
use crate::message::Message;
use crate::name::HeaderKind;
use crate::scan::{CommaSplit, Invalid};

/// Builds a response to `req` (RFC 3261 §8.2.6): Via (all, in order), From, To,
/// Call-ID and CSeq copied byte-exact, then the caller's headers, then
/// Content-Length and the body.
#[derive(Debug)]
pub struct ResponseBuilder<'m> {
    req: &'m Message,
    buf: BytesMut,
    to_tag: Option<String>,
    via_received: Option<(Option<IpAddr>, Option<u16>)>,
    extra: BytesMut,
}

impl<'m> ResponseBuilder<'m> {
    pub fn new(req: &'m Message, code: u16, reason: &str) -> Self {
        let mut buf = BytesMut::with_capacity(512);
        let _ = write!(buf, "SIP/2.0 {code} {}\r\n", sanitize_reason(reason));
        ResponseBuilder {
            req,
            buf,
            to_tag: None,
            via_received: None,
            extra: BytesMut::new(),
        }
    }

    /// Adds `;tag=` to To if the request's To has none.
    pub fn to_tag(mut self, tag: &str) -> Self {
        self.to_tag = Some(tag.to_owned());
        self
    }

    /// Sets `received` and/or `rport` on the top Via (RFC 3261 §18.2.1, RFC 3581),
    /// replacing a bare `;rport`.
    pub fn via_received(mut self, received: Option<IpAddr>, rport: Option<u16>) -> Self {
        if received.is_some() || rport.is_some() {
            self.via_received = Some((received, rport));
        }
        self
    }

    /// Appends a header line. `value` must not contain CR or LF; offending bytes are
    /// replaced by spaces so a caller can never inject a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        push_header(&mut self.extra, name, value);
        self
    }

    /// Finishes with a body of `content_type`.
    pub fn body(self, content_type: &str, body: &[u8]) -> Bytes {
        let s = self.header("Content-Type", content_type);
        s.finish_with(body)
    }

    /// Finishes without a body.
    pub fn finish(self) -> Bytes {
        self.finish_with(&[])
    }

    fn finish_with(mut self, body: &[u8]) -> Bytes {
        let req = self.req;
        let mut first_via = true;
        for e in &req.headers {
            let line = &req.buf[e.name.start as usize..e.line_end as usize];
            match e.kind {
                HeaderKind::Via if first_via => {
                    first_via = false;
                    match self.via_received {
                        Some((rcv, rport)) => {
                            write_via_with_received(&mut self.buf, req, e, rcv, rport)
                        }
                        None => self.buf.put_slice(line),
                    }
                }
                HeaderKind::Via | HeaderKind::From | HeaderKind::CallId | HeaderKind::CSeq => {
                    self.buf.put_slice(line)
                }
                HeaderKind::To => {
                    let value = req.str_at(e.value).as_bytes();
                    match &self.to_tag {
                        Some(tag) if !has_tag(value) => {
                            self.buf.put_slice(b"To: ");
                            self.buf.put_slice(value);
                            let _ = write!(self.buf, ";tag={}\r\n", tag);
                        }
                        _ => self.buf.put_slice(line),
                    }
                }
                _ => {}
            }
        }
        self.buf.put_slice(&self.extra);
        let _ = write!(self.buf, "Content-Length: {}\r\n\r\n", body.len());
        self.buf.put_slice(body);
        // A server transaction keeps its last response for up to 32 s (timer J
        // over UDP); a buffer that grew by doubling would keep ~400 spare bytes
        // per transaction. Copy it to its exact size instead (a ~600-byte copy).
        if self.buf.capacity() - self.buf.len() > SLACK {
            Bytes::copy_from_slice(&self.buf)
        } else {
            self.buf.freeze()
        }
    }
}

/// Spare capacity a finished response may keep.
const SLACK: usize = 128;

fn has_tag(to_value: &[u8]) -> bool {
    std::str::from_utf8(to_value)
        .ok()
        .and_then(|s| crate::headers::NameAddr::parse(s).ok())
        .is_some_and(|na| na.tag().is_some())
}

/// Rewrites the first Via entry with `received`/`rport` set.
fn write_via_with_received(
    out: &mut BytesMut,
    req: &Message,
    e: &crate::message::HeaderEntry,
    rcv: Option<IpAddr>,
    rport: Option<u16>,
) {
    let value = req.str_at(e.value);
    let mut split = CommaSplit::new(value);
    let (first, rest) = match split.next() {
        Some(Ok((a, b))) => (value.get(a..b).unwrap_or(""), value.get(b..).unwrap_or("")),
        _ => (value, ""),
    };
    out.put_slice(b"Via: ");
    match <Via as crate::headers::ListHeader>::parse_element(first) {
        Ok(v) => {
            let _ = write!(
                out,
                "{}/{}/{} {}",
                v.protocol, v.version, v.transport, v.host
            );
            if let Some(p) = v.port {
                let _ = write!(out, ":{p}");
            }
            for p in v.params {
                let skip = (p.name.eq_ignore_ascii_case("received") && rcv.is_some())
                    || (p.name.eq_ignore_ascii_case("rport") && rport.is_some());
                if skip {
                    continue;
                }
                let _ = write!(out, ";{}", p.name);
                if let Some(val) = p.value {
                    let _ = write!(out, "={val}");
                }
            }
            match rcv {
                Some(IpAddr::V6(a)) => {
                    let _ = write!(out, ";received=[{a}]");
                }
                Some(IpAddr::V4(a)) => {
                    let _ = write!(out, ";received={a}");
                }
                None => {}
            }
            if let Some(p) = rport {
                let _ = write!(out, ";rport={p}");
            }
        }
        Err(Invalid) => out.put_slice(first.as_bytes()),
    }
    out.put_slice(rest.as_bytes());
    out.put_slice(b"\r\n");
}

/// What to put in `received`/`rport` for a request that arrived from `src`
/// (RFC 3261 §18.2.1: received when sent-by differs; RFC 3581: both when rport
/// was requested).
pub fn via_received_for(via: &Via<'_>, src: std::net::SocketAddr) -> (Option<IpAddr>, Option<u16>) {
    let rport = via.rport().map(|_| src.port());
    let same_host = match via.host {
        crate::uri::Host::V4(a) => IpAddr::V4(a) == src.ip(),
        crate::uri::Host::V6(a) => IpAddr::V6(a) == src.ip(),
        crate::uri::Host::Name(_) => false,
    };
    let received = if same_host && rport.is_none() {
        None
    } else {
        Some(src.ip())
    };
    (received, rport)
}

fn sanitize_reason(reason: &str) -> std::borrow::Cow<'_, str> {
    if reason.bytes().any(|b| b < 0x20 || b == 0x7f) {
        reason
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect::<String>()
            .into()
    } else {
        reason.into()
    }
}

fn push_header(buf: &mut BytesMut, name: &str, value: &str) {
    buf.put_slice(name.as_bytes());
    buf.put_slice(b": ");
    for b in value.bytes() {
        buf.put_u8(if b == b'\r' || b == b'\n' { b' ' } else { b });
    }
    buf.put_slice(b"\r\n");
}

/// A stateless error response to a request that could not be fully parsed: the
/// Via, From, To, Call-ID and CSeq lines found in its header block are copied
/// verbatim (at most a few of each), a To tag is added, and nothing else of the
/// request is echoed. `None` when `raw` is not a request or is an ACK (never
/// answered), or has no Via to answer along.
pub fn error_response(raw: &[u8], status: u16, reason: &str, to_tag: &str) -> Option<Bytes> {
    let raw = raw.get(..raw.len().min(64 * 1024))?;
    let start = raw.iter().position(|&b| b != b'\r' && b != b'\n')?;
    let raw = &raw[start..];
    let line_end = memchr::memmem::find(raw, b"\r\n")?;
    let start_line = &raw[..line_end];
    if start_line.starts_with(b"SIP/") || start_line.starts_with(b"ACK ") {
        return None;
    }
    let sp = memchr::memchr(b' ', start_line)?;
    if sp == 0 || !start_line[..sp].iter().all(|&c| crate::scan::is_token(c)) {
        return None;
    }
    let mut out = BytesMut::with_capacity(512);
    let _ = write!(out, "SIP/2.0 {status} {}\r\n", sanitize_reason(reason));
    let mut pos = line_end + 2;
    let mut copied_via = false;
    let mut count = 0;
    while pos < raw.len() && count < 32 {
        if raw[pos..].starts_with(b"\r\n") {
            break;
        }
        // One logical line, folds included.
        let mut end = pos;
        loop {
            match memchr::memmem::find(&raw[end..], b"\r\n") {
                Some(i) => {
                    end += i + 2;
                    if raw.get(end).is_some_and(|&c| c == b' ' || c == b'\t') {
                        continue;
                    }
                }
                None => end = raw.len(),
            }
            break;
        }
        let line = &raw[pos..end];
        pos = end;
        let colon = match memchr::memchr(b':', line) {
            Some(c) => c,
            None => continue,
        };
        let name = line[..colon].trim_ascii();
        let kind = HeaderKind::from_name(name);
        if !clean_line(line) {
            continue;
        }
        match kind {
            HeaderKind::Via => {
                copied_via = true;
                out.put_slice(line);
                count += 1;
            }
            HeaderKind::From | HeaderKind::CallId | HeaderKind::CSeq => {
                out.put_slice(line);
                count += 1;
            }
            HeaderKind::To => {
                let value = line[colon + 1..].trim_ascii();
                out.put_slice(b"To: ");
                out.put_slice(value);
                let lower = value.to_ascii_lowercase();
                if status > 100 && memchr::memmem::find(&lower, b"tag=").is_none() {
                    let _ = write!(out, ";tag={to_tag}");
                }
                out.put_slice(b"\r\n");
                count += 1;
            }
            _ => {}
        }
    }
    if !copied_via {
        return None;
    }
    out.put_slice(b"Content-Length: 0\r\n\r\n");
    Some(out.freeze())
}

/// A header line ending in CRLF whose only other CR/LF bytes are folds.
fn clean_line(line: &[u8]) -> bool {
    let Some(body) = line.strip_suffix(b"\r\n") else {
        return false;
    };
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'\r'
                if body.get(i + 1) == Some(&b'\n')
                    && body.get(i + 2).is_some_and(|&c| c == b' ' || c == b'\t') =>
            {
                i += 3
            }
            b'\r' | b'\n' => return false,
            _ => i += 1,
        }
    }
    true
}

/// Builds a new request.
#[derive(Debug)]
pub struct RequestBuilder {
    buf: BytesMut,
}

impl RequestBuilder {
    /// `method` must be a token and `uri` a URI without white space; both come
    /// from the server's own state, not from the wire.
    pub fn new(method: &str, uri: &str) -> Self {
        let mut buf = BytesMut::with_capacity(512);
        let _ = write!(buf, "{method} {uri} SIP/2.0\r\n");
        RequestBuilder { buf }
    }

    /// Appends a header line (CR/LF in `value` become spaces).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        push_header(&mut self.buf, name, value);
        self
    }

    pub fn body(self, content_type: &str, body: &[u8]) -> Bytes {
        self.header("Content-Type", content_type).finish_with(body)
    }

    pub fn finish(self) -> Bytes {
        self.finish_with(&[])
    }

    fn finish_with(mut self, body: &[u8]) -> Bytes {
        let _ = write!(self.buf, "Content-Length: {}\r\n\r\n", body.len());
        self.buf.put_slice(body);
        self.buf.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse_datagram, Limits};

    const REQ: &str = "MESSAGE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;rport;branch=z9hG4bK1, SIP/2.0/TCP p.example.com;branch=z9hG4bK0\r\n\
        v: SIP/2.0/UDP q.example.com;branch=z9hG4bKq\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>\r\n\
        Call-ID: c1\r\nCSeq: 5 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi";

    #[test]
    fn response_copies_dialog_headers() {
        let req = parse_datagram(Bytes::from_static(REQ.as_bytes()), &Limits::DEFAULT).unwrap();
        let src = "198.51.100.7:40000".parse().unwrap();
        let via = req.list::<Via>().next().unwrap().unwrap();
        let (rcv, rport) = via_received_for(&via, src);
        let resp = ResponseBuilder::new(&req, 200, "OK")
            .to_tag("srv1")
            .via_received(rcv, rport)
            .header("X", "a\r\nInjected: 1")
            .finish();
        let text = std::str::from_utf8(&resp).unwrap();
        assert!(text.starts_with("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;received=198.51.100.7;rport=40000, SIP/2.0/TCP p.example.com;branch=z9hG4bK0\r\n"), "{text}");
        assert!(text.contains("v: SIP/2.0/UDP q.example.com;branch=z9hG4bKq\r\n"));
        assert!(text.contains("To: <sip:bob@example.com>;tag=srv1\r\n"));
        assert!(text.contains("X: a  Injected: 1\r\n"));
        assert!(!text.contains("Max-Forwards"));
        let parsed = parse_datagram(resp.clone(), &Limits::DEFAULT).unwrap();
        assert_eq!(parsed.status(), Some(200));
        assert!(crate::fields::ResponseFields::extract(&parsed).is_ok());
    }

    #[test]
    fn error_response_salvages_lines() {
        let raw = b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.15;;,;,,\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nX: y\r\n\r\n";
        let r = error_response(raw, 400, "Malformed Via Header", "t1").unwrap();
        let t = std::str::from_utf8(&r).unwrap();
        assert!(t.starts_with("SIP/2.0 400 Malformed Via Header\r\nVia: SIP/2.0/UDP 192.0.2.15;;,;,,\r\nTo: <sip:a@b>;tag=t1\r\n"));
        assert!(!t.contains("X: y"));
        assert!(error_response(b"ACK sip:a@b SIP/2.0\r\nVia: x\r\n\r\n", 400, "x", "t").is_none());
        assert!(error_response(b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n", 400, "x", "t").is_none());
        assert!(error_response(b"garbage", 400, "x", "t").is_none());
        assert!(
            error_response(b"OPTIONS sip:a@b SIP/2.0\r\nTo: x\r\n\r\n", 400, "x", "t").is_none()
        );
    }

    #[test]
    fn request_builder() {
        let r = RequestBuilder::new("OPTIONS", "sip:x@example.com")
            .header("Via", "SIP/2.0/UDP h;branch=z9hG4bKx")
            .header("From", "<sip:a@b>;tag=1")
            .header("To", "<sip:x@example.com>")
            .header("Call-ID", "c")
            .header("CSeq", "1 OPTIONS")
            .header("Max-Forwards", "70")
            .finish();
        let m = parse_datagram(r, &Limits::DEFAULT).unwrap();
        assert!(crate::RequestFields::extract(&m).is_ok());
    }
}
