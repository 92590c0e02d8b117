//! The policy snapshot the SIP core decides with, and the decisions.
//!
//! [`PolicySet::load`] reads every policy row in one transaction and builds
//! an immutable [`policy::Snapshot`]; the core holds it behind an `Arc` and
//! swaps in a new one whole when the store's policy version moves. Decisions
//! are pure functions of request facts and a snapshot: no query per request.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use policy::{Directory, Effective, Grant, GrantTarget, Group, PolicyDoc, Scope, Snapshot};
use store::{GrantTargetRow, Policies, PolicyScope};

/// A snapshot and the store version it was read at.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    pub version: i64,
    pub snapshot: Arc<Snapshot>,
    /// Each kind's effective policy for users nothing narrower applies to,
    /// computed once per snapshot: most requests then resolve nothing.
    everyone: Arc<HashMap<&'static str, Effective>>,
}

impl PolicySet {
    pub async fn load(store: &impl Policies) -> Result<PolicySet, String> {
        let st = store.policy_state().await.map_err(|e| e.to_string())?;
        let mut docs = Vec::with_capacity(st.policies.len());
        for p in st.policies {
            let kind = policy::spec::kind(&p.kind)
                .ok_or_else(|| format!("stored policy of unknown kind {:?}", p.kind))?;
            let fields = policy::fields_from_json(kind, &p.fields_json)
                .map_err(|e| format!("stored {} policy: {e}", p.kind))?;
            let scope = match p.scope {
                PolicyScope::Global => Scope::Global,
                PolicyScope::Site(s) => Scope::Site(s),
                PolicyScope::Named(n) => Scope::Named(n),
            };
            docs.push(PolicyDoc {
                kind: p.kind,
                scope,
                fields,
            });
        }
        let grants = st
            .grants
            .into_iter()
            .map(|g| Grant {
                kind: g.kind,
                policy: g.policy,
                target: match g.target {
                    GrantTargetRow::User(u) => GrantTarget::User(u),
                    GrantTargetRow::Group(g) => GrantTarget::Group(g),
                },
            })
            .collect();
        let mut dir = Directory::default();
        for g in st.groups {
            dir.groups.insert(
                g.name.clone(),
                Group {
                    name: g.name,
                    priority: g.priority,
                },
            );
        }
        for (group, aor) in st.members {
            dir.members.entry(aor).or_default().push(group);
        }
        dir.sites.extend(st.sites);
        let snapshot = Snapshot::new(docs, grants, dir).map_err(|e| e.to_string())?;
        Ok(PolicySet::from_snapshot(st.version, snapshot))
    }

    pub fn from_snapshot(version: i64, snapshot: Snapshot) -> PolicySet {
        // A name no user has: nothing narrower than Global applies to it.
        let everyone = policy::spec::kinds()
            .iter()
            .filter_map(|k| Some((k.name, snapshot.effective("", k.name).ok()?)))
            .collect();
        PolicySet {
            version,
            snapshot: Arc::new(snapshot),
            everyone: Arc::new(everyone),
        }
    }

    /// The user's effective `kind` policy; borrowed (no work) for the users
    /// nothing narrower than Global applies to.
    pub fn effective(&self, aor: &str, kind: &str) -> Option<Cow<'_, Effective>> {
        if !self.snapshot.is_placed(aor) {
            if let Some(e) = self.everyone.get(kind) {
                return Some(Cow::Borrowed(e));
            }
        }
        self.snapshot.effective(aor, kind).ok().map(Cow::Owned)
    }

    /// The user's site and groups (for role scopes).
    pub fn placement(&self, aor: &str) -> (Option<String>, Vec<String>) {
        let d = self.snapshot.directory();
        (
            d.sites.get(aor).cloned(),
            d.members.get(aor).cloned().unwrap_or_default(),
        )
    }
}

/// The field's value where an administrator set it at some scope that applies
/// to the user; `None` where it is the built-in default (the configuration
/// then decides).
fn set_int(set: &PolicySet, aor: &str, kind: &str, field: &str) -> Option<i64> {
    let eff = set.effective(aor, kind)?;
    let set_here = eff
        .origin(field)
        .is_some_and(|o| !matches!(o, policy::FieldOrigin::Default));
    set_here.then(|| eff.int(field)).flatten()
}

/// How many devices the user may have registered: the authentication
/// policy's max_endpoints where set, else the configuration's cap.
pub fn max_endpoints(set: &PolicySet, aor: &str, configured: usize) -> usize {
    set_int(set, aor, "authentication", "max_endpoints")
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(configured)
}

/// Lockout thresholds for one account: the authentication policy's where an
/// administrator set them (at any scope), else the configuration's.
pub fn lockout_limits(
    set: &PolicySet,
    aor: &str,
    base: auth::lockout::LockoutConfig,
) -> auth::lockout::LockoutConfig {
    let int = |field: &str| {
        set_int(set, aor, "authentication", field).and_then(|v| u32::try_from(v).ok())
    };
    let mut cfg = base;
    if let Some(n) = int("lockout_threshold") {
        cfg.source_threshold = n;
    }
    if let Some(n) = int("lockout_account_threshold") {
        cfg.account_threshold = n;
    }
    if let Some(n) = int("lockout_window_secs") {
        cfg.window = u64::from(n);
    }
    cfg
}

/// Whether the user's authentication policy allows the digest algorithm
/// their client used (`methods`: digest-sha256, digest-md5). The server offers
/// every configured algorithm to everyone (so challenges do not tell users
/// apart) and enforces the policy here, after the password proved right.
pub fn digest_allowed(set: &PolicySet, aor: &str, alg: auth::digest::Algorithm) -> bool {
    let Some(eff) = set.effective(aor, "authentication") else {
        return false;
    };
    let method = match alg {
        auth::digest::Algorithm::Sha256 => "digest-sha256",
        auth::digest::Algorithm::Md5 => "digest-md5",
    };
    eff.list("methods").iter().any(|m| m == method)
}

/// Whether `aor`'s authentication policy lets a device certificate sign
/// in (`client-certificate` among the methods).
pub fn certificate_allowed(set: &PolicySet, aor: &str) -> bool {
    set.effective(aor, "authentication").is_some_and(|eff| {
        eff.list("methods")
            .iter()
            .any(|m| m == "client-certificate")
    })
}

/// Whether `aor`'s authentication policy allows any digest password.
pub fn any_digest_allowed(set: &PolicySet, aor: &str) -> bool {
    [
        auth::digest::Algorithm::Sha256,
        auth::digest::Algorithm::Md5,
    ]
    .into_iter()
    .any(|a| digest_allowed(set, aor, a))
}

/// Why a client was refused at sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientBlocked {
    /// Where to get an approved client (may be empty).
    pub url: String,
}

/// The client version rules for `aor`'s client (its User-Agent): the
/// first matching rule decides, else `default_action`
/// (`policy::kinds::client_version`).
pub fn client_allowed(
    set: &PolicySet,
    aor: &str,
    user_agent: Option<&str>,
) -> Result<(), ClientBlocked> {
    let Some(eff) = set.effective(aor, "client_version") else {
        return Ok(());
    };
    if !eff.flag("enabled") {
        return Ok(());
    }
    policy::kinds::client_version::decide(
        eff.list("rules"),
        eff.text("default_action") == Some("block"),
        eff.text("block_url").unwrap_or(""),
        user_agent,
    )
    .map_err(|url| ClientBlocked { url })
}

/// How the federation policy treats a partner domain it allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartnerStatus {
    /// Listed in `allowed_domains`.
    Allowed,
    /// Not listed; allowed because `partner_discovery` is on.
    Discovered,
}

/// Why the federation policy refuses a domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FederationRefusal {
    /// `enabled` is off (the default).
    Off,
    /// An IP literal or otherwise not a domain name.
    NotADomain,
    /// The domain, or a domain above it, is in `blocked_domains`.
    Blocked,
    /// Not in `allowed_domains`, and discovery is off.
    NotAllowed,
    /// The local user's `external_access.federation` is off.
    UserNotAllowed,
}

impl FederationRefusal {
    /// The reason code in logs and metrics.
    pub fn code(self) -> &'static str {
        match self {
            FederationRefusal::Off => "federation_off",
            FederationRefusal::NotADomain => "not_a_domain",
            FederationRefusal::Blocked => "blocked",
            FederationRefusal::NotAllowed => "not_allowed",
            FederationRefusal::UserNotAllowed => "user_not_allowed",
        }
    }
}

/// The federation policy's verdict on `domain` (lower case): block wins
/// over allow and covers the blocked domain's subdomains; an allowed
/// domain's subdomains are partners only when listed themselves.
pub fn partner_status(set: &PolicySet, domain: &str) -> Result<PartnerStatus, FederationRefusal> {
    use policy::kinds::federation::{verdict, Refusal, Standing};
    let Some(eff) = set.effective("", "federation") else {
        return Err(FederationRefusal::Off);
    };
    match verdict(
        eff.flag("enabled"),
        eff.list("allowed_domains"),
        eff.list("blocked_domains"),
        eff.flag("partner_discovery"),
        domain,
    ) {
        Ok(Standing::Allowed) => Ok(PartnerStatus::Allowed),
        Ok(Standing::Discovered) => Ok(PartnerStatus::Discovered),
        Err(Refusal::Off) => Err(FederationRefusal::Off),
        Err(Refusal::NotADomain) => Err(FederationRefusal::NotADomain),
        Err(Refusal::Blocked) => Err(FederationRefusal::Blocked),
        Err(Refusal::NotAllowed) => Err(FederationRefusal::NotAllowed),
    }
}

/// The federation policy's server-wide rules, for the edges' snapshot.
pub fn federation_rules(set: &PolicySet) -> auth::edge_snapshot::Federation {
    let Some(eff) = set.effective("", "federation") else {
        return auth::edge_snapshot::Federation::default();
    };
    auth::edge_snapshot::Federation {
        enabled: eff.flag("enabled"),
        allowed: eff.list("allowed_domains").to_vec(),
        blocked: eff.list("blocked_domains").to_vec(),
        discovery: eff.flag("partner_discovery"),
        servers: eff.list("partner_servers").to_vec(),
        discovered_rate: discovered_limits(set).0,
    }
}

/// Whether messages from listed partners are treated as unverified (reach
/// only users who have the sender as a contact), as discovered partners'
/// always are.
pub fn partners_unverified(set: &PolicySet) -> bool {
    set.effective("", "federation")
        .is_some_and(|e| e.text("verification") == Some("unverified"))
}

/// A kind of communication with partners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modality {
    Im,
    Presence,
    Calls,
}

impl Modality {
    /// `im`, `presence` or `calls`.
    pub fn parse(s: &str) -> Option<Modality> {
        match s.trim().to_ascii_lowercase().as_str() {
            "im" => Some(Modality::Im),
            "presence" => Some(Modality::Presence),
            "calls" => Some(Modality::Calls),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Modality::Im => "im",
            Modality::Presence => "presence",
            Modality::Calls => "calls",
        }
    }
}

/// Which way the content flows: to our users (`In`) or from them (`Out`).
/// A partner's user watching ours is presence flowing out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
}

/// Whether the federation policy lets `domain` (lower case) have `m` in
/// direction `d`: its `partner_modalities` entries where it has any,
/// else `default_modalities` (both directions).
pub fn modality_allowed(set: &PolicySet, domain: &str, m: Modality, d: Direction) -> bool {
    let Some(eff) = set.effective("", "federation") else {
        return false;
    };
    let mut listed = false;
    for e in eff.list("partner_modalities") {
        let Some((dom, what)) = e.rsplit_once(':') else {
            continue;
        };
        if dom != domain {
            continue;
        }
        listed = true;
        let (name, dir) = match what.rsplit_once('-') {
            Some((n, "in")) => (n, Some(Direction::In)),
            Some((n, "out")) => (n, Some(Direction::Out)),
            _ => (what, None),
        };
        if name == m.name() && dir.is_none_or(|x| x == d) {
            return true;
        }
    }
    !listed && eff.list("default_modalities").iter().any(|x| x == m.name())
}

/// The limits on a discovered partner: requests a second, and distinct
/// local users it may reach in an hour.
pub fn discovered_limits(set: &PolicySet) -> (u32, usize) {
    let eff = set.effective("", "federation");
    let int = |f: &str, d: i64| eff.as_ref().and_then(|e| e.int(f)).unwrap_or(d);
    (
        u32::try_from(int("discovered_rate", 20)).unwrap_or(20),
        usize::try_from(int("discovered_max_contacts", 1000)).unwrap_or(1000),
    )
}

/// The host name and port `domain`'s server is pinned to, if the policy
/// pins it (5061 unless the entry gives one).
pub fn pinned_server(set: &PolicySet, domain: &str) -> Option<(String, u16)> {
    let eff = set.effective("", "federation")?;
    policy::kinds::federation::pinned(eff.list("partner_servers"), domain)
}

/// Whether the federation policy is on at all.
pub fn federation_enabled(set: &PolicySet) -> bool {
    set.effective("", "federation")
        .is_some_and(|e| e.flag("enabled"))
}

/// Whether the local user may communicate across federation at all
/// (`external_access.federation`, off unless granted).
pub fn user_federates(set: &PolicySet, aor: &str) -> bool {
    set.effective(aor, "external_access")
        .is_some_and(|e| e.flag("federation"))
}

/// Whether the user may sign in from outside through an edge
/// (`external_access.remote_access`, off unless granted).
pub fn user_remote_access(set: &PolicySet, aor: &str) -> bool {
    set.effective(aor, "external_access")
        .is_some_and(|e| e.flag("remote_access"))
}

/// `aor`'s IM filter for messages between the organisation's users
/// (`federated: false`) or with partners (`true`), with the file types
/// their file transfer policy blocks; `None` where the policy does not
/// examine such messages. `local` is the organisation's own domain.
pub fn im_filter(
    set: &PolicySet,
    aor: &str,
    federated: bool,
    local: &str,
) -> Option<content::im_filter::Rules> {
    use content::im_filter::{Action, Rules};
    let e = set.effective(aor, "im_filter")?;
    if !e.flag("enabled") || !e.flag(if federated { "federated" } else { "internal" }) {
        return None;
    }
    let action = match e.text("action") {
        Some("block") => Action::Block,
        Some("warn") => Action::Warn,
        _ => Action::Defuse,
    };
    let blocked_extensions = set
        .effective(aor, "file_transfer")
        .map(|f| {
            f.list("blocked_extensions")
                .iter()
                .map(|x| x.to_ascii_lowercase())
                .collect()
        })
        .unwrap_or_default();
    let warn = e.text("warn_message").unwrap_or("").trim();
    Some(Rules {
        action,
        ignore_local: e.flag("ignore_local"),
        local_domains: vec![local.to_ascii_lowercase()],
        block_file_links: e.flag("block_file_links"),
        blocked_extensions,
        prefixes: e.list("prefixes").to_vec(),
        max_links: usize::try_from(e.int("max_links").unwrap_or(1000)).unwrap_or(1000),
        allow_message: e.text("allow_message").unwrap_or("").to_owned(),
        // A warning policy always warns (an empty text is refused when the
        // policy is set; merged documents could still produce one).
        warn_message: if warn.is_empty() {
            "This message contains links; open them only if you trust the sender.".into()
        } else {
            warn.to_owned()
        },
    })
}

/// `aor`'s file-transfer rules for files to or from users inside the
/// organisation, or partners' users (`federated`: `block_all` unless the
/// policy says `same`).
pub fn file_rules(set: &PolicySet, aor: &str, federated: bool) -> content::files::FileRules {
    use content::files::{FileRules, Mode};
    let lower = |l: &[String]| l.iter().map(|x| x.to_ascii_lowercase()).collect::<Vec<_>>();
    let Some(e) = set.effective(aor, "file_transfer") else {
        return FileRules {
            mode: Mode::BlockAll,
            blocked: vec![],
        };
    };
    let mode = match e.text("mode") {
        _ if federated && e.text("federated") != Some("same") => Mode::BlockAll,
        Some("allow_listed") => Mode::AllowListed(lower(e.list("allowed_extensions"))),
        Some("block_all") => Mode::BlockAll,
        _ => Mode::BlockListed,
    };
    FileRules {
        mode,
        blocked: lower(e.list("blocked_extensions")),
    }
}

/// A user's limits on what they upload, from the file-transfer policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileLimits {
    /// Bytes.
    pub max_file: u64,
    pub daily_quota: u64,
    pub total_quota: u64,
    pub retention_secs: i64,
    /// End-to-end encrypted files (which cannot be inspected) are refused.
    pub require_inspection: bool,
}

/// `aor`'s upload limits.
pub fn file_limits(set: &PolicySet, aor: &str) -> FileLimits {
    const MIB: u64 = 1 << 20;
    let e = set.effective(aor, "file_transfer");
    let int = |name: &str, default: i64| {
        e.as_ref()
            .and_then(|e| e.int(name))
            .unwrap_or(default)
            .max(1)
    };
    let mib = |name: &str, default: i64| u64::try_from(int(name, default)).unwrap_or(1) * MIB;
    FileLimits {
        max_file: mib("max_file_mb", 100),
        daily_quota: mib("daily_quota_mb", 1024),
        total_quota: mib("total_quota_mb", 2048),
        retention_secs: int("retention_days", 7) * 86_400,
        require_inspection: e.as_ref().is_none_or(|e| e.flag("require_inspection")),
    }
}

/// What `aor`'s archiving policy selects (crate::archive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveRule {
    pub internal: bool,
    pub external: bool,
    pub block_on_failure: bool,
    /// Keep the bytes of files offered, not only their record.
    pub file_content: bool,
    pub retention_days: i64,
    /// How long `aor`'s usage records are kept (crate::cdr).
    pub usage_retention_days: i64,
}

/// `aor`'s archiving policy (off unless a policy turns it on).
pub fn archiving(set: &PolicySet, aor: &str) -> ArchiveRule {
    let e = set.effective(aor, "archiving");
    let flag = |n: &str| e.as_ref().is_some_and(|e| e.flag(n));
    ArchiveRule {
        internal: flag("internal"),
        external: flag("external"),
        block_on_failure: flag("block_on_failure"),
        file_content: flag("file_content"),
        retention_days: e
            .as_ref()
            .and_then(|e| e.int("retention_days"))
            .unwrap_or(14)
            .clamp(1, 2562),
        usage_retention_days: e
            .as_ref()
            .and_then(|e| e.int("usage_retention_days"))
            .unwrap_or(60)
            .clamp(1, 3650),
    }
}

/// Whether `aor`'s media must be encrypted (the `media` policy's
/// `encryption`; required unless a policy says optional).
pub fn media_encryption_required(set: &PolicySet, aor: &str) -> bool {
    set.effective(aor, "media")
        .is_none_or(|e| e.text("encryption") != Some("optional"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use policy::Value;

    fn set(fields: &[(&str, Value)]) -> PolicySet {
        kind_set("client_version", fields)
    }

    fn kind_set(kind: &str, fields: &[(&str, Value)]) -> PolicySet {
        let doc = PolicyDoc {
            kind: kind.into(),
            scope: Scope::Global,
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        };
        PolicySet::from_snapshot(
            1,
            Snapshot::new(vec![doc], vec![], Directory::default()).unwrap(),
        )
    }

    fn list(v: &[&str]) -> Value {
        Value::List(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn media_encryption_is_required_unless_a_policy_says_optional() {
        assert!(media_encryption_required(&PolicySet::default(), "sip:a@x"));
        let required = kind_set("media", &[("encryption", Value::Text("required".into()))]);
        assert!(media_encryption_required(&required, "sip:a@x"));
        let optional = kind_set("media", &[("encryption", Value::Text("optional".into()))]);
        assert!(!media_encryption_required(&optional, "sip:a@x"));
    }

    #[test]
    fn client_version_rules() {
        let none = PolicySet::default();
        assert_eq!(client_allowed(&none, "sip:a@x", Some("anything")), Ok(()));
        let s = set(&[(
            "rules",
            list(&[
                "sipp* block",
                "linphone < 5.0 block-with-url https://upgrade.example/",
            ]),
        )]);
        assert!(client_allowed(&s, "sip:a@x", Some("SIPp/3.6")).is_err());
        assert_eq!(
            client_allowed(&s, "sip:a@x", Some("Linphone/4.5.1 (belle-sip)")),
            Err(ClientBlocked {
                url: "https://upgrade.example/".into()
            })
        );
        assert!(client_allowed(&s, "sip:a@x", Some("Linphone/5.2.0")).is_ok());
        assert!(client_allowed(&s, "sip:a@x", Some("baresip v1.0")).is_ok());
        assert!(client_allowed(&s, "sip:a@x", None).is_ok());
        let strict = set(&[
            ("default_action", Value::Text("block".into())),
            ("rules", list(&["baresip* allow"])),
            (
                "block_url",
                Value::Text("https://intranet.example/clients".into()),
            ),
        ]);
        assert!(client_allowed(&strict, "sip:a@x", Some("baresip v1.0.0")).is_ok());
        assert_eq!(
            client_allowed(&strict, "sip:a@x", None),
            Err(ClientBlocked {
                url: "https://intranet.example/clients".into()
            })
        );
        let off = set(&[
            ("enabled", Value::Bool(false)),
            ("default_action", Value::Text("block".into())),
        ]);
        assert!(client_allowed(&off, "sip:a@x", Some("x")).is_ok());
    }

    #[test]
    fn digest_algorithms_follow_the_methods() {
        use auth::digest::Algorithm::{Md5, Sha256};
        let none = PolicySet::default();
        assert!(digest_allowed(&none, "sip:a@x", Sha256));
        assert!(
            digest_allowed(&none, "sip:a@x", Md5),
            "MD5 by default, for clients without SHA-256 (the transport rule is the configuration's)"
        );
        let only = |methods: &[&str]| {
            let doc = PolicyDoc {
                kind: "authentication".into(),
                scope: Scope::Global,
                fields: [("methods".to_string(), list(methods))]
                    .into_iter()
                    .collect(),
            };
            PolicySet::from_snapshot(
                1,
                Snapshot::new(vec![doc], vec![], Directory::default()).unwrap(),
            )
        };
        let s = only(&["digest-md5"]);
        assert!(digest_allowed(&s, "sip:a@x", Md5));
        assert!(!digest_allowed(&s, "sip:a@x", Sha256));
        let s = only(&["digest-sha256"]);
        assert!(!digest_allowed(&s, "sip:a@x", Md5));
        assert!(digest_allowed(&s, "sip:a@x", Sha256));
    }

    #[test]
    fn placed_users_get_their_own_policy_others_the_shared_one() {
        let doc = |scope: Scope, n: i64| PolicyDoc {
            kind: "authentication".into(),
            scope,
            fields: [("max_endpoints".to_string(), Value::Int(n))]
                .into_iter()
                .collect(),
        };
        let mut dir = Directory::default();
        dir.groups.insert(
            "ops".into(),
            Group {
                name: "ops".into(),
                priority: 0,
            },
        );
        dir.members.insert("sip:g@x".into(), vec!["ops".into()]);
        dir.sites.insert("sip:s@x".into(), "berlin".into());
        let grant = |target: GrantTarget| Grant {
            kind: "authentication".into(),
            policy: "few".into(),
            target,
        };
        let snap = Snapshot::new(
            vec![
                doc(Scope::Global, 4),
                doc(Scope::Named("few".into()), 1),
                doc(Scope::Site("berlin".into()), 2),
            ],
            vec![
                grant(GrantTarget::User("sip:u@x".into())),
                grant(GrantTarget::Group("ops".into())),
            ],
            dir,
        )
        .unwrap();
        let s = PolicySet::from_snapshot(1, snap);
        assert!(matches!(
            s.effective("sip:nobody@x", "authentication"),
            Some(Cow::Borrowed(_))
        ));
        assert_eq!(max_endpoints(&s, "sip:nobody@x", 8), 4);
        assert_eq!(max_endpoints(&s, "sip:u@x", 8), 1, "own grant");
        assert_eq!(max_endpoints(&s, "sip:g@x", 8), 1, "group grant");
        assert_eq!(max_endpoints(&s, "sip:s@x", 8), 2, "site");
        assert!(matches!(
            s.effective("sip:u@x", "authentication"),
            Some(Cow::Owned(_))
        ));
    }

    #[test]
    fn max_endpoints_where_set() {
        assert_eq!(max_endpoints(&PolicySet::default(), "sip:a@x", 8), 8);
        let doc = PolicyDoc {
            kind: "authentication".into(),
            scope: Scope::Global,
            fields: [("max_endpoints".to_string(), Value::Int(2))]
                .into_iter()
                .collect(),
        };
        let s = PolicySet::from_snapshot(
            1,
            Snapshot::new(vec![doc], vec![], Directory::default()).unwrap(),
        );
        assert_eq!(max_endpoints(&s, "sip:a@x", 8), 2);
    }

    #[test]
    fn lockout_limits_override_only_what_is_set() {
        let base = auth::lockout::LockoutConfig::default();
        assert_eq!(lockout_limits(&PolicySet::default(), "sip:a@x", base), base);
        let doc = PolicyDoc {
            kind: "authentication".into(),
            scope: Scope::Global,
            fields: [("lockout_threshold".to_string(), Value::Int(2))]
                .into_iter()
                .collect(),
        };
        let s = PolicySet::from_snapshot(
            1,
            Snapshot::new(vec![doc], vec![], Directory::default()).unwrap(),
        );
        let got = lockout_limits(&s, "sip:a@x", base);
        assert_eq!(got.source_threshold, 2);
        assert_eq!(got.account_threshold, base.account_threshold);
        assert_eq!(got.window, base.window);
    }

    #[test]
    fn federation_partners_by_policy() {
        use FederationRefusal as R;
        use PartnerStatus as P;
        let none = PolicySet::default();
        assert_eq!(partner_status(&none, "partner.test"), Err(R::Off));
        let fed = |extra: &[(&str, Value)]| {
            let mut f = vec![("enabled", Value::Bool(true))];
            f.extend(extra.iter().cloned());
            kind_set("federation", &f)
        };
        let s = fed(&[
            ("allowed_domains", list(&["partner.test", "sub.other.test"])),
            ("blocked_domains", list(&["other.test"])),
        ]);
        assert_eq!(partner_status(&s, "partner.test"), Ok(P::Allowed));
        // Subdomains of an allowed domain only when listed.
        assert_eq!(partner_status(&s, "eu.partner.test"), Err(R::NotAllowed));
        // A block covers subdomains, and wins over an allow.
        assert_eq!(partner_status(&s, "other.test"), Err(R::Blocked));
        assert_eq!(partner_status(&s, "sub.other.test"), Err(R::Blocked));
        assert_eq!(partner_status(&s, "brother.test"), Err(R::NotAllowed));
        assert_eq!(partner_status(&s, "192.0.2.1"), Err(R::NotADomain));
        assert_eq!(partner_status(&s, "[2001:db8::1]"), Err(R::NotADomain));
        assert_eq!(partner_status(&s, "localhost"), Err(R::NotADomain));
        let d = fed(&[
            ("partner_discovery", Value::Bool(true)),
            ("blocked_domains", list(&["other.test"])),
        ]);
        assert_eq!(partner_status(&d, "anyone.test"), Ok(P::Discovered));
        assert_eq!(partner_status(&d, "x.other.test"), Err(R::Blocked));
        let off = kind_set(
            "federation",
            &[
                ("enabled", Value::Bool(false)),
                ("allowed_domains", list(&["partner.test"])),
            ],
        );
        assert_eq!(partner_status(&off, "partner.test"), Err(R::Off));
        assert!(!user_federates(&none, "sip:a@example.test"));
        let ea = kind_set("external_access", &[("federation", Value::Bool(true))]);
        assert!(user_federates(&ea, "sip:a@example.test"));
    }

    #[test]
    fn federation_modalities_per_partner_and_direction() {
        use Direction::{In, Out};
        use Modality::{Calls, Im, Presence};
        let s = kind_set(
            "federation",
            &[
                ("enabled", Value::Bool(true)),
                (
                    "partner_modalities",
                    list(&["im.test:im", "half.test:presence-out", "half.test:im-in"]),
                ),
                ("default_modalities", list(&["im", "calls"])),
            ],
        );
        let ok = |d: &str, m, dir| modality_allowed(&s, d, m, dir);
        assert!(ok("im.test", Im, In) && ok("im.test", Im, Out));
        assert!(!ok("im.test", Presence, Out) && !ok("im.test", Calls, In));
        assert!(ok("half.test", Presence, Out) && !ok("half.test", Presence, In));
        assert!(ok("half.test", Im, In) && !ok("half.test", Im, Out));
        // Unlisted partners: the defaults, both ways.
        assert!(ok("other.test", Im, Out) && ok("other.test", Calls, In));
        assert!(!ok("other.test", Presence, In));
        // A listed domain's subdomain is another partner.
        assert!(ok("x.im.test", Calls, Out));
        let builtin = kind_set("federation", &[("enabled", Value::Bool(true))]);
        for m in [Im, Presence, Calls] {
            assert!(modality_allowed(&builtin, "p.test", m, In));
        }
    }
}
