//! Writing messages: the header, attributes with zeroed padding (no
//! uninitialised or stale bytes ever leave), then MESSAGE-INTEGRITY or
//! -SHA256 and FINGERPRINT. No SOFTWARE attribute is ever written: a
//! relay does not tell scanners what it runs.

use std::net::SocketAddr;

use crate::attr;
use crate::integrity::{fingerprint_over, hmac_over, Integrity};
use crate::{message_type, padded, Class, StunError, HEADER, MAGIC_COOKIE, MAX_MESSAGE};

/// A message being written.
#[derive(Debug, Clone)]
pub struct Encoder {
    buf: Vec<u8>,
    transaction_id: [u8; 12],
}

impl Encoder {
    pub fn new(class: Class, method: u16, transaction_id: [u8; 12]) -> Encoder {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&message_type(class, method).to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        buf.extend_from_slice(&transaction_id);
        Encoder {
            buf,
            transaction_id,
        }
    }

    /// Adds an attribute. An error, and nothing added, when the value or
    /// the message would be too long for the length fields.
    pub fn attr(&mut self, kind: u16, value: &[u8]) -> Result<&mut Encoder, StunError> {
        let len = u16::try_from(value.len()).map_err(|_| StunError::BadAttribute {
            kind,
            why: "longer than 65,535 bytes",
        })?;
        if self.buf.len() + 4 + padded(value.len()) > MAX_MESSAGE {
            return Err(StunError::BadAttribute {
                kind,
                why: "the message would be too long",
            });
        }
        self.buf.extend_from_slice(&kind.to_be_bytes());
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(value);
        self.buf
            .resize(self.buf.len() + padded(value.len()) - value.len(), 0);
        self.set_length();
        Ok(self)
    }

    /// An XOR-address attribute (XOR-MAPPED-, XOR-PEER-, XOR-RELAYED-).
    pub fn xor_address(&mut self, kind: u16, addr: SocketAddr) -> &mut Encoder {
        let v = attr::xor_address_value(addr, &self.transaction_id);
        self.fixed(kind, &v)
    }

    /// ERROR-CODE.
    pub fn error(&mut self, code: u16, reason: &str) -> &mut Encoder {
        let v = attr::error_code_value(code, reason);
        self.fixed(attr::ERROR_CODE, &v)
    }

    /// A four-byte number (LIFETIME...).
    pub fn u32(&mut self, kind: u16, value: u32) -> &mut Encoder {
        self.fixed(kind, &value.to_be_bytes())
    }

    /// An attribute the encoder knows to be short (under a kilobyte):
    /// it always fits a message begun with at most a few of them.
    fn fixed(&mut self, kind: u16, v: &[u8]) -> &mut Encoder {
        // (Only fails past 65 KB of attributes, which these few cannot
        // reach; then the attribute is left out rather than a panic.)
        let _ = self.attr(kind, v);
        self
    }

    fn set_length(&mut self) {
        let len = u16::try_from(self.buf.len() - HEADER).unwrap_or(u16::MAX);
        self.buf[2..4].copy_from_slice(&len.to_be_bytes());
    }

    /// The message without integrity or fingerprint.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }

    /// The message protected by `integrity` with `key` (when given), then
    /// a FINGERPRINT (when `fingerprint`).
    pub fn finish_with(
        mut self,
        integrity: Option<(Integrity, &[u8])>,
        fingerprint: bool,
    ) -> Vec<u8> {
        if let Some((alg, key)) = integrity {
            let (kind, len) = match alg {
                Integrity::Sha1 => (attr::MESSAGE_INTEGRITY, 20),
                Integrity::Sha256 => (attr::MESSAGE_INTEGRITY_SHA256, 32),
            };
            let offset = self.buf.len();
            let tag = hmac_over(alg, key, &self.buf, offset, len);
            let _ = self.attr(kind, tag.as_ref());
        }
        if fingerprint {
            let offset = self.buf.len();
            let crc = fingerprint_over(&self.buf, offset);
            let _ = self.attr(attr::FINGERPRINT, &crc.to_be_bytes());
        }
        self.buf
    }
}
