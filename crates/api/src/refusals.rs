//! How many refusals each source may add to the audit log: every refused
//! request is recorded, up to a rate; beyond it, refusals are counted and one
//! record says how many were not written individually. A flood of bad
//! requests then costs a bounded number of audit writes (each an fsync'd
//! commit) and bounded log growth.

use std::collections::HashMap;
use std::sync::Mutex;

/// Refusals recorded individually per source address per minute.
pub(crate) const PER_SOURCE: u32 = 120;
/// Sources tracked at once (the map is cleared of past minutes when full).
const MAX_SOURCES: usize = 10_000;

/// What to do with one refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    Record,
    /// Record it, and first a summary of `n` refusals not recorded in the
    /// source's previous busy minute.
    RecordAfterSummary(u32),
    /// Count it only.
    Suppress,
}

#[derive(Debug, Default)]
pub(crate) struct Refusals {
    by_source: Mutex<HashMap<String, (u64, u32, u32)>>,
}

impl Refusals {
    pub(crate) fn admit(&self, source: &str, minute: u64) -> Admit {
        let Ok(mut map) = self.by_source.lock() else {
            return Admit::Record;
        };
        if map.len() >= MAX_SOURCES && !map.contains_key(source) {
            map.retain(|_, (m, _, suppressed)| *m == minute || *suppressed > 0);
            if map.len() >= MAX_SOURCES {
                return Admit::Suppress;
            }
        }
        let entry = map.entry(source.to_string()).or_insert((minute, 0, 0));
        if entry.0 != minute {
            let suppressed = entry.2;
            *entry = (minute, 1, 0);
            return if suppressed > 0 {
                Admit::RecordAfterSummary(suppressed)
            } else {
                Admit::Record
            };
        }
        if entry.1 < PER_SOURCE {
            entry.1 += 1;
            Admit::Record
        } else {
            entry.2 += 1;
            if entry.2 == 1 {
                tracing::warn!(%source, "more than {PER_SOURCE} refused admin requests this minute: further ones are counted, not recorded one by one");
            }
            Admit::Suppress
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_is_recorded_up_to_the_rate_then_summarised() {
        let r = Refusals::default();
        for _ in 0..PER_SOURCE {
            assert_eq!(r.admit("192.0.2.1", 7), Admit::Record);
        }
        assert_eq!(r.admit("192.0.2.1", 7), Admit::Suppress);
        assert_eq!(r.admit("192.0.2.1", 7), Admit::Suppress);
        assert_eq!(
            r.admit("192.0.2.2", 7),
            Admit::Record,
            "other sources unaffected"
        );
        assert_eq!(r.admit("192.0.2.1", 8), Admit::RecordAfterSummary(2));
        assert_eq!(r.admit("192.0.2.1", 8), Admit::Record);
    }
}
