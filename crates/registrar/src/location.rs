//! The in-memory location service.

use std::collections::{BTreeMap, HashMap, HashSet};

use store::Binding;

/// Registrar limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistrarConfig {
    /// Shorter non-zero expiries get 423 Interval Too Brief.
    pub min_expires: u32,
    /// Longer expiries are shortened to this.
    pub max_expires: u32,
    /// When neither the Contact nor the request says.
    pub default_expires: u32,
    /// Bindings per address of record (Lync's MaxEndpointsPerUser, default 8).
    pub max_bindings: usize,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            max_bindings: 8,
        }
    }
}

/// A live binding and, for connection-oriented clients, the flow it arrived on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) binding: Binding,
    pub(crate) flow: Option<crate::Flow>,
}

/// Bindings by address of record.
#[derive(Debug, Default)]
pub struct Location {
    pub(crate) config: RegistrarConfig,
    pub(crate) by_aor: HashMap<String, Vec<Entry>>,
    /// How many live bindings came from each source address, so that
    /// `bound_source` is one lookup, not a scan (it runs per unauthenticated
    /// in-dialog request), and the sequence number at which the address
    /// first had one (`source_since`). Kept right by `set_entries`, the one
    /// place entries change.
    sources: HashMap<String, (usize, u64)>,
    /// Counts source addresses and connections as they first get a
    /// binding (one sequence, so that either can be compared with the
    /// moment pressure began).
    source_seq: u64,
    /// The addresses of record with a binding on each connection, so that a
    /// closed connection costs a lookup, not a scan, and the sequence number
    /// at which the connection got its first (`flow_since`). Kept by
    /// `set_entries`.
    flows: HashMap<crate::Flow, (Vec<String>, u64)>,
    /// Every AOR under the earliest expiry among its bindings, so that
    /// `expire` visits only what is due instead of every AOR each second
    /// (estimated at 20 ms a second for a million AORs). Costs one copy of
    /// the AOR per registered user; a refresh moves that copy (looked up by
    /// `&str`, no allocation). Kept by `set_entries`.
    expiries: BTreeMap<i64, HashSet<String>>,
    /// Live bindings in total (read every second for the metrics: kept by
    /// `set_entries` rather than summed over every AOR).
    bindings: usize,
    /// This node's name in a pool (`node_id`), written into the bindings it
    /// makes; empty for a server alone on its store.
    pub(crate) node: String,
}

impl Location {
    pub fn new(config: RegistrarConfig) -> Self {
        Location {
            config,
            by_aor: HashMap::new(),
            sources: HashMap::new(),
            source_seq: 0,
            flows: HashMap::new(),
            expiries: BTreeMap::new(),
            bindings: 0,
            node: String::new(),
        }
    }

    /// Names this node of a pool: the bindings it makes carry the name, and
    /// bindings carrying another node's are that node's to reach.
    pub fn set_node(&mut self, node: &str) {
        node.clone_into(&mut self.node);
    }

    /// This node's name (`set_node`).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Whether `b` is held by another node of the pool (its client's flow
    /// is there).
    pub fn is_remote(&self, b: &Binding) -> bool {
        !self.node.is_empty() && !b.node.is_empty() && b.node != self.node
    }

    /// Replaces the bindings of `aor` (none: removes it), keeping the source
    /// index in step.
    pub(crate) fn set_entries(&mut self, aor: &str, mut entries: Vec<Entry>) {
        // New entries are counted before old ones are let go, so that a
        // source address refreshing its only binding keeps its place in
        // `source_since`.
        let node = std::mem::take(&mut self.node);
        let remote =
            |e: &Entry| !node.is_empty() && !e.binding.node.is_empty() && e.binding.node != node;
        for e in entries.iter().filter(|e| !remote(e)) {
            let seq = &mut self.source_seq;
            self.sources
                .entry(e.binding.source.clone())
                .or_insert_with(|| {
                    *seq += 1;
                    (0, *seq)
                })
                .0 += 1;
            if let Some(f) = e.flow {
                let seq = &mut self.source_seq;
                let (aors, _) = self.flows.entry(f).or_insert_with(|| {
                    *seq += 1;
                    (Vec::new(), *seq)
                });
                if !aors.iter().any(|a| a == aor) {
                    aors.push(aor.to_owned());
                }
            }
        }
        let mut indexed = None;
        self.bindings += entries.len();
        if let Some(old) = self.by_aor.remove(aor) {
            self.bindings -= old.len();
            if let Some(t) = earliest(&old) {
                if let Some(due) = self.expiries.get_mut(&t) {
                    indexed = due.take(aor);
                    if due.is_empty() {
                        self.expiries.remove(&t);
                    }
                }
            }
            for e in &old {
                if remote(e) {
                    continue;
                }
                if let Some((n, _)) = self.sources.get_mut(&e.binding.source) {
                    *n -= 1;
                    if *n == 0 {
                        self.sources.remove(&e.binding.source);
                    }
                }
                if let Some(f) = e.flow {
                    if !entries.iter().any(|n| n.flow == Some(f)) {
                        if let Some((aors, _)) = self.flows.get_mut(&f) {
                            aors.retain(|a| a != aor);
                            if aors.is_empty() {
                                self.flows.remove(&f);
                            }
                        }
                    }
                }
            }
        }
        if !entries.is_empty() {
            // Most users have one device; a Vec grown by push keeps room for
            // four entries (~800 bytes each AOR, measured), so trim it.
            entries.shrink_to_fit();
            if let Some(t) = earliest(&entries) {
                let key = indexed.unwrap_or_else(|| aor.to_owned());
                self.expiries.entry(t).or_default().insert(key);
            }
            self.by_aor.insert(aor.to_owned(), entries);
        }
        self.node = node;
    }

    /// What the store holds for `aor` now, read after another node of the
    /// pool changed it: the other nodes' bindings are replaced by these
    /// (a binding that moved here from another node stays ours only if it
    /// is not among them). This node's own bindings stay as they are while
    /// its writes may be ahead of the store; once they are `settled` (none
    /// under way, none ended after the read began), an own binding the
    /// store no longer holds was removed by another node, and goes.
    /// Returns whether own bindings the store does not hold were kept
    /// because the read was not settled (the caller reads again later).
    #[must_use]
    pub fn replace_remote(&mut self, aor: &str, stored: Vec<Binding>, settled: bool) -> bool {
        let mut undecided = false;
        let mut entries: Vec<Entry> = self
            .by_aor
            .get(aor)
            .map(|es| {
                es.iter()
                    .filter(|e| !self.is_remote(&e.binding))
                    .filter(|e| {
                        !stored
                            .iter()
                            .any(|b| b.key == e.binding.key && self.is_remote(b))
                    })
                    .filter(|e| {
                        let held = stored.iter().any(|b| b.key == e.binding.key);
                        undecided |= !settled && !held;
                        !settled || held
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        entries.extend(
            stored
                .into_iter()
                .filter(|b| self.is_remote(b))
                .map(|binding| Entry {
                    binding,
                    flow: None,
                }),
        );
        self.set_entries(aor, entries);
        undecided
    }

    pub fn config(&self) -> &RegistrarConfig {
        &self.config
    }

    /// Rebuilds the table from stored bindings (at start; flows are gone, the
    /// recorded source addresses remain).
    pub fn load(&mut self, bindings: Vec<Binding>) {
        let mut grouped: HashMap<String, Vec<Entry>> = HashMap::new();
        for b in bindings {
            grouped.entry(b.aor.clone()).or_default().push(Entry {
                binding: b,
                flow: None,
            });
        }
        for (aor, mut entries) in grouped {
            if let Some(old) = self.by_aor.get(&aor) {
                entries.extend(old.iter().cloned());
            }
            self.set_entries(&aor, entries);
        }
    }

    /// The live bindings of `aor` at `now`, highest q first, with their flows.
    pub fn lookup(&self, aor: &str, now: i64) -> Vec<(Binding, Option<crate::Flow>)> {
        let mut v: Vec<_> = self
            .by_aor
            .get(aor)
            .map(|es| {
                es.iter()
                    .filter(|e| e.binding.expires_at > now)
                    .map(|e| (e.binding.clone(), e.flow))
                    .collect()
            })
            .unwrap_or_default();
        v.sort_by_key(|e| std::cmp::Reverse(e.0.q));
        v
    }

    /// Whether `aor` has any live binding.
    pub fn is_registered(&self, aor: &str, now: i64) -> bool {
        self.by_aor
            .get(aor)
            .is_some_and(|es| es.iter().any(|e| e.binding.expires_at > now))
    }

    /// Drops expired bindings; returns the (aor, key) pairs removed so the caller
    /// can delete them from the store too.
    pub fn expire(&mut self, now: i64) -> Vec<(String, String)> {
        self.expire_bindings(now)
            .into_iter()
            .map(|b| (b.aor, b.key))
            .collect()
    }

    /// [`Location::expire`], returning the bindings removed.
    pub fn expire_bindings(&mut self, now: i64) -> Vec<Binding> {
        let mut gone = Vec::new();
        let stale: Vec<String> = self
            .expiries
            .range(..=now)
            .flat_map(|(_, aors)| aors.iter().cloned())
            .collect();
        for aor in stale {
            let mut entries = self.by_aor.get(&aor).cloned().unwrap_or_default();
            entries.retain(|e| {
                let live = e.binding.expires_at > now;
                if !live {
                    gone.push(e.binding.clone());
                }
                live
            });
            self.set_entries(&aor, entries);
        }
        gone
    }

    /// A connection closed: removes the bindings registered over it and
    /// returns them. The server reaches a connection-oriented client only
    /// through the connection it registered on (it never connects out to a
    /// client), so such a binding is unreachable from now on; a client that
    /// reconnects registers again (RFC 5626 §4.4.1).
    pub fn flow_closed(&mut self, flow: crate::Flow) -> Vec<Binding> {
        let hit = self
            .flows
            .get(&flow)
            .map(|(aors, _)| aors.clone())
            .unwrap_or_default();
        let mut gone = Vec::new();
        for aor in hit {
            let mut entries = self.by_aor.get(&aor).cloned().unwrap_or_default();
            entries.retain(|e| {
                let closed = e.flow == Some(flow);
                if closed {
                    gone.push(e.binding.clone());
                }
                !closed
            });
            self.set_entries(&aor, entries);
        }
        gone
    }

    /// Removes one binding (e.g. its write to the store failed).
    pub fn remove(&mut self, aor: &str, key: &str) {
        if let Some(es) = self.by_aor.get(aor) {
            let kept = es
                .iter()
                .filter(|e| e.binding.key != key)
                .cloned()
                .collect();
            self.set_entries(aor, kept);
        }
    }

    /// Removes every binding of `aor` (user disabled or removed); returns
    /// them.
    pub fn remove_aor(&mut self, aor: &str) -> Vec<Binding> {
        let gone = self
            .by_aor
            .get(aor)
            .map(|es| es.iter().map(|e| e.binding.clone()).collect())
            .unwrap_or_default();
        self.set_entries(aor, Vec::new());
        gone
    }

    /// Whether some live binding was registered from `source`
    /// (`udp:192.0.2.1:5060`): such an address may be sent requests.
    pub fn bound_source(&self, source: &str) -> bool {
        self.sources.contains_key(source)
    }

    /// When `source` first had a live binding, as a sequence number that
    /// only grows (compare with `source_seq`): how overload control tells
    /// users registered before the pressure began from those that
    /// registered during it.
    pub fn source_since(&self, source: &str) -> Option<u64> {
        self.sources.get(source).map(|s| s.1)
    }

    /// When connection `flow` got its first live binding (in the sequence
    /// of `source_seq`); `None` when it has none.
    pub fn flow_since(&self, flow: crate::Flow) -> Option<u64> {
        self.flows.get(&flow).map(|(_, seq)| *seq)
    }

    /// The sequence number of the latest source address or connection to
    /// get a binding.
    pub fn source_seq(&self) -> u64 {
        self.source_seq
    }

    /// Whether some live binding was registered over connection `flow`.
    pub fn has_flow(&self, flow: crate::Flow) -> bool {
        self.flows.contains_key(&flow)
    }

    /// Every address of record with bindings.
    pub fn aors(&self) -> Vec<String> {
        self.by_aor.keys().cloned().collect()
    }

    /// Number of live bindings in total.
    pub fn len(&self) -> usize {
        self.bindings
    }

    pub fn is_empty(&self) -> bool {
        self.by_aor.is_empty()
    }
}

/// The earliest expiry among `entries`.
fn earliest(entries: &[Entry]) -> Option<i64> {
    entries.iter().map(|e| e.binding.expires_at).min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(aor: &str, key: &str, expires_at: i64) -> Binding {
        Binding {
            aor: aor.into(),
            key: key.into(),
            contact: format!("<{key}>"),
            q: 1000,
            expires_at,
            call_id: "c".into(),
            cseq: 1,
            path: Vec::new(),
            source: "udp:192.0.2.1:5060".into(),
            user_agent: None,
            node: String::new(),
        }
    }

    #[test]
    fn the_expiry_index_holds_one_entry_per_aor_at_its_earliest_expiry() {
        let mut l = Location::new(RegistrarConfig::default());
        let check = |l: &Location| {
            let indexed: usize = l.expiries.values().map(HashSet::len).sum();
            assert_eq!(indexed, l.by_aor.len());
            // The count of bindings kept in step.
            assert_eq!(l.len(), l.by_aor.values().map(Vec::len).sum::<usize>());
            assert!(l.expiries.values().all(|aors| !aors.is_empty()));
            for (aor, es) in &l.by_aor {
                let t = earliest(es).unwrap();
                assert!(l.expiries[&t].contains(aor), "{aor} at {t}");
            }
        };
        l.load(vec![
            binding("sip:a@x.test", "k1", 100),
            binding("sip:b@x.test", "k1", 50),
        ]);
        check(&l);
        // A second binding, earlier: the AOR's entry moves to it.
        l.load(vec![binding("sip:a@x.test", "k2", 20)]);
        check(&l);
        assert_eq!(l.expire(20), vec![("sip:a@x.test".into(), "k2".into())]);
        check(&l);
        l.remove("sip:a@x.test", "k1");
        check(&l);
        l.remove_aor("sip:b@x.test");
        check(&l);
        assert!(l.expiries.is_empty());
    }

    #[test]
    fn another_nodes_bindings_are_replaced_from_the_store_and_ours_stay() {
        let mut l = Location::new(RegistrarConfig::default());
        l.set_node("fe-a");
        let on = |node: &str, key: &str, source: &str| Binding {
            node: node.into(),
            source: source.into(),
            ..binding("sip:a@x.test", key, 100)
        };
        // Ours (a phone) and fe-b's (a laptop).
        l.load(vec![
            on("fe-a", "phone", "udp:192.0.2.1:5060"),
            on("fe-b", "laptop", "udp:192.0.2.2:5060"),
        ]);
        assert!(l.bound_source("udp:192.0.2.1:5060"));
        assert!(
            !l.bound_source("udp:192.0.2.2:5060"),
            "another node's client is not sent requests from here"
        );
        // fe-b changed them: the laptop left, a tablet came, and the phone
        // moved to fe-b.
        let undecided = l.replace_remote(
            "sip:a@x.test",
            vec![
                on("fe-b", "tablet", "udp:192.0.2.3:5060"),
                on("fe-b", "phone", "udp:192.0.2.4:5060"),
            ],
            false,
        );
        assert!(!undecided, "a binding that moved is decided");
        let mut now: Vec<(String, String)> = l
            .lookup("sip:a@x.test", 0)
            .into_iter()
            .map(|(b, _)| (b.key, b.node))
            .collect();
        now.sort();
        assert_eq!(
            now,
            vec![
                ("phone".into(), "fe-b".into()),
                ("tablet".into(), "fe-b".into())
            ]
        );
        assert!(!l.bound_source("udp:192.0.2.1:5060"));
        // A binding of ours not in the store (its write under way) stays,
        // and the caller is told to read again.
        l.load(vec![on("fe-a", "desk", "udp:192.0.2.5:5060")]);
        assert!(l.replace_remote("sip:a@x.test", Vec::new(), false));
        let keys: Vec<String> = l
            .lookup("sip:a@x.test", 0)
            .into_iter()
            .map(|(b, _)| b.key)
            .collect();
        assert_eq!(keys, vec!["desk".to_string()]);
        assert_eq!(l.len(), 1);
        // Settled (no write of ours under way): the store's word goes —
        // another node removed it (a Contact: * there).
        assert!(!l.replace_remote("sip:a@x.test", Vec::new(), true));
        assert!(l.lookup("sip:a@x.test", 0).is_empty());
        assert_eq!(l.len(), 0);
        assert!(!l.bound_source("udp:192.0.2.5:5060"));
        // A server alone on its store has no remote bindings.
        let alone = Location::new(RegistrarConfig::default());
        assert!(!alone.is_remote(&on("fe-b", "x", "udp:192.0.2.9:5060")));
    }
}
