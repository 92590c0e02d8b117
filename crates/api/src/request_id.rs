//! A correlation id per API request: `X-Request-Id` taken from the request
//! when it is a short token (a proxy or the CLI in front may have set it),
//! else made here; every log line the request causes carries it (the
//! `api` span's `request_id`), and the answer returns it, so an operator
//! can find an answer's lines in the log.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

pub(crate) const HEADER: &str = "x-request-id";

/// The request's id: the caller's when it is 1 to 64 characters of
/// `A-Z a-z 0-9 . _ -` (anything else could forge a log line), else 16
/// random hex digits.
fn id_of(req: &Request) -> String {
    if let Some(v) = req.headers().get(HEADER).and_then(|v| v.to_str().ok()) {
        if (1..=64).contains(&v.len())
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return v.to_owned();
        }
    }
    let mut b = [0u8; 8];
    // A failed draw leaves zeros: the id is for finding log lines, not a secret.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The middleware: the span around the handler and the header on the answer.
pub(crate) async fn layer(req: Request, next: Next) -> Response {
    let id = id_of(&req);
    let span = tracing::info_span!("api", request_id = %id);
    let mut resp = next.run(req).instrument(span).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(HEADER, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Option<&str>) -> Request {
        let mut b = axum::http::Request::builder().uri("/healthz");
        if let Some(v) = v {
            b = b.header(HEADER, v);
        }
        b.body(axum::body::Body::empty()).unwrap()
    }

    #[test]
    fn a_short_token_from_the_caller_is_kept() {
        assert_eq!(id_of(&req(Some("cli-4f2a.9_x"))), "cli-4f2a.9_x");
    }

    #[test]
    fn anything_else_is_replaced_by_a_random_id() {
        let long = "a".repeat(65);
        for v in [
            None,
            Some(""),
            Some("a b"),
            Some("x\"}{"),
            Some(long.as_str()),
        ] {
            let id = id_of(&req(v));
            assert_eq!(id.len(), 16, "{v:?}");
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{v:?}");
        }
        assert_ne!(id_of(&req(None)), id_of(&req(None)));
    }
}
