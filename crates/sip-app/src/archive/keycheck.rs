//! One key per name across a pool. Keys live in files (`archive.keys_dir`),
//! outside the database, so that destroying one makes what it sealed
//! unreadable in every copy of the database. The nodes of a pool must
//! therefore share one key directory: a node with a directory of its own
//! would make its own key under a day's name, seal records the other nodes
//! cannot open, and keep keys their retention never destroys. So before a
//! process first seals with a key, it compares the key's fingerprint
//! with the one the database recorded for that name (recording its own
//! when none was), and refuses to seal with a key that is not the pool's.

use std::sync::Arc;

use archive::{Key, Keyring};

/// The key `id` (made if missing, off the runtime's threads) if this
/// process may seal with it: it is the key the database knows by that name.
pub(crate) async fn sealing_key<S: store::Store>(
    store: &S,
    ring: &Arc<Keyring>,
    id: &str,
) -> Result<Arc<Key>, String> {
    let (r, name) = (ring.clone(), id.to_string());
    let key = tokio::task::spawn_blocking(move || r.key(&name, true))
        .await
        .map_err(|e| format!("archive key task: {e}"))??
        .ok_or_else(|| format!("archive key {id} could not be made"))?;
    if ring.matched(id) {
        return Ok(key);
    }
    let recorded =
        store::Archive::archive_key_claim(store, id.to_string(), key.fingerprint().to_vec())
            .await
            .map_err(|e| format!("archive key {id}: its record could not be read: {e}"))?;
    if recorded != key.fingerprint() {
        return Err(format!(
            "archive key {id} in {} is not the key the pool's other nodes use under that name: every node must use one shared archive.keys_dir (docs/ARCHIVE.md)",
            ring.dir().display()
        ));
    }
    ring.set_matched(id);
    Ok(key)
}
