//! Parses a message in a loop: a target for profilers (`valgrind --tool=callgrind`).
//! Usage: `parse_loop FILE [ITERATIONS] [listed]`.

use bytes::Bytes;
use sip::headers::{CSeq, CallId, From, MaxForwards, To, Via};
use sip::{parse_datagram, Limits, Message, RequestFields};

fn listed_fields(m: &Message) -> usize {
    let via = m
        .list::<Via>()
        .next()
        .and_then(Result::ok)
        .and_then(|v| v.branch())
        .map_or(0, str::len);
    let call_id = m.typed::<CallId>().ok().flatten().map_or(0, |c| c.0.len());
    let cseq = m
        .typed::<CSeq>()
        .ok()
        .flatten()
        .map_or(0, |c| c.seq as usize);
    let from = m
        .typed::<From>()
        .ok()
        .flatten()
        .and_then(|f| f.tag().map(str::len))
        .unwrap_or(0);
    let to = m
        .typed::<To>()
        .ok()
        .flatten()
        .and_then(|t| t.tag().map(str::len))
        .unwrap_or(0);
    let mf = m
        .typed::<MaxForwards>()
        .ok()
        .flatten()
        .map_or(0, |x| usize::from(x.0));
    via + call_id + cseq + from + to + mf
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: parse_loop FILE [ITERATIONS]");
        std::process::exit(2);
    };
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    // "listed": only the fields the proxy hot path reads (see benches/parse.rs).
    let listed = args.next().as_deref() == Some("listed");
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
            Ok(m) if listed => total += listed_fields(&m),
            Ok(m) => match RequestFields::extract(&m) {
                Ok(f) => total += f.call_id.len() + f.top_via.branch().map_or(0, str::len),
                Err(e) => total += usize::from(e.status()),
            },
            Err(e) => total += usize::from(e.status()),
        }
    }
    println!("{total}");
}
