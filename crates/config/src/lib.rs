//! # parapet-config: the configuration file
//!
//! Configuration in two phases: [`RawConfig`] as read from TOML and flags, then
//! [`Config`], validated, which the rest of the server uses. The example file
//! (`parapet config example`) is generated from [`KEYS`], and a test checks that
//! it parses back to the defaults.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

pub mod client_certs;
mod database;
pub mod edge;
mod federation;
mod files;
pub mod relay;
pub mod syslog;
mod trace;

pub use database::{database, Database, DatabaseUrl};
pub use federation::{FederationConfig, RawFederation, TrustSource, SYSTEM_CA_BUNDLE};
pub use files::{Clamd, RawFiles, Scanning};
pub use trace::{HepTarget, RawTrace, TraceConfig};

/// A listener URL: `tls://0.0.0.0:5061`, `wss://...`, `udp://...`, `tcp://...`, `ws://...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenUrl {
    pub scheme: Scheme,
    pub addr: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Udp,
    Tcp,
    Tls,
    Ws,
    Wss,
}

impl Scheme {
    /// Plain-text transports need `allow_insecure_transports`.
    pub fn is_insecure(self) -> bool {
        matches!(self, Scheme::Udp | Scheme::Tcp | Scheme::Ws)
    }
}

impl std::str::FromStr for ListenUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| format!("listen URL {s:?} needs a scheme, e.g. tls://0.0.0.0:5061"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "udp" => Scheme::Udp,
            "tcp" => Scheme::Tcp,
            "tls" => Scheme::Tls,
            "ws" => Scheme::Ws,
            "wss" => Scheme::Wss,
            other => {
                return Err(format!(
                    "listen URL {s:?}: unknown scheme {other:?} (use udp, tcp, tls, ws or wss)"
                ))
            }
        };
        let addr = rest
            .parse()
            .map_err(|_| format!("listen URL {s:?}: {rest:?} is not an address:port (e.g. 0.0.0.0:5061 or [::]:5061)"))?;
        Ok(ListenUrl { scheme, addr })
    }
}

impl std::fmt::Display for ListenUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self.scheme {
            Scheme::Udp => "udp",
            Scheme::Tcp => "tcp",
            Scheme::Tls => "tls",
            Scheme::Ws => "ws",
            Scheme::Wss => "wss",
        };
        write!(f, "{s}://{}", self.addr)
    }
}

/// Every configuration key: name, default (as TOML), and what it means.
pub const KEYS: &[(&str, &str, &str)] = &[
    ("domain", "\"localhost\"", "The SIP domain this server is authoritative for; also the digest realm and the name in the generated certificate."),
    ("data_dir", "\"/var/lib/parapet\"", "Where the database, keys and certificates live (created on first start, mode 0700)."),
    ("database", "\"\"", "Empty: the embedded SQLite database in data_dir. Or a PostgreSQL URL for a pool of front ends sharing one database: \"postgres://parapet:PASSWORD@db.example.com/parapet?sslrootcert=/etc/parapet/db-ca.pem\" (TLS with the server's certificate and name verified is the default and needs sslrootcert; sslmode=disable is plain text, a high finding in the security check; a Unix socket, host=/run/postgresql, needs no TLS). The role needs no privilege beyond owning its database (docs/POSTGRES.md)."),
    ("database_pool_size", "16", "Connections to PostgreSQL at most (1 to 512); a request waits up to 5 s for one, then fails with 503."),
    ("node_id", "\"\"", "With a PostgreSQL database: this node's name in the pool, unique among the nodes (1 to 64 letters, digits, '.', '-', '_'; empty: the machine's host name). The node holds a lease in the database under it (docs/POSTGRES.md). Not allowed with the embedded database."),
    ("pool_mode", "\"standby\"", "With a PostgreSQL database: \"standby\" — one node serves at a time, another started meanwhile waits and takes over when the lease lapses; \"active\" — every node serves at once, each following the others' registrations, stored messages, presence, contact lists and lockout state from the change log and reaching a client connected to another node through that node over mutual TLS (node certificates from the private CA, so every node needs pki/ copied; TLS listeners on an address of their own). In \"active\" mode a failed sign-in reaches the other nodes' lockout counters within a few tens of milliseconds, and each node enforces its share of the per-source rate limit (1/N with N serving nodes; docs/POSTGRES.md); the security view reports it. Every node of a pool must use the same mode: an active node refuses to join while a node serves in the standby mode (whose writes, followed by no one, are not written to the change log)."),
    ("node_address", "\"\"", "With a PostgreSQL database: the IP address the pool's other nodes (and the pairing file of an edge in front) dial this node's TLS listener at, when that listener is on a wildcard address (0.0.0.0 or [::]). Empty: the address this machine's route to the database server leaves from (the nodes share the database, so they reach this address as they reach it; the log says which was taken). A TLS listener on an address of its own is dialled at that address."),
    ("pool_apply_wait_ms", "5000", "In a pool whose nodes all serve (pool_mode = \"active\"): how long an admin API answer to a policy or user change waits for every other serving node to report it applied (0 to 60000 ms; they report within about two seconds). A node still behind when the wait ends is named in the answer's Parapet-Not-Applied header and in the log."),
    ("listen", "[\"tls://0.0.0.0:5061\", \"wss://0.0.0.0:8443\"]", "SIP listeners. udp://, tcp:// and ws:// are refused unless allow_insecure_transports is true."),
    ("admin_listen", "\"127.0.0.1:9060\"", "The admin listener: /healthz and /metrics, and the admin API under /v1 that `parapet admin` uses (bearer tokens, role-checked). Keep it on a loopback address."),
    ("web_listen", "\"0.0.0.0:4443\"", "The user listener (HTTPS, with the listeners' certificate): the user API under /user/v1 with which users manage their own contact lists and approve or deny watchers, signing in with their SIP password (the same lockout applies), and the self-service page at /. Empty: off."),
    ("ws_allowed_origins", "[]", "Web pages allowed to open SIP-over-WebSocket connections, checked against the Origin browsers send (other clients send none): host names (any https:// origin on that host), full origins (\"https://portal.example.com:8443\"), or \"*\" for any page (a finding in the security check). Empty: the server's own names — the domain, host_names, localhost, 127.0.0.1 and ::1."),
    ("allow_insecure_transports", "false", "Permit plain-text SIP listeners (benchmarks with SIPp need UDP). A warning is logged at start and shown by `parapet admin status`."),
    ("log_format", "\"text\"", "\"text\" or \"json\"."),
    ("log_syslog", "\"\"", "Also send every log line, as JSON, to a syslog receiver in RFC 5424 format (facility daemon): \"udp://127.0.0.1:514\" (an address, RFC 5426) or \"unix:///dev/log\". A line the receiver cannot take at once is dropped, never waited for; lines are cut at 8 KiB. Empty: off."),
    ("host_names", "[]", "Other DNS names clients and partners reach this server by (the targets of the domain's SRV records, e.g. \"sip.example.com\"). The server recognises itself by these, the domain, `localhost` and every address it listens on (for 0.0.0.0 and ::, every address of the machine) in Route and Request-URI; the certificate made on first start names them too."),
    ("digest_algorithms", "[\"SHA-256\", \"MD5\"]", "Digest algorithms challenged with, most preferred first (RFC 8760), and the only ones accepted. Clients that follow RFC 8760 (Linphone) answer the first they support; JsSIP and SIP.js answer the last one, and know only MD5. MD5 is accepted only over TLS and WSS (see digest_md5_unencrypted) and only for users whose authentication policy lists digest-md5 (the default)."),
    ("digest_md5_unencrypted", "false", "Also accept MD5 digest over unencrypted transports (UDP, TCP, WS), where an MD5 answer seen on the network can be attacked offline. For tools without TLS only (Debian's SIPp); `parapet security check` reports it as high."),
    ("digest_single_challenge_clients", "[\"baresip\", \"sipp\"]", "User-Agent prefixes (case-insensitive) of clients that fail when a response carries more than one challenge or one they cannot answer (baresip's libre, SIPp): they are challenged with MD5 alone wherever MD5 is accepted. The choice depends on the request only, never on the user."),
    ("tls_cert", "\"\"", "Bring your own PKI: PEM certificate chain for the listeners (empty: the generated one)."),
    ("tls_key", "\"\"", "The private key (PEM) for tls_cert."),
    ("registrar.min_expires", "60", "Shortest registration accepted, in seconds (423 below it)."),
    ("registrar.max_expires", "3600", "Longest registration granted, in seconds."),
    ("registrar.default_expires", "3600", "Registration lifetime when the client does not ask."),
    ("registrar.max_bindings", "8", "Registered endpoints per user."),
    ("im.max_bytes", "16384", "Largest instant message body accepted (MESSAGE); larger ones get 513 Message Too Large before any other work."),
    ("archive.keys_dir", "\"\"", "Where the IM archive's keys live, one file per day (mode 0600): a day's key is destroyed once retention has deleted that day's last record, so no copy of the database (its WAL, a backup, a replica) can be read for it again. Empty: keys/archive in data_dir. Never inside the database; with a pool of nodes on PostgreSQL, a directory every node mounts (docs/ARCHIVE.md)."),
    ("trace.max_mb", "256", "SIP traces: every message this server receives or sends is kept in a ring of files in trace.dir (mode 0600; credentials, SDES keys and instant messages' text cut before they are written), searched with `parapet admin trace`: at most this many megabytes (0: none kept on disk)."),
    ("trace.dir", "\"\"", "Where the trace ring is kept. Empty: data_dir/traces. On PostgreSQL each node keeps its ring in a directory of its own under this one, named after its node_id, and a search reads every node's: give the pool's nodes a directory they all mount, and `parapet admin trace` shows a call across them as one ladder — also the part a node that has since died or left handled."),
    ("trace.max_age_hours", "24", "SIP traces older than this are deleted (1 to 720)."),
    ("trace.hep", "\"\"", "Also send every SIP message to a HEP v3 collector (Homer), as Kamailio and OpenSIPS do: \"tls://homer.example.com:9061\" (over TLS, the collector's certificate checked against trace.hep_trusted_cas for that name; one connection, re-opened with back-off) or \"udp://192.0.2.10:9060\" (an address, not a name; unencrypted: keep such a collector on a trusted network). Empty: off."),
    ("trace.hep_trusted_cas", "[\"system\"]", "For a tls:// collector: the CAs its certificate may chain to, \"system\" (the operating system's roots) and/or paths of PEM files."),
    ("trace.hep_agent_id", "1", "The capture agent id this server puts in its HEP packets (tells the nodes of a pool apart in Homer)."),
    ("files.clamd", "\"\"", "Virus scanning of uploaded files by ClamAV's clamd (Debian clamav-daemon), over its INSTREAM protocol: the path of its local socket (\"/run/clamav/clamd.ctl\") or a loopback address:port (\"127.0.0.1:3310\"). When set, a file is kept and can be offered only once clamd finds it clean; a detection, a heuristic alert (limits exceeded, an encrypted archive) or an error counts as not clean (403), and clamd unreachable or too slow refuses the upload (503: fail closed). Empty: no scanning (a finding in the security check)."),
    ("files.scan_timeout_secs", "60", "How long clamd may take over one file before the upload is refused with 503 (1 to 3600)."),
    ("proxy.timer_c_secs", "185", "Timer C (RFC 3261 §16.6): a call ringing this long without a final answer is cancelled. Must exceed 180."),
    ("lockout.source_threshold", "5", "Failed sign-ins from one address for one account before that address is refused for it."),
    ("lockout.account_threshold", "50", "Failed sign-ins for one account from all addresses before unfamiliar addresses are refused."),
    ("lockout.window_secs", "600", "Failures older than this are forgotten."),
    ("lockout.base_backoff_secs", "600", "First lockout duration; doubles with each further lockout."),
    ("lockout.max_backoff_secs", "86400", "Longest lockout."),
    ("limits.max_message_size", "65536", "Largest SIP message accepted, in bytes."),
    ("limits.max_connections_per_ip", "32", "Open connections from one address."),
    ("limits.max_transactions", "100000", "SIP transactions in progress at once; beyond, 503 with Retry-After. Answered non-INVITE requests do not count (see max_completed_bytes)."),
    ("limits.overload_delay_ms", "50", "How long received messages may wait for the SIP core: when every message has waited longer than this for a tenth of a second (a standing queue, not a burst), new requests from sources that are not signed in are answered 503 (Overloaded) with Retry-After, before any other work; when 3,072 messages wait (three quarters of the queue), every new request from such a source. While that many wait, responses, requests inside dialogs routed through this server, answers to challenges and new requests from registered sources are served ahead of the rest, and are shed only when they alone fill three quarters of the queue (in-dialog requests and answers to challenges never)."),
    ("limits.max_completed_bytes", "268435456", "Memory for answered non-INVITE requests kept to absorb retransmissions until timer J (32 s over UDP), in bytes; beyond, the oldest are dropped first (a retransmission is then handled again, harmless for REGISTER and MESSAGE)."),
    ("limits.unauthenticated_rate", "20", "Unauthenticated requests per second from one address (challenges, failed sign-ins); beyond, 503 with Retry-After. In a pool whose N nodes all serve (pool_mode = \"active\"), each node enforces 1/N of it (and of the burst), so an address spreading its requests over the nodes gets this in total."),
    ("limits.unauthenticated_burst", "100", "Burst allowance for unauthenticated requests from one address."),
    ("limits.user_api_rate", "10", "Requests per second one signed-in user may make on the user API; beyond, 429 with Retry-After."),
    ("limits.user_api_burst", "100", "Burst allowance for one user on the user API."),
    ("federation.trusted_cas", "[\"system\"]", "CAs whose certificates are trusted for partners' servers (mutual TLS, both directions): \"system\" (the operating system's roots, /etc/ssl/certs/ca-certificates.crt) and/or paths of PEM bundle files, e.g. a partner's private CA. Whether to federate, and with whom, is the federation policy (`parapet admin policy`); this says only whom to believe."),
    ("federation.resolvers", "[]", "DNS servers (address:port) used to locate partners, instead of the system's (split-horizon DNS, labs). Empty: the system's."),
    ("federation.allow_private_addresses", "false", "Accept partner servers that DNS places at loopback, private, link-local or other internal addresses. Off, a partner's DNS cannot make this server connect inside the network; on is a high finding in the security check (labs and tests only)."),
    ("federation.max_connections_per_partner", "4", "Connections this server keeps open to one partner at most: one is opened on first use, another beside it whenever every open one has 32 requests awaiting answers (1 to 64)."),
    ("federation.routes", "{}", "Partner domain = \"host:port\", used instead of DNS for that partner (the certificate must still speak for the domain), e.g. { \"partner.example\" = \"sip.partner.example:5061\" }."),
    ("edges.source_rate", "100", "What every paired edge holds each outside client address to (sent to the edges in the pool's configuration snapshot): requests per second; beyond, the edge answers 503 with Retry-After itself. Partners' servers are held to the federation policy instead."),
    ("edges.source_burst", "200", "Burst allowance for one client address at the edges."),
    ("edges.in_flight_per_connection", "128", "Requests from one outside connection an edge relays to the pool before their answers come back; beyond, the edge answers 503 with Retry-After itself, so one source's flood queues at most this much in the pool (1 to 65536)."),
    ("client_certificates.trusted_cas", "[]", "Bring your own PKI for users' devices: PEM files of the organisation's CAs whose client certificates sign users in over SIP TLS and WSS (as Parapet's own device certificates do, where the authentication policy lists client-certificate). Empty: only certificates enrolled on the user page."),
    ("client_certificates.map_by", "\"sip-uri\"", "Which subject alternative name of an organisation's certificate names its user: \"sip-uri\" (sip:user@domain), \"email\" (user@domain) or \"upn\" (a Microsoft UPN user@domain). The domain must be this server's."),
    ("client_certificates.crls", "[]", "The organisation's certificate revocation lists (DER or PEM): file paths or http(s) URLs, read at start and every crl_refresh_secs. With lists configured, a certificate whose CA has no current list is refused (fail closed). Parapet's own revocations (a disabled user, revoke-device) apply as well."),
    ("client_certificates.on_wss", "false", "Ask for device certificates on the WSS listeners too (the TLS listeners and the user listener always ask, and accept clients without one). Off by default because Chromium cancels a WebSocket handshake whenever the server asks for a certificate, even one it may decline: browsers could not connect. Turn on only where the WSS clients are not browsers (softphones over WSS with device certificates)."),
    ("client_certificates.crl_refresh_secs", "3600", "How often the revocation lists are read again, in seconds (10 to 86400; a list on a local file or mirror can be read often)."),
    ("relay.listen", "[\"udp://0.0.0.0:3478\", \"tcp://0.0.0.0:3478\", \"tls://0.0.0.0:5349\"]", "The media relay (TURN, RFC 8656) for calls between clients that cannot reach each other directly (NATs, firewalls): udp://, tcp:// and tls:// (the listeners' certificate) listeners. SIP clients sign in with their SIP user name and password (the same lockout); browsers with short-lived credentials from the user API. A permission is granted only to an address named in the SDP of a call its user is in, never to internal addresses. A UDP listener on 0.0.0.0 or [::] binds each of the machine's addresses at start, so each client is answered from the address it reached (addresses added later need a restart). Empty: no relay here (the user API still hands out the edges' relays)."),
    ("relay.address", "\"\"", "The address relayed media is sent and received on (each allocation a UDP port of relay.ports there). Empty: the address this machine reaches other networks from."),
    ("relay.external_address", "\"\"", "The address clients are told to send media to, when the relay sits behind a 1:1 NAT (a cloud's public address). Empty: relay.address."),
    ("relay.ports", "\"49152-65535\"", "The UDP ports allocations are made on (open them in the firewall)."),
    ("relay.max_allocations", "10000", "Allocations on this relay at once; beyond, 508 Insufficient Capacity."),
    ("relay.allocations_per_user", "10", "Allocations one user may hold; beyond, 486 Allocation Quota Reached."),
    ("relay.permissions_per_allocation", "32", "Permissions (peers), and channels, one allocation may hold; beyond, 508."),
    ("relay.user_kbps", "10000", "Media relayed for one user, both directions together, in kbit/s (Lync's default: 10 Mbit/s); packets beyond are dropped."),
    ("relay.allocation_kbps", "10000", "Media relayed for one allocation, in kbit/s."),
    ("relay.max_lifetime_secs", "3600", "Longest allocation lifetime granted (clients refresh before it ends), 600 to 86400."),
    ("relay.source_rate", "20", "Requests per second from one address that holds no allocation (Binding, Allocate, their retries); beyond, dropped unanswered."),
    ("relay.source_burst", "50", "Burst allowance for relay.source_rate."),
];

/// `ws_allowed_origins` as the transport applies it.
/// Which web pages may open WebSocket connections: `raw` as configured
/// (`*`, `https://HOST[:PORT]`, or a host name), or, when empty, pages of
/// `domain` and `host_names` (and localhost).
pub fn origin_policy(
    raw: &[String],
    domain: &str,
    host_names: &[String],
) -> Result<sip_transport::OriginPolicy, String> {
    use sip_transport::{OriginPolicy, OriginRule};
    if raw.iter().any(|o| o.trim() == "*") {
        return Ok(OriginPolicy::Any);
    }
    if raw.is_empty() {
        let own = std::iter::once(domain)
            .chain(host_names.iter().map(String::as_str))
            .chain(["localhost", "127.0.0.1", "::1"]);
        return Ok(OriginPolicy::Only(
            own.map(|h| OriginRule::Host(h.to_string())).collect(),
        ));
    }
    let mut rules = Vec::new();
    for o in raw {
        let o = o.trim().trim_end_matches('/');
        if let Some(rest) = o.strip_prefix("https://") {
            if rest.is_empty() || rest.contains('/') {
                return Err(format!("ws_allowed_origins: {o:?} is not an origin (https://HOST or https://HOST:PORT, no path)"));
            }
            rules.push(OriginRule::Exact(o.to_ascii_lowercase()));
        } else if o.contains("://") {
            return Err(format!(
                "ws_allowed_origins: {o:?}: only https:// pages may connect"
            ));
        } else if o.is_empty() || sip::Uri::parse(&format!("sip:{o}")).is_err() {
            return Err(format!(
                "ws_allowed_origins: {o:?} is neither a host name nor an https:// origin"
            ));
        } else {
            rules.push(OriginRule::Host(o.to_ascii_lowercase()));
        }
    }
    Ok(OriginPolicy::Only(rules))
}

/// Which digest challenges a request gets, and which answers are accepted
/// on which transport. The choice depends on the transport and the
/// request's User-Agent, never on the user (anti-enumeration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestOffer {
    /// Most preferred first; nothing else is accepted.
    pub algorithms: Vec<auth::digest::Algorithm>,
    /// MD5 over UDP, TCP and WS too.
    pub md5_unencrypted: bool,
    /// User-Agent prefixes (lower case) challenged with one algorithm only.
    pub single_challenge_clients: Vec<String>,
}

impl DigestOffer {
    /// Whether answers with `alg` are accepted over a transport that is
    /// (or is not) encrypted.
    pub fn accepts(&self, alg: auth::digest::Algorithm, encrypted: bool) -> bool {
        self.algorithms.contains(&alg)
            && (encrypted || alg != auth::digest::Algorithm::Md5 || self.md5_unencrypted)
    }

    /// The algorithms accepted over an encrypted (or unencrypted) transport.
    pub fn accepted(&self, encrypted: bool) -> Vec<auth::digest::Algorithm> {
        self.algorithms
            .iter()
            .copied()
            .filter(|a| self.accepts(*a, encrypted))
            .collect()
    }

    /// The algorithms to challenge a request with, in order.
    pub fn challenge(
        &self,
        encrypted: bool,
        user_agent: Option<&str>,
    ) -> Vec<auth::digest::Algorithm> {
        use auth::digest::Algorithm;
        let accepted = self.accepted(encrypted);
        let single = user_agent.is_some_and(|ua| {
            let ua = ua.trim_start();
            self.single_challenge_clients.iter().any(|p| {
                ua.get(..p.len())
                    .is_some_and(|head| head.eq_ignore_ascii_case(p))
            })
        });
        if single {
            let one = if accepted.contains(&Algorithm::Md5) {
                Algorithm::Md5
            } else {
                accepted.first().copied().unwrap_or(Algorithm::Sha256)
            };
            return vec![one];
        }
        if accepted.is_empty() {
            // Only MD5 is configured and this transport refuses it: a
            // SHA-256 challenge, which such a server then refuses anyway,
            // says what would be accepted.
            return vec![Algorithm::Sha256];
        }
        accepted
    }
}

/// The configuration as written (every key optional).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub domain: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database: Option<DatabaseUrl>,
    pub database_pool_size: Option<usize>,
    pub node_id: Option<String>,
    pub pool_mode: Option<String>,
    pub pool_apply_wait_ms: Option<u64>,
    pub node_address: Option<String>,
    pub listen: Option<Vec<String>>,
    pub admin_listen: Option<String>,
    pub web_listen: Option<String>,
    pub allow_insecure_transports: Option<bool>,
    pub log_format: Option<String>,
    pub log_syslog: Option<String>,
    pub host_names: Option<Vec<String>>,
    pub ws_allowed_origins: Option<Vec<String>>,
    pub digest_algorithms: Option<Vec<String>>,
    pub digest_md5_unencrypted: Option<bool>,
    pub digest_single_challenge_clients: Option<Vec<String>>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    #[serde(default)]
    pub registrar: RawRegistrar,
    #[serde(default)]
    pub im: RawIm,
    #[serde(default)]
    pub archive: RawArchive,
    #[serde(default)]
    pub monitoring: RawMonitoring,
    #[serde(default)]
    pub trace: RawTrace,
    #[serde(default)]
    pub files: RawFiles,
    #[serde(default)]
    pub proxy: RawProxy,
    #[serde(default)]
    pub lockout: RawLockout,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub federation: RawFederation,
    #[serde(default)]
    pub edges: RawSourceLimits,
    #[serde(default)]
    pub client_certificates: client_certs::RawClientCertificates,
    #[serde(default)]
    pub relay: relay::RawRelay,
}

/// What an edge holds each outside source to: `[edges]` on the front end
/// (carried to every edge in the pool's snapshot), `[limits]` on an edge
/// (until a snapshot arrives).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawSourceLimits {
    pub source_rate: Option<u32>,
    pub source_burst: Option<u32>,
    pub in_flight_per_connection: Option<u32>,
}

impl RawSourceLimits {
    /// Defaults filled in and checked; errors name `section`'s keys.
    pub fn build(&self, section: &str) -> Result<auth::edge_snapshot::Limits, String> {
        let d = auth::edge_snapshot::Limits::default();
        let l = auth::edge_snapshot::Limits {
            source_rate: self.source_rate.unwrap_or(d.source_rate),
            source_burst: self.source_burst.unwrap_or(d.source_burst),
            in_flight_per_connection: self
                .in_flight_per_connection
                .unwrap_or(d.in_flight_per_connection),
        };
        l.check(section)?;
        Ok(l)
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawRegistrar {
    pub min_expires: Option<u32>,
    pub max_expires: Option<u32>,
    pub default_expires: Option<u32>,
    pub max_bindings: Option<usize>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawIm {
    pub max_bytes: Option<usize>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawMonitoring {
    /// Before usage retention was policy: kept for the records written
    /// then (see [`Config::legacy_cdr_retention_days`]).
    pub cdr_retention_days: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawArchive {
    pub keys_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawProxy {
    pub timer_c_secs: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawLockout {
    pub source_threshold: Option<u32>,
    pub account_threshold: Option<u32>,
    pub window_secs: Option<u64>,
    pub base_backoff_secs: Option<u64>,
    pub max_backoff_secs: Option<u64>,
}

impl RawLockout {
    /// The filter's settings, defaults filled in and checked.
    pub fn build(self) -> Result<auth::lockout::LockoutConfig, String> {
        let l = self;
        let dl = auth::lockout::LockoutConfig::default();
        let lockout = auth::lockout::LockoutConfig {
            source_threshold: l.source_threshold.unwrap_or(dl.source_threshold),
            account_threshold: l.account_threshold.unwrap_or(dl.account_threshold),
            window: l.window_secs.unwrap_or(dl.window),
            base_backoff: l.base_backoff_secs.unwrap_or(dl.base_backoff),
            max_backoff: l.max_backoff_secs.unwrap_or(dl.max_backoff),
            ..dl
        };
        if lockout.source_threshold == 0 || lockout.account_threshold < lockout.source_threshold {
            return Err("lockout: source_threshold must be at least 1 and account_threshold at least source_threshold".into());
        }
        Ok(lockout)
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_message_size: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
    pub max_transactions: Option<usize>,
    pub max_completed_bytes: Option<usize>,
    pub overload_delay_ms: Option<u64>,
    pub unauthenticated_rate: Option<u32>,
    pub unauthenticated_burst: Option<u32>,
    pub user_api_rate: Option<u32>,
    pub user_api_burst: Option<u32>,
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub domain: String,
    pub data_dir: PathBuf,
    pub database: Database,
    pub listen: Vec<ListenUrl>,
    pub admin_listen: SocketAddr,
    /// The user listener (HTTPS); `None`: off.
    pub web_listen: Option<SocketAddr>,
    pub allow_insecure_transports: bool,
    pub json_logs: bool,
    /// Where log lines also go as syslog messages.
    pub syslog: Option<syslog::SyslogTarget>,
    /// Names besides the domain this server is reached by (lower case).
    pub host_names: Vec<String>,
    /// Which web pages may open WebSocket connections.
    pub ws_origins: sip_transport::OriginPolicy,
    pub digest: DigestOffer,
    pub tls_cert: Option<(PathBuf, PathBuf)>,
    pub registrar: registrar::RegistrarConfig,
    /// Proxy timer C.
    pub timer_c: std::time::Duration,
    /// Largest MESSAGE body accepted.
    pub im_max_bytes: usize,
    /// Where the IM archive's keys live (`None`: keys/archive in data_dir).
    pub archive_keys_dir: Option<PathBuf>,
    /// `monitoring.cdr_retention_days`, from before usage retention was
    /// the archiving policy's: how long the usage records written then
    /// (not stamped with their own retention) are kept. Without it, the
    /// global policy's usage_retention_days.
    pub legacy_cdr_retention_days: Option<u32>,
    /// SIP traces.
    pub trace: TraceConfig,
    /// Virus scanning of uploaded files (`None`: off).
    pub scanning: Option<Scanning>,
    pub lockout: auth::lockout::LockoutConfig,
    pub limits: sip::Limits,
    pub max_connections_per_ip: usize,
    pub max_transactions: usize,
    pub max_completed_bytes: usize,
    /// The queueing delay that, standing, starts overload shedding.
    pub overload_delay: std::time::Duration,
    pub unauthenticated_rate: u32,
    pub unauthenticated_burst: u32,
    /// Requests per second, and burst, per user on the user API.
    pub user_api_rate: (u32, u32),
    pub federation: FederationConfig,
    /// What the pool's edges hold each outside source to (`[edges]`).
    pub edges: auth::edge_snapshot::Limits,
    /// The organisation's CAs for users' devices (`[client_certificates]`).
    pub client_certificates: client_certs::ClientCertificatesConfig,
    /// The media relay.
    pub relay: relay::RelayConfig,
}

impl Config {
    /// The IM archive's key directory.
    pub fn archive_keys(&self) -> PathBuf {
        self.archive_keys_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("keys/archive"))
    }

    /// Where the SIP trace rings are: `trace.dir`, else data_dir/traces.
    pub fn trace_root(&self) -> PathBuf {
        self.trace
            .dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("traces"))
    }

    /// This node's own ring: the root itself for the one server on the
    /// embedded database; on PostgreSQL, the root's directory named after
    /// this node (so that the pool's nodes share a root).
    pub fn trace_ring(&self) -> PathBuf {
        match &self.database {
            Database::Postgres { node_id, .. } => self.trace_root().join(node_id),
            Database::Embedded => self.trace_root(),
        }
    }
}

/// `parapet config example`: every key with its default and meaning.
pub fn example() -> String {
    let mut out = String::from("# Parapet configuration. Every key is optional; the values shown are the defaults.\n# Command-line flags override this file.\n");
    let mut section = "";
    for (key, default, doc) in KEYS {
        let (sec, name) = key.split_once('.').unwrap_or(("", key));
        if sec != section {
            out.push_str(&format!("\n[{sec}]\n"));
            section = sec;
        }
        out.push_str(&format!("\n# {doc}\n{name} = {default}\n"));
    }
    out
}

impl RawConfig {
    pub fn from_toml(text: &str) -> Result<RawConfig, String> {
        toml::from_str(text).map_err(|e| format!("configuration: {e}"))
    }

    /// Validates and fills in defaults. Errors say what to change.
    pub fn build(self) -> Result<Config, String> {
        let d = RawConfig::from_toml(&example())?;
        let domain = self
            .domain
            .or(d.domain)
            .unwrap_or_default()
            .to_ascii_lowercase();
        if sip::Uri::parse(&format!("sip:{domain}")).is_err() || domain.is_empty() {
            return Err(format!("domain {domain:?} is not a valid host name"));
        }
        let listen_raw = self.listen.or(d.listen).unwrap_or_default();
        if listen_raw.is_empty() {
            return Err("listen: at least one listener is needed, e.g. tls://0.0.0.0:5061".into());
        }
        let listen = listen_raw
            .iter()
            .map(|s| s.parse())
            .collect::<Result<Vec<ListenUrl>, _>>()?;
        let admin_raw = self.admin_listen.or(d.admin_listen).unwrap_or_default();
        let admin_listen = admin_raw.parse().map_err(|_| {
            format!("admin_listen {admin_raw:?} is not an address:port, e.g. 127.0.0.1:9060")
        })?;
        let web_raw = self.web_listen.or(d.web_listen).unwrap_or_default();
        let web_listen = match web_raw.trim() {
            "" => None,
            w => Some(w.parse().map_err(|_| {
                format!("web_listen {web_raw:?} is not an address:port, e.g. 0.0.0.0:4443 (or \"\" to turn the user listener off)")
            })?),
        };
        let allow_insecure_transports = self.allow_insecure_transports.unwrap_or(false);
        if let Some(l) = listen.iter().find(|l| l.scheme.is_insecure()) {
            if !allow_insecure_transports {
                return Err(format!(
                    "listener {l} is not encrypted; use tls:// or wss://, or pass --allow-insecure-transports (for benchmarks and tests only)"
                ));
            }
        }
        let json_logs = match self.log_format.as_deref().unwrap_or("text") {
            "text" => false,
            "json" => true,
            other => return Err(format!("log_format {other:?}: use \"text\" or \"json\"")),
        };
        let syslog = syslog::parse(self.log_syslog.as_deref().unwrap_or(""))?;
        let algs = self
            .digest_algorithms
            .or(d.digest_algorithms)
            .unwrap_or_default();
        let mut digest_algorithms = Vec::new();
        for a in &algs {
            let alg = auth::digest::Algorithm::parse(Some(a)).ok_or_else(|| {
                format!("digest_algorithms: {a:?} is not supported; use \"SHA-256\" and/or \"MD5\"")
            })?;
            if !digest_algorithms.contains(&alg) {
                digest_algorithms.push(alg);
            }
        }
        if digest_algorithms.is_empty() {
            return Err("digest_algorithms: list at least one of \"SHA-256\", \"MD5\"".into());
        }
        let single = self
            .digest_single_challenge_clients
            .or(d.digest_single_challenge_clients)
            .unwrap_or_default();
        if let Some(bad) = single.iter().find(|p| p.trim().is_empty() || p.len() > 128) {
            return Err(format!("digest_single_challenge_clients: {bad:?} is not a User-Agent prefix (1 to 128 characters)"));
        }
        let digest = DigestOffer {
            algorithms: digest_algorithms,
            md5_unencrypted: self.digest_md5_unencrypted.unwrap_or(false),
            single_challenge_clients: single.iter().map(|p| p.to_ascii_lowercase()).collect(),
        };
        let mut host_names = Vec::new();
        for n in self.host_names.unwrap_or_default() {
            let n = n.trim_end_matches('.').to_ascii_lowercase();
            if n.is_empty()
                || n.parse::<std::net::IpAddr>().is_ok()
                || sip::Uri::parse(&format!("sip:{n}")).is_err()
            {
                return Err(format!("host_names: {n:?} is not a DNS name (addresses need not be listed: every address listened on is recognised)"));
            }
            if n != domain && !host_names.contains(&n) {
                host_names.push(n);
            }
        }
        let tls_cert = match (
            self.tls_cert.filter(|p| !p.as_os_str().is_empty()),
            self.tls_key.filter(|p| !p.as_os_str().is_empty()),
        ) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => return Err("tls_cert and tls_key go together: set both or neither".into()),
        };
        let r = self.registrar;
        let dr = registrar::RegistrarConfig::default();
        let registrar = registrar::RegistrarConfig {
            min_expires: r.min_expires.unwrap_or(dr.min_expires),
            max_expires: r.max_expires.unwrap_or(dr.max_expires),
            default_expires: r.default_expires.unwrap_or(dr.default_expires),
            max_bindings: r.max_bindings.unwrap_or(dr.max_bindings),
        };
        if registrar.min_expires > registrar.max_expires || registrar.max_bindings == 0 {
            return Err("registrar: min_expires must not exceed max_expires, and max_bindings must be at least 1".into());
        }
        let timer_c = self.proxy.timer_c_secs.unwrap_or(185);
        if timer_c == 0 {
            return Err(
                "proxy.timer_c_secs must be at least 1 (RFC 3261 wants more than 180)".into(),
            );
        }
        if timer_c <= 180 {
            tracing::warn!(
                timer_c,
                "proxy.timer_c_secs is not above 180 s as RFC 3261 §16.6 requires"
            );
        }
        let lockout = self.lockout.build()?;
        let lim = self.limits;
        let max_message_size = lim.max_message_size.unwrap_or(65_536);
        if !(1024..=16 * 1024 * 1024).contains(&max_message_size) {
            return Err("limits.max_message_size must be between 1024 and 16777216".into());
        }
        let ws_origins = origin_policy(
            &self.ws_allowed_origins.unwrap_or_default(),
            &domain,
            &host_names,
        )?;
        let overload_delay_ms = lim.overload_delay_ms.unwrap_or(50);
        if !(1..=10_000).contains(&overload_delay_ms) {
            return Err("limits.overload_delay_ms must be between 1 and 10000 (milliseconds a received message may wait for the SIP core)".into());
        }
        let federation = self.federation.build(d.federation)?;
        let edges = self.edges.build("edges")?;
        let client_certificates = self.client_certificates.build()?;
        let relay = self.relay.build()?;
        let mut database = database(self.database, self.database_pool_size)?;
        if let Some(id) = self.node_id.filter(|n| !n.is_empty()) {
            match &mut database {
                Database::Embedded => return Err(
                    "node_id names a node of a pool on PostgreSQL: set database, or remove node_id"
                        .into(),
                ),
                Database::Postgres { node_id, .. } => *node_id = database::check_node_id(&id)?,
            }
        }
        if let Some(mode) = self.pool_mode.filter(|m| !m.is_empty()) {
            let want = database::check_pool_mode(&mode)?;
            match &mut database {
                // "standby", the default, means nothing for one server.
                Database::Embedded if want => return Err(
                    "pool_mode = \"active\" concerns a pool of nodes on PostgreSQL: set database, or remove pool_mode"
                        .into(),
                ),
                Database::Embedded => {}
                Database::Postgres { active, .. } => *active = want,
            }
        }
        if let Some(ms) = self.pool_apply_wait_ms {
            match &mut database {
                // The default (as the example file writes it) means nothing
                // for one server.
                Database::Embedded if ms == database::DEFAULT_APPLY_WAIT_MS => {}
                Database::Embedded => return Err(
                    "pool_apply_wait_ms concerns a pool of nodes on PostgreSQL: set database, or remove pool_apply_wait_ms"
                        .into(),
                ),
                Database::Postgres { apply_wait_ms, .. } => {
                    *apply_wait_ms = database::check_apply_wait(ms)?;
                }
            }
        }
        if let Some(a) = self.node_address.filter(|a| !a.trim().is_empty()) {
            match &mut database {
                Database::Embedded => return Err(
                    "node_address concerns a node of a pool on PostgreSQL: set database, or remove node_address"
                        .into(),
                ),
                Database::Postgres { address, .. } => {
                    *address = Some(database::check_node_address(&a)?);
                }
            }
        }
        let legacy_cdr_retention_days = self
            .monitoring
            .cdr_retention_days
            .or(d.monitoring.cdr_retention_days);
        if let Some(days) = legacy_cdr_retention_days {
            if !(1..=3650).contains(&days) {
                return Err(format!(
                    "monitoring.cdr_retention_days = {days}: 1 to 3650 (and it now applies only to records written before the archiving policy's usage_retention_days existed)"
                ));
            }
        }
        Ok(Config {
            relay,
            client_certificates,
            federation,
            edges,
            ws_origins,
            domain,
            data_dir: self.data_dir.or(d.data_dir).unwrap_or_default(),
            database,
            listen,
            admin_listen,
            web_listen,
            allow_insecure_transports,
            json_logs,
            syslog,
            host_names,
            digest,
            tls_cert,
            registrar,
            timer_c: std::time::Duration::from_secs(timer_c),
            im_max_bytes: self.im.max_bytes.unwrap_or(16_384),
            archive_keys_dir: self.archive.keys_dir.filter(|p| !p.as_os_str().is_empty()),
            legacy_cdr_retention_days,
            trace: self.trace.build(&d.trace)?,
            scanning: self.files.build()?,
            lockout,
            limits: sip::Limits {
                max_message_size,
                ..sip::Limits::DEFAULT
            },
            max_connections_per_ip: lim.max_connections_per_ip.unwrap_or(32).max(1),
            max_transactions: lim.max_transactions.unwrap_or(100_000).max(1),
            max_completed_bytes: lim.max_completed_bytes.unwrap_or(256 << 20),
            overload_delay: std::time::Duration::from_millis(overload_delay_ms),
            unauthenticated_rate: lim.unauthenticated_rate.unwrap_or(20).max(1),
            unauthenticated_burst: lim.unauthenticated_burst.unwrap_or(100).max(1),
            user_api_rate: (
                lim.user_api_rate.unwrap_or(10).max(1),
                lim.user_api_burst.unwrap_or(100).max(1),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virus_scanning_is_off_by_default_and_local_only() {
        assert_eq!(RawConfig::default().build().unwrap().scanning, None);
        let c = RawConfig::from_toml("[files]\nclamd = \"/run/clamav/clamd.ctl\"\n")
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(
            c.scanning.map(|s| (s.clamd, s.timeout.as_secs())),
            Some((Clamd::Unix("/run/clamav/clamd.ctl".into()), 60))
        );
        for (bad, says) in [
            ("clamd = \"192.0.2.1:3310\"", "run clamd on this machine"),
            ("clamd = \"clamd\"", "neither a socket path"),
            ("clamd = \"/s\"\nscan_timeout_secs = 0", "out of range"),
        ] {
            let e = RawConfig::from_toml(&format!("[files]\n{bad}\n"))
                .unwrap()
                .build()
                .unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn federation_settings() {
        let d = RawConfig::default().build().unwrap().federation;
        assert_eq!(d.trusted_cas, vec![TrustSource::System]);
        assert!(!d.allow_private_addresses && d.routes.is_empty() && d.resolvers.is_empty());
        assert_eq!(d.max_connections_per_partner, 4);
        let c = RawConfig::from_toml(
            "[federation]\ntrusted_cas = [\"system\", \"/etc/parapet/partners.pem\"]\nresolvers = [\"127.0.0.53:53\"]\nroutes = { \"Partner.Example.\" = \"sip.partner.example:5061\", \"v6.example\" = \"[2001:db8::1]:5061\" }\n",
        )
        .unwrap()
        .build()
        .unwrap()
        .federation;
        assert_eq!(
            c.trusted_cas[1],
            TrustSource::File("/etc/parapet/partners.pem".into())
        );
        assert_eq!(
            c.routes.get("partner.example"),
            Some(&("sip.partner.example".to_string(), 5061))
        );
        assert_eq!(
            c.routes.get("v6.example"),
            Some(&("2001:db8::1".to_string(), 5061))
        );
        for (bad, says) in [
            ("routes = { \"p.example\" = \"host\" }", "is not host:port"),
            (
                "routes = { \"p.example\" = \"host:0\" }",
                "is not host:port",
            ),
            (
                "routes = { \"192.0.2.1\" = \"host:5061\" }",
                "is not a partner domain",
            ),
            ("resolvers = [\"dns.example\"]", "is not an address:port"),
            ("trusted_cas = [\"\"]", "an empty entry"),
            ("max_connections_per_partner = 0", "between 1 and 64"),
            ("max_connections_per_partner = 65", "between 1 and 64"),
        ] {
            let e = RawConfig::from_toml(&format!("[federation]\n{bad}\n"))
                .unwrap()
                .build()
                .unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn example_parses_to_the_defaults() {
        let raw = RawConfig::from_toml(&example()).unwrap();
        let c = raw.clone().build().unwrap();
        let d = RawConfig::default().build().unwrap();
        assert_eq!(c.domain, d.domain);
        assert_eq!(c.listen, d.listen);
        assert_eq!(c.registrar, d.registrar);
        assert_eq!(c.lockout, d.lockout);
        assert_eq!(c.limits, d.limits);
        assert_eq!(
            c.listen.iter().map(|l| l.to_string()).collect::<Vec<_>>(),
            ["tls://0.0.0.0:5061", "wss://0.0.0.0:8443"]
        );
        assert_eq!(c.web_listen, Some("0.0.0.0:4443".parse().unwrap()));
        assert_eq!(d.web_listen, c.web_listen);
    }

    #[test]
    fn the_user_listener_can_be_moved_or_turned_off() {
        let at = |w: &str| {
            RawConfig {
                web_listen: Some(w.into()),
                ..Default::default()
            }
            .build()
        };
        assert_eq!(
            at("127.0.0.1:4444").unwrap().web_listen,
            Some("127.0.0.1:4444".parse().unwrap())
        );
        assert_eq!(at("").unwrap().web_listen, None);
        let e = at("localhost").unwrap_err();
        assert!(
            e.contains("web_listen") && e.contains("0.0.0.0:4443"),
            "{e}"
        );
    }

    #[test]
    fn insecure_listeners_need_the_explicit_setting() {
        let raw = RawConfig {
            listen: Some(vec!["udp://127.0.0.1:5060".into()]),
            ..Default::default()
        };
        let e = raw.clone().build().unwrap_err();
        assert!(e.contains("--allow-insecure-transports"), "{e}");
        let ok = RawConfig {
            allow_insecure_transports: Some(true),
            ..raw
        }
        .build()
        .unwrap();
        assert_eq!(ok.listen[0].scheme, Scheme::Udp);
    }

    #[test]
    fn digest_challenges_by_transport_and_client() {
        use auth::digest::Algorithm::{Md5, Sha256};
        let d = RawConfig::default().build().unwrap().digest;
        // RFC 8760 clients (Linphone) take the first, JsSIP and SIP.js the
        // last: both find what they know over TLS and WSS.
        assert_eq!(
            d.challenge(true, Some("Linphone Desktop/5.1")),
            [Sha256, Md5]
        );
        assert_eq!(d.challenge(true, Some("JsSIP 3.13.0")), [Sha256, Md5]);
        // baresip fails on a second challenge or a non-MD5 one.
        assert_eq!(
            d.challenge(true, Some("baresip v1.0.0 (x86_64/linux)")),
            [Md5]
        );
        assert_eq!(d.challenge(true, Some("  BareSIP v4.1")), [Md5]);
        assert_eq!(d.challenge(true, None), [Sha256, Md5]);
        // Without encryption MD5 is neither offered nor accepted...
        assert_eq!(d.challenge(false, Some("baresip v1.0.0")), [Sha256]);
        assert_eq!(d.challenge(false, None), [Sha256]);
        assert!(d.accepts(Md5, true) && !d.accepts(Md5, false) && d.accepts(Sha256, false));
        // ...unless the operator says so.
        let plain = RawConfig {
            digest_md5_unencrypted: Some(true),
            ..Default::default()
        }
        .build()
        .unwrap()
        .digest;
        assert!(plain.accepts(Md5, false));
        assert_eq!(plain.challenge(false, Some("sipp")), [Md5]);
        // MD5 configured alone, over a transport that refuses it: the
        // challenge names what would be accepted.
        let md5_only = RawConfig {
            digest_algorithms: Some(vec!["MD5".into()]),
            ..Default::default()
        }
        .build()
        .unwrap()
        .digest;
        assert_eq!(md5_only.challenge(false, None), [Sha256]);
        assert!(!md5_only.accepts(Sha256, true));
    }

    #[test]
    fn websocket_origins_default_to_the_servers_own_names() {
        let c = RawConfig {
            domain: Some("example.test".into()),
            ..Default::default()
        }
        .build()
        .unwrap();
        assert!(c.ws_origins.allows(Some("https://example.test:4443")));
        assert!(c.ws_origins.allows(Some("https://localhost")));
        assert!(!c.ws_origins.allows(Some("https://evil.test")));
        assert!(c.ws_origins.allows(None));
        let with = |list: &[&str]| {
            RawConfig {
                ws_allowed_origins: Some(list.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            }
            .build()
        };
        let c = with(&["portal.example.com", "https://app.example.com:8443/"]).unwrap();
        assert!(c.ws_origins.allows(Some("https://portal.example.com:9000")));
        assert!(c.ws_origins.allows(Some("https://app.example.com:8443")));
        assert!(!c.ws_origins.allows(Some("https://localhost")));
        assert_eq!(
            with(&["*"]).unwrap().ws_origins,
            sip_transport::OriginPolicy::Any
        );
        assert!(with(&["http://x.test"]).unwrap_err().contains("https"));
        assert!(with(&["https://x.test/page"])
            .unwrap_err()
            .contains("no path"));
    }

    #[test]
    fn host_names_are_names() {
        let c = RawConfig {
            host_names: Some(vec!["SIP.Example.Test.".into(), "localhost".into()]),
            ..Default::default()
        }
        .build()
        .unwrap();
        assert_eq!(c.host_names, ["sip.example.test"]);
        let e = RawConfig {
            host_names: Some(vec!["192.0.2.1".into()]),
            ..Default::default()
        }
        .build()
        .unwrap_err();
        assert!(e.contains("host_names") && e.contains("addresses"), "{e}");
    }

    #[test]
    fn errors_say_what_to_fix() {
        assert!(RawConfig::from_toml("nonsense = 1")
            .unwrap_err()
            .contains("nonsense"));
        let bad = |raw: RawConfig| raw.build().unwrap_err();
        assert!(bad(RawConfig {
            listen: Some(vec!["0.0.0.0:5061".into()]),
            ..Default::default()
        })
        .contains("scheme"));
        assert!(bad(RawConfig {
            listen: Some(vec!["sctp://0.0.0.0:1".into()]),
            ..Default::default()
        })
        .contains("unknown scheme"));
        assert!(bad(RawConfig {
            domain: Some("bad domain".into()),
            ..Default::default()
        })
        .contains("domain"));
        assert!(bad(RawConfig {
            tls_cert: Some("a.pem".into()),
            ..Default::default()
        })
        .contains("together"));
        assert!(bad(RawConfig {
            log_format: Some("xml".into()),
            ..Default::default()
        })
        .contains("log_format"));
    }
}
