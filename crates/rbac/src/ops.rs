//! The operations the admin API offers, each a name a role can hold.
//!
//! Names are `area.verb`; policy changes are per kind
//! (`policies.write.privacy`, `policies.grant.archiving`) so that a role can
//! be narrowed to the kinds it is responsible for (voice, archiving...).

/// One operation of the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Op {
    pub name: &'static str,
    pub doc: &'static str,
}

/// Operations that do not depend on a policy kind.
pub const OPS: &[Op] = &[
    Op {
        name: "status.read",
        doc: "see the server's status, listeners and warnings",
    },
    Op {
        name: "security.read",
        doc: "see every security setting and the posture check",
    },
    Op {
        name: "lockouts.read",
        doc: "list sign-in lockouts",
    },
    Op {
        name: "lockouts.clear",
        doc: "clear sign-in lockouts",
    },
    Op {
        name: "edges.read",
        doc: "list the pool's paired edges",
    },
    Op {
        name: "edges.write",
        doc: "pair and unpair edges (issues an edge's certificates and hands it the pool's topology key)",
    },
    Op {
        name: "users.read",
        doc: "list SIP users, their groups, site and effective policy",
    },
    Op {
        name: "users.write",
        doc: "add, import, enable, disable and remove SIP users, set passwords and sites",
    },
    Op {
        name: "contacts.read",
        doc: "read users' contact lists and who watches their presence",
    },
    Op {
        name: "contacts.write",
        doc: "change users' contact lists, groups and relationships",
    },
    Op {
        name: "groups.read",
        doc: "list user groups and their members",
    },
    Op {
        name: "groups.write",
        doc: "create and remove user groups, change their members",
    },
    Op {
        name: "policies.read",
        doc: "read policy documents and grants",
    },
    Op {
        name: "roles.read",
        doc: "list roles",
    },
    Op {
        name: "roles.write",
        doc: "create, change and remove custom roles",
    },
    Op {
        name: "admins.read",
        doc: "list administrators",
    },
    Op {
        name: "admins.write",
        doc: "create, change and remove administrators, revoke anyone's tokens",
    },
    Op {
        name: "tokens.write",
        doc: "create API tokens (for oneself, with at most one's own rights)",
    },
    Op {
        name: "audit.read",
        doc: "read and verify the audit log",
    },
    Op {
        name: "archive.read",
        doc: "search and export the IM archive (each search and export is audited)",
    },
    Op {
        name: "cdrs.read",
        doc: "read call detail records: who called whom, when, for how long (each read is audited)",
    },
    Op {
        name: "traces.read",
        doc: "read SIP traces (the messages of a call or a user's calls; bodies hidden; each read is audited)",
    },
    Op {
        name: "traces.read_content",
        doc: "see message bodies (instant messages, SDP) in SIP traces",
    },
    Op {
        name: "archive.hold",
        doc: "place and release legal holds on users' archived messages",
    },
];

/// Prefix of the per-kind operation that writes policy documents.
pub const POLICY_WRITE: &str = "policies.write.";
/// Prefix of the per-kind operation that grants named policies.
pub const POLICY_GRANT: &str = "policies.grant.";

/// The operation that writes documents of `kind`.
pub fn policy_write(kind: &str) -> String {
    format!("{POLICY_WRITE}{kind}")
}

/// The operation that grants named policies of `kind`.
pub fn policy_grant(kind: &str) -> String {
    format!("{POLICY_GRANT}{kind}")
}

/// Every operation name, the per-kind ones included.
pub fn all() -> Vec<String> {
    let mut v: Vec<String> = OPS.iter().map(|o| o.name.to_string()).collect();
    for k in policy::spec::kinds() {
        v.push(policy_write(k.name));
        v.push(policy_grant(k.name));
    }
    v
}

/// The description of an operation, `None` if there is no such operation.
pub fn doc(name: &str) -> Option<String> {
    if let Some(o) = OPS.iter().find(|o| o.name == name) {
        return Some(o.doc.to_string());
    }
    if let Some(k) = name.strip_prefix(POLICY_WRITE).and_then(policy::spec::kind) {
        return Some(format!("write {} policy documents", k.name));
    }
    if let Some(k) = name.strip_prefix(POLICY_GRANT).and_then(policy::spec::kind) {
        return Some(format!(
            "grant named {} policies to users and groups",
            k.name
        ));
    }
    None
}

pub fn is_known(name: &str) -> bool {
    doc(name).is_some()
}

/// Whether the operation only reads.
pub fn is_read(name: &str) -> bool {
    name.ends_with(".read")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_is_unique_and_documented() {
        let all = all();
        let mut sorted = all.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), all.len());
        for o in &all {
            assert!(is_known(o), "{o}");
        }
        assert!(is_known("policies.write.privacy"));
        assert!(!is_known("policies.write.nonsense"));
        assert!(!is_known("users.delete"));
    }
}
