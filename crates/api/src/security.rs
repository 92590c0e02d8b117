//! One view of every security-relevant setting — configuration, policy and
//! administration — each with its current value, the recommended one, why,
//! and the command that changes it. `parapet admin security show` prints all
//! items; `parapet security check` prints the findings (items not at their
//! recommended value) and fails when one is high-severity.
//!
//! [`assess`] is a pure function of the facts the API gathers.

use policy::spec::{kind, Fields};
use policy::Value;
use serde::Serialize;
use store::{AdminRow, TokenRow};

use config::{Config, Scheme};

/// How much a setting away from its recommendation matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
}

/// One line of the view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    pub group: &'static str,
    pub setting: String,
    pub current: String,
    pub recommended: String,
    pub why: String,
    /// The command that changes it.
    pub command: String,
    /// Whether the current value differs from the recommendation.
    pub finding: bool,
    /// The severity if it is a finding.
    pub severity: Severity,
}

/// What [`assess`] looks at.
#[derive(Debug)]
pub struct Facts<'a> {
    pub cfg: &'a Config,
    /// Every stored policy document: (kind, scope as text, fields).
    pub docs: &'a [(String, String, Fields)],
    pub admins: &'a [AdminRow],
    pub tokens: &'a [TokenRow],
    /// `None` if it could not be checked.
    pub audit_intact: Option<bool>,
    /// The pool's paired edges.
    pub edges: &'a [crate::edges::EdgeRecord],
    /// What the SIP core knows of them now (links, what each reported).
    pub live: &'a [sip_app::command::EdgeStatus],
    pub now: i64,
}

/// A curated policy field: recommended value, and whether a value is weaker.
struct PolicyCheck {
    kind: &'static str,
    field: &'static str,
    group: &'static str,
    severity: Severity,
    recommended: &'static str,
    weaker: fn(&Value) -> bool,
}

fn is_true(v: &Value) -> bool {
    matches!(v, Value::Bool(true))
}
fn is_false(v: &Value) -> bool {
    matches!(v, Value::Bool(false))
}
fn text_is(v: &Value, t: &str) -> bool {
    matches!(v, Value::Text(s) if s == t)
}

const POLICY_CHECKS: &[PolicyCheck] = &[
    PolicyCheck {
        kind: "authentication",
        field: "methods",
        group: "Authentication",
        severity: Severity::Medium,
        recommended: "digest-sha256, digest-md5 (over TLS and WSS only) and client-certificate",
        // MD5 beside SHA-256 is the default (clients without SHA-256); MD5
        // as the only password method refuses every SHA-256 answer.
        weaker: |v| matches!(v, Value::List(l) if l.iter().any(|m| m == "digest-md5") && !l.iter().any(|m| m == "digest-sha256")),
    },
    PolicyCheck {
        kind: "authentication",
        field: "second_factor",
        group: "Authentication",
        severity: Severity::Info,
        recommended: "true",
        weaker: is_false,
    },
    PolicyCheck {
        kind: "authentication",
        field: "lockout_threshold",
        group: "Authentication",
        severity: Severity::Medium,
        recommended: "5 or fewer",
        weaker: |v| matches!(v, Value::Int(n) if *n > 5),
    },
    PolicyCheck {
        kind: "authentication",
        field: "lockout_account_threshold",
        group: "Authentication",
        severity: Severity::Low,
        recommended: "50 or fewer",
        weaker: |v| matches!(v, Value::Int(n) if *n > 50),
    },
    PolicyCheck {
        kind: "authentication",
        field: "max_endpoints",
        group: "Authentication",
        severity: Severity::Low,
        recommended: "8 or fewer",
        weaker: |v| matches!(v, Value::Int(n) if *n > 8),
    },
    PolicyCheck {
        kind: "client_version",
        field: "enabled",
        group: "Authentication",
        severity: Severity::Low,
        recommended: "true",
        weaker: is_false,
    },
    PolicyCheck {
        kind: "external_access",
        field: "federation",
        group: "Federation and external access",
        severity: Severity::Info,
        recommended: "false unless you federate",
        weaker: is_true,
    },
    PolicyCheck {
        kind: "external_access",
        field: "public_providers",
        group: "Federation and external access",
        severity: Severity::Medium,
        recommended: "false",
        weaker: is_true,
    },
    PolicyCheck {
        kind: "external_access",
        field: "anonymous_meetings",
        group: "Federation and external access",
        severity: Severity::Medium,
        recommended: "false",
        weaker: is_true,
    },
    PolicyCheck {
        kind: "federation",
        field: "partner_discovery",
        group: "Federation and external access",
        severity: Severity::High,
        recommended: "false (list partners in allowed_domains)",
        weaker: is_true,
    },
    PolicyCheck {
        kind: "federation",
        field: "verification",
        group: "Federation and external access",
        severity: Severity::Info,
        recommended: "verified for partners you know; unverified reaches only users who have the sender as a contact",
        weaker: |_| false,
    },
    PolicyCheck {
        kind: "privacy",
        field: "presence_federated",
        group: "Privacy",
        severity: Severity::Medium,
        recommended: "contacts",
        weaker: |v| text_is(v, "everyone"),
    },
    PolicyCheck {
        kind: "privacy",
        field: "presence_internal",
        group: "Privacy",
        severity: Severity::Low,
        recommended: "contacts",
        weaker: |v| text_is(v, "everyone"),
    },
    PolicyCheck {
        kind: "privacy",
        field: "strangers_may_im",
        group: "Privacy",
        severity: Severity::Medium,
        recommended: "internal",
        weaker: |v| text_is(v, "everyone"),
    },
    PolicyCheck {
        kind: "privacy",
        field: "publish_location",
        group: "Privacy",
        severity: Severity::Low,
        recommended: "false",
        weaker: is_true,
    },
    PolicyCheck {
        kind: "im_filter",
        field: "enabled",
        group: "IM and file transfer",
        severity: Severity::Medium,
        recommended: "true",
        weaker: is_false,
    },
    PolicyCheck {
        kind: "im_filter",
        field: "block_file_links",
        group: "IM and file transfer",
        severity: Severity::Low,
        recommended: "true",
        weaker: is_false,
    },
    PolicyCheck {
        kind: "file_transfer",
        field: "blocked_extensions",
        group: "IM and file transfer",
        severity: Severity::Medium,
        recommended: "the built-in list (executables and scripts)",
        weaker: |v| {
            let builtin = kind("file_transfer")
                .and_then(|k| k.field("blocked_extensions"))
                .map(|f| f.default.value());
            match (v, builtin) {
                (Value::List(l), Some(Value::List(d))) => d.iter().any(|e| !l.contains(e)),
                _ => false,
            }
        },
    },
    PolicyCheck {
        kind: "file_transfer",
        field: "federated",
        group: "IM and file transfer",
        severity: Severity::Medium,
        recommended: "block_all",
        weaker: |v| text_is(v, "same"),
    },
    PolicyCheck {
        kind: "media",
        field: "encryption",
        group: "Calls",
        severity: Severity::High,
        recommended: "required",
        weaker: |v| !text_is(v, "required"),
    },
    PolicyCheck {
        kind: "conferencing",
        field: "anonymous_participants",
        group: "Conferencing",
        severity: Severity::Medium,
        recommended: "false",
        weaker: is_true,
    },
    PolicyCheck {
        kind: "conferencing",
        field: "external_save_content",
        group: "Conferencing",
        severity: Severity::Low,
        recommended: "false",
        weaker: is_true,
    },
];

fn show(v: &Value) -> String {
    v.to_string()
}

/// Listed partners that may do everything (IM, presence and calls, both
/// ways): the federation policy's global document as the core reads it.
/// Each paired edge: where it is, and whether its certificates are about to
/// expire (an edge with expired certificates cannot link to the pool, and
/// remote users and partners lose the service).
fn edge_items(f: &Facts<'_>, out: &mut Vec<Item>) {
    for e in f.edges {
        let days = (e.expires_at - f.now).div_euclid(86_400);
        let (finding, severity) = if days < 0 {
            (true, Severity::High)
        } else if days < 30 {
            (true, Severity::Medium)
        } else {
            (false, Severity::Info)
        };
        let now = match f.live.iter().find(|l| l.name == e.name) {
            Some(l) if l.links > 0 => format!(
                "linked ({} links), snapshot version {}, listening on {}",
                l.links,
                l.snapshot_version,
                l.external_listeners.join(" ")
            ),
            _ => "not linked to the pool".into(),
        };
        out.push(Item {
            group: "Federation and external access",
            setting: format!("edge {}", e.name),
            current: format!(
                "{now}; internal {}, external {}, certificates valid for {days} more days",
                e.internal,
                e.external_names.join(" ")
            ),
            recommended: "certificates renewed well before they expire".into(),
            why: "remote users and partners reach the pool only through its edges; an edge whose certificates expire stops serving them".into(),
            command: format!(
                "parapet admin edge pair {} --internal {} --external {} --out {}.json (then restart the edge with the new file)",
                e.name,
                e.internal,
                e.external_names.first().map_or("NAME", String::as_str),
                e.name
            ),
            finding,
            severity,
        });
    }
}

fn partner_items(docs: &[(String, String, Fields)], out: &mut Vec<Item>) {
    let Some(spec) = kind("federation") else {
        return;
    };
    let fields = docs
        .iter()
        .find(|(k, s, _)| k == "federation" && s == "global")
        .map(|(_, _, f)| f);
    let value = |name: &str| {
        fields
            .and_then(|f| f.get(name).cloned())
            .or_else(|| spec.field(name).map(|f| f.default.value()))
    };
    let list = |name: &str| match value(name) {
        Some(Value::List(l)) => l,
        _ => Vec::new(),
    };
    let enabled = matches!(value("enabled"), Some(Value::Bool(true)));
    let modalities = policy::kinds::federation::MODALITIES;
    let entries = list("partner_modalities");
    let defaults = list("default_modalities");
    let everything = |d: &str| {
        let own: Vec<&str> = entries
            .iter()
            .filter_map(|e| {
                e.rsplit_once(':')
                    .filter(|(dom, _)| *dom == d)
                    .map(|(_, m)| m)
            })
            .collect();
        if own.is_empty() {
            return modalities.iter().all(|m| defaults.iter().any(|x| x == m));
        }
        modalities.iter().all(|m| {
            own.contains(m)
                || (own.contains(&format!("{m}-in").as_str())
                    && own.contains(&format!("{m}-out").as_str()))
        })
    };
    let wide: Vec<String> = list("allowed_domains")
        .into_iter()
        .filter(|d| everything(d))
        .collect();
    let discovery_wide = matches!(value("partner_discovery"), Some(Value::Bool(true)))
        && modalities.iter().all(|m| defaults.iter().any(|x| x == m));
    let mut current = if wide.is_empty() {
        "none".to_string()
    } else {
        wide.join(", ")
    };
    if discovery_wide {
        current.push_str(" (and every discovered partner)");
    }
    out.push(Item {
        group: "Federation and external access",
        setting: "policy federation partners with every modality".into(),
        current,
        recommended: "each partner only the modalities you use with it".into(),
        why: "A partner allowed IM, presence and calls in both directions can see your users' presence and call them; most partners need less (e.g. IM both ways, presence outward only).".into(),
        command: "parapet admin policy set federation global partner_modalities=partner.example:im,partner.example:presence-out (or narrow default_modalities)".into(),
        finding: enabled && (!wide.is_empty() || discovery_wide),
        severity: Severity::Low,
    });
}

fn policy_items(docs: &[(String, String, Fields)], out: &mut Vec<Item>) {
    for c in POLICY_CHECKS {
        let Some(spec) = kind(c.kind).and_then(|k| k.field(c.field)) else {
            continue;
        };
        let global = docs
            .iter()
            .find(|(k, s, _)| k == c.kind && s == "global")
            .and_then(|(_, _, f)| f.get(c.field).cloned())
            .unwrap_or_else(|| spec.default.value());
        // Narrower documents can weaken the setting for some users.
        let weaker_elsewhere: Vec<String> = docs
            .iter()
            .filter(|(k, s, f)| {
                k == c.kind && s != "global" && f.get(c.field).is_some_and(c.weaker)
            })
            .map(|(_, s, _)| s.clone())
            .collect();
        let mut current = show(&global);
        if !weaker_elsewhere.is_empty() {
            current = format!("{current} (weaker at {})", weaker_elsewhere.join(", "));
        }
        let finding = (c.weaker)(&global) || !weaker_elsewhere.is_empty();
        let recommended_value = if c.recommended.contains(' ') {
            show(&spec.default.value())
        } else {
            c.recommended.to_string()
        };
        let mut why = spec.doc.to_string();
        if let Some(l) = spec.lync {
            why.push_str(&format!(" (Lync: {l})"));
        }
        out.push(Item {
            group: c.group,
            setting: format!("policy {}.{}", c.kind, c.field),
            current,
            recommended: c.recommended.to_string(),
            why,
            command: format!(
                "parapet admin policy set {} global {}={}",
                c.kind, c.field, recommended_value
            ),
            finding,
            severity: c.severity,
        });
    }
}

fn config_items(cfg: &Config, out: &mut Vec<Item>) {
    let plain: Vec<String> = cfg
        .listen
        .iter()
        .filter(|l| matches!(l.scheme, Scheme::Udp | Scheme::Tcp | Scheme::Ws))
        .map(|l| l.to_string())
        .collect();
    out.push(Item {
        group: "Transport",
        setting: "config listen (encrypted transports only)".into(),
        // As written in the configuration file.
        current: format!(
            "listen = [{}]{}",
            cfg.listen.iter().map(|l| format!("\"{l}\"")).collect::<Vec<_>>().join(", "),
            if cfg.allow_insecure_transports { ", allow_insecure_transports = true" } else { "" }
        ),
        recommended: "TLS/WSS only".into(),
        why: "SIP over UDP, TCP or WS is readable and forgeable on the network: credentials' digests, messages and call set-up.".into(),
        command: "remove udp://, tcp:// and ws:// from `listen` and drop allow_insecure_transports (or --allow-insecure-transports), then restart `parapet serve`".into(),
        finding: !plain.is_empty() || cfg.allow_insecure_transports,
        severity: Severity::High,
    });
    let origins = match &cfg.ws_origins {
        sip_transport::OriginPolicy::Any => "* (any web page)".to_string(),
        sip_transport::OriginPolicy::Only(rules) => rules
            .iter()
            .map(|r| match r {
                sip_transport::OriginRule::Host(h) => h.as_str(),
                sip_transport::OriginRule::Exact(o) => o.as_str(),
            })
            .collect::<Vec<_>>()
            .join(", "),
    };
    out.push(Item {
        group: "Transport",
        setting: "config ws_allowed_origins".into(),
        current: origins,
        recommended: "the server's own names (the default), or your web client's pages".into(),
        why: "A browser opens a WebSocket to any server a page asks it to: without the Origin check, any web site a signed-in user visits could talk SIP to this server from their browser.".into(),
        command: "remove \"*\" from ws_allowed_origins in the configuration file (empty: the server's own names) and restart `parapet serve`".into(),
        finding: cfg.ws_origins == sip_transport::OriginPolicy::Any,
        severity: Severity::Medium,
    });
    let d = &cfg.digest;
    let names = |algs: &[auth::digest::Algorithm]| {
        algs.iter().map(|a| a.name()).collect::<Vec<_>>().join(", ")
    };
    let single = if d.single_challenge_clients.is_empty() {
        String::new()
    } else {
        format!(
            "; {} alone to User-Agents starting with {}",
            names(&d.challenge(true, d.single_challenge_clients.first().map(String::as_str))),
            d.single_challenge_clients.join(", ")
        )
    };
    let md5 = d.algorithms.contains(&auth::digest::Algorithm::Md5);
    out.push(Item {
        group: "Authentication",
        setting: "config digest_algorithms".into(),
        current: format!(
            "over TLS and WSS: challenged with {}{single}; accepted: {}, each for users whose authentication policy lists it",
            names(&d.challenge(true, None)),
            names(&d.accepted(true)),
        ),
        recommended: "[\"SHA-256\"], once no client needs MD5".into(),
        why: "JsSIP, SIP.js and baresip know only MD5 digest. Inside TLS an MD5 exchange is as safe from the network as SHA-256, but an MD5 HA1 is a weaker stored secret and the algorithm is obsolete.".into(),
        command: "set digest_algorithms = [\"SHA-256\"] in the configuration file and restart `parapet serve` (or remove digest-md5 from a policy: parapet admin policy set authentication global methods=digest-sha256,client-certificate)".into(),
        finding: md5,
        severity: Severity::Low,
    });
    let (current, db_plain) = match &cfg.database {
        config::Database::Embedded => ("SQLite in the data directory".to_string(), false),
        config::Database::Postgres { plain_text, .. } => (
            if *plain_text {
                "PostgreSQL over plain TCP (sslmode=disable)".to_string()
            } else {
                "PostgreSQL over TLS with the server verified, or a Unix socket".to_string()
            },
            *plain_text,
        ),
    };
    out.push(Item {
        group: "Storage",
        setting: "config database".into(),
        current,
        recommended: "TLS with the server verified (sslmode=verify-full, the default) or a Unix socket".into(),
        why: "Every user's sealed digest secret, every stored message and every audit record cross the connection to the database; over plain TCP anyone on the path reads and can alter them.".into(),
        command: "remove sslmode=disable from database in the configuration file, add sslrootcert=/path/to/the-database-ca.pem, and restart `parapet serve`".into(),
        finding: db_plain,
        severity: Severity::High,
    });
    if let config::Database::Postgres { active, .. } = &cfg.database {
        out.push(Item {
            group: "Authentication",
            setting: "config pool_mode".into(),
            current: if *active {
                "active: every node serves at once; failed sign-ins are counted across the nodes once saved and followed (within a few tens of milliseconds), each node enforcing its share of the per-source rate limit".into()
            } else {
                "standby: one node serves at a time; the lockout counters pass to the node that takes over".into()
            },
            recommended: "standby, or active behind a load balancer that keeps each client on one node".into(),
            why: "With every node serving, a password guesser who sends to all nodes at once gets, within the few tens of milliseconds it takes a failure to reach the others, one round of guesses per node.".into(),
            command: "set pool_mode = \"standby\" (or remove it) in every node's configuration file and restart them".into(),
            finding: *active,
            severity: Severity::Low,
        });
    }
    let md5_plain = md5 && d.md5_unencrypted;
    out.push(Item {
        group: "Authentication",
        setting: "config digest_md5_unencrypted".into(),
        current: format!(
            "over UDP, TCP and WS: challenged with {}; accepted: {}{}",
            names(&d.challenge(false, None)),
            names(&d.accepted(false)),
            if plain.is_empty() { " (no such listener)" } else { "" }
        ),
        recommended: "false (SHA-256 only without encryption)".into(),
        why: "An MD5 digest answer read off an unencrypted network can be attacked offline with a dictionary far faster than a SHA-256 one.".into(),
        command: "remove digest_md5_unencrypted from the configuration file and restart `parapet serve`".into(),
        finding: md5_plain,
        severity: Severity::High,
    });
    out.push(Item {
        group: "Files",
        setting: "config files.clamd (virus scanning)".into(),
        current: match &cfg.scanning {
            Some(s) => format!(
                "clamd at {}: uploads kept only when clean; refused (503) while it is unreachable",
                s.clamd
            ),
            None => "off: uploaded files are judged by the file transfer policy only".into(),
        },
        recommended: "clamd on this machine (Debian clamav-daemon)".into(),
        why: "The file transfer policy judges names, content types and archive contents; it does not recognise malware in an allowed type (a PDF, an Office document).".into(),
        command: "install clamav-daemon, set [files] clamd = \"/run/clamav/clamd.ctl\" in the configuration file and restart `parapet serve`".into(),
        finding: cfg.scanning.is_none(),
        severity: Severity::Medium,
    });
    let (current, hep_plain) = match &cfg.trace.hep {
        None => ("off".to_string(), false),
        Some((config::HepTarget::Udp(a), _)) => {
            (format!("HEP v3 over UDP to {a}, unencrypted"), true)
        }
        Some((config::HepTarget::Tls { host, port, .. }, _)) => {
            (format!("HEP v3 over TLS to {host}:{port}"), false)
        }
    };
    out.push(Item {
        group: "Monitoring",
        setting: "config trace.hep".into(),
        current,
        recommended: "off, or tls:// to the collector".into(),
        why: "Every SIP message (who calls and messages whom, from which addresses, with the call's session descriptions) crosses the network to the collector; over UDP anyone on the path reads it.".into(),
        command: "set [trace] hep = \"tls://COLLECTOR:PORT\" (or remove it) in the configuration file and restart `parapet serve`".into(),
        finding: hep_plain,
        severity: Severity::Medium,
    });
    let loopback = cfg.admin_listen.ip().is_loopback();
    out.push(Item {
        group: "Administration",
        setting: "config admin_listen".into(),
        current: cfg.admin_listen.to_string(),
        recommended: "a loopback address (127.0.0.1:9060)".into(),
        why: "The admin listener is plain HTTP; off loopback, tokens and passwords cross the network unencrypted. Reach it over SSH instead.".into(),
        command: "set admin_listen = \"127.0.0.1:9060\" in the configuration file (or --admin-listen) and restart `parapet serve`".into(),
        finding: !loopback,
        severity: Severity::High,
    });
    out.push(Item {
        group: "Transport",
        setting: "config web_listen".into(),
        current: cfg.web_listen.map_or_else(|| "off".into(), |a| format!("HTTPS on {a}")),
        recommended: "HTTPS on the users' network, or off where users must not manage their own contact lists".into(),
        why: "The user listener serves the user API and self-service page over TLS only; users sign in with their SIP password, under the same lockout as SIP, and act on their own list alone.".into(),
        command: "set web_listen = \"0.0.0.0:4443\" (or \"\" for off) in the configuration file (or --web-listen) and restart `parapet serve`".into(),
        finding: false,
        severity: Severity::Info,
    });
    out.push(Item {
        group: "Transport",
        setting: "config tls_cert".into(),
        current: if cfg.tls_cert.is_some() { "operator's certificate".into() } else { "generated by Parapet's private CA".into() },
        recommended: "a certificate from the organisation's PKI for production".into(),
        why: "Clients must trust the private CA explicitly; a certificate from your PKI is trusted by managed devices already.".into(),
        command: "set tls_cert and tls_key in the configuration file and restart `parapet serve`".into(),
        finding: cfg.tls_cert.is_none(),
        severity: Severity::Info,
    });
    let d = auth::lockout::LockoutConfig::default();
    let loose = cfg.lockout.source_threshold > d.source_threshold
        || cfg.lockout.account_threshold > d.account_threshold;
    out.push(Item {
        group: "Authentication",
        setting: "config lockout.source_threshold / account_threshold".into(),
        current: format!("{} / {}", cfg.lockout.source_threshold, cfg.lockout.account_threshold),
        recommended: format!("{} / {} or fewer", d.source_threshold, d.account_threshold),
        why: "Failed sign-ins tolerated before an address (or unfamiliar addresses) are refused; higher lets password guessing run longer.".into(),
        command: format!("set [lockout] source_threshold = {} and account_threshold = {} in the configuration file, or per scope: parapet admin policy set authentication global lockout_threshold={}", d.source_threshold, d.account_threshold, d.source_threshold),
        finding: loose,
        severity: Severity::Medium,
    });
    out.push(Item {
        group: "Transport",
        setting: "config limits.unauthenticated_rate".into(),
        current: format!("{}/s, burst {}", cfg.unauthenticated_rate, cfg.unauthenticated_burst),
        recommended: "20/s, burst 100 or less".into(),
        why: "Bounds how fast one address can send requests before it is authenticated (guessing, floods).".into(),
        command: "set [limits] unauthenticated_rate = 20 and unauthenticated_burst = 100 in the configuration file and restart".into(),
        finding: cfg.unauthenticated_rate > 1000,
        severity: Severity::Medium,
    });
    federation_items(&cfg.federation, out);
}

fn federation_items(f: &config::FederationConfig, out: &mut Vec<Item>) {
    out.push(Item {
        group: "Federation and external access",
        setting: "config federation.allow_private_addresses".into(),
        current: f.allow_private_addresses.to_string(),
        recommended: "false".into(),
        why: "On, a partner's DNS can point this server at loopback, private or link-local addresses: connections into your own network on a stranger's say-so.".into(),
        command: "remove allow_private_addresses from [federation] in the configuration file and restart `parapet serve` (a partner inside your network can be given a route instead)".into(),
        finding: f.allow_private_addresses,
        severity: Severity::High,
    });
    let cas: Vec<String> = f
        .trusted_cas
        .iter()
        .map(|t| match t {
            config::TrustSource::System => "system".to_string(),
            config::TrustSource::File(p) => p.display().to_string(),
        })
        .collect();
    out.push(Item {
        group: "Federation and external access",
        setting: "config federation.trusted_cas".into(),
        current: if cas.is_empty() { "none (no federation possible)".into() } else { cas.join(", ") },
        recommended: "system, plus the private CAs of partners that use one".into(),
        why: "A partner's server is believed to speak for a domain only with a certificate from one of these CAs; which partners are federated with at all is the federation policy.".into(),
        command: "set trusted_cas in [federation] in the configuration file and restart `parapet serve`".into(),
        finding: false,
        severity: Severity::Info,
    });
    out.push(Item {
        group: "Federation and external access",
        setting: "config federation.routes".into(),
        current: if f.routes.is_empty() {
            "none (partners located through DNS)".into()
        } else {
            f.routes
                .iter()
                .map(|(d, (h, p))| format!("{d} = {h}:{p}"))
                .collect::<Vec<_>>()
                .join(", ")
        },
        recommended: "DNS, or routes for partners reached privately".into(),
        why: "A route replaces DNS for that partner (the certificate must still speak for its domain).".into(),
        command: "edit routes in [federation] in the configuration file and restart `parapet serve`".into(),
        finding: false,
        severity: Severity::Info,
    });
}

fn admin_items(f: &Facts<'_>, out: &mut Vec<Item>) {
    let admins = f
        .admins
        .iter()
        .filter(|a| a.enabled && a.role == "administrator")
        .count();
    out.push(Item {
        group: "Administration",
        setting: "enabled administrators with the administrator role".into(),
        current: admins.to_string(),
        recommended: "at least 2 (no single point of failure), few".into(),
        why: "With none, only break-glass recovery can administer; with one, losing that person's second factor means recovery too.".into(),
        command: "parapet admin admins create NAME --role administrator".into(),
        finding: admins < 2,
        severity: if admins == 0 { Severity::High } else { Severity::Low },
    });
    let long: Vec<&str> = f
        .tokens
        .iter()
        .filter(|t| t.kind == "api" && t.expires_at > f.now && t.expires_at - f.now > 90 * 86_400)
        .map(|t| t.id.as_str())
        .collect();
    out.push(Item {
        group: "Administration",
        setting: "API tokens valid for more than 90 days".into(),
        current: if long.is_empty() { "none".into() } else { long.join(", ") },
        recommended: "none".into(),
        why: "A long-lived token is a long-lived credential: rotate automation tokens at least quarterly.".into(),
        command: "parapet admin token revoke ID, then parapet admin token create NAME --expires-in-days 90".into(),
        finding: !long.is_empty(),
        severity: Severity::Low,
    });
    out.push(Item {
        group: "Administration",
        setting: "audit log chain".into(),
        current: match f.audit_intact {
            Some(true) => "intact".into(),
            Some(false) => "DAMAGED".into(),
            None => "not checked".into(),
        },
        recommended: "intact".into(),
        why: "A record that was changed or removed means someone edited the database directly.".into(),
        command: "parapet admin audit verify (names the first damaged record); restore the database from a backup and investigate".into(),
        finding: f.audit_intact != Some(true),
        severity: Severity::High,
    });
}

/// Where the IM archive's keys are, once some policy archives.
fn archive_items(cfg: &Config, docs: &[(String, String, Fields)], out: &mut Vec<Item>) {
    let archiving: Vec<&str> = docs
        .iter()
        .filter(|(k, _, f)| {
            k == "archiving"
                && ["internal", "external"]
                    .iter()
                    .any(|n| f.get(*n).is_some_and(is_true))
        })
        .map(|(_, s, _)| s.as_str())
        .collect();
    let dir = cfg.archive_keys();
    let beside = dir.starts_with(&cfg.data_dir);
    out.push(Item {
        group: "IM and file transfer",
        setting: "config archive.keys_dir (the IM archive's keys)".into(),
        current: format!(
            "{}{}; archiving {}",
            dir.display(),
            if beside { ", inside the data directory" } else { "" },
            if archiving.is_empty() {
                "off".to_string()
            } else {
                format!("on ({})", archiving.join(", "))
            }
        ),
        recommended: "a directory outside the data directory, backed up apart from the database, when archiving is on".into(),
        why: "Retention deletes a record and then destroys its day's key, so that copies of the database (backups, replicas) can no longer be read for it. A backup that holds the keys beside the database keeps the purged days readable.".into(),
        command: "set [archive] keys_dir = \"/var/lib/parapet-archive-keys\" in the configuration file, move keys/archive there, and restart `parapet serve`".into(),
        finding: beside && !archiving.is_empty(),
        severity: Severity::Low,
    });
}

/// Every item of the view, grouped in a stable order.
pub fn assess(f: &Facts<'_>) -> Vec<Item> {
    let mut out = Vec::new();
    config_items(f.cfg, &mut out);
    policy_items(f.docs, &mut out);
    archive_items(f.cfg, f.docs, &mut out);
    partner_items(f.docs, &mut out);
    edge_items(f, &mut out);
    admin_items(f, &mut out);
    let order = [
        "Transport",
        "Authentication",
        "Administration",
        "Federation and external access",
        "Privacy",
        "IM and file transfer",
        "Conferencing",
    ];
    out.sort_by_key(|i| {
        order
            .iter()
            .position(|g| *g == i.group)
            .unwrap_or(order.len())
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        config::RawConfig::default().build().unwrap()
    }

    fn admin(name: &str) -> AdminRow {
        AdminRow {
            name: name.into(),
            password: String::new(),
            totp: vec![],
            totp_last_step: None,
            role: "administrator".into(),
            enabled: true,
            failed: 0,
            locked_until: 0,
            created_at: 0,
        }
    }

    #[test]
    fn an_edge_whose_certificates_expire_soon_or_have_is_a_finding() {
        let c = cfg();
        let edge = |name: &str, expires_at: i64| crate::edges::EdgeRecord {
            name: name.into(),
            internal: "10.0.0.2:5061".into(),
            external_names: vec!["edge.example.com".into()],
            fingerprint: String::new(),
            paired_at: 0,
            expires_at,
        };
        let day = 86_400;
        let now = 1_000 * day;
        let edges = [
            edge("fine", now + 200 * day),
            edge("soon", now + 10 * day),
            edge("gone", now - day),
        ];
        let items = assess(&Facts {
            cfg: &c,
            docs: &[],
            admins: &[admin("a"), admin("b")],
            tokens: &[],
            audit_intact: Some(true),
            now,
            edges: &edges,
            live: &[],
        });
        let of = |n: &str| {
            items
                .iter()
                .find(|i| i.setting == format!("edge {n}"))
                .map(|i| (i.finding, i.severity))
                .unwrap()
        };
        assert_eq!(of("fine"), (false, Severity::Info));
        assert_eq!(of("soon"), (true, Severity::Medium));
        assert_eq!(of("gone"), (true, Severity::High));
    }

    #[test]
    fn defaults_leave_only_the_expected_findings() {
        let c = cfg();
        let admins = [admin("a"), admin("b")];
        let items = assess(&Facts {
            cfg: &c,
            docs: &[],
            admins: &admins,
            tokens: &[],
            audit_intact: Some(true),
            now: 0,
            edges: &[],
            live: &[],
        });
        let findings: Vec<(&str, Severity)> = items
            .iter()
            .filter(|i| i.finding)
            .map(|i| (i.setting.as_str(), i.severity))
            .collect();
        // What the defaults knowingly leave: the generated certificate, MD5
        // offered after SHA-256 (accepted only where policy allows it), no
        // virus scanning (clamd is not part of Parapet), and no second
        // factor (devices enroll with the password alone). None is high.
        assert_eq!(
            findings,
            vec![
                ("config tls_cert", Severity::Info),
                ("config digest_algorithms", Severity::Low),
                ("policy authentication.second_factor", Severity::Info),
                ("config files.clamd (virus scanning)", Severity::Medium),
            ],
            "{items:#?}"
        );
        assert!(items
            .iter()
            .all(|i| !i.command.is_empty() && !i.why.is_empty()));
    }

    #[test]
    fn weakened_settings_are_findings_with_the_fixing_command() {
        let mut c = cfg();
        c.allow_insecure_transports = true;
        c.federation.allow_private_addresses = true;
        c.database = config::database(
            Some(config::DatabaseUrl(
                "postgres://parapet:pw@db.example.com/parapet?sslmode=disable".into(),
            )),
            None,
        )
        .unwrap();
        let k = kind("federation").unwrap();
        let mut fed = Fields::new();
        fed.insert(
            "partner_discovery".into(),
            k.parse("partner_discovery", "true").unwrap(),
        );
        let mut site = Fields::new();
        site.insert("presence_federated".into(), Value::Text("everyone".into()));
        let docs = vec![
            ("federation".to_string(), "global".to_string(), fed),
            ("privacy".to_string(), "site:berlin".to_string(), site),
        ];
        let items = assess(&Facts {
            cfg: &c,
            docs: &docs,
            admins: &[],
            tokens: &[],
            audit_intact: Some(false),
            now: 0,
            edges: &[],
            live: &[],
        });
        let get = |s: &str| items.iter().find(|i| i.setting == s).unwrap();
        let t = get("config listen (encrypted transports only)");
        assert!(t.finding && t.severity == Severity::High);
        let pa = get("config federation.allow_private_addresses");
        assert!(pa.finding && pa.severity == Severity::High);
        let db = get("config database");
        assert!(db.finding && db.severity == Severity::High, "{db:?}");
        assert!(db.current.contains("plain TCP"), "{db:?}");
        let wide = get("policy federation partners with every modality");
        assert!(!wide.finding, "federation is off here: {wide:?}");
        let d = get("policy federation.partner_discovery");
        assert!(d.finding && d.severity == Severity::High);
        assert_eq!(
            d.command,
            "parapet admin policy set federation global partner_discovery=false"
        );
        let p = get("policy privacy.presence_federated");
        assert!(
            p.finding && p.current.contains("weaker at site:berlin"),
            "{p:?}"
        );
        assert!(
            get("enabled administrators with the administrator role").severity == Severity::High
        );
        assert!(get("audit log chain").finding);
    }

    #[test]
    fn archive_keys_beside_the_database_are_a_finding_only_while_archiving() {
        let mut c = cfg();
        let k = kind("archiving").unwrap();
        let mut on = Fields::new();
        on.insert("external".into(), k.parse("external", "true").unwrap());
        let docs = vec![("archiving".to_string(), "named:legal".to_string(), on)];
        let item = |c: &Config, docs: &[(String, String, Fields)]| {
            let mut out = Vec::new();
            archive_items(c, docs, &mut out);
            out.remove(0)
        };
        let off = item(&c, &[]);
        assert!(
            !off.finding && off.current.ends_with("archiving off"),
            "{off:?}"
        );
        let beside = item(&c, &docs);
        assert!(
            beside.finding && beside.severity == Severity::Low,
            "{beside:?}"
        );
        assert!(beside.current.contains("on (named:legal)"), "{beside:?}");
        c.archive_keys_dir = Some("/srv/archive-keys".into());
        assert!(!item(&c, &docs).finding);
    }

    #[test]
    fn partners_with_every_modality_are_a_finding_when_federating() {
        let k = kind("federation").unwrap();
        let mut fed = Fields::new();
        for (f, v) in [
            ("enabled", "true"),
            ("allowed_domains", "wide.example,narrow.example,split.example"),
            (
                "partner_modalities",
                "narrow.example:im,split.example:im,split.example:presence-in,split.example:presence-out,split.example:calls",
            ),
        ] {
            fed.insert(f.into(), k.parse(f, v).unwrap());
        }
        let c = cfg();
        let docs = vec![("federation".to_string(), "global".to_string(), fed)];
        let items = assess(&Facts {
            cfg: &c,
            docs: &docs,
            admins: &[],
            tokens: &[],
            audit_intact: Some(true),
            now: 0,
            edges: &[],
            live: &[],
        });
        let i = items
            .iter()
            .find(|i| i.setting == "policy federation partners with every modality")
            .unwrap();
        assert!(i.finding && i.severity == Severity::Low, "{i:?}");
        assert_eq!(i.current, "wide.example, split.example");
    }
}
