//! Locating partners against a real DNS server: dnsmasq (installed by
//! scripts/install-test-deps.sh), started here on a loopback port with the
//! records of a few partner domains.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use federation::locate::{LocateConfig, LocateError, Locator};

struct Dns {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port free for both UDP and TCP (dnsmasq binds both and exits
/// when either is taken).
fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Whether a DNS server answers a query for `bare.test` at `addr` over UDP.
fn answers(addr: SocketAddr) -> bool {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    q.extend_from_slice(b"\x04bare\x04test\x00\x00\x01\x00\x01");
    if s.send_to(&q, addr).is_err() {
        return false;
    }
    let mut buf = [0u8; 512];
    matches!(s.recv_from(&mut buf), Ok((n, _)) if n >= 12 && buf[..2] == [0x12, 0x34])
}

/// dnsmasq on a loopback port, answering before this returns. A port taken
/// between choosing and binding makes dnsmasq exit: then another is tried.
fn dnsmasq(records: &[&str]) -> Dns {
    for _ in 0..5 {
        let port = free_port();
        let mut child = Command::new("dnsmasq")
            .args([
                "--no-daemon",
                "--no-resolv",
                "--no-hosts",
                "--conf-file=/dev/null",
            ])
            .args([
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--user=root",
            ])
            // Authoritative for .test: unknown names are NXDOMAIN, not forwarded.
            .args(["--local=/test/", "--pid-file="])
            .arg(format!("--port={port}"))
            .args(records)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq is installed (scripts/install-test-deps.sh)");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        for _ in 0..50 {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if answers(addr) {
                return Dns { child, addr };
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("dnsmasq did not start on any of five ports");
}

const RECORDS: &[&str] = &[
    // NAPTR → SRV with two priorities.
    "--naptr-record=partner.test,10,10,s,SIPS+D2T,,_sips._tcp.partner.test",
    "--naptr-record=partner.test,20,10,s,SIP+D2U,,_sip._udp.partner.test",
    "--srv-host=_sips._tcp.partner.test,sip1.partner.test,5071,10,0",
    "--srv-host=_sips._tcp.partner.test,sip2.partner.test,5072,20,0",
    "--host-record=sip1.partner.test,127.0.0.5",
    "--host-record=sip2.partner.test,127.0.0.6",
    // NAPTR leading to an SRV name no fallback would try.
    "--naptr-record=naptr.test,10,10,s,SIPS+D2T,,_tls-only._tcp.naptr.test",
    "--srv-host=_tls-only._tcp.naptr.test,edge.naptr.test,5080,0,0",
    "--host-record=edge.naptr.test,127.0.0.12",
    // NAPTR for UDP only: ignored (TLS only), the SRV fallback used.
    "--naptr-record=udp.test,10,10,s,SIP+D2U,,_sip._udp.udp.test",
    "--srv-host=_sip._udp.udp.test,wrong.udp.test,5060,0,0",
    "--srv-host=_sips._tcp.udp.test,right.udp.test,5061,0,0",
    "--host-record=wrong.udp.test,127.0.0.13",
    "--host-record=right.udp.test,127.0.0.14",
    // Lync's SRV name only.
    "--srv-host=_sipfederationtls._tcp.lync.test,fed.lync.test,5061,0,0",
    "--host-record=fed.lync.test,127.0.0.7",
    // Plain SIP SRV over TLS.
    "--srv-host=_sip._tcp.plain.test,sip.plain.test,5070,0,0",
    "--host-record=sip.plain.test,127.0.0.10",
    // No SIP records: the domain's own address, port 5061.
    "--host-record=bare.test,127.0.0.8",
    // The service declared not offered (target ".").
    "--srv-host=_sips._tcp.none.test",
    "--host-record=none.test,127.0.0.11",
    // A partner's DNS pointing at an internal address.
    "--srv-host=_sips._tcp.inside.test,db.inside.test,5061,0,0",
    "--host-record=db.inside.test,10.0.0.1",
];

fn locator(dns: &Dns, allow_private: bool, routes: &[(&str, &str, u16)]) -> Locator {
    Locator::new(LocateConfig {
        resolvers: vec![dns.addr],
        allow_private,
        routes: routes
            .iter()
            .map(|(d, h, p)| (d.to_string(), (h.to_string(), *p)))
            .collect::<HashMap<_, _>>(),
        ..LocateConfig::default()
    })
    .unwrap()
}

fn addrs(v: &[federation::locate::Server]) -> Vec<String> {
    v.iter().map(|s| s.addr.to_string()).collect()
}

#[tokio::test]
async fn naptr_then_srv_then_address_records() {
    let dns = dnsmasq(RECORDS);
    let l = locator(&dns, true, &[]);
    let got = l.locate("partner.test").await.unwrap();
    assert_eq!(addrs(&got), ["127.0.0.5:5071", "127.0.0.6:5072"]);
    assert_eq!(got[0].host, "sip1.partner.test");
    assert_eq!(
        addrs(&l.locate("naptr.test").await.unwrap()),
        ["127.0.0.12:5080"]
    );
    assert_eq!(
        addrs(&l.locate("udp.test").await.unwrap()),
        ["127.0.0.14:5061"]
    );
    assert_eq!(
        addrs(&l.locate("Lync.TEST").await.unwrap()),
        ["127.0.0.7:5061"]
    );
    assert_eq!(
        addrs(&l.locate("plain.test").await.unwrap()),
        ["127.0.0.10:5070"]
    );
    assert_eq!(
        addrs(&l.locate("bare.test").await.unwrap()),
        ["127.0.0.8:5061"]
    );
    assert_eq!(l.locate("none.test").await, Err(LocateError::NotFound));
    assert_eq!(l.locate("missing.test").await, Err(LocateError::NotFound));
}

#[tokio::test]
async fn internal_addresses_are_refused_unless_allowed() {
    let dns = dnsmasq(RECORDS);
    let strict = locator(&dns, false, &[]);
    assert_eq!(
        strict.locate("inside.test").await,
        Err(LocateError::PrivateAddress)
    );
    assert_eq!(
        strict.locate("partner.test").await,
        Err(LocateError::PrivateAddress)
    );
    let lab = locator(&dns, true, &[]);
    assert_eq!(
        addrs(&lab.locate("inside.test").await.unwrap()),
        ["10.0.0.1:5061"]
    );
}

#[tokio::test]
async fn a_static_route_overrides_dns_and_bad_domains_are_refused() {
    let dns = dnsmasq(RECORDS);
    let l = locator(&dns, false, &[("partner.test", "127.0.0.9", 5099)]);
    assert_eq!(
        addrs(&l.locate("partner.test").await.unwrap()),
        ["127.0.0.9:5099"]
    );
    for bad in [
        "192.0.2.1",
        "localhost",
        "",
        "a..test",
        "-x.test",
        "*.partner.test",
    ] {
        assert_eq!(
            l.locate(bad).await,
            Err(LocateError::InvalidDomain),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn a_failed_server_is_tried_last_and_not_forgotten_forever() {
    let dns = dnsmasq(RECORDS);
    let l = Locator::new(LocateConfig {
        resolvers: vec![dns.addr],
        allow_private: true,
        failure_ttl: Duration::from_millis(300),
        ..LocateConfig::default()
    })
    .unwrap();
    let first = l.locate("partner.test").await.unwrap();
    l.failed(first[0].addr);
    assert_eq!(
        addrs(&l.locate("partner.test").await.unwrap()),
        ["127.0.0.6:5072", "127.0.0.5:5071"]
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(
        addrs(&l.locate("partner.test").await.unwrap()),
        ["127.0.0.5:5071", "127.0.0.6:5072"]
    );
    l.failed(first[0].addr);
    l.succeeded(first[0].addr);
    assert_eq!(
        addrs(&l.locate("partner.test").await.unwrap())[0],
        "127.0.0.5:5071"
    );
}

#[tokio::test]
async fn an_unreachable_dns_server_is_an_error_not_a_hang() {
    // A port nothing listens on.
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let l = Locator::new(LocateConfig {
        resolvers: vec![format!("127.0.0.1:{port}").parse().unwrap()],
        ..LocateConfig::default()
    })
    .unwrap();
    let started = std::time::Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(20), l.locate("partner.test")).await;
    assert!(matches!(r, Ok(Err(LocateError::Dns(_)))), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test]
async fn a_pinned_server_is_reached_by_its_host_name_not_srv() {
    let dns = dnsmasq(RECORDS);
    let l = locator(&dns, true, &[]);
    // sip2 is partner.test's second SRV target; pinned, it is the only one.
    let got = l
        .locate_pinned("partner.test", "sip2.partner.test", 5099)
        .await
        .unwrap();
    assert_eq!(addrs(&got), ["127.0.0.6:5099"]);
    assert_eq!(
        l.locate_pinned("partner.test", "nothing.partner.test", 5061)
            .await,
        Err(LocateError::NotFound)
    );
    // Internal addresses are refused for a pinned host as for DNS answers.
    let strict = locator(&dns, false, &[]);
    assert_eq!(
        strict
            .locate_pinned("inside.test", "db.inside.test", 5061)
            .await,
        Err(LocateError::PrivateAddress)
    );
    // An operator's route still wins.
    let routed = locator(&dns, true, &[("partner.test", "127.0.0.9", 5070)]);
    assert_eq!(
        addrs(
            &routed
                .locate_pinned("partner.test", "sip2.partner.test", 5099)
                .await
                .unwrap()
        ),
        ["127.0.0.9:5070"]
    );
}

#[tokio::test]
async fn large_answers_are_cut_to_the_bounds() {
    // 40 SRV targets, one of them with 30 addresses.
    let mut records: Vec<String> = (0..40)
        .map(|i| format!("--srv-host=_sips._tcp.big.test,h{i}.big.test,5061,{i},0"))
        .collect();
    records.extend((0..40).map(|i| format!("--host-record=h{i}.big.test,127.0.1.{}", i + 1)));
    records.extend((0..30).map(|i| format!("--host-record=h0.big.test,127.0.2.{}", i + 1)));
    let refs: Vec<&str> = records.iter().map(String::as_str).collect();
    let dns = dnsmasq(&refs);
    let l = locator(&dns, true, &[]);
    let started = std::time::Instant::now();
    let got = l.locate("big.test").await.unwrap();
    assert!(
        got.len() <= federation::locate::MAX_SRV * federation::locate::MAX_ADDRS,
        "{} servers",
        got.len()
    );
    let from_h0 = got.iter().filter(|s| s.host == "h0.big.test").count();
    assert!(
        from_h0 <= federation::locate::MAX_ADDRS,
        "{from_h0} addresses of one host"
    );
    // The lowest priorities first, at most MAX_SRV targets.
    let hosts: std::collections::HashSet<&str> = got.iter().map(|s| s.host.as_str()).collect();
    assert!(hosts.len() <= federation::locate::MAX_SRV, "{hosts:?}");
    assert!(hosts.contains("h0.big.test"), "{hosts:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}
