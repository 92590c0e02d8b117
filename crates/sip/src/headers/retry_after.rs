//! `Retry-After`: `delta-seconds [comment] *(;retry-param)`.

use super::{whole, TypedHeader};
use crate::name::HeaderKind;
use crate::params::{parse_params, ParamSyntax, Params};
use crate::scan::{Invalid, Scan};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter<'a> {
    pub seconds: u32,
    pub params: Params<'a>,
}

impl<'a> RetryAfter<'a> {
    pub fn duration(&self) -> Option<u32> {
        self.params.get("duration").flatten()?.parse().ok()
    }
}

impl<'a> TypedHeader<'a> for RetryAfter<'a> {
    const KIND: HeaderKind = HeaderKind::RetryAfter;
    fn parse(value: &'a str) -> Scan<Self> {
        whole(value, |c| {
            let seconds = c.number(u64::from(u32::MAX))? as u32;
            c.skip_lws();
            if c.peek() == Some(b'(') {
                // A comment is informational; validate it with the product grammar.
                let start = c.pos();
                let mut depth = 0i32;
                while let Some(b) = c.peek() {
                    c.bump();
                    match b {
                        b'(' => depth += 1,
                        b')' => depth -= 1,
                        b'\r' | b'\n' => return Err(Invalid),
                        _ => {}
                    }
                    if depth == 0 || depth > 8 {
                        break;
                    }
                }
                if depth != 0 || c.pos() == start {
                    return Err(Invalid);
                }
            }
            let params = parse_params(c, ParamSyntax::Header)?;
            if let Some(d) = params.get("duration") {
                crate::scan::parse_decimal(d.ok_or(Invalid)?.as_bytes(), u64::from(u32::MAX))?;
            }
            Ok(RetryAfter { seconds, params })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after() {
        let r = RetryAfter::parse("18000;duration=3600").unwrap();
        assert_eq!((r.seconds, r.duration()), (18000, Some(3600)));
        assert_eq!(
            RetryAfter::parse("120 (I'm in a meeting)").unwrap().seconds,
            120
        );
        assert!(RetryAfter::parse("soon").is_err());
        assert!(RetryAfter::parse("5 (open").is_err());
    }
}
