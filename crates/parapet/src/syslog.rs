//! Log lines to syslog (RFC 5424): each event the JSON formatter writes is
//! sent as one datagram, `<PRI>1 TIMESTAMP HOST APP PROCID - - JSON`, over
//! UDP (RFC 5426) or to the local daemon's socket. The socket never
//! blocks: a line the receiver cannot take at once is dropped (a logger
//! that waits stalls the server with its receiver).

use std::io::Write;
use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;

use config::syslog::SyslogTarget;
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// The most one message carries (rsyslog's default maximum); a longer
/// line is cut on a character boundary.
const MAX: usize = 8 * 1024;

/// The facility: daemon (3).
const FACILITY: u8 = 3;

enum Socket {
    Udp(UdpSocket),
    Unix(UnixDatagram, std::path::PathBuf),
}

/// The `MakeWriter` for the syslog layer.
pub(crate) struct Syslog {
    socket: Socket,
    host: String,
    app: &'static str,
    pid: u32,
}

impl Syslog {
    pub(crate) fn open(target: &SyslogTarget, app: &'static str) -> Result<Arc<Self>, String> {
        let socket = match target {
            SyslogTarget::Udp(a) => {
                let any: std::net::SocketAddr = if a.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let s = UdpSocket::bind(any).map_err(|e| format!("log_syslog: {e}"))?;
                s.connect(a).map_err(|e| format!("log_syslog {a}: {e}"))?;
                s.set_nonblocking(true)
                    .map_err(|e| format!("log_syslog: {e}"))?;
                Socket::Udp(s)
            }
            SyslogTarget::Unix(p) => {
                let s = UnixDatagram::unbound().map_err(|e| format!("log_syslog: {e}"))?;
                s.set_nonblocking(true)
                    .map_err(|e| format!("log_syslog: {e}"))?;
                Socket::Unix(s, p.clone())
            }
        };
        Ok(Arc::new(Syslog {
            socket,
            host: host_name(),
            app,
            pid: std::process::id(),
        }))
    }

    fn send(&self, severity: u8, line: &[u8]) {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let now = time::OffsetDateTime::now_utc();
        let stamp = now
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| "-".into());
        let mut m = format!(
            "<{}>1 {stamp} {} {} {} - - ",
            FACILITY * 8 + severity,
            self.host,
            self.app,
            self.pid
        )
        .into_bytes();
        let room = MAX.saturating_sub(m.len());
        let mut cut = line.len().min(room);
        // Never split a UTF-8 character (a continuation byte is 10xxxxxx).
        while cut < line.len() && cut > 0 && line[cut] & 0xc0 == 0x80 {
            cut -= 1;
        }
        m.extend_from_slice(&line[..cut]);
        // Dropped when the receiver is full or gone: see the module's note.
        let _ = match &self.socket {
            Socket::Udp(s) => s.send(&m),
            Socket::Unix(s, p) => s.send_to(&m, p),
        };
    }
}

/// The host name for the HOSTNAME field: printable ASCII without spaces,
/// at most 255 characters (RFC 5424 §6.2.4), else `-`.
fn host_name() -> String {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let h = h.trim();
    if h.is_empty() || h.len() > 255 || !h.bytes().all(|b| (33..=126).contains(&b)) {
        return "-".into();
    }
    h.to_owned()
}

fn severity(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// One event's line, sent when the formatter is done with it.
pub(crate) struct Line {
    to: Arc<Syslog>,
    severity: u8,
    buf: Vec<u8>,
}

impl Write for Line {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        // Bounded: the formatter writes one event; beyond the cut it is
        // not kept.
        let room = (MAX + 4).saturating_sub(self.buf.len());
        self.buf.extend_from_slice(&b[..b.len().min(room)]);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            self.to.send(self.severity, &self.buf);
        }
    }
}

/// A writer per event, knowing its level.
#[derive(Clone)]
pub(crate) struct MakeSyslog(pub(crate) Arc<Syslog>);

impl<'a> MakeWriter<'a> for MakeSyslog {
    type Writer = Line;
    fn make_writer(&'a self) -> Line {
        Line {
            to: self.0.clone(),
            severity: 6,
            buf: Vec::new(),
        }
    }
    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line {
        Line {
            to: self.0.clone(),
            severity: severity(meta.level()),
            buf: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_becomes_one_rfc5424_message_cut_on_a_character() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let target = SyslogTarget::Udp(rx.local_addr().unwrap());
        let s = Syslog::open(&target, "parapet").unwrap();
        let mk = MakeSyslog(s);
        let meta_line = |level: u8, text: &[u8]| {
            let mut l = mk.make_writer();
            l.severity = level;
            l.write_all(text).unwrap();
        };
        meta_line(4, b"{\"level\":\"WARN\",\"fields\":{\"message\":\"x\"}}\n");
        let mut buf = [0u8; 65536];
        let n = rx.recv(&mut buf).unwrap();
        let got = std::str::from_utf8(&buf[..n]).unwrap();
        let pid = std::process::id();
        assert!(got.starts_with("<28>1 20"), "{got}");
        assert!(
            got.ends_with(&format!(
                " parapet {pid} - - {{\"level\":\"WARN\",\"fields\":{{\"message\":\"x\"}}}}"
            )),
            "{got}"
        );
        // A long line of two-byte characters is cut at 8 KiB, whole.
        meta_line(6, "é".repeat(10_000).as_bytes());
        let n = rx.recv(&mut buf).unwrap();
        assert!(n <= MAX, "{n}");
        let got = std::str::from_utf8(&buf[..n]).expect("cut on a character boundary");
        assert!(got.starts_with("<30>1 "), "{got}");
        assert!(got.ends_with('é'));
    }

    #[test]
    fn nobody_listening_costs_nothing() {
        let dir = std::env::temp_dir().join(format!("parapet-syslog-{}", std::process::id()));
        let s = Syslog::open(&SyslogTarget::Unix(dir.join("nothing")), "parapet").unwrap();
        let mut l = MakeSyslog(s).make_writer();
        l.write_all(b"{}").unwrap();
        drop(l); // sent nowhere, no error, no wait
    }
}
