//! `parapet admin contacts ...`: users' contact lists through the admin API.

use serde_json::{json, Value};

use super::args::{ContactsCmd, Output};
use super::client::{encode, Client};
use super::render::render;

pub(super) async fn contacts(
    c: Client,
    cmd: ContactsCmd,
    out: Output,
    done: impl Fn(String),
) -> Result<(), String> {
    let entry = |user: &str, contact: &str| {
        format!("/v1/users/{}/contacts/{}", encode(user), encode(contact))
    };
    // A decision keeps the entry's name and groups (a PUT on the entry
    // would replace them).
    let decision = |user: &str, watcher: &str| {
        format!("/v1/users/{}/watchers/{}", encode(user), encode(watcher))
    };
    match cmd {
        ContactsCmd::List { user } => {
            let v = c
                .call("GET", format!("/v1/users/{}/contacts", encode(&user)), None)
                .await?;
            if out == Output::Json {
                render(&v, out);
                return Ok(());
            }
            let groups = v.get("groups").cloned().unwrap_or(Value::Null);
            let names: Vec<&str> = groups
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            println!(
                "contact groups: {}",
                if names.is_empty() {
                    "(none)".to_string()
                } else {
                    names.join(", ")
                }
            );
            println!("\ncontacts:");
            render(v.get("contacts").unwrap_or(&Value::Null), out);
            println!("\nwatchers:");
            render(v.get("watchers").unwrap_or(&Value::Null), out);
        }
        ContactsCmd::Add {
            user,
            contact,
            relationship,
            groups,
            display_name,
        } => {
            let v = c
                .call(
                    "PUT",
                    entry(&user, &contact),
                    Some(json!({
                        "relationship": relationship.map(|r| r.name()),
                        "groups": groups,
                        "display_name": display_name,
                    })),
                )
                .await?;
            let rel = v.get("relationship").and_then(Value::as_str).unwrap_or("?");
            done(format!("{contact} is in {user}'s contacts as {rel}"));
        }
        ContactsCmd::Remove { user, contact } => {
            c.call("DELETE", entry(&user, &contact), None).await?;
            done(format!("{contact} removed from {user}'s contacts"));
        }
        ContactsCmd::Approve {
            user,
            watcher,
            relationship,
        } => {
            let v = c
                .call(
                    "PUT",
                    decision(&user, &watcher),
                    Some(json!({ "decision": "approve", "relationship": relationship.map(|r| r.name()) })),
                )
                .await?;
            let rel = v.get("relationship").and_then(Value::as_str).unwrap_or("?");
            done(format!(
                "{watcher} may see {user}'s presence (as {rel}; added to contacts)"
            ));
        }
        ContactsCmd::Block { user, contact } => {
            c.call(
                "PUT",
                decision(&user, &contact),
                Some(json!({ "decision": "deny" })),
            )
            .await?;
            done(format!(
                "{contact} is blocked by {user}: sees them offline, cannot message them"
            ));
        }
        ContactsCmd::GroupAdd { user, name } => {
            c.call(
                "PUT",
                format!(
                    "/v1/users/{}/contact-groups/{}",
                    encode(&user),
                    encode(&name)
                ),
                None,
            )
            .await?;
            done(format!("contact group {name:?} created for {user}"));
        }
        ContactsCmd::GroupRemove { user, name } => {
            c.call(
                "DELETE",
                format!(
                    "/v1/users/{}/contact-groups/{}",
                    encode(&user),
                    encode(&name)
                ),
                None,
            )
            .await?;
            done(format!("contact group {name:?} removed from {user}"));
        }
    }
    Ok(())
}
