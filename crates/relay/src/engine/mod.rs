//! The relay's state, with no I/O: allocations (RFC 8656 §6-7) with
//! their permissions and channels, the quotas, the bandwidth buckets, and
//! the decision on every packet either way. The server (`serve`) binds
//! the sockets and moves the bytes; `T` is what it keeps per allocation
//! (the relayed socket, the way back to the client).
//!
//! A permission is granted only to a peer the relay may ever reach
//! ([`crate::peer::allowed`]) that a call of the allocation's user named
//! in its SDP ([`crate::calls::Calls`]), or to another allocation on this
//! relay. Permissions are checked again whenever a call ends or changes
//! ([`Engine::tick`]), so they do not outlive the call.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stun::attr::{self, PasswordAlgorithm};
use stun::{Class, Encoder, Message};

use crate::metrics::Metrics;
use crate::Control;

/// How a client reaches the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
}

/// A client's 5-tuple as the relay sees it: the transport, the listener
/// (UDP) or connection (TCP, TLS) it came by, its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Client {
    pub transport: Transport,
    pub conn: u64,
    pub addr: SocketAddr,
}

/// Quotas and lifetimes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Allocations on this relay at once (508 beyond).
    pub max_allocations: usize,
    /// Allocations one user may hold (486 beyond).
    pub allocations_per_user: usize,
    /// Permissions, and channels, one allocation may hold (508 beyond).
    pub permissions_per_allocation: usize,
    /// Bits per second relayed for one user, both ways together (Lync's
    /// default: 10 Mbit/s); packets beyond are dropped.
    pub user_bps: u64,
    /// Bits per second for one allocation.
    pub allocation_bps: u64,
    pub default_lifetime: u32,
    pub max_lifetime: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_allocations: 10_000,
            allocations_per_user: 10,
            permissions_per_allocation: 32,
            user_bps: 10_000_000,
            allocation_bps: 10_000_000,
            default_lifetime: 600,
            max_lifetime: 3600,
        }
    }
}

/// An error response: its code and reason phrase.
type Refusal = (u16, &'static str);

fn log_permission_end(user: &str, peer: IpAddr, p: &Permission, why: &str) {
    let c = &p.counts;
    tracing::info!(user, peer = %peer, call = p.call.as_deref().unwrap_or("(another allocation here)"), why, to_peer_bytes = c.to_peer_bytes, from_peer_bytes = c.from_peer_bytes, to_peer_packets = c.to_peer_packets, from_peer_packets = c.from_peer_packets, "relay: permission ended");
}

fn log_channel_end(user: &str, channel: u16, ch: &Channel, why: &str) {
    let c = &ch.counts;
    tracing::info!(user, channel, peer = %ch.peer, why, to_peer_bytes = c.to_peer_bytes, from_peer_bytes = c.from_peer_bytes, to_peer_packets = c.to_peer_packets, from_peer_packets = c.from_peer_packets, "relay: channel ended");
}

/// RFC 8656's lifetimes for permissions and channels.
pub const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);
pub const CHANNEL_LIFETIME: Duration = Duration::from_secs(600);

/// Who an allocation belongs to and the key its requests are checked
/// with, from a successful Allocate.
#[derive(Clone)]
pub struct Grant {
    pub aor: String,
    pub username: String,
    pub key: Vec<u8>,
    /// Web credentials: the user-API session they were minted for, and
    /// when they expire (Unix time); the allocation ends with either.
    pub web: Option<(String, u64)>,
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Grant({})", self.aor)
    }
}

/// A token bucket in bytes.
#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    rate: f64,
    last: Instant,
}

impl Bucket {
    fn new(bps: u64, now: Instant) -> Bucket {
        let rate = bps as f64 / 8.0;
        Bucket {
            tokens: rate,
            rate,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        // One second's worth of burst.
        self.tokens = (self.tokens + dt * self.rate).min(self.rate);
    }

    fn has(&mut self, bytes: usize, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= bytes as f64
    }

    fn take(&mut self, bytes: usize) {
        self.tokens -= bytes as f64;
    }
}

#[derive(Debug, Clone)]
struct Permission {
    expires: Instant,
    /// The call whose SDP named the peer; `None`: another allocation here.
    call: Option<String>,
    /// The call the media is for, for its usage record only (for another
    /// allocation here, the call whose SDP names it): never a reason to
    /// relay.
    usage_call: Option<String>,
    /// What went each way with this peer.
    counts: Counts,
}

/// A channel: its peer, until when, what went each way on it.
#[derive(Debug)]
struct Channel {
    peer: SocketAddr,
    expires: Instant,
    counts: Counts,
}

impl Counts {
    fn add_to_peer(&mut self, len: usize) {
        self.to_peer_bytes += len as u64;
        self.to_peer_packets += 1;
    }

    fn add_from_peer(&mut self, len: usize) {
        self.from_peer_bytes += len as u64;
        self.from_peer_packets += 1;
    }
}

/// Bytes and packets of one allocation (or one permission, one channel).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub to_peer_bytes: u64,
    pub to_peer_packets: u64,
    pub from_peer_bytes: u64,
    pub from_peer_packets: u64,
    pub dropped: u64,
}

/// One allocation.
#[derive(Debug)]
pub struct Allocation<T> {
    pub id: u64,
    pub client: Client,
    pub grant: Grant,
    /// Where the relayed socket is bound.
    pub local: SocketAddr,
    /// What peers and the client are told (XOR-RELAYED-ADDRESS).
    pub relayed: SocketAddr,
    made: Instant,
    expires: Instant,
    permissions: HashMap<IpAddr, Permission>,
    channels: HashMap<u16, Channel>,
    channel_of: HashMap<SocketAddr, u16>,
    bucket: Bucket,
    pub counts: Counts,
    /// The Allocate that made it (transaction id, response), answered
    /// again to a retransmission.
    allocate: ([u8; 12], Vec<u8>),
    pub io: T,
}

/// Where a client's data goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// Out of the allocation's socket to a peer on the network.
    Net(SocketAddr),
    /// To allocation `id` on this relay: handed over in the process, as
    /// if it had come from `from` (the sending allocation's socket) — the
    /// same checks on arrival, without a datagram sent to ourselves.
    Here { id: u64, from: SocketAddr },
}

/// How a peer's packet goes to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Channel(u16),
    /// A Data indication (no channel bound to the peer).
    Indication,
}

/// What to do with a request made inside an allocation.
#[derive(Debug)]
pub struct Answer<T> {
    pub response: Vec<u8>,
    /// The allocation it deleted (Refresh with LIFETIME 0).
    pub removed: Option<Allocation<T>>,
    /// Refused (403) only because a peer is in no call of this user that
    /// the relay knows of: the user, whose calls an edge's relay may ask
    /// the pool about before refusing.
    pub unjustified: Option<String>,
}

/// Why an allocation ended, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Expired,
    Deleted,
    Revoked,
    Closed,
}

impl Ended {
    pub fn name(self) -> &'static str {
        match self {
            Ended::Expired => "expired",
            Ended::Deleted => "deleted by its client",
            Ended::Revoked => "its user's access was revoked",
            Ended::Closed => "its connection closed",
        }
    }
}

/// The relay's state.
#[derive(Debug)]
pub struct Engine<T> {
    pub realm: String,
    pub nonces: crate::auth::Nonces,
    limits: Limits,
    control: Arc<Control>,
    metrics: Arc<Metrics>,
    /// Addresses peers may never be: the relay's own.
    own: Vec<IpAddr>,
    allocations: HashMap<u64, Allocation<T>>,
    by_client: HashMap<Client, u64>,
    /// Allocations by relayed address as clients know it.
    by_relayed: HashMap<SocketAddr, u64>,
    /// Allocations by the address their socket is bound to.
    by_local: HashMap<SocketAddr, u64>,
    /// Each user's allocations and bandwidth bucket.
    per_user: HashMap<String, (HashSet<u64>, Bucket)>,
    next_id: u64,
    /// Permissions and channels of all allocations, for /metrics.
    permissions_now: usize,
    channels_now: usize,
    calls_seen: u64,
    revocations_seen: u64,
    /// Set by the request being answered: see [`Answer::unjustified`].
    unjustified: Option<String>,
}

fn error(m: &Message<'_>, code: u16, reason: &str) -> Vec<u8> {
    let mut e = Encoder::new(Class::Error, m.method, m.transaction_id);
    e.error(code, reason);
    e.finish_with(None, m.fingerprint_ok().is_some())
}

impl<T: Clone> Engine<T> {
    pub fn new(
        realm: String,
        nonce_secret: &[u8; 32],
        limits: Limits,
        own: Vec<IpAddr>,
        control: Arc<Control>,
        metrics: Arc<Metrics>,
    ) -> Engine<T> {
        Engine {
            realm,
            nonces: crate::auth::Nonces::new(nonce_secret),
            limits,
            calls_seen: control.calls.generation(),
            revocations_seen: control.revocation_generation(),
            unjustified: None,
            control,
            metrics,
            own,
            allocations: HashMap::new(),
            by_client: HashMap::new(),
            by_relayed: HashMap::new(),
            by_local: HashMap::new(),
            per_user: HashMap::new(),
            next_id: 1,
            permissions_now: 0,
            channels_now: 0,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn allocation_of(&self, c: &Client) -> Option<&Allocation<T>> {
        self.by_client
            .get(c)
            .and_then(|id| self.allocations.get(id))
    }

    pub fn len(&self) -> usize {
        self.allocations.len()
    }

    pub fn is_empty(&self) -> bool {
        self.allocations.is_empty()
    }

    /// The lifetime to grant for a requested one (RFC 8656 §7.2).
    pub fn lifetime(&self, requested: Option<u32>) -> u32 {
        requested
            .unwrap_or(self.limits.default_lifetime)
            .max(self.limits.default_lifetime)
            .min(self.limits.max_lifetime)
    }

    /// The lifetime to grant an allocation made with web credentials that
    /// expire at `expires` (Unix time): never past it.
    pub fn web_lifetime(&self, requested: Option<u32>, expires: u64, unix: u64) -> u32 {
        let left = u32::try_from(expires.saturating_sub(unix)).unwrap_or(u32::MAX);
        self.lifetime(requested).min(left.max(1))
    }

    /// Whether `aor` may have one more allocation: the error otherwise.
    pub fn room_for(&self, aor: &str) -> Result<(), (u16, &'static str)> {
        if self.allocations.len() >= self.limits.max_allocations {
            return Err((508, "Insufficient Capacity"));
        }
        if self
            .per_user
            .get(aor)
            .is_some_and(|(ids, _)| ids.len() >= self.limits.allocations_per_user)
        {
            return Err((486, "Allocation Quota Reached"));
        }
        Ok(())
    }

    /// Records a new allocation; its id.
    #[allow(clippy::too_many_arguments)]
    pub fn insert(
        &mut self,
        client: Client,
        grant: Grant,
        local: SocketAddr,
        relayed: SocketAddr,
        lifetime: u32,
        allocate: ([u8; 12], Vec<u8>),
        io: T,
        now: Instant,
    ) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let user_bps = self.limits.user_bps;
        let entry = self
            .per_user
            .entry(grant.aor.clone())
            .or_insert_with(|| (HashSet::new(), Bucket::new(user_bps, now)));
        entry.0.insert(id);
        tracing::info!(user = %grant.aor, client = %client.addr, transport = client.transport.name(), relayed = %relayed, lifetime, "relay: allocation made");
        self.by_client.insert(client, id);
        self.by_relayed.insert(relayed, id);
        self.by_local.insert(local, id);
        self.allocations.insert(
            id,
            Allocation {
                id,
                client,
                grant,
                local,
                relayed,
                made: now,
                expires: now + Duration::from_secs(u64::from(lifetime)),
                permissions: HashMap::new(),
                channels: HashMap::new(),
                channel_of: HashMap::new(),
                bucket: Bucket::new(self.limits.allocation_bps, now),
                counts: Counts::default(),
                allocate,
                io,
            },
        );
        self.metrics.allocations_made.inc();
        self.publish();
        id
    }

    /// The response an Allocate retransmission gets again (same client,
    /// same transaction), or `Err` for another Allocate on a client that
    /// has an allocation (437).
    pub fn allocate_again(&self, c: &Client, m: &Message<'_>) -> Option<Vec<u8>> {
        let a = self.allocation_of(c)?;
        Some(if a.allocate.0 == m.transaction_id {
            a.allocate.1.clone()
        } else {
            error(m, 437, "Allocation Mismatch")
        })
    }

    fn remove(&mut self, id: u64, why: Ended) -> Option<Allocation<T>> {
        let a = self.allocations.remove(&id)?;
        self.permissions_now -= a.permissions.len();
        self.channels_now -= a.channels.len();
        self.by_client.remove(&a.client);
        self.by_relayed.remove(&a.relayed);
        self.by_local.remove(&a.local);
        if let Some(u) = self.per_user.get_mut(&a.grant.aor) {
            u.0.remove(&id);
            if u.0.is_empty() {
                self.per_user.remove(&a.grant.aor);
            }
        }
        for (ip, p) in &a.permissions {
            log_permission_end(&a.grant.aor, *ip, p, why.name());
        }
        for (ch, c) in &a.channels {
            log_channel_end(&a.grant.aor, *ch, c, why.name());
        }
        let c = a.counts;
        tracing::info!(user = %a.grant.aor, relayed = %a.relayed, why = why.name(), to_peer_bytes = c.to_peer_bytes, from_peer_bytes = c.from_peer_bytes, to_peer_packets = c.to_peer_packets, from_peer_packets = c.from_peer_packets, dropped = c.dropped, "relay: allocation ended");
        Some(a)
    }

    /// Ends the allocation of a client whose connection closed.
    pub fn closed(&mut self, c: &Client) -> Option<Allocation<T>> {
        let id = *self.by_client.get(c)?;
        let a = self.remove(id, Ended::Closed);
        self.publish();
        a
    }

    /// Whether `a` may exchange `bytes` with `peer` now: its permission,
    /// then the allocation's and the user's bandwidth.
    fn pass(&mut self, id: u64, peer: SocketAddr, bytes: usize, now: Instant) -> bool {
        // A call that ended or changed takes its permissions with it before
        // another packet passes (one atomic load per packet).
        if self.control.calls.generation() != self.calls_seen {
            self.recheck_calls(now);
        }
        let by_relayed = &self.by_relayed;
        let Some(a) = self.allocations.get_mut(&id) else {
            return false;
        };
        // A permission for another allocation here covers that allocation
        // only, not whatever else listens on the relay's address.
        let permitted = a.permissions.get(&peer.ip()).is_some_and(|p| {
            p.expires > now && (p.call.is_some() || by_relayed.contains_key(&peer))
        });
        let user = self.per_user.get_mut(&a.grant.aor).map(|u| &mut u.1);
        let fits = permitted
            && a.bucket.has(bytes, now)
            && user.map(|b| {
                let ok = b.has(bytes, now);
                if ok {
                    b.take(bytes);
                }
                ok
            }) == Some(true);
        if fits {
            a.bucket.take(bytes);
        } else {
            a.counts.dropped += 1;
            if permitted {
                self.metrics.dropped_bandwidth.inc();
            } else {
                self.metrics.dropped_no_permission.inc();
            }
        }
        fits
    }

    /// A Send indication from `c`: where its data goes, or `None` (no
    /// allocation, no permission, over bandwidth, malformed: dropped, as
    /// indications get no answer).
    pub fn send_indication(
        &mut self,
        c: &Client,
        m: &Message<'_>,
        now: Instant,
    ) -> Option<(T, Dest, std::ops::Range<usize>)> {
        let id = *self.by_client.get(c)?;
        let peer = attr::xor_address(
            attr::XOR_PEER_ADDRESS,
            m.get(attr::XOR_PEER_ADDRESS)?,
            &m.transaction_id,
        )
        .ok()?;
        let data = m.get(attr::DATA)?;
        if !self.pass(id, peer, data.len(), now) {
            return None;
        }
        let start = data.as_ptr() as usize - m.raw().as_ptr() as usize;
        self.sent(id, peer, data.len(), None)
            .map(|(io, to)| (io, to, start..start + data.len()))
    }

    /// ChannelData from `c` on `channel`: where its `len` bytes go.
    pub fn channel_data(
        &mut self,
        c: &Client,
        channel: u16,
        len: usize,
        now: Instant,
    ) -> Option<(T, Dest)> {
        let id = *self.by_client.get(c)?;
        let peer = match self.allocations.get(&id)?.channels.get(&channel) {
            Some(c) if c.expires > now => c.peer,
            _ => {
                self.metrics.dropped_no_permission.inc();
                return None;
            }
        };
        if !self.pass(id, peer, len, now) {
            return None;
        }
        self.sent(id, peer, len, Some(channel))
    }

    fn sent(
        &mut self,
        id: u64,
        peer: SocketAddr,
        len: usize,
        channel: Option<u16>,
    ) -> Option<(T, Dest)> {
        // Another allocation here is handed the data in the process (its
        // advertised address may be a NAT's, which need not hairpin; and a
        // datagram to ourselves costs two system calls and a wake-up).
        let here = self.by_relayed.get(&peer).copied();
        let a = self.allocations.get_mut(&id)?;
        let to = match here {
            Some(other) => Dest::Here {
                id: other,
                from: a.local,
            },
            None => Dest::Net(peer),
        };
        a.counts.add_to_peer(len);
        if let Some(p) = a.permissions.get_mut(&peer.ip()) {
            if p.counts.to_peer_packets == 0 && p.counts.from_peer_packets == 0 {
                if let Some(call) = &p.usage_call {
                    self.control.calls.note_relayed(call, Instant::now());
                }
            }
            p.counts.add_to_peer(len);
        }
        if let Some(c) = channel.and_then(|ch| a.channels.get_mut(&ch)) {
            c.counts.add_to_peer(len);
        }
        self.metrics.to_peer_bytes.add(len as u64);
        self.metrics.to_peer_packets.inc();
        Some((a.io.clone(), to))
    }

    /// `len` bytes from `from` arrived on allocation `id`'s relayed
    /// socket: the client and the framing to send them with, or `None`
    /// (no permission, over bandwidth: dropped).
    pub fn from_peer(
        &mut self,
        id: u64,
        from: SocketAddr,
        len: usize,
        now: Instant,
    ) -> Option<(T, Client, Framing)> {
        // Another allocation here sends from its local address; the
        // permission was given to the one clients know.
        let from = match self
            .by_local
            .get(&from)
            .and_then(|o| self.allocations.get(o))
        {
            Some(other) if other.id != id => other.relayed,
            _ => from,
        };
        if !self.pass(id, from, len, now) {
            return None;
        }
        let a = self.allocations.get_mut(&id)?;
        a.counts.add_from_peer(len);
        if let Some(p) = a.permissions.get_mut(&from.ip()) {
            if p.counts.to_peer_packets == 0 && p.counts.from_peer_packets == 0 {
                if let Some(call) = &p.usage_call {
                    self.control.calls.note_relayed(call, now);
                }
            }
            p.counts.add_from_peer(len);
        }
        self.metrics.from_peer_bytes.add(len as u64);
        self.metrics.from_peer_packets.inc();
        let framing = match a.channel_of.get(&from) {
            Some(ch) => match a.channels.get_mut(ch) {
                Some(c) if c.expires > now => {
                    c.counts.add_from_peer(len);
                    Framing::Channel(*ch)
                }
                _ => Framing::Indication,
            },
            None => Framing::Indication,
        };
        Some((a.io.clone(), a.client, framing))
    }

    /// Expires allocations, permissions and channels; when a call ended or
    /// changed, checks every permission given for a call again; ends the
    /// allocations of users whose access was revoked. What was removed.
    pub fn tick(&mut self, now: Instant) -> Vec<Allocation<T>> {
        let mut gone = Vec::new();
        let revocations = self.control.revocation_generation();
        if revocations != self.revocations_seen {
            self.revocations_seen = revocations;
            let revoked: Vec<u64> = self
                .allocations
                .values()
                .filter(|a| {
                    let session = a.grant.web.as_ref().map(|(s, _)| s.as_str());
                    self.control.revoked(&a.grant.aor, session, a.made)
                })
                .map(|a| a.id)
                .collect();
            for id in revoked {
                gone.extend(self.remove(id, Ended::Revoked));
            }
        }
        let expired: Vec<u64> = self
            .allocations
            .values()
            .filter(|a| a.expires <= now)
            .map(|a| a.id)
            .collect();
        for id in expired {
            gone.extend(self.remove(id, Ended::Expired));
        }
        self.recheck_calls(now);
        let ids: Vec<u64> = self.allocations.keys().copied().collect();
        self.prune(&ids, now, false);
        self.publish();
        gone
    }

    /// When calls ended or changed: the permissions of their users'
    /// allocations checked again (only theirs).
    fn recheck_calls(&mut self, now: Instant) {
        if self.control.calls.generation() == self.calls_seen {
            return;
        }
        let (generation, changed) = self.control.calls.take_changed();
        self.calls_seen = generation;
        let ids: Vec<u64> = match changed {
            crate::calls::Changed::Everyone => self.allocations.keys().copied().collect(),
            crate::calls::Changed::Users(users) => users
                .iter()
                .filter_map(|u| self.per_user.get(u))
                .flat_map(|(ids, _)| ids.iter().copied())
                .collect(),
        };
        self.prune(&ids, now, true);
    }

    /// Expired permissions and channels of allocations `ids` removed, and
    /// (`recheck`) those a call no longer names.
    fn prune(&mut self, ids: &[u64], now: Instant, recheck: bool) {
        let calls = &self.control.calls;
        for id in ids {
            let Some(a) = self.allocations.get_mut(id) else {
                continue;
            };
            let before = (a.permissions.len(), a.channels.len());
            let aor = &a.grant.aor;
            a.permissions.retain(|ip, p| {
                // (A permission for another allocation here lapses with
                // time; each packet is checked against the allocations.)
                let keep = p.expires > now
                    && (p.call.is_none()
                        || !recheck
                        || calls.justifies(aor, crate::peer::canonical(*ip)));
                if !keep {
                    let why = if p.expires > now {
                        "its call ended or changed"
                    } else {
                        "expired"
                    };
                    log_permission_end(aor, *ip, p, why);
                }
                keep
            });
            let permissions = &a.permissions;
            a.channels.retain(|ch, c| {
                let keep = c.expires > now && permissions.contains_key(&c.peer.ip());
                if !keep {
                    log_channel_end(aor, *ch, c, "expired, or its permission ended");
                }
                keep
            });
            let channels = &a.channels;
            a.channel_of.retain(|_, ch| channels.contains_key(ch));
            self.permissions_now -= before.0 - a.permissions.len();
            self.channels_now -= before.1 - a.channels.len();
        }
    }

    /// Sets the gauges of /metrics: allocations, permissions, channels now.
    /// (Counts kept as they change: this runs on every request.)
    fn publish(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.metrics
            .allocations
            .store(self.allocations.len() as u64, Relaxed);
        self.metrics
            .permissions
            .store(self.permissions_now as u64, Relaxed);
        self.metrics
            .channels
            .store(self.channels_now as u64, Relaxed);
    }
}

/// The key a user's requests are checked with, from their digest secrets.
pub fn key_for(alg: PasswordAlgorithm, md5: &[u8; 16], sha256: &[u8; 32]) -> Vec<u8> {
    match alg {
        PasswordAlgorithm::Md5 => md5.to_vec(),
        PasswordAlgorithm::Sha256 => sha256.to_vec(),
    }
}

mod requests;
#[cfg(test)]
mod tests;
