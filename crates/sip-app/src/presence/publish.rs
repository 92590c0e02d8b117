//! PUBLISH (RFC 3903) of `presence`: a user publishes their own state, one
//! entity tag per device. Initial publication (a PIDF body, no
//! SIP-If-Match), refresh (SIP-If-Match, no body), modification (both) and
//! removal (SIP-If-Match, Expires: 0); every accepted one gets a new entity
//! tag. The publication is written to the database before the 2xx.

use bytes::Bytes;
use sip::headers::{ContentType, Event as EventHeader, Expires};
use sip::{HeaderKind, Uri};
use sip_txn::TxnId;
use store::PublicationRow;

use super::{Publication, MAX_EXPIRES, MAX_PUBLICATIONS, MIN_EXPIRES};
use crate::authn::Challenger;
use crate::unix_now;
use crate::{Core, Event, Req};

/// A publication change, applied in memory once stored.
#[derive(Debug)]
pub(crate) enum PubChange {
    Put {
        aor: String,
        replaces: Option<String>,
        publication: Box<Publication>,
    },
    Remove {
        aor: String,
        etag: String,
    },
}

impl<S: store::Store> Core<S> {
    pub(crate) async fn on_publish(&mut self, r: &Req<'_>) {
        let event = r.msg.typed::<EventHeader>();
        let Ok(Some(event)) = event else {
            return self
                .reply(r, 489, "Bad Event", &[("Allow-Events", "presence")])
                .await;
        };
        if !event.event_type.eq_ignore_ascii_case("presence") {
            return self
                .reply(r, 489, "Bad Event", &[("Allow-Events", "presence")])
                .await;
        }
        let Some((aor, user)) = self.local_sender(r) else {
            return self
                .relaying_denied(r, "the sender (From) is not a user of this domain")
                .await;
        };
        if !self.authenticate(r, &aor, &user, Challenger::Proxy).await {
            return;
        }
        let target = match r.f.request_uri {
            Uri::Sip(u) => u.user.map(|u| format!("sip:{u}@{}", self.cfg.domain)),
            _ => None,
        };
        if target.as_deref() != Some(aor.as_str()) {
            return self
                .reply(r, 403, "Forbidden (Publish Only Your Own Presence)", &[])
                .await;
        }
        let Ok(expires) = r.msg.typed::<Expires>() else {
            return self
                .reply(r, 400, "Bad Request (Invalid Expires)", &[])
                .await;
        };
        let expires = expires.map_or(super::DEFAULT_EXPIRES, |e| e.0);
        if expires != 0 && expires < MIN_EXPIRES {
            let min = MIN_EXPIRES.to_string();
            return self
                .reply(r, 423, "Interval Too Brief", &[("Min-Expires", &min)])
                .await;
        }
        let expires = expires.min(MAX_EXPIRES);
        let if_match = r.msg.header(HeaderKind::SipIfMatch).map(|h| h.value.trim());
        let current = if_match.map(|etag| {
            self.presence
                .publications
                .get(&aor)
                .and_then(|v| v.iter().find(|p| p.etag == etag))
                .cloned()
        });
        if let Some(None) = current {
            return self.reply(r, 412, "Conditional Request Failed", &[]).await;
        }
        let current = current.flatten();
        let body = r.msg.body();
        let doc = if body.is_empty() {
            None
        } else {
            let pidf = r
                .msg
                .typed::<ContentType>()
                .ok()
                .flatten()
                .is_some_and(|c| c.is("application", "pidf+xml"));
            if !pidf {
                return self
                    .reply(
                        r,
                        415,
                        "Unsupported Media Type",
                        &[("Accept", "application/pidf+xml")],
                    )
                    .await;
            }
            match presence::Presence::parse_lenient(body) {
                Ok((mut d, lenient)) => {
                    if lenient.contains(&presence::pidf::Leniency::BasicUnknown) {
                        self.log_quirk(
                            r,
                            "<basic>unknown</basic> in a PUBLISH, taken as no information",
                        );
                    }
                    d.entity.clone_from(&aor);
                    Some(d)
                }
                Err(e) => {
                    let warning = format!("399 parapet \"{}\"", e.0.replace('"', "'"));
                    return self
                        .reply(
                            r,
                            400,
                            "Bad Request (Invalid Presence Document)",
                            &[("Warning", &warning)],
                        )
                        .await;
                }
            }
        };
        let now = unix_now();
        let change = match (current, doc, expires) {
            (None, None, _) => {
                return self
                    .reply(r, 400, "Bad Request (Missing Presence Document)", &[])
                    .await
            }
            (None, Some(_), 0) => {
                return self
                    .reply(r, 400, "Bad Request (Expires 0 Without SIP-If-Match)", &[])
                    .await
            }
            (Some(old), _, 0) => PubChange::Remove {
                aor: aor.clone(),
                etag: old.etag,
            },
            (old, doc, _) => {
                let Some(doc) = doc.or_else(|| old.as_ref().map(|o| o.doc.clone())) else {
                    return;
                };
                let Some(etag) = self.random_id() else {
                    return self.reply(r, 500, "Server Internal Error", &[]).await;
                };
                // A device that lost its tag (a restart, or a client that
                // starts a second publication) publishes afresh: a publication
                // with the same tuple (id and contact) is the same device's and
                // is replaced; else the oldest makes room when the user is at
                // the limit, rather than the new one failing.
                let pubs = self.presence.publications.get(&aor);
                let replaces = old
                    .map(|o| o.etag)
                    .or_else(|| {
                        pubs?
                            .iter()
                            .find(|p| same_device(&p.doc, &doc))
                            .map(|p| p.etag.clone())
                    })
                    .or_else(|| {
                        let pubs = pubs?;
                        (pubs.len() >= MAX_PUBLICATIONS)
                            .then(|| pubs.iter().min_by_key(|p| p.expires_at))
                            .flatten()
                            .map(|p| p.etag.clone())
                    });
                PubChange::Put {
                    aor: aor.clone(),
                    replaces,
                    publication: Box::new(Publication {
                        etag,
                        expires_at: now + i64::from(expires),
                        doc,
                        flow: r.src.protocol.is_reliable().then_some(r.src.flow.0),
                        remote: false,
                    }),
                }
            }
        };
        let expires_s = expires.to_string();
        let ok = match &change {
            PubChange::Put { publication, .. } => self.build(
                r,
                200,
                "OK",
                &[("SIP-ETag", &publication.etag), ("Expires", &expires_s)],
            ),
            // RFC 3903 §6 step 8: every 2xx carries SIP-ETag and Expires;
            // for a removal, the tag of the state removed (SIP.js warns
            // without it).
            PubChange::Remove { etag, .. } => {
                let etag = etag.clone();
                self.build(r, 200, "OK", &[("SIP-ETag", &etag), ("Expires", "0")])
            }
        };
        let failed = self.build(r, 500, "Server Internal Error (Not Stored)", &[]);
        self.store_publication(r, change, ok, failed).await;
    }

    async fn store_publication(
        &mut self,
        r: &Req<'_>,
        change: PubChange,
        ok: Bytes,
        failed: Bytes,
    ) {
        let Some(permit) = self.write_permit(r).await else {
            return;
        };
        let (store, events, id) = (self.store.clone(), self.events_tx.clone(), r.id);
        tokio::spawn(async move {
            let _permit = permit;
            let result = match &change {
                PubChange::Put {
                    aor,
                    replaces,
                    publication,
                } => {
                    store
                        .put_publication(
                            PublicationRow {
                                etag: publication.etag.clone(),
                                aor: aor.clone(),
                                expires_at: publication.expires_at,
                                document: publication.doc.to_xml(),
                            },
                            replaces.clone(),
                        )
                        .await
                }
                PubChange::Remove { etag, .. } => store.remove_publication(etag).await.map(|_| ()),
            };
            let (stored, failed_status, failed) = match result {
                Ok(()) => (true, 500, failed),
                Err(e) => {
                    tracing::error!(error = %e, "publication not stored");
                    let (status, bytes) = crate::writes::not_stored(&e, failed);
                    (false, status, bytes)
                }
            };
            let _ = events
                .send(Event::Published(Box::new(Published {
                    id,
                    change,
                    stored,
                    ok,
                    failed,
                    failed_status,
                })))
                .await;
        });
    }

    /// A publication was written (or not): apply it, answer, notify.
    pub(crate) async fn published(&mut self, p: Published) {
        if !p.stored {
            return self
                .respond_event(p.id, "PUBLISH", p.failed_status, p.failed)
                .await;
        }
        let aor = match p.change {
            PubChange::Put {
                aor,
                replaces,
                publication,
            } => {
                if let Some(f) = publication.flow {
                    let on_flow = self.presence.publication_flows.entry(f).or_default();
                    if !on_flow.contains(&aor) {
                        on_flow.push(aor.clone());
                    }
                }
                let list = self.presence.publications.entry(aor.clone()).or_default();
                list.retain(|x| Some(&x.etag) != replaces.as_ref() && x.etag != publication.etag);
                list.push(*publication);
                aor
            }
            PubChange::Remove { aor, etag } => {
                if let Some(list) = self.presence.publications.get_mut(&aor) {
                    list.retain(|x| x.etag != etag);
                    if list.is_empty() {
                        self.presence.publications.remove(&aor);
                    }
                }
                aor
            }
        };
        self.respond_event(p.id, "PUBLISH", 200, p.ok).await;
        self.presence_changed(&aor);
        self.flush().await;
    }

    /// The publications of `aor` as the store holds them, read after
    /// another node of the pool changed them: those read from the store
    /// before are replaced, those published through this process stay as
    /// its memory has them (its writes may be under way); watchers told.
    pub(crate) fn remote_publications(&mut self, aor: String, rows: Vec<PublicationRow>) {
        let mut list: Vec<Publication> = self
            .presence
            .publications
            .remove(&aor)
            .unwrap_or_default()
            .into_iter()
            .filter(|p| !p.remote)
            .collect();
        for row in rows {
            if list.iter().any(|p| p.etag == row.etag) {
                continue;
            }
            list.extend(Publication::stored(row));
        }
        if !list.is_empty() {
            self.presence.publications.insert(aor.clone(), list);
        }
        self.presence_changed(&aor);
    }

    /// Publications whose time is up: dropped, watchers told.
    pub(crate) fn expire_publications(&mut self, now: i64) {
        let mut changed = Vec::new();
        self.presence.publications.retain(|aor, list| {
            let before = list.len();
            list.retain(|p| p.expires_at > now);
            if list.len() != before {
                changed.push(aor.clone());
            }
            !list.is_empty()
        });
        for aor in changed {
            self.presence_changed(&aor);
        }
    }
}

impl<S: store::Store> Core<S> {
    /// A connection closed: the publications made over it go (memory at
    /// once, the store behind), and the publishers' watchers learn it.
    pub(crate) fn publications_flow_closed(&mut self, flow: u64) {
        let Some(aors) = self.presence.publication_flows.remove(&flow) else {
            return;
        };
        let mut changed = Vec::new();
        let mut etags = Vec::new();
        for aor in aors {
            let Some(list) = self.presence.publications.get_mut(&aor) else {
                continue;
            };
            let before = list.len();
            list.retain(|p| {
                let closed = p.flow == Some(flow);
                if closed {
                    etags.push(p.etag.clone());
                }
                !closed
            });
            let after = list.len();
            if after == 0 {
                self.presence.publications.remove(&aor);
            }
            if after != before {
                changed.push(aor);
            }
        }
        if etags.is_empty() {
            return;
        }
        let store = self.store.clone();
        tokio::spawn(async move {
            for etag in etags {
                if let Err(e) = store::PresenceState::remove_publication(&store, &etag).await {
                    tracing::warn!(error = %e, "could not remove a closed connection's publication");
                }
            }
        });
        for aor in changed {
            self.presence_changed(&aor);
        }
    }
}

/// Whether two documents come from the same device: a tuple with the same
/// id and the same contact (or no contact) in both.
fn same_device(a: &presence::Presence, b: &presence::Presence) -> bool {
    a.tuples.iter().any(|x| {
        b.tuples
            .iter()
            .any(|y| x.id == y.id && x.contact == y.contact)
    })
}

/// A stored (or failed) publication change, back in the core.
#[derive(Debug)]
pub(crate) struct Published {
    pub(crate) id: TxnId,
    pub(crate) change: PubChange,
    pub(crate) stored: bool,
    pub(crate) ok: Bytes,
    pub(crate) failed: Bytes,
    /// 500, or 503 when the database could not be reached.
    pub(crate) failed_status: u16,
}

#[cfg(test)]
mod tests {
    use super::same_device;
    use presence::{Presence, Tuple};

    fn doc(id: &str, contact: Option<&str>) -> Presence {
        Presence {
            entity: "sip:a@example.com".into(),
            tuples: vec![Tuple {
                id: id.into(),
                contact: contact.map(str::to_owned),
                ..Tuple::default()
            }],
            person: None,
            notes: vec![],
        }
    }

    #[test]
    fn a_device_is_its_tuple() {
        let desk = doc("t1", Some("sip:a@192.0.2.1"));
        assert!(same_device(&desk, &doc("t1", Some("sip:a@192.0.2.1"))));
        assert!(!same_device(&desk, &doc("t1", Some("sip:a@192.0.2.2"))));
        assert!(!same_device(&desk, &doc("t2", Some("sip:a@192.0.2.1"))));
        assert!(same_device(&doc("x", None), &doc("x", None)));
    }
}
