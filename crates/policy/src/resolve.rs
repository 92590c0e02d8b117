//! Effective policy: the narrowest scope that sets a field wins, and each
//! field says where it came from.

use std::collections::HashMap;
use std::fmt;

use crate::scope::{Directory, Grant, GrantTarget, PolicyDoc, Scope};
use crate::spec::{self, FieldSpec, Fields, KindSpec};
use crate::value::Value;

/// Where an effective value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldOrigin {
    /// The named policy granted to the user directly.
    User { policy: String },
    /// The named policy granted to one of the user's groups.
    Group { group: String, policy: String },
    /// The user's site's document.
    Site { site: String },
    /// The Global document.
    Global,
    /// Nobody set it: the built-in default.
    Default,
}

impl fmt::Display for FieldOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldOrigin::User { policy } => write!(f, "policy {policy} granted to the user"),
            FieldOrigin::Group { group, policy } => {
                write!(f, "policy {policy} granted to group {group}")
            }
            FieldOrigin::Site { site } => write!(f, "site {site}"),
            FieldOrigin::Global => f.write_str("global"),
            FieldOrigin::Default => f.write_str("built-in default"),
        }
    }
}

/// The effective values of one kind for one user.
#[derive(Debug, Clone)]
pub struct Effective {
    pub kind: &'static KindSpec,
    pub fields: Vec<(&'static FieldSpec, Value, FieldOrigin)>,
}

impl Effective {
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields.iter().find(|f| f.0.name == name).map(|f| &f.1)
    }

    pub fn origin(&self, name: &str) -> Option<&FieldOrigin> {
        self.fields.iter().find(|f| f.0.name == name).map(|f| &f.2)
    }

    /// A boolean field (false if absent or of another type: specs make that
    /// impossible for a validated snapshot).
    pub fn flag(&self, name: &str) -> bool {
        matches!(self.get(name), Some(Value::Bool(true)))
    }

    pub fn int(&self, name: &str) -> Option<i64> {
        match self.get(name) {
            Some(Value::Int(n)) => Some(*n),
            _ => None,
        }
    }

    pub fn text(&self, name: &str) -> Option<&str> {
        match self.get(name) {
            Some(Value::Text(s)) => Some(s),
            _ => None,
        }
    }

    pub fn list(&self, name: &str) -> &[String] {
        match self.get(name) {
            Some(Value::List(l)) => l,
            _ => &[],
        }
    }
}

/// Why a snapshot could not be built; the text says what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotError(pub String);

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SnapshotError {}

/// Every policy document, grant and directory fact, validated, immutable.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    docs: HashMap<(&'static str, Scope), Fields>,
    grants: HashMap<(&'static str, GrantTarget), String>,
    /// Users with a grant of their own (any kind).
    granted_users: std::collections::HashSet<String>,
    directory: Directory,
}

impl Snapshot {
    /// Validates everything and builds the snapshot: each document's kind and
    /// fields, grants naming existing named documents of their kind and
    /// existing groups, one grant per kind and target, sites of documents
    /// known.
    pub fn new(
        docs: Vec<PolicyDoc>,
        grants: Vec<Grant>,
        directory: Directory,
    ) -> Result<Snapshot, SnapshotError> {
        let mut s = Snapshot {
            directory,
            ..Snapshot::default()
        };
        for d in docs {
            let kind = kind_of(&d.kind)?;
            kind.check_all(&d.fields)
                .map_err(|e| SnapshotError(format!("{} ({}): {e}", kind.name, d.scope)))?;
            if s.docs
                .insert((kind.name, d.scope.clone()), d.fields)
                .is_some()
            {
                return Err(SnapshotError(format!(
                    "two {} documents at {}; merge them into one",
                    kind.name, d.scope
                )));
            }
        }
        for g in grants {
            let kind = kind_of(&g.kind)?;
            if !s
                .docs
                .contains_key(&(kind.name, Scope::Named(g.policy.clone())))
            {
                return Err(SnapshotError(format!(
                    "grant of {} policy {:?}: no such named policy; create it first",
                    kind.name, g.policy
                )));
            }
            if let GrantTarget::Group(name) = &g.target {
                if !s.directory.groups.contains_key(name) {
                    return Err(SnapshotError(format!(
                        "grant to group {name:?}: no such group"
                    )));
                }
            }
            if let GrantTarget::User(u) = &g.target {
                s.granted_users.insert(u.clone());
            }
            if let Some(old) = s
                .grants
                .insert((kind.name, g.target.clone()), g.policy.clone())
            {
                return Err(SnapshotError(format!(
                    "{:?} holds two {} grants ({old} and {}); a target holds one per kind",
                    g.target, kind.name, g.policy
                )));
            }
        }
        Ok(s)
    }

    /// Whether anything narrower than Global applies to `user`: a grant of
    /// their own, a group membership, or a site. If not, their effective
    /// policy is everyone's (and can be computed once).
    pub fn is_placed(&self, user: &str) -> bool {
        self.granted_users.contains(user)
            || self.directory.members.contains_key(user)
            || self.directory.sites.contains_key(user)
    }

    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// The effective `kind` policy for `user`, each field with its origin.
    pub fn effective(&self, user: &str, kind: &str) -> Result<Effective, SnapshotError> {
        let kind = kind_of(kind)?;
        let named = |target: GrantTarget| self.grants.get(&(kind.name, target));
        let doc = |scope: Scope| self.docs.get(&(kind.name, scope));
        // Narrowest first: the user's grant, their groups' grants in order,
        // their site, Global.
        let mut layers: Vec<(&Fields, FieldOrigin)> = Vec::new();
        if let Some(p) = named(GrantTarget::User(user.to_string())) {
            if let Some(f) = doc(Scope::Named(p.clone())) {
                layers.push((f, FieldOrigin::User { policy: p.clone() }));
            }
        }
        for g in self.directory.groups_of(user) {
            if let Some(p) = named(GrantTarget::Group(g.name.clone())) {
                if let Some(f) = doc(Scope::Named(p.clone())) {
                    layers.push((
                        f,
                        FieldOrigin::Group {
                            group: g.name.clone(),
                            policy: p.clone(),
                        },
                    ));
                }
            }
        }
        if let Some(site) = self.directory.sites.get(user) {
            if let Some(f) = doc(Scope::Site(site.clone())) {
                layers.push((f, FieldOrigin::Site { site: site.clone() }));
            }
        }
        if let Some(f) = doc(Scope::Global) {
            layers.push((f, FieldOrigin::Global));
        }
        let fields = kind
            .fields
            .iter()
            .map(|spec| {
                layers
                    .iter()
                    .find_map(|(f, origin)| {
                        f.get(spec.name).map(|v| (spec, v.clone(), origin.clone()))
                    })
                    .unwrap_or_else(|| (spec, spec.default.value(), FieldOrigin::Default))
            })
            .collect();
        Ok(Effective { kind, fields })
    }
}

fn kind_of(name: &str) -> Result<&'static KindSpec, SnapshotError> {
    spec::kind(name).ok_or_else(|| {
        let known: Vec<&str> = spec::kinds().iter().map(|k| k.name).collect();
        SnapshotError(format!(
            "no policy kind {name:?}; the kinds are {}",
            known.join(", ")
        ))
    })
}
