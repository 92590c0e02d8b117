//! One REGISTER, applied to the location service (RFC 3261 §10.3).

use sip::headers::{CSeq, CallId, Contact, Expires, Path, Supported, UserAgent};
use sip::{unquote, Message, Uri};
use store::Binding;

use crate::location::{Entry, Location, RegistrarConfig};

/// The transport flow (connection) a binding was registered over, opaque here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow(pub u64);

/// A store operation to perform before answering.
pub use store::BindingChange as Change;

/// A successful REGISTER: what to put in the 200 and what to write first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// Contact header values for the 200: every current binding with its
    /// remaining `expires`.
    pub contacts: Vec<String>,
    /// Write these through to the store before sending the 200.
    pub changes: Vec<Change>,
    /// The client used RFC 5626 outbound: answer with `Require: outbound`.
    pub outbound: bool,
    /// Path values to echo (RFC 3327), when the client supports Path.
    pub path: Vec<String>,
    /// Keys of the bindings this REGISTER made (a device signing in, not
    /// a refresh).
    pub signed_in: Vec<String>,
    /// The sources of the bindings it removed (a device signing out).
    pub signed_out: Vec<String>,
}

/// Why a REGISTER is refused; each maps to one status and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegisterError {
    /// 423, with `Min-Expires`.
    IntervalTooBrief { min_expires: u32 },
    /// 403: the endpoint cap would be exceeded.
    TooManyBindings { max: usize },
    /// 400: a Contact that is not a SIP/SIPS URI or is malformed.
    BadContact,
    /// 400: `*` with other Contacts or a non-zero Expires.
    BadWildcard,
    /// 400: a Call-ID/CSeq no newer than the binding's (a stale retransmission or
    /// a replay).
    OutOfOrder,
    /// 400: Expires, CSeq, Call-ID or Path unusable.
    BadRequest(&'static str),
}

impl RegisterError {
    pub fn status(&self) -> u16 {
        match self {
            RegisterError::IntervalTooBrief { .. } => 423,
            RegisterError::TooManyBindings { .. } => 403,
            _ => 400,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            RegisterError::IntervalTooBrief { .. } => "Interval Too Brief",
            RegisterError::TooManyBindings { .. } => "Too Many Registered Endpoints",
            RegisterError::BadContact => "Invalid Contact",
            RegisterError::BadWildcard => "Invalid Wildcard Contact",
            RegisterError::OutOfOrder => "Out of Order Registration",
            RegisterError::BadRequest(r) => r,
        }
    }
}

/// One Contact of the request, resolved.
struct Wanted {
    key: String,
    uri: String,
    q: u16,
    expires: u32,
}

/// The binding key: instance and reg-id for outbound clients, else the URI.
fn key_of(uri: &str, instance: Option<&str>, reg_id: Option<&str>) -> String {
    match (instance, reg_id) {
        (Some(i), Some(r)) => format!("{i}|{r}"),
        _ => uri.to_owned(),
    }
}

impl Location {
    /// Applies an authenticated REGISTER for `aor`. `source` records where it came
    /// from (`tls:192.0.2.1:40000`); `flow` is the connection, if any.
    pub fn register(
        &mut self,
        aor: &str,
        req: &Message,
        source: &str,
        flow: Option<Flow>,
        now: i64,
    ) -> Result<Registered, RegisterError> {
        let max = self.config.max_bindings;
        self.register_limited(aor, req, source, flow, now, max)
    }

    /// [`Location::register`] with this user's endpoint cap (from their
    /// authentication policy) instead of the configured one.
    pub fn register_limited(
        &mut self,
        aor: &str,
        req: &Message,
        source: &str,
        flow: Option<Flow>,
        now: i64,
        max_bindings: usize,
    ) -> Result<Registered, RegisterError> {
        let cfg = RegistrarConfig {
            max_bindings,
            ..self.config
        };
        let call_id = req
            .typed::<CallId>()
            .ok()
            .flatten()
            .ok_or(RegisterError::BadRequest("Missing Call-ID"))?
            .0;
        let cseq = req
            .typed::<CSeq>()
            .ok()
            .flatten()
            .ok_or(RegisterError::BadRequest("Invalid CSeq"))?
            .seq;
        let expires_header = req
            .typed::<Expires>()
            .map_err(|_| RegisterError::BadRequest("Invalid Expires"))?;
        let supports = |tag: &str| {
            req.list::<Supported>()
                .any(|s| s.is_ok_and(|s| s.0.eq_ignore_ascii_case(tag)))
        };
        let path: Vec<String> = req
            .list::<Path>()
            .map(|p| p.map(|p| format!("<{}>", uri_text(&p.uri))))
            .collect::<Result<_, _>>()
            .map_err(|_| RegisterError::BadRequest("Invalid Path"))?;
        let user_agent = req
            .typed::<UserAgent>()
            .ok()
            .flatten()
            .map(|u| u.0.to_owned());

        let contacts: Vec<Contact<'_>> = req
            .list::<Contact>()
            .collect::<Result<_, _>>()
            .map_err(|_| RegisterError::BadContact)?;
        let mut current: Vec<Entry> = self.by_aor.get(aor).cloned().unwrap_or_default();
        current.retain(|e| e.binding.expires_at > now);
        let mut changes = Vec::new();
        let mut outbound = false;
        let mut signed_in = Vec::new();
        let mut signed_out = Vec::new();

        if contacts.iter().any(|c| matches!(c, Contact::Wildcard)) {
            if contacts.len() != 1 || expires_header.map(|e| e.0) != Some(0) {
                return Err(RegisterError::BadWildcard);
            }
            if current
                .iter()
                .any(|e| e.binding.call_id == call_id && e.binding.cseq >= cseq)
            {
                return Err(RegisterError::OutOfOrder);
            }
            for e in current.drain(..) {
                signed_out.push(e.binding.source.clone());
                changes.push(Change::Remove {
                    aor: aor.to_owned(),
                    key: e.binding.key,
                });
            }
        } else {
            let mut wanted = Vec::with_capacity(contacts.len());
            for c in &contacts {
                let Contact::Addr(na) = c else {
                    return Err(RegisterError::BadContact);
                };
                if !matches!(na.uri, Uri::Sip(_)) {
                    return Err(RegisterError::BadContact);
                }
                let expires = match c.expires() {
                    Some(e) => e,
                    None if na.params.contains("expires") => return Err(RegisterError::BadContact),
                    None => expires_header.map_or(cfg.default_expires, |e| e.0),
                };
                if expires != 0 && expires < cfg.min_expires {
                    return Err(RegisterError::IntervalTooBrief {
                        min_expires: cfg.min_expires,
                    });
                }
                let instance = na.params.get("+sip.instance").flatten().map(unquote);
                let reg_id = na.params.get("reg-id").flatten();
                if instance.is_some() && reg_id.is_some() && supports("outbound") {
                    outbound = true;
                }
                let uri = uri_text(&na.uri).to_owned();
                let q = na
                    .params
                    .get("q")
                    .flatten()
                    .and_then(parse_q)
                    .unwrap_or(1000);
                wanted.push(Wanted {
                    key: key_of(&uri, instance, reg_id),
                    uri,
                    q,
                    expires: expires.min(cfg.max_expires),
                });
            }
            for w in wanted {
                let existing = current.iter().position(|e| e.binding.key == w.key);
                if let Some(i) = existing {
                    let b = &current[i].binding;
                    if b.call_id == call_id && b.cseq >= cseq {
                        return Err(RegisterError::OutOfOrder);
                    }
                }
                if w.expires == 0 {
                    if let Some(i) = existing {
                        signed_out.push(current.remove(i).binding.source);
                        changes.push(Change::Remove {
                            aor: aor.to_owned(),
                            key: w.key,
                        });
                    }
                    continue;
                }
                let binding = Binding {
                    aor: aor.to_owned(),
                    key: w.key,
                    contact: w.uri,
                    q: w.q,
                    expires_at: now + i64::from(w.expires),
                    call_id: call_id.to_owned(),
                    cseq,
                    path: path.clone(),
                    source: source.to_owned(),
                    user_agent: user_agent.clone(),
                    node: self.node.clone(),
                };
                if existing.is_none() {
                    signed_in.push(binding.key.clone());
                }
                changes.push(Change::Upsert(binding.clone()));
                let entry = Entry { binding, flow };
                match existing {
                    Some(i) => current[i] = entry,
                    None => current.push(entry),
                }
            }
            if current.len() > cfg.max_bindings {
                return Err(RegisterError::TooManyBindings {
                    max: cfg.max_bindings,
                });
            }
        }

        let contacts_out = current
            .iter()
            .map(|e| contact_value(&e.binding, now))
            .collect();
        self.set_entries(aor, current);
        let path = if supports("path") { path } else { Vec::new() };
        Ok(Registered {
            contacts: contacts_out,
            changes,
            outbound,
            path,
            signed_in,
            signed_out,
        })
    }
}

/// The URI text of a parsed URI.
fn uri_text<'a>(u: &Uri<'a>) -> &'a str {
    match u {
        Uri::Sip(s) => s.raw,
        Uri::Tel(t) => t.raw,
        Uri::Absolute(a) => a.rest,
    }
}

fn parse_q(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    let mut t: u16 = 0;
    for (i, d) in frac.bytes().take(3).enumerate() {
        t += u16::from(d.checked_sub(b'0')?) * [100, 10, 1][i];
    }
    match int {
        "0" => Some(t),
        "1" => Some(1000),
        _ => None,
    }
}

/// `<uri>;expires=N` (plus instance and reg-id for outbound bindings).
fn contact_value(b: &Binding, now: i64) -> String {
    let remaining = (b.expires_at - now).max(0);
    let mut s = format!("<{}>;expires={remaining}", b.contact);
    if let Some((instance, reg_id)) = b.key.split_once('|') {
        s.push_str(&format!(";+sip.instance=\"{instance}\";reg-id={reg_id}"));
    }
    if b.q != 1000 {
        s.push_str(&format!(";q=0.{:03}", b.q));
    }
    s
}
