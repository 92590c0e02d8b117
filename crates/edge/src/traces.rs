//! The edge's SIP traces: a ring of what it exchanges with the outside
//! (the pool's side of each message is in the front end's own ring), and
//! the pool's question for a call's or a user's messages answered over
//! the link, so that `parapet admin trace` shows a call through the edge
//! as one ladder.

use std::path::PathBuf;
use std::sync::Arc;

use sip::Message;
use sip_transport::{Source, Target, Transport};

/// The ring: where, and how much it keeps.
#[derive(Debug, Clone)]
pub struct TraceRing {
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub max_age: std::time::Duration,
}

/// Starts the ring's writer; the tap for the external transport.
pub(crate) fn tap(r: &TraceRing) -> Result<sip_transport::Tap, String> {
    let caps = trace::Caps {
        max_bytes: r.max_bytes,
        max_age: r.max_age,
    };
    let writer = trace::start(&r.dir, caps, None, trace::Counters::default())?;
    tracing::info!(dir = %r.dir.display(), "SIP messages with the outside kept in the trace ring");
    Ok(sip_transport::Tap(Arc::new(
        move |c: sip_transport::Captured| {
            writer.capture(trace::Record {
                at_ms: c.at_ms,
                inbound: c.inbound,
                protocol: c.protocol.via_token(),
                local: c.local,
                remote: c.remote,
                message: c.bytes,
            })
        },
    )))
}

/// The pool's trace question in an OPTIONS to the edge, if it is one.
pub(crate) fn question(msg: &Message) -> Option<Option<trace::Filter>> {
    let q = msg.headers_named(trace::remote::QUERY_HEADER).next()?;
    Some(trace::remote::parse_query(q.value))
}

/// Answers the question off the edge's loop: 200 with the matching
/// records (the oldest that fit, `P-Parapet-Trace-More: 1` when some did
/// not), 404 when the edge keeps no ring, 400 for a question it cannot
/// read.
pub(crate) fn answer(
    int: Transport,
    msg: Message,
    src: Source,
    tag: String,
    ring: Option<PathBuf>,
    filter: Option<trace::Filter>,
) {
    tokio::spawn(async move {
        let (status, reason, found) = match (ring, filter) {
            (None, _) => (404, "No Trace Ring", None),
            (_, None) => (400, "Bad Trace Question", None),
            (Some(dir), Some(f)) => {
                match tokio::task::spawn_blocking(move || trace::search(&dir, &f)).await {
                    Ok(records) => (200, "OK", Some(records)),
                    Err(_) => (500, "Trace Search Failed", None),
                }
            }
        };
        let b = sip::build::ResponseBuilder::new(&msg, status, reason).to_tag(&tag);
        let bytes = match found {
            Some(records) => {
                let (body, more) = trace::remote::answer(&records);
                let b = if more {
                    b.header(trace::remote::MORE_HEADER, "1")
                } else {
                    b
                };
                b.body(trace::remote::CONTENT_TYPE, &body)
            }
            None => b.finish(),
        };
        if !crate::topology::fits_pool(&bytes) {
            tracing::debug!("a trace answer too large for the pool's limits: not sent");
            return;
        }
        let _ = int.send(Target::Flow(src.flow), bytes).await;
    });
}
