//! A document's fields as JSON, the form the store keeps and the admin API
//! speaks: `{"field": true | 12 | "text" | ["a", "b"]}`.

use serde_json::{Map, Value as Json};

use crate::spec::{Fields, KindSpec};
use crate::value::{Value, ValueError, MAX_INPUT};

/// Writes fields as a JSON object (keys in order).
pub fn fields_to_json(fields: &Fields) -> String {
    let map: Map<String, Json> = fields
        .iter()
        .map(|(k, v)| {
            let j = match v {
                Value::Bool(b) => Json::Bool(*b),
                Value::Int(n) => Json::from(*n),
                Value::Text(s) => Json::String(s.clone()),
                Value::List(l) => Json::Array(l.iter().cloned().map(Json::String).collect()),
            };
            (k.clone(), j)
        })
        .collect();
    Json::Object(map).to_string()
}

/// Reads a JSON object of fields of `kind` and validates it like any other
/// input: unknown fields, wrong types and out-of-range values are refused.
pub fn fields_from_json(kind: &KindSpec, text: &str) -> Result<Fields, ValueError> {
    if text.len() > MAX_INPUT {
        return Err(ValueError(format!(
            "the document is {} bytes long; at most {MAX_INPUT} are accepted",
            text.len()
        )));
    }
    let json: Json = serde_json::from_str(text)
        .map_err(|e| ValueError(format!("{}: not valid JSON: {e}", kind.name)))?;
    let Json::Object(map) = json else {
        return Err(ValueError(format!(
            "{}: expected a JSON object of fields, such as {{\"{}\": ...}}",
            kind.name,
            kind.fields.first().map_or("field", |f| f.name)
        )));
    };
    let mut fields = Fields::new();
    for (name, j) in map {
        let v = match j {
            Json::Bool(b) => Value::Bool(b),
            Json::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => {
                    return Err(ValueError(format!(
                        "{}.{name}: {n} is not a whole number",
                        kind.name
                    )))
                }
            },
            Json::String(s) => Value::Text(s),
            Json::Array(items) => Value::List(
                items
                    .into_iter()
                    .map(|i| match i {
                        Json::String(s) => Ok(s),
                        other => Err(ValueError(format!(
                            "{}.{name}: list entries are strings, not {other}",
                            kind.name
                        ))),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Json::Null | Json::Object(_) => {
                return Err(ValueError(format!(
                    "{}.{name}: expected true/false, a number, a string or a list of strings",
                    kind.name
                )))
            }
        };
        fields.insert(name, v);
    }
    kind.check_all(&fields)?;
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::kind;

    #[test]
    fn round_trip_and_validation() {
        let k = kind("federation").unwrap_or_else(|| unreachable!());
        let f = fields_from_json(
            k,
            r#"{"enabled": true, "discovered_rate": 5, "verification": "verified", "allowed_domains": ["partner.example"]}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fields_from_json(k, &fields_to_json(&f)), Ok(f));
        for (bad, says) in [
            ("[]", "expected a JSON object"),
            ("{", "not valid JSON"),
            (r#"{"enabled": null}"#, "expected true/false"),
            (r#"{"discovered_rate": 1.5}"#, "not a whole number"),
            (r#"{"allowed_domains": [1]}"#, "list entries are strings"),
            (r#"{"colour": "red"}"#, "no field"),
            (r#"{"discovered_rate": 0}"#, "out of range"),
            (r#"{"enabled": "yes"}"#, "expected true or false"),
        ] {
            let e = fields_from_json(k, bad).unwrap_err();
            assert!(e.0.contains(says), "{bad}: {e}");
        }
    }
}
