//! Requests made inside an allocation (RFC 8656 §7.3, §9, §11): Refresh,
//! CreatePermission and ChannelBind, each checked against the
//! allocation's credentials, and the rule every permission passes — a
//! peer the relay may reach, named by a call of the allocation's user or
//! another allocation here.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use stun::attr;
use stun::integrity::Integrity;
use stun::{Class, Encoder, Message};

use super::{
    error, Answer, Channel, Client, Counts, Ended, Engine, Permission, Refusal, CHANNEL_LIFETIME,
    PERMISSION_LIFETIME,
};

/// Why a peer no call justifies is refused (and the one refusal an
/// edge's relay asks the pool about).
const NO_CALL: &str = "the peer is in no call of this user";

impl<T: Clone> Engine<T> {
    /// Whether `peer` may be given a permission by `a`'s user: `Ok(call)`
    /// with the call that names it (`None`: another allocation here).
    fn justify(&self, aor: &str, peer: SocketAddr) -> Result<Option<String>, &'static str> {
        if self.by_relayed.contains_key(&peer) {
            return Ok(None);
        }
        crate::peer::allowed(peer.ip(), &self.own).map_err(|r| r.reason())?;
        self.control
            .calls
            .call_naming(aor, crate::peer::canonical(peer.ip()))
            .map(Some)
            .ok_or(NO_CALL)
    }

    /// Refresh, CreatePermission or ChannelBind from `c` (RFC 8656 §7.3,
    /// §9, §12), its credentials checked with the allocation's key.
    pub fn request(&mut self, c: &Client, m: &Message<'_>, now: Instant, unix: u64) -> Answer<T> {
        self.unjustified = None;
        let plain = |response| Answer {
            response,
            removed: None,
            unjustified: None,
        };
        let Some(&id) = self.by_client.get(c) else {
            return plain(error(m, 437, "Allocation Mismatch"));
        };
        let alg = match self.check(id, m, c.addr.ip(), unix) {
            Ok(alg) => alg,
            Err(response) => return plain(response),
        };
        let outcome = match m.method {
            stun::method::REFRESH => self.refresh(id, m, now, unix),
            stun::method::CREATE_PERMISSION => self.create_permission(id, m, now),
            stun::method::CHANNEL_BIND => self.channel_bind(id, m, now),
            _ => Err((400, "Bad Request")),
        };
        let mut removed = None;
        let response = match outcome {
            Ok(Some(lifetime)) => {
                if lifetime == 0 {
                    removed = self.remove(id, Ended::Deleted);
                }
                let key = removed.as_ref().map(|a| a.grant.key.clone());
                let mut e = Encoder::new(Class::Success, m.method, m.transaction_id);
                e.u32(attr::LIFETIME, lifetime);
                self.sign(id, key, e, alg, m)
            }
            Ok(None) => {
                let e = Encoder::new(Class::Success, m.method, m.transaction_id);
                self.sign(id, None, e, alg, m)
            }
            Err((code, reason)) => {
                let mut e = Encoder::new(Class::Error, m.method, m.transaction_id);
                e.error(code, reason);
                self.sign(id, None, e, alg, m)
            }
        };
        self.publish();
        Answer {
            response,
            removed,
            unjustified: self.unjustified.take(),
        }
    }

    fn sign(
        &self,
        id: u64,
        key: Option<Vec<u8>>,
        e: Encoder,
        alg: Integrity,
        m: &Message<'_>,
    ) -> Vec<u8> {
        let key = key.or_else(|| self.allocations.get(&id).map(|a| a.grant.key.clone()));
        let fp = m.fingerprint_ok().is_some();
        match key {
            Some(k) => e.finish_with(Some((alg, &k)), fp),
            None => e.finish_with(None, fp),
        }
    }

    /// The request's credentials against the allocation's: the integrity
    /// algorithm to answer with, or the error response.
    fn check(&self, id: u64, m: &Message<'_>, ip: IpAddr, unix: u64) -> Result<Integrity, Vec<u8>> {
        let Some(a) = self.allocations.get(&id) else {
            return Err(error(m, 437, "Allocation Mismatch"));
        };
        let nonce = || self.nonces.issue(ip, unix);
        match crate::auth::credentials(m, &self.nonces, &self.realm, ip, unix) {
            Ok(creds) if creds.username != a.grant.username => {
                Err(error(m, 441, "Wrong Credentials"))
            }
            // Web credentials are good until they expire, not after.
            Ok(_) if a.grant.web.as_ref().is_some_and(|(_, exp)| unix > *exp) => Err(
                crate::auth::challenge(m, 401, "Unauthenticated", &self.realm, &nonce()),
            ),
            Ok(_) => m.verify(&a.grant.key).map_err(|_| {
                crate::auth::challenge(m, 401, "Unauthenticated", &self.realm, &nonce())
            }),
            Err(crate::auth::Refusal::Challenge) => Err(crate::auth::challenge(
                m,
                401,
                "Unauthenticated",
                &self.realm,
                &nonce(),
            )),
            Err(crate::auth::Refusal::Stale) => Err(crate::auth::challenge(
                m,
                438,
                "Stale Nonce",
                &self.realm,
                &nonce(),
            )),
            Err(crate::auth::Refusal::Bad(why)) => Err(error(m, 400, why)),
        }
    }

    fn refresh(
        &mut self,
        id: u64,
        m: &Message<'_>,
        now: Instant,
        unix: u64,
    ) -> Result<Option<u32>, (u16, &'static str)> {
        let requested = match m.get(attr::LIFETIME) {
            Some(v) => Some(
                attr::u32_value(attr::LIFETIME, v)
                    .map_err(|_| (400, "Bad Request: LIFETIME is malformed"))?,
            ),
            None => None,
        };
        if let Some(v) = m.get(attr::REQUESTED_ADDRESS_FAMILY) {
            let family = attr::address_family(attr::REQUESTED_ADDRESS_FAMILY, v)
                .map_err(|_| (400, "Bad Request: REQUESTED-ADDRESS-FAMILY is malformed"))?;
            let ours = self
                .allocations
                .get(&id)
                .map(|a| if a.relayed.is_ipv4() { 1 } else { 2 });
            if Some(family) != ours {
                return Err((443, "Peer Address Family Mismatch"));
            }
        }
        if requested == Some(0) {
            return Ok(Some(0));
        }
        let lifetime = match self.allocations.get(&id).and_then(|a| a.grant.web.as_ref()) {
            Some((_, expires)) => self.web_lifetime(requested, *expires, unix),
            None => self.lifetime(requested),
        };
        if let Some(a) = self.allocations.get_mut(&id) {
            a.expires = now + Duration::from_secs(u64::from(lifetime));
        }
        Ok(Some(lifetime))
    }

    /// The peers a request names (XOR-PEER-ADDRESS), each justified.
    fn justified_peers(
        &mut self,
        id: u64,
        m: &Message<'_>,
    ) -> Result<Vec<(SocketAddr, Option<String>)>, Refusal> {
        let Some(a) = self.allocations.get(&id) else {
            return Err((437, "Allocation Mismatch"));
        };
        let (aor, v4) = (a.grant.aor.clone(), a.relayed.is_ipv4());
        let mut peers = Vec::new();
        for at in m
            .attributes()
            .iter()
            .filter(|at| at.kind == attr::XOR_PEER_ADDRESS)
        {
            let peer = attr::xor_address(attr::XOR_PEER_ADDRESS, at.value, &m.transaction_id)
                .map_err(|_| (400, "Bad Request: XOR-PEER-ADDRESS is malformed"))?;
            let peer = SocketAddr::new(crate::peer::canonical(peer.ip()), peer.port());
            // What may never be reached is refused whatever its form, before
            // the family is compared.
            match self.justify(&aor, peer) {
                Ok(_) if peer.is_ipv4() != v4 => {
                    return Err((443, "Peer Address Family Mismatch"));
                }
                Ok(call) => peers.push((peer, call)),
                Err(why) => {
                    if why == NO_CALL {
                        self.unjustified = Some(aor.clone());
                    }
                    self.metrics.permissions_refused.inc();
                    tracing::info!(user = %aor, peer = %peer, why, "relay: permission refused");
                    return Err((403, "Forbidden"));
                }
            }
        }
        if peers.is_empty() {
            return Err((400, "Bad Request: no XOR-PEER-ADDRESS"));
        }
        Ok(peers)
    }

    fn permit(
        &mut self,
        id: u64,
        peer: SocketAddr,
        call: Option<String>,
        now: Instant,
    ) -> Result<(), (u16, &'static str)> {
        let cap = self.limits.permissions_per_allocation;
        let Some(a) = self.allocations.get_mut(&id) else {
            return Err((437, "Allocation Mismatch"));
        };
        let ip = peer.ip();
        if !a.permissions.contains_key(&ip) {
            if a.permissions.len() >= cap {
                return Err((508, "Insufficient Capacity"));
            }
            tracing::info!(user = %a.grant.aor, relayed = %a.relayed, peer = %ip, call = call.as_deref().unwrap_or("(another allocation here)"), "relay: permission granted");
            self.metrics.permissions_made.inc();
            self.permissions_now += 1;
        }
        // The call this media is for, for its usage record: the one that
        // justified the peer, or for another allocation here the one whose
        // session description names it (which justifies nothing).
        let usage_call = call.clone().or_else(|| {
            self.control
                .calls
                .call_naming(&a.grant.aor, crate::peer::canonical(ip))
        });
        // Refreshed: its counts go on.
        let p = a.permissions.entry(ip).or_insert_with(|| Permission {
            expires: now,
            call: None,
            usage_call: None,
            counts: Counts::default(),
        });
        p.expires = now + PERMISSION_LIFETIME;
        p.call = call;
        p.usage_call = usage_call;
        Ok(())
    }

    fn create_permission(
        &mut self,
        id: u64,
        m: &Message<'_>,
        now: Instant,
    ) -> Result<Option<u32>, (u16, &'static str)> {
        let peers = self.justified_peers(id, m)?;
        let cap = self.limits.permissions_per_allocation;
        if let Some(a) = self.allocations.get(&id) {
            let new = peers
                .iter()
                .filter(|(p, _)| !a.permissions.contains_key(&p.ip()))
                .count();
            if a.permissions.len() + new > cap {
                return Err((508, "Insufficient Capacity"));
            }
        }
        for (peer, call) in peers {
            self.permit(id, peer, call, now)?;
        }
        Ok(None)
    }

    fn channel_bind(
        &mut self,
        id: u64,
        m: &Message<'_>,
        now: Instant,
    ) -> Result<Option<u32>, (u16, &'static str)> {
        let channel = m
            .get(attr::CHANNEL_NUMBER)
            .and_then(|v| attr::channel_number(v).ok())
            .filter(|n| stun::channel::is_channel(*n))
            .ok_or((
                400,
                "Bad Request: CHANNEL-NUMBER missing or not 0x4000-0x7FFF",
            ))?;
        let peers = self.justified_peers(id, m)?;
        let [(peer, call)] = <[_; 1]>::try_from(peers)
            .map_err(|_| (400, "Bad Request: one XOR-PEER-ADDRESS is needed"))?;
        let cap = self.limits.permissions_per_allocation;
        {
            let Some(a) = self.allocations.get(&id) else {
                return Err((437, "Allocation Mismatch"));
            };
            // A channel stays with its peer, and a peer with its channel.
            if a.channels.get(&channel).is_some_and(|c| c.peer != peer) {
                return Err((400, "Bad Request: the channel is bound to another peer"));
            }
            if a.channel_of.get(&peer).is_some_and(|c| *c != channel) {
                return Err((400, "Bad Request: the peer is bound to another channel"));
            }
            if !a.channels.contains_key(&channel) && a.channels.len() >= cap {
                return Err((508, "Insufficient Capacity"));
            }
        }
        self.permit(id, peer, call, now)?;
        if let Some(a) = self.allocations.get_mut(&id) {
            let fresh = !a.channels.contains_key(&channel);
            let c = a.channels.entry(channel).or_insert_with(|| Channel {
                peer,
                expires: now,
                counts: Counts::default(),
            });
            c.expires = now + CHANNEL_LIFETIME;
            if fresh {
                tracing::info!(user = %a.grant.aor, relayed = %a.relayed, peer = %peer, channel, "relay: channel bound");
                self.metrics.channels_made.inc();
                self.channels_now += 1;
            }
            a.channel_of.insert(peer, channel);
        }
        Ok(None)
    }
}
