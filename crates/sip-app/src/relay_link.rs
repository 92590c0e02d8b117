//! The SIP core's side of the media relay (`relay`): it answers the
//! relay's questions about users — the long-term key of a SIP user is
//! their digest secret, under the same lockout filter and authentication
//! policy as a SIP sign-in, so the relay is no way around either — and it
//! tells the relay which calls it is relaying and which addresses their
//! session descriptions name, the only peers a permission is granted to.

use std::net::IpAddr;
use std::time::Instant;

use auth::lockout::Gate;
use relay::serve::{Ask, KeyAnswer};
use sip::Message;

use super::Core;
use crate::unix_now;

/// The addresses named by the session descriptions in `msg`'s body.
fn described_addresses(msg: &Message, content_type: &str) -> Option<Vec<IpAddr>> {
    relay::calls::addresses_in_body(content_type, msg.body())
}

impl<S: store::Store> Core<S> {
    /// Answers the relay.
    pub(crate) fn relay_ask(&mut self, ask: Ask) {
        match ask {
            Ask::Key {
                username,
                source,
                reply,
                ..
            } => {
                let _ = reply.send(self.relay_key(&username, source));
            }
            // Web sessions are the store's: the server answers them; one
            // that reaches the core is not taken as signed in.
            Ask::Session { reply, .. } => {
                let _ = reply.send(false);
            }
            // Only an edge's relay asks about calls (the front end's table
            // is the pool's own).
            Ask::Calls { reply, .. } => {
                let _ = reply.send(());
            }
            Ask::Outcome { aor, source, ok } => {
                let now = u64::try_from(unix_now()).unwrap_or(0);
                if ok {
                    self.filter.success(&aor, source, now);
                } else {
                    self.failed_from(&aor, source, now);
                }
            }
        }
    }

    /// An edge's relay asking for a user's key with the request that
    /// needs it (`relay::pool_key`): the same lockout filter and policies
    /// as this server's own relay, remote access as for SIP through an
    /// edge, and a key only for a request it signed — the outcome counted
    /// here, as a SIP sign-in through the edge is. `Err`: a question that
    /// does not read.
    pub(crate) fn relay_key_for_edge(&mut self, body: &[u8]) -> Result<KeyAnswer, &'static str> {
        use relay::auth::Proof;
        use relay::pool_key::REFUSALS;
        let q = relay::pool_key::Question::parse(body)?;
        let now = u64::try_from(unix_now()).unwrap_or(0);
        match self.relay_key(&q.username, q.source) {
            KeyAnswer::Key {
                aor,
                md5,
                sha256,
                md5_allowed,
            } => {
                let proof = relay::auth::proof(
                    &q.request,
                    &q.username,
                    &self.cfg.domain,
                    &md5,
                    &sha256,
                    md5_allowed,
                );
                match proof {
                    Proof::Holds => {
                        self.filter.success(&aor, q.source, now);
                        if !crate::policy_set::user_remote_access(&self.policies, &aor) {
                            return Ok(KeyAnswer::Refused(REFUSALS[2]));
                        }
                        Ok(KeyAnswer::Key {
                            aor,
                            md5,
                            sha256,
                            md5_allowed,
                        })
                    }
                    Proof::Fails => {
                        self.failed_from(&aor, q.source, now);
                        Ok(KeyAnswer::Unknown { aor })
                    }
                    Proof::Md5NotAllowed => Ok(KeyAnswer::Refused(REFUSALS[3])),
                    Proof::Malformed(why) => Err(why),
                }
            }
            KeyAnswer::Unknown { aor } => {
                self.failed_from(&aor, q.source, now);
                Ok(KeyAnswer::Unknown { aor })
            }
            refused => Ok(refused),
        }
    }

    fn relay_key(&self, username: &str, source: IpAddr) -> KeyAnswer {
        let now = u64::try_from(unix_now()).unwrap_or(0);
        // A TURN user name is the SIP digest user name: the AOR's user part.
        if username.is_empty() || username.contains(['@', ':']) || username.len() > 256 {
            return KeyAnswer::Unknown {
                aor: format!("sip:?@{}", self.cfg.domain),
            };
        }
        let aor = format!("sip:{username}@{}", self.cfg.domain);
        if !crate::policy_set::any_digest_allowed(&self.policies, &aor) {
            return KeyAnswer::Refused(relay::pool_key::REFUSALS[0]);
        }
        if let Gate::Refuse { .. } = self.filter.check(&aor, source, now) {
            return KeyAnswer::Refused(relay::pool_key::REFUSALS[1]);
        }
        match self.users.get(&aor).filter(|u| u.enabled) {
            Some(u) => KeyAnswer::Key {
                md5_allowed: crate::policy_set::digest_allowed(
                    &self.policies,
                    &aor,
                    auth::digest::Algorithm::Md5,
                ),
                md5: u.secrets.md5,
                sha256: u.secrets.sha256,
                aor,
            },
            None => KeyAnswer::Unknown { aor },
        }
    }

    /// A request whose session descriptions name `addresses` is being
    /// relayed in call `msg`'s Call-ID: they become that sender's (its
    /// From tag) in the relay's table. `parties`: our users in it.
    pub(crate) fn relay_described(&self, msg: &Message, parties: &[&str], addresses: &[IpAddr]) {
        let Some(control) = &self.relay else {
            return;
        };
        let (Some(call_id), Some(tag)) = (call_id(msg), tag(msg, sip::HeaderKind::From)) else {
            return;
        };
        // The request's sender described its own end.
        let owner = self.owner(
            msg.typed::<sip::headers::From>()
                .ok()
                .flatten()
                .map(|f| f.0),
        );
        control
            .calls
            .described_by(call_id, tag, &owner, parties, addresses, Instant::now());
    }

    /// A response to an INVITE (or UPDATE, PRACK) passing upstream: its
    /// session description's addresses become the answerer's (its To
    /// tag); a 2xx to an INVITE marks the call answered.
    pub(crate) fn relay_note_response(&self, resp: &Message, status: u16, invite: bool) {
        let Some(control) = &self.relay else {
            return;
        };
        let Some(call_id) = call_id(resp) else {
            return;
        };
        if invite && (200..300).contains(&status) {
            control.calls.answered(call_id, Instant::now());
        }
        let ct = crate::files::content_type_of(resp);
        let (Some(addresses), Some(tag)) = (
            described_addresses(resp, &ct),
            tag(resp, sip::HeaderKind::To),
        ) else {
            return;
        };
        // The answerer (To) described its own end.
        let owner = self.owner(resp.typed::<sip::headers::To>().ok().flatten().map(|t| t.0));
        control
            .calls
            .described_by(call_id, tag, &owner, &[], &addresses, Instant::now());
    }

    /// An ACK carrying a session description (the answer to an offer made
    /// in a 2xx, where the media policy lets a call go without an offer
    /// in its INVITE): its addresses become the caller's, as an offer's.
    pub(crate) fn relay_note_ack(&self, msg: &Message, f: &sip::RequestFields<'_>) {
        if self.relay.is_none() || msg.body().is_empty() {
            return;
        }
        let ct = crate::files::content_type_of(msg);
        let Some(addresses) = described_addresses(msg, &ct) else {
            return;
        };
        let parties: Vec<String> = [&f.from, &f.to]
            .into_iter()
            .filter_map(|p| self.our_party(p))
            .collect();
        let parties: Vec<&str> = parties.iter().map(String::as_str).collect();
        self.relay_described(msg, &parties, &addresses);
    }

    /// The user of ours `party` is (empty: none, or not ours), as the
    /// calls table records who sent a session description.
    fn owner(&self, party: Option<sip::headers::NameAddr<'_>>) -> String {
        party.and_then(|p| self.our_party(&p)).unwrap_or_default()
    }

    /// The call `msg` belongs to ended (BYE, CANCEL).
    pub(crate) fn relay_call_ended(&self, msg: &Message) {
        if let (Some(control), Some(call_id)) = (&self.relay, call_id(msg)) {
            control.calls.ended(call_id);
        }
    }

    /// An INVITE in call `msg` got no 2xx: the call ends unless it had
    /// been answered before (a refused re-INVITE).
    pub(crate) fn relay_call_unanswered(&self, msg: &Message) {
        if let (Some(control), Some(call_id)) = (&self.relay, call_id(msg)) {
            control.calls.unanswered(call_id);
        }
    }

    /// The calls of the users a paired edge's relay asks about (an edge
    /// records only the calls it carries): per user, the addresses the
    /// other ends named (`relay::calls::Calls::views_of`).
    pub(crate) fn relay_calls_for_edge(&self, body: &[u8]) -> Result<String, &'static str> {
        let users = relay::pool_key::parse_calls_question(body)?;
        let calls = &self.relay_control.calls;
        let mut answer = Vec::new();
        for u in users {
            for (id, addresses) in calls.views_of(&u, relay::pool_key::MAX_CALLS_PER_USER) {
                answer.push((u.clone(), id, addresses));
            }
        }
        Ok(relay::pool_key::encode_calls_answer(&answer))
    }

    /// `aor`'s relay allocations end (disabled, removed, a new password,
    /// signed out everywhere).
    pub(crate) fn relay_revoke(&mut self, aor: &str) {
        // This server's relay, and the edges' in the snapshots they fetch.
        self.relay_control.revoke(aor);
    }
}

fn call_id(msg: &Message) -> Option<&str> {
    msg.header(sip::HeaderKind::CallId).map(|h| h.value.trim())
}

/// The `tag` parameter of `msg`'s From or To header.
fn tag(msg: &Message, kind: sip::HeaderKind) -> Option<&str> {
    let v = msg.header(kind)?.value;
    // The parameters after the URI's closing `>` (or the whole value
    // without one): `;tag=` is a header parameter, not the URI's.
    let params = v.rfind('>').map_or(v, |i| &v[i..]);
    params.split(';').skip(1).find_map(|p| {
        let (k, val) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case("tag").then(|| val.trim())
    })
}
