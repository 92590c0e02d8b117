//! Session descriptions in a SIP message's body: the body itself when it
//! is `application/sdp`, or the `application/sdp` parts of a `multipart/*`
//! body (RFC 5621; e.g. `multipart/mixed` with an ISUP part, or
//! `multipart/alternative` offers), one level deep, at most [`MAX_PARTS`]
//! parts. Shared by the proxy's media policy, the relays' call tables and
//! the file-offer reader, so that all of them see the same descriptions.

/// Parts of one multipart body that are looked at.
pub const MAX_PARTS: usize = 16;

/// A Content-Type's media type (lower case) and its parameters.
pub fn media(content_type: &str) -> (String, &str) {
    let (m, params) = content_type.split_once(';').unwrap_or((content_type, ""));
    (m.trim().to_ascii_lowercase(), params)
}

/// The session descriptions in a body of `content_type`: the body itself
/// when it is `application/sdp`, else the `application/sdp` parts of a
/// `multipart/*` body (one level, bounded).
pub fn sdp_bodies<'a>(content_type: &str, body: &'a [u8]) -> Vec<&'a [u8]> {
    let (m, params) = media(content_type);
    if m == "application/sdp" {
        return vec![body];
    }
    if !m.starts_with("multipart/") {
        return Vec::new();
    }
    let Some(b) = boundary(params) else {
        return Vec::new();
    };
    parts(body, &b)
        .into_iter()
        .filter(|(ct, _)| media(ct).0 == "application/sdp")
        .map(|(_, part)| part)
        .collect()
}

/// The `boundary` parameter of a multipart Content-Type's `params`.
pub fn boundary(params: &str) -> Option<String> {
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_owned())
            .filter(|b| !b.is_empty() && b.len() <= 70)
    })
}

/// The parts of a MIME multipart body: (Content-Type, content). Lenient
/// about line ends (a client's SIP body), bounded in count.
pub fn parts<'a>(body: &'a [u8], boundary: &str) -> Vec<(String, &'a [u8])> {
    let delim = format!("--{boundary}");
    let text = body;
    let mut found = Vec::new();
    let mut at = 0;
    let mut starts = Vec::new();
    while let Some(i) = find(&text[at..], delim.as_bytes()) {
        starts.push(at + i);
        at += i + delim.len();
        if starts.len() > MAX_PARTS {
            break;
        }
    }
    for w in starts.windows(2) {
        let part = &text[w[0] + delim.len()..w[1]];
        let part = part
            .strip_prefix(b"\r\n")
            .or_else(|| part.strip_prefix(b"\n"))
            .unwrap_or(part);
        let (head, content) = match find(part, b"\r\n\r\n") {
            Some(i) => (&part[..i], &part[i + 4..]),
            None => match find(part, b"\n\n") {
                Some(i) => (&part[..i], &part[i + 2..]),
                None => continue,
            },
        };
        let head = String::from_utf8_lossy(head);
        let ct = head
            .lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.trim()
                    .eq_ignore_ascii_case("content-type")
                    .then(|| v.trim().to_owned())
            })
            .unwrap_or_else(|| "text/plain".into());
        found.push((ct, content));
    }
    found
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDP: &[u8] = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n";

    #[test]
    fn a_plain_sdp_body_is_itself() {
        assert_eq!(sdp_bodies("application/sdp", SDP), [SDP]);
        assert_eq!(sdp_bodies("Application/SDP ; x=1", SDP), [SDP]);
    }

    #[test]
    fn other_types_hold_no_description() {
        assert!(sdp_bodies("text/plain", SDP).is_empty());
        assert!(sdp_bodies("multipart/mixed", SDP).is_empty(), "no boundary");
        assert!(sdp_bodies("multipart/mixed;boundary=\"\"", SDP).is_empty());
    }

    #[test]
    fn the_sdp_parts_of_a_multipart_body_are_found_with_either_line_end() {
        for nl in ["\r\n", "\n"] {
            let body = format!(
                "--b1{nl}Content-Type: application/ISUP;version=itu-t92+{nl}{nl}\x01\x02{nl}\
                 --b1{nl}Content-Type: application/sdp{nl}{nl}v=0{nl}--b1{nl}\
                 content-type: APPLICATION/SDP{nl}{nl}v=1{nl}--b1--{nl}"
            );
            let got = sdp_bodies("multipart/mixed; boundary=\"b1\"", body.as_bytes());
            let want: Vec<String> = ["v=0", "v=1"].iter().map(|v| format!("{v}{nl}")).collect();
            let got: Vec<String> = got
                .iter()
                .map(|b| String::from_utf8_lossy(b).into())
                .collect();
            assert_eq!(got, want, "{nl:?}");
        }
    }

    #[test]
    fn parts_are_bounded_in_count() {
        let mut body = String::new();
        for _ in 0..100 {
            body.push_str("--b\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n");
        }
        body.push_str("--b--\r\n");
        assert_eq!(
            sdp_bodies("multipart/alternative;boundary=b", body.as_bytes()).len(),
            MAX_PARTS
        );
    }

    #[test]
    fn a_boundary_longer_than_mime_allows_is_none() {
        assert_eq!(boundary(" boundary=abc"), Some("abc".into()));
        assert_eq!(boundary(&format!("boundary={}", "x".repeat(71))), None);
    }
}
