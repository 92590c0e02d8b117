//! Who sees a user's presence and who may start a conversation with them.
//! Unlike Lync's single switch, people inside the organisation and federated
//! contacts are set separately.

use crate::spec::{no_cross_rules, Builtin as D, FieldSpec, KindSpec};
use crate::value::FieldType as T;

const AUDIENCE: T = T::Choice(&["everyone", "contacts", "nobody"]);

pub static SPEC: KindSpec = KindSpec {
    name: "privacy",
    doc: "Who sees a user's presence, and who may send them instant messages.",
    check_fields: no_cross_rules,
    fields: &[
        FieldSpec {
            name: "presence_internal",
            ty: AUDIENCE,
            default: D::Text("contacts"),
            doc: "Who inside the organisation sees the user's presence; others see them offline.",
            lync: Some("everyone (EnablePrivacyMode false)"),
        },
        FieldSpec {
            name: "presence_federated",
            ty: AUDIENCE,
            default: D::Text("contacts"),
            doc:
                "Who in federated organisations sees the user's presence; others see them offline.",
            lync: Some("no separate setting"),
        },
        FieldSpec {
            name: "strangers_may_im",
            ty: T::Choice(&["everyone", "internal", "nobody"]),
            default: D::Text("internal"),
            doc: "Who may send an instant message without being in the user's contacts.",
            lync: Some("no setting (everyone)"),
        },
        FieldSpec {
            name: "auto_initiate_contacts",
            ty: T::Bool,
            default: D::Bool(true),
            doc: "Add the members of a new user's groups to their contacts.",
            lync: None,
        },
        FieldSpec {
            name: "publish_location",
            ty: T::Bool,
            default: D::Bool(false),
            doc: "Publish the user's location with their presence unless they change it.",
            lync: Some("true"),
        },
        FieldSpec {
            name: "display_photo",
            ty: T::Bool,
            default: D::Bool(true),
            doc: "Show the user's photo to those who see their presence.",
            lync: None,
        },
    ],
};
