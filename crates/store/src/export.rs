//! Moving a deployment's data from one back end to another
//! (`parapet admin migrate-store`): every table, row by row, in a neutral
//! form. Both back ends keep the same tables and columns with the same
//! encodings, so a table moves as it is: one back end exports, the other
//! imports, and neither knows the other's SQL.

/// Every table, in an order where each row's references are already there.
pub const TABLES: &[&str] = &[
    "meta",
    "users",
    "user_groups",
    "group_members",
    "user_sites",
    "policies",
    "policy_grants",
    "admins",
    "admin_roles",
    "admin_tokens",
    "audit",
    "audit_head",
    "bindings",
    "pending_messages",
    "message_ids",
    "presence_publications",
    "subscriptions",
    "contact_groups",
    "contacts",
    "user_sessions",
    "devices",
    "totp",
    "enrollment_codes",
    "files",
    "file_grants",
    "lockouts",
    "archive",
    "archive_holds",
    "cdrs",
    "archive_key_checks",
    "edges",
];

/// Rows exported in one batch at most (memory stays bounded whatever the
/// table's size).
pub const BATCH_ROWS: usize = 500;

/// A column's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

/// Some rows of one table; `columns` names each row's values in order.
/// A table with no rows is sent as one batch without rows, so the
/// importer knows it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub table: &'static str,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}
