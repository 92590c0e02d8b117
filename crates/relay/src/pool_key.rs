//! How an edge's relay asks the pool for a SIP user's key, and the answer,
//! in the body of an OPTIONS on the edge's mutual-TLS link (the pool
//! answers only its paired edges). The edge sends the request that needs
//! the key, as proof that its client holds it ([`crate::auth::proof`]):
//! the pool hands over a key only for a request that key signed, so an
//! edge learns the keys of users who are using it, not of everyone.
//!
//! Lines of `name=value`, strict and bounded: a question is `username`,
//! `source` (the client's address) and `request` (base64); an answer is
//! `result=key` with `aor`, `md5`, `sha256` (hex) and `md5_allowed`,
//! `result=unknown` with `aor` (wrong password, no such user: already
//! counted by the pool's lockout filter), or `result=refused` with `why`.
//!
//! And whether a web client's session is still signed in (its credentials
//! good only while it is): a question of [`SESSION_TYPE`] with `aor` and
//! `session`, answered `live=1` or `live=0`.
//!
//! And the calls of users the edge's relay holds allocations for, which
//! the edge did not carry itself (signalled through another edge, or to
//! the front end directly): a question of [`CALLS_TYPE`] with a line
//! `user=AOR` for each (at most [`MAX_CALLS_USERS`]), answered with a
//! line `call=AOR<TAB>CALL-ID<TAB>ADDRESS,...` per call (at most
//! [`MAX_CALLS_PER_USER`] each): the addresses the other ends of that
//! user's call named (`crate::calls::Calls::views_of`).

use std::net::IpAddr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::serve::KeyAnswer;

/// The media type of a question (in `Accept` and `Content-Type`).
pub const CONTENT_TYPE: &str = "application/x-parapet-relay-key";

/// The media type of a session question.
pub const SESSION_TYPE: &str = "application/x-parapet-relay-session";

/// The media type of a calls question.
pub const CALLS_TYPE: &str = "application/x-parapet-relay-calls";
/// Users one calls question names.
pub const MAX_CALLS_USERS: usize = 16;
/// Calls an answer gives for one user.
pub const MAX_CALLS_PER_USER: usize = 4;
/// The largest calls answer (16 users, 4 calls, 32 addresses each).
pub const MAX_CALLS_BODY: usize = 64 * 1024;

/// The media type of a notice from an edge's relay: calls whose media it
/// carried (for their call detail records), a line `call=CALL-ID` each.
pub const RELAYED_TYPE: &str = "application/x-parapet-relay-relayed";
/// Calls one notice names at most.
pub const MAX_RELAYED: usize = 12;

/// The largest body either way.
pub const MAX_BODY: usize = 4096;
/// The largest STUN request carried (a relay reads at most this much).
pub const MAX_REQUEST: usize = 2048;

/// An edge's question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub username: String,
    pub source: IpAddr,
    pub request: Vec<u8>,
}

fn fields(body: &[u8]) -> Result<Vec<(&str, &str)>, &'static str> {
    if body.len() > MAX_BODY {
        return Err("too large");
    }
    let text = std::str::from_utf8(body).map_err(|_| "not UTF-8")?;
    let mut out: Vec<(&str, &str)> = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let (k, v) = line.split_once('=').ok_or("a line without '='")?;
        if out.iter().any(|(seen, _)| *seen == k) || out.len() >= 8 {
            return Err("a repeated or extra field");
        }
        out.push((k, v));
    }
    Ok(out)
}

fn get<'a>(f: &[(&str, &'a str)], name: &str) -> Result<&'a str, &'static str> {
    f.iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| *v)
        .ok_or("a field is missing")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex<const N: usize>(s: &str) -> Result<[u8; N], &'static str> {
    if s.len() != 2 * N {
        return Err("a key of the wrong length");
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = s
            .get(2 * i..2 * i + 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .ok_or("a key that is not hex")?;
    }
    Ok(out)
}

/// Whether a user name could be a SIP user's: no separator, no control
/// character, bounded.
fn plain(s: &str) -> bool {
    (1..=256).contains(&s.len()) && !s.chars().any(|c| c.is_control() || c == '=')
}

impl Question {
    pub fn encode(&self) -> String {
        format!(
            "username={}\nsource={}\nrequest={}\n",
            self.username,
            self.source,
            STANDARD.encode(&self.request)
        )
    }

    pub fn parse(body: &[u8]) -> Result<Question, &'static str> {
        let f = fields(body)?;
        let username = get(&f, "username")?;
        if !plain(username) {
            return Err("a malformed user name");
        }
        let source = get(&f, "source")?
            .parse()
            .map_err(|_| "source is not an address")?;
        let request = STANDARD
            .decode(get(&f, "request")?)
            .map_err(|_| "request is not base64")?;
        if request.len() > MAX_REQUEST {
            return Err("request too large");
        }
        Ok(Question {
            username: username.to_owned(),
            source,
            request,
        })
    }
}

/// An edge's question about a web client's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionQuestion {
    pub aor: String,
    pub session: String,
}

impl SessionQuestion {
    pub fn encode(&self) -> String {
        format!("aor={}\nsession={}\n", self.aor, self.session)
    }

    pub fn parse(body: &[u8]) -> Result<SessionQuestion, &'static str> {
        let f = fields(body)?;
        let aor = get(&f, "aor")?;
        let session = get(&f, "session")?;
        if !plain(aor) || !aor.starts_with("sip:") || !plain(session) {
            return Err("a malformed aor or session");
        }
        Ok(SessionQuestion {
            aor: aor.to_owned(),
            session: session.to_owned(),
        })
    }
}

/// The pool's answer to a session question.
pub fn encode_live(live: bool) -> String {
    format!("live={}\n", u8::from(live))
}

pub fn parse_live(body: &[u8]) -> Result<bool, &'static str> {
    match get(&fields(body)?, "live")? {
        "1" => Ok(true),
        "0" => Ok(false),
        _ => Err("live is 0 or 1"),
    }
}

/// A calls question about `users`.
pub fn encode_calls_question(users: &[String]) -> String {
    users.iter().map(|u| format!("user={u}\n")).collect()
}

/// An AOR as questions and answers carry it.
fn an_aor(a: &str) -> bool {
    plain(a) && a.starts_with("sip:") && !a.contains(['\t', ' '])
}

/// The users a calls question names.
pub fn parse_calls_question(body: &[u8]) -> Result<Vec<String>, &'static str> {
    if body.len() > MAX_BODY {
        return Err("too large");
    }
    let text = std::str::from_utf8(body).map_err(|_| "not UTF-8")?;
    let mut users: Vec<String> = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let aor = line
            .strip_prefix("user=")
            .ok_or("a line that is no user=")?;
        if !an_aor(aor) {
            return Err("a malformed aor");
        }
        if users.len() >= MAX_CALLS_USERS {
            return Err("too many users");
        }
        if !users.iter().any(|u| u == aor) {
            users.push(aor.to_owned());
        }
    }
    Ok(users)
}

/// A notice of calls whose media the edge's relay carried.
pub fn encode_relayed(ids: &[String]) -> String {
    ids.iter().map(|i| format!("call={i}\n")).collect()
}

/// The Call-IDs a notice names.
pub fn parse_relayed(body: &[u8]) -> Result<Vec<String>, &'static str> {
    if body.len() > MAX_BODY {
        return Err("too large");
    }
    let text = std::str::from_utf8(body).map_err(|_| "not UTF-8")?;
    let mut ids = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let id = line
            .strip_prefix("call=")
            .ok_or("a line that is no call=")?;
        if !plain(id) || id.contains([' ', '\t']) {
            return Err("a malformed Call-ID");
        }
        if ids.len() >= MAX_RELAYED {
            return Err("too many calls");
        }
        ids.push(id.to_owned());
    }
    Ok(ids)
}

/// One call in a calls answer: the user, the Call-ID, the addresses.
pub type CallView = (String, String, Vec<IpAddr>);

/// The pool's calls answer as a body.
pub fn encode_calls_answer(calls: &[CallView]) -> String {
    let mut out = String::new();
    for (user, id, addresses) in calls {
        let list: Vec<String> = addresses.iter().map(IpAddr::to_string).collect();
        out.push_str(&format!("call={user}\t{id}\t{}\n", list.join(",")));
    }
    out
}

/// Reads the pool's calls answer, strictly: a malformed line fails it all.
pub fn parse_calls_answer(body: &[u8]) -> Result<Vec<CallView>, &'static str> {
    if body.len() > MAX_CALLS_BODY {
        return Err("too large");
    }
    let text = std::str::from_utf8(body).map_err(|_| "not UTF-8")?;
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let rest = line
            .strip_prefix("call=")
            .ok_or("a line that is no call=")?;
        let mut parts = rest.split('\t');
        let (Some(user), Some(id), Some(list), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("a call line without three fields");
        };
        if !an_aor(user) {
            return Err("a malformed aor");
        }
        if !plain(id) || id.contains(' ') {
            return Err("a malformed Call-ID");
        }
        let mut addresses = Vec::new();
        for a in list.split(',').filter(|a| !a.is_empty()) {
            if addresses.len() >= crate::calls::MAX_ADDRESSES {
                return Err("too many addresses");
            }
            addresses.push(a.parse().map_err(|_| "an address that does not read")?);
        }
        if out.len() >= MAX_CALLS_USERS * MAX_CALLS_PER_USER {
            return Err("too many calls");
        }
        out.push((user.to_owned(), id.to_owned(), addresses));
    }
    Ok(out)
}

/// The pool's answer as a body.
pub fn encode_answer(a: &KeyAnswer) -> String {
    match a {
        KeyAnswer::Key {
            aor,
            md5,
            sha256,
            md5_allowed,
        } => format!(
            "result=key\naor={aor}\nmd5={}\nsha256={}\nmd5_allowed={}\n",
            hex(md5),
            hex(sha256),
            u8::from(*md5_allowed)
        ),
        KeyAnswer::Unknown { aor } => format!("result=unknown\naor={aor}\n"),
        KeyAnswer::Refused(why) => format!("result=refused\nwhy={why}\n"),
    }
}

/// Reads the pool's answer. A refusal's reason is one of the pool's
/// fixed texts; anything else reads as a generic refusal.
pub fn parse_answer(body: &[u8]) -> Result<KeyAnswer, &'static str> {
    let f = fields(body)?;
    let aor = || -> Result<String, &'static str> {
        let a = get(&f, "aor")?;
        if !plain(a) || !a.starts_with("sip:") {
            return Err("a malformed aor");
        }
        Ok(a.to_owned())
    };
    match get(&f, "result")? {
        "key" => Ok(KeyAnswer::Key {
            aor: aor()?,
            md5: unhex::<16>(get(&f, "md5")?)?,
            sha256: unhex::<32>(get(&f, "sha256")?)?,
            md5_allowed: match get(&f, "md5_allowed")? {
                "1" => true,
                "0" => false,
                _ => return Err("md5_allowed is 0 or 1"),
            },
        }),
        "unknown" => Ok(KeyAnswer::Unknown { aor: aor()? }),
        "refused" => Ok(KeyAnswer::Refused(refusal(get(&f, "why")?))),
        _ => Err("an unknown result"),
    }
}

/// The pool's reasons for refusing, as static texts (what the relay logs).
pub const REFUSALS: [&str; 4] = [
    "the authentication policy allows device certificates only",
    "too many failed sign-ins from this address",
    "remote access through the edge is not allowed for this user",
    "the digest algorithm the request chose is not allowed by policy",
];

fn refusal(why: &str) -> &'static str {
    REFUSALS
        .iter()
        .find(|r| **r == why)
        .copied()
        .unwrap_or("refused by the pool")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relayed_notice_reads_back_and_a_bad_one_is_refused() {
        let ids = vec!["a84b4c76e66710@pc33.example.com".to_string(), "x-1".into()];
        assert_eq!(parse_relayed(encode_relayed(&ids).as_bytes()), Ok(ids));
        let many: Vec<String> = (0..=MAX_RELAYED).map(|i| format!("c{i}")).collect();
        assert!(parse_relayed(encode_relayed(&many).as_bytes()).is_err());
        for bad in [
            "user=x\n",
            "call=\n",
            "call=a b\n",
            "call=a\tb\n",
            "call=a=b\n",
        ] {
            assert!(parse_relayed(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert!(parse_relayed(&[0xff]).is_err());
    }

    #[test]
    fn session_questions_and_answers_read_back() {
        let q = SessionQuestion {
            aor: "sip:alice@example.test".into(),
            session: "AbC-12".into(),
        };
        assert_eq!(SessionQuestion::parse(q.encode().as_bytes()), Ok(q));
        for bad in [
            "aor=alice\nsession=x\n",
            "aor=sip:a@b\n",
            "aor=sip:a@b\nsession=\n",
        ] {
            assert!(SessionQuestion::parse(bad.as_bytes()).is_err(), "{bad}");
        }
        assert_eq!(parse_live(encode_live(true).as_bytes()), Ok(true));
        assert_eq!(parse_live(encode_live(false).as_bytes()), Ok(false));
        assert!(parse_live(b"live=yes\n").is_err());
    }

    #[test]
    fn questions_and_answers_read_back_and_nothing_else_reads() {
        let q = Question {
            username: "alice".into(),
            source: "203.0.113.9".parse().unwrap(),
            request: vec![0, 1, 2, 250],
        };
        assert_eq!(Question::parse(q.encode().as_bytes()), Ok(q));
        for bad in [
            "username=alice\nsource=203.0.113.9\n",
            "username=alice\nsource=nowhere\nrequest=AA==\n",
            "username=\nsource=203.0.113.9\nrequest=AA==\n",
            "username=a\nusername=b\nsource=203.0.113.9\nrequest=AA==\n",
            "username=alice\nsource=203.0.113.9\nrequest=***\n",
            "garbage",
        ] {
            assert!(Question::parse(bad.as_bytes()).is_err(), "{bad}");
        }
        let big = format!(
            "username=a\nsource=203.0.113.9\nrequest={}\n",
            STANDARD.encode(vec![0u8; MAX_REQUEST + 1])
        );
        assert!(Question::parse(big.as_bytes()).is_err());

        let key = KeyAnswer::Key {
            aor: "sip:alice@example.test".into(),
            md5: [7; 16],
            sha256: [9; 32],
            md5_allowed: false,
        };
        match parse_answer(encode_answer(&key).as_bytes()) {
            Ok(KeyAnswer::Key {
                aor,
                md5,
                sha256,
                md5_allowed,
            }) => {
                assert_eq!(aor, "sip:alice@example.test");
                assert_eq!((md5, sha256, md5_allowed), ([7; 16], [9; 32], false));
            }
            other => panic!("{other:?}"),
        }
        let unknown = KeyAnswer::Unknown {
            aor: "sip:bob@example.test".into(),
        };
        assert!(matches!(
            parse_answer(encode_answer(&unknown).as_bytes()),
            Ok(KeyAnswer::Unknown { aor }) if aor == "sip:bob@example.test"
        ));
        for why in REFUSALS {
            assert!(matches!(
                parse_answer(encode_answer(&KeyAnswer::Refused(why)).as_bytes()),
                Ok(KeyAnswer::Refused(w)) if w == why
            ));
        }
        assert!(matches!(
            parse_answer(b"result=refused\nwhy=anything\n"),
            Ok(KeyAnswer::Refused("refused by the pool"))
        ));
        for bad in [
            "result=key\naor=sip:a@b\nmd5=00\nsha256=00\nmd5_allowed=1\n",
            "result=key\naor=alice\nmd5=\nsha256=\nmd5_allowed=1\n",
            "result=maybe\n",
            "result=unknown\n",
        ] {
            assert!(parse_answer(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_calls_question_and_answer_read_back_and_are_strict() {
        let users = vec!["sip:alice@x".to_string(), "sip:bob@x".to_string()];
        let q = encode_calls_question(&users);
        assert_eq!(parse_calls_question(q.as_bytes()).unwrap(), users);
        assert!(parse_calls_question(b"user=alice@x\n").is_err(), "not sip:");
        assert!(parse_calls_question(b"user=sip:a\tb@x\n").is_err());
        assert!(parse_calls_question(b"aor=sip:alice@x\n").is_err());
        let many: String = (0..=MAX_CALLS_USERS)
            .map(|i| format!("user=sip:u{i}@x\n"))
            .collect();
        assert!(parse_calls_question(many.as_bytes()).is_err());

        let calls: Vec<CallView> = vec![
            (
                "sip:alice@x".into(),
                "c1@h".into(),
                vec![
                    "203.0.113.5".parse().unwrap(),
                    "2001:db8::5".parse().unwrap(),
                ],
            ),
            ("sip:alice@x".into(), "c2".into(), vec![]),
        ];
        let a = encode_calls_answer(&calls);
        assert_eq!(parse_calls_answer(a.as_bytes()).unwrap(), calls);
        assert!(parse_calls_answer(b"").unwrap().is_empty());
        for bad in [
            "call=sip:alice@x\tc1\n",
            "call=sip:alice@x\tc1\t203.0.113.5\textra\n",
            "call=sip:alice@x\tc 1\t203.0.113.5\n",
            "call=sip:alice@x\tc1\tnot-an-address\n",
            "call=alice\tc1\t203.0.113.5\n",
            "key=sip:alice@x\tc1\t\n",
        ] {
            assert!(parse_calls_answer(bad.as_bytes()).is_err(), "{bad:?}");
        }
        let long: String = (0..=crate::calls::MAX_ADDRESSES)
            .map(|i| format!("192.0.2.{i},"))
            .collect();
        assert!(parse_calls_answer(format!("call=sip:a@x\tc\t{long}\n").as_bytes()).is_err());
    }
}
