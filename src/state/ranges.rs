//! Sets of version numbers kept as disjoint inclusive ranges: what a node has of one writer's versions. A writer
//! numbers its writes 1, 2, 3…; a node that has heard them all holds the single range `1..=head`, so the set stays
//! tiny however many keys there are, and the gaps (the versions still missing) are what a sync asks for.

use std::collections::BTreeMap;

/// Disjoint, non-adjacent inclusive ranges of versions (never version 0).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSet {
    /// start → end, both inclusive.
    ranges: BTreeMap<u64, u64>,
}

impl RangeSet {
    /// The set holding exactly `ranges` (overlapping or adjacent ones are joined; empty and zero ones dropped).
    pub fn from_ranges(ranges: impl IntoIterator<Item = (u64, u64)>) -> Self {
        let mut set = Self::default();
        for (start, end) in ranges {
            set.insert_range(start, end);
        }
        set
    }

    /// Adds one version.
    pub fn insert(&mut self, version: u64) {
        self.insert_range(version, version);
    }

    /// Adds `start..=end`, joining the ranges it touches.
    pub fn insert_range(&mut self, start: u64, end: u64) {
        let start = start.max(1);
        if end < start {
            return;
        }
        let (mut start, mut end) = (start, end);
        // A range starting before `start` that reaches it (or ends right before it) is joined.
        if let Some((&s, &e)) = self.ranges.range(..=start).next_back()
            && e.saturating_add(1) >= start
        {
            start = s;
            end = end.max(e);
        }
        // Every range starting inside `start..=end + 1` is swallowed.
        let swallowed: Vec<(u64, u64)> = self
            .ranges
            .range(start..=end.saturating_add(1))
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in swallowed {
            self.ranges.remove(&s);
            end = end.max(e);
        }
        self.ranges.insert(start, end);
    }

    /// Removes one version, splitting the range that held it.
    pub fn remove(&mut self, version: u64) {
        let Some((&start, &end)) = self.ranges.range(..=version).next_back() else {
            return;
        };
        if end < version {
            return;
        }
        self.ranges.remove(&start);
        if start < version {
            self.ranges.insert(start, version - 1);
        }
        if version < end {
            self.ranges.insert(version + 1, end);
        }
    }

    pub fn contains(&self, version: u64) -> bool {
        self.ranges
            .range(..=version)
            .next_back()
            .is_some_and(|(_, &end)| end >= version)
    }

    /// The highest version held, 0 when empty.
    pub fn max(&self) -> u64 {
        self.ranges.values().next_back().copied().unwrap_or(0)
    }

    /// The highest `v` such that every version `1..=v` is held.
    pub fn contiguous(&self) -> u64 {
        match self.ranges.first_key_value() {
            Some((1, &end)) => end,
            _ => 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The ranges, lowest first.
    pub fn ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.ranges.iter().map(|(&s, &e)| (s, e))
    }

    /// How many ranges the set holds.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// The versions missing below the highest one, as at most `limit` ranges, lowest first. When there are more gaps
    /// than that, the last range reported runs from the start of the `limit`-th gap to the highest version: it then
    /// also names versions we hold, which only makes a peer send a few twice (a merge ignores duplicates).
    pub fn gaps(&self, limit: usize) -> Vec<(u64, u64)> {
        let mut gaps = Vec::new();
        let mut next = 1;
        for (&start, &end) in &self.ranges {
            if start > next {
                if gaps.len() + 1 == limit {
                    gaps.push((next, self.max()));
                    return gaps;
                }
                gaps.push((next, start - 1));
            }
            next = end + 1;
        }
        gaps
    }

    /// The parts of `start..=end` this set holds, lowest first.
    pub fn overlap(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        if end < start {
            return Vec::new();
        }
        let mut parts = Vec::new();
        if let Some((_, &e)) = self.ranges.range(..start).next_back()
            && e >= start
        {
            parts.push((start, e.min(end)));
        }
        for (&s, &e) in self.ranges.range(start..=end) {
            parts.push((s, e.min(end)));
        }
        parts
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn adjacent_and_overlapping_ranges_join() {
        let mut set = RangeSet::default();
        set.insert(3);
        set.insert(1);
        assert_eq!(set.ranges().collect::<Vec<_>>(), [(1, 1), (3, 3)]);
        set.insert(2);
        assert_eq!(set.ranges().collect::<Vec<_>>(), [(1, 3)]);
        set.insert_range(10, 20);
        set.insert_range(5, 12);
        assert_eq!(set.ranges().collect::<Vec<_>>(), [(1, 3), (5, 20)]);
        set.insert_range(4, 4);
        assert_eq!(set.ranges().collect::<Vec<_>>(), [(1, 20)]);
        assert_eq!(set.contiguous(), 20);
        set.insert(0);
        assert_eq!(set.ranges().collect::<Vec<_>>(), [(1, 20)], "version 0 does not exist");
    }

    #[test]
    fn gaps_are_what_is_missing_below_the_highest() {
        let set = RangeSet::from_ranges([(2, 3), (6, 6), (9, 10)]);
        assert_eq!(set.gaps(10), [(1, 1), (4, 5), (7, 8)]);
        assert_eq!(set.contiguous(), 0);
        assert_eq!(set.max(), 10);
        // Past the limit the last gap runs to the top: more than is missing, never less.
        assert_eq!(set.gaps(2), [(1, 1), (4, 10)]);
        assert_eq!(RangeSet::from_ranges([(1, 5)]).gaps(4), []);
    }

    #[test]
    fn removing_a_version_splits_its_range() {
        let mut set = RangeSet::from_ranges([(1, 5)]);
        set.remove(3);
        assert_eq!(set.ranges().collect::<Vec<_>>(), [(1, 2), (4, 5)]);
        set.remove(1);
        set.remove(5);
        set.remove(9);
        assert_eq!(set.ranges().collect::<Vec<_>>(), [(2, 2), (4, 4)]);
    }

    #[test]
    fn overlap_clips_to_the_asked_range() {
        let set = RangeSet::from_ranges([(1, 3), (6, 9)]);
        assert_eq!(set.overlap(2, 7), [(2, 3), (6, 7)]);
        assert_eq!(set.overlap(4, 5), []);
        assert_eq!(set.overlap(9, 100), [(9, 9)]);
        assert_eq!(set.overlap(5, 4), []);
    }

    proptest! {
        #[test]
        fn a_set_holds_exactly_what_was_inserted(ranges in prop::collection::vec((1u64..200, 0u64..10), 0..40)) {
            let mut set = RangeSet::default();
            let mut expected = std::collections::BTreeSet::new();
            for (start, len) in ranges {
                set.insert_range(start, start + len);
                expected.extend(start..=start + len);
            }
            for v in 0..220 {
                prop_assert_eq!(set.contains(v), expected.contains(&v));
            }
            // Ranges are disjoint and never adjacent.
            let ranges: Vec<_> = set.ranges().collect();
            for pair in ranges.windows(2) {
                prop_assert!(pair[0].1 + 1 < pair[1].0);
            }
            let missing: usize = set.gaps(usize::MAX).iter().map(|(s, e)| (e - s + 1) as usize).sum();
            prop_assert_eq!(missing as u64 + expected.len() as u64, set.max());
        }
    }
}
