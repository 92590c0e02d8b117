//! The checks RFC 3261 §8.2 makes before a UAS (registrar, presence server, the
//! server's own OPTIONS handler) processes a request, in the RFC's order:
//! method (405/501), Request-URI scheme (416), Require / Proxy-Require (420 with
//! Unsupported), Content-Type (415 with Accept), and Accept (406).
//!
//! Pure functions over a parsed message and what the element supports; the server
//! decides which capabilities apply to which request.

use crate::error::ParseError;
use crate::headers::{Accept, ContentType, ProxyRequire, Require};
use crate::message::Message;
use crate::method::Method;

/// What a UAS supports.
#[derive(Debug, Clone, Copy)]
pub struct Capabilities<'c> {
    /// Methods implemented; anything else is answered 501 (unknown) or 405 (known
    /// but not allowed here).
    pub methods: &'c [Method<'static>],
    /// URI schemes accepted in the Request-URI (lower case).
    pub schemes: &'c [&'static str],
    /// Option tags supported (for Require).
    pub supported: &'c [&'static str],
    /// Whether to check Proxy-Require too (a proxy or a proxy-registrar must).
    pub check_proxy_require: bool,
    /// Body media types accepted, as `(type, subtype)`.
    pub accept: &'c [(&'static str, &'static str)],
}

/// Why a request is refused, with the headers the response must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// 400 and friends: the message is malformed.
    Malformed(ParseError),
    /// 405 Method Not Allowed, with `Allow`.
    MethodNotAllowed { allow: String },
    /// 501 Not Implemented.
    NotImplemented,
    /// 416 Unsupported URI Scheme.
    UnsupportedUriScheme,
    /// 420 Bad Extension, with `Unsupported` listing the unknown tags.
    BadExtension { unsupported: String },
    /// 415 Unsupported Media Type, with `Accept`.
    UnsupportedMediaType { accept: String },
    /// 406 Not Acceptable: the client's Accept excludes what this UAS answers with.
    NotAcceptable,
}

impl Rejection {
    pub fn status(&self) -> u16 {
        match self {
            Rejection::Malformed(e) => e.status(),
            Rejection::MethodNotAllowed { .. } => 405,
            Rejection::NotImplemented => 501,
            Rejection::UnsupportedUriScheme => 416,
            Rejection::BadExtension { .. } => 420,
            Rejection::UnsupportedMediaType { .. } => 415,
            Rejection::NotAcceptable => 406,
        }
    }

    pub fn reason(&self) -> std::borrow::Cow<'static, str> {
        match self {
            Rejection::Malformed(e) => e.reason(),
            Rejection::MethodNotAllowed { .. } => "Method Not Allowed".into(),
            Rejection::NotImplemented => "Not Implemented".into(),
            Rejection::UnsupportedUriScheme => "Unsupported URI Scheme".into(),
            Rejection::BadExtension { .. } => "Bad Extension".into(),
            Rejection::UnsupportedMediaType { .. } => "Unsupported Media Type".into(),
            Rejection::NotAcceptable => "Not Acceptable".into(),
        }
    }

    /// Extra header lines for the response, as `(name, value)`.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            Rejection::MethodNotAllowed { allow } => vec![("Allow", allow.clone())],
            Rejection::BadExtension { unsupported } => vec![("Unsupported", unsupported.clone())],
            Rejection::UnsupportedMediaType { accept } => vec![("Accept", accept.clone())],
            _ => Vec::new(),
        }
    }
}

impl From<ParseError> for Rejection {
    fn from(e: ParseError) -> Self {
        Rejection::Malformed(e)
    }
}

const KNOWN: [Method<'static>; 14] = [
    Method::Invite,
    Method::Ack,
    Method::Bye,
    Method::Cancel,
    Method::Register,
    Method::Options,
    Method::Message,
    Method::Subscribe,
    Method::Notify,
    Method::Publish,
    Method::Info,
    Method::Prack,
    Method::Update,
    Method::Refer,
];

/// Runs the §8.2 checks on a request (its [`crate::RequestFields`] already
/// extracted). `Ok(())` means the UAS may process it.
pub fn check(msg: &Message, caps: &Capabilities<'_>) -> Result<(), Rejection> {
    let method = msg.method().ok_or(ParseError::MalformedStartLine)?;
    if !caps.methods.contains(&method) {
        if KNOWN.contains(&method) {
            let allow = caps
                .methods
                .iter()
                .map(Method::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            return Err(Rejection::MethodNotAllowed { allow });
        }
        return Err(Rejection::NotImplemented);
    }
    check_scheme(msg, caps)?;
    check_require(msg, caps)?;
    // ACK and CANCEL carry no negotiation of their own (§8.2.2.3).
    if !matches!(method, Method::Ack | Method::Cancel) {
        check_content_type(msg, caps)?;
    }
    Ok(())
}

/// 416 unless the Request-URI scheme is one of `caps.schemes`.
pub fn check_scheme(msg: &Message, caps: &Capabilities<'_>) -> Result<(), Rejection> {
    let uri = msg.request_uri().ok_or(ParseError::MalformedStartLine)?;
    let scheme = uri.split(':').next().unwrap_or("");
    if caps.schemes.iter().any(|s| s.eq_ignore_ascii_case(scheme)) {
        Ok(())
    } else {
        Err(Rejection::UnsupportedUriScheme)
    }
}

/// 420 listing every tag of Require (and Proxy-Require when asked) this UAS does
/// not support. Not applied to ACK, and CANCEL ignores Require (§8.2.2.3).
pub fn check_require(msg: &Message, caps: &Capabilities<'_>) -> Result<(), Rejection> {
    if matches!(msg.method(), Some(Method::Ack | Method::Cancel)) {
        return Ok(());
    }
    let mut unknown: Vec<&str> = Vec::new();
    let supported = |t: &str| caps.supported.iter().any(|s| s.eq_ignore_ascii_case(t));
    for r in msg.list::<Require>() {
        let t = r?.0;
        if !supported(t) && !unknown.contains(&t) {
            unknown.push(t);
        }
    }
    if caps.check_proxy_require {
        for r in msg.list::<ProxyRequire>() {
            let t = r?.0;
            if !supported(t) && !unknown.contains(&t) {
                unknown.push(t);
            }
        }
    }
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(Rejection::BadExtension {
            unsupported: unknown.join(", "),
        })
    }
}

/// 415 when a body's Content-Type is not one this UAS accepts. A body without a
/// Content-Type is malformed (§7.4.1).
pub fn check_content_type(msg: &Message, caps: &Capabilities<'_>) -> Result<(), Rejection> {
    let ct = msg.typed::<ContentType>()?;
    match ct {
        None if msg.body().is_empty() => Ok(()),
        None => Err(ParseError::MissingHeader(crate::name::HeaderKind::ContentType).into()),
        Some(ct) if caps.accept.iter().any(|(t, s)| ct.is(t, s)) => Ok(()),
        Some(_) => Err(Rejection::UnsupportedMediaType {
            accept: caps
                .accept
                .iter()
                .map(|(t, s)| format!("{t}/{s}"))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// 406 when the request's Accept (if any) admits none of `produces`. An absent
/// Accept means `application/sdp` for INVITE-style requests (§20.1); callers pass
/// what they would answer with.
pub fn check_accept(msg: &Message, produces: &[(&str, &str)]) -> Result<(), Rejection> {
    let mut any = false;
    for a in msg.list::<Accept>() {
        let a = a?;
        any = true;
        if produces.iter().any(|(t, s)| a.0.matches(t, s)) {
            return Ok(());
        }
    }
    if any || msg.header(crate::name::HeaderKind::Accept).is_some() {
        Err(Rejection::NotAcceptable)
    } else {
        Ok(())
    }
}
