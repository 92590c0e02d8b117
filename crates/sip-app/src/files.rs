//! File offers in MESSAGEs (RCS file transfer via HTTP, as Linphone
//! sends them): what the file-transfer policy allows, decided when the
//! MESSAGE is relayed, before the recipient sees it.
//!
//! - A pointer to one of this server's files (`https://OUR-HOST/files/ID`)
//!   must name a file the sender uploaded, not yet expired, and the file
//!   (its recorded name, the type its content showed, every name inside
//!   it) must pass the sender's and the recipient's rules; the pointer's
//!   own declared name must too. Then the recipient may fetch it (granted
//!   in the store before the MESSAGE goes on). The record is read off the
//!   core's task; the MESSAGE waits in its transaction meanwhile.
//! - Partners' users cannot sign in here, so a pointer to our files is
//!   not sent to a partner; a partner's pointer to our files is refused.
//! - A pointer to a file elsewhere is a link: its declared name is judged
//!   by the rules, and the link by the IM filter — left as it is when the
//!   filter would, refused when it blocks, and otherwise delivered as
//!   text with the link defused (or after the warning), no longer a
//!   pointer a client opens by itself.
//! - An end-to-end encrypted body (which may hide a pointer) is refused
//!   where a policy requires inspection.
//! - Files offered straight between clients, in an INVITE or a MESSAGE
//!   (MSRP's `a=file-selector`, Lync's and Communicator's offers): refused
//!   where a policy requires inspection (the bytes never reach the
//!   server), otherwise judged by name.

use std::sync::Arc;

use content::files::{FileRefusal, FileRules};
use content::ft_http::{Offer, Pointer};
use sip::headers::ContentType;
use sip::{Message, RequestFields};
use sip_transport::Source;
use sip_txn::TxnId;

use super::{policy_set, Core, Event, Req};
use crate::unix_now;

/// Where a MESSAGE goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Internal,
    ToPartner,
    FromPartner,
}

/// What to do with a MESSAGE after its file offer was looked at.
pub(crate) enum Checked {
    /// Not an offer, or one that passed: go on as it is.
    Pass,
    /// Refused (and answered).
    Refused,
    /// Go on with this message instead (a foreign pointer made text by
    /// the IM filter: not filtered again).
    Replace(Box<Message>),
    /// Checking it against the store; the core continues on
    /// [`Event::FileChecked`].
    Pending,
}

/// A MESSAGE waiting for its files' records.
#[derive(Debug)]
pub(crate) struct Waiting {
    pub(crate) id: TxnId,
    pub(crate) msg: Message,
    pub(crate) src: Source,
    pub(crate) own_routes: usize,
    pub(crate) sender: String,
    pub(crate) rcpt: String,
    /// The files' records when they passed; `Err((status, reason,
    /// detail))`: refuse it.
    pub(crate) verdict: Result<Vec<store::FileRow>, (u16, &'static str, String)>,
}

/// A message's Content-Type as written (`text/plain` when it has none).
pub(crate) fn content_type_of(msg: &Message) -> String {
    msg.typed::<ContentType>().ok().flatten().map_or_else(
        || "text/plain".to_owned(),
        |c| format!("{}/{}{}", c.top, c.sub, c.params.as_str()),
    )
}

fn refusal_reason(r: &FileRefusal) -> &'static str {
    match r {
        FileRefusal::BlockAll => "Forbidden (File Transfer Not Allowed)",
        FileRefusal::Archive(_) => "Forbidden (File Cannot Be Inspected)",
        _ => "Forbidden (File Type Not Allowed)",
    }
}

const NOT_THE_SENDERS: &str = "Forbidden (Not the Sender's File)";

impl<S: store::Store> Core<S> {
    /// Looks at a MESSAGE's file offer from `sender` to `rcpt`.
    /// `im_rules`: the IM filter that applies to this MESSAGE.
    pub(crate) async fn check_file_offer(
        &mut self,
        r: &Req<'_>,
        sender: &str,
        rcpt: &str,
        direction: Direction,
        im_rules: Option<&Arc<content::im_filter::Rules>>,
    ) -> Checked {
        let content_type = content_type_of(r.msg);
        let (local_users, federated): (Vec<&str>, bool) = match direction {
            Direction::Internal => (vec![sender, rcpt], false),
            Direction::ToPartner => (vec![sender], true),
            Direction::FromPartner => (vec![rcpt], true),
        };
        let pointer = match content::ft_http::offer(&content_type, r.msg.body()) {
            Offer::None => {
                return if self
                    .offers_allowed(r, &content_type, sender, rcpt, direction)
                    .await
                {
                    Checked::Pass
                } else {
                    Checked::Refused
                };
            }
            Offer::Encrypted => {
                if local_users
                    .iter()
                    .any(|u| policy_set::file_limits(&self.policies, u).require_inspection)
                {
                    return self
                        .refuse_offer(
                            r,
                            403,
                            "Forbidden (Encrypted Content Cannot Be Inspected)",
                            "end-to-end encrypted messages may carry files the policy requires to be inspected".into(),
                        )
                        .await;
                }
                return Checked::Pass;
            }
            Offer::Malformed(e) => {
                return self
                    .refuse_offer(r, 400, "Bad Request (Malformed File Pointer)", e.0)
                    .await;
            }
            Offer::Pointer(p) => p,
        };
        let rules: Vec<FileRules> = local_users
            .iter()
            .map(|u| policy_set::file_rules(&self.policies, u, federated))
            .collect();
        if pointer.encrypted
            && local_users
                .iter()
                .any(|u| policy_set::file_limits(&self.policies, u).require_inspection)
        {
            return self
                .refuse_offer(
                    r,
                    403,
                    "Forbidden (Encrypted File Cannot Be Inspected)",
                    "the file is end-to-end encrypted and the policy requires inspection".into(),
                )
                .await;
        }
        for rule in &rules {
            if let Err(why) = content::files::judge_name(rule, &pointer.file.name) {
                return self
                    .refuse_offer(r, 403, refusal_reason(&why), why.to_string())
                    .await;
            }
        }
        let ours: Vec<Option<String>> = pointer.urls().map(|u| self.our_file(u)).collect();
        if ours.iter().any(Option::is_some) {
            if direction != Direction::Internal || ours.iter().any(Option::is_none) {
                let detail = match direction {
                    Direction::ToPartner => {
                        "partners' users cannot sign in to fetch files from this server"
                    }
                    _ => "the pointer names a file that is not the sender's",
                };
                return self
                    .refuse_offer(r, 403, NOT_THE_SENDERS, detail.into())
                    .await;
            }
            let ids: Vec<String> = ours.into_iter().flatten().collect();
            return self
                .check_our_files(r, sender, rcpt, &pointer, ids, rules)
                .await;
        }
        self.foreign_pointer(r, &pointer, im_rules).await
    }

    /// Files offered for transfer straight between the clients in an
    /// INVITE or MESSAGE (MSRP's `a=file-selector`, Lync's offers): the
    /// bytes will not pass through the server, so where a policy requires
    /// inspection they are refused, and otherwise each file's name must
    /// pass every user's rules. `false`: refused (and answered).
    pub(crate) async fn peer_offers_allowed(
        &mut self,
        r: &Req<'_>,
        sender: &str,
        rcpt: &str,
        direction: Direction,
    ) -> bool {
        let content_type = content_type_of(r.msg);
        self.offers_allowed(r, &content_type, sender, rcpt, direction)
            .await
    }

    /// [`Self::peer_offers_allowed`] for a body of `content_type`.
    async fn offers_allowed(
        &mut self,
        r: &Req<'_>,
        content_type: &str,
        sender: &str,
        rcpt: &str,
        direction: Direction,
    ) -> bool {
        let offered = content::offers::offered(content_type, r.msg.body());
        let Some(first) = offered.first() else {
            return true;
        };
        let (local_users, federated): (Vec<&str>, bool) = match direction {
            Direction::Internal => (vec![sender, rcpt], false),
            Direction::ToPartner => (vec![sender], true),
            Direction::FromPartner => (vec![rcpt], true),
        };
        if local_users
            .iter()
            .any(|u| policy_set::file_limits(&self.policies, u).require_inspection)
        {
            let detail = format!(
                "a file offered directly between clients ({}) cannot be inspected; send it with the server's file transfer",
                first.via
            );
            self.refuse_offer(r, 403, "Forbidden (File Cannot Be Inspected)", detail)
                .await;
            return false;
        }
        for u in &local_users {
            let rules = policy_set::file_rules(&self.policies, u, federated);
            for f in &offered {
                if let Err(why) = content::files::judge_name(&rules, &f.name) {
                    self.refuse_offer(r, 403, refusal_reason(&why), why.to_string())
                        .await;
                    return false;
                }
            }
        }
        true
    }

    /// The file id of a URL of this server's file-transfer service.
    fn our_file(&self, url: &str) -> Option<String> {
        let u = content::ft_http::our_url(url)?;
        let web = self.cfg.web_listen?;
        if u.port.unwrap_or(443) != web.port() {
            return None;
        }
        let host = match (
            u.host.parse::<std::net::Ipv4Addr>(),
            u.host.parse::<std::net::Ipv6Addr>(),
        ) {
            (Ok(a), _) => sip::uri::Host::V4(a),
            (_, Ok(a)) => sip::uri::Host::V6(a),
            _ => sip::uri::Host::Name(u.host),
        };
        self.identity.is_our_host(&host).then(|| u.id.to_owned())
    }

    pub(crate) async fn refuse_offer(
        &mut self,
        r: &Req<'_>,
        status: u16,
        reason: &'static str,
        detail: String,
    ) -> Checked {
        self.metrics
            .files_refused
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.refuse_with_warning(r, "a file offer was refused", status, reason, &detail)
            .await;
        Checked::Refused
    }

    /// A pointer to files elsewhere: a link for the IM filter.
    async fn foreign_pointer(
        &mut self,
        r: &Req<'_>,
        pointer: &Pointer,
        im_rules: Option<&Arc<content::im_filter::Rules>>,
    ) -> Checked {
        use content::im_filter::Outcome;
        let Some(rules) = im_rules else {
            return Checked::Pass;
        };
        let text = format!(
            "{} ({} bytes): {}",
            pointer.file.name, pointer.file.size, pointer.file.url
        );
        match content::im_filter::filter_body(rules, "text/plain", text.as_bytes()) {
            Outcome::Unchanged => Checked::Pass,
            Outcome::Blocked(why) => {
                let detail = why.detail();
                self.refuse_offer(r, 403, why.reason(), detail).await
            }
            Outcome::Unreadable(why) => self.refuse_offer(r, 403, NOT_THE_SENDERS, why).await,
            Outcome::Rewritten(body) => {
                let bytes = sip::forward::Forward::new(r.msg)
                    .replace(
                        sip::HeaderKind::ContentType,
                        "Content-Type",
                        vec!["text/plain;charset=UTF-8".into()],
                    )
                    .body(body)
                    .serialize();
                match sip::parse_datagram(bytes, &self.forward_limits())
                    .ok()
                    .filter(|m| RequestFields::extract(m).is_ok())
                {
                    Some(m) => Checked::Replace(Box::new(m)),
                    None => {
                        self.reply(r, 513, "Message Too Large", &[]).await;
                        Checked::Refused
                    }
                }
            }
        }
    }

    /// Pointers to our files: the records read, judged and granted off
    /// the core's task; the MESSAGE continues on [`Event::FileChecked`].
    async fn check_our_files(
        &mut self,
        r: &Req<'_>,
        sender: &str,
        rcpt: &str,
        pointer: &Pointer,
        ids: Vec<String>,
        rules: Vec<FileRules>,
    ) -> Checked {
        let Some(permit) = self.write_permit(r).await else {
            return Checked::Refused;
        };
        let (store, events) = (self.store.clone(), self.events_tx.clone());
        let mut waiting = Waiting {
            id: r.id,
            msg: r.msg.clone(),
            src: r.src.clone(),
            own_routes: r.own_routes,
            sender: sender.to_owned(),
            rcpt: rcpt.to_owned(),
            verdict: Ok(Vec::new()),
        };
        let declared = pointer.file.name.clone();
        tokio::spawn(async move {
            let _permit = permit;
            waiting.verdict = judge_files(
                &store,
                &waiting.sender,
                &waiting.rcpt,
                &declared,
                ids,
                &rules,
            )
            .await;
            let _ = events.send(Event::FileChecked(Box::new(waiting))).await;
        });
        Checked::Pending
    }

    /// A MESSAGE whose files were checked: refused, or on its way.
    pub(crate) async fn file_checked(&mut self, w: Waiting) {
        let Ok(f) = RequestFields::extract(&w.msg) else {
            return;
        };
        let r = Req {
            id: w.id,
            msg: &w.msg,
            f: &f,
            src: &w.src,
            own_routes: w.own_routes,
        };
        match w.verdict {
            Ok(files) => {
                let rules = content::im_filter::strictest(
                    self.im_rules(&w.sender, false),
                    self.im_rules(&w.rcpt, false),
                );
                // Recorded as offered if the message goes on.
                self.cdr.offered = Some((w.id, files));
                self.relay_filtered_checked(&r, rules, w.sender, w.rcpt)
                    .await;
                self.cdr.offered = None;
            }
            Err((status, reason, detail)) => {
                self.refuse_offer(&r, status, reason, detail).await;
            }
        }
    }
}

/// Reads the files' records and decides; grants `rcpt` the files when
/// they pass.
async fn judge_files<S: store::Store>(
    store: &S,
    sender: &str,
    rcpt: &str,
    declared: &str,
    ids: Vec<String>,
    rules: &[FileRules],
) -> Result<Vec<store::FileRow>, (u16, &'static str, String)> {
    let now = unix_now();
    let mut rows = Vec::with_capacity(ids.len());
    for id in &ids {
        let row = match store::Files::file(store, id).await {
            Ok(row) => row,
            Err(e) => {
                tracing::error!(error = %e, "file offer: records unreadable");
                return Err((
                    500,
                    "Server Internal Error (File Records Unreadable)",
                    "try again later".into(),
                ));
            }
        };
        let Some(row) = row.filter(|f| f.owner == sender) else {
            return Err((
                403,
                NOT_THE_SENDERS,
                "the pointer names a file that is not the sender's".into(),
            ));
        };
        if row.deleted_at.is_some() || row.expires_at <= now {
            return Err((
                403,
                "Forbidden (File Expired)",
                format!("{:?} has expired", row.name),
            ));
        }
        for r in rules {
            content::files::judge_recorded(r, &row.name, &row.kind, &row.inner)
                .and_then(|()| content::files::judge_name(r, declared))
                .map_err(|why| (403, refusal_reason(&why), why.to_string()))?;
        }
        rows.push(row);
    }
    store::Files::grant_files(store, ids, vec![rcpt.to_owned()])
        .await
        .map(|()| rows)
        .map_err(|e| {
            tracing::error!(error = %e, "file offer: grant not stored");
            (
                500,
                "Server Internal Error (File Not Shared)",
                "try again later".into(),
            )
        })
}
