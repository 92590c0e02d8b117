//! What one registration's write costs on PostgreSQL, by the way it is
//! sent: `apply_bindings` (one statement, the fence inside it) against
//! `upsert_binding` (BEGIN, the fence and the upsert pipelined, COMMIT) —
//! the same row written, one write after another; then `apply_bindings`
//! from 64 writers at once, grouped (as the serving node does) and not (a
//! handle that did not join, as tools open it: one statement per write,
//! no fence, up to the pool's 16 at once). Prints, per
//! write, the wall time and the CPU of the database server's processes and
//! of this process.
//!
//!   cargo run --release -p parapet-store-postgres --example register_cost [WRITES]
//!
//! Starts a throwaway PostgreSQL cluster (the tests' one: TLS, SCRAM).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::Instant;

use store::{Binding, BindingChange, Bindings, Users};
use store_postgres::{NodeConfig, Postgres, PostgresConfig};

/// User + system CPU ticks of the processes named `postgres` and of this one.
fn ticks() -> (u64, u64) {
    let read = |pid: &str| -> Option<(String, u64)> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (name, rest) = stat.split_once(") ")?;
        let name = name.split_once('(')?.1.to_string();
        let f: Vec<&str> = rest.split_whitespace().collect();
        let t = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
        Some((name, t))
    };
    let mut pg = 0;
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = e.file_name().to_string_lossy().to_string();
        if let Some((name, t)) = read(&pid) {
            if name == "postgres" {
                pg += t;
            }
        }
    }
    (pg, read("self").map_or(0, |(_, t)| t))
}

fn binding(i: usize) -> Binding {
    Binding {
        aor: "sip:alice@example.com".into(),
        key: format!("<sip:alice@192.0.2.1:{}>", 1000 + i % 8),
        contact: format!("<sip:alice@192.0.2.1:{}>", 1000 + i % 8),
        q: 1000,
        expires_at: 4_000_000_000,
        call_id: "call".into(),
        cseq: u32::try_from(i).unwrap_or(0),
        path: Vec::new(),
        source: "udp:192.0.2.1:1000".into(),
        user_agent: Some("bench".into()),
        node: String::new(),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5000);
    let cluster = tokio::task::spawn_blocking(store_tests::pg::cluster)
        .await
        .unwrap();
    let url = cluster.url(&cluster.database("register_cost"));
    let ungrouped = Postgres::open(&PostgresConfig {
        audit_key: Some(store_tests::AUDIT_KEY),
        ..PostgresConfig::new(url.clone())
    })
    .await
    .unwrap();
    let s = Postgres::open(&PostgresConfig {
        audit_key: Some(store_tests::AUDIT_KEY),
        node: Some(NodeConfig {
            id: "bench".into(),
            address: String::new(),
            wait: false,
            active: false,
        }),
        ..PostgresConfig::new(url)
    })
    .await
    .unwrap();
    s.add_user(store_tests::core::user("sip:alice@example.com"))
        .await
        .unwrap();
    for round in 0..3 {
        for (name, one) in [
            ("apply_bindings (one statement)", true),
            ("upsert_binding (BEGIN, COMMIT)", false),
        ] {
            let (pg0, me0) = ticks();
            let t = Instant::now();
            for i in 0..n {
                if one {
                    s.apply_bindings(vec![BindingChange::Upsert(binding(i))])
                        .await
                        .unwrap();
                } else {
                    s.upsert_binding(binding(i)).await.unwrap();
                }
            }
            let wall = t.elapsed();
            let (pg1, me1) = ticks();
            // Clock ticks are 10 ms.
            let per = |ticks: u64| ticks as f64 * 10_000.0 / n as f64;
            println!(
                "round {round} {name:32} wall {:6.1} µs  PostgreSQL CPU {:6.1} µs  this process {:6.1} µs",
                wall.as_secs_f64() * 1e6 / n as f64,
                per(pg1 - pg0),
                per(me1 - me0)
            );
        }
        for (name, s) in [
            ("apply_bindings, 64 writers", &s),
            ("the same, not grouped", &ungrouped),
        ] {
            let (pg0, me0) = ticks();
            let t = Instant::now();
            let writers: Vec<_> = (0..64)
                .map(|w| {
                    let s = s.clone();
                    tokio::spawn(async move {
                        for i in (w..n).step_by(64) {
                            s.apply_bindings(vec![BindingChange::Upsert(binding(i))])
                                .await
                                .unwrap();
                        }
                    })
                })
                .collect();
            for w in writers {
                w.await.unwrap();
            }
            let wall = t.elapsed();
            let (pg1, me1) = ticks();
            let per = |ticks: u64| ticks as f64 * 10_000.0 / n as f64;
            println!(
            "round {round} {:32} wall {:6.1} µs  PostgreSQL CPU {:6.1} µs  this process {:6.1} µs",
            name,
            wall.as_secs_f64() * 1e6 / n as f64,
            per(pg1 - pg0),
            per(me1 - me0)
        );
        }
    }
}
