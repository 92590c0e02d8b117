//! Roles: a set of operations, optionally bounded to a site and a user group.

use std::collections::BTreeSet;

use crate::ops;

/// A role as held by an administrator or a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub name: String,
    pub description: String,
    pub ops: BTreeSet<String>,
    /// A custom role bound to one site touches only users homed there.
    pub site: Option<String>,
    /// A custom role bound to one group touches only that group's members.
    pub group: Option<String>,
    pub builtin: bool,
}

/// What an operation acts on, for the scope check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// Nothing user-related (status, the role list, policy documents read).
    Any,
    /// Everyone at once: a Global policy, clearing every lockout, a bulk import.
    All,
    /// One SIP user, with their site and groups.
    User {
        site: Option<&'a str>,
        groups: &'a [String],
    },
    /// One user group (its members, a grant to it).
    Group(&'a str),
    /// One site (its policy documents).
    Site(&'a str),
}

/// Why a custom role was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleError(pub String);

impl std::fmt::Display for RoleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RoleError {}

const MAX_NAME: usize = 64;
const MAX_DESCRIPTION: usize = 200;

impl Role {
    /// A custom role, validated: a lowercase name that is not a predefined
    /// role's, at least one known operation, a bounded description.
    pub fn custom(
        name: &str,
        description: &str,
        ops: impl IntoIterator<Item = String>,
        site: Option<String>,
        group: Option<String>,
    ) -> Result<Role, RoleError> {
        check_name("role name", name)?;
        if predefined().iter().any(|r| r.name == name) {
            return Err(RoleError(format!(
                "{name} is a predefined role; choose another name for a custom role"
            )));
        }
        if description.chars().count() > MAX_DESCRIPTION
            || description.chars().any(char::is_control)
        {
            return Err(RoleError(format!(
                "the description must be one line of at most {MAX_DESCRIPTION} characters"
            )));
        }
        let ops: BTreeSet<String> = ops.into_iter().collect();
        if ops.is_empty() {
            return Err(RoleError(
                "a role needs at least one operation; see `parapet admin role operations`".into(),
            ));
        }
        if let Some(bad) = ops.iter().find(|o| !ops::is_known(o)) {
            return Err(RoleError(format!(
                "unknown operation {bad:?}; see `parapet admin role operations` for the list"
            )));
        }
        if let Some(s) = &site {
            check_name("site", s)?;
        }
        if let Some(g) = &group {
            check_name("group", g)?;
        }
        Ok(Role {
            name: name.to_string(),
            description: description.to_string(),
            ops,
            site,
            group,
            builtin: false,
        })
    }

    /// Whether the role is bounded to a site or a group.
    pub fn is_scoped(&self) -> bool {
        self.site.is_some() || self.group.is_some()
    }

    /// Whether this role may perform `op` on `target`. Unknown operations
    /// are never permitted.
    pub fn permits(&self, op: &str, target: Target<'_>) -> bool {
        if !self.ops.contains(op) {
            return false;
        }
        if !self.is_scoped() {
            return true;
        }
        match target {
            Target::Any => true,
            Target::All => false,
            Target::User { site, groups } => {
                self.site.as_deref().is_none_or(|s| site == Some(s))
                    && self
                        .group
                        .as_deref()
                        .is_none_or(|g| groups.iter().any(|m| m == g))
            }
            Target::Group(g) => self.group.as_deref() == Some(g),
            Target::Site(s) => self.group.is_none() && self.site.as_deref() == Some(s),
        }
    }

    /// Whether everything `other` permits, this role permits too (a token
    /// never gets more than its creator).
    pub fn covers(&self, other: &Role) -> bool {
        other.ops.is_subset(&self.ops)
            && self
                .site
                .as_ref()
                .is_none_or(|s| other.site.as_ref() == Some(s))
            && self
                .group
                .as_ref()
                .is_none_or(|g| other.group.as_ref() == Some(g))
    }
}

/// Names of sites, groups and roles: 1-64 of `a-z 0-9 - _ .`.
pub fn check_name(what: &str, name: &str) -> Result<(), RoleError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        });
    if ok {
        Ok(())
    } else {
        Err(RoleError(format!(
            "{what} {name:?} is not valid: use 1-{MAX_NAME} lowercase letters, digits, '-', '_' or '.'"
        )))
    }
}

fn builtin(name: &str, description: &str, ops: Vec<String>) -> Role {
    Role {
        name: name.to_string(),
        description: description.to_string(),
        ops: ops.into_iter().collect(),
        site: None,
        group: None,
        builtin: true,
    }
}

fn list(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// The predefined roles, covering Lync's RBAC roles. Least privilege: only
/// `administrator` manages administrators, roles and tokens.
pub fn predefined() -> Vec<Role> {
    let kinds: Vec<&str> = policy::spec::kinds().iter().map(|k| k.name).collect();
    let all_grants: Vec<String> = kinds.iter().map(|k| ops::policy_grant(k)).collect();
    let reads = list(&[
        "status.read",
        "security.read",
        "edges.read",
        "lockouts.read",
        "users.read",
        "groups.read",
        "policies.read",
        "roles.read",
    ]);
    let mut user_admin = list(&[
        "status.read",
        "lockouts.read",
        "lockouts.clear",
        "users.read",
        "users.write",
        "contacts.read",
        "contacts.write",
        "groups.read",
        "groups.write",
        "policies.read",
        "roles.read",
    ]);
    user_admin.extend(all_grants);
    let mut server_admin = reads.clone();
    server_admin.push("lockouts.clear".into());
    server_admin.push("traces.read".into());
    let mut voice = list(&["status.read", "users.read", "groups.read", "policies.read"]);
    voice.push(ops::policy_write("conferencing"));
    voice.push(ops::policy_grant("conferencing"));
    let mut compliance = list(&[
        "status.read",
        "users.read",
        "groups.read",
        "policies.read",
        "audit.read",
        "archive.read",
        "archive.hold",
        "cdrs.read",
    ]);
    compliance.push(ops::policy_write("archiving"));
    compliance.push(ops::policy_grant("archiving"));
    vec![
        builtin("administrator", "every operation, including administrators, roles, tokens and the audit log", ops::all()),
        builtin("user-administrator", "SIP users, their contact lists, groups, sites, lockouts, and granting existing policies (CsUserAdministrator)", user_admin),
        builtin("server-administrator", "server status, security view, lockouts, SIP traces without bodies; reads users and policies (CsServerAdministrator)", server_admin),
        builtin("voice-administrator", "conferencing and voice policies (CsVoiceAdministrator)", voice),
        builtin("view-only", "reads status, users, groups, policies and roles; changes nothing (CsViewOnlyAdministrator)", reads),
        builtin("help-desk", "reads users, their contact lists and policies, clears lockouts (CsHelpDesk)", list(&["status.read", "users.read", "contacts.read", "groups.read", "policies.read", "lockouts.read", "lockouts.clear"])),
        builtin("compliance-administrator", "archiving policy, the IM archive and its legal holds, call detail records, and the audit log (CsArchivingAdministrator)", compliance),
        builtin("persistent-chat-administrator", "reads users, groups and policies; chat rooms arrive with persistent chat (CsPersistentChatAdministrator)", list(&["status.read", "users.read", "groups.read", "policies.read"])),
    ]
}
