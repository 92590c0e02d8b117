//! The `CSeq` header: sequence number (< 2^32) and method.

use super::{whole, TypedHeader};
use crate::method::Method;
use crate::name::HeaderKind;
use crate::scan::{Invalid, Scan};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CSeq<'a> {
    pub seq: u32,
    pub method: Method<'a>,
}

impl<'a> TypedHeader<'a> for CSeq<'a> {
    const KIND: HeaderKind = HeaderKind::CSeq;
    fn parse(value: &'a str) -> Scan<Self> {
        whole(value, |c| {
            let seq = c.number(u64::from(u32::MAX))? as u32;
            if !c.skip_lws() {
                return Err(Invalid);
            }
            let method = Method::parse(c.token()?).ok_or(Invalid)?;
            Ok(CSeq { seq, method })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cseq_forms() {
        assert_eq!(
            CSeq::parse("0009\r\n  INVITE"),
            Ok(CSeq {
                seq: 9,
                method: Method::Invite
            })
        );
        assert_eq!(CSeq::parse("4294967295 ACK").map(|c| c.seq), Ok(u32::MAX));
        for bad in [
            "36893488147419103232 INVITE",
            "4294967296 INVITE",
            "1",
            "INVITE",
            "1INVITE",
            "-1 INVITE",
            "1 INVITE x",
        ] {
            assert!(CSeq::parse(bad).is_err(), "{bad}");
        }
    }
}
