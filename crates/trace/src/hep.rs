//! HEP v3 (the Homer Encapsulation Protocol), as Kamailio's `siptrace`,
//! OpenSIPS and FreeSWITCH send it: `HEP3`, the packet's length, then
//! chunks of (vendor 0, type, length, value).

use std::net::{IpAddr, SocketAddr};

use super::record::Record;

fn chunk(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = u16::try_from(6 + value.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&value[..usize::from(len) - 6]);
}

/// The HEP v3 packet for a traced message (`agent`: the capture agent id).
/// A message too long for HEP's 16-bit length is cut.
pub fn encode(r: &Record, agent: u32) -> Vec<u8> {
    let (src, dst): (SocketAddr, SocketAddr) = if r.inbound {
        (r.remote, r.local)
    } else {
        (r.local, r.remote)
    };
    let mut body = Vec::with_capacity(r.message.len() + 128);
    let v6 = src.is_ipv6() || dst.is_ipv6();
    chunk(&mut body, 0x0001, &[if v6 { 10 } else { 2 }]);
    chunk(
        &mut body,
        0x0002,
        &[if r.protocol == "UDP" { 17 } else { 6 }],
    );
    let addr = |a: IpAddr| match a {
        IpAddr::V4(a) if !v6 => a.octets().to_vec(),
        IpAddr::V4(a) => a.to_ipv6_mapped().octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    chunk(&mut body, if v6 { 0x0005 } else { 0x0003 }, &addr(src.ip()));
    chunk(&mut body, if v6 { 0x0006 } else { 0x0004 }, &addr(dst.ip()));
    chunk(&mut body, 0x0007, &src.port().to_be_bytes());
    chunk(&mut body, 0x0008, &dst.port().to_be_bytes());
    let secs = u32::try_from(r.at_ms.div_euclid(1000)).unwrap_or(0);
    let micros = u32::try_from(r.at_ms.rem_euclid(1000) * 1000).unwrap_or(0);
    chunk(&mut body, 0x0009, &secs.to_be_bytes());
    chunk(&mut body, 0x000a, &micros.to_be_bytes());
    chunk(&mut body, 0x000b, &[1]); // SIP
    chunk(&mut body, 0x000c, &agent.to_be_bytes());
    if let Some(call) = r.header("Call-ID", Some("i")) {
        // Bounded: the packet's length is 16 bits.
        chunk(&mut body, 0x0011, &call.as_bytes()[..call.len().min(1024)]);
    }
    let room = usize::from(u16::MAX).saturating_sub(6 + body.len() + 6);
    chunk(&mut body, 0x000f, &r.message[..r.message.len().min(room)]);
    let mut out = Vec::with_capacity(body.len() + 6);
    out.extend_from_slice(b"HEP3");
    out.extend_from_slice(
        &u16::try_from(body.len() + 6)
            .unwrap_or(u16::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(&body);
    out
}

/// The chunks of a HEP v3 packet: (type, value); `None` if it is not one.
pub fn decode(p: &[u8]) -> Option<Vec<(u16, Vec<u8>)>> {
    if p.len() < 6 || &p[..4] != b"HEP3" {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([p[4], p[5]]));
    if total != p.len() {
        return None;
    }
    let mut out = Vec::new();
    let mut at = 6;
    while at < total {
        let h = p.get(at..at + 6)?;
        let kind = u16::from_be_bytes([h[2], h[3]]);
        let len = usize::from(u16::from_be_bytes([h[4], h[5]]));
        if len < 6 {
            return None;
        }
        out.push((kind, p.get(at + 6..at + len)?.to_vec()));
        at += len;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_becomes_a_hep3_packet_with_its_addresses_time_and_payload() {
        let r = Record {
            at_ms: 1_796_645_045_123,
            inbound: true,
            protocol: "UDP",
            local: "127.0.0.1:5060".parse().unwrap(),
            remote: "192.0.2.7:5070".parse().unwrap(),
            message: bytes::Bytes::from_static(b"OPTIONS sip:x SIP/2.0\r\nCall-ID: c9\r\n\r\n"),
        };
        let p = encode(&r, 42);
        let chunks = decode(&p).unwrap();
        let get = |k: u16| {
            chunks
                .iter()
                .find(|c| c.0 == k)
                .map(|c| c.1.clone())
                .unwrap()
        };
        assert_eq!(get(0x0001), vec![2]);
        assert_eq!(get(0x0002), vec![17]);
        assert_eq!(
            get(0x0003),
            vec![192, 0, 2, 7],
            "inbound: the remote is the source"
        );
        assert_eq!(get(0x0004), vec![127, 0, 0, 1]);
        assert_eq!(get(0x0007), 5070u16.to_be_bytes().to_vec());
        assert_eq!(get(0x0008), 5060u16.to_be_bytes().to_vec());
        assert_eq!(get(0x0009), 1_796_645_045u32.to_be_bytes().to_vec());
        assert_eq!(get(0x000a), 123_000u32.to_be_bytes().to_vec());
        assert_eq!(get(0x000b), vec![1]);
        assert_eq!(get(0x000c), 42u32.to_be_bytes().to_vec());
        assert_eq!(get(0x0011), b"c9".to_vec());
        assert_eq!(get(0x000f), r.message);
        // IPv6, and a message too long for HEP: cut, still a packet.
        let mut big = r.clone();
        big.remote = "[2001:db8::1]:5070".parse().unwrap();
        big.message = vec![b'a'; 70_000].into();
        let p = encode(&big, 1);
        assert!(p.len() <= 65_535);
        let chunks = decode(&p).unwrap();
        assert!(chunks.iter().any(|c| c.0 == 0x0005 && c.1.len() == 16));
        assert!(decode(&p[..p.len() - 1]).is_none());
        assert!(decode(b"HEP2\x00\x06").is_none());
        // A Call-ID far longer than any SIP message carries: bounded, no panic.
        let mut long = r.clone();
        long.message = format!(
            "OPTIONS sip:x SIP/2.0\r\nCall-ID: {}\r\n\r\n",
            "c".repeat(70_000)
        )
        .into_bytes()
        .into();
        let p = encode(&long, 1);
        assert!(p.len() <= 65_535 && decode(&p).is_some());
    }
}
