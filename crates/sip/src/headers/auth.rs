//! Credentials and challenges: Authorization, Proxy-Authorization,
//! WWW-Authenticate, Proxy-Authenticate (RFC 3261 §22, RFC 8760, RFC 8898).
//!
//! One challenge or credentials value per header line, as SIP sends them:
//! `scheme LWS auth-param *(COMMA auth-param)` or `scheme LWS token68`
//! (e.g. `Bearer <token>`).

use super::{whole, TypedHeader};
use crate::name::HeaderKind;
use crate::params::unquote;
use crate::scan::{Cursor, Invalid, Scan};

/// A parsed credentials or challenge value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthValue<'a> {
    /// `Digest`, `Bearer`, ... (compare case-insensitively).
    pub scheme: &'a str,
    /// The `name=value` list as received (validated), empty for token68 forms.
    pub params_raw: &'a str,
    /// A token68 value (`Bearer` tokens), if the value is one.
    pub token68: Option<&'a str>,
}

impl<'a> AuthValue<'a> {
    pub fn parse(value: &'a str) -> Scan<AuthValue<'a>> {
        whole(value, parse_auth)
    }

    /// The parameters as `(name, raw value)`; quoted values keep quotes.
    pub fn params(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        AuthParamIter {
            c: Cursor::new(self.params_raw),
            first: true,
        }
    }

    /// A parameter's value with quotes removed (escapes untouched), by name
    /// (case-insensitive).
    pub fn param(&self, name: &str) -> Option<&'a str> {
        self.params()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| unquote(v))
    }

    pub fn is_scheme(&self, scheme: &str) -> bool {
        self.scheme.eq_ignore_ascii_case(scheme)
    }
}

fn parse_auth<'a>(c: &mut Cursor<'a>) -> Scan<AuthValue<'a>> {
    let scheme = c.token()?;
    if !c.skip_lws() {
        return Err(Invalid);
    }
    let start = c.pos();
    if let Ok(end) = auth_params(c) {
        c.skip_lws();
        if c.is_empty() {
            return Ok(AuthValue {
                scheme,
                params_raw: c.slice(start, end)?,
                token68: None,
            });
        }
    }
    // token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
    // Digest always uses parameters; only other schemes (Bearer) take token68.
    if scheme.eq_ignore_ascii_case("digest") {
        return Err(Invalid);
    }
    c.set_pos(start);
    let t = c.take_while(|b| {
        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
    });
    if t.is_empty() {
        return Err(Invalid);
    }
    c.take_while(|b| b == b'=');
    Ok(AuthValue {
        scheme,
        params_raw: "",
        token68: Some(c.slice(start, c.pos())?),
    })
}

/// `auth-param *(COMMA auth-param)`; returns the end offset.
fn auth_params(c: &mut Cursor<'_>) -> Scan<usize> {
    loop {
        c.token()?;
        c.expect_sep(b'=')?;
        if c.peek() == Some(b'"') {
            c.quoted_string()?;
        } else {
            c.token()?;
        }
        if !c.eat_sep(b',') {
            return Ok(c.pos());
        }
    }
}

struct AuthParamIter<'a> {
    c: Cursor<'a>,
    first: bool,
}

impl<'a> Iterator for AuthParamIter<'a> {
    type Item = (&'a str, &'a str);
    fn next(&mut self) -> Option<Self::Item> {
        if !self.first && !self.c.eat_sep(b',') {
            return None;
        }
        self.first = false;
        let name = self.c.token().ok()?;
        self.c.eat_sep(b'=');
        let start = self.c.pos();
        if self.c.peek() == Some(b'"') {
            self.c.quoted_string().ok()?;
        } else {
            self.c.token().ok()?;
        }
        Some((name, self.c.slice(start, self.c.pos()).ok()?))
    }
}

macro_rules! auth_header {
    ($(#[$doc:meta])* $ty:ident, $kind:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $ty<'a>(pub AuthValue<'a>);

        impl<'a> TypedHeader<'a> for $ty<'a> {
            const KIND: HeaderKind = HeaderKind::$kind;
            fn parse(value: &'a str) -> Scan<Self> {
                AuthValue::parse(value).map($ty)
            }
        }

        impl<'a> std::ops::Deref for $ty<'a> {
            type Target = AuthValue<'a>;
            fn deref(&self) -> &AuthValue<'a> {
                &self.0
            }
        }
    };
}

auth_header!(
    /// `Authorization` (credentials for a registrar or UAS). Several lines may
    /// be present (one per realm); read them with `Message::headers_of`.
    Authorization, Authorization);
auth_header!(
    /// `Proxy-Authorization`.
    ProxyAuthorization, ProxyAuthorization);
auth_header!(
    /// `WWW-Authenticate` (a challenge).
    WwwAuthenticate, WwwAuthenticate);
auth_header!(
    /// `Proxy-Authenticate`.
    ProxyAuthenticate, ProxyAuthenticate);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_credentials() {
        let a = AuthValue::parse(
            "Digest username=\"alice\", realm=\"example.com\",\r\n nonce=\"abc\", uri=\"sip:example.com\", \
             response=\"0123\", algorithm=SHA-256, qop=auth, nc=00000001, cnonce=\"x,y\"",
        )
        .unwrap();
        assert!(a.is_scheme("digest"));
        assert_eq!(a.param("username"), Some("alice"));
        assert_eq!(a.param("NC"), Some("00000001"));
        assert_eq!(a.param("cnonce"), Some("x,y"));
        assert_eq!(a.param("algorithm"), Some("SHA-256"));
        assert_eq!(a.params().count(), 9);
    }

    #[test]
    fn other_schemes() {
        let a = AuthValue::parse("NoOneKnowsThisScheme opaque-data=here").unwrap();
        assert_eq!(a.param("opaque-data"), Some("here"));
        let b = AuthValue::parse("Bearer eyJhbGciOi.eyJzdWIi.c2ln").unwrap();
        assert_eq!(b.token68, Some("eyJhbGciOi.eyJzdWIi.c2ln"));
        let b = AuthValue::parse("Bearer abc/def+g==").unwrap();
        assert_eq!(b.token68, Some("abc/def+g=="));
    }

    #[test]
    fn malformed() {
        for bad in [
            "Digest",
            "Digest username=",
            "Digest a=\"open",
            "Digest a=b,",
            "Digest a=b c=d",
            "username=x",
        ] {
            assert!(AuthValue::parse(bad).is_err(), "{bad}");
        }
    }
}
