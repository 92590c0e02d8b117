//! One key per name across a pool. Keys live in files (`archive.keys_dir`),
//! outside the database, so that destroying one makes what it sealed
//! unreadable in every copy of the database. The nodes of a pool must
//! therefore share one key directory: a node with a directory of its own
//! would make its own key under a day's name, seal records the other nodes
//! cannot open, and keep keys their retention never destroys. Two checks:
//! at start on PostgreSQL, the directory's own id against the one the pool
//! recorded ([`check_directory`]); and before a process first seals with
//! a key, the key's fingerprint against the one the database recorded for
//! that name, recording its own when none was ([`sealing_key`]) — which
//! also catches a node whose directory is a copy of the pool's.

use std::sync::Arc;

use archive::{Key, Keyring};

/// Why no key to seal with.
#[derive(Debug)]
pub(crate) enum KeyError {
    /// This node's key of that name is not the pool's (for good: fixed by
    /// the operator, then a restart).
    NotThePools(String),
    /// The key could not be made or its record read (perhaps for a moment).
    Unavailable(String),
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyError::NotThePools(m) | KeyError::Unavailable(m) => f.write_str(m),
        }
    }
}

/// What the database records for the directory itself (not a key name:
/// key names are lower-case letters, digits and '-').
const DIRECTORY: &str = "KEYRING";

fn not_the_pools(what: &str, ring: &Keyring) -> String {
    format!(
        "{what} in {} is not the pool's: every node must use one shared archive.keys_dir (docs/ARCHIVE.md)",
        ring.dir().display()
    )
}

/// At start, on a pool's node: the key directory must be the one the
/// pool's first node recorded.
pub(crate) async fn check_directory<S: store::Store>(
    store: &S,
    ring: &Keyring,
) -> Result<(), String> {
    let own = ring.directory_id().to_vec();
    let recorded = store::Archive::archive_key_claim(store, DIRECTORY.into(), own.clone())
        .await
        .map_err(|e| format!("the archive key directory's record could not be read: {e}"))?;
    if recorded != own {
        ring.set_mismatched();
        return Err(not_the_pools("the archive key directory", ring));
    }
    Ok(())
}

/// The key `id` (made if missing, off the runtime's threads) if this
/// process may seal with it: it is the key the database knows by that name.
pub(crate) async fn sealing_key<S: store::Store>(
    store: &S,
    ring: &Arc<Keyring>,
    id: &str,
) -> Result<Arc<Key>, KeyError> {
    let (r, name) = (ring.clone(), id.to_string());
    let key = tokio::task::spawn_blocking(move || r.key(&name, true))
        .await
        .map_err(|e| KeyError::Unavailable(format!("archive key task: {e}")))?
        .map_err(KeyError::Unavailable)?
        .ok_or_else(|| KeyError::Unavailable(format!("archive key {id} could not be made")))?;
    if ring.matched(id) {
        return Ok(key);
    }
    let recorded =
        store::Archive::archive_key_claim(store, id.to_string(), key.fingerprint().to_vec())
            .await
            .map_err(|e| {
                KeyError::Unavailable(format!(
                    "archive key {id}: its record could not be read: {e}"
                ))
            })?;
    if recorded != key.fingerprint() {
        ring.set_mismatched();
        return Err(KeyError::NotThePools(not_the_pools(
            &format!("archive key {id}"),
            ring,
        )));
    }
    ring.set_matched(id);
    Ok(key)
}
