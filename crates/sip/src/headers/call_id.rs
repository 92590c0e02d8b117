//! The `Call-ID` header: `word ["@" word]`.

use super::TypedHeader;
use crate::name::HeaderKind;
use crate::scan::{is_word, Invalid, Scan};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallId<'a>(pub &'a str);

impl<'a> TypedHeader<'a> for CallId<'a> {
    const KIND: HeaderKind = HeaderKind::CallId;
    fn parse(value: &'a str) -> Scan<Self> {
        let (a, b) = match value.split_once('@') {
            Some((a, b)) => (a, Some(b)),
            None => (value, None),
        };
        let word = |w: &str| !w.is_empty() && w.bytes().all(is_word);
        if word(a) && b.is_none_or(word) {
            Ok(CallId(value))
        } else {
            Err(Invalid)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_ids() {
        assert!(CallId::parse("intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{").is_ok());
        assert!(CallId::parse("a@b@c").is_err());
        assert!(CallId::parse("has space").is_err());
        assert!(CallId::parse("").is_err());
        assert!(CallId::parse("@x").is_err());
    }
}
