//! Schema building blocks shared by the request and response schemas.

use serde_json::{json, Value};

/// What the schemas depend on.
pub(super) struct Facts<'a> {
    pub(super) domain: &'a str,
    pub(super) roles: Vec<String>,
}

pub(super) fn s() -> Value {
    json!({ "type": "string" })
}

pub(super) fn name() -> Value {
    json!({ "type": "string", "pattern": "^[a-z0-9._-]{1,64}$" })
}

pub(super) fn nullable(mut v: Value) -> Value {
    v["nullable"] = json!(true);
    // OpenAPI 3.0.3: an enum must list null itself to allow it.
    if let Some(e) = v.get_mut("enum").and_then(Value::as_array_mut) {
        e.push(Value::Null);
    }
    v
}

/// One line, no control characters, at most `max` characters.
pub(super) fn line(max: usize) -> Value {
    json!({ "type": "string", "maxLength": max, "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*$" })
}

pub(super) fn obj(required: &[&str], props: Value) -> Value {
    json!({ "type": "object", "required": required, "properties": props, "additionalProperties": false })
}

impl Facts<'_> {
    pub(super) fn escaped_domain(&self) -> String {
        self.domain.replace('.', "\\.")
    }

    pub(super) fn uri(&self) -> Value {
        json!({ "type": "string", "pattern": format!("^sip:[A-Za-z0-9_~-]{{1,64}}@{}$", self.escaped_domain()) })
    }

    pub(super) fn role(&self) -> Value {
        json!({ "type": "string", "enum": self.roles })
    }

    pub(super) fn password(&self, min: usize) -> Value {
        json!({ "type": "string", "minLength": min, "maxLength": 1024 })
    }
}

/// An object with exactly these properties, all required but `optional`.
pub(super) fn exact(props: Value, optional: &[&str]) -> Value {
    let required: Vec<&String> = props
        .as_object()
        .map(|o| {
            o.keys()
                .filter(|k| !optional.contains(&k.as_str()))
                .collect()
        })
        .unwrap_or_default();
    json!({ "type": "object", "required": required, "properties": props, "additionalProperties": false })
}

pub(super) fn int() -> Value {
    json!({ "type": "integer" })
}

pub(super) fn boolean() -> Value {
    json!({ "type": "boolean" })
}

pub(super) fn strings() -> Value {
    json!({ "type": "array", "items": s() })
}

pub(super) fn ns() -> Value {
    json!({ "type": "string", "nullable": true })
}

pub(super) fn array(item: Value) -> Value {
    json!({ "type": "array", "items": item })
}

/// A contact's address (`api::contact_lists::contact_uri`): a user part and
/// a DNS name, at most 330 characters.
pub(super) fn contact_address() -> Value {
    json!({ "type": "string", "maxLength": 330, "pattern": "^sip:[A-Za-z0-9_.~-]{1,64}@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)*[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$" })
}

/// A contact group's name: 1-64 characters, no control characters, no
/// space at either end (`api::contact_lists::group_name`).
pub(super) fn contact_group_name() -> Value {
    json!({ "type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[^ \\u0000-\\u001f\\u007f-\\u009f]([^\\u0000-\\u001f\\u007f-\\u009f]*[^ \\u0000-\\u001f\\u007f-\\u009f])?$" })
}

const LEVELS: [&str; 5] = ["blocked", "external", "colleague", "workgroup", "personal"];

/// The body of a PUT on a contact entry (it replaces the entry).
pub(super) fn entry_body() -> Value {
    obj(
        &[],
        json!({
            "relationship": nullable(json!({ "type": "string", "enum": LEVELS })),
            "display_name": nullable(line(128)),
            "groups": nullable(json!({ "type": "array", "maxItems": 64, "items": contact_group_name() })),
        }),
    )
}

/// The body of a decision on a watcher. JSON Schema states the pairing:
/// a denial takes no relationship, an approval any but `blocked`.
pub(super) fn decision_body() -> Value {
    json!({
        "oneOf": [
            obj(&["decision"], json!({
                "decision": { "type": "string", "enum": ["approve"] },
                "relationship": nullable(json!({ "type": "string", "enum": ["external", "colleague", "workgroup", "personal"] })),
            })),
            obj(&["decision"], json!({
                "decision": { "type": "string", "enum": ["deny"] },
                "relationship": { "type": "string", "nullable": true, "enum": [null] },
            })),
        ]
    })
}
