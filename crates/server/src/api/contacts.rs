//! Users' contact lists: entries with a relationship level and contact
//! groups, and who watches the user's presence (with each watcher's status).
//! Approving a pending watcher is adding them as a contact; denying is
//! adding them as `blocked`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use store::{ContactRow, Contacts, StoreError};

use super::access::Caller;
use super::extract::P as Path;
use super::users::aor;
use super::{body, internal, json, problem, AdminCmd, ApiResult, Ctx};

/// Entries one list may hold (Lync's limit).
pub(crate) const MAX_CONTACTS: usize = 1000;
/// Contact groups one user may have.
pub(crate) const MAX_GROUPS: usize = 64;

/// A contact's address: `sip:user@host` (this domain or a federated one),
/// host a DNS name (lower-cased), no port, parameters or headers; at most
/// 330 characters. The OpenAPI pattern states exactly this rule.
pub(crate) fn contact_uri(ctx: &Ctx, uri: &str) -> Result<String, Response> {
    let bad = || {
        problem(
            StatusCode::BAD_REQUEST,
            format!(
                "{uri:?} is not a contact address; write it as sip:bob@{} (a user and a domain name, nothing else)",
                ctx.users.realm()
            ),
        )
    };
    let rest = uri.strip_prefix("sip:").ok_or_else(bad)?;
    let (user, host) = rest.split_once('@').ok_or_else(bad)?;
    let user_ok = (1..=64).contains(&user.len())
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.~-".contains(c));
    if uri.chars().count() > 330 || !user_ok || !is_hostname(host) {
        return Err(bad());
    }
    Ok(format!("sip:{user}@{}", host.to_ascii_lowercase()))
}

/// RFC 3261 `hostname`: dot-separated labels of letters, digits and inner
/// hyphens (1-63 characters), the last starting with a letter.
fn is_hostname(host: &str) -> bool {
    let labels: Vec<&str> = host.split('.').collect();
    labels.iter().enumerate().all(|(i, l)| {
        let b = l.as_bytes();
        let (Some(first), Some(last)) = (b.first(), b.last()) else {
            return false;
        };
        let top = i + 1 == labels.len();
        l.len() <= 63
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
            && (if top {
                first.is_ascii_alphabetic()
            } else {
                first.is_ascii_alphanumeric()
            })
            && last.is_ascii_alphanumeric()
    })
}

/// A contact group's name: one line of 1-64 printable characters.
fn group_name(name: &str) -> Result<(), Response> {
    let n = name.chars().count();
    if n == 0
        || n > 64
        || name.chars().any(char::is_control)
        || name.starts_with(' ')
        || name.ends_with(' ')
    {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            format!("contact group {name:?}: use 1-64 printable characters, no leading or trailing space"),
        ));
    }
    Ok(())
}

fn entry_json(e: &ContactRow) -> serde_json::Value {
    serde_json::json!({
        "contact": e.contact,
        "relationship": e.relationship,
        "display_name": e.display_name,
        "groups": e.groups,
        "added_at": e.added_at,
    })
}

impl Ctx {
    /// Hands the owner's stored list to the core (the next NOTIFY and
    /// MESSAGE decide with it).
    pub(crate) async fn publish_contacts(&self, owner: &str) -> Result<(), Response> {
        let rows = self.store.contacts_of(owner).await.map_err(internal)?;
        let owner = owner.to_string();
        self.ask(|reply| AdminCmd::Contacts { owner, rows, reply })
            .await;
        Ok(())
    }

    async fn existing_user(&self, aor: &str) -> Result<(), Response> {
        match store::Users::user(&self.store, aor)
            .await
            .map_err(internal)?
        {
            Some(_) => Ok(()),
            None => Err(problem(
                StatusCode::NOT_FOUND,
                format!("no user {aor}; see `parapet admin user list`"),
            )),
        }
    }
}

pub(crate) async fn list(State(ctx): State<Ctx>, c: Caller, Path(uri): Path<String>) -> ApiResult {
    let owner = aor(&ctx, &uri)?;
    ctx.allow_user(&c, "contacts.read", &owner).await?;
    ctx.existing_user(&owner).await?;
    let entries = ctx.store.contacts_of(&owner).await.map_err(internal)?;
    let groups = ctx.store.contact_groups(&owner).await.map_err(internal)?;
    let watchers = ctx
        .ask(|reply| AdminCmd::Watchers {
            aor: owner.clone(),
            reply,
        })
        .await
        .unwrap_or_default();
    let out = serde_json::json!({
        "user": owner,
        "groups": groups,
        "contacts": entries.iter().map(entry_json).collect::<Vec<_>>(),
        "watchers": watchers.iter().map(|(w, st)| serde_json::json!({ "watcher": w, "status": st })).collect::<Vec<_>>(),
    });
    Ok(json(StatusCode::OK, &out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EntryBody {
    relationship: Option<String>,
    display_name: Option<String>,
    groups: Option<Vec<String>>,
}

pub(crate) async fn put(
    State(ctx): State<Ctx>,
    c: Caller,
    Path((uri, contact)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult {
    let owner = aor(&ctx, &uri)?;
    let contact = contact_uri(&ctx, &contact)?;
    let b: EntryBody = body(&bytes)?;
    if contact == owner {
        // A well-formed request whose two addresses conflict: 409.
        return Err(problem(
            StatusCode::CONFLICT,
            "a user cannot be their own contact",
        ));
    }
    let internal_contact = contact.ends_with(&format!("@{}", ctx.users.realm()));
    let relationship = match b.relationship.as_deref() {
        Some(r) => presence::Relationship::parse(r).ok_or_else(|| {
            problem(
                StatusCode::BAD_REQUEST,
                format!(
                    "relationship {r:?}: use blocked, external, colleague, workgroup or personal"
                ),
            )
        })?,
        None if internal_contact => presence::Relationship::Colleague,
        None => presence::Relationship::External,
    };
    if let Some(d) = &b.display_name {
        if d.chars().count() > 128 || d.chars().any(char::is_control) {
            return Err(problem(
                StatusCode::BAD_REQUEST,
                "display_name must be one line of at most 128 characters",
            ));
        }
    }
    let groups = b.groups.unwrap_or_default();
    for g in &groups {
        group_name(g)?;
    }
    if groups.len() > MAX_GROUPS {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            format!("at most {MAX_GROUPS} groups"),
        ));
    }
    ctx.allow_user(&c, "contacts.write", &owner).await?;
    ctx.existing_user(&owner).await?;
    if internal_contact {
        ctx.existing_user(&contact).await?;
    }
    let current = ctx.store.contacts_of(&owner).await.map_err(internal)?;
    let before = current.iter().find(|e| e.contact == contact).cloned();
    if before.is_none() && current.len() >= MAX_CONTACTS {
        return Err(problem(
            StatusCode::CONFLICT,
            format!("{owner} already has {MAX_CONTACTS} contacts; remove some first"),
        ));
    }
    let known = ctx.store.contact_groups(&owner).await.map_err(internal)?;
    let new_groups = groups.iter().filter(|g| !known.contains(g)).count();
    if known.len() + new_groups > MAX_GROUPS {
        return Err(problem(
            StatusCode::CONFLICT,
            format!("{owner} would have more than {MAX_GROUPS} contact groups"),
        ));
    }
    let row = ContactRow {
        owner: owner.clone(),
        contact: contact.clone(),
        relationship: relationship.name().to_string(),
        display_name: b.display_name,
        groups,
        added_at: before.as_ref().map_or_else(crate::unix_now, |e| e.added_at),
    };
    let after = entry_json(&row);
    ctx.audited(
        &c,
        "contacts.write",
        &format!("user:{owner}"),
        before.as_ref().map(entry_json),
        Some(after.clone()),
    )
    .put_contact(row)
    .await
    .map_err(|e| match e {
        StoreError::Conflict(m) => problem(StatusCode::CONFLICT, m),
        e => internal(e),
    })?;
    ctx.publish_contacts(&owner).await?;
    Ok(json(StatusCode::OK, &after))
}

pub(crate) async fn remove(
    State(ctx): State<Ctx>,
    c: Caller,
    Path((uri, contact)): Path<(String, String)>,
) -> ApiResult {
    let owner = aor(&ctx, &uri)?;
    let contact = contact_uri(&ctx, &contact)?;
    ctx.allow_user(&c, "contacts.write", &owner).await?;
    let before = ctx
        .store
        .contacts_of(&owner)
        .await
        .map_err(internal)?
        .into_iter()
        .find(|e| e.contact == contact);
    let Some(before) = before else {
        return Err(problem(
            StatusCode::NOT_FOUND,
            format!("{contact} is not in {owner}'s contacts"),
        ));
    };
    ctx.audited(
        &c,
        "contacts.write",
        &format!("user:{owner}"),
        Some(entry_json(&before)),
        None,
    )
    .remove_contact(&owner, &contact)
    .await
    .map_err(internal)?;
    ctx.publish_contacts(&owner).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn put_group(
    State(ctx): State<Ctx>,
    c: Caller,
    Path((uri, name)): Path<(String, String)>,
) -> ApiResult {
    let owner = aor(&ctx, &uri)?;
    group_name(&name)?;
    ctx.allow_user(&c, "contacts.write", &owner).await?;
    ctx.existing_user(&owner).await?;
    let known = ctx.store.contact_groups(&owner).await.map_err(internal)?;
    if !known.contains(&name) && known.len() >= MAX_GROUPS {
        return Err(problem(
            StatusCode::CONFLICT,
            format!("{owner} already has {MAX_GROUPS} contact groups"),
        ));
    }
    ctx.audited(
        &c,
        "contacts.write",
        &format!("user:{owner}"),
        None,
        Some(serde_json::json!({ "group": name })),
    )
    .put_contact_group(&owner, &name)
    .await
    .map_err(internal)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn remove_group(
    State(ctx): State<Ctx>,
    c: Caller,
    Path((uri, name)): Path<(String, String)>,
) -> ApiResult {
    let owner = aor(&ctx, &uri)?;
    ctx.allow_user(&c, "contacts.write", &owner).await?;
    let removed = ctx
        .audited(
            &c,
            "contacts.write",
            &format!("user:{owner}"),
            Some(serde_json::json!({ "group": name })),
            None,
        )
        .remove_contact_group(&owner, &name)
        .await
        .map_err(internal)?;
    if !removed {
        return Err(problem(
            StatusCode::NOT_FOUND,
            format!("{owner} has no contact group {name:?}"),
        ));
    }
    ctx.publish_contacts(&owner).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::is_hostname;

    #[test]
    fn hostnames() {
        for ok in [
            "example.com",
            "a",
            "a-b.example.org",
            "x1.y2.z",
            "1.example.com",
        ] {
            assert!(is_hostname(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "a..b",
            "-a.com",
            "a-.com",
            "1.2.3.4",
            "example.com.",
            "a_b.com",
            "ex ample.com",
        ] {
            assert!(!is_hostname(bad), "{bad}");
        }
    }
}
