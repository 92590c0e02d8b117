//! `[files]`: virus scanning of uploads by clamd.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawFiles {
    pub clamd: Option<String>,
    pub scan_timeout_secs: Option<u64>,
}

/// Where clamd listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Clamd {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl std::fmt::Display for Clamd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Clamd::Unix(p) => write!(f, "{}", p.display()),
            Clamd::Tcp(a) => write!(f, "{a}"),
        }
    }
}

/// Virus scanning of uploads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanning {
    pub clamd: Clamd,
    pub timeout: std::time::Duration,
}

impl RawFiles {
    pub(crate) fn build(&self) -> Result<Option<Scanning>, String> {
        let raw = self.clamd.as_deref().unwrap_or("").trim();
        let timeout = self.scan_timeout_secs.unwrap_or(60);
        if !(1..=3600).contains(&timeout) {
            return Err(format!(
                "files.scan_timeout_secs {timeout} is out of range; use 1 to 3600"
            ));
        }
        if raw.is_empty() {
            return Ok(None);
        }
        let clamd = if raw.starts_with('/') {
            Clamd::Unix(PathBuf::from(raw))
        } else {
            let a: SocketAddr = raw.parse().map_err(|_| {
                format!("files.clamd {raw:?} is neither a socket path (/run/clamav/clamd.ctl) nor an address:port (127.0.0.1:3310)")
            })?;
            if !a.ip().is_loopback() {
                return Err(format!(
                    "files.clamd {raw:?}: clamd's TCP protocol is unencrypted and unauthenticated; run clamd on this machine (a loopback address or its socket)"
                ));
            }
            Clamd::Tcp(a)
        };
        Ok(Some(Scanning {
            clamd,
            timeout: std::time::Duration::from_secs(timeout),
        }))
    }
}
