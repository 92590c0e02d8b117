//! Contact lists in memory: for each owner, the relationship they gave each
//! contact, and the reverse (whose lists name a contact) for resource-list
//! subscriptions. Read on every presence decision and every MESSAGE, so
//! kept whole in the core; changed through the admin API (which writes the
//! store first) and loaded from the store at start.

use std::collections::{BTreeMap, HashMap, HashSet};

use presence::Relationship;
use store::ContactRow;

#[derive(Debug, Default, Clone)]
pub(crate) struct ContactTable {
    by_owner: HashMap<String, BTreeMap<String, Relationship>>,
    /// contact → owners whose lists name it.
    by_contact: HashMap<String, HashSet<String>>,
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
            self.by_contact
                .entry(r.contact.clone())
                .or_default()
                .insert(owner.to_owned());
        }
    }

    /// Replaces one owner's list.
    pub(crate) fn replace(&mut self, owner: &str, rows: &[ContactRow]) {
        if let Some(old) = self.by_owner.remove(owner) {
            for contact in old.keys() {
                if let Some(set) = self.by_contact.get_mut(contact) {
                    set.remove(owner);
                    if set.is_empty() {
                        self.by_contact.remove(contact);
                    }
                }
            }
        }
        for r in rows {
            self.set_entry(owner, r);
        }
    }

    /// `owner`'s relationship with `contact`, if listed.
    pub(crate) fn get(&self, owner: &str, contact: &str) -> Option<Relationship> {
        self.by_owner.get(owner)?.get(contact).copied()
    }

    /// The contacts `owner` follows (not blocked), in address order.
    pub(crate) fn followed(&self, owner: &str) -> Vec<&str> {
        self.by_owner
            .get(owner)
            .map(|m| {
                m.iter()
                    .filter(|(_, r)| **r != Relationship::Blocked)
                    .map(|(c, _)| c.as_str())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Owners whose lists name `contact` (not as blocked).
    pub(crate) fn followers(&self, contact: &str) -> Vec<&str> {
        self.by_contact
            .get(contact)
            .map(|s| {
                s.iter()
                    .filter(|o| self.get(o, contact) != Some(Relationship::Blocked))
                    .map(String::as_str)
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(owner: &str, contact: &str, rel: &str) -> ContactRow {
        ContactRow {
            owner: owner.into(),
            contact: contact.into(),
            relationship: rel.into(),
            display_name: None,
            groups: vec![],
            added_at: 0,
        }
    }

    #[test]
    fn both_directions_follow_replacements() {
        let mut t = ContactTable::from_rows(vec![
            row("a", "b", "colleague"),
            row("a", "c", "blocked"),
            row("d", "b", "personal"),
        ]);
        assert_eq!(t.followed("a"), ["b"]);
        let mut f = t.followers("b");
        f.sort_unstable();
        assert_eq!(f, ["a", "d"]);
        assert!(t.followers("c").is_empty(), "blocked is not followed");
        t.replace("a", &[row("a", "c", "workgroup")]);
        assert_eq!(t.followers("b"), ["d"]);
        assert_eq!(t.followers("c"), ["a"]);
        assert_eq!(t.get("a", "b"), None);
    }
}
