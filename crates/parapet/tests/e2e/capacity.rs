//! Capacity: a burst far above what the transaction table holds at once does
//! not leave the server refusing everyone afterwards (completed transactions
//! no longer fill the table while they wait out timer J).

use std::process::{Command, Stdio};

use crate::harness::*;

/// SIPp registering `user` `calls` times, at most `limit` at once, at `rate`
/// per second; whether every call succeeded, and SIPp's messages on failure.
fn sipp_register(s: &Server, user: &str, calls: u32, limit: u32, rate: u32) -> (bool, String) {
    let csv = s.dir.join(format!("burst-{calls}-{rate}.csv"));
    std::fs::write(&csv, format!("SEQUENTIAL\n{DOMAIN}\n")).unwrap();
    let errors = s.dir.join(format!("burst-{calls}-{rate}.err"));
    let status = Command::new("sipp")
        .arg("-sf")
        .arg(scenario("register_auth.xml"))
        .arg("-inf")
        .arg(&csv)
        .args(["-s", user, "-au", user, "-ap", "correct-horse-battery"])
        .args([
            "-m",
            &calls.to_string(),
            "-l",
            &limit.to_string(),
            "-r",
            &rate.to_string(),
        ])
        .args(["-t", "u1", "-nostdin", "-timeout", "60s", "-i", "127.0.0.1"])
        .args(["-p", &free_port().to_string(), "-trace_err", "-error_file"])
        .arg(&errors)
        .arg(format!("127.0.0.1:{}", s.udp))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("sipp is installed");
    (
        status.success(),
        std::fs::read_to_string(&errors).unwrap_or_default(),
    )
}

#[test]
fn a_burst_above_the_table_does_not_turn_into_refusals_afterwards() {
    // A table of 200 transactions in progress; the per-address limit lifted
    // (one load source).
    let s = Server::with_config(
        "burst",
        "[limits]\nmax_transactions = 200\nunauthenticated_rate = 1000000\nunauthenticated_burst = 1000000",
    );
    s.add_user("carol", "correct-horse-battery");
    // Closed loop, 100 outstanding: 2,000 registrations, ten times the table.
    let (ok, errors) = sipp_register(&s, "carol", 2000, 100, 100_000);
    assert!(ok, "the burst: {errors}\nserver log:\n{}", s.log());
    // Then a moderate rate: every registration succeeds, no 503.
    let (ok, errors) = sipp_register(&s, "carol", 100, 10, 50);
    assert!(ok, "after the burst: {errors}\nserver log:\n{}", s.log());
    // What the metrics say: completed transactions held, none refused.
    let (_, metrics) = s.http_get("/metrics", None);
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} not in the metrics:\n{metrics}"))
    };
    assert_eq!(value("parapet_sip_transactions_refused_total"), 0);
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let (_, metrics2) = s.http_get("/metrics", None);
    let completed = metrics2
        .lines()
        .find_map(|l| l.strip_prefix("parapet_sip_transactions_completed "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap();
    assert!(
        completed >= 1000,
        "completed transactions kept for timer J: {completed}"
    );
}
