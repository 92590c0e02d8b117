//! Byte classes from the RFC 3261 grammar and a cursor over a header value that
//! understands linear white space (including folded lines).
//!
//! Every class accepts either all bytes >= 0x80 or none, so a cursor that stops at
//! the first byte outside a class always stops on a UTF-8 character boundary.

/// `token` characters (RFC 3261 §25.1): alphanum / "-" / "." / "!" / "%" / "*" /
/// "_" / "+" / "`" / "'" / "~". A table lookup: this is the parser's hottest test.
pub(crate) const fn is_token(b: u8) -> bool {
    TOKEN[b as usize]
}

static TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        i += 1;
    }
    t
};

/// `word` characters used by Call-ID (RFC 3261 §25.1).
pub(crate) const fn is_word(b: u8) -> bool {
    is_token(b)
        || matches!(
            b,
            b'(' | b')'
                | b'<'
                | b'>'
                | b':'
                | b'\\'
                | b'"'
                | b'/'
                | b'['
                | b']'
                | b'?'
                | b'{'
                | b'}'
        )
}

/// `unreserved` = alphanum / mark.
pub(crate) const fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        )
}

/// Characters of a SIP URI user part, escapes handled separately.
pub(crate) const fn is_user_char(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/')
}

/// Characters of a SIP URI password, escapes handled separately.
pub(crate) const fn is_password_char(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'&' | b'=' | b'+' | b'$' | b',')
}

/// `paramchar` minus escapes: param-unreserved / unreserved.
pub(crate) const fn is_uri_param_char(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$')
}

/// Header name/value characters of a URI `headers` component, escapes aside.
pub(crate) const fn is_uri_header_char(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$')
}

/// Characters allowed in the opaque part of an absolute URI (RFC 3986 `uric`-ish,
/// without the delimiters SIP headers use: space, `<`, `>`, `"`).
pub(crate) const fn is_uric(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b';' | b'/'
                | b'?'
                | b':'
                | b'@'
                | b'&'
                | b'='
                | b'+'
                | b'$'
                | b','
                | b'%'
                | b'#'
                | b'['
                | b']'
        )
}

pub(crate) const fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Input that does not follow the grammar of the element being parsed. Callers
/// that know the context map it to a precise [`crate::ParseError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid;

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("invalid syntax")
    }
}

impl std::error::Error for Invalid {}

/// Result of parsing one grammar element.
pub type Scan<T> = Result<T, Invalid>;

/// A cursor over one header value (or another `&str` slice of the message).
#[derive(Debug, Clone)]
pub(crate) struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(s: &'a str) -> Self {
        Cursor { s, pos: 0 }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn set_pos(&mut self, pos: usize) {
        self.pos = pos.min(self.s.len());
    }

    pub(crate) fn bytes(&self) -> &'a [u8] {
        self.s.as_bytes()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.s.len()
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.bytes().get(self.pos).copied()
    }

    pub(crate) fn peek_at(&self, off: usize) -> Option<u8> {
        self.bytes().get(self.pos + off).copied()
    }

    pub(crate) fn bump(&mut self) {
        if self.pos < self.s.len() {
            self.pos += 1;
        }
    }

    #[cfg(test)]
    pub(crate) fn rest(&self) -> &'a str {
        self.s.get(self.pos..).unwrap_or("")
    }

    /// A checked slice of the source; `Err` instead of a panic on a bad range.
    pub(crate) fn slice(&self, from: usize, to: usize) -> Scan<&'a str> {
        self.s.get(from..to).ok_or(Invalid)
    }

    /// Skips `LWS`: spaces, tabs and line folds (CRLF followed by SP/HT).
    /// Returns whether anything was skipped.
    pub(crate) fn skip_lws(&mut self) -> bool {
        let start = self.pos;
        let b = self.bytes();
        loop {
            match b.get(self.pos) {
                Some(b' ' | b'\t') => self.pos += 1,
                Some(b'\r')
                    if b.get(self.pos + 1) == Some(&b'\n')
                        && b.get(self.pos + 2).is_some_and(|&c| is_wsp(c)) =>
                {
                    self.pos += 3
                }
                _ => break,
            }
        }
        self.pos != start
    }

    /// Consumes `c` if it is next (no white space skipped).
    pub(crate) fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// `SWS c SWS`: the separators of the grammar (SEMI, EQUAL, COMMA, SLASH, COLON).
    pub(crate) fn eat_sep(&mut self, c: u8) -> bool {
        let save = self.pos;
        self.skip_lws();
        if self.eat(c) {
            self.skip_lws();
            true
        } else {
            self.pos = save;
            false
        }
    }

    pub(crate) fn expect_sep(&mut self, c: u8) -> Scan<()> {
        if self.eat_sep(c) {
            Ok(())
        } else {
            Err(Invalid)
        }
    }

    /// Consumes the longest run of bytes in `class`; may be empty.
    pub(crate) fn take_while(&mut self, class: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&class) {
            self.pos += 1;
        }
        self.s.get(start..self.pos).unwrap_or("")
    }

    /// One or more `token` characters.
    pub(crate) fn token(&mut self) -> Scan<&'a str> {
        let t = self.take_while(is_token);
        if t.is_empty() {
            Err(Invalid)
        } else {
            Ok(t)
        }
    }

    /// A run of bytes in `class` that may also contain `%HEX HEX` escapes.
    pub(crate) fn escaped_run(&mut self, class: impl Fn(u8) -> bool) -> Scan<&'a str> {
        let start = self.pos;
        loop {
            match self.peek() {
                Some(b'%') => {
                    let ok = self.peek_at(1).is_some_and(|c| c.is_ascii_hexdigit())
                        && self.peek_at(2).is_some_and(|c| c.is_ascii_hexdigit());
                    if !ok {
                        return Err(Invalid);
                    }
                    self.pos += 3;
                }
                Some(c) if class(c) => self.pos += 1,
                _ => break,
            }
        }
        self.slice(start, self.pos)
    }

    /// A `quoted-string`; returns it including the quotes. Inside, `qdtext` allows
    /// LWS, printable ASCII but `"` and `\`, and UTF-8; `quoted-pair` escapes any
    /// byte but CR and LF.
    pub(crate) fn quoted_string(&mut self) -> Scan<&'a str> {
        let start = self.pos;
        if !self.eat(b'"') {
            return Err(Invalid);
        }
        let b = self.bytes();
        loop {
            match b.get(self.pos) {
                None => return Err(Invalid),
                Some(b'"') => {
                    self.pos += 1;
                    return self.slice(start, self.pos);
                }
                Some(b'\\') => match b.get(self.pos + 1) {
                    Some(&c) if c != b'\r' && c != b'\n' && c < 0x80 => self.pos += 2,
                    _ => return Err(Invalid),
                },
                Some(b'\r') => {
                    if !self.skip_lws() {
                        return Err(Invalid);
                    }
                }
                Some(&c) if c >= 0x20 && c != 0x7f || c == b'\t' => self.pos += 1,
                Some(_) => return Err(Invalid),
            }
        }
    }

    /// Parses a run of decimal digits into a `u64`, rejecting overflow beyond `max`.
    /// Leading zeros are allowed; at most 20 digits are examined before giving up.
    pub(crate) fn number(&mut self, max: u64) -> Scan<u64> {
        let digits = self.take_while(|c| c.is_ascii_digit());
        parse_decimal(digits.as_bytes(), max)
    }
}

/// Strict decimal: 1+ ASCII digits, value <= `max`.
pub(crate) fn parse_decimal(digits: &[u8], max: u64) -> Scan<u64> {
    if digits.is_empty() {
        return Err(Invalid);
    }
    let mut v: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(Invalid);
        }
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(d - b'0')))
            .ok_or(Invalid)?;
        if v > max {
            return Err(Invalid);
        }
    }
    Ok(v)
}

/// Splits a header value into its comma-separated elements, honouring quoted
/// strings, `<...>` and comments. Yields `(start, end)` offsets of each element with
/// surrounding LWS trimmed. An empty element is reported as an empty range so that
/// callers reject it.
#[derive(Debug, Clone)]
pub(crate) struct CommaSplit<'a> {
    b: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> CommaSplit<'a> {
    pub(crate) fn new(s: &'a str) -> Self {
        CommaSplit {
            b: s.as_bytes(),
            pos: 0,
            done: false,
        }
    }
}

impl Iterator for CommaSplit<'_> {
    /// `Ok((start, end))`, or `Err(Invalid)` for an unbalanced quote or bracket.
    type Item = Scan<(usize, usize)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let start = self.pos;
        let mut in_quote = false;
        let mut in_angle = false;
        let mut depth = 0u32;
        let mut i = self.pos;
        while i < self.b.len() {
            let c = self.b[i];
            if !in_quote && !in_angle && depth == 0 {
                // Outside any nesting only four bytes matter: jump to the next one.
                let rest = &self.b[i..];
                let special = memchr::memchr3(b',', b'"', b'<', rest);
                let paren = memchr::memchr(b'(', &rest[..special.unwrap_or(rest.len())]);
                match paren.or(special) {
                    None => {
                        i = self.b.len();
                        break;
                    }
                    Some(off) => i += off,
                }
                match self.b[i] {
                    b'"' => in_quote = true,
                    b'<' => in_angle = true,
                    b'(' => depth = 1,
                    _ => break, // ','
                }
            } else if in_quote {
                match c {
                    b'\\' => i += 1,
                    b'"' => in_quote = false,
                    _ => {}
                }
            } else if in_angle {
                if c == b'>' {
                    in_angle = false;
                }
            } else {
                match c {
                    b'\\' => i += 1,
                    b'(' => depth += 1,
                    b')' => depth -= 1,
                    _ => {}
                }
            }
            i += 1;
        }
        if in_quote || in_angle || depth > 0 {
            self.done = true;
            return Some(Err(Invalid));
        }
        let end = i.min(self.b.len());
        if i >= self.b.len() {
            self.done = true;
        } else {
            self.pos = i + 1;
        }
        Some(Ok(trim_lws(self.b, start, end)))
    }
}

/// Trims SP, HT, CR and LF from both ends of `b[start..end]`.
pub(crate) fn trim_lws(b: &[u8], mut start: usize, mut end: usize) -> (usize, usize) {
    while start < end && matches!(b[start], b' ' | b'\t' | b'\r' | b'\n') {
        start += 1;
    }
    while end > start && matches!(b[end - 1], b' ' | b'\t' | b'\r' | b'\n') {
        end -= 1;
    }
    (start, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lws_skips_folds_but_not_bare_crlf() {
        let mut c = Cursor::new(" \t\r\n  x\r\ny");
        assert!(c.skip_lws());
        assert_eq!(c.peek(), Some(b'x'));
        c.bump();
        assert!(!c.skip_lws());
        assert_eq!(c.peek(), Some(b'\r'));
    }

    #[test]
    fn quoted_string_rules() {
        assert_eq!(Cursor::new(r#""a\"b" x"#).quoted_string(), Ok(r#""a\"b""#));
        assert!(Cursor::new(r#""unterminated"#).quoted_string().is_err());
        assert!(Cursor::new("\"bare\rcr\"").quoted_string().is_err());
        assert_eq!(
            Cursor::new("\"\\\u{0}\"").quoted_string(),
            Ok("\"\\\u{0}\"")
        );
        assert_eq!(
            Cursor::new("\"fol\r\n d\"").quoted_string(),
            Ok("\"fol\r\n d\"")
        );
        assert_eq!(
            Cursor::new("\"caf\u{e9}\"").quoted_string(),
            Ok("\"caf\u{e9}\"")
        );
    }

    #[test]
    fn decimal_limits() {
        assert_eq!(parse_decimal(b"0009", 100), Ok(9));
        assert!(parse_decimal(b"4294967296", u64::from(u32::MAX)).is_err());
        assert!(parse_decimal(b"99999999999999999999999", u64::MAX).is_err());
        assert!(parse_decimal(b"", 10).is_err());
        assert!(parse_decimal(b"-1", 10).is_err());
    }

    #[test]
    fn comma_split_respects_quotes_and_angles() {
        let s = r#""a, b" <sip:x;p=1,2>, <sip:y> ,z"#;
        let parts: Vec<_> = CommaSplit::new(s)
            .map(|r| r.map(|(a, b)| &s[a..b]))
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(parts, vec![r#""a, b" <sip:x;p=1,2>"#, "<sip:y>", "z"]);
        assert!(CommaSplit::new("\"open").any(|r| r.is_err()));
        let empties: Vec<_> = CommaSplit::new("a,,b").collect();
        assert_eq!(empties[1], Ok((2, 2)));
    }

    #[test]
    fn escapes_are_checked() {
        assert_eq!(
            Cursor::new("a%20b c").escaped_run(is_user_char),
            Ok("a%20b")
        );
        assert!(Cursor::new("a%2").escaped_run(is_user_char).is_err());
        assert!(Cursor::new("a%zz").escaped_run(is_user_char).is_err());
    }
}
