//! Client transactions (RFC 3261 §17.1, RFC 6026 §7.2).
//!
//! INVITE:     Calling -(1xx)-> Proceeding -(2xx)-> Accepted -(M)-> gone
//!                     -(300-699)-> Completed (ACK sent) -(D)-> gone
//!             Calling -(B)-> gone, Timeout
//! non-INVITE: Trying -(1xx)-> Proceeding -(final)-> gone (the TU drops later retransmissions as strays)
//!             Trying/Proceeding -(F)-> gone, Timeout

use std::time::{Duration, Instant};

use bytes::Bytes;
use sip::build::RequestBuilder;
use sip::ResponseFields;
use sip::{HeaderKind, Message, Method};

use crate::key::TxnKey;
use crate::layer::{Action, ClientEvent, Full, Kind, State, TimerSlot, Txn, TxnId, TxnLayer};
use crate::Reliability;

/// Why a client transaction was not started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// The table is full.
    Full,
    /// ACK is not a transaction; the TU sends it directly.
    Ack,
    /// The message is a response.
    NotARequest,
    /// The top Via has no branch: the TU must generate one.
    NoBranch,
}

/// Timer D on unreliable transports (RFC 3261: at least 32 s).
const TIMER_D: Duration = Duration::from_secs(32);

impl<D: Clone> TxnLayer<D> {
    /// Starts a client transaction for `request` (which the TU built with a fresh
    /// RFC 3261 branch in its top Via) and sends it. ACK is not a transaction:
    /// the TU sends it directly, and passing one here is refused.
    pub fn send_request(
        &mut self,
        request: Message,
        dest: D,
        reliability: Reliability,
        now: Instant,
        out: &mut Vec<Action<D>>,
    ) -> Result<TxnId, SendError> {
        let method = request.method().ok_or(SendError::NotARequest)?;
        if method == Method::Ack {
            return Err(SendError::Ack);
        }
        let branch = request
            .list::<sip::headers::Via>()
            .next()
            .and_then(Result::ok)
            .and_then(|v| v.branch().map(str::to_owned))
            .ok_or(SendError::NoBranch)?;
        let invite = method == Method::Invite;
        let bytes = request.as_bytes().clone();
        let txn = Txn {
            key: TxnKey::client(&branch, method),
            kind: if invite {
                Kind::InviteClient
            } else {
                Kind::NonInviteClient
            },
            state: if invite {
                State::Calling
            } else {
                State::Trying
            },
            reliability,
            dest: dest.clone(),
            last_out: Some(bytes.clone()),
            request: invite.then(|| Box::new(request)),
            ack: None,
            interval: self.config.t1,
            retransmit_gen: 0,
            deadline_gen: 0,
        };
        let id = self.insert(txn).map_err(|Full| SendError::Full)?;
        out.push(Action::Send { dest, bytes });
        if reliability == Reliability::Unreliable {
            self.arm(id, TimerSlot::Retransmit, now + self.config.t1);
        }
        self.arm(id, TimerSlot::Deadline, now + 64 * self.config.t1);
        Ok(id)
    }

    /// Feeds a received response.
    pub fn on_response(
        &mut self,
        msg: &Message,
        fields: &ResponseFields<'_>,
        now: Instant,
        out: &mut Vec<Action<D>>,
    ) -> ClientEvent {
        let Some(branch) = fields.top_via.branch() else {
            return ClientEvent::Stray;
        };
        let Some(id) = self.lookup(&TxnKey::client(branch, fields.cseq.method)) else {
            return ClientEvent::Stray;
        };
        let t1 = self.config.t1;
        let status = fields.status;
        let Some(t) = self.get_mut(id) else {
            return ClientEvent::Stray;
        };
        let (kind, state, r) = (t.kind, t.state, t.reliability);
        match (kind, state) {
            (Kind::InviteClient, State::Calling | State::Proceeding) => {
                self.disarm(id, TimerSlot::Retransmit);
                if status < 200 {
                    if state == State::Calling {
                        // Timer B no longer applies; the Proceeding limit does.
                        let limit = self.config.max_invite_proceeding;
                        self.arm(id, TimerSlot::Deadline, now + limit);
                    }
                    self.set_state(id, State::Proceeding);
                } else if status < 300 {
                    self.set_state(id, State::Accepted);
                    self.arm(id, TimerSlot::Deadline, now + 64 * t1);
                } else {
                    let ack = self
                        .get(id)
                        .and_then(|t| t.request.as_ref())
                        .map(|req| ack_for(req, msg));
                    if let Some(t) = self.get_mut(id) {
                        t.state = State::Completed;
                        if let Some(a) = ack {
                            out.push(Action::Send {
                                dest: t.dest.clone(),
                                bytes: a.clone(),
                            });
                            t.ack = Some(a);
                        }
                    }
                    let d = self.linger(r, TIMER_D);
                    self.arm(id, TimerSlot::Deadline, now + d);
                }
                ClientEvent::Deliver(id)
            }
            (Kind::InviteClient, State::Completed) => {
                if let Some(a) = &t.ack {
                    out.push(Action::Send {
                        dest: t.dest.clone(),
                        bytes: a.clone(),
                    });
                }
                ClientEvent::Absorbed(id)
            }
            (Kind::InviteClient, State::Accepted) if (200..300).contains(&status) => {
                ClientEvent::Deliver(id)
            }
            (Kind::NonInviteClient, State::Trying | State::Proceeding) => {
                if status < 200 {
                    t.state = State::Proceeding;
                } else {
                    // Completed would only absorb retransmissions of this
                    // response for timer K (5 s over UDP), holding a slot of
                    // the table; a retransmission arriving after the
                    // transaction ended is a stray response, which the TU
                    // drops just the same. So it ends at once.
                    self.terminate(id, out);
                }
                ClientEvent::Deliver(id)
            }
            _ => ClientEvent::Absorbed(id),
        }
    }

    fn set_state(&mut self, id: TxnId, state: State) {
        if let Some(t) = self.get_mut(id) {
            t.state = state;
        }
    }

    pub(crate) fn client_timer(
        &mut self,
        id: TxnId,
        slot: TimerSlot,
        now: Instant,
        out: &mut Vec<Action<D>>,
    ) {
        let t2 = self.config.t2;
        let Some(t) = self.get_mut(id) else { return };
        match (slot, t.kind, t.state) {
            // Timer A: doubles without a cap. Timer E: doubles up to T2, and stays
            // at T2 once a provisional response came.
            (TimerSlot::Retransmit, Kind::InviteClient, State::Calling)
            | (TimerSlot::Retransmit, Kind::NonInviteClient, State::Trying | State::Proceeding) => {
                if let Some(b) = &t.last_out {
                    out.push(Action::Send {
                        dest: t.dest.clone(),
                        bytes: b.clone(),
                    });
                }
                t.interval = match (t.kind, t.state) {
                    (Kind::InviteClient, _) => t.interval * 2,
                    (_, State::Proceeding) => t2,
                    _ => (t.interval * 2).min(t2),
                };
                let next = t.interval;
                self.arm(id, TimerSlot::Retransmit, now + next);
            }
            // Timers B and F.
            (TimerSlot::Deadline, Kind::InviteClient, State::Calling | State::Proceeding)
            | (TimerSlot::Deadline, Kind::NonInviteClient, State::Trying | State::Proceeding) => {
                out.push(Action::Timeout { id });
                self.terminate(id, out);
            }
            // Timers D, K, M.
            (TimerSlot::Deadline, _, State::Completed | State::Accepted) => self.terminate(id, out),
            _ => {}
        }
    }
}

/// The ACK for a non-2xx final response (§17.1.1.3): Request-URI, top Via,
/// Route, From, Call-ID and CSeq number of the request; To of the response.
fn ack_for(req: &Message, resp: &Message) -> Bytes {
    fn value(m: &Message, k: HeaderKind) -> &str {
        m.header(k).map_or("", |h| h.value)
    }
    let top_via = value(req, HeaderKind::Via).split(',').next().unwrap_or("");
    let seq = req
        .typed::<sip::headers::CSeq>()
        .ok()
        .flatten()
        .map_or(0, |c| c.seq);
    let mut b = RequestBuilder::new("ACK", req.request_uri().unwrap_or("sip:invalid"))
        .header("Via", top_via);
    for r in req.headers_of(HeaderKind::Route) {
        b = b.header("Route", r.value);
    }
    b.header("Max-Forwards", "70")
        .header("From", value(req, HeaderKind::From))
        .header("To", value(resp, HeaderKind::To))
        .header("Call-ID", value(req, HeaderKind::CallId))
        .header("CSeq", &format!("{seq} ACK"))
        .finish()
}
