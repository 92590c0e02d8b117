//! A trace search asked of another node over the pool's links (a front
//! end asks its edges): the question as one header value, the answer as
//! records in the ring's own encoding, bounded to fit one SIP message.

use super::record::{parse_segment, Record};
use super::ring::Filter;

/// The answer's content type (and what the question's `Accept` names).
pub const CONTENT_TYPE: &str = "application/x-parapet-trace";
/// The header carrying the question.
pub const QUERY_HEADER: &str = "P-Parapet-Trace";
/// The header an answer carries when it holds only the oldest of what
/// matched (`P-Parapet-Trace-More: 1`).
pub const MORE_HEADER: &str = "P-Parapet-Trace-More";
/// The most an answer's body carries: well inside the pool's 64 KiB
/// message limit with the answer's headers.
pub const MAX_BODY: usize = 48 * 1024;
/// Values longer than this make no question (a Call-ID or user is at
/// most 256 characters at the API).
const MAX_VALUE: usize = 1024;

fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'@' | b'.' | b'_' | b'-' | b'+' | b'!' | b'~')
        {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn unescape(v: &str) -> Option<String> {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    let s = String::from_utf8(out).ok()?;
    (s.len() <= MAX_VALUE && !s.chars().any(char::is_control)).then_some(s)
}

/// The question's header value.
pub fn query(f: &Filter) -> String {
    let mut parts = Vec::new();
    if let Some(c) = &f.call_id {
        parts.push(format!("call-id={}", escape(c)));
    }
    if let Some(u) = &f.user {
        parts.push(format!("user={}", escape(u)));
    }
    if let Some(s) = f.since_ms {
        parts.push(format!("since={s}"));
    }
    if let Some(u) = f.until_ms {
        parts.push(format!("until={u}"));
    }
    parts.push(format!("limit={}", f.limit));
    parts.join(";")
}

/// The question read back; `None` if any part is not one it can carry.
pub fn parse_query(v: &str) -> Option<Filter> {
    let mut f = Filter {
        call_id: None,
        user: None,
        since_ms: None,
        until_ms: None,
        limit: 200,
    };
    for part in v.trim().split(';') {
        let (k, v) = part.split_once('=')?;
        match k.trim() {
            "call-id" => f.call_id = Some(unescape(v.trim())?),
            "user" => f.user = Some(unescape(v.trim())?),
            "since" => f.since_ms = Some(v.trim().parse().ok()?),
            "until" => f.until_ms = Some(v.trim().parse().ok()?),
            "limit" => f.limit = v.trim().parse::<usize>().ok()?.min(1000),
            _ => return None,
        }
    }
    Some(f)
}

/// The answer's body: the oldest records that fit in [`MAX_BODY`], and
/// whether some were left out.
pub fn answer(records: &[Record]) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut one = Vec::new();
    for (i, r) in records.iter().enumerate() {
        one.clear();
        r.encode(&mut one);
        if out.len() + one.len() > MAX_BODY {
            return (out, i < records.len());
        }
        out.extend_from_slice(&one);
    }
    (out, false)
}

/// The records of an answer's body (what is whole of it).
pub fn read_answer(body: &[u8]) -> Vec<Record> {
    parse_segment(&body[..body.len().min(MAX_BODY)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_question_survives_the_header_whatever_its_values() {
        let f = Filter {
            call_id: Some("a;b=c%d \"e\"@192.0.2.1".into()),
            user: Some("sip:alice@example.com".into()),
            since_ms: Some(1_796_645_045_000),
            until_ms: Some(-5),
            limit: 50,
        };
        let q = query(&f);
        assert!(q.bytes().all(|b| b.is_ascii_graphic()), "{q}");
        let back = parse_query(&q).unwrap();
        assert_eq!(back.call_id, f.call_id);
        assert_eq!(back.user, f.user);
        assert_eq!(
            (back.since_ms, back.until_ms, back.limit),
            (f.since_ms, f.until_ms, 50)
        );
        let none = parse_query("limit=200").unwrap();
        assert!(none.call_id.is_none() && none.user.is_none());
    }

    #[test]
    fn a_bad_question_is_none_and_the_limit_bounded() {
        for bad in [
            "",
            "call-id",
            "x=1",
            "since=abc",
            "call-id=%ZZ",
            "call-id=%0A",
            "user=%FF",
        ] {
            assert!(parse_query(bad).is_none(), "{bad}");
        }
        assert_eq!(parse_query("limit=999999").unwrap().limit, 1000);
        let long = format!("call-id={}", "a".repeat(MAX_VALUE + 1));
        assert!(parse_query(&long).is_none());
    }

    #[test]
    fn an_answer_keeps_the_oldest_that_fit_and_says_more() {
        let r = |n: i64| Record {
            at_ms: n,
            inbound: true,
            protocol: "TLS",
            local: "192.0.2.1:5061".parse().unwrap(),
            remote: "198.51.100.7:40000".parse().unwrap(),
            message: vec![b'x'; 10_000].into(),
        };
        let few: Vec<Record> = (0..3).map(r).collect();
        let (body, more) = answer(&few);
        assert!(!more);
        assert_eq!(read_answer(&body), few);
        let many: Vec<Record> = (0..10).map(r).collect();
        let (body, more) = answer(&many);
        assert!(more && body.len() <= MAX_BODY);
        let got = read_answer(&body);
        assert_eq!(got.len(), 4);
        assert_eq!(got[0].at_ms, 0);
        // A body cut short gives what is whole.
        assert_eq!(read_answer(&body[..body.len() - 1]).len(), 3);
    }
}
