//! Which client software may sign in. Rules match the User-Agent; the first
//! matching rule decides, otherwise `default_action`.

use crate::spec::{no_cross_rules, Builtin as D, FieldSpec, KindSpec};
use crate::value::FieldType as T;

pub static SPEC: KindSpec = KindSpec {
    name: "client_version",
    doc: "Client software allowed to sign in, by User-Agent.",
    check_fields: no_cross_rules,
    fields: &[
        FieldSpec {
            name: "enabled",
            ty: T::Bool,
            default: D::Bool(true),
            doc: "Apply the rules at sign-in.",
            lync: None,
        },
        FieldSpec {
            name: "default_action",
            ty: T::Choice(&["allow", "block"]),
            default: D::Text("allow"),
            doc: "What happens to a client no rule matches.",
            lync: None,
        },
        FieldSpec {
            name: "blocked_user_agents",
            ty: T::Tokens { max: 256 },
            default: D::List(&[]),
            doc: "User-Agent prefixes refused at sign-in (lower case; `*` ends a prefix).",
            lync: None,
        },
        FieldSpec {
            name: "allowed_user_agents",
            ty: T::Tokens { max: 256 },
            default: D::List(&[]),
            doc: "User-Agent prefixes accepted even when default_action is block.",
            lync: None,
        },
        FieldSpec {
            name: "block_url",
            ty: T::Text { max: 512 },
            default: D::Text(""),
            doc: "Where a refused user can get an approved client (sent with the refusal).",
            lync: None,
        },
    ],
};
