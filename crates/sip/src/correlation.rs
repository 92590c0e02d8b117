//! A correlation id per SIP transaction, for logs: the same on every node
//! and edge a request passes, with nothing added to the message.
//!
//! Every hop keeps the Call-ID and the CSeq of a request and its responses
//! (a proxy may change neither; Parapet's edge does not either), so a hash
//! of those names the transaction wherever it is logged. An ACK is grouped
//! with its INVITE (the ACK of a failure is part of the INVITE's
//! transaction; the ACK of a 2xx ends the same exchange); a CANCEL is its
//! own transaction. Stable across versions: 64-bit FNV-1a, 16 hex digits.

use crate::{HeaderKind, Message};

/// A correlation id: shown as 16 hex digits, made without allocating (one
/// is computed for every message the server handles).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Corr(pub u64);

impl std::fmt::Display for Corr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The correlation id of the transaction `m` belongs to, or `None` when it
/// has no Call-ID or no CSeq.
pub fn id(m: &Message) -> Option<Corr> {
    let call_id = m.header(HeaderKind::CallId)?.value.trim();
    let cseq = m.header(HeaderKind::CSeq)?.value;
    let mut parts = cseq.split_ascii_whitespace();
    let number = parts.next()?;
    let method = match parts.next()? {
        "ACK" => "INVITE",
        other => other,
    };
    Some(of(call_id, number, method))
}

/// The id of the transaction with this Call-ID, CSeq number and method.
pub fn of(call_id: &str, cseq_number: &str, method: &str) -> Corr {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [
        call_id.as_bytes(),
        b"\n",
        cseq_number.as_bytes(),
        b"\n",
        method.as_bytes(),
    ] {
        for b in part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    Corr(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(s: &str) -> Message {
        crate::parse_datagram(
            bytes::Bytes::from(s.replace('\n', "\r\n")),
            &crate::Limits::default(),
        )
        .unwrap()
    }

    const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\nFrom: <sip:a@example.com>;tag=1\nTo: <sip:bob@example.com>\nCall-ID: abc@192.0.2.1\nCSeq: 7 INVITE\nMax-Forwards: 70\nContent-Length: 0\n\n";

    #[test]
    fn a_request_and_its_response_share_the_id_and_the_ack_joins_them() {
        let req = msg(INVITE);
        let resp = msg("SIP/2.0 486 Busy Here\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\nFrom: <sip:a@example.com>;tag=1\nTo: <sip:bob@example.com>;tag=2\ni: abc@192.0.2.1\nCSeq:   7   INVITE\nContent-Length: 0\n\n");
        let ack = msg(&INVITE
            .replace("INVITE sip", "ACK sip")
            .replace("7 INVITE", "7 ACK"));
        let id = id(&req).unwrap();
        assert_eq!(id.to_string().len(), 16);
        assert_eq!(super::id(&resp), Some(id));
        assert_eq!(super::id(&ack), Some(id));
    }

    #[test]
    fn a_cancel_another_cseq_or_another_call_is_another_transaction() {
        let id = id(&msg(INVITE)).unwrap();
        let cancel = INVITE
            .replace("INVITE sip", "CANCEL sip")
            .replace("7 INVITE", "7 CANCEL");
        let other = [
            cancel,
            INVITE.replace("7 INVITE", "8 INVITE"),
            INVITE.replace("abc@", "abd@"),
        ];
        for o in other {
            assert_ne!(super::id(&msg(&o)).unwrap(), id, "{o}");
        }
    }

    #[test]
    fn the_id_is_stable() {
        // Nodes of different versions must agree: the values are fixed
        // (computed independently of this code).
        assert_eq!(
            of("abc@192.0.2.1", "7", "INVITE").to_string(),
            "ef1924e73fe1d442"
        );
        assert_eq!(of("a", "1", "MESSAGE").to_string(), "8c6a52e2b7979400");
        assert_eq!(Corr(0xab).to_string(), "00000000000000ab");
    }
}
