//! URIs: `sip:`/`sips:` (RFC 3261 §19.1), `tel:` (RFC 3966), and any other scheme
//! as an opaque absolute URI (RFC 3986 form, not interpreted).

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::params::{parse_params, ParamSyntax, Params};
use crate::scan::{
    is_password_char, is_uri_header_char, is_uric, is_user_char, Cursor, Invalid, Scan,
};

/// A parsed URI, borrowing from the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uri<'a> {
    Sip(SipUri<'a>),
    Tel(TelUri<'a>),
    /// A scheme this stack does not interpret (`http:`, `mailto:`, `urn:` ...).
    Absolute(AbsoluteUri<'a>),
}

/// `sip:` or `sips:` URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SipUri<'a> {
    /// `sips:`
    pub secure: bool,
    /// The user part, still %-escaped.
    pub user: Option<&'a str>,
    pub password: Option<&'a str>,
    pub host: Host<'a>,
    pub port: Option<u16>,
    pub params: Params<'a>,
    /// The `?headers` component without the `?`, still escaped.
    pub headers: Option<&'a str>,
    /// The whole URI as received.
    pub raw: &'a str,
}

/// `tel:` URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelUri<'a> {
    /// The number including a leading `+` for global numbers, visual separators kept.
    pub number: &'a str,
    pub params: Params<'a>,
    pub raw: &'a str,
}

/// Any other absolute URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbsoluteUri<'a> {
    pub scheme: &'a str,
    /// Everything after `scheme:`.
    pub rest: &'a str,
}

/// The host of a SIP URI or a Via sent-by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host<'a> {
    /// A DNS name as received (compare case-insensitively).
    Name(&'a str),
    V4(Ipv4Addr),
    /// From an IPv6 reference `[...]`.
    V6(Ipv6Addr),
}

impl std::fmt::Display for Host<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::V4(a) => write!(f, "{a}"),
            Host::V6(a) => write!(f, "[{a}]"),
        }
    }
}

/// Where a URI is written: in a Request-URI or between `<>` it runs to the end of
/// its text; written bare in a header (addr-spec) it ends before `;`, `,`, `?` or
/// white space, whose meaning then belongs to the header (RFC 3261 §20).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UriContext {
    Whole,
    Bare,
}

impl<'a> Uri<'a> {
    /// Parses a complete URI (all of `s`).
    pub fn parse(s: &'a str) -> Scan<Uri<'a>> {
        let mut c = Cursor::new(s);
        let u = parse_uri(&mut c, UriContext::Whole)?;
        if c.is_empty() {
            Ok(u)
        } else {
            Err(Invalid)
        }
    }

    /// The scheme, lower-case for the known ones.
    pub fn scheme(&self) -> &'a str {
        match self {
            Uri::Sip(u) if u.secure => "sips",
            Uri::Sip(_) => "sip",
            Uri::Tel(_) => "tel",
            Uri::Absolute(a) => a.scheme,
        }
    }

    /// Whether a SIP URI carries a `?headers` component.
    pub fn has_headers(&self) -> bool {
        matches!(
            self,
            Uri::Sip(SipUri {
                headers: Some(_),
                ..
            })
        )
    }

    pub fn as_sip(&self) -> Option<&SipUri<'a>> {
        match self {
            Uri::Sip(u) => Some(u),
            _ => None,
        }
    }
}

pub(crate) fn parse_uri<'a>(c: &mut Cursor<'a>, ctx: UriContext) -> Scan<Uri<'a>> {
    let start = c.pos();
    let scheme = c.take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if scheme.is_empty() || !scheme.as_bytes()[0].is_ascii_alphabetic() || !c.eat(b':') {
        return Err(Invalid);
    }
    if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
        parse_sip(c, start, scheme.len() == 4, ctx).map(Uri::Sip)
    } else if scheme.eq_ignore_ascii_case("tel") {
        parse_tel(c, start, ctx).map(Uri::Tel)
    } else {
        let rest_start = c.pos();
        let stop =
            |b: u8| is_uric(b) && !(ctx == UriContext::Bare && matches!(b, b';' | b',' | b'?'));
        loop {
            match c.peek() {
                Some(b'%') => {
                    c.escaped_run(|_| false)?;
                }
                Some(b) if stop(b) => c.bump(),
                _ => break,
            }
        }
        if c.pos() == rest_start {
            return Err(Invalid);
        }
        Ok(Uri::Absolute(AbsoluteUri {
            scheme,
            rest: c.slice(rest_start, c.pos())?,
        }))
    }
}

fn parse_sip<'a>(
    c: &mut Cursor<'a>,
    start: usize,
    secure: bool,
    ctx: UriContext,
) -> Scan<SipUri<'a>> {
    // userinfo: present iff an '@' occurs before the end of this URI's text. '@' is
    // not allowed unescaped anywhere else in a SIP URI.
    let here = c.pos();
    let text_end = c.bytes()[here..]
        .iter()
        .position(|&b| {
            matches!(b, b'>' | b' ' | b'\t' | b'\r')
                || (ctx == UriContext::Bare && matches!(b, b';' | b','))
        })
        .map_or(c.bytes().len(), |p| here + p);
    let has_userinfo = c.bytes()[here..text_end].contains(&b'@');
    let (mut user, mut password) = (None, None);
    if has_userinfo {
        let u = c.escaped_run(is_user_char)?;
        if u.is_empty() {
            return Err(Invalid);
        }
        user = Some(u);
        if c.eat(b':') {
            password = Some(c.escaped_run(is_password_char)?);
        }
        if !c.eat(b'@') {
            return Err(Invalid);
        }
    }
    let (host, port) = parse_hostport(c)?;
    let params = match ctx {
        UriContext::Whole => parse_params(c, ParamSyntax::Uri)?,
        UriContext::Bare => Params::default(),
    };
    let mut headers = None;
    if ctx == UriContext::Whole && c.eat(b'?') {
        let hs = c.pos();
        loop {
            if c.escaped_run(is_uri_header_char)?.is_empty() || !c.eat(b'=') {
                return Err(Invalid);
            }
            c.escaped_run(is_uri_header_char)?;
            if !c.eat(b'&') {
                break;
            }
        }
        headers = Some(c.slice(hs, c.pos())?);
    }
    Ok(SipUri {
        secure,
        user,
        password,
        host,
        port,
        params,
        headers,
        raw: c.slice(start, c.pos())?,
    })
}

fn parse_tel<'a>(c: &mut Cursor<'a>, start: usize, ctx: UriContext) -> Scan<TelUri<'a>> {
    let number = c.take_while(|b| {
        b.is_ascii_hexdigit() || matches!(b, b'*' | b'#' | b'-' | b'.' | b'(' | b')' | b'+')
    });
    let digits = number.bytes().filter(u8::is_ascii_digit).count();
    let global = number.starts_with('+');
    if digits == 0 || (global && number[1..].contains('+')) || (!global && number.contains('+')) {
        return Err(Invalid);
    }
    let params = match ctx {
        UriContext::Whole => parse_params(c, ParamSyntax::Uri)?,
        UriContext::Bare => Params::default(),
    };
    if !global && !params.contains("phone-context") {
        return Err(Invalid);
    }
    Ok(TelUri {
        number,
        params,
        raw: c.slice(start, c.pos())?,
    })
}

/// `host [":" port]` with RFC 5118 IPv6 references.
pub(crate) fn parse_hostport<'a>(c: &mut Cursor<'a>) -> Scan<(Host<'a>, Option<u16>)> {
    let host = parse_host(c)?;
    let port = if c.eat(b':') {
        Some(parse_port(c)?)
    } else {
        None
    };
    Ok((host, port))
}

pub(crate) fn parse_port(c: &mut Cursor<'_>) -> Scan<u16> {
    let digits = c.take_while(|b| b.is_ascii_digit());
    crate::scan::parse_decimal(digits.as_bytes(), 65535).map(|p| p as u16)
}

pub(crate) fn parse_host<'a>(c: &mut Cursor<'a>) -> Scan<Host<'a>> {
    if c.eat(b'[') {
        let inner = c.take_while(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        if !c.eat(b']') {
            return Err(Invalid);
        }
        return inner.parse::<Ipv6Addr>().map(Host::V6).map_err(|_| Invalid);
    }
    let name = c.take_while(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    parse_host_text(name)
}

/// Dotted-quad IPv4: four decimal octets, no leading zeros (as `std` parses
/// them), written out because it is on the hot path of every Via and URI.
fn parse_ipv4(b: &[u8]) -> Scan<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = b.split(|&c| c == b'.');
    for o in &mut octets {
        let p = parts.next().ok_or(Invalid)?;
        if p.is_empty() || p.len() > 3 || (p.len() > 1 && p[0] == b'0') {
            return Err(Invalid);
        }
        *o = u8::try_from(crate::scan::parse_decimal(p, 255)?).map_err(|_| Invalid)?;
    }
    if parts.next().is_some() {
        return Err(Invalid);
    }
    Ok(Ipv4Addr::from(octets))
}

/// A hostname or dotted IPv4 address, all of `name`: labels of alphanumerics and
/// inner hyphens, at most 63 bytes each, the last starting with a letter; one
/// trailing dot allowed.
pub(crate) fn parse_host_text(name: &str) -> Scan<Host<'_>> {
    let b = name.as_bytes();
    if b.is_empty() {
        return Err(Invalid);
    }
    let body = b.strip_suffix(b".").unwrap_or(b);
    let (mut label_start, mut all_digits) = (0usize, true);
    let mut last_label_first = 0u8;
    for (i, &c) in body.iter().enumerate() {
        if c == b'.' {
            if i == label_start || body[i - 1] == b'-' {
                return Err(Invalid);
            }
            label_start = i + 1;
        } else {
            if i == label_start {
                if c == b'-' {
                    return Err(Invalid);
                }
                last_label_first = c;
            }
            if i - label_start >= 63 {
                return Err(Invalid);
            }
            all_digits &= c.is_ascii_digit();
        }
    }
    if all_digits {
        return parse_ipv4(b).map(Host::V4);
    }
    if label_start >= body.len()
        || body[body.len() - 1] == b'-'
        || !last_label_first.is_ascii_alphabetic()
    {
        return Err(Invalid);
    }
    Ok(Host::Name(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sip(s: &str) -> SipUri<'_> {
        match Uri::parse(s) {
            Ok(Uri::Sip(u)) => u,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn sip_uri_parts() {
        let u = sip("sips:alice:secret@Example.COM:5061;transport=tcp;lr?Subject=hi&X=");
        assert!(u.secure);
        assert_eq!(u.user, Some("alice"));
        assert_eq!(u.password, Some("secret"));
        assert_eq!(u.host, Host::Name("Example.COM"));
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.params.get("transport"), Some(Some("tcp")));
        assert!(u.params.contains("lr"));
        assert_eq!(u.headers, Some("Subject=hi&X="));
    }

    #[test]
    fn torture_user_parts() {
        // RFC 4475 §3.1.1.2 Request-URI
        let u = sip("sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com");
        assert_eq!(
            u.user,
            Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
        );
        assert_eq!(
            u.password,
            Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
        );
        // §3.1.1.9 semicolons in the user part
        assert_eq!(
            sip("sip:user;par=u%40example.net@example.com").user,
            Some("user;par=u%40example.net")
        );
        // §3.1.1.4 escaped nulls
        assert_eq!(
            sip("sip:null-%00-null@example.com").user,
            Some("null-%00-null")
        );
    }

    #[test]
    fn ipv6_references() {
        assert_eq!(
            sip("sip:[2001:db8::10]").host,
            Host::V6("2001:db8::10".parse().unwrap())
        );
        // RFC 5118 §4.3: no port hidden inside the brackets
        let u = sip("sip:[2001:db8::10:5070]");
        assert_eq!(
            (u.host, u.port),
            (Host::V6("2001:db8::10:5070".parse().unwrap()), None)
        );
        let u = sip("sip:user@[2001:db8::10]:5070");
        assert_eq!(u.port, Some(5070));
        assert!(Uri::parse("sip:2001:db8::10").is_err());
        assert!(Uri::parse("sip:[2001:db8:::192.0.2.1]").is_err());
        assert!(Uri::parse("sip:[2001:db8::192.0.2.1]").is_ok());
        assert!(Uri::parse("sip:[::ffff:192.0.2.1]").is_ok());
    }

    #[test]
    fn ipv4_forms() {
        assert_eq!(
            parse_ipv4(b"192.0.2.255"),
            Ok(Ipv4Addr::new(192, 0, 2, 255))
        );
        for bad in [
            &b"192.0.2"[..],
            b"192.0.2.1.5",
            b"192.0.02.1",
            b"1..2.3",
            b"256.1.1.1",
            b"1.2.3.",
            b"",
        ] {
            assert!(parse_ipv4(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse_ipv4(b"0.0.0.0"), Ok(Ipv4Addr::UNSPECIFIED));
    }

    #[test]
    fn hosts_and_ports() {
        assert_eq!(
            sip("sip:192.0.2.1:5060").host,
            Host::V4([192, 0, 2, 1].into())
        );
        assert!(Uri::parse("sip:192.0.2.300").is_err());
        assert!(Uri::parse("sip:host:").is_err());
        assert!(Uri::parse("sip:host:65536").is_err());
        assert!(Uri::parse("sip:-bad.example.com").is_err());
        assert!(Uri::parse("sip:a..b").is_err());
        assert!(Uri::parse("sip:example.123").is_err());
        assert!(Uri::parse("sip:example.com.").is_ok());
        assert!(Uri::parse("sip:@example.com").is_err());
        assert!(Uri::parse("sip:a@b@example.com").is_err());
        assert!(Uri::parse("sip:user@example.com; lr").is_err());
        assert!(Uri::parse("sip:a%4@example.com").is_err());
    }

    #[test]
    fn tel_and_absolute() {
        match Uri::parse("tel:+1-201-555-0123;ext=1") {
            Ok(Uri::Tel(t)) => assert_eq!(t.number, "+1-201-555-0123"),
            other => panic!("{other:?}"),
        }
        assert!(Uri::parse("tel:7042;phone-context=example.com").is_ok());
        assert!(Uri::parse("tel:7042").is_err());
        match Uri::parse("soap.beep://192.0.2.103:3002") {
            Ok(Uri::Absolute(a)) => {
                assert_eq!((a.scheme, a.rest), ("soap.beep", "//192.0.2.103:3002"))
            }
            other => panic!("{other:?}"),
        }
        assert!(Uri::parse("<sip:a@b>").is_err());
        assert!(Uri::parse("9sip:x").is_err());
        assert!(Uri::parse("nobodyknows:").is_err());
    }

    #[test]
    fn bare_context_stops_at_header_delimiters() {
        let mut c = Cursor::new("sip:user@example.com;tag=1");
        let u = parse_uri(&mut c, UriContext::Bare).unwrap();
        assert_eq!(u.as_sip().unwrap().raw, "sip:user@example.com");
        assert_eq!(c.rest(), ";tag=1");
    }
}
