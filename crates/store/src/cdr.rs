//! Call detail records: who called whom, from which devices, when the call
//! started, was answered and ended, how it ended and who hung up — never
//! what was said.

use std::future::Future;

use crate::Result;

/// One call, as the proxy saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdrRow {
    /// Given by the store on insert (ignored by [`Cdrs::cdr_put`]).
    pub id: i64,
    pub call_id: String,
    pub caller: String,
    pub callee: String,
    /// The caller's User-Agent, and the answering device's (empty when
    /// unanswered or unsaid).
    pub caller_device: String,
    pub callee_device: String,
    /// With a partner's user.
    pub federated: bool,
    /// Unix milliseconds; `answered_ms` is 0 for a call never answered.
    pub started_ms: i64,
    pub answered_ms: i64,
    pub ended_ms: i64,
    /// The INVITE's final status (200 for an answered call).
    pub status: u16,
    /// `caller`, `callee`, `nobody` (refused, unanswered, timed out) or
    /// `unknown` (no BYE was seen).
    pub ended_by: String,
}

/// Which records [`Cdrs::cdr_find`] returns: a party (caller or callee),
/// start time, an id above `after_id`; oldest first, at most `limit`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CdrFilter {
    pub user: Option<String>,
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
    /// Deletes the records of calls that ended before `before_ms`; returns
    /// how many.
    fn cdr_purge(&self, before_ms: i64) -> impl Future<Output = Result<usize>> + Send;
}
