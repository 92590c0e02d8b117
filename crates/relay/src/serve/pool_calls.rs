//! An edge's relay asking the pool about a user's calls. An edge records
//! the calls it carries, but a remote user's client may sign in to one
//! edge and allocate on another (DNS spreads the two names over the edge
//! pool independently), or signal to the front end directly and take the
//! edge's relay from the user API's list: a peer in no call this relay
//! knows of is asked about before it is refused. The request waits for
//! the answer (at most [`ANSWER_WAIT`], inside a client's first
//! retransmission interval) and is then answered as the engine decides
//! with what the pool said.
//!
//! Bounded: one question per user at a time (requests needing the same
//! answer wait for it, at most [`MAX_WAITERS`]), at most
//! [`super::MAX_PENDING_ASKS`] users at once, and [`USER_RATE`] questions
//! a second per user — beyond, the request is refused at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use stun::Message;
use tokio::sync::oneshot;

use super::{send_back, take_token, unix_now, Ask, Back, Shared, MAX_PENDING_ASKS};
use crate::engine::Client;

/// How long a request waits for the pool's answer.
const ANSWER_WAIT: Duration = Duration::from_secs(2);
/// Requests of one user waiting for the same answer.
const MAX_WAITERS: usize = 16;
/// Questions about one user: a second, and in a burst.
const USER_RATE: (f64, f64) = (4.0, 8.0);

enum Waiting {
    /// This request asked: the others wait for it.
    Asked(oneshot::Receiver<()>),
    /// Another request asked first.
    Behind(oneshot::Receiver<()>),
}

/// Takes request `m` (refused by the engine for want of `aor`'s call)
/// over: asks about `aor`'s calls, then answers it. `false`: no question
/// can be asked now (the refusal stands).
pub(super) fn ask_then_answer(
    shared: &Arc<Shared>,
    client: Client,
    m: &Message<'_>,
    back: &Back,
    aor: String,
    now: Instant,
) -> bool {
    let waiting = {
        let mut w = shared
            .calls_waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match w.get_mut(&aor) {
            Some(others) if others.len() < MAX_WAITERS => {
                let (tx, rx) = oneshot::channel();
                others.push(tx);
                Waiting::Behind(rx)
            }
            Some(_) => return false,
            None => {
                if w.len() >= MAX_PENDING_ASKS {
                    return false;
                }
                let allowed = {
                    let mut t = shared
                        .calls_tokens
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    take_token(&mut t, aor.clone(), USER_RATE, now)
                };
                if !allowed {
                    return false;
                }
                let (tx, rx) = oneshot::channel();
                let ask = Ask::Calls {
                    aor: aor.clone(),
                    reply: tx,
                };
                if shared.asks.try_send(ask).is_err() {
                    return false;
                }
                w.insert(aor.clone(), Vec::new());
                Waiting::Asked(rx)
            }
        }
    };
    let (shared, back, raw) = (shared.clone(), back.clone(), m.raw().to_vec());
    tokio::spawn(async move {
        match waiting {
            Waiting::Asked(rx) => {
                let _ = tokio::time::timeout(ANSWER_WAIT, rx).await;
                let others = shared
                    .calls_waiting
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&aor)
                    .unwrap_or_default();
                for o in others {
                    let _ = o.send(());
                }
            }
            Waiting::Behind(rx) => {
                let _ = tokio::time::timeout(ANSWER_WAIT, rx).await;
            }
        }
        let Ok(m) = Message::parse(&raw) else {
            return;
        };
        let answer = shared
            .engine()
            .request(&client, &m, Instant::now(), unix_now());
        if let Some(a) = answer.removed {
            shared.end(vec![a]);
        }
        shared.count_response(&answer.response);
        send_back(&back, client.addr, answer.response).await;
    });
    true
}
