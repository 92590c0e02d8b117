//! The message parser: start line, header index, Content-Length and body.
//!
//! It validates structure (line endings, token names, the start line, singleton
//! headers, Content-Length, the Request-URI grammar) and records offsets. Header
//! values are parsed into typed forms only on demand.

use bytes::Bytes;
use smallvec::SmallVec;

use crate::error::ParseError;
use crate::limits::Limits;
use crate::message::{HeaderEntry, Message, Span, StartLine};
use crate::name::HeaderKind;
use crate::scan::{is_token, is_wsp, parse_decimal, Invalid};

/// How the bytes arrived: datagrams carry one message with optional surplus bytes
/// after the body; stream frames must carry a Content-Length that matches exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Datagram,
    Stream,
}

/// Parses one UDP datagram. Bytes beyond Content-Length are discarded (RFC 3261
/// §18.3); without Content-Length the body runs to the end of the datagram.
pub fn parse_datagram(buf: Bytes, limits: &Limits) -> Result<Message, ParseError> {
    parse(buf, limits, Transport::Datagram)
}

/// Parses one complete stream frame as produced by [`crate::framing`]: the
/// message must carry a Content-Length equal to its body length.
pub fn parse_stream_frame(buf: Bytes, limits: &Limits) -> Result<Message, ParseError> {
    parse(buf, limits, Transport::Stream)
}

fn parse(mut buf: Bytes, limits: &Limits, transport: Transport) -> Result<Message, ParseError> {
    let max = limits.max_message_size.min(u32::MAX as usize);
    // Leading CRLFs before a start line are ignored (RFC 3261 §7.5).
    let lead = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    if lead > 0 {
        buf = buf.slice(lead..);
    }
    if buf.len() > max {
        return Err(ParseError::MessageTooLarge);
    }
    let head = parse_head(&buf, limits)?;
    let available = buf.len() - head.body_start;
    let body_len = match (head.content_length, transport) {
        (Some(cl), _) if cl as usize > available => return Err(ParseError::BodyTruncated),
        (Some(cl), _) => cl as usize,
        (None, Transport::Datagram) => available,
        (None, Transport::Stream) => return Err(ParseError::MissingContentLength),
    };
    if transport == Transport::Stream && body_len != available {
        // The framer hands over exactly one message; anything else is a bug upstream
        // or a smuggling attempt, and is refused rather than guessed at.
        return Err(ParseError::BodyTruncated);
    }
    buf.truncate(head.body_start + body_len);
    let head_text = utf8_head(&buf, head.body_start)?;
    Ok(Message {
        buf,
        head: head_text,
        start: head.start,
        start_line_end: head.start_line_end as u32,
        headers: head.headers,
        body_start: head.body_start as u32,
        content_length: head.content_length,
    })
}

/// The start line and header block as validated UTF-8, sharing `buf`'s memory.
pub(crate) fn utf8_head(
    buf: &Bytes,
    body_start: usize,
) -> Result<bytestring::ByteString, ParseError> {
    bytestring::ByteString::try_from(buf.slice(..body_start)).map_err(|_| ParseError::InvalidUtf8)
}

pub(crate) struct Head {
    pub(crate) start: StartLine,
    pub(crate) start_line_end: usize,
    pub(crate) headers: SmallVec<[HeaderEntry; crate::message::INLINE_HEADERS]>,
    pub(crate) body_start: usize,
    pub(crate) content_length: Option<u32>,
}

/// Finds the CRLF ending the line that starts at `from`; returns the index of CR.
fn line_end(b: &[u8], from: usize, max_len: usize) -> Result<usize, ParseError> {
    let window_end = b.len().min(from.saturating_add(max_len).saturating_add(2));
    let window = b.get(from..window_end).unwrap_or_default();
    match memchr::memchr2(b'\r', b'\n', window) {
        Some(i) if window.get(i) == Some(&b'\r') && window.get(i + 1) == Some(&b'\n') => {
            Ok(from + i)
        }
        Some(_) => Err(ParseError::MalformedHeaderLine),
        None if window_end < b.len() => Err(ParseError::HeaderLineTooLong),
        None => Err(ParseError::UnterminatedHeaders),
    }
}

pub(crate) fn parse_head(b: &[u8], limits: &Limits) -> Result<Head, ParseError> {
    // Start line: bounded by the URI limit plus room for method and version.
    let sl_max = limits.max_uri_len.saturating_add(128);
    let sl_end = match line_end(b, 0, sl_max) {
        Ok(e) => e,
        Err(ParseError::HeaderLineTooLong) => return Err(start_line_too_long(b)),
        Err(ParseError::MalformedHeaderLine) => return Err(ParseError::MalformedStartLine),
        Err(e) => return Err(e),
    };
    let start = parse_start_line(&b[..sl_end], limits)?;
    let mut pos = sl_end + 2;
    let mut headers = SmallVec::new();
    let mut seen: u64 = 0;
    let mut vias = 0usize;
    let mut content_length = None;
    loop {
        match (b.get(pos), b.get(pos + 1)) {
            (Some(b'\r'), Some(b'\n')) => {
                pos += 2;
                break;
            }
            (None, _) | (Some(b'\r'), None) => return Err(ParseError::UnterminatedHeaders),
            _ => {}
        }
        if headers.len() >= limits.max_headers {
            return Err(ParseError::TooManyHeaders);
        }
        let entry = parse_header_line(b, pos, limits.max_header_line)?;
        let bit = 1u64 << (entry.kind.index() & 63);
        if entry.kind.is_singleton() {
            if seen & bit != 0 {
                return Err(ParseError::DuplicateHeader(entry.kind));
            }
            seen |= bit;
        }
        let value = &b[entry.value.range()];
        match entry.kind {
            HeaderKind::Via => {
                // Upper bound on entries: one per line plus one per comma.
                vias += 1 + memchr::memchr_iter(b',', value).count();
                if vias > limits.max_vias {
                    return Err(ParseError::TooManyVias);
                }
            }
            HeaderKind::ContentLength => {
                let cl = parse_decimal(value, u64::from(u32::MAX))
                    .map_err(|Invalid| ParseError::BadHeader(HeaderKind::ContentLength))?;
                content_length = Some(cl as u32);
            }
            _ => {}
        }
        pos = entry.line_end as usize;
        headers.push(entry);
    }
    Ok(Head {
        start,
        start_line_end: sl_end + 2,
        headers,
        body_start: pos,
        content_length,
    })
}

/// A start line over the limit: a request gets 414 only if it is clearly a request
/// line with an overlong URI; anything else is malformed.
fn start_line_too_long(b: &[u8]) -> ParseError {
    let sp = b.iter().take(64).position(|&c| c == b' ');
    match sp {
        Some(n) if n > 0 && b[..n].iter().all(|&c| is_token(c)) && !b.starts_with(b"SIP/") => {
            ParseError::UriTooLong
        }
        _ => ParseError::MalformedStartLine,
    }
}

fn parse_header_line(b: &[u8], start: usize, max_line: usize) -> Result<HeaderEntry, ParseError> {
    // name
    let mut i = start;
    while b.get(i).is_some_and(|&c| is_token(c)) {
        i += 1;
    }
    let name_end = i;
    if name_end == start {
        return Err(ParseError::MalformedHeaderLine);
    }
    while b.get(i).is_some_and(|&c| is_wsp(c)) {
        i += 1;
    }
    if b.get(i) != Some(&b':') {
        return Err(ParseError::MalformedHeaderLine);
    }
    i += 1;
    // value, with folds: a CRLF followed by SP/HT continues the line.
    let line_limit = start.saturating_add(max_line);
    let mut value_start = None;
    let mut scan = i;
    let value_end;
    loop {
        let remaining = line_limit.saturating_sub(scan);
        let cr = match line_end(b, scan, remaining) {
            Ok(cr) => cr,
            Err(ParseError::HeaderLineTooLong) => return Err(ParseError::HeaderLineTooLong),
            Err(e) => return Err(e),
        };
        if cr > line_limit {
            return Err(ParseError::HeaderLineTooLong);
        }
        if value_start.is_none() {
            let first = b[scan..cr].iter().position(|&c| !is_wsp(c));
            if let Some(off) = first {
                value_start = Some(scan + off);
            }
        }
        if b.get(cr + 2).is_some_and(|&c| is_wsp(c)) {
            scan = cr + 2;
            continue;
        }
        value_end = cr;
        break;
    }
    let vs = value_start.unwrap_or(value_end).min(value_end);
    let mut ve = value_end;
    while ve > vs && matches!(b[ve - 1], b' ' | b'\t' | b'\r' | b'\n') {
        ve -= 1;
    }
    Ok(HeaderEntry {
        kind: HeaderKind::from_name(&b[start..name_end]),
        name: Span::new(start, name_end),
        value: Span::new(vs, ve),
        line_end: (value_end + 2) as u32,
    })
}

fn parse_start_line(line: &[u8], limits: &Limits) -> Result<StartLine, ParseError> {
    if line.starts_with(b"SIP/") || line.starts_with(b"sip/") {
        return parse_status_line(line);
    }
    let first_sp = memchr::memchr(b' ', line).ok_or(ParseError::MalformedStartLine)?;
    let last_sp = memchr::memrchr(b' ', line).ok_or(ParseError::MalformedStartLine)?;
    if first_sp == last_sp {
        return Err(ParseError::MalformedStartLine);
    }
    let method = &line[..first_sp];
    if method.is_empty() || !method.iter().all(|&c| is_token(c)) {
        return Err(ParseError::MalformedStartLine);
    }
    check_version(&line[last_sp + 1..])?;
    let uri = &line[first_sp + 1..last_sp];
    if uri.len() > limits.max_uri_len {
        return Err(ParseError::UriTooLong);
    }
    if uri.is_empty() || uri.iter().any(|&c| c <= b' ' || c >= 0x7f) {
        return Err(ParseError::MalformedStartLine);
    }
    // Its grammar is checked by `RequestFields::extract`, which parses it anyway.
    Ok(StartLine::Request {
        method: Span::new(0, first_sp),
        uri: Span::new(first_sp + 1, last_sp),
    })
}

/// `SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT`; only 2.0 is supported.
fn check_version(v: &[u8]) -> Result<(), ParseError> {
    if v.len() < 7 || !v[..4].eq_ignore_ascii_case(b"SIP/") {
        return Err(ParseError::MalformedStartLine);
    }
    let num = &v[4..];
    let dot = memchr::memchr(b'.', num).ok_or(ParseError::MalformedStartLine)?;
    let (major, minor) = (&num[..dot], &num[dot + 1..]);
    let digits = |d: &[u8]| !d.is_empty() && d.len() <= 9 && d.iter().all(u8::is_ascii_digit);
    if !digits(major) || !digits(minor) {
        return Err(ParseError::MalformedStartLine);
    }
    if major != b"2" || minor != b"0" {
        return Err(ParseError::VersionNotSupported);
    }
    Ok(())
}

fn parse_status_line(line: &[u8]) -> Result<StartLine, ParseError> {
    let sp = memchr::memchr(b' ', line).ok_or(ParseError::MalformedStartLine)?;
    check_version(&line[..sp])?;
    let rest = &line[sp + 1..];
    // Exactly three digits then SP; the reason phrase may be empty.
    let code = rest.get(..3).ok_or(ParseError::BadStatusCode)?;
    if !code.iter().all(u8::is_ascii_digit) || rest.get(3) != Some(&b' ') {
        return Err(ParseError::BadStatusCode);
    }
    let code = parse_decimal(code, 699).map_err(|Invalid| ParseError::BadStatusCode)? as u16;
    if code < 100 {
        return Err(ParseError::BadStatusCode);
    }
    let reason_start = sp + 1 + 4;
    if line[reason_start..]
        .iter()
        .any(|&c| c < 0x20 && c != b'\t' || c == 0x7f)
    {
        return Err(ParseError::MalformedStartLine);
    }
    Ok(StartLine::Response {
        code,
        reason: Span::new(reason_start, line.len()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Message, ParseError> {
        parse_datagram(Bytes::copy_from_slice(s.as_bytes()), &Limits::DEFAULT)
    }

    const BASE: &str = "OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
        Call-ID: x\r\nCSeq: 1 OPTIONS\r\nFrom: <sip:b@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\n\
        Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn request_line_and_headers() {
        let m = p(BASE).unwrap();
        assert!(m.is_request());
        assert_eq!(m.method().unwrap().as_str(), "OPTIONS");
        assert_eq!(m.request_uri(), Some("sip:a@example.com"));
        assert_eq!(m.header_count(), 7);
        assert_eq!(m.header(HeaderKind::CallId).unwrap().value, "x");
        assert_eq!(m.as_bytes().as_ref(), BASE.as_bytes());
    }

    #[test]
    fn start_line_rules() {
        let bad = |s: &str| p(&format!("{s}\r\nContent-Length: 0\r\n\r\n")).unwrap_err();
        assert_eq!(
            bad("INVITE sip:a@b SIP/7.0"),
            ParseError::VersionNotSupported
        );
        assert_eq!(
            bad("INVITE  sip:a@b SIP/2.0"),
            ParseError::MalformedStartLine
        );
        assert_eq!(
            bad("INVITE sip:a@b SIP/2.0 "),
            ParseError::MalformedStartLine
        );
        assert_eq!(bad("INVITE sip:a@b"), ParseError::MalformedStartLine);
        assert_eq!(
            bad("IN\u{1}VITE sip:a@b SIP/2.0"),
            ParseError::MalformedStartLine
        );
        assert_eq!(bad("SIP/2.0 4294967301 Huge"), ParseError::BadStatusCode);
        assert_eq!(bad("SIP/2.0 099 Low"), ParseError::BadStatusCode);
        assert_eq!(bad("SIP/2.0 20 Short"), ParseError::BadStatusCode);
        assert!(p("SIP/2.0 100 \r\nContent-Length: 0\r\n\r\n").is_ok());
        let long = format!("INVITE sip:{}@b SIP/2.0", "a".repeat(5000));
        assert_eq!(bad(&long), ParseError::UriTooLong);
    }

    #[test]
    fn header_line_rules() {
        let with = |h: &str| p(&BASE.replace("Max-Forwards: 70\r\n", h));
        assert_eq!(
            with("Bad Name: x\r\n").unwrap_err(),
            ParseError::MalformedHeaderLine
        );
        assert_eq!(
            with("NoColon\r\n").unwrap_err(),
            ParseError::MalformedHeaderLine
        );
        assert_eq!(
            with("X: a\nb\r\n").unwrap_err(),
            ParseError::MalformedHeaderLine
        );
        assert_eq!(
            with("X: a\rb\r\n").unwrap_err(),
            ParseError::MalformedHeaderLine
        );
        assert_eq!(
            with("i: dup\r\n").unwrap_err(),
            ParseError::DuplicateHeader(HeaderKind::CallId)
        );
        let m = with("X-Folded: a\r\n b\r\n\tc\r\n").unwrap();
        assert_eq!(
            m.headers_named("x-folded").next().unwrap().value,
            "a\r\n b\r\n\tc"
        );
        let m = with("X-Empty:\r\n").unwrap();
        assert_eq!(m.headers_named("X-Empty").next().unwrap().value, "");
        let long = format!("X-Long: {}\r\n", "a".repeat(9000));
        assert_eq!(with(&long).unwrap_err(), ParseError::HeaderLineTooLong);
    }

    #[test]
    fn limits_on_counts() {
        let many: String = (0..200).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(
            p(&BASE.replace("Max-Forwards: 70\r\n", &many)).unwrap_err(),
            ParseError::TooManyHeaders
        );
        let vias = format!("Via: {}\r\n", vec!["SIP/2.0/UDP h"; 70].join(","));
        assert_eq!(
            p(&BASE.replace("Max-Forwards: 70\r\n", &vias)).unwrap_err(),
            ParseError::TooManyVias
        );
        let limits = Limits {
            max_message_size: 100,
            ..Limits::DEFAULT
        };
        let r = parse_datagram(Bytes::from_static(BASE.as_bytes()), &limits);
        assert_eq!(r.unwrap_err(), ParseError::MessageTooLarge);
    }

    #[test]
    fn content_length_on_datagrams() {
        let body = BASE.replace("Content-Length: 0", "Content-Length: 3") + "abcEXTRA";
        let m = p(&body).unwrap();
        assert_eq!(m.body(), b"abc");
        let short = BASE.replace("Content-Length: 0", "Content-Length: 9999") + "abc";
        assert_eq!(p(&short).unwrap_err(), ParseError::BodyTruncated);
        let neg = BASE.replace("Content-Length: 0", "Content-Length: -999");
        assert_eq!(
            p(&neg).unwrap_err(),
            ParseError::BadHeader(HeaderKind::ContentLength)
        );
        let none = BASE.replace("Content-Length: 0\r\n", "") + "body";
        assert_eq!(p(&none).unwrap().body(), b"body");
        let dup = BASE.replace("Content-Length: 0", "Content-Length: 0\r\nl: 0");
        assert_eq!(
            p(&dup).unwrap_err(),
            ParseError::DuplicateHeader(HeaderKind::ContentLength)
        );
    }

    #[test]
    fn content_length_on_streams_must_match() {
        let f = |s: String| parse_stream_frame(Bytes::from(s), &Limits::DEFAULT);
        assert!(f(BASE.to_string()).is_ok());
        assert_eq!(
            f(BASE.to_string() + "x").unwrap_err(),
            ParseError::BodyTruncated
        );
        let none = BASE.replace("Content-Length: 0\r\n", "");
        assert_eq!(f(none).unwrap_err(), ParseError::MissingContentLength);
    }

    #[test]
    fn unterminated_and_leading_crlf() {
        assert_eq!(
            p(&BASE[..BASE.len() - 2]).unwrap_err(),
            ParseError::UnterminatedHeaders
        );
        let m = p(&format!("\r\n\r\n{BASE}")).unwrap();
        assert_eq!(m.as_bytes().as_ref(), BASE.as_bytes());
        assert!(p("").is_err());
        assert!(p("\r\n").is_err());
    }
}
