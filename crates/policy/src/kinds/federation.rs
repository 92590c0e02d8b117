//! Which organisations this one federates with, and how much it trusts them.
//! Server-wide: one Global document (sites may narrow it).

use crate::spec::{Builtin as D, FieldSpec, Fields, KindSpec};
use crate::value::{FieldType as T, Value, ValueError};

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
