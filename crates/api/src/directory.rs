//! User groups, their members, and users' sites.

use super::extract::Bytes;
use super::extract::P as Path;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use rbac::Target;
use serde::Deserialize;
use store::Store;
use store::{GroupRow, StoreError};

use super::access::Caller;
use super::users::aor;
use super::{body, internal, json, problem, ApiResult, Ctx};

fn store_refusal(e: StoreError, what: &str) -> axum::response::Response {
    match e {
        StoreError::Conflict(_) => problem(StatusCode::CONFLICT, what.to_string()),
        other => internal(other),
    }
}

pub(crate) async fn groups<S: Store>(State(ctx): State<Ctx<S>>, c: Caller) -> ApiResult {
    ctx.allow(&c, "groups.read", Target::Any, "groups").await?;
    let st = ctx.store.policy_state().await.map_err(internal)?;
    let out: Vec<serde_json::Value> = st
        .groups
        .iter()
        .map(|g| {
            let members: Vec<&String> = st.members.iter().filter(|(gr, _)| *gr == g.name).map(|(_, a)| a).collect();
            serde_json::json!({ "name": g.name, "priority": g.priority, "description": g.description, "members": members })
        })
        .collect();
    Ok(json(StatusCode::OK, &out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GroupBody {
    #[serde(default)]
    priority: u32,
    #[serde(default)]
    description: String,
}

pub(crate) async fn put_group<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    Path(name): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    rbac::check_name("group", &name).map_err(|e| problem(StatusCode::BAD_REQUEST, e.0))?;
    let b: GroupBody = body(&bytes)?;
    if b.priority > 1_000_000 {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            "priority must be 0-1000000 (lower wins when a user is in several groups)",
        ));
    }
    if b.description.chars().count() > 200 || b.description.chars().any(char::is_control) {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            "description must be one line of at most 200 characters",
        ));
    }
    ctx.allow(
        &c,
        "groups.write",
        Target::Group(&name),
        &format!("group:{name}"),
    )
    .await?;
    let after =
        serde_json::json!({ "name": name, "priority": b.priority, "description": b.description });
    ctx.audited(
        &c,
        "groups.write",
        &format!("group:{name}"),
        None,
        Some(after.clone()),
    )
    .put_group(GroupRow {
        name,
        priority: b.priority,
        description: b.description,
    })
    .await
    .map_err(internal)?;
    ctx.publish_policies().await?;
    Ok(json(StatusCode::OK, &after))
}

pub(crate) async fn remove_group<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    Path(name): Path<String>,
) -> ApiResult {
    ctx.allow(
        &c,
        "groups.write",
        Target::Group(&name),
        &format!("group:{name}"),
    )
    .await?;
    let removed = ctx
        .audited(
            &c,
            "groups.write",
            &format!("group:{name}"),
            Some(serde_json::json!({ "name": name })),
            None,
        )
        .remove_group(&name)
        .await
        .map_err(|e| {
            store_refusal(
                e,
                &format!(
                    "group {name} is still named by a custom role; change or remove the role first"
                ),
            )
        })?;
    if !removed {
        return Err(problem(
            StatusCode::NOT_FOUND,
            format!("no group {name}; see `parapet admin group list`"),
        ));
    }
    ctx.publish_policies().await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn add_member<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    Path((name, uri)): Path<(String, String)>,
) -> ApiResult {
    let aor = aor(&ctx, &uri)?;
    ctx.allow(
        &c,
        "groups.write",
        Target::Group(&name),
        &format!("group:{name}"),
    )
    .await?;
    ctx.audited(&c, "groups.write", &format!("group:{name}"), None, Some(serde_json::json!({ "member": aor })))
        .add_member(&name, &aor)
        .await
        .map_err(|e| store_refusal(e, &format!("no group {name} or no user {aor}; create the group with `parapet admin group create {name}`")))?;
    ctx.publish_policies().await?;
    auto_initiate_contacts(&ctx, &c, &name, &aor).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// AutoInitiateContacts: where the joining user's privacy policy says so,
/// the group's other members are added to their contacts (workgroup level,
/// in a contact group named after the user group). Existing entries stay
/// as they are; the list's cap holds.
async fn auto_initiate_contacts<S: Store>(
    ctx: &Ctx<S>,
    c: &Caller,
    group: &str,
    aor: &str,
) -> Result<(), axum::response::Response> {
    let set = sip_app::policy_set::PolicySet::load(&ctx.store)
        .await
        .map_err(internal)?;
    let wanted = set
        .effective(aor, "privacy")
        .is_some_and(|e| e.flag("auto_initiate_contacts"));
    if !wanted {
        return Ok(());
    }
    let st = ctx.store.policy_state().await.map_err(internal)?;
    let have = ctx.store.contacts_of(aor).await.map_err(internal)?;
    let room = super::contact_lists::MAX_CONTACTS.saturating_sub(have.len());
    // The contact group named after the team, unless the list has no room.
    let groups = ctx.store.contact_groups(aor).await.map_err(internal)?;
    let team =
        if groups.iter().any(|g| g == group) || groups.len() < super::contact_lists::MAX_GROUPS {
            vec![group.to_string()]
        } else {
            Vec::new()
        };
    let now = sip_app::unix_now();
    let rows: Vec<store::ContactRow> = st
        .members
        .iter()
        .filter(|(g, m)| g == group && m != aor && !have.iter().any(|e| &e.contact == m))
        .take(room)
        .map(|(_, m)| store::ContactRow {
            owner: aor.to_string(),
            contact: m.clone(),
            relationship: "workgroup".into(),
            display_name: None,
            groups: team.clone(),
            added_at: now,
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let added: Vec<&String> = rows.iter().map(|r| &r.contact).collect();
    ctx.audited(
        c,
        "contacts.write",
        &format!("user:{aor}"),
        None,
        Some(serde_json::json!({ "auto_initiated_from_group": group, "contacts": added })),
    )
    .add_contacts(rows)
    .await
    .map_err(internal)?;
    ctx.publish_contacts(aor).await
}

pub(crate) async fn remove_member<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    Path((name, uri)): Path<(String, String)>,
) -> ApiResult {
    let aor = aor(&ctx, &uri)?;
    ctx.allow(
        &c,
        "groups.write",
        Target::Group(&name),
        &format!("group:{name}"),
    )
    .await?;
    let removed = ctx
        .audited(
            &c,
            "groups.write",
            &format!("group:{name}"),
            Some(serde_json::json!({ "member": aor })),
            None,
        )
        .remove_member(&name, &aor)
        .await
        .map_err(internal)?;
    if !removed {
        return Err(problem(
            StatusCode::NOT_FOUND,
            format!("{aor} is not a member of {name}"),
        ));
    }
    ctx.publish_policies().await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SiteBody {
    site: Option<String>,
}

pub(crate) async fn set_site<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    Path(uri): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let b: SiteBody = body(&bytes)?;
    let aor = aor(&ctx, &uri)?;
    if let Some(s) = &b.site {
        rbac::check_name("site", s).map_err(|e| problem(StatusCode::BAD_REQUEST, e.0))?;
    }
    ctx.allow_user(&c, "users.write", &aor).await?;
    if let Some(own) = &c.role.site {
        if b.site.as_ref() != Some(own) {
            let detail = format!("role {} may only home users at site {own}", c.role.name);
            ctx.record_refusal(
                &c.actor,
                &c.source,
                "users.write",
                &format!("user:{aor}"),
                &detail,
            )
            .await;
            return Err(problem(StatusCode::FORBIDDEN, detail));
        }
    }
    ctx.audited(
        &c,
        "users.write",
        &format!("user:{aor}"),
        None,
        Some(serde_json::json!({ "site": b.site })),
    )
    .set_site(&aor, b.site.clone())
    .await
    .map_err(|e| store_refusal(e, &format!("no user {aor}; see `parapet admin user list`")))?;
    ctx.publish_policies().await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
