//! A user's own contact list: entries, contact groups, and decisions on
//! who may watch their presence. The same rules and limits as the
//! administrators' paths ([`super::super::contact_lists`]); the owner is
//! always the signed-in user, and changes are audited as `user:AOR`.

use super::super::extract::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use store::Store;

use super::super::contact_lists::{contact_uri, group_name, DecisionBody, EntryBody};
use super::super::extract::P as Path;
use super::super::{body, json, ApiResult, Ctx};
use super::Me;

pub(crate) async fn list<S: Store>(State(ctx): State<Ctx<S>>, me: Me) -> ApiResult {
    Ok(json(StatusCode::OK, &ctx.contact_list(&me.aor).await?))
}

pub(crate) async fn put<S: Store>(
    State(ctx): State<Ctx<S>>,
    me: Me,
    Path(contact): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let entry = ctx.entry(&me.aor, &contact, body::<EntryBody>(&bytes)?)?;
    Ok(json(StatusCode::OK, &ctx.put_entry(&me, entry).await?))
}

pub(crate) async fn remove<S: Store>(
    State(ctx): State<Ctx<S>>,
    me: Me,
    Path(contact): Path<String>,
) -> ApiResult {
    let contact = contact_uri(&ctx, &contact)?;
    ctx.remove_entry(&me, &me.aor, &contact).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn put_group<S: Store>(
    State(ctx): State<Ctx<S>>,
    me: Me,
    Path(name): Path<String>,
) -> ApiResult {
    group_name(&name)?;
    ctx.add_group(&me, &me.aor, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn remove_group<S: Store>(
    State(ctx): State<Ctx<S>>,
    me: Me,
    Path(name): Path<String>,
) -> ApiResult {
    ctx.remove_group(&me, &me.aor, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn watchers<S: Store>(State(ctx): State<Ctx<S>>, me: Me) -> ApiResult {
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "watchers": ctx.watchers(&me.aor).await }),
    ))
}

pub(crate) async fn decide<S: Store>(
    State(ctx): State<Ctx<S>>,
    me: Me,
    Path(watcher): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let d = ctx.decision(&me.aor, &watcher, body::<DecisionBody>(&bytes)?)?;
    Ok(json(StatusCode::OK, &ctx.decide(&me, d).await?))
}
