//! `log_syslog`: where log lines also go as RFC 5424 syslog messages.

use std::net::SocketAddr;
use std::path::PathBuf;

/// A syslog receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyslogTarget {
    /// `udp://HOST:PORT` (RFC 5426), an address: resolving a name at each
    /// line is not something a logger may do.
    Udp(SocketAddr),
    /// `unix:///dev/log`: the local daemon's datagram socket.
    Unix(PathBuf),
}

/// Reads `log_syslog`; empty is off.
pub fn parse(v: &str) -> Result<Option<SyslogTarget>, String> {
    if v.is_empty() {
        return Ok(None);
    }
    if let Some(a) = v.strip_prefix("udp://") {
        return a.parse().map(|a| Some(SyslogTarget::Udp(a))).map_err(|_| {
            format!("log_syslog {v:?}: udp:// takes an address and port, e.g. udp://127.0.0.1:514")
        });
    }
    if let Some(p) = v.strip_prefix("unix://") {
        if p.starts_with('/') {
            return Ok(Some(SyslogTarget::Unix(PathBuf::from(p))));
        }
    }
    Err(format!(
        "log_syslog {v:?}: use udp://ADDRESS:PORT or unix:///dev/log (or \"\" for none)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_mistakes() {
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(
            parse("udp://127.0.0.1:514").unwrap(),
            Some(SyslogTarget::Udp("127.0.0.1:514".parse().unwrap()))
        );
        assert_eq!(
            parse("udp://[::1]:5514").unwrap(),
            Some(SyslogTarget::Udp("[::1]:5514".parse().unwrap()))
        );
        assert_eq!(
            parse("unix:///dev/log").unwrap(),
            Some(SyslogTarget::Unix("/dev/log".into()))
        );
        for bad in [
            "udp://logs.example.com:514",
            "udp://127.0.0.1",
            "tcp://127.0.0.1:514",
            "unix://dev/log",
            "/dev/log",
        ] {
            assert!(parse(bad).unwrap_err().contains("log_syslog"), "{bad}");
        }
    }
}
