//! Stream framing. Invariant: feeding the same bytes in arbitrary chunks yields
//! the same sequence of messages and the same verdict as feeding them whole.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sip::framing::{Decoded, Framer};
use sip::Limits;

fn run(chunks: &[&[u8]], limits: &Limits) -> (Vec<Vec<u8>>, bool) {
    let mut buf = BytesMut::new();
    let mut framer = Framer::new();
    let mut out = Vec::new();
    for c in chunks {
        buf.extend_from_slice(c);
        loop {
            match framer.decode(&mut buf, limits) {
                Ok(Decoded::Message(m)) => out.push(m.as_bytes().to_vec()),
                Ok(Decoded::Ping | Decoded::Pong) => out.push(b"\r\n".to_vec()),
                Ok(Decoded::Incomplete) => break,
                Err(_) => return (out, true),
            }
        }
        assert!(buf.len() <= limits.max_message_size + c.len());
    }
    (out, false)
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_message_size: 4096, ..Limits::DEFAULT };
    let Some((&split, rest)) = data.split_first() else { return };
    let whole = run(&[rest], &limits);
    let step = usize::from(split).max(1);
    let chunks: Vec<&[u8]> = rest.chunks(step).collect();
    let chunked = run(&chunks, &limits);
    if !whole.1 && !chunked.1 {
        assert_eq!(whole.0, chunked.0);
    }
});
