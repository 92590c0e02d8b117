//! STUN (RFC 8489) and TURN (RFC 8656) on the wire, with no I/O: the
//! relay reads every datagram and stream frame through here, so the
//! grammar is strict and everything is bounded.
//!
//! - [`Message::parse`]: the 20-byte header (the two top bits zero, the
//!   magic cookie: no RFC 3489 mode, a length that is a multiple of four
//!   and matches the bytes given), then the attributes, each a slice of
//!   the input, exactly filling the length, at most [`MAX_ATTRIBUTES`].
//!   What follows MESSAGE-INTEGRITY is ignored except
//!   MESSAGE-INTEGRITY-SHA256 and FINGERPRINT; FINGERPRINT must be last.
//!   Unknown comprehension-required attributes are listed for the 420
//!   answer ([`Message::unknown_required`]).
//! - [`attr`]: typed values (addresses XORed with the cookie and
//!   transaction id, ERROR-CODE, LIFETIME, CHANNEL-NUMBER...), each read
//!   by its own length rule.
//! - [`integrity`]: MESSAGE-INTEGRITY (HMAC-SHA1), -SHA256 and FINGERPRINT
//!   checked over the message as received, in constant time; the
//!   long-term key (RFC 8489 §9.2.2), which for a SIP user is the digest
//!   secret the server already holds.
//! - [`Encoder`]: messages written with zeroed padding, integrity and
//!   fingerprint; never a SOFTWARE attribute.
//! - [`channel`]: ChannelData framing, and telling STUN, ChannelData and
//!   other traffic apart on one port (RFC 7983).

#![forbid(unsafe_code)]

pub mod attr;
pub mod channel;
mod encode;
pub mod integrity;

pub use encode::Encoder;

/// The magic cookie every RFC 5389/8489 message carries.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// The header's size.
pub const HEADER: usize = 20;
/// Attributes read from one message; more is an error.
pub const MAX_ATTRIBUTES: usize = 64;
/// The largest message: the length field's limit.
pub const MAX_MESSAGE: usize = HEADER + 0xFFFF;

/// A message's class (RFC 8489 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Request,
    Indication,
    Success,
    Error,
}

/// The methods a relay handles (RFC 8489, RFC 8656).
pub mod method {
    pub const BINDING: u16 = 0x001;
    pub const ALLOCATE: u16 = 0x003;
    pub const REFRESH: u16 = 0x004;
    pub const SEND: u16 = 0x006;
    pub const DATA: u16 = 0x007;
    pub const CREATE_PERMISSION: u16 = 0x008;
    pub const CHANNEL_BIND: u16 = 0x009;
}

/// Why bytes are not a STUN message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StunError {
    /// Fewer than 20 bytes, or fewer than the header's length says.
    Truncated,
    /// More bytes than the header's length says.
    TrailingBytes,
    /// The top two bits are not zero: not STUN.
    NotStun,
    /// No magic cookie (RFC 3489 is not spoken).
    NoMagicCookie,
    /// The length is not a multiple of four.
    Unaligned,
    /// An attribute runs past the message's end.
    AttributeOverrun,
    TooManyAttributes,
    /// An attribute other than MESSAGE-INTEGRITY-SHA256 or FINGERPRINT
    /// after integrity, or anything after FINGERPRINT.
    Misplaced(u16),
    /// An attribute whose value breaks its own rules.
    BadAttribute {
        kind: u16,
        why: &'static str,
    },
}

impl std::fmt::Display for StunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StunError::Truncated => f.write_str("the message is shorter than its header says"),
            StunError::TrailingBytes => f.write_str("bytes follow the message's end"),
            StunError::NotStun => f.write_str("not a STUN message"),
            StunError::NoMagicCookie => f.write_str("no magic cookie (RFC 3489 is not supported)"),
            StunError::Unaligned => f.write_str("the length is not a multiple of 4"),
            StunError::AttributeOverrun => f.write_str("an attribute runs past the message"),
            StunError::TooManyAttributes => {
                write!(f, "more than {MAX_ATTRIBUTES} attributes")
            }
            StunError::Misplaced(k) => write!(f, "attribute {k:#06x} out of place"),
            StunError::BadAttribute { kind, why } => write!(f, "attribute {kind:#06x}: {why}"),
        }
    }
}

impl std::error::Error for StunError {}

/// One attribute as received: its type and value (padding excluded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawAttr<'a> {
    pub kind: u16,
    pub value: &'a [u8],
    /// Where the attribute starts in the message (its type field).
    pub(crate) offset: usize,
}

/// A parsed message: the header's fields and the attributes that count
/// (those before integrity, then the integrity and fingerprint ones).
#[derive(Debug, Clone)]
pub struct Message<'a> {
    pub class: Class,
    pub method: u16,
    pub transaction_id: [u8; 12],
    attrs: Vec<RawAttr<'a>>,
    raw: &'a [u8],
}

/// The message type field for `class` and `method` (RFC 8489 §5).
pub(crate) fn message_type(class: Class, method: u16) -> u16 {
    let c = match class {
        Class::Request => 0,
        Class::Indication => 0x0010,
        Class::Success => 0x0100,
        Class::Error => 0x0110,
    };
    (method & 0x000F) | ((method & 0x0070) << 1) | ((method & 0x0F80) << 2) | c
}

fn split_type(t: u16) -> (Class, u16) {
    let class = match ((t >> 4) & 1) | ((t >> 7) & 2) {
        0 => Class::Request,
        1 => Class::Indication,
        2 => Class::Success,
        _ => Class::Error,
    };
    let method = (t & 0x000F) | ((t & 0x00E0) >> 1) | ((t & 0x3E00) >> 2);
    (class, method)
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// How many bytes a value of `len` takes with its padding.
pub(crate) fn padded(len: usize) -> usize {
    (len + 3) & !3
}

impl<'a> Message<'a> {
    /// Reads one whole message (a datagram, or a frame cut by
    /// [`channel::frame_len`]).
    pub fn parse(buf: &'a [u8]) -> Result<Message<'a>, StunError> {
        if buf.len() < HEADER {
            return Err(StunError::Truncated);
        }
        if buf[0] & 0xC0 != 0 {
            return Err(StunError::NotStun);
        }
        if buf[4..8] != MAGIC_COOKIE.to_be_bytes() {
            return Err(StunError::NoMagicCookie);
        }
        let len = usize::from(u16_at(buf, 2));
        if !len.is_multiple_of(4) {
            return Err(StunError::Unaligned);
        }
        match buf.len().cmp(&(HEADER + len)) {
            std::cmp::Ordering::Less => return Err(StunError::Truncated),
            std::cmp::Ordering::Greater => return Err(StunError::TrailingBytes),
            std::cmp::Ordering::Equal => {}
        }
        let (class, method) = split_type(u16_at(buf, 0));
        let mut transaction_id = [0u8; 12];
        transaction_id.copy_from_slice(&buf[8..20]);
        let mut attrs = Vec::new();
        let mut at = HEADER;
        // 0: before integrity; 1: after MESSAGE-INTEGRITY; 2: after
        // MESSAGE-INTEGRITY-SHA256; 3: after FINGERPRINT.
        let mut stage = 0u8;
        let mut seen = 0usize;
        while at < buf.len() {
            if buf.len() - at < 4 {
                return Err(StunError::AttributeOverrun);
            }
            let kind = u16_at(buf, at);
            let vlen = usize::from(u16_at(buf, at + 2));
            let end = at + 4 + vlen;
            if at + 4 + padded(vlen) > buf.len() {
                return Err(StunError::AttributeOverrun);
            }
            seen += 1;
            if seen > MAX_ATTRIBUTES {
                return Err(StunError::TooManyAttributes);
            }
            let value = &buf[at + 4..end];
            let keep = match (stage, kind) {
                (3, _) => return Err(StunError::Misplaced(kind)),
                (_, attr::FINGERPRINT) => {
                    stage = 3;
                    true
                }
                (0 | 1, attr::MESSAGE_INTEGRITY_SHA256) => {
                    stage = 2;
                    true
                }
                (0, attr::MESSAGE_INTEGRITY) => {
                    stage = 1;
                    true
                }
                (2, attr::MESSAGE_INTEGRITY | attr::MESSAGE_INTEGRITY_SHA256) => {
                    return Err(StunError::Misplaced(kind))
                }
                (1, attr::MESSAGE_INTEGRITY) => return Err(StunError::Misplaced(kind)),
                (0, _) => true,
                // After integrity: ignored (RFC 8489 §14.5).
                _ => false,
            };
            if keep {
                attr::check_length(kind, value.len())?;
                attrs.push(RawAttr {
                    kind,
                    value,
                    offset: at,
                });
            }
            at += 4 + padded(vlen);
        }
        Ok(Message {
            class,
            method,
            transaction_id,
            attrs,
            raw: buf,
        })
    }

    /// The message as received.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The attributes that count, in order.
    pub fn attributes(&self) -> &[RawAttr<'a>] {
        &self.attrs
    }

    /// The first attribute of `kind`.
    pub fn get(&self, kind: u16) -> Option<&'a [u8]> {
        self.attrs.iter().find(|a| a.kind == kind).map(|a| a.value)
    }

    /// Comprehension-required attributes (type below 0x8000) this codec
    /// does not know: a request carrying any is answered 420 with them
    /// in UNKNOWN-ATTRIBUTES.
    pub fn unknown_required(&self) -> Vec<u16> {
        let mut out: Vec<u16> = self
            .attrs
            .iter()
            .map(|a| a.kind)
            .filter(|k| *k < 0x8000 && !attr::known(*k))
            .collect();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests;
