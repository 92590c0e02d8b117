//! A node of a PostgreSQL pool killed under load — its standby takes over,
//! or (every node serving) the others go on —: every registration the
//! clients saw acknowledged is in the database and every message they saw
//! acknowledged is delivered, once.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::postgres::wait_until;

/// What clients reach the pool through: a UDP relay (a load balancer's
/// one virtual address) sending each client's datagrams, from a socket of
/// its own per client, to the node it points at, and what comes back on
/// that socket to the client. Repointed when the node it sent to is gone,
/// as a load balancer does once the other node says it is ready.
struct Balancer {
    port: u16,
    target: Arc<AtomicU16>,
    stop: Arc<AtomicBool>,
}

impl Balancer {
    fn start(target: u16) -> Balancer {
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        front
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let port = front.local_addr().unwrap().port();
        let target = Arc::new(AtomicU16::new(target));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, s) = (target.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut upstream: HashMap<SocketAddr, UdpSocket> = HashMap::new();
            let mut buf = vec![0u8; 65536];
            while !s.load(Ordering::Relaxed) {
                let Ok((n, client)) = front.recv_from(&mut buf) else {
                    continue;
                };
                let up = upstream.entry(client).or_insert_with(|| {
                    let up = UdpSocket::bind("127.0.0.1:0").unwrap();
                    up.set_read_timeout(Some(Duration::from_millis(50)))
                        .unwrap();
                    let (back, to, s) = (
                        up.try_clone().unwrap(),
                        front.try_clone().unwrap(),
                        s.clone(),
                    );
                    std::thread::spawn(move || {
                        let mut buf = vec![0u8; 65536];
                        while !s.load(Ordering::Relaxed) {
                            if let Ok(n) = back.recv(&mut buf) {
                                let _ = to.send_to(&buf[..n], client);
                            }
                        }
                    });
                    up
                });
                let _ = up.send_to(&buf[..n], ("127.0.0.1", t.load(Ordering::Relaxed)));
            }
        });
        Balancer { port, target, stop }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The messages of a SIPp `-trace_msg` file, one string each.
fn trace_messages(trace: &str) -> Vec<&str> {
    trace
        .split("----------------------------------------------- ")
        .filter_map(|block| {
            let start = block.find(":\n\n")? + 3;
            Some(block[start..].trim_start())
        })
        .collect()
}

/// SIPp sending `calls` calls of `scenario` (users from `csv`) at 60/s,
/// at most 100 at once, to the balancer on `port`, every message traced
/// into `trace`.
fn stream(
    scenario: &std::path::Path,
    csv: &std::path::Path,
    args: &[&str],
    calls: usize,
    trace: &std::path::Path,
    port: u16,
) -> std::process::Child {
    std::process::Command::new("sipp")
        .arg("-sf")
        .arg(scenario)
        .arg("-inf")
        .arg(csv)
        .args(args)
        .args(["-m", &calls.to_string(), "-r", "60", "-l", "100"])
        .args(["-t", "u1", "-nostdin", "-timeout", "60s", "-i", "127.0.0.1"])
        .args([
            "-p",
            &free_port().to_string(),
            "-trace_msg",
            "-message_file",
        ])
        .arg(trace)
        .arg(format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sipp is installed")
}

/// What a SIPp trace shows acknowledged: for each Call-ID whose request
/// (starting `request`) got a final answer starting `ok`, what `what` took
/// from the request.
fn acknowledged(
    trace: &str,
    request: &str,
    ok: &str,
    what: impl Fn(&str) -> Option<String>,
) -> Vec<String> {
    let mut of: HashMap<String, String> = HashMap::new();
    let mut out = Vec::new();
    for m in trace_messages(trace) {
        let Some(call) = header(m, "Call-ID") else {
            continue;
        };
        if m.starts_with(request) {
            if let Some(v) = what(m) {
                of.insert(call.to_string(), v);
            }
        } else if m.starts_with(ok) {
            out.extend(of.get(call).cloned());
        }
    }
    out
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
        .map(str::trim)
}

/// A registered endpoint on `sock`: answers every MESSAGE 200 and
/// collects the greetings, until nothing came for `quiet`.
fn receive_all(sock: &UdpSocket, quiet: Duration) -> Vec<String> {
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut got = Vec::new();
    let mut last = Instant::now();
    let mut buf = vec![0u8; 65536];
    while last.elapsed() < quiet {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let msg = String::from_utf8_lossy(&buf[..n]).to_string();
        if !msg.starts_with("MESSAGE ") {
            continue;
        }
        last = Instant::now();
        let vias: String = msg
            .lines()
            .filter(|l| l.starts_with("Via: "))
            .map(|l| format!("{l}\r\n"))
            .collect();
        let h = |n: &str| header(&msg, n).unwrap_or_default().to_string();
        let ok = format!(
            "SIP/2.0 200 OK\r\n{vias}From: {}\r\nTo: {};tag=r\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
            h("From"),
            h("To"),
            h("Call-ID"),
            h("CSeq")
        );
        sock.send_to(ok.as_bytes(), from).unwrap();
        if let Some(i) = msg.find("Hello from alice: ") {
            let text = msg[i..].lines().next().unwrap_or("").trim().to_string();
            got.push(text);
        }
    }
    got
}

#[test]
fn a_node_killed_under_load_loses_nothing_it_acknowledged_and_delivers_each_message_once() {
    node_killed_under_load(false);
}

/// The same with every node serving (`pool_mode = "active"`), three of
/// them: fe-a is killed, the balancer turns to fe-b, which serves
/// already; bob then registers with fe-c and receives every message fe-a
/// and fe-b acknowledged, once.
#[test]
fn a_node_of_an_active_pool_killed_under_load_loses_nothing_it_acknowledged() {
    node_killed_under_load(true);
}

fn node_killed_under_load(active: bool) {
    const MESSAGES: usize = 300;
    const REGISTRATIONS: usize = 300;
    let pg = store_tests::pg::cluster();
    let name = if active { "pg_loss_active" } else { "pg_loss" };
    let db = pg.database(name);
    let mode = if active {
        "pool_mode = \"active\"\n"
    } else {
        ""
    };
    // One load source (the balancer): its per-address limits lifted.
    let mut a = Server::with_config(
        &format!("{name}_a"),
        &format!(
            "node_id = \"fe-a\"\n{mode}database = \"{}\"\n[limits]\nunauthenticated_rate = 1000000\nunauthenticated_burst = 1000000\n",
            pg.url(&db)
        ),
    );
    a.add_user("alice", "correct horse battery");
    a.add_user("bob", "battery staple horse");
    // And users who register meanwhile, each with their own password.
    let tsv = a.dir.join("users.tsv");
    let users_csv = a.dir.join("users.csv");
    let mut t = String::new();
    let mut c = String::from("SEQUENTIAL\n");
    for i in 0..REGISTRATIONS {
        t.push_str(&format!("sip:u{i}@{DOMAIN}\tpassword-{i:06}\n"));
        c.push_str(&format!(
            "u{i};[authentication username=u{i} password=password-{i:06}]\n"
        ));
    }
    std::fs::write(&tsv, t).unwrap();
    std::fs::write(&users_csv, c).unwrap();
    let o = a.admin(&["user", "import", tsv.to_str().unwrap()], "");
    assert!(o.status.success(), "{}", out(&o));
    let mut b = a.another_node(&format!("{name}_b"), "fe-b");
    b.spawn();
    let mut c = active.then(|| a.another_node(&format!("{name}_c"), "fe-c"));
    if let Some(c) = &mut c {
        c.spawn();
        assert!(b.wait_ready(), "fe-b not ready:\n{}", b.log());
        assert!(c.wait_ready(), "fe-c not ready:\n{}", c.log());
    } else {
        wait_until(
            30,
            || b.log().contains("standby: node fe-a serves this database"),
            || format!("no standby:\n{}", b.log()),
        );
    }
    let lb = Balancer::start(a.udp);

    // alice sends bob (offline) a stream of messages through the balancer,
    // each with its own IMDN Message-ID, stored for later delivery.
    let csv = a.dir.join("stream.csv");
    let mut lines = String::from("SEQUENTIAL\n");
    for i in 0..MESSAGES {
        lines.push_str(&format!("{DOMAIN};alice;m{i:04};loss-{i:04}\n"));
    }
    std::fs::write(&csv, lines).unwrap();
    let trace = a.dir.join("stream.msg");
    let mut sender = stream(
        &scenario("message_send_cpim_imdn_stored.xml"),
        &csv,
        &[
            "-s",
            "bob",
            "-au",
            "alice",
            "-ap",
            "correct horse battery",
            "-auth_uri",
            &format!("bob@{DOMAIN}"),
        ],
        MESSAGES,
        &trace,
        lb.port,
    );
    let reg_trace = a.dir.join("registrations.msg");
    let mut registering = stream(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/sipp/register.xml"),
        &users_csv,
        &["-auth_uri", DOMAIN],
        REGISTRATIONS,
        &reg_trace,
        lb.port,
    );
    // fe-a is killed at a moment of its own choosing within the streams.
    let at = 1000 + u64::from(std::process::id() % 2000);
    std::thread::sleep(Duration::from_millis(at));
    a.kill9();
    let killed = Instant::now();
    // The balancer's health check: fe-b's /healthz (its admin listener is
    // bound once it takes over; 200 once its state is loaded; in the
    // active mode, at once).
    wait_until(
        30,
        || {
            std::net::TcpStream::connect(("127.0.0.1", b.admin)).is_ok()
                && b.http_get("/healthz", None).0.contains(" 200")
        },
        || format!("fe-b did not take over:\n{}", b.log()),
    );
    lb.target.store(b.udp, Ordering::Relaxed);
    let took = killed.elapsed();
    let status = sender.wait().unwrap();
    let _ = registering.wait();

    // Every registration acknowledged (200) is in the database.
    let reg_trace = std::fs::read_to_string(&reg_trace).unwrap_or_default();
    let registered = acknowledged(&reg_trace, "REGISTER ", "SIP/2.0 200 ", |m| {
        header(m, "To").map(str::to_string)
    });
    let q = |sql: &str| pg.psql(&db, sql).unwrap().trim().to_string();
    let bound = q("SELECT string_agg(aor, ' ') FROM bindings");
    let missing: Vec<_> = registered
        .iter()
        .filter(|to| {
            let aor = to.trim_start_matches('<').trim_end_matches('>');
            !bound.split(' ').any(|b| b == aor)
        })
        .collect();
    assert!(
        registered.len() >= REGISTRATIONS / 2 && missing.is_empty(),
        "{} registrations acknowledged, not in the database: {missing:?}",
        registered.len()
    );

    // What alice saw acknowledged: every MESSAGE whose Call-ID got a 202.
    let trace = std::fs::read_to_string(&trace).unwrap_or_default();
    let acknowledged = acknowledged(&trace, "MESSAGE ", "SIP/2.0 202 ", |m| {
        let i = m.find("Hello from alice: ")?;
        Some(m[i..].lines().next().unwrap_or("").trim().to_string())
    });
    assert!(
        acknowledged.len() >= MESSAGES / 2,
        "only {} of {MESSAGES} acknowledged (sipp {status}; fe-b ready {took:?} after the kill)\nfe-b:\n{}",
        acknowledged.len(),
        b.log()
    );

    // bob registers with fe-b (fe-c in the active mode: neither stored
    // them all) and receives what waits for him.
    let (rx, rx_name) = match &c {
        Some(c) => (c, "fe-c"),
        None => (&b, "fe-b"),
    };
    let port = free_port();
    passes!(
        rx,
        rx.sipp(
            "register_auth.xml",
            "bob",
            "battery staple horse",
            "127.0.0.1",
            port,
            &[]
        )
    );
    let sock = UdpSocket::bind(("127.0.0.1", port)).unwrap();
    let got = receive_all(&sock, Duration::from_secs(5));
    eprintln!(
        "fe-a killed {at} ms into the streams; fe-b ready {took:?} later; {} of {REGISTRATIONS} registrations and {} of {MESSAGES} messages acknowledged, {} delivered",
        registered.len(),
        acknowledged.len(),
        got.len()
    );
    let mut count: HashMap<&str, usize> = HashMap::new();
    for t in &got {
        *count.entry(t.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = count.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    let lost: Vec<_> = acknowledged
        .iter()
        .filter(|t| !count.contains_key(t.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged messages never delivered (of {} acknowledged, {} delivered): {:?}\n{rx_name}:\n{}",
        lost.len(),
        acknowledged.len(),
        got.len(),
        &lost[..lost.len().min(10)],
        rx.log()
    );
}
