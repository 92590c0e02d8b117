//! `User-Agent` and `Server`: `server-val *(LWS server-val)`, where a server-val is
//! a product (`token ["/" version]`) or a comment (`( ... )`, nesting allowed up
//! to a fixed depth).

use super::TypedHeader;
use crate::name::HeaderKind;
use crate::scan::{Cursor, Invalid, Scan};

/// Deepest comment nesting accepted; deeper input is refused, not recursed into.
const MAX_COMMENT_DEPTH: u32 = 8;

/// One element of a product list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Product<'a> {
    Product {
        name: &'a str,
        version: Option<&'a str>,
    },
    /// A comment, including its parentheses.
    Comment(&'a str),
}

/// Iterator over a validated product list.
#[derive(Debug, Clone)]
pub struct ProductIter<'a> {
    c: Cursor<'a>,
}

impl<'a> Iterator for ProductIter<'a> {
    type Item = Product<'a>;
    fn next(&mut self) -> Option<Product<'a>> {
        self.c.skip_lws();
        next_product(&mut self.c).ok()
    }
}

fn next_product<'a>(c: &mut Cursor<'a>) -> Scan<Product<'a>> {
    if c.peek() == Some(b'(') {
        let start = c.pos();
        comment(c)?;
        return Ok(Product::Comment(c.slice(start, c.pos())?));
    }
    let name = c.token()?;
    let version = if c.eat_sep(b'/') {
        Some(c.token()?)
    } else {
        None
    };
    Ok(Product::Product { name, version })
}

fn comment(c: &mut Cursor<'_>) -> Scan<()> {
    let mut depth = 0u32;
    loop {
        match c.peek() {
            Some(b'(') => {
                depth += 1;
                if depth > MAX_COMMENT_DEPTH {
                    return Err(Invalid);
                }
                c.bump();
            }
            Some(b')') => {
                c.bump();
                depth = depth.checked_sub(1).ok_or(Invalid)?;
                if depth == 0 {
                    return Ok(());
                }
            }
            Some(b'\\') => {
                c.bump();
                match c.peek() {
                    Some(b'\r' | b'\n') | None => return Err(Invalid),
                    Some(_) => c.bump(),
                }
            }
            Some(b'\r') => {
                if !c.skip_lws() {
                    return Err(Invalid);
                }
            }
            Some(b) if b >= 0x20 && b != 0x7f || b == b'\t' => c.bump(),
            _ => return Err(Invalid),
        }
    }
}

fn validate(value: &str) -> Scan<&str> {
    let mut c = Cursor::new(value);
    c.skip_lws();
    next_product(&mut c)?;
    loop {
        let had_lws = c.skip_lws();
        if c.is_empty() {
            return Ok(value);
        }
        // Comments may follow a product without white space.
        if !had_lws && c.peek() != Some(b'(') {
            return Err(Invalid);
        }
        next_product(&mut c)?;
    }
}

macro_rules! product_header {
    ($(#[$doc:meta])* $ty:ident, $kind:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $ty<'a>(pub &'a str);

        impl<'a> $ty<'a> {
            pub fn products(&self) -> ProductIter<'a> {
                ProductIter { c: Cursor::new(self.0) }
            }
        }

        impl<'a> TypedHeader<'a> for $ty<'a> {
            const KIND: HeaderKind = HeaderKind::$kind;
            fn parse(value: &'a str) -> Scan<Self> {
                validate(value).map($ty)
            }
        }
    };
}

product_header!(
    /// The `User-Agent` header.
    UserAgent, UserAgent);
product_header!(
    /// The `Server` header.
    Server, Server);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_and_comments() {
        let ua = UserAgent::parse("baresip v3.10.1 (x86_64/Linux)").unwrap();
        let v: Vec<_> = ua.products().collect();
        assert_eq!(
            v[0],
            Product::Product {
                name: "baresip",
                version: None
            }
        );
        assert_eq!(v[2], Product::Comment("(x86_64/Linux)"));
        let ua = UserAgent::parse("Linphone/5.2.0(belle-sip/5.2.0) (nested (ok))").unwrap();
        assert_eq!(
            ua.products().next(),
            Some(Product::Product {
                name: "Linphone",
                version: Some("5.2.0")
            })
        );
        assert!(UserAgent::parse("(unclosed").is_err());
        assert!(UserAgent::parse(&"(".repeat(20)).is_err());
        assert!(UserAgent::parse("a/").is_err());
        assert!(UserAgent::parse("").is_err());
    }
}
