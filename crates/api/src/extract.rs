//! Path and query extractors whose rejections are problem+json like every
//! other error (axum's own answer in plain text).

use axum::extract::{FromRequest, FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::Response;
use serde::de::DeserializeOwned;

use super::problem;

/// Path parameters.
#[derive(Debug)]
pub(crate) struct P<T>(pub(crate) T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for P<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(P(v)),
            Err(e) if e.status().is_server_error() => Err(super::internal(e.body_text())),
            Err(e) => Err(problem(
                StatusCode::BAD_REQUEST,
                format!("the path is not valid: {}", e.body_text()),
            )),
        }
    }
}

/// Query parameters.
#[derive(Debug)]
pub(crate) struct Q<T>(pub(crate) T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Q<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(Q(v)),
            Err(e) => Err(problem(
                StatusCode::BAD_REQUEST,
                format!("the query string is not valid: {}", e.body_text()),
            )),
        }
    }
}

/// The most a listener's requests may carry (outside file uploads), as a
/// request extension its router sets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimit(pub(crate) usize);

/// How much of a body over the limit is still read (and thrown away) so
/// that the client, still sending, reads the 413 instead of a connection
/// reset: closing with the body unread makes a TLS client's next write fail
/// ("EOF occurred in violation of protocol") before it sees the answer.
/// Beyond this, or after [`DRAIN_TIME`], the connection is closed.
const DRAIN_MAX: usize = 8 * 1024 * 1024;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// A request body, read whole within the listener's limit. A body over the
/// limit is 413 and an unreadable one 400, as problem+json (axum answers
/// both in plain text).
#[derive(Debug)]
pub(crate) struct Bytes(pub(crate) axum::body::Bytes);

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

fn too_large() -> Response {
    problem(
        StatusCode::PAYLOAD_TOO_LARGE,
        "the request body is larger than this API accepts; send less at once",
    )
}

impl<S: Send + Sync> FromRequest<S> for Bytes {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, _state: &S) -> Result<Self, Response> {
        read_bounded(req).await.map(|(_, body)| Bytes(body))
    }
}

/// The request's body, read whole within the listener's [`BodyLimit`]
/// (with its parts); over it, the rest read and thrown away (up to
/// [`DRAIN_MAX`] and [`DRAIN_TIME`]) and 413.
async fn read_bounded(
    req: axum::extract::Request,
) -> Result<(axum::http::request::Parts, axum::body::Bytes), Response> {
    use futures_util::StreamExt;
    let limit = req
        .extensions()
        .get::<BodyLimit>()
        .map_or(64 * 1024, |l| l.0);
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_MAX as u64) {
        return Err(too_large());
    }
    let (parts, body) = req.into_parts();
    let mut stream = body.into_data_stream();
    let mut whole = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            problem(
                StatusCode::BAD_REQUEST,
                format!("the request body could not be read: {e}"),
            )
        })?;
        if whole.len() + chunk.len() > limit {
            // Read the rest (bounded), then answer.
            let mut read = whole.len() + chunk.len();
            let _ = tokio::time::timeout(DRAIN_TIME, async {
                while read <= DRAIN_MAX {
                    match stream.next().await {
                        Some(Ok(c)) => read += c.len(),
                        _ => break,
                    }
                }
            })
            .await;
            return Err(too_large());
        }
        whole.extend_from_slice(&chunk);
    }
    Ok((parts, whole.freeze()))
}

/// Middleware: every request's body is read (within the listener's limit)
/// before anything answers it. A request refused before its handler read
/// the body (no token: 401, no such path: 404) would otherwise close the
/// connection with the body unread, and a client still sending it would
/// see its writes fail instead of the answer. `streamed`: paths whose
/// handlers read their bodies themselves (file uploads), left alone.
pub(crate) async fn read_first(
    streamed: &'static [&'static str],
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let has_body = req
        .headers()
        .contains_key(axum::http::header::CONTENT_LENGTH)
        || req
            .headers()
            .contains_key(axum::http::header::TRANSFER_ENCODING);
    if !has_body || streamed.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    match read_bounded(req).await {
        Ok((parts, body)) => {
            next.run(axum::extract::Request::from_parts(
                parts,
                axum::body::Body::from(body),
            ))
            .await
        }
        Err(refused) => refused,
    }
}
