//! The RFC 5769 test vectors (tests/data/rfc5769): every message reads,
//! its attributes decode to the RFC's values, its integrity and
//! fingerprint check with the RFC's keys and fail with any other, and a
//! changed bit is caught.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use stun::attr::{self, PasswordAlgorithm};
use stun::integrity::{long_term_key, Integrity, IntegrityError};
use stun::{Class, Encoder, Message};

fn vector(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/data/rfc5769/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

const SHORT_TERM: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";
const TXID: [u8; 12] = [
    0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
];

#[test]
fn the_sample_request_reads_and_checks() {
    let raw = vector("2.1-sample-request.bin");
    let m = Message::parse(&raw).unwrap();
    assert_eq!((m.class, m.method), (Class::Request, stun::method::BINDING));
    assert_eq!(m.transaction_id, TXID);
    assert_eq!(
        attr::text(attr::USERNAME, m.get(attr::USERNAME).unwrap()).unwrap(),
        "evtj:h6vY"
    );
    assert_eq!(
        attr::u32_value(attr::PRIORITY, m.get(attr::PRIORITY).unwrap()).unwrap(),
        0x6e00_01ff
    );
    assert_eq!(
        m.get(attr::ICE_CONTROLLED).unwrap(),
        &[0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36]
    );
    assert_eq!(m.verify(SHORT_TERM), Ok(Integrity::Sha1));
    assert_eq!(
        m.verify(b"VOkJxbRl1RmTxUk/WvJxBu"),
        Err(IntegrityError::Mismatch)
    );
    assert_eq!(m.fingerprint_ok(), Some(true));
    assert!(m.unknown_required().is_empty());
}

#[test]
fn the_sample_responses_give_the_mapped_addresses() {
    for (file, want) in [
        ("2.2-sample-ipv4-response.bin", "192.0.2.1:32853"),
        (
            "2.3-sample-ipv6-response.bin",
            "[2001:db8:1234:5678:11:2233:4455:6677]:32853",
        ),
    ] {
        let raw = vector(file);
        let m = Message::parse(&raw).unwrap();
        assert_eq!(m.class, Class::Success, "{file}");
        let a = attr::xor_address(
            attr::XOR_MAPPED_ADDRESS,
            m.get(attr::XOR_MAPPED_ADDRESS).unwrap(),
            &m.transaction_id,
        )
        .unwrap();
        assert_eq!(a, want.parse::<SocketAddr>().unwrap(), "{file}");
        assert_eq!(m.verify(SHORT_TERM), Ok(Integrity::Sha1), "{file}");
        assert_eq!(m.fingerprint_ok(), Some(true), "{file}");
    }
}

#[test]
fn the_long_term_request_checks_with_the_md5_key() {
    let raw = vector("2.4-sample-request-long-term-auth.bin");
    let m = Message::parse(&raw).unwrap();
    assert_eq!(
        attr::text(attr::USERNAME, m.get(attr::USERNAME).unwrap()).unwrap(),
        "マトリックス"
    );
    assert_eq!(
        attr::text(attr::REALM, m.get(attr::REALM).unwrap()).unwrap(),
        "example.org"
    );
    assert_eq!(
        attr::text(attr::NONCE, m.get(attr::NONCE).unwrap()).unwrap(),
        "f//499k954d6OL34oL9FSTvy64sA"
    );
    let key = long_term_key(
        PasswordAlgorithm::Md5,
        "マトリックス",
        "example.org",
        "TheMatrIX",
    );
    assert_eq!(m.verify(&key), Ok(Integrity::Sha1));
    let wrong = long_term_key(
        PasswordAlgorithm::Md5,
        "マトリックス",
        "example.org",
        "thematrix",
    );
    assert_eq!(m.verify(&wrong), Err(IntegrityError::Mismatch));
    assert_eq!(m.fingerprint_ok(), None);
}

#[test]
fn any_changed_bit_fails_integrity_or_fingerprint() {
    let raw = vector("2.1-sample-request.bin");
    for byte in 0..raw.len() {
        let mut bad = raw.clone();
        bad[byte] ^= 0x01;
        let Ok(m) = Message::parse(&bad) else {
            continue; // the header or an attribute's length: not read at all
        };
        assert!(
            m.verify(SHORT_TERM).is_err() || m.fingerprint_ok() != Some(true),
            "byte {byte} changed unnoticed"
        );
    }
}

#[test]
fn what_the_encoder_writes_reads_back_and_checks() {
    let peer: SocketAddr = "[2001:db8::7]:4000".parse().unwrap();
    let mut e = Encoder::new(Class::Success, stun::method::ALLOCATE, TXID);
    e.xor_address(attr::XOR_RELAYED_ADDRESS, peer)
        .u32(attr::LIFETIME, 600)
        .attr(attr::REALM, b"example.tes")
        .unwrap();
    for alg in [Integrity::Sha1, Integrity::Sha256] {
        let raw = e.clone().finish_with(Some((alg, SHORT_TERM)), true);
        assert_eq!(raw.len() % 4, 0);
        let m = Message::parse(&raw).unwrap();
        assert_eq!(
            (m.class, m.method),
            (Class::Success, stun::method::ALLOCATE)
        );
        assert_eq!(
            attr::xor_address(
                attr::XOR_RELAYED_ADDRESS,
                m.get(attr::XOR_RELAYED_ADDRESS).unwrap(),
                &TXID
            )
            .unwrap(),
            peer
        );
        assert_eq!(
            attr::u32_value(attr::LIFETIME, m.get(attr::LIFETIME).unwrap()).unwrap(),
            600
        );
        assert_eq!(m.verify(SHORT_TERM), Ok(alg));
        assert_eq!(m.fingerprint_ok(), Some(true));
        // The 11-byte realm's padding byte is written as zero.
        assert!(raw.windows(12).any(|w| w == b"example.tes\0"));
        assert!(m.get(attr::SOFTWARE).is_none());
    }
}
