//! The `Allow` header: a list of methods (may be empty).

use super::{whole, ListHeader};
use crate::method::Method;
use crate::name::HeaderKind;
use crate::scan::{Invalid, Scan};

/// One `Allow` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allow<'a>(pub Method<'a>);

impl<'a> ListHeader<'a> for Allow<'a> {
    const KIND: HeaderKind = HeaderKind::Allow;
    const ALLOW_EMPTY: bool = true;
    fn parse_element(element: &'a str) -> Scan<Self> {
        whole(element, |c| Method::parse(c.token()?).ok_or(Invalid)).map(Allow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow() {
        assert_eq!(Allow::parse_element("INVITE"), Ok(Allow(Method::Invite)));
        assert!(Allow::parse_element("IN VITE").is_err());
    }
}
