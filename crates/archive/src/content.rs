//! File content the archive keeps (when the archiving policy says so):
//! sealed in chunks with the record's key, so a file of any size is sealed
//! and opened in bounded memory. `PAC1`, an 8-byte random nonce prefix,
//! then chunks of at most [`CHUNK`] bytes, each AES-256-GCM with the nonce
//! prefix ‖ chunk index and bound to the record (its `aad`), the index and
//! whether it is the last: a chunk moved, dropped or cut off fails to
//! open, and so does a stream whose last chunk is missing.

use std::io::{Read, Write};

use ring::aead::{Aad, Nonce, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

use super::Key;

/// Plaintext bytes per chunk.
pub const CHUNK: usize = 64 * 1024;
/// The archive's content directory, in the data directory: one directory
/// per key, removed when its key is destroyed.
pub const DIR: &str = "archive-files";

/// What a file's sealed content is bound to: its record and its name in
/// the content directory.
pub fn aad(record_aad: &[u8], rel: &str) -> Vec<u8> {
    let mut v = record_aad.to_vec();
    v.extend_from_slice(b"\ncontent:");
    v.extend_from_slice(rel.as_bytes());
    v
}

/// The path of sealed content `rel` (`KEY_ID/32 hex.sealed`, as a record
/// names it) under `root`; `None` for any other name (a record's field
/// never leads outside the directory).
pub fn path(root: &std::path::Path, rel: &str) -> Option<std::path::PathBuf> {
    let (key, file) = rel.split_once('/')?;
    let hex = file.strip_suffix(".sealed")?;
    let ok = super::keys::valid_id(key)
        && hex.len() == 32
        && hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    ok.then(|| root.join(key).join(file))
}

/// Removes the content sealed under key `id` (its key is being
/// destroyed: nothing there can be opened again anyway).
pub fn remove_key(root: &std::path::Path, id: &str) -> Result<(), String> {
    if !super::keys::valid_id(id) {
        return Err(format!("{id:?} is not an archive key name"));
    }
    match std::fs::remove_dir_all(root.join(id)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("{}: {e}", root.join(id).display())),
    }
}
const MAGIC: &[u8; 4] = b"PAC1";
const TAG: usize = 16;

fn nonce(prefix: &[u8; 8], index: u32) -> Nonce {
    let mut n = [0u8; NONCE_LEN];
    n[..8].copy_from_slice(prefix);
    n[8..].copy_from_slice(&index.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

fn chunk_aad(aad: &[u8], index: u32, last: bool) -> Vec<u8> {
    let mut v = Vec::with_capacity(aad.len() + 5);
    v.extend_from_slice(aad);
    v.extend_from_slice(&index.to_be_bytes());
    v.push(u8::from(last));
    v
}

/// Reads until `buf` is full or the input ends; how many bytes came.
fn fill(src: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match src.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Seals what `src` holds into `dst`; returns the plaintext's length.
pub fn seal_stream(
    key: &Key,
    aad: &[u8],
    src: &mut impl Read,
    dst: &mut impl Write,
) -> Result<u64, String> {
    let io = |e: std::io::Error| e.to_string();
    let mut prefix = [0u8; 8];
    SystemRandom::new()
        .fill(&mut prefix)
        .map_err(|_| "the system random generator failed".to_string())?;
    dst.write_all(MAGIC).map_err(io)?;
    dst.write_all(&prefix).map_err(io)?;
    let mut cur = vec![0u8; CHUNK];
    let mut next = vec![0u8; CHUNK];
    let mut n = fill(src, &mut cur).map_err(io)?;
    let mut total = 0u64;
    let mut index: u32 = 0;
    loop {
        // One chunk read ahead: the chunk before the end is the last.
        let m = if n == CHUNK {
            fill(src, &mut next).map_err(io)?
        } else {
            0
        };
        let last = m == 0;
        let mut buf = cur[..n].to_vec();
        key.aead()
            .seal_in_place_append_tag(
                nonce(&prefix, index),
                Aad::from(chunk_aad(aad, index, last)),
                &mut buf,
            )
            .map_err(|_| "sealing failed".to_string())?;
        dst.write_all(&buf).map_err(io)?;
        total += n as u64;
        if last {
            return Ok(total);
        }
        index = index.checked_add(1).ok_or("a file too large to archive")?;
        std::mem::swap(&mut cur, &mut next);
        n = m;
    }
}

/// Opens what [`seal_stream`] made into `dst`; returns the plaintext's
/// length. An error when the key, the record or any byte is not the one
/// it was sealed with, or when the end is missing (what was written to
/// `dst` before then is not to be trusted).
pub fn open_stream(
    key: &Key,
    aad: &[u8],
    src: &mut impl Read,
    dst: &mut impl Write,
) -> Result<u64, String> {
    let io = |e: std::io::Error| e.to_string();
    let mut head = [0u8; 12];
    if fill(src, &mut head).map_err(io)? != 12 || &head[..4] != MAGIC {
        return Err("not sealed archive content".into());
    }
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&head[4..]);
    let mut cur = vec![0u8; CHUNK + TAG];
    let mut next = vec![0u8; CHUNK + TAG];
    let mut n = fill(src, &mut cur).map_err(io)?;
    let mut total = 0u64;
    let mut index: u32 = 0;
    loop {
        if n < TAG {
            return Err("archive content cut short".into());
        }
        let m = if n == CHUNK + TAG {
            fill(src, &mut next).map_err(io)?
        } else {
            0
        };
        let last = m == 0;
        let plain = key
            .aead()
            .open_in_place(
                nonce(&prefix, index),
                Aad::from(chunk_aad(aad, index, last)),
                &mut cur[..n],
            )
            .map_err(|_| "archive content does not open with this key and record".to_string())?;
        dst.write_all(plain).map_err(io)?;
        total += plain.len() as u64;
        if last {
            return Ok(total);
        }
        index = index.checked_add(1).ok_or("archive content too long")?;
        std::mem::swap(&mut cur, &mut next);
        n = m;
    }
}

/// Seals what `src` (sealed under `from` for `from_aad`) holds again
/// under `to` for `to_aad`, chunk by chunk (nothing in clear leaves
/// memory; bounded memory): a legal hold moving content off its day's key.
pub fn reseal_stream(
    from: (&Key, &[u8]),
    to: (&Key, &[u8]),
    src: &mut impl Read,
    dst: &mut impl Write,
) -> Result<u64, String> {
    // A writer that seals each whole chunk it is handed: open_stream hands
    // over exactly one plaintext chunk per write, in order.
    struct Sealer<'a, W: Write> {
        key: &'a Key,
        aad: &'a [u8],
        prefix: [u8; 8],
        index: u32,
        pending: Option<Vec<u8>>,
        dst: &'a mut W,
    }
    impl<W: Write> Sealer<'_, W> {
        fn emit(&mut self, last: bool) -> std::io::Result<()> {
            let Some(mut buf) = self.pending.take() else {
                return Ok(());
            };
            self.key
                .aead()
                .seal_in_place_append_tag(
                    nonce(&self.prefix, self.index),
                    Aad::from(chunk_aad(self.aad, self.index, last)),
                    &mut buf,
                )
                .map_err(|_| std::io::Error::other("sealing failed"))?;
            self.dst.write_all(&buf)?;
            self.index = self
                .index
                .checked_add(1)
                .ok_or_else(|| std::io::Error::other("too long"))?;
            Ok(())
        }
    }
    impl<W: Write> Write for Sealer<'_, W> {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.emit(false)?;
            self.pending = Some(b.to_vec());
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut prefix = [0u8; 8];
    SystemRandom::new()
        .fill(&mut prefix)
        .map_err(|_| "the system random generator failed".to_string())?;
    dst.write_all(MAGIC).map_err(|e| e.to_string())?;
    dst.write_all(&prefix).map_err(|e| e.to_string())?;
    let mut w = Sealer {
        key: to.0,
        aad: to.1,
        prefix,
        index: 0,
        pending: None,
        dst,
    };
    let n = open_stream(from.0, from.1, src, &mut w)?;
    // An empty file is one empty chunk; open_stream wrote it (empty).
    if w.pending.is_none() {
        w.pending = Some(Vec::new());
    }
    w.emit(true).map_err(|e| e.to_string())?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> Key {
        Key::from_bytes("d20261206-r14", &[b; 32]).unwrap()
    }

    fn sealed(len: usize) -> (Vec<u8>, Vec<u8>) {
        let plain: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let mut out = Vec::new();
        let n = seal_stream(&key(1), b"rec", &mut plain.as_slice(), &mut out).unwrap();
        assert_eq!(n, len as u64);
        (plain, out)
    }

    #[test]
    fn any_length_opens_whole_with_its_key_and_record() {
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 17] {
            let (plain, s) = sealed(len);
            let mut back = Vec::new();
            assert_eq!(
                open_stream(&key(1), b"rec", &mut s.as_slice(), &mut back),
                Ok(len as u64),
                "{len}"
            );
            assert_eq!(back, plain, "{len}");
            if len > 16 {
                assert!(!s.windows(16).any(|w| w == &plain[..16]), "in clear");
            }
        }
    }

    #[test]
    fn content_sealed_again_opens_with_the_new_key_only() {
        for len in [0, 5, CHUNK, 2 * CHUNK + 3] {
            let (plain, s) = sealed(len);
            let mut again = Vec::new();
            let n = reseal_stream(
                (&key(1), b"rec"),
                (&key(3), b"rec2"),
                &mut s.as_slice(),
                &mut again,
            )
            .unwrap();
            assert_eq!(n, len as u64);
            let mut back = Vec::new();
            open_stream(&key(3), b"rec2", &mut again.as_slice(), &mut back).unwrap();
            assert_eq!(back, plain, "{len}");
            assert!(open_stream(&key(1), b"rec", &mut again.as_slice(), &mut Vec::new()).is_err());
        }
    }

    #[test]
    fn only_a_records_own_names_make_a_path() {
        let root = std::path::Path::new("/data/archive-files");
        let good = "d20261206-r14/0123456789abcdef0123456789abcdef.sealed";
        assert_eq!(path(root, good), Some(root.join(good)));
        for bad in [
            "../keys/d20261206-r14.key",
            "d20261206-r14/../../x.sealed",
            "d20261206-r14/0123456789ABCDEF0123456789abcdef.sealed",
            "d20261206-r14/0123.sealed",
            "No_Key/0123456789abcdef0123456789abcdef.sealed",
            "d20261206-r14/0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(path(root, bad), None, "{bad}");
        }
    }

    #[test]
    fn another_key_record_a_changed_bit_or_a_cut_fails() {
        let (_, s) = sealed(2 * CHUNK + 5);
        let open =
            |k: &Key, aad: &[u8], b: &[u8]| open_stream(k, aad, &mut &b[..], &mut Vec::new());
        assert!(open(&key(2), b"rec", &s).is_err());
        assert!(open(&key(1), b"other", &s).is_err());
        let mut flipped = s.clone();
        flipped[40] ^= 1;
        assert!(open(&key(1), b"rec", &flipped).is_err());
        // Cut at a chunk boundary: the chunk before was not the last.
        let whole_chunks = 12 + 2 * (CHUNK + TAG);
        assert!(open(&key(1), b"rec", &s[..whole_chunks]).is_err());
        assert!(open(&key(1), b"rec", &s[..s.len() - 1]).is_err());
        assert!(open(&key(1), b"rec", b"PAC1").is_err());
    }
}
