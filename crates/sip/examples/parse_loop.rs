//! Parses a message in a loop: a target for profilers (`valgrind --tool=callgrind`).
//! Usage: `parse_loop FILE [ITERATIONS]`.

use bytes::Bytes;
use sip::{parse_datagram, Limits, RequestFields};

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: parse_loop FILE [ITERATIONS]");
        std::process::exit(2);
    };
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let buf = match std::fs::read(&path) {
        Ok(b) => Bytes::from(b),
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(1);
        }
    };
    let mut total = 0usize;
    for _ in 0..n {
        match parse_datagram(buf.clone(), &Limits::DEFAULT) {
            Ok(m) => match RequestFields::extract(&m) {
                Ok(f) => total += f.call_id.len() + f.top_via.branch().map_or(0, str::len),
                Err(e) => total += usize::from(e.status()),
            },
            Err(e) => total += usize::from(e.status()),
        }
    }
    println!("{total}");
}
