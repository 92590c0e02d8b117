//! Contact lists as both APIs change them: the administrators' (`/v1/users/
//! {uri}/contacts`, after the role check) and the users' own (`/user/v1/
//! contacts`). Input is validated here with one set of rules, every change
//! is written through the audited store handle with the actor who made it,
//! and the owner's new list is handed to the SIP core before the answer, so
//! the next NOTIFY and MESSAGE decide with it.
//!
//! Approving a pending watcher is adding them as a contact (their
//! relationship decides what they see); denying is adding them as
//! `blocked`. Either keeps the entry's display name and groups.

use axum::http::StatusCode;
use axum::response::Response;
use presence::Relationship;
use serde::Deserialize;
use store::Store;
use store::{ContactRow, StoreError};

use super::access::Who;
use super::{internal, problem, AdminCmd, Ctx};

/// Entries one list may hold (Lync's limit).
pub(crate) const MAX_CONTACTS: usize = 1000;
/// Contact groups one user may have.
pub(crate) const MAX_GROUPS: usize = 64;

/// A contact's address: `sip:user@host` (this domain or a federated one),
/// host a DNS name (lower-cased), no port, parameters or headers; at most
/// 330 characters. The OpenAPI pattern states exactly this rule.
pub(crate) fn contact_uri<S: Store>(ctx: &Ctx<S>, uri: &str) -> Result<String, Response> {
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
pub(crate) fn group_name(name: &str) -> Result<(), Response> {
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

fn relationship(r: &str) -> Result<Relationship, Response> {
    Relationship::parse(r).ok_or_else(|| {
        problem(
            StatusCode::BAD_REQUEST,
            format!("relationship {r:?}: use blocked, external, colleague, workgroup or personal"),
        )
    })
}

pub(crate) fn entry_json(e: &ContactRow) -> serde_json::Value {
    serde_json::json!({
        "contact": e.contact,
        "relationship": e.relationship,
        "display_name": e.display_name,
        "groups": e.groups,
        "added_at": e.added_at,
    })
}

/// The body of a PUT on one entry (it replaces the entry).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EntryBody {
    relationship: Option<String>,
    display_name: Option<String>,
    groups: Option<Vec<String>>,
}

/// The body of a decision on a watcher.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DecisionBody {
    decision: String,
    relationship: Option<String>,
}

/// An entry that passed validation, not yet checked against the store.
#[derive(Debug)]
pub(crate) struct Entry {
    owner: String,
    contact: String,
    relationship: Relationship,
    display_name: Option<String>,
    groups: Vec<String>,
}

/// A decision on a watcher that passed validation.
#[derive(Debug)]
pub(crate) struct Decision {
    owner: String,
    watcher: String,
    /// `None`: deny. `Some(None)`: approve at the entry's level, or the
    /// default level for a new entry.
    approve: Option<Option<Relationship>>,
}

impl<S: Store> Ctx<S> {
    fn is_local(&self, contact: &str) -> bool {
        contact.ends_with(&format!("@{}", self.users.realm()))
    }

    /// The level a new contact gets: colleague inside the organisation,
    /// external for a federated address.
    fn default_level(&self, contact: &str) -> Relationship {
        if self.is_local(contact) {
            Relationship::Colleague
        } else {
            Relationship::External
        }
    }

    /// Validates a PUT on `owner`'s entry for `contact` (both as given in
    /// the path; `owner` already canonical).
    pub(crate) fn entry(
        &self,
        owner: &str,
        contact: &str,
        b: EntryBody,
    ) -> Result<Entry, Response> {
        let contact = contact_uri(self, contact)?;
        if contact == owner {
            // A well-formed request whose two addresses conflict: 409.
            return Err(problem(
                StatusCode::CONFLICT,
                "a user cannot be their own contact",
            ));
        }
        let relationship = match b.relationship.as_deref() {
            Some(r) => relationship(r)?,
            None => self.default_level(&contact),
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
        Ok(Entry {
            owner: owner.to_string(),
            contact,
            relationship,
            display_name: b.display_name,
            groups,
        })
    }

    /// Validates a decision on `watcher` in `owner`'s list.
    pub(crate) fn decision(
        &self,
        owner: &str,
        watcher: &str,
        b: DecisionBody,
    ) -> Result<Decision, Response> {
        let watcher = contact_uri(self, watcher)?;
        if watcher == owner {
            return Err(problem(
                StatusCode::CONFLICT,
                "a user always sees their own presence; there is nothing to decide",
            ));
        }
        let level = b.relationship.as_deref().map(relationship).transpose()?;
        let approve = match (b.decision.as_str(), level) {
            ("approve", Some(Relationship::Blocked)) => {
                return Err(problem(
                    StatusCode::BAD_REQUEST,
                    "an approval cannot make the watcher blocked; use the decision \"deny\"",
                ))
            }
            ("approve", level) => Some(level),
            ("deny", None) => None,
            ("deny", Some(_)) => {
                return Err(problem(
                    StatusCode::BAD_REQUEST,
                    "a denial takes no relationship (the watcher becomes blocked)",
                ))
            }
            (other, _) => {
                return Err(problem(
                    StatusCode::BAD_REQUEST,
                    format!("decision {other:?}: use \"approve\" or \"deny\""),
                ))
            }
        };
        Ok(Decision {
            owner: owner.to_string(),
            watcher,
            approve,
        })
    }

    /// Hands the owner's stored list to the core (the next NOTIFY and
    /// MESSAGE decide with it).
    pub(crate) async fn publish_contacts(&self, owner: &str) -> Result<(), Response> {
        let rows = self.store.contacts_of(owner).await.map_err(internal)?;
        let owner = owner.to_string();
        self.ask(|reply| AdminCmd::Contacts { owner, rows, reply })
            .await;
        Ok(())
    }

    pub(crate) async fn existing_user(&self, aor: &str) -> Result<(), Response> {
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

    /// `owner`'s list: contacts, groups, and who watches them.
    pub(crate) async fn contact_list(&self, owner: &str) -> Result<serde_json::Value, Response> {
        self.existing_user(owner).await?;
        let entries = self.store.contacts_of(owner).await.map_err(internal)?;
        let groups = self.store.contact_groups(owner).await.map_err(internal)?;
        let watchers = self.watchers(owner).await;
        Ok(serde_json::json!({
            "user": owner,
            "groups": groups,
            "contacts": entries.iter().map(entry_json).collect::<Vec<_>>(),
            "watchers": watchers,
        }))
    }

    /// Who watches `owner`'s presence now, with each watcher's status.
    pub(crate) async fn watchers(&self, owner: &str) -> Vec<serde_json::Value> {
        let owner = owner.to_string();
        self.ask(|reply| AdminCmd::Watchers { aor: owner, reply })
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|(w, st)| serde_json::json!({ "watcher": w, "status": st }))
            .collect()
    }

    /// Writes a validated entry (replacing any entry for that contact),
    /// audited as `who`; returns the entry as stored.
    pub(crate) async fn put_entry(
        &self,
        who: &impl Who,
        e: Entry,
    ) -> Result<serde_json::Value, Response> {
        self.existing_user(&e.owner).await?;
        if self.is_local(&e.contact) {
            self.existing_user(&e.contact).await?;
        }
        let current = self.store.contacts_of(&e.owner).await.map_err(internal)?;
        let before = current.iter().find(|c| c.contact == e.contact).cloned();
        if before.is_none() && current.len() >= MAX_CONTACTS {
            return Err(problem(
                StatusCode::CONFLICT,
                format!(
                    "{} already has {MAX_CONTACTS} contacts; remove some first",
                    e.owner
                ),
            ));
        }
        let known = self
            .store
            .contact_groups(&e.owner)
            .await
            .map_err(internal)?;
        let new_groups = e.groups.iter().filter(|g| !known.contains(g)).count();
        if known.len() + new_groups > MAX_GROUPS {
            return Err(problem(
                StatusCode::CONFLICT,
                format!(
                    "{} would have more than {MAX_GROUPS} contact groups",
                    e.owner
                ),
            ));
        }
        let row = ContactRow {
            owner: e.owner.clone(),
            contact: e.contact,
            relationship: e.relationship.name().to_string(),
            display_name: e.display_name,
            groups: e.groups,
            added_at: before
                .as_ref()
                .map_or_else(sip_app::unix_now, |b| b.added_at),
        };
        let after = entry_json(&row);
        self.audited(
            who,
            "contacts.write",
            &format!("user:{}", e.owner),
            before.as_ref().map(entry_json),
            Some(after.clone()),
        )
        .put_contact(row)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(m) => problem(StatusCode::CONFLICT, m),
            e => internal(e),
        })?;
        self.publish_contacts(&e.owner).await?;
        Ok(after)
    }

    /// Carries out a decision on a watcher: the entry's relationship
    /// changes, its display name and groups stay. Returns the entry.
    pub(crate) async fn decide(
        &self,
        who: &impl Who,
        d: Decision,
    ) -> Result<serde_json::Value, Response> {
        let current = self
            .store
            .contacts_of(&d.owner)
            .await
            .map_err(internal)?
            .into_iter()
            .find(|c| c.contact == d.watcher);
        let kept = current
            .as_ref()
            .and_then(|c| Relationship::parse(&c.relationship))
            .filter(|r| *r != Relationship::Blocked);
        let level = match d.approve {
            None => Relationship::Blocked,
            Some(Some(level)) => level,
            Some(None) => kept.unwrap_or_else(|| self.default_level(&d.watcher)),
        };
        let (display_name, groups) =
            current.map_or((None, Vec::new()), |c| (c.display_name, c.groups));
        let e = Entry {
            owner: d.owner,
            contact: d.watcher,
            relationship: level,
            display_name,
            groups,
        };
        self.put_entry(who, e).await
    }

    /// Removes `contact` from `owner`'s list (both canonical).
    pub(crate) async fn remove_entry(
        &self,
        who: &impl Who,
        owner: &str,
        contact: &str,
    ) -> Result<(), Response> {
        let before = self
            .store
            .contacts_of(owner)
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
        self.audited(
            who,
            "contacts.write",
            &format!("user:{owner}"),
            Some(entry_json(&before)),
            None,
        )
        .remove_contact(owner, contact)
        .await
        .map_err(internal)?;
        self.publish_contacts(owner).await
    }

    /// Creates contact group `name` (validated) at the end of `owner`'s.
    pub(crate) async fn add_group(
        &self,
        who: &impl Who,
        owner: &str,
        name: &str,
    ) -> Result<(), Response> {
        self.existing_user(owner).await?;
        let known = self.store.contact_groups(owner).await.map_err(internal)?;
        if !known.iter().any(|k| k == name) && known.len() >= MAX_GROUPS {
            return Err(problem(
                StatusCode::CONFLICT,
                format!("{owner} already has {MAX_GROUPS} contact groups"),
            ));
        }
        self.audited(
            who,
            "contacts.write",
            &format!("user:{owner}"),
            None,
            Some(serde_json::json!({ "group": name })),
        )
        .put_contact_group(owner, name)
        .await
        .map_err(internal)
    }

    /// Removes contact group `name`; its entries stay, outside it.
    pub(crate) async fn remove_group(
        &self,
        who: &impl Who,
        owner: &str,
        name: &str,
    ) -> Result<(), Response> {
        let removed = self
            .audited(
                who,
                "contacts.write",
                &format!("user:{owner}"),
                Some(serde_json::json!({ "group": name })),
                None,
            )
            .remove_contact_group(owner, name)
            .await
            .map_err(internal)?;
        if !removed {
            return Err(problem(
                StatusCode::NOT_FOUND,
                format!("{owner} has no contact group {name:?}"),
            ));
        }
        self.publish_contacts(owner).await
    }
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
