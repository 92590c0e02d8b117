//! The IM archive for compliance officers: search, export (JSON lines or
//! mbox, streamed) and legal holds. Every search and export is itself
//! audited — who read whose conversations, with which filters.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rbac::Target;
use serde::Deserialize;

use super::access::Caller;
use super::extract::{Bytes, P as Path, Q as Query};
use super::{body, internal, json, problem, ApiResult, Ctx};
use store::{ArchiveFilter, ArchiveHold, ArchiveRow, Store};

/// Records looked at per search request at most (with a text filter most
/// may not match); the answer's `next` continues from there.
const SCAN_PER_SEARCH: usize = 10_000;
/// Records read per page of an export.
const EXPORT_PAGE: usize = 500;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct ArchiveQuery {
    user: Option<String>,
    counterpart: Option<String>,
    /// Unix seconds.
    since: Option<i64>,
    until: Option<i64>,
    text: Option<String>,
    limit: Option<usize>,
    after: Option<i64>,
    format: Option<String>,
}

/// The query checked, and what it reads.
struct Checked {
    filter: ArchiveFilter,
    text: Option<String>,
    /// For the audit record.
    object: String,
    detail: String,
}

fn one_line(what: &str, v: &str, max: usize) -> Result<(), Response> {
    if v.is_empty() || v.chars().count() > max || v.chars().any(char::is_control) {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            format!("{what} must be one line of 1 to {max} characters"),
        ));
    }
    Ok(())
}

async fn check<S: Store>(
    ctx: &Ctx<S>,
    c: &Caller,
    q: &ArchiveQuery,
    op: &str,
) -> Result<Checked, Response> {
    if ctx.archive.is_none() {
        return Err(problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "the archive's key directory is unusable (see the server's log): records cannot be opened",
        ));
    }
    let owner = match &q.user {
        Some(u) => {
            let aor = super::users::aor(ctx, u)?;
            ctx.allow_user(c, op, &aor).await?;
            Some(aor)
        }
        None => {
            ctx.allow(c, op, Target::All, "archive:*").await?;
            None
        }
    };
    let counterpart = match &q.counterpart {
        Some(p) => {
            let ok = p.len() <= 256
                && p.strip_prefix("sip:").is_some_and(|rest| {
                    !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_graphic())
                });
            if !ok {
                return Err(problem(
                    StatusCode::BAD_REQUEST,
                    "counterpart must be a SIP address, e.g. sip:bob@partner.example",
                ));
            }
            // Parties are kept with the user part as written and the
            // host in lower case.
            Some(match p.rsplit_once('@') {
                Some((user, host)) => format!("{user}@{}", host.to_ascii_lowercase()),
                None => format!("sip:{}", p[4..].to_ascii_lowercase()),
            })
        }
        None => None,
    };
    if let Some(t) = &q.text {
        one_line("text", t, 200)?;
    }
    check_page(q.since, q.until, q.limit, q.after)?;
    let filter = ArchiveFilter {
        owner: owner.clone(),
        counterpart: counterpart.clone(),
        since_ms: q.since.map(|s| s * 1000),
        until_ms: q.until.map(|s| s * 1000),
        key_id: None,
        after_id: q.after.unwrap_or(0),
        limit: q.limit.unwrap_or(100),
    };
    let detail = serde_json::json!({
        "user": owner, "counterpart": counterpart, "since": q.since, "until": q.until,
        "text": q.text, "after": q.after,
    })
    .to_string();
    Ok(Checked {
        filter,
        text: q.text.as_ref().map(|t| t.to_lowercase()),
        object: format!("archive:{}", owner.as_deref().unwrap_or("*")),
        detail,
    })
}

/// The time window, page size and cursor of a search, checked.
pub(crate) fn check_page(
    since: Option<i64>,
    until: Option<i64>,
    limit: Option<usize>,
    after: Option<i64>,
) -> Result<(), Response> {
    for (name, v) in [("since", since), ("until", until)] {
        if v.is_some_and(|s| !(0..=253_402_300_799).contains(&s)) {
            return Err(problem(
                StatusCode::BAD_REQUEST,
                format!("{name} must be Unix seconds"),
            ));
        }
    }
    if limit.is_some_and(|l| !(1..=1000).contains(&l)) {
        return Err(problem(StatusCode::BAD_REQUEST, "limit must be 1-1000"));
    }
    if after.is_some_and(|a| a < 0) {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            "after must be a record id (0 or more)",
        ));
    }
    Ok(())
}

/// Records a read (who, what, with which filters); a read that cannot
/// be audited does not happen.
pub(crate) async fn audit_read<S: Store>(
    ctx: &Ctx<S>,
    c: &Caller,
    action: &str,
    object: &str,
    detail: String,
) -> Result<(), Response> {
    ctx.store
        .append_audit(store::AuditEntry {
            at: sip_app::unix_now(),
            actor: c.actor.clone(),
            source: c.source.clone(),
            action: action.into(),
            object: object.into(),
            outcome: "ok".into(),
            detail,
            before: None,
            after: None,
        })
        .await
        .map_err(internal)?;
    Ok(())
}

/// Opens rows with their keys (off the runtime's threads); a row whose key
/// is gone is returned with an empty body and says so in its result.
async fn open_rows(
    ring: Arc<archive::Keyring>,
    rows: Vec<ArchiveRow>,
) -> Result<Vec<archive::Opened>, Response> {
    tokio::task::spawn_blocking(move || {
        rows.into_iter()
            .map(|r| {
                let aad = archive::aad(&r.owner, r.at_ms, &r.sender, &r.recipient);
                let opened = ring
                    .key(&r.key_id, false)
                    .ok()
                    .flatten()
                    .and_then(|k| archive::open(&k, &aad, &r.sealed));
                let (content_type, body, result) = match opened {
                    Some((ct, b)) => (ct, b, r.result),
                    None => (
                        String::new(),
                        Vec::new(),
                        format!(
                            "{} (cannot be opened: its key {} is gone)",
                            r.result, r.key_id
                        ),
                    ),
                };
                archive::Opened {
                    id: r.id,
                    owner: r.owner,
                    at_ms: r.at_ms,
                    sender: r.sender,
                    recipient: r.recipient,
                    federated: r.federated,
                    result,
                    content_type,
                    body,
                }
            })
            .collect()
    })
    .await
    .map_err(internal)
}

fn matches(o: &archive::Opened, text: &Option<String>) -> bool {
    match text {
        None => true,
        Some(t) => o
            .text()
            .is_some_and(|b| b.to_lowercase().contains(t.as_str())),
    }
}

/// `GET /v1/archive/messages`: records oldest first; `next` continues.
pub(crate) async fn search<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    Query(q): Query<ArchiveQuery>,
) -> ApiResult {
    if q.format.is_some() {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            "format belongs to /v1/archive/export",
        ));
    }
    let k = check(&ctx, &c, &q, "archive.read").await?;
    audit_read(&ctx, &c, "archive.read", &k.object, k.detail.clone()).await?;
    let ring = ctx
        .archive
        .clone()
        .ok_or_else(|| problem(StatusCode::SERVICE_UNAVAILABLE, "no archive keys"))?;
    let want = k.filter.limit;
    let mut found = Vec::new();
    let mut scanned = 0;
    let mut cursor = k.filter.after_id;
    let mut more = true;
    while found.len() < want && scanned < SCAN_PER_SEARCH {
        let page = ctx
            .store
            .archive_find(ArchiveFilter {
                after_id: cursor,
                limit: store::archive::MAX_FIND.min(SCAN_PER_SEARCH - scanned),
                ..k.filter.clone()
            })
            .await
            .map_err(internal)?;
        let full = page.len() == store::archive::MAX_FIND.min(SCAN_PER_SEARCH - scanned);
        scanned += page.len();
        for o in open_rows(ring.clone(), page).await? {
            cursor = o.id;
            if matches(&o, &k.text) {
                found.push(o);
                if found.len() == want {
                    break;
                }
            }
        }
        if !full {
            more = found.len() == want;
            break;
        }
    }
    let records: Vec<serde_json::Value> = found
        .iter()
        .filter_map(|o| serde_json::from_str(&archive::json_line(o)).ok())
        .collect();
    let next = more.then_some(cursor);
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "records": records, "scanned": scanned, "next": next }),
    ))
}

/// `GET /v1/archive/export?format=jsonl|mbox`: every matching record,
/// streamed in pages.
pub(crate) async fn export<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    Query(q): Query<ArchiveQuery>,
) -> ApiResult {
    let mbox = match q.format.as_deref() {
        None | Some("jsonl") => false,
        Some("mbox") => true,
        Some(_) => {
            return Err(problem(
                StatusCode::BAD_REQUEST,
                "format must be jsonl or mbox",
            ))
        }
    };
    if q.limit.is_some() {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            "an export has no limit; narrow it with user, counterpart, since, until or text",
        ));
    }
    let k = check(&ctx, &c, &q, "archive.read").await?;
    audit_read(&ctx, &c, "archive.export", &k.object, k.detail.clone()).await?;
    let ring = ctx
        .archive
        .clone()
        .ok_or_else(|| problem(StatusCode::SERVICE_UNAVAILABLE, "no archive keys"))?;
    let state = (ctx.store.clone(), ring, k.filter, k.text, false);
    let stream = futures_util::stream::unfold(
        state,
        move |(store, ring, mut filter, text, done)| async move {
            if done {
                return None;
            }
            filter.limit = EXPORT_PAGE;
            let page = match store.archive_find(filter.clone()).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "archive export cut short");
                    return Some((
                        Err(std::io::Error::other(e.to_string())),
                        (store, ring, filter, text, true),
                    ));
                }
            };
            let last_page = page.len() < EXPORT_PAGE;
            let opened = match open_rows(ring.clone(), page).await {
                Ok(o) => o,
                Err(_) => {
                    return Some((
                        Err(std::io::Error::other("records could not be opened")),
                        (store, ring, filter, text, true),
                    ))
                }
            };
            let mut out = String::new();
            for o in &opened {
                filter.after_id = o.id;
                if !matches(o, &text) {
                    continue;
                }
                if mbox {
                    out.push_str(&archive::mbox_entry(o));
                } else {
                    out.push_str(&archive::json_line(o));
                    out.push('\n');
                }
            }
            Some((
                Ok::<_, std::io::Error>(bytes::Bytes::from(out)),
                (store, ring, filter, text, last_page),
            ))
        },
    );
    let mut r = Body::from_stream(stream).into_response();
    let ct = if mbox {
        "application/mbox"
    } else {
        "application/jsonl"
    };
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    Ok(r)
}

fn hold_json(h: &ArchiveHold) -> serde_json::Value {
    serde_json::json!({ "user": h.aor, "since": h.since, "by": h.by, "reason": h.reason })
}

/// `GET /v1/archive/holds`.
pub(crate) async fn holds<S: Store>(State(ctx): State<Ctx<S>>, c: Caller) -> ApiResult {
    ctx.allow(&c, "archive.read", Target::All, "archive:*")
        .await?;
    let holds = ctx.store.archive_holds().await.map_err(internal)?;
    Ok(json(
        StatusCode::OK,
        &holds.iter().map(hold_json).collect::<Vec<_>>(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HoldBody {
    reason: String,
}

/// `PUT /v1/archive/holds/{uri}`: the user's records are kept past
/// retention until released.
pub(crate) async fn hold<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    Path(uri): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let b: HoldBody = body(&bytes)?;
    let aor = super::users::aor(&ctx, &uri)?;
    ctx.allow_user(&c, "archive.hold", &aor).await?;
    one_line("reason", &b.reason, 500)?;
    let h = ArchiveHold {
        aor: aor.clone(),
        since: sip_app::unix_now(),
        by: c.actor.clone(),
        reason: b.reason,
    };
    let object = format!("archive-hold:{aor}");
    let placed = ctx
        .audited(&c, "archive.hold", &object, None, Some(hold_json(&h)))
        .archive_hold(h.clone())
        .await
        .map_err(internal)?;
    if placed {
        return Ok(json(StatusCode::OK, &hold_json(&h)));
    }
    // On hold already: the hold as it was placed.
    let now = ctx.store.archive_holds().await.map_err(internal)?;
    match now.into_iter().find(|x| x.aor == aor) {
        Some(held) => Ok(json(StatusCode::OK, &hold_json(&held))),
        None => Err(problem(
            StatusCode::CONFLICT,
            "the hold was released meanwhile; try again",
        )),
    }
}

/// `DELETE /v1/archive/holds/{uri}`: retention applies to the user again.
pub(crate) async fn release<S: Store>(
    State(ctx): State<Ctx<S>>,
    c: Caller,
    Path(uri): Path<String>,
) -> ApiResult {
    let aor = super::users::aor(&ctx, &uri)?;
    ctx.allow_user(&c, "archive.hold", &aor).await?;
    let before = ctx.store.archive_holds().await.map_err(internal)?;
    let Some(h) = before.iter().find(|x| x.aor == aor) else {
        return Err(problem(
            StatusCode::NOT_FOUND,
            format!("{aor} is not on hold"),
        ));
    };
    ctx.audited(
        &c,
        "archive.release",
        &format!("archive-hold:{aor}"),
        Some(hold_json(h)),
        None,
    )
    .archive_release(aor)
    .await
    .map_err(internal)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
