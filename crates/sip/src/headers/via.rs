//! The `Via` header (RFC 3261 §20.42, RFC 3581 rport, RFC 5118 IPv6 received).

use super::{whole, ListHeader};
use crate::name::HeaderKind;
use crate::params::{parse_params_checked, ParamSyntax, Params};
use crate::scan::{Cursor, Invalid, Scan};
use crate::uri::{parse_host, parse_port, Host};

/// The RFC 3261 branch prefix.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// One Via entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'a> {
    pub protocol: &'a str,
    pub version: &'a str,
    /// `UDP`, `TCP`, `TLS`, `WS`, `WSS`, `SCTP` or any other token.
    pub transport: &'a str,
    pub host: Host<'a>,
    pub port: Option<u16>,
    pub params: Params<'a>,
}

impl<'a> Via<'a> {
    pub fn branch(&self) -> Option<&'a str> {
        self.params.get("branch").flatten()
    }

    /// Whether the branch is an RFC 3261 one: the magic cookie plus at least one
    /// more character. Otherwise transactions match the RFC 2543 way.
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch()
            .is_some_and(|b| b.len() > MAGIC_COOKIE.len() && b.starts_with(MAGIC_COOKIE))
    }

    pub fn received(&self) -> Option<&'a str> {
        self.params.get("received").flatten()
    }

    /// `Some(None)` for a bare `;rport` (the client asks for it), `Some(Some(p))`
    /// once filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params
            .get("rport")
            .map(|v| v.and_then(|p| p.parse().ok()))
    }
}

impl<'a> ListHeader<'a> for Via<'a> {
    const KIND: HeaderKind = HeaderKind::Via;
    fn parse_element(element: &'a str) -> Scan<Self> {
        whole(element, parse_via)
    }
}

/// Via parameters with a defined syntax: branch (token), rport (empty or a
/// port), received (an IPv4 or IPv6 address, bracketed or not, RFC 5118), ttl.
fn check_via_param(p: crate::params::Param<'_>) -> Scan<()> {
    let is = |n: &str| p.name.eq_ignore_ascii_case(n);
    if is("branch") {
        let v = p.value.ok_or(Invalid)?;
        if !v.bytes().all(crate::scan::is_token) {
            return Err(Invalid);
        }
    } else if is("rport") {
        if let Some(v) = p.value {
            crate::scan::parse_decimal(v.as_bytes(), 65535)?;
        }
    } else if is("received") {
        let v = p.value.ok_or(Invalid)?;
        match v.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            Some(inner) => drop(inner.parse::<std::net::Ipv6Addr>().map_err(|_| Invalid)?),
            None => drop(v.parse::<std::net::IpAddr>().map_err(|_| Invalid)?),
        }
    } else if is("ttl") {
        crate::scan::parse_decimal(p.value.ok_or(Invalid)?.as_bytes(), 255)?;
    }
    Ok(())
}

fn parse_via<'a>(c: &mut Cursor<'a>) -> Scan<Via<'a>> {
    let protocol = c.token()?;
    c.expect_sep(b'/')?;
    let version = c.token()?;
    c.expect_sep(b'/')?;
    let transport = c.token()?;
    if !c.skip_lws() {
        return Err(Invalid);
    }
    let host = parse_host(c)?;
    let port = if c.eat_sep(b':') {
        Some(parse_port(c)?)
    } else {
        None
    };
    let params = parse_params_checked(c, ParamSyntax::Header, check_via_param)?;
    Ok(Via {
        protocol,
        version,
        transport,
        host,
        port,
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_via() {
        let v = Via::parse_element("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776;rport").unwrap();
        assert_eq!((v.protocol, v.version, v.transport), ("SIP", "2.0", "UDP"));
        assert_eq!(v.port, Some(5060));
        assert_eq!(v.branch(), Some("z9hG4bK776"));
        assert!(v.has_rfc3261_branch());
        assert_eq!(v.rport(), Some(None));
    }

    #[test]
    fn torture_whitespace() {
        let v =
            Via::parse_element("SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.transport, "UDP");
        assert!(!v.has_rfc3261_branch());
        let v = Via::parse_element(
            "SIP  / 2.0  / TCP     spindle.example.com   ;\r\n  branch  =   z9hG4bK9ikj8",
        )
        .unwrap();
        assert_eq!(v.branch(), Some("z9hG4bK9ikj8"));
    }

    #[test]
    fn ipv6_and_received() {
        let v = Via::parse_element(
            "SIP/2.0/UDP [2001:db8::9:1];received=[2001:db8::9:255];branch=z9hG4bKas3",
        )
        .unwrap();
        assert_eq!(v.host, Host::V6("2001:db8::9:1".parse().unwrap()));
        assert!(Via::parse_element(
            "SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255;branch=z9hG4bKas3"
        )
        .is_ok());
        assert!(Via::parse_element("SIP/2.0/UDP h;received=nothost").is_err());
    }

    #[test]
    fn malformed_vias() {
        for bad in [
            "SIP/2.0/UDP 192.0.2.15;;",
            "SIP/2.0/UDP",
            "SIP/2.0 192.0.2.1",
            "SIP/2.0/UDP 192.0.2.1:99999",
            "SIP/2.0/UDP 192.0.2.1;branch",
            "SIP/2.0/UDP 192.0.2.1;rport=x",
            "SIP/2.0/UDP 192.0.2.1 junk",
        ] {
            assert!(Via::parse_element(bad).is_err(), "{bad}");
        }
        // badbranch: the bare cookie parses but is not an RFC 3261 branch
        let v = Via::parse_element("SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK").unwrap();
        assert!(!v.has_rfc3261_branch());
    }
}
