//! Every name and address this server is reachable by, and the one test of
//! whether a SIP URI names it — used for Route entries, Request-URIs and
//! strict-routed Record-Route URIs alike.
//!
//! A URI names this server when
//! - its host is the SIP domain or a configured host name, and its port, if
//!   written, is one this server listens on (without a port, RFC 3263 finds
//!   the port through the domain's DNS records, which point here); or
//! - its host is `localhost` or an address this server listens on — for a
//!   wildcard listener (`0.0.0.0`, `::`) every address of the machine's
//!   interfaces — and its port, written or implied by the transport (5061 for
//!   `sips:` and `transport=tls`, 5060 otherwise; for `transport=ws`/`wss` any
//!   WebSocket listener's port), is the port of a listener on that address.
//!
//! The transport of the listener is not compared: a client that names
//! `sip:127.0.0.1:5061` without `;transport=tls` still means this server.
//! Pure: the machine's addresses are given by the caller ([`interface_addrs`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use sip::uri::{Host, SipUri};
use sip_transport::Protocol;

/// The names and addresses this server answers to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// The SIP domain and configured host names, lower case.
    names: Vec<String>,
    /// Every (address, port) a listener is reachable at, wildcards expanded.
    endpoints: Vec<(IpAddr, u16)>,
    /// Every listener port (for names).
    ports: Vec<u16>,
    /// Ports of WS and WSS listeners.
    ws_ports: Vec<u16>,
}

impl Identity {
    /// `listeners` as bound (wildcards allowed); `interfaces` the machine's
    /// addresses, which a wildcard listener stands for.
    pub fn new(
        domain: &str,
        host_names: &[String],
        listeners: &[(Protocol, SocketAddr)],
        interfaces: &[IpAddr],
    ) -> Identity {
        let mut id = Identity::default();
        for n in std::iter::once(domain).chain(host_names.iter().map(String::as_str)) {
            let n = n.trim_end_matches('.').to_ascii_lowercase();
            if !n.is_empty() && !id.names.contains(&n) {
                id.names.push(n);
            }
        }
        for &(proto, addr) in listeners {
            let port = addr.port();
            push_unique(&mut id.ports, port);
            if matches!(proto, Protocol::Ws | Protocol::Wss) {
                push_unique(&mut id.ws_ports, port);
            }
            let ip = canonical(addr.ip());
            if ip.is_unspecified() {
                // `0.0.0.0` takes IPv4; `::` takes both families (Linux
                // binds dual-stack unless told otherwise).
                let v6 = ip.is_ipv6();
                let covered = interfaces
                    .iter()
                    .copied()
                    .map(canonical)
                    .filter(|a| v6 || a.is_ipv4());
                let loopback: [IpAddr; 2] =
                    [Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()];
                for a in covered.chain(loopback.into_iter().filter(|a| v6 || a.is_ipv4())) {
                    push_unique(&mut id.endpoints, (a, port));
                }
            } else {
                push_unique(&mut id.endpoints, (ip, port));
            }
        }
        id
    }

    /// Whether `uri` names this server (see the module documentation).
    pub fn names_us(&self, uri: &SipUri<'_>) -> bool {
        match uri.host {
            Host::Name(n) => {
                let n = n.trim_end_matches('.');
                if n.eq_ignore_ascii_case("localhost") {
                    let port = self.port_of(uri);
                    return [
                        IpAddr::from(Ipv4Addr::LOCALHOST),
                        Ipv6Addr::LOCALHOST.into(),
                    ]
                    .iter()
                    .any(|ip| port.matches(self, *ip));
                }
                self.names.iter().any(|ours| ours.eq_ignore_ascii_case(n))
                    && uri.port.is_none_or(|p| self.ports.contains(&p))
            }
            Host::V4(a) => self.port_of(uri).matches(self, IpAddr::V4(a)),
            Host::V6(a) => self.port_of(uri).matches(self, canonical(IpAddr::V6(a))),
        }
    }

    /// Whether `host` (a Request-URI's, say) is one of this server's names
    /// or addresses, whatever the port.
    pub fn is_our_host(&self, host: &Host<'_>) -> bool {
        match host {
            Host::Name(n) => {
                let n = n.trim_end_matches('.');
                n.eq_ignore_ascii_case("localhost") && self.has_loopback()
                    || self.names.iter().any(|ours| ours.eq_ignore_ascii_case(n))
            }
            Host::V4(a) => self.has_address(IpAddr::V4(*a)),
            Host::V6(a) => self.has_address(canonical(IpAddr::V6(*a))),
        }
    }

    /// The SIP domain and host names, for showing.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Every address and port listened on, for showing.
    pub fn endpoints(&self) -> &[(IpAddr, u16)] {
        &self.endpoints
    }

    fn has_address(&self, ip: IpAddr) -> bool {
        self.endpoints.iter().any(|(a, _)| *a == ip)
    }

    fn has_loopback(&self) -> bool {
        self.endpoints.iter().any(|(a, _)| a.is_loopback())
    }

    fn port_of(&self, uri: &SipUri<'_>) -> Port {
        if let Some(p) = uri.port {
            return Port::Exactly(p);
        }
        let transport = uri.params.get("transport").flatten().unwrap_or("");
        if transport.eq_ignore_ascii_case("ws") || transport.eq_ignore_ascii_case("wss") {
            Port::AnyWebSocket
        } else if uri.secure || transport.eq_ignore_ascii_case("tls") {
            Port::Exactly(5061)
        } else {
            Port::Exactly(5060)
        }
    }
}

/// The port a URI implies.
#[derive(Debug, Clone, Copy)]
enum Port {
    Exactly(u16),
    AnyWebSocket,
}

impl Port {
    fn matches(self, id: &Identity, ip: IpAddr) -> bool {
        id.endpoints.iter().any(|&(a, p)| {
            a == ip
                && match self {
                    Port::Exactly(want) => p == want,
                    Port::AnyWebSocket => id.ws_ports.contains(&p),
                }
        })
    }
}

fn push_unique<T: PartialEq>(v: &mut Vec<T>, x: T) {
    if !v.contains(&x) {
        v.push(x);
    }
}

/// `::ffff:a.b.c.d` is the IPv4 address it maps.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The addresses of this machine's interfaces (those that are up).
/// An error leaves the loopback addresses, which a wildcard always covers.
pub fn interface_addrs() -> Vec<IpAddr> {
    match if_addrs::get_if_addrs() {
        Ok(list) => list.into_iter().map(|i| i.ip()).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the machine's interface addresses; a wildcard listener is recognised by its loopback addresses only");
            Vec::new()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn l(spec: &str) -> (Protocol, SocketAddr) {
        let (scheme, addr) = spec.split_once("://").unwrap();
        let proto = match scheme {
            "udp" => Protocol::Udp,
            "tcp" => Protocol::Tcp,
            "tls" => Protocol::Tls,
            "ws" => Protocol::Ws,
            "wss" => Protocol::Wss,
            _ => unreachable!(),
        };
        (proto, addr.parse().unwrap())
    }

    /// A machine with a LAN address and an IPv6 address beside loopback.
    fn machine() -> Vec<IpAddr> {
        ["127.0.0.1", "192.0.2.10", "::1", "2001:db8::10"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect()
    }

    fn setup(listeners: &[&str]) -> Identity {
        let ls: Vec<_> = listeners.iter().map(|s| l(s)).collect();
        Identity::new(
            "example.test",
            &["sip.example.test".to_string()],
            &ls,
            &machine(),
        )
    }

    fn names(id: &Identity, route: &str) -> bool {
        let uri = sip::Uri::parse(route).unwrap();
        let sip::Uri::Sip(u) = uri else {
            panic!("{route} is not a SIP URI")
        };
        id.names_us(&u)
    }

    /// Route forms × listener setups: the README's defaults (wildcards),
    /// loopback only, one LAN address, IPv6 wildcard, and a test setup with
    /// plain transports.
    #[test]
    fn route_forms_by_listener_setup() {
        let defaults = setup(&["tls://0.0.0.0:5061", "wss://0.0.0.0:8443"]);
        let loopback = setup(&["tls://127.0.0.1:5061", "wss://127.0.0.1:8443"]);
        let lan = setup(&["tls://192.0.2.10:5061"]);
        let v6 = setup(&["tls://[::]:5061", "wss://[::]:8443"]);
        let plain = setup(&[
            "udp://127.0.0.1:5070",
            "tcp://127.0.0.1:5070",
            "tls://127.0.0.1:5071",
        ]);
        #[rustfmt::skip]
        let table: &[(&str, [bool; 5])] = &[
            //                                              defaults loopback lan    v6     plain
            ("sip:example.test;lr",                          [true,  true,    true,  true,  true]),
            ("sip:EXAMPLE.test.;lr",                         [true,  true,    true,  true,  true]),
            ("sip:example.test;transport=tls;lr",            [true,  true,    true,  true,  true]),
            ("sip:example.test:5061;transport=tls;lr",       [true,  true,    true,  true,  false]),
            ("sips:example.test;lr",                         [true,  true,    true,  true,  true]),
            ("sip:sip.example.test:5061;transport=tls;lr",   [true,  true,    true,  true,  false]),
            ("sip:example.test:5062;transport=tls;lr",       [false, false,   false, false, false]),
            ("sip:other.test;lr",                            [false, false,   false, false, false]),
            ("sip:127.0.0.1:5061;transport=tls;lr",          [true,  true,    false, true,  false]),
            ("sip:127.0.0.1;transport=tls;lr",               [true,  true,    false, true,  false]),
            ("sip:127.0.0.1:5061;lr",                        [true,  true,    false, true,  false]),
            ("sip:127.0.0.1;lr",                             [false, false,   false, false, false]),
            ("sip:localhost:5061;transport=tls;lr",          [true,  true,    false, true,  false]),
            ("sip:localhost;transport=tls;lr",               [true,  true,    false, true,  false]),
            ("sip:192.0.2.10:5061;transport=tls;lr",         [true,  false,   true,  true,  false]),
            ("sip:192.0.2.11:5061;transport=tls;lr",         [false, false,   false, false, false]),
            ("sip:[::1]:5061;transport=tls;lr",              [false, false,   false, true,  false]),
            ("sip:[2001:db8::10];transport=tls;lr",          [false, false,   false, true,  false]),
            ("sip:[::ffff:127.0.0.1]:5061;lr",               [true,  true,    false, true,  false]),
            ("sip:127.0.0.1:8443;transport=ws;lr",           [true,  true,    false, true,  false]),
            ("sip:127.0.0.1;transport=wss;lr",               [true,  true,    false, true,  false]),
            ("sip:127.0.0.1:5070;lr",                        [false, false,   false, false, true]),
            ("sip:127.0.0.1:5071;transport=tls;lr",          [false, false,   false, false, true]),
            ("sip:0.0.0.0:5061;transport=tls;lr",            [false, false,   false, false, false]),
        ];
        let setups = [&defaults, &loopback, &lan, &v6, &plain];
        for (route, want) in table {
            for (i, id) in setups.iter().enumerate() {
                assert_eq!(names(id, route), want[i], "{route} with setup {i}: {id:?}");
            }
        }
    }

    #[test]
    fn request_uri_hosts_ignore_the_port() {
        let id = setup(&["tls://0.0.0.0:5061"]);
        let host = |h: &str| match sip::Uri::parse(&format!("sip:bob@{h}")).unwrap() {
            sip::Uri::Sip(u) => id.is_our_host(&u.host),
            _ => unreachable!(),
        };
        assert!(host("example.test"));
        assert!(host("Sip.Example.Test"));
        assert!(host("192.0.2.10:5099"));
        assert!(host("localhost"));
        assert!(!host("[2001:db8::10]"), "0.0.0.0 does not take IPv6");
        assert!(!host("other.test"));
        assert!(!host("198.51.100.1"));
    }

    #[test]
    fn a_machine_whose_interfaces_cannot_be_listed_still_knows_loopback() {
        let id = Identity::new("example.test", &[], &[l("tls://0.0.0.0:5061")], &[]);
        let u = sip::Uri::parse("sip:127.0.0.1:5061;lr").unwrap();
        assert!(id.names_us(u.as_sip().unwrap()));
    }
}
