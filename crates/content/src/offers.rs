//! File transfers offered in a SIP body that go between the clients, not
//! through the server: MSRP file transfer in an SDP offer (RFC 5547's
//! `a=file-selector`), and Lync's and Communicator's offers
//! (`application/ms-filetransfer+xml`, `text/x-msmsgsinvite`), alone or
//! as parts of a `multipart/*` body. What is found is the name of each
//! file offered, for the file-transfer policy to judge; the bytes never
//! pass through the server, so they cannot be inspected.
//!
//! Read within bounds: 16 parts (`sdp::body`), one level of nesting, 64
//! files.

pub use sdp::body::sdp_bodies;
use sdp::body::{boundary, media, parts};

/// The most files reported for one body.
pub const MAX_FILES: usize = 64;

/// The Lync file-transfer namespace.
pub const LYNC_NS: &str = "http://schemas.microsoft.com/rtc/2009/05/filetransfer";

/// One file offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offered {
    /// As the offer names it (empty when it names none).
    pub name: String,
    /// How: `MSRP` or `Lync`.
    pub via: &'static str,
}

/// The files a body of `content_type` offers (none for most bodies).
pub fn offered(content_type: &str, body: &[u8]) -> Vec<Offered> {
    let mut out = Vec::new();
    collect(content_type, body, 0, &mut out);
    out.truncate(MAX_FILES);
    out
}

fn collect(content_type: &str, body: &[u8], depth: usize, out: &mut Vec<Offered>) {
    let (m, params) = media(content_type);
    match m.as_str() {
        "application/sdp" => sdp(body, out),
        "text/x-msmsgsinvite" => msmsgs(body, out),
        "application/ms-filetransfer+xml" => lync(body, out),
        _ if m.starts_with("multipart/") && depth == 0 => {
            if let Some(b) = boundary(params) {
                for (ct, part) in parts(body, &b) {
                    collect(&ct, part, depth + 1, out);
                }
            }
        }
        _ => {}
    }
}

/// RFC 5547: `a=file-selector:` with `name:"..."` (percent-encoded
/// characters decoded).
fn sdp(body: &[u8], out: &mut Vec<Offered>) {
    // Every call's offer passes here: most have no selector to read.
    if memchr::memmem::find(body, b"a=file-selector:").is_none() {
        return;
    }
    for line in String::from_utf8_lossy(body).lines() {
        let Some(sel) = line.trim_end().strip_prefix("a=file-selector:") else {
            continue;
        };
        let name = sel
            .find("name:\"")
            .and_then(|i| {
                let rest = &sel[i + 6..];
                rest.find('"').map(|j| percent_decode(&rest[..j]))
            })
            .unwrap_or_default();
        out.push(Offered { name, via: "MSRP" });
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Communicator's `Application-File:` lines.
fn msmsgs(body: &[u8], out: &mut Vec<Offered>) {
    for line in String::from_utf8_lossy(body).lines() {
        if let Some((n, v)) = line.split_once(':') {
            if n.trim().eq_ignore_ascii_case("Application-File") {
                out.push(Offered {
                    name: v.trim().to_owned(),
                    via: "Lync",
                });
            }
        }
    }
}

/// Lync's `fileInfo` elements' `name`s; a document that does not read
/// offers a file with no name (refused by any policy).
fn lync(body: &[u8], out: &mut Vec<Offered>) {
    fn walk(n: &xml::Node, out: &mut Vec<Offered>) {
        if n.name == "fileInfo" {
            let name = n
                .children
                .iter()
                .find(|c| c.name == "name")
                .map(|c| c.text.trim().to_owned())
                .unwrap_or_default();
            out.push(Offered { name, via: "Lync" });
        }
        for c in &n.children {
            walk(c, out);
        }
    }
    match xml::parse(body) {
        Ok(root) => walk(&root, out),
        Err(_) => out.push(Offered {
            name: String::new(),
            via: "Lync",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[Offered]) -> Vec<(&str, &str)> {
        v.iter().map(|o| (o.name.as_str(), o.via)).collect()
    }

    #[test]
    fn msrp_file_selectors_are_read() {
        let sdp = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
m=message 7654 TCP/MSRP *\r\na=sendonly\r\na=accept-types:*\r\n\
a=file-selector:name:\"My%20setup.exe\" type:application/octet-stream size:1234 hash:sha-1:72:24\r\n\
a=path:msrp://192.0.2.1:7654/jshA7we;tcp\r\n";
        assert_eq!(
            names(&offered("application/sdp", sdp)),
            [("My setup.exe", "MSRP")]
        );
        // A selector without a name, and an ordinary call: nothing named.
        let unnamed = b"m=message 1 TCP/MSRP *\r\na=file-selector:type:text/plain size:1\r\n";
        assert_eq!(names(&offered("application/sdp", unnamed)), [("", "MSRP")]);
        let call = b"v=0\r\nm=audio 4000 RTP/AVP 0\r\n";
        assert!(offered("application/sdp", call).is_empty());
    }

    #[test]
    fn lync_and_communicator_offers_are_read_alone_and_in_multipart() {
        let lync_doc = br#"<request xmlns="http://schemas.microsoft.com/rtc/2009/05/filetransfer" requestId="1">
<publishFile><fileInfo embedded="true"><id>{1}</id><name>tools.jar</name><size>10</size></fileInfo></publishFile></request>"#;
        assert_eq!(
            names(&offered("application/ms-filetransfer+xml", lync_doc)),
            [("tools.jar", "Lync")]
        );
        let msn = b"Application-Name: File Transfer\r\nInvitation-Command: INVITE\r\nApplication-File: photo.scr\r\nApplication-FileSize: 10\r\n";
        assert_eq!(
            names(&offered("text/x-msmsgsinvite; charset=UTF-8", msn)),
            [("photo.scr", "Lync")]
        );
        let mut multi = b"--b1\r\nContent-Type: application/sdp\r\n\r\nv=0\r\nm=audio 1 RTP/AVP 0\r\n\r\n--b1\r\nContent-Type: application/ms-filetransfer+xml\r\n\r\n".to_vec();
        multi.extend_from_slice(lync_doc);
        multi.extend_from_slice(b"\r\n--b1--\r\n");
        assert_eq!(
            names(&offered("multipart/mixed; boundary=\"b1\"", &multi)),
            [("tools.jar", "Lync")]
        );
        // Not a readable document: an offer of a file without a name.
        assert_eq!(
            names(&offered("application/ms-filetransfer+xml", b"<oops")),
            [("", "Lync")]
        );
        assert!(offered("text/plain", b"Application-File: x.exe").is_empty());
    }

    #[test]
    fn bodies_are_read_within_bounds() {
        let many: String = (0..200)
            .map(|i| format!("a=file-selector:name:\"f{i}.txt\"\r\n"))
            .collect();
        assert_eq!(offered("application/sdp", many.as_bytes()).len(), MAX_FILES);
        let parts: String = (0..100)
            .map(|_| "--b\r\nContent-Type: text/x-msmsgsinvite\r\n\r\nApplication-File: a.exe\r\n")
            .collect::<String>()
            + "--b--\r\n";
        assert!(
            offered("multipart/mixed;boundary=b", parts.as_bytes()).len() <= sdp::body::MAX_PARTS
        );
    }
}
