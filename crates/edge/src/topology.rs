//! Topology hiding: the rewrites of a message crossing the edge, as pure
//! functions of the message and the pool's key.
//!
//! Nothing about the inside leaves on the outside: a request going out has
//! its Vias replaced by one Via of ours whose branch seals them, its
//! Record-Route entries folded into one entry of ours whose user part seals
//! them, its Contacts replaced by URIs of ours that seal them; a response
//! going out loses the inside's Record-Route entries and Contacts the same
//! way, and our Path. Coming back in, each sealed value is opened and put
//! back, so the inside sees exactly what it sent. The edge keeps no state per
//! dialog or transaction: what it needs later travels in the message.
//!
//! Record-Route (RFC 5658 double record-routing): on a dialog-creating
//! request the edge adds an entry facing the inside (`E_int`, its internal
//! address) and one facing the outside (`E_ext`, whose user part is a
//! [`Kind::Route`] token naming the outside connection). Going out, the
//! entries on the inside of `E_int` are hidden in `E_ext`'s token, in the
//! order the outside party's route set will list them; a request from
//! outside whose Route starts with that entry gets them back as its Route.

use std::net::SocketAddr;

use sip::headers::{Contact, Path, RecordRoute, Route, Via};
use sip::{HeaderKind, Message, Uri};
use sip_transport::{FlowId, Protocol};

use crate::token::{Kind, Reader, Sealer, Writer};

/// The header the edge stamps on what it forwards inward, and strips from
/// everything arriving from outside: who sent the request, as the edge saw it.
pub const TRUST_HEADER: &str = "P-Parapet-Edge";

/// The edge's Via parameter that seals the inside's Vias below the top one.
const VIAS_PARAM: &str = "pe";

/// At most this many bytes of inside Vias or Record-Routes are sealed into
/// one token; a message with more is refused rather than leaked.
const MAX_HIDDEN: usize = 1500;

/// Why a message cannot cross: answered with this status and reason when
/// it is a request, dropped when it is a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused(pub u16, pub &'static str);

/// A request from outside, rewritten for the inside.
#[derive(Debug)]
pub struct Inward {
    pub bytes: bytes::Bytes,
}

/// A message from the inside, rewritten for the outside, and the connection
/// it goes out on.
#[derive(Debug)]
pub struct Outward {
    pub bytes: bytes::Bytes,
    pub flow: FlowId,
    /// The partner domain at the other end of `flow`, if it is a partner's
    /// server's connection: when that connection is gone, the request may
    /// go over another one to the same partner.
    pub partner: Option<String>,
}

/// Where a request from the inside goes when no route token of ours names
/// a connection (or, `forced`, whatever the tokens name: the connection
/// they name is gone and this is another to the same partner).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    pub flow: FlowId,
    pub protocol: Protocol,
    /// The partner's domain, if `flow` is a connection to its server.
    pub partner: Option<String>,
    pub forced: bool,
}

/// What our outside-facing Record-Route entry seals.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RouteToken {
    flow: FlowId,
    protocol: Protocol,
    /// The inside's entries it hides.
    hidden: Vec<String>,
    /// The partner domain at the other end of the connection, if any.
    partner: Option<String>,
}

/// A response from the inside to a request from outside: where it goes, and
/// what the security filter needs to count it.
#[derive(Debug)]
pub struct OutwardResponse {
    pub bytes: bytes::Bytes,
    pub flow: FlowId,
    /// The client's address, as the request's token recorded it.
    pub source: Option<SocketAddr>,
    /// The account the request carried credentials for, if any.
    pub account: Option<String>,
}

/// A response from outside to a request the inside sent: back to the
/// connection it came from (if still open), with the inside's Vias.
#[derive(Debug)]
pub struct InwardResponse {
    pub bytes: bytes::Bytes,
    pub flow: FlowId,
}

/// Who sent a request from outside, for [`Topology::inward_request`].
#[derive(Debug, Clone)]
pub struct Sender {
    pub flow: FlowId,
    pub protocol: Protocol,
    pub remote: SocketAddr,
    /// `user@realm` from the request's credentials.
    pub account: Option<String>,
    /// The SHA-256 of the certificate the client presented (a device's,
    /// for the pool to judge).
    pub device: Option<[u8; 32]>,
    /// A partner's server: the domain its certificate speaks for (the
    /// request's From domain, checked) and the certificate's DNS names.
    pub partner: Option<(String, Vec<String>)>,
}

fn proto_code(p: Protocol) -> u8 {
    match p {
        Protocol::Tls => 0,
        Protocol::Wss => 1,
        Protocol::Tcp => 2,
        Protocol::Ws => 3,
        Protocol::Udp => 4,
    }
}

fn proto_of(c: u8) -> Option<Protocol> {
    Some(match c {
        0 => Protocol::Tls,
        1 => Protocol::Wss,
        2 => Protocol::Tcp,
        3 => Protocol::Ws,
        4 => Protocol::Udp,
        _ => return None,
    })
}

fn transport_param(p: Protocol) -> &'static str {
    match p {
        Protocol::Tls => "tls",
        Protocol::Wss => "wss",
        Protocol::Tcp => "tcp",
        Protocol::Ws => "ws",
        Protocol::Udp => "udp",
    }
}

/// A host and port this edge answers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    /// Lower case; an IPv6 address in brackets.
    pub host: String,
    pub port: u16,
}

impl Name {
    pub fn new(host: &str, port: u16) -> Self {
        Name {
            host: host.to_ascii_lowercase(),
            port,
        }
    }

    fn hostport(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// The edge's two faces and the pool's key.
#[derive(Debug)]
pub struct Topology {
    sealer: Sealer,
    /// What the outside is told: TLS first, then WSS (if any).
    external: Vec<(Protocol, Name)>,
    /// Every name the outside may use for this edge (the advertised ones and
    /// the listeners' addresses).
    external_names: Vec<Name>,
    /// The internal listener, as the inside reaches it.
    internal: Name,
}

/// A route entry with its SIP URI's parts we look at.
struct Entry<'a> {
    text: &'a str,
    user: Option<&'a str>,
    host: String,
    port: Option<u16>,
}

fn entries<'a, H>(
    list: impl Iterator<Item = Result<(&'a str, H), sip::ParseError>>,
    na: impl Fn(&H) -> &sip::headers::NameAddr<'a>,
) -> Result<Vec<Entry<'a>>, Refused> {
    let mut out = Vec::new();
    for e in list {
        let (text, h) = e.map_err(|_| Refused(400, "Malformed Route Header"))?;
        let (user, host, port) = match na(&h).uri {
            Uri::Sip(u) => (u.user, u.host.to_string().to_ascii_lowercase(), u.port),
            _ => (None, String::new(), None),
        };
        out.push(Entry {
            text,
            user,
            host,
            port,
        });
    }
    Ok(out)
}

fn route_entries(msg: &Message) -> Result<Vec<Entry<'_>>, Refused> {
    entries(msg.list_with_text::<Route>(), |r| &r.0)
}

fn record_route_entries(msg: &Message) -> Result<Vec<Entry<'_>>, Refused> {
    entries(msg.list_with_text::<RecordRoute>(), |r| &r.0)
        .map_err(|_| Refused(400, "Malformed Record-Route Header"))
}

/// Whether a request creates a dialog (and so is record-routed).
pub fn creates_dialog(msg: &Message, to_tag: bool) -> bool {
    !to_tag
        && matches!(
            msg.method().map(|m| m.as_str()),
            Some("INVITE" | "SUBSCRIBE" | "REFER")
        )
}

/// What the edge accepts from outside: the pool's limits less room for what
/// the edge adds going in (its Via, Record-Route and Path, the trust stamp,
/// route sets and URIs it restores), so that nothing it relays is refused by
/// the pool's parser — which would close the link every user shares.
pub fn outside_limits() -> sip::Limits {
    let d = sip::Limits::DEFAULT;
    sip::Limits {
        max_message_size: d.max_message_size - 16 * 1024,
        max_headers: d.max_headers - 16,
        max_header_line: d.max_header_line / 2,
        max_uri_len: d.max_uri_len,
        max_vias: d.max_vias - 1,
    }
}

/// What the edge accepts from the pool: the pool's limits and room for what
/// a front end adds to a client's message (its Via, Record-Route), so that
/// an inside client's largest message does not make the edge refuse it —
/// and close the link — on its way out.
pub fn inside_limits() -> sip::Limits {
    let d = sip::Limits::DEFAULT;
    sip::Limits {
        max_message_size: d.max_message_size + 16 * 1024,
        max_headers: d.max_headers + 16,
        max_header_line: d.max_header_line * 2,
        max_uri_len: d.max_uri_len,
        max_vias: d.max_vias + 4,
    }
}

/// Whether a message the edge built parses under the pool's limits (the
/// last check before anything goes in on a link).
pub fn fits_pool(bytes: &bytes::Bytes) -> bool {
    sip::parse_datagram(bytes.clone(), &sip::Limits::DEFAULT).is_ok()
}

impl Topology {
    pub fn new(
        sealer: Sealer,
        external: Vec<(Protocol, Name)>,
        mut external_names: Vec<Name>,
        internal: Name,
    ) -> Self {
        for (_, n) in &external {
            if !external_names.contains(n) {
                external_names.push(n.clone());
            }
        }
        Topology {
            sealer,
            external,
            external_names,
            internal,
        }
    }

    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    fn is_external(&self, e: &Entry<'_>) -> bool {
        self.external_names
            .iter()
            .any(|n| n.host == e.host && e.port.is_none_or(|p| p == n.port))
    }

    fn is_internal(&self, e: &Entry<'_>) -> bool {
        self.internal.host == e.host && e.port.is_none_or(|p| p == self.internal.port)
    }

    /// Whether a request from the inside is for the edge itself: no Route,
    /// and a Request-URI without a user naming its internal address (a
    /// front end's OPTIONS on a connection it opened).
    pub fn for_the_edge(&self, msg: &Message) -> bool {
        if msg.list_with_text::<Route>().next().is_some() {
            return false;
        }
        match msg.request_uri().map(Uri::parse) {
            Some(Ok(Uri::Sip(u))) if u.user.is_none() => self.is_internal(&Entry {
                text: "",
                user: None,
                host: u.host.to_string().to_ascii_lowercase(),
                port: u.port,
            }),
            _ => false,
        }
    }

    /// Our host:port facing the outside for a connection of `protocol`.
    fn external_for(&self, protocol: Protocol) -> &Name {
        self.external
            .iter()
            .find(|(p, _)| *p == protocol)
            .or_else(|| self.external.first())
            .map_or(&self.internal, |(_, n)| n)
    }

    /// Our outside-facing Record-Route entry: a Route token naming the
    /// outside connection and sealing `hidden` (route order).
    fn external_route(
        &self,
        flow: FlowId,
        protocol: Protocol,
        hidden: &[&str],
        partner: Option<&str>,
    ) -> Result<String, Refused> {
        if hidden.iter().map(|h| h.len() + 2).sum::<usize>() > MAX_HIDDEN {
            return Err(Refused(500, "Server Internal Error (Route Set Too Long)"));
        }
        let mut w = Writer::new()
            .u64(flow.0)
            .u8(proto_code(protocol))
            .texts(hidden.iter().copied());
        if let Some(d) = partner {
            w = w.text(d);
        }
        let plain = w.finish();
        let token = self
            .sealer
            .seal(Kind::Route, &plain)
            .ok_or(Refused(500, "Server Internal Error (Route Set Too Long)"))?;
        Ok(format!(
            "<sip:{token}@{};transport={};lr>",
            self.external_for(protocol).hostport(),
            transport_param(protocol)
        ))
    }

    fn internal_route(&self) -> String {
        format!("<sip:{};transport=tls;lr>", self.internal.hostport())
    }

    /// Opens our outside-facing entry's token: the connection, the hidden
    /// entries and the partner, if any. `Err` for a token that is not
    /// intact.
    fn open_route(&self, user: &str) -> Result<RouteToken, Refused> {
        let bad = Refused(403, "Forbidden (Invalid Route Token)");
        let plain = self.sealer.open(Kind::Route, user).ok_or(bad)?;
        let mut r = Reader::new(&plain);
        let flow = r.u64().ok_or(bad)?;
        let protocol = r.u8().and_then(proto_of).ok_or(bad)?;
        let hidden = r.texts().ok_or(bad)?;
        let partner = if r.done() {
            None
        } else {
            Some(r.text().filter(|d| !d.is_empty()).ok_or(bad)?.to_owned())
        };
        if !r.done() {
            return Err(bad);
        }
        Ok(RouteToken {
            flow: FlowId(flow),
            protocol,
            hidden: hidden.into_iter().map(str::to_owned).collect(),
            partner,
        })
    }

    /// A Contact entry as the outside sees it: the URI sealed, the header
    /// parameters (expires, +sip.instance, ...) kept.
    fn mask_contact(&self, c: &Contact<'_>, protocol: Protocol) -> Option<String> {
        let na = c.name_addr()?;
        let uri_text = match na.uri {
            Uri::Sip(u) => u.raw,
            _ => return None,
        };
        let params = na.params.as_str();
        let token = self.sealer.seal(Kind::Contact, uri_text.as_bytes())?;
        let display = na.display_name.map(|d| format!("{d} ")).unwrap_or_default();
        Some(format!(
            "{display}<sip:{token}@{};transport={}>{params}",
            self.external_for(protocol).hostport(),
            transport_param(protocol)
        ))
    }

    fn masked_contacts(&self, msg: &Message, protocol: Protocol) -> Option<Vec<String>> {
        let mut out = Vec::new();
        for c in msg.list::<Contact>() {
            let c = c.ok()?;
            match c {
                Contact::Wildcard => out.push("*".to_owned()),
                _ => out.push(self.mask_contact(&c, protocol)?),
            }
        }
        (!out.is_empty()).then_some(out)
    }

    /// A request from outside, for the inside: our leading Route entries
    /// popped (a Route token's hidden entries become the Route), a masked
    /// Request-URI opened, our Via, Path for a REGISTER, both Record-Route
    /// entries for a dialog-creating request, the trust header replaced.
    pub fn inward_request(
        &self,
        msg: &Message,
        to_tag: bool,
        sender: &Sender,
    ) -> Result<Inward, Refused> {
        let routes = route_entries(msg)?;
        let mut ours = 0;
        let mut expanded: Option<Vec<String>> = None;
        for e in &routes {
            if !self.is_external(e) {
                break;
            }
            ours += 1;
            if let Some(user) = e.user {
                expanded = Some(self.open_route(user)?.hidden);
            }
        }
        if routes.len() > ours {
            // Only our own entries may steer a request from outside: the
            // inside's hops come from our tokens, never from the sender.
            return Err(Refused(403, "Relaying Denied"));
        }
        let mut edit = sip::forward::Forward::new(msg)
            .remove_named(TRUST_HEADER)
            .decrement_max_forwards()
            .map_err(|_| Refused(483, "Too Many Hops"))?;
        if ours > 0 {
            edit = edit.replace(HeaderKind::Route, "Route", expanded.unwrap_or_default());
        }
        if let Some(uri) = msg.request_uri() {
            if let Ok(Uri::Sip(u)) = sip::Uri::parse(uri) {
                let host = u.host.to_string().to_ascii_lowercase();
                let e = Entry {
                    text: uri,
                    user: u.user,
                    host,
                    port: u.port,
                };
                if self.is_external(&e) {
                    if let Some(user) = e.user {
                        let plain = self
                            .sealer
                            .open(Kind::Contact, user)
                            .ok_or(Refused(404, "Not Found (Invalid Contact Token)"))?;
                        let restored = String::from_utf8(plain)
                            .map_err(|_| Refused(404, "Not Found (Invalid Contact Token)"))?;
                        edit = edit.request_uri(restored);
                    }
                }
            }
        }
        let top = msg
            .list_with_text::<Via>()
            .next()
            .and_then(Result::ok)
            .map(|(t, _)| t)
            .ok_or(Refused(400, "Malformed Via Header"))?;
        let plain = Writer::new()
            .u64(sender.flow.0)
            .u8(proto_code(sender.protocol))
            .text(&sender.remote.to_string())
            .text(sender.account.as_deref().unwrap_or(""))
            .text(top)
            .finish();
        let branch = self
            .sealer
            .seal(Kind::Inward, &plain)
            .ok_or(Refused(400, "Malformed Via Header"))?;
        edit = edit.push_via(format!(
            "SIP/2.0/TLS {};branch=z9hG4bK{branch}",
            self.internal.hostport()
        ));
        if msg.method().map(|m| m.as_str()) == Some("REGISTER") {
            let plain = Writer::new()
                .u64(sender.flow.0)
                .u8(proto_code(sender.protocol))
                .finish();
            let token = self
                .sealer
                .seal(Kind::Path, &plain)
                .ok_or(Refused(500, "Server Internal Error"))?;
            edit = edit.path(format!(
                "<sip:{token}@{};transport=tls;lr;ob>",
                self.internal.hostport()
            ));
        }
        if creates_dialog(msg, to_tag) {
            // Push order: the outside-facing entry first, so the
            // inside-facing one ends up on top.
            edit = edit
                .record_route(self.external_route(
                    sender.flow,
                    sender.protocol,
                    &[],
                    sender.partner.as_ref().map(|(d, _)| d.as_str()),
                )?)
                .record_route(self.internal_route());
        }
        let stamp = match &sender.partner {
            Some((domain, hosts)) => format!(
                "partner;domain=\"{domain}\";hosts=\"{}\";source=\"{}\"",
                hosts.join(" "),
                sender.remote
            ),
            None => match &sender.device {
                Some(fp) => format!("remote;source=\"{}\";device=\"{}\"", sender.remote, hex(fp)),
                None => format!("remote;source=\"{}\"", sender.remote),
            },
        };
        edit = edit.append(TRUST_HEADER, stamp);
        Ok(Inward {
            bytes: edit.serialize(),
        })
    }

    /// A response from the inside to a request from outside: our Via popped
    /// (its token says which connection), the inside's Record-Route entries
    /// folded into our outside-facing one, Contacts masked (not a
    /// REGISTER's: those are the user's own), our Path removed.
    pub fn outward_response(&self, msg: &Message) -> Result<OutwardResponse, Refused> {
        let bad = Refused(0, "not ours");
        let top = msg
            .list::<Via>()
            .next()
            .and_then(Result::ok)
            .and_then(|v| v.branch())
            .and_then(|b| b.strip_prefix(sip::headers::MAGIC_COOKIE))
            .ok_or(bad)?;
        let plain = self.sealer.open(Kind::Inward, top).ok_or(bad)?;
        let mut r = Reader::new(&plain);
        let flow = FlowId(r.u64().ok_or(bad)?);
        let protocol = r.u8().and_then(proto_of).ok_or(bad)?;
        let source = r.text().and_then(|s| s.parse().ok());
        let account = r.text().filter(|a| !a.is_empty()).map(str::to_owned);
        let mut edit = sip::forward::Forward::new(msg)
            .pop_via()
            .remove_named(TRUST_HEADER);
        let rr = record_route_entries(msg)?;
        if !rr.is_empty() {
            let ours = rr.iter().enumerate().find_map(|(i, e)| {
                let t = e.user.filter(|_| self.is_external(e))?;
                Some((i, self.open_route(t).ok().filter(|t| t.flow == flow)?))
            });
            let values = match ours {
                Some((i, token)) => {
                    // Entries above ours are the inside's (with our
                    // inside-facing one); the outside's route set lists
                    // them in reverse.
                    let hidden: Vec<&str> = rr[..i]
                        .iter()
                        .rev()
                        .filter(|e| !self.is_internal(e))
                        .map(|e| e.text)
                        .collect();
                    let mut v = vec![self.external_route(
                        flow,
                        protocol,
                        &hidden,
                        token.partner.as_deref(),
                    )?];
                    v.extend(rr[i + 1..].iter().map(|e| e.text.to_owned()));
                    v
                }
                // Not record-routed by us: nothing of the inside's route
                // set goes out.
                None => Vec::new(),
            };
            edit = edit.replace(HeaderKind::RecordRoute, "Record-Route", values);
        }
        let register = msg
            .typed::<sip::headers::CSeq>()
            .ok()
            .flatten()
            .is_some_and(|c| c.method.as_str() == "REGISTER");
        if register {
            let path: Vec<String> = msg
                .list_with_text::<Path>()
                .filter_map(Result::ok)
                .filter(|(_, p)| match p.uri {
                    Uri::Sip(u) => u.host.to_string().to_ascii_lowercase() != self.internal.host,
                    _ => true,
                })
                .map(|(t, _)| t.to_owned())
                .collect();
            edit = edit.replace(HeaderKind::Path, "Path", path);
        } else if let Some(masked) = self.masked_contacts(msg, protocol) {
            edit = edit.replace(HeaderKind::Contact, "Contact", masked);
        }
        Ok(OutwardResponse {
            bytes: edit.serialize(),
            flow,
            source,
            account,
        })
    }

    /// Whether a request from the inside names this edge in its first Route
    /// entry (a route token or Path): otherwise it is for a partner, whose
    /// server the edge finds itself.
    pub fn routed_here(&self, msg: &Message) -> bool {
        route_entries(msg)
            .ok()
            .and_then(|r| {
                r.first()
                    .map(|e| self.is_internal(e) || self.is_external(e))
            })
            .unwrap_or(false)
    }

    /// A request from the inside for the outside: our leading Route entries
    /// popped (their token names the outside connection), every Via
    /// replaced by ours sealing them, Record-Route entries folded into our
    /// outside-facing one, Contacts masked.
    pub fn outward_request(
        &self,
        msg: &Message,
        to_tag: bool,
        from_flow: FlowId,
        default_target: Option<Hop>,
    ) -> Result<Outward, Refused> {
        let routes = route_entries(msg)?;
        let mut ours = 0;
        let mut target: Option<(FlowId, Protocol, Option<String>)> = None;
        for e in &routes {
            let (int, ext) = (self.is_internal(e), self.is_external(e));
            if !int && !ext {
                break;
            }
            ours += 1;
            let Some(user) = e.user else { continue };
            let opened = if ext {
                self.open_route(user)
                    .map(|t| (t.flow, t.protocol, t.partner))
                    .ok()
            } else {
                self.sealer.open(Kind::Path, user).and_then(|plain| {
                    let mut r = Reader::new(&plain);
                    Some((FlowId(r.u64()?), r.u8().and_then(proto_of)?, None))
                })
            };
            target = Some(opened.ok_or(Refused(403, "Forbidden (Invalid Route Token)"))?);
        }
        let default = default_target.map(|h| (h.forced, (h.flow, h.protocol, h.partner)));
        let chosen = match default {
            Some((true, hop)) => Some(hop),
            Some((false, hop)) => target.or(Some(hop)),
            None => target,
        };
        let Some((flow, protocol, partner)) = chosen else {
            return Err(Refused(404, "Not Found (No Route Through This Edge)"));
        };
        let mut edit = sip::forward::Forward::new(msg)
            .decrement_max_forwards()
            .map_err(|_| Refused(483, "Too Many Hops"))?
            .remove_named(TRUST_HEADER);
        let rest: Vec<String> = routes[ours..].iter().map(|e| e.text.to_owned()).collect();
        edit = edit.replace(HeaderKind::Route, "Route", rest);
        let vias: Vec<&str> = msg
            .list_with_text::<Via>()
            .map(|v| v.map(|(t, _)| t))
            .collect::<Result<_, _>>()
            .map_err(|_| Refused(400, "Malformed Via Header"))?;
        if vias.iter().map(|v| v.len() + 2).sum::<usize>() > MAX_HIDDEN {
            return Err(Refused(
                500,
                "Server Internal Error (Too Many Vias to Hide)",
            ));
        }
        // The branch seals only what a CANCEL or the ACK of a failed INVITE
        // shares with its INVITE (the next hop's top Via and connection), so
        // it is the same for all three, as the UAS's matching needs; the
        // Vias below go in a parameter of their own.
        let too_many = Refused(500, "Server Internal Error (Too Many Vias to Hide)");
        let top = vias.first().copied().unwrap_or("");
        let plain = Writer::new().u64(from_flow.0).text(top).finish();
        let branch = self.sealer.seal(Kind::Outward, &plain).ok_or(too_many)?;
        let mut via = format!(
            "SIP/2.0/{} {};branch=z9hG4bK{branch}",
            protocol.via_token(),
            self.external_for(protocol).hostport()
        );
        if vias.len() > 1 {
            let plain = Writer::new().texts(vias[1..].iter().copied()).finish();
            let rest = self.sealer.seal(Kind::Vias, &plain).ok_or(too_many)?;
            via.push_str(&format!(";{VIAS_PARAM}={rest}"));
        }
        edit = edit.replace(HeaderKind::Via, "Via", vec![via]);
        let rr = record_route_entries(msg)?;
        if !rr.is_empty() || creates_dialog(msg, to_tag) {
            let hidden: Vec<&str> = rr.iter().map(|e| e.text).collect();
            edit = edit.replace(
                HeaderKind::RecordRoute,
                "Record-Route",
                vec![self.external_route(flow, protocol, &hidden, partner.as_deref())?],
            );
        }
        if let Some(masked) = self.masked_contacts(msg, protocol) {
            edit = edit.replace(HeaderKind::Contact, "Contact", masked);
        }
        Ok(Outward {
            bytes: edit.serialize(),
            flow,
            partner,
        })
    }

    /// A response from outside to a request the inside sent: the inside's
    /// Vias back in place of ours, our outside-facing Record-Route entry
    /// unfolded into the entries it hid (after ours, both plain, so the
    /// inside's route set reaches the outside connection).
    pub fn inward_response(&self, msg: &Message) -> Result<InwardResponse, Refused> {
        let bad = Refused(0, "not ours");
        // The request went out with our Via alone: an answer with more is
        // not a faithful one (and must not grow the inside's Vias).
        let mut all = msg.list::<Via>();
        let top = all.next().and_then(Result::ok).ok_or(bad)?;
        if all.next().is_some() {
            return Err(bad);
        }
        let branch = top
            .branch()
            .and_then(|b| b.strip_prefix(sip::headers::MAGIC_COOKIE))
            .ok_or(bad)?;
        let plain = self.sealer.open(Kind::Outward, branch).ok_or(bad)?;
        let mut r = Reader::new(&plain);
        let flow = FlowId(r.u64().ok_or(bad)?);
        let mut vias = vec![r.text().ok_or(bad)?.to_owned()];
        if let Some(rest) = top.params.get(VIAS_PARAM).flatten() {
            let plain = self.sealer.open(Kind::Vias, rest).ok_or(bad)?;
            let mut r = Reader::new(&plain);
            vias.extend(r.texts().ok_or(bad)?.into_iter().map(str::to_owned));
        }
        let mut edit = sip::forward::Forward::new(msg)
            .replace(HeaderKind::Via, "Via", vias)
            .remove_named(TRUST_HEADER);
        let rr = record_route_entries(msg)?;
        if rr.iter().any(|e| self.is_external(e)) {
            let mut values = Vec::new();
            for e in &rr {
                match e.user.filter(|_| self.is_external(e)) {
                    Some(user) => {
                        let t = self.open_route(user).map_err(|_| bad)?;
                        values.push(self.external_route(
                            t.flow,
                            t.protocol,
                            &[],
                            t.partner.as_deref(),
                        )?);
                        values.push(self.internal_route());
                        values.extend(t.hidden);
                    }
                    None => values.push(e.text.to_owned()),
                }
            }
            edit = edit.replace(HeaderKind::RecordRoute, "Record-Route", values);
        }
        Ok(InwardResponse {
            bytes: edit.serialize(),
            flow,
        })
    }
}

#[cfg(test)]
#[path = "topology_tests.rs"]
mod tests;

/// Lower-case hex.
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
