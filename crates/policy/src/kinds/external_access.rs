//! What a user may do with people and services outside the organisation.

use crate::spec::{no_cross_rules, Builtin as D, FieldSpec, KindSpec};
use crate::value::FieldType as T;

pub static SPEC: KindSpec = KindSpec {
    name: "external_access",
    doc: "Communication beyond the organisation, per user: all off unless granted.",
    check_fields: no_cross_rules,
    fields: &[
        FieldSpec {
            name: "federation",
            ty: T::Bool,
            default: D::Bool(false),
            doc: "Communicate with users of federated organisations (the server-wide federation policy must allow the partner too).",
            lync: None,
        },
        FieldSpec {
            name: "remote_access",
            ty: T::Bool,
            default: D::Bool(false),
            doc: "Sign in from outside the organisation's network through the edge.",
            lync: None,
        },
        FieldSpec {
            name: "public_providers",
            ty: T::Bool,
            default: D::Bool(false),
            doc: "Communicate with users of public IM providers.",
            lync: None,
        },
        FieldSpec {
            name: "xmpp",
            ty: T::Bool,
            default: D::Bool(false),
            doc: "Communicate with XMPP users through a gateway.",
            lync: None,
        },
        FieldSpec {
            name: "anonymous_meetings",
            ty: T::Bool,
            default: D::Bool(false),
            doc: "Let anonymous participants join this user's meetings.",
            lync: Some("true (AllowAnonymousParticipantsInMeetings)"),
        },
    ],
};
