//! Parsing a typical message and reading the proxy fields allocates nothing: the
//! message keeps one `Bytes` and an inline header index. Counted with dhat's
//! allocator in testing mode.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use bytes::Bytes;
use sip::{parse_datagram, Limits, RequestFields};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

#[test]
fn parse_and_proxy_fields_allocate_nothing() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/bench");
    let bufs: Vec<Bytes> = ["message.sip", "invite.sip"]
        .iter()
        .map(|n| Bytes::from(std::fs::read(format!("{dir}/{n}")).unwrap()))
        .collect();
    // The first clone of a Vec-backed `Bytes` promotes it to a shared buffer (one
    // allocation inside `bytes`, once per buffer, not per parse): do it up front.
    let _warm: Vec<Bytes> = bufs.iter().map(Bytes::clone).collect();
    let _profiler = dhat::Profiler::builder().testing().build();
    for buf in &bufs {
        let before = dhat::HeapStats::get().total_blocks;
        for _ in 0..100 {
            let msg = parse_datagram(buf.clone(), &Limits::DEFAULT).unwrap();
            let f = RequestFields::extract(&msg).unwrap();
            assert!(f.top_via.branch().is_some());
            assert!(f.from.tag().is_some());
            std::hint::black_box(&f);
        }
        let after = dhat::HeapStats::get().total_blocks;
        assert_eq!(
            after - before,
            0,
            "allocations while parsing {} bytes",
            buf.len()
        );
    }
}
