//! SIP traces for operators: the messages of a call, or of a user's calls,
//! from this node's trace ring — on PostgreSQL, every node's ring under
//! the pool's trace directory — and its paired edges' (asked over their
//! links), in order, as one ladder. Bodies (instant messages, SDP)
//! are shown only to a role with `traces.read_content`; credentials were
//! never kept. Each read is audited.

use axum::extract::State;
use axum::http::StatusCode;
use rbac::Target;
use serde::Deserialize;

use super::access::Caller;
use super::extract::Q as Query;
use super::{internal, json, problem, ApiResult, Ctx};
use store::Store;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TraceQuery {
    call_id: Option<String>,
    user: Option<String>,
    /// Unix seconds.
    since: Option<i64>,
    until: Option<i64>,
    limit: Option<usize>,
}

/// The message as a caller may see it: the body replaced by its size
/// unless `content`.
fn shown(m: &[u8], content: bool) -> String {
    let text = String::from_utf8_lossy(m);
    if content {
        return text.into_owned();
    }
    match text.split_once("\r\n\r\n") {
        Some((head, body)) if !body.is_empty() => {
            format!("{head}\r\n\r\n[{} bytes of body not shown]", body.len())
        }
        _ => text.into_owned(),
    }
}

/// `GET /v1/traces`: a call's messages (`call_id`), or every message of
/// the calls a user's messages belong to (`user`), oldest first; neither:
/// the newest messages.
pub(crate) async fn list<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    Query(q): Query<TraceQuery>,
) -> ApiResult {
    let user = match &q.user {
        Some(u) => {
            let aor = super::users::aor(&ctx, u)?;
            ctx.allow_user(&c, "traces.read", &aor).await?;
            Some(aor)
        }
        None => {
            ctx.allow(&c, "traces.read", Target::All, "traces:*")
                .await?;
            None
        }
    };
    if let Some(id) = &q.call_id {
        if id.is_empty() || id.len() > 256 || id.chars().any(char::is_control) {
            return Err(problem(
                StatusCode::BAD_REQUEST,
                "call_id must be one line of 1 to 256 characters",
            ));
        }
    }
    super::archive::check_page(q.since, q.until, q.limit, None)?;
    let content = c.role.permits("traces.read_content", Target::All);
    let detail = serde_json::json!({ "call_id": q.call_id, "user": user, "since": q.since, "until": q.until, "bodies": content });
    let object = match (&q.call_id, &user) {
        (Some(id), _) => format!("traces:call:{id}"),
        (None, Some(u)) => format!("traces:{u}"),
        (None, None) => "traces:*".into(),
    };
    super::archive::audit_read(&ctx, &c, "traces.read", &object, detail.to_string()).await?;
    let filter = trace::Filter {
        call_id: q.call_id.clone(),
        user,
        since_ms: q.since.map(|s| s * 1000),
        until_ms: q.until.map(|s| s * 1000),
        limit: q.limit.unwrap_or(200),
    };
    let limit = filter.limit;
    let question = trace::remote::query(&filter);
    // This node's messages (a pool's: every node's, read from the
    // directory they share), then each paired edge's side of the same
    // calls (what it exchanged with the outside), asked over its link.
    let (root, pooled) = (
        ctx.cfg.trace_root(),
        matches!(ctx.cfg.database, config::Database::Postgres { .. }),
    );
    let mut all: Vec<(String, trace::Record)> = tokio::task::spawn_blocking(move || {
        if pooled {
            trace::search_nodes(&root, &filter)
        } else {
            trace::search(&root, &filter)
                .into_iter()
                .map(|r| ("front-end".to_string(), r))
                .collect()
        }
    })
    .await
    .map_err(internal)?;
    let mut edges = Vec::new();
    let answers = ctx
        .ask(|reply| sip_app::command::AdminCmd::EdgeTraces {
            query: question,
            reply,
        })
        .await
        .unwrap_or_default();
    for a in answers {
        let records = trace::remote::read_answer(&a.body);
        edges.push(serde_json::json!({
            "edge": a.edge,
            "messages": records.len(),
            "complete": a.error.is_none() && !a.more,
            "error": a.error,
        }));
        all.extend(records.into_iter().map(|r| (a.edge.clone(), r)));
    }
    // One ladder, in time order (each node's own clock; a message the
    // edge relayed appears on both sides of it).
    let mut all = merge(all);
    if q.call_id.is_none() && q.user.is_none() {
        // The newest `limit` of all nodes, as for one.
        let drop = all.len().saturating_sub(limit);
        all.drain(..drop);
    }
    let out: Vec<serde_json::Value> = all
        .iter()
        .map(|(node, r)| {
            serde_json::json!({
                "node": node,
                "at_ms": r.at_ms,
                "direction": if r.inbound { "in" } else { "out" },
                "protocol": r.protocol,
                "local": r.local.to_string(),
                "remote": r.remote.to_string(),
                "call_id": r.header("Call-ID", Some("i")),
                "first_line": r.first_line(),
                "message": shown(&r.message, content),
            })
        })
        .collect();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "messages": out, "bodies_shown": content, "edges": edges }),
    ))
}

/// The nodes' records as one ladder: each node's in its own order, and
/// the nodes' merged by time. Within one millisecond, of two nodes' next
/// records the one further back on its way comes first ([`hop_order`]):
/// the edge's copy of a request before the front end's.
fn merge(records: Vec<(String, trace::Record)>) -> Vec<(String, trace::Record)> {
    let mut sources: Vec<std::collections::VecDeque<(String, trace::Record)>> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (node, r) in records {
        let i = *index.entry(node.clone()).or_insert_with(|| {
            sources.push(std::collections::VecDeque::new());
            sources.len() - 1
        });
        sources[i].push_back((node, r));
    }
    for s in &mut sources {
        s.make_contiguous().sort_by_key(|(_, r)| r.at_ms);
    }
    let mut out = Vec::new();
    loop {
        let next = sources
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                s.front()
                    .map(|(_, r)| (i, (r.at_ms, hop_order(&r.message))))
            })
            .min_by_key(|(i, key)| (*key, *i))
            .map(|(i, _)| i);
        let Some(i) = next else { break };
        if let Some(r) = sources[i].pop_front() {
            out.push(r);
        }
    }
    out
}

/// Where a message stands on its way, for ordering the copies of it the
/// nodes recorded within one millisecond: each proxy adds a Via to a
/// request going on and takes its own off the response coming back, so a
/// request with more Vias was recorded later, a response with fewer.
fn hop_order(message: &[u8]) -> i64 {
    let head = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(message, |end| &message[..end]);
    let mut lines = head.split(|b| *b == b'\n');
    let response = lines.next().is_some_and(|l| l.starts_with(b"SIP/2.0 "));
    let vias = lines
        .filter(|l| {
            let name = l.split(|b| *b == b':').next().unwrap_or_default();
            let name = name.trim_ascii();
            name.eq_ignore_ascii_case(b"via") || name.eq_ignore_ascii_case(b"v")
        })
        .count();
    let vias = i64::try_from(vias).unwrap_or(i64::MAX);
    if response {
        -vias
    } else {
        vias
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn within_a_millisecond_hops_come_in_the_order_they_were_taken() {
        let at_edge = b"INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/TLS c\r\nFrom: a\r\n\r\nv=0";
        let at_front_end =
            b"INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/TLS e\r\nv: SIP/2.0/TLS c\r\n\r\n";
        assert!(super::hop_order(at_edge) < super::hop_order(at_front_end));
        let back_at_front_end =
            b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/TLS e\r\nVia: SIP/2.0/TLS c\r\n\r\n";
        let back_at_edge = b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/TLS c\r\n\r\n";
        assert!(super::hop_order(back_at_front_end) < super::hop_order(back_at_edge));
        // A body's lines are not headers.
        assert_eq!(super::hop_order(b"MESSAGE x SIP/2.0\r\n\r\nVia: no"), 0);
    }

    fn rec(at_ms: i64, message: &'static [u8]) -> trace::Record {
        trace::Record {
            at_ms,
            inbound: true,
            protocol: "TLS",
            local: "127.0.0.1:5061".parse().unwrap(),
            remote: "127.0.0.1:40000".parse().unwrap(),
            message: bytes::Bytes::from_static(message),
        }
    }

    #[test]
    fn a_ladder_keeps_each_nodes_order_and_merges_the_nodes_by_hop() {
        let req1 = b"REGISTER sip:x SIP/2.0\r\nVia: SIP/2.0/TLS c\r\n\r\n";
        let resp1 = b"SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/TLS c\r\n\r\n";
        let req2 = b"INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/TLS e\r\nVia: SIP/2.0/TLS c\r\n\r\n";
        let at_edge = b"INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/TLS c\r\n\r\n";
        let records = vec![
            // One node's REGISTER and its 401 in the same millisecond:
            // kept in the node's order (the 401 has "fewer" hops).
            ("fe".to_string(), rec(7, req1)),
            ("fe".to_string(), rec(7, resp1)),
            ("fe".to_string(), rec(9, req2)),
            // The edge's copy of the INVITE, in the same millisecond as
            // the front end's: first.
            ("edge".to_string(), rec(9, at_edge)),
        ];
        let order: Vec<(String, i64, usize)> = super::merge(records)
            .into_iter()
            .map(|(n, r)| (n, r.at_ms, r.message.len()))
            .collect();
        assert_eq!(
            order,
            vec![
                ("fe".into(), 7, req1.len()),
                ("fe".into(), 7, resp1.len()),
                ("edge".into(), 9, at_edge.len()),
                ("fe".into(), 9, req2.len()),
            ]
        );
    }

    #[test]
    fn bodies_are_replaced_by_their_size_unless_allowed() {
        let m = b"MESSAGE sip:b@x SIP/2.0\r\nCall-ID: 1\r\n\r\nsecret plans";
        assert_eq!(
            super::shown(m, false),
            "MESSAGE sip:b@x SIP/2.0\r\nCall-ID: 1\r\n\r\n[12 bytes of body not shown]"
        );
        assert!(super::shown(m, true).ends_with("secret plans"));
        let no_body = b"SIP/2.0 200 OK\r\nCall-ID: 1\r\n\r\n";
        assert_eq!(
            super::shown(no_body, false),
            String::from_utf8_lossy(no_body)
        );
    }
}
