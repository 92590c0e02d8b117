//! The `parapet admin` and `parapet security` command lines (clap).

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

#[derive(Args)]
pub(crate) struct AdminArgs {
    /// The admin listener of the running server.
    #[arg(
        long = "server",
        env = "PARAPET_ADMIN_URL",
        default_value = "http://127.0.0.1:9060",
        global = true
    )]
    pub(super) server: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "table", global = true)]
    pub(super) output: Output,
    #[command(subcommand)]
    pub(super) cmd: AdminCmd,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum Output {
    Table,
    Json,
}

#[derive(Subcommand)]
pub(super) enum AdminCmd {
    /// Sign in with password and TOTP code; the session is kept in
    /// ~/.config/parapet/session (or PARAPET_ADMIN_SESSION) for 8 hours.
    ///
    /// Example: parapet admin login --name root
    Login {
        #[arg(long)]
        name: String,
        /// Read the password from standard input instead of the terminal.
        #[arg(long)]
        password_stdin: bool,
        /// The current code from the authenticator app (asked for if omitted).
        #[arg(long)]
        code: Option<String>,
        /// Print the session token instead of saving it (for scripts).
        #[arg(long)]
        print_token: bool,
    },
    /// End the session.
    Logout,
    /// Who the current token belongs to, and what it may do.
    Whoami,
    /// Change your own password: asks for the current one and the new one
    /// (twice); with --password-stdin, reads the current and the new one as
    /// two lines.
    Passwd {
        #[arg(long)]
        password_stdin: bool,
    },
    /// Break-glass: create a new administrator directly in the data directory
    /// (needs filesystem access to it; audited). Also how the first
    /// administrator is made. Prints the password and TOTP secret once.
    ///
    /// Example: parapet admin recover --data-dir /var/lib/parapet --name root
    Recover {
        #[arg(long, env = "PARAPET_DATA_DIR", default_value = "/var/lib/parapet")]
        data_dir: PathBuf,
        /// The server's `database` setting, when it is PostgreSQL (the
        /// keys still come from the data directory).
        #[arg(long, env = "PARAPET_DATABASE", hide_env_values = true)]
        database: Option<String>,
        #[arg(long)]
        name: String,
    },
    /// Move the data directory's SQLite database into an empty PostgreSQL
    /// database, with the server stopped: every table in one transaction,
    /// then the row counts compared and the audit log verified there. Then
    /// set `database` to the same URL and start `parapet serve`.
    ///
    /// Example: parapet admin migrate-store --data-dir /var/lib/parapet --to "postgres://parapet:PASSWORD@db.example.com/parapet?sslrootcert=/etc/parapet/db-ca.pem"
    MigrateStore {
        #[arg(long, env = "PARAPET_DATA_DIR", default_value = "/var/lib/parapet")]
        data_dir: PathBuf,
        /// The PostgreSQL URL, as the `database` setting takes it (or in
        /// PARAPET_MIGRATE_TO, which keeps a password out of `ps`).
        #[arg(long, env = "PARAPET_MIGRATE_TO", hide_env_values = true)]
        to: String,
    },
    /// Server status and warnings.
    Status,
    /// The DNS records (NAPTR, SRV, A/AAAA) to publish for the domain so that
    /// clients and partners find this server, as zone-file lines.
    ///
    /// Example: parapet admin dns-records >> /etc/bind/db.example.com
    DnsRecords,
    /// Sign-in lockouts.
    #[command(subcommand)]
    Lockout(LockoutCmd),
    /// Federation: partners, their watch list, and how the policy decides.
    #[command(subcommand)]
    Federation(FederationCmd),
    /// The pool's edges (`parapet edge`): pair, list, unpair.
    #[command(subcommand)]
    Edge(EdgeCmd),
    /// SIP users.
    #[command(subcommand)]
    User(UserCmd),
    /// Device enrollment (managed devices).
    #[command(subcommand)]
    Device(DeviceCmd),
    /// Users' contact lists, relationships and presence watchers.
    #[command(subcommand)]
    Contacts(ContactsCmd),
    /// User groups (departments, teams).
    #[command(subcommand)]
    Group(GroupCmd),
    /// Policy documents and effective policy.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Grants of named policies to users and groups.
    #[command(subcommand)]
    Grant(GrantCmd),
    /// Roles and the operation catalog.
    #[command(subcommand)]
    Role(RoleCmd),
    /// Administrators.
    #[command(subcommand)]
    Admins(AdminsCmd),
    /// API tokens for automation.
    #[command(subcommand)]
    Token(TokenCmd),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// The IM archive: search and export what the archiving policy kept,
    /// legal holds (each search and export is audited).
    #[command(subcommand)]
    Archive(ArchiveCmd),
    /// Call detail records: who called whom, when, how long, how it ended
    /// (each read is audited).
    #[command(subcommand)]
    Cdr(CdrCmd),
    /// A call's SIP messages (or a user's calls', or the newest) as a
    /// ladder, from this server's trace ring and its edges' (what each
    /// exchanged with the outside); bodies only for roles allowed to see
    /// them; each read is audited.
    ///
    /// Example: parapet admin trace --call-id 3848276298220188511@192.0.2.7 --messages
    Trace {
        #[arg(long)]
        call_id: Option<String>,
        /// Every message of the calls this user's messages belong to.
        #[arg(long)]
        user: Option<String>,
        /// Unix seconds.
        #[arg(long)]
        since: Option<i64>,
        #[arg(long)]
        until: Option<i64>,
        #[arg(long, default_value_t = 200)]
        limit: usize,
        /// Print each whole message under its line of the ladder.
        #[arg(long)]
        messages: bool,
    },
    /// Every security-relevant setting in one view.
    #[command(subcommand)]
    Security(SecurityShowCmd),
    /// Print shell completions (bash, zsh, fish, elvish, powershell).
    ///
    /// Example: parapet admin completions bash > /etc/bash_completion.d/parapet
    Completions { shell: clap_complete::Shell },
}

#[derive(Subcommand)]
pub(super) enum SecurityShowCmd {
    /// Each setting (configuration and policy) grouped, with its current
    /// value, the recommended value, why, and the command that changes it.
    ///
    /// Example: parapet admin security show --output json
    Show,
}

/// `parapet security ...`.
#[derive(Args)]
pub(crate) struct SecurityArgs {
    /// The admin listener of the running server.
    #[arg(
        long = "server",
        env = "PARAPET_ADMIN_URL",
        default_value = "http://127.0.0.1:9060",
        global = true
    )]
    pub(super) server: String,
    #[command(subcommand)]
    pub(super) cmd: SecurityCmd,
}

#[derive(Subcommand)]
pub(super) enum SecurityCmd {
    /// The posture check: each finding with severity, explanation and the
    /// command that fixes it. Exit status 3 when a high-severity finding
    /// exists (1 for errors, 0 otherwise). Needs a token with security.read.
    ///
    /// Example: parapet security check --json
    Check {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub(super) enum LockoutCmd {
    List,
    /// Example: parapet admin lockout clear --account sip:alice@example.com --source 198.51.100.7
    Clear {
        #[arg(long)]
        account: Option<String>,
        #[arg(long)]
        source: Option<String>,
    },
}

#[derive(Subcommand)]
pub(super) enum FederationCmd {
    /// Partners dealt with since the server started: standing under the
    /// policy (allowed, discovered, refused), requests each way, distinct
    /// users reached this hour, throttling and the watch list.
    ///
    /// Example: parapet admin federation partners
    Partners,
    /// Take a partner off the watch list (and forget its counts this hour).
    ///
    /// Example: parapet admin federation clear partner.example
    Clear { domain: String },
    /// How a request between a local user and a partner's would be decided,
    /// every rule in order and the one that decides (presence: FROM watches TO).
    ///
    /// Example: parapet admin federation explain sip:alice@example.com sip:bob@partner.example --modality im
    Explain {
        from: String,
        to: String,
        /// im, presence or calls.
        #[arg(long)]
        modality: String,
    },
}

#[derive(Subcommand)]
pub(super) enum EdgeCmd {
    /// Pair an edge with this pool: issues its certificates and writes its
    /// pairing file (its keys and the pool's topology key; mode 0600), which
    /// the edge is started with: `parapet edge --pairing FILE`.
    ///
    /// Example: parapet admin edge pair edge1 --internal 10.0.0.2:5061 --external edge.example.com --out edge1.json
    Pair {
        /// The edge's name: 1-32 of a-z, 0-9 and '-'.
        name: String,
        /// The edge's internal listener (mutual TLS with the pool), IP:port.
        #[arg(long)]
        internal: String,
        /// A name or address the outside reaches the edge by (repeatable;
        /// the first is advertised).
        #[arg(long = "external", required = true)]
        external: Vec<String>,
        /// This server's SIP-over-TLS address as the edge reaches it
        /// (needed when the TLS listener is bound to all interfaces). Without
        /// it, in a pool whose nodes all serve, the pairing file names every
        /// serving node's TLS listener and the edge links to each.
        #[arg(long)]
        front_end: Option<String>,
        /// Where to write the pairing file (created with mode 0600; refuses
        /// to overwrite).
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// The paired edges.
    List,
    /// Unpair an edge: its certificate is no longer accepted.
    Unpair { name: String },
}

#[derive(Subcommand)]
pub(super) enum UserCmd {
    List,
    Show {
        uri: String,
    },
    /// The user's registered devices now: contact, transport, source, how the
    /// server reaches each, user agent, expiry.
    ///
    /// Example: parapet admin user registrations sip:alice@example.com
    Registrations {
        uri: String,
    },
    /// The password is read from standard input (--password-stdin) or the terminal.
    ///
    /// Example: echo 'correct horse battery' | parapet admin user add sip:alice@example.com --password-stdin
    Add {
        uri: String,
        #[arg(long)]
        display_name: Option<String>,
        #[arg(long)]
        password_stdin: bool,
    },
    Passwd {
        uri: String,
        #[arg(long)]
        password_stdin: bool,
    },
    Enable {
        uri: String,
    },
    Disable {
        uri: String,
    },
    Remove {
        uri: String,
    },
    /// TSV lines: uri<TAB>password[<TAB>display name]; all or nothing.
    Import {
        file: PathBuf,
    },
    /// Set a user's home site (or --clear it).
    Site {
        uri: String,
        site: Option<String>,
        #[arg(long)]
        clear: bool,
    },
    /// The user's devices (certificates): id, name, issued, expires, last
    /// seen, user agent, and revocation.
    ///
    /// Example: parapet admin user devices sip:alice@example.com
    Devices {
        uri: String,
    },
    /// Revoke one device's certificate; its connections close at once.
    ///
    /// Example: parapet admin user revoke-device sip:alice@example.com 3f2a9c0d41b7e655
    RevokeDevice {
        uri: String,
        device: String,
    },
    /// Revoke every device of the user; their connections close at once.
    RevokeDevices {
        uri: String,
    },
    /// Remove the user's authenticator (TOTP), e.g. after a lost phone;
    /// they set up a new one at their next sign-in on the user page.
    ResetSecondFactor {
        uri: String,
    },
}

#[derive(Subcommand)]
pub(super) enum DeviceCmd {
    /// A single-use code that lets the user enroll one device where the
    /// authentication policy allows managed devices only. Printed once.
    ///
    /// Example: parapet admin device enrollment-code sip:alice@example.com --expires 3d
    EnrollmentCode {
        uri: String,
        /// How long the code stays usable: seconds, or with m, h or d
        /// (default 7d, at most 30d).
        #[arg(long)]
        expires: Option<String>,
    },
}

#[derive(Subcommand)]
pub(super) enum GroupCmd {
    List,
    /// Example: parapet admin group create sales --priority 10 --description "Sales team"
    Create {
        name: String,
        #[arg(long, default_value_t = 0)]
        priority: u32,
        #[arg(long, default_value = "")]
        description: String,
    },
    Remove {
        name: String,
    },
    AddMember {
        name: String,
        uri: String,
    },
    RemoveMember {
        name: String,
        uri: String,
    },
}

/// A relationship level: what a contact sees of the user's presence.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum Level {
    /// Sees the user offline, always; cannot send them messages.
    Blocked,
    /// Availability only (federated contacts).
    External,
    /// Availability and note.
    Colleague,
    /// Also location and mood.
    Workgroup,
    /// Everything the user publishes.
    Personal,
}

impl Level {
    pub(super) fn name(self) -> &'static str {
        match self {
            Level::Blocked => "blocked",
            Level::External => "external",
            Level::Colleague => "colleague",
            Level::Workgroup => "workgroup",
            Level::Personal => "personal",
        }
    }
}

#[derive(Subcommand)]
pub(super) enum ContactsCmd {
    /// A user's contacts, contact groups, and who watches their presence
    /// (active, pending approval, or rejected).
    ///
    /// Example: parapet admin contacts list sip:alice@example.com
    List { user: String },
    /// Add a contact or change one (relationship, groups, name).
    ///
    /// Example: parapet admin contacts add sip:alice@example.com sip:bob@example.com --relationship workgroup --group Team
    Add {
        user: String,
        contact: String,
        /// Default: colleague for this domain, external for others.
        #[arg(long, value_enum)]
        relationship: Option<Level>,
        /// A contact group (repeat for several); created if new.
        #[arg(long = "group")]
        groups: Vec<String>,
        #[arg(long)]
        display_name: Option<String>,
    },
    /// Remove a contact.
    Remove { user: String, contact: String },
    /// Let a pending watcher see the user's presence (adds them as a
    /// contact; an existing entry keeps its name and groups, and its
    /// relationship unless it was blocked or --relationship is given).
    ///
    /// Example: parapet admin contacts approve sip:alice@example.com sip:bob@example.com
    Approve {
        user: String,
        watcher: String,
        #[arg(long, value_enum)]
        relationship: Option<Level>,
    },
    /// Block a contact or watcher: they see the user offline and cannot
    /// message them (the entry keeps its name and groups).
    Block { user: String, contact: String },
    /// Create a contact group.
    GroupAdd { user: String, name: String },
    /// Remove a contact group (its contacts stay in the list).
    GroupRemove { user: String, name: String },
}

#[derive(Subcommand)]
pub(super) enum PolicyCmd {
    /// Every kind with its fields, types, defaults and documentation.
    Kinds,
    List,
    /// Set fields: SCOPE is global, site:NAME or named:NAME.
    ///
    /// Example: parapet admin policy set authentication global lockout_threshold=3
    Set {
        kind: String,
        scope: String,
        #[arg(required = true, value_name = "FIELD=VALUE")]
        fields: Vec<String>,
    },
    /// Remove fields from a document (they fall back to wider scopes).
    Unset {
        kind: String,
        scope: String,
        #[arg(required = true)]
        fields: Vec<String>,
    },
    Remove {
        kind: String,
        scope: String,
    },
    /// Each field's effective value for a user and where it came from.
    ///
    /// Example: parapet admin policy effective sip:alice@example.com --kind privacy
    Effective {
        uri: String,
        #[arg(long)]
        kind: Option<String>,
    },
}

#[derive(Subcommand)]
pub(super) enum GrantCmd {
    List,
    /// TARGET is user:sip:alice@example.com or group:NAME.
    ///
    /// Example: parapet admin grant add privacy strict group:sales
    Add {
        kind: String,
        policy: String,
        target: String,
    },
    Remove {
        kind: String,
        target: String,
    },
}

#[derive(Subcommand)]
pub(super) enum RoleCmd {
    List,
    Operations,
    /// Create or replace a custom role.
    ///
    /// Example: parapet admin role set berlin-desk --operation users.read --operation lockouts.clear --site berlin
    Set {
        name: String,
        #[arg(long = "operation", required = true)]
        operations: Vec<String>,
        #[arg(long)]
        site: Option<String>,
        #[arg(long)]
        group: Option<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
    Remove {
        name: String,
    },
}

#[derive(Subcommand)]
pub(super) enum AdminsCmd {
    List,
    /// Prints the TOTP secret to enrol (and the password, if generated) once.
    Create {
        name: String,
        #[arg(long)]
        role: String,
        /// Read the password from standard input (else one is generated).
        #[arg(long)]
        password_stdin: bool,
    },
    Update {
        name: String,
        #[arg(long)]
        role: Option<String>,
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        #[arg(long)]
        disable: bool,
        #[arg(long)]
        reset_password: bool,
        #[arg(long)]
        reset_totp: bool,
    },
    Remove {
        name: String,
    },
}

#[derive(Subcommand)]
pub(super) enum TokenCmd {
    List,
    /// Example: parapet admin token create ci --expires-in-days 30 --role view-only
    Create {
        name: String,
        #[arg(long)]
        expires_in_days: i64,
        #[arg(long)]
        role: Option<String>,
    },
    Revoke {
        id: String,
    },
}

#[derive(Subcommand)]
pub(super) enum AuditCmd {
    /// Example: parapet admin audit list --actor admin:root --object user: --since 1767225600
    List {
        #[arg(long)]
        actor: Option<String>,
        #[arg(long)]
        object: Option<String>,
        /// Unix seconds.
        #[arg(long)]
        since: Option<i64>,
        #[arg(long)]
        until: Option<i64>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Recompute the hash chain; exits 1 if a record was changed or removed.
    Verify,
}

/// Which archived messages (every filter optional).
#[derive(clap::Args, Debug, Clone)]
pub(super) struct ArchiveFilters {
    /// Whose archive (the user whose policy kept the messages).
    #[arg(long)]
    pub(super) user: Option<String>,
    /// The other party (sender or recipient), also a partner's user.
    #[arg(long)]
    pub(super) counterpart: Option<String>,
    /// From this time on (Unix seconds).
    #[arg(long)]
    pub(super) since: Option<i64>,
    /// Before this time (Unix seconds).
    #[arg(long)]
    pub(super) until: Option<i64>,
    /// Only messages whose text contains this (case-insensitive).
    #[arg(long)]
    pub(super) text: Option<String>,
}

#[derive(Subcommand)]
pub(super) enum ArchiveCmd {
    /// Archived messages, oldest first.
    ///
    /// Example: parapet admin archive search --user sip:alice@example.com --text invoice --since 1767225600
    Search {
        #[command(flatten)]
        filters: ArchiveFilters,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Continue after this record id (the `next` a search printed).
        #[arg(long)]
        after: Option<i64>,
    },
    /// Every matching message, as JSON lines or an mbox file, with progress
    /// on standard error.
    ///
    /// Example: parapet admin archive export --user sip:alice@example.com --format mbox --out alice.mbox
    Export {
        #[command(flatten)]
        filters: ArchiveFilters,
        /// jsonl or mbox.
        #[arg(long, default_value = "jsonl")]
        format: String,
        /// The file to write (created, mode 0600; it must not exist).
        /// Absent: standard output.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// The content of a file an archived message offered (where the
    /// owner's archiving policy says file_content), by its file transfer
    /// record's id (what a search shows).
    ///
    /// Example: parapet admin archive file 1042 --out report.pdf
    File {
        id: i64,
        /// The file to write (created, mode 0600; it must not exist).
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Users on legal hold.
    Holds,
    /// Keep a user's archived messages past retention until released.
    ///
    /// Example: parapet admin archive hold sip:alice@example.com --reason "matter 2026-118"
    Hold {
        user: String,
        #[arg(long)]
        reason: String,
    },
    /// Release a legal hold: retention applies to the user's messages again.
    Release { user: String },
}

/// Which calls (every filter optional).
#[derive(clap::Args, Debug, Clone)]
pub(super) struct CdrFilters {
    /// Records of this user (calls made or received, conversations,
    /// files, sign-ins).
    #[arg(long)]
    pub(super) user: Option<String>,
    /// One kind: call, im, file, sign-in or sign-out.
    #[arg(long)]
    pub(super) kind: Option<String>,
    /// Records that started from this time on (Unix seconds).
    #[arg(long)]
    pub(super) since: Option<i64>,
    /// Records that started before this time (Unix seconds).
    #[arg(long)]
    pub(super) until: Option<i64>,
}

#[derive(Subcommand)]
pub(super) enum CdrCmd {
    /// Calls, oldest first.
    ///
    /// Example: parapet admin cdr list --user sip:alice@example.com --since 1767225600
    List {
        #[command(flatten)]
        filters: CdrFilters,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Continue after this record id (the `next` a list printed).
        #[arg(long)]
        after: Option<i64>,
    },
    /// Every matching call, as CSV (with a header line) or JSON lines.
    ///
    /// Example: parapet admin cdr export --since 1767225600 --format csv --out december.csv
    Export {
        #[command(flatten)]
        filters: CdrFilters,
        /// csv or json.
        #[arg(long, default_value = "csv")]
        format: String,
        /// The file to write (created, mode 0600; it must not exist).
        /// Absent: standard output.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
}
