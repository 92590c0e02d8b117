//! Route processing before a request is handled (RFC 3261 §16.3 step 4 and
//! §16.4): loop detection, requests from strict routers, and Route entries
//! that name this server on requests outside a dialog.

use std::hash::{BuildHasher, Hash, Hasher};

use bytes::Bytes;
use sip::forward::Forward;
use sip::headers::{ProxyRequire, Route, Via};
use sip::{Message, RequestFields, Uri};

use super::Core;

/// How a request's Route set reads from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RouteSet {
    /// No Route entries beyond `ours` leading ones that name this server.
    Ours(usize),
    /// A Route entry names another host: relaying beyond this server is not
    /// offered (until federation).
    Elsewhere,
    /// A Route value does not parse.
    Malformed,
}

impl<S: store::Store> Core<S> {
    /// The loop-detection hash carried in the branch of a request this server
    /// forwards (§16.6 step 8): over what identifies the request as received
    /// (Request-URI, From and To tags, Call-ID, CSeq number, Proxy-Require) and
    /// the branch of the Via that was on top when it arrived. Keyed per process.
    pub(crate) fn loop_hash(
        &self,
        msg: &Message,
        f: &RequestFields<'_>,
        top_branch: Option<&str>,
    ) -> u64 {
        let mut h = self.loop_keys.build_hasher();
        (
            msg.request_uri().unwrap_or(""),
            f.from.tag(),
            f.to.tag(),
            f.call_id,
            f.cseq.seq,
            top_branch,
        )
            .hash(&mut h);
        for p in msg.list::<ProxyRequire>().filter_map(Result::ok) {
            p.0.hash(&mut h);
        }
        h.finish()
    }

    /// Whether the request has been here before and comes back unchanged: a
    /// Via of ours whose loop hash matches the request as it is now, computed
    /// with the Via below ours as the one that was on top then (§16.3 step 4).
    /// A request that comes back changed (another Request-URI) is spiralling
    /// and goes on. Costs one pass over the Vias unless one of them is ours.
    pub(crate) fn looped(&self, msg: &Message, f: &RequestFields<'_>) -> bool {
        let mut branches = msg
            .list::<Via>()
            .map(|v| v.ok().and_then(|v| v.branch()))
            .peekable();
        while let Some(b) = branches.next() {
            let Some(hash) = b
                .and_then(|b| b.strip_prefix(self.branch_prefix.as_str()))
                .and_then(|rest| rest.split_once('.'))
                .and_then(|(_, h)| u64::from_str_radix(h, 16).ok())
            else {
                continue;
            };
            let below = branches.peek().copied().flatten();
            if self.loop_hash(msg, f, below) == hash {
                return true;
            }
        }
        false
    }

    /// Classifies the Route set of a request outside a dialog. A client with
    /// this server as its outbound proxy preloads a Route naming it; that entry
    /// is removed before forwarding (loose routing, §16.4).
    pub(crate) fn initial_routes(&self, msg: &Message) -> RouteSet {
        let mut ours = 0;
        for route in msg.list::<Route>() {
            let Ok(route) = route else {
                return RouteSet::Malformed;
            };
            match route.uri {
                Uri::Sip(u) if self.is_our_route(&u) => ours += 1,
                _ => return RouteSet::Elsewhere,
            }
        }
        RouteSet::Ours(ours)
    }

    /// A request from a strict router (RFC 2543) carries our Record-Route URI
    /// as its Request-URI and the remote target as its last Route entry
    /// (§16.4). Returns the same request in loose-routing form: the remote
    /// target as Request-URI, our URI back on top of the Route set (where
    /// normal processing pops it) and the last Route entry gone.
    pub(crate) fn loosen_strict_route(
        &self,
        msg: &Message,
        f: &RequestFields<'_>,
    ) -> Option<Bytes> {
        let Uri::Sip(ruri) = f.request_uri else {
            return None;
        };
        if ruri.params.get("lr").is_none() || !self.is_our_route(&ruri) {
            return None;
        }
        let last = msg.list::<Route>().last()?.ok()?;
        let Uri::Sip(target) = last.uri else {
            return None;
        };
        Some(
            Forward::new(msg)
                .request_uri(target.raw)
                .routes([format!("<{}>", ruri.raw)])
                .drop_last_route()
                .serialize(),
        )
    }

    /// Whether a Route URI names this server (`crate::identity`).
    pub(crate) fn is_our_route(&self, u: &sip::uri::SipUri<'_>) -> bool {
        self.identity.names_us(u)
    }
}

/// `msg`'s Record-Route entries (SIP URIs only), each as `<uri>`, in order.
pub(crate) fn record_routes(msg: &Message) -> Vec<String> {
    msg.list::<sip::headers::RecordRoute>()
        .filter_map(Result::ok)
        .filter_map(|rr| match rr.uri {
            Uri::Sip(u) => Some(format!("<{}>", u.raw)),
            _ => None,
        })
        .collect()
}
