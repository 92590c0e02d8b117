//! ChannelData (RFC 8656 §12.4) and telling apart what arrives on a
//! relay's port (RFC 7983 §7): STUN (first byte 0-3), ChannelData (first
//! byte 64-127: see [`is_channel`]), anything else dropped.

use crate::{padded, StunError, HEADER, MAGIC_COOKIE};

/// ChannelData's header.
pub const CHANNEL_HEADER: usize = 4;

/// Whether `n` is a channel number a client may bind: 0x4000-0x7FFF, the
/// range of RFC 5766. RFC 8656 §12 narrowed it to 0x4000-0x4FFF so that
/// ChannelData cannot be mistaken for DTLS or RTP where they share a port
/// with it (RFC 7983); clients still bind above 0x4FFF (coturn's
/// `turnutils_uclient` does, and so may browsers), and on a relay's port
/// nothing else is carried that 0x5000-0x7FFF could be confused with.
pub fn is_channel(n: u16) -> bool {
    (0x4000..=0x7FFF).contains(&n)
}

/// What a datagram or frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Stun,
    ChannelData,
    Other,
}

/// What `buf` starts with.
pub fn classify(buf: &[u8]) -> Kind {
    match buf.first() {
        Some(0..=3) => Kind::Stun,
        Some(64..=127) => Kind::ChannelData,
        _ => Kind::Other,
    }
}

/// One ChannelData message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelData<'a> {
    pub channel: u16,
    pub data: &'a [u8],
}

impl<'a> ChannelData<'a> {
    /// Reads one ChannelData message. Over UDP the datagram may carry
    /// padding after the data (ignored); over a stream, cut the frame
    /// with [`frame_len`] first.
    pub fn parse(buf: &'a [u8]) -> Result<ChannelData<'a>, StunError> {
        if buf.len() < CHANNEL_HEADER {
            return Err(StunError::Truncated);
        }
        let channel = u16::from_be_bytes([buf[0], buf[1]]);
        if !is_channel(channel) {
            return Err(StunError::NotStun);
        }
        let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
        let data = buf
            .get(CHANNEL_HEADER..CHANNEL_HEADER + len)
            .ok_or(StunError::Truncated)?;
        if buf.len() > CHANNEL_HEADER + padded(len) {
            return Err(StunError::TrailingBytes);
        }
        Ok(ChannelData { channel, data })
    }

    /// Writes it to `out`; `pad` (streams) pads the data to a multiple of
    /// four with zeros. `None` when the data is longer than 65,535 bytes.
    pub fn write(&self, pad: bool, out: &mut Vec<u8>) -> Option<()> {
        let len = u16::try_from(self.data.len()).ok()?;
        out.extend_from_slice(&self.channel.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(self.data);
        if pad {
            out.resize(out.len() + padded(self.data.len()) - self.data.len(), 0);
        }
        Some(())
    }
}

/// On a stream (TCP, TLS): how long the frame at the start of `buf` is,
/// once its header is in (`None`: more bytes are needed to say); an
/// error when the stream carries neither STUN nor ChannelData, and the
/// connection should close.
pub fn frame_len(buf: &[u8]) -> Option<Result<usize, StunError>> {
    match classify(buf) {
        Kind::Stun => {
            if buf.len() < 8 {
                return None;
            }
            if buf[4..8] != MAGIC_COOKIE.to_be_bytes() {
                return Some(Err(StunError::NoMagicCookie));
            }
            let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
            if !len.is_multiple_of(4) {
                return Some(Err(StunError::Unaligned));
            }
            Some(Ok(HEADER + len))
        }
        Kind::ChannelData => {
            if buf.len() < CHANNEL_HEADER {
                return None;
            }
            let channel = u16::from_be_bytes([buf[0], buf[1]]);
            if !is_channel(channel) {
                return Some(Err(StunError::NotStun));
            }
            let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
            Some(Ok(CHANNEL_HEADER + padded(len)))
        }
        Kind::Other if buf.is_empty() => None,
        Kind::Other => Some(Err(StunError::NotStun)),
    }
}
