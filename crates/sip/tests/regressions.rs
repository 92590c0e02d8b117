//! Inputs the fuzzers once broke the parser or framer with, replayed with the
//! same checks the fuzz targets make. A new finding goes into
//! `tests/data/regressions/`, named after the bug.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use bytes::{Bytes, BytesMut};
use sip::framing::{Decoded, Framer};
use sip::{parse_datagram, Limits};

/// Frames `data` fed in `step`-byte chunks; returns the frames and whether it erred.
fn frames(data: &[u8], step: usize, limits: &Limits) -> (Vec<Vec<u8>>, bool) {
    let mut f = Framer::new();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for c in data.chunks(step.max(1)) {
        buf.extend_from_slice(c);
        loop {
            match f.decode(&mut buf, limits) {
                Ok(Decoded::Message(m)) => out.push(m.as_bytes().to_vec()),
                Ok(Decoded::Ping | Decoded::Pong) => out.push(b"\r\n".to_vec()),
                Ok(Decoded::Incomplete) => break,
                Err(_) => return (out, true),
            }
        }
    }
    (out, false)
}

#[test]
fn fuzz_findings_stay_fixed() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/regressions");
    let limits = Limits {
        max_message_size: 4096,
        ..Limits::DEFAULT
    };
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        let _ = parse_datagram(Bytes::from(data.clone()), &Limits::DEFAULT);
        // The framing target's input: first byte = chunk size, rest = stream.
        if let Some((&step, rest)) = data.split_first() {
            let whole = frames(rest, rest.len().max(1), &limits);
            let chunked = frames(rest, usize::from(step), &limits);
            if !whole.1 && !chunked.1 {
                assert_eq!(whole.0, chunked.0);
            }
        }
        n += 1;
    }
    assert!(n >= 1);
}
