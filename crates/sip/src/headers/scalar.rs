//! Headers whose value is one decimal number: Max-Forwards (0–255), Content-Length,
//! Expires and Min-Expires (0–2^32-1).

use super::{whole, TypedHeader};
use crate::name::HeaderKind;
use crate::scan::Scan;

macro_rules! scalar {
    ($(#[$doc:meta])* $ty:ident, $kind:ident, $int:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $ty(pub $int);

        impl<'a> TypedHeader<'a> for $ty {
            const KIND: HeaderKind = HeaderKind::$kind;
            fn parse(value: &'a str) -> Scan<Self> {
                whole(value, |c| c.number(u64::from(<$int>::MAX)).map(|v| $ty(v as $int)))
            }
        }
    };
}

scalar!(
    /// `Max-Forwards`: RFC 3261 caps it at 255 in practice; larger is refused.
    MaxForwards, MaxForwards, u8);
scalar!(
    /// `Content-Length`.
    ContentLength, ContentLength, u32);
scalar!(
    /// `Expires` in seconds.
    Expires, Expires, u32);
scalar!(
    /// `Min-Expires` in seconds.
    MinExpires, MinExpires, u32);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(MaxForwards::parse("0068"), Ok(MaxForwards(68)));
        assert!(MaxForwards::parse("300").is_err());
        assert_eq!(Expires::parse("4294967295"), Ok(Expires(u32::MAX)));
        assert!(Expires::parse("10000000000000000000").is_err());
        assert!(ContentLength::parse("-999").is_err());
        assert!(MinExpires::parse("").is_err());
        assert!(MinExpires::parse("6 0").is_err());
    }
}
