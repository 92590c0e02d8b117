//! One traced message on disk: a header line
//! `PTR1 AT_MS in|out PROTO LOCAL REMOTE LEN\n`, the message's LEN bytes,
//! and `\n`. A segment is records one after another; reading stops at the
//! first record that is not whole (the tail a crash cut short).

use std::borrow::Cow;
use std::net::SocketAddr;

use bytes::Bytes;

/// The largest message a record holds (the SIP parser's own bound is
/// lower); a longer length field means a damaged file.
pub const MAX_MESSAGE: usize = 256 * 1024;

const MAGIC: &str = "PTR1";

const PROTOCOLS: [&str; 5] = ["UDP", "TCP", "TLS", "WS", "WSS"];

/// A traced message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Unix milliseconds.
    pub at_ms: i64,
    pub inbound: bool,
    /// `UDP`, `TCP`, `TLS`, `WS` or `WSS`.
    pub protocol: &'static str,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The message as it crossed the transport, shared with it (no copy).
    pub message: Bytes,
}

impl Record {
    /// The record as written on disk.
    pub fn encode(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        // (Writing to a Vec cannot fail.)
        let _ = writeln!(
            out,
            "{MAGIC} {} {} {} {} {} {}",
            self.at_ms,
            if self.inbound { "in" } else { "out" },
            self.protocol,
            self.local,
            self.remote,
            self.message.len()
        );
        out.extend_from_slice(&self.message);
        out.push(b'\n');
    }

    /// The value of header `name` (or its compact form), first occurrence.
    pub fn header(&self, name: &str, compact: Option<&str>) -> Option<&str> {
        let text = std::str::from_utf8(header_section(&self.message)).ok()?;
        text.split("\r\n").skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            let n = n.trim();
            (n.eq_ignore_ascii_case(name) || compact.is_some_and(|c| n.eq_ignore_ascii_case(c)))
                .then(|| v.trim())
        })
    }

    /// The start line.
    pub fn first_line(&self) -> String {
        let end = self
            .message
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .unwrap_or(self.message.len());
        String::from_utf8_lossy(&self.message[..end.min(512)]).into_owned()
    }
}

/// The bytes up to the blank line ending the headers.
fn header_section(m: &[u8]) -> &[u8] {
    match memchr::memmem::find(m, b"\r\n\r\n") {
        Some(i) => &m[..i],
        None => m,
    }
}

/// Whether a line of `head` may be an `Authorization` or
/// `Proxy-Authorization` header: its name (before any colon) holds
/// "authorization" in any case. A superset of what [`redact_credentials`]
/// cuts (which then decides, with its own trimming), found without
/// copying the headers.
fn may_have_credentials(head: &[u8]) -> bool {
    head.split(|&b| b == b'\n').any(|line| {
        let name = match memchr::memchr(b':', line) {
            Some(colon) => &line[..colon],
            None => line,
        };
        name.windows(13)
            .any(|w| w.eq_ignore_ascii_case(b"authorization"))
    })
}

/// Every whole record of a segment, in order; stops at the first one that
/// is damaged or cut short.
pub fn parse_segment(data: &[u8]) -> Vec<Record> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some((r, used)) = parse_one(rest) {
        out.push(r);
        rest = &rest[used..];
    }
    out
}

fn parse_one(data: &[u8]) -> Option<(Record, usize)> {
    let nl = data.iter().take(256).position(|&b| b == b'\n')?;
    let head = std::str::from_utf8(&data[..nl]).ok()?;
    let mut f = head.split(' ');
    if f.next()? != MAGIC {
        return None;
    }
    let at_ms: i64 = f.next()?.parse().ok()?;
    let inbound = match f.next()? {
        "in" => true,
        "out" => false,
        _ => return None,
    };
    let protocol = f.next()?;
    let protocol = PROTOCOLS.iter().find(|p| **p == protocol)?;
    let local: SocketAddr = f.next()?.parse().ok()?;
    let remote: SocketAddr = f.next()?.parse().ok()?;
    let len: usize = f.next()?.parse().ok()?;
    if f.next().is_some() || len > MAX_MESSAGE {
        return None;
    }
    let start = nl + 1;
    let end = start.checked_add(len)?;
    if data.get(end) != Some(&b'\n') {
        return None;
    }
    Some((
        Record {
            at_ms,
            inbound,
            protocol,
            local,
            remote,
            message: Bytes::copy_from_slice(&data[start..end]),
        },
        end + 1,
    ))
}

/// What a trace keeps of a message: credentials cut
/// ([`redact_credentials`]), SDES master keys in SDP cut, and an instant
/// message's body (a MESSAGE
/// request's: what users wrote, which the archive alone keeps, sealed)
/// replaced by its size.
pub fn redact_for_disk(message: &[u8]) -> Cow<'_, [u8]> {
    let creds = redact_credentials(message);
    let creds = match cut_sdes_keys(&creds) {
        Some(m) => Cow::Owned(m),
        None => creds,
    };
    if !creds.starts_with(b"MESSAGE ") {
        return creds;
    }
    let Some(end) = memchr::memmem::find(&creds, b"\r\n\r\n") else {
        return creds;
    };
    let body = creds.len() - (end + 4);
    if body == 0 {
        return creds;
    }
    let mut out = creds[..end + 4].to_vec();
    out.extend_from_slice(format!("[{body} bytes of instant message not kept]").as_bytes());
    Cow::Owned(out)
}

/// The message with each SDES master key (`inline:` in an SDP `a=crypto`
/// line, RFC 4568) replaced by `[key cut]`, or `None` when it carries
/// none: with the key, anyone reading a trace could decrypt the call's
/// recorded media. The suite, lifetime and MKI stay (they are what a call
/// is debugged by).
fn cut_sdes_keys(message: &[u8]) -> Option<Vec<u8>> {
    let body_at = memchr::memmem::find(message, b"\r\n\r\n")? + 4;
    let body = &message[body_at..];
    memchr::memmem::find(body, b"a=crypto:")?;
    let mut out = message[..body_at].to_vec();
    for line in body.split_inclusive(|&b| b == b'\n') {
        if !line.starts_with(b"a=crypto:") {
            out.extend_from_slice(line);
            continue;
        }
        let mut rest = line;
        while let Some(i) = memchr::memmem::find(rest, b"inline:") {
            out.extend_from_slice(&rest[..i + 7]);
            out.extend_from_slice(b"[key cut]");
            rest = &rest[i + 7..];
            // The key runs to the lifetime or MKI ('|'), the next key
            // (';'), a blank or the line's end.
            let end = rest
                .iter()
                .position(|&b| matches!(b, b'|' | b';' | b' ' | b'\t' | b'\r' | b'\n'))
                .unwrap_or(rest.len());
            rest = &rest[end..];
        }
        out.extend_from_slice(rest);
    }
    Some(out)
}

/// `message` with the values of `Authorization` and `Proxy-Authorization`
/// cut to their scheme and `username` (what a trace needs to say who it
/// was); the rest untouched.
pub fn redact_credentials(message: &[u8]) -> Cow<'_, [u8]> {
    let head = header_section(message);
    if !may_have_credentials(head) {
        return Cow::Borrowed(message);
    }
    let mut out = Vec::with_capacity(message.len());
    let mut pos = 0;
    for line in head.split(|&b| b == b'\n') {
        let text = String::from_utf8_lossy(line);
        let trimmed = text.trim_end_matches('\r');
        let name = trimmed.split(':').next().unwrap_or("").trim();
        if name.eq_ignore_ascii_case("authorization")
            || name.eq_ignore_ascii_case("proxy-authorization")
        {
            let value = trimmed.split_once(':').map_or("", |(_, v)| v.trim());
            // The scheme is a token; whatever follows it is parameters.
            let scheme: String = value
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .take(32)
                .collect();
            let params = &value[scheme.len()..];
            // The user name as it was sent, if it is a plain quoted string
            // or token (no `=` in it: nothing else can ride along).
            let user = params
                .split(',')
                .map(str::trim)
                .find_map(|p| p.strip_prefix("username="))
                .filter(|u| u.len() <= 130 && !u.contains('=') && !u.contains(char::is_whitespace))
                .unwrap_or("\"\"");
            out.extend_from_slice(
                format!("{name}: {scheme} username={user}, (credentials not kept)").as_bytes(),
            );
            if line.ends_with(b"\r") {
                out.push(b'\r');
            }
        } else {
            out.extend_from_slice(line);
        }
        pos += line.len() + 1;
        if pos <= head.len() {
            out.push(b'\n');
        }
    }
    out.extend_from_slice(&message[head.len()..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdes_keys_are_cut_and_the_rest_of_the_sdp_kept() {
        let m = b"INVITE sip:b@x SIP/2.0\r\nCall-ID: k\r\nContent-Length: 999\r\n\r\nv=0\r\nm=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4\r\na=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj;inline:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo\r\na=rtpmap:0 PCMU/8000\r\n";
        let out = redact_for_disk(m);
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(!text.contains("WVNfX19z"), "{text}");
        assert!(
            !text.contains("NzB4d1BI") && !text.contains("QUJDREVG"),
            "{text}"
        );
        assert!(
            text.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:[key cut]|2^20|1:4\r\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:[key cut];inline:[key cut]\r\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("m=audio 4000 RTP/SAVP 0\r\n")
                && text.ends_with("a=rtpmap:0 PCMU/8000\r\n")
        );
        // Nothing to cut: the same bytes, not copied.
        let plain = b"INVITE sip:b@x SIP/2.0\r\n\r\nv=0\r\na=fingerprint:sha-256 AB:CD\r\n";
        assert!(matches!(redact_for_disk(plain), Cow::Borrowed(_)));
    }

    fn rec(msg: &str) -> Record {
        Record {
            at_ms: 1_796_645_045_123,
            inbound: true,
            protocol: "UDP",
            local: "127.0.0.1:5060".parse().unwrap(),
            remote: "[::1]:5070".parse().unwrap(),
            message: Bytes::copy_from_slice(msg.as_bytes()),
        }
    }

    const REG: &str = "REGISTER sip:example.test SIP/2.0\r\nCall-ID: abc@h\r\nf: <sip:alice@example.test>;tag=1\r\nContent-Length: 4\r\n\r\nbody";

    #[test]
    fn records_round_trip_and_a_cut_tail_is_left_out() {
        let mut disk = Vec::new();
        rec(REG).encode(&mut disk);
        let mut second = rec("SIP/2.0 200 OK\r\n\r\n");
        second.inbound = false;
        second.encode(&mut disk);
        let whole = disk.len();
        rec(REG).encode(&mut disk);
        disk.truncate(whole + 20);
        let back = parse_segment(&disk);
        assert_eq!(back, vec![rec(REG), second]);
        assert_eq!(back[0].header("Call-ID", Some("i")), Some("abc@h"));
        assert_eq!(
            back[0].header("From", Some("f")),
            Some("<sip:alice@example.test>;tag=1")
        );
        assert_eq!(back[0].first_line(), "REGISTER sip:example.test SIP/2.0");
    }

    #[test]
    fn damaged_records_stop_the_reading_without_panic() {
        for bad in [
            &b"PTR2 1 in UDP 127.0.0.1:1 127.0.0.1:2 0\n\n"[..],
            b"PTR1 x in UDP 127.0.0.1:1 127.0.0.1:2 0\n\n",
            b"PTR1 1 sideways UDP 127.0.0.1:1 127.0.0.1:2 0\n\n",
            b"PTR1 1 in SCTP 127.0.0.1:1 127.0.0.1:2 0\n\n",
            b"PTR1 1 in UDP nowhere 127.0.0.1:2 0\n\n",
            b"PTR1 1 in UDP 127.0.0.1:1 127.0.0.1:2 999999999\n",
            b"PTR1 1 in UDP 127.0.0.1:1 127.0.0.1:2 18446744073709551615\n",
            b"PTR1 1 in UDP 127.0.0.1:1 127.0.0.1:2 3\nabcX",
            b"PTR1 1 in UDP 127.0.0.1:1 127.0.0.1:2 0 extra\n\n",
            b"",
            &[0xff; 300],
        ] {
            assert!(
                parse_segment(bad).is_empty(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn an_instant_messages_text_is_not_kept() {
        let m = b"MESSAGE sip:b@x SIP/2.0\r\nProxy-Authorization: Digest username=\"a\", response=\"9\"\r\nContent-Length: 5\r\n\r\nhello";
        let kept = String::from_utf8(redact_for_disk(m).into_owned()).unwrap();
        assert!(
            kept.ends_with("\r\n\r\n[5 bytes of instant message not kept]"),
            "{kept}"
        );
        assert!(
            !kept.contains("hello") && !kept.contains("response"),
            "{kept}"
        );
        // SDP and other bodies are kept.
        let invite = b"INVITE sip:b@x SIP/2.0\r\n\r\nv=0\r\n";
        assert_eq!(&redact_for_disk(invite)[..], &invite[..]);
    }

    #[test]
    fn credentials_are_cut_to_the_user_name() {
        let spaced = "MESSAGE sip:x SIP/2.0\r\nAuthorization \t: Digest username=\"c\",response=\"77\"\r\n\r\n";
        let r = redact_credentials(spaced.as_bytes());
        assert!(
            !String::from_utf8_lossy(&r).contains("response"),
            "{}",
            String::from_utf8_lossy(&r)
        );
        let m = "REGISTER sip:example.test SIP/2.0\r\nAuthorization: Digest username=\"alice\", realm=\"example.test\", nonce=\"n\", response=\"0123abcd\"\r\nproxy-authorization: Digest response=\"ffff\",username=\"bob\"\r\nCall-ID: x\r\n\r\nAuthorization: in the body stays";
        let r = redact_credentials(m.as_bytes());
        let text = String::from_utf8(r.into_owned()).unwrap();
        assert!(
            !text.contains("0123abcd") && !text.contains("ffff"),
            "{text}"
        );
        assert!(
            text.contains("Authorization: Digest username=\"alice\", (credentials not kept)\r\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "proxy-authorization: Digest username=\"bob\", (credentials not kept)\r\n"
            ),
            "{text}"
        );
        assert!(
            text.ends_with("Call-ID: x\r\n\r\nAuthorization: in the body stays"),
            "{text}"
        );
        // Nothing to redact: the same bytes, not copied.
        assert!(matches!(
            redact_credentials(REG.as_bytes()),
            Cow::Borrowed(_)
        ));
    }
}
