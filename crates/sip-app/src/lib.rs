//! # parapet-sip-app: the SIP application
//!
//! Routing, registration, instant messages (with offline delivery), calls,
//! presence and overload control: everything `parapet serve` does with a SIP
//! message once the transport has parsed it. It knows no HTTP: the admin and
//! user APIs reach it through [`command::AdminCmd`] on a bounded channel, and
//! it reaches storage only through the `store` traits ([`store::Store`]).
//!
//! [`Core`] is one task that owns the transaction layer, the location
//! service, the user table and the lockout filter, so none of them needs a
//! lock. Work that waits (database writes, user reloads) runs in separate,
//! bounded tasks that report back through an event channel.
#![forbid(unsafe_code)]

mod admin;
mod archive;
mod authn;
pub mod authn_http;
mod call;
mod cdr;
pub mod change_lag;
pub mod command;
mod dialog_content;
mod dispatch;
mod edge_traces;
pub mod edges;
mod federate;
mod files;
mod fork;
mod housekeeping;
pub mod identity;
mod im;
mod lockout_state;
mod media;
mod media_answer;
pub mod metrics;
mod org_certs;
mod overload;
pub mod policy_set;
pub mod pool;
mod presence;
mod priority;
pub use auth::ratelimit;
mod refusals;
mod register;
mod relay_link;
mod routing;
pub mod users;
mod writes;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use auth::secret::SecretKey;
use bytes::Bytes;
use sip::build::{via_received_for, ResponseBuilder};
use sip::{Message, RequestFields, Uri};
use sip_transport::{Inbound, Protocol, Source, Target, Transport};
use sip_txn::{Action, TxnId, TxnLayer};

use tokio::sync::mpsc;
use tracing::Instrument;

pub use authn::PasswordCheck;
pub use federate::{Explanation, FederationSetup, PartnerRow};
pub use im::rfc3339;

/// How users' devices sign in with certificates: the registry of valid
/// (and revoked) ones, and the organisation's CA if one is configured.
#[derive(Debug, Clone)]
pub struct DeviceTrust {
    pub registry: Arc<pki::registry::Registry>,
    pub org: Option<Arc<pki::byo::OrgTrust>>,
}

use config::Config;

use crate::command::AdminCmd;
use crate::metrics::{method_label, Metrics};
use crate::policy_set::PolicySet;
use crate::users::UserCache;

/// Work finished outside the core task.
#[derive(Debug)]
pub(crate) enum Event {
    /// Send this response through server transaction `id`.
    Respond {
        id: TxnId,
        method: &'static str,
        status: u16,
        bytes: Bytes,
    },
    /// The user table, reloaded (`None`: unchanged).
    Users(Option<UserCache>),
    /// The policy snapshot, reloaded (`None`: unchanged).
    Policies(Option<PolicySet>),
    /// A registration could not be stored: forget these bindings again.
    Unbind { aor: String, keys: Vec<String> },
    /// A registration was stored: deliver what waits for the user.
    Registered { aor: String },
    /// A message for `aor` was stored for later delivery.
    Enqueued { aor: String },
    /// The next stored message for `aor` (`None`: none left).
    Stored {
        aor: String,
        next: Option<store::PendingMessage>,
    },
    /// A PUBLISH was stored (or not).
    Published(Box<presence::publish::Published>),
    /// A SUBSCRIBE was stored (or not).
    Subscribed(Box<presence::subscribe::Subscribed>),
    /// The machine's interface addresses, listed again.
    Interfaces(Vec<std::net::IpAddr>),
    /// A connection to a partner's server was opened, or could not be.
    Partner {
        domain: String,
        result: Result<sip_transport::FlowId, federate::ConnectFailure>,
    },
    /// A MESSAGE's file offer was checked against the files' records.
    FileChecked(Box<files::Waiting>),
    /// A connection to a paired edge's internal listener was opened, or
    /// could not be.
    EdgeDialed {
        name: String,
        flow: Option<sip_transport::FlowId>,
    },
    /// The lockout state was saved (`Some`: it was not; these entries are
    /// to be saved again).
    LockoutsSaved(Option<Vec<auth::lockout::EntryKey>>),
    /// Another node of the pool changed users or policies: the versions
    /// are to be read now.
    VersionsChanged,
    /// Another node of the pool paired or unpaired an edge.
    EdgesChanged,
    /// The paired edges, loaded again.
    EdgesLoaded(edges::EdgeSetup),
    /// Another node of the pool changed the bindings of `aor`: what the
    /// store holds now.
    RemoteBindings {
        aor: String,
        list: Vec<store::Binding>,
        /// When the read began.
        read_at: Instant,
    },
    /// Another node stored a message for `aor`.
    RemoteStored { aor: String },
    /// Another node changed the publications of `aor`: what the store
    /// holds now.
    RemotePublications {
        aor: String,
        rows: Vec<store::PublicationRow>,
    },
    /// Another node changed the contact list of `owner`: what the store
    /// holds now.
    RemoteContacts {
        owner: String,
        rows: Vec<store::ContactRow>,
    },
    /// Another node saved the lockout state of `account`: what the store
    /// holds now.
    RemoteLockouts {
        account: String,
        rows: Vec<store::LockoutRow>,
    },
    /// Another node changed subscription `id` (took it over, refreshed or
    /// ended it): its row as the store holds it now.
    RemoteSubscription {
        id: String,
        row: Option<store::SubscriptionRow>,
    },
    /// The row of a subscription another node served, read for a
    /// SUBSCRIBE in its dialog that reached this node.
    SubscriptionRead(Box<presence::moved::Adopting>),
    /// The subscriptions of nodes no longer serving (`from`), claimed
    /// for this node (`Err`: the claim failed; tried again).
    SubscriptionsClaimed {
        from: std::collections::HashSet<String>,
        /// The most asked for.
        limit: usize,
        rows: Result<Vec<store::SubscriptionRow>, ()>,
    },
    /// The pool's nodes, read again.
    Nodes(Vec<store::NodeRow>),
    /// A connection to another node was opened, or could not be.
    PoolDialed {
        node: String,
        flow: Option<sip_transport::FlowId>,
    },
}

/// Whether user-API session `session` of `aor` is still signed in (and
/// not expired): web clients' relay credentials are good only while it
/// is. A store that cannot say is taken as no.
pub async fn session_live<S: store::Store>(store: &S, aor: &str, session: &str) -> bool {
    matches!(
        store::UserSessions::user_session(store, session).await,
        Ok(Some((row, true))) if row.aor == aor && row.expires_at > unix_now()
    )
}

/// The secrets the SIP application works with, from the data directory.
#[derive(Clone)]
pub struct Keys {
    /// Seals the users' digest secrets at rest.
    pub seal: [u8; 32],
    /// Keys nonces and flow tokens.
    pub nonce: [u8; 32],
    /// The IM archive's key directory (`None`: it could not be opened).
    pub archive: Option<Arc<::archive::Keyring>>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Methods this server handles (the Allow header).
const ALLOW: &str =
    "REGISTER, OPTIONS, MESSAGE, INVITE, ACK, BYE, CANCEL, UPDATE, INFO, SUBSCRIBE, PUBLISH";

/// Option tags this server supports (RFC 5626 outbound, RFC 3327 Path).
pub(crate) const SUPPORTED: &[&str] = &["outbound", "path"];

pub struct Core<S> {
    cfg: Arc<Config>,
    transport: Transport,
    txn: TxnLayer<Target>,
    location: registrar::Location,
    verifier: auth::digest::Verifier,
    filter: auth::lockout::SecurityFilter,
    users: UserCache,
    seal: Arc<SecretKey>,
    store: S,
    events_tx: mpsc::Sender<Event>,
    events_rx: mpsc::Receiver<Event>,
    writes: writes::Writes,
    reloading: bool,
    out: Vec<Action<Target>>,
    tag_seq: u64,
    forks: HashMap<u64, fork::Fork>,
    by_client: HashMap<TxnId, u64>,
    next_fork: u64,
    branch_seq: u64,
    /// Random per process: makes branches and Call-IDs unique across restarts.
    boot_id: String,
    /// Users whose stored messages are being handed over right now.
    delivering: HashSet<String>,
    /// Stored messages per recipient, so that a registration with nothing
    /// waiting (nearly all of them) costs no database read.
    waiting: HashMap<String, u64>,
    metrics: Arc<Metrics>,
    rate: ratelimit::RateLimiter,
    flow_tokens: auth::flow_token::FlowTokens,
    /// Signs and checks the Route entries naming a binding another node
    /// of the pool holds (`pool`).
    pool_routes: auth::flow_token::PoolRoutes,
    /// Server transaction → the fork relaying it (for CANCEL).
    server_fork: HashMap<TxnId, u64>,
    /// Key of the loop-detection hash in forwarded branches.
    loop_keys: std::collections::hash_map::RandomState,
    /// `z9hG4bK` and the boot id: the start of every branch we generate.
    branch_prefix: String,
    started: Instant,
    /// The policy snapshot decisions read; replaced whole on change.
    pub(crate) policies: PolicySet,
    /// The IM archive's writer and the messages noted for it.
    pub(crate) archive: archive::Archiver,
    /// A retention run is under way.
    pub(crate) archive_purging: Arc<std::sync::atomic::AtomicBool>,
    last_archive_purge: Instant,
    /// Trace searches waiting for edges' answers.
    edge_traces: crate::edge_traces::Pending,
    /// The calls being followed for their detail records.
    pub(crate) cdr: cdr::Calls,
    last_cdr_purge: Instant,
    /// Each user's IM filter as the policies in force say (`[internal,
    /// federated]`), built at first use; emptied when policies change.
    /// At most two entries per user.
    pub(crate) im_rules: HashMap<String, [Option<Option<Arc<content::im_filter::Rules>>>; 2]>,
    reloading_policies: bool,
    /// A save of the lockout filter's state is under way.
    saving_lockouts: bool,
    /// Administrators' clearings answered when the next save lands (the
    /// API asks one at a time per request; bounded by its connections).
    lockout_waiters: Vec<(tokio::sync::oneshot::Sender<Result<usize, String>>, usize)>,
    last_lockout_purge: Instant,
    /// Publications, subscriptions and contact lists.
    pub(crate) presence: presence::PresenceState,
    /// SUBSCRIBEs per watcher.
    pub(crate) subscribe_rate: ratelimit::RateLimiter<String>,
    last_presence_purge: Instant,
    /// The names and addresses this server answers to.
    pub(crate) identity: crate::identity::Identity,
    last_interfaces: Instant,
    refusals: refusals::Refusals,
    /// Messages waiting in the inbound queue when the current one was taken.
    inbound_depth: usize,
    /// Messages taken from the transport's queue while it is nearly full,
    /// the first lane served first (`priority`).
    lanes: priority::Lanes,
    queue_delay: overload::QueueDelay,
    /// While pressure builds: the location service's `source_seq` when it
    /// began (sources registered later are not familiar).
    pressure_seq: Option<u64>,
    /// Partners' connections and requests waiting for them.
    fed: federate::FedState,
    /// The other nodes of the pool (a shared store).
    pool: pool::Pool,
    /// In a pool whose nodes all serve: per AOR, this node's writes of its
    /// bindings under way and when the last one ended (`pool`).
    binding_writes: HashMap<String, (u32, Instant)>,
    /// The pool's paired edges and their connections.
    pub(crate) edges: edges::Edges,
    /// Turns the store's paired edges into what the core knows them by
    /// (the server's: certificates and keys), for pairings another node of
    /// the pool made or ended.
    edge_loader: Option<edges::EdgeLoader>,
    /// The sign-in outcome of the request being handled, told to the edge
    /// it came through (its security filter counts it).
    pub(crate) edge_outcome: edges::Outcome,
    /// For the request being handled, when it came through an edge from a
    /// partner's server: what that server's certificate speaks for.
    pub(crate) edge_partner: Option<Arc<federation::identity::Identities>>,
    /// The certificate a remote client presented at the edge that relayed
    /// the request being handled (its SHA-256), if any.
    pub(crate) edge_device: Option<[u8; 32]>,
    /// The device certificates valid now (shared with the TLS listeners'
    /// check and the APIs that issue them).
    pub(crate) devices: Arc<pki::registry::Registry>,
    /// The organisation's CA for users' certificates (bring your own PKI).
    pub(crate) org: Option<Arc<pki::byo::OrgTrust>>,
    /// Per connection, the user an organisation's certificate names (or
    /// why none), decided at its first request.
    pub(crate) org_flows: HashMap<sip_transport::FlowId, Result<String, String>>,
    /// When each device's sign-in was last written to the store.
    pub(crate) device_seen: HashMap<[u8; 32], Instant>,
    /// The media relay's shared table of calls and revocations (`None`:
    /// no relay runs).
    pub(crate) relay: Option<Arc<relay::Control>>,
    /// The relays' shared state, whether or not one runs here: users whose
    /// access ended (for this server's relay and, in the snapshot, the
    /// edges'), and the edges' relays the user API hands browsers.
    pub(crate) relay_control: Arc<relay::Control>,
}

impl<S> std::fmt::Debug for Core<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Core(domain={})", self.cfg.domain)
    }
}

/// The content type of the archive's file transfer records.
pub fn archive_file_transfer_type() -> &'static str {
    archive::FILE_TRANSFER
}

impl<S: store::Store> Core<S> {
    /// Tells the core how to reach the other nodes of its pool (a shared
    /// store only).
    pub fn set_pool(&mut self, setup: pool::PoolSetup) {
        let node = self.location.node().to_owned();
        // Connections from the other nodes carry many users' traffic: a
        // certificate of the pool's CA naming a node gets the wide queues
        // (only a serving node's is then taken for one: `pool`).
        if let Some(ca) = setup.own_ca.clone() {
            self.transport
                .wide_peers()
                .set_rule(Some(std::sync::Arc::new(move |leaf: &[u8]| {
                    federation::identity::uri_after(leaf, pool::NODE_URI_PREFIX).is_some()
                        && federation::identity::issued_by(leaf, &ca)
                })));
        }
        self.pool.set(&node, setup);
    }

    /// How to load the paired edges again when another node of the pool
    /// pairs or unpairs one.
    pub fn set_edge_loader(&mut self, loader: edges::EdgeLoader) {
        self.edge_loader = Some(loader);
    }

    /// Tells the core the relays' shared state, and whether a relay runs
    /// here (`local`: the calls the proxy relays are recorded for it).
    pub fn set_relay(&mut self, control: Arc<relay::Control>, local: bool) {
        self.relay = local.then(|| control.clone());
        self.cdr.relay = Some(control.clone());
        self.relay_control = control;
    }
}

impl<S: store::Store> Core<S> {
    /// The archive's and call records' writers: a clean stop drops the
    /// core (ending their queues) and waits for them, so that nothing
    /// handed to them is lost.
    pub fn take_writers(&mut self) -> Vec<tokio::task::JoinHandle<()>> {
        self.archive
            .task
            .take()
            .into_iter()
            .chain(self.cdr.task.take())
            .collect()
    }

    pub async fn new(
        cfg: Arc<Config>,
        keys: &Keys,
        store: S,
        transport: Transport,
        metrics: Arc<Metrics>,
        federation: Option<FederationSetup>,
        devices: DeviceTrust,
    ) -> Result<Core<S>, String> {
        if let Some(days) = cfg.legacy_cdr_retention_days {
            tracing::warn!(
                days,
                "monitoring.cdr_retention_days now applies only to usage records written before this version; the archiving policy's usage_retention_days decides for the others: remove the setting once they are past it"
            );
        }
        // A pool's node whose archive key directory is not the pool's
        // starts no further (archive::keycheck).
        if let (config::Database::Postgres { .. }, Some(ring)) = (&cfg.database, &keys.archive) {
            archive::check_directory(&store, ring).await?;
        }
        let archive = archive::Archiver::start(
            keys.archive.clone(),
            store.clone(),
            metrics.clone(),
            archive::ContentDirs::in_data_dir(&cfg.data_dir),
        );
        let seal = Arc::new(SecretKey::from_bytes(&keys.seal).map_err(|_| "invalid sealing key")?);
        let users = UserCache::load(&store, &seal).await?;
        let policies = PolicySet::load(&store).await?;
        let cdr = cdr::Calls::start(
            store.clone(),
            metrics.clone(),
            policies.clone(),
            &cfg.domain,
        );
        let mut location = registrar::Location::new(cfg.registrar);
        // In a pool whose nodes all serve, bindings name the node holding
        // their flow, and following the other nodes starts before anything
        // is loaded, so that nothing they commit meanwhile is missed.
        if matches!(
            cfg.database,
            config::Database::Postgres { active: true, .. }
        ) {
            let node = store::Store::node_identity(&store)
                .map(|(id, _)| id)
                .unwrap_or_default();
            location.set_node(&node);
            store::Store::follow_start(&store)
                .await
                .map_err(|e| e.to_string())?;
        }
        let live = store::Bindings::live_bindings(&store, unix_now())
            .await
            .map_err(|e| e.to_string())?;
        // A binding made over a connection is reachable only over that
        // connection, which did not outlive the previous process: its client
        // registers again when it reconnects. Until then the user is not
        // shown as registered, and messages for them are stored.
        // Another node's are its own: their flows live there.
        let (live, orphaned): (Vec<_>, Vec<_>) = live.into_iter().partition(|b| {
            location.is_remote(b) || fork::source_protocol(&b.source) == Some(Protocol::Udp)
        });
        if !orphaned.is_empty() {
            tracing::info!(
                bindings = orphaned.len(),
                "registrations over connections from before the restart dropped; their clients register again when they reconnect"
            );
            let store = store.clone();
            tokio::spawn(async move {
                for b in orphaned {
                    let _ = store::Bindings::remove_binding_from(&store, &b.aor, &b.key, &b.source)
                        .await;
                }
            });
        }
        // Bindings that expired while the server was down (those that expire
        // while it runs are removed by key as the registrar sees them go).
        {
            let store = store.clone();
            let now = unix_now();
            tokio::spawn(async move {
                match store::Bindings::purge_expired_bindings(&store, now).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(bindings = n, "expired registrations purged at start"),
                    Err(e) => tracing::warn!(error = %e, "could not purge expired bindings"),
                }
            });
        }
        // Lockouts and failure counts from before the restart (or from the
        // node this one took over from) still hold.
        let mut filter = auth::lockout::SecurityFilter::saved(cfg.lockout);
        let saved = store::Lockouts::lockouts(&store)
            .await
            .map_err(|e| e.to_string())?;
        let restored = saved.len();
        filter.restore(
            lockout_state::entries(saved),
            u64::try_from(unix_now()).unwrap_or(0),
        );
        let waiting: HashMap<String, u64> = store::Messages::pending_recipients(&store)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .collect();
        tracing::info!(
            users = users.len(),
            bindings = live.len(),
            recipients_with_stored_messages = waiting.len(),
            lockout_entries = restored,
            "state loaded"
        );
        location.load(live);
        let state = presence::load(&store, unix_now(), location.node()).await?;
        let (events_tx, events_rx) = mpsc::channel(1024);
        let cfg_rate = (cfg.unauthenticated_rate, cfg.unauthenticated_burst);
        let random = SecretKey::generate().map_err(|_| "system random generator failed")?;
        let boot_id: String = random[..6].iter().map(|b| format!("{b:02x}")).collect();
        let branch_prefix = format!("z9hG4bK{boot_id}");
        let txn_cfg = sip_txn::Config {
            max_transactions: cfg.max_transactions,
            max_completed_bytes: cfg.max_completed_bytes,
            ..sip_txn::Config::default()
        };
        let identity = identity_of(&cfg, &transport, &crate::identity::interface_addrs());
        Ok(Core {
            devices: devices.registry,
            org: devices.org,
            org_flows: HashMap::new(),
            device_seen: HashMap::new(),
            relay: None,
            relay_control: Arc::new(relay::Control::new()),
            fed: federate::FedState::new(federation),
            pool: pool::Pool::default(),
            binding_writes: HashMap::new(),
            edges: edges::Edges::default(),
            edge_loader: None,
            edge_outcome: edges::Outcome::default(),
            edge_partner: None,
            edge_device: None,
            identity,
            last_interfaces: Instant::now(),
            refusals: refusals::Refusals::default(),
            inbound_depth: 0,
            lanes: priority::Lanes::default(),
            queue_delay: overload::QueueDelay::new(cfg.overload_delay),
            pressure_seq: None,
            verifier: auth::digest::Verifier::new(
                &cfg.domain,
                &keys.nonce,
                300,
                100_000,
                &cfg.digest.algorithms,
            ),
            filter,
            cfg,
            transport,
            txn: TxnLayer::new(txn_cfg, Instant::now()),
            location,
            users,
            seal,
            store,
            events_tx,
            events_rx,
            writes: writes::Writes::new(),
            reloading: false,
            out: Vec::new(),
            tag_seq: 0,
            forks: HashMap::new(),
            by_client: HashMap::new(),
            next_fork: 0,
            branch_seq: 0,
            boot_id,
            delivering: HashSet::new(),
            waiting,
            metrics,
            flow_tokens: auth::flow_token::FlowTokens::new(&keys.nonce),
            pool_routes: auth::flow_token::PoolRoutes::new(&keys.nonce),
            server_fork: HashMap::new(),
            loop_keys: std::collections::hash_map::RandomState::new(),
            branch_prefix,
            rate: ratelimit::RateLimiter::new(cfg_rate.0, cfg_rate.1, 100_000),
            started: Instant::now(),
            policies,
            im_rules: HashMap::new(),
            reloading_policies: false,
            archive,
            cdr,
            last_cdr_purge: Instant::now()
                .checked_sub(cdr::PURGE_EVERY)
                .unwrap_or_else(Instant::now),
            archive_purging: Arc::default(),
            // The first retention run comes a few seconds after start.
            edge_traces: Default::default(),
            last_archive_purge: Instant::now()
                .checked_sub(archive::PURGE_EVERY - Duration::from_secs(5))
                .unwrap_or_else(Instant::now),
            saving_lockouts: false,
            lockout_waiters: Vec::new(),
            last_lockout_purge: Instant::now(),
            presence: state,
            subscribe_rate: ratelimit::RateLimiter::new(
                presence::SUBSCRIBE_RATE.0,
                presence::SUBSCRIBE_RATE.1,
                100_000,
            ),
            last_presence_purge: Instant::now(),
        })
    }

    /// Runs until the transport's channel closes.
    pub async fn run(
        mut self,
        mut inbound: mpsc::Receiver<Inbound>,
        mut admin: mpsc::Receiver<AdminCmd>,
    ) -> Result<(), String> {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut last_housekeeping = Instant::now();
        if let Ok(mut n) = self.metrics.node.lock() {
            *n = store::Store::node_identity(&self.store);
        }
        if self.pool.node.is_empty() && !self.location.node().is_empty() {
            // Active without a way to reach the others (the operator's
            // certificates): their changes are still followed.
            let node = self.location.node().to_owned();
            self.pool.set(&node, pool::PoolSetup::default());
        }
        self.start_pool_follower();
        // Everything is loaded (Core::new): from now on /healthz says so.
        self.metrics
            .ready
            .store(1, std::sync::atomic::Ordering::Relaxed);
        loop {
            tokio::select! {
                m = inbound.recv(), if self.lanes.is_empty() => match m {
                    Some(m) if inbound.len() + 1 >= overload::hard_queue() => {
                        // The queue nearly full: who goes first.
                        self.queue_in_lane(m);
                        self.take_waiting(&mut inbound);
                        self.next_in_lane(&inbound).await;
                    }
                    Some(m) => {
                        self.inbound_depth = inbound.len();
                        self.handle_inbound(m).await;
                    }
                    None => return Ok(()),
                },
                () = std::future::ready(()), if !self.lanes.is_empty() => {
                    if inbound.len() + self.lanes.len() >= overload::hard_queue() {
                        self.take_waiting(&mut inbound);
                    }
                    self.next_in_lane(&inbound).await;
                }
                Some(e) = self.events_rx.recv() => self.on_event(e).await,
                Some(cmd) = admin.recv() => self.on_admin(cmd),
                _ = tick.tick() => {
                    self.metrics.inbound_queue.store((inbound.len() + self.lanes.len()) as u64, std::sync::atomic::Ordering::Relaxed);
                    self.txn.poll(Instant::now(), &mut self.out);
                    for flow in self.transport.closed_flows() {
                        self.flow_closed(flow);
                    }
                    self.flush_due_notifies();
                    self.flush().await;
                    if last_housekeeping.elapsed() >= Duration::from_secs(1) {
                        last_housekeeping = Instant::now();
                        self.housekeeping();
                    }
                }
            }
        }
    }

    /// Handles the next message of the lanes (`priority`).
    async fn next_in_lane(&mut self, inbound: &mpsc::Receiver<Inbound>) {
        let Some(m) = self.lanes.pop() else { return };
        self.inbound_depth = inbound.len() + self.lanes.len();
        self.handle_inbound(m).await;
    }

    /// Handles `m`, taken from the transport's queue.
    async fn handle_inbound(&mut self, m: Inbound) {
        self.queue_delay
            .observe(m.received, Instant::now(), &self.writes);
        if !self.queue_delay.rising() {
            self.pressure_seq = None;
        } else if self.pressure_seq.is_none() {
            self.pressure_seq = Some(self.location.source_seq());
        }
        // Every line this message causes carries its transaction's id, the
        // same on each node and edge.
        let span = tracing::info_span!(
            "sip",
            corr = sip::correlation::id(&m.message).map(tracing::field::display)
        );
        self.on_inbound(m).instrument(span).await
    }

    async fn on_event(&mut self, e: Event) {
        match e {
            Event::Respond {
                id,
                method,
                status,
                bytes,
            } => self.respond_event(id, method, status, bytes).await,
            Event::Interfaces(addrs) => {
                let id = identity_of(&self.cfg, &self.transport, &addrs);
                if id != self.identity {
                    tracing::info!(endpoints = ?id.endpoints(), "the machine's addresses changed");
                    self.identity = id;
                }
            }
            Event::Users(fresh) => {
                self.reloading = false;
                if let Some(c) = fresh.filter(|c| c.version > self.users.version) {
                    self.install_users(c);
                }
            }
            Event::LockoutsSaved(failed) => self.lockouts_saved(failed),
            Event::VersionsChanged => self.check_versions(),
            Event::EdgesChanged => self.reload_edges(),
            Event::EdgesLoaded(setup) => self.install_edges(setup),
            Event::Policies(fresh) => {
                self.reloading_policies = false;
                if let Some(p) = fresh {
                    self.install_policies(p);
                }
            }
            Event::Unbind { aor, keys } => {
                self.binding_write(&aor, false);
                for k in keys {
                    self.location.remove(&aor, &k);
                }
                self.presence_changed(&aor);
                self.flush().await;
            }
            Event::Registered { aor } => {
                self.binding_write(&aor, false);
                self.presence_changed(&aor);
                self.start_delivery(aor);
                self.flush().await;
            }
            Event::Partner { domain, result } => self.partner_connected(domain, result).await,
            Event::EdgeDialed { name, flow } => self.edge_dialed(name, flow).await,
            Event::Published(p) => self.published(*p).await,
            Event::FileChecked(w) => self.file_checked(*w).await,
            Event::Subscribed(s) => self.subscribed(*s).await,
            Event::Enqueued { aor } => {
                *self.waiting.entry(aor).or_insert(0) += 1;
            }
            Event::Stored { aor, next } => {
                self.deliver(aor, next);
                self.flush().await;
            }
            Event::RemoteBindings { aor, list, read_at } => {
                self.remote_bindings(aor, list, read_at).await
            }
            Event::RemoteStored { aor } => {
                self.remote_stored(aor);
                self.flush().await;
            }
            Event::RemotePublications { aor, rows } => {
                self.remote_publications(aor, rows);
                self.flush_due_notifies();
                self.flush().await;
            }
            Event::RemoteContacts { owner, rows } => {
                self.contacts_replaced(&owner, &rows);
                self.flush_due_notifies();
                self.flush().await;
            }
            Event::RemoteLockouts { account, rows } => self.remote_lockouts(&account, rows),
            Event::RemoteSubscription { id, row } => {
                self.remote_subscription(&id, row);
                self.flush_due_notifies();
                self.flush().await;
            }
            Event::SubscriptionRead(a) => self.subscription_read(*a).await,
            Event::SubscriptionsClaimed { from, limit, rows } => {
                self.subscriptions_claimed(from, limit, rows);
                self.flush_due_notifies();
                self.flush().await;
            }
            Event::Nodes(rows) => self.pool_nodes(rows),
            Event::PoolDialed { node, flow } => self.pool_dialed(node, flow),
        }
    }

    /// A slot for one database write, or `None` once the request has been
    /// answered 503 (too many writes in flight).
    pub(crate) async fn write_permit(&mut self, r: &Req<'_>) -> Option<writes::WritePermit> {
        if let Some(p) = self.writes.try_acquire() {
            return Some(p);
        }
        self.reply(
            r,
            503,
            "Service Unavailable (Storage Busy)",
            &[("Retry-After", "1")],
        )
        .await;
        None
    }

    /// Sends a response prepared earlier through server transaction `id`.
    pub(crate) async fn respond_event(
        &mut self,
        id: TxnId,
        method: &'static str,
        status: u16,
        bytes: Bytes,
    ) {
        self.metrics.count_response(method, status);
        self.txn
            .respond(id, status, bytes, Instant::now(), &mut self.out);
        if method == "MESSAGE" {
            self.archive_answered(id, || match status {
                202 => "stored for later delivery".into(),
                s => format!("not stored {s}"),
            });
        }
        self.flush().await;
    }

    /// The sender's AOR and user part when From names a user of this domain.
    pub(crate) fn local_sender(&self, r: &Req<'_>) -> Option<(String, String)> {
        let Uri::Sip(from) = r.f.from.uri else {
            return None;
        };
        let user = from.user?;
        from.host
            .to_string()
            .eq_ignore_ascii_case(&self.cfg.domain)
            .then(|| (format!("sip:{user}@{}", self.cfg.domain), user.to_owned()))
    }

    /// The sender of a request only a local user may make (MESSAGE, INVITE,
    /// SUBSCRIBE), once proved (407): `None` once the request has been
    /// answered - relaying denied for a sender of another domain, or a
    /// challenge.
    pub(crate) async fn authenticated_sender(&mut self, r: &Req<'_>) -> Option<String> {
        let Some((aor, user)) = self.local_sender(r) else {
            self.relaying_denied(r, "the sender (From) is not a user of this domain")
                .await;
            return None;
        };
        self.authenticate(r, &aor, &user, authn::Challenger::Proxy)
            .await
            .then_some(aor)
    }

    /// 128 random bits in hex (entity tags, subscription dialog tags).
    pub(crate) fn random_id(&self) -> Option<String> {
        let k = SecretKey::generate().ok()?;
        Some(k[..16].iter().map(|b| format!("{b:02x}")).collect())
    }

    fn location_aors(&self) -> Vec<String> {
        self.location.aors()
    }

    pub(crate) fn next_tag(&mut self) -> String {
        self.tag_seq += 1;
        format!("pp{:x}{:x}", unix_now(), self.tag_seq)
    }

    /// Builds a response to the request (received/rport on the top Via, a To tag).
    pub(crate) fn build(
        &mut self,
        r: &Req<'_>,
        status: u16,
        reason: &str,
        extra: &[(&str, &str)],
    ) -> Bytes {
        let tag = self.next_tag();
        self.build_tagged(r, status, reason, extra, &tag)
    }

    /// [`Core::build`] with a given To tag (a dialog this server is part of).
    pub(crate) fn build_tagged(
        &self,
        r: &Req<'_>,
        status: u16,
        reason: &str,
        extra: &[(&str, &str)],
        tag: &str,
    ) -> Bytes {
        let (rcv, rport) = via_received_for(&r.f.top_via, r.src.remote);
        let mut b = ResponseBuilder::new(r.msg, status, reason).via_received(rcv, rport);
        if status > 100 {
            b = b.to_tag(tag);
        }
        if self.edges.is_edge(r.src.flow) {
            if let Some(outcome) = self.edge_outcome.take() {
                b = b.header(edges::EDGE_HEADER, outcome);
            }
        }
        for (n, v) in extra {
            b = b.header(n, v);
        }
        b.header("Server", concat!("Parapet/", env!("CARGO_PKG_VERSION")))
            .finish()
    }

    /// Answers the request through its server transaction.
    pub(crate) async fn reply(
        &mut self,
        r: &Req<'_>,
        status: u16,
        reason: &str,
        extra: &[(&str, &str)],
    ) {
        let bytes = self.build(r, status, reason, extra);
        self.metrics
            .count_response(method_label(r.f.method), status);
        self.txn
            .respond(r.id, status, bytes, Instant::now(), &mut self.out);
        if status >= 200 {
            self.archive_answered(r.id, || format!("refused {status}"));
            self.cdr_refused(r, status);
        }
        self.flush().await;
    }

    /// Carries out what the transaction layer asked for. A client transaction
    /// that timed out counts as a 408 on its branch, which may produce more
    /// actions; the loop runs until none are left.
    async fn flush(&mut self) {
        while !self.out.is_empty() {
            let actions = std::mem::take(&mut self.out);
            for a in actions {
                match a {
                    Action::Send { dest, bytes } => self.send(dest, bytes).await,
                    Action::Timeout { id } => self.branch_final(id, 408, None),
                    Action::Terminated { id } => {
                        self.by_client.remove(&id);
                        self.presence.notifies.remove(&id);
                    }
                }
            }
        }
    }

    async fn send(&self, target: Target, bytes: Bytes) {
        if let Err(e) = self.transport.send(target, bytes).await {
            tracing::debug!(error = %e, ?target, "send failed");
        }
    }
}

/// How often the machine's interface addresses are listed again.
const INTERFACES_EVERY: Duration = Duration::from_secs(30);

/// This server's identity from its configuration, its bound listeners and
/// the machine's addresses.
fn identity_of(
    cfg: &Config,
    transport: &Transport,
    interfaces: &[std::net::IpAddr],
) -> crate::identity::Identity {
    let listeners: Vec<_> = transport
        .local_addrs()
        .iter()
        .map(|(p, a, _)| (*p, *a))
        .collect();
    crate::identity::Identity::new(&cfg.domain, &cfg.host_names, &listeners, interfaces)
}

/// A request being handled: its transaction, message, fields and source.
#[derive(Clone, Copy)]
pub(crate) struct Req<'a> {
    pub(crate) id: TxnId,
    pub(crate) msg: &'a Message,
    pub(crate) f: &'a RequestFields<'a>,
    pub(crate) src: &'a Source,
    /// Leading Route entries naming this server (outside a dialog: a
    /// client's outbound-proxy route), removed when the request is forwarded.
    pub(crate) own_routes: usize,
}

impl<'a> Req<'a> {
    /// The same request (same transaction, same source) as `msg`: a copy
    /// the server changed, such as a MESSAGE whose body the IM filter
    /// rewrote.
    pub(crate) fn with<'b>(&self, msg: &'b Message, f: &'b RequestFields<'b>) -> Req<'b>
    where
        'a: 'b,
    {
        Req {
            id: self.id,
            msg,
            f,
            src: self.src,
            own_routes: self.own_routes,
        }
    }
}

/// Where responses to a request from `src` go: the connection it came on, or
/// for UDP the address it came from (RFC 3581 symmetric response).
pub(crate) fn reply_target(src: &Source) -> Target {
    match src.protocol {
        Protocol::Udp => Target::Udp {
            flow: src.flow,
            dest: src.remote,
        },
        _ => Target::Flow(src.flow),
    }
}
