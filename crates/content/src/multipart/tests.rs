#![allow(clippy::unwrap_used)]
use super::*;

const CT: &str =
    "multipart/form-data; boundary=---------------------------14737809831466499882746641449";

/// The body Linphone sends: one part named File.
fn linphone_body(content: &[u8]) -> Vec<u8> {
    let mut b = b"-----------------------------14737809831466499882746641449\r\n\
Content-Disposition: form-data; name=\"File\"; filename=\"photo.jpg\"\r\n\
Content-Type: image/jpeg\r\n\r\n"
        .to_vec();
    b.extend_from_slice(content);
    b.extend_from_slice(b"\r\n-----------------------------14737809831466499882746641449--\r\n");
    b
}

/// Feeds `body` in chunks of `n` bytes; the events, joined data.
fn parse(ct: &str, body: &[u8], n: usize) -> Result<Vec<Event>, MultipartError> {
    let mut p = Parser::new(ct, Limits::default())?;
    let mut out = Vec::new();
    for chunk in body.chunks(n.max(1)) {
        p.feed(Bytes::copy_from_slice(chunk), &mut out)?;
    }
    p.finish()?;
    // Join consecutive Data events for comparison.
    let mut joined: Vec<Event> = Vec::new();
    for e in out {
        match (joined.last_mut(), e) {
            (Some(Event::Data(d)), Event::Data(more)) => *d = [&d[..], &more[..]].concat().into(),
            (_, e) => joined.push(e),
        }
    }
    Ok(joined)
}

#[test]
fn a_linphone_upload_is_read_whatever_the_chunking() {
    // Content that contains CRLFs, dashes and most of the boundary.
    let content = b"\xff\xd8\xff\r\n--\r\n-----------------------------1473780983146649988274664144 not it\r\n";
    let body = linphone_body(content);
    let want = vec![
        Event::Part(PartHeaders {
            name: "File".into(),
            filename: Some("photo.jpg".into()),
            content_type: Some("image/jpeg".into()),
        }),
        Event::Data(Bytes::copy_from_slice(content)),
        Event::PartEnd,
        Event::End,
    ];
    for n in [1, 2, 3, 7, 64, 100_000] {
        assert_eq!(parse(CT, &body, n).unwrap(), want, "chunks of {n}");
    }
}

#[test]
fn the_boundary_is_read_strictly_from_the_content_type() {
    assert_eq!(
        boundary("multipart/form-data; boundary=\"a b\"").unwrap(),
        "a b"
    );
    assert_eq!(boundary("Multipart/Form-Data;boundary=xyz").unwrap(), "xyz");
    for bad in [
        "multipart/mixed; boundary=x",
        "multipart/form-data",
        "multipart/form-data; boundary=",
        "multipart/form-data; boundary=a; boundary=b",
        "multipart/form-data; boundary=has\"quote",
        &format!("multipart/form-data; boundary={}", "x".repeat(71)),
    ] {
        assert!(boundary(bad).is_err(), "{bad}");
    }
}

#[test]
fn several_parts_an_empty_one_and_rfc_5987_names() {
    let body = b"preamble is ignored\r\n--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\none\r\n--b\r\n\
Content-Disposition: form-data; name=\"File\"; filename=\"x.txt\"; filename*=UTF-8''%C3%A9t%C3%A9.txt\r\n\r\n\r\n--b--\r\nepilogue";
    let events = parse("multipart/form-data; boundary=b", body, 5).unwrap();
    assert_eq!(
        events,
        vec![
            Event::Part(PartHeaders {
                name: "a".into(),
                filename: None,
                content_type: None
            }),
            Event::Data(Bytes::from_static(b"one")),
            Event::PartEnd,
            Event::Part(PartHeaders {
                name: "File".into(),
                filename: Some("été.txt".into()),
                content_type: None
            }),
            Event::PartEnd,
            Event::End,
        ]
    );
}

#[test]
fn malformed_bodies_are_refused_with_the_rule_they_break() {
    let ct = "multipart/form-data; boundary=b";
    let cases: Vec<(&[u8], MultipartError)> = vec![
        // Truncated: no closing delimiter.
        (
            b"--b\r\nContent-Disposition: form-data; name=\"File\"\r\n\r\ndata",
            MultipartError::Truncated,
        ),
        (b"", MultipartError::Truncated),
        // Not a delimiter after the boundary.
        (b"--bX\r\n", MultipartError::Delimiter),
        // No Content-Disposition, or not form-data, or no name.
        (
            b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--",
            MultipartError::Header("no Content-Disposition".into()),
        ),
        (
            b"--b\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nx\r\n--b--",
            MultipartError::Header("Content-Disposition is not form-data".into()),
        ),
        (
            b"--b\r\nContent-Disposition: form-data; filename=\"a\"\r\n\r\nx\r\n--b--",
            MultipartError::Header("a part without a name".into()),
        ),
        (
            b"--b\r\nContent-Disposition: form-data; name=\"a\r\n\r\nx\r\n--b--",
            MultipartError::Header("an unterminated quoted string".into()),
        ),
        (
            b"--b\r\nContent-Disposition: form-data; name=\"a\"; name=\"b\"\r\n\r\nx\r\n--b--",
            MultipartError::Header("a parameter given twice".into()),
        ),
        (
            b"--b\r\nBad Header\r\n\r\nx\r\n--b--",
            MultipartError::Header("a line is not Name: value".into()),
        ),
    ];
    for (body, want) in cases {
        assert_eq!(
            parse(ct, body, 3).unwrap_err(),
            want,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    // Limits: parts, header size, preamble.
    let many: Vec<u8> = (0..9)
        .flat_map(|i| {
            format!("--b\r\nContent-Disposition: form-data; name=\"p{i}\"\r\n\r\nx\r\n")
                .into_bytes()
        })
        .chain(b"--b--".iter().copied())
        .collect();
    assert_eq!(
        parse(ct, &many, 10).unwrap_err(),
        MultipartError::TooManyParts
    );
    let long = format!("--b\r\nX-Long: {}\r\n\r\n", "a".repeat(9000));
    assert_eq!(
        parse(ct, long.as_bytes(), 100).unwrap_err(),
        MultipartError::Header("too long".into())
    );
    let chatty = vec![b'x'; 5000];
    assert_eq!(
        parse(ct, &chatty, 100).unwrap_err(),
        MultipartError::Delimiter
    );
}

#[test]
fn a_large_upload_passes_in_bounded_memory() {
    let mut p = Parser::new(CT, Limits::default()).unwrap();
    let mut out = Vec::new();
    p.feed(Bytes::from(linphone_body(b"")).slice(..200), &mut out)
        .unwrap();
    let chunk = Bytes::from(vec![0x5a; 64 * 1024]);
    let mut total = 0usize;
    for _ in 0..160 {
        p.feed(chunk.clone(), &mut out).unwrap();
        for e in out.drain(..) {
            if let Event::Data(d) = e {
                total += d.len();
            }
        }
        assert!(p.buf.len() < 64 * 1024 + 200, "{}", p.buf.len());
    }
    assert!(total > 10 * 1024 * 1024 - 100, "{total}");
    assert!(p.finish().is_err(), "no closing delimiter yet");
}

#[test]
fn content_comes_out_as_slices_of_the_chunks_fed() {
    let mut p = Parser::new(CT, Limits::default()).unwrap();
    let mut out = Vec::new();
    p.feed(Bytes::from(linphone_body(b"")).slice(..200), &mut out)
        .unwrap();
    out.clear();
    let chunk = Bytes::from(vec![0x5a; 64 * 1024]);
    let range = chunk.as_ptr_range();
    for _ in 0..3 {
        p.feed(chunk.clone(), &mut out).unwrap();
    }
    let mut copied = 0;
    for e in &out {
        if let Event::Data(d) = e {
            if !range.contains(&d.as_ptr()) {
                copied += d.len();
            }
        }
    }
    // Only what was held back in case it began a delimiter is copied.
    assert!(copied < 3 * 64, "{copied} bytes copied");
}
