//! `GET /files/ID`: a file for its owner and for the recipients of a
//! message that offered it (granted when the server relayed it); anyone
//! else gets 404, as for a file that does not exist. An expired file is
//! 410 Gone to those who could fetch it. The downloader's own rules are
//! applied again (a policy may have changed since). Served as an
//! attachment of the type its content showed, never sniffed, under a CSP
//! that allows nothing.

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use store::Store;
use tokio::io::AsyncReadExt;

use super::{not_found, sign_in, valid_id};
use crate::{internal, problem, Ctx};

/// Bytes read at once: each read of a tokio file is a trip to a blocking
/// thread, dearer than the bytes for small pieces (bench/README.md).
const READ_CHUNK: usize = 256 << 10;

/// What a served file may do in a browser: nothing.
pub(crate) const FILE_CSP: &str = "default-src 'none'; sandbox";

pub(crate) async fn download<S: Store>(
    State(ctx): State<Ctx<S>>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    match run(&ctx, &id, req).await {
        Ok(r) | Err(r) => r,
    }
}

/// `filename*` (RFC 6266, RFC 8187) and an ASCII fallback.
fn disposition(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._- ()".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"._-".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

async fn run<S: Store>(ctx: &Ctx<S>, id: &str, req: Request) -> Result<Response, Response> {
    let (parts, _) = req.into_parts();
    let (files, super::Signed { aor, rules, .. }) = sign_in(ctx, &parts).await?;
    if !valid_id(id) {
        return Err(not_found());
    }
    let Some((row, true)) = store::Files::file_for(&ctx.store, id, &aor)
        .await
        .map_err(internal)?
    else {
        return Err(not_found());
    };
    let now = sip_app::unix_now();
    if row.deleted_at.is_none() && row.expires_at <= now {
        // Expired and not swept yet: its bytes go now.
        super::sweep::delete(&ctx.store, &files, vec![row.id.clone()], now)
            .await
            .map_err(internal)?;
    }
    if row.deleted_at.is_some() || row.expires_at <= now {
        return Err(problem(
            StatusCode::GONE,
            format!("{:?} has expired and was deleted", row.name),
        ));
    }
    if row.owner != aor {
        if let Err(why) = content::files::judge_recorded(&rules, &row.name, &row.kind, &row.inner) {
            return Err(problem(StatusCode::FORBIDDEN, why.to_string()));
        }
    }
    let file = match tokio::fs::File::open(files.path(id)).await {
        Ok(f) => f,
        // Expired and swept between the check and now.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(problem(StatusCode::GONE, "the file has expired"))
        }
        Err(e) => return Err(internal(e)),
    };
    let stream = futures_util::stream::unfold(file, |mut f| async move {
        let mut buf = vec![0u8; READ_CHUNK];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    ctx.metrics
        .files_downloaded
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut r = Body::from_stream(stream).into_response();
    let h = r.headers_mut();
    let value = |s: &str| HeaderValue::from_str(s).map_err(internal);
    h.insert(header::CONTENT_TYPE, value(&row.content_type)?);
    h.insert(header::CONTENT_LENGTH, value(&row.size.to_string())?);
    h.insert(header::CONTENT_DISPOSITION, value(&disposition(&row.name))?);
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(FILE_CSP),
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::disposition;

    #[test]
    fn the_name_is_quoted_safely_both_ways() {
        assert_eq!(
            disposition("a \"b\";c.pdf"),
            "attachment; filename=\"a _b__c.pdf\"; filename*=UTF-8''a%20%22b%22%3Bc.pdf"
        );
        assert_eq!(
            disposition("été.txt"),
            "attachment; filename=\"_t_.txt\"; filename*=UTF-8''%C3%A9t%C3%A9.txt"
        );
    }
}
