//! The relay's counters, for /metrics.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// One monotonic counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// Everything the relay counts; the gauges (allocations, permissions and
/// channels now) are set by the server each tick.
#[derive(Debug, Default)]
pub struct Metrics {
    pub allocations_made: Counter,
    pub permissions_made: Counter,
    pub permissions_refused: Counter,
    pub channels_made: Counter,
    pub to_peer_bytes: Counter,
    pub to_peer_packets: Counter,
    pub from_peer_bytes: Counter,
    pub from_peer_packets: Counter,
    pub dropped_no_permission: Counter,
    pub dropped_bandwidth: Counter,
    /// Datagrams a socket could not take at once (the network congested).
    pub dropped_send: Counter,
    /// Requests from a source over its rate, not answered.
    pub dropped_rate: Counter,
    pub auth_failures: Counter,
    /// Error responses sent, by code.
    pub errors_400: Counter,
    pub errors_401: Counter,
    pub errors_403: Counter,
    pub errors_437: Counter,
    pub errors_438: Counter,
    pub errors_486: Counter,
    pub errors_508: Counter,
    pub errors_other: Counter,
    pub allocations: AtomicU64,
    pub permissions: AtomicU64,
    pub channels: AtomicU64,
}

impl Metrics {
    /// Counts an error response sent with `code`.
    pub fn error(&self, code: u16) {
        match code {
            400 => &self.errors_400,
            401 => &self.errors_401,
            403 => &self.errors_403,
            437 => &self.errors_437,
            438 => &self.errors_438,
            486 => &self.errors_486,
            508 => &self.errors_508,
            _ => &self.errors_other,
        }
        .inc();
    }

    /// The Prometheus text.
    pub fn render(&self, out: &mut String) {
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        counter(
            "parapet_relay_allocations_total",
            "Relay allocations made.",
            self.allocations_made.get(),
        );
        counter(
            "parapet_relay_permissions_total",
            "Relay permissions granted.",
            self.permissions_made.get(),
        );
        counter("parapet_relay_permissions_refused_total", "Relay permissions refused (a peer in no call of the user's, or one the relay never reaches).", self.permissions_refused.get());
        counter(
            "parapet_relay_channels_total",
            "Relay channels bound.",
            self.channels_made.get(),
        );
        counter(
            "parapet_relay_auth_failures_total",
            "Relay requests whose credentials failed.",
            self.auth_failures.get(),
        );
        counter(
            "parapet_relay_requests_shed_total",
            "Relay requests from a source over its rate, dropped unanswered.",
            self.dropped_rate.get(),
        );
        let _ = writeln!(out, "# HELP parapet_relay_bytes_total Bytes relayed, by direction.\n# TYPE parapet_relay_bytes_total counter");
        let _ = writeln!(
            out,
            "parapet_relay_bytes_total{{direction=\"to_peer\"}} {}",
            self.to_peer_bytes.get()
        );
        let _ = writeln!(
            out,
            "parapet_relay_bytes_total{{direction=\"from_peer\"}} {}",
            self.from_peer_bytes.get()
        );
        let _ = writeln!(out, "# HELP parapet_relay_packets_total Packets relayed, by direction.\n# TYPE parapet_relay_packets_total counter");
        let _ = writeln!(
            out,
            "parapet_relay_packets_total{{direction=\"to_peer\"}} {}",
            self.to_peer_packets.get()
        );
        let _ = writeln!(
            out,
            "parapet_relay_packets_total{{direction=\"from_peer\"}} {}",
            self.from_peer_packets.get()
        );
        let _ = writeln!(out, "# HELP parapet_relay_dropped_total Packets the relay dropped, by reason.\n# TYPE parapet_relay_dropped_total counter");
        let _ = writeln!(
            out,
            "parapet_relay_dropped_total{{reason=\"no_permission\"}} {}",
            self.dropped_no_permission.get()
        );
        let _ = writeln!(
            out,
            "parapet_relay_dropped_total{{reason=\"bandwidth\"}} {}",
            self.dropped_bandwidth.get()
        );
        let _ = writeln!(
            out,
            "parapet_relay_dropped_total{{reason=\"send_failed\"}} {}",
            self.dropped_send.get()
        );
        let _ = writeln!(out, "# HELP parapet_relay_errors_total Error responses the relay sent, by code.\n# TYPE parapet_relay_errors_total counter");
        for (code, c) in [
            ("400", &self.errors_400),
            ("401", &self.errors_401),
            ("403", &self.errors_403),
            ("437", &self.errors_437),
            ("438", &self.errors_438),
            ("486", &self.errors_486),
            ("508", &self.errors_508),
            ("other", &self.errors_other),
        ] {
            let _ = writeln!(
                out,
                "parapet_relay_errors_total{{code=\"{code}\"}} {}",
                c.get()
            );
        }
        for (name, help, v) in [
            (
                "parapet_relay_allocations",
                "Relay allocations now.",
                &self.allocations,
            ),
            (
                "parapet_relay_permissions",
                "Relay permissions now.",
                &self.permissions,
            ),
            (
                "parapet_relay_channels",
                "Relay channels now.",
                &self.channels,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
                v.load(Relaxed)
            );
        }
    }
}
