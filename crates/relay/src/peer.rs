//! Which peers the relay may send to, whatever a client asks: never the
//! relay's own addresses or networks a relay must not reach from outside
//! (loopback, private, shared and link-local ranges, where cloud metadata
//! services live, multicast, broadcast, unspecified and reserved
//! addresses). IPv6 forms that carry an IPv4 address (IPv4-mapped and
//! -compatible, NAT64, 6to4, Teredo) are judged by the address they
//! carry: coturn's loopback filter was bypassed by `0.0.0.0`, `[::]`,
//! `[::1]` (CVE-2020-26262) and by `::ffff:127.0.0.1` (CVE-2026-27624).
//!
//! Documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24,
//! 2001:db8::/32) are not refused: they are not anyone's internal network,
//! and test laboratories stand in for the internet with them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why a peer is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Unspecified,
    Loopback,
    /// RFC 1918, IPv6 unique local (fc00::/7), site-local (fec0::/10).
    Private,
    /// 100.64.0.0/10 (carrier-grade NAT).
    SharedAddressSpace,
    /// 169.254.0.0/16, fe80::/10.
    LinkLocal,
    /// 169.254.169.254 (and the other clouds' metadata addresses).
    CloudMetadata,
    Multicast,
    Broadcast,
    /// 0.0.0.0/8, 192.0.0.0/24, 198.18.0.0/15, 240.0.0.0/4, 100::/64 and
    /// other ranges no peer is at.
    Reserved,
    /// One of the relay's own addresses.
    Relay,
}

impl Refused {
    /// Why, for a log line or an error reason.
    pub fn reason(self) -> &'static str {
        match self {
            Refused::Unspecified => "an unspecified address",
            Refused::Loopback => "a loopback address",
            Refused::Private => "a private address",
            Refused::SharedAddressSpace => "a carrier-grade NAT address",
            Refused::LinkLocal => "a link-local address",
            Refused::CloudMetadata => "a cloud metadata address",
            Refused::Multicast => "a multicast address",
            Refused::Broadcast => "the broadcast address",
            Refused::Reserved => "a reserved address",
            Refused::Relay => "one of the relay's own addresses",
        }
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

/// The IPv4 address an IPv6 one carries, if any: IPv4-mapped
/// (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`), NAT64 (the
/// well-known `64:ff9b::/96` and the local-use `64:ff9b:1::/48`), 6to4
/// (`2002:AABB:CCDD::/48`) and Teredo (`2001::/32`: the client's address,
/// inverted in the last 32 bits).
pub fn embedded_v4(a: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = a.segments();
    let o = a.octets();
    let tail = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(tail),
        // (:: and ::1 are themselves, not 0.0.0.0 and 0.0.0.1.)
        [0, 0, 0, 0, 0, 0, hi, _] if hi != 0 => Some(tail),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(tail),
        [0x64, 0xff9b, 1, ..] => Some(tail),
        [0x2002, ..] => Some(Ipv4Addr::new(o[2], o[3], o[4], o[5])),
        [0x2001, 0, ..] => Some(Ipv4Addr::new(!o[12], !o[13], !o[14], !o[15])),
        _ => None,
    }
}

/// The form an address is compared in: an IPv4-mapped address as the
/// IPv4 address it is (a dual-stack socket reports IPv4 peers so).
pub fn canonical(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v) => v.to_ipv4_mapped().map_or(a, IpAddr::V4),
        v4 => v4,
    }
}

fn v4(a: Ipv4Addr) -> Result<(), Refused> {
    let o = a.octets();
    match o {
        [169, 254, 169, 254] | [100, 100, 100, 200] | [192, 0, 0, 192] => {
            Err(Refused::CloudMetadata)
        }
        [0, 0, 0, 0] => Err(Refused::Unspecified),
        [255, 255, 255, 255] => Err(Refused::Broadcast),
        [127, ..] => Err(Refused::Loopback),
        [10, ..] | [192, 168, ..] => Err(Refused::Private),
        [172, b, ..] if (16..32).contains(&b) => Err(Refused::Private),
        [100, b, ..] if (64..128).contains(&b) => Err(Refused::SharedAddressSpace),
        [169, 254, ..] => Err(Refused::LinkLocal),
        [224..=239, ..] => Err(Refused::Multicast),
        [0, ..] | [240..=255, ..] | [192, 0, 0, _] => Err(Refused::Reserved),
        [198, 18 | 19, ..] => Err(Refused::Reserved),
        _ => Ok(()),
    }
}

fn v6(a: Ipv6Addr) -> Result<(), Refused> {
    if let Some(inner) = embedded_v4(a) {
        v4(inner)?;
        // Teredo names its server too (bits 32-63).
        if a.segments()[..2] == [0x2001, 0] {
            let o = a.octets();
            v4(Ipv4Addr::new(o[4], o[5], o[6], o[7]))?;
        }
        return Ok(());
    }
    let s = a.segments();
    if a.is_unspecified() {
        return Err(Refused::Unspecified);
    }
    if a.is_loopback() {
        return Err(Refused::Loopback);
    }
    if a == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        return Err(Refused::CloudMetadata);
    }
    match s[0] {
        0xfc00..=0xfdff | 0xfec0..=0xfeff => Err(Refused::Private),
        0xfe80..=0xfebf => Err(Refused::LinkLocal),
        0xff00..=0xffff => Err(Refused::Multicast),
        _ if s[..4] == [0x100, 0, 0, 0] => Err(Refused::Reserved),
        // The rest of ::/8 (other than the forms above) is reserved.
        0x0000..=0x00ff => Err(Refused::Reserved),
        _ => Ok(()),
    }
}

/// Whether the relay may send to `peer`, given its own addresses
/// (compared in their canonical IPv4 form where they carry one).
pub fn allowed(peer: IpAddr, own: &[IpAddr]) -> Result<(), Refused> {
    let canonical = |a: IpAddr| match a {
        IpAddr::V6(v) => embedded_v4(v).map_or(a, IpAddr::V4),
        v4 => v4,
    };
    let c = canonical(peer);
    if own.iter().any(|o| canonical(*o) == c) {
        return Err(Refused::Relay);
    }
    match peer {
        IpAddr::V4(a) => v4(a),
        IpAddr::V6(a) => v6(a),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn judge(a: &str) -> Result<(), Refused> {
        allowed(a.parse().unwrap(), &["203.0.113.5".parse().unwrap()])
    }

    #[test]
    fn the_addresses_coturn_let_through_are_refused() {
        for (a, why) in [
            ("127.0.0.1", Refused::Loopback),
            ("127.255.255.254", Refused::Loopback),
            ("0.0.0.0", Refused::Unspecified),
            ("::", Refused::Unspecified),
            ("::1", Refused::Loopback),
            ("::ffff:127.0.0.1", Refused::Loopback),
            ("::ffff:0.0.0.0", Refused::Unspecified),
            ("::127.0.0.1", Refused::Loopback),
            ("64:ff9b::7f00:1", Refused::Loopback),
            ("64:ff9b:1::a00:1", Refused::Private),
            ("2002:7f00:1::1", Refused::Loopback),
            ("2002:a9fe:a9fe::1", Refused::CloudMetadata),
            // Teredo: client 127.0.0.1 inverted in the last 32 bits.
            ("2001:0:cb00:7105::80ff:fffe", Refused::Loopback),
            // ... and a Teredo address naming a private server.
            ("2001:0:a00:1::f7f7:f7f7", Refused::Private),
        ] {
            assert_eq!(judge(a), Err(why), "{a}");
        }
    }

    #[test]
    fn internal_and_special_ranges_are_refused() {
        for (a, why) in [
            ("10.1.2.3", Refused::Private),
            ("172.16.0.1", Refused::Private),
            ("172.31.255.255", Refused::Private),
            ("192.168.1.1", Refused::Private),
            ("100.64.0.1", Refused::SharedAddressSpace),
            ("169.254.1.1", Refused::LinkLocal),
            ("169.254.169.254", Refused::CloudMetadata),
            ("100.100.100.200", Refused::CloudMetadata),
            ("fd00:ec2::254", Refused::CloudMetadata),
            ("224.0.0.1", Refused::Multicast),
            ("239.255.255.250", Refused::Multicast),
            ("255.255.255.255", Refused::Broadcast),
            ("240.0.0.1", Refused::Reserved),
            ("0.1.2.3", Refused::Reserved),
            ("198.18.0.1", Refused::Reserved),
            ("192.0.0.8", Refused::Reserved),
            ("fc00::1", Refused::Private),
            ("fd12:3456::1", Refused::Private),
            ("fec0::1", Refused::Private),
            ("fe80::1", Refused::LinkLocal),
            ("ff02::1", Refused::Multicast),
            ("100::1", Refused::Reserved),
            ("::2:3", Refused::Reserved),
            ("203.0.113.5", Refused::Relay),
            ("::ffff:203.0.113.5", Refused::Relay),
        ] {
            assert_eq!(judge(a), Err(why), "{a}");
        }
    }

    #[test]
    fn public_and_documentation_addresses_are_allowed() {
        for a in [
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "192.0.2.10",
            "198.51.100.7",
            "203.0.113.6",
            "2001:db8::1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert_eq!(judge(a), Ok(()), "{a}");
        }
    }

    #[test]
    fn embedded_addresses_are_found() {
        let e = |a: &str| embedded_v4(a.parse().unwrap());
        assert_eq!(e("::ffff:1.2.3.4"), Some(Ipv4Addr::new(1, 2, 3, 4)));
        assert_eq!(e("64:ff9b::102:304"), Some(Ipv4Addr::new(1, 2, 3, 4)));
        assert_eq!(e("2002:102:304::"), Some(Ipv4Addr::new(1, 2, 3, 4)));
        assert_eq!(
            e("2001:0:4136:e378:8000:63bf:3fff:fdd2"),
            Some(Ipv4Addr::new(192, 0, 2, 45))
        );
        assert_eq!(e("::"), None);
        assert_eq!(e("::1"), None);
        assert_eq!(e("2001:db8::1"), None);
    }
}
