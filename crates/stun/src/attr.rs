//! Attributes: their types, the length each may have (checked by
//! [`crate::Message::parse`] for every attribute that counts), and typed
//! readers for their values.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::{StunError, MAGIC_COOKIE};

// RFC 8489.
pub const MAPPED_ADDRESS: u16 = 0x0001;
pub const USERNAME: u16 = 0x0006;
pub const MESSAGE_INTEGRITY: u16 = 0x0008;
pub const ERROR_CODE: u16 = 0x0009;
pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
pub const REALM: u16 = 0x0014;
pub const NONCE: u16 = 0x0015;
pub const MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
pub const PASSWORD_ALGORITHM: u16 = 0x001D;
pub const USERHASH: u16 = 0x001E;
pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
pub const PASSWORD_ALGORITHMS: u16 = 0x8002;
pub const ALTERNATE_DOMAIN: u16 = 0x8003;
pub const SOFTWARE: u16 = 0x8022;
pub const ALTERNATE_SERVER: u16 = 0x8023;
pub const FINGERPRINT: u16 = 0x8028;
// RFC 8656 (TURN).
pub const CHANNEL_NUMBER: u16 = 0x000C;
pub const LIFETIME: u16 = 0x000D;
pub const XOR_PEER_ADDRESS: u16 = 0x0012;
pub const DATA: u16 = 0x0013;
pub const XOR_RELAYED_ADDRESS: u16 = 0x0016;
pub const REQUESTED_ADDRESS_FAMILY: u16 = 0x0017;
pub const EVEN_PORT: u16 = 0x0018;
pub const REQUESTED_TRANSPORT: u16 = 0x0019;
pub const DONT_FRAGMENT: u16 = 0x001A;
pub const RESERVATION_TOKEN: u16 = 0x0022;
pub const ADDITIONAL_ADDRESS_FAMILY: u16 = 0x8000;
pub const ADDRESS_ERROR_CODE: u16 = 0x8001;
pub const ICMP: u16 = 0x8004;
// RFC 8445 (ICE), seen in Binding requests.
pub const PRIORITY: u16 = 0x0024;
pub const USE_CANDIDATE: u16 = 0x0025;
pub const ICE_CONTROLLED: u16 = 0x8029;
pub const ICE_CONTROLLING: u16 = 0x802A;

/// Longest REALM, NONCE, SOFTWARE, reason phrase (RFC 8489: fewer than
/// 128 characters, up to 763 bytes).
pub const MAX_TEXT: usize = 763;
/// Longest USERNAME (RFC 8489 §14.3: fewer than 509 bytes).
pub const MAX_USERNAME: usize = 508;

/// IP protocol number of UDP, the one REQUESTED-TRANSPORT may name.
pub const TRANSPORT_UDP: u8 = 17;

/// Whether this codec knows `kind`.
pub fn known(kind: u16) -> bool {
    matches!(
        kind,
        MAPPED_ADDRESS
            | USERNAME
            | MESSAGE_INTEGRITY
            | ERROR_CODE
            | UNKNOWN_ATTRIBUTES
            | REALM
            | NONCE
            | MESSAGE_INTEGRITY_SHA256
            | PASSWORD_ALGORITHM
            | USERHASH
            | XOR_MAPPED_ADDRESS
            | PASSWORD_ALGORITHMS
            | ALTERNATE_DOMAIN
            | SOFTWARE
            | ALTERNATE_SERVER
            | FINGERPRINT
            | CHANNEL_NUMBER
            | LIFETIME
            | XOR_PEER_ADDRESS
            | DATA
            | XOR_RELAYED_ADDRESS
            | REQUESTED_ADDRESS_FAMILY
            | EVEN_PORT
            | REQUESTED_TRANSPORT
            | DONT_FRAGMENT
            | RESERVATION_TOKEN
            | ADDITIONAL_ADDRESS_FAMILY
            | ADDRESS_ERROR_CODE
            | ICMP
            | PRIORITY
            | USE_CANDIDATE
            | ICE_CONTROLLED
            | ICE_CONTROLLING
    )
}

fn bad(kind: u16, why: &'static str) -> StunError {
    StunError::BadAttribute { kind, why }
}

/// The length rule of each known attribute (unknown ones may have any).
pub(crate) fn check_length(kind: u16, len: usize) -> Result<(), StunError> {
    let ok = match kind {
        MAPPED_ADDRESS | XOR_MAPPED_ADDRESS | XOR_PEER_ADDRESS | XOR_RELAYED_ADDRESS
        | ALTERNATE_SERVER => len == 8 || len == 20,
        MESSAGE_INTEGRITY => len == 20,
        MESSAGE_INTEGRITY_SHA256 => (16..=32).contains(&len) && len.is_multiple_of(4),
        FINGERPRINT
        | LIFETIME
        | CHANNEL_NUMBER
        | REQUESTED_TRANSPORT
        | REQUESTED_ADDRESS_FAMILY
        | ADDITIONAL_ADDRESS_FAMILY
        | PRIORITY => len == 4,
        USERHASH => len == 32,
        ERROR_CODE | ADDRESS_ERROR_CODE => (4..=4 + MAX_TEXT).contains(&len),
        USERNAME => len <= MAX_USERNAME,
        REALM | NONCE | SOFTWARE | ALTERNATE_DOMAIN => len <= MAX_TEXT,
        UNKNOWN_ATTRIBUTES => len.is_multiple_of(2),
        PASSWORD_ALGORITHM => len >= 4,
        PASSWORD_ALGORITHMS => len >= 4,
        EVEN_PORT => len == 1,
        DONT_FRAGMENT | USE_CANDIDATE => len == 0,
        RESERVATION_TOKEN | ICMP | ICE_CONTROLLED | ICE_CONTROLLING => len == 8,
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(bad(kind, "wrong length"))
    }
}

/// MAPPED-ADDRESS or ALTERNATE-SERVER: family, port, address in clear.
pub fn address(kind: u16, v: &[u8]) -> Result<SocketAddr, StunError> {
    if v.len() < 8 {
        return Err(bad(kind, "wrong length"));
    }
    let port = u16::from_be_bytes([v[2], v[3]]);
    match (v[1], v.len()) {
        (0x01, 8) => Ok(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(v[4], v[5], v[6], v[7])),
            port,
        )),
        (0x02, 20) => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&v[4..20]);
            Ok(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(a)), port))
        }
        _ => Err(bad(kind, "unknown address family or wrong length for it")),
    }
}

/// The bytes an address is XORed with: the cookie, then the
/// transaction id (for IPv6).
fn xor_key(transaction_id: &[u8; 12]) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    k[4..].copy_from_slice(transaction_id);
    k
}

/// XOR-MAPPED-, XOR-PEER- or XOR-RELAYED-ADDRESS.
pub fn xor_address(
    kind: u16,
    v: &[u8],
    transaction_id: &[u8; 12],
) -> Result<SocketAddr, StunError> {
    if v.len() < 8 {
        return Err(bad(kind, "wrong length"));
    }
    let key = xor_key(transaction_id);
    let mut clear = v.to_vec();
    clear[2] ^= key[0];
    clear[3] ^= key[1];
    for (b, k) in clear[4..].iter_mut().zip(key.iter()) {
        *b ^= k;
    }
    address(kind, &clear)
}

/// The value of an XOR-address attribute for `addr`.
pub fn xor_address_value(addr: SocketAddr, transaction_id: &[u8; 12]) -> Vec<u8> {
    let key = xor_key(transaction_id);
    let port = addr.port() ^ u16::from_be_bytes([key[0], key[1]]);
    let mut v = vec![0u8, 0];
    v.extend_from_slice(&port.to_be_bytes());
    match addr.ip() {
        IpAddr::V4(a) => {
            v[1] = 0x01;
            v.extend(a.octets().iter().zip(key.iter()).map(|(b, k)| b ^ k));
        }
        IpAddr::V6(a) => {
            v[1] = 0x02;
            v.extend(a.octets().iter().zip(key.iter()).map(|(b, k)| b ^ k));
        }
    }
    v
}

/// ERROR-CODE: the code (300-699) and the reason phrase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorCode<'a> {
    pub code: u16,
    pub reason: &'a str,
}

pub fn error_code(v: &[u8]) -> Result<ErrorCode<'_>, StunError> {
    if v.len() < 4 {
        return Err(bad(ERROR_CODE, "wrong length"));
    }
    let class = u16::from(v[2] & 0x07);
    let number = u16::from(v[3]);
    if !(3..=6).contains(&class) || number > 99 {
        return Err(bad(ERROR_CODE, "the code is not 300-699"));
    }
    let reason = std::str::from_utf8(&v[4..]).map_err(|_| bad(ERROR_CODE, "not UTF-8"))?;
    Ok(ErrorCode {
        code: class * 100 + number,
        reason,
    })
}

/// The value of an ERROR-CODE (the reason cut to [`MAX_TEXT`] bytes at a
/// character boundary).
pub fn error_code_value(code: u16, reason: &str) -> Vec<u8> {
    let mut cut = reason.len().min(MAX_TEXT);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut v = vec![0, 0, (code / 100) as u8, (code % 100) as u8];
    v.extend_from_slice(&reason.as_bytes()[..cut]);
    v
}

/// USERNAME, REALM, NONCE, SOFTWARE: UTF-8 text.
pub fn text(kind: u16, v: &[u8]) -> Result<&str, StunError> {
    std::str::from_utf8(v).map_err(|_| bad(kind, "not UTF-8"))
}

/// A four-byte number (LIFETIME, PRIORITY).
pub fn u32_value(kind: u16, v: &[u8]) -> Result<u32, StunError> {
    let b: [u8; 4] = v.try_into().map_err(|_| bad(kind, "wrong length"))?;
    Ok(u32::from_be_bytes(b))
}

/// The first byte of a four-byte value (REQUESTED-TRANSPORT's protocol,
/// an address family, EVEN-PORT's flags).
fn first(kind: u16, v: &[u8], len: usize) -> Result<u8, StunError> {
    match v.first() {
        Some(b) if v.len() == len => Ok(*b),
        _ => Err(bad(kind, "wrong length")),
    }
}

/// CHANNEL-NUMBER: 0x4000-0x7FFF (see [`crate::channel::is_channel`]).
pub fn channel_number(v: &[u8]) -> Result<u16, StunError> {
    if v.len() != 4 {
        return Err(bad(CHANNEL_NUMBER, "wrong length"));
    }
    let n = u16::from_be_bytes([v[0], v[1]]);
    if crate::channel::is_channel(n) {
        Ok(n)
    } else {
        Err(bad(CHANNEL_NUMBER, "not a channel number (0x4000-0x7FFF)"))
    }
}

/// REQUESTED-TRANSPORT: the IP protocol number.
pub fn requested_transport(v: &[u8]) -> Result<u8, StunError> {
    first(REQUESTED_TRANSPORT, v, 4)
}

/// REQUESTED-ADDRESS-FAMILY or ADDITIONAL-ADDRESS-FAMILY: 0x01 IPv4,
/// 0x02 IPv6.
pub fn address_family(kind: u16, v: &[u8]) -> Result<u8, StunError> {
    match first(kind, v, 4)? {
        f @ (0x01 | 0x02) => Ok(f),
        _ => Err(bad(kind, "unknown address family")),
    }
}

/// EVEN-PORT's R bit: reserve the next port too.
pub fn even_port_reserve(v: &[u8]) -> Result<bool, StunError> {
    Ok(first(EVEN_PORT, v, 1)? & 0x80 != 0)
}

/// UNKNOWN-ATTRIBUTES: the types listed.
pub fn unknown_attributes(v: &[u8]) -> Vec<u16> {
    v.chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect()
}

/// A password algorithm (RFC 8489 §18.5): MD5 or SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordAlgorithm {
    Md5,
    Sha256,
}

impl PasswordAlgorithm {
    pub fn number(self) -> u16 {
        match self {
            PasswordAlgorithm::Md5 => 0x0001,
            PasswordAlgorithm::Sha256 => 0x0002,
        }
    }
}

/// PASSWORD-ALGORITHMS (or one PASSWORD-ALGORITHM): each entry's number,
/// with its parameters' length checked; unknown numbers are `None`.
pub fn password_algorithms(
    kind: u16,
    v: &[u8],
) -> Result<Vec<Option<PasswordAlgorithm>>, StunError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < v.len() {
        if v.len() - at < 4 {
            return Err(bad(kind, "a truncated entry"));
        }
        let number = u16::from_be_bytes([v[at], v[at + 1]]);
        let plen = usize::from(u16::from_be_bytes([v[at + 2], v[at + 3]]));
        at += 4 + crate::padded(plen);
        if at > v.len() {
            return Err(bad(kind, "an entry's parameters run past the value"));
        }
        out.push(match number {
            0x0001 => Some(PasswordAlgorithm::Md5),
            0x0002 => Some(PasswordAlgorithm::Sha256),
            _ => None,
        });
        if out.len() > 16 {
            return Err(bad(kind, "too many entries"));
        }
    }
    Ok(out)
}

/// The value of PASSWORD-ALGORITHMS listing `algs` (no parameters).
pub fn password_algorithms_value(algs: &[PasswordAlgorithm]) -> Vec<u8> {
    let mut v = Vec::with_capacity(algs.len() * 4);
    for a in algs {
        v.extend_from_slice(&a.number().to_be_bytes());
        v.extend_from_slice(&[0, 0]);
    }
    v
}
