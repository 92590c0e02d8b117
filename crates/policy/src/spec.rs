//! The shape of a policy kind: its fields, their types, defaults and docs.

use crate::value::{FieldType, Value, ValueError};

/// A default written as a constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    Bool(bool),
    Int(i64),
    Text(&'static str),
    List(&'static [&'static str]),
}

impl Builtin {
    pub fn value(&self) -> Value {
        match *self {
            Builtin::Bool(b) => Value::Bool(b),
            Builtin::Int(n) => Value::Int(n),
            Builtin::Text(s) => Value::Text(s.to_string()),
            Builtin::List(l) => Value::List(l.iter().map(|s| s.to_string()).collect()),
        }
    }
}

/// One field of a policy kind.
#[derive(Debug, Clone, Copy)]
pub struct FieldSpec {
    /// `snake_case`, unique within the kind.
    pub name: &'static str,
    pub ty: FieldType,
    /// Parapet's default: the secure choice. Where it differs from Lync's,
    /// `lync` says what Lync did.
    pub default: Builtin,
    pub doc: &'static str,
    /// Lync's default when it differs from ours (for the security view).
    pub lync: Option<&'static str>,
}

/// The fields a document sets, by name.
pub type Fields = std::collections::BTreeMap<String, Value>;

/// A policy kind.
#[derive(Debug, Clone, Copy)]
pub struct KindSpec {
    /// `snake_case` name used in the CLI and API (`privacy`, `im_filter`...).
    pub name: &'static str,
    pub doc: &'static str,
    pub fields: &'static [FieldSpec],
    /// Rules between fields of one document (e.g. a domain is never both
    /// allowed and blocked), checked after each field's own rules.
    pub check_fields: fn(&Fields) -> Result<(), ValueError>,
}

/// For kinds without rules between fields.
pub fn no_cross_rules(_: &Fields) -> Result<(), ValueError> {
    Ok(())
}

impl KindSpec {
    pub fn field(&self, name: &str) -> Option<&'static FieldSpec> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Validates `value` for field `name`; the error names the field.
    pub fn check(&self, name: &str, value: &Value) -> Result<(), ValueError> {
        let f = self.field(name).ok_or_else(|| self.unknown(name))?;
        f.ty.check(value)
            .map_err(|e| ValueError(format!("{}.{}: {e}", self.name, f.name)))
    }

    /// Parses operator text for field `name`.
    pub fn parse(&self, name: &str, text: &str) -> Result<Value, ValueError> {
        let f = self.field(name).ok_or_else(|| self.unknown(name))?;
        f.ty.parse(text)
            .map_err(|e| ValueError(format!("{}.{}: {e}", self.name, f.name)))
    }

    /// `value` of field `name` written as an operator would type it, so
    /// that [`KindSpec::parse`] reads it back (client rules are separated
    /// by `;`, other lists by `,`).
    pub fn write(&self, name: &str, value: &Value) -> String {
        match (self.field(name).map(|f| f.ty), value) {
            (Some(crate::value::FieldType::ClientRules { .. }), Value::List(rules)) => {
                rules.join("; ")
            }
            _ => value.to_string(),
        }
    }

    /// Validates a whole document: every field known and valid, then the
    /// rules between fields.
    pub fn check_all(&self, fields: &Fields) -> Result<(), ValueError> {
        for (name, v) in fields {
            self.check(name, v)?;
        }
        (self.check_fields)(fields).map_err(|e| ValueError(format!("{}: {e}", self.name)))
    }

    fn unknown(&self, name: &str) -> ValueError {
        let known: Vec<&str> = self.fields.iter().map(|f| f.name).collect();
        ValueError(format!(
            "{}: no field {name:?}; the fields are {}",
            self.name,
            known.join(", ")
        ))
    }
}

/// Every policy kind, in the order the security view shows them.
pub fn kinds() -> &'static [&'static KindSpec] {
    crate::kinds::ALL
}

/// The kind called `name`.
pub fn kind(name: &str) -> Option<&'static KindSpec> {
    kinds().iter().copied().find(|k| k.name == name)
}
