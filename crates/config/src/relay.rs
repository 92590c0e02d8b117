//! `[relay]`: the media relay (TURN/STUN) `parapet serve` runs beside the
//! SIP listeners, for calls between clients that cannot reach each other
//! directly. Its credentials are the users' SIP ones (and the short-lived
//! ones the user API mints); its permissions are bound to the calls the
//! proxy relays.

use std::net::{IpAddr, SocketAddr};

use relay::engine::{Limits, Transport};
use serde::Deserialize;

use crate::{ListenUrl, Scheme};

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawRelay {
    pub listen: Option<Vec<String>>,
    pub address: Option<String>,
    pub external_address: Option<String>,
    pub ports: Option<String>,
    pub max_allocations: Option<usize>,
    pub allocations_per_user: Option<usize>,
    pub permissions_per_allocation: Option<usize>,
    pub user_kbps: Option<u64>,
    pub allocation_kbps: Option<u64>,
    pub max_lifetime_secs: Option<u32>,
    pub source_rate: Option<u32>,
    pub source_burst: Option<u32>,
}

/// The relay as configured (`listen` empty: no relay).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    pub listen: Vec<(Transport, SocketAddr)>,
    /// Where relayed sockets are bound (`None`: the machine's address).
    pub address: Option<IpAddr>,
    /// What clients are told (`None`: `address`).
    pub external_address: Option<IpAddr>,
    pub ports: (u16, u16),
    pub limits: Limits,
    pub source_rate: (u32, u32),
}

pub(crate) const DEFAULT_LISTEN: [&str; 3] = [
    "udp://0.0.0.0:3478",
    "tcp://0.0.0.0:3478",
    "tls://0.0.0.0:5349",
];

fn ip(key: &str, v: &Option<String>) -> Result<Option<IpAddr>, String> {
    match v.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => {
            let a: IpAddr = s.parse().map_err(|_| {
                format!("relay.{key} {s:?} is not an IP address (e.g. 198.51.100.10)")
            })?;
            if a.is_unspecified() || a.is_multicast() {
                return Err(format!(
                    "relay.{key} {s:?}: give the one address clients reach the relay at"
                ));
            }
            Ok(Some(a))
        }
    }
}

impl RawRelay {
    pub fn build(&self) -> Result<RelayConfig, String> {
        let d = Limits::default();
        let listen = match &self.listen {
            Some(l) => l.clone(),
            None => DEFAULT_LISTEN.iter().map(|s| s.to_string()).collect(),
        };
        let listen = listen
            .iter()
            .map(|s| {
                let u = s
                    .parse::<ListenUrl>()
                    .map_err(|e| format!("relay.listen: {e}"))?;
                let t = match u.scheme {
                    Scheme::Udp => Transport::Udp,
                    Scheme::Tcp => Transport::Tcp,
                    Scheme::Tls => Transport::Tls,
                    Scheme::Ws | Scheme::Wss => {
                        return Err(format!(
                            "relay.listen {s:?}: the relay speaks udp://, tcp:// and tls://"
                        ))
                    }
                };
                Ok((t, u.addr))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let ports = self.ports.as_deref().unwrap_or("49152-65535");
        let (lo, hi) = ports
            .split_once('-')
            .and_then(|(a, b)| Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?)))
            .filter(|(a, b)| *a >= 1024 && a < b)
            .ok_or_else(|| format!("relay.ports {ports:?}: write a range of ports above 1023, e.g. \"49152-65535\""))?;
        let kbps = |key: &str, v: Option<u64>| -> Result<u64, String> {
            let v = v.unwrap_or(10_000);
            if !(64..=10_000_000).contains(&v) {
                return Err(format!(
                    "relay.{key} {v} is out of range; use 64 to 10000000 (kbit/s)"
                ));
            }
            Ok(v * 1000)
        };
        let positive = |key: &str, v: Option<usize>, default: usize| -> Result<usize, String> {
            match v.unwrap_or(default) {
                0 => Err(format!("relay.{key} must be at least 1")),
                n => Ok(n),
            }
        };
        let max_lifetime = self.max_lifetime_secs.unwrap_or(d.max_lifetime);
        if !(600..=86_400).contains(&max_lifetime) {
            return Err(format!(
                "relay.max_lifetime_secs {max_lifetime} is out of range; use 600 to 86400"
            ));
        }
        Ok(RelayConfig {
            listen,
            address: ip("address", &self.address)?,
            external_address: ip("external_address", &self.external_address)?,
            ports: (lo, hi),
            limits: Limits {
                max_allocations: positive(
                    "max_allocations",
                    self.max_allocations,
                    d.max_allocations,
                )?,
                allocations_per_user: positive(
                    "allocations_per_user",
                    self.allocations_per_user,
                    d.allocations_per_user,
                )?,
                permissions_per_allocation: positive(
                    "permissions_per_allocation",
                    self.permissions_per_allocation,
                    d.permissions_per_allocation,
                )?,
                user_bps: kbps("user_kbps", self.user_kbps)?,
                allocation_bps: kbps("allocation_kbps", self.allocation_kbps)?,
                default_lifetime: d.default_lifetime,
                max_lifetime,
            },
            source_rate: (
                self.source_rate.unwrap_or(20).max(1),
                self.source_burst.unwrap_or(50).max(1),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_listen_on_the_standard_ports_with_lyncs_bandwidth() {
        let c = RawRelay::default().build().unwrap();
        assert_eq!(c.listen.len(), 3);
        assert_eq!(
            c.listen[2],
            (Transport::Tls, "0.0.0.0:5349".parse().unwrap())
        );
        assert_eq!(c.ports, (49152, 65535));
        assert_eq!(c.limits.user_bps, 10_000_000);
        assert_eq!(c.address, None);
    }

    #[test]
    fn bad_values_say_what_to_write() {
        let bad = |r: RawRelay| r.build().unwrap_err();
        assert!(bad(RawRelay {
            listen: Some(vec!["wss://0.0.0.0:443".into()]),
            ..RawRelay::default()
        })
        .contains("udp://, tcp:// and tls://"));
        assert!(bad(RawRelay {
            ports: Some("70-60".into()),
            ..RawRelay::default()
        })
        .contains("e.g. \"49152-65535\""));
        assert!(bad(RawRelay {
            address: Some("0.0.0.0".into()),
            ..RawRelay::default()
        })
        .contains("the one address"));
        assert!(bad(RawRelay {
            user_kbps: Some(1),
            ..RawRelay::default()
        })
        .contains("64 to 10000000"));
        let off = RawRelay {
            listen: Some(vec![]),
            ..RawRelay::default()
        }
        .build()
        .unwrap();
        assert!(off.listen.is_empty());
    }
}
