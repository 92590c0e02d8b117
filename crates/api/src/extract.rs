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
        let mut stream = req.into_body().into_data_stream();
        let mut body = bytes::BytesMut::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                problem(
                    StatusCode::BAD_REQUEST,
                    format!("the request body could not be read: {e}"),
                )
            })?;
            if body.len() + chunk.len() > limit {
                // Read the rest (bounded), then answer.
                let mut read = body.len() + chunk.len();
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
            body.extend_from_slice(&chunk);
        }
        Ok(Bytes(body.freeze()))
    }
}
