//! Where a policy document applies, and who it is granted to.

use std::collections::BTreeMap;
use std::fmt;

use crate::spec::Fields;

/// Where a document applies.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Everyone, unless something narrower says otherwise.
    Global,
    /// Users homed on this site.
    Site(String),
    /// A named policy: applies to whoever it is granted to.
    Named(String),
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Global => f.write_str("global"),
            Scope::Site(s) => write!(f, "site:{s}"),
            Scope::Named(n) => write!(f, "named:{n}"),
        }
    }
}

/// Some fields of one kind, set at one scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDoc {
    pub kind: String,
    pub scope: Scope,
    pub fields: Fields,
}

/// Who a named policy is granted to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GrantTarget {
    /// A user, by address of record.
    User(String),
    /// Every member of a user group.
    Group(String),
}

/// A named policy of one kind granted to a user or a group. A target holds
/// at most one grant per kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub kind: String,
    /// The `Scope::Named` document granted.
    pub policy: String,
    pub target: GrantTarget,
}

/// A user group (department, team).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    /// When a user's groups grant the same kind, the lowest priority wins
    /// (then the group name, so the outcome never depends on order).
    pub priority: u32,
}

/// Users' sites and group memberships, as far as policy needs them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directory {
    pub groups: BTreeMap<String, Group>,
    /// Address of record → home site.
    pub sites: BTreeMap<String, String>,
    /// Address of record → group names.
    pub members: BTreeMap<String, Vec<String>>,
}

impl Directory {
    /// The user's groups, most important first.
    pub(crate) fn groups_of(&self, user: &str) -> Vec<&Group> {
        let mut gs: Vec<&Group> = self
            .members
            .get(user)
            .into_iter()
            .flatten()
            .filter_map(|g| self.groups.get(g))
            .collect();
        gs.sort_by(|a, b| (a.priority, &a.name).cmp(&(b.priority, &b.name)));
        gs
    }
}
