#![allow(clippy::unwrap_used)]
use super::*;
use crate::attr::{self, PasswordAlgorithm};
use crate::channel::{self, ChannelData, Kind};

const TXID: [u8; 12] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];

/// A message of `class`/`method` with these raw attributes (type, value).
fn message(attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut e = Encoder::new(Class::Request, method::ALLOCATE, TXID);
    for (k, v) in attrs {
        e.attr(*k, v).unwrap();
    }
    e.finish()
}

#[test]
fn the_type_field_carries_class_and_method_both_ways() {
    for class in [
        Class::Request,
        Class::Indication,
        Class::Success,
        Class::Error,
    ] {
        for m in [0x001, 0x003, 0x009, 0x0ff, 0xfff] {
            let t = message_type(class, m);
            assert_eq!(t & 0xC000, 0);
            assert_eq!(split_type(t), (class, m));
        }
    }
    // RFC 8489 §5: a Binding success response is 0x0101.
    assert_eq!(message_type(Class::Success, method::BINDING), 0x0101);
    assert_eq!(message_type(Class::Error, method::ALLOCATE), 0x0113);
}

#[test]
fn the_header_is_read_strictly() {
    let good = message(&[]);
    assert!(Message::parse(&good).is_ok());
    assert_eq!(
        Message::parse(&good[..19]).unwrap_err(),
        StunError::Truncated
    );
    let mut b = good.clone();
    b[0] |= 0x40;
    assert_eq!(Message::parse(&b).unwrap_err(), StunError::NotStun);
    let mut b = good.clone();
    b[4] = 0; // RFC 3489: no cookie
    assert_eq!(Message::parse(&b).unwrap_err(), StunError::NoMagicCookie);
    let mut b = message(&[(attr::LIFETIME, &[0, 0, 1, 0])]);
    b[3] = 6;
    assert_eq!(Message::parse(&b).unwrap_err(), StunError::Unaligned);
    let mut b = good.clone();
    b[3] = 4;
    assert_eq!(Message::parse(&b).unwrap_err(), StunError::Truncated);
    let mut b = good;
    b.extend_from_slice(&[0; 4]);
    assert_eq!(Message::parse(&b).unwrap_err(), StunError::TrailingBytes);
}

#[test]
fn attributes_must_fit_exactly_and_are_bounded() {
    // A value that claims more than the message holds.
    let mut b = message(&[(attr::DATA, &[7; 8])]);
    b[23] = 12;
    assert_eq!(Message::parse(&b).unwrap_err(), StunError::AttributeOverrun);
    // Padding counts: a 5-byte value takes 8.
    let b = message(&[(attr::DATA, &[7; 5])]);
    assert_eq!(b.len(), HEADER + 4 + 8);
    assert_eq!(&b[HEADER + 4 + 5..], &[0, 0, 0]);
    assert_eq!(
        Message::parse(&b).unwrap().get(attr::DATA),
        Some(&[7u8; 5][..])
    );
    let many: Vec<(u16, &[u8])> = (0..=MAX_ATTRIBUTES).map(|_| (0x8050, &[][..])).collect();
    assert_eq!(
        Message::parse(&message(&many)).unwrap_err(),
        StunError::TooManyAttributes
    );
    let enough = &many[..MAX_ATTRIBUTES];
    assert!(Message::parse(&message(enough)).is_ok());
}

#[test]
fn known_attributes_keep_their_lengths() {
    for (kind, len) in [
        (attr::XOR_PEER_ADDRESS, 12),
        (attr::MESSAGE_INTEGRITY, 16),
        (attr::MESSAGE_INTEGRITY_SHA256, 12),
        (attr::MESSAGE_INTEGRITY_SHA256, 18),
        (attr::FINGERPRINT, 8),
        (attr::LIFETIME, 2),
        (attr::CHANNEL_NUMBER, 2),
        (attr::USERNAME, attr::MAX_USERNAME + 1),
        (attr::REALM, attr::MAX_TEXT + 1),
        (attr::NONCE, attr::MAX_TEXT + 1),
        (attr::ERROR_CODE, 3),
        (attr::EVEN_PORT, 4),
        (attr::DONT_FRAGMENT, 4),
        (attr::UNKNOWN_ATTRIBUTES, 3),
    ] {
        let b = message(&[(kind, &vec![0; len])]);
        assert!(
            matches!(Message::parse(&b), Err(StunError::BadAttribute { kind: k, .. }) if k == kind),
            "{kind:#06x} of {len} bytes"
        );
    }
}

#[test]
fn after_integrity_only_the_sha256_one_and_fingerprint_count() {
    let mi = [0u8; 20];
    let b = message(&[
        (attr::USERNAME, b"u"),
        (attr::MESSAGE_INTEGRITY, &mi),
        (attr::REALM, b"ignored"),
        (attr::FINGERPRINT, &[0; 4]),
    ]);
    let m = Message::parse(&b).unwrap();
    let kinds: Vec<u16> = m.attributes().iter().map(|a| a.kind).collect();
    assert_eq!(
        kinds,
        [attr::USERNAME, attr::MESSAGE_INTEGRITY, attr::FINGERPRINT]
    );
    assert!(m.get(attr::REALM).is_none());
    // Nothing after FINGERPRINT; no second MESSAGE-INTEGRITY.
    for attrs in [
        vec![(attr::FINGERPRINT, &[0u8; 4][..]), (attr::USERNAME, b"u")],
        vec![
            (attr::MESSAGE_INTEGRITY, &mi[..]),
            (attr::MESSAGE_INTEGRITY, &mi[..]),
        ],
        vec![
            (attr::MESSAGE_INTEGRITY_SHA256, &[0u8; 32][..]),
            (attr::MESSAGE_INTEGRITY, &mi[..]),
        ],
    ] {
        assert!(matches!(
            Message::parse(&message(&attrs)),
            Err(StunError::Misplaced(_))
        ));
    }
    // Without an integrity attribute there is nothing to verify.
    let b = message(&[(attr::USERNAME, b"u")]);
    let m = Message::parse(&b).unwrap();
    assert_eq!(m.verify(b"k"), Err(integrity::IntegrityError::Missing));
}

#[test]
fn unknown_comprehension_required_attributes_are_listed_for_the_420() {
    let b = message(&[
        (0x0031, b"x"),
        (0x8031, b"optional"),
        (0x0031, b"again"),
        (attr::LIFETIME, &[0, 0, 0, 1]),
    ]);
    assert_eq!(Message::parse(&b).unwrap().unknown_required(), [0x0031]);
}

#[test]
fn typed_values_are_read_by_their_rules() {
    let e = attr::error_code_value(420, "Unknown Attribute");
    assert_eq!(
        attr::error_code(&e).unwrap(),
        attr::ErrorCode {
            code: 420,
            reason: "Unknown Attribute"
        }
    );
    assert!(attr::error_code(&[0, 0, 7, 0]).is_err());
    assert!(attr::error_code(&[0, 0, 4, 100]).is_err());
    assert!(attr::error_code(&[0, 0, 4, 1, 0xff]).is_err());
    // A long reason is cut at a character boundary.
    let long = "é".repeat(500);
    let v = attr::error_code_value(500, &long);
    assert!(v.len() <= 4 + attr::MAX_TEXT);
    assert!(attr::error_code(&v).is_ok());

    assert_eq!(attr::channel_number(&[0x40, 0x00, 0, 0]).unwrap(), 0x4000);
    assert_eq!(attr::channel_number(&[0x7f, 0xff, 0, 0]).unwrap(), 0x7fff);
    assert!(attr::channel_number(&[0x80, 0x00, 0, 0]).is_err());
    assert!(attr::channel_number(&[0x3f, 0xff, 0, 0]).is_err());
    assert_eq!(attr::requested_transport(&[17, 0, 0, 0]).unwrap(), 17);
    assert!(attr::requested_transport(&[17]).is_err());
    assert!(attr::address_family(attr::REQUESTED_ADDRESS_FAMILY, &[3, 0, 0, 0]).is_err());
    assert!(attr::even_port_reserve(&[0x80]).unwrap());
    assert!(attr::u32_value(attr::LIFETIME, &[1, 2, 3]).is_err());
    assert_eq!(
        attr::unknown_attributes(&[0, 0x31, 0x80, 0x31]),
        [0x31, 0x8031]
    );

    let algs =
        attr::password_algorithms_value(&[PasswordAlgorithm::Sha256, PasswordAlgorithm::Md5]);
    assert_eq!(
        attr::password_algorithms(attr::PASSWORD_ALGORITHMS, &algs).unwrap(),
        [
            Some(PasswordAlgorithm::Sha256),
            Some(PasswordAlgorithm::Md5)
        ]
    );
    assert!(attr::password_algorithms(attr::PASSWORD_ALGORITHMS, &[0, 1, 0, 8, 0, 0]).is_err());
    assert!(attr::address(attr::MAPPED_ADDRESS, &[0, 3, 0, 1, 1, 2, 3, 4]).is_err());
    assert!(attr::xor_address(attr::XOR_PEER_ADDRESS, &[0, 1], &TXID).is_err());
}

#[test]
fn xor_addresses_round_trip_for_both_families() {
    for a in ["192.0.2.1:3478", "[2001:db8::1]:65535", "0.0.0.0:0"] {
        let a: std::net::SocketAddr = a.parse().unwrap();
        let v = attr::xor_address_value(a, &TXID);
        assert_eq!(
            attr::xor_address(attr::XOR_PEER_ADDRESS, &v, &TXID).unwrap(),
            a
        );
    }
}

#[test]
fn channel_data_is_framed_and_told_apart() {
    assert_eq!(channel::classify(&[0x00, 0x01]), Kind::Stun);
    assert_eq!(channel::classify(&[0x40, 0x00]), Kind::ChannelData);
    assert_eq!(channel::classify(&[0x80]), Kind::Other); // RTP
    assert_eq!(channel::classify(&[22]), Kind::Other); // DTLS
    let mut out = Vec::new();
    let cd = ChannelData {
        channel: 0x4001,
        data: b"hello",
    };
    cd.write(false, &mut out).unwrap();
    assert_eq!(out.len(), 9);
    assert_eq!(ChannelData::parse(&out).unwrap(), cd);
    out.clear();
    cd.write(true, &mut out).unwrap();
    assert_eq!(out.len(), 12);
    assert_eq!(ChannelData::parse(&out).unwrap(), cd);
    assert_eq!(channel::frame_len(&out), Some(Ok(12)));
    assert_eq!(channel::frame_len(&out[..3]), None);
    let mut more = out.clone();
    more.extend_from_slice(&[0; 4]);
    assert_eq!(
        ChannelData::parse(&more).unwrap_err(),
        StunError::TrailingBytes
    );
    assert_eq!(
        ChannelData::parse(&out[..6]).unwrap_err(),
        StunError::Truncated
    );
    assert_eq!(
        ChannelData::parse(&[0x80, 0, 0, 0]).unwrap_err(),
        StunError::NotStun
    );
    let stun = message(&[(attr::LIFETIME, &[0, 0, 0, 1])]);
    assert_eq!(channel::frame_len(&stun), Some(Ok(stun.len())));
    assert_eq!(channel::frame_len(&stun[..7]), None);
    assert!(matches!(
        channel::frame_len(b"\x16\x03\x01\x02\x00\x01"),
        Some(Err(_))
    ));
    // (A TLS handshake on the plain port is neither. "GET" begins like
    // ChannelData on channel 0x4745: RFC 7983 cannot tell.)
    assert!(ChannelData {
        channel: 0x4000,
        data: &vec![0; 70_000]
    }
    .write(false, &mut Vec::new())
    .is_none());
}

#[test]
fn the_encoder_refuses_what_does_not_fit() {
    let mut e = Encoder::new(Class::Indication, method::DATA, TXID);
    assert!(e.attr(attr::DATA, &vec![0; 70_000]).is_err());
    assert!(e.attr(attr::DATA, &vec![0; 65_000]).is_ok());
    assert!(e.attr(attr::DATA, &vec![0; 1_000]).is_err());
    let raw = e.finish();
    assert!(Message::parse(&raw).is_ok());
}
