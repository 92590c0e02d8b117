//! Which client software may sign in, as Lync's client version policy
//! modelled it: ordered rules, each matching the User-Agent's product and
//! comparing its version, each with an action; the first matching rule
//! decides, otherwise `default_action`.
//!
//! A rule is one line: `PRODUCT [OP VERSION] ACTION [URL]`
//! - PRODUCT: the User-Agent's first product name (`Linphone` in
//!   `Linphone/5.2.0 (belle-sip/5.2)`, `baresip` in `baresip v1.0.0`),
//!   case-insensitive; `name*` matches by prefix, `*` any client;
//! - OP VERSION: `=`, `<`, `<=`, `>` or `>=` and a version of dotted
//!   numbers (`5.1`, `1.0.0`); omitted, any version matches; a client
//!   whose User-Agent gives no version matches no comparison;
//! - ACTION: `allow`, `block`, or `block-with-url` (the rule's URL, else
//!   the policy's `block_url`, is sent to the client with the refusal).

use crate::spec::{no_cross_rules, Builtin as D, FieldSpec, KindSpec};
use crate::value::FieldType as T;

pub static SPEC: KindSpec = KindSpec {
    name: "client_version",
    doc: "Client software allowed to sign in, by the User-Agent's product and version.",
    check_fields: no_cross_rules,
    fields: &[
        FieldSpec {
            name: "enabled",
            ty: T::Bool,
            default: D::Bool(true),
            doc: "Apply the rules to REGISTER and every request outside a dialog.",
            lync: None,
        },
        FieldSpec {
            name: "rules",
            ty: T::ClientRules { max: 512 },
            default: D::List(&[]),
            doc: "Ordered rules, the first that matches decides: `PRODUCT [OP VERSION] ACTION [URL]`, e.g. `linphone >= 5.0 allow`, `baresip < 1.1 block-with-url https://intranet.example/clients`, `sipp* block` (on the command line, separate rules with `;`).",
            lync: Some("prefix lists only (\"does not seem to work\", its reviewers said)"),
        },
        FieldSpec {
            name: "default_action",
            ty: T::Choice(&["allow", "block"]),
            default: D::Text("allow"),
            doc: "What happens to a client no rule matches.",
            lync: None,
        },
        FieldSpec {
            name: "block_url",
            ty: T::Text { max: 512 },
            default: D::Text(""),
            doc: "Where a refused user can get an approved client (sent with a block-with-url refusal whose rule gives no URL, and with a default block).",
            lync: None,
        },
    ],
};

/// What a rule does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Allow,
    Block,
    /// Block, sending this URL (`None`: the policy's `block_url`).
    BlockWithUrl(Option<String>),
}

/// A version comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

/// One parsed rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Lower case; ends with `*` for a prefix; `*` alone for any.
    pub product: String,
    pub version: Option<(Op, Vec<u64>)>,
    pub action: Action,
}

/// The longest rule, in bytes (longer than any the grammar allows).
pub const MAX_RULE: usize = 700;

/// A rule in its stored form, as a regular expression (the admin API's
/// document states it; [`parse_rule`] accepts exactly these, normalized).
pub const RULE_PATTERN: &str = "^(\\*|[a-z0-9._+-]{1,64}\\*?( (=|<|<=|>|>=) [0-9]{1,9}(\\.[0-9]{1,9}){0,3})?) (allow|block|block-with-url( https://[!-~]{1,504}| http://[!-~]{1,505})?)$";

/// Dotted numbers: at most four, each of at most nine digits.
fn version_numbers(v: &str) -> Option<Vec<u64>> {
    if v.is_empty() || v.split('.').count() > 4 {
        return None;
    }
    v.split('.')
        .map(|p| {
            if p.is_empty() || p.len() > 9 || !p.bytes().all(|b| b.is_ascii_digit()) {
                None
            } else {
                p.parse().ok()
            }
        })
        .collect()
}

fn valid_product(p: &str) -> bool {
    let name = p.strip_suffix('*').unwrap_or(p);
    p == "*"
        || (!name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b)))
}

/// Parses one rule; the error says what to write.
pub fn parse_rule(text: &str) -> Result<Rule, String> {
    const FORM: &str = "write PRODUCT [OP VERSION] ACTION [URL], e.g. `linphone >= 5.0 allow` or `baresip < 1.1 block-with-url https://intranet.example/clients`";
    if text.len() > MAX_RULE {
        return Err(format!("the rule is longer than {MAX_RULE} bytes"));
    }
    if text.chars().any(char::is_control) {
        return Err("the rule contains control characters".into());
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    let Some((&product, rest)) = words.split_first() else {
        return Err(format!("the rule is empty; {FORM}"));
    };
    if !valid_product(product) {
        return Err(format!(
            "{product:?} is not a product name (letters, digits, . _ + -, optionally ending with *); {FORM}"
        ));
    }
    let (version, rest) = match rest {
        [op, v, rest @ ..] if ["=", "<", "<=", ">", ">="].contains(op) => {
            let op = match *op {
                "=" => Op::Eq,
                "<" => Op::Lt,
                "<=" => Op::Le,
                ">" => Op::Gt,
                _ => Op::Ge,
            };
            let Some(n) = version_numbers(v) else {
                return Err(format!(
                    "{v:?} is not a version (up to four dotted numbers such as 5.1 or 1.0.0)"
                ));
            };
            if product == "*" {
                return Err(
                    "`*` matches every client, whose versions cannot be compared; name the product"
                        .into(),
                );
            }
            (Some((op, n)), rest)
        }
        _ => (None, rest),
    };
    let lower: Vec<String> = rest.iter().map(|w| w.to_ascii_lowercase()).collect();
    let words: Vec<&str> = lower.iter().map(String::as_str).collect();
    let action = match words.as_slice() {
        ["allow"] => Action::Allow,
        ["block"] => Action::Block,
        ["block-with-url"] => Action::BlockWithUrl(None),
        ["block-with-url", _] => {
            let url = rest[1];
            let rest = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"));
            let printable = url.bytes().all(|b| (b'!'..=b'~').contains(&b));
            if rest.is_none_or(str::is_empty) || !printable || url.len() > 512 {
                return Err(format!(
                    "{url:?} is not an http(s) URL of at most 512 printable ASCII characters"
                ));
            }
            Action::BlockWithUrl(Some((*url).to_string()))
        }
        _ => {
            return Err(format!(
                "the action must be allow, block or block-with-url [URL] after the product and version; {FORM}"
            ))
        }
    };
    Ok(Rule {
        product: product.to_ascii_lowercase(),
        version,
        action,
    })
}

/// A rule as stored: the product and action in lower case, single spaces,
/// the URL as given.
pub fn normalize_rule(text: &str) -> Result<String, String> {
    let r = parse_rule(text)?;
    let mut words: Vec<String> = vec![r.product];
    let mut it = text.split_whitespace().skip(1);
    if r.version.is_some() {
        words.extend(it.by_ref().take(2).map(str::to_string));
    }
    for w in it {
        if w.starts_with("http://") || w.starts_with("https://") {
            words.push(w.to_string());
        } else {
            words.push(w.to_ascii_lowercase());
        }
    }
    Ok(words.join(" "))
}

/// The User-Agent's first product and its version, if it gives one:
/// `name/version` (RFC 3261 product), else `name version` or
/// `name vversion` (baresip, JsSIP).
pub fn product_of(user_agent: &str) -> (String, Option<Vec<u64>>) {
    let ua = user_agent.trim();
    let first = ua.split_whitespace().next().unwrap_or("");
    let (name, version) = match first.split_once('/') {
        Some((n, v)) => (n, Some(v)),
        None => (first, ua.split_whitespace().nth(1)),
    };
    let version = version.and_then(|v| {
        let v = v.strip_prefix(['v', 'V']).unwrap_or(v);
        // Leading dotted numbers: `5.2.0-beta` is 5.2.0.
        let end = v
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(v.len());
        version_numbers(v[..end].trim_end_matches('.'))
    });
    (name.to_ascii_lowercase(), version)
}

fn compare(have: &[u64], op: Op, want: &[u64]) -> bool {
    // Missing components count as 0: 5.1 = 5.1.0.
    let n = have.len().max(want.len());
    let at = |v: &[u64], i: usize| v.get(i).copied().unwrap_or(0);
    let ord = (0..n)
        .map(|i| at(have, i).cmp(&at(want, i)))
        .find(|o| o.is_ne())
        .unwrap_or(std::cmp::Ordering::Equal);
    match op {
        Op::Eq => ord.is_eq(),
        Op::Lt => ord.is_lt(),
        Op::Le => ord.is_le(),
        Op::Gt => ord.is_gt(),
        Op::Ge => ord.is_ge(),
    }
}

impl Rule {
    /// Whether this rule applies to a client with this product and version.
    pub fn matches(&self, product: &str, version: Option<&[u64]>) -> bool {
        let name_ok = match self.product.strip_suffix('*') {
            Some(prefix) => product.starts_with(prefix),
            None => product == self.product,
        };
        name_ok
            && match (&self.version, version) {
                (None, _) => true,
                (Some((op, want)), Some(have)) => compare(have, *op, want),
                (Some(_), None) => false,
            }
    }
}

/// The decision for a User-Agent: `Ok(())` to allow, `Err(url)` to block
/// (the URL to send, possibly empty). Rules that do not parse (none can
/// be stored) are skipped.
pub fn decide(
    rules: &[String],
    default_block: bool,
    block_url: &str,
    user_agent: Option<&str>,
) -> Result<(), String> {
    let (product, version) = product_of(user_agent.unwrap_or(""));
    for rule in rules.iter().filter_map(|r| parse_rule(r).ok()) {
        if rule.matches(&product, version.as_deref()) {
            return match rule.action {
                Action::Allow => Ok(()),
                Action::Block => Err(String::new()),
                Action::BlockWithUrl(url) => Err(url.unwrap_or_else(|| block_url.to_string())),
            };
        }
    }
    if default_block {
        Err(block_url.to_string())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(r: &[&str]) -> Vec<String> {
        r.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn several_rules_written_out_read_back_the_same() {
        // (Found by the policy fuzz target: rules were written joined by
        // ',', which is no separator of rules — a URL may hold one.)
        let typed =
            "yockttB allow;oetB allow; baresip < 1.1 block-with-url https://intranet.example/a,b";
        let v = SPEC.parse("rules", typed).unwrap();
        let written = SPEC.write("rules", &v);
        assert_eq!(SPEC.parse("rules", &written).unwrap(), v);
        assert_eq!(
            written,
            "yockttb allow; oetb allow; baresip < 1.1 block-with-url https://intranet.example/a,b"
        );
    }

    #[test]
    fn user_agents_give_their_product_and_version() {
        let cases: &[(&str, &str, Option<&[u64]>)] = &[
            (
                "Linphone/5.2.0 (belle-sip/5.2.0)",
                "linphone",
                Some(&[5, 2, 0]),
            ),
            (
                "Linphone-Desktop/5.2.6 (Debian) LinphoneCore/5.3.0",
                "linphone-desktop",
                Some(&[5, 2, 6]),
            ),
            ("baresip v1.0.0 (x86_64/linux)", "baresip", Some(&[1, 0, 0])),
            ("JsSIP 3.10.1", "jssip", Some(&[3, 10, 1])),
            ("SIP.js/0.21.2", "sip.js", Some(&[0, 21, 2])),
            ("SIPp/3.6.1-TLS", "sipp", Some(&[3, 6, 1])),
            ("MicroSIP/3.21.3", "microsip", Some(&[3, 21, 3])),
            ("oldphone", "oldphone", None),
            ("phone beta", "phone", None),
            ("", "", None),
        ];
        for (ua, product, version) in cases {
            let (p, v) = product_of(ua);
            assert_eq!(&p, product, "{ua}");
            assert_eq!(v.as_deref(), *version, "{ua}");
        }
    }

    #[test]
    fn the_first_matching_rule_decides_then_the_default() {
        let r = rules(&[
            "baresip < 1.1 block-with-url https://intranet.example/Clients",
            "linphone >= 5.0 allow",
            "linphone block-with-url",
            "sipp* block",
            "jssip = 3.10 allow",
        ]);
        let table: &[(&str, Result<(), &str>)] = &[
            (
                "baresip v1.0.0 (x86_64/linux)",
                Err("https://intranet.example/Clients"),
            ),
            ("baresip v1.1.0", Ok(())),
            ("Linphone/5.2.0 (belle-sip/5.2.0)", Ok(())),
            ("Linphone/4.5.1", Err("https://upgrade.example")),
            ("linphone", Err("https://upgrade.example")),
            ("SIPp/3.6.1", Err("")),
            ("sippy/1.0", Err("")),
            ("JsSIP 3.10.0", Ok(())),
            ("JsSIP 3.10.1", Ok(())),
            ("Other/1.0", Ok(())),
        ];
        for (ua, want) in table {
            let got = decide(&r, false, "https://upgrade.example", Some(ua));
            assert_eq!(got, want.map_err(str::to_string), "{ua}");
        }
        // JsSIP 3.10.1 is not = 3.10; with a blocking default it is refused.
        assert_eq!(
            decide(&r, true, "https://upgrade.example", Some("JsSIP 3.10.1")),
            Err("https://upgrade.example".to_string())
        );
        assert_eq!(decide(&r, true, "", None), Err(String::new()));
        assert_eq!(decide(&rules(&["* allow"]), true, "", None), Ok(()));
    }

    #[test]
    fn the_documented_pattern_agrees_with_the_parser() {
        // (schemathesis checks the pattern against the server both ways.)
        assert!(RULE_PATTERN.starts_with("^(\\*|"));
        for ok in [
            "linphone >= 5.0 allow",
            "* block",
            "a* < 1.2.3.4 block-with-url https://x.example/a?b=c,d",
            "b block-with-url",
        ] {
            assert_eq!(normalize_rule(ok).as_deref(), Ok(ok), "{ok}");
        }
    }

    #[test]
    fn rules_are_checked_with_a_message_that_says_what_to_write() {
        for ok in [
            "linphone >= 5.0 allow",
            "* block",
            "sip.js* allow",
            "Baresip < 1.1 BLOCK-WITH-URL https://x.example/A",
            "micro-sip_2+ = 3 block",
        ] {
            assert!(parse_rule(ok).is_ok(), "{ok}");
        }
        for (bad, says) in [
            ("", "empty"),
            ("linphone", "the action must be"),
            ("linphone >= allow", "not a version"),
            ("linphone >= 5.x allow", "not a version"),
            ("linphone >= 1.2.3.4.5 allow", "not a version"),
            ("x block-with-url https://", "not an http(s) URL"),
            (
                "x block-with-url https://caf\u{e9}.example",
                "not an http(s) URL",
            ),
            ("linphone ~ 5 allow", "the action must be"),
            ("lin phone allow", "the action must be"),
            ("lin/phone allow", "not a product name"),
            ("* < 2 block", "name the product"),
            ("x block-with-url ftp://a", "not an http(s) URL"),
            ("x allow https://a.example", "the action must be"),
            ("x\tallow", "control characters"),
        ] {
            let e = parse_rule(bad).unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
        assert_eq!(
            normalize_rule("Baresip   <  1.1 BLOCK-WITH-URL https://x.example/A").unwrap(),
            "baresip < 1.1 block-with-url https://x.example/A"
        );
    }
}
