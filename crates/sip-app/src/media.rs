//! Encrypted media, enforced where the proxy sees it: every session
//! description in an INVITE, re-INVITE, UPDATE or PRACK it relays is read
//! (`sdp`, strictly) and every stream must be SRTP keyed by DTLS-SRTP, or
//! by SDES when the signalling is TLS on the hop it came in on and on
//! every hop it goes out on (SDES keys travel in the SDP). An INVITE —
//! opening a call or inside one — must carry its offer (with one in the
//! 2xx, the answer would come in the ACK, which cannot be refused). Anything else is
//! answered 488 Not Acceptable Here with a Warning that says why, and the
//! callee never sees it; answers to a call's offer are judged by
//! `media_answer`. Plain media passes only where the media policy of every
//! user of ours in the call says `optional`.

use std::sync::atomic::Ordering::Relaxed;

use sip_transport::Protocol;

use super::{files::content_type_of, policy_set, Core, Req};

/// Whether signalling over `p` keeps SDES keys from the network.
pub(crate) fn secure(p: Protocol) -> bool {
    matches!(p, Protocol::Tls | Protocol::Wss)
}

impl<S: store::Store> Core<S> {
    /// Whether the media policy lets `r`'s session descriptions through,
    /// for the users of ours among `parties` (none: the global policy),
    /// the request going on over hops that are all TLS (`out_secure`).
    /// `false`: answered 488 (or 400 for SDP that cannot be read). What
    /// passes is told to the media relay (the addresses it may relay to).
    pub(crate) async fn media_allowed(
        &mut self,
        r: &Req<'_>,
        parties: &[&str],
        out_secure: bool,
    ) -> bool {
        match self.media_judged(r, parties, out_secure).await {
            Err(()) => false,
            Ok(None) => true,
            Ok(Some(addresses)) => {
                self.relay_described(r.msg, parties, &addresses);
                true
            }
        }
    }

    /// The judgement of [`Self::media_allowed`], each body read once:
    /// `Err` refused (answered); `Ok(None)` no session description;
    /// `Ok(Some(addresses))` the media addresses the descriptions name.
    async fn media_judged(
        &mut self,
        r: &Req<'_>,
        parties: &[&str],
        out_secure: bool,
    ) -> Result<Option<Vec<std::net::IpAddr>>, ()> {
        let body = r.msg.body();
        let invite = r.f.method == sip::Method::Invite;
        if body.is_empty() && !invite {
            return Ok(None);
        }
        let required = self.media_required(parties);
        let content_type = content_type_of(r.msg);
        let bodies = content::offers::sdp_bodies(&content_type, body);
        if bodies.is_empty() {
            if required && invite {
                // The offer would come in the 2xx and its answer in the ACK,
                // which nothing answers: it could not be refused.
                let what = if r.f.to.tag().is_none() {
                    "a call must offer its media in the INVITE"
                } else {
                    "a re-INVITE must carry its offer"
                };
                self.refuse_media(
                    r,
                    488,
                    "Not Acceptable Here (No SDP Offer)",
                    format!("{what} where media must be encrypted: the answer to an offer made in the 200 would come in the ACK, which cannot be refused"),
                )
                .await;
                return Err(());
            }
            return Ok(None);
        }
        let secure_hops = secure(r.src.protocol) && out_secure;
        match judge(&bodies, required, secure_hops) {
            Ok(addresses) => Ok(Some(addresses)),
            Err((status, reason, detail)) => {
                self.refuse_media(r, status, reason, detail).await;
                Err(())
            }
        }
    }

    /// Whether media must be encrypted in a call with `parties` (our
    /// users in it; none: the global policy): the strictest policy wins.
    pub(crate) fn media_required(&self, parties: &[&str]) -> bool {
        if parties.iter().all(|p| p.is_empty()) {
            policy_set::media_encryption_required(&self.policies, "")
        } else {
            parties
                .iter()
                .filter(|p| !p.is_empty())
                .any(|p| policy_set::media_encryption_required(&self.policies, p))
        }
    }

    async fn refuse_media(
        &mut self,
        r: &Req<'_>,
        status: u16,
        reason: &'static str,
        detail: String,
    ) {
        self.metrics.media_refused.fetch_add(1, Relaxed);
        self.refuse_with_warning(
            r,
            "the media policy refused a session description",
            status,
            reason,
            &detail,
        )
        .await;
    }
}

/// A refusal: status, reason phrase, and why (for the Warning).
pub(crate) type Refusal = (u16, &'static str, String);

/// The media policy on session descriptions `bodies` (`required`: every
/// stream must be SRTP; `secure_hops`: the signalling is TLS on every hop
/// they cross, so SDES keys may travel in them): the media addresses
/// they name, or why they are refused.
pub(crate) fn judge(
    bodies: &[&[u8]],
    required: bool,
    secure_hops: bool,
) -> Result<Vec<std::net::IpAddr>, Refusal> {
    let mut addresses = Vec::new();
    for sdp_body in bodies {
        let s = match sdp::Session::parse(sdp_body) {
            Err(e) if required => return Err((400, "Bad Request (Malformed SDP)", e.to_string())),
            Err(_) => continue,
            Ok(s) => s,
        };
        addresses.extend(s.media_addresses().into_iter().map(relay::peer::canonical));
        if !required {
            continue;
        }
        match sdp::protection::judge(&s) {
            Err(why) => {
                return Err((
                    488,
                    "Not Acceptable Here (Media Not Encrypted)",
                    format!("{why}; media must be encrypted (SRTP by DTLS-SRTP, or SDES over TLS)"),
                ))
            }
            Ok(sum) if sum.sdes && !secure_hops => {
                return Err((
                    488,
                    "Not Acceptable Here (SDES Keys Over Plain Signalling)",
                    "SRTP keys in the SDP (a=crypto) would cross a hop that is not TLS; use TLS for signalling or DTLS-SRTP".into(),
                ))
            }
            Ok(_) => {}
        }
    }
    Ok(addresses)
}
