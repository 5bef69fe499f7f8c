//! Integer message ids: 63 bits, unique in the store, increasing in append order within a lane
//! and roughly in time across lanes.
//!
//! Layout (docs/format.md "Integer ids"): `unix_ms << 20 | seq << 10 | lane`, where `lane` is the
//! lane number (10 bits, so at most 1023 lanes) and `seq` counts ids given in the same
//! millisecond. The lane bits make ids of different lanes distinct; each lane hands out ids
//! above the last one it gave (found again at open, from the index and the lane's unindexed
//! entries), so a clock that steps back never repeats an id. Messages written before integer ids
//! existed have ids below 2^50 (`entry::legacy_num`), below every id given here.

use crate::time::now_ms;

/// Lane numbers that fit the id layout.
pub(crate) const MAX_LANE: u64 = (1 << 10) - 1;

/// Hands out ids for one lane.
#[derive(Debug)]
pub(crate) struct IdClock {
    lane: i64,
    last: i64,
}

impl IdClock {
    /// A clock for lane number `lane` (at most [`MAX_LANE`]) that has given ids up to `last`.
    pub(crate) fn new(lane: u64, last: i64) -> IdClock {
        IdClock { lane: i64::try_from(lane & MAX_LANE).unwrap_or(0), last }
    }

    /// The next id.
    pub(crate) fn next(&mut self) -> i64 {
        let ms = i64::try_from(now_ms()).unwrap_or(0).min((1 << 43) - 1);
        let from_clock = (ms << 20) | self.lane;
        let n = if from_clock > self.last { from_clock } else { self.last.saturating_add(1 << 10) };
        self.last = n;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increasing_distinct_per_lane_and_above_legacy_ids() {
        let mut a = IdClock::new(1, 0);
        let mut b = IdClock::new(2, 0);
        let mut all = std::collections::HashSet::new();
        let mut prev = 0;
        for _ in 0..10_000 {
            let x = a.next();
            assert!(x > prev);
            prev = x;
            assert!(all.insert(x) && all.insert(b.next()));
        }
        assert_eq!(prev & MAX_LANE as i64, 1);
        assert!(prev > 1 << 50);
        // A clock that is behind what the lane already gave still goes up.
        let mut c = IdClock::new(3, i64::MAX / 2);
        assert!(c.next() > i64::MAX / 2);
    }
}
