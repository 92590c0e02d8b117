//! The other nodes of a pool (several `parapet serve` on one PostgreSQL
//! database): who they are, the connections to them, and reaching a
//! client whose connection another node holds.
//!
//! Each node follows the others' changes in the store's change log
//! (`Store::followed_changes`): a user's bindings made on another node are
//! read again and kept in this node's location service, marked with the
//! node that holds their flow; a user's publications made on another node
//! are read again into this node's presence state, so its watchers are
//! told; a contact list changed through another node is read again (what
//! its owner's watchers may see); an account's sign-in lockout state
//! saved by another node is merged into this node's filter. A request for such a binding goes to that
//! node over mutual TLS, with a Route entry naming the node and, in its
//! user part, the binding (`pb.` + hex of the address of record + `.` +
//! hex of the binding's key + `.` + the pool's token for it, an HMAC over
//! the holding node, the binding and the Call-ID under a key every node
//! derives from the shared `keys/`); that node, seeing the entry on a
//! connection from a node of the pool with a token it can verify, sends
//! the request on to its client as the
//! proxy did the first part (authentication and every policy were applied
//! by the node the request reached first). Responses come back along the
//! Vias; a dialog's later requests follow both nodes' Record-Routes.
//!
//! A node of the pool is known by its certificate: issued by the pool's
//! own CA with the subjectAltName `urn:parapet:node:NAME`, a certificate
//! each node makes itself at start from the CA key the nodes share (edges
//! are never given one). A connection presenting one whose name is no
//! serving node's stands for nobody.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use auth::flow_token::PoolRoutes;
use sip::headers::Route;
use sip::{Message, Uri};
use sip_transport::{FlowId, Protocol, Source, Target};
use store::{Binding, NodeRow};

use crate::fork::{ForkKind, Hop};
use crate::{unix_now, Core, Event, Req};

/// The subjectAltName URI prefix of a node's certificate.
pub const NODE_URI_PREFIX: &str = "urn:parapet:node:";
/// The user part prefix of a Route entry naming a binding on a node.
const TOKEN_PREFIX: &str = "pb.";
/// How often the follower reads the change log without a wake-up (the
/// store's hint that another node committed: `Store::change_hint`).
const FOLLOW_EVERY: Duration = Duration::from_millis(500);
/// The least time between the start of two reads while the last found
/// changes, however many wake-ups come: other nodes committing thousands
/// of changes a second cost at most this many reads (each read, and each
/// re-read of what changed, is a statement for the database whatever it
/// returns: see bench/README.md, "A pool of three nodes"). A wake-up
/// after a read that found nothing is read at once.
const FOLLOW_GAP: Duration = Duration::from_millis(50);
/// How often the list of nodes is read again.
const NODES_EVERY: Duration = Duration::from_secs(2);
/// Keys of one kind read again per round at most (the rest wait for the
/// next round).
const READS_PER_ROUND: usize = 1024;
/// Addresses of record waiting to be read again at once at most (each one
/// a write of this node's that raced another node's removal).
const REREADS_WAITING: usize = 4096;

/// What the server hands the core for reaching the other nodes.
#[derive(Debug, Default, Clone)]
pub struct PoolSetup {
    /// This node's certificate presented, the other node's verified
    /// against the pool's CA for the domain.
    pub dial: Option<Arc<rustls::ClientConfig>>,
    /// The pool's CA certificate (DER), which issues nodes' certificates.
    pub own_ca: Option<Vec<u8>>,
    /// The name dialled nodes' certificates must carry (the domain).
    pub server_name: String,
}

/// The pool as this node sees it.
#[derive(Debug, Default)]
pub(crate) struct Pool {
    /// This node's name; empty when the store is not shared.
    pub(crate) node: String,
    setup: PoolSetup,
    /// The other serving nodes' TLS listeners.
    peers: HashMap<String, SocketAddr>,
    /// Connections this node opened to each.
    links: HashMap<String, FlowId>,
    dialing: HashMap<String, Instant>,
    /// Connections from a node of the pool (its name).
    inbound: HashMap<FlowId, String>,
    /// Connections known to be no node's.
    others: HashSet<FlowId>,
    /// Serving nodes (this one included) when last read: the per-source
    /// rate limits are split between them.
    serving: usize,
    /// Nodes no longer serving whose subscriptions this node has claimed
    /// (`presence::moved`), and whether a claim is under way.
    pub(crate) claimed_from: HashSet<String>,
    pub(crate) claiming: bool,
    /// Addresses of record whose bindings the follower reads again at its
    /// next round: a read that could not tell whether this node's own
    /// binding was removed by another node (`Core::remote_bindings`).
    reread: Option<tokio::sync::mpsc::Sender<String>>,
}

impl Pool {
    pub(crate) fn set(&mut self, node: &str, setup: PoolSetup) {
        node.clone_into(&mut self.node);
        self.setup = setup;
    }

    /// The node a connection belongs to, if it is one of the pool's.
    pub(crate) fn classify(&mut self, src: &Source) -> Option<&str> {
        if self.node.is_empty() || src.protocol != Protocol::Tls {
            return None;
        }
        if self.inbound.contains_key(&src.flow) {
            return self.inbound.get(&src.flow).map(String::as_str);
        }
        if let Some((name, _)) = self.links.iter().find(|(_, f)| **f == src.flow) {
            return Some(name.as_str());
        }
        if self.others.contains(&src.flow) {
            return None;
        }
        let name = src
            .peer_certificates
            .as_ref()
            .and_then(|c| c.first())
            .zip(self.setup.own_ca.as_deref())
            .filter(|(leaf, ca)| federation::identity::issued_by(leaf, ca))
            .and_then(|(leaf, _)| federation::identity::uri_after(leaf, NODE_URI_PREFIX));
        match name {
            Some(n) if self.peers.contains_key(&n) => {
                tracing::info!(node = %n, remote = %src.remote, "a node of the pool connected");
                self.inbound.insert(src.flow, n);
                self.inbound.get(&src.flow).map(String::as_str)
            }
            // Not remembered: a node that has just joined is known here
            // at the next reading of the nodes (every 2 s).
            Some(n) => {
                static UNKNOWN: sip_transport::logging::RateLimited =
                    sip_transport::logging::RateLimited::new();
                if let Some(suppressed) = UNKNOWN.allow() {
                    tracing::warn!(node = %n, remote = %src.remote, suppressed, "a node certificate of no serving node (yet): it stands for nobody");
                }
                None
            }
            None => {
                self.others.insert(src.flow);
                None
            }
        }
    }

    /// Whether this node opened connection `flow` (to another node).
    pub(crate) fn is_dialed(&self, flow: FlowId) -> bool {
        self.links.values().any(|f| *f == flow)
    }

    pub(crate) fn closed(&mut self, flow: FlowId) {
        self.inbound.remove(&flow);
        self.others.remove(&flow);
        self.links.retain(|_, f| *f != flow);
    }

    /// The connection to `node` now, if open.
    fn link(&self, node: &str) -> Option<FlowId> {
        self.links.get(node).copied()
    }
}

/// Keys of one kind that another node changed and that wait to be read
/// again: each once however often it changed meanwhile, oldest first
/// (bounded by the number of distinct keys: users, accounts).
#[derive(Default)]
struct Backlog {
    order: std::collections::VecDeque<String>,
    queued: HashSet<String>,
}

impl Backlog {
    fn push(&mut self, key: String) {
        if self.queued.insert(key.clone()) {
            self.order.push_back(key);
        }
    }

    /// The keys to read this round: at most [`READS_PER_ROUND`].
    fn round(&mut self) -> Vec<String> {
        let n = self.order.len().min(READS_PER_ROUND);
        let out: Vec<String> = self.order.drain(..n).collect();
        for k in &out {
            self.queued.remove(k);
        }
        out
    }
}

/// Reads what another node changed for each of `keys` and hands it to
/// the core; `false` once the core is gone. A read that fails is logged and skipped (the next change to the
/// key reads it again).
async fn read_each<T, F, Fut>(
    events: &tokio::sync::mpsc::Sender<Event>,
    keys: Vec<String>,
    what: &str,
    read: F,
    event: impl Fn(String, T) -> Event,
) -> bool
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = store::Result<T>>,
{
    for key in keys {
        match read(key.clone()).await {
            Ok(v) => {
                if events.send(event(key, v)).await.is_err() {
                    return false;
                }
            }
            Err(e) => tracing::warn!(error = %e, %key, "cannot read {what} another node changed"),
        }
    }
    true
}

/// [`read_each`] for a kind the store reads for many keys at once (one
/// query per round, however many keys changed). A read that fails is
/// logged and skipped as a whole.
async fn read_batch<T, Fut>(
    events: &tokio::sync::mpsc::Sender<Event>,
    keys: Vec<String>,
    what: &str,
    read: Fut,
    event: impl Fn(String, T) -> Event,
) -> bool
where
    Fut: std::future::Future<Output = store::Result<Vec<(String, T)>>>,
{
    if keys.is_empty() {
        return true;
    }
    match read.await {
        Ok(found) => {
            for (key, v) in found {
                if events.send(event(key, v)).await.is_err() {
                    return false;
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, keys = keys.len(), "cannot read {what} other nodes changed");
        }
    }
    true
}

/// The Route entry that takes a request for `b` to the node holding it,
/// listening at `at`, in the dialog `call_id`: the binding, and the
/// pool's token for it (`pb.AOR.KEY.TOKEN`, `auth::flow_token::PoolRoutes`).
fn route_to(at: SocketAddr, b: &Binding, call_id: &str, keys: &PoolRoutes) -> String {
    format!(
        "<sip:{TOKEN_PREFIX}{}.{}.{}@{at};transport=tls;lr>",
        hex(b.aor.as_bytes()),
        hex(b.key.as_bytes()),
        keys.sign(&b.node, &b.aor, &b.key, call_id)
    )
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

/// What a Route entry's user part names: the binding (aor, key), and
/// the token that vouches for it.
#[derive(Debug, PartialEq, Eq)]
struct Named {
    aor: String,
    key: String,
    token: String,
}

fn binding_of(user: &str) -> Option<Named> {
    let rest = user.strip_prefix(TOKEN_PREFIX)?;
    let mut parts = rest.split('.');
    let (aor, key, token) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    Some(Named {
        aor: unhex(aor)?,
        key: unhex(key)?,
        token: token.to_owned(),
    })
}

/// A node's TLS listener from its row's listeners (`tls://ADDR`), if it
/// is bound to one address (a wildcard one names no address to dial).
pub fn tls_listener(address: &str) -> Option<SocketAddr> {
    address
        .split_whitespace()
        .filter_map(|l| l.strip_prefix("tls://"))
        .filter_map(|a| a.parse::<SocketAddr>().ok())
        .find(|a| !a.ip().is_unspecified())
}

impl<S: store::Store> Core<S> {
    /// Starts following the other nodes (a shared store only): their
    /// changes read when the store hints that another node committed (at
    /// once, or while they keep coming at most every 50 ms) or every half
    /// second, the bindings they changed read again and handed to the
    /// core, and the list of nodes every 2 s.
    pub(crate) fn start_pool_follower(&mut self) {
        if self.pool.node.is_empty() {
            return;
        }
        let (reread_tx, mut reread) = tokio::sync::mpsc::channel(REREADS_WAITING);
        self.pool.reread = Some(reread_tx);
        let (store, events) = (self.store.clone(), self.events_tx.clone());
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FOLLOW_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_nodes: Option<Instant> = None;
            // Whether the last read found changes, and when it began.
            let (mut busy, mut last_read) = (false, Instant::now());
            let mut failing = false;
            let mut subscriptions = Backlog::default();
            let (mut bindings, mut pending, mut published, mut lists, mut lockouts) = (
                Backlog::default(),
                Backlog::default(),
                Backlog::default(),
                Backlog::default(),
                Backlog::default(),
            );
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = store.change_hint() => {}
                }
                if busy {
                    tokio::time::sleep(FOLLOW_GAP.saturating_sub(last_read.elapsed())).await;
                }
                last_read = Instant::now();
                if last_nodes.is_none_or(|t| t.elapsed() >= NODES_EVERY) {
                    last_nodes = Some(Instant::now());
                    if let Ok(rows) = store.nodes().await {
                        if events.send(Event::Nodes(rows)).await.is_err() {
                            return;
                        }
                    }
                }
                let changes = match store.followed_changes().await {
                    Ok(c) => {
                        if failing {
                            tracing::info!("following the other nodes' changes again");
                            failing = false;
                        }
                        busy = !c.is_empty();
                        c
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!(error = %e, "cannot read the other nodes' changes (retrying every second)");
                            failing = true;
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                // Policies or users changed through another node: read
                // the versions now, not at the next second's check (an
                // administrator's answer waits for every node to have them).
                let versions = changes.iter().any(|c| {
                    matches!(
                        c.kind.as_str(),
                        "users"
                            | "policies"
                            | "policy_grants"
                            | "user_groups"
                            | "group_members"
                            | "user_sites"
                    )
                });
                if versions && events.send(Event::VersionsChanged).await.is_err() {
                    return;
                }
                if changes.iter().any(|c| c.kind == "edges")
                    && events.send(Event::EdgesChanged).await.is_err()
                {
                    return;
                }
                // How old each followed change was when read, for the lag
                // observed once its re-read is handed to the core (a key
                // left for a later round, beyond READS_PER_ROUND, counts
                // as handed over with this round).
                let polled_at = Instant::now();
                let mut ages = Vec::with_capacity(changes.len());
                for c in changes {
                    ages.push(c.age_us);
                    let backlog = match c.kind.as_str() {
                        "lockouts" => &mut lockouts,
                        "bindings" => &mut bindings,
                        "pending_messages" => &mut pending,
                        "presence_publications" => &mut published,
                        "contacts" | "contact_groups" => &mut lists,
                        "subscriptions" => &mut subscriptions,
                        _ => {
                            ages.pop();
                            continue;
                        }
                    };
                    backlog.push(c.key);
                }
                while let Ok(aor) = reread.try_recv() {
                    bindings.push(aor);
                }
                let now = unix_now();
                let keys = bindings.round();
                // Before the read: what was committed by then is in it.
                let read_at = Instant::now();
                let sent =
                    read_batch(
                        &events,
                        keys.clone(),
                        "bindings",
                        store::Bindings::bindings_of_each(&store, keys, now),
                        |aor, list| Event::RemoteBindings { aor, list, read_at },
                    )
                    .await
                        && read_each(
                            &events,
                            published.round(),
                            "publications",
                            |aor| {
                                let store = store.clone();
                                async move {
                                    store::PresenceState::publications_of(&store, &aor, now).await
                                }
                            },
                            |aor, rows| Event::RemotePublications { aor, rows },
                        )
                        .await
                        && read_each(
                            &events,
                            lists.round(),
                            "a contact list",
                            |owner| {
                                let store = store.clone();
                                async move { store::Contacts::contacts_of(&store, &owner).await }
                            },
                            |owner, rows| Event::RemoteContacts { owner, rows },
                        )
                        .await;
                let keys = lockouts.round();
                let sent = sent
                    && read_batch(
                        &events,
                        keys.clone(),
                        "lockout state",
                        store::Lockouts::lockouts_of_each(&store, keys),
                        |account, rows| Event::RemoteLockouts { account, rows },
                    )
                    .await
                    && read_each(
                        &events,
                        subscriptions.round(),
                        "a subscription",
                        |id| {
                            let store = store.clone();
                            async move { store::PresenceState::subscription(&store, &id, now).await }
                        },
                        |id, row| Event::RemoteSubscription { id, row },
                    )
                    .await;
                if !sent {
                    return;
                }
                for aor in pending.round() {
                    if events.send(Event::RemoteStored { aor }).await.is_err() {
                        return;
                    }
                }
                let spent = u64::try_from(polled_at.elapsed().as_micros()).unwrap_or(u64::MAX);
                for age in ages {
                    metrics.pool_change_lag.observe(age.saturating_add(spent));
                }
            }
        });
    }

    /// The other nodes' bindings of `aor` as the store holds them now.
    pub(crate) async fn remote_bindings(
        &mut self,
        aor: String,
        list: Vec<Binding>,
        read_at: Instant,
    ) {
        let before = self.location.is_registered(&aor, unix_now());
        // This node's own bindings of `aor` that the store no longer holds
        // were removed by another node (a Contact: * there, an
        // administrator) — unless a write of ours was under way or ended
        // after the read began, when the store may not show it yet.
        let settled = self
            .binding_writes
            .get(&aor)
            .is_none_or(|(in_flight, done)| *in_flight == 0 && *done < read_at);
        if self.location.replace_remote(&aor, list, settled) {
            // Own bindings the store no longer shows were kept because a
            // write of ours may not be in the read: read again at the next
            // round (within half a second), by which time it is.
            if let Some(tx) = &self.pool.reread {
                if tx.try_send(aor.clone()).is_err() {
                    tracing::debug!(aor = %aor, "too many bindings waiting to be read again; this one waits for its next change");
                }
            }
        }
        let after = self.location.is_registered(&aor, unix_now());
        if before != after || after {
            self.presence_changed(&aor);
        }
        self.flush().await;
    }

    /// Another node stored a message for `aor`: delivered from here if the
    /// user has a binding on this node.
    pub(crate) fn remote_stored(&mut self, aor: String) {
        // Noted whoever holds the user now: when they register here later,
        // the registration reads what waits (a message another node stored
        // for a user registered nowhere was left undelivered when the user
        // then registered here). A change that was a delivery elsewhere
        // costs that registration one read finding nothing.
        *self.waiting.entry(aor.clone()).or_insert(0) += 1;
        let own = self
            .location
            .lookup(&aor, unix_now())
            .iter()
            .any(|(b, _)| !self.location.is_remote(b));
        if own {
            self.start_delivery(aor);
        }
    }

    /// A write of `aor`'s bindings by this node begins (`true`) or ends.
    pub(crate) fn binding_write(&mut self, aor: &str, begins: bool) {
        if self.pool.node.is_empty() {
            return;
        }
        let now = Instant::now();
        let e = self
            .binding_writes
            .entry(aor.to_owned())
            .or_insert((0, now));
        if begins {
            e.0 += 1;
        } else {
            e.0 = e.0.saturating_sub(1);
            e.1 = now;
        }
    }

    /// Forgets the writes that ended long before any read still under way
    /// could have begun (housekeeping).
    pub(crate) fn forget_binding_writes(&mut self) {
        let long_ago = Duration::from_secs(60);
        self.binding_writes
            .retain(|_, (in_flight, done)| *in_flight > 0 || done.elapsed() < long_ago);
    }

    /// The serving nodes, read again: connections opened to new ones.
    pub(crate) fn pool_nodes(&mut self, rows: Vec<NodeRow>) {
        let me = self.pool.node.clone();
        // The per-source rate limits hold across the pool: each serving
        // node enforces its share, so a source spreading its requests over
        // every node gets no more than from one node alone.
        let serving = rows
            .iter()
            .filter(|r| r.state == "serving" && r.lease_left_ms > 0)
            .count();
        if serving != self.pool.serving {
            tracing::info!(
                nodes = serving,
                "serving nodes: each enforces that share of the per-source rate limits"
            );
            self.pool.serving = serving;
            self.rate.share(serving);
        }
        let peers: HashMap<String, SocketAddr> = rows
            .iter()
            .filter(|r| r.state == "serving" && r.lease_left_ms > 0 && r.id != me)
            .filter_map(|r| Some((r.id.clone(), tls_listener(&r.address)?)))
            .collect();
        for gone in self.pool.peers.keys().filter(|k| !peers.contains_key(*k)) {
            tracing::info!(node = %gone, "a node of the pool is no longer serving");
        }
        // Nodes declared dead or stopped: their subscriptions are taken
        // over (by whichever serving node claims each first).
        // Rows naming no node (written before the pool's nodes all
        // served) are claimed with them: once after the start.
        let stopped: HashSet<String> = rows
            .iter()
            .filter(|r| r.state != "serving" && r.id != me)
            .map(|r| r.id.clone())
            .chain(std::iter::once(String::new()))
            .collect();
        self.pool.claimed_from.retain(|n| stopped.contains(n));
        if stopped.iter().any(|n| !self.pool.claimed_from.contains(n)) {
            self.claim_subscriptions(stopped);
        }
        self.pool.peers = peers;
        let live = |f: FlowId| self.transport.flow_local(f).is_some();
        let stale: Vec<String> = self
            .pool
            .links
            .iter()
            .filter(|(n, f)| !self.pool.peers.contains_key(*n) || !live(**f))
            .map(|(n, _)| n.clone())
            .collect();
        for n in stale {
            self.pool.links.remove(&n);
        }
        let Some(config) = self.pool.setup.dial.clone() else {
            return;
        };
        let Ok(server_name) =
            rustls_pki_types::ServerName::try_from(self.pool.setup.server_name.clone())
        else {
            return;
        };
        let due: Vec<(String, SocketAddr)> = self
            .pool
            .peers
            .iter()
            .filter(|(n, _)| !self.pool.links.contains_key(*n))
            .filter(|(n, _)| {
                self.pool
                    .dialing
                    .get(*n)
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(5))
            })
            .map(|(n, a)| (n.clone(), *a))
            .collect();
        for (node, addr) in due {
            self.pool.dialing.insert(node.clone(), Instant::now());
            let (transport, events) = (self.transport.clone(), self.events_tx.clone());
            let tls = sip_transport::ClientTls {
                config: config.clone(),
                server_name: server_name.clone(),
            };
            tokio::spawn(async move {
                // A link between nodes carries many users' traffic.
                let flow = match transport.open_wide(addr, Some(tls)).await {
                    Ok(f) => Some(f),
                    Err(e) => {
                        static FAILED: sip_transport::logging::RateLimited =
                            sip_transport::logging::RateLimited::new();
                        if let Some(suppressed) = FAILED.allow() {
                            tracing::warn!(%node, %addr, error = %e, suppressed, "cannot reach a node of the pool");
                        }
                        None
                    }
                };
                let _ = events.send(Event::PoolDialed { node, flow }).await;
            });
        }
    }

    /// A connection to another node opened (or not).
    pub(crate) fn pool_dialed(&mut self, node: String, flow: Option<FlowId>) {
        self.pool.dialing.remove(&node);
        if let Some(f) = flow {
            tracing::info!(%node, "connected to a node of the pool");
            self.pool.links.insert(node, f);
        }
    }

    /// How to reach a binding another node holds: over the connection to
    /// that node, with the Route entry naming the binding there.
    pub(crate) fn remote_target(
        &self,
        b: &Binding,
        call_id: &str,
    ) -> Option<(Protocol, Target, String)> {
        let at = *self.pool.peers.get(&b.node)?;
        let flow = self.pool.link(&b.node)?;
        self.transport.flow_local(flow)?;
        let route = route_to(at, b, call_id, &self.pool_routes);
        Some((Protocol::Tls, Target::Flow(flow), route))
    }

    /// A request from another node for a binding this node holds (its top
    /// Route entry, ours, names the binding): sent on to the client.
    /// `None` when the request is not one (it is handled as any other).
    pub(crate) async fn pool_request(&mut self, r: &Req<'_>) -> Option<()> {
        let from = self.pool.classify(r.src)?.to_owned();
        let named = top_route_binding(r.msg, |u| self.is_our_route(u))?;
        let (aor, key) = (named.aor, named.key);
        // The node's certificate is not enough: the entry must carry the
        // pool's token for this binding on this node in this dialog.
        if !self
            .pool_routes
            .verify(&named.token, &self.pool.node, &aor, &key, r.f.call_id)
        {
            static FORGED: sip_transport::logging::RateLimited =
                sip_transport::logging::RateLimited::new();
            if let Some(suppressed) = FORGED.allow() {
                tracing::warn!(node = %from, source = %r.src.remote, suppressed, "a request from a node of the pool named a binding without the pool's token for it (is its keys/ directory the pool's?); refused");
            }
            self.reply(r, 403, "Forbidden (Invalid Pool Route)", &[])
                .await;
            return Some(());
        }
        let found = self
            .location
            .lookup(&aor, unix_now())
            .into_iter()
            .find(|(b, _)| b.key == key && !self.location.is_remote(b));
        let hop = found.and_then(|(b, flow)| {
            let (proto, target) = self.target_for(&b, flow)?;
            Some(Hop {
                proto,
                target,
                request_uri: None,
                routes: b.path.clone(),
                pop_routes: 1,
                flow: match target {
                    Target::Flow(f) => Some(f.0),
                    Target::Udp { .. } => flow.map(|f| f.0),
                },
            })
        });
        let Some(hop) = hop else {
            self.reply(r, 480, "Temporarily Unavailable", &[]).await;
            return Some(());
        };
        let timeout = self.build(r, 408, "Request Timeout", &[]);
        let kind = ForkKind::Relay {
            server: r.id,
            method: crate::metrics::method_label(r.f.method),
            timeout,
        };
        let dialog = matches!(r.f.method, sip::Method::Invite | sip::Method::Subscribe)
            && r.f.to.tag().is_none();
        let from = dialog.then_some(r.src);
        if self.start_fork(kind, r.msg, Some(r.f), vec![hop], from) == 0 {
            self.reply(r, 480, "Temporarily Unavailable", &[]).await;
            return Some(());
        }
        self.flush().await;
        Some(())
    }
}

/// The binding the top Route entry names, if the entry is ours and
/// carries one.
fn top_route_binding(msg: &Message, ours: impl Fn(&sip::uri::SipUri<'_>) -> bool) -> Option<Named> {
    let route = msg.list::<Route>().next()?.ok()?;
    let Uri::Sip(u) = route.uri else { return None };
    if !ours(&u) {
        return None;
    }
    binding_of(u.user?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(aor: &str, key: &str) -> Binding {
        Binding {
            aor: aor.into(),
            key: key.into(),
            contact: "sip:a@192.0.2.1".into(),
            q: 1000,
            expires_at: 0,
            call_id: String::new(),
            cseq: 1,
            path: Vec::new(),
            source: "udp:192.0.2.1:5060".into(),
            user_agent: None,
            node: "fe-b".into(),
        }
    }

    #[test]
    fn a_route_entry_names_the_binding_it_was_made_for() {
        let b = binding("sip:alice@example.com", "<urn:uuid:1>|1");
        let keys = PoolRoutes::new(&[3; 32]);
        let entry = route_to("127.0.0.3:5061".parse().unwrap(), &b, "c1@x", &keys);
        let na = sip::headers::NameAddr::parse(&entry).unwrap();
        let Uri::Sip(u) = na.uri else { panic!() };
        let named = binding_of(u.user.unwrap()).unwrap();
        assert_eq!((&*named.aor, &*named.key), (&*b.aor, &*b.key));
        // The token vouches for this binding on its node in this dialog.
        assert!(keys.verify(&named.token, "fe-b", &b.aor, &b.key, "c1@x"));
        assert!(!keys.verify(&named.token, "fe-a", &b.aor, &b.key, "c1@x"));
        assert!(!keys.verify(&named.token, "fe-b", &b.aor, &b.key, "c2@x"));
        assert_eq!(binding_of("alice"), None);
        assert_eq!(binding_of("pb.zz.00.t"), None);
        assert_eq!(binding_of("pb.616"), None);
        // Without a token, or with more than one part after it: nothing.
        assert_eq!(binding_of("pb.61.62"), None);
        assert_eq!(binding_of("pb.61.62.t.u"), None);
        assert!(binding_of("pb.61.62.t").is_some());
    }

    #[test]
    fn keys_beyond_a_round_wait_for_the_next_and_each_is_read_once() {
        let mut b = Backlog::default();
        for i in 0..READS_PER_ROUND + 10 {
            b.push(format!("k{i}"));
            b.push(format!("k{i}"));
        }
        let first = b.round();
        assert_eq!(first.len(), READS_PER_ROUND);
        assert_eq!(first[0], "k0");
        // Changed again while waiting: still once.
        b.push(format!("k{}", READS_PER_ROUND + 3));
        let second = b.round();
        assert_eq!(second.len(), 10);
        assert!(b.round().is_empty());
        // Read, then changed again: read again.
        b.push("k0".into());
        assert_eq!(b.round(), vec!["k0".to_string()]);
    }

    #[test]
    fn a_node_is_dialled_only_on_a_listener_bound_to_one_address() {
        assert_eq!(
            tls_listener("udp://127.0.0.2:5060 tls://127.0.0.2:5061"),
            Some("127.0.0.2:5061".parse().unwrap())
        );
        assert_eq!(tls_listener("udp://0.0.0.0:5060 tls://0.0.0.0:5061"), None);
        assert_eq!(tls_listener("udp://127.0.0.2:5060"), None);
    }
}
