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
