//! Media relay credentials for web clients: a browser's `RTCIceServer`
//! (`urls`, `username`, `credential`), minted for the signed-in session
//! and valid ten minutes. The relay checks them with the secret alone and
//! refuses them, and ends their allocations, once the session has ended
//! (signed out, password changed, account disabled). SIP clients need
//! none of this: they use their SIP user name and password.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use store::Store;

use super::super::{internal, json, problem, ApiResult, Ctx};
use super::Me;

/// What the server tells the user API about its relay.
#[derive(Clone)]
pub struct RelayAccess {
    /// The secret web credentials are minted and checked with.
    pub secret: std::sync::Arc<[u8; 32]>,
    /// This server's relay's addresses, as `turn:` and `turns:` URIs
    /// (the edges' come from `control`).
    pub urls: Vec<String>,
    /// Lifetime of a credential, in seconds.
    pub ttl: i64,
    /// Told when a session signs out (its allocations end, here and, in
    /// the snapshot, on the edges); holds the edges' relays.
    pub control: std::sync::Arc<relay::Control>,
}

impl std::fmt::Debug for RelayAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RelayAccess({:?})", self.urls)
    }
}

#[derive(Serialize)]
struct IceServer {
    urls: Vec<String>,
    username: String,
    credential: String,
    expires_at: i64,
}

/// `POST /user/v1/relay-credentials`.
pub(crate) async fn mint<S: Store>(State(ctx): State<Ctx<S>>, me: Me) -> ApiResult {
    // This server's relay, then the edges' (a browser outside reaches
    // only those; one inside may reach either).
    let urls: Vec<String> = ctx
        .relay
        .iter()
        .flat_map(|r| r.urls.iter().cloned().chain(r.control.edge_urls()))
        .collect();
    let (Some(r), false) = (&ctx.relay, urls.is_empty()) else {
        return Err(problem(
            StatusCode::NOT_FOUND,
            "no media relay runs: relay.listen is empty here and no paired edge reports one",
        ));
    };
    let now = sip_app::unix_now();
    let minted = relay::credentials::mint(&r.secret[..], &me.aor, &me.session, now, r.ttl)
        .ok_or_else(|| internal("a relay credential could not be made for this session"))?;
    Ok(json(
        StatusCode::CREATED,
        &IceServer {
            urls,
            username: minted.username,
            credential: minted.credential,
            expires_at: minted.expires_at,
        },
    ))
}
