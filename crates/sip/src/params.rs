//! `;name[=value]` parameter lists, shared by URIs and headers. A `Params` is
//! validated when its owner is parsed and iterated lazily afterwards, so looking up
//! a parameter allocates nothing.

use crate::scan::{Cursor, Invalid, Scan};

/// A validated parameter list, kept as the raw text starting at the first `;`
/// (empty when there are none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Params<'a> {
    raw: &'a str,
}

/// One parameter: its name and raw value (quoted strings keep their quotes and
/// escapes; see [`unquote`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param<'a> {
    pub name: &'a str,
    pub value: Option<&'a str>,
}

impl<'a> Params<'a> {
    pub(crate) fn from_raw(raw: &'a str) -> Self {
        Params { raw }
    }

    /// The raw text, `""` or starting with `;`.
    pub fn as_str(&self) -> &'a str {
        self.raw
    }

    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    pub fn iter(&self) -> ParamIter<'a> {
        ParamIter {
            c: Cursor::new(self.raw),
        }
    }

    /// The first parameter named `name` (case-insensitive): `Some(None)` when it is
    /// present without a value.
    pub fn get(&self, name: &str) -> Option<Option<&'a str>> {
        self.iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .map(|p| p.value)
    }

    /// Whether a parameter named `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

impl<'a> IntoIterator for Params<'a> {
    type Item = Param<'a>;
    type IntoIter = ParamIter<'a>;
    fn into_iter(self) -> ParamIter<'a> {
        self.iter()
    }
}

/// Iterator over a validated [`Params`].
#[derive(Debug, Clone)]
pub struct ParamIter<'a> {
    c: Cursor<'a>,
}

impl<'a> Iterator for ParamIter<'a> {
    type Item = Param<'a>;

    fn next(&mut self) -> Option<Param<'a>> {
        if !self.c.eat_sep(b';') {
            return None;
        }
        let start = self.c.pos();
        let b = self.c.bytes();
        let mut i = start;
        while i < b.len() && !matches!(b[i], b'=' | b';' | b' ' | b'\t' | b'\r') {
            i += 1;
        }
        let name = self.c.slice(start, i).ok()?;
        self.c.set_pos(i);
        let value = if self.c.eat_sep(b'=') {
            let vstart = self.c.pos();
            if self.c.peek() == Some(b'"') {
                let _ = self.c.quoted_string();
            } else {
                let b = self.c.bytes();
                let mut j = vstart;
                while j < b.len() && !matches!(b[j], b';' | b' ' | b'\t' | b'\r') {
                    j += 1;
                }
                self.c.set_pos(j);
            }
            self.c.slice(vstart, self.c.pos()).ok()
        } else {
            None
        };
        Some(Param { name, value })
    }
}

/// Which characters a parameter list admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParamSyntax {
    /// URI parameters: `paramchar` with escapes, no white space, no quotes.
    Uri,
    /// Header `generic-param`: token names, token / host / quoted-string values, LWS
    /// around `;` and `=`.
    Header,
}

/// Consumes a parameter list at the cursor and returns it. Stops before anything
/// that is not `;` (after optional LWS for header syntax).
pub(crate) fn parse_params<'a>(c: &mut Cursor<'a>, syntax: ParamSyntax) -> Scan<Params<'a>> {
    parse_params_checked(c, syntax, |_| Ok(()))
}

/// Like [`parse_params`], calling `check` on each parameter as it is read, so
/// that headers with typed parameters (Via's branch, rport, received...) are
/// validated in the same pass.
pub(crate) fn parse_params_checked<'a>(
    c: &mut Cursor<'a>,
    syntax: ParamSyntax,
    mut check: impl FnMut(Param<'a>) -> Scan<()>,
) -> Scan<Params<'a>> {
    let start = c.pos();
    let mut end = start;
    loop {
        let more = match syntax {
            ParamSyntax::Uri => c.eat(b';'),
            ParamSyntax::Header => c.eat_sep(b';'),
        };
        if !more {
            c.set_pos(end);
            break;
        }
        match syntax {
            ParamSyntax::Uri => {
                let name = c
                    .escaped_run(crate::scan::is_uri_param_char)
                    .and_then(non_empty)?;
                let value = if c.eat(b'=') {
                    Some(
                        c.escaped_run(crate::scan::is_uri_param_char)
                            .and_then(non_empty)?,
                    )
                } else {
                    None
                };
                check(Param { name, value })?;
            }
            ParamSyntax::Header => {
                let name = c.token()?;
                let value = if c.eat_sep(b'=') {
                    if c.peek() == Some(b'"') {
                        Some(c.quoted_string()?)
                    } else {
                        // gen-value = token / host; host adds ':' and '[' ']' for IPv6.
                        let v = c.take_while(|b| {
                            crate::scan::is_token(b) || matches!(b, b':' | b'[' | b']')
                        });
                        Some(non_empty(v)?)
                    }
                } else {
                    None
                };
                check(Param { name, value })?;
            }
        }
        end = c.pos();
    }
    // Hand back the raw slice, from the first ';' (leading LWS excluded).
    let raw = c.slice(start, end)?;
    let trimmed = raw.trim_start_matches([' ', '\t', '\r', '\n']);
    Ok(Params::from_raw(trimmed))
}

fn non_empty(s: &str) -> Scan<&str> {
    if s.is_empty() {
        Err(Invalid)
    } else {
        Ok(s)
    }
}

/// The content of a quoted string without its quotes; escapes are kept as they are
/// (`\"` stays two bytes). Unquoted input is returned unchanged.
pub fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(s: &str) -> Scan<(Params<'_>, usize)> {
        let mut c = Cursor::new(s);
        let p = parse_params(&mut c, ParamSyntax::Header)?;
        Ok((p, c.pos()))
    }

    #[test]
    fn header_params_with_lws() {
        let (p, end) = header(" ;\r\n  tag = 98asjd8 ; q=0.5;lr").unwrap();
        assert_eq!(end, 30);
        assert_eq!(p.get("TAG"), Some(Some("98asjd8")));
        assert_eq!(p.get("q"), Some(Some("0.5")));
        assert_eq!(p.get("lr"), Some(None));
        assert_eq!(p.get("x"), None);
    }

    #[test]
    fn header_params_quoted_and_ipv6() {
        let (p, _) = header(r#";+sip.instance="<urn:uuid:1;x>";received=[2001:db8::9]"#).unwrap();
        assert_eq!(
            p.get("+sip.instance").flatten().map(unquote),
            Some("<urn:uuid:1;x>")
        );
        assert_eq!(p.get("received"), Some(Some("[2001:db8::9]")));
    }

    #[test]
    fn empty_params_rejected() {
        assert!(header(";;").is_err());
        assert!(header(";a=").is_err());
        assert!(header("; =b").is_err());
    }

    #[test]
    fn uri_params() {
        let mut c = Cursor::new(";lr;transport=tcp;x=%41>");
        let p = parse_params(&mut c, ParamSyntax::Uri).unwrap();
        assert_eq!(c.rest(), ">");
        assert_eq!(p.iter().count(), 3);
        assert_eq!(p.get("transport"), Some(Some("tcp")));
        let mut c = Cursor::new("; lr");
        assert!(parse_params(&mut c, ParamSyntax::Uri).is_err());
    }

    #[test]
    fn stops_before_non_param() {
        let (p, end) = header(";a=1 , next").unwrap();
        assert_eq!(p.as_str(), ";a=1");
        assert_eq!(end, 4);
    }
}
