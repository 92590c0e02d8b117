//! What the SIP application accepts from outside it (the admin and user
//! APIs, through a bounded channel) and what it answers. The application
//! defines these; the APIs use them.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

pub use crate::authn::PasswordCheck;
use crate::policy_set::PolicySet;
use crate::users::UserCache;

/// One edge's side of a trace search.
#[derive(Debug, Clone)]
pub struct EdgeTraces {
    /// The edge's name.
    pub edge: String,
    /// Its records (`trace::remote::read_answer`).
    pub body: Vec<u8>,
    /// Whether it held more than one answer carries.
    pub more: bool,
    /// Why there is nothing from it (no link, no answer, refused).
    pub error: Option<String>,
}

/// What the admin API asks of the core.
#[derive(Debug)]
pub enum AdminCmd {
    Status(oneshot::Sender<Status>),
    /// A trace search (`trace::remote::query`) asked of every paired edge.
    EdgeTraces {
        query: String,
        reply: oneshot::Sender<Vec<EdgeTraces>>,
    },
    /// The media relay's question (a user's key, a sign-in's outcome).
    Relay(relay::serve::Ask),
    Lockouts(oneshot::Sender<Vec<LockoutRow>>),
    /// Answered with how many active lockouts were lifted once the
    /// clearing is saved, or why it could not be (it is in force anyway).
    ClearLockouts {
        account: Option<String>,
        source: Option<IpAddr>,
        reply: oneshot::Sender<Result<usize, String>>,
    },
    /// A freshly loaded user table: swap it in (if newer) and answer.
    Users(UserCache, oneshot::Sender<()>),
    /// One user changed (`None`: removed or unusable): update that entry and
    /// answer.
    User {
        aor: String,
        version: i64,
        user: Option<crate::users::CachedUser>,
        reply: oneshot::Sender<()>,
    },
    /// A freshly loaded policy snapshot: swap it in (if newer) and answer.
    Policies(PolicySet, oneshot::Sender<()>),
    /// One user's contact list, as now stored: replace it and answer.
    Contacts {
        owner: String,
        rows: Vec<store::ContactRow>,
        reply: oneshot::Sender<()>,
    },
    /// A password sign-in on the user API (see [`PasswordCheck`]).
    /// `then_second_factor`: a second factor follows, so a right password
    /// is not yet a successful sign-in for the lockout filter (which would
    /// forget the address's failures and count it familiar): the outcome
    /// comes with [`AdminCmd::SecondFactor`].
    CheckPassword {
        aor: String,
        source: IpAddr,
        password: String,
        then_second_factor: bool,
        reply: oneshot::Sender<PasswordCheck>,
    },
    /// The second factor after a right password on the user API: passed
    /// (a successful sign-in), or not (a failed one, counted like a wrong
    /// password).
    SecondFactor {
        aor: String,
        source: IpAddr,
        passed: bool,
        reply: oneshot::Sender<()>,
    },
    /// An HTTP request of the file-transfer server signing in with SIP
    /// credentials or a device certificate.
    HttpSignIn {
        credentials: crate::authn_http::HttpCredentials,
        reply: oneshot::Sender<crate::authn_http::HttpSignIn>,
    },
    /// Partners this server has dealt with: counters, standing, watch list.
    Partners(oneshot::Sender<Vec<crate::federate::PartnerRow>>),
    /// Takes a partner off the watch list; `false` if it was not on it.
    ClearPartner {
        domain: String,
        reply: oneshot::Sender<bool>,
    },
    /// The pool's paired edges changed (or the server started): replace the list.
    SetEdges(crate::edges::EdgeSetup, oneshot::Sender<()>),
    /// How a request between a local user and a partner's would be decided.
    Explain {
        from: String,
        to: String,
        modality: crate::policy_set::Modality,
        reply: oneshot::Sender<Result<crate::federate::Explanation, String>>,
    },
    /// Who watches `aor`'s presence: (watcher, active | pending | rejected).
    Watchers {
        aor: String,
        reply: oneshot::Sender<Vec<(String, String)>>,
    },
    /// Device certificates revoked: out of the registry, and every
    /// connection that presented one closed now. `fingerprints: None`:
    /// all of `aor`'s. Answers how many connections were closed.
    RevokeDevices {
        aor: String,
        fingerprints: Option<Vec<[u8; 32]>>,
        reply: oneshot::Sender<usize>,
    },
    /// `aor`'s registrations as the location service holds them now.
    Registrations {
        aor: String,
        reply: oneshot::Sender<Vec<RegistrationRow>>,
    },
}

/// One registered device of a user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegistrationRow {
    /// The Contact URI.
    pub contact: String,
    /// The transport the REGISTER came over (udp, tcp, tls, ws, wss).
    pub transport: String,
    /// The address it came from.
    pub source: String,
    /// How the server reaches the device: `connection` (the connection it
    /// registered over, RFC 5626 and RFC 5923) or `address` (UDP).
    pub reached_by: String,
    /// The RFC 5626 instance and reg-id, when the client gave them.
    pub outbound: Option<String>,
    pub user_agent: Option<String>,
    /// q-value, 0.000 to 1.000.
    pub q: String,
    /// Unix seconds.
    pub expires_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub domain: String,
    pub listeners: Vec<String>,
    pub insecure_transports: bool,
    pub warnings: Vec<String>,
    pub users: usize,
    pub registrations: usize,
    pub connections: usize,
    pub uptime_secs: u64,
    /// The pool's paired edges and whether each is linked now.
    pub edges: Vec<EdgeStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EdgeStatus {
    pub name: String,
    pub internal: String,
    /// Connections from it open now.
    pub links: usize,
    /// The pool's snapshot version it holds (0: none), as it last said.
    pub snapshot_version: u64,
    /// Its external listeners, as it last said.
    pub external_listeners: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockoutRow {
    pub account: String,
    /// `null` for an account-wide lockout.
    pub source: Option<String>,
    pub until: u64,
    pub lockouts: u32,
}
