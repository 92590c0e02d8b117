//! The archive's keys: one file of 32 random bytes per key, mode 0600, in
//! a directory of mode 0700. A record is sealed with the key of the UTC day
//! it was archived on and its owner's retention, `dYYYYMMDD-rDAYS`, so the
//! records under one key are due together and the key goes with them (a
//! user kept 14 days does not share a key with one kept 365). Hold keys
//! are `hold-YYYYMMDD` (the day the hold key was made).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ring::aead::LessSafeKey;
use ring::rand::{SecureRandom, SystemRandom};

/// What names a hold key.
pub const HOLD_PREFIX: &str = "hold-";

/// Whether `id` names a hold key.
pub fn is_hold(id: &str) -> bool {
    id.starts_with(HOLD_PREFIX)
}

/// One archive key.
pub struct Key {
    id: String,
    aead: LessSafeKey,
    fingerprint: [u8; 16],
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Key {
    /// A key from its 32 bytes.
    pub fn from_bytes(id: &str, bytes: &[u8]) -> Option<Key> {
        if bytes.len() != 32 {
            return None;
        }
        let mut d = ring::digest::Context::new(&ring::digest::SHA256);
        d.update(b"parapet archive key fingerprint\0");
        d.update(id.as_bytes());
        d.update(b"\0");
        d.update(bytes);
        let mut fingerprint = [0u8; 16];
        fingerprint.copy_from_slice(&d.finish().as_ref()[..16]);
        Some(Key {
            id: id.to_string(),
            aead: super::new_aead(bytes)?,
            fingerprint,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Which key this is, without revealing it (a hash of its name and
    /// bytes): what the nodes of a pool compare, so that none seals with a
    /// key of its own under a name the others know as another.
    pub fn fingerprint(&self) -> [u8; 16] {
        self.fingerprint
    }

    pub(crate) fn aead(&self) -> &LessSafeKey {
        &self.aead
    }
}

/// The id of the key for records archived at `unix_ms` (UTC day) and kept
/// `retention_days`.
pub fn day_id(unix_ms: i64, retention_days: i64) -> String {
    format!("d{}-r{}", ymd(unix_ms), retention_days.clamp(0, 99_999))
}

/// The id of a hold key made at `unix_ms`.
pub fn hold_id(unix_ms: i64) -> String {
    format!("{HOLD_PREFIX}{}", ymd(unix_ms))
}

/// The UTC day (`YYYYMMDD`) a key id names: the day its records were
/// archived on, or the day a hold key was made.
pub fn key_day(id: &str) -> Option<&str> {
    let day = match id.strip_prefix(HOLD_PREFIX) {
        Some(rest) => rest,
        None => id.strip_prefix('d')?.split('-').next()?,
    };
    (day.len() == 8 && day.bytes().all(|b| b.is_ascii_digit())).then_some(day)
}

/// The day (`YYYYMMDD`) of a time, for comparing with [`key_day`].
pub fn day_of(unix_ms: i64) -> String {
    ymd(unix_ms)
}

fn ymd(unix_ms: i64) -> String {
    // Days to a civil date (H. Hinnant's algorithm).
    let z = unix_ms.div_euclid(86_400_000) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}")
}

/// A key id this keyring accepts: letters, digits and `-`, bounded (an id
/// comes from the database and becomes a file name).
pub(crate) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 32
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The directory of keys, with the keys read so far.
#[derive(Debug)]
pub struct Keyring {
    dir: PathBuf,
    cache: Mutex<HashMap<String, Arc<Key>>>,
    /// Keys this process found to be the ones the database recorded
    /// under their names (see [`Key::fingerprint`]).
    matched: Mutex<HashSet<String>>,
    /// Some key here (or the directory) was found not to be the pool's.
    mismatched: std::sync::atomic::AtomicBool,
    /// The directory's own random id (`keyring.id`, made with it): copies
    /// of the directory share it, other directories do not.
    directory_id: [u8; 16],
}

impl Keyring {
    /// Opens (and makes, mode 0700) the key directory; one that exists is
    /// made owner-only too.
    pub fn open(dir: &Path) -> Result<Keyring, String> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| {
                format!(
                    "{}: cannot create the archive key directory: {e}",
                    dir.display()
                )
            })?;
        fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).map_err(
            |e| {
                format!(
                    "{}: cannot make the archive key directory owner-only: {e}",
                    dir.display()
                )
            },
        )?;
        let id_path = dir.join("keyring.id");
        let directory_id = match fs::read(&id_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => make_file(dir, &id_path, 16)?,
            Err(e) => return Err(format!("{}: cannot read: {e}", id_path.display())),
        };
        let directory_id: [u8; 16] = directory_id
            .try_into()
            .map_err(|_| format!("{}: not a key directory's id (16 bytes)", id_path.display()))?;
        Ok(Keyring {
            dir: dir.to_path_buf(),
            cache: Mutex::default(),
            matched: Mutex::default(),
            mismatched: std::sync::atomic::AtomicBool::new(false),
            directory_id,
        })
    }

    /// The directory's own id (see the field).
    pub fn directory_id(&self) -> [u8; 16] {
        self.directory_id
    }

    /// Notes that a key here, or the directory, is not the pool's.
    pub fn set_mismatched(&self) {
        self.mismatched
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether a key here, or the directory, was found not to be the
    /// pool's (until the process restarts).
    pub fn mismatched(&self) -> bool {
        self.mismatched.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether key `id` was found to match the database's record of it.
    pub fn matched(&self, id: &str) -> bool {
        self.matched.lock().is_ok_and(|m| m.contains(id))
    }

    /// Notes that key `id` matches the database's record of it.
    pub fn set_matched(&self, id: &str) {
        if let Ok(mut m) = self.matched.lock() {
            m.insert(id.to_string());
        }
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.key"))
    }

    /// The key `id`; made (and written to disk before it is used) when
    /// `create` and missing. `Ok(None)`: no such key (destroyed, or never
    /// made). The cache's lock is held while the file is read, so a key
    /// being destroyed is never put back into the cache.
    pub fn key(&self, id: &str, create: bool) -> Result<Option<Arc<Key>>, String> {
        if !valid_id(id) {
            return Err(format!("{id:?} is not an archive key name"));
        }
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| "the archive key cache is poisoned".to_string())?;
        if let Some(k) = cache.get(id) {
            return Ok(Some(k.clone()));
        }
        let path = self.path(id);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !create {
                    return Ok(None);
                }
                make_file(&self.dir, &path, 32)?
            }
            Err(e) => return Err(format!("{}: cannot read: {e}", path.display())),
        };
        let key = Key::from_bytes(id, &bytes)
            .ok_or_else(|| format!("{}: not an archive key (32 bytes)", path.display()))?;
        let key = Arc::new(key);
        cache.insert(id.to_string(), key.clone());
        Ok(Some(key))
    }

    /// Every key on disk, by id.
    pub fn ids(&self) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        let rd = fs::read_dir(&self.dir)
            .map_err(|e| format!("{}: cannot list: {e}", self.dir.display()))?;
        for entry in rd.flatten() {
            let name = entry.file_name();
            if let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".key")) {
                if valid_id(id) {
                    out.push(id.to_string());
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Destroys key `id`: its bytes overwritten on disk, then the file
    /// removed. What it sealed can no longer be opened, anywhere.
    pub fn destroy(&self, id: &str) -> Result<(), String> {
        if !valid_id(id) {
            return Err(format!("{id:?} is not an archive key name"));
        }
        // Held until the file is gone: no reader puts the key back meanwhile.
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| "the archive key cache is poisoned".to_string())?;
        cache.remove(id);
        if let Ok(mut m) = self.matched.lock() {
            m.remove(id);
        }
        let path = self.path(id);
        match fs::OpenOptions::new().write(true).open(&path) {
            Ok(mut f) => {
                f.write_all(&[0u8; 32])
                    .and_then(|()| f.sync_all())
                    .map_err(|e| format!("{}: cannot overwrite: {e}", path.display()))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(format!("{}: cannot open: {e}", path.display())),
        }
        fs::remove_file(&path).map_err(|e| format!("{}: cannot remove: {e}", path.display()))?;
        sync_dir(&self.dir);
        Ok(())
    }
}

/// Makes `path` (in `dir`) with `len` random bytes, whole or not at all:
/// written and synced under a temporary name, then linked into place
/// (which fails if another process made it meanwhile: then theirs is
/// read).
fn make_file(dir: &Path, path: &Path, len: usize) -> Result<Vec<u8>, String> {
    let mut k = vec![0u8; len];
    let mut n = [0u8; 8];
    let rng = SystemRandom::new();
    rng.fill(&mut k)
        .and_then(|()| rng.fill(&mut n))
        .map_err(|_| "the system random generator failed".to_string())?;
    let tmp = dir.join(format!(".new-{:016x}", u64::from_be_bytes(n)));
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(&k).and_then(|()| f.sync_all()));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(format!("{}: cannot write a new key: {e}", dir.display()));
    }
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            sync_dir(dir);
            Ok(k)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))
        }
        Err(e) => Err(format!("{}: cannot create: {e}", path.display())),
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("parapet-archive-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn day_ids_are_utc_dates() {
        assert_eq!(day_id(0, 14), "d19700101-r14");
        assert_eq!(day_id(1_796_688_000_000 - 1, 1), "d20261207-r1");
        assert_eq!(day_id(1_796_688_000_000, 2562), "d20261208-r2562");
        assert_eq!(day_id(951_782_400_000, 7), "d20000229-r7");
        assert_eq!(hold_id(951_782_400_000), "hold-20000229");
        assert_eq!(key_day("d20261208-r14"), Some("20261208"));
        assert_eq!(key_day("hold-20261208"), Some("20261208"));
        assert_eq!(key_day("x20261208"), None);
        assert_eq!(key_day("d2026"), None);
        assert_eq!(day_of(951_782_400_000), "20000229");
    }

    #[test]
    fn a_key_is_made_once_kept_private_and_destroyed_for_good() {
        let d = dir("keys");
        let ring = Keyring::open(&d).unwrap();
        assert_eq!(
            fs::metadata(&d).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert!(ring.key("d20261206", false).unwrap().is_none());
        let k = ring.key("d20261206", true).unwrap().unwrap();
        let path = d.join("d20261206.key");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let bytes = fs::read(&path).unwrap();
        // Read again by another keyring (another process): the same key.
        let again = Keyring::open(&d)
            .unwrap()
            .key("d20261206", false)
            .unwrap()
            .unwrap();
        let a = crate::aad("o", 1, "s", "r");
        let sealed = crate::seal(&k, &a, "t", b"body").unwrap();
        assert!(crate::open(&again, &a, &sealed).is_some());
        assert_eq!(ring.ids().unwrap(), vec!["d20261206".to_string()]);
        ring.destroy("d20261206").unwrap();
        assert!(!path.exists());
        assert!(ring.key("d20261206", false).unwrap().is_none());
        assert!(ring.ids().unwrap().is_empty());
        // Destroying what is gone is no error.
        ring.destroy("d20261206").unwrap();
        // No temporary file is left behind: only the directory's id.
        let left: Vec<String> = fs::read_dir(&d)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, vec!["keyring.id".to_string()]);
        // The same directory, opened again, has the same id; another not.
        let id = Keyring::open(&d).unwrap().directory_id();
        assert_eq!(ring.directory_id(), id);
        assert_ne!(
            Keyring::open(&dir("keys-other")).unwrap().directory_id(),
            id
        );
        let _ = fs::remove_dir_all(dir("keys-other"));
        assert_ne!(bytes, vec![0u8; 32]);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_fingerprint_tells_keys_apart_and_gives_nothing_away() {
        let a = Key::from_bytes("d20261206-r14", &[1u8; 32]).unwrap();
        let same = Key::from_bytes("d20261206-r14", &[1u8; 32]).unwrap();
        let other = Key::from_bytes("d20261206-r14", &[2u8; 32]).unwrap();
        let renamed = Key::from_bytes("d20261207-r14", &[1u8; 32]).unwrap();
        assert_eq!(a.fingerprint(), same.fingerprint());
        assert_ne!(a.fingerprint(), other.fingerprint());
        assert_ne!(a.fingerprint(), renamed.fingerprint());
        assert!(!a.fingerprint().windows(4).any(|w| w == [1u8; 4]));
        // A match is remembered until the key is destroyed.
        let d = dir("matched");
        let ring = Keyring::open(&d).unwrap();
        ring.key("d20261206-r14", true).unwrap();
        assert!(!ring.matched("d20261206-r14"));
        ring.set_matched("d20261206-r14");
        assert!(ring.matched("d20261206-r14"));
        ring.destroy("d20261206-r14").unwrap();
        assert!(!ring.matched("d20261206-r14"));
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn names_from_the_database_cannot_reach_outside_the_directory() {
        let ring = Keyring::open(&dir("names")).unwrap();
        for bad in ["../x", "a/b", "", "D2026", "x.key", &"a".repeat(33)] {
            assert!(ring.key(bad, true).is_err(), "{bad}");
            assert!(ring.destroy(bad).is_err(), "{bad}");
        }
    }
}
