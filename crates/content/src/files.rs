//! Which files may go: a file is judged by its declared name after
//! normalisation, by the type its content shows, and, for archives, by
//! every name and content type inside them, recursively. The file-transfer
//! policy's `blocked_extensions` and `mode` decide; the caller passes the
//! rules of everyone the file would go between, and the file must pass
//! each (the most restrictive wins).
//!
//! Names are normalised as an attacker would exploit them: Unicode NFKC
//! with invisible and direction-control characters removed (so
//! `photo\u{202E}gpj.exe` is `photogpj.exe`), the last path component only
//! (`/` or `\`), each part of an NTFS stream name (`a.txt:b.exe`) judged,
//! trailing dots and spaces removed (Windows ignores them), lower case; in
//! a block-list every extension of a double extension counts
//! (`invoice.exe.pdf` is blocked for `.exe`).
//!
//! Content: Windows, ELF and Mach-O executables are `.exe` whatever their
//! name; Java archives (a zip with `META-INF/MANIFEST.MF`) are `.jar`;
//! `#!` scripts are `.sh`; HTML and SVG are `.html` and `.svg`. Archives
//! (zip) are opened and every entry judged by name and content, nested
//! archives too, within [`ArchiveLimits`]: entries, depth, bytes
//! decompressed in all (and at most a ratio of the file's own size, so a
//! zip bomb is refused after a few megabytes), the size of a nested
//! archive held in memory. Declared sizes are never used: bytes are
//! counted as they are decompressed. An encrypted entry, or one compressed
//! with a method not read here, cannot be inspected and is refused.

use std::io::{Cursor, Read, Seek, SeekFrom};

use unicode_normalization::UnicodeNormalization;

/// What the file-transfer policy allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Any file but the blocked extensions.
    BlockListed,
    /// Only these extensions (lower case, with the dot).
    AllowListed(Vec<String>),
    BlockAll,
}

/// One user's file-transfer rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRules {
    pub mode: Mode,
    /// Lower case, with the dot. Applies to names and content types inside
    /// archives in every mode.
    pub blocked: Vec<String>,
}

/// How far an archive is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveLimits {
    /// Entries in all archives of the file together.
    pub max_entries: usize,
    /// Archives inside archives (1: the file's own entries only).
    pub max_depth: usize,
    /// Bytes decompressed in all.
    pub max_total: u64,
    /// Bytes decompressed per byte of the file (plus one MiB).
    pub max_ratio: u64,
    /// The largest nested archive held in memory to be opened.
    pub max_nested: u64,
}

impl Default for ArchiveLimits {
    fn default() -> Self {
        ArchiveLimits {
            max_entries: 10_000,
            max_depth: 3,
            max_total: 256 << 20,
            max_ratio: 100,
            max_nested: 64 << 20,
        }
    }
}

/// A content type recognised from the first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Windows PE, ELF or Mach-O.
    Executable,
    Script,
    Jar,
    Zip,
    /// OLE compound file (old Office documents, MSI installers).
    Ole,
    Pdf,
    Png,
    Jpeg,
    Gif,
    Html,
    Svg,
    Unknown,
}

impl Kind {
    /// The extension the content stands for, where it decides more than
    /// the name does.
    pub fn extension(self) -> Option<&'static str> {
        match self {
            Kind::Executable => Some(".exe"),
            Kind::Script => Some(".sh"),
            Kind::Jar => Some(".jar"),
            Kind::Html => Some(".html"),
            Kind::Svg => Some(".svg"),
            _ => None,
        }
    }

    /// A media type to serve it as.
    pub fn media_type(self) -> &'static str {
        match self {
            Kind::Pdf => "application/pdf",
            Kind::Png => "image/png",
            Kind::Jpeg => "image/jpeg",
            Kind::Gif => "image/gif",
            Kind::Zip => "application/zip",
            Kind::Jar => "application/java-archive",
            _ => "application/octet-stream",
        }
    }
}

/// Why a file may not go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileRefusal {
    /// The policy allows no file transfer.
    BlockAll,
    /// `name` has the blocked extension `ext`.
    Blocked { name: String, ext: String },
    /// `name`'s extension is not in the allow-list.
    NotAllowed { name: String },
    /// `name`'s content is of a type the policy refuses.
    Content { name: String, ext: &'static str },
    /// The archive cannot be inspected within the limits, or at all.
    Archive(String),
    /// The meeting's organiser turned file sharing off.
    MeetingOff,
}

impl std::fmt::Display for FileRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileRefusal::BlockAll => f.write_str("the file transfer policy allows no files"),
            FileRefusal::Blocked { name, ext } => {
                write!(f, "{name:?}: {ext} files are blocked")
            }
            FileRefusal::NotAllowed { name } => {
                write!(f, "{name:?}: only the allowed file types may be sent")
            }
            FileRefusal::Content { name, ext } => {
                write!(
                    f,
                    "{name:?} is a {ext} file by its content, which is blocked"
                )
            }
            FileRefusal::Archive(why) => write!(f, "the archive cannot be inspected: {why}"),
            FileRefusal::MeetingOff => f.write_str("file sharing is off in this meeting"),
        }
    }
}

/// What the judgement found about an accepted file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub kind: Kind,
    /// Archive entries inspected (all levels).
    pub entries: usize,
    /// Every extension found inside (names of entries, each extension of a
    /// double one, and what entries' contents show), sorted, once each:
    /// what another user's block-list is later checked against
    /// ([`judge_recorded`]) without opening the file again.
    pub inner: Vec<String>,
}

fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    ) || c.is_control()
}

/// A declared name as it will be judged: the parts to check (the name,
/// and each NTFS stream part), each normalised.
pub fn normalised_names(name: &str) -> Vec<String> {
    let clean: String = name.nfkc().filter(|c| !invisible(*c)).collect();
    let last = clean.rsplit(['/', '\\']).next().unwrap_or("");
    last.split(':')
        .map(|p| p.trim_end_matches(['.', ' ']).trim_start().to_lowercase())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Every extension of a normalised name, the last one last
/// (`a.tar.gz`: `.tar`, `.gz`); a leading dot (`.profile`) is a name.
fn extensions(name: &str) -> Vec<String> {
    let body = name.strip_prefix('.').unwrap_or(name);
    body.split('.')
        .skip(1)
        .filter(|e| !e.is_empty())
        .map(|e| format!(".{e}"))
        .collect()
}

/// Judges a declared name (outside an archive: by the mode).
pub fn judge_name(rules: &FileRules, name: &str) -> Result<(), FileRefusal> {
    if rules.mode == Mode::BlockAll {
        return Err(FileRefusal::BlockAll);
    }
    let parts = normalised_names(name);
    if parts.is_empty() {
        return Err(FileRefusal::NotAllowed {
            name: name.to_owned(),
        });
    }
    for part in &parts {
        let exts = extensions(part);
        if let Some(ext) = exts.iter().find(|e| rules.blocked.contains(e)) {
            return Err(FileRefusal::Blocked {
                name: name.to_owned(),
                ext: ext.clone(),
            });
        }
        if let Mode::AllowListed(allowed) = &rules.mode {
            if !exts.last().is_some_and(|e| allowed.contains(e)) {
                return Err(FileRefusal::NotAllowed {
                    name: name.to_owned(),
                });
            }
        }
    }
    Ok(())
}

/// The content type the first bytes show.
pub fn detect(head: &[u8]) -> Kind {
    const MACHO: [[u8; 4]; 5] = [
        [0xfe, 0xed, 0xfa, 0xce],
        [0xfe, 0xed, 0xfa, 0xcf],
        [0xce, 0xfa, 0xed, 0xfe],
        [0xcf, 0xfa, 0xed, 0xfe],
        // Fat Mach-O (and Java class files): executable either way.
        [0xca, 0xfe, 0xba, 0xbe],
    ];
    if head.starts_with(b"MZ")
        || head.starts_with(b"\x7fELF")
        || MACHO.iter().any(|m| head.starts_with(m))
    {
        return Kind::Executable;
    }
    if head.starts_with(b"#!") {
        return Kind::Script;
    }
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        return Kind::Zip;
    }
    if head.starts_with(&[0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1]) {
        return Kind::Ole;
    }
    if head.starts_with(b"%PDF-") {
        return Kind::Pdf;
    }
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Kind::Png;
    }
    if head.starts_with(&[0xff, 0xd8, 0xff]) {
        return Kind::Jpeg;
    }
    if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        return Kind::Gif;
    }
    let text = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head);
    let start = text
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(text.len());
    let lower: Vec<u8> = text[start..text.len().min(start + 1024)]
        .iter()
        .map(u8::to_ascii_lowercase)
        .collect();
    let has = |needle: &[u8]| lower.windows(needle.len()).any(|w| w == needle);
    if lower.starts_with(b"<svg") || (lower.starts_with(b"<?xml") && has(b"<svg")) {
        return Kind::Svg;
    }
    if lower.starts_with(b"<!doctype html")
        || lower.starts_with(b"<html")
        || lower.starts_with(b"<script")
        || lower.starts_with(b"<head")
        || lower.starts_with(b"<body")
    {
        return Kind::Html;
    }
    Kind::Unknown
}

/// Judges the content type against the rules: outside an archive the
/// mode decides; inside, the block-list.
fn judge_kind(rules: &FileRules, name: &str, kind: Kind, inside: bool) -> Result<(), FileRefusal> {
    let Some(ext) = kind.extension() else {
        return Ok(());
    };
    let refused = rules.blocked.iter().any(|b| b == ext)
        || match (&rules.mode, inside) {
            (Mode::AllowListed(allowed), false) => !allowed.iter().any(|a| a == ext),
            _ => false,
        };
    if refused {
        return Err(FileRefusal::Content {
            name: name.to_owned(),
            ext,
        });
    }
    Ok(())
}

/// Judges a file: its declared name, its content, and what is inside it.
pub fn judge(
    rules: &FileRules,
    limits: &ArchiveLimits,
    name: &str,
    bytes: &[u8],
) -> Result<Accepted, FileRefusal> {
    judge_reader(rules, limits, name, Cursor::new(bytes), bytes.len() as u64)
}

/// [`judge`] for a file read from `file` (`len` bytes long), such as an
/// upload on disk: only what archives need is read, and held in memory
/// only up to [`ArchiveLimits::max_nested`] for a nested archive.
pub fn judge_reader<R: Read + Seek>(
    rules: &FileRules,
    limits: &ArchiveLimits,
    name: &str,
    mut file: R,
    len: u64,
) -> Result<Accepted, FileRefusal> {
    judge_name(rules, name)?;
    let unreadable =
        |e: std::io::Error| FileRefusal::Archive(format!("the file cannot be read: {e}"));
    let mut head = Vec::with_capacity(4096);
    file.by_ref()
        .take(4096)
        .read_to_end(&mut head)
        .map_err(unreadable)?;
    file.seek(SeekFrom::Start(0)).map_err(unreadable)?;
    let mut kind = detect(&head);
    let mut budget = Budget {
        entries: 0,
        inner: Default::default(),
        decompressed: 0,
        max_decompressed: limits
            .max_total
            .min(len.saturating_mul(limits.max_ratio) + (1 << 20)),
    };
    if kind == Kind::Zip {
        let jar = inspect(rules, limits, name, file, 1, &mut budget)?;
        if jar {
            kind = Kind::Jar;
        }
    }
    judge_kind(rules, name, kind, false)?;
    Ok(Accepted {
        kind,
        entries: budget.entries,
        inner: budget.inner.into_iter().collect(),
    })
}

/// Judges a file already accepted for someone else against `rules`, from
/// what was recorded when it was inspected: its declared `name`, the
/// extension its content showed (`kind`, empty for none) and the
/// extensions inside it. The same decision [`judge`] makes for these
/// rules, without the bytes.
pub fn judge_recorded(
    rules: &FileRules,
    name: &str,
    kind: &str,
    inner: &[String],
) -> Result<(), FileRefusal> {
    judge_name(rules, name)?;
    if !kind.is_empty() {
        let refused = rules.blocked.iter().any(|b| b == kind)
            || matches!(&rules.mode, Mode::AllowListed(allowed) if !allowed.iter().any(|a| a == kind));
        if refused {
            return Err(FileRefusal::Content {
                name: name.to_owned(),
                ext: static_ext(kind),
            });
        }
    }
    if let Some(ext) = inner.iter().find(|e| rules.blocked.contains(e)) {
        return Err(FileRefusal::Blocked {
            name: format!("{name}/..."),
            ext: ext.clone(),
        });
    }
    Ok(())
}

/// The `'static` name of an extension a [`Kind`] stands for.
fn static_ext(ext: &str) -> &'static str {
    [
        Kind::Executable,
        Kind::Script,
        Kind::Jar,
        Kind::Html,
        Kind::Svg,
    ]
    .iter()
    .filter_map(|k| k.extension())
    .find(|e| *e == ext)
    .unwrap_or("unknown")
}

/// Judges a file against the rules of everyone it would go between
/// (sender and recipients): it must pass each.
pub fn judge_all(
    everyone: &[FileRules],
    limits: &ArchiveLimits,
    name: &str,
    bytes: &[u8],
) -> Result<Accepted, FileRefusal> {
    let mut accepted = None;
    for rules in everyone {
        accepted = Some(judge(rules, limits, name, bytes)?);
    }
    accepted.ok_or(FileRefusal::BlockAll)
}

/// Whether a file may be shared in a meeting. The organiser's
/// conferencing policy (`file_transfer`: `follow_policy` or `off`) can
/// only take file sharing away: the file must still pass the sharer's and
/// every participant's file-transfer rules, as a direct transfer would,
/// whoever organises (Lync let an organiser switch it back on).
pub fn meeting_allows(
    organiser_follows_policy: bool,
    everyone: &[FileRules],
    limits: &ArchiveLimits,
    name: &str,
    bytes: &[u8],
) -> Result<Accepted, FileRefusal> {
    if !organiser_follows_policy {
        return Err(FileRefusal::MeetingOff);
    }
    judge_all(everyone, limits, name, bytes)
}

/// What an archive may still cost.
struct Budget {
    entries: usize,
    /// Extensions seen inside.
    inner: std::collections::BTreeSet<String>,
    decompressed: u64,
    max_decompressed: u64,
}

/// Reads at most `cap` bytes of `r`, counting them against the budget;
/// `Err` when the budget is spent.
fn read_counted(
    r: &mut impl Read,
    cap: u64,
    budget: &mut Budget,
    keep: &mut Vec<u8>,
) -> Result<(), FileRefusal> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = r
            .read(&mut buf)
            .map_err(|e| FileRefusal::Archive(format!("an entry cannot be read: {e}")))?;
        if n == 0 {
            return Ok(());
        }
        budget.decompressed += n as u64;
        if budget.decompressed > budget.max_decompressed {
            return Err(FileRefusal::Archive(format!(
                "more than {} bytes decompressed (a zip bomb?)",
                budget.max_decompressed
            )));
        }
        let room = cap.saturating_sub(keep.len() as u64);
        let take = n.min(usize::try_from(room).unwrap_or(usize::MAX));
        keep.extend_from_slice(&buf[..take]);
    }
}

/// Opens a zip and judges every entry (recursing into nested archives);
/// returns whether it is a Java archive.
fn inspect<R: Read + Seek>(
    rules: &FileRules,
    limits: &ArchiveLimits,
    outer: &str,
    file: R,
    depth: usize,
    budget: &mut Budget,
) -> Result<bool, FileRefusal> {
    let bad = |e: zip::result::ZipError| FileRefusal::Archive(format!("{outer:?}: {e}"));
    let mut archive = zip::ZipArchive::new(file).map_err(bad)?;
    let mut jar = false;
    for i in 0..archive.len() {
        budget.entries += 1;
        if budget.entries > limits.max_entries {
            return Err(FileRefusal::Archive(format!(
                "more than {} entries",
                limits.max_entries
            )));
        }
        let mut entry = archive.by_index(i).map_err(|e| match e {
            zip::result::ZipError::UnsupportedArchive(m) => {
                FileRefusal::Archive(format!("{outer:?}: {m}"))
            }
            e => bad(e),
        })?;
        let name = String::from_utf8_lossy(entry.name_raw()).into_owned();
        if entry.encrypted() {
            return Err(FileRefusal::Archive(format!(
                "{name:?} is encrypted and cannot be inspected"
            )));
        }
        if entry.is_dir() {
            continue;
        }
        if name.eq_ignore_ascii_case("META-INF/MANIFEST.MF") {
            jar = true;
        }
        for part in normalised_names(&name) {
            let exts = extensions(&part);
            budget.inner.extend(exts.iter().cloned());
            if let Some(ext) = exts.into_iter().find(|e| rules.blocked.contains(e)) {
                return Err(FileRefusal::Blocked {
                    name: format!("{outer}/{name}"),
                    ext,
                });
            }
        }
        // Everything is decompressed (a bomb shows itself by what it
        // yields, not by what it declares); the first bytes are kept for
        // the content type, a nested archive whole.
        let nested_by_name = normalised_names(&name)
            .iter()
            .any(|p| p.ends_with(".zip") || p.ends_with(".jar"));
        let cap = if nested_by_name {
            limits.max_nested
        } else {
            4096
        };
        let mut data = Vec::new();
        read_counted(&mut entry, cap, budget, &mut data)?;
        let kind = detect(&data);
        let inner = format!("{outer}/{name}");
        budget.inner.extend(kind.extension().map(str::to_owned));
        judge_kind(rules, &inner, kind, true)?;
        if kind == Kind::Zip || nested_by_name {
            if depth >= limits.max_depth {
                return Err(FileRefusal::Archive(format!(
                    "archives nested deeper than {}",
                    limits.max_depth
                )));
            }
            if kind != Kind::Zip {
                // Named an archive, but not one: judged by its content
                // already.
                continue;
            }
            // Reread whole if only the head was kept.
            if !nested_by_name {
                drop(entry);
                let mut again = archive.by_index(i).map_err(bad)?;
                data.clear();
                read_counted(&mut again, limits.max_nested, budget, &mut data)?;
            }
            if data.len() as u64 >= limits.max_nested {
                return Err(FileRefusal::Archive(format!(
                    "{inner:?} is larger than {} bytes",
                    limits.max_nested
                )));
            }
            if inspect(
                rules,
                limits,
                &inner,
                Cursor::new(&data[..]),
                depth + 1,
                budget,
            )? {
                budget.inner.insert(".jar".to_owned());
                judge_kind(rules, &inner, Kind::Jar, true)?;
            }
        }
    }
    Ok(jar)
}

#[cfg(test)]
mod tests;
