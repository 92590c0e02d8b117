//! The engine's rules, one by one, with fake time.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stun::attr;
use stun::integrity::Integrity;
use stun::{method, Class, Encoder, Message};

use super::*;
use crate::metrics::Metrics;
use crate::Control;

const REALM: &str = "example.test";
const KEY: [u8; 16] = [9; 16];
const UNIX: u64 = 1_000_000;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn client(port: u16) -> Client {
    Client {
        transport: Transport::Udp,
        conn: 0,
        addr: SocketAddr::from(([203, 0, 113, 50], port)),
    }
}

struct Fixture {
    e: Engine<u32>,
    control: Arc<Control>,
    metrics: Arc<Metrics>,
    now: Instant,
}

fn fixture(limits: Limits) -> Fixture {
    let control = Arc::new(Control::new());
    let metrics = Arc::new(Metrics::default());
    let e = Engine::new(
        REALM.into(),
        &[1; 32],
        limits,
        vec![IpAddr::from([198, 51, 100, 1])],
        control.clone(),
        metrics.clone(),
    );
    Fixture {
        e,
        control,
        metrics,
        now: Instant::now(),
    }
}

impl Fixture {
    /// An allocation for `aor` (user name `user`) by `c`, relayed at port
    /// `port`; its id.
    fn allocate(&mut self, c: Client, aor: &str, port: u16) -> u64 {
        self.e.room_for(aor).unwrap();
        let relayed = SocketAddr::from(([198, 51, 100, 1], port));
        let grant = Grant {
            aor: aor.into(),
            username: aor
                .trim_start_matches("sip:")
                .split('@')
                .next()
                .unwrap()
                .into(),
            key: KEY.to_vec(),
            web: None,
        };
        self.e.insert(
            c,
            grant,
            relayed,
            relayed,
            600,
            ([0; 12], Vec::new()),
            u32::from(port),
            self.now,
        )
    }

    /// A request from `c` signed as `user` with `key`; the error code of
    /// its answer (0: success).
    fn ask(
        &mut self,
        c: Client,
        user: &str,
        key: &[u8],
        m: u16,
        build: impl Fn(&mut Encoder),
    ) -> u16 {
        let nonce = self.e.nonces.issue(c.addr.ip(), UNIX);
        let mut enc = Encoder::new(Class::Request, m, [5; 12]);
        build(&mut enc);
        enc.attr(attr::USERNAME, user.as_bytes()).unwrap();
        enc.attr(attr::REALM, REALM.as_bytes()).unwrap();
        enc.attr(attr::NONCE, nonce.as_bytes()).unwrap();
        let raw = enc.finish_with(Some((Integrity::Sha1, key)), false);
        let msg = Message::parse(&raw).unwrap();
        let answer = self.e.request(&c, &msg, self.now, UNIX);
        let r = Message::parse(&answer.response).unwrap();
        match r.class {
            Class::Success => 0,
            _ => {
                attr::error_code(r.get(attr::ERROR_CODE).unwrap())
                    .unwrap()
                    .code
            }
        }
    }

    fn permit(&mut self, c: Client, peer: &str) -> u16 {
        let p = addr(peer);
        self.ask(c, "alice", &KEY, method::CREATE_PERMISSION, |e| {
            e.xor_address(attr::XOR_PEER_ADDRESS, p);
        })
    }

    fn bind(&mut self, c: Client, channel: u16, peer: &str) -> u16 {
        let p = addr(peer);
        self.ask(c, "alice", &KEY, method::CHANNEL_BIND, |e| {
            e.attr(
                attr::CHANNEL_NUMBER,
                &[(channel >> 8) as u8, channel as u8, 0, 0],
            )
            .unwrap();
            e.xor_address(attr::XOR_PEER_ADDRESS, p);
        })
    }
}

#[test]
fn quotas_answer_486_per_user_and_508_for_the_relay() {
    let mut f = fixture(Limits {
        allocations_per_user: 2,
        max_allocations: 3,
        ..Limits::default()
    });
    f.allocate(client(1), "sip:alice@x", 50000);
    f.allocate(client(2), "sip:alice@x", 50001);
    assert_eq!(
        f.e.room_for("sip:alice@x"),
        Err((486, "Allocation Quota Reached"))
    );
    f.allocate(client(3), "sip:bob@x", 50002);
    assert_eq!(
        f.e.room_for("sip:carol@x"),
        Err((508, "Insufficient Capacity"))
    );
    // Closing one frees its user's place.
    assert!(f.e.closed(&client(1)).is_some());
    assert!(f.e.room_for("sip:alice@x").is_ok());
}

#[test]
fn lifetimes_are_clamped_between_the_default_and_the_maximum() {
    let f = fixture(Limits::default());
    assert_eq!(f.e.lifetime(None), 600);
    assert_eq!(f.e.lifetime(Some(30)), 600);
    assert_eq!(f.e.lifetime(Some(1200)), 1200);
    assert_eq!(f.e.lifetime(Some(u32::MAX)), 3600);
}

#[test]
fn requests_are_checked_against_the_allocations_credentials() {
    let mut f = fixture(Limits::default());
    let c = client(1);
    // No allocation: 437.
    assert_eq!(f.permit(c, "203.0.113.9:1"), 437);
    f.allocate(c, "sip:alice@x", 50000);
    // Another user name: 441; another key: 401.
    let p = addr("203.0.113.9:1");
    let code = f.ask(c, "bob", &KEY, method::CREATE_PERMISSION, |e| {
        e.xor_address(attr::XOR_PEER_ADDRESS, p);
    });
    assert_eq!(code, 441);
    let code = f.ask(c, "alice", &[8; 16], method::CREATE_PERMISSION, |e| {
        e.xor_address(attr::XOR_PEER_ADDRESS, p);
    });
    assert_eq!(code, 401);
    // A Refresh with LIFETIME 0 deletes it.
    let code = f.ask(c, "alice", &KEY, method::REFRESH, |e| {
        e.u32(attr::LIFETIME, 0);
    });
    assert_eq!(code, 0);
    assert!(f.e.is_empty());
}

#[test]
fn permissions_go_to_call_addresses_only_and_leave_with_the_call() {
    let mut f = fixture(Limits::default());
    let c = client(1);
    let id = f.allocate(c, "sip:alice@x", 50000);
    for never in [
        "127.0.0.1:1",
        "10.0.0.1:1",
        "169.254.169.254:80",
        "198.51.100.1:9",
        "0.0.0.0:1",
    ] {
        assert_eq!(f.permit(c, never), 403, "{never}");
    }
    assert_eq!(f.permit(c, "203.0.113.9:4000"), 403, "in no call");
    f.control.calls.described(
        "call-1",
        "t1",
        &["sip:alice@x"],
        &[IpAddr::from([203, 0, 113, 9])],
        f.now,
    );
    assert_eq!(f.permit(c, "203.0.113.9:4000"), 0);
    assert_eq!(f.bind(c, 0x4001, "203.0.113.9:4000"), 0);
    assert_eq!(
        f.metrics
            .permissions
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(
        f.metrics
            .channels
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // A channel stays with its peer, and a peer with its channel.
    assert_eq!(f.bind(c, 0x4001, "203.0.113.9:4002"), 400);
    assert_eq!(f.bind(c, 0x4002, "203.0.113.9:4000"), 400);
    assert!(f.e.channel_data(&c, 0x4001, 100, f.now).is_some());
    assert!(f
        .e
        .from_peer(id, addr("203.0.113.9:4000"), 100, f.now)
        .is_some());
    // Another address of that host: the permission is by address.
    assert!(f
        .e
        .from_peer(id, addr("203.0.113.9:5555"), 100, f.now)
        .is_some());
    assert!(f
        .e
        .from_peer(id, addr("203.0.113.10:4000"), 100, f.now)
        .is_none());
    // The call ends: the very next packet is dropped, either way.
    f.control.calls.ended("call-1");
    assert!(f.e.channel_data(&c, 0x4001, 100, f.now).is_none());
    assert!(f
        .e
        .from_peer(id, addr("203.0.113.9:4000"), 100, f.now)
        .is_none());
    assert_eq!(f.permit(c, "203.0.113.9:4000"), 403);
    assert!(f.metrics.dropped_no_permission.get() >= 3);
    // The gauges followed: the permission and the channel are gone.
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(f.metrics.permissions.load(Relaxed), 0);
    assert_eq!(f.metrics.channels.load(Relaxed), 0);
    assert_eq!(f.metrics.allocations.load(Relaxed), 1);
}

#[test]
fn another_allocation_here_is_a_peer_but_nothing_else_on_its_address() {
    let mut f = fixture(Limits::default());
    let (a, b) = (client(1), client(2));
    let ia = f.allocate(a, "sip:alice@x", 50000);
    f.allocate(b, "sip:bob@x", 50002);
    assert_eq!(f.permit(a, "198.51.100.1:50002"), 0);
    assert_eq!(f.permit(a, "198.51.100.1:50004"), 403);
    assert!(
        f.e.channel_data(&a, 0x4000, 10, f.now).is_none(),
        "no channel bound yet"
    );
    assert_eq!(f.bind(a, 0x4000, "198.51.100.1:50002"), 0);
    // Handed to bob's allocation in the process, as from alice's socket.
    let (io, to) = f.e.channel_data(&a, 0x4000, 10, f.now).unwrap();
    let ib = f.e.by_relayed[&addr("198.51.100.1:50002")];
    assert_eq!(
        (io, to),
        (
            50000,
            Dest::Here {
                id: ib,
                from: addr("198.51.100.1:50000")
            }
        )
    );
    // Bob's allocation takes it only with a permission for alice's.
    assert!(f
        .e
        .from_peer(ib, addr("198.51.100.1:50000"), 10, f.now)
        .is_none());
    // From bob's socket: relayed; from another port on the address: not.
    assert!(f
        .e
        .from_peer(ia, addr("198.51.100.1:50002"), 10, f.now)
        .is_some());
    assert!(f
        .e
        .from_peer(ia, addr("198.51.100.1:22"), 10, f.now)
        .is_none());
}

#[test]
fn bandwidth_beyond_the_allocations_share_is_dropped_and_counted() {
    let mut f = fixture(Limits {
        allocation_bps: 80_000, // 10,000 bytes a second, one second of burst
        ..Limits::default()
    });
    let c = client(1);
    let id = f.allocate(c, "sip:alice@x", 50000);
    f.control.calls.described(
        "c",
        "t",
        &["sip:alice@x"],
        &[IpAddr::from([203, 0, 113, 9])],
        f.now,
    );
    assert_eq!(f.permit(c, "203.0.113.9:4000"), 0);
    let peer = addr("203.0.113.9:4000");
    let passed = (0..20)
        .filter(|_| f.e.from_peer(id, peer, 1000, f.now).is_some())
        .count();
    assert_eq!(passed, 10);
    assert_eq!(f.metrics.dropped_bandwidth.get(), 10);
    // A second later there is room again.
    let later = f.now + Duration::from_secs(1);
    assert!(f.e.from_peer(id, peer, 1000, later).is_some());
}

#[test]
fn revoked_users_and_expired_allocations_go_at_the_tick() {
    let mut f = fixture(Limits::default());
    f.allocate(client(1), "sip:alice@x", 50000);
    f.allocate(client(2), "sip:bob@x", 50002);
    assert!(f.e.tick(f.now).is_empty());
    f.control.revoke("sip:alice@x");
    let gone = f.e.tick(f.now);
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].grant.aor, "sip:alice@x");
    assert_eq!(f.e.len(), 1);
    let gone = f.e.tick(f.now + Duration::from_secs(601));
    assert_eq!(gone.len(), 1);
    assert!(f.e.is_empty());
    assert_eq!(
        f.metrics
            .allocations
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[test]
fn an_allocate_retransmission_gets_the_same_answer_and_another_437() {
    let mut f = fixture(Limits::default());
    let c = client(1);
    let relayed = addr("198.51.100.1:50000");
    let grant = Grant {
        aor: "sip:alice@x".into(),
        username: "alice".into(),
        key: KEY.to_vec(),
        web: None,
    };
    f.e.insert(
        c,
        grant,
        relayed,
        relayed,
        600,
        ([7; 12], b"first answer".to_vec()),
        0,
        f.now,
    );
    let same = Encoder::new(Class::Request, method::ALLOCATE, [7; 12]).finish();
    let other = Encoder::new(Class::Request, method::ALLOCATE, [8; 12]).finish();
    let m = Message::parse(&same).unwrap();
    assert_eq!(f.e.allocate_again(&c, &m).unwrap(), b"first answer");
    let m = Message::parse(&other).unwrap();
    let r = f.e.allocate_again(&c, &m).unwrap();
    let r = Message::parse(&r).unwrap();
    assert_eq!(
        attr::error_code(r.get(attr::ERROR_CODE).unwrap())
            .unwrap()
            .code,
        437
    );
    assert!(f.e.allocate_again(&client(2), &m).is_none());
}

#[test]
fn each_permission_and_channel_counts_what_went_each_way_through_refreshes() {
    let mut f = fixture(Limits::default());
    let c = client(1);
    let id = f.allocate(c, "sip:alice@x", 50000);
    f.control.calls.described(
        "call-1",
        "t1",
        &["sip:alice@x"],
        &[IpAddr::from([203, 0, 113, 9])],
        f.now,
    );
    assert_eq!(f.bind(c, 0x4000, "203.0.113.9:4000"), 0);
    // Two packets by channel, one by Send indication to another port of
    // the same peer, two back (one on the channel's peer address).
    assert!(f.e.channel_data(&c, 0x4000, 100, f.now).is_some());
    assert!(f.e.channel_data(&c, 0x4000, 100, f.now).is_some());
    let mut enc = Encoder::new(Class::Indication, method::SEND, [6; 12]);
    enc.xor_address(attr::XOR_PEER_ADDRESS, addr("203.0.113.9:4002"));
    enc.attr(attr::DATA, &[0; 50]).unwrap();
    let raw = enc.finish();
    assert!(f
        .e
        .send_indication(&c, &Message::parse(&raw).unwrap(), f.now)
        .is_some());
    assert!(f
        .e
        .from_peer(id, addr("203.0.113.9:4000"), 70, f.now)
        .is_some());
    assert!(f
        .e
        .from_peer(id, addr("203.0.113.9:4002"), 30, f.now)
        .is_some());
    // A refresh of the permission and the channel keeps their counts.
    assert_eq!(f.bind(c, 0x4000, "203.0.113.9:4000"), 0);
    let a = &f.e.allocations[&id];
    let p = &a.permissions[&IpAddr::from([203, 0, 113, 9])];
    assert_eq!((p.counts.to_peer_bytes, p.counts.to_peer_packets), (250, 3));
    assert_eq!(
        (p.counts.from_peer_bytes, p.counts.from_peer_packets),
        (100, 2)
    );
    let ch = &a.channels[&0x4000];
    assert_eq!(
        (ch.counts.to_peer_bytes, ch.counts.from_peer_bytes),
        (200, 70)
    );
    assert_eq!(
        (a.counts.to_peer_bytes, a.counts.from_peer_bytes),
        (250, 100)
    );
}
