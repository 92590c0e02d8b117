//! Refused requests in the log: each cause once a minute per source address,
//! and at most a burst of lines per ten seconds in all (the rest counted and
//! reported with the next line), so a misconfigured client retrying every
//! few seconds, or a flood, cannot fill the log. No secrets are written:
//! the method, the Request-URI, the sender's address and the cause.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use sip_transport::logging::RateLimited;

use super::{Core, Req};

/// How long one (source, cause) stays quiet after it was logged.
const QUIET: Duration = Duration::from_secs(60);
/// (source, cause) pairs remembered; beyond, the table starts again.
const MAX_REMEMBERED: usize = 4096;

static REFUSED: RateLimited = RateLimited::new();

/// What was logged when.
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    seen: HashMap<(IpAddr, &'static str), Instant>,
}

impl Refusals {
    /// Whether `cause` from `ip` is due a log line now.
    fn due(&mut self, ip: IpAddr, cause: &'static str, now: Instant) -> bool {
        if let Some(at) = self.seen.get(&(ip, cause)) {
            if now.duration_since(*at) < QUIET {
                return false;
            }
        }
        if self.seen.len() >= MAX_REMEMBERED {
            self.seen.retain(|_, at| now.duration_since(*at) < QUIET);
            if self.seen.len() >= MAX_REMEMBERED {
                self.seen.clear();
            }
        }
        self.seen.insert((ip, cause), now);
        true
    }
}

impl<S: store::Store> Core<S> {
    /// 403 Relaying Denied, logged with its cause.
    pub(crate) async fn relaying_denied(&mut self, r: &Req<'_>, cause: &'static str) {
        let from = match r.f.from.uri {
            sip::Uri::Sip(u) => u.raw,
            sip::Uri::Tel(t) => t.raw,
            sip::Uri::Absolute(a) => a.rest,
        };
        self.log_refusal(r, cause, from);
        self.reply(r, 403, "Relaying Denied", &[]).await;
    }

    /// Notes a harmless deviation a client's request carried (accepted), at
    /// most once a minute per source and kind, at debug level.
    pub(crate) fn log_quirk(&mut self, r: &Req<'_>, what: &'static str) {
        if !self.refusals.due(r.src.remote.ip(), what, Instant::now()) {
            return;
        }
        tracing::debug!(
            source = %r.src.remote,
            user_agent = r.msg.typed::<sip::headers::UserAgent>().ok().flatten().map_or("", |u| u.0),
            "client deviation accepted: {what}"
        );
    }

    /// Logs why `r` was refused, once a minute per source and cause.
    /// `detail` adds what the operator needs to fix it (never a secret).
    pub(crate) fn log_refusal(&mut self, r: &Req<'_>, cause: &'static str, detail: &str) {
        let ip = r.src.remote.ip();
        if !self.refusals.due(ip, cause, Instant::now()) {
            return;
        }
        let Some(suppressed) = REFUSED.allow() else {
            return;
        };
        tracing::info!(
            source = %r.src.remote,
            transport = r.src.protocol.via_token(),
            method = r.f.method.as_str(),
            request_uri = r.msg.request_uri().unwrap_or(""),
            user_agent = r.msg.typed::<sip::headers::UserAgent>().ok().flatten().map_or("", |u| u.0),
            detail,
            suppressed,
            "request refused: {cause}"
        );
    }

    /// Refuses `r` with `status reason` and a Warning (399) saying why,
    /// logged as [`Self::log_refusal`] does. `detail` may quote what the
    /// request carried, so it is made safe for a header and bounded first
    /// ([`warning_text`]).
    pub(crate) async fn refuse_with_warning(
        &mut self,
        r: &Req<'_>,
        cause: &'static str,
        status: u16,
        reason: &'static str,
        detail: &str,
    ) {
        let text = warning_text(detail);
        self.log_refusal(r, cause, &text);
        let warning = format!("399 parapet \"{text}\"");
        self.reply(r, status, reason, &[("Warning", &warning)])
            .await;
    }
}

/// Longest text of a Warning this server writes.
const MAX_WARNING: usize = 300;

/// `detail` as a Warning's quoted text: control characters dropped,
/// quotes and backslashes turned into apostrophes, at most
/// [`MAX_WARNING`] characters.
pub(crate) fn warning_text(detail: &str) -> String {
    let mut out: String = detail
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| if c == '"' || c == '\\' { '\'' } else { c })
        .take(MAX_WARNING + 1)
        .collect();
    if out.chars().count() > MAX_WARNING {
        out = out.chars().take(MAX_WARNING - 3).collect();
        out.push_str("...");
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn warning_text_is_safe_in_a_header_and_bounded() {
        assert_eq!(warning_text("a \"b\" c\\d\r\ne\u{b}"), "a 'b' c'de");
        let long = warning_text(&"x".repeat(5000));
        assert_eq!(long.chars().count(), MAX_WARNING);
        assert!(long.ends_with("..."));
        assert_eq!(warning_text("short"), "short");
    }

    #[test]
    fn a_cause_is_logged_once_a_minute_per_source() {
        let mut r = Refusals::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let t = Instant::now();
        assert!(r.due(a, "relaying denied", t));
        assert!(!r.due(a, "relaying denied", t + Duration::from_secs(5)));
        assert!(r.due(a, "wrong password", t + Duration::from_secs(5)));
        assert!(r.due(b, "relaying denied", t + Duration::from_secs(5)));
        assert!(r.due(a, "relaying denied", t + QUIET + Duration::from_secs(1)));
    }

    #[test]
    fn the_table_stays_bounded() {
        let mut r = Refusals::default();
        let t = Instant::now();
        for i in 0..(MAX_REMEMBERED as u32 * 2) {
            r.due(IpAddr::from(i.to_be_bytes()), "x", t);
        }
        assert!(r.seen.len() <= MAX_REMEMBERED);
    }
}
