//! Usage records other than calls: conversations of instant messages (the
//! messages between two parties with no pause of [`CONVERSATION_PAUSE`]:
//! who wrote first, to whom, when, how many — never what), files offered
//! through this server (name, size, type as stored), and sign-ins and
//! sign-outs (a registration's binding made, and ended — by the user, by
//! expiry, by its connection closing, or by an administrator).

use std::time::{Duration, Instant};

use store::CdrRow;

use super::{now_ms, Calls};
use crate::{Core, Req};

/// A conversation with no message for this long is over.
pub(crate) const CONVERSATION_PAUSE: Duration = Duration::from_secs(600);
/// Conversations followed at once at most (beyond, a new one is not
/// recorded, and counted lost).
const MAX_CONVERSATIONS: usize = 100_000;

#[derive(Debug)]
pub(crate) struct Conversation {
    row: CdrRow,
    last: Instant,
}

impl Conversation {
    pub(crate) fn idle(&self) -> Duration {
        self.last.elapsed()
    }
}

/// The partner's domain when one party is not of `domain`, else empty.
pub(crate) fn partner_of(a: &str, b: &str, domain: &str) -> String {
    [a, b]
        .iter()
        .filter_map(|p| p.rsplit_once('@').map(|(_, d)| d))
        .find(|d| !d.eq_ignore_ascii_case(domain))
        .map(str::to_ascii_lowercase)
        .unwrap_or_default()
}

/// The record of `aor` signing in from a device (`user_agent`) at
/// `source` (a new binding, written once it is stored).
pub(crate) fn sign_in(aor: &str, user_agent: &str, source: &str) -> CdrRow {
    let now = now_ms();
    CdrRow {
        kind: "sign-in".into(),
        caller: aor.to_string(),
        caller_device: user_agent
            .chars()
            .filter(|c| !c.is_control())
            .take(128)
            .collect(),
        started_ms: now,
        ended_ms: now,
        status: 200,
        detail: source.to_string(),
        ..CdrRow::default()
    }
}

/// The record of a registration of `aor` from `source` ending (`how`).
pub(crate) fn sign_out(aor: &str, source: &str, how: &str) -> CdrRow {
    let now = now_ms();
    CdrRow {
        kind: "sign-out".into(),
        caller: aor.to_string(),
        started_ms: now,
        ended_ms: now,
        status: 200,
        ended_by: how.to_string(),
        detail: source.to_string(),
        ..CdrRow::default()
    }
}

/// The writer's queue, for a task that records once its write is done.
pub(crate) struct UsageSender {
    tx: tokio::sync::mpsc::Sender<CdrRow>,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    retention: super::Retention,
}

impl UsageSender {
    pub(crate) fn send(&self, mut row: CdrRow) {
        self.retention.stamp(&mut row);
        if self.tx.try_send(row).is_err() {
            self.metrics
                .cdr
                .lost
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl Calls {
    pub(crate) fn sender(&self) -> UsageSender {
        UsageSender {
            tx: self.tx.clone(),
            metrics: self.metrics.clone(),
            retention: self.retention.clone(),
        }
    }

    /// Records and forgets the conversations `due` says are over.
    pub(crate) fn close_conversations(&mut self, due: impl Fn(&Conversation) -> bool, by: &str) {
        let over: Vec<(String, String)> = self
            .conversations
            .iter()
            .filter(|(_, c)| due(c))
            .map(|(k, _)| k.clone())
            .collect();
        for k in over {
            if let Some(mut c) = self.conversations.remove(&k) {
                c.row.ended_by = by.to_string();
                self.send(c.row);
            }
        }
    }
}

impl<S: store::Store> Core<S> {
    /// A MESSAGE from `sender` to `recipient` goes on (relayed, stored or
    /// sent to a partner): counted in their conversation, and a file it
    /// offers recorded.
    pub(crate) fn cdr_message(&mut self, r: &Req<'_>, sender: &str, recipient: &str) {
        if let Some((_, files)) = self.cdr.offered.take_if(|(id, _)| *id == r.id) {
            for f in &files {
                self.cdr_file(r, sender, recipient, f);
            }
        }
        let domain = self.cfg.domain.clone();
        let partner = partner_of(sender, recipient, &domain);
        self.metrics.count_usage("im", &partner, 0);
        let key = if sender <= recipient {
            (sender.to_string(), recipient.to_string())
        } else {
            (recipient.to_string(), sender.to_string())
        };
        let now = now_ms();
        let full = self.cdr.conversations.len() >= MAX_CONVERSATIONS;
        let conversations = &mut self.cdr.conversations;
        match conversations.get_mut(&key) {
            Some(c) => {
                c.row.messages = c.row.messages.saturating_add(1);
                c.row.ended_ms = now;
                c.last = Instant::now();
            }
            None if full => {
                self.metrics
                    .cdr
                    .lost
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            None => {
                conversations.insert(
                    key,
                    Conversation {
                        row: CdrRow {
                            kind: "im".into(),
                            call_id: r.f.call_id.chars().take(256).collect(),
                            caller: sender.to_string(),
                            callee: recipient.to_string(),
                            caller_device: super::device(r.msg),
                            federated: !partner.is_empty(),
                            partner,
                            started_ms: now,
                            ended_ms: now,
                            status: 200,
                            messages: 1,
                            ..CdrRow::default()
                        },
                        last: Instant::now(),
                    },
                );
            }
        }
    }

    /// A file of this server's (`file`) offered by `sender` to `recipient`
    /// in a MESSAGE that passed the file policy.
    pub(crate) fn cdr_file(
        &mut self,
        r: &Req<'_>,
        sender: &str,
        recipient: &str,
        file: &store::FileRow,
    ) {
        let now = now_ms();
        let partner = partner_of(sender, recipient, &self.cfg.domain);
        self.metrics.count_usage("file", &partner, 0);
        let name: String = file
            .name
            .chars()
            .filter(|c| !c.is_control())
            .take(255)
            .collect();
        self.cdr.send(CdrRow {
            kind: "file".into(),
            call_id: r.f.call_id.chars().take(256).collect(),
            caller: sender.to_string(),
            callee: recipient.to_string(),
            caller_device: super::device(r.msg),
            started_ms: now,
            ended_ms: now,
            status: 200,
            detail: format!(
                "{name}; {} bytes; {}; sha256 {}",
                file.size, file.content_type, file.sha256
            ),
            ..CdrRow::default()
        });
    }

    /// `aor`'s registration from `source` ended (`how`: `expired`,
    /// `connection closed`, `removed`).
    pub(crate) fn cdr_signed_out(&mut self, aor: &str, source: &str, how: &str) {
        self.cdr.send(sign_out(aor, source, how));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_partner_is_the_domain_that_is_not_ours() {
        let p = super::partner_of;
        assert_eq!(
            p("sip:a@example.com", "sip:b@example.com", "example.com"),
            ""
        );
        assert_eq!(
            p(
                "sip:a@example.com",
                "sip:pat@Partner.example",
                "example.com"
            ),
            "partner.example"
        );
        assert_eq!(
            p(
                "sip:pat@partner.example",
                "sip:a@EXAMPLE.com",
                "example.com"
            ),
            "partner.example"
        );
    }
}
