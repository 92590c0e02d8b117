//! The stored data, as plain values.

/// A SIP user account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    /// Address of record, normalised: `sip:user@domain`, lower-case domain.
    pub aor: String,
    pub display_name: Option<String>,
    /// The user's digest secrets, sealed by the auth layer (never a password, and
    /// not usable without the key kept outside the database).
    pub secret: Vec<u8>,
    pub enabled: bool,
    /// Unix seconds.
    pub created_at: i64,
}

/// A user to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub aor: String,
    pub display_name: Option<String>,
    pub secret: Vec<u8>,
    pub created_at: i64,
}

/// One registered contact of an address of record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub aor: String,
    /// What identifies the binding within its AOR: `+sip.instance` and `reg-id`
    /// for RFC 5626 clients, otherwise the contact URI.
    pub key: String,
    /// The Contact URI.
    pub contact: String,
    /// q-value in thousandths (0–1000).
    pub q: u16,
    /// Unix seconds.
    pub expires_at: i64,
    pub call_id: String,
    pub cseq: u32,
    /// Path header values (RFC 3327), in order.
    pub path: Vec<String>,
    /// Where the REGISTER came from: `udp:1.2.3.4:5060`, `tls:...`; flows
    /// themselves do not survive a restart, the address does.
    pub source: String,
    pub user_agent: Option<String>,
}

/// One change to an address of record's bindings; a REGISTER's changes are
/// applied together ([`crate::Bindings::apply_bindings`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindingChange {
    /// Insert or refresh the binding keyed by (aor, key).
    Upsert(Binding),
    /// Remove one binding.
    Remove { aor: String, key: String },
}

/// An instant message stored for later delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingMessage {
    /// Assigned on enqueue; 0 before.
    pub id: i64,
    pub recipient: String,
    pub sender: String,
    pub content_type: String,
    pub body: Vec<u8>,
    /// Unix seconds.
    pub received_at: i64,
    pub expires_at: i64,
}

/// Where a stored policy document applies.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum PolicyScope {
    Global,
    Site(String),
    Named(String),
}

impl PolicyScope {
    pub(crate) fn columns(&self) -> (&'static str, &str) {
        match self {
            PolicyScope::Global => ("global", ""),
            PolicyScope::Site(s) => ("site", s),
            PolicyScope::Named(n) => ("named", n),
        }
    }

    pub(crate) fn from_columns(scope: &str, name: String) -> Option<PolicyScope> {
        match scope {
            "global" => Some(PolicyScope::Global),
            "site" => Some(PolicyScope::Site(name)),
            "named" => Some(PolicyScope::Named(name)),
            _ => None,
        }
    }
}

/// A policy document as stored: its fields are JSON text that the policy
/// layer writes and validates; the store keeps it as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRow {
    pub kind: String,
    pub scope: PolicyScope,
    pub fields_json: String,
}

/// Who a grant targets.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum GrantTargetRow {
    User(String),
    Group(String),
}

/// A named policy of `kind` granted to a user or a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRow {
    pub kind: String,
    pub policy: String,
    pub target: GrantTargetRow,
}

/// A user group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRow {
    pub name: String,
    pub priority: u32,
    pub description: String,
}

/// Everything policy resolution needs, read in one go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyState {
    /// The counter the rows were read at (see `Policies::policy_version`).
    pub version: i64,
    pub policies: Vec<PolicyRow>,
    pub grants: Vec<GrantRow>,
    pub groups: Vec<GroupRow>,
    /// (group, aor)
    pub members: Vec<(String, String)>,
    /// (aor, site)
    pub sites: Vec<(String, String)>,
}
