//! Commands from the admin and user APIs: status, lockouts, swapping in
//! a new user table or policy snapshot, contact lists, password checks,
//! watchers and registrations.

use std::collections::HashSet;

use crate::command::{AdminCmd, LockoutRow, Status};
use crate::policy_set::PolicySet;
use crate::users::UserCache;
use crate::{presence, unix_now, Core};

impl<S: store::Store> Core<S> {
    pub(crate) fn on_admin(&mut self, cmd: AdminCmd) {
        let now = u64::try_from(unix_now()).unwrap_or(0);
        match cmd {
            AdminCmd::EdgeTraces { query, reply } => self.ask_edges_for_traces(query, reply),
            AdminCmd::Status(reply) => {
                let mut warnings = Vec::new();
                if self.cfg.allow_insecure_transports {
                    warnings.push("insecure transports are enabled (plain UDP/TCP/WS): SIP on them is readable and forgeable on the network".to_string());
                }
                let _ = reply.send(Status {
                    version: env!("CARGO_PKG_VERSION").into(),
                    domain: self.cfg.domain.clone(),
                    listeners: self.cfg.listen.iter().map(|l| l.to_string()).collect(),
                    insecure_transports: self.cfg.allow_insecure_transports,
                    warnings,
                    users: self.users.len(),
                    registrations: self.location.len(),
                    connections: self.transport.connections(),
                    uptime_secs: self.started.elapsed().as_secs(),
                    edges: self.edges.status(),
                });
            }
            AdminCmd::Lockouts(reply) => {
                let rows = self
                    .filter
                    .entries(now)
                    .into_iter()
                    .map(|e| LockoutRow {
                        account: e.account,
                        source: e.source.map(|s| s.to_string()),
                        until: e.until,
                        lockouts: e.lockouts,
                    })
                    .collect();
                let _ = reply.send(rows);
            }
            AdminCmd::ClearLockouts {
                account,
                source,
                reply,
            } => {
                let n = self.filter.clear(account.as_deref(), source, now);
                tracing::info!(account = account.as_deref().unwrap_or("*"), source = ?source, cleared = n, "lockouts cleared by an administrator");
                self.lockouts_cleared(reply, n);
            }
            AdminCmd::Partners(reply) => {
                let set = &self.policies;
                let mut rows =
                    self.fed
                        .book
                        .rows(|d| match crate::policy_set::partner_status(set, d) {
                            Ok(crate::policy_set::PartnerStatus::Allowed) => "allowed",
                            Ok(crate::policy_set::PartnerStatus::Discovered) => "discovered",
                            Err(_) => "refused",
                        });
                for r in &mut rows {
                    r.connections = self.fed.connections_to(&r.domain);
                }
                let _ = reply.send(rows);
            }
            AdminCmd::SetEdges(setup, reply) => {
                self.install_edges(setup);
                let _ = reply.send(());
            }
            AdminCmd::ClearPartner { domain, reply } => {
                let cleared = self.fed.book.clear(&domain.to_ascii_lowercase());
                tracing::info!(partner = %domain, cleared, "partner's watch list entry cleared by an administrator");
                let _ = reply.send(cleared);
            }
            AdminCmd::Explain {
                from,
                to,
                modality,
                reply,
            } => {
                let _ = reply.send(self.explain(&from, &to, modality));
            }
            AdminCmd::Users(fresh, reply) => {
                if fresh.version > self.users.version {
                    self.install_users(fresh);
                }
                let _ = reply.send(());
            }
            AdminCmd::User {
                aor,
                version,
                user,
                reply,
            } => {
                let gone = !user.as_ref().is_some_and(|u| u.enabled);
                let new_secret = match (self.users.get(&aor), &user) {
                    (Some(old), Some(new)) => old.secrets.md5 != new.secrets.md5,
                    _ => false,
                };
                if gone || new_secret {
                    self.relay_revoke(&aor);
                }
                if gone {
                    // Removed or disabled: its registrations go at once,
                    // and its devices with their connections.
                    for b in self.location.remove_aor(&aor) {
                        self.cdr_signed_out(&b.aor, &b.source, "removed");
                    }
                    self.revoke_devices(&aor, None);
                }
                self.users.set(version, &aor, user);
                if gone {
                    self.presence_user_gone(&aor);
                } else {
                    self.presence_changed(&aor);
                }
                let _ = reply.send(());
            }
            AdminCmd::Policies(fresh, reply) => {
                self.install_policies(fresh);
                let _ = reply.send(());
            }
            AdminCmd::CheckPassword {
                aor,
                source,
                password,
                then_second_factor,
                reply,
            } => {
                let _ =
                    reply.send(self.check_password(&aor, source, &password, then_second_factor));
            }
            AdminCmd::Relay(ask) => self.relay_ask(ask),
            AdminCmd::HttpSignIn { credentials, reply } => {
                let _ = reply.send(self.http_sign_in(&credentials));
            }
            AdminCmd::RevokeDevices {
                aor,
                fingerprints,
                reply,
            } => {
                let _ = reply.send(self.revoke_devices(&aor, fingerprints));
            }
            AdminCmd::SecondFactor {
                aor,
                source,
                passed,
                reply,
            } => {
                self.second_factor(&aor, source, passed);
                let _ = reply.send(());
            }
            AdminCmd::Registrations { aor, reply } => {
                let rows = self
                    .location
                    .lookup(&aor, unix_now())
                    .into_iter()
                    .map(|(b, flow)| registration_row(b, flow.is_some()))
                    .collect();
                let _ = reply.send(rows);
            }
            AdminCmd::Watchers { aor, reply } => {
                let _ = reply.send(self.watcher_statuses(&aor));
            }
            AdminCmd::Contacts { owner, rows, reply } => {
                self.contacts_replaced(&owner, &rows);
                let _ = reply.send(());
            }
        }
    }

    /// `owner`'s contact list is now `rows` (changed through an API, here
    /// or on another node of the pool).
    pub(crate) fn contacts_replaced(&mut self, owner: &str, rows: &[store::ContactRow]) {
        self.presence.contacts.replace(owner, rows);
        // What the owner's watchers may see, and their statuses; what the
        // owner's list subscriptions carry.
        self.presence_changed(owner);
        self.list_changed(owner);
    }

    pub(crate) fn install_policies(&mut self, fresh: PolicySet) {
        if fresh.version > self.policies.version {
            tracing::info!(version = fresh.version, "policy snapshot replaced");
            let old = std::mem::replace(&mut self.policies, fresh);
            self.cdr.retention.policies = self.policies.clone();
            self.im_rules.clear();
            // Watchers of users whose privacy settings changed get a NOTIFY.
            let mut watched: HashSet<&str> = self.presence.watchers.keys().map(|k| &**k).collect();
            for owner in self.presence.lists.keys() {
                watched.extend(self.presence.contacts.followed(owner));
            }
            let changed: Vec<String> = watched
                .into_iter()
                .filter(|aor| {
                    presence::privacy(&old, aor) != presence::privacy(&self.policies, aor)
                })
                .map(str::to_owned)
                .collect();
            for aor in changed {
                self.presence_changed(&aor);
            }
            self.report_applied();
        }
    }

    /// The paired edges as the store holds them now.
    pub(crate) fn install_edges(&mut self, setup: crate::edges::EdgeSetup) {
        tracing::info!(edges = setup.paired.len(), "paired edges loaded");
        // An edge's one link carries all its users' traffic: it gets the
        // wide queue, not a client's.
        self.transport
            .wide_peers()
            .set(setup.paired.iter().map(|e| e.fingerprint));
        self.edges.set(setup);
    }

    /// Another node of the pool paired or unpaired an edge: the list read
    /// again from the store and loaded (off the core's task).
    pub(crate) fn reload_edges(&self) {
        let Some(loader) = self.edge_loader.clone() else {
            return;
        };
        let (store, events) = (self.store.clone(), self.events_tx.clone());
        tokio::spawn(async move {
            let rows = match store::EdgePairings::edges(&store).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the paired edges another node changed");
                    return;
                }
            };
            match tokio::task::spawn_blocking(move || loader(&rows)).await {
                Ok(Ok(setup)) => {
                    let _ = events.send(crate::Event::EdgesLoaded(setup)).await;
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot load the paired edges"),
                Err(e) => tracing::warn!(error = %e, "cannot load the paired edges"),
            }
        });
    }

    /// Tells the other nodes of a pool (through the store) at once what
    /// this node's caches now hold: an administrator's change made
    /// through another node is answered when every node has it.
    fn report_applied(&self) {
        store::Store::report_applied(&self.store, self.policies.version, self.users.version);
    }

    /// Takes device certificates out of the registry (`None`: all of
    /// `aor`'s) and closes every connection that presented one; returns
    /// how many connections were closed.
    pub(crate) fn revoke_devices(
        &mut self,
        aor: &str,
        fingerprints: Option<Vec<[u8; 32]>>,
    ) -> usize {
        let gone: HashSet<[u8; 32]> = match fingerprints {
            None => {
                // Signed out everywhere: the relay's allocations too.
                self.relay_revoke(aor);
                self.devices.remove_user(aor).into_iter().collect()
            }
            Some(f) => {
                self.devices.remove(f.iter());
                f.into_iter().collect()
            }
        };
        if gone.is_empty() {
            return 0;
        }
        for f in &gone {
            self.device_seen.remove(f);
        }
        let closed = self.transport.close_certified(&gone);
        tracing::info!(user = %aor, certificates = gone.len(), connections = closed, "device certificates revoked; their connections closed");
        closed
    }

    pub(crate) fn install_users(&mut self, c: UserCache) {
        // Users that were removed or disabled lose their bindings at once.
        let gone: Vec<String> = self
            .location_aors()
            .into_iter()
            .filter(|a| !c.get(a).is_some_and(|u| u.enabled))
            .collect();
        for a in &gone {
            for b in self.location.remove_aor(a) {
                self.cdr_signed_out(&b.aor, &b.source, "removed");
            }
            self.revoke_devices(a, None);
        }
        // The relay's allocations of users disabled, removed or given a
        // new password end.
        let revoked: Vec<String> = self
            .users
            .by_aor
            .iter()
            .filter(|(aor, old)| {
                c.get(aor)
                    .is_none_or(|u| !u.enabled || u.secrets.md5 != old.secrets.md5)
            })
            .map(|(aor, _)| aor.clone())
            .collect();
        for aor in &revoked {
            self.relay_revoke(aor);
        }
        tracing::info!(users = c.len(), "user table reloaded");
        self.users = c;
        for a in gone {
            self.presence_user_gone(&a);
        }
        self.report_applied();
    }
}

/// A binding as the admin API shows it.
fn registration_row(b: store::Binding, on_connection: bool) -> crate::command::RegistrationRow {
    let (transport, source) = b
        .source
        .split_once(':')
        .map_or(("", b.source.as_str()), |(t, a)| (t, a));
    crate::command::RegistrationRow {
        transport: transport.to_string(),
        source: source.to_string(),
        reached_by: if on_connection {
            "connection"
        } else {
            "address"
        }
        .to_string(),
        outbound: (b.key != b.contact).then(|| b.key.clone()),
        user_agent: b.user_agent.clone(),
        q: format!("{}.{:03}", b.q / 1000, b.q % 1000),
        expires_at: b.expires_at,
        contact: b.contact,
    }
}
