//! Locating a partner's servers (RFC 3263, TLS only): a statically
//! configured route, else NAPTR `SIPS+D2T`, else SRV `_sips._tcp`,
//! `_sip._tcp` (used over TLS) and Lync's `_sipfederationtls._tcp`, else
//! the domain's own A/AAAA records on port 5061.
//!
//! The domain the request is for is the identity the partner's certificate
//! must prove (see [`crate::verifier`]); the names found here are only where
//! to connect. Bounded: at most [`MAX_SRV`] servers, [`MAX_ADDRS`] addresses
//! each, the best [`MAX_NAPTR`] NAPTR records tried (chosen after ordering the whole answer, which the DNS message bounds); the resolver's own
//! cache is capped. Addresses in loopback, private, link-local, unspecified
//! and other special ranges are refused unless `allow_private` is set, so
//! that a partner's DNS cannot point our server at an internal one.
//! A server that failed is tried last for `failure_ttl` (one dead server
//! does not fail the domain; a domain whose servers all failed is still
//! tried).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ProtocolConfig, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;

use crate::identity::valid_domain;

/// SRV targets used per domain.
pub const MAX_SRV: usize = 8;
/// Addresses used per target.
pub const MAX_ADDRS: usize = 4;
/// NAPTR records looked at per domain.
pub const MAX_NAPTR: usize = 16;
/// Failed servers remembered.
const MAX_FAILURES: usize = 4096;
/// The longest a failure is remembered, whatever the configuration says.
pub const MAX_FAILURE_TTL: Duration = Duration::from_secs(300);

/// How partners are located.
#[derive(Debug, Clone)]
pub struct LocateConfig {
    /// DNS servers to ask instead of the system's (split-horizon
    /// deployments, tests). Empty: the system's (`/etc/resolv.conf`).
    pub resolvers: Vec<SocketAddr>,
    /// Accept addresses in loopback, private, link-local and other special
    /// ranges from DNS (tests, labs). Off by default.
    pub allow_private: bool,
    /// Partner domain → host:port, instead of DNS. An operator's explicit
    /// route is used as configured, private ranges included.
    pub routes: HashMap<String, (String, u16)>,
    /// How long a server that failed is tried last (at most
    /// [`MAX_FAILURE_TTL`]).
    pub failure_ttl: Duration,
}

impl Default for LocateConfig {
    fn default() -> Self {
        LocateConfig {
            resolvers: Vec::new(),
            allow_private: false,
            routes: HashMap::new(),
            failure_ttl: Duration::from_secs(30),
        }
    }
}

/// Why no server could be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocateError {
    /// Not a domain name a partner can have (an IP literal, one label...).
    InvalidDomain,
    /// DNS has no usable record (or says the service is not offered).
    NotFound,
    /// Every address found is in a range refused for partners.
    PrivateAddress,
    /// The DNS servers could not be asked.
    Dns(String),
}

impl std::fmt::Display for LocateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LocateError::InvalidDomain => f.write_str("not a partner domain name"),
            LocateError::NotFound => f.write_str("no SIP server published for the domain"),
            LocateError::PrivateAddress => f.write_str(
                "the domain's servers are at loopback, private or other internal addresses",
            ),
            LocateError::Dns(e) => write!(f, "DNS lookup failed: {e}"),
        }
    }
}

impl std::error::Error for LocateError {}

/// One place to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// The host name it was found under (for logs; never an identity).
    pub host: String,
    pub addr: SocketAddr,
}

/// Finds partners' servers; cheap to share (`Arc`).
pub struct Locator {
    resolver: TokioResolver,
    cfg: LocateConfig,
    failures: Mutex<HashMap<SocketAddr, Instant>>,
}

impl std::fmt::Debug for Locator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Locator").field("cfg", &self.cfg).finish()
    }
}

impl Locator {
    pub fn new(cfg: LocateConfig) -> Result<Locator, String> {
        let provider = TokioRuntimeProvider::default();
        let mut builder = if cfg.resolvers.is_empty() {
            TokioResolver::builder(provider)
                .map_err(|e| format!("the system's DNS configuration: {e}"))?
        } else {
            let servers = cfg
                .resolvers
                .iter()
                .map(|a| {
                    let mut udp = ConnectionConfig::new(ProtocolConfig::Udp);
                    udp.port = a.port();
                    let mut tcp = ConnectionConfig::new(ProtocolConfig::Tcp);
                    tcp.port = a.port();
                    NameServerConfig::new(a.ip(), true, vec![udp, tcp])
                })
                .collect();
            TokioResolver::builder_with_config(ResolverConfig::from_name_servers(servers), provider)
        };
        let o: &mut ResolverOpts = builder.options_mut();
        o.cache_size = 4096;
        o.timeout = Duration::from_secs(2);
        o.attempts = 2;
        o.positive_max_ttl = Some(Duration::from_secs(3600));
        o.negative_max_ttl = Some(Duration::from_secs(60));
        let resolver = builder.build().map_err(|e| format!("DNS resolver: {e}"))?;
        Ok(Locator {
            resolver,
            cfg,
            failures: Mutex::new(HashMap::new()),
        })
    }

    /// The servers of `domain` in the order to try them.
    pub async fn locate(&self, domain: &str) -> Result<Vec<Server>, LocateError> {
        let domain = domain.to_ascii_lowercase();
        if !valid_domain(&domain) {
            return Err(LocateError::InvalidDomain);
        }
        if let Some((host, port)) = self.cfg.routes.get(&domain) {
            let addrs = self.addresses(host).await?;
            let servers = addrs
                .into_iter()
                .map(|ip| Server {
                    host: host.clone(),
                    addr: SocketAddr::new(ip, *port),
                })
                .collect();
            return Ok(self.order(servers));
        }
        let targets = match self.naptr(&domain).await? {
            Some(t) => t,
            None => self.srv_any(&domain).await?,
        };
        let targets = match targets {
            Some(t) if t.is_empty() => return Err(LocateError::NotFound),
            Some(t) => t,
            None => vec![(domain.clone(), 5061)],
        };
        let mut found = Vec::new();
        let mut refused = false;
        for (host, port) in targets.into_iter().take(MAX_SRV) {
            let addrs = match self.addresses(&host).await {
                Ok(a) => a,
                Err(LocateError::NotFound) => continue,
                Err(e) => return Err(e),
            };
            for ip in addrs {
                if !self.cfg.allow_private && !public(ip) {
                    refused = true;
                    continue;
                }
                found.push(Server {
                    host: host.clone(),
                    addr: SocketAddr::new(ip, port),
                });
            }
        }
        if found.is_empty() {
            return Err(if refused {
                LocateError::PrivateAddress
            } else {
                LocateError::NotFound
            });
        }
        Ok(self.order(found))
    }

    /// The servers of `domain` when its server is pinned to `host`:`port`
    /// (the federation policy): a configured route as configured, else
    /// `host`'s addresses, refused in the internal ranges as DNS answers are.
    pub async fn locate_pinned(
        &self,
        domain: &str,
        host: &str,
        port: u16,
    ) -> Result<Vec<Server>, LocateError> {
        let domain = domain.to_ascii_lowercase();
        let host = host.to_ascii_lowercase();
        if !valid_domain(&domain) || !valid_domain(&host) {
            return Err(LocateError::InvalidDomain);
        }
        if self.cfg.routes.contains_key(&domain) {
            return self.locate(&domain).await;
        }
        let addrs = self.addresses(&host).await?;
        let found: Vec<Server> = addrs
            .iter()
            .filter(|ip| self.cfg.allow_private || public(**ip))
            .map(|ip| Server {
                host: host.clone(),
                addr: SocketAddr::new(*ip, port),
            })
            .collect();
        if found.is_empty() {
            return Err(LocateError::PrivateAddress);
        }
        Ok(self.order(found))
    }

    /// Remembers that a connection to `addr` failed.
    pub fn failed(&self, addr: SocketAddr) {
        let Ok(mut f) = self.failures.lock() else {
            return;
        };
        if f.len() >= MAX_FAILURES {
            if let Some(oldest) = f.iter().min_by_key(|(_, t)| **t).map(|(a, _)| *a) {
                f.remove(&oldest);
            }
        }
        f.insert(addr, Instant::now());
    }

    /// Forgets a failure: `addr` answered.
    pub fn succeeded(&self, addr: SocketAddr) {
        if let Ok(mut f) = self.failures.lock() {
            f.remove(&addr);
        }
    }

    /// Servers that failed recently go last, in their order.
    fn order(&self, mut servers: Vec<Server>) -> Vec<Server> {
        let ttl = self.cfg.failure_ttl.min(MAX_FAILURE_TTL);
        let now = Instant::now();
        let Ok(mut f) = self.failures.lock() else {
            return servers;
        };
        f.retain(|_, t| now.saturating_duration_since(*t) < ttl);
        servers.sort_by_key(|s| f.contains_key(&s.addr));
        servers
    }

    /// NAPTR `SIPS+D2T` with flag `s`: `Some(targets)` from the SRV names
    /// they lead to, `None` when there is no such NAPTR record.
    async fn naptr(&self, domain: &str) -> Result<Option<Option<Vec<(String, u16)>>>, LocateError> {
        let Some(records) = self.records(domain, RecordType::NAPTR).await? else {
            return Ok(None);
        };
        // The answer is bounded by the DNS message (64 KiB); the best
        // MAX_NAPTR of it are tried, after ordering, not the first ones
        // the server happened to list.
        let mut naptrs: Vec<_> = records
            .into_iter()
            .filter_map(|r| match r {
                RData::NAPTR(n)
                    if n.services.eq_ignore_ascii_case(b"SIPS+D2T")
                        && n.flags.eq_ignore_ascii_case(b"s")
                        && !n.replacement.is_root() =>
                {
                    Some(n)
                }
                _ => None,
            })
            .collect();
        if naptrs.is_empty() {
            return Ok(None);
        }
        naptrs.sort_by_key(|n| (n.order, n.preference));
        naptrs.truncate(MAX_NAPTR);
        for n in naptrs {
            let name = n.replacement.to_ascii();
            if let Some(t) = self.srv(name.trim_end_matches('.')).await? {
                return Ok(Some(Some(t)));
            }
        }
        // NAPTR records that lead nowhere: as if there were none.
        Ok(None)
    }

    /// SRV `_sips._tcp`, `_sip._tcp`, `_sipfederationtls._tcp`, the first
    /// that exists: `Some(targets)` (empty: the service is declared not
    /// offered), `None` when none exists.
    async fn srv_any(&self, domain: &str) -> Result<Option<Vec<(String, u16)>>, LocateError> {
        for service in ["_sips._tcp", "_sip._tcp", "_sipfederationtls._tcp"] {
            if let Some(t) = self.srv(&format!("{service}.{domain}")).await? {
                return Ok(Some(t));
            }
        }
        Ok(None)
    }

    /// The targets of one SRV name in RFC 2782 order (priority, then a
    /// weighted random pick within a priority); `Some(empty)` for "." (the
    /// service is not offered).
    async fn srv(&self, name: &str) -> Result<Option<Vec<(String, u16)>>, LocateError> {
        let Some(records) = self.records(name, RecordType::SRV).await? else {
            return Ok(None);
        };
        let srvs: Vec<_> = records
            .into_iter()
            .filter_map(|r| match r {
                RData::SRV(s) => Some(s),
                _ => None,
            })
            .collect();
        if srvs.is_empty() {
            return Ok(None);
        }
        if srvs.iter().all(|s| s.target.is_root()) {
            return Ok(Some(Vec::new()));
        }
        let mut entries: Vec<(u16, u16, String, u16)> = srvs
            .into_iter()
            .filter(|s| !s.target.is_root())
            .map(|s| {
                let t = s.target.to_ascii();
                (
                    s.priority,
                    s.weight,
                    t.trim_end_matches('.').to_owned(),
                    s.port,
                )
            })
            .collect();
        // Lowest priorities first, then at most MAX_SRV * 4 of them are
        // weighed (the answer itself is bounded by the DNS message).
        entries.sort_by_key(|e| e.0);
        entries.truncate(MAX_SRV * 4);
        Ok(Some(rfc2782_order(entries, random)))
    }

    /// The records of one type, `None` when the name has none (or does not
    /// exist).
    async fn records(
        &self,
        name: &str,
        kind: RecordType,
    ) -> Result<Option<Vec<RData>>, LocateError> {
        match self.resolver.lookup(format!("{name}."), kind).await {
            Ok(l) => Ok(Some(l.answers().iter().map(|r| r.data.clone()).collect())),
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => Ok(None),
            Err(e) => Err(LocateError::Dns(e.to_string())),
        }
    }

    /// A host's addresses (an IP literal as itself), at most [`MAX_ADDRS`].
    async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, LocateError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        match self.resolver.lookup_ip(format!("{host}.")).await {
            Ok(l) => {
                let v: Vec<IpAddr> = l.iter().take(MAX_ADDRS).collect();
                if v.is_empty() {
                    Err(LocateError::NotFound)
                } else {
                    Ok(v)
                }
            }
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => Err(LocateError::NotFound),
            Err(e) => Err(LocateError::Dns(e.to_string())),
        }
    }
}

/// A random number (the standard library's per-process random keys).
fn random() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish()
}

/// RFC 2782: by priority; within a priority, repeatedly pick one at random
/// with probability proportional to its weight (weight 0 only when no other
/// is left). `entries` are (priority, weight, target, port), sorted by
/// priority.
fn rfc2782_order(
    mut entries: Vec<(u16, u16, String, u16)>,
    rand: impl Fn() -> u64,
) -> Vec<(String, u16)> {
    let mut out = Vec::with_capacity(entries.len());
    while !entries.is_empty() {
        let prio = entries[0].0;
        let end = entries
            .iter()
            .position(|e| e.0 != prio)
            .unwrap_or(entries.len());
        let mut group: Vec<_> = entries.drain(..end).collect();
        // Zero weights first, as RFC 2782 places them, so that the running
        // sum gives them a chance only when nothing weighs more.
        group.sort_by_key(|e| e.1 != 0);
        while !group.is_empty() {
            let total: u64 = group.iter().map(|e| u64::from(e.1)).sum();
            let pick = if total == 0 { 0 } else { rand() % (total + 1) };
            let mut sum = 0u64;
            let i = group
                .iter()
                .position(|e| {
                    sum += u64::from(e.1);
                    sum >= pick
                })
                .unwrap_or(0);
            let e = group.remove(i);
            out.push((e.2, e.3));
        }
    }
    out
}

/// Whether an address may be a partner's: not loopback, private,
/// link-local, unspecified, multicast, broadcast, shared (100.64/10),
/// documentation, benchmarking or IPv4-mapped into one of those.
pub fn public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            !(a.is_loopback()
                || a.is_private()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_multicast()
                || a.is_broadcast()
                || a.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || o[0] >= 240)
        }
        IpAddr::V6(a) => {
            if let Some(v4) = a.to_ipv4_mapped() {
                return public(IpAddr::V4(v4));
            }
            let s = a.segments();
            !(a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || (s[0] == 0x0064 && s[1] == 0xff9b))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_ranges_are_not_public() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.1.1",
            "0.0.0.0",
            "100.64.0.1",
            "198.18.0.1",
            "192.0.2.1",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "2001:db8::1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(!public(a.parse().unwrap()), "{a}");
        }
        for a in ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(public(a.parse().unwrap()), "{a}");
        }
    }

    #[test]
    fn srv_order_is_by_priority_and_weight_decides_within_one() {
        let e = |p, w, t: &str| (p, w, t.to_string(), 5061);
        // Priority first, whatever the weights.
        let out = rfc2782_order(vec![e(10, 0, "a"), e(20, 100, "b")], || 7);
        assert_eq!(out[0].0, "a");
        // Within a priority: the random number picks by running weight sum
        // (zero weights first): pick 0 → the zero-weight one, pick 1..=10
        // → "w10", 11..=30 → "w20".
        let group = || vec![e(1, 10, "w10"), e(1, 0, "w0"), e(1, 20, "w20")];
        assert_eq!(rfc2782_order(group(), || 0)[0].0, "w0");
        assert_eq!(rfc2782_order(group(), || 5)[0].0, "w10");
        assert_eq!(rfc2782_order(group(), || 25)[0].0, "w20");
        assert_eq!(rfc2782_order(group(), || 25).len(), 3);
    }
}
