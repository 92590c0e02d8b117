//! The calls the proxy is relaying, as the relay needs them: for each
//! call (by Call-ID), our users in it and, per side (the tag of the end
//! that sent the session description), the addresses its SDP named —
//! connection addresses and ICE candidates. A permission is granted only
//! to an address of a call its allocation's user is in; when the call
//! ends (BYE, CANCEL, a final refusal, Timer C) or a side's re-INVITE
//! names other addresses, the [`generation`](Calls::generation) moves
//! and the relay checks its permissions again (within its tick).
//!
//! Written by the SIP core, read by the relay: one mutex, held for a few
//! map operations, never across an `.await`. Bounded: calls, sides per
//! call, addresses per side, users per call; the oldest call goes first
//! when the table is full, and calls expire on their own (unanswered
//! after [`RINGING_TTL`], answered after [`ANSWERED_TTL`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Calls tracked at once; beyond, the oldest is forgotten.
pub const MAX_CALLS: usize = 100_000;
/// Sides of one call (forked early dialogs count separately).
pub const MAX_SIDES: usize = 8;
/// Addresses one session description may name that are kept.
pub const MAX_ADDRESSES: usize = 32;
/// Users of ours in one call.
pub const MAX_PARTIES: usize = 4;
/// How long a call that has not been answered is kept without news
/// (longer than Timer C, 185 s by default).
pub const RINGING_TTL: Duration = Duration::from_secs(300);
/// How long an answered call is kept without news (a call with no BYE —
/// both clients gone — must not keep its permissions for ever).
pub const ANSWERED_TTL: Duration = Duration::from_secs(12 * 3600);

/// What one end of a call (its tag) described: its addresses, and the
/// user of ours who sent them (empty: not known, or not ours).
#[derive(Debug)]
struct Side {
    tag: String,
    owner: String,
    addresses: Vec<IpAddr>,
}

#[derive(Debug)]
struct Call {
    parties: Vec<String>,
    sides: Vec<Side>,
    answered: bool,
    touched: Instant,
    seq: u64,
}

#[derive(Debug, Default)]
struct Inner {
    by_id: HashMap<String, Call>,
    by_user: HashMap<String, HashSet<String>>,
    /// (call id, seq) in the order calls were first seen, for eviction.
    order: VecDeque<(String, u64)>,
    seq: u64,
    /// Users whose calls ended or changed since the relay last looked
    /// (beyond [`MAX_CHANGED`], everyone: `all_changed`).
    changed: HashSet<String>,
    all_changed: bool,
    /// When calls were last expired (see [`Calls::expire_if_due`]).
    expired: Option<Instant>,
    /// Calls whose media this relay carried (a first packet on a
    /// permission their SDP justified), until the call's record asks.
    relayed: HashMap<String, Instant>,
    /// Of those, the Call-IDs not yet reported to the pool (an edge's
    /// relay only: see [`Calls::report_relayed`]).
    fresh: Vec<String>,
    report: bool,
}

/// The Call-ID prefix of the calls an edge holds for the pool (see
/// [`Calls::mirror`]): a tab, which no SIP Call-ID holds.
const MIRRORED: &str = "pool\t";
/// How long a call held for the pool lives without being told again.
pub const MIRRORED_TTL: Duration = Duration::from_secs(10);
/// How often [`Calls::expire_if_due`] expires.
const EXPIRE_EVERY: Duration = Duration::from_secs(5);

/// Users remembered as changed between two looks of the relay.
const MAX_CHANGED: usize = 65_536;

/// Whose permissions the relay must check again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    Users(HashSet<String>),
    Everyone,
}

/// The addresses a session description names (connection addresses and
/// ICE candidates, in their canonical form: see [`crate::peer::canonical`]);
/// `None` if it does not read.
pub fn addresses_in(sdp: &[u8]) -> Option<Vec<IpAddr>> {
    let s = sdp::Session::parse(sdp).ok()?;
    Some(
        s.media_addresses()
            .into_iter()
            .map(crate::peer::canonical)
            .collect(),
    )
}

/// The addresses the session descriptions in a body of `content_type`
/// name (an `application/sdp` body, or the `application/sdp` parts of a
/// `multipart/*` one: [`sdp::body`]); `None` if it holds none.
pub fn addresses_in_body(content_type: &str, body: &[u8]) -> Option<Vec<IpAddr>> {
    let bodies = sdp::body::sdp_bodies(content_type, body);
    if body.is_empty() || bodies.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    for b in bodies {
        out.extend(addresses_in(b).unwrap_or_default());
    }
    Some(out)
}

/// The calls table (see the module's documentation).
#[derive(Debug, Default)]
pub struct Calls {
    inner: Mutex<Inner>,
    generation: AtomicU64,
}

impl Inner {
    fn mark(&mut self, parties: &[String]) {
        for p in parties {
            if self.changed.len() >= MAX_CHANGED {
                self.all_changed = true;
                self.changed.clear();
            }
            if !self.all_changed {
                self.changed.insert(p.clone());
            }
        }
    }

    fn remove(&mut self, call_id: &str) -> bool {
        let Some(call) = self.by_id.remove(call_id) else {
            return false;
        };
        self.mark(&call.parties);
        for p in call.parties {
            if let Some(set) = self.by_user.get_mut(&p) {
                set.remove(call_id);
                if set.is_empty() {
                    self.by_user.remove(&p);
                }
            }
        }
        true
    }
}

impl Calls {
    pub fn new() -> Calls {
        Calls::default()
    }

    /// Moves whenever an address may have stopped being justified.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Called with the lock held, after [`Inner::mark`]: the relay then
    /// sees the users and the generation together.
    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The users whose calls ended or changed since the last call (the
    /// relay's), and the generation that covers them.
    pub fn take_changed(&self) -> (u64, Changed) {
        let mut g = self.lock();
        let generation = self.generation();
        let changed = if std::mem::take(&mut g.all_changed) {
            g.changed.clear();
            Changed::Everyone
        } else {
            Changed::Users(std::mem::take(&mut g.changed))
        };
        (generation, changed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A session description seen in call `call_id`, sent by the end
    /// tagged `tag`, naming `addresses`; `parties` are the call's users of
    /// ours (added to those known). Replaces what that side named before.
    pub fn described(
        &self,
        call_id: &str,
        tag: &str,
        parties: &[&str],
        addresses: &[IpAddr],
        now: Instant,
    ) {
        self.described_by(call_id, tag, "", parties, addresses, now);
    }

    /// [`Calls::described`], knowing that `owner` (a user of ours) sent
    /// it: what a user says of their own end is left out of what the pool
    /// tells its edges for that user ([`Calls::views_of`]).
    pub fn described_by(
        &self,
        call_id: &str,
        tag: &str,
        owner: &str,
        parties: &[&str],
        addresses: &[IpAddr],
        now: Instant,
    ) {
        let mut g = self.lock();
        let inner = &mut *g;
        if !inner.by_id.contains_key(call_id) {
            if parties.iter().all(|p| p.is_empty()) {
                return;
            }
            while inner.by_id.len() >= MAX_CALLS {
                let Some((old, seq)) = inner.order.pop_front() else {
                    break;
                };
                if inner.by_id.get(&old).is_some_and(|c| c.seq == seq) {
                    inner.remove(&old);
                    self.bump();
                }
            }
            inner.seq += 1;
            let seq = inner.seq;
            inner.order.push_back((call_id.to_owned(), seq));
            inner.by_id.insert(
                call_id.to_owned(),
                Call {
                    parties: Vec::new(),
                    sides: Vec::new(),
                    answered: false,
                    touched: now,
                    seq,
                },
            );
        }
        let Some(call) = inner.by_id.get_mut(call_id) else {
            return;
        };
        call.touched = now;
        for p in parties.iter().filter(|p| !p.is_empty()) {
            if call.parties.len() < MAX_PARTIES && !call.parties.iter().any(|q| q == p) {
                call.parties.push((*p).to_owned());
                inner
                    .by_user
                    .entry((*p).to_owned())
                    .or_default()
                    .insert(call_id.to_owned());
            }
        }
        let mut kept: Vec<IpAddr> = Vec::new();
        for a in addresses {
            if kept.len() < MAX_ADDRESSES && !kept.contains(a) {
                kept.push(*a);
            }
        }
        let narrowed = match call.sides.iter_mut().find(|s| s.tag == tag) {
            Some(side) => {
                let narrowed = side.addresses.iter().any(|a| !kept.contains(a));
                side.addresses = kept;
                if !owner.is_empty() {
                    owner.clone_into(&mut side.owner);
                }
                narrowed
            }
            None => {
                if call.sides.len() < MAX_SIDES {
                    call.sides.push(Side {
                        tag: tag.to_owned(),
                        owner: owner.to_owned(),
                        addresses: kept,
                    });
                }
                false
            }
        };
        if narrowed {
            let parties = call.parties.clone();
            inner.mark(&parties);
            self.bump();
        }
    }

    /// The call was answered (a 2xx to its INVITE): kept for
    /// [`ANSWERED_TTL`] from now on.
    pub fn answered(&self, call_id: &str, now: Instant) {
        if let Some(c) = self.lock().by_id.get_mut(call_id) {
            c.answered = true;
            c.touched = now;
        }
    }

    /// The call ended (BYE, CANCEL).
    pub fn ended(&self, call_id: &str) {
        let mut g = self.lock();
        if g.remove(call_id) {
            self.bump();
        }
    }

    /// The call's INVITE got no 2xx (every branch refused, timed out or
    /// was cancelled): ended unless it had been answered (a re-INVITE
    /// refused leaves the call as it was).
    pub fn unanswered(&self, call_id: &str) {
        let mut g = self.lock();
        if g.by_id.get(call_id).is_some_and(|c| !c.answered) {
            g.remove(call_id);
            self.bump();
        }
    }

    /// Whether `addr` was named in a call `user` is in.
    pub fn justifies(&self, user: &str, addr: IpAddr) -> bool {
        self.call_naming(user, addr).is_some()
    }

    /// A call `user` is in whose session descriptions named `addr` (its
    /// Call-ID, for the log) — those of the other ends: what a user's own
    /// end said of itself justifies nothing for that user (else naming
    /// any address in one's own offer would open the relay to it).
    pub fn call_naming(&self, user: &str, addr: IpAddr) -> Option<String> {
        let g = self.lock();
        g.by_user.get(user)?.iter().find_map(|id| {
            g.by_id
                .get(id)
                .is_some_and(|c| {
                    c.sides
                        .iter()
                        .any(|s| s.owner != user && s.addresses.contains(&addr))
                })
                .then(|| id.clone())
        })
    }

    /// The relay carried media for `call_id` (bounded: beyond
    /// [`MAX_CALLS`] calls not yet asked about, not noted).
    pub fn note_relayed(&self, call_id: &str, now: Instant) {
        let mut g = self.lock();
        if g.relayed.len() < MAX_CALLS && !g.relayed.contains_key(call_id) {
            g.relayed.insert(call_id.to_string(), now);
            if g.report && g.fresh.len() < MAX_CALLS {
                // A call the pool told the edge of is keyed with its
                // user: the pool knows it by its Call-ID.
                let id = call_id.rsplit('\t').next().unwrap_or(call_id);
                g.fresh.push(id.to_string());
            }
        }
    }

    /// Keeps the Call-IDs of calls this relay carries media for until
    /// [`Calls::take_fresh_relayed`] (an edge, to tell the pool, whose
    /// call records say so).
    pub fn report_relayed(&self) {
        self.lock().report = true;
    }

    /// Up to `max` Call-IDs noted relayed since the last call.
    pub fn take_fresh_relayed(&self, max: usize) -> Vec<String> {
        let mut g = self.lock();
        let n = g.fresh.len().min(max);
        g.fresh.drain(..n).collect()
    }

    /// Whether the relay carried media for `call_id`, forgotten once asked.
    pub fn take_relayed(&self, call_id: &str) -> bool {
        self.lock().relayed.remove(call_id).is_some()
    }

    /// Forgets calls without news for their time to live.
    pub fn expire(&self, now: Instant) {
        let mut g = self.lock();
        // A mark nobody asked about (a call the proxy did not record) goes
        // with the longest a call lives.
        g.relayed
            .retain(|_, at| now.saturating_duration_since(*at) <= ANSWERED_TTL * 2);
        let stale: Vec<String> = g
            .by_id
            .iter()
            .filter(|(id, c)| {
                let ttl = if id.starts_with(MIRRORED) {
                    MIRRORED_TTL
                } else if c.answered {
                    ANSWERED_TTL
                } else {
                    RINGING_TTL
                };
                now.saturating_duration_since(c.touched) > ttl
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in &stale {
            g.remove(id);
        }
        let seqs: HashMap<String, u64> = g.by_id.iter().map(|(k, c)| (k.clone(), c.seq)).collect();
        g.order.retain(|(id, seq)| seqs.get(id) == Some(seq));
        if !stale.is_empty() {
            self.bump();
        }
    }

    /// [`Calls::expire`], if it has not run for a few seconds (for a
    /// server that records calls for its edges with no relay of its own
    /// to expire them).
    pub fn expire_if_due(&self, now: Instant) {
        {
            let mut g = self.lock();
            if g.expired
                .is_some_and(|t| now.saturating_duration_since(t) < EXPIRE_EVERY)
            {
                return;
            }
            g.expired = Some(now);
        }
        self.expire(now);
    }

    /// What the pool tells an edge of `user`'s calls: for each (most
    /// recent first, at most `max_calls`), the addresses the other ends
    /// named — never what the user's own end said of itself, which no one
    /// vouches for — each address once, at most [`MAX_ADDRESSES`].
    pub fn views_of(&self, user: &str, max_calls: usize) -> Vec<(String, Vec<IpAddr>)> {
        let g = self.lock();
        let Some(ids) = g.by_user.get(user) else {
            return Vec::new();
        };
        let mut calls: Vec<(&String, &Call)> = ids
            .iter()
            .filter(|id| !id.starts_with(MIRRORED))
            .filter_map(|id| Some((id, g.by_id.get(id)?)))
            .collect();
        calls.sort_by_key(|(_, c)| std::cmp::Reverse(c.seq));
        calls
            .into_iter()
            .take(max_calls)
            .map(|(id, c)| {
                let mut addresses: Vec<IpAddr> = Vec::new();
                for a in c
                    .sides
                    .iter()
                    .filter(|s| s.owner != user)
                    .flat_map(|s| s.addresses.iter())
                {
                    if addresses.len() < MAX_ADDRESSES && !addresses.contains(a) {
                        addresses.push(*a);
                    }
                }
                (id.clone(), addresses)
            })
            .collect()
    }

    /// On an edge: the pool's calls of `user` ([`Calls::views_of`] there),
    /// each held as a call of that user alone until the pool no longer
    /// lists it (ended here at once) or is not asked again for
    /// [`MIRRORED_TTL`]. Calls the edge carried itself are not touched.
    pub fn mirror(&self, user: &str, views: &[(String, Vec<IpAddr>)], now: Instant) {
        let keep: HashSet<String> = views
            .iter()
            .map(|(id, _)| format!("{MIRRORED}{user}\t{id}"))
            .collect();
        let gone: Vec<String> = self.lock().by_user.get(user).map_or_else(Vec::new, |ids| {
            ids.iter()
                .filter(|id| id.starts_with(MIRRORED) && !keep.contains(*id))
                .cloned()
                .collect()
        });
        for id in gone {
            self.ended(&id);
        }
        for (id, addresses) in views {
            let key = format!("{MIRRORED}{user}\t{id}");
            self.described(&key, "pool", &[user], addresses, now);
        }
    }

    /// The users an edge holds calls of for the pool (to ask about again).
    pub fn mirrored_users(&self) -> Vec<String> {
        let g = self.lock();
        g.by_user
            .iter()
            .filter(|(_, ids)| ids.iter().any(|id| id.starts_with(MIRRORED)))
            .map(|(u, _)| u.clone())
            .collect()
    }

    /// Calls tracked now.
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_address_is_justified_only_for_the_users_of_its_call_until_it_ends() {
        let c = Calls::new();
        let now = Instant::now();
        c.described(
            "c1",
            "a",
            &["sip:alice@x", "sip:bob@x"],
            &[ip("203.0.113.5")],
            now,
        );
        assert!(c.justifies("sip:alice@x", ip("203.0.113.5")));
        assert!(c.justifies("sip:bob@x", ip("203.0.113.5")));
        assert!(!c.justifies("sip:carol@x", ip("203.0.113.5")));
        assert!(!c.justifies("sip:alice@x", ip("203.0.113.6")));
        let g = c.generation();
        c.ended("c1");
        assert!(c.generation() > g);
        assert!(!c.justifies("sip:alice@x", ip("203.0.113.5")));
        assert!(c.is_empty());
    }

    #[test]
    fn a_reoffer_that_drops_an_address_moves_the_generation() {
        let c = Calls::new();
        let now = Instant::now();
        c.described("c1", "a", &["sip:alice@x"], &[ip("203.0.113.5")], now);
        c.described("c1", "b", &[], &[ip("198.51.100.7")], now);
        let g = c.generation();
        // The same side again, adding one: nothing revoked.
        c.described("c1", "a", &[], &[ip("203.0.113.5"), ip("203.0.113.9")], now);
        assert_eq!(c.generation(), g);
        c.described("c1", "a", &[], &[ip("203.0.113.9")], now);
        assert!(c.generation() > g);
        assert!(!c.justifies("sip:alice@x", ip("203.0.113.5")));
        assert!(c.justifies("sip:alice@x", ip("198.51.100.7")));
    }

    #[test]
    fn a_refused_invite_ends_a_call_only_if_it_was_never_answered() {
        let c = Calls::new();
        let now = Instant::now();
        c.described("c1", "a", &["sip:alice@x"], &[ip("203.0.113.5")], now);
        c.answered("c1", now);
        c.unanswered("c1");
        assert!(c.justifies("sip:alice@x", ip("203.0.113.5")));
        c.described("c2", "a", &["sip:alice@x"], &[ip("203.0.113.6")], now);
        c.unanswered("c2");
        assert!(!c.justifies("sip:alice@x", ip("203.0.113.6")));
    }

    #[test]
    fn calls_without_our_users_are_not_kept_and_silent_calls_expire() {
        let c = Calls::new();
        let now = Instant::now();
        c.described("c0", "a", &[""], &[ip("203.0.113.5")], now);
        assert!(c.is_empty());
        c.described("c1", "a", &["sip:alice@x"], &[ip("203.0.113.5")], now);
        c.described("c2", "a", &["sip:alice@x"], &[ip("203.0.113.6")], now);
        c.answered("c2", now);
        c.expire(now + RINGING_TTL + Duration::from_secs(1));
        assert!(!c.justifies("sip:alice@x", ip("203.0.113.5")));
        assert!(c.justifies("sip:alice@x", ip("203.0.113.6")));
        c.expire(now + ANSWERED_TTL + Duration::from_secs(1));
        assert!(c.is_empty());
    }

    #[test]
    fn each_bound_holds() {
        let c = Calls::new();
        let now = Instant::now();
        let many: Vec<IpAddr> = (0..100u8).map(|i| IpAddr::from([203, 0, 113, i])).collect();
        c.described("c1", "a", &["sip:alice@x"], &many, now);
        assert!(c.justifies("sip:alice@x", many[MAX_ADDRESSES - 1]));
        assert!(!c.justifies("sip:alice@x", many[MAX_ADDRESSES]));
        for i in 0..20 {
            c.described(
                "c1",
                &format!("t{i}"),
                &[],
                &[IpAddr::from([198, 51, 100, i])],
                now,
            );
        }
        assert!(c.justifies("sip:alice@x", IpAddr::from([198, 51, 100, 6])));
        assert!(!c.justifies("sip:alice@x", IpAddr::from([198, 51, 100, 7])));
        let parties: Vec<String> = (0..10).map(|i| format!("sip:u{i}@x")).collect();
        let refs: Vec<&str> = parties.iter().map(String::as_str).collect();
        c.described("c2", "a", &refs, &[ip("203.0.113.200")], now);
        assert!(c.justifies("sip:u3@x", ip("203.0.113.200")));
        assert!(!c.justifies("sip:u4@x", ip("203.0.113.200")));
    }

    #[test]
    fn the_pool_tells_an_edge_what_the_other_ends_named_never_the_users_own() {
        let c = Calls::new();
        let now = Instant::now();
        let (alice, bob) = ("sip:alice@x", "sip:bob@x");
        c.described_by("c1", "ta", alice, &[alice, bob], &[ip("198.51.100.7")], now);
        c.described_by(
            "c1",
            "tb",
            bob,
            &[],
            &[ip("203.0.113.5"), ip("203.0.113.6")],
            now,
        );
        // A partner's end (not ours): owner unknown, told to both.
        c.described("c1", "tp", &[], &[ip("192.0.2.44")], now);
        assert_eq!(
            c.views_of(alice, 4),
            [(
                "c1".to_string(),
                vec![ip("203.0.113.5"), ip("203.0.113.6"), ip("192.0.2.44")]
            )]
        );
        assert_eq!(
            c.views_of(bob, 4),
            [("c1".to_string(), vec![ip("198.51.100.7"), ip("192.0.2.44")])]
        );
        assert!(c.views_of("sip:carol@x", 4).is_empty());
        // And what the relay grants: the other ends' addresses only.
        assert!(c.justifies(alice, ip("203.0.113.5")));
        assert!(!c.justifies(alice, ip("198.51.100.7")));
        assert!(c.justifies(bob, ip("198.51.100.7")));
        assert!(!c.justifies(bob, ip("203.0.113.6")));
        // Most recent first, bounded.
        c.described_by("c2", "tb", bob, &[alice, bob], &[ip("203.0.113.9")], now);
        let v = c.views_of(alice, 1);
        assert_eq!(v, [("c2".to_string(), vec![ip("203.0.113.9")])]);
    }

    #[test]
    fn an_edge_holds_the_pools_calls_until_the_pool_drops_them_or_is_not_asked() {
        let edge = Calls::new();
        let now = Instant::now();
        let alice = "sip:alice@x";
        // A call the edge carried itself.
        edge.described("own", "t", &[alice], &[ip("192.0.2.1")], now);
        edge.mirror(alice, &[("c1".into(), vec![ip("203.0.113.5")])], now);
        assert!(edge.justifies(alice, ip("203.0.113.5")));
        assert!(!edge.justifies("sip:bob@x", ip("203.0.113.5")));
        assert_eq!(edge.mirrored_users(), [alice.to_string()]);
        // The pool's call changed its address, then ended.
        let g = edge.generation();
        edge.mirror(alice, &[("c1".into(), vec![ip("203.0.113.6")])], now);
        assert!(edge.generation() > g);
        assert!(!edge.justifies(alice, ip("203.0.113.5")));
        assert!(edge.justifies(alice, ip("203.0.113.6")));
        edge.mirror(alice, &[], now);
        assert!(!edge.justifies(alice, ip("203.0.113.6")));
        assert!(edge.mirrored_users().is_empty());
        // The edge's own call is its own to end.
        assert!(edge.justifies(alice, ip("192.0.2.1")));
        // Held and not asked again: gone after its short life, while the
        // edge's own (ringing) call lives on.
        edge.mirror(alice, &[("c2".into(), vec![ip("203.0.113.7")])], now);
        edge.expire(now + MIRRORED_TTL + Duration::from_secs(1));
        assert!(!edge.justifies(alice, ip("203.0.113.7")));
        assert!(edge.justifies(alice, ip("192.0.2.1")));
    }

    #[test]
    fn a_relayed_call_is_told_once_by_its_call_id_and_taken_once() {
        let now = Instant::now();
        // At the front end nothing is kept to be told.
        let pool = Calls::new();
        pool.note_relayed("c1", now);
        assert!(pool.take_fresh_relayed(10).is_empty());
        assert!(pool.take_relayed("c1"));
        assert!(!pool.take_relayed("c1"), "asked once");
        // At an edge: each call once, by the Call-ID the pool knows.
        let edge = Calls::new();
        edge.report_relayed();
        edge.note_relayed("c2", now);
        edge.note_relayed("c2", now);
        edge.note_relayed(&format!("{MIRRORED}sip:a@x\tc3"), now);
        assert_eq!(edge.take_fresh_relayed(1), vec!["c2"]);
        assert_eq!(edge.take_fresh_relayed(10), vec!["c3"]);
        assert!(edge.take_fresh_relayed(10).is_empty());
        // Marks nobody asks about go with the longest a call lives.
        edge.expire(now + ANSWERED_TTL * 3);
        assert!(!edge.take_relayed("c2"));
    }

    #[test]
    fn expiry_when_due_runs_at_most_every_few_seconds() {
        let c = Calls::new();
        let now = Instant::now();
        let late = now + RINGING_TTL + Duration::from_secs(1);
        c.described("c1", "a", &["sip:alice@x"], &[ip("203.0.113.5")], now);
        c.expire_if_due(late);
        assert!(c.is_empty());
        // Stale too, but expiry ran a moment ago: kept until it is due.
        c.described("c2", "a", &["sip:alice@x"], &[ip("203.0.113.5")], now);
        c.expire_if_due(late + Duration::from_secs(1));
        assert_eq!(c.len(), 1);
        c.expire_if_due(late + EXPIRE_EVERY);
        assert!(c.is_empty());
    }

    #[test]
    fn the_relay_learns_whose_calls_changed_with_the_generation() {
        let c = Calls::new();
        let now = Instant::now();
        c.described("c1", "a", &["sip:alice@x"], &[ip("203.0.113.5")], now);
        c.described("c2", "a", &["sip:bob@x"], &[ip("203.0.113.6")], now);
        let (g0, changed) = c.take_changed();
        assert_eq!(changed, Changed::Users(HashSet::new()));
        c.ended("c1");
        let (g1, changed) = c.take_changed();
        assert!(g1 > g0);
        assert_eq!(
            changed,
            Changed::Users(HashSet::from(["sip:alice@x".to_string()]))
        );
        // Taken: nothing more until the next change.
        assert_eq!(c.take_changed(), (g1, Changed::Users(HashSet::new())));
        c.described("c2", "a", &[], &[ip("203.0.113.7")], now);
        let (g2, changed) = c.take_changed();
        assert!(g2 > g1);
        assert_eq!(
            changed,
            Changed::Users(HashSet::from(["sip:bob@x".to_string()]))
        );
    }
}
