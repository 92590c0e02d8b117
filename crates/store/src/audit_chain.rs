//! The audit log's chain, the same on every back end (so a log moved from
//! one database to another still verifies): each record's MAC is
//! HMAC-SHA256, under a key kept outside the database, over the previous
//! record's MAC and every field of this one; a head row holds the last
//! sequence number and its own MAC. [`Checker`] recomputes the chain one
//! record at a time: a changed field, a removed or inserted record, a
//! reordering or a cut-off tail all break it, and forging a consistent
//! chain needs the key.

use ring::hmac;

use crate::{AuditEntry, AuditReport};

/// Problems reported at most (the first ones say where tampering starts).
const MAX_PROBLEMS: usize = 20;

fn field(ctx: &mut hmac::Context, bytes: &[u8]) {
    ctx.update(&(bytes.len() as u64).to_be_bytes());
    ctx.update(bytes);
}

fn opt(ctx: &mut hmac::Context, v: Option<&str>) {
    match v {
        None => ctx.update(&[0]),
        Some(s) => {
            ctx.update(&[1]);
            field(ctx, s.as_bytes());
        }
    }
}

/// The MAC of record `seq` whose predecessor's MAC is `prev` (empty for
/// the first record).
pub fn mac(key: &hmac::Key, prev: &[u8], seq: i64, e: &AuditEntry) -> Vec<u8> {
    let mut ctx = hmac::Context::with_key(key);
    field(&mut ctx, b"parapet-audit-v1");
    field(&mut ctx, prev);
    ctx.update(&seq.to_be_bytes());
    ctx.update(&e.at.to_be_bytes());
    for s in [
        &e.actor, &e.source, &e.action, &e.object, &e.outcome, &e.detail,
    ] {
        field(&mut ctx, s.as_bytes());
    }
    opt(&mut ctx, e.before.as_deref());
    opt(&mut ctx, e.after.as_deref());
    ctx.sign().as_ref().to_vec()
}

/// The head row's MAC: the last sequence number and that record's MAC.
pub fn head_mac(key: &hmac::Key, seq: i64, last: &[u8]) -> Vec<u8> {
    let mut ctx = hmac::Context::with_key(key);
    field(&mut ctx, b"parapet-audit-head-v1");
    ctx.update(&seq.to_be_bytes());
    field(&mut ctx, last);
    ctx.sign().as_ref().to_vec()
}

/// Recomputes a chain fed in sequence order; memory does not grow with
/// the log.
#[derive(Debug)]
pub struct Checker<'k> {
    key: &'k hmac::Key,
    prev: Vec<u8>,
    expected: i64,
    report: AuditReport,
}

impl<'k> Checker<'k> {
    pub fn new(key: &'k hmac::Key) -> Self {
        Checker {
            key,
            prev: Vec::new(),
            expected: 1,
            report: AuditReport::default(),
        }
    }

    fn problem(&mut self, p: String) {
        if self.report.problems.len() < MAX_PROBLEMS {
            self.report.problems.push(p);
        }
    }

    /// The next stored record, with the MAC stored beside it.
    pub fn record(&mut self, seq: i64, e: &AuditEntry, stored: Vec<u8>) {
        if seq != self.expected {
            self.problem(format!(
                "records {} to {} are missing",
                self.expected,
                seq - 1
            ));
        }
        // Against the stored chain: a changed record breaks its own MAC,
        // a removed one breaks the next record's link.
        if mac(self.key, &self.prev, seq, e) != stored {
            self.problem(format!("record {seq} does not match its MAC: it was changed, or a record before it was removed or altered"));
        }
        self.prev = stored;
        self.expected = seq + 1;
        self.report.records += 1;
    }

    /// Ends the check with the stored head row (`None`: there is none).
    pub fn finish(mut self, head: Option<(i64, Vec<u8>)>) -> AuditReport {
        let last = self.expected - 1;
        match head {
            None if last == 0 => {}
            None => self.problem("the audit head record is missing".into()),
            Some((seq, m)) => {
                if head_mac(self.key, seq, &self.prev) != m || seq != last {
                    self.problem(format!("the log ends at record {last} but its head says {seq}: records were removed from the end or the head was altered"));
                }
            }
        }
        self.report
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn entry(n: i64) -> AuditEntry {
        AuditEntry {
            at: n,
            actor: "admin:root".into(),
            source: "127.0.0.1".into(),
            action: "users.add".into(),
            object: format!("user:{n}"),
            outcome: "ok".into(),
            detail: String::new(),
            before: None,
            after: Some("{}".into()),
        }
    }

    #[test]
    fn a_chain_verifies_and_each_kind_of_tampering_is_reported() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &[7; 32]);
        let mut macs = Vec::new();
        let mut prev = Vec::new();
        for seq in 1..=3 {
            let m = mac(&key, &prev, seq, &entry(seq));
            macs.push(m.clone());
            prev = m;
        }
        let head = Some((3, head_mac(&key, 3, &macs[2])));
        let check = |records: &[(i64, AuditEntry, Vec<u8>)], head: Option<(i64, Vec<u8>)>| {
            let mut c = Checker::new(&key);
            for (s, e, m) in records {
                c.record(*s, e, m.clone());
            }
            c.finish(head)
        };
        let all: Vec<_> = (1..=3)
            .map(|s| (s, entry(s), macs[s as usize - 1].clone()))
            .collect();
        let good = check(&all, head.clone());
        assert!(good.problems.is_empty(), "{:?}", good.problems);
        assert_eq!(good.records, 3);
        let mut changed = all.clone();
        changed[1].1.outcome = "denied".into();
        assert!(check(&changed, head.clone()).problems[0].contains("record 2"));
        let removed = vec![all[0].clone(), all[2].clone()];
        assert!(check(&removed, head.clone()).problems[0].contains("missing"));
        let cut = &all[..2];
        assert!(check(cut, head.clone()).problems[0].contains("head says 3"));
        assert!(check(&all, None).problems[0].contains("head record is missing"));
    }
}
