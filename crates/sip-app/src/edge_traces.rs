//! `parapet admin trace` across the pool's edges: the question sent to
//! each paired edge as an OPTIONS on its live link, the answers gathered
//! (3 seconds at most) and handed to the API, which merges them with this
//! node's own ring into one ladder. Bounded: a few questions at a time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sip::Message;
use tokio::sync::oneshot;

use crate::command::EdgeTraces;
use crate::Core;

/// Questions gathered at once at most; beyond, the edges are not asked.
const MAX_QUERIES: usize = 8;
/// How long an edge has to answer.
const WAIT: Duration = Duration::from_secs(3);
const CALL_ID_PREFIX: &str = "edge-trace-";

struct Query {
    answers: Vec<EdgeTraces>,
    waiting: usize,
    deadline: Instant,
    reply: oneshot::Sender<Vec<EdgeTraces>>,
}

/// The questions waiting for edges' answers.
#[derive(Default)]
pub(crate) struct Pending {
    queries: HashMap<u64, Query>,
    /// Call-ID of a question sent -> (query, index of its edge).
    by_call: HashMap<String, (u64, usize)>,
    next: u64,
}

fn outcome(edge: &str, error: &str) -> EdgeTraces {
    EdgeTraces {
        edge: edge.to_string(),
        body: Vec::new(),
        more: false,
        error: Some(error.to_string()),
    }
}

impl<S: store::Store> Core<S> {
    /// Sends `query` (a `trace::remote::query` value) to every paired edge
    /// with a live link; answers when all have answered or [`WAIT`] is up.
    pub(crate) fn ask_edges_for_traces(
        &mut self,
        query: String,
        reply: oneshot::Sender<Vec<EdgeTraces>>,
    ) {
        let edges = self.edges.paired_list();
        if self.edge_traces.queries.len() >= MAX_QUERIES {
            let busy = edges
                .iter()
                .map(|(n, _)| outcome(n, "not asked: too many trace searches at once"))
                .collect();
            let _ = reply.send(busy);
            return;
        }
        let id = self.edge_traces.next;
        self.edge_traces.next += 1;
        let domain = self.cfg.domain.clone();
        let mut answers = Vec::new();
        let mut waiting = 0;
        for (i, (name, internal)) in edges.iter().enumerate() {
            let flow = self
                .edges
                .flow_of(name, |f| self.transport.flow_local(f).is_some());
            let Some(flow) = flow else {
                answers.push(outcome(name, "no link to this edge"));
                continue;
            };
            let via = self.via_for(sip_transport::Protocol::Tls);
            let tag = self.next_tag();
            let call_id = format!("{CALL_ID_PREFIX}{tag}");
            let req = format!(
                "OPTIONS sip:{internal};transport=tls SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 0\r\n\
                 From: <sip:{domain}>;tag={tag}\r\nTo: <sip:{internal}>\r\nCall-ID: {call_id}\r\n\
                 CSeq: 1 OPTIONS\r\nAccept: {}\r\n{}: {query}\r\nContent-Length: 0\r\n\r\n",
                trace::remote::CONTENT_TYPE,
                trace::remote::QUERY_HEADER,
            );
            let t = self.transport.clone();
            tokio::spawn(async move {
                let _ = t
                    .send(sip_transport::Target::Flow(flow), bytes::Bytes::from(req))
                    .await;
            });
            self.edge_traces.by_call.insert(call_id, (id, i));
            answers.push(outcome(name, "no answer within 3 seconds"));
            waiting += 1;
        }
        if waiting == 0 {
            let _ = reply.send(answers);
            return;
        }
        self.edge_traces.queries.insert(
            id,
            Query {
                answers,
                waiting,
                deadline: Instant::now() + WAIT,
                reply,
            },
        );
    }

    /// An edge's answer to a trace question; `false` if `resp` is not one.
    pub(crate) fn edge_trace_answer(&mut self, resp: &Message) -> bool {
        if self.edge_traces.by_call.is_empty() {
            return false;
        }
        let Some(call_id) = resp.header(sip::HeaderKind::CallId).map(|h| h.value.trim()) else {
            return false;
        };
        if !call_id.starts_with(CALL_ID_PREFIX) {
            return false;
        }
        let Some((id, i)) = self.edge_traces.by_call.remove(call_id) else {
            return true;
        };
        let Some(q) = self.edge_traces.queries.get_mut(&id) else {
            return true;
        };
        if let Some(a) = q.answers.get_mut(i) {
            match resp.status() {
                Some(200) => {
                    a.body = resp.body().to_vec();
                    a.more = resp
                        .headers_named(trace::remote::MORE_HEADER)
                        .next()
                        .is_some();
                    a.error = None;
                }
                Some(s) => {
                    let reason = resp
                        .reason()
                        .map(String::from_utf8_lossy)
                        .unwrap_or_default();
                    a.error = Some(format!("the edge answered {s} {reason}"));
                }
                None => {}
            }
        }
        q.waiting = q.waiting.saturating_sub(1);
        if q.waiting == 0 {
            if let Some(q) = self.edge_traces.queries.remove(&id) {
                let _ = q.reply.send(q.answers);
            }
        }
        true
    }

    /// Answers the questions whose time is up with what came.
    pub(crate) fn expire_edge_traces(&mut self) {
        let now = Instant::now();
        let due: Vec<u64> = self
            .edge_traces
            .queries
            .iter()
            .filter(|(_, q)| q.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.edge_traces.by_call.retain(|_, (q, _)| *q != id);
            if let Some(q) = self.edge_traces.queries.remove(&id) {
                let _ = q.reply.send(q.answers);
            }
        }
    }
}
