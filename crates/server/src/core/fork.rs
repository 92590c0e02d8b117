//! Relaying a request to the bindings of a user: one client transaction per
//! binding (parallel forking), the best final response sent back (RFC 3261
//! §16.7: any 2xx at once; otherwise a 6xx, else the lowest class), a timeout
//! or an unreachable set answered with what was prepared for it.

use std::time::Instant;

use bytes::Bytes;
use sip::forward::Forward;
use sip::Message;
use sip_transport::{FlowId, Protocol, Target};
use sip_txn::{Reliability, TxnId};
use store::Binding;

use super::Core;

/// What a set of client transactions is for.
#[derive(Debug)]
pub(crate) enum ForkKind {
    /// Relaying a request; the answer goes to server transaction `server`.
    /// `timeout` is the prepared 408 for when no branch answers.
    Relay {
        server: TxnId,
        method: &'static str,
        timeout: Bytes,
    },
    /// Delivering stored message `id` to `aor`.
    Delivery { aor: String, id: i64 },
}

#[derive(Debug)]
pub(crate) struct Fork {
    pub(crate) kind: ForkKind,
    /// Branches without a final response yet.
    pub(crate) pending: usize,
    /// The best non-2xx final response so far: (status, response bytes for upstream).
    pub(crate) best: Option<(u16, Bytes)>,
    pub(crate) answered: bool,
}

/// Lower is better (§16.7 step 6): 6xx first, then the lowest class.
fn rank(status: u16) -> u16 {
    if status >= 600 {
        0
    } else {
        status
    }
}

/// Where a binding is reached: its protocol and transport target, if reachable.
pub(crate) fn binding_protocol(b: &Binding) -> Option<Protocol> {
    let proto = b.source.split(':').next()?;
    Some(match proto {
        "udp" => Protocol::Udp,
        "tcp" => Protocol::Tcp,
        "tls" => Protocol::Tls,
        "ws" => Protocol::Ws,
        "wss" => Protocol::Wss,
        _ => return None,
    })
}

impl Core {
    /// A fresh RFC 3261 branch.
    pub(crate) fn new_branch(&mut self) -> String {
        self.branch_seq += 1;
        format!("z9hG4bK{}{:x}", self.boot_id, self.branch_seq)
    }

    /// The transport target for a binding: its connection (RFC 5626 flow) or, for
    /// UDP, the address its REGISTER came from. `None`: not reachable now (a
    /// connection-oriented client must re-register after a restart).
    pub(crate) fn target_for(
        &self,
        b: &Binding,
        flow: Option<registrar::Flow>,
    ) -> Option<(Protocol, Target)> {
        let proto = binding_protocol(b)?;
        match proto {
            Protocol::Udp => {
                let addr = b.source.strip_prefix("udp:")?.parse().ok()?;
                let sock = self
                    .transport
                    .local_addrs()
                    .iter()
                    .find(|l| l.0 == Protocol::Udp)?
                    .2?;
                Some((
                    proto,
                    Target::Udp {
                        flow: sock,
                        dest: addr,
                    },
                ))
            }
            _ => flow.map(|f| (proto, Target::Flow(FlowId(f.0)))),
        }
    }

    /// Our Via sent-by for `proto`: the listener's address, or the domain when
    /// the listener is bound to all interfaces.
    pub(crate) fn via_for(&mut self, proto: Protocol) -> String {
        let branch = self.new_branch();
        let addr = self.transport.local_addr(proto);
        let host = match addr {
            Some(a) if !a.ip().is_unspecified() => a.to_string(),
            Some(a) => format!("{}:{}", self.cfg.domain, a.port()),
            None => self.cfg.domain.clone(),
        };
        format!("SIP/2.0/{} {host};branch={branch}", proto.via_token())
    }

    /// Sends `msg` to every target binding as one fork; returns how many branches
    /// started. The request is edited per branch (Request-URI, Via, Path as Route,
    /// Max-Forwards) in one copy each.
    pub(crate) fn start_fork(
        &mut self,
        kind: ForkKind,
        msg: &Message,
        targets: &[(Binding, Option<registrar::Flow>)],
    ) -> usize {
        let fork_id = self.next_fork;
        self.next_fork += 1;
        let mut started = 0;
        for (b, flow) in targets {
            let Some((proto, target)) = self.target_for(b, *flow) else {
                continue;
            };
            let via = self.via_for(proto);
            let Ok(edit) = Forward::new(msg)
                .request_uri(b.contact.clone())
                .push_via(via)
                .routes(b.path.iter().cloned())
                // Credentials consumed here must not reach the recipient, who could
                // otherwise attack the sender's password offline.
                .remove_all(sip::HeaderKind::ProxyAuthorization)
                .decrement_max_forwards()
            else {
                continue;
            };
            let grown = sip::Limits {
                max_message_size: self.cfg.limits.max_message_size + 4096,
                max_headers: 256,
                max_vias: 128,
                ..self.cfg.limits
            };
            let Ok(req) = sip::parse_datagram(edit.serialize(), &grown) else {
                continue;
            };
            let reliability = if proto.is_reliable() {
                Reliability::Reliable
            } else {
                Reliability::Unreliable
            };
            match self
                .txn
                .send_request(req, target, reliability, Instant::now(), &mut self.out)
            {
                Ok(cid) => {
                    self.by_client.insert(cid, fork_id);
                    started += 1;
                }
                Err(e) => tracing::warn!(?e, "could not start a client transaction"),
            }
        }
        if started > 0 {
            self.forks.insert(
                fork_id,
                Fork {
                    kind,
                    pending: started,
                    best: None,
                    answered: false,
                },
            );
        }
        started
    }

    /// A final response (or a timeout, `resp = None`) on one branch.
    pub(crate) fn branch_final(&mut self, cid: TxnId, status: u16, resp: Option<&Message>) {
        let Some(fork_id) = self.by_client.remove(&cid) else {
            return;
        };
        let Some(fork) = self.forks.get_mut(&fork_id) else {
            return;
        };
        fork.pending = fork.pending.saturating_sub(1);
        let success = (200..300).contains(&status);
        let upstream = resp.map(|m| Forward::new(m).pop_via().serialize());
        match &fork.kind {
            ForkKind::Relay { server, method, .. } => {
                let (server, method) = (*server, *method);
                if success && !fork.answered {
                    fork.answered = true;
                    if let Some(bytes) = upstream {
                        self.metrics.count_response(method, status);
                        self.txn
                            .respond(server, status, bytes, Instant::now(), &mut self.out);
                    }
                } else if !fork.answered {
                    if let Some(bytes) = upstream {
                        if fork
                            .best
                            .as_ref()
                            .is_none_or(|(s, _)| rank(status) < rank(*s))
                        {
                            fork.best = Some((status, bytes));
                        }
                    }
                }
            }
            ForkKind::Delivery { .. } => {
                if success {
                    fork.answered = true;
                }
            }
        }
        if fork.pending > 0 {
            return;
        }
        let Some(fork) = self.forks.remove(&fork_id) else {
            return;
        };
        match fork.kind {
            ForkKind::Relay {
                server,
                method,
                timeout,
            } => {
                if !fork.answered {
                    let (status, bytes) = fork.best.unwrap_or((408, timeout));
                    self.metrics.count_response(method, status);
                    self.txn
                        .respond(server, status, bytes, Instant::now(), &mut self.out);
                }
            }
            ForkKind::Delivery { aor, id } => self.delivery_done(aor, id, fork.answered),
        }
    }
}
