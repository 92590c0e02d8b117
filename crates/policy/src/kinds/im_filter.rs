//! What happens to links in instant messages.

use crate::spec::{no_cross_rules, Builtin as D, FieldSpec, KindSpec};
use crate::value::FieldType as T;

pub static SPEC: KindSpec = KindSpec {
    name: "im_filter",
    doc: "Links in instant messages: defused, flagged or refused.",
    check_fields: no_cross_rules,
    fields: &[
        FieldSpec {
            name: "enabled",
            ty: T::Bool,
            default: D::Bool(true),
            doc: "Examine instant messages for links.",
            lync: None,
        },
        FieldSpec {
            name: "action",
            ty: T::Choice(&["defuse", "warn", "block"]),
            default: D::Text("defuse"),
            doc: "defuse: links are made unclickable and allow_message is prepended; warn: delivered with warn_message prepended; block: refused with an error to the sender.",
            lync: None,
        },
        FieldSpec {
            name: "ignore_local",
            ty: T::Bool,
            default: D::Bool(true),
            doc: "Leave links to the organisation's own domain alone.",
            lync: None,
        },
        FieldSpec {
            name: "block_file_links",
            ty: T::Bool,
            default: D::Bool(true),
            doc: "Block links to files whose extension the file transfer policy blocks.",
            lync: None,
        },
        FieldSpec {
            name: "prefixes",
            ty: T::Tokens { max: 64 },
            default: D::List(&[
                "callto:", "file:", "ftp.", "ftp:", "gopher:", "href", "http:", "https:", "ldap:",
                "mailto:", "news:", "nntp:", "sip:", "sips:", "tel:", "telnet:", "www*",
            ]),
            doc: "What starts a link.",
            lync: None,
        },
        FieldSpec {
            name: "max_links",
            ty: T::Int { min: 1, max: 10_000 },
            default: D::Int(1000),
            doc: "A message with more links than this is refused.",
            lync: None,
        },
        FieldSpec {
            name: "allow_message",
            ty: T::Text { max: 256 },
            default: D::Text("Links in this message were made unclickable."),
            doc: "Prepended to a message whose links were defused.",
            lync: None,
        },
        FieldSpec {
            name: "warn_message",
            ty: T::Text { max: 256 },
            default: D::Text("This message contains links; open them only if you trust the sender."),
            doc: "Prepended to a message delivered with a warning.",
            lync: None,
        },
    ],
};
