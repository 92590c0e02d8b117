//! Parse errors and the one place they map to their SIP response.

use std::borrow::Cow;

use crate::name::HeaderKind;

/// Why a message was refused. Each variant maps to exactly one status code and a
/// reason phrase that names the fault ([`ParseError::status`], [`ParseError::reason`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    /// Larger than [`Limits::max_message_size`](crate::Limits).
    MessageTooLarge,
    /// The header block has no terminating empty line.
    UnterminatedHeaders,
    /// The start line is neither a request line nor a status line.
    MalformedStartLine,
    /// `SIP/x.y` other than 2.0.
    VersionNotSupported,
    /// A status code outside 100..=699 or not three digits.
    BadStatusCode,
    /// The Request-URI is longer than [`Limits::max_uri_len`](crate::Limits).
    UriTooLong,
    /// The Request-URI does not follow its grammar.
    BadRequestUri,
    /// The Request-URI carries a `?headers` component, which RFC 3261 §19.1.1 forbids there.
    HeadersInRequestUri,
    /// The start line or header block is not valid UTF-8.
    InvalidUtf8,
    /// A header line without a token name and colon, or with a bare CR/LF.
    MalformedHeaderLine,
    /// More header lines than [`Limits::max_headers`](crate::Limits).
    TooManyHeaders,
    /// A header line longer than [`Limits::max_header_line`](crate::Limits).
    HeaderLineTooLong,
    /// More Via entries than [`Limits::max_vias`](crate::Limits).
    TooManyVias,
    /// A header that may appear once appeared again.
    DuplicateHeader(HeaderKind),
    /// A header's value does not follow its grammar.
    BadHeader(HeaderKind),
    /// A header every request must carry is absent.
    MissingHeader(HeaderKind),
    /// Content-Length announces more bytes than the message holds.
    BodyTruncated,
    /// A message on a stream transport has no Content-Length (RFC 3261 §18.3).
    MissingContentLength,
    /// The CSeq method differs from the request method.
    CSeqMethodMismatch,
}

impl ParseError {
    /// The status code a server answers a request that failed this way with.
    pub fn status(self) -> u16 {
        match self {
            ParseError::MessageTooLarge => 513,
            ParseError::VersionNotSupported => 505,
            ParseError::UriTooLong => 414,
            _ => 400,
        }
    }

    /// A reason phrase naming the fault, e.g. `Malformed CSeq Header`.
    pub fn reason(self) -> Cow<'static, str> {
        let named = |what: &str, kind: HeaderKind| -> Cow<'static, str> {
            match kind.canonical_name() {
                Some(n) => Cow::Owned(format!("{what} {n} Header")),
                None => Cow::Owned(format!("{what} Header")),
            }
        };
        Cow::Borrowed(match self {
            ParseError::MessageTooLarge => "Message Too Large",
            ParseError::UnterminatedHeaders => "Unterminated Header Block",
            ParseError::MalformedStartLine => "Malformed Start Line",
            ParseError::VersionNotSupported => "Version Not Supported",
            ParseError::BadStatusCode => "Bad Status Code",
            ParseError::UriTooLong => "Request-URI Too Long",
            ParseError::BadRequestUri => "Malformed Request-URI",
            ParseError::HeadersInRequestUri => "Headers Not Allowed in Request-URI",
            ParseError::InvalidUtf8 => "Invalid UTF-8 in Header Block",
            ParseError::MalformedHeaderLine => "Malformed Header Line",
            ParseError::TooManyHeaders => "Too Many Header Fields",
            ParseError::HeaderLineTooLong => "Header Line Too Long",
            ParseError::TooManyVias => "Too Many Via Entries",
            ParseError::DuplicateHeader(k) => return named("Duplicate", k),
            ParseError::BadHeader(k) => return named("Malformed", k),
            ParseError::MissingHeader(k) => return named("Missing", k),
            ParseError::BodyTruncated => "Content-Length Exceeds Body",
            ParseError::MissingContentLength => "Missing Content-Length",
            ParseError::CSeqMethodMismatch => "CSeq Method Mismatch",
        })
    }
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status(), self.reason())
    }
}

impl std::error::Error for ParseError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_name_the_fault() {
        assert_eq!(
            ParseError::BadHeader(HeaderKind::CSeq).reason(),
            "Malformed CSeq Header"
        );
        assert_eq!(
            ParseError::DuplicateHeader(HeaderKind::CallId).to_string(),
            "400 Duplicate Call-ID Header"
        );
        assert_eq!(ParseError::VersionNotSupported.status(), 505);
        assert_eq!(ParseError::MessageTooLarge.status(), 513);
        assert_eq!(ParseError::UriTooLong.status(), 414);
    }
}
