//! Usage records (call detail records, as Lync's Monitoring role kept
//! them): calls — who called whom, from which devices, when the call
//! started, was answered and ended, how it ended, who hung up, whether its
//! media went through the relay —, instant-message conversations (how
//! many messages, never what they said), files offered, and sign-ins.

use std::future::Future;

use crate::Result;

/// What a record is of.
pub const KINDS: [&str; 5] = ["call", "im", "file", "sign-in", "sign-out"];

/// One call, conversation, file offered or sign-in, as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CdrRow {
    /// Given by the store on insert (ignored by [`Cdrs::cdr_put`]).
    pub id: i64,
    /// One of [`KINDS`]: `call`; `im` (a conversation: the messages
    /// between two parties with no pause of 10 minutes, `caller` the one
    /// who wrote first); `file` (a file offered by `caller` to `callee`,
    /// `detail` its name, size and type as stored); `sign-in` (`caller`
    /// registered a new device, `caller_device`, from `detail`, the
    /// transport and address); `sign-out` (a registration of `caller`
    /// from `detail` ended, `ended_by` how).
    pub kind: String,
    pub call_id: String,
    pub caller: String,
    pub callee: String,
    /// The caller's User-Agent, and the answering device's (empty when
    /// unanswered or unsaid).
    pub caller_device: String,
    pub callee_device: String,
    /// With a partner's user.
    pub federated: bool,
    /// The partner's domain when federated, else empty.
    pub partner: String,
    /// A call whose media this server's relay carried (edges' relays are
    /// not seen here).
    pub media_relayed: bool,
    /// Messages in an `im` conversation (0 otherwise).
    pub messages: u32,
    /// What else the kind says (see [`CdrRow::kind`]).
    pub detail: String,
    /// Unix milliseconds; `answered_ms` is 0 for a call never answered.
    pub started_ms: i64,
    pub answered_ms: i64,
    pub ended_ms: i64,
    /// The INVITE's final status (200 for an answered call).
    pub status: u16,
    /// Calls: `caller`, `callee`, `nobody` (refused, unanswered, timed
    /// out), `unknown` (no BYE was seen) or `server stopped`;
    /// conversations: `idle` or `server stopped`; sign-outs: `signed out`,
    /// `expired`, `connection closed` or `removed`.
    pub ended_by: String,
    /// Unix milliseconds after which the record is deleted: its end plus
    /// the longest usage retention among our parties' policies when it
    /// was written (0: written before records said so; see
    /// [`Cdrs::cdr_stamp_unstamped`]).
    pub keep_until_ms: i64,
}

/// Which records [`Cdrs::cdr_find`] returns: a party (caller or callee),
/// start time, an id above `after_id`; oldest first, at most `limit`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CdrFilter {
    pub user: Option<String>,
    /// One kind only.
    pub kind: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub after_id: i64,
    pub limit: usize,
}

/// Records [`Cdrs::cdr_find`] returns at most per call.
pub const MAX_CDR_FIND: usize = 1000;

pub trait Cdrs: Send + Sync {
    /// Adds records, in one transaction.
    fn cdr_put(&self, rows: Vec<CdrRow>) -> impl Future<Output = Result<()>> + Send;
    fn cdr_find(&self, f: CdrFilter) -> impl Future<Output = Result<Vec<CdrRow>>> + Send;
    /// Deletes the records to be kept until before `now_ms` (never one
    /// not stamped yet); returns how many.
    fn cdr_purge(&self, now_ms: i64) -> impl Future<Output = Result<usize>> + Send;
    /// Stamps the records written before records said how long they are
    /// kept (`keep_until_ms` 0) with their end plus `keep_ms`; returns how
    /// many.
    fn cdr_stamp_unstamped(&self, keep_ms: i64) -> impl Future<Output = Result<usize>> + Send;
}
