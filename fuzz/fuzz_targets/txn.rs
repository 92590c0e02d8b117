//! The transaction layer's input: a sequence of messages and clock advances.
//! Invariants: no panic, the table and the completed transactions' memory never
//! exceed their bounds, and once time passes every timer every transaction is gone.
#![no_main]

use std::time::{Duration, Instant};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sip::{parse_datagram, Limits, RequestFields, ResponseFields};
use sip_txn::{Config, Reliability, TxnLayer};

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let cfg = Config { max_transactions: 8, max_completed_bytes: 4096, ..Config::default() };
    let mut layer: TxnLayer<u8> = TxnLayer::new(cfg, t0);
    let mut out = Vec::new();
    let mut now = t0;
    // Records separated by 0xFF: first byte = op, rest = message.
    for rec in data.split(|&b| b == 0xFF) {
        let Some((&op, body)) = rec.split_first() else { continue };
        now += Duration::from_millis(u64::from(op) * 97);
        let rel = if op & 1 == 0 { Reliability::Unreliable } else { Reliability::Reliable };
        let Ok(m) = parse_datagram(Bytes::copy_from_slice(body), &Limits::DEFAULT) else {
            layer.poll(now, &mut out);
            continue;
        };
        if let Ok(f) = RequestFields::extract(&m) {
            if op & 2 == 0 {
                if let Ok(sip_txn::ServerEvent::New(id)) = layer.on_request(&m, &f, op, rel, now, &mut out) {
                    let status = [100u16, 180, 200, 404, 486][usize::from(op) % 5];
                    let resp = sip::build::ResponseBuilder::new(&m, status, "X").to_tag("t").finish();
                    layer.respond(id, status, resp, now, &mut out);
                }
                let _ = layer.cancel_target(&f);
            } else {
                let _ = layer.send_request(m.clone(), op, rel, now, &mut out);
            }
        } else if let Ok(f) = ResponseFields::extract(&m) {
            let _ = layer.on_response(&m, &f, now, &mut out);
        }
        layer.poll(now, &mut out);
        assert!(layer.len() <= 8);
        assert!(layer.completed_bytes() <= 4096);
        out.clear();
    }
    layer.poll(now + Duration::from_secs(3600), &mut out);
    assert!(layer.is_empty(), "every transaction ends once its timers have run");
    assert_eq!(layer.completed_len(), 0, "and every completed one");
});
