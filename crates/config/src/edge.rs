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
    pub log_syslog: Option<String>,
    pub ws_allowed_origins: Option<Vec<String>>,
    #[serde(default)]
    pub lockout: RawLockout,
    #[serde(default)]
    pub limits: RawEdgeLimits,
    /// Partners' servers reaching the pool through this edge: the CAs
    /// trusted for them (`trusted_cas`, default `["system"]`).
    #[serde(default)]
    pub federation: crate::RawFederation,
    /// The A/V edge's media relay (as `[relay]` of `serve`).
    #[serde(default)]
    pub relay: crate::relay::RawRelay,
    /// The edge's SIP trace ring.
    #[serde(default)]
    pub trace: RawEdgeTrace,
}

/// `[trace]` of an edge.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawEdgeTrace {
    pub dir: Option<PathBuf>,
    pub max_mb: Option<u64>,
    pub max_age_hours: Option<u64>,
}

/// The edge's trace ring: where, and how much it keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeTrace {
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub max_age: std::time::Duration,
}

/// `[limits]` of an edge: the per-source limits until the pool's snapshot
/// gives them, and its connection limit.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawEdgeLimits {
    pub source_rate: Option<u32>,
    pub source_burst: Option<u32>,
    pub in_flight_per_connection: Option<u32>,
    pub max_connections_per_ip: Option<usize>,
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
    /// Where log lines also go as syslog messages.
    pub syslog: Option<crate::syslog::SyslogTarget>,
    /// As configured; empty: the domain's and the external names' pages.
    pub ws_allowed_origins: Vec<String>,
    pub lockout: auth::lockout::LockoutConfig,
    /// The per-source limits while no snapshot from the pool is in force.
    pub limits: auth::edge_snapshot::Limits,
    pub max_connections_per_ip: usize,
    pub federation: crate::FederationConfig,
    /// The media relay on the external side (`listen` empty: none).
    pub relay: crate::relay::RelayConfig,
    /// The SIP trace ring (`None`: `trace.max_mb = 0`).
    pub trace: Option<EdgeTrace>,
}

/// The external listeners when none are configured.
pub const DEFAULT_EDGE_LISTEN: [&str; 2] = ["tls://0.0.0.0:5061", "wss://0.0.0.0:443"];

/// Every key of an edge's configuration file: name, value, whether the
/// value is only an example (written commented out: its default comes from
/// the pairing file or a flag), and what it means.
pub const EDGE_KEYS: &[(&str, &str, bool, &str)] = &[
    ("pairing", "\"/etc/parapet/edge1.json\"", true, "The pairing file `parapet admin edge pair NAME ... --out FILE` wrote on the front end (mode 0600: it holds the edge's keys). Required, here or with --pairing."),
    ("listen", "[\"tls://0.0.0.0:5061\", \"wss://0.0.0.0:443\"]", false, "The external listeners (the Internet-facing side): tls:// and wss:// only."),
    ("internal_listen", "\"10.0.0.2:5061\"", true, "The internal listener (mutual TLS, only the pool's front ends); default: the address given to `edge pair --internal`. Never one of the external addresses."),
    ("metrics_listen", "\"10.0.0.2:9061\"", true, "Where /healthz and /metrics are served, on the internal side; default: the internal address, port 9061. \"\" turns it off."),
    ("external_names", "[\"edge.example.com\"]", true, "Names the outside reaches the edge by (the first goes in Via and Record-Route); default: the names given to `edge pair --external`."),
    ("log_format", "\"text\"", false, "\"text\" or \"json\"."),
    ("log_syslog", "\"\"", false, "Also send every log line, as JSON, to a syslog receiver in RFC 5424 format, as for the front end: \"udp://ADDRESS:PORT\" or \"unix:///dev/log\". Empty: off."),
    ("ws_allowed_origins", "[]", false, "Web pages allowed to open WebSocket connections to the WSS listener (as for the front end). Empty: pages of the domain and of the edge's names."),
    ("lockout.source_threshold", "5", false, "The security filter until the pool's snapshot gives its thresholds (then the pool's, as for the front end): failed sign-ins from one address for one account before it is refused."),
    ("lockout.account_threshold", "50", false, "Failed sign-ins for one account from all addresses before unfamiliar addresses are refused."),
    ("lockout.window_secs", "600", false, "Failures older than this are forgotten."),
    ("lockout.base_backoff_secs", "600", false, "First lockout duration; doubles with each further lockout."),
    ("lockout.max_backoff_secs", "86400", false, "Longest lockout."),
    ("limits.source_rate", "100", false, "Requests per second from one client address, until the pool's snapshot gives [edges] of the front end's configuration; beyond, 503 with Retry-After."),
    ("limits.source_burst", "200", false, "Burst allowance for one client address (likewise)."),
    ("limits.in_flight_per_connection", "128", false, "Requests from one connection relayed to the pool and not answered yet (likewise); beyond, 503 with Retry-After."),
    ("limits.max_connections_per_ip", "32", false, "Open external connections from one address."),
    ("trace.dir", "\"/var/lib/parapet-edge/traces\"", true, "The ring of SIP messages the edge exchanged with the outside (mode 0700; files 0600; credentials, SDES keys and instant messages' text cut), which the pool's `parapet admin trace` reads over the link to show a call through this edge as one ladder; default: beside the pairing file, named after it (edge1.json: edge1-traces)."),
    ("trace.max_mb", "256", false, "The trace ring's size at most, in megabytes; the oldest files go first. 0: no ring."),
    ("trace.max_age_hours", "24", false, "Nothing older than this is kept in the trace ring (1 to 720)."),
    ("federation.trusted_cas", "[\"system\"]", false, "CAs trusted for partners' servers, which connect to the edge when the pool federates (as for the front end)."),
    ("federation.resolvers", "[]", false, "DNS servers (address:port) used to locate partners. Empty: the system's."),
    ("federation.allow_private_addresses", "false", false, "Accept partner servers that DNS places at internal addresses (labs and tests only)."),
    ("federation.max_connections_per_partner", "4", false, "Connections the edge keeps open to one partner at most; another opens beside busy ones (32 requests awaiting answers each)."),
    ("federation.routes", "{}", false, "Partner domain = \"host:port\", used instead of DNS for that partner."),
    ("relay.listen", "[\"udp://203.0.113.10:3478\", \"tcp://203.0.113.10:3478\", \"tls://203.0.113.10:5349\"]", true, "The A/V edge's media relay (TURN) for remote users' calls, on the external side: udp://, tcp:// and tls:// (the external certificate). Users sign in with their SIP user name and password: the pool checks them and hands this edge a user's key only with the request that user's client signed with it. Default: ports 3478 (UDP, TCP) and 5349 (TLS) on the first external listener's address. [] turns it off."),
    ("relay.address", "\"203.0.113.10\"", true, "The address relayed media is sent and received on. Default: the first external listener's address, else the address this machine reaches other networks from."),
    ("relay.external_address", "\"198.51.100.10\"", true, "The address clients are told to send media to, when the edge sits behind a 1:1 NAT. Default: relay.address."),
    ("relay.ports", "\"49152-65535\"", false, "The UDP ports allocations are made on (open them in the firewall)."),
    ("relay.max_allocations", "10000", false, "Allocations at once; beyond, 508 Insufficient Capacity. The other limits of serve's [relay] (allocations_per_user, permissions_per_allocation, user_kbps, allocation_kbps, max_lifetime_secs, source_rate, source_burst) apply here too."),
];

/// `parapet config example --edge`: every key of an edge's file.
pub fn edge_example() -> String {
    let mut out = String::from("# Configuration of `parapet edge --config FILE`. Every key is optional but the pairing file; the values\n# shown are the defaults (commented ones are examples: their default comes from the pairing file).\n# Command-line flags override this file.\n");
    let mut section = "";
    for (key, value, example_only, doc) in EDGE_KEYS {
        let (sec, name) = key.split_once('.').unwrap_or(("", key));
        if sec != section {
            out.push_str(&format!("\n[{sec}]\n"));
            section = sec;
        }
        let hash = if *example_only { "# " } else { "" };
        out.push_str(&format!("\n# {doc}\n{hash}{name} = {value}\n"));
    }
    out
}

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
        let syslog = crate::syslog::parse(self.log_syslog.as_deref().unwrap_or(""))?;
        let mb = self.trace.max_mb.unwrap_or(256);
        if mb > 1 << 20 {
            return Err(format!("trace.max_mb = {mb}: at most 1048576 (a terabyte)"));
        }
        let hours = self.trace.max_age_hours.unwrap_or(24);
        if !(1..=720).contains(&hours) {
            return Err(format!("trace.max_age_hours = {hours}: 1 to 720"));
        }
        let trace = (mb > 0).then(|| EdgeTrace {
            // Beside the pairing file, named after it: two edges on one
            // machine never share a ring.
            dir: self.trace.dir.clone().unwrap_or_else(|| {
                let stem = pairing
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "edge".into());
                pairing
                    .parent()
                    .unwrap_or(std::path::Path::new("."))
                    .join(format!("{stem}-traces"))
            }),
            max_bytes: mb * 1024 * 1024,
            max_age: std::time::Duration::from_secs(hours * 3600),
        });
        let limits = crate::RawSourceLimits {
            source_rate: self.limits.source_rate,
            source_burst: self.limits.source_burst,
            in_flight_per_connection: self.limits.in_flight_per_connection,
        }
        .build("limits")?;
        let mut raw_relay = self.relay.clone();
        if raw_relay.listen.is_none() {
            let ip = listen[0].addr.ip();
            let host = match ip {
                std::net::IpAddr::V6(a) => format!("[{a}]"),
                a => a.to_string(),
            };
            raw_relay.listen = Some(vec![
                format!("udp://{host}:3478"),
                format!("tcp://{host}:3478"),
                format!("tls://{host}:5349"),
            ]);
        }
        let relay = raw_relay.build()?;
        if let Some((_, a)) = relay.listen.iter().find(|(_, a)| {
            internal_listen.is_some_and(|i| i.ip() == a.ip() && !a.ip().is_unspecified())
        }) {
            return Err(format!(
                "relay.listen {a} is on the internal side's address: the relay is for the outside"
            ));
        }
        Ok(EdgeSettings {
            relay,
            limits,
            pairing,
            listen,
            internal_listen,
            metrics_listen,
            external_names: self.external_names.unwrap_or_default(),
            log_format,
            syslog,
            trace,
            ws_allowed_origins: self.ws_allowed_origins.unwrap_or_default(),
            lockout: self.lockout.build()?,
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
        assert_eq!(s.limits, auth::edge_snapshot::Limits::default());
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

    #[test]
    fn the_example_is_every_default() {
        let example = edge_example().replace("# pairing = ", "pairing = ");
        let from_example = RawEdgeConfig::from_toml(&example).unwrap().build().unwrap();
        let minimal = RawEdgeConfig::from_toml("pairing = \"/etc/parapet/edge1.json\"")
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(format!("{from_example:?}"), format!("{minimal:?}"));
        // Every key the file takes is in it.
        for key in [
            "internal_listen",
            "metrics_listen",
            "external_names",
            "in_flight_per_connection",
            "max_connections_per_partner",
        ] {
            assert!(example.contains(&format!("{key} = ")), "{key}");
        }
    }
}
