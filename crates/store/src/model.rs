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
    /// The node of a pool that holds the client's flow (its `node_id`), so
    /// that another node reaches the client through it; empty in a store
    /// one process owns alone.
    pub node: String,
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
    /// The sender's own identifier of the message (IMDN Message-ID, RFC
    /// 5438), when it carries one.
    pub message_id: Option<String>,
}

/// Where a stored policy document applies.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum PolicyScope {
    Global,
    Site(String),
    Named(String),
}

impl PolicyScope {
    /// The scope as two columns (kind, name), as every back end stores it.
    pub fn columns(&self) -> (&'static str, &str) {
        match self {
            PolicyScope::Global => ("global", ""),
            PolicyScope::Site(s) => ("site", s),
            PolicyScope::Named(n) => ("named", n),
        }
    }

    /// The scope read back from [`PolicyScope::columns`]; `None` for a kind
    /// this version does not know.
    pub fn from_columns(scope: &str, name: String) -> Option<PolicyScope> {
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

/// An administrator account.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminRow {
    pub name: String,
    /// Argon2id PHC string.
    pub password: String,
    /// The TOTP secret, sealed by the server.
    pub totp: Vec<u8>,
    /// The last TOTP step accepted (replay protection).
    pub totp_last_step: Option<i64>,
    pub role: String,
    pub enabled: bool,
    /// Failed sign-ins since the last success.
    pub failed: i64,
    /// Unix seconds until which sign-in is refused (0: not locked).
    pub locked_until: i64,
    pub created_at: i64,
}

impl std::fmt::Debug for AdminRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminRow")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

/// A custom role (the predefined ones live in code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRow {
    pub name: String,
    pub description: String,
    pub ops: Vec<String>,
    pub site: Option<String>,
    pub group: Option<String>,
}

/// A bearer token: a sign-in session or an API token. Only the hash of its
/// secret is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub id: String,
    pub hash: Vec<u8>,
    pub admin: String,
    /// `session` or `api`.
    pub kind: String,
    pub name: String,
    pub role: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// What a row of the sign-in lockout state counts (see `auth::lockout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LockoutKind {
    /// Failures of one account from one source address.
    Pair,
    /// Failures of one account from every source together.
    Account,
    /// A source the account signed in from successfully.
    Familiar,
}

impl LockoutKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LockoutKind::Pair => "pair",
            LockoutKind::Account => "account",
            LockoutKind::Familiar => "familiar",
        }
    }

    pub fn parse(s: &str) -> Option<LockoutKind> {
        Some(match s {
            "pair" => LockoutKind::Pair,
            "account" => LockoutKind::Account,
            "familiar" => LockoutKind::Familiar,
            _ => return None,
        })
    }
}

/// The key of a lockout row: `source` is empty for [`LockoutKind::Account`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LockoutKey {
    pub kind: LockoutKind,
    pub account: String,
    pub source: String,
}

/// One entry of the sign-in lockout filter, kept so that a restart (or
/// another node taking over) does not forgive a guesser. Unix seconds;
/// a familiar source has only `last_seen` (when it last signed in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockoutRow {
    pub key: LockoutKey,
    pub window_start: i64,
    pub failures: i64,
    pub lockouts: i64,
    pub locked_until: i64,
    pub last_seen: i64,
}

/// A user's sign-in session on the user API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSessionRow {
    pub id: String,
    /// SHA-256 of the session secret.
    pub hash: Vec<u8>,
    pub aor: String,
    /// The address it was made from.
    pub source: String,
    pub created_at: i64,
    pub expires_at: i64,
    /// Signed in with a second factor too (TOTP at sign-in, or enrolled
    /// in this session).
    pub second_factor: bool,
}

/// One audit record, as appended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditEntry {
    pub at: i64,
    /// `admin:NAME`, `token:ID (NAME)`, `recover@HOST`, or `anonymous`.
    pub actor: String,
    /// Where the request came from (an address, or `local` for the recovery).
    pub source: String,
    /// The operation, e.g. `users.write`.
    pub action: String,
    /// What it acted on, e.g. `user:sip:alice@example.com`.
    pub object: String,
    /// `ok`, `denied` or `failed`.
    pub outcome: String,
    pub detail: String,
    /// JSON of the object before and after the change.
    pub before: Option<String>,
    pub after: Option<String>,
}

/// A stored audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: i64,
    pub entry: AuditEntry,
}

/// Which audit records to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub actor: Option<String>,
    /// Records whose object starts with this.
    pub object: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// At most this many, newest first.
    pub limit: usize,
}

/// The result of checking the audit chain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditReport {
    pub records: u64,
    /// Empty when the chain is intact; otherwise what is wrong, first problems first.
    pub problems: Vec<String>,
}

/// A published presence document (RFC 3903), by its entity tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicationRow {
    pub etag: String,
    pub aor: String,
    /// Unix seconds.
    pub expires_at: i64,
    /// The PIDF document as the server re-wrote it after validation.
    pub document: String,
}

/// An event subscription (RFC 6665) with the dialog it lives in, as the
/// notifier keeps it: enough to send NOTIFYs after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRow {
    /// Our dialog tag (random; also the subscription's id).
    pub id: String,
    /// `presence` or `presence.winfo`.
    pub event: String,
    pub watcher: String,
    /// The presentity (or for `presence.winfo`, the watched user).
    pub resource: String,
    pub call_id: String,
    pub remote_tag: String,
    /// The SUBSCRIBE's From value (the NOTIFY's To), tag included.
    pub from_value: String,
    /// The SUBSCRIBE's To value without our tag (the NOTIFY's From).
    pub to_value: String,
    /// The subscriber's Contact URI (the NOTIFY's Request-URI).
    pub remote_target: String,
    /// Record-Route values of the SUBSCRIBE, in order.
    pub route_set: Vec<String>,
    /// Where the SUBSCRIBE came from: `udp:1.2.3.4:5060`, `tls:...`.
    pub source: String,
    /// The `id` parameter of the Event header, if any.
    pub event_id: Option<String>,
    pub local_cseq: u32,
    pub remote_cseq: u32,
    /// Unix seconds.
    pub expires_at: i64,
    /// The node of a pool that holds it (its `node_id`; the one that sends
    /// its NOTIFYs); empty in a store one process owns alone.
    pub node: String,
}

/// One entry of a user's contact list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactRow {
    pub owner: String,
    /// The contact's address (`sip:user@domain`; other domains allowed).
    pub contact: String,
    /// `blocked`, `external`, `colleague`, `workgroup` or `personal`.
    pub relationship: String,
    pub display_name: Option<String>,
    /// The owner's contact groups this entry is in, in the owner's order.
    pub groups: Vec<String>,
    pub added_at: i64,
}

/// A device's certificate, issued to a user after a strong sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRow {
    pub aor: String,
    /// The device id the certificate names (`urn:parapet:device:ID`).
    pub id: String,
    /// The name the user gave the device.
    pub name: String,
    /// SHA-256 of the certificate (DER), lower-case hex: how a connection's
    /// certificate is recognised.
    pub fingerprint: String,
    /// The certificate's serial number, lower-case hex.
    pub serial: String,
    /// The certificate as issued (PEM), for the user to download again.
    pub certificate: String,
    pub issued_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    /// Why it was revoked (`disabled`, `password`, `removed`, `sign-out`,
    /// `user`, `admin`), for the lists and the revocation list.
    pub revoked_reason: Option<String>,
    pub last_seen: Option<i64>,
    pub user_agent: Option<String>,
}

/// A user's TOTP second factor: the sealed secret once confirmed, a
/// pending one while the user is enrolling, and the last step used (a code
/// is accepted once).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TotpRow {
    pub secret: Option<Vec<u8>>,
    pub pending: Option<Vec<u8>>,
    pub last_step: Option<i64>,
}

/// A single-use code that lets a user enroll a device where policy
/// allows managed devices only (its SHA-256 alone is stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentCodeRow {
    pub hash: Vec<u8>,
    pub aor: String,
    pub created_by: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A file a user uploaded for transfer. The bytes are kept outside the
/// database (the file-transfer server's directory, named by `id`); this is
/// what is known about them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRow {
    /// 32 lower-case hex digits (128 random bits): the URL's last segment.
    pub id: String,
    /// Who uploaded it (an address of record).
    pub owner: String,
    /// The name it was uploaded under.
    pub name: String,
    /// The media type it is served as (from its content, not the client's word).
    pub content_type: String,
    /// The extension its content shows where that decides (`.exe`, `.jar`
    /// ...), else empty.
    pub kind: String,
    /// The extensions of every name and content inside it (archives), for
    /// recipients' rules.
    pub inner: Vec<String>,
    pub size: u64,
    /// SHA-256 of its bytes, lower-case hex (empty for files uploaded
    /// before it was recorded).
    pub sha256: String,
    pub created_at: i64,
    pub expires_at: i64,
    /// When its bytes were deleted (expired); the record stays a while so
    /// that fetching it answers 410 Gone.
    pub deleted_at: Option<i64>,
}

/// The outcome of [`crate::Files::add_file`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileAdded {
    Added,
    /// The owner's uploads in the last 24 hours would pass the daily quota;
    /// `used` bytes so far.
    DailyQuota {
        used: u64,
    },
    /// The owner's files kept now would pass the total quota.
    TotalQuota {
        used: u64,
    },
}
