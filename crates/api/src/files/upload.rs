//! `POST /files`: an upload as Linphone makes it. An empty POST is the
//! sign-in (401 with the Digest challenges, then 204); then a
//! `multipart/form-data` POST whose part named `File` is the file,
//! answered 200 with the RCS pointer to send, 400 when it is too large
//! (Linphone tells its user so) or over a quota, 403 when the policy
//! refuses it.
//!
//! The file part is written to `incoming/` as it arrives (never held in
//! memory), counted against the policy's size limit as it comes (a
//! declared Content-Length over it is refused before anything is read),
//! under a deadline that grows with the size (a slow upload ends), then
//! fsynced, judged by the uploader's file-transfer rules (name, content,
//! archives), scanned by clamd where configured ([`super::scan`]),
//! renamed into place, the directory fsynced, and recorded
//! with the quotas checked in the same transaction; only then 200.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use content::multipart::{self, Event};
use futures_util::StreamExt;
use store::{FileAdded, FileRow, Store};

use super::{sign_in, FileService};
use crate::{internal, problem, Ctx};

/// Room for the multipart framing around the file.
const FRAMING: u64 = 64 * 1024;
/// Bytes a second an upload must keep up, on average, after the first
/// seconds ([`GRACE_SECS`]).
const MIN_RATE: u64 = 32 * 1024;
/// Time every upload has, whatever its size.
const GRACE_SECS: u64 = 15;
/// Bytes gathered before they are written (a file this size or smaller
/// is written in one trip off the runtime).
pub(super) const SPOOL: usize = 2 << 20;

fn bad(detail: impl Into<String>) -> Response {
    problem(StatusCode::BAD_REQUEST, detail)
}

/// Deletes an upload's partial file unless it was kept.
struct Partial {
    path: Option<std::path::PathBuf>,
}

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            tokio::spawn(async move {
                let _ = tokio::fs::remove_file(p).await;
            });
        }
    }
}

pub(crate) async fn upload<S: Store>(State(ctx): State<Ctx<S>>, req: Request) -> Response {
    match run(&ctx, req).await {
        Ok(r) | Err(r) => r,
    }
}

/// The address of record inside a `From` header value
/// (`"Alice" <sip:alice@example.com>;tag=x` or a bare URI), lower case.
fn from_aor(value: &str) -> String {
    let v = value.trim();
    let uri = match (v.find('<'), v.find('>')) {
        (Some(a), Some(b)) if a < b => &v[a + 1..b],
        _ => v.split(';').next().unwrap_or(v),
    };
    uri.split(';')
        .next()
        .unwrap_or(uri)
        .trim()
        .to_ascii_lowercase()
}

/// The name to keep: the last path component, control and direction
/// characters removed, at most 255 characters (what the pointer shows;
/// the policy judges the name as given).
fn display_name(given: &str) -> String {
    let last = given.rsplit(['/', '\\']).next().unwrap_or("");
    let clean: String = last
        .chars()
        .filter(|c| {
            !c.is_control() && !matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
        })
        .take(255)
        .collect();
    let clean = clean.trim().trim_end_matches(['.', ' ']).to_owned();
    if clean.is_empty() {
        "file".into()
    } else {
        clean
    }
}

/// The type the pointer announces: what the content showed, else the
/// client's word when it is a plain `type/subtype` that is not markup or
/// script.
fn announced_type(detected: content::files::Kind, declared: Option<&str>) -> String {
    let d = detected.media_type();
    if d != "application/octet-stream" {
        return d.into();
    }
    let Some(t) = declared.map(|t| {
        t.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    }) else {
        return d.into();
    };
    let plain = t.split_once('/').is_some_and(|(a, b)| {
        !a.is_empty()
            && !b.is_empty()
            && t.bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"/.+-".contains(&c))
    });
    let risky =
        t.contains("html") || t.contains("xml") || t.contains("svg") || t.contains("script");
    if plain && !risky {
        t
    } else {
        d.into()
    }
}

fn random_id() -> Result<String, Response> {
    let mut b = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .map_err(|_| internal("no randomness"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

async fn run<S: Store>(ctx: &Ctx<S>, req: Request) -> Result<Response, Response> {
    let (parts, body) = req.into_parts();
    let (files, super::Signed { aor, rules, limits }) = sign_in(ctx, &parts).await?;
    if let Some(from) = parts.headers.get("from") {
        let given = from.to_str().map(from_aor).unwrap_or_default();
        if given != aor.to_ascii_lowercase() {
            return Err(problem(
                StatusCode::FORBIDDEN,
                format!("From names {given:?}; you are signed in as {aor}"),
            ));
        }
    }
    let length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let Some(content_type) = content_type.filter(|_| length != Some(0)) else {
        // The first, empty POST: signed in, go ahead.
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    if rules.mode == content::files::Mode::BlockAll {
        ctx.metrics.files_upload_refused.fetch_add(1, Relaxed);
        return Err(problem(
            StatusCode::FORBIDDEN,
            "the file transfer policy allows you no files",
        ));
    }
    let too_large = || {
        bad(format!(
            "the file is larger than {} MiB, the most you may send",
            limits.max_file >> 20
        ))
    };
    if length.is_some_and(|l| l > limits.max_file + FRAMING) {
        return Err(too_large());
    }
    let mut parser = multipart::Parser::new(&content_type, multipart::Limits::default())
        .map_err(|e| bad(format!("the upload must be multipart/form-data: {e}")))?;
    let Ok(_permit) = files.uploads.try_acquire() else {
        let mut r = problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many uploads at once; try again shortly",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return Err(r);
    };
    let id = random_id()?;
    let tmp = files.incoming.join(format!("{id}.part"));
    let mut partial = Partial {
        path: Some(tmp.clone()),
    };
    let mut out = Spool::new(tmp.clone(), files.buffer());
    let deadline = tokio::time::Instant::now()
        + Duration::from_secs(GRACE_SECS + length.unwrap_or(limits.max_file) / MIN_RATE);
    let mut stream = body.into_data_stream();
    let mut events = Vec::new();
    let mut file_part: Option<multipart::PartHeaders> = None;
    let (mut in_file, mut size) = (false, 0u64);
    loop {
        let chunk = match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => {
                return Err(problem(
                    StatusCode::REQUEST_TIMEOUT,
                    "the upload was too slow and was stopped",
                ))
            }
            Ok(None) => break,
            Ok(Some(Err(_))) => return Err(bad("the upload was interrupted")),
            Ok(Some(Ok(c))) => c,
        };
        parser
            .feed(chunk, &mut events)
            .map_err(|e| bad(format!("the multipart body is malformed: {e}")))?;
        for e in events.drain(..) {
            match e {
                Event::Part(h) => {
                    in_file = h.name == "File" && file_part.is_none();
                    if in_file {
                        file_part = Some(h);
                    }
                }
                Event::Data(d) if in_file => {
                    size += d.len() as u64;
                    if size > limits.max_file {
                        return Err(too_large());
                    }
                    out.push(&d).await.map_err(internal)?;
                }
                Event::Data(_) => {}
                Event::PartEnd | Event::End => in_file = false,
            }
        }
    }
    parser
        .finish()
        .map_err(|e| bad(format!("the multipart body is malformed: {e}")))?;
    let Some(part) = file_part else {
        return Err(bad("the upload has no part named File"));
    };
    let given_name = part.filename.clone().unwrap_or_default();
    let path = files.path(&id);
    // Without a scan to wait for, the file goes into place in the same
    // trip off the runtime as it is written, synced and judged.
    let place_now = ctx
        .cfg
        .scanning
        .is_none()
        .then(|| (path.clone(), files.dir.clone()));
    let judged = match out
        .finish(rules, given_name.clone(), size, place_now.clone())
        .await
    {
        Ok((accepted, buf, sha256)) => {
            files.give_back(buf);
            if place_now.is_some() {
                partial.path = Some(path.clone());
            }
            Ok((accepted, sha256))
        }
        Err(r) => Err(r),
    };
    let (accepted, sha256) = match judged {
        Ok(a) => a,
        Err(r) => {
            if r.status() == StatusCode::FORBIDDEN {
                ctx.metrics.files_upload_refused.fetch_add(1, Relaxed);
            }
            return Err(r);
        }
    };
    if let Some(scanning) = &ctx.cfg.scanning {
        match super::scan::scan(scanning, &tmp).await {
            super::scan::Verdict::Clean => {}
            super::scan::Verdict::NotClean(why) => {
                ctx.metrics.files_upload_refused.fetch_add(1, Relaxed);
                tracing::warn!(owner = %aor, why = %why, "upload refused by the virus scanner");
                return Err(problem(StatusCode::FORBIDDEN, why));
            }
            super::scan::Verdict::Unavailable(why) => {
                tracing::error!(error = %why, "virus scanner unavailable: upload refused");
                let mut r = problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the virus scanner is unavailable, so the file was not accepted; try again later",
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
                return Err(r);
            }
        }
    }
    let name = display_name(&given_name);
    if place_now.is_none() {
        place(&tmp, &path, &files).await.map_err(internal)?;
        partial.path = Some(path);
    }
    let now = sip_app::unix_now();
    let expires_at = now + limits.retention_secs;
    let row = FileRow {
        id: id.clone(),
        owner: aor.clone(),
        name: name.clone(),
        content_type: accepted.kind.media_type().into(),
        kind: accepted.kind.extension().unwrap_or("").into(),
        inner: accepted.inner.clone(),
        size,
        sha256,
        created_at: now,
        expires_at,
        deleted_at: None,
    };
    match store::Files::add_file(&ctx.store, row, limits.daily_quota, limits.total_quota)
        .await
        .map_err(internal)?
    {
        FileAdded::Added => {}
        FileAdded::DailyQuota { used } => {
            return Err(bad(format!(
                "you have sent {} MiB in the last 24 hours; the most is {} MiB",
                used >> 20,
                limits.daily_quota >> 20
            )))
        }
        FileAdded::TotalQuota { used } => {
            return Err(bad(format!(
            "your files kept take {} MiB; the most is {} MiB (files are deleted when they expire)",
            used >> 20,
            limits.total_quota >> 20
        )))
        }
    }
    partial.path = None;
    let info = content::ft_http::FileInfo {
        name,
        size,
        content_type: announced_type(accepted.kind, part.content_type.as_deref()),
        url: format!(
            "https://{}{}/{id}",
            crate::authority(ctx, &parts.headers),
            content::ft_http::FILES_PATH
        ),
        until: Some(sip_app::rfc3339(expires_at)),
    };
    ctx.metrics.files_uploaded.fetch_add(1, Relaxed);
    tracing::info!(owner = %aor, id = %id, size, "file uploaded");
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, content::ft_http::CONTENT_TYPE)],
        content::ft_http::write(&info),
    )
        .into_response())
}

/// An upload on its way to disk: gathered in a pooled buffer (reused
/// memory: no page faults per upload) and written a buffer at a time off
/// the runtime's threads; a file that fits in one buffer is created,
/// written, synced and judged (and, without a scan, put in place) in one
/// trip. For files of a few MB each trip to a blocking thread costs more
/// than the bytes it carries (bench/README.md).
struct Spool {
    path: std::path::PathBuf,
    file: Option<std::fs::File>,
    buf: Vec<u8>,
    /// SHA-256 of what was written so far (computed off the runtime's
    /// threads, with the writes).
    hash: ring::digest::Context,
}

impl Spool {
    fn new(path: std::path::PathBuf, buf: Vec<u8>) -> Spool {
        Spool {
            path,
            file: None,
            buf,
            hash: ring::digest::Context::new(&ring::digest::SHA256),
        }
    }

    async fn push(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= SPOOL {
            let (path, file, buf, hash) = (
                self.path.clone(),
                self.file.take(),
                std::mem::take(&mut self.buf),
                self.hash.clone(),
            );
            let (file, buf, hash) =
                tokio::task::spawn_blocking(move || write_all(&path, file, buf, hash))
                    .await
                    .map_err(std::io::Error::other)??;
            self.file = Some(file);
            self.buf = buf;
            self.hash = hash;
        }
        Ok(())
    }

    /// Writes the rest, syncs, judges the file by `rules` and, given
    /// `place` (its final path and directory), renames it there and syncs
    /// the directory. Returns the judgement, the buffer (for reuse) and
    /// the file's SHA-256 in lower-case hex.
    async fn finish(
        self,
        rules: content::files::FileRules,
        name: String,
        size: u64,
        place: Option<(std::path::PathBuf, std::path::PathBuf)>,
    ) -> Result<(content::files::Accepted, Vec<u8>, String), Response> {
        let Spool {
            path,
            file,
            buf,
            hash,
        } = self;
        tokio::task::spawn_blocking(move || {
            use std::io::Seek;
            let io = |e: std::io::Error| internal(e.to_string());
            let (mut f, buf, hash) = write_all(&path, file, buf, hash).map_err(io)?;
            let sha256: String = hash
                .finish()
                .as_ref()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            f.sync_all().map_err(io)?;
            f.rewind().map_err(io)?;
            let accepted = content::files::judge_reader(
                &rules,
                &content::files::ArchiveLimits::default(),
                &name,
                std::io::BufReader::new(f),
                size,
            )
            .map_err(|why| problem(StatusCode::FORBIDDEN, why.to_string()))?;
            if let Some((to, dir)) = place {
                std::fs::rename(&path, to).map_err(io)?;
                std::fs::File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(io)?;
            }
            Ok((accepted, buf, sha256))
        })
        .await
        .map_err(internal)?
    }
}

/// Writes `buf` to the upload's file (created on first use; only the
/// server's user may read it) and into `hash`; returns the file, the
/// emptied buffer and the hash.
fn write_all(
    path: &std::path::Path,
    file: Option<std::fs::File>,
    mut buf: Vec<u8>,
    mut hash: ring::digest::Context,
) -> std::io::Result<(std::fs::File, Vec<u8>, ring::digest::Context)> {
    use std::io::Write;
    let mut f = match file {
        Some(f) => f,
        None => {
            let mut o = std::fs::OpenOptions::new();
            o.read(true).write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
            o.open(path)?
        }
    };
    f.write_all(&buf)?;
    hash.update(&buf);
    buf.clear();
    Ok((f, buf, hash))
}

/// Moves a complete upload into place and makes the move durable, in one
/// trip off the runtime's threads.
async fn place(
    tmp: &std::path::Path,
    path: &std::path::Path,
    files: &Arc<FileService>,
) -> std::io::Result<()> {
    let (tmp, path, dir) = (tmp.to_owned(), path.to_owned(), files.dir.clone());
    tokio::task::spawn_blocking(move || {
        std::fs::rename(tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })
    .await
    .map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_names_the_address_of_record() {
        assert_eq!(
            from_aor("\"Alice\" <sip:Alice@Example.com>;tag=1"),
            "sip:alice@example.com"
        );
        assert_eq!(from_aor("sip:a@b;x=y"), "sip:a@b");
        assert_eq!(from_aor("<sip:a@b;transport=tls>"), "sip:a@b");
    }

    #[test]
    fn names_are_kept_without_paths_or_controls() {
        assert_eq!(display_name("../../etc/passwd"), "passwd");
        assert_eq!(display_name("C:\\temp\\a.txt"), "a.txt");
        assert_eq!(display_name("a\u{202E}gpj.exe"), "agpj.exe");
        assert_eq!(display_name("x\r\ny.pdf. . "), "xy.pdf");
        assert_eq!(display_name("/"), "file");
        assert_eq!(display_name(&"a".repeat(400)).len(), 255);
    }

    #[test]
    fn the_announced_type_never_invites_markup() {
        use content::files::Kind;
        assert_eq!(announced_type(Kind::Png, Some("text/html")), "image/png");
        assert_eq!(
            announced_type(Kind::Unknown, Some("text/plain; charset=utf-8")),
            "text/plain"
        );
        for risky in [
            "text/html",
            "image/svg+xml",
            "application/xhtml+xml",
            "x\"y/z",
        ] {
            assert_eq!(
                announced_type(Kind::Unknown, Some(risky)),
                "application/octet-stream"
            );
        }
    }
}
