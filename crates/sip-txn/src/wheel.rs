//! One hashed timer wheel for every transaction timer.
//!
//! Slots of `RESOLUTION` each; a timer further away than one turn waits in its
//! slot for the right turn. Cancellation is lazy: an entry carries the
//! transaction's id and a generation, and the layer ignores entries whose
//! generation is stale. Memory is bounded by the transaction table: each live
//! transaction has at most two armed timers, and stale entries are dropped when
//! their slot comes round.

use std::time::{Duration, Instant};

/// Granularity of the wheel; SIP timers are multiples of hundreds of ms.
pub const RESOLUTION: Duration = Duration::from_millis(10);
const SLOTS: usize = 1024;
/// Capacity a slot may keep when it empties.
const SLOT_FLOOR: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry<T> {
    pub(crate) deadline_tick: u64,
    pub(crate) payload: T,
}

/// The wheel. `T` identifies what fires (transaction id, timer, generation).
#[derive(Debug)]
pub struct Wheel<T> {
    origin: Instant,
    /// Next tick not yet processed.
    current: u64,
    slots: Vec<Vec<Entry<T>>>,
    len: usize,
}

impl<T: Copy> Wheel<T> {
    pub fn new(origin: Instant) -> Self {
        Wheel {
            origin,
            current: 0,
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            len: 0,
        }
    }

    fn tick_of(&self, at: Instant) -> u64 {
        let d = at.saturating_duration_since(self.origin);
        // Round up so a timer never fires early.
        let ticks = d.as_nanos().div_ceil(RESOLUTION.as_nanos());
        u64::try_from(ticks).unwrap_or(u64::MAX)
    }

    /// Arms `payload` to fire at `at` (or at the next poll if `at` has passed).
    pub fn insert(&mut self, at: Instant, payload: T) {
        let tick = self.tick_of(at).max(self.current);
        let slot = (tick % SLOTS as u64) as usize;
        if let Some(s) = self.slots.get_mut(slot) {
            s.push(Entry {
                deadline_tick: tick,
                payload,
            });
            self.len += 1;
        }
    }

    /// Number of armed entries (stale ones included until their slot is reached).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Calls `fire` for every entry due at or before `now`, in deadline order of
    /// ticks.
    pub fn advance(&mut self, now: Instant, mut fire: impl FnMut(T)) {
        // Due means deadline <= now: round `now` down (deadlines were rounded up).
        let elapsed = now.saturating_duration_since(self.origin).as_nanos() / RESOLUTION.as_nanos();
        let now_tick = u64::try_from(elapsed).unwrap_or(u64::MAX);
        let target = now_tick.saturating_add(1).max(self.current);
        // Never walk more than one turn of empty slots: anything due is in some slot.
        let mut tick = self.current;
        let last = target.min(self.current.saturating_add(SLOTS as u64));
        let mut due = Vec::new();
        while tick < last {
            let slot = (tick % SLOTS as u64) as usize;
            if let Some(s) = self.slots.get_mut(slot) {
                let horizon = target.saturating_sub(1);
                let mut i = 0;
                while i < s.len() {
                    if s[i].deadline_tick <= horizon {
                        due.push(s.swap_remove(i));
                    } else {
                        i += 1;
                    }
                }
                // A slot that held a burst keeps its capacity otherwise.
                if s.capacity() > SLOT_FLOOR && s.len().saturating_mul(4) < s.capacity() {
                    s.shrink_to(s.len().saturating_mul(2).max(SLOT_FLOOR));
                }
            }
            tick += 1;
        }
        self.current = target;
        self.len -= due.len();
        due.sort_by_key(|e| e.deadline_tick);
        for e in due {
            fire(e.payload);
        }
    }

    /// When the earliest armed entry is due, if any (scans; for idle sleeping).
    pub fn next_deadline(&self) -> Option<Instant> {
        let t = self.slots.iter().flatten().map(|e| e.deadline_tick).min()?;
        let nanos = RESOLUTION.as_nanos().saturating_mul(u128::from(t));
        Some(self.origin + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_in_order_and_not_early() {
        let t0 = Instant::now();
        let mut w = Wheel::new(t0);
        w.insert(t0 + Duration::from_millis(500), 1);
        w.insert(t0 + Duration::from_millis(100), 2);
        w.insert(t0 + Duration::from_secs(32), 3); // beyond one turn (10.24 s)
        let mut fired = Vec::new();
        w.advance(t0 + Duration::from_millis(99), |p| fired.push(p));
        assert!(fired.is_empty());
        w.advance(t0 + Duration::from_millis(600), |p| fired.push(p));
        assert_eq!(fired, vec![2, 1]);
        w.advance(t0 + Duration::from_secs(20), |p| fired.push(p));
        assert_eq!(fired, vec![2, 1]);
        assert_eq!(
            w.next_deadline().map(|d| d >= t0 + Duration::from_secs(32)),
            Some(true)
        );
        w.advance(t0 + Duration::from_secs(40), |p| fired.push(p));
        assert_eq!(fired, vec![2, 1, 3]);
        assert!(w.is_empty());
    }

    #[test]
    fn long_idle_gap_still_fires() {
        let t0 = Instant::now();
        let mut w = Wheel::new(t0);
        w.insert(t0 + Duration::from_secs(5), 7);
        let mut fired = Vec::new();
        w.advance(t0 + Duration::from_secs(3600), |p| fired.push(p));
        assert_eq!(fired, vec![7]);
        // After a long jump, new timers are relative to the new position.
        w.insert(t0 + Duration::from_secs(3601), 8);
        w.advance(t0 + Duration::from_secs(3600), |p| fired.push(p));
        assert_eq!(fired, vec![7]);
        w.advance(t0 + Duration::from_secs(3602), |p| fired.push(p));
        assert_eq!(fired, vec![7, 8]);
    }
}
