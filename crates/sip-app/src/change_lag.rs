//! How long the other nodes' changes take to reach this node, as a
//! Prometheus histogram (`parapet_pool_change_lag_seconds`): from a
//! change's write on another node (the change log's `at`, by the
//! database's clock) to its re-read handed to this node's SIP core. What
//! an operator watches to see a node falling behind, and what
//! `bench/pool.sh` reads its p99 from.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of the buckets, in milliseconds.
const BOUNDS_MS: [u64; 16] = [
    1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 1000, 2000, 5000,
];

/// Counts per bucket (the last one: beyond every bound), their sum and
/// count.
#[derive(Debug, Default)]
pub struct LagHistogram {
    buckets: [AtomicU64; BOUNDS_MS.len() + 1],
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl LagHistogram {
    /// One change reached the core `lag_us` microseconds after its write.
    pub fn observe(&self, lag_us: u64) {
        let ms = lag_us.div_ceil(1000);
        let i = BOUNDS_MS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(BOUNDS_MS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(lag_us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Appends the histogram in Prometheus' text format (cumulative
    /// buckets).
    pub fn render(&self, s: &mut String) {
        let name = "parapet_pool_change_lag_seconds";
        let _ = writeln!(s, "# HELP {name} From another node's write of a change (the change log's clock) to its re-read handed to this node's SIP core.");
        let _ = writeln!(s, "# TYPE {name} histogram");
        let mut total = 0;
        for (i, b) in BOUNDS_MS.iter().enumerate() {
            total += self.buckets[i].load(Ordering::Relaxed);
            let le = *b as f64 / 1000.0;
            let _ = writeln!(s, "{name}_bucket{{le=\"{le}\"}} {total}");
        }
        total += self.buckets[BOUNDS_MS.len()].load(Ordering::Relaxed);
        let _ = writeln!(s, "{name}_bucket{{le=\"+Inf\"}} {total}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(s, "{name}_sum {sum}");
        let _ = writeln!(s, "{name}_count {}", self.count.load(Ordering::Relaxed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_each_change_lands_at_its_bound() {
        let h = LagHistogram::default();
        h.observe(800); // 1 ms
        h.observe(1_000); // 1 ms
        h.observe(1_001); // 2 ms
        h.observe(150_000); // 150 ms
        h.observe(9_000_000); // beyond every bound
        let mut s = String::new();
        h.render(&mut s);
        let line = |le: &str| {
            s.lines()
                .find(|l| {
                    l.starts_with(&format!(
                        "parapet_pool_change_lag_seconds_bucket{{le=\"{le}\"}}"
                    ))
                })
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|n| n.parse::<u64>().ok())
        };
        assert_eq!(line("0.001"), Some(2));
        assert_eq!(line("0.002"), Some(3));
        assert_eq!(line("0.1"), Some(3));
        assert_eq!(line("0.15"), Some(4));
        assert_eq!(line("5"), Some(4));
        assert_eq!(line("+Inf"), Some(5));
        assert!(s.contains("parapet_pool_change_lag_seconds_count 5"), "{s}");
        assert!(
            s.contains("parapet_pool_change_lag_seconds_sum 9.152801"),
            "{s}"
        );
    }
}
