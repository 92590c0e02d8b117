//! What a relay's port receives: STUN messages and ChannelData, as
//! datagrams and as stream frames. Invariants: no panic; a message that
//! reads checks its integrity and fingerprint and decodes every typed
//! attribute without panicking; the attributes it keeps, written again by
//! the encoder, read back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stun::channel::{self, ChannelData};
use stun::{attr, Encoder, Message};

fn decode_all(m: &Message<'_>) {
    for a in m.attributes() {
        let v = a.value;
        let _ = match a.kind {
            attr::MAPPED_ADDRESS | attr::ALTERNATE_SERVER => attr::address(a.kind, v).map(drop),
            attr::XOR_MAPPED_ADDRESS | attr::XOR_PEER_ADDRESS | attr::XOR_RELAYED_ADDRESS => {
                attr::xor_address(a.kind, v, &m.transaction_id).map(drop)
            }
            attr::ERROR_CODE => attr::error_code(v).map(drop),
            attr::USERNAME | attr::REALM | attr::NONCE | attr::SOFTWARE => {
                attr::text(a.kind, v).map(drop)
            }
            attr::LIFETIME | attr::PRIORITY => attr::u32_value(a.kind, v).map(drop),
            attr::CHANNEL_NUMBER => attr::channel_number(v).map(drop),
            attr::REQUESTED_TRANSPORT => attr::requested_transport(v).map(drop),
            attr::REQUESTED_ADDRESS_FAMILY | attr::ADDITIONAL_ADDRESS_FAMILY => {
                attr::address_family(a.kind, v).map(drop)
            }
            attr::EVEN_PORT => attr::even_port_reserve(v).map(drop),
            attr::PASSWORD_ALGORITHMS | attr::PASSWORD_ALGORITHM => {
                attr::password_algorithms(a.kind, v).map(drop)
            }
            attr::UNKNOWN_ATTRIBUTES => {
                attr::unknown_attributes(v);
                Ok(())
            }
            _ => Ok(()),
        };
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::parse(data) {
        let _ = m.verify(b"key");
        let _ = m.fingerprint_ok();
        let _ = m.unknown_required();
        decode_all(&m);
        let before: Vec<_> = m
            .attributes()
            .iter()
            .take_while(|a| {
                a.kind != attr::MESSAGE_INTEGRITY
                    && a.kind != attr::MESSAGE_INTEGRITY_SHA256
                    && a.kind != attr::FINGERPRINT
            })
            .map(|a| (a.kind, a.value))
            .collect();
        let mut e = Encoder::new(m.class, m.method, m.transaction_id);
        for (k, v) in &before {
            e.attr(*k, v).expect("what was read fits again");
        }
        let again = e.finish();
        let m2 = Message::parse(&again).expect("what the encoder writes reads");
        let after: Vec<_> = m2.attributes().iter().map(|a| (a.kind, a.value)).collect();
        assert_eq!(before, after);
        assert_eq!((m2.class, m2.method), (m.class, m.method));
    }
    let _ = ChannelData::parse(data);
    if let Some(Ok(n)) = channel::frame_len(data) {
        assert!(n >= 4);
    }
});
