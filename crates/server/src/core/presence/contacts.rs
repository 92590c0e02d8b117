//! Contact lists in memory: for each owner, the relationship they gave each
//! contact. Read on every presence decision and every MESSAGE, so kept
//! whole in the core; changed through the admin API (which writes the
//! store first) and loaded from the store at start.

use std::collections::HashMap;

use presence::Relationship;
use store::ContactRow;

#[derive(Debug, Default, Clone)]
pub(crate) struct ContactTable {
    by_owner: HashMap<String, HashMap<String, Relationship>>,
}

impl ContactTable {
    pub(crate) fn from_rows(rows: Vec<ContactRow>) -> ContactTable {
        let mut t = ContactTable::default();
        for r in rows {
            let owner = r.owner.clone();
            t.set_entry(&owner, &r);
        }
        t
    }

    fn set_entry(&mut self, owner: &str, r: &ContactRow) {
        if let Some(rel) = Relationship::parse(&r.relationship) {
            self.by_owner
                .entry(owner.to_owned())
                .or_default()
                .insert(r.contact.clone(), rel);
        }
    }

    /// Replaces one owner's list.
    pub(crate) fn replace(&mut self, owner: &str, rows: &[ContactRow]) {
        self.by_owner.remove(owner);
        for r in rows {
            self.set_entry(owner, r);
        }
    }

    /// `owner`'s relationship with `contact`, if listed.
    pub(crate) fn get(&self, owner: &str, contact: &str) -> Option<Relationship> {
        self.by_owner.get(owner)?.get(contact).copied()
    }
}
