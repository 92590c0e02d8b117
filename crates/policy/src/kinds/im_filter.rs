//! What happens to links in instant messages.

use crate::spec::{Builtin as D, FieldSpec, Fields, KindSpec};
use crate::value::{FieldType as T, Value, ValueError};

/// A warning policy must have a warning to give.
fn warn_needs_text(fields: &Fields) -> Result<(), ValueError> {
    let text = |name: &str, default: &str| match fields.get(name) {
        Some(Value::Text(t)) => t.clone(),
        _ => default.to_owned(),
    };
    if text("action", "defuse") == "warn" && text("warn_message", "x").trim().is_empty() {
        return Err(ValueError(
            "action warn needs a warn_message: the text delivered before the message".into(),
        ));
    }
    Ok(())
}

pub static SPEC: KindSpec = KindSpec {
    name: "im_filter",
    doc: "Links in instant messages: defused, flagged or refused.",
    check_fields: warn_needs_text,
    fields: &[
        FieldSpec {
            name: "enabled",
            ty: T::Bool,
            default: D::Bool(true),
            doc: "Examine instant messages for links.",
            lync: None,
        },
        FieldSpec {
            name: "internal",
            ty: T::Bool,
            default: D::Bool(true),
            doc: "Examine messages between the organisation's users (the sender's and the recipient's policies both apply; the stricter wins).",
            lync: None,
        },
        FieldSpec {
            name: "federated",
            ty: T::Bool,
            default: D::Bool(true),
            doc: "Examine messages to federated partners (the sender's policy) and from them (the recipient's).",
            lync: Some("one setting for all traffic"),
        },
        FieldSpec {
            name: "action",
            ty: T::Choice(&["defuse", "warn", "block"]),
            default: D::Text("defuse"),
            doc: "defuse: an underscore before each link and allow_message first; warn: delivered with warn_message first; block: refused with an error to the sender. Changed messages are delivered normalised, internationalised host names as punycode.",
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
            doc: "Refuse messages linking to files whose extension is in the file transfer policy's blocked_extensions, whatever the action.",
            lync: None,
        },
        FieldSpec {
            name: "prefixes",
            ty: T::Tokens { max: 64 },
            default: D::List(&[
                "callto:", "file:", "ftp.", "ftp:", "gopher:", "href", "http:", "https:", "ldap:",
                "mailto:", "news:", "nntp:", "sip:", "sips:", "tel:", "telnet:", "www*",
            ]),
            doc: "What starts a link (case-insensitive, after Unicode NFKC normalisation with invisible characters removed); a trailing * matches any word starting with the rest.",
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
            doc: "Prepended (with a line break) to a message whose links were defused; empty: nothing.",
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_warning_policy_needs_a_warning() {
        let doc = |pairs: &[(&str, &str)]| -> Fields {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Value::Text(v.to_string())))
                .collect()
        };
        assert!(SPEC.check_all(&doc(&[("action", "warn")])).is_ok());
        let e = SPEC
            .check_all(&doc(&[("action", "warn"), ("warn_message", " ")]))
            .unwrap_err();
        assert!(e.0.contains("needs a warn_message"), "{e:?}");
        assert!(SPEC
            .check_all(&doc(&[("action", "defuse"), ("warn_message", "")]))
            .is_ok());
    }
}
