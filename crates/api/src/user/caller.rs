//! Who is calling the user API: a user with a live sign-in session. A
//! handler that takes [`Me`] cannot run for anyone else; only the
//! extractor makes one, after checking the session's secret, its expiry,
//! that the account is enabled, and the user's request rate.

use std::time::Instant;
use store::Store;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;

use super::super::access::{bearer, source_of, Who};
use super::super::{internal, problem, Ctx};

/// A signed-in user.
#[derive(Debug, Clone)]
pub(crate) struct Me {
    /// The user's address of record.
    pub(crate) aor: String,
    /// `user:AOR`, as the audit log names them.
    actor: String,
    source: String,
    /// The session this request came with.
    pub(crate) session: String,
    pub(crate) expires_at: i64,
    /// The session was made with a second factor (or one was enrolled in it).
    pub(crate) second_factor: bool,
}

impl Who for Me {
    fn actor(&self) -> &str {
        &self.actor
    }
    fn source(&self) -> &str {
        &self.source
    }
}

fn unauthorized(detail: &str) -> Response {
    super::super::access::unauthorized_in("Bearer realm=\"parapet-user\"", detail)
}

const SIGN_IN: &str =
    "sign in with your SIP address and password (POST /user/v1/session), then send `Authorization: Bearer <token>`";

impl<S: Store> FromRequestParts<Ctx<S>> for Me {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, ctx: &Ctx<S>) -> Result<Me, Response> {
        let Some(given) = bearer(parts) else {
            return Err(unauthorized(SIGN_IN));
        };
        let Some((id, secret)) = rbac::token::parse_with(rbac::token::USER_PREFIX, given) else {
            return Err(unauthorized(&format!(
                "the bearer token is not a user session; {SIGN_IN}"
            )));
        };
        let found = ctx.store.user_session(id).await.map_err(internal)?;
        let Some((row, enabled)) = found.filter(|(r, _)| rbac::token::matches(secret, &r.hash))
        else {
            return Err(unauthorized(&format!(
                "the session has ended (signed out, password changed, or never issued); {SIGN_IN}"
            )));
        };
        if row.expires_at <= sip_app::unix_now() {
            return Err(unauthorized(&format!("the session has expired; {SIGN_IN}")));
        }
        if !enabled {
            return Err(unauthorized(
                "the account is disabled; ask an administrator",
            ));
        }
        let allowed = ctx
            .user_rate
            .lock()
            .map(|mut r| r.allow(row.aor.clone(), Instant::now()))
            .unwrap_or(false);
        if !allowed {
            let mut r = problem(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "more than {} requests a second from this user; slow down",
                    ctx.cfg.user_api_rate.0
                ),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return Err(r);
        }
        Ok(Me {
            actor: format!("user:{}", row.aor),
            aor: row.aor,
            source: source_of(parts),
            session: row.id,
            expires_at: row.expires_at,
            second_factor: row.second_factor,
        })
    }
}
