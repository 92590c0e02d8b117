//! The configuration of `parapet edge`: where the pairing file is and where
//! to listen. What the pool decides (lockout thresholds, rates) has its
//! defaults here until the pool's snapshot provides them.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::{ListenUrl, RawLockout, Scheme};

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawEdgeConfig {
    pub pairing: Option<PathBuf>,
    pub listen: Option<Vec<String>>,
    pub internal_listen: Option<String>,
    pub metrics_listen: Option<String>,
    pub external_names: Option<Vec<String>>,
    pub log_format: Option<String>,
    pub ws_allowed_origins: Option<Vec<String>>,
    #[serde(default)]
    pub lockout: RawLockout,
    #[serde(default)]
    pub limits: RawEdgeLimits,
    /// Partners' servers reaching the pool through this edge: the CAs
    /// trusted for them (`trusted_cas`, default `["system"]`).
    #[serde(default)]
    pub federation: crate::RawFederation,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawEdgeLimits {
    pub source_rate: Option<u32>,
    pub source_burst: Option<u32>,
    pub max_connections_per_ip: Option<usize>,
    pub in_flight_per_connection: Option<u32>,
}

/// A validated edge configuration.
#[derive(Debug, Clone)]
pub struct EdgeSettings {
    pub pairing: PathBuf,
    /// External listeners: TLS and WSS only.
    pub listen: Vec<ListenUrl>,
    /// `None`: the pairing file's internal address.
    pub internal_listen: Option<SocketAddr>,
    /// `/healthz` and `/metrics`: `None` for the internal address, port
    /// 9061; `Some(None)` off.
    pub metrics_listen: Option<Option<SocketAddr>>,
    /// Empty: the pairing file's names.
    pub external_names: Vec<String>,
    pub log_format: String,
    /// As configured; empty: the domain's and the external names' pages.
    pub ws_allowed_origins: Vec<String>,
    pub lockout: auth::lockout::LockoutConfig,
    pub source_rate: (u32, u32),
    pub max_connections_per_ip: usize,
    /// Requests from one external connection relayed to the pool and not
    /// answered yet, at most.
    pub in_flight_per_connection: u32,
    pub federation: crate::FederationConfig,
}

/// The external listeners when none are configured.
pub const DEFAULT_EDGE_LISTEN: [&str; 2] = ["tls://0.0.0.0:5061", "wss://0.0.0.0:443"];

impl RawEdgeConfig {
    pub fn from_toml(text: &str) -> Result<RawEdgeConfig, String> {
        toml::from_str(text).map_err(|e| format!("edge configuration: {e}"))
    }

    pub fn build(self) -> Result<EdgeSettings, String> {
        let pairing = self.pairing.ok_or(
            "pairing: the pairing file is needed (made on the front end by `parapet admin edge pair`); give it with --pairing FILE",
        )?;
        let listen_raw = self.listen.unwrap_or_else(|| {
            DEFAULT_EDGE_LISTEN
                .iter()
                .map(|s| (*s).to_owned())
                .collect()
        });
        if listen_raw.is_empty() {
            return Err(
                "listen: the edge needs at least one external listener, e.g. tls://0.0.0.0:5061"
                    .into(),
            );
        }
        let listen = listen_raw
            .iter()
            .map(|s| s.parse::<ListenUrl>())
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(bad) = listen
            .iter()
            .find(|l| !matches!(l.scheme, Scheme::Tls | Scheme::Wss))
        {
            return Err(format!(
                "listen: {bad} is not encrypted; the edge's external side takes tls:// and wss:// only"
            ));
        }
        let internal_listen = self
            .internal_listen
            .map(|s| {
                s.parse::<SocketAddr>().map_err(|_| {
                    format!("internal_listen {s:?} is not an address:port, e.g. 10.0.0.2:5061")
                })
            })
            .transpose()?;
        if let Some(i) = internal_listen {
            if listen.iter().any(|l| l.addr == i) {
                return Err(format!(
                    "internal_listen {i} is also an external listener: the two sides need separate addresses"
                ));
            }
        }
        let metrics_listen = match self.metrics_listen.as_deref() {
            None => None,
            Some("") => Some(None),
            Some(s) => Some(Some(s.parse::<SocketAddr>().map_err(|_| {
                format!("metrics_listen {s:?} is not an address:port on the internal side, e.g. 10.0.0.2:9061 (\"\" turns it off)")
            })?)),
        };
        if let Some(Some(m)) = metrics_listen {
            if listen.iter().any(|l| l.addr.ip() == m.ip()) {
                return Err(format!(
                    "metrics_listen {m} is on the external side's address: health and metrics are for the inside only"
                ));
            }
        }
        let log_format = self.log_format.unwrap_or_else(|| "text".into());
        if !matches!(log_format.as_str(), "text" | "json") {
            return Err(format!("log_format {log_format:?}: use text or json"));
        }
        let source_rate = (
            self.limits.source_rate.unwrap_or(100),
            self.limits.source_burst.unwrap_or(200),
        );
        if source_rate.0 == 0 || source_rate.1 == 0 {
            return Err("limits.source_rate and limits.source_burst must be at least 1".into());
        }
        let in_flight_per_connection = self.limits.in_flight_per_connection.unwrap_or(128);
        if !(1..=65_536).contains(&in_flight_per_connection) {
            return Err("limits.in_flight_per_connection must be between 1 and 65536".into());
        }
        Ok(EdgeSettings {
            in_flight_per_connection,
            pairing,
            listen,
            internal_listen,
            metrics_listen,
            external_names: self.external_names.unwrap_or_default(),
            log_format,
            ws_allowed_origins: self.ws_allowed_origins.unwrap_or_default(),
            lockout: self.lockout.build()?,
            source_rate,
            max_connections_per_ip: self.limits.max_connections_per_ip.unwrap_or(32),
            federation: self.federation.build(crate::RawFederation {
                trusted_cas: Some(vec!["system".into()]),
                ..crate::RawFederation::default()
            })?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_what_is_refused() {
        let s = RawEdgeConfig::from_toml("pairing = \"/etc/parapet/edge1.json\"")
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(s.listen.len(), 2);
        assert_eq!(s.source_rate, (100, 200));
        assert_eq!(s.in_flight_per_connection, 128);
        let zero =
            RawEdgeConfig::from_toml("pairing = \"p\"\n[limits]\nin_flight_per_connection = 0")
                .unwrap()
                .build();
        assert!(zero.unwrap_err().contains("between 1 and 65536"));
        assert!(RawEdgeConfig::default()
            .build()
            .unwrap_err()
            .contains("--pairing"));
        let plain = RawEdgeConfig::from_toml("pairing = \"p\"\nlisten = [\"udp://0.0.0.0:5060\"]")
            .unwrap()
            .build();
        assert!(plain.unwrap_err().contains("not encrypted"));
        let same = RawEdgeConfig::from_toml(
            "pairing = \"p\"\nlisten = [\"tls://127.0.0.10:5061\"]\ninternal_listen = \"127.0.0.10:5061\"",
        )
        .unwrap()
        .build();
        assert!(same.unwrap_err().contains("separate addresses"));
        assert!(RawEdgeConfig::from_toml("bogus = 1").is_err());
    }
}
