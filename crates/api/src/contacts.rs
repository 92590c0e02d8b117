//! Administrators on users' contact lists: entries with a relationship
//! level and contact groups, who watches the user's presence (with each
//! watcher's status), and decisions on watchers. Each path checks the role
//! (`contacts.read` / `contacts.write`, scoped to the user's site and
//! groups), then does what [`super::contact_lists`] does for users too.

use super::extract::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use store::Store;

use super::access::Caller;
use super::contact_lists::{group_name, DecisionBody, EntryBody};
use super::extract::P as Path;
use super::users::aor;
use super::{body, json, ApiResult, Ctx};

pub(crate) async fn list<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    Path(uri): Path<String>,
) -> ApiResult {
    let owner = aor(&ctx, &uri)?;
    ctx.allow_user(&c, "contacts.read", &owner).await?;
    Ok(json(StatusCode::OK, &ctx.contact_list(&owner).await?))
}

pub(crate) async fn put<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    Path((uri, contact)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult {
    let owner = aor(&ctx, &uri)?;
    let entry = ctx.entry(&owner, &contact, body::<EntryBody>(&bytes)?)?;
    ctx.allow_user(&c, "contacts.write", &owner).await?;
    Ok(json(StatusCode::OK, &ctx.put_entry(&c, entry).await?))
}

pub(crate) async fn decide<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    Path((uri, watcher)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult {
    let owner = aor(&ctx, &uri)?;
    let d = ctx.decision(&owner, &watcher, body::<DecisionBody>(&bytes)?)?;
    ctx.allow_user(&c, "contacts.write", &owner).await?;
    Ok(json(StatusCode::OK, &ctx.decide(&c, d).await?))
}

pub(crate) async fn remove<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    Path((uri, contact)): Path<(String, String)>,
) -> ApiResult {
    let owner = aor(&ctx, &uri)?;
    let contact = super::contact_lists::contact_uri(&ctx, &contact)?;
    ctx.allow_user(&c, "contacts.write", &owner).await?;
    ctx.remove_entry(&c, &owner, &contact).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn put_group<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    Path((uri, name)): Path<(String, String)>,
) -> ApiResult {
    let owner = aor(&ctx, &uri)?;
    group_name(&name)?;
    ctx.allow_user(&c, "contacts.write", &owner).await?;
    ctx.add_group(&c, &owner, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn remove_group<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    Path((uri, name)): Path<(String, String)>,
) -> ApiResult {
    let owner = aor(&ctx, &uri)?;
    ctx.allow_user(&c, "contacts.write", &owner).await?;
    ctx.remove_group(&c, &owner, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
