//! An upload's multipart/form-data body as a client streams it: the first
//! byte picks the chunk size, the rest is the body (boundary `b`).
//! Invariants: no panic; the parser's memory stays bounded by the chunk,
//! the delimiter and the header limit; and what it reads does not depend
//! on how the body was cut into chunks.
#![no_main]

use bytes::Bytes;
use content::multipart::{Event, Limits, Parser};
use libfuzzer_sys::fuzz_target;

fn run(body: &[u8], n: usize) -> (Vec<Event>, Result<(), String>) {
    let mut p = Parser::new("multipart/form-data; boundary=b", Limits::default()).unwrap();
    let mut out = Vec::new();
    for chunk in body.chunks(n) {
        if let Err(e) = p.feed(Bytes::copy_from_slice(chunk), &mut out) {
            return (join(out), Err(e.to_string()));
        }
    }
    let r = p.finish().map_err(|e| e.to_string());
    (join(out), r)
}

fn join(events: Vec<Event>) -> Vec<Event> {
    let mut joined: Vec<Event> = Vec::new();
    for e in events {
        match (joined.last_mut(), e) {
            (Some(Event::Data(d)), Event::Data(more)) => *d = [&d[..], &more[..]].concat().into(),
            (_, e) => joined.push(e),
        }
    }
    joined
}

fuzz_target!(|data: &[u8]| {
    let Some((&op, body)) = data.split_first() else { return };
    let n = usize::from(op % 16) + 1;
    let whole = run(body, body.len().max(1));
    let cut = run(body, n);
    // Errors may be found at different points; successes must agree.
    if whole.1.is_ok() || cut.1.is_ok() {
        assert_eq!(whole, cut);
    }
});
