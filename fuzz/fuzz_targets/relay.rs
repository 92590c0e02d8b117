//! The relay's decisions on what a client with an allocation sends:
//! each input read as a STUN message is signed with the allocation's key
//! (so the request handlers run, not only the 401 path) and handed to the
//! engine as Refresh, CreatePermission, ChannelBind or a Send indication;
//! read as ChannelData, it is relayed; and its length comes from a peer.
//! Invariants: no panic, every answer is a STUN message that reads, with
//! the request's transaction id. The same input is also an edge's key,
//! session and calls questions and the pool's answers
//! (`relay::pool_key`; a calls answer that reads is mirrored into a calls
//! table), and the Allocate the pool checks for proof
//! (`relay::auth::proof`): no panic.
#![no_main]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use relay::engine::{Client, Engine, Grant, Limits, Transport};
use stun::integrity::Integrity;
use stun::{attr, Class, Encoder, Message};

const KEY: [u8; 16] = [7; 16];

fuzz_target!(|data: &[u8]| {
    let _ = relay::pool_key::Question::parse(data);
    let _ = relay::pool_key::parse_answer(data);
    let _ = relay::pool_key::SessionQuestion::parse(data);
    let _ = relay::pool_key::parse_calls_question(data);
    if let Ok(calls) = relay::pool_key::parse_calls_answer(data) {
        let table = relay::calls::Calls::new();
        for (user, id, addresses) in &calls {
            table.mirror(user, &[(id.clone(), addresses.clone())], Instant::now());
        }
        let _ = table.mirrored_users();
    }
    let _ = relay::auth::proof(data, "a", "x", &[1; 16], &[2; 32], true);
    let control = Arc::new(relay::Control::new());
    let metrics = Arc::new(relay::metrics::Metrics::default());
    let own = vec![IpAddr::from([198, 51, 100, 1])];
    let mut e: Engine<()> = Engine::new("x".into(), &[1; 32], Limits::default(), own, control.clone(), metrics);
    let now = Instant::now();
    let c = Client {
        transport: Transport::Udp,
        conn: 0,
        addr: SocketAddr::from(([203, 0, 113, 5], 4000)),
    };
    let relayed = SocketAddr::from(([198, 51, 100, 1], 50000));
    let grant = Grant {
        aor: "sip:a@x".into(),
        username: "a".into(),
        key: KEY.to_vec(),
        web: None,
    };
    let id = e.insert(c, grant, relayed, relayed, 600, ([0; 12], Vec::new()), (), now);
    // A call naming a public peer, so permissions can be granted.
    control.calls.described("c", "t", &["sip:a@x"], &[IpAddr::from([203, 0, 113, 9])], now);
    let unix = 1_000_000;
    if let Ok(m) = Message::parse(data) {
        let nonce = e.nonces.issue(c.addr.ip(), unix);
        let mut enc = Encoder::new(m.class, m.method, m.transaction_id);
        for a in m.attributes().iter().filter(|a| {
            !matches!(a.kind, attr::MESSAGE_INTEGRITY | attr::MESSAGE_INTEGRITY_SHA256 | attr::FINGERPRINT)
        }) {
            let _ = enc.attr(a.kind, a.value);
        }
        let _ = enc.attr(attr::USERNAME, b"a");
        let _ = enc.attr(attr::REALM, b"x");
        let _ = enc.attr(attr::NONCE, nonce.as_bytes());
        let signed = enc.finish_with(Some((Integrity::Sha1, &KEY)), data.len() % 2 == 0);
        for raw in [data, signed.as_slice()] {
            let Ok(m) = Message::parse(raw) else { continue };
            match m.class {
                Class::Request => {
                    let answer = e.request(&c, &m, now, unix);
                    let r = Message::parse(&answer.response).expect("every answer reads");
                    assert_eq!(r.transaction_id, m.transaction_id);
                }
                Class::Indication => {
                    let _ = e.send_indication(&c, &m, now);
                }
                _ => {}
            }
        }
    }
    if let Ok(cd) = stun::channel::ChannelData::parse(data) {
        let _ = e.channel_data(&c, cd.channel, cd.data.len(), now);
    }
    let _ = e.from_peer(id, SocketAddr::from(([203, 0, 113, 9], 4000)), data.len(), now);
    let _ = e.tick(now);
});
