//! SDP (RFC 8866) as the proxy reads it: strictly, within bounds, with
//! no I/O. Values are slices of the body.
//!
//! - [`Session::parse`]: `type=value` lines ended by CRLF (or LF alone, as
//!   RFC 8866 §5 lets a parser accept), `v=0` first, then `o=` and `s=`,
//!   the other session lines, at least one `t=`, then the media sections
//!   (`m=`); a type letter SDP does not define is refused, as RFC 8866
//!   requires. At most [`Limits`] bytes, lines, media sections and
//!   attributes. Connection addresses (`c=`) and ports are read into typed
//!   values; attributes are kept as name and value.
//! - [`body`]: the descriptions in a SIP body, `multipart/*` included.
//! - [`protection`]: how each media stream is protected (SRTP keyed by
//!   SDES or DTLS-SRTP), or why it is not, for the media policy.

#![forbid(unsafe_code)]

use std::net::IpAddr;

pub mod body;
pub mod protection;

/// How much one description may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_bytes: usize,
    pub max_lines: usize,
    pub max_line: usize,
    pub max_media: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 64 * 1024,
            max_lines: 2048,
            max_line: 4096,
            max_media: 32,
        }
    }
}

/// Why a body is not a session description.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SdpError {
    TooLarge,
    NotUtf8,
    /// Line `n` (from 1) breaks the grammar.
    Line {
        n: usize,
        why: String,
    },
    /// A line that must be there is not.
    Missing(&'static str),
}

impl std::fmt::Display for SdpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SdpError::TooLarge => f.write_str("the session description is too large"),
            SdpError::NotUtf8 => f.write_str("the session description is not UTF-8"),
            SdpError::Line { n, why } => write!(f, "SDP line {n}: {why}"),
            SdpError::Missing(what) => write!(f, "SDP without {what}"),
        }
    }
}

impl std::error::Error for SdpError {}

/// An `a=` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attribute<'a> {
    pub name: &'a str,
    pub value: Option<&'a str>,
}

/// A `c=` line's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Address<'a> {
    Ip(IpAddr),
    /// A host name (RFC 8866 allows one).
    Name(&'a str),
}

/// One media section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media<'a> {
    /// `audio`, `video`, `message`, `application`...
    pub kind: &'a str,
    /// 0: the stream is rejected or disabled.
    pub port: u16,
    pub proto: &'a str,
    pub formats: Vec<&'a str>,
    /// Its own `c=` lines.
    pub connections: Vec<Address<'a>>,
    pub attributes: Vec<Attribute<'a>>,
}

/// A session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session<'a> {
    /// The session-level `c=`.
    pub connection: Option<Address<'a>>,
    pub attributes: Vec<Attribute<'a>>,
    pub media: Vec<Media<'a>>,
}

impl<'a> Media<'a> {
    /// The first attribute `name` (case-insensitive) of this section.
    pub fn attr(&self, name: &str) -> Option<&Attribute<'a>> {
        self.attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }

    /// Every attribute `name` of this section.
    pub fn attrs<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s Attribute<'a>> + 's {
        self.attributes
            .iter()
            .filter(move |a| a.name.eq_ignore_ascii_case(name))
    }
}

impl<'a> Session<'a> {
    /// The first session-level attribute `name`.
    pub fn attr(&self, name: &str) -> Option<&Attribute<'a>> {
        self.attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }

    /// The addresses media may come from or go to: `c=` lines (session
    /// and media level), ICE candidates (RFC 8839, not their related
    /// addresses) and `a=rtcp` (RFC 3605); host names (mDNS candidates)
    /// are left out. Each once, in order.
    pub fn media_addresses(&self) -> Vec<IpAddr> {
        let mut out: Vec<IpAddr> = Vec::new();
        let mut add = |a: IpAddr| {
            if !out.contains(&a) {
                out.push(a);
            }
        };
        if let Some(Address::Ip(a)) = self.connection {
            add(a);
        }
        let candidate = |v: &str| v.split_ascii_whitespace().nth(4)?.parse::<IpAddr>().ok();
        let rtcp = |v: &str| v.split_ascii_whitespace().nth(3)?.parse::<IpAddr>().ok();
        let attrs = self
            .attributes
            .iter()
            .chain(self.media.iter().flat_map(|m| m.attributes.iter()));
        for m in &self.media {
            for c in &m.connections {
                if let Address::Ip(a) = c {
                    add(*a);
                }
            }
        }
        for at in attrs {
            let found = match (at.name, at.value) {
                (n, Some(v)) if n.eq_ignore_ascii_case("candidate") => candidate(v),
                (n, Some(v)) if n.eq_ignore_ascii_case("rtcp") => rtcp(v),
                _ => None,
            };
            if let Some(a) = found {
                add(a);
            }
        }
        out
    }

    /// Reads a description with the default [`Limits`].
    pub fn parse(body: &'a [u8]) -> Result<Session<'a>, SdpError> {
        Session::parse_with(body, Limits::default())
    }

    pub fn parse_with(body: &'a [u8], limits: Limits) -> Result<Session<'a>, SdpError> {
        if body.len() > limits.max_bytes {
            return Err(SdpError::TooLarge);
        }
        let text = std::str::from_utf8(body).map_err(|_| SdpError::NotUtf8)?;
        let mut lines = text.split('\n');
        // The body ends with the last line's CRLF: nothing after it.
        let mut session = Session {
            connection: None,
            attributes: Vec::new(),
            media: Vec::new(),
        };
        let mut n = 0usize;
        let mut times = 0usize;
        let mut stage = Stage::Version;
        while let Some(raw) = lines.next() {
            n += 1;
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if line.is_empty() {
                if lines.clone().all(|l| l.is_empty() || l == "\r") {
                    break; // the final line end (and blank lines after)
                }
                return Err(bad(n, "an empty line"));
            }
            if n > limits.max_lines {
                return Err(SdpError::TooLarge);
            }
            if line.len() > limits.max_line {
                return Err(bad(n, "too long"));
            }
            let (kind, value) = match line.as_bytes() {
                [k, b'=', ..] if k.is_ascii_lowercase() => (*k, &line[2..]),
                _ => return Err(bad(n, "not type=value")),
            };
            if value.bytes().any(|b| b == b'\r' || b == 0) {
                return Err(bad(n, "a control character"));
            }
            stage = stage
                .next(kind)
                .ok_or_else(|| bad(n, &format!("{}= is not allowed here", char::from(kind))))?;
            match kind {
                b'v' if value != "0" => return Err(bad(n, "the version must be 0")),
                b'o' => origin(value).map_err(|w| bad(n, w))?,
                b't' => times += 1,
                b'c' => {
                    let a = connection(value).map_err(|w| bad(n, w))?;
                    match session.media.last_mut() {
                        Some(m) if m.connections.len() >= 8 => {
                            return Err(bad(n, "too many c= lines"))
                        }
                        Some(m) => m.connections.push(a),
                        None if session.connection.is_some() => {
                            return Err(bad(n, "a second session-level c= line"))
                        }
                        None => session.connection = Some(a),
                    }
                }
                b'm' => {
                    if session.media.len() >= limits.max_media {
                        return Err(SdpError::TooLarge);
                    }
                    session.media.push(media(value).map_err(|w| bad(n, w))?);
                }
                b'a' => {
                    let a = attribute(value).map_err(|w| bad(n, w))?;
                    match session.media.last_mut() {
                        Some(m) => m.attributes.push(a),
                        None => session.attributes.push(a),
                    }
                }
                _ => {}
            }
        }
        match stage {
            Stage::Version => return Err(SdpError::Missing("v=")),
            Stage::Origin => return Err(SdpError::Missing("o=")),
            Stage::Name => return Err(SdpError::Missing("s=")),
            _ => {}
        }
        if times == 0 {
            return Err(SdpError::Missing("t="));
        }
        Ok(session)
    }
}

fn bad(n: usize, why: &str) -> SdpError {
    SdpError::Line {
        n,
        why: why.to_owned(),
    }
}

/// Where in the description a line is (RFC 8866 §5's order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Version,
    Origin,
    Name,
    /// i u e p c b, before the times.
    Session,
    /// t r, then z k a.
    Times,
    Media,
}

impl Stage {
    /// The stage after a line of `kind`, if it may come here.
    fn next(self, kind: u8) -> Option<Stage> {
        use Stage::*;
        match (self, kind) {
            (Version, b'v') => Some(Origin),
            (Origin, b'o') => Some(Name),
            (Name, b's') => Some(Session),
            (Session, b'i' | b'u' | b'e' | b'p' | b'c' | b'b') => Some(Session),
            (Session | Times, b't') => Some(Times),
            (Times, b'r' | b'z' | b'k' | b'a') => Some(Times),
            (Times | Media, b'm') => Some(Media),
            (Media, b'i' | b'c' | b'b' | b'k' | b'a') => Some(Media),
            _ => None,
        }
    }
}

/// `o=username sess-id sess-version IN IP4|IP6 address`.
fn origin(v: &str) -> Result<(), &'static str> {
    let f: Vec<&str> = v.split(' ').collect();
    if f.len() != 6 || f.iter().any(|x| x.is_empty()) {
        return Err("o= must have six fields");
    }
    if !f[1].bytes().all(|b| b.is_ascii_digit()) || !f[2].bytes().all(|b| b.is_ascii_digit()) {
        return Err("o= session id and version must be numbers");
    }
    Ok(())
}

/// `c=IN IP4|IP6 address[/ttl[/count]]`.
fn connection(v: &str) -> Result<Address<'_>, &'static str> {
    let mut f = v.split(' ');
    let (Some("IN"), Some(family), Some(addr), None) = (f.next(), f.next(), f.next(), f.next())
    else {
        return Err("c= must be IN, an address type and an address");
    };
    let host = addr.split('/').next().unwrap_or("");
    match (family, host.parse::<IpAddr>()) {
        ("IP4", Ok(a @ IpAddr::V4(_))) | ("IP6", Ok(a @ IpAddr::V6(_))) => Ok(Address::Ip(a)),
        ("IP4" | "IP6", Ok(_)) => Err("c= address does not match its type"),
        ("IP4" | "IP6", Err(_)) if host_name(host) => Ok(Address::Name(host)),
        ("IP4" | "IP6", Err(_)) => Err("c= address is neither an address nor a host name"),
        _ => Err("c= address type must be IP4 or IP6"),
    }
}

fn host_name(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// `m=media port[/count] proto fmt...`.
fn media(v: &str) -> Result<Media<'_>, &'static str> {
    let mut f = v.split(' ');
    let (Some(kind), Some(port), Some(proto)) = (f.next(), f.next(), f.next()) else {
        return Err("m= must have media, port, protocol and formats");
    };
    let formats: Vec<&str> = f.collect();
    if formats.is_empty() || formats.len() > 64 || formats.iter().any(|x| x.is_empty()) {
        return Err("m= must have 1-64 formats");
    }
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_./+".contains(&b))
    };
    if !token(kind) || !token(proto) {
        return Err("m= media and protocol must be tokens");
    }
    let port = port.split('/').next().unwrap_or("");
    let port: u16 = port.parse().map_err(|_| "m= port is not a number")?;
    Ok(Media {
        kind,
        port,
        proto,
        formats,
        connections: Vec::new(),
        attributes: Vec::new(),
    })
}

/// `a=name[:value]`.
fn attribute(v: &str) -> Result<Attribute<'_>, &'static str> {
    let (name, value) = match v.split_once(':') {
        Some((n, val)) => (n, Some(val)),
        None => (v, None),
    };
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err("a= name must be a token");
    }
    Ok(Attribute { name, value })
}

#[cfg(test)]
mod tests;
