//! What the core does on its own: connections that closed, and the
//! once-a-second housekeeping (expiries, user-table reloads, interfaces).

use std::time::{Duration, Instant};

use crate::policy_set::PolicySet;
use crate::users::UserCache;
use crate::{unix_now, Core, Event, INTERFACES_EVERY};

impl<S: store::Store> Core<S> {
    /// A connection closed: the registrations that lived on it go, in
    /// memory at once and in the store unless re-registered since, and the
    /// users' watchers learn it.
    pub(crate) fn flow_closed(&mut self, flow: sip_transport::FlowId) {
        self.org_flows.remove(&flow);
        self.fed.flow_closed(flow);
        self.edges.closed(flow);
        self.pool.closed(flow);
        self.publications_flow_closed(flow.0);
        let gone = self.location.flow_closed(registrar::Flow(flow.0));
        if gone.is_empty() {
            return;
        }
        for b in &gone {
            self.cdr_signed_out(&b.aor, &b.source, "connection closed");
        }
        let mut aors: Vec<String> = gone.iter().map(|b| b.aor.clone()).collect();
        aors.dedup();
        tracing::debug!(
            flow = flow.0,
            bindings = gone.len(),
            "connection closed: its registrations removed"
        );
        let store = self.store.clone();
        tokio::spawn(async move {
            for b in gone {
                if let Err(e) =
                    store::Bindings::remove_binding_from(&store, &b.aor, &b.key, &b.source).await
                {
                    tracing::warn!(error = %e, aor = %b.aor, "could not remove a closed connection's registration");
                }
            }
        });
        for aor in &aors {
            self.presence_changed(aor);
        }
    }

    pub(crate) fn housekeeping(&mut self) {
        self.run_timer_c();
        self.forget_binding_writes();
        if self.last_archive_purge.elapsed() >= crate::archive::PURGE_EVERY {
            self.last_archive_purge = Instant::now();
            self.archive_purge_due();
        }
        self.archive_probe();
        self.cdr_housekeeping();
        self.dial_edges();
        self.expire_edge_traces();
        if self.last_interfaces.elapsed() >= INTERFACES_EVERY {
            // Addresses come and go (DHCP, VPNs): list them again, off the
            // runtime's threads.
            self.last_interfaces = Instant::now();
            let tx = self.events_tx.clone();
            tokio::task::spawn_blocking(move || {
                let _ = tx.try_send(Event::Interfaces(crate::identity::interface_addrs()));
            });
        }
        self.verifier
            .housekeeping(u64::try_from(unix_now()).unwrap_or(0));
        // Calls recorded for the edges' relays with none here to expire
        // them (a relay here does it too; this runs every few seconds).
        if let Some(control) = &self.relay {
            control.calls.expire_if_due(Instant::now());
        }
        use std::sync::atomic::Ordering::Relaxed;
        let worst = std::mem::take(&mut self.queue_delay.worst);
        self.metrics.inbound_delay_us.store(
            u64::try_from(worst.as_micros()).unwrap_or(u64::MAX),
            Relaxed,
        );
        self.metrics
            .registrations
            .store(self.location.len() as u64, Relaxed);
        self.metrics
            .transactions_live
            .store(self.txn.len() as u64, Relaxed);
        self.metrics
            .transactions_completed
            .store(self.txn.completed_len() as u64, Relaxed);
        self.metrics
            .transactions_completed_bytes
            .store(self.txn.completed_bytes() as u64, Relaxed);
        self.metrics
            .transactions_completed_evicted
            .store(self.txn.completed_evicted(), Relaxed);
        self.metrics
            .connections
            .store(self.transport.connections() as u64, Relaxed);
        self.metrics
            .pending_writes
            .store(self.writes.in_flight() as u64, Relaxed);
        self.metrics.db_commits.store(self.store.commits(), Relaxed);
        self.save_lockouts();
        let now = unix_now();
        self.expire_subscriptions(now);
        self.expire_publications(now);
        self.metrics.publications.store(
            self.presence
                .publications
                .values()
                .map(Vec::len)
                .sum::<usize>() as u64,
            Relaxed,
        );
        self.metrics
            .subscriptions
            .store(self.presence.subs.len() as u64, Relaxed);
        if self.last_presence_purge.elapsed() >= Duration::from_secs(60) {
            self.last_presence_purge = Instant::now();
            let store = self.store.clone();
            tokio::spawn(async move {
                if let Err(e) = store::PresenceState::purge_expired_presence(&store, now).await {
                    tracing::warn!(error = %e, "could not purge expired presence state");
                }
                // Users' expired sign-in sessions (refused anyway once expired).
                if let Err(e) = store::UserSessions::purge_expired_user_sessions(&store, now).await
                {
                    tracing::warn!(error = %e, "could not purge expired user sessions");
                }
            });
        }
        let expired: Vec<(String, String)> = self
            .location
            .expire_bindings(now)
            .into_iter()
            .map(|b| {
                self.cdr_signed_out(&b.aor, &b.source, "expired");
                (b.aor, b.key)
            })
            .collect();
        let mut expired_aors: Vec<&str> = expired.iter().map(|(a, _)| a.as_str()).collect();
        expired_aors.dedup();
        let expired_aors: Vec<String> = expired_aors.into_iter().map(str::to_owned).collect();
        for aor in &expired_aors {
            self.presence_changed(aor);
        }
        if !expired.is_empty() {
            let store = self.store.clone();
            tokio::spawn(async move {
                if let Err(e) = store::Bindings::remove_expired_bindings(&store, expired, now).await
                {
                    tracing::warn!(error = %e, "could not purge expired bindings");
                }
            });
        }
        // What this node's caches hold, for the other nodes and the
        // operator (a shared store writes it with the node's heartbeat).
        store::Store::report_applied(&self.store, self.policies.version, self.users.version);
        self.check_versions();
    }

    /// Reads the policy and users versions, and reloads what changed
    /// elsewhere (another process on the same database): every second,
    /// and at once when the change log says another node changed them.
    pub(crate) fn check_versions(&mut self) {
        if !self.reloading_policies {
            self.reloading_policies = true;
            let (store, events, version) = (
                self.store.clone(),
                self.events_tx.clone(),
                self.policies.version,
            );
            // Changes made elsewhere (another process on the same database).
            tokio::spawn(async move {
                let fresh = match store::Policies::policy_version(&store).await {
                    Ok(v) if v != version => match PolicySet::load(&store).await {
                        Ok(p) => Some(p),
                        Err(e) => {
                            tracing::warn!(error = %e, "policy reload failed; the previous snapshot stays");
                            None
                        }
                    },
                    Ok(_) => None,
                    Err(e) => {
                        tracing::warn!(error = %e, "policy version check failed");
                        None
                    }
                };
                let _ = events.send(Event::Policies(fresh)).await;
            });
        }
        if !self.reloading {
            self.reloading = true;
            let (store, events, seal, version) = (
                self.store.clone(),
                self.events_tx.clone(),
                self.seal.clone(),
                self.users.version,
            );
            tokio::spawn(async move {
                let fresh = match store.users_version().await {
                    Ok(v) if v != version => match UserCache::load(&store, &seal).await {
                        Ok(c) => Some(c),
                        Err(e) => {
                            tracing::warn!(error = %e, "user reload failed");
                            None
                        }
                    },
                    Ok(_) => None,
                    Err(e) => {
                        tracing::warn!(error = %e, "user version check failed");
                        None
                    }
                };
                let _ = events.send(Event::Users(fresh)).await;
            });
        }
    }
}
