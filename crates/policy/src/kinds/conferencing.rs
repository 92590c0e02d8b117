//! Meetings. Unlike Lync, an organiser cannot turn file transfer on in a
//! meeting where the file transfer policy forbids it.

use crate::spec::{no_cross_rules, Builtin as D, FieldSpec, KindSpec};
use crate::value::FieldType as T;

pub static SPEC: KindSpec = KindSpec {
    name: "conferencing",
    doc: "Meetings organised by the user: size, guests, content and files.",
    check_fields: no_cross_rules,
    fields: &[
        FieldSpec {
            name: "file_transfer",
            ty: T::Choice(&["follow_policy", "off"]),
            default: D::Text("follow_policy"),
            doc: "Files in meetings: as the file transfer policy allows, or not at all.",
            lync: Some("on per organiser, bypassing the file transfer policy"),
        },
        FieldSpec {
            name: "external_save_content",
            ty: T::Bool,
            default: D::Bool(false),
            doc: "Let participants from outside the organisation save meeting content.",
            lync: Some("true"),
        },
        FieldSpec {
            name: "anonymous_participants",
            ty: T::Bool,
            default: D::Bool(false),
            doc: "Let anonymous participants join.",
            lync: Some("true"),
        },
        FieldSpec {
            name: "max_meeting_size",
            ty: T::Int { min: 2, max: 1000 },
            default: D::Int(250),
            doc: "Participants at most.",
            lync: None,
        },
    ],
};
