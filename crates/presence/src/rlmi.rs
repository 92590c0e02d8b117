//! Resource lists (RFC 4662): the NOTIFY body of a list subscription, a
//! `multipart/related` whose first part is the list meta-information
//! (RLMI, `application/rlmi+xml`) and whose other parts are one PIDF
//! document per resource. Written only; always full state.

/// One resource of the list with its (already privacy-cut) document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub uri: String,
    /// The PIDF document the subscriber may see.
    pub pidf: String,
}

/// The body and its Content-Type. `host` names the Content-IDs; the
/// boundary is chosen so that it occurs in no part (a published note cannot
/// break the multipart framing).
pub fn multipart(
    list_uri: &str,
    version: u32,
    host: &str,
    resources: &[Resource],
) -> (String, String) {
    let e = |s: &str| quick_xml::escape::escape(s).into_owned();
    let cid = |i: usize| format!("r{i}.{version}@{host}");
    let mut rlmi = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<list xmlns=\"urn:ietf:params:xml:ns:rlmi\" uri=\"{}\" version=\"{version}\" fullState=\"true\">\n",
        e(list_uri)
    );
    for (i, r) in resources.iter().enumerate() {
        rlmi.push_str(&format!(
            " <resource uri=\"{}\">\n  <instance id=\"i{i}\" state=\"active\" cid=\"{}\"/>\n </resource>\n",
            e(&r.uri),
            e(&cid(i))
        ));
    }
    rlmi.push_str("</list>\n");
    let mut boundary = format!("parapet-rlmi-{version}");
    let mut n = 0u32;
    while rlmi.contains(&boundary) || resources.iter().any(|r| r.pidf.contains(&boundary)) {
        n += 1;
        boundary = format!("parapet-rlmi-{version}-{n}");
    }
    let start = format!("rlmi.{version}@{host}");
    let mut body = String::new();
    let mut part = |id: &str, ty: &str, content: &str| {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Transfer-Encoding: binary\r\nContent-ID: <{id}>\r\nContent-Type: {ty};charset=\"UTF-8\"\r\n\r\n{content}\r\n"
        ));
    };
    part(&start, "application/rlmi+xml", &rlmi);
    for (i, r) in resources.iter().enumerate() {
        part(&cid(i), "application/pidf+xml", &r.pidf);
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    let content_type = format!(
        "multipart/related;type=\"application/rlmi+xml\";start=\"<{start}>\";boundary=\"{boundary}\""
    );
    (content_type, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_framed_and_listed() {
        let (ct, body) = multipart(
            "sip:alice+contacts@example.com",
            2,
            "example.com",
            &[
                Resource {
                    uri: "sip:bob@example.com".into(),
                    pidf: "<presence/>".into(),
                },
                Resource {
                    uri: "sip:carol@example.com".into(),
                    pidf: "<presence>parapet-rlmi-2</presence>".into(),
                },
            ],
        );
        // The second document contains the first boundary tried: another is used.
        assert!(ct.contains("boundary=\"parapet-rlmi-2-1\""), "{ct}");
        assert!(ct.contains("start=\"<rlmi.2@example.com>\""));
        assert_eq!(body.matches("--parapet-rlmi-2-1\r\n").count(), 3);
        assert!(body.ends_with("--parapet-rlmi-2-1--\r\n"));
        assert!(body.contains("version=\"2\" fullState=\"true\""));
        assert!(body.contains("<resource uri=\"sip:carol@example.com\">"));
        assert!(body.contains("Content-ID: <r1.2@example.com>"));
    }
}
