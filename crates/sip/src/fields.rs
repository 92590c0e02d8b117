//! The fields every proxy and transaction needs, validated in one pass.

use crate::error::ParseError;
use crate::headers::{CSeq, CallId, From, MaxForwards, NameAddr, To, Via};
use crate::message::Message;
use crate::method::Method;
use crate::name::HeaderKind;
use crate::scan::Invalid;
use crate::uri::Uri;

/// A request's routing and matching fields. Constructing one proves that the
/// request has a Request-URI, at least one well-formed Via (all Vias are checked),
/// Call-ID, CSeq whose method equals the request method, From and To, and a
/// Max-Forwards within range when present.
#[derive(Debug, Clone, Copy)]
pub struct RequestFields<'a> {
    pub method: Method<'a>,
    pub request_uri: Uri<'a>,
    pub top_via: Via<'a>,
    pub call_id: &'a str,
    pub cseq: CSeq<'a>,
    pub from: NameAddr<'a>,
    pub to: NameAddr<'a>,
    /// `None` for RFC 2543 requests without the header.
    pub max_forwards: Option<u8>,
}

impl<'a> RequestFields<'a> {
    /// Extracts and validates the fields of a request (`MalformedStartLine` for a
    /// response).
    pub fn extract(msg: &'a Message) -> Result<RequestFields<'a>, ParseError> {
        let method = msg.method().ok_or(ParseError::MalformedStartLine)?;
        let uri_text = msg.request_uri().ok_or(ParseError::MalformedStartLine)?;
        let request_uri = Uri::parse(uri_text).map_err(|Invalid| ParseError::BadRequestUri)?;
        if request_uri.has_headers() {
            return Err(ParseError::HeadersInRequestUri);
        }
        let top_via = vias(msg)?;
        let call_id = msg
            .typed::<CallId>()?
            .ok_or(ParseError::MissingHeader(HeaderKind::CallId))?
            .0;
        let cseq = msg
            .typed::<CSeq>()?
            .ok_or(ParseError::MissingHeader(HeaderKind::CSeq))?;
        let from = msg
            .typed::<From>()?
            .ok_or(ParseError::MissingHeader(HeaderKind::From))?
            .0;
        let to = msg
            .typed::<To>()?
            .ok_or(ParseError::MissingHeader(HeaderKind::To))?
            .0;
        let max_forwards = msg.typed::<MaxForwards>()?.map(|m| m.0);
        if cseq.method != method {
            return Err(ParseError::CSeqMethodMismatch);
        }
        Ok(RequestFields {
            method,
            request_uri,
            top_via,
            call_id,
            cseq,
            from,
            to,
            max_forwards,
        })
    }
}

/// The matching fields of a response: top Via, Call-ID, CSeq, From and To.
#[derive(Debug, Clone, Copy)]
pub struct ResponseFields<'a> {
    pub status: u16,
    pub top_via: Via<'a>,
    pub call_id: &'a str,
    pub cseq: CSeq<'a>,
    pub from: NameAddr<'a>,
    pub to: NameAddr<'a>,
}

impl<'a> ResponseFields<'a> {
    pub fn extract(msg: &'a Message) -> Result<ResponseFields<'a>, ParseError> {
        let status = msg.status().ok_or(ParseError::MalformedStartLine)?;
        let top_via = vias(msg)?;
        let call_id = msg
            .typed::<CallId>()?
            .ok_or(ParseError::MissingHeader(HeaderKind::CallId))?
            .0;
        let cseq = msg
            .typed::<CSeq>()?
            .ok_or(ParseError::MissingHeader(HeaderKind::CSeq))?;
        let from = msg
            .typed::<From>()?
            .ok_or(ParseError::MissingHeader(HeaderKind::From))?
            .0;
        let to = msg
            .typed::<To>()?
            .ok_or(ParseError::MissingHeader(HeaderKind::To))?
            .0;
        Ok(ResponseFields {
            status,
            top_via,
            call_id,
            cseq,
            from,
            to,
        })
    }
}

/// Validates every Via entry and returns the top one.
fn vias(msg: &Message) -> Result<Via<'_>, ParseError> {
    let mut all = msg.list::<Via>();
    let top = all
        .next()
        .ok_or(ParseError::MissingHeader(HeaderKind::Via))??;
    for v in all {
        v?;
    }
    Ok(top)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse_datagram, Limits};
    use bytes::Bytes;

    fn extract(start: &str) -> Result<(), ParseError> {
        let s = format!("{start}\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:b@c>\r\nContent-Length: 0\r\n\r\n");
        let m = parse_datagram(Bytes::from(s), &Limits::DEFAULT)?;
        RequestFields::extract(&m).map(|_| ())
    }

    #[test]
    fn request_uri_and_cseq_rules() {
        assert_eq!(extract("INVITE sip:a@b SIP/2.0"), Ok(()));
        assert_eq!(
            extract("INVITE <sip:a@b> SIP/2.0"),
            Err(ParseError::BadRequestUri)
        );
        assert_eq!(
            extract("INVITE sip:a@b?Route=x SIP/2.0"),
            Err(ParseError::HeadersInRequestUri)
        );
        assert_eq!(
            extract("OPTIONS sip:a@b SIP/2.0"),
            Err(ParseError::CSeqMethodMismatch)
        );
    }

    #[test]
    fn missing_headers_are_named() {
        let m = parse_datagram(
            Bytes::from_static(
                b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nCSeq: 1 INVITE\r\n\r\n",
            ),
            &Limits::DEFAULT,
        )
        .unwrap();
        assert_eq!(
            RequestFields::extract(&m).unwrap_err(),
            ParseError::MissingHeader(HeaderKind::CallId)
        );
        let m = parse_datagram(
            Bytes::from_static(b"INVITE sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n"),
            &Limits::DEFAULT,
        )
        .unwrap();
        assert_eq!(
            RequestFields::extract(&m).unwrap_err(),
            ParseError::MissingHeader(HeaderKind::Via)
        );
    }

    #[test]
    fn non_utf8_header_block_is_refused() {
        let r = parse_datagram(
            Bytes::from_static(b"OPTIONS sip:a@b SIP/2.0\r\nSubject: \xff\r\n\r\n"),
            &Limits::DEFAULT,
        );
        assert_eq!(r.unwrap_err(), ParseError::InvalidUtf8);
    }
}
