//! Contact lists on PostgreSQL.

use tokio_postgres::Row;

use super::{count, lines, Pg, Postgres, Tx, E, R};
use store::{ContactRow, Contacts, Result, StoreError};

/// Group names are stored one per line; names cannot hold a newline.
fn row(r: &Row) -> Pg<ContactRow> {
    Ok(ContactRow {
        owner: r.try_get(0)?,
        contact: r.try_get(1)?,
        relationship: r.try_get(2)?,
        display_name: r.try_get(3)?,
        groups: lines(r.try_get(4)?),
        added_at: r.try_get(5)?,
    })
}

const COLUMNS: &str = "owner, contact, relationship, display_name, groups, added_at";

async fn ensure_group(tx: &Tx<'_>, owner: &str, name: &str) -> R<()> {
    let st = tx
        .prepare_cached(
            "INSERT INTO contact_groups (owner, name, position)
             SELECT $1, $2, COALESCE(MAX(position), -1) + 1 FROM contact_groups WHERE owner = $1
             ON CONFLICT (owner, name) DO NOTHING",
        )
        .await?;
    tx.execute(&st, &[&owner, &name]).await?;
    Ok(())
}

fn no_owner(e: StoreError, owner: &str) -> StoreError {
    match e {
        StoreError::Conflict(_) => StoreError::Conflict(format!("no user {owner:?}")),
        e => e,
    }
}

/// Inserts `e`; with `replace`, an existing entry takes its values.
/// Returns whether a row was written.
async fn insert(tx: &Tx<'_>, e: &ContactRow, replace: bool) -> R<bool> {
    for g in &e.groups {
        ensure_group(tx, &e.owner, g).await?;
    }
    let sql = if replace {
        "INSERT INTO contacts (owner, contact, relationship, display_name, groups, added_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (owner, contact) DO UPDATE SET relationship = excluded.relationship,
            display_name = excluded.display_name, groups = excluded.groups"
    } else {
        "INSERT INTO contacts (owner, contact, relationship, display_name, groups, added_at)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (owner, contact) DO NOTHING"
    };
    let st = tx.prepare_cached(sql).await?;
    let n = tx
        .execute(
            &st,
            &[
                &e.owner,
                &e.contact,
                &e.relationship,
                &e.display_name,
                &e.groups.join("\n"),
                &e.added_at,
            ],
        )
        .await?;
    Ok(n == 1)
}

impl Contacts for Postgres {
    async fn all_contacts(&self) -> Result<Vec<ContactRow>> {
        self.read(|c| {
            Box::pin(async move {
                let rows = c
                    .query(
                        &format!("SELECT {COLUMNS} FROM contacts ORDER BY owner COLLATE \"C\", contact COLLATE \"C\""),
                        &[],
                    )
                    .await?;
                Ok(rows.iter().map(row).collect::<Pg<_>>()?)
            })
        })
        .await
    }

    async fn contacts_of(&self, owner: &str) -> Result<Vec<ContactRow>> {
        let owner = owner.to_owned();
        self.read(|c| {
            Box::pin(async move {
                let st = c
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM contacts WHERE owner = $1 ORDER BY contact COLLATE \"C\""
                    ))
                    .await?;
                let rows = c.query(&st, &[&owner]).await?;
                Ok(rows.iter().map(row).collect::<Pg<_>>()?)
            })
        })
        .await
    }

    async fn contact_groups(&self, owner: &str) -> Result<Vec<String>> {
        let owner = owner.to_owned();
        self.read(|c| {
            Box::pin(async move {
                let st = c
                    .prepare_cached(
                        "SELECT name FROM contact_groups WHERE owner = $1 ORDER BY position, name COLLATE \"C\"",
                    )
                    .await?;
                let rows = c.query(&st, &[&owner]).await?;
                Ok(rows.iter().map(|r| r.try_get(0)).collect::<Pg<_>>()?)
            })
        })
        .await
    }

    async fn put_contact(&self, e: ContactRow) -> Result<()> {
        let owner = e.owner.clone();
        self.write(|tx| {
            let e = e.clone();
            Box::pin(async move { insert(tx, &e, true).await.map(drop) })
        })
        .await
        .map_err(|e| no_owner(e, &owner))
    }

    async fn remove_contact(&self, owner: &str, contact: &str) -> Result<bool> {
        let (owner, contact) = (owner.to_owned(), contact.to_owned());
        self.write(|tx| {
            let (owner, contact) = (owner.clone(), contact.clone());
            Box::pin(async move {
                let st = tx
                    .prepare_cached("DELETE FROM contacts WHERE owner = $1 AND contact = $2")
                    .await?;
                Ok(tx.execute(&st, &[&owner, &contact]).await? == 1)
            })
        })
        .await
    }

    async fn add_contacts(&self, rows: Vec<ContactRow>) -> Result<usize> {
        self.write(|tx| {
            let rows = rows.clone();
            Box::pin(async move {
                let mut added = 0;
                for e in &rows {
                    added += usize::from(insert(tx, e, false).await?);
                }
                Ok(added)
            })
        })
        .await
    }

    async fn put_contact_group(&self, owner: &str, name: &str) -> Result<()> {
        let (owner, name) = (owner.to_owned(), name.to_owned());
        let who = owner.clone();
        self.write(|tx| {
            let (owner, name) = (owner.clone(), name.clone());
            Box::pin(async move { ensure_group(tx, &owner, &name).await })
        })
        .await
        .map_err(|e| no_owner(e, &who))
    }

    async fn remove_contact_group(&self, owner: &str, name: &str) -> Result<bool> {
        let (owner, name) = (owner.to_owned(), name.to_owned());
        self.write(|tx| {
            let (owner, name) = (owner.clone(), name.clone());
            Box::pin(async move {
                let n = tx
                    .execute(
                        "DELETE FROM contact_groups WHERE owner = $1 AND name = $2",
                        &[&owner, &name],
                    )
                    .await?;
                // Entries leave the group; they stay in the list.
                let rows = tx
                    .query(
                        "SELECT contact, groups FROM contacts WHERE owner = $1",
                        &[&owner],
                    )
                    .await?;
                for r in &rows {
                    let (contact, groups): (String, String) = (r.try_get(0)?, r.try_get(1)?);
                    if groups.lines().any(|g| g == name) {
                        let kept: Vec<&str> = groups.lines().filter(|g| *g != name).collect();
                        tx.execute(
                            "UPDATE contacts SET groups = $1 WHERE owner = $2 AND contact = $3",
                            &[&kept.join("\n"), &owner, &contact],
                        )
                        .await?;
                    }
                }
                Ok::<_, E>(count(n) == 1)
            })
        })
        .await
    }
}
