//! `GET /v1/archive/files/{id}`: the content of a file an archived message
//! offered, kept because the owner's archiving policy says `file_content`
//! — opened with the record's key and streamed (bounded memory, nothing in
//! clear on disk). Read as the archive is: `archive.read` for the record's
//! owner, audited before any byte goes out.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use store::{ArchiveFilter, Store};

use super::access::Caller;
use super::{internal, problem, ApiResult, Ctx};

/// What the record says of the file, once opened, and its sealed content.
struct Found {
    rel: String,
    name: String,
    aad: Vec<u8>,
    key: std::sync::Arc<archive::Key>,
    file: std::fs::File,
}

/// A name for `Content-Disposition`: printable ASCII without quotes or
/// separators (the stored name may hold anything), else `file`.
fn download_name(name: &str) -> String {
    let n: String = name
        .chars()
        .filter(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\\' | '/' | ';'))
        .take(100)
        .collect();
    if n.is_empty() {
        "file".into()
    } else {
        n
    }
}

pub(crate) async fn content<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    Path(id): Path<String>,
) -> ApiResult {
    // Read here, not by the extractor: a malformed id gets problem+json.
    let id: i64 = id
        .parse()
        .map_err(|_| problem(StatusCode::BAD_REQUEST, "a record id is a number"))?;
    let ring = ctx.archive.clone().ok_or_else(|| {
        problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "the archive's key directory is unusable (see the server's log): records cannot be opened",
        )
    })?;
    if id < 1 {
        return Err(problem(StatusCode::BAD_REQUEST, "a record id is 1 or more"));
    }
    let row = ctx
        .store
        .archive_find(ArchiveFilter {
            after_id: id - 1,
            limit: 1,
            ..ArchiveFilter::default()
        })
        .await
        .map_err(internal)?
        .into_iter()
        .next()
        .filter(|r| r.id == id)
        .ok_or_else(|| problem(StatusCode::NOT_FOUND, "no such archive record"))?;
    ctx.allow_user(&c, "archive.read", &row.owner).await?;
    let detail = serde_json::json!({ "record": id, "file_content": true }).to_string();
    super::archive::audit_read(
        &ctx,
        &c,
        "archive.read",
        &format!("archive:{}", row.owner),
        detail,
    )
    .await?;
    let r = row.clone();
    let root = ctx.cfg.data_dir.join(archive::content::DIR);
    let found = tokio::task::spawn_blocking(move || -> Result<Found, (StatusCode, String)> {
        let aad = archive::aad(&r.owner, r.at_ms, &r.sender, &r.recipient);
        let key = ring.key(&r.key_id, false).ok().flatten().ok_or((
            StatusCode::GONE,
            format!("the record's key {} is gone", r.key_id),
        ))?;
        let (ct, body) = archive::open(&key, &aad, &r.sealed).ok_or((
            StatusCode::INTERNAL_SERVER_ERROR,
            "the record does not open with its key".to_string(),
        ))?;
        let not_file = (
            StatusCode::NOT_FOUND,
            "the record keeps no file's content".to_string(),
        );
        if ct != sip_app::archive_file_transfer_type() {
            return Err(not_file);
        }
        let j: serde_json::Value = serde_json::from_slice(&body).map_err(|_| not_file.clone())?;
        let rel = j.get("content").and_then(|v| v.as_str()).ok_or(not_file)?;
        let path = archive::content::path(&root, rel).ok_or((
            StatusCode::INTERNAL_SERVER_ERROR,
            "the record names no content of ours".to_string(),
        ))?;
        let file = std::fs::File::open(&path).map_err(|_| {
            (
                StatusCode::GONE,
                "the file's archived content is gone".to_string(),
            )
        })?;
        Ok(Found {
            rel: rel.to_string(),
            name: j
                .get("file")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string(),
            aad,
            key,
            file,
        })
    })
    .await
    .map_err(internal)?
    .map_err(|(status, why)| problem(status, why))?;
    // Opened chunk by chunk off the runtime, each verified before it is
    // sent; a failure ends the response without its end, so a client
    // never takes a cut file for a whole one.
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
    let aad = archive::content::aad(&found.aad, &found.rel);
    let (key, file) = (found.key, found.file);
    tokio::task::spawn_blocking(move || {
        struct Out(tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>);
        impl std::io::Write for Out {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0
                    .blocking_send(Ok(bytes::Bytes::copy_from_slice(b)))
                    .map_err(|_| std::io::Error::other("the client went away"))?;
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut src = std::io::BufReader::new(file);
        let mut out = Out(tx.clone());
        if let Err(e) = archive::content::open_stream(&key, &aad, &mut src, &mut out) {
            tracing::error!(error = %e, "archived file content could not be opened");
            let _ = tx.blocking_send(Err(std::io::Error::other(e)));
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut r = Body::from_stream(stream).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{}\"",
        download_name(&found.name)
    )) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_download_name_cannot_break_its_header() {
        assert_eq!(super::download_name("report.pdf"), "report.pdf");
        assert_eq!(super::download_name("a\"b;c/d\r\ne.txt"), "abcde.txt");
        assert_eq!(super::download_name("\u{202e}"), "file");
    }
}
