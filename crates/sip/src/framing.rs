//! Stream framing (TCP, TLS): finds where one message ends in a byte stream, with
//! the same limits as datagrams, and RFC 5626 CRLF keep-alives.
//!
//! A frame is a header block ended by CRLFCRLF plus exactly Content-Length bytes;
//! Content-Length is mandatory on streams (RFC 3261 §18.3), so a message can never
//! be re-split by a peer that disagrees about where it ends.

use bytes::{Buf, Bytes, BytesMut};

use crate::error::ParseError;
use crate::limits::Limits;
use crate::message::Message;
use crate::parse::parse_head;

/// What [`decode`] found at the front of the buffer.
#[derive(Debug)]
// Returned by value and matched at once; boxing would add an allocation per message.
#[allow(clippy::large_enum_variant)]
pub enum Decoded {
    /// A complete message, removed from the buffer.
    Message(Message),
    /// A CRLFCRLF keep-alive ping (RFC 5626 §3.5.1), removed; answer with CRLF.
    Ping,
    /// A lone CRLF (a pong, or padding before a message), removed.
    Pong,
    /// More bytes are needed; nothing was removed.
    Incomplete,
}

/// Decodes frames from one stream, remembering how far it has looked so that a
/// peer trickling a message byte by byte costs linear, not quadratic, work.
#[derive(Debug, Default, Clone)]
pub struct Framer {
    /// Bytes at the front of the buffer already searched for the end of the head.
    scanned: usize,
    /// Once the head is known: the length of the whole message.
    total: Option<usize>,
}

impl Framer {
    pub fn new() -> Self {
        Framer::default()
    }

    /// Decodes the next frame from `buf`. An error means the stream is unusable
    /// (its framing can no longer be trusted) and the connection should be closed.
    pub fn decode(&mut self, buf: &mut BytesMut, limits: &Limits) -> Result<Decoded, ParseError> {
        if let Some(total) = self.total {
            if buf.len() < total {
                return Ok(Decoded::Incomplete);
            }
        } else if buf.first() == Some(&b'\r') {
            // Between messages: keep-alives. No start line begins with CR, so
            // this holds however the bytes were split across reads.
            if buf.starts_with(b"\r\n\r\n") {
                let _ = buf.split_to(4);
                self.scanned = 0;
                return Ok(Decoded::Ping);
            }
            if buf.len() < 4 && b"\r\n\r\n".starts_with(&buf[..]) {
                return Ok(Decoded::Incomplete);
            }
            if buf.starts_with(b"\r\n") {
                let _ = buf.split_to(2);
                self.scanned = 0;
                return Ok(Decoded::Pong);
            }
        }
        let max = limits.max_message_size.min(u32::MAX as usize);
        let window = &buf[..buf.len().min(max)];
        // Resume three bytes back: the terminator may straddle two reads.
        let from = self.scanned.saturating_sub(3).min(window.len());
        let Some(at) = memchr::memmem::find(&window[from..], b"\r\n\r\n") else {
            if buf.len() >= max {
                return Err(ParseError::MessageTooLarge);
            }
            self.scanned = window.len();
            return Ok(Decoded::Incomplete);
        };
        let head_end = from + at;
        let head = parse_head(&buf[..head_end + 4], limits)?;
        let cl = head
            .content_length
            .ok_or(ParseError::MissingContentLength)? as usize;
        let total = head
            .body_start
            .checked_add(cl)
            .ok_or(ParseError::MessageTooLarge)?;
        if total > max {
            return Err(ParseError::MessageTooLarge);
        }
        if buf.len() < total {
            self.scanned = head_end;
            self.total = Some(total);
            return Ok(Decoded::Incomplete);
        }
        *self = Framer::default();
        // A copy of exactly the message: a slice of the read buffer would
        // keep the whole chunk it was read into alive for as long as the
        // message lives (a transaction in progress holds its request), and
        // the read buffer is reused once drained.
        let bytes = Bytes::copy_from_slice(&buf[..total]);
        buf.advance(total);
        let head_text = crate::parse::utf8_head(&bytes, head.body_start)?;
        Ok(Decoded::Message(Message {
            buf: bytes,
            head: head_text,
            start: head.start,
            start_line_end: head.start_line_end as u32,
            headers: head.headers,
            body_start: head.body_start as u32,
            content_length: head.content_length,
        }))
    }
}

/// Decodes one frame with no memory of earlier calls (tests, one-shot use).
pub fn decode(buf: &mut BytesMut, limits: &Limits) -> Result<Decoded, ParseError> {
    Framer::new().decode(buf, limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &[u8] = b"MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nContent-Length: 5\r\n\r\nhello";

    fn dec(buf: &mut BytesMut) -> Result<Decoded, ParseError> {
        decode(buf, &Limits::DEFAULT)
    }

    #[test]
    fn pipelined_messages_and_partial_reads() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(M);
        buf.extend_from_slice(&M[..30]);
        match dec(&mut buf).unwrap() {
            Decoded::Message(m) => assert_eq!(m.body(), b"hello"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(dec(&mut buf).unwrap(), Decoded::Incomplete));
        buf.extend_from_slice(&M[30..M.len() - 1]);
        assert!(matches!(dec(&mut buf).unwrap(), Decoded::Incomplete));
        buf.extend_from_slice(&M[M.len() - 1..]);
        assert!(matches!(dec(&mut buf).unwrap(), Decoded::Message(_)));
        assert!(buf.is_empty());
    }

    #[test]
    fn a_message_keeps_no_part_of_the_read_buffer_alive() {
        let mut buf = BytesMut::with_capacity(8192);
        buf.extend_from_slice(M);
        buf.extend_from_slice(&M[..30]);
        let Decoded::Message(m) = dec(&mut buf).unwrap() else {
            panic!("a whole message was buffered");
        };
        let bytes = m.as_bytes().clone();
        drop(m);
        // Its own allocation, not a slice of the 8 KiB the reader holds.
        assert!(bytes.is_unique());
        assert_eq!(&bytes[..], M);
        assert_eq!(&buf[..], &M[..30]);
    }

    #[test]
    fn trickled_bytes_are_scanned_once() {
        let mut f = Framer::new();
        let mut buf = BytesMut::new();
        for (i, b) in M.iter().enumerate() {
            buf.extend_from_slice(&[*b]);
            match f.decode(&mut buf, &Limits::DEFAULT).unwrap() {
                Decoded::Incomplete => assert!(i + 1 < M.len()),
                Decoded::Message(m) => {
                    assert_eq!(i + 1, M.len());
                    assert_eq!(m.body(), b"hello");
                }
                other => panic!("{other:?}"),
            }
            assert!(f.scanned <= buf.len());
        }
        assert!(buf.is_empty());
        // The framer is ready for the next message, keep-alives included.
        buf.extend_from_slice(b"\r\n\r\n");
        assert!(matches!(
            f.decode(&mut buf, &Limits::DEFAULT).unwrap(),
            Decoded::Ping
        ));
    }

    #[test]
    fn keepalive_split_across_reads_is_not_lost() {
        // Found by the framing fuzz target: "\r" then "\n" used to be taken as
        // the start of a message once the framer had recorded scan progress.
        let mut f = Framer::new();
        let mut buf = BytesMut::new();
        for (chunk, want_pong) in [(&b"\r"[..], false), (b"\n", false), (b"\x1dS", true)] {
            buf.extend_from_slice(chunk);
            let got = f.decode(&mut buf, &Limits::DEFAULT).unwrap();
            assert_eq!(matches!(got, Decoded::Pong), want_pong, "{got:?}");
        }
        assert_eq!(&buf[..], b"\x1dS");
        let mut f = Framer::new();
        let mut buf = BytesMut::new();
        let mut pings = 0;
        for b in b"\r\n\r\n" {
            buf.extend_from_slice(&[*b]);
            if let Decoded::Ping = f.decode(&mut buf, &Limits::DEFAULT).unwrap() {
                pings += 1;
            }
        }
        assert_eq!(pings, 1);
    }

    #[test]
    fn keepalives() {
        let mut buf = BytesMut::from(&b"\r\n\r\n\r\n"[..]);
        assert!(matches!(dec(&mut buf).unwrap(), Decoded::Ping));
        assert!(matches!(dec(&mut buf).unwrap(), Decoded::Incomplete));
        buf.extend_from_slice(M);
        assert!(matches!(dec(&mut buf).unwrap(), Decoded::Pong));
        assert!(matches!(dec(&mut buf).unwrap(), Decoded::Message(_)));
    }

    #[test]
    fn framing_errors() {
        let no_cl = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h\r\n\r\n";
        assert_eq!(
            dec(&mut BytesMut::from(&no_cl[..])).unwrap_err(),
            ParseError::MissingContentLength
        );
        let neg = b"OPTIONS sip:a@b SIP/2.0\r\nl: -999\r\n\r\n";
        assert!(dec(&mut BytesMut::from(&neg[..])).is_err());
        let huge = b"OPTIONS sip:a@b SIP/2.0\r\nl: 999999\r\n\r\n";
        assert_eq!(
            dec(&mut BytesMut::from(&huge[..])).unwrap_err(),
            ParseError::MessageTooLarge
        );
        let limits = Limits {
            max_message_size: 64,
            ..Limits::DEFAULT
        };
        let mut endless = BytesMut::from(&[b'a'; 100][..]);
        assert_eq!(
            decode(&mut endless, &limits).unwrap_err(),
            ParseError::MessageTooLarge
        );
    }
}
