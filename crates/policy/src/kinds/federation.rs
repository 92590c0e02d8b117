//! Which organisations this one federates with, and how much it trusts them.
//! Server-wide: one Global document (sites may narrow it).

use crate::spec::{Builtin as D, FieldSpec, Fields, KindSpec};
use crate::value::{FieldType as T, Value, ValueError};

/// What partners may do, per modality (file transfer joins when it exists).
pub const MODALITIES: &[&str] = &["im", "presence", "calls"];

/// The host and port `domain`'s server is pinned to by `partner_servers`
/// entries (`domain:host[:port]`, 5061 unless given).
pub fn pinned(entries: &[String], domain: &str) -> Option<(String, u16)> {
    entries.iter().find_map(|e| {
        let mut p = e.split(':');
        (p.next()? == domain).then_some(())?;
        let host = p.next()?.to_owned();
        let port = p.next().and_then(|p| p.parse().ok()).unwrap_or(5061);
        Some((host, port))
    })
}

/// A partner domain's standing under the server-wide rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Listed in `allowed_domains`.
    Allowed,
    /// Not listed; allowed because `partner_discovery` is on.
    Discovered,
}

/// Why the server-wide rules refuse a domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `enabled` is off (the default).
    Off,
    /// An IP literal or otherwise not a domain name.
    NotADomain,
    /// The domain, or a domain above it, is in `blocked_domains`.
    Blocked,
    /// Not in `allowed_domains`, and discovery is off.
    NotAllowed,
}

/// The federation policy's verdict on `domain` (lower case), from its
/// server-wide fields: block wins over allow and covers the blocked
/// domain's subdomains; an allowed domain's subdomains are partners only
/// when listed themselves. One function for the front end and its edges.
pub fn verdict(
    enabled: bool,
    allowed: &[String],
    blocked: &[String],
    discovery: bool,
    domain: &str,
) -> Result<Standing, Refusal> {
    if !enabled {
        return Err(Refusal::Off);
    }
    if domain.is_empty()
        || !domain.contains('.')
        || domain.starts_with('[')
        || domain.parse::<std::net::IpAddr>().is_ok()
    {
        return Err(Refusal::NotADomain);
    }
    let under = |d: &String| {
        domain == d.as_str()
            || domain
                .strip_suffix(d.as_str())
                .is_some_and(|rest| rest.ends_with('.'))
    };
    if blocked.iter().any(under) {
        return Err(Refusal::Blocked);
    }
    if allowed.iter().any(|d| d == domain) {
        return Ok(Standing::Allowed);
    }
    if discovery {
        return Ok(Standing::Discovered);
    }
    Err(Refusal::NotAllowed)
}

pub static SPEC: KindSpec = KindSpec {
    name: "federation",
    doc: "Federation partners: allowed and blocked domains, discovery, verification and limits.",
    check_fields,
    fields: &[
        FieldSpec {
            name: "enabled",
            ty: T::Bool,
            default: D::Bool(false),
            doc: "Federate at all. Off: no traffic to or from other organisations.",
            lync: None,
        },
        FieldSpec {
            name: "allowed_domains",
            ty: T::Domains { max: 10_000 },
            default: D::List(&[]),
            doc: "Partner domains traffic is accepted from and sent to.",
            lync: None,
        },
        FieldSpec {
            name: "blocked_domains",
            ty: T::Domains { max: 10_000 },
            default: D::List(&[]),
            doc: "Domains never federated with, whatever discovery finds.",
            lync: None,
        },
        FieldSpec {
            name: "partner_discovery",
            ty: T::Bool,
            default: D::Bool(false),
            doc: "Federate with any domain found through DNS SRV, within the limits below.",
            lync: None,
        },
        FieldSpec {
            name: "verification",
            ty: T::Choice(&["verified", "unverified"]),
            default: D::Text("verified"),
            doc: "How far messages from listed partners reach: verified (any user whose privacy policy accepts the sender) or unverified (only users who have the sender as a contact). Discovered partners are always unverified.",
            lync: None,
        },
        FieldSpec {
            name: "partner_servers",
            ty: T::PartnerHosts { max: 10_000 },
            default: D::List(&[]),
            doc: "Partners' servers pinned to a host name, entries partner.example:sip.partner.example[:port] (Lync's ProxyFqdn): requests to the partner go to that host (port 5061 unless given; a configured route still wins), and its requests are accepted only from a server whose certificate names that host.",
            lync: None,
        },
        FieldSpec {
            name: "partner_modalities",
            ty: T::PartnerModalities {
                modalities: MODALITIES,
                max: 10_000,
            },
            default: D::List(&[]),
            doc: "What each partner may do: entries partner.example:MODALITY with MODALITY im, presence or calls, for both directions, or with -in or -out for one (the way the content flows: im-out our users write to them, presence-out they see our users' presence, calls-out our users call them). A partner with entries may do exactly those; one without, default_modalities.",
            lync: None,
        },
        FieldSpec {
            name: "default_modalities",
            ty: T::Set {
                of: MODALITIES,
                min: 0,
            },
            default: D::List(&["im", "presence", "calls"]),
            doc: "What a partner without entries in partner_modalities may do, in both directions.",
            lync: None,
        },
        FieldSpec {
            name: "discovered_rate",
            ty: T::Int { min: 1, max: 10_000 },
            default: D::Int(20),
            doc: "Messages per second accepted from a discovered (not listed) partner.",
            lync: None,
        },
        FieldSpec {
            name: "discovered_max_contacts",
            ty: T::Int { min: 1, max: 100_000 },
            default: D::Int(1000),
            doc: "Distinct local users a discovered partner may contact, against enumeration.",
            lync: None,
        },
    ],
};

fn check_fields(f: &Fields) -> Result<(), ValueError> {
    if let (Some(Value::List(allowed)), Some(Value::List(blocked))) =
        (f.get("allowed_domains"), f.get("blocked_domains"))
    {
        if let Some(d) = allowed.iter().find(|d| blocked.contains(d)) {
            return Err(ValueError(format!(
                "{d} is both allowed and blocked; remove it from one of the lists"
            )));
        }
    }
    Ok(())
}
