//! Contact lists on SQLite.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{db, Sqlite};
use store::{ContactRow, Contacts, Result, StoreError};

/// Group names are stored one per line; names cannot hold a newline.
fn row(r: &Row<'_>) -> rusqlite::Result<ContactRow> {
    let groups: String = r.get(4)?;
    Ok(ContactRow {
        owner: r.get(0)?,
        contact: r.get(1)?,
        relationship: r.get(2)?,
        display_name: r.get(3)?,
        groups: groups
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
        added_at: r.get(5)?,
    })
}

const COLUMNS: &str = "owner, contact, relationship, display_name, groups, added_at";

fn ensure_group(c: &Connection, owner: &str, name: &str) -> Result<()> {
    let exists: Option<i64> = c
        .prepare_cached("SELECT position FROM contact_groups WHERE owner = ?1 AND name = ?2")
        .and_then(|mut st| st.query_row([owner, name], |r| r.get(0)).optional())
        .map_err(db)?;
    if exists.is_none() {
        c.prepare_cached(
            "INSERT INTO contact_groups (owner, name, position)
             SELECT ?1, ?2, COALESCE(MAX(position), -1) + 1 FROM contact_groups WHERE owner = ?1",
        )
        .and_then(|mut st| st.execute([owner, name]))
        .map_err(db)?;
    }
    Ok(())
}

fn no_owner(e: StoreError, owner: &str) -> StoreError {
    match e {
        StoreError::Conflict(_) => StoreError::Conflict(format!("no user {owner:?}")),
        e => e,
    }
}

impl Contacts for Sqlite {
    async fn all_contacts(&self) -> Result<Vec<ContactRow>> {
        self.call(|c| {
            let mut st = c
                .prepare(&format!(
                    "SELECT {COLUMNS} FROM contacts ORDER BY owner, contact"
                ))
                .map_err(db)?;
            let rows = st.query_map([], row).map_err(db)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db)
        })
        .await
    }

    async fn contacts_of(&self, owner: &str) -> Result<Vec<ContactRow>> {
        let owner = owner.to_owned();
        self.call(move |c| {
            let mut st = c
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM contacts WHERE owner = ?1 ORDER BY contact"
                ))
                .map_err(db)?;
            let rows = st.query_map([owner], row).map_err(db)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db)
        })
        .await
    }

    async fn contact_groups(&self, owner: &str) -> Result<Vec<String>> {
        let owner = owner.to_owned();
        self.call(move |c| {
            let mut st = c
                .prepare_cached(
                    "SELECT name FROM contact_groups WHERE owner = ?1 ORDER BY position, name",
                )
                .map_err(db)?;
            let rows = st.query_map([owner], |r| r.get(0)).map_err(db)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db)
        })
        .await
    }

    async fn put_contact(&self, e: ContactRow) -> Result<()> {
        let owner = e.owner.clone();
        self.write(move |c| {
            for g in &e.groups {
                ensure_group(c, &e.owner, g)?;
            }
            c.prepare_cached(
                "INSERT INTO contacts (owner, contact, relationship, display_name, groups, added_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (owner, contact) DO UPDATE SET relationship = excluded.relationship,
                    display_name = excluded.display_name, groups = excluded.groups",
            )
            .and_then(|mut st| {
                st.execute(params![
                    e.owner,
                    e.contact,
                    e.relationship,
                    e.display_name,
                    e.groups.join("\n"),
                    e.added_at
                ])
            })
            .map(|_| ())
            .map_err(db)
        })
        .await
        .map_err(|e| no_owner(e, &owner))
    }

    async fn remove_contact(&self, owner: &str, contact: &str) -> Result<bool> {
        let (owner, contact) = (owner.to_owned(), contact.to_owned());
        self.write(move |c| {
            c.prepare_cached("DELETE FROM contacts WHERE owner = ?1 AND contact = ?2")
                .and_then(|mut st| st.execute([owner, contact]))
                .map(|n| n == 1)
                .map_err(db)
        })
        .await
    }

    async fn add_contacts(&self, rows: Vec<ContactRow>) -> Result<usize> {
        self.write(move |c| {
            let mut added = 0;
            for e in &rows {
                for g in &e.groups {
                    ensure_group(c, &e.owner, g)?;
                }
                added += c
                    .prepare_cached(
                        "INSERT INTO contacts (owner, contact, relationship, display_name, groups, added_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (owner, contact) DO NOTHING",
                    )
                    .and_then(|mut st| {
                        st.execute(params![
                            e.owner,
                            e.contact,
                            e.relationship,
                            e.display_name,
                            e.groups.join("\n"),
                            e.added_at
                        ])
                    })
                    .map_err(db)?;
            }
            Ok(added)
        })
        .await
    }

    async fn put_contact_group(&self, owner: &str, name: &str) -> Result<()> {
        let (owner, name) = (owner.to_owned(), name.to_owned());
        let who = owner.clone();
        self.write(move |c| ensure_group(c, &owner, &name))
            .await
            .map_err(|e| no_owner(e, &who))
    }

    async fn remove_contact_group(&self, owner: &str, name: &str) -> Result<bool> {
        let (owner, name) = (owner.to_owned(), name.to_owned());
        self.write(move |c| {
            let n = c
                .execute(
                    "DELETE FROM contact_groups WHERE owner = ?1 AND name = ?2",
                    [&owner, &name],
                )
                .map_err(db)?;
            // Entries leave the group; they stay in the list.
            let mut st = c
                .prepare("SELECT contact, groups FROM contacts WHERE owner = ?1")
                .map_err(db)?;
            let rows: Vec<(String, String)> = st
                .query_map([&owner], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(db)?
                .collect::<rusqlite::Result<_>>()
                .map_err(db)?;
            for (contact, groups) in rows {
                if groups.lines().any(|g| g == name) {
                    let kept: Vec<&str> = groups.lines().filter(|g| *g != name).collect();
                    c.execute(
                        "UPDATE contacts SET groups = ?1 WHERE owner = ?2 AND contact = ?3",
                        params![kept.join("\n"), owner, contact],
                    )
                    .map_err(db)?;
                }
            }
            Ok(n == 1)
        })
        .await
    }
}
