//! REGISTER: the domain and AOR checks, the lockout gate, digest authentication,
//! the registrar, and the write-through before the 200.

use sip::Uri;
use sip_transport::Protocol;

use super::authn::Challenger;
use super::{Core, Event, Req};
use crate::unix_now;

impl<S: store::Store> Core<S> {
    pub(crate) async fn on_register(&mut self, r: &Req<'_>) {
        let (id, msg, f, src) = (r.id, r.msg, r.f, r.src);
        let now = unix_now();
        // RFC 3261 §10.3 step 3: the To header names the address of record.
        let Uri::Sip(to) = f.to.uri else {
            return self
                .reply(r, 400, "Invalid Address of Record in To", &[])
                .await;
        };
        let Some(user) = to.user else {
            return self
                .reply(r, 400, "Invalid Address of Record in To", &[])
                .await;
        };
        if !to.host.to_string().eq_ignore_ascii_case(&self.cfg.domain) {
            return self.reply(r, 404, "Not Found", &[]).await;
        }
        let aor = format!("sip:{user}@{}", self.cfg.domain);
        if !self
            .authenticate(r, &aor, user, Challenger::Registrar)
            .await
        {
            return;
        }
        // Through an edge, the binding is reached by its Path (the edge's
        // connection at that moment is only one of its links to the pool,
        // and may be replaced while the client stays connected to the edge).
        let via_edge = self.edges.is_edge(src.flow);
        let flow =
            (src.protocol != Protocol::Udp && !via_edge).then_some(registrar::Flow(src.flow.0));
        let source = if via_edge {
            format!("edge:{}", src.remote)
        } else {
            format!(
                "{}:{}",
                src.protocol.via_token().to_ascii_lowercase(),
                src.remote
            )
        };
        let max = crate::policy_set::max_endpoints(
            &self.policies,
            &aor,
            self.location.config().max_bindings,
        );
        let reg = match self
            .location
            .register_limited(&aor, msg, &source, flow, now, max)
        {
            Ok(r) => r,
            Err(e) => {
                let min = match &e {
                    registrar::RegisterError::IntervalTooBrief { min_expires } => {
                        Some(min_expires.to_string())
                    }
                    _ => None,
                };
                let extra: Vec<(&str, &str)> = min
                    .as_deref()
                    .map(|m| ("Min-Expires", m))
                    .into_iter()
                    .collect();
                return self.reply(r, e.status(), e.reason(), &extra).await;
            }
        };
        let mut extra: Vec<(&str, &str)> = reg
            .contacts
            .iter()
            .map(|c| ("Contact", c.as_str()))
            .collect();
        extra.extend(reg.path.iter().map(|p| ("Path", p.as_str())));
        if reg.outbound {
            extra.push(("Require", "outbound"));
        }
        extra.push(("Supported", "outbound, path"));
        let ok = self.build(r, 200, "OK", &extra);
        if reg.changes.is_empty() {
            self.txn
                .respond(id, 200, ok, std::time::Instant::now(), &mut self.out);
            return self.flush().await;
        }
        // Devices signing in and out, recorded once the change is stored.
        let mut usage: Vec<store::CdrRow> = reg
            .changes
            .iter()
            .filter_map(|c| match c {
                registrar::Change::Upsert(b) if reg.signed_in.contains(&b.key) => Some(
                    crate::cdr::sign_in(&aor, b.user_agent.as_deref().unwrap_or(""), &b.source),
                ),
                _ => None,
            })
            .collect();
        usage.extend(
            reg.signed_out
                .iter()
                .map(|s| crate::cdr::sign_out(&aor, s, "signed out")),
        );
        let usage_tx = self.cdr.sender();
        // Durable before acknowledged: the 200 goes out once the store has it.
        let Some(permit) = self.write_permit(r).await else {
            for k in &upserted_keys(&reg.changes) {
                self.location.remove(&aor, k);
            }
            return;
        };
        let fail = self.build(
            r,
            500,
            "Server Internal Error (Registration Not Stored)",
            &[],
        );
        let (store, events) = (self.store.clone(), self.events_tx.clone());
        self.binding_write(&aor, true);
        tokio::spawn(async move {
            let _permit = permit;
            let keys = upserted_keys(&reg.changes);
            let event = match store.apply_bindings(reg.changes).await {
                Ok(()) => {
                    for row in usage {
                        usage_tx.send(row);
                    }
                    let _ = events
                        .send(Event::Respond {
                            id,
                            method: "REGISTER",
                            status: 200,
                            bytes: ok,
                        })
                        .await;
                    Event::Registered { aor }
                }
                Err(e) => {
                    tracing::error!(error = %e, %aor, "registration not stored");
                    let _ = events.send(Event::Unbind { aor, keys }).await;
                    let (status, bytes) = crate::writes::not_stored(&e, fail);
                    Event::Respond {
                        id,
                        method: "REGISTER",
                        status,
                        bytes,
                    }
                }
            };
            let _ = events.send(event).await;
        });
    }
}

fn upserted_keys(changes: &[registrar::Change]) -> Vec<String> {
    changes
        .iter()
        .filter_map(|c| match c {
            registrar::Change::Upsert(b) => Some(b.key.clone()),
            registrar::Change::Remove { .. } => None,
        })
        .collect()
}
