//! Option-tag lists: Supported, Require, Proxy-Require, Unsupported.

use super::{whole, ListHeader};
use crate::name::HeaderKind;
use crate::scan::Scan;

macro_rules! option_tags {
    ($(#[$doc:meta])* $ty:ident, $kind:ident, $empty:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $ty<'a>(pub &'a str);

        impl<'a> ListHeader<'a> for $ty<'a> {
            const KIND: HeaderKind = HeaderKind::$kind;
            const ALLOW_EMPTY: bool = $empty;
            fn parse_element(element: &'a str) -> Scan<Self> {
                whole(element, |c| c.token()).map($ty)
            }
        }
    };
}

option_tags!(
    /// One `Supported` option tag (the header may be empty).
    Supported, Supported, true);
option_tags!(
    /// One `Require` option tag.
    Require, Require, false);
option_tags!(
    /// One `Proxy-Require` option tag.
    ProxyRequire, ProxyRequire, false);
option_tags!(
    /// One `Unsupported` option tag.
    Unsupported, Unsupported, false);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        assert_eq!(Require::parse_element("100rel"), Ok(Require("100rel")));
        assert!(Require::parse_element("a b").is_err());
        assert!(Require::parse_element("a/b").is_err());
        const { assert!(Supported::ALLOW_EMPTY) };
    }
}
