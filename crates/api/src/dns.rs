//! The DNS records an operator publishes so that clients and partners find
//! this server (RFC 3263: NAPTR, then SRV, then A/AAAA), written as zone-file
//! lines (`parapet admin dns-records`). Pure: the listeners and the
//! machine's addresses are given.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use config::Scheme;

/// Zone-file lines for `domain`, served at `host` (the SRV target: the
/// first of `host_names`, else the domain itself, so that the name is in the
/// server's certificate).
pub(crate) fn zone(
    domain: &str,
    host_names: &[String],
    listeners: &[(Scheme, SocketAddr)],
    interfaces: &[IpAddr],
) -> (String, String) {
    let host = host_names
        .first()
        .map_or(domain, String::as_str)
        .to_string();
    let ttl = 3600;
    let mut z = String::new();
    let _ = writeln!(
        z,
        "; DNS records for SIP domain {domain} (RFC 3263), served by {host}.\n\
         ; Clients (baresip, Linphone, softphones) and partners look up NAPTR, then SRV, then the address."
    );
    let port = |s: Scheme| listeners.iter().find(|l| l.0 == s).map(|l| l.1.port());
    let mut order = 10;
    let mut naptr = |z: &mut String, service: &str, srv: &str| {
        let _ = writeln!(
            z,
            "{domain}. {ttl} IN NAPTR {order} 0 \"s\" \"{service}\" \"\" {srv}.{domain}."
        );
        order += 10;
    };
    if let Some(p) = port(Scheme::Tls) {
        naptr(&mut z, "SIPS+D2T", "_sips._tcp");
        let _ = writeln!(z, "_sips._tcp.{domain}. {ttl} IN SRV 0 0 {p} {host}.");
        let _ = writeln!(
            z,
            "; older clients (Lync/Skype for Business among them) look for _sip._tls\n\
             _sip._tls.{domain}. {ttl} IN SRV 0 0 {p} {host}."
        );
    }
    for (scheme, service, srv) in [
        (Scheme::Tcp, "SIP+D2T", "_sip._tcp"),
        (Scheme::Udp, "SIP+D2U", "_sip._udp"),
    ] {
        if let Some(p) = port(scheme) {
            let _ = writeln!(
                z,
                "; unencrypted ({srv}): only where allow_insecure_transports is meant"
            );
            naptr(&mut z, service, srv);
            let _ = writeln!(z, "{srv}.{domain}. {ttl} IN SRV 0 0 {p} {host}.");
        }
    }
    if let Some(p) = port(Scheme::Tls) {
        let _ = writeln!(
            z,
            "; partners' servers, once federation is enabled (not available yet):\n\
             ; _sipfederationtls._tcp.{domain}. {ttl} IN SRV 0 0 {p} {host}."
        );
    }
    if let Some(p) = port(Scheme::Wss) {
        let _ = writeln!(
            z,
            "; browser clients (JsSIP, SIP.js) are given the URL wss://{host}:{p}/ (no DNS lookup)"
        );
    }
    // The addresses the listeners are reachable at: their own, or for a
    // wildcard the machine's (loopback only if nothing else is there).
    let mut addrs: Vec<IpAddr> = Vec::new();
    for (_, a) in listeners {
        let candidates: Vec<IpAddr> = if a.ip().is_unspecified() {
            interfaces
                .iter()
                .copied()
                .filter(|i| a.is_ipv6() || i.is_ipv4())
                .filter(|i| !i.is_loopback() && !is_link_local(*i))
                .collect()
        } else {
            vec![a.ip()]
        };
        for c in candidates {
            if !addrs.contains(&c) {
                addrs.push(c);
            }
        }
    }
    if addrs.is_empty() {
        let _ = writeln!(
            z,
            "; this machine has only loopback addresses: reachable from itself only"
        );
        addrs.push(IpAddr::from([127, 0, 0, 1]));
    }
    for a in addrs {
        let kind = if a.is_ipv4() { "A" } else { "AAAA" };
        let _ = writeln!(z, "{host}. {ttl} IN {kind} {a}");
    }
    (z, host)
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_on_a_machine_with_one_lan_address() {
        let listeners = [
            (Scheme::Tls, "0.0.0.0:5061".parse().unwrap()),
            (Scheme::Wss, "0.0.0.0:8443".parse().unwrap()),
        ];
        let ifs: Vec<IpAddr> = ["127.0.0.1", "192.0.2.10", "169.254.1.1", "2001:db8::10"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let (z, host) = zone("example.test", &[], &listeners, &ifs);
        assert_eq!(host, "example.test");
        for line in [
            "example.test. 3600 IN NAPTR 10 0 \"s\" \"SIPS+D2T\" \"\" _sips._tcp.example.test.",
            "_sips._tcp.example.test. 3600 IN SRV 0 0 5061 example.test.",
            "_sip._tls.example.test. 3600 IN SRV 0 0 5061 example.test.",
            "; _sipfederationtls._tcp.example.test. 3600 IN SRV 0 0 5061 example.test.",
            "example.test. 3600 IN A 192.0.2.10",
            "wss://example.test:8443/",
        ] {
            assert!(z.contains(line), "{line} not in:\n{z}");
        }
        assert!(
            !z.contains("127.0.0.1") && !z.contains("169.254") && !z.contains("2001:db8"),
            "{z}"
        );
        assert!(!z.contains("_sip._udp"), "{z}");
    }

    #[test]
    fn a_named_host_and_plain_listeners() {
        let listeners = [
            (Scheme::Tls, "198.51.100.7:5061".parse().unwrap()),
            (Scheme::Udp, "198.51.100.7:5060".parse().unwrap()),
        ];
        let (z, host) = zone(
            "example.test",
            &["sip.example.test".into()],
            &listeners,
            &[],
        );
        assert_eq!(host, "sip.example.test");
        assert!(
            z.contains("_sips._tcp.example.test. 3600 IN SRV 0 0 5061 sip.example.test."),
            "{z}"
        );
        assert!(
            z.contains("\"SIP+D2U\" \"\" _sip._udp.example.test."),
            "{z}"
        );
        assert!(
            z.contains("sip.example.test. 3600 IN A 198.51.100.7"),
            "{z}"
        );
    }

    #[test]
    fn only_loopback_says_so() {
        let listeners = [(Scheme::Tls, "0.0.0.0:5061".parse().unwrap())];
        let (z, _) = zone(
            "example.test",
            &[],
            &listeners,
            &["127.0.0.1".parse().unwrap()],
        );
        assert!(z.contains("reachable from itself only"), "{z}");
        assert!(z.contains("example.test. 3600 IN A 127.0.0.1"), "{z}");
    }
}
