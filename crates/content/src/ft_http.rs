//! RCS "file transfer via HTTP" pointers (`application/vnd.gsma.rcs-ft-http+xml`,
//! GSMA RCC.07), as Linphone writes and reads them: a `file` element in
//! the `urn:gsma:params:xml:ns:rcs:rcs:fthttp` namespace holding a
//! `file-info type="file"` (size, name, content type, `data url=`
//! `until=`) and optionally a thumbnail's. Written with every value
//! escaped; read strictly through the bounded XML tree, every URL in it
//! returned so that none goes unexamined.

use xml::Node;

/// The MESSAGE content type of a pointer.
pub const CONTENT_TYPE: &str = "application/vnd.gsma.rcs-ft-http+xml";
/// Its XML namespace.
pub const NS: &str = "urn:gsma:params:xml:ns:rcs:rcs:fthttp";

/// What a pointer says about the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    pub name: String,
    pub size: u64,
    pub content_type: String,
    /// Where to fetch it.
    pub url: String,
    /// Until when (RFC 3339), if said.
    pub until: Option<String>,
}

/// A pointer as read from a MESSAGE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    pub file: FileInfo,
    /// The thumbnail's URL, if one is offered.
    pub thumbnail: Option<String>,
    /// The file is end-to-end encrypted (a `file-key` is given): its
    /// content cannot be inspected on the way.
    pub encrypted: bool,
}

impl Pointer {
    /// Every URL the pointer names.
    pub fn urls(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.file.url.as_str()).chain(self.thumbnail.as_deref())
    }
}

/// Why a body is not a pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FtError(pub String);

impl std::fmt::Display for FtError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The pointer document for a file.
pub fn write(f: &FileInfo) -> String {
    let until = f
        .until
        .as_deref()
        .map(|u| format!(" until=\"{}\"", xml::escape(u)))
        .unwrap_or_default();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<file xmlns=\"{NS}\">\n<file-info type=\"file\">\n<file-size>{}</file-size>\n<file-name>{}</file-name>\n<content-type>{}</content-type>\n<data url=\"{}\"{until}/>\n</file-info>\n</file>\n",
        f.size,
        xml::escape(&f.name),
        xml::escape(&f.content_type),
        xml::escape(&f.url),
    )
}

fn bad<T>(m: impl Into<String>) -> Result<T, FtError> {
    Err(FtError(m.into()))
}

fn child<'a>(n: &'a Node, name: &str) -> Option<&'a Node> {
    n.children.iter().find(|c| c.is(NS, name))
}

/// Reads a pointer.
pub fn read(body: &[u8]) -> Result<Pointer, FtError> {
    let root = xml::parse(body).map_err(|e| FtError(e.0))?;
    if !root.is(NS, "file") {
        return bad(format!(
            "the root element is {{{}}}{}, not an RCS file pointer",
            root.ns, root.name
        ));
    }
    let mut file = None;
    let mut thumbnail = None;
    let mut encrypted = false;
    for info in root.children.iter().filter(|c| c.is(NS, "file-info")) {
        let url = child(info, "data")
            .and_then(|d| d.attr("url"))
            .map(str::to_owned);
        match info.attr("type") {
            Some("file") => {
                if file.is_some() {
                    return bad("two file-info elements of type file");
                }
                let url = match url {
                    Some(u) => u,
                    None => return bad("the file has no data url"),
                };
                let name = child(info, "file-name")
                    .map(|n| n.text.trim().to_owned())
                    .filter(|n| !n.is_empty())
                    .ok_or_else(|| FtError("the file has no file-name".into()))?;
                let size = match child(info, "file-size") {
                    Some(s) => s
                        .text
                        .trim()
                        .parse()
                        .map_err(|_| FtError("file-size is not a number".into()))?,
                    None => 0,
                };
                encrypted |= child(info, "file-key").is_some();
                file = Some(FileInfo {
                    name,
                    size,
                    content_type: child(info, "content-type")
                        .map(|c| c.text.trim().to_owned())
                        .unwrap_or_default(),
                    url,
                    until: child(info, "data")
                        .and_then(|d| d.attr("until"))
                        .map(str::to_owned),
                });
            }
            Some("thumbnail") => {
                if thumbnail.is_some() {
                    return bad("two thumbnails");
                }
                thumbnail =
                    Some(url.ok_or_else(|| FtError("the thumbnail has no data url".into()))?);
            }
            _ => return bad("a file-info of unknown type"),
        }
    }
    let file = match file {
        Some(f) => f,
        None => return bad("no file-info of type file"),
    };
    Ok(Pointer {
        file,
        thumbnail,
        encrypted,
    })
}

/// What a MESSAGE body says about files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offer {
    /// Not a file pointer (nor an encrypted body).
    None,
    /// A pointer, raw or inside `message/cpim`.
    Pointer(Pointer),
    /// An end-to-end encrypted body: it may carry a pointer (Linphone's
    /// LIME encrypts the pointer with the file's key), which cannot be seen.
    Encrypted,
    /// Declared a pointer but not one.
    Malformed(FtError),
}

fn media(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn encrypted_type(media: &str) -> bool {
    matches!(
        media,
        "multipart/encrypted"
            | "application/pkcs7-mime"
            | "application/pgp-encrypted"
            | "application/lime"
            | "application/cipher.vnd.gsma.rcs-ft-http+xml"
    )
}

/// Reads a MESSAGE body of `content_type` for a file offer.
pub fn offer(content_type: &str, body: &[u8]) -> Offer {
    let mut media_type = media(content_type);
    let mut inner = body;
    if media_type == "message/cpim" {
        let Ok(c) = crate::cpim::Cpim::parse(body) else {
            return Offer::None;
        };
        media_type = media(c.content_type());
        inner = c.body;
    }
    if encrypted_type(&media_type) {
        return Offer::Encrypted;
    }
    if media_type != CONTENT_TYPE {
        return Offer::None;
    }
    match read(inner) {
        Ok(p) => Offer::Pointer(p),
        Err(e) => Offer::Malformed(e),
    }
}

/// A URL of the form `https://HOST[:PORT]/files/ID`, ID 32 lower-case hex
/// digits, nothing after it: the file-transfer server's. `None` for
/// anything else (another server's, another path, a query).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OurUrl<'a> {
    /// A DNS name, an IPv4 address, or an IPv6 address without brackets.
    pub host: &'a str,
    pub port: Option<u16>,
    pub id: &'a str,
}

/// The path files are served under.
pub const FILES_PATH: &str = "/files";

/// Reads a URL as one of the file-transfer server's, if it has that form.
pub fn our_url(url: &str) -> Option<OurUrl<'_>> {
    let rest = url.strip_prefix("https://")?;
    let (authority, path) = rest.split_at(rest.find('/')?);
    let id = path.strip_prefix(FILES_PATH)?.strip_prefix('/')?;
    if id.len() != 32 || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        h.parse::<std::net::Ipv6Addr>().ok()?;
        (h, after)
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, &authority[h.len()..][..1 + p.len()]),
            None => (authority, ""),
        }
    };
    let port = match port {
        "" => None,
        p => Some(p.strip_prefix(':')?.parse::<u16>().ok()?),
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'));
    host_ok.then_some(OurUrl { host, port, id })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn info(name: &str) -> FileInfo {
        FileInfo {
            name: name.into(),
            size: 1234,
            content_type: "image/jpeg".into(),
            url: "https://parapet.example.test:4443/files/abc?x=1&y=2".into(),
            until: Some("2026-12-12T10:00:00Z".into()),
        }
    }

    #[test]
    fn a_pointer_is_written_escaped_and_read_back() {
        for name in ["photo.jpg", "<script>&\"'.jpg", "été \u{1F600}.png"] {
            let doc = write(&info(name));
            assert!(!doc.contains("<script>"), "{doc}");
            let p = read(doc.as_bytes()).unwrap();
            assert_eq!(p.file, info(name));
            assert_eq!(p.thumbnail, None);
            assert!(!p.encrypted);
        }
        // A control character cannot be written: it is dropped.
        let p = read(write(&info("a\u{1}b.txt")).as_bytes()).unwrap();
        assert_eq!(p.file.name, "ab.txt");
    }

    #[test]
    fn linphones_pointer_with_a_thumbnail_and_a_key_is_read() {
        let doc = br#"<?xml version="1.0" encoding="UTF-8"?>
<file xmlns="urn:gsma:params:xml:ns:rcs:rcs:fthttp" xmlns:am="urn:gsma:params:xml:ns:rcs:rcs:rram">
<file-info type="thumbnail"><file-size>7427</file-size><content-type>image/jpeg</content-type>
<data url="https://ft.example/t/1" until="2026-12-12T10:00:00Z"/></file-info>
<file-info type="file"><file-size>1234</file-size><file-name>a.jpg</file-name>
<content-type>image/jpeg</content-type><file-key>c2VjcmV0</file-key>
<data url="https://ft.example/f/1" until="2026-12-12T10:00:00Z"/></file-info>
</file>"#;
        let p = read(doc).unwrap();
        assert_eq!(p.file.name, "a.jpg");
        assert!(p.encrypted);
        assert_eq!(
            p.urls().collect::<Vec<_>>(),
            ["https://ft.example/f/1", "https://ft.example/t/1"]
        );
    }

    #[test]
    fn our_urls_are_recognised_and_nothing_else() {
        let id = "0123456789abcdef0123456789abcdef";
        let u = format!("https://example.test:4443/files/{id}");
        assert_eq!(
            our_url(&u),
            Some(OurUrl {
                host: "example.test",
                port: Some(4443),
                id
            })
        );
        let v6 = format!("https://[::1]/files/{id}");
        assert_eq!(our_url(&v6).map(|u| (u.host, u.port)), Some(("::1", None)));
        for bad in [
            format!("http://example.test/files/{id}"),
            format!("https://example.test/files/{id}?x=1"),
            format!("https://example.test/files/{id}/"),
            format!("https://example.test/other/{id}"),
            format!("https://example.test:99999/files/{id}"),
            format!("https://user@example.test/files/{id}"),
            format!("https://[zz]/files/{id}"),
            "https://example.test/files/0123456789ABCDEF0123456789ABCDEF".into(),
            "https://example.test/files/short".into(),
        ] {
            assert_eq!(our_url(&bad), None, "{bad}");
        }
    }

    #[test]
    fn offers_are_found_raw_in_cpim_and_encrypted() {
        let doc = write(&info("a.pdf"));
        assert!(
            matches!(offer(CONTENT_TYPE, doc.as_bytes()), Offer::Pointer(p) if p.file.name == "a.pdf")
        );
        let cpim = format!(
            "From: <sip:a@x>\r\nTo: <sip:b@x>\r\n\r\nContent-Type: {CONTENT_TYPE}\r\n\r\n{doc}"
        );
        assert!(matches!(
            offer("message/cpim", cpim.as_bytes()),
            Offer::Pointer(_)
        ));
        assert_eq!(offer("text/plain", b"hello"), Offer::None);
        assert_eq!(
            offer("multipart/encrypted; protocol=\"application/lime\"", b"..."),
            Offer::Encrypted
        );
        assert!(matches!(offer(CONTENT_TYPE, b"<x/>"), Offer::Malformed(_)));
    }

    #[test]
    fn what_is_not_a_pointer_is_refused_with_the_reason() {
        for (doc, says) in [
            (&b"<file/>"[..], "not an RCS file pointer"),
            (b"<file xmlns=\"urn:gsma:params:xml:ns:rcs:rcs:fthttp\"/>", "no file-info"),
            (b"<file xmlns=\"urn:gsma:params:xml:ns:rcs:rcs:fthttp\"><file-info type=\"file\"><file-name>a</file-name></file-info></file>", "no data url"),
            (b"<file xmlns=\"urn:gsma:params:xml:ns:rcs:rcs:fthttp\"><file-info type=\"file\"><data url=\"u\"/></file-info></file>", "no file-name"),
            (b"<file xmlns=\"urn:gsma:params:xml:ns:rcs:rcs:fthttp\"><file-info type=\"file\"><file-name>a</file-name><file-size>-1</file-size><data url=\"u\"/></file-info></file>", "not a number"),
            (b"<file xmlns=\"urn:gsma:params:xml:ns:rcs:rcs:fthttp\"><file-info type=\"other\"/></file>", "unknown type"),
            (b"<!DOCTYPE x [<!ENTITY a \"b\">]><file/>", "DOCTYPE"),
        ] {
            let e = read(doc).unwrap_err();
            assert!(e.0.contains(says), "{e} should say {says}");
        }
    }
}
