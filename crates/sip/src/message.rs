//! The parsed message: one `Bytes` buffer plus offsets of the start line and of
//! each header line. Nothing is copied; typed views borrow from the buffer.

use crate::scan::Invalid;
use bytes::Bytes;
use bytestring::ByteString;
use smallvec::SmallVec;

use crate::error::ParseError;
use crate::headers::{ListHeader, TypedHeader};
use crate::method::Method;
use crate::name::HeaderKind;

/// Byte range `[start, end)` inside the message buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Span {
    pub(crate) start: u32,
    pub(crate) end: u32,
}

impl Span {
    pub(crate) fn new(start: usize, end: usize) -> Span {
        // The parser refuses messages over `Limits::max_message_size`, which is
        // validated to fit in u32 before any span is made.
        Span {
            start: start as u32,
            end: end as u32,
        }
    }
    pub(crate) fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// Where one header line sits: `name` and `value` spans; the line runs from
/// `name.start` to `value_line_end` (after its CRLF).
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeaderEntry {
    pub(crate) kind: HeaderKind,
    pub(crate) name: Span,
    pub(crate) value: Span,
    /// Offset just past the CRLF ending this (possibly folded) line.
    pub(crate) line_end: u32,
}

/// Inline capacity for header entries: typical requests carry 10–25 header lines,
/// so parsing them allocates nothing.
pub(crate) const INLINE_HEADERS: usize = 32;

#[derive(Debug, Clone, Copy)]
pub(crate) enum StartLine {
    Request { method: Span, uri: Span },
    Response { code: u16, reason: Span },
}

/// A parsed SIP request or response.
#[derive(Debug, Clone)]
pub struct Message {
    pub(crate) buf: Bytes,
    /// The start line and header block (up to the body), validated UTF-8 once so
    /// that every header value is a `&str` without further checks.
    pub(crate) head: ByteString,
    pub(crate) start: StartLine,
    /// Offset just past the start line's CRLF.
    pub(crate) start_line_end: u32,
    pub(crate) headers: SmallVec<[HeaderEntry; INLINE_HEADERS]>,
    /// Offset of the body (just past the empty line).
    pub(crate) body_start: u32,
    pub(crate) content_length: Option<u32>,
}

/// One header line, as received.
#[derive(Debug, Clone, Copy)]
pub struct Header<'a> {
    /// The known kind, or `Other`.
    pub kind: HeaderKind,
    /// The name exactly as received (e.g. `v`, `MaX-fOrWaRdS`).
    pub name: &'a str,
    /// The value, without leading/trailing white space; folds kept.
    pub value: &'a str,
}

impl Message {
    /// The whole message as received (after framing): start line, headers, body.
    pub fn as_bytes(&self) -> &Bytes {
        &self.buf
    }

    /// The message size in bytes.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Never true for a parsed message; present for API symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn str_at(&self, span: Span) -> &str {
        self.head.get(span.range()).unwrap_or("")
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    pub fn is_response(&self) -> bool {
        !self.is_request()
    }

    /// The request method (`None` for a response).
    pub fn method(&self) -> Option<Method<'_>> {
        match self.start {
            StartLine::Request { method, .. } => Method::parse(self.str_at(method)),
            StartLine::Response { .. } => None,
        }
    }

    /// The Request-URI text (`None` for a response).
    pub fn request_uri(&self) -> Option<&str> {
        match self.start {
            StartLine::Request { uri, .. } => Some(self.str_at(uri)),
            StartLine::Response { .. } => None,
        }
    }

    /// The status code (`None` for a request).
    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    /// The reason phrase bytes (`None` for a request). May be UTF-8 or empty.
    pub fn reason(&self) -> Option<&[u8]> {
        match self.start {
            StartLine::Response { reason, .. } => self.buf.get(reason.range()),
            StartLine::Request { .. } => None,
        }
    }

    /// The start line without its CRLF.
    pub fn start_line(&self) -> &[u8] {
        let end = (self.start_line_end as usize).saturating_sub(2);
        self.buf.get(..end).unwrap_or_default()
    }

    /// The body (exactly Content-Length bytes when the header is present).
    pub fn body(&self) -> &[u8] {
        self.buf.get(self.body_start as usize..).unwrap_or_default()
    }

    /// The body as a `Bytes` slice sharing this message's buffer.
    pub fn body_bytes(&self) -> Bytes {
        self.buf.slice(self.body_start as usize..)
    }

    /// The Content-Length header's value, if present.
    pub fn content_length(&self) -> Option<u32> {
        self.content_length
    }

    /// Header lines in order.
    pub fn headers(&self) -> impl Iterator<Item = Header<'_>> + '_ {
        self.headers.iter().map(move |e| self.entry(e))
    }

    /// Number of header lines.
    pub fn header_count(&self) -> usize {
        self.headers.len()
    }

    pub(crate) fn entry(&self, e: &HeaderEntry) -> Header<'_> {
        Header {
            kind: e.kind,
            name: self.str_at(e.name),
            value: self.str_at(e.value),
        }
    }

    /// All lines of one known kind, in order.
    pub fn headers_of(&self, kind: HeaderKind) -> impl Iterator<Item = Header<'_>> + '_ {
        self.headers
            .iter()
            .filter(move |e| e.kind == kind)
            .map(move |e| self.entry(e))
    }

    /// The first line of one known kind.
    pub fn header(&self, kind: HeaderKind) -> Option<Header<'_>> {
        self.headers_of(kind).next()
    }

    /// Lines whose name matches `name` case-insensitively (for headers without a
    /// known kind; compact forms are not expanded here).
    pub fn headers_named<'s>(&'s self, name: &'s str) -> impl Iterator<Item = Header<'s>> + 's {
        self.headers()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
    }

    /// Parses a singleton header into its typed form. `Ok(None)` when absent.
    pub fn typed<'a, H: TypedHeader<'a>>(&'a self) -> Result<Option<H>, ParseError> {
        match self.header(H::KIND) {
            None => Ok(None),
            Some(h) => H::parse(h.value)
                .map(Some)
                .map_err(|Invalid| ParseError::BadHeader(H::KIND)),
        }
    }

    /// Parses every element of a list header (across all its lines, in order).
    pub fn list<'a, H: ListHeader<'a> + 'a>(
        &'a self,
    ) -> impl Iterator<Item = Result<H, ParseError>> + 'a {
        crate::headers::list_elements::<H>(self)
    }

    /// Like [`Message::list`], each element with its text as written.
    pub fn list_with_text<'a, H: ListHeader<'a> + 'a>(
        &'a self,
    ) -> impl Iterator<Item = Result<(&'a str, H), ParseError>> + 'a {
        crate::headers::list_elements::<H>(self).with_text()
    }
}
