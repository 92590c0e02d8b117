//! The pool's paired edges (`parapet admin edge pair`), kept in the
//! store so that every node of a pool knows them — whichever node paired
//! an edge, every node accepts its link and dials it, and an edge unpaired
//! through any node loses its standing on all of them.

use std::future::Future;

use crate::Result;

/// A paired edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeRow {
    /// 1-32 of a-z, 0-9 and '-'.
    pub name: String,
    /// Its internal listener, `IP:port`.
    pub internal: String,
    /// The names the outside reaches it by.
    pub external_names: Vec<String>,
    /// SHA-256 of its internal certificate (DER), lower-case hex: how a
    /// link's certificate is recognised.
    pub fingerprint: String,
    /// Unix seconds.
    pub paired_at: i64,
    /// When its certificates expire (Unix seconds).
    pub expires_at: i64,
    /// A check value of the pool keys its pairing file carries (the
    /// topology key and the snapshot key), never the keys: a node whose
    /// `keys/` differ says so.
    pub keys_check: String,
}

/// The pool's edges. An edge paired again under its name, or unpaired,
/// leaves its certificate's fingerprint behind as unpaired until the
/// certificate expires, so that an import of old records
/// ([`EdgePairings::import_edges`]) never brings it back.
pub trait EdgePairings: Send + Sync {
    /// Records a pairing; one under the same name is unpaired.
    fn put_edge(&self, e: EdgeRow, now: i64) -> impl Future<Output = Result<()>> + Send;
    /// The edges paired now, by name.
    fn edges(&self) -> impl Future<Output = Result<Vec<EdgeRow>>> + Send;
    /// Unpairs the edge named `name`; `false`: none is paired under it.
    fn remove_edge(&self, name: &str, now: i64) -> impl Future<Output = Result<bool>> + Send;
    /// Records pairings made before they were kept in the store (the data
    /// directory's `edges/NAME.json`): each unless an edge is paired under
    /// its name or its certificate is known (paired or unpaired). Returns
    /// how many were recorded.
    fn import_edges(&self, rows: Vec<EdgeRow>) -> impl Future<Output = Result<usize>> + Send;
}
