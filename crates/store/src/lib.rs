//! # parapet-store: what Parapet keeps, as traits
//!
//! Repository traits ([`Users`], [`Bindings`], [`Messages`], [`Policies`],
//! [`Admins`], [`UserSessions`], [`AuditLog`], [`PresenceState`],
//! [`Contacts`], [`Devices`], [`Files`]), gathered in [`Store`], over plain data types ([`model`]).
//! The SIP application and the HTTP APIs name only these; an implementation
//! (`parapet-store-sqlite` today) is chosen where the server is wired, so a
//! role that keeps nothing (the Edge) builds without a database.
//!
//! What every implementation promises: a write has reached durable storage
//! when its future returns `Ok` (the caller acknowledges after that, never
//! before), a handle is cheap to clone, and no call blocks the async runtime.
#![forbid(unsafe_code)]

pub mod archive;
pub mod audit_chain;
pub mod cdr;
pub mod edges;
pub mod export;
pub mod model;

pub use archive::{Archive, ArchiveFilter, ArchiveHold, ArchiveRow};
pub use cdr::{CdrFilter, CdrRow, Cdrs};
pub use edges::{EdgePairings, EdgeRow};
pub use model::{
    AdminRow, AuditEntry, AuditFilter, AuditRecord, AuditReport, Binding, BindingChange,
    ContactRow, DeviceRow, EnrollmentCodeRow, FileAdded, FileRow, GrantRow, GrantTargetRow,
    GroupRow, LockoutKey, LockoutKind, LockoutRow, NewUser, PendingMessage, PolicyRow, PolicyScope,
    PolicyState, PublicationRow, RoleRow, SubscriptionRow, TokenRow, TotpRow, User, UserSessionRow,
};

use std::future::Future;

/// A storage failure. The message is for operators; it never contains secrets.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// A uniqueness rule was violated (e.g. the user already exists).
    Conflict(String),
    /// The database could not be opened or migrated; the text says what to fix.
    Setup(String),
    /// The worker pool has stopped.
    Closed,
    /// The database cannot be reached now (no connection within the wait,
    /// a connection lost, the server shutting down): the caller may try
    /// again later. A write that fails so may or may not have committed.
    Unavailable(String),
    /// Any other database error.
    Db(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Conflict(m) => write!(f, "conflict: {m}"),
            StoreError::Setup(m) => write!(f, "database setup failed: {m}"),
            StoreError::Closed => f.write_str("database worker pool stopped"),
            StoreError::Unavailable(m) => write!(f, "database unavailable: {m}"),
            StoreError::Db(m) => write!(f, "database error: {m}"),
        }
    }
}

impl std::error::Error for StoreError {}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Everything Parapet keeps: what the server, the SIP application and the
/// APIs hold a handle to.
pub trait Store:
    Users
    + Bindings
    + Messages
    + Policies
    + Admins
    + UserSessions
    + AuditLog
    + PresenceState
    + Contacts
    + Devices
    + Files
    + Lockouts
    + Archive
    + Cdrs
    + EdgePairings
    + Clone
    + std::fmt::Debug
    + 'static
{
    /// Write transactions committed so far (each carries one or more
    /// writes), for the metrics.
    fn commits(&self) -> u64;

    /// A handle whose every write also appends `entry` to the audit log, in
    /// the same transaction: the change and its record commit together or
    /// not at all.
    fn audited(&self, entry: AuditEntry) -> Self;

    /// The processes serving from this store, with their leases, when the
    /// store is shared (PostgreSQL); empty for one the process owns alone.
    fn nodes(&self) -> impl Future<Output = Result<Vec<NodeRow>>> + Send {
        async { Ok(Vec::new()) }
    }

    /// The policy and users versions this process's caches hold now, for
    /// the other nodes and `parapet admin status` to see (a shared store
    /// records them with the node's lease; others ignore them).
    fn report_applied(&self, _policy_version: i64, _users_version: i64) {}

    /// This process's name and epoch in a shared store's pool (`None`
    /// for a store the process owns alone), for its metrics.
    fn node_identity(&self) -> Option<(String, i64)> {
        None
    }

    /// Starts following what the other nodes of a pool change: called
    /// before the caches are loaded, so that nothing committed in between
    /// is missed (it is read again, harmlessly). Nothing to do for a
    /// store one process owns alone.
    fn follow_start(&self) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// What the other nodes of a pool changed since the last call, each
    /// change once, in commit-safe order; always empty for a store one
    /// process owns alone. An error after a long absence means the log
    /// no longer holds everything missed: reload.
    fn followed_changes(&self) -> impl Future<Output = Result<Vec<Change>>> + Send {
        async { Ok(Vec::new()) }
    }

    /// Resolves when another node of a pool may have committed a change
    /// since `follow_start` (a hint: `followed_changes` says what, if
    /// anything); never for a store one process owns alone. A follower
    /// still reads on a timer of its own, for hints that were lost.
    fn change_hint(&self) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }
}

/// One change another node made to shared state: its kind (`bindings`,
/// `pending_messages`, `presence_publications`, `contacts`, ...) and the
/// key it concerns (an address of record for most).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: String,
    pub key: String,
    /// How long before it was read the change was written (the database's
    /// clock at both ends), in microseconds.
    pub age_us: u64,
}

/// A message handed to [`Messages::enqueue_message`]: its id, and whether
/// this call stored it (`false`: the same message was stored before, under
/// that id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    pub id: i64,
    pub new: bool,
}

/// A node of a pool sharing one database, as its row says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    /// Its name (`node_id`).
    pub id: String,
    /// The number it serves under since it last joined; a node declared
    /// dead cannot write under it again.
    pub epoch: i64,
    /// `serving`, `left` (stopped cleanly) or `dead` (its lease lapsed and
    /// another node took over).
    pub state: String,
    /// Its SIP listeners, as it said when it joined.
    pub address: String,
    /// Unix times in seconds, by the database's clock.
    pub started_at: i64,
    pub heartbeat_at: i64,
    pub lease_until: i64,
    /// Milliseconds its lease runs on (negative: lapsed), by the
    /// database's clock.
    pub lease_left_ms: i64,
    /// The policy and users versions its caches held at its last
    /// heartbeat.
    pub policy_version: i64,
    pub users_version: i64,
    /// The furthest position of the change log its follower had read (the
    /// other nodes' changes it has taken in), at its last heartbeat; 0
    /// before the first.
    pub applied_change: i64,
    /// Whether this is the node answering.
    pub this: bool,
}

/// The sign-in lockout filter's state (failure counts, lockouts, familiar
/// sources), written now and then from memory, where the filter decides,
/// and read back at start: a restart or a takeover forgives no guesser.
pub trait Lockouts: Send + Sync {
    /// Replaces the rows in `put` and deletes those in `remove`, in one
    /// transaction.
    fn save_lockouts(
        &self,
        put: Vec<LockoutRow>,
        remove: Vec<LockoutKey>,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Every row.
    fn lockouts(&self) -> impl Future<Output = Result<Vec<LockoutRow>>> + Send;
    /// The rows of one account (a node of a pool reads them when another
    /// node saved them).
    fn lockouts_of(&self, account: &str) -> impl Future<Output = Result<Vec<LockoutRow>>> + Send;
    /// The rows of each of `accounts` (none: an empty list), in one read
    /// where the back end can: a node of a pool follows many at once.
    fn lockouts_of_each(
        &self,
        accounts: Vec<String>,
    ) -> impl Future<Output = Result<Vec<(String, Vec<LockoutRow>)>>> + Send {
        async move {
            let mut out = Vec::with_capacity(accounts.len());
            for a in accounts {
                let rows = self.lockouts_of(&a).await?;
                out.push((a, rows));
            }
            Ok(out)
        }
    }
    /// Deletes the rows that decide nothing any more: counters not locked
    /// at `now` and not seen since `counters_before`, familiar sources not
    /// seen since `familiar_before`. Returns how many.
    fn purge_lockouts(
        &self,
        now: i64,
        counters_before: i64,
        familiar_before: i64,
    ) -> impl Future<Output = Result<usize>> + Send;
}

/// Accounts of SIP users.
pub trait Users: Send + Sync {
    /// Adds a user; `Conflict` if the address of record exists.
    fn add_user(&self, user: NewUser) -> impl Future<Output = Result<User>> + Send;
    /// Adds many users in one transaction (bulk import); all or nothing.
    fn import_users(&self, users: Vec<NewUser>) -> impl Future<Output = Result<usize>> + Send;
    fn user(&self, aor: &str) -> impl Future<Output = Result<Option<User>>> + Send;
    fn list_users(&self) -> impl Future<Output = Result<Vec<User>>> + Send;
    /// Replaces the sealed digest secrets. `false` if there is no such user.
    fn set_secret(&self, aor: &str, secret: Vec<u8>) -> impl Future<Output = Result<bool>> + Send;
    fn set_enabled(&self, aor: &str, enabled: bool) -> impl Future<Output = Result<bool>> + Send;
    /// Removes the user with their bindings and pending messages.
    fn remove_user(&self, aor: &str) -> impl Future<Output = Result<bool>> + Send;
    /// A number that changes whenever any user is added, changed or removed,
    /// by this process or another (the CLI): poll it to refresh caches.
    fn users_version(&self) -> impl Future<Output = Result<i64>> + Send;
}

/// Registrar bindings (the location service's durable copy).
pub trait Bindings: Send + Sync {
    /// Inserts or refreshes a binding, keyed by (aor, key).
    fn upsert_binding(&self, b: Binding) -> impl Future<Output = Result<()>> + Send;
    fn remove_binding(&self, aor: &str, key: &str) -> impl Future<Output = Result<bool>> + Send;
    /// Removes the binding only while it is still the one registered from
    /// `source` (a closed connection's): a registration made since over
    /// another connection stays.
    fn remove_binding_from(
        &self,
        aor: &str,
        key: &str,
        source: &str,
    ) -> impl Future<Output = Result<bool>> + Send;
    fn remove_all_bindings(&self, aor: &str) -> impl Future<Output = Result<usize>> + Send;
    /// Applies a REGISTER's changes atomically: all of them or none.
    fn apply_bindings(
        &self,
        changes: Vec<BindingChange>,
    ) -> impl Future<Output = Result<()>> + Send;
    /// The bindings of `aor` not expired at `now` (a node of a pool reads
    /// them when another node changed them).
    fn bindings_of(&self, aor: &str, now: i64)
        -> impl Future<Output = Result<Vec<Binding>>> + Send;
    /// The bindings of each of `aors` not expired at `now` (none: an
    /// empty list), in one read where the back end can.
    fn bindings_of_each(
        &self,
        aors: Vec<String>,
        now: i64,
    ) -> impl Future<Output = Result<Vec<(String, Vec<Binding>)>>> + Send {
        async move {
            let mut out = Vec::with_capacity(aors.len());
            for a in aors {
                let list = self.bindings_of(&a, now).await?;
                out.push((a, list));
            }
            Ok(out)
        }
    }
    /// Every binding not expired at `now` (unix seconds), for loading at start.
    fn live_bindings(&self, now: i64) -> impl Future<Output = Result<Vec<Binding>>> + Send;
    /// Deletes every binding expired at `now` (a scan of all bindings: at
    /// start and now and then); returns how many.
    fn purge_expired_bindings(&self, now: i64) -> impl Future<Output = Result<usize>> + Send;
    /// Deletes the bindings `(aor, key)` the registrar saw expire, each only
    /// if it is still expired at `now` (not refreshed since); returns how many.
    fn remove_expired_bindings(
        &self,
        keys: Vec<(String, String)>,
        now: i64,
    ) -> impl Future<Output = Result<usize>> + Send;
}

/// Instant messages waiting for an offline recipient.
pub trait Messages: Send + Sync {
    /// Stores a message durably; returns its id (ids grow in arrival order).
    /// A message whose `message_id` the same sender already used for the
    /// same recipient before its expiry is the same message (a retry after
    /// an answer that was lost, or a 503 while the commit was in doubt): it
    /// is not stored again, and the first one's id is returned — also when
    /// that one was delivered and deleted since.
    fn enqueue_message(&self, m: PendingMessage) -> impl Future<Output = Result<Enqueued>> + Send;
    /// The recipient's pending messages, oldest first, at most `limit`.
    fn pending_messages(
        &self,
        recipient: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<PendingMessage>>> + Send;
    /// Deletes one delivered message.
    fn delete_message(&self, id: i64) -> impl Future<Output = Result<bool>> + Send;
    /// Every recipient with stored messages, and how many (loaded at start).
    fn pending_recipients(&self) -> impl Future<Output = Result<Vec<(String, u64)>>> + Send;
    /// How many messages wait for `recipient`.
    fn pending_count(&self, recipient: &str) -> impl Future<Output = Result<usize>> + Send;
    /// Deletes messages that expired at `now`.
    fn purge_expired_messages(&self, now: i64) -> impl Future<Output = Result<usize>> + Send;
}

/// Policy documents, grants, user groups and sites. Every change moves a
/// counter ([`Policies::policy_version`]) so that a running server notices
/// changes made elsewhere and rebuilds its snapshot.
pub trait Policies: Send + Sync {
    /// Every row, read in one transaction, with the counter it was read at.
    fn policy_state(&self) -> impl Future<Output = Result<PolicyState>> + Send;
    fn policy_version(&self) -> impl Future<Output = Result<i64>> + Send;
    /// Inserts or replaces the document of `kind` at its scope.
    fn put_policy(&self, p: PolicyRow) -> impl Future<Output = Result<()>> + Send;
    /// Removes a document; `Conflict` while a named one is still granted.
    fn remove_policy(
        &self,
        kind: &str,
        scope: PolicyScope,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Grants (or re-grants) a named policy; `Conflict` if it does not exist.
    fn put_grant(&self, g: GrantRow) -> impl Future<Output = Result<()>> + Send;
    fn remove_grant(
        &self,
        kind: &str,
        target: GrantTargetRow,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Inserts or updates a group.
    fn put_group(&self, g: GroupRow) -> impl Future<Output = Result<()>> + Send;
    /// Removes a group with its memberships and grants.
    fn remove_group(&self, name: &str) -> impl Future<Output = Result<bool>> + Send;
    /// `Conflict` if the group or the user does not exist.
    fn add_member(&self, group: &str, aor: &str) -> impl Future<Output = Result<()>> + Send;
    fn remove_member(&self, group: &str, aor: &str) -> impl Future<Output = Result<bool>> + Send;
    /// Sets (or with `None` clears) a user's home site.
    fn set_site(&self, aor: &str, site: Option<String>) -> impl Future<Output = Result<()>> + Send;
}

/// Changes to an administrator; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminUpdate {
    /// A new password hash; also clears failed sign-ins and any lock.
    pub password: Option<String>,
    /// A new sealed TOTP secret; also forgets the last step used.
    pub totp: Option<Vec<u8>>,
    pub role: Option<String>,
    pub enabled: Option<bool>,
}

/// The outcome of a sign-in attempt, recorded on the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignIn {
    /// Password and code were right; `step` is the TOTP step used.
    Success { step: i64 },
    /// Something was wrong: after `max_failures` in a row the account is
    /// locked until `now + lock_secs`.
    Failure {
        now: i64,
        max_failures: i64,
        lock_secs: i64,
    },
}

/// Administrators, custom roles and bearer tokens.
pub trait Admins: Send + Sync {
    /// `Conflict` if the name exists.
    fn add_admin(&self, a: AdminRow) -> impl Future<Output = Result<()>> + Send;
    fn admin(&self, name: &str) -> impl Future<Output = Result<Option<AdminRow>>> + Send;
    fn list_admins(&self) -> impl Future<Output = Result<Vec<AdminRow>>> + Send;
    fn update_admin(&self, name: &str, u: AdminUpdate)
        -> impl Future<Output = Result<bool>> + Send;
    /// Removes the administrator and their tokens.
    fn remove_admin(&self, name: &str) -> impl Future<Output = Result<bool>> + Send;
    /// Records a sign-in. For a success, `false` if the TOTP step was not
    /// later than the last one accepted (a replayed code): nothing changes.
    fn record_sign_in(&self, name: &str, s: SignIn) -> impl Future<Output = Result<bool>> + Send;
    /// Inserts or replaces a custom role.
    fn put_role(&self, r: RoleRow) -> impl Future<Output = Result<()>> + Send;
    /// `Conflict` while an administrator or a token holds the role.
    fn remove_role(&self, name: &str) -> impl Future<Output = Result<bool>> + Send;
    fn roles(&self) -> impl Future<Output = Result<Vec<RoleRow>>> + Send;
    fn add_token(&self, t: TokenRow) -> impl Future<Output = Result<()>> + Send;
    fn token(&self, id: &str) -> impl Future<Output = Result<Option<TokenRow>>> + Send;
    fn tokens(&self) -> impl Future<Output = Result<Vec<TokenRow>>> + Send;
    fn remove_token(&self, id: &str) -> impl Future<Output = Result<bool>> + Send;
    fn purge_expired_tokens(&self, now: i64) -> impl Future<Output = Result<usize>> + Send;
}

/// Users' sign-in sessions on the user API. Changing a user's password or
/// disabling the account ([`Users::set_secret`], [`Users::set_enabled`])
/// ends that user's sessions in the same transaction; removing the user
/// removes them.
pub trait UserSessions: Send + Sync {
    /// Stores a session; the user's oldest sessions beyond `max_per_user`
    /// are ended in the same transaction. `Conflict` if the user does not
    /// exist.
    fn add_user_session(
        &self,
        s: UserSessionRow,
        max_per_user: usize,
    ) -> impl Future<Output = Result<()>> + Send;
    /// A session by id, with whether its user is enabled now.
    fn user_session(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<(UserSessionRow, bool)>>> + Send;
    fn remove_user_session(&self, id: &str) -> impl Future<Output = Result<bool>> + Send;
    /// Marks a session as signed in with a second factor; `false` if it
    /// does not exist.
    fn upgrade_user_session(&self, id: &str) -> impl Future<Output = Result<bool>> + Send;
    /// Ends every session of `aor`; returns how many.
    fn remove_user_sessions(&self, aor: &str) -> impl Future<Output = Result<usize>> + Send;
    fn purge_expired_user_sessions(&self, now: i64) -> impl Future<Output = Result<usize>> + Send;
}

/// The audit log: append-only and hash-chained. Changes are recorded by
/// writing through [`Store::audited`]; refusals and sign-ins by
/// [`AuditLog::append_audit`].
pub trait AuditLog: Send + Sync {
    fn append_audit(&self, e: AuditEntry) -> impl Future<Output = Result<i64>> + Send;
    /// Newest first, at most `filter.limit` (capped at 1000).
    fn audit_list(&self, f: AuditFilter) -> impl Future<Output = Result<Vec<AuditRecord>>> + Send;
    /// Recomputes the whole chain.
    fn audit_verify(&self) -> impl Future<Output = Result<AuditReport>> + Send;
}

/// Presence state that must outlive the process: published documents and
/// subscriptions (both acknowledged to clients, so written before the 2xx).
pub trait PresenceState: Send + Sync {
    /// Inserts or replaces a publication; `replaces`: an older entity tag
    /// it supersedes (removed in the same transaction).
    fn put_publication(
        &self,
        p: PublicationRow,
        replaces: Option<String>,
    ) -> impl Future<Output = Result<()>> + Send;
    fn remove_publication(&self, etag: &str) -> impl Future<Output = Result<bool>> + Send;
    /// The publications of `aor` not expired at `now` (a node of a pool
    /// reads them when another node changed them).
    fn publications_of(
        &self,
        aor: &str,
        now: i64,
    ) -> impl Future<Output = Result<Vec<PublicationRow>>> + Send;
    /// Every publication not expired at `now`.
    fn live_publications(
        &self,
        now: i64,
    ) -> impl Future<Output = Result<Vec<PublicationRow>>> + Send;
    /// Inserts or replaces a subscription (keyed by id).
    fn put_subscription(&self, s: SubscriptionRow) -> impl Future<Output = Result<()>> + Send;
    /// Removes a subscription its watcher ended (wherever it is served).
    fn remove_subscription(&self, id: &str) -> impl Future<Output = Result<bool>> + Send;
    /// Removes many subscriptions this process ended itself (expired, or
    /// its NOTIFYs refused) in one transaction; returns how many. In a
    /// pool, only rows naming this node (or none) go: one another node
    /// has taken over meanwhile is that node's to end.
    fn remove_subscriptions(&self, ids: Vec<String>) -> impl Future<Output = Result<usize>> + Send;
    fn live_subscriptions(
        &self,
        now: i64,
    ) -> impl Future<Output = Result<Vec<SubscriptionRow>>> + Send;
    /// One subscription, if it is stored and live at `now` (a pool's node
    /// takes over a subscription another node served, and learns that
    /// one of its own moved or ended elsewhere).
    fn subscription(
        &self,
        id: &str,
        now: i64,
    ) -> impl Future<Output = Result<Option<SubscriptionRow>>> + Send;
    /// Takes over the live subscriptions of the pool's nodes that no
    /// longer serve (declared dead, or stopped), and those naming no
    /// serving node at all (written by a process that joined no pool, or
    /// in the standby mode, or naming a node no longer listed): their rows name this node
    /// from now on (each row goes to one node, however many ask at once).
    /// Returns them; always empty for a store one process serves.
    /// At most `limit` at a time: a node takes no more than it has room
    /// for, and the others take the rest.
    fn claim_subscriptions(
        &self,
        _now: i64,
        _limit: usize,
    ) -> impl Future<Output = Result<Vec<SubscriptionRow>>> + Send {
        async { Ok(Vec::new()) }
    }
    /// Deletes publications and subscriptions expired at `now`.
    fn purge_expired_presence(&self, now: i64) -> impl Future<Output = Result<usize>> + Send;
}

/// Server-stored contact lists: entries with relationships, and the
/// owner's ordered contact groups.
pub trait Contacts: Send + Sync {
    /// Every entry of every list (loaded at start).
    fn all_contacts(&self) -> impl Future<Output = Result<Vec<ContactRow>>> + Send;
    /// One user's entries, by contact address.
    fn contacts_of(&self, owner: &str) -> impl Future<Output = Result<Vec<ContactRow>>> + Send;
    /// One user's contact groups, in order.
    fn contact_groups(&self, owner: &str) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// Inserts or replaces an entry; groups it names that the owner lacks are
    /// created. `Conflict` if the owner does not exist.
    fn put_contact(&self, c: ContactRow) -> impl Future<Output = Result<()>> + Send;
    fn remove_contact(
        &self,
        owner: &str,
        contact: &str,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Adds entries in one transaction, leaving existing ones as they are;
    /// returns how many were added.
    fn add_contacts(&self, rows: Vec<ContactRow>) -> impl Future<Output = Result<usize>> + Send;
    /// Creates a group at the end of the owner's list (no-op if it exists).
    fn put_contact_group(&self, owner: &str, name: &str)
        -> impl Future<Output = Result<()>> + Send;
    /// Removes a group; its entries stay, outside that group.
    fn remove_contact_group(
        &self,
        owner: &str,
        name: &str,
    ) -> impl Future<Output = Result<bool>> + Send;
}

/// Users' devices (their certificates) and second factors. Disabling a
/// user or setting a new password ([`Users::set_enabled`],
/// [`Users::set_secret`]) revokes every device of that user in the same
/// transaction (reason `disabled` or `password`); removing the user
/// removes them.
pub trait Devices: Send + Sync {
    /// Stores a newly issued device. `Conflict` if the user does not exist
    /// or is disabled, the id is taken, the user already has `max_active`
    /// devices neither revoked nor expired at `d.issued_at`, or (with
    /// `session`) that sign-in session of the user has ended: checked in
    /// the same transaction, so a certificate issued while a new password,
    /// a disabling or a sign-out-everywhere is committed is either revoked
    /// by it or never stored.
    fn add_device(
        &self,
        d: DeviceRow,
        max_active: usize,
        session: Option<String>,
    ) -> impl Future<Output = Result<()>> + Send;
    /// A user's devices, newest first (revoked ones too).
    fn devices(&self, aor: &str) -> impl Future<Output = Result<Vec<DeviceRow>>> + Send;
    /// Every device neither revoked nor expired at `now` (at start).
    fn active_devices(&self, now: i64) -> impl Future<Output = Result<Vec<DeviceRow>>> + Send;
    /// Revokes one device; `None` if the user has no such device or it
    /// was revoked already.
    fn revoke_device(
        &self,
        aor: &str,
        id: &str,
        reason: &str,
        now: i64,
    ) -> impl Future<Output = Result<Option<DeviceRow>>> + Send;
    /// Revokes every device of `aor` not yet revoked; returns them.
    fn revoke_devices(
        &self,
        aor: &str,
        reason: &str,
        now: i64,
    ) -> impl Future<Output = Result<Vec<DeviceRow>>> + Send;
    /// Records that a device signed in (at most once a minute per device is
    /// enough; the caller decides).
    fn touch_device(
        &self,
        fingerprint: &str,
        seen_at: i64,
        user_agent: Option<String>,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Revoked devices whose certificates have not expired yet at `now`
    /// (the revocation list).
    fn revoked_devices(&self, now: i64) -> impl Future<Output = Result<Vec<DeviceRow>>> + Send;

    /// The user's TOTP state (`None`: no such user).
    fn totp(&self, aor: &str) -> impl Future<Output = Result<Option<TotpRow>>> + Send;
    /// Starts (or restarts) enrolment: a sealed secret waiting for its
    /// first code. The confirmed secret, if any, stays until then.
    fn set_totp_pending(
        &self,
        aor: &str,
        sealed: Vec<u8>,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// The pending secret becomes the user's, `step` its first use, only
    /// if it is still `pending` (the one the code was checked against).
    /// `false` if nothing, or another secret, was pending.
    fn confirm_totp(
        &self,
        aor: &str,
        pending: Vec<u8>,
        step: i64,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Records `step` as used, only if it is later than the last one used
    /// (so one code is accepted once, even by two requests at once);
    /// `false` otherwise.
    fn use_totp_step(&self, aor: &str, step: i64) -> impl Future<Output = Result<bool>> + Send;
    /// Removes the user's second factor (an administrator's reset).
    fn remove_totp(&self, aor: &str) -> impl Future<Output = Result<bool>> + Send;

    /// Stores a single-use enrollment code.
    fn add_enrollment_code(&self, c: EnrollmentCodeRow) -> impl Future<Output = Result<()>> + Send;
    /// Consumes the code with this hash for `aor` if it exists and has not
    /// expired at `now`; `false` otherwise. Consumed codes are gone.
    fn use_enrollment_code(
        &self,
        aor: &str,
        hash: Vec<u8>,
        now: i64,
    ) -> impl Future<Output = Result<bool>> + Send;
}

/// What is known about files uploaded for transfer, and who may fetch
/// them: the owner, and each recipient of a message that referenced the
/// file (granted when the server relays that message). Removing a user
/// removes their files' records (the server then deletes the bytes).
pub trait Files: Send + Sync {
    /// Records an uploaded file if the owner's quotas allow it, checked in
    /// the same transaction: the bytes uploaded since `f.created_at - 86400`
    /// (deleted files count) plus this one within `daily_limit`, the bytes
    /// of files not yet deleted plus this one within `total_limit`.
    /// `Conflict` if the owner does not exist.
    fn add_file(
        &self,
        f: FileRow,
        daily_limit: u64,
        total_limit: u64,
    ) -> impl Future<Output = Result<FileAdded>> + Send;
    fn file(&self, id: &str) -> impl Future<Output = Result<Option<FileRow>>> + Send;
    /// The file, and whether `user` may fetch it (its owner, or granted).
    fn file_for(
        &self,
        id: &str,
        user: &str,
    ) -> impl Future<Output = Result<Option<(FileRow, bool)>>> + Send;
    /// Lets each of `recipients` fetch each file of `ids` (kept as long as
    /// the file's record).
    fn grant_files(
        &self,
        ids: Vec<String>,
        recipients: Vec<String>,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Files whose time ran out at `now` and whose bytes are not yet
    /// deleted, at most `limit`.
    fn expired_files(
        &self,
        now: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// Records that these files' bytes are deleted.
    fn mark_files_deleted(
        &self,
        ids: Vec<String>,
        now: i64,
    ) -> impl Future<Output = Result<usize>> + Send;
    /// Of `ids`, those with a record whose bytes are not deleted (what
    /// the server's directory may keep).
    fn kept_files(&self, ids: Vec<String>) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// Forgets the records of files deleted before `before`.
    fn purge_file_records(&self, before: i64) -> impl Future<Output = Result<usize>> + Send;
}
