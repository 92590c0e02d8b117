//! The media policy on answers: the session description in a response to
//! an INVITE the proxy relays is judged as offers are (`media::judge`),
//! over the two hops it crosses (callee to here, here to caller). A
//! provisional answer that fails is not relayed: the caller gets no early
//! media from it. A 2xx that fails never reaches the caller: the callee's
//! dialog is ended here — ACK, then BYE, along the route the 2xx recorded
//! below this proxy — and the branch counts as refused with 488 and a
//! Warning, which the caller gets if no other branch answers.
//!
//! An answer in the 2xx to a re-INVITE, an UPDATE or a PRACK is judged
//! the same way: the caller gets 488 (its session stays as it was), the
//! callee a BYE (after the ACK, for a re-INVITE) along the route the
//! request took, and the relay forgets the call — the call is over (an
//! early one: the callee answers its INVITE 487), with no media in the
//! clear.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use bytes::Bytes;
use sip::headers::{Contact, Via};
use sip::{HeaderKind, Message, Uri};
use sip_transport::{Protocol, Target};
use sip_txn::{Action, Reliability};

use super::media::{judge, Refusal};
use super::{files::content_type_of, Core};

/// Answers refused are logged at a bounded rate.
static REFUSED_ANSWER: sip_transport::logging::RateLimited =
    sip_transport::logging::RateLimited::new();

/// Whether a Via's transport keeps SDES keys from the network.
fn secure_via(v: &Via<'_>) -> bool {
    v.transport.eq_ignore_ascii_case("TLS") || v.transport.eq_ignore_ascii_case("WSS")
}

/// The protocol a Via's transport token names.
fn protocol_of(token: &str) -> Option<Protocol> {
    [
        Protocol::Udp,
        Protocol::Tcp,
        Protocol::Tls,
        Protocol::Ws,
        Protocol::Wss,
    ]
    .into_iter()
    .find(|p| p.via_token().eq_ignore_ascii_case(token))
}

impl<S: store::Store> Core<S> {
    /// Why the media policy refuses the answer `resp` carries, a response
    /// to `req` (the INVITE as this proxy sent it on the branch: its top Via
    /// is ours, on the callee's hop; the next is the caller's hop). `None`:
    /// it passes, or carries no session description.
    pub(crate) fn answer_refused(&self, req: &Message, resp: &Message) -> Option<Refusal> {
        let body = resp.body();
        if body.is_empty() {
            return None;
        }
        let content_type = content_type_of(resp);
        let bodies = content::offers::sdp_bodies(&content_type, body);
        if bodies.is_empty() {
            return None;
        }
        let from = req.typed::<sip::headers::From>().ok().flatten();
        let to = req.typed::<sip::headers::To>().ok().flatten();
        let parties: Vec<String> = [from.map(|f| f.0), to.map(|t| t.0)]
            .into_iter()
            .flatten()
            .filter_map(|na| self.our_party(&na))
            .collect();
        let parties: Vec<&str> = parties.iter().map(String::as_str).collect();
        let required = self.media_required(&parties);
        let vias: Vec<Via> = req.list::<Via>().take(2).filter_map(Result::ok).collect();
        let secure_hops = vias.len() == 2 && vias.iter().all(secure_via);
        judge(&bodies, required, secure_hops).err()
    }

    /// A 2xx to branch request `req` (sent to `target`) whose answer the
    /// policy refused: the dialog it made at the callee is ended (ACK and
    /// BYE), and the 488 for upstream is returned, made from the 2xx as it
    /// would have gone up (`upstream`).
    pub(crate) fn refuse_answer(
        &mut self,
        req: &Message,
        resp: &Message,
        upstream: &Bytes,
        (target, rel): (Target, Reliability),
        (status, reason, detail): Refusal,
    ) -> Option<Bytes> {
        self.metrics.media_refused.fetch_add(1, Relaxed);
        let text = crate::refusals::warning_text(&detail);
        if let Some(suppressed) = REFUSED_ANSWER.allow() {
            let call_id = resp.header(HeaderKind::CallId).map_or("", |h| h.value);
            tracing::warn!(call_id, why = %text, suppressed, "the media policy refused a call's answer: the callee's dialog ended, the caller told {status}");
        }
        self.end_dialog_at_callee(req, resp, target, rel);
        let up = sip::parse_datagram(upstream.clone(), &sip::Limits::DEFAULT).ok()?;
        let warning = format!("399 parapet \"{text}\"");
        Some(
            sip::build::ResponseBuilder::new(&up, status, reason)
                .header("Warning", &warning)
                .finish(),
        )
    }

    /// ACK for the 2xx `resp`, then BYE, to its Contact along the route
    /// recorded below this proxy (the 2xx's Record-Route entries that
    /// `req` did not carry, in reverse), over the branch's `target`.
    fn end_dialog_at_callee(
        &mut self,
        req: &Message,
        resp: &Message,
        target: Target,
        rel: Reliability,
    ) {
        let in_dialog = req
            .typed::<sip::headers::To>()
            .ok()
            .flatten()
            .is_some_and(|t| t.tag().is_some());
        // A call's first 2xx: its Contact, and the route the 2xx recorded
        // below this proxy (the entries the INVITE did not carry, in
        // reverse). Inside a dialog: where the re-INVITE went, by the
        // route it carried.
        let (contact, route) = if in_dialog {
            let Some(uri) = req.request_uri() else {
                return;
            };
            let route: Vec<String> = req
                .headers_of(HeaderKind::Route)
                .map(|h| h.value.to_owned())
                .collect();
            (uri.to_owned(), route)
        } else {
            let Some(contact) = resp
                .list::<Contact>()
                .next()
                .and_then(Result::ok)
                .and_then(|c| c.name_addr().map(|na| na.uri))
                .and_then(|u| match u {
                    Uri::Sip(u) => Some(u.raw.to_owned()),
                    _ => None,
                })
            else {
                tracing::debug!(
                    "a refused 2xx without a SIP Contact: its dialog cannot be ended here"
                );
                return;
            };
            let ours = crate::routing::record_routes(req).len();
            let recorded = crate::routing::record_routes(resp);
            let below = recorded.len().saturating_sub(ours);
            (contact, recorded[..below].iter().rev().cloned().collect())
        };
        let value = |k: HeaderKind| resp.header(k).map_or("", |h| h.value);
        let seq = req
            .typed::<sip::headers::CSeq>()
            .ok()
            .flatten()
            .map_or(1, |c| c.seq);
        let proto = req
            .list::<Via>()
            .next()
            .and_then(Result::ok)
            .and_then(|v| protocol_of(v.transport))
            .unwrap_or(Protocol::Tls);
        let build = |core: &mut Self, method: &str, cseq: u32| {
            let via = core.via_for(proto);
            let mut b = sip::build::RequestBuilder::new(method, &contact)
                .header("Via", &via)
                .header("Max-Forwards", "70")
                .header("From", value(HeaderKind::From))
                .header("To", value(HeaderKind::To))
                .header("Call-ID", value(HeaderKind::CallId))
                .header("CSeq", &format!("{cseq} {method}"));
            for r in &route {
                b = b.header("Route", r);
            }
            b.finish()
        };
        // A 2xx to INVITE is ACKed first (UPDATE's and PRACK's are not).
        if req.method() == Some(sip::Method::Invite) {
            let ack = build(self, "ACK", seq);
            self.out.push(Action::Send {
                dest: target,
                bytes: ack,
            });
        }
        let bye = build(self, "BYE", seq.saturating_add(1));
        match sip::parse_datagram(bye, &sip::Limits::DEFAULT) {
            Ok(bye) => {
                if let Err(e) =
                    self.txn
                        .send_request(bye, target, rel, Instant::now(), &mut self.out)
                {
                    tracing::debug!(?e, "BYE for a refused answer not sent");
                }
            }
            Err(e) => tracing::debug!(?e, "BYE for a refused answer did not build"),
        }
    }
}
