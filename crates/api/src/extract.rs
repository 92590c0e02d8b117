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

/// A request body, read whole within the router's limit. A body over the
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

impl<S: Send + Sync> FromRequest<S> for Bytes {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Response> {
        match <axum::body::Bytes as FromRequest<S>>::from_request(req, state).await {
            Ok(b) => Ok(Bytes(b)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is larger than this API accepts; send less at once",
            )),
            Err(e) => Err(problem(
                StatusCode::BAD_REQUEST,
                format!("the request body could not be read: {}", e.body_text()),
            )),
        }
    }
}
