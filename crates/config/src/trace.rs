//! `[trace]`: the SIP trace ring and its export to a HEP v3 collector.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::SYSTEM_CA_BUNDLE;

/// `NAME:PORT` or `[V6]:PORT` of a tls:// collector: a host name of
/// letters, digits, `-` and `.`, or an address.
fn hep_host_port(a: &str) -> Option<(String, u16)> {
    if let Ok(sa) = a.parse::<SocketAddr>() {
        return Some((sa.ip().to_string(), sa.port()));
    }
    let (host, port) = a.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p > 0)?;
    let name_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    name_ok.then(|| (host.to_ascii_lowercase(), port))
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawTrace {
    pub max_mb: Option<u64>,
    pub max_age_hours: Option<u64>,
    pub hep: Option<String>,
    pub hep_agent_id: Option<u32>,
    pub hep_trusted_cas: Option<Vec<String>>,
    pub dir: Option<PathBuf>,
}

/// Where HEP v3 packets go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HepTarget {
    /// Datagrams to an address.
    Udp(SocketAddr),
    /// A TLS connection to `host` (the name its certificate must carry),
    /// trusting the CA bundles at `trusted_cas`.
    Tls {
        host: String,
        port: u16,
        trusted_cas: Vec<std::path::PathBuf>,
    },
}

/// SIP traces (`[trace]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceConfig {
    pub max_bytes: u64,
    pub max_age: std::time::Duration,
    /// The HEP v3 collector and this server's agent id.
    pub hep: Option<(HepTarget, u32)>,
    /// `trace.dir` (`None`: data_dir/traces; see [`Config::trace_root`]).
    pub dir: Option<PathBuf>,
}

impl RawTrace {
    pub(crate) fn build(&self, d: &RawTrace) -> Result<TraceConfig, String> {
        let mb = self.max_mb.or(d.max_mb).unwrap_or(256);
        if mb > 1 << 20 {
            return Err(format!("trace.max_mb = {mb}: at most 1048576 (a terabyte)"));
        }
        let hours = self.max_age_hours.or(d.max_age_hours).unwrap_or(24);
        if !(1..=720).contains(&hours) {
            return Err(format!("trace.max_age_hours = {hours}: 1 to 720"));
        }
        let raw = self
            .hep
            .clone()
            .or_else(|| d.hep.clone())
            .unwrap_or_default();
        let raw = raw.trim();
        let hep = if raw.is_empty() {
            None
        } else {
            let target = if let Some(a) = raw.strip_prefix("udp://") {
                HepTarget::Udp(a.parse::<SocketAddr>().map_err(|_| {
                    format!("trace.hep {raw:?}: udp://ADDRESS:PORT, e.g. udp://192.0.2.10:9060")
                })?)
            } else if let Some(a) = raw.strip_prefix("tls://") {
                let (host, port) = hep_host_port(a).ok_or_else(|| {
                    format!("trace.hep {raw:?}: tls://NAME:PORT, e.g. tls://homer.example.com:9061")
                })?;
                let cas = self
                    .hep_trusted_cas
                    .clone()
                    .or_else(|| d.hep_trusted_cas.clone())
                    .unwrap_or_else(|| vec!["system".into()]);
                if cas.is_empty() {
                    return Err(
                        "trace.hep_trusted_cas is empty: nothing could vouch for the collector"
                            .into(),
                    );
                }
                let trusted_cas = cas
                    .iter()
                    .map(|c| match c.as_str() {
                        "system" => std::path::PathBuf::from(SYSTEM_CA_BUNDLE),
                        p => std::path::PathBuf::from(p),
                    })
                    .collect();
                HepTarget::Tls {
                    host,
                    port,
                    trusted_cas,
                }
            } else {
                return Err(format!(
                    "trace.hep {raw:?}: tls://NAME:PORT or udp://ADDRESS:PORT"
                ));
            };
            Some((target, self.hep_agent_id.or(d.hep_agent_id).unwrap_or(1)))
        };
        let dir = self
            .dir
            .clone()
            .or_else(|| d.dir.clone())
            .filter(|p| !p.as_os_str().is_empty());
        if let Some(p) = &dir {
            if p.is_relative() {
                return Err(format!(
                    "trace.dir {:?}: give an absolute path",
                    p.display()
                ));
            }
        }
        Ok(TraceConfig {
            max_bytes: mb * 1024 * 1024,
            max_age: std::time::Duration::from_secs(hours * 3600),
            hep,
            dir,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::*;

    #[test]
    fn traces_and_call_records_are_bounded_and_hep_needs_an_address() {
        let c = RawConfig::default().build().unwrap();
        assert_eq!(c.trace.max_bytes, 256 << 20);
        assert_eq!(c.trace.max_age, std::time::Duration::from_secs(24 * 3600));
        assert_eq!(c.trace.hep, None);
        let c = RawConfig::from_toml(
            "[trace]\nhep = \"udp://192.0.2.10:9060\"\nhep_agent_id = 7\nmax_mb = 0\n",
        )
        .unwrap()
        .build()
        .unwrap();
        assert_eq!(
            c.trace.hep,
            Some((HepTarget::Udp("192.0.2.10:9060".parse().unwrap()), 7))
        );
        assert_eq!(c.trace.max_bytes, 0);
        let c = RawConfig::from_toml("[trace]\nhep = \"tls://Homer.example.com:9061\"\n")
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(
            c.trace.hep,
            Some((
                HepTarget::Tls {
                    host: "homer.example.com".into(),
                    port: 9061,
                    trusted_cas: vec![SYSTEM_CA_BUNDLE.into()]
                },
                1
            ))
        );
        let c = RawConfig::from_toml(
            "[trace]\nhep = \"tls://[::1]:9061\"\nhep_trusted_cas = [\"/etc/parapet/homer-ca.pem\"]\n",
        )
        .unwrap()
        .build()
        .unwrap();
        assert_eq!(
            c.trace.hep,
            Some((
                HepTarget::Tls {
                    host: "::1".into(),
                    port: 9061,
                    trusted_cas: vec!["/etc/parapet/homer-ca.pem".into()]
                },
                1
            ))
        );
        for (bad, says) in [
            (
                "[trace]\nhep = \"homer.example:9060\"",
                "tls://NAME:PORT or udp://ADDRESS:PORT",
            ),
            ("[trace]\nhep = \"tls://homer.example\"", "tls://NAME:PORT"),
            ("[trace]\nhep = \"tls://ho mer:9061\"", "tls://NAME:PORT"),
            (
                "[trace]\nhep = \"tls://homer.example:9061\"\nhep_trusted_cas = []",
                "nothing could vouch",
            ),
            (
                "[trace]\nhep = \"udp://homer.example:9060\"",
                "udp://ADDRESS:PORT",
            ),
            ("[trace]\nmax_age_hours = 0", "1 to 720"),
            ("[monitoring]\ncdr_retention_days = 0", "1 to 3650"),
        ] {
            let e = RawConfig::from_toml(bad).unwrap().build().unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
