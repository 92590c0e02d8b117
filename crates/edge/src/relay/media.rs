//! The A/V edge: the media relay (TURN, the `relay` crate) on the
//! external side, for remote users' calls.
//!
//! The edge holds no user secret: a SIP user's key is asked of the pool
//! over a link with the Allocate that needs it (`relay::pool_key`), and
//! the pool hands it over only if that request was signed with it — under
//! the pool's lockout filter, authentication policy and remote-access
//! rule — so the edge learns the keys of the users using it and keeps each
//! only while their allocation lives. The edge's own filter counts the
//! outcomes as it does SIP sign-ins, and refuses before the pool is asked.
//!
//! Permissions are bound to calls as on a front end's relay, from the
//! signalling the edge carries: only what comes from the pool (requests
//! it sends out, responses to outside requests) is recorded, after the
//! pool's proxy judged it — a remote user's own offer names nothing a
//! permission could be granted to. A call the edge did not carry (its
//! user signed in through another edge, or inside) is asked of the pool
//! when a permission needs it (`relay::pool_key`'s calls question): the
//! pool's answer is held for that user and asked again twice a second
//! while it lasts, so that a call ended elsewhere ends here within a
//! second, and one the pool no longer answers for lapses in ten. Users whose access ended reach the
//! relay in the pool's snapshot, fetched twice a second, and end their
//! allocations at once.

use std::ops::RangeInclusive;

use ::relay::pool_key::{self, Question, REFUSALS};
use ::relay::serve::{Ask, KeyAnswer};
use tokio::sync::oneshot;

use super::snapshot::top_branch;
use super::*;

/// How the A/V edge's relay runs.
#[derive(Debug, Clone)]
pub struct MediaRelay {
    pub listen: Vec<(::relay::engine::Transport, SocketAddr)>,
    /// Where relayed sockets are bound.
    pub address: IpAddr,
    /// What clients and peers are told.
    pub external: IpAddr,
    pub ports: RangeInclusive<u16>,
    pub limits: ::relay::engine::Limits,
    pub source_rate: (u32, u32),
    /// The machine's addresses (a wildcard UDP listener binds each).
    pub interfaces: Vec<IpAddr>,
}

/// The branch prefix of the relay's questions to the pool.
const QUESTION_BRANCH: &str = "z9hG4bKprly";
/// Questions waiting for the pool's answer at once; beyond, the Allocate
/// goes unanswered (its client retransmits).
const MAX_QUESTIONS: usize = 256;
/// How long an answer is waited for.
const KEY_TIMEOUT: Duration = Duration::from_secs(5);
/// A revocation in the snapshot also ends allocations made this long
/// after the pool's time for it (the two clocks may differ).
const CLOCK_MARGIN: Duration = Duration::from_secs(2);

/// Who waits for the pool's answer.
enum Waiting {
    Key(oneshot::Sender<KeyAnswer>),
    Session(oneshot::Sender<bool>),
    /// A calls question about `users`; `reply` for the relay's request
    /// that asked (none: asked again by the edge itself).
    Calls {
        users: Vec<String>,
        reply: Option<oneshot::Sender<()>>,
    },
    /// A notice of calls the relay carried media for (the answer says
    /// nothing more).
    Relayed,
}

/// The running relay, as the edge's task sees it.
pub(super) struct Media {
    control: Arc<::relay::Control>,
    /// Its URIs (`turn:`, `turns:`), reported to the pool, which hands
    /// them to browsers.
    pub(super) listeners: Vec<String>,
    pending: HashMap<u64, (Waiting, Instant)>,
    seq: u64,
    /// Where the last round of calls questions started (see
    /// `refresh_pool_calls`).
    calls_round: usize,
}

/// Starts the relay on the external side: `tls` its TLS listener's (the
/// external certificate, for `name`), web credentials checked with the
/// secret derived from the pool's topology key `pool_key`.
pub(super) async fn start(
    cfg: &MediaRelay,
    (tls, name): (Arc<rustls::ServerConfig>, &str),
    realm: &str,
    pool_key: &[u8; 32],
    metrics: &crate::observe::Metrics,
) -> Result<(Media, mpsc::Receiver<Ask>), String> {
    let settings = ::relay::serve::Settings {
        listen: cfg.listen.clone(),
        tls: Some(tls),
        relay_ip: cfg.address,
        external_ip: cfg.external,
        ports: cfg.ports.clone(),
        realm: realm.to_owned(),
        limits: cfg.limits.clone(),
        source_rate: cfg.source_rate,
        web_secret: Some(Arc::new(::relay::credentials::secret_from_pool_key(
            pool_key,
        ))),
        interfaces: cfg.interfaces.clone(),
        ask_calls: true,
    };
    let control = Arc::new(::relay::Control::new());
    // The calls whose media it carries are told to the pool, whose call
    // records say so.
    control.calls.report_relayed();
    let relay_metrics = Arc::new(::relay::metrics::Metrics::default());
    let _ = metrics.relay.set(relay_metrics.clone());
    let (asks, asked) = mpsc::channel(MAX_QUESTIONS);
    let handle = ::relay::serve::start(settings, control.clone(), relay_metrics, asks)
        .await
        .map_err(|e| format!("cannot start the media relay: {e} (relay.listen)"))?;
    for (t, a) in &handle.local {
        tracing::info!(side = "external", transport = t.name(), addr = %a, relayed_on = %cfg.address, "media relay listening");
    }
    let media = Media {
        control,
        listeners: {
            let mut uris: Vec<String> = Vec::new();
            for (t, a) in &handle.local {
                let u = relay_uri(*t, cfg.external, a.port(), name);
                if !uris.contains(&u) {
                    uris.push(u);
                }
            }
            uris
        },
        pending: HashMap::new(),
        seq: 0,
        calls_round: 0,
    };
    Ok((media, asked))
}

/// The URI browsers reach a listener by: its port on the advertised
/// address, or for TLS on the name the external certificate carries.
fn relay_uri(t: ::relay::engine::Transport, external: IpAddr, port: u16, name: &str) -> String {
    use ::relay::engine::Transport;
    let host = match external {
        IpAddr::V6(a) => format!("[{a}]"),
        a => a.to_string(),
    };
    match t {
        Transport::Udp => format!("turn:{host}:{port}?transport=udp"),
        Transport::Tcp => format!("turn:{host}:{port}?transport=tcp"),
        Transport::Tls => format!("turns:{name}:{port}?transport=tcp"),
    }
}

/// The next question of the relay, if one runs.
pub(super) async fn next_ask(rx: &mut Option<mpsc::Receiver<Ask>>) -> Option<Ask> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

/// `sip:user@domain` for a party of ours (`None`: another domain's).
fn ours(party: &sip::headers::NameAddr<'_>, domain: &str) -> Option<String> {
    let sip::Uri::Sip(u) = &party.uri else {
        return None;
    };
    let user = u.user?;
    u.host
        .to_string()
        .eq_ignore_ascii_case(domain)
        .then(|| format!("sip:{user}@{domain}"))
}

/// The addresses a message's session descriptions name (`None`: it
/// carries none): an `application/sdp` body, or the `application/sdp`
/// parts of a `multipart/*` one, as the pool's proxy read them.
fn described(msg: &Message) -> Option<Vec<IpAddr>> {
    let ct = msg.header(HeaderKind::ContentType)?.value;
    ::relay::calls::addresses_in_body(ct, msg.body())
}

impl Edge {
    /// Answers the relay's question (a user's key through the pool) or
    /// counts what it reports.
    pub(super) async fn on_relay_ask(&mut self, ask: Ask) {
        match ask {
            Ask::Key {
                username,
                source,
                request,
                reply,
            } => self.ask_key(username, source, request, reply).await,
            Ask::Outcome { aor, source, ok } => {
                let now = unix_now();
                if ok {
                    self.metrics.sign_ins.fetch_add(1, Relaxed);
                    self.filter.success(&aor, source, now);
                } else {
                    self.metrics.sign_in_failures.fetch_add(1, Relaxed);
                    for e in self.filter.failure(&aor, source, now) {
                        self.metrics.lockouts.fetch_add(1, Relaxed);
                        tracing::warn!(?e, "lockout at the edge (media relay)");
                    }
                }
            }
            // Web credentials: their session is the pool's to know.
            Ask::Session {
                aor,
                session,
                reply,
            } => {
                let body = pool_key::SessionQuestion { aor, session }.encode();
                self.ask_pool(Waiting::Session(reply), pool_key::SESSION_TYPE, &body)
                    .await;
            }
            Ask::Calls { aor, reply } => {
                let users = vec![aor];
                let body = pool_key::encode_calls_question(&users);
                let waiting = Waiting::Calls {
                    users,
                    reply: Some(reply),
                };
                self.ask_pool(waiting, pool_key::CALLS_TYPE, &body).await;
            }
        }
    }

    /// Asks the pool again about the calls the relay holds for it (their
    /// users, [`pool_key::MAX_CALLS_USERS`] a question).
    pub(super) async fn refresh_pool_calls(&mut self) {
        let Some(media) = self.media.as_mut() else {
            return;
        };
        let users = media.control.calls.mirrored_users();
        // At most a quarter of the questions that may wait at once (key
        // questions keep their room); with more users than that, a
        // different part of them each round.
        let chunks: Vec<&[String]> = users.chunks(pool_key::MAX_CALLS_USERS).collect();
        let per_round = MAX_QUESTIONS / 4;
        let start = if chunks.len() > per_round {
            media.calls_round = media.calls_round.wrapping_add(per_round);
            media.calls_round % chunks.len()
        } else {
            0
        };
        let chunks: Vec<Vec<String>> = chunks
            .iter()
            .cycle()
            .skip(start)
            .take(chunks.len().min(per_round))
            .map(|c| c.to_vec())
            .collect();
        for chunk in &chunks {
            let body = pool_key::encode_calls_question(chunk);
            let waiting = Waiting::Calls {
                users: chunk.clone(),
                reply: None,
            };
            self.ask_pool(waiting, pool_key::CALLS_TYPE, &body).await;
        }
    }

    /// Tells the pool of calls whose media the relay carried since the
    /// last notice (a few notices a round at most; the rest next round).
    pub(super) async fn report_relayed(&mut self) {
        for _ in 0..4 {
            let Some(media) = self.media.as_ref() else {
                return;
            };
            let ids = media
                .control
                .calls
                .take_fresh_relayed(pool_key::MAX_RELAYED);
            if ids.is_empty() {
                return;
            }
            let body = pool_key::encode_relayed(&ids);
            self.ask_pool(Waiting::Relayed, pool_key::RELAYED_TYPE, &body)
                .await;
        }
    }

    async fn ask_key(
        &mut self,
        username: String,
        source: IpAddr,
        request: Vec<u8>,
        reply: oneshot::Sender<KeyAnswer>,
    ) {
        let domain = self.domain.clone();
        // The pool's user names (as for SIP through the edge): anything
        // else is no one's, answered like a wrong password.
        let possible = (1..=64).contains(&username.len())
            && username
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'~' | b'-'));
        if !possible {
            let aor = format!("sip:?@{domain}");
            let _ = reply.send(KeyAnswer::Unknown { aor });
            return;
        }
        let aor = format!("sip:{username}@{domain}");
        if let Gate::Refuse { .. } = self.filter.check(&aor, source, unix_now()) {
            self.metrics.refused_lockout.fetch_add(1, Relaxed);
            let _ = reply.send(KeyAnswer::Refused(REFUSALS[1]));
            return;
        }
        let body = Question {
            username,
            source,
            request,
        }
        .encode();
        self.ask_pool(Waiting::Key(reply), pool_key::CONTENT_TYPE, &body)
            .await;
    }

    /// Sends the pool a question of `content_type` on a link; its answer
    /// goes to `waiting`. No link, or too many waiting: no answer (the
    /// relay drops the Allocate, whose client retransmits).
    async fn ask_pool(&mut self, waiting: Waiting, content_type: &str, body: &str) {
        let Some(flow) = self.pool_flow() else {
            return;
        };
        let Some(media) = self.media.as_mut() else {
            return;
        };
        if media.pending.len() >= MAX_QUESTIONS {
            return;
        }
        media.seq += 1;
        let seq = media.seq;
        media.pending.insert(seq, (waiting, Instant::now()));
        let bytes = self.question_to_pool(flow, QUESTION_BRANCH, seq, content_type, "", Some(body));
        let _ = self.int.send(Target::Flow(flow), bytes).await;
    }

    pub(super) fn is_relay_answer(&self, msg: &Message) -> bool {
        self.media.is_some() && top_branch(msg).is_some_and(|b| b.starts_with(QUESTION_BRANCH))
    }

    /// The pool's answer to a question, to the relay that asked.
    pub(super) fn on_relay_answer(&mut self, msg: &Message) {
        let seq = top_branch(msg)
            .and_then(|b| b.strip_prefix(QUESTION_BRANCH))
            .and_then(|n| n.parse::<u64>().ok());
        let Some((waiting, _)) = seq.and_then(|s| self.media.as_mut()?.pending.remove(&s)) else {
            return;
        };
        if msg.status() != Some(200) {
            tracing::warn!(
                status = msg.status(),
                "the pool did not answer the media relay's question"
            );
            return;
        }
        let read = match waiting {
            Waiting::Key(reply) => pool_key::parse_answer(msg.body()).map(|a| {
                let _ = reply.send(a);
            }),
            Waiting::Session(reply) => pool_key::parse_live(msg.body()).map(|live| {
                let _ = reply.send(live);
            }),
            Waiting::Relayed => Ok(()),
            Waiting::Calls { users, reply } => {
                pool_key::parse_calls_answer(msg.body()).map(|calls| {
                    if let Some(media) = &self.media {
                        let now = Instant::now();
                        for u in &users {
                            let views: Vec<(String, Vec<IpAddr>)> = calls
                                .iter()
                                .filter(|(user, _, _)| user == u)
                                .map(|(_, id, a)| (id.clone(), a.clone()))
                                .collect();
                            media.control.calls.mirror(u, &views, now);
                        }
                    }
                    if let Some(r) = reply {
                        let _ = r.send(());
                    }
                })
            }
        };
        if let Err(why) = read {
            tracing::error!(why, "the pool's answer to the media relay does not read");
        }
    }

    /// Forgets key questions the pool never answered.
    pub(super) fn media_housekeeping(&mut self) {
        if let Some(media) = self.media.as_mut() {
            media
                .pending
                .retain(|_, (_, at)| at.elapsed() < KEY_TIMEOUT);
        }
    }

    /// Ends the allocations of users the pool's snapshot `s` says lost
    /// their access (applied as each snapshot arrives; one told again
    /// changes nothing).
    pub(super) fn apply_relay_revocations(&self, s: &Snapshot) {
        let Some(media) = &self.media else {
            return;
        };
        let now_ms = unix_now_ms();
        let now = Instant::now();
        for (key, at_ms) in &s.relay_revoked {
            let ago = Duration::from_millis(now_ms.saturating_sub(*at_ms));
            let at = now.checked_sub(ago).unwrap_or(now) + CLOCK_MARGIN;
            media.control.revoke_key_at(key, at, *at_ms);
        }
    }

    /// A request from the pool going out: what it tells the relay about
    /// its call.
    pub(super) fn note_outward_request(&self, msg: &Message) {
        if let Some(media) = &self.media {
            outward_request(&media.control.calls, &self.domain, msg);
        }
    }

    /// A response from the pool going out, to a remote user's request.
    pub(super) fn note_outward_response(&self, msg: &Message) {
        if let Some(media) = &self.media {
            outward_response(&media.control.calls, &self.domain, msg);
        }
    }
}

/// What a request from the pool to a remote user tells the relay (the pool
/// sent it, so it is believed): a session description's addresses become
/// the recipient's peers; BYE ends the call, CANCEL ends it unless
/// answered.
fn outward_request(calls: &::relay::calls::Calls, domain: &str, msg: &Message) {
    // Most of what the edge carries (MESSAGE, NOTIFY...) says nothing of
    // calls: not read again.
    let telling = msg.method().is_some_and(|m| {
        matches!(
            m.as_str(),
            "BYE" | "CANCEL" | "INVITE" | "UPDATE" | "PRACK" | "ACK"
        )
    });
    if !telling {
        return;
    }
    let Ok(f) = RequestFields::extract(msg) else {
        return;
    };
    match f.method.as_str() {
        "BYE" => calls.ended(f.call_id),
        "CANCEL" => calls.unanswered(f.call_id),
        "INVITE" | "UPDATE" | "PRACK" | "ACK" => {
            let (Some(addresses), Some(tag)) = (described(msg), f.from.tag()) else {
                return;
            };
            // The recipient (To, in any request of a dialog) is the
            // remote user whose allocation may reach what the sender's
            // description names.
            let party = ours(&f.to, domain).unwrap_or_default();
            calls.described(f.call_id, tag, &[&party], &addresses, Instant::now());
        }
        _ => {}
    }
}

/// What a response from the pool to a remote user's request tells the
/// relay: an answer's addresses become the requester's peers; a 2xx to
/// INVITE marks the call answered, a final refusal ends it unless
/// answered, a 2xx to BYE ends it.
fn outward_response(calls: &::relay::calls::Calls, domain: &str, msg: &Message) {
    let telling = msg
        .typed::<sip::headers::CSeq>()
        .ok()
        .flatten()
        .is_some_and(|c| matches!(c.method.as_str(), "BYE" | "INVITE" | "UPDATE" | "PRACK"));
    if !telling {
        return;
    }
    let Ok(f) = sip::ResponseFields::extract(msg) else {
        return;
    };
    let (status, method) = (f.status, f.cseq.method.as_str());
    match method {
        "BYE" if (200..300).contains(&status) => calls.ended(f.call_id),
        "INVITE" if status >= 300 => calls.unanswered(f.call_id),
        "INVITE" | "UPDATE" | "PRACK" if (101..300).contains(&status) => {
            if method == "INVITE" && status >= 200 {
                calls.answered(f.call_id, Instant::now());
            }
            let (Some(addresses), Some(tag)) = (described(msg), f.to.tag()) else {
                return;
            };
            // The request's sender (From) is the remote user.
            let party = ours(&f.from, domain).unwrap_or_default();
            calls.described(f.call_id, tag, &[&party], &addresses, Instant::now());
        }
        _ => {}
    }
}

fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::relay::calls::Calls;

    const D: &str = "example.test";

    fn parse(text: &str) -> Message {
        sip::parse_datagram(
            text.replace('\n', "\r\n").into_bytes().into(),
            &sip::Limits::DEFAULT,
        )
        .unwrap()
    }

    fn sdp(ip: &str) -> String {
        format!(
            "v=0\no=- 1 1 IN IP4 {ip}\ns=-\nc=IN IP4 {ip}\nt=0 0\nm=audio 40000 RTP/SAVP 0\n\
             a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\n"
        )
    }

    fn request(method: &str, from: &str, to: &str, to_tag: &str, body: Option<&str>) -> Message {
        request_to(
            method,
            from,
            &format!("{to}@{D}"),
            to_tag,
            body,
            "application/sdp",
        )
    }

    fn request_to(
        method: &str,
        from: &str,
        to: &str,
        to_tag: &str,
        body: Option<&str>,
        content_type: &str,
    ) -> Message {
        let (ct, body) = match body {
            Some(b) => (format!("Content-Type: {content_type}\n"), b.to_owned()),
            None => (String::new(), String::new()),
        };
        parse(&format!(
            "{method} sip:x@198.51.100.9 SIP/2.0\nVia: SIP/2.0/TLS 127.0.0.11:5061;branch=z9hG4bK1\n\
             Max-Forwards: 70\nFrom: <sip:{from}@{D}>;tag=ft\nTo: <sip:{to}>{to_tag}\n\
             Call-ID: c1\nCSeq: 1 {method}\n{ct}Content-Length: {}\n\n{body}",
            body.replace('\n', "\r\n").len()
        ))
    }

    fn response(status: u16, method: &str, from: &str, body: Option<&str>) -> Message {
        let (ct, body) = match body {
            Some(b) => ("Content-Type: application/sdp\n", b.to_owned()),
            None => ("", String::new()),
        };
        parse(&format!(
            "SIP/2.0 {status} X\nVia: SIP/2.0/TLS 127.0.0.11:5061;branch=z9hG4bK1\n\
             From: <sip:{from}@{D}>;tag=ft\nTo: <sip:bob@{D}>;tag=tt\n\
             Call-ID: c1\nCSeq: 1 {method}\n{ct}Content-Length: {}\n\n{body}",
            body.replace('\n', "\r\n").len()
        ))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_invite_from_the_pool_gives_its_recipient_the_callers_addresses_until_bye() {
        let calls = Calls::new();
        outward_request(
            &calls,
            D,
            &request("INVITE", "alice", "bob", "", Some(&sdp("203.0.113.5"))),
        );
        assert!(calls.justifies("sip:bob@example.test", ip("203.0.113.5")));
        // The sender is not the edge's to vouch for; another user, another
        // address: nothing.
        assert!(!calls.justifies("sip:alice@example.test", ip("203.0.113.5")));
        assert!(!calls.justifies("sip:bob@example.test", ip("203.0.113.6")));
        outward_request(&calls, D, &request("BYE", "alice", "bob", ";tag=tt", None));
        assert!(!calls.justifies("sip:bob@example.test", ip("203.0.113.5")));
    }

    #[test]
    fn an_answer_from_the_pool_gives_the_caller_the_callees_addresses_until_the_call_ends() {
        let calls = Calls::new();
        // A provisional answer with SDP, then the 2xx.
        outward_response(
            &calls,
            D,
            &response(183, "INVITE", "alice", Some(&sdp("203.0.113.7"))),
        );
        assert!(calls.justifies("sip:alice@example.test", ip("203.0.113.7")));
        outward_response(
            &calls,
            D,
            &response(200, "INVITE", "alice", Some(&sdp("203.0.113.8"))),
        );
        assert!(calls.justifies("sip:alice@example.test", ip("203.0.113.8")));
        assert!(!calls.justifies("sip:alice@example.test", ip("203.0.113.7")));
        // A refused re-INVITE leaves the answered call as it was.
        outward_response(&calls, D, &response(488, "INVITE", "alice", None));
        assert!(calls.justifies("sip:alice@example.test", ip("203.0.113.8")));
        // Alice's BYE, answered 200 by the pool's side: the call ends.
        outward_response(&calls, D, &response(200, "BYE", "alice", None));
        assert!(!calls.justifies("sip:alice@example.test", ip("203.0.113.8")));
    }

    #[test]
    fn an_unanswered_call_ends_on_refusal_or_cancel_and_other_domains_get_nothing() {
        let calls = Calls::new();
        outward_response(
            &calls,
            D,
            &response(180, "INVITE", "alice", Some(&sdp("203.0.113.7"))),
        );
        outward_response(&calls, D, &response(486, "INVITE", "alice", None));
        assert!(calls.is_empty());
        outward_request(
            &calls,
            D,
            &request("INVITE", "alice", "bob", "", Some(&sdp("203.0.113.5"))),
        );
        outward_request(&calls, D, &request("CANCEL", "alice", "bob", "", None));
        assert!(calls.is_empty());
        // A recipient of another domain is no user of ours: not recorded.
        let offer = sdp("203.0.113.5");
        let other = request_to(
            "INVITE",
            "alice",
            "bob@partner.test",
            "",
            Some(&offer),
            "application/sdp",
        );
        outward_request(&calls, D, &other);
        assert!(calls.is_empty());
        // Bodies that are not application/sdp grant nothing.
        let text = request_to(
            "INVITE",
            "alice",
            "bob@example.test",
            "",
            Some(&offer),
            "text/plain",
        );
        outward_request(&calls, D, &text);
        assert!(calls.is_empty());
    }

    #[test]
    fn the_sdp_part_of_a_multipart_offer_is_read_as_the_pool_read_it() {
        let calls = Calls::new();
        let body = format!(
            "--b7\nContent-Type: application/x-private\n\nnothing\n--b7\n\
             Content-Type: application/sdp\n\n{}--b7--\n",
            sdp("203.0.113.5")
        );
        let offer = request_to(
            "INVITE",
            "alice",
            "bob@example.test",
            "",
            Some(&body),
            "multipart/mixed;boundary=b7",
        );
        outward_request(&calls, D, &offer);
        assert!(calls.justifies("sip:bob@example.test", ip("203.0.113.5")));
    }
}
