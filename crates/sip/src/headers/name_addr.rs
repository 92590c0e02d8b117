//! `name-addr` / `addr-spec` headers: From, To, Contact, Route, Record-Route, Path.

use super::{whole, ListHeader, TypedHeader};
use crate::name::HeaderKind;
use crate::params::{parse_params, ParamSyntax, Params};
use crate::scan::{Cursor, Invalid, Scan};
use crate::uri::{parse_uri, Uri, UriContext};

/// `[display-name] <URI> *(;param)` or `URI *(;param)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// The display name as written: a quoted string with its quotes, or tokens.
    pub display_name: Option<&'a str>,
    pub uri: Uri<'a>,
    /// Whether the URI was enclosed in `<>`.
    pub bracketed: bool,
    /// Header parameters (after the URI).
    pub params: Params<'a>,
}

impl<'a> NameAddr<'a> {
    /// Parses one name-addr or addr-spec element.
    pub fn parse(s: &'a str) -> Scan<NameAddr<'a>> {
        whole(s, parse_name_addr)
    }

    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&'a str> {
        self.params.get("tag").flatten()
    }
}

fn parse_name_addr<'a>(c: &mut Cursor<'a>) -> Scan<NameAddr<'a>> {
    let start = c.pos();
    let mut display_name = None;
    if c.peek() == Some(b'"') {
        display_name = Some(c.quoted_string()?);
        c.skip_lws();
    } else {
        // *(token LWS) followed by '<' is a display name; otherwise an addr-spec.
        let mut end = start;
        while c.token().is_ok() {
            end = c.pos();
            c.skip_lws();
        }
        if c.peek() == Some(b'<') && end > start {
            display_name = Some(c.slice(start, end)?);
        } else if c.peek() != Some(b'<') {
            c.set_pos(start);
        }
    }
    let bracketed = c.eat(b'<');
    let uri = if bracketed {
        let u = parse_uri(c, UriContext::Whole)?;
        if !c.eat(b'>') {
            return Err(Invalid);
        }
        u
    } else {
        parse_uri(c, UriContext::Bare)?
    };
    let params = parse_params(c, ParamSyntax::Header)?;
    Ok(NameAddr {
        display_name,
        uri,
        bracketed,
        params,
    })
}

macro_rules! singleton_name_addr {
    ($(#[$doc:meta])* $ty:ident, $kind:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $ty<'a>(pub NameAddr<'a>);

        impl<'a> TypedHeader<'a> for $ty<'a> {
            const KIND: HeaderKind = HeaderKind::$kind;
            fn parse(value: &'a str) -> Scan<Self> {
                NameAddr::parse(value).map($ty)
            }
        }

        impl<'a> std::ops::Deref for $ty<'a> {
            type Target = NameAddr<'a>;
            fn deref(&self) -> &NameAddr<'a> {
                &self.0
            }
        }
    };
}

singleton_name_addr!(
    /// The `From` header.
    From, From);
singleton_name_addr!(
    /// The `To` header.
    To, To);

macro_rules! route_list {
    ($(#[$doc:meta])* $ty:ident, $kind:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $ty<'a>(pub NameAddr<'a>);

        impl<'a> ListHeader<'a> for $ty<'a> {
            const KIND: HeaderKind = HeaderKind::$kind;
            fn parse_element(element: &'a str) -> Scan<Self> {
                // route-param / rec-route / path-value are name-addr only: <> required.
                let na = NameAddr::parse(element)?;
                if na.bracketed {
                    Ok($ty(na))
                } else {
                    Err(Invalid)
                }
            }
        }

        impl<'a> std::ops::Deref for $ty<'a> {
            type Target = NameAddr<'a>;
            fn deref(&self) -> &NameAddr<'a> {
                &self.0
            }
        }
    };
}

route_list!(
    /// One `Route` entry.
    Route, Route);
route_list!(
    /// One `Record-Route` entry.
    RecordRoute, RecordRoute);
route_list!(
    /// One `Path` entry (RFC 3327).
    Path, Path);

/// One `Contact` entry, or the `*` wildcard of a REGISTER removing all bindings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contact<'a> {
    Wildcard,
    Addr(NameAddr<'a>),
}

impl<'a> Contact<'a> {
    /// The `expires` parameter, if present and valid.
    pub fn expires(&self) -> Option<u32> {
        match self {
            Contact::Addr(na) => na.params.get("expires").flatten()?.parse().ok(),
            Contact::Wildcard => None,
        }
    }

    pub fn name_addr(&self) -> Option<&NameAddr<'a>> {
        match self {
            Contact::Addr(na) => Some(na),
            Contact::Wildcard => None,
        }
    }
}

impl<'a> ListHeader<'a> for Contact<'a> {
    const KIND: HeaderKind = HeaderKind::Contact;
    fn parse_element(element: &'a str) -> Scan<Self> {
        if element == "*" {
            return Ok(Contact::Wildcard);
        }
        let na = NameAddr::parse(element)?;
        // Contact params with values must be valid where the RFC defines them.
        if let Some(v) = na.params.get("expires") {
            crate::scan::parse_decimal(v.ok_or(Invalid)?.as_bytes(), u64::from(u32::MAX))?;
        }
        if let Some(v) = na.params.get("q") {
            parse_qvalue(v.ok_or(Invalid)?)?;
        }
        Ok(Contact::Addr(na))
    }
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in thousandths.
pub(crate) fn parse_qvalue(v: &str) -> Scan<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Invalid);
    }
    let mut thousandths: u16 = 0;
    for (i, d) in frac.bytes().enumerate() {
        thousandths += u16::from(d - b'0') * [100, 10, 1][i];
    }
    match int {
        "0" => Ok(thousandths),
        "1" if thousandths == 0 => Ok(1000),
        _ => Err(Invalid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uri::Host;

    #[test]
    fn quoted_display_and_params() {
        let na = NameAddr::parse(
            "\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>\r\n  ;\r\n  tag = 98asjd8",
        )
        .unwrap();
        assert_eq!(na.display_name, Some("\"J Rosenberg \\\\\\\"\""));
        assert_eq!(na.tag(), Some("98asjd8"));
        assert!(na.bracketed);
    }

    #[test]
    fn token_display_names() {
        let na = NameAddr::parse(
            "token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;tag=_token~1'+`*%!-.",
        )
        .unwrap();
        assert_eq!(na.display_name, Some("token1~` token2'+_ token3*%!.-"));
        assert_eq!(na.tag(), Some("_token~1'+`*%!-."));
        let na = NameAddr::parse("\"caller\"<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(na.display_name, Some("\"caller\""));
    }

    #[test]
    fn addr_spec_params_belong_to_header() {
        let na = NameAddr::parse("sip:user@example.com;tag=1").unwrap();
        assert!(!na.bracketed);
        assert_eq!(na.tag(), Some("1"));
        let Uri::Sip(u) = na.uri else { panic!() };
        assert!(u.params.is_empty());
        assert_eq!(u.host, Host::Name("example.com"));
    }

    #[test]
    fn malformed_name_addrs() {
        for bad in [
            "Bell, Alexander <sip:a.g.bell@bell-tel.com>;tag=43",
            "\"Mr. J. User <sip:j.user@example.com>",
            "\"Watson, Thomas\" < sip:t.watson@example.org >",
            "<sip:a@example.com",
            "\"Joe\" <sip:joe@example.org>;;;;",
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            "<sip:a@example.com> junk",
        ] {
            assert!(NameAddr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn contact_forms() {
        assert_eq!(Contact::parse_element("*"), Ok(Contact::Wildcard));
        let c = Contact::parse_element(
            "<sip:a@b>;expires=60;q=0.5;+sip.instance=\"<urn:uuid:x>\";reg-id=1",
        )
        .unwrap();
        assert_eq!(c.expires(), Some(60));
        assert!(Contact::parse_element("<sip:a@b>;expires=10000000000000000000").is_err());
        assert!(Contact::parse_element("<sip:a@b>;q=2").is_err());
        assert!(Contact::parse_element("<sip:a@b>;q").is_err());
        // RFC 4475 §3.3.12: unknownparam is a contact-param here
        let c = Contact::parse_element("<sip:user@example.com>;unknownparam").unwrap();
        assert!(c.name_addr().unwrap().params.contains("unknownparam"));
    }

    #[test]
    fn qvalues() {
        assert_eq!(parse_qvalue("0.33"), Ok(330));
        assert_eq!(parse_qvalue("1"), Ok(1000));
        assert_eq!(parse_qvalue("1.000"), Ok(1000));
        assert!(parse_qvalue("1.5").is_err());
        assert!(parse_qvalue("0.1234").is_err());
    }

    #[test]
    fn routes_need_brackets() {
        assert!(Route::parse_element("<sip:p.example.com;lr>").is_ok());
        assert!(Route::parse_element("sip:p.example.com").is_err());
    }
}
