//! Keeping a record of conversations for compliance, and deleting it on time.

use crate::spec::{no_cross_rules, Builtin as D, FieldSpec, KindSpec};
use crate::value::FieldType as T;

pub static SPEC: KindSpec = KindSpec {
    name: "archiving",
    doc: "Archiving of conversations, and how long the archive and the usage records keep them.",
    check_fields: no_cross_rules,
    fields: &[
        FieldSpec {
            name: "internal",
            ty: T::Bool,
            default: D::Bool(false),
            doc: "Archive conversations between users of the organisation.",
            lync: None,
        },
        FieldSpec {
            name: "external",
            ty: T::Bool,
            default: D::Bool(false),
            doc: "Archive conversations with federated and external users.",
            lync: None,
        },
        FieldSpec {
            name: "content",
            ty: T::Choice(&["im", "im_and_conferencing"]),
            default: D::Text("im"),
            doc: "What is archived when archiving is on.",
            lync: None,
        },
        FieldSpec {
            name: "block_on_failure",
            ty: T::Bool,
            default: D::Bool(false),
            doc: "Refuse instant messages while the archive cannot be written.",
            lync: None,
        },
        FieldSpec {
            name: "file_content",
            ty: T::Bool,
            default: D::Bool(false),
            doc: "Also keep the bytes of files offered through this server (sealed like the messages, deleted with them); off, only the file transfer record (name, size, type, SHA-256).",
            lync: None,
        },
        FieldSpec {
            name: "retention_days",
            ty: T::Int { min: 1, max: 2562 },
            default: D::Int(14),
            doc: "Days archived conversations (and their files) are kept before they are deleted.",
            lync: None,
        },
        FieldSpec {
            name: "usage_retention_days",
            ty: T::Int { min: 1, max: 3650 },
            default: D::Int(60),
            doc: "Days this user's usage records are kept before they are deleted: calls, instant-message conversations (counts, never content), files offered, sign-ins and sign-outs. A record of two of our users is kept as long as the longer of their two policies says, as they stood when it was written. Applies whether or not conversations are archived.",
            lync: None,
        },
    ],
};
