//! Lync's Intelligent IM Filter, done on the server where clients cannot
//! skip it. Links are looked for after NFKC normalisation with invisible
//! characters removed (so `ｈｔｔｐ://` and `ht\u{200B}tp://` are links), as
//! words starting with one of the policy's prefixes (`www*`: any word
//! starting with `www`). Links to the organisation's own domains may be
//! left alone. Then, as the policy says:
//! - defuse: an underscore before each link (clients do not make `_http://`
//!   clickable, as Lync's did not), the policy's notice first;
//! - warn: delivered with the policy's warning first;
//! - block: refused; the sender is told why, the recipient sees nothing.
//!
//! A message with more links than `max_links`, or a link to a file type
//! the file-transfer policy blocks, is refused whatever the action. A
//! message that is changed is delivered as normalised, with every
//! internationalised host name as punycode (`xn--`), so a look-alike host
//! shows for what it is.

use std::borrow::Cow;
use std::sync::Arc;

use unicode_normalization::UnicodeNormalization;

/// Lync's link prefixes (the `im_filter` policy's default `prefixes`).
pub const LYNC_PREFIXES: &[&str] = &[
    "callto:", "file:", "ftp.", "ftp:", "gopher:", "href", "http:", "https:", "ldap:", "mailto:",
    "news:", "nntp:", "sip:", "sips:", "tel:", "telnet:", "www*",
];

/// What the policy does with a message that has links (in order of
/// restrictiveness).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    Defuse,
    Warn,
    Block,
}

/// One user's IM filter (an enabled `im_filter` policy, with the file
/// types their file-transfer policy blocks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub action: Action,
    /// Links to `local_domains` (or their subdomains) are left alone.
    pub ignore_local: bool,
    pub local_domains: Vec<String>,
    /// Refuse links to files with one of `blocked_extensions`.
    pub block_file_links: bool,
    /// Lower-case, with the dot (`.exe`).
    pub blocked_extensions: Vec<String>,
    /// As the policy writes them: `http:`, `www*`.
    pub prefixes: Vec<String>,
    pub max_links: usize,
    pub allow_message: String,
    pub warn_message: String,
}

/// The filter's decision on a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver as sent: no link, or only the organisation's own.
    Unchanged,
    /// Deliver this text instead.
    Rewritten(String),
    Blocked(Refusal),
}

/// Why a message is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The policy refuses messages with links.
    Links,
    TooManyLinks {
        found: usize,
        max: usize,
    },
    /// A link to a file of this (blocked) type.
    FileLink(String),
}

impl Refusal {
    /// The SIP reason phrase for the sender.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Links => "Forbidden (Links Not Allowed)",
            Refusal::TooManyLinks { .. } => "Forbidden (Too Many Links)",
            Refusal::FileLink(_) => "Forbidden (Link to a Blocked File Type)",
        }
    }

    /// A sentence for the sender's Warning header and the log.
    pub fn detail(&self) -> String {
        match self {
            Refusal::Links => "the IM filter policy does not allow links in messages".into(),
            Refusal::TooManyLinks { found, max } => {
                format!("the message has {found} links; the IM filter allows {max}")
            }
            Refusal::FileLink(ext) => {
                format!("the message links to a {ext} file, which the file transfer policy blocks")
            }
        }
    }
}

/// The decision on a message body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Unchanged,
    /// Deliver this body (same content type).
    Rewritten(Vec<u8>),
    Blocked(Refusal),
    /// A body the filter cannot read (not UTF-8, malformed CPIM): not
    /// delivered unexamined.
    Unreadable(String),
}

/// Characters that show as nothing: removed before links are looked for
/// (soft hyphen, zero-width spaces and joiners, direction marks and
/// overrides, word joiners, the byte order mark).
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

/// NFKC with invisible characters removed (ASCII is left as it is: it is
/// its own NFKC and has none).
pub fn normalise(text: &str) -> Cow<'_, str> {
    if text.is_ascii() {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(text.nfkc().filter(|c| !invisible(*c)).collect())
    }
}

/// A link's place in the normalised text (byte offsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Link {
    start: usize,
    end: usize,
}

fn starts_with_ci(text: &[u8], prefix: &[u8]) -> bool {
    text.len() >= prefix.len() && text[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// Ends a link: white space, quotes, angle brackets, control characters.
fn ends_link(c: char) -> bool {
    c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | '\'' | '`')
}

/// The links in `t`, in order.
fn links(t: &str, prefixes: &[String]) -> Vec<Link> {
    let bytes = t.as_bytes();
    let pats: Vec<&[u8]> = prefixes
        .iter()
        .map(|p| p.strip_suffix('*').unwrap_or(p).as_bytes())
        .filter(|p| !p.is_empty())
        .collect();
    // The bytes a link can start with: most positions are ruled out by one
    // table lookup.
    let mut first = [false; 256];
    for p in &pats {
        if let Some(b) = p.first() {
            first[usize::from(b.to_ascii_lowercase())] = true;
            first[usize::from(b.to_ascii_uppercase())] = true;
        }
    }
    let mut out = Vec::new();
    let mut i = 0;
    let mut prev_word = false;
    while i < bytes.len() {
        let b = bytes[i];
        // ASCII needs no decoding.
        let (word, width) = if b.is_ascii() {
            (b.is_ascii_alphanumeric(), 1)
        } else {
            match t[i..].chars().next() {
                Some(c) => (c.is_alphanumeric(), c.len_utf8()),
                None => break,
            }
        };
        if !prev_word
            && first[usize::from(b)]
            && pats.iter().any(|p| starts_with_ci(&bytes[i..], p))
        {
            let len = t[i..].find(ends_link).unwrap_or(t.len() - i);
            let raw = &t[i..i + len];
            let kept = raw.trim_end_matches(['.', ',', ';', ':', '!', '?', ')', ']', '}']);
            out.push(Link {
                start: i,
                end: i + kept.len().max(1),
            });
            i += len.max(1);
            while !t.is_char_boundary(i) {
                i += 1;
            }
            prev_word = false;
            continue;
        }
        prev_word = word;
        i += width;
    }
    out
}

/// Where the host name is in a link, if it names one.
fn host_range(link: &str) -> Option<(usize, usize)> {
    let from = if let Some(p) = link.find("://") {
        let auth = p + 3;
        let auth_end = link[auth..]
            .find(['/', '?', '#'])
            .map_or(link.len(), |e| auth + e);
        // user:password@host
        link[auth..auth_end]
            .rfind('@')
            .map_or(auth, |a| auth + a + 1)
    } else if starts_with_ci(link.as_bytes(), b"www") {
        0
    } else {
        // mailto:user@host, sip:user@host, ftp.host/...
        let scheme_end = link.find(':').map_or(0, |c| c + 1);
        match link[scheme_end..].find('@') {
            Some(a) => scheme_end + a + 1,
            None if link[..scheme_end].is_empty() => 0,
            None => return None,
        }
    };
    let rest = &link[from..];
    let len = if rest.starts_with('[') {
        rest.find(']').map_or(rest.len(), |e| e + 1)
    } else {
        rest.find(['/', '?', '#', ':', ';', '>', ','])
            .unwrap_or(rest.len())
    };
    (len > 0).then_some((from, from + len))
}

/// A host as the DNS writes it: lower case, punycode for what is not
/// ASCII; `None` if it cannot be one.
fn ascii_host(host: &str) -> Option<String> {
    if host.is_ascii() {
        Some(host.to_ascii_lowercase())
    } else {
        idna::domain_to_ascii(host).ok()
    }
}

fn is_local(host: &str, domains: &[String]) -> bool {
    let h = host.trim_end_matches('.');
    domains.iter().any(|d| {
        h.eq_ignore_ascii_case(d)
            || (h.len() > d.len()
                && h.as_bytes()[h.len() - d.len() - 1] == b'.'
                && h[h.len() - d.len()..].eq_ignore_ascii_case(d))
    })
}

/// Percent-decodes ASCII escapes (`%2E` -> `.`); others stay as written.
fn percent_decoded(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && b[i + 1].is_ascii_hexdigit()
            && b[i + 2].is_ascii_hexdigit()
        {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                if v.is_ascii() && v != 0 {
                    out.push(char::from(v));
                    i += 3;
                    continue;
                }
            }
        }
        let c = s[i..].chars().next().unwrap_or('\u{fffd}');
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// The extension (lower case, with the dot) of the file a link points to:
/// its path's last segment, decoded, without query and fragment, trailing
/// dots and spaces removed (as Windows does).
fn file_extension(link: &str) -> Option<String> {
    let link = link.split(['?', '#']).next().unwrap_or(link);
    let after_host = match host_range(link) {
        Some((_, end)) => &link[end..],
        None => link.split_once(':').map_or(link, |(_, r)| r),
    };
    let path = &after_host[after_host.find('/')?..];
    let name = percent_decoded(path.rsplit('/').next().unwrap_or(""));
    let name = name.trim_end_matches(['.', ' ']);
    let dot = name.rfind('.')?;
    let ext = name[dot..].to_ascii_lowercase();
    (ext.len() > 1).then_some(ext)
}

/// `t` with each of `links` as delivered: defused (an underscore first)
/// or not, the host name as punycode.
fn render(t: &str, links: &[Link], defuse: bool) -> String {
    let mut out = String::with_capacity(t.len() + links.len() * 8);
    let mut at = 0;
    for l in links {
        out.push_str(&t[at..l.start]);
        if defuse {
            out.push('_');
        }
        let link = &t[l.start..l.end];
        match host_range(link) {
            Some((a, b)) if !link[a..b].is_ascii() => {
                out.push_str(&link[..a]);
                match ascii_host(&link[a..b]) {
                    Some(h) => out.push_str(&h),
                    None => out.push_str(&link[a..b]),
                }
                out.push_str(&link[b..]);
            }
            _ => out.push_str(link),
        }
        at = l.end;
    }
    out.push_str(&t[at..]);
    out
}

/// The filter on a text.
pub fn filter_text(rules: &Rules, text: &str) -> Verdict {
    let t = normalise(text);
    let mut outside = Vec::new();
    for l in links(&t, &rules.prefixes) {
        let link = &t[l.start..l.end];
        let local = rules.ignore_local
            && host_range(link)
                .and_then(|(a, b)| ascii_host(&link[a..b]))
                .is_some_and(|h| is_local(&h, &rules.local_domains));
        if !local {
            outside.push(l);
        }
    }
    if outside.is_empty() {
        return Verdict::Unchanged;
    }
    if outside.len() > rules.max_links {
        return Verdict::Blocked(Refusal::TooManyLinks {
            found: outside.len(),
            max: rules.max_links,
        });
    }
    if rules.block_file_links {
        for l in &outside {
            if let Some(ext) = file_extension(&t[l.start..l.end]) {
                if rules.blocked_extensions.contains(&ext) {
                    return Verdict::Blocked(Refusal::FileLink(ext));
                }
            }
        }
    }
    let (notice, defuse) = match rules.action {
        Action::Block => return Verdict::Blocked(Refusal::Links),
        Action::Warn => (&rules.warn_message, false),
        Action::Defuse => (&rules.allow_message, true),
    };
    let body = render(&t, &outside, defuse);
    Verdict::Rewritten(if notice.is_empty() {
        body
    } else {
        format!("{notice}\n{body}")
    })
}

/// Whether a `text/*` content type's charset is one the filter reads.
fn utf8_charset(params: &str) -> Result<(), String> {
    for p in params.split(';') {
        if let Some((k, v)) = p.split_once('=') {
            if k.trim().eq_ignore_ascii_case("charset") {
                let v = v.trim().trim_matches('"');
                if !v.eq_ignore_ascii_case("utf-8") && !v.eq_ignore_ascii_case("us-ascii") {
                    return Err(format!("the charset {v} is not read (send UTF-8)"));
                }
            }
        }
    }
    Ok(())
}

/// The filter on a MESSAGE body of `content_type` (`type/subtype;params`):
/// `text/*` in UTF-8, and `message/cpim` around one; anything else (a
/// typing notification, a file pointer) is not text and passes.
pub fn filter_body(rules: &Rules, content_type: &str, body: &[u8]) -> Outcome {
    let (media, params) = content_type.split_once(';').unwrap_or((content_type, ""));
    let media = media.trim();
    if media.eq_ignore_ascii_case("message/cpim") {
        let cpim = match crate::cpim::Cpim::parse(body) {
            Ok(c) => c,
            Err(e) => return Outcome::Unreadable(format!("message/cpim: {e}")),
        };
        let inner = cpim.content_type();
        if inner
            .split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("message/cpim"))
        {
            return Outcome::Unreadable("message/cpim inside message/cpim".into());
        }
        return match filter_body(rules, inner, cpim.body) {
            Outcome::Rewritten(b) => Outcome::Rewritten(cpim.with_body(&b)),
            other => other,
        };
    }
    let is_text = media
        .split_once('/')
        .is_some_and(|(top, _)| top.eq_ignore_ascii_case("text"));
    if !is_text {
        return Outcome::Unchanged;
    }
    if let Err(e) = utf8_charset(params) {
        return Outcome::Unreadable(e);
    }
    let Ok(text) = std::str::from_utf8(body) else {
        return Outcome::Unreadable("the text is not UTF-8".into());
    };
    match filter_text(rules, text) {
        Verdict::Unchanged => Outcome::Unchanged,
        Verdict::Rewritten(t) => Outcome::Rewritten(t.into_bytes()),
        Verdict::Blocked(r) => Outcome::Blocked(r),
    }
}

/// The stricter of two users' filters (the sender's and the recipient's):
/// the more restrictive action with its texts, the smaller link limit,
/// every prefix and blocked type of both; own links left alone only if
/// both leave them. The same rules twice (the usual case) cost nothing.
pub fn strictest(a: Option<Arc<Rules>>, b: Option<Arc<Rules>>) -> Option<Arc<Rules>> {
    let (a, b) = match (a, b) {
        (Some(a), Some(b)) => (a, b),
        (a, b) => return a.or(b),
    };
    if Arc::ptr_eq(&a, &b) || a == b {
        return Some(a);
    }
    let (mut out, other) = if b.action > a.action {
        (Rules::clone(&b), a)
    } else {
        (Rules::clone(&a), b)
    };
    out.max_links = out.max_links.min(other.max_links);
    out.ignore_local &= other.ignore_local;
    out.block_file_links |= other.block_file_links;
    for e in &other.blocked_extensions {
        if !out.blocked_extensions.contains(e) {
            out.blocked_extensions.push(e.clone());
        }
    }
    for p in &other.prefixes {
        if !out.prefixes.contains(p) {
            out.prefixes.push(p.clone());
        }
    }
    Some(Arc::new(out))
}

#[cfg(test)]
mod tests;
