//! `message/cpim` (RFC 3862): CPIM headers, an empty line, the
//! encapsulated MIME headers (at least Content-Type), an empty line, the
//! inner body. Read strictly (CRLF line ends, `Name: value` headers, no
//! folding, a bounded number of headers) and written back with a new inner
//! body, every header kept as it was except the inner Content-Length.

/// The most header lines read in each part.
pub const MAX_HEADERS: usize = 64;

/// A CPIM message, borrowing from its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cpim<'a> {
    /// The CPIM header block, each line without its CRLF.
    pub headers: Vec<&'a str>,
    /// The encapsulated MIME header lines.
    pub mime: Vec<&'a str>,
    pub body: &'a [u8],
}

/// Why a body is not a CPIM message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpimError {
    /// No empty line ends the CPIM headers or the MIME headers.
    Unterminated,
    /// A header line is not `Name: value` in ASCII.
    BadHeader,
    TooManyHeaders,
    /// The encapsulated headers have no Content-Type.
    NoContentType,
}

impl std::fmt::Display for CpimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CpimError::Unterminated => "a header block is not ended by an empty line",
            CpimError::BadHeader => "a header line is not Name: value",
            CpimError::TooManyHeaders => "too many header lines",
            CpimError::NoContentType => "the encapsulated message has no Content-Type",
        })
    }
}

fn block(bytes: &[u8]) -> Result<(Vec<&str>, &[u8]), CpimError> {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(CpimError::Unterminated)?;
    let text = std::str::from_utf8(&bytes[..end]).map_err(|_| CpimError::BadHeader)?;
    let lines: Vec<&str> = if text.is_empty() {
        Vec::new()
    } else {
        text.split("\r\n").collect()
    };
    if lines.len() > MAX_HEADERS {
        return Err(CpimError::TooManyHeaders);
    }
    for l in &lines {
        let Some((name, _)) = l.split_once(':') else {
            return Err(CpimError::BadHeader);
        };
        let token = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.!%*+`'~".contains(&b));
        if !token || l.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(CpimError::BadHeader);
        }
    }
    Ok((lines, &bytes[end + 4..]))
}

fn named<'a>(lines: &[&'a str], name: &str) -> Option<&'a str> {
    lines.iter().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

impl<'a> Cpim<'a> {
    /// Reads a `message/cpim` body.
    pub fn parse(bytes: &'a [u8]) -> Result<Cpim<'a>, CpimError> {
        let (headers, rest) = block(bytes)?;
        if headers.is_empty() {
            // RFC 3862 requires From and To at least.
            return Err(CpimError::BadHeader);
        }
        let (mime, body) = block(rest)?;
        if named(&mime, "Content-Type").is_none() {
            return Err(CpimError::NoContentType);
        }
        Ok(Cpim {
            headers,
            mime,
            body,
        })
    }

    /// The inner Content-Type, as written.
    pub fn content_type(&self) -> &'a str {
        named(&self.mime, "Content-Type").unwrap_or("")
    }

    /// The sender's identifier of the message (IMDN, RFC 5438): the
    /// `Message-ID` header in the namespace declared for
    /// `urn:ietf:params:imdn` (`NS: imdn <urn:ietf:params:imdn>`, then
    /// `imdn.Message-ID: ...`). `None` without one, or when it is not 1 to
    /// 128 visible ASCII characters.
    pub fn imdn_message_id(&self) -> Option<&'a str> {
        let prefix = self.headers.iter().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            if !n.trim().eq_ignore_ascii_case("NS") {
                return None;
            }
            let (prefix, urn) = v.trim().split_once(' ')?;
            urn.trim()
                .eq_ignore_ascii_case("<urn:ietf:params:imdn>")
                .then_some(prefix.trim())
        })?;
        let id = self.headers.iter().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            let (p, name) = n.trim().split_once('.')?;
            (p == prefix && name.eq_ignore_ascii_case("Message-ID")).then(|| v.trim())
        })?;
        (!id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()))
            .then_some(id)
    }

    /// The same message around another inner body.
    pub fn with_body(&self, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(body.len() + 256);
        for l in &self.headers {
            out.extend_from_slice(l.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        for l in &self.mime {
            let is_length = l
                .split_once(':')
                .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case("Content-Length"));
            if is_length {
                out.extend_from_slice(format!("Content-Length: {}", body.len()).as_bytes());
            } else {
                out.extend_from_slice(l.as_bytes());
            }
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    #[test]
    fn the_imdn_message_id_is_found_in_its_declared_namespace_only() {
        let msg = |headers: &str| {
            format!("{headers}\r\n\r\nContent-Type: text/plain\r\n\r\nhi").into_bytes()
        };
        let read = |b: &[u8]| Cpim::parse(b).unwrap().imdn_message_id().map(str::to_owned);
        let linphone = msg("From: <sip:a@example.com>\r\nTo: <sip:b@example.com>\r\nNS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: Vn1FqBz9x\r\nDateTime: 2026-12-06T03:00:00Z");
        assert_eq!(read(&linphone).as_deref(), Some("Vn1FqBz9x"));
        let other_prefix =
            msg("From: <sip:a@example.com>\r\nNS: x <urn:ietf:params:imdn>\r\nx.Message-ID: abc");
        assert_eq!(read(&other_prefix).as_deref(), Some("abc"));
        // Not declared, declared for something else, empty, too long.
        let undeclared = msg("From: <sip:a@example.com>\r\nimdn.Message-ID: abc");
        assert_eq!(read(&undeclared), None);
        let elsewhere = msg(
            "From: <sip:a@example.com>\r\nNS: imdn <urn:example:other>\r\nimdn.Message-ID: abc",
        );
        assert_eq!(read(&elsewhere), None);
        let long = msg(&format!(
            "From: <sip:a@example.com>\r\nNS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: {}",
            "a".repeat(129)
        ));
        assert_eq!(read(&long), None);
        let spaced = msg(
            "From: <sip:a@example.com>\r\nNS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: a b",
        );
        assert_eq!(read(&spaced), None);
    }

    use super::*;

    const MSG: &[u8] = b"From: <sip:alice@example.test>\r\nTo: <sip:bob@example.test>\r\nDateTime: 2026-12-05T10:00:00Z\r\n\r\nContent-Type: text/plain;charset=utf-8\r\nContent-Length: 5\r\n\r\nhello";

    #[test]
    fn a_cpim_message_is_read_and_rewritten_around_a_new_body() {
        let c = Cpim::parse(MSG).unwrap();
        assert_eq!(c.headers.len(), 3);
        assert_eq!(c.content_type(), "text/plain;charset=utf-8");
        assert_eq!(c.body, b"hello");
        let out = c.with_body(b"hello, world");
        let again = Cpim::parse(&out).unwrap();
        assert_eq!(again.body, b"hello, world");
        assert!(again.mime.contains(&"Content-Length: 12"));
        assert_eq!(again.headers, c.headers);
    }

    #[test]
    fn malformed_cpim_is_refused_with_the_rule_it_breaks() {
        for (bad, why) in [
            (
                &b"From: a\r\n\r\nContent-Type: text/plain\r\nhello"[..],
                CpimError::Unterminated,
            ),
            (
                b"From: a\n\nContent-Type: text/plain\n\nhello",
                CpimError::Unterminated,
            ),
            (
                b"From a\r\n\r\nContent-Type: text/plain\r\n\r\nx",
                CpimError::BadHeader,
            ),
            (
                b": a\r\n\r\nContent-Type: text/plain\r\n\r\nx",
                CpimError::BadHeader,
            ),
            (
                b"From: a\r\n\r\nSubject: x\r\n\r\nx",
                CpimError::NoContentType,
            ),
        ] {
            assert_eq!(
                Cpim::parse(bad),
                Err(why.clone()),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let many = format!(
            "{}\r\nContent-Type: text/plain\r\n\r\nx",
            "A: b\r\n".repeat(65)
        );
        assert_eq!(Cpim::parse(many.as_bytes()), Err(CpimError::TooManyHeaders));
        // No CPIM headers at all: refused (From and To are required).
        assert_eq!(
            Cpim::parse(b"\r\n\r\nContent-Type: text/plain\r\n\r\nx"),
            Err(CpimError::BadHeader)
        );
    }
}
