//! "Parse + the fields a proxy needs" on a 0.4 KB MESSAGE and a 1 KB INVITE with
//! SDP: `parse` alone; `parse+listed_fields` (top Via branch, Call-ID, CSeq,
//! From/To tags, Max-Forwards); `parse+request_fields` (`RequestFields::extract`:
//! those plus the Request-URI and every Via, all validated). Results are recorded
//! in bench/README.md.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use sip::headers::{CSeq, CallId, From, MaxForwards, To, Via};
use sip::{parse_datagram, Limits, RequestFields};

fn proxy_fields(buf: &Bytes) -> usize {
    let msg = parse_datagram(buf.clone(), &Limits::DEFAULT).expect("bench message parses");
    let f = RequestFields::extract(&msg).expect("bench message has its fields");
    f.top_via.branch().map_or(0, str::len)
        + f.call_id.len()
        + f.cseq.seq as usize
        + f.from.tag().map_or(0, str::len)
        + f.to.tag().map_or(0, str::len)
        + usize::from(f.max_forwards.unwrap_or(0))
}

/// Exactly the fields the proxy hot path reads per message: top Via branch,
/// Call-ID, CSeq, From/To tags and Max-Forwards (each parsed with its full
/// grammar, From/To as complete name-addrs).
fn listed_fields(buf: &Bytes) -> usize {
    let msg = parse_datagram(buf.clone(), &Limits::DEFAULT).expect("bench message parses");
    let via = msg.list::<Via>().next().expect("a Via").expect("valid Via");
    let call_id = msg
        .typed::<CallId>()
        .expect("valid Call-ID")
        .expect("a Call-ID");
    let cseq = msg.typed::<CSeq>().expect("valid CSeq").expect("a CSeq");
    let from = msg.typed::<From>().expect("valid From").expect("a From");
    let to = msg.typed::<To>().expect("valid To").expect("a To");
    let mf = msg
        .typed::<MaxForwards>()
        .expect("valid Max-Forwards")
        .map_or(70, |m| m.0);
    via.branch().map_or(0, str::len)
        + call_id.0.len()
        + cseq.seq as usize
        + from.tag().map_or(0, str::len)
        + to.tag().map_or(0, str::len)
        + usize::from(mf)
}

fn parse_only(buf: &Bytes) -> usize {
    parse_datagram(buf.clone(), &Limits::DEFAULT)
        .expect("bench message parses")
        .header_count()
}

fn bench(c: &mut Criterion) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/bench");
    for name in ["message.sip", "invite.sip"] {
        let buf = Bytes::from(std::fs::read(format!("{dir}/{name}")).expect("bench data present"));
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Bytes(buf.len() as u64));
        g.bench_function("parse", |b| b.iter(|| parse_only(black_box(&buf))));
        g.bench_function("parse+listed_fields", |b| {
            b.iter(|| listed_fields(black_box(&buf)))
        });
        g.bench_function("parse+request_fields", |b| {
            b.iter(|| proxy_fields(black_box(&buf)))
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
