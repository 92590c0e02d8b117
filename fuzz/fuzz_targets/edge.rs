//! The edge's rewrites of messages from both sides, and its tokens.
//! Invariants: no panic; whatever the edge would send is a message that
//! parses again; a token that opens was sealed by the pool (never true of
//! fuzzer input, short of forging ChaCha20-Poly1305).
#![no_main]

use bytes::Bytes;
use edge::token::{Kind, Sealer};
use edge::topology::{Name, Sender, Topology};
use libfuzzer_sys::fuzz_target;
use sip::{parse_datagram, Limits};
use sip_transport::{FlowId, Protocol};

fn topology() -> Topology {
    Topology::new(
        Sealer::new(&[9u8; 32]),
        vec![(Protocol::Tls, Name::new("edge.example.test", 5061))],
        vec![Name::new("192.0.2.10", 5061)],
        Name::new("10.0.0.2", 5061),
    )
}

/// What goes in must parse under the pool's own limits: the front end
/// closes a link on anything it cannot parse.
fn fits_pool(b: &Bytes) {
    if let Err(e) = parse_datagram(b.clone(), &Limits::DEFAULT) {
        panic!("the edge would send the pool a message it refuses ({e:?}):\n{}", String::from_utf8_lossy(b));
    }
}

fn reparses(b: &Bytes) {
    // The edge adds a Via, Record-Routes and tokens: room for them.
    let limits = Limits {
        max_message_size: Limits::DEFAULT.max_message_size + 16_384,
        max_headers: Limits::DEFAULT.max_headers + 8,
        ..Limits::DEFAULT
    };
    if let Err(e) = parse_datagram(b.clone(), &limits) {
        panic!("the edge would send a message that does not parse ({e:?}):\n{}", String::from_utf8_lossy(b));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&op, body)) = data.split_first() else { return };
    let t = topology();
    if op & 0x80 != 0 {
        // Raw token text.
        if let Ok(s) = std::str::from_utf8(body) {
            for k in [Kind::Inward, Kind::Outward, Kind::Vias, Kind::Route, Kind::Path, Kind::Contact] {
                assert!(t.sealer().open(k, s).is_none(), "opened a token nobody sealed");
            }
        }
        return;
    }
    // Outside input under the limits the edge's external side parses with.
    let Ok(m) = parse_datagram(Bytes::copy_from_slice(body), &edge::topology::outside_limits()) else { return };
    let to_tag = op & 1 != 0;
    let sender = Sender {
        flow: FlowId(7),
        protocol: Protocol::Tls,
        remote: "198.51.100.7:40000".parse().unwrap(),
        account: (op & 2 != 0).then(|| "sip:alice@example.test".to_owned()),
        device: (op & 32 != 0).then_some([0xab; 32]),
        partner: (op & 4 != 0)
            .then(|| ("partner.example".to_owned(), vec!["sip.partner.example".to_owned()])),
    };
    // As the relay does: a request or response whose essential fields do
    // not parse is answered 400 or dropped before any rewrite.
    if m.is_request() {
        if sip::RequestFields::extract(&m).is_err() {
            return;
        }
        if let Ok(r) = t.inward_request(&m, to_tag, &sender) {
            fits_pool(&r.bytes);
        }
        let partner = (op & 8 != 0).then(|| edge::topology::Hop {
            flow: FlowId(9),
            protocol: Protocol::Tls,
            partner: Some("partner.example".to_owned()),
            forced: op & 16 != 0,
        });
        if let Ok(r) = t.outward_request(&m, to_tag, FlowId(3), partner) {
            reparses(&r.bytes);
        }
    } else {
        if sip::ResponseFields::extract(&m).is_err() {
            return;
        }
        if let Ok(r) = t.outward_response(&m) {
            reparses(&r.bytes);
        }
        if let Ok(r) = t.inward_response(&m) {
            fits_pool(&r.bytes);
        }
    }
});
