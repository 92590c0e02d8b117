//! The IM archive: messages kept for compliance as the archiving policy
//! selects them, sealed before they reach the store (the store never sees
//! a body in clear, nor the keys), and the legal holds that keep a user's
//! records past retention.

use std::future::Future;

use crate::Result;

/// One archived message as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveRow {
    /// Given by the store on insert (ignored by [`Archive::archive_put`]).
    pub id: i64,
    /// The user whose archiving policy kept it (a message between two
    /// archived users is kept once for each).
    pub owner: String,
    /// Unix milliseconds.
    pub at_ms: i64,
    pub sender: String,
    pub recipient: String,
    /// With a partner's user.
    pub federated: bool,
    /// What became of the message (`delivered`, `stored for later
    /// delivery`, `refused 480`...).
    pub result: String,
    /// The key that sealed it.
    pub key_id: String,
    /// Nonce, ciphertext and tag of its content type and body.
    pub sealed: Vec<u8>,
}

/// Which records [`Archive::archive_find`] returns: those matching every
/// field set, with an id above `after_id`, oldest first, at most `limit`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveFilter {
    pub owner: Option<String>,
    /// Sender or recipient.
    pub counterpart: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub key_id: Option<String>,
    pub after_id: i64,
    pub limit: usize,
}

/// A legal hold: the user's records are kept past retention until it is
/// released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveHold {
    pub aor: String,
    /// Unix seconds.
    pub since: i64,
    pub by: String,
    pub reason: String,
}

/// Records [`Archive::archive_find`] returns at most per call.
pub const MAX_FIND: usize = 1000;

pub trait Archive: Send + Sync {
    /// Adds records, in one transaction.
    fn archive_put(&self, rows: Vec<ArchiveRow>) -> impl Future<Output = Result<()>> + Send;
    /// Records by [`ArchiveFilter`] (limit capped at [`MAX_FIND`]).
    fn archive_find(
        &self,
        f: ArchiveFilter,
    ) -> impl Future<Output = Result<Vec<ArchiveRow>>> + Send;
    /// Every user with records.
    fn archive_owners(&self) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// Deletes the records of `owners` older than `before_ms`, except those
    /// of users on legal hold. Returns how many.
    fn archive_purge(
        &self,
        owners: Vec<String>,
        before_ms: i64,
    ) -> impl Future<Output = Result<usize>> + Send;
    /// Replaces records' key and sealed bytes: (id, key id, sealed).
    fn archive_reseal(
        &self,
        rows: Vec<(i64, String, Vec<u8>)>,
    ) -> impl Future<Output = Result<()>> + Send;
    /// The keys some record is sealed with.
    fn archive_keys(&self) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// Records `fingerprint` as key `id`'s unless one is recorded already,
    /// and returns the one recorded (the first to claim the name wins):
    /// a node whose own key of that name differs must not seal with it.
    fn archive_key_claim(
        &self,
        id: String,
        fingerprint: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>>> + Send;
    /// Forgets the fingerprints of keys destroyed.
    fn archive_key_forget(&self, ids: Vec<String>) -> impl Future<Output = Result<()>> + Send;
    fn archive_holds(&self) -> impl Future<Output = Result<Vec<ArchiveHold>>> + Send;
    /// Places a hold; `false` when the user was on hold already (the hold
    /// is left as it was).
    fn archive_hold(&self, hold: ArchiveHold) -> impl Future<Output = Result<bool>> + Send;
    /// Releases a hold; `false` when there was none.
    fn archive_release(&self, aor: String) -> impl Future<Output = Result<bool>> + Send;
}
