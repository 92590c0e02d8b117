//! Server transactions (RFC 3261 §17.2, RFC 6026 §7.1).
//!
//! INVITE:     Proceeding -(1xx)-> Proceeding -(2xx)-> Accepted -(L)-> gone
//!                        -(300-699)-> Completed -(ACK)-> Confirmed -(I)-> gone
//!                                               -(H)-> gone, Timeout
//! non-INVITE: Trying -(1xx)-> Proceeding -(final)-> Completed -(J)-> gone

use std::time::Instant;

use bytes::Bytes;
use sip::{Message, Method, RequestFields};

use crate::key::TxnKey;
use crate::layer::{Action, Full, Kind, ServerEvent, State, TimerSlot, Txn, TxnId, TxnLayer};
use crate::Reliability;

impl<D: Clone> TxnLayer<D> {
    /// Feeds a received request. New INVITE transactions answer `100 Trying` at
    /// once (§17.2.1 allows the transaction to do it; doing it always spares the
    /// client its retransmissions).
    pub fn on_request(
        &mut self,
        msg: &Message,
        fields: &RequestFields<'_>,
        dest: D,
        reliability: Reliability,
        now: Instant,
        out: &mut Vec<Action<D>>,
    ) -> Result<ServerEvent, Full> {
        if fields.method == Method::Ack {
            return Ok(self.on_ack(fields, now));
        }
        let key = TxnKey::server(fields);
        if let Some(id) = self.lookup(&key) {
            self.on_retransmission(id, out);
            return Ok(ServerEvent::Retransmission(id));
        }
        if let Some((dest, response)) = self.completed.get(&key) {
            out.push(Action::Send {
                dest: dest.clone(),
                bytes: response.clone(),
            });
            return Ok(ServerEvent::Answered);
        }
        let invite = fields.method == Method::Invite;
        let txn = Txn {
            key,
            kind: if invite {
                Kind::InviteServer
            } else {
                Kind::NonInviteServer
            },
            state: if invite {
                State::Proceeding
            } else {
                State::Trying
            },
            reliability,
            dest: dest.clone(),
            last_out: None,
            request: None,
            ack: None,
            interval: self.config.t1,
            retransmit_gen: 0,
            deadline_gen: 0,
        };
        let id = self.insert(txn)?;
        let abandon = if invite {
            self.config.max_invite_proceeding
        } else {
            64 * self.config.t1
        };
        self.arm(id, TimerSlot::Deadline, now + abandon);
        if invite {
            let trying = sip::build::ResponseBuilder::new(msg, 100, "Trying").finish();
            if let Some(t) = self.get_mut(id) {
                t.last_out = Some(trying.clone());
            }
            out.push(Action::Send {
                dest,
                bytes: trying,
            });
        }
        Ok(ServerEvent::New(id))
    }

    fn on_retransmission(&mut self, id: TxnId, out: &mut Vec<Action<D>>) {
        let Some(t) = self.get(id) else { return };
        // Trying (non-INVITE, nothing sent yet) and Accepted (RFC 6026: the TU
        // retransmits 2xx itself) absorb silently; otherwise resend the last response.
        let resend = matches!(t.state, State::Proceeding | State::Completed);
        if resend {
            if let Some(b) = &t.last_out {
                out.push(Action::Send {
                    dest: t.dest.clone(),
                    bytes: b.clone(),
                });
            }
        }
    }

    fn on_ack(&mut self, fields: &RequestFields<'_>, now: Instant) -> ServerEvent {
        let key = TxnKey::invite_for(fields);
        let Some(id) = self.lookup(&key) else {
            return ServerEvent::AckForTu;
        };
        let Some(t) = self.get_mut(id) else {
            return ServerEvent::AckForTu;
        };
        match t.state {
            State::Completed => {
                t.state = State::Confirmed;
                let r = t.reliability;
                self.disarm(id, TimerSlot::Retransmit);
                let i = self.linger(r, self.config.t4);
                self.arm(id, TimerSlot::Deadline, now + i);
                ServerEvent::AckAbsorbed(id)
            }
            State::Confirmed => ServerEvent::AckAbsorbed(id),
            _ => ServerEvent::AckForTu,
        }
    }

    /// Ends server transaction `id` now, whatever its state: a
    /// retransmission of the request becomes a new transaction.
    pub fn abandon(&mut self, id: TxnId, out: &mut Vec<Action<D>>) {
        self.terminate(id, out);
    }

    /// Sends a response from the TU through server transaction `id`. Returns
    /// `false` if the transaction no longer exists or cannot send it (e.g. a
    /// second final response).
    pub fn respond(
        &mut self,
        id: TxnId,
        status: u16,
        bytes: Bytes,
        now: Instant,
        out: &mut Vec<Action<D>>,
    ) -> bool {
        self.respond_keeping(id, status, bytes, now, out, true)
    }

    /// Sends the final response of non-INVITE server transaction `id` and
    /// ends it without keeping that response for retransmissions: for
    /// answers that are as good sent twice as absorbed, such as a digest
    /// challenge (a retransmitted request just gets a fresh one). Half of all
    /// REGISTER and MESSAGE transactions are challenges. For other
    /// transactions it is [`TxnLayer::respond`].
    pub fn respond_and_forget(
        &mut self,
        id: TxnId,
        status: u16,
        bytes: Bytes,
        now: Instant,
        out: &mut Vec<Action<D>>,
    ) -> bool {
        self.respond_keeping(id, status, bytes, now, out, false)
    }

    fn respond_keeping(
        &mut self,
        id: TxnId,
        status: u16,
        bytes: Bytes,
        now: Instant,
        out: &mut Vec<Action<D>>,
        keep: bool,
    ) -> bool {
        let (t1, t2) = (self.config.t1, self.config.t2);
        let Some(t) = self.get_mut(id) else {
            return false;
        };
        let dest = t.dest.clone();
        let (kind, state, r) = (t.kind, t.state, t.reliability);
        match (kind, state) {
            (Kind::InviteServer, State::Proceeding) => {
                t.last_out = Some(bytes.clone());
                out.push(Action::Send { dest, bytes });
                if (200..300).contains(&status) {
                    t.state = State::Accepted;
                    self.arm(id, TimerSlot::Deadline, now + 64 * t1);
                } else if status >= 300 {
                    t.state = State::Completed;
                    t.interval = t1;
                    if r == Reliability::Unreliable {
                        self.arm(id, TimerSlot::Retransmit, now + t1.min(t2));
                    }
                    self.arm(id, TimerSlot::Deadline, now + 64 * t1);
                }
                true
            }
            // RFC 6026: further 2xx (the TU's retransmissions, or a forked 2xx a
            // proxy relays) pass through in Accepted.
            (Kind::InviteServer, State::Accepted) if (200..300).contains(&status) => {
                out.push(Action::Send { dest, bytes });
                true
            }
            (Kind::NonInviteServer, State::Trying | State::Proceeding) => {
                if status < 200 {
                    t.last_out = Some(bytes.clone());
                    t.state = State::Proceeding;
                    out.push(Action::Send { dest, bytes });
                    return true;
                }
                // Completed: over UDP only the key, destination and response
                // stay, for timer J (`crate::completed`); the slot is freed.
                let key = t.key.clone();
                out.push(Action::Send {
                    dest: dest.clone(),
                    bytes: bytes.clone(),
                });
                self.terminate(id, out);
                if keep && r == Reliability::Unreliable {
                    self.completed.insert(key, dest, bytes, now + 64 * t1);
                }
                true
            }
            _ => false,
        }
    }

    pub(crate) fn server_timer(
        &mut self,
        id: TxnId,
        slot: TimerSlot,
        now: Instant,
        out: &mut Vec<Action<D>>,
    ) {
        let t2 = self.config.t2;
        let Some(t) = self.get_mut(id) else { return };
        match (slot, t.state) {
            // Timer G: retransmit the final response, doubling up to T2.
            (TimerSlot::Retransmit, State::Completed) => {
                if let Some(b) = &t.last_out {
                    out.push(Action::Send {
                        dest: t.dest.clone(),
                        bytes: b.clone(),
                    });
                }
                t.interval = (t.interval * 2).min(t2);
                let next = t.interval;
                self.arm(id, TimerSlot::Retransmit, now + next);
            }
            // Timer H: no ACK came.
            (TimerSlot::Deadline, State::Completed) if t.kind == Kind::InviteServer => {
                out.push(Action::Timeout { id });
                self.terminate(id, out);
            }
            // The TU never sent a final response.
            (TimerSlot::Deadline, State::Trying | State::Proceeding) => {
                out.push(Action::Timeout { id });
                self.terminate(id, out);
            }
            // Timers I, J, L.
            (TimerSlot::Deadline, State::Completed | State::Confirmed | State::Accepted) => {
                self.terminate(id, out)
            }
            _ => {}
        }
    }

    /// Finds the INVITE server transaction a CANCEL refers to (§9.2): same key
    /// with method INVITE. The CANCEL itself gets its own transaction through
    /// [`TxnLayer::on_request`].
    pub fn cancel_target(&self, cancel: &RequestFields<'_>) -> Option<TxnId> {
        let id = self.lookup(&TxnKey::invite_for(cancel))?;
        let t = self.get(id)?;
        (t.kind == Kind::InviteServer).then_some(id)
    }

    /// Whether a server INVITE transaction has sent no final response yet (a
    /// CANCEL can still take effect).
    pub fn is_proceeding(&self, id: TxnId) -> bool {
        self.get(id).is_some_and(|t| t.state == State::Proceeding)
    }
}
