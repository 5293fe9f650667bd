//! Occupied addresses of one family as maximal runs, so "lowest free address at or above x"
//! is one `BTreeMap` lookup: the run containing x (if any) ends just before a free address.
//! Memory is proportional to the number of runs, never to the pool size.

use std::collections::BTreeMap;

#[derive(Clone, Debug, Default)]
pub(crate) struct RunSet {
    /// start -> end (inclusive); runs are disjoint and never adjacent (always merged).
    runs: BTreeMap<u128, u128>,
}

impl RunSet {
    /// The run containing `x`, as (start, end).
    fn run_of(&self, x: u128) -> Option<(u128, u128)> {
        self.runs
            .range(..=x)
            .next_back()
            .filter(|(_, end)| **end >= x)
            .map(|(s, e)| (*s, *e))
    }

    pub(crate) fn contains(&self, x: u128) -> bool {
        self.run_of(x).is_some()
    }

    /// Marks `x` occupied; false if it already was. O(log runs).
    pub(crate) fn insert(&mut self, x: u128) -> bool {
        // One lookup for the run at or before x; sequential allocation (x = end + 1 of the
        // previous run, nothing after it) then costs two tree walks in total.
        let mut left_start = None;
        if let Some((&s, &e)) = self.runs.range(..=x).next_back() {
            if e >= x {
                return false;
            }
            if e.checked_add(1) == Some(x) {
                left_start = Some(s);
            }
        }
        let right = x
            .checked_add(1)
            .and_then(|n| self.runs.get(&n).map(|&e| (n, e)));
        match (left_start, right) {
            (Some(s), None) => {
                if let Some(e) = self.runs.get_mut(&s) {
                    *e = x;
                }
            }
            (Some(s), Some((n, e))) => {
                self.runs.remove(&n);
                if let Some(end) = self.runs.get_mut(&s) {
                    *end = e;
                }
            }
            (None, Some((n, e))) => {
                self.runs.remove(&n);
                self.runs.insert(x, e);
            }
            (None, None) => {
                self.runs.insert(x, x);
            }
        }
        true
    }

    /// Marks `x` free; false if it was not occupied. O(log runs).
    pub(crate) fn remove(&mut self, x: u128) -> bool {
        let Some((s, e)) = self.run_of(x) else {
            return false;
        };
        if s < x {
            self.runs.insert(s, x - 1);
        } else {
            self.runs.remove(&s);
        }
        if x < e {
            self.runs.insert(x + 1, e);
        }
        true
    }

    /// The lowest free address in `lo..=hi`. O(log runs).
    pub(crate) fn first_free(&self, lo: u128, hi: u128) -> Option<u128> {
        if lo > hi {
            return None;
        }
        let candidate = match self.run_of(lo) {
            Some((_, end)) => end.checked_add(1)?,
            None => lo,
        };
        (candidate <= hi).then_some(candidate)
    }

    #[cfg(test)]
    pub(crate) fn run_count(&self) -> usize {
        self.runs.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn merges_and_splits() {
        let mut r = RunSet::default();
        assert!(r.insert(5));
        assert!(r.insert(7));
        assert_eq!(r.run_count(), 2);
        assert!(r.insert(6));
        assert_eq!(r.run_count(), 1);
        assert!(!r.insert(6));
        assert_eq!(r.first_free(5, 10), Some(8));
        assert_eq!(r.first_free(5, 7), None);
        assert_eq!(r.first_free(0, 10), Some(0));
        assert!(r.remove(6));
        assert_eq!(r.run_count(), 2);
        assert_eq!(r.first_free(5, 10), Some(6));
        assert!(!r.remove(6));
    }

    #[test]
    fn extremes() {
        let mut r = RunSet::default();
        assert!(r.insert(u128::MAX));
        assert!(r.insert(u128::MAX - 1));
        assert_eq!(r.first_free(u128::MAX - 1, u128::MAX), None);
        assert!(r.insert(0));
        assert_eq!(r.first_free(0, u128::MAX), Some(1));
        assert!(r.remove(u128::MAX));
        assert_eq!(r.first_free(u128::MAX - 1, u128::MAX), Some(u128::MAX));
    }

    proptest! {
        #[test]
        fn matches_a_plain_set(ops in proptest::collection::vec((any::<bool>(), 0u128..64), 0..200),
                               lo in 0u128..64, span in 0u128..64) {
            let mut r = RunSet::default();
            let mut s = BTreeSet::new();
            for (ins, x) in ops {
                if ins { prop_assert_eq!(r.insert(x), s.insert(x)); }
                else { prop_assert_eq!(r.remove(x), s.remove(&x)); }
            }
            let hi = lo + span;
            let expect = (lo..=hi).find(|x| !s.contains(x));
            prop_assert_eq!(r.first_free(lo, hi), expect);
            for x in 0..64u128 { prop_assert_eq!(r.contains(x), s.contains(&x)); }
        }
    }
}
