//! Field values and the rules they are validated against. The CLI, the admin
//! API and the configuration all validate through [`FieldType::check`], so an
//! invalid value gets the same message wherever it was entered.

use std::fmt;

/// A field's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Text(String),
    List(Vec<String>),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(n) => write!(f, "{n}"),
            Value::Text(s) => f.write_str(s),
            Value::List(v) => f.write_str(&v.join(",")),
        }
    }
}

/// Longest operator input for one value (a 10,000-domain list fits).
pub const MAX_INPUT: usize = 1 << 20;

/// What a field accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Bool,
    /// An integer within `min..=max`.
    Int {
        min: i64,
        max: i64,
    },
    /// One of the listed words.
    Choice(&'static [&'static str]),
    /// Free text of at most `max` characters, no control characters.
    Text {
        max: usize,
    },
    /// DNS domain names (lower case, at most `max` entries, no duplicates).
    Domains {
        max: usize,
    },
    /// File extensions with their dot (`.exe`), lower case, at most `max`.
    Extensions {
        max: usize,
    },
    /// Short tokens (URI schemes, link prefixes), at most `max`.
    Tokens {
        max: usize,
    },
    /// Several of the listed words (at least `min`, no duplicates).
    Set {
        of: &'static [&'static str],
        min: usize,
    },
    /// `domain:modality` entries (at most `max`): what a partner domain may
    /// do, each modality one of `modalities` alone (both directions) or
    /// with `-in` or `-out`.
    PartnerModalities {
        modalities: &'static [&'static str],
        max: usize,
    },
    /// `domain:host` entries (at most `max`, one per domain): a partner's
    /// server pinned to a host name.
    PartnerHosts {
        max: usize,
    },
    /// Client version rules (`PRODUCT [OP VERSION] ACTION [URL]`, see
    /// `kinds::client_version`), in order, at most `max`; typed on the
    /// command line separated by `;` (a URL may hold commas).
    ClientRules {
        max: usize,
    },
}

/// Whether `entry` is `domain:host` or `domain:host:port`, both DNS names
/// (not addresses), the port 1-65535.
fn valid_partner_host(entry: &str) -> bool {
    let mut parts = entry.split(':');
    let (Some(domain), Some(host)) = (parts.next(), parts.next()) else {
        return false;
    };
    let port_ok = match parts.next() {
        None => true,
        Some(p) => p.parse::<u16>().is_ok_and(|p| p > 0) && !p.starts_with('0'),
    };
    port_ok
        && parts.next().is_none()
        && [domain, host]
            .iter()
            .all(|d| valid_domain(d) && d.parse::<std::net::IpAddr>().is_err())
}

/// Whether `entry` is `domain:modality[-in|-out]` with a known modality.
pub(crate) fn valid_partner_modality(entry: &str, modalities: &[&str]) -> bool {
    let Some((domain, m)) = entry.rsplit_once(':') else {
        return false;
    };
    let m = m
        .strip_suffix("-in")
        .or_else(|| m.strip_suffix("-out"))
        .unwrap_or(m);
    valid_domain(domain) && domain.parse::<std::net::IpAddr>().is_err() && modalities.contains(&m)
}

/// Why a value was refused; the text says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError(pub String);

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ValueError {}

fn err<T>(msg: impl Into<String>) -> Result<T, ValueError> {
    Err(ValueError(msg.into()))
}

impl FieldType {
    /// Parses what an operator typed (CLI argument, API string) into a value of
    /// this type, validated. Lists are comma-separated.
    pub fn parse(&self, text: &str) -> Result<Value, ValueError> {
        if text.len() > MAX_INPUT {
            return err(format!(
                "the value is {} bytes long; at most {MAX_INPUT} are accepted",
                text.len()
            ));
        }
        let text = text.trim();
        let v = match self {
            FieldType::Bool => match text.to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" => Value::Bool(true),
                "false" | "no" | "off" => Value::Bool(false),
                _ => {
                    return err(format!(
                        "{text:?} is not a yes/no value; write true or false"
                    ))
                }
            },
            FieldType::Int { .. } => match text.parse::<i64>() {
                Ok(n) => Value::Int(n),
                Err(_) => return err(format!("{text:?} is not a whole number")),
            },
            FieldType::Choice(_) | FieldType::Text { .. } => Value::Text(text.to_string()),
            FieldType::ClientRules { .. } => Value::List(
                text.split(';')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|r| {
                        crate::kinds::client_version::normalize_rule(r)
                            .map_err(|e| ValueError(format!("rule {r:?}: {e}")))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            FieldType::Domains { .. }
            | FieldType::Extensions { .. }
            | FieldType::Tokens { .. }
            | FieldType::PartnerModalities { .. }
            | FieldType::PartnerHosts { .. }
            | FieldType::Set { .. } => Value::List(
                text.split(',')
                    .map(|s| s.trim().to_ascii_lowercase())
                    .filter(|s| !s.is_empty())
                    .collect(),
            ),
        };
        self.check(&v)?;
        Ok(v)
    }

    /// Checks a value against this type.
    pub fn check(&self, v: &Value) -> Result<(), ValueError> {
        match (self, v) {
            (FieldType::Bool, Value::Bool(_)) => Ok(()),
            (FieldType::Int { min, max }, Value::Int(n)) => {
                if n < min || n > max {
                    err(format!(
                        "{n} is out of range; use a number from {min} to {max}"
                    ))
                } else {
                    Ok(())
                }
            }
            (FieldType::Choice(words), Value::Text(s)) => {
                if words.contains(&s.as_str()) {
                    Ok(())
                } else {
                    err(format!("{s:?} is not one of: {}", words.join(", ")))
                }
            }
            (FieldType::Text { max }, Value::Text(s)) => {
                if s.chars().count() > *max {
                    err(format!("the text is longer than {max} characters"))
                } else if s.chars().any(char::is_control) {
                    err("the text contains control characters (line breaks, tabs...)")
                } else {
                    Ok(())
                }
            }
            (FieldType::Domains { max }, Value::List(items)) => check_list(
                items,
                *max,
                "domain",
                valid_domain,
                "a DNS name such as partner.example.com",
            ),
            (FieldType::Extensions { max }, Value::List(items)) => check_list(
                items,
                *max,
                "extension",
                |e| {
                    e.len() >= 2
                        && e.len() <= 16
                        && e.starts_with('.')
                        && e[1..]
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                },
                "a dot and lower-case letters or digits, such as .exe",
            ),
            (FieldType::Tokens { max }, Value::List(items)) => check_list(
                items,
                *max,
                "entry",
                |t| {
                    !t.is_empty()
                        && t.len() <= 32
                        && t.bytes().all(|b| {
                            b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.:*".contains(&b)
                        })
                },
                "lower-case letters, digits and + - . : * only, such as https:",
            ),
            (FieldType::PartnerModalities { modalities, max }, Value::List(items)) => check_list(
                items,
                *max,
                "entry",
                |e| valid_partner_modality(e, modalities),
                &format!(
                    "partner.example:MODALITY with MODALITY one of {} (both directions) or with -in or -out",
                    modalities.join(", ")
                ),
            ),
            (FieldType::PartnerHosts { max }, Value::List(items)) => {
                check_list(
                    items,
                    *max,
                    "entry",
                    valid_partner_host,
                    "partner.example:sip.partner.example or partner.example:sip.partner.example:5061 (the partner's domain, its server's host name, optionally the port)",
                )?;
                let mut domains: Vec<&str> = items.iter().filter_map(|e| e.split_once(':')).map(|(d, _)| d).collect();
                domains.sort_unstable();
                if let Some(w) = domains.windows(2).find(|w| w[0] == w[1]) {
                    return err(format!("{} is pinned twice; give each partner one server", w[0]));
                }
                Ok(())
            }
            (FieldType::ClientRules { max }, Value::List(items)) => {
                if items.len() > *max {
                    return err(format!(
                        "{} rules; at most {max} are allowed",
                        items.len()
                    ));
                }
                for (i, r) in items.iter().enumerate() {
                    let normal = crate::kinds::client_version::normalize_rule(r)
                        .map_err(|e| ValueError(format!("rule {r:?}: {e}")))?;
                    if &normal != r {
                        return err(format!("rule {r:?}: write it as {normal:?}"));
                    }
                    if items[..i].contains(r) {
                        return err(format!("rule {r:?} is listed twice"));
                    }
                }
                Ok(())
            }
            (FieldType::Set { of, min }, Value::List(items)) => {
                if items.len() < *min {
                    return err(format!(
                        "at least {min} of {} must stay listed",
                        of.join(", ")
                    ));
                }
                check_list(
                    items,
                    of.len(),
                    "choice",
                    |t| of.contains(&t),
                    &format!("one of {}", of.join(", ")),
                )
            }
            _ => err(format!("expected {}", self.describe())),
        }
    }

    /// The JSON Schema of the typed JSON form (what `fields_from_json` and the
    /// admin API take), exactly as strict as [`FieldType::check`].
    pub fn json_schema(&self) -> serde_json::Value {
        use serde_json::json;
        let list = |max: usize, item: serde_json::Value| json!({ "type": "array", "maxItems": max, "uniqueItems": true, "items": item });
        match self {
            FieldType::Bool => json!({ "type": "boolean" }),
            FieldType::Int { min, max } => {
                json!({ "type": "integer", "minimum": min, "maximum": max })
            }
            FieldType::Choice(words) => json!({ "type": "string", "enum": words }),
            FieldType::Text { max } => {
                json!({ "type": "string", "maxLength": max, "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*$" })
            }
            FieldType::Domains { max } => list(
                *max,
                json!({
                    "type": "string", "maxLength": 253,
                    "pattern": "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$"
                }),
            ),
            FieldType::Extensions { max } => list(
                *max,
                json!({ "type": "string", "pattern": "^\\.[a-z0-9]{1,15}$" }),
            ),
            FieldType::Tokens { max } => list(
                *max,
                json!({ "type": "string", "pattern": "^[a-z0-9+.:*-]{1,32}$" }),
            ),
            FieldType::Set { of, min } => {
                let mut s = list(of.len(), json!({ "type": "string", "enum": of }));
                s["minItems"] = json!(min);
                s
            }
            FieldType::PartnerHosts { max } => list(
                *max,
                json!({
                    "type": "string", "maxLength": 507,
                    "pattern": "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+:[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+(:[1-9][0-9]{0,4})?$"
                }),
            ),
            FieldType::ClientRules { max } => json!({
                "type": "array", "maxItems": max, "uniqueItems": true,
                "items": {
                    "type": "string", "minLength": 1,
                    "maxLength": crate::kinds::client_version::MAX_RULE,
                    "pattern": crate::kinds::client_version::RULE_PATTERN,
                    "description": "PRODUCT [OP VERSION] ACTION [URL], in the normal form (lower case, single spaces, the URL as given)"
                },
            }),
            FieldType::PartnerModalities { modalities, max } => list(
                *max,
                json!({
                    "type": "string", "maxLength": 270,
                    "pattern": format!(
                        "^[a-z0-9]([a-z0-9-]{{0,61}}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{{0,61}}[a-z0-9])?)+:({})(-in|-out)?$",
                        modalities.join("|")
                    )
                }),
            ),
        }
    }

    /// A short description for help text and error messages.
    pub fn describe(&self) -> String {
        match self {
            FieldType::Bool => "true or false".into(),
            FieldType::Int { min, max } => format!("a number from {min} to {max}"),
            FieldType::Choice(w) => format!("one of {}", w.join(", ")),
            FieldType::Text { max } => format!("text of at most {max} characters"),
            FieldType::Domains { max } => {
                format!("a comma-separated list of at most {max} domain names")
            }
            FieldType::Extensions { max } => {
                format!("a comma-separated list of at most {max} file extensions")
            }
            FieldType::Tokens { max } => {
                format!("a comma-separated list of at most {max} prefixes")
            }
            FieldType::Set { of, min } => {
                format!(
                    "a comma-separated list of {} (at least {min})",
                    of.join(", ")
                )
            }
            FieldType::PartnerHosts { max } => format!(
                "a comma-separated list of at most {max} partner.example:sip.partner.example[:port] entries"
            ),
            FieldType::ClientRules { max } => format!(
                "at most {max} rules PRODUCT [OP VERSION] ACTION [URL], separated by ;"
            ),
            FieldType::PartnerModalities { modalities, max } => format!(
                "a comma-separated list of at most {max} partner.example:MODALITY entries, MODALITY one of {} with an optional -in or -out",
                modalities.join(", ")
            ),
        }
    }
}

fn check_list(
    items: &[String],
    max: usize,
    what: &str,
    ok: impl Fn(&str) -> bool,
    hint: &str,
) -> Result<(), ValueError> {
    if items.len() > max {
        return err(format!(
            "{} entries; at most {max} are allowed",
            items.len()
        ));
    }
    for (i, item) in items.iter().enumerate() {
        if !ok(item) {
            return err(format!("{item:?} is not a valid {what}; write {hint}"));
        }
        if items[..i].contains(item) {
            return err(format!("{item:?} is listed twice"));
        }
    }
    Ok(())
}

/// A DNS name: 1-253 characters, labels of 1-63 letters, digits or hyphens,
/// not starting or ending with a hyphen, at least two labels, lower case.
pub fn valid_domain(d: &str) -> bool {
    d.len() <= 253
        && d.split('.').count() >= 2
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bools_ints_and_choices() {
        assert_eq!(FieldType::Bool.parse("Yes"), Ok(Value::Bool(true)));
        assert!(FieldType::Bool.parse("maybe").is_err());
        let t = FieldType::Int { min: 1, max: 10 };
        assert_eq!(t.parse("10"), Ok(Value::Int(10)));
        assert_eq!(
            t.parse("11").unwrap_err().0,
            "11 is out of range; use a number from 1 to 10"
        );
        assert!(t.parse("ten").is_err());
        let c = FieldType::Choice(&["allow", "block"]);
        assert!(c.parse("allow").is_ok());
        assert_eq!(
            c.parse("warn").unwrap_err().0,
            "\"warn\" is not one of: allow, block"
        );
        // A value of the wrong shape is refused too.
        assert!(FieldType::Bool.check(&Value::Int(1)).is_err());
    }

    #[test]
    fn sets_take_listed_words_only() {
        let t = FieldType::Set {
            of: &["a", "b", "c"],
            min: 1,
        };
        assert_eq!(
            t.parse("B, a"),
            Ok(Value::List(vec!["b".into(), "a".into()]))
        );
        assert!(t.parse("").unwrap_err().0.contains("at least 1 of a, b, c"));
        assert!(t
            .parse("a,d")
            .unwrap_err()
            .0
            .contains("\"d\" is not a valid choice"));
        assert!(t.parse("a,a").unwrap_err().0.contains("listed twice"));
        let s = t.json_schema();
        assert_eq!(s["minItems"], 1);
        assert_eq!(s["items"]["enum"], serde_json::json!(["a", "b", "c"]));
    }

    #[test]
    fn text_is_bounded_and_printable() {
        let t = FieldType::Text { max: 5 };
        assert!(t.parse("hello").is_ok());
        assert!(t.parse("hello!").is_err());
        assert!(t.check(&Value::Text("a\nb".into())).is_err());
    }

    #[test]
    fn domain_lists() {
        let t = FieldType::Domains { max: 3 };
        assert_eq!(
            t.parse("Partner.Example.com, b.example"),
            Ok(Value::List(vec![
                "partner.example.com".into(),
                "b.example".into()
            ]))
        );
        for bad in [
            "localhost",
            "-a.example",
            "a..example",
            "a_b.example",
            "a.example,a.example",
        ] {
            assert!(t.parse(bad).is_err(), "{bad}");
        }
        assert!(t.parse("a.x,b.x,c.x,d.x").is_err());
        assert!(t.parse(&format!("{}.example", "a".repeat(64))).is_err());
    }

    #[test]
    fn input_size_is_limited() {
        let t = FieldType::Text { max: usize::MAX };
        assert!(t.parse(&"a".repeat(MAX_INPUT + 1)).is_err());
    }

    #[test]
    fn extensions_and_tokens() {
        let e = FieldType::Extensions { max: 100 };
        assert!(e.parse(".exe,.JAR").is_ok());
        assert!(e.parse("exe").is_err());
        assert!(e.parse(".e x").is_err());
        let t = FieldType::Tokens { max: 10 };
        assert!(t.parse("https:,www*,ftp.").is_ok());
        assert!(t.parse("a b").is_err());
    }
}
