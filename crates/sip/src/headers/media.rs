//! Media types: Content-Type (one) and Accept (a list of ranges, may be empty).

use super::{whole, ListHeader, TypedHeader};
use crate::name::HeaderKind;
use crate::params::{parse_params, ParamSyntax, Params};
use crate::scan::{Cursor, Invalid, Scan};

/// `type/subtype *(;param)`. In Accept, either part may be `*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaType<'a> {
    pub top: &'a str,
    pub sub: &'a str,
    pub params: Params<'a>,
}

impl<'a> MediaType<'a> {
    /// Case-insensitive comparison of `type/subtype`, ignoring parameters.
    pub fn is(&self, top: &str, sub: &str) -> bool {
        self.top.eq_ignore_ascii_case(top) && self.sub.eq_ignore_ascii_case(sub)
    }

    /// Whether this (Accept) range admits `top/sub`.
    pub fn matches(&self, top: &str, sub: &str) -> bool {
        (self.top == "*" || self.top.eq_ignore_ascii_case(top))
            && (self.sub == "*" || self.sub.eq_ignore_ascii_case(sub))
    }
}

fn media_type<'a>(c: &mut Cursor<'a>) -> Scan<MediaType<'a>> {
    let top = c.token()?;
    c.expect_sep(b'/')?;
    let sub = c.token()?;
    if top == "*" && sub != "*" {
        return Err(Invalid);
    }
    let params = parse_params(c, ParamSyntax::Header)?;
    Ok(MediaType { top, sub, params })
}

/// The `Content-Type` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentType<'a>(pub MediaType<'a>);

impl<'a> TypedHeader<'a> for ContentType<'a> {
    const KIND: HeaderKind = HeaderKind::ContentType;
    fn parse(value: &'a str) -> Scan<Self> {
        let m = whole(value, media_type)?;
        if m.top == "*" || m.sub == "*" {
            return Err(Invalid);
        }
        Ok(ContentType(m))
    }
}

impl<'a> std::ops::Deref for ContentType<'a> {
    type Target = MediaType<'a>;
    fn deref(&self) -> &MediaType<'a> {
        &self.0
    }
}

/// One `Accept` range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accept<'a>(pub MediaType<'a>);

impl<'a> ListHeader<'a> for Accept<'a> {
    const KIND: HeaderKind = HeaderKind::Accept;
    const ALLOW_EMPTY: bool = true;
    fn parse_element(element: &'a str) -> Scan<Self> {
        whole(element, media_type).map(Accept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        let c = ContentType::parse("multipart/mixed;boundary=\"++\"").unwrap();
        assert!(c.is("MULTIPART", "Mixed"));
        assert_eq!(c.params.get("boundary"), Some(Some("\"++\"")));
        assert!(ContentType::parse("application/*").is_err());
        assert!(ContentType::parse("text").is_err());
        assert!(ContentType::parse("text / plain ; charset = utf-8").is_ok());
    }

    #[test]
    fn accept_ranges() {
        let a = Accept::parse_element("text/*;q=0.5").unwrap();
        assert!(a.0.matches("text", "plain"));
        assert!(!a.0.matches("application", "sdp"));
        assert!(Accept::parse_element("*/sdp").is_err());
    }
}
