//! `RecentIds`: what was seen within the last window, for idempotent publishing. A publisher remembers each
//! caller-chosen id with its first result, so a retry within `--dedup-window` returns that result and sends nothing;
//! a receiver remembers each (origin, id) it delivered, so an envelope republished under the same id is delivered
//! once. Pure (time is a parameter) and bounded: past `capacity` entries the oldest are forgotten early, so a flood of
//! fresh ids costs memory in proportion to the cap, not to the flood.

use std::{
    collections::{HashMap, VecDeque},
    hash::Hash,
    time::{Duration, Instant},
};

#[derive(Debug)]
pub struct RecentIds<K, V> {
    window: Duration,
    capacity: usize,
    entries: HashMap<K, (Instant, V)>,
    /// Insertion order, for expiry: each key with the time it was inserted.
    order: VecDeque<(Instant, K)>,
}

impl<K: Eq + Hash + Clone, V> RecentIds<K, V> {
    pub fn new(window: Duration, capacity: usize) -> Self {
        RecentIds {
            window,
            capacity: capacity.max(1),
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// The value remembered for `key`, if it was inserted less than a window before `now`.
    pub fn get(&mut self, key: &K, now: Instant) -> Option<&V> {
        self.expire(now);
        self.entries.get(key).map(|(_, value)| value)
    }

    /// Remembers `key` from `now` on; false when it was already remembered (it keeps its first value and time).
    pub fn insert(&mut self, key: K, value: V, now: Instant) -> bool {
        self.expire(now);
        if self.entries.contains_key(&key) {
            return false;
        }
        while self.entries.len() >= self.capacity {
            let Some((_, oldest)) = self.order.pop_front() else {
                break;
            };
            self.entries.remove(&oldest);
        }
        self.entries.insert(key.clone(), (now, value));
        self.order.push_back((now, key));
        true
    }

    /// Entries remembered now (some may be past the window until the next call that passes `now`).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn expire(&mut self, now: Instant) {
        while let Some((inserted, _)) = self.order.front() {
            if now.duration_since(*inserted) < self.window {
                break;
            }
            if let Some((_, key)) = self.order.pop_front() {
                self.entries.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn an_id_is_remembered_for_the_window_and_forgotten_after() {
        let mut ids = RecentIds::new(120 * SEC, 100);
        let start = Instant::now();
        ids.insert("a", 1, start);
        assert_eq!(ids.get(&"a", start + 119 * SEC), Some(&1));
        assert_eq!(ids.get(&"a", start + 120 * SEC), None);
        assert!(ids.insert("a", 2, start + 120 * SEC), "forgotten, so new again");
    }

    #[test]
    fn the_first_value_wins() {
        let mut ids = RecentIds::new(10 * SEC, 100);
        let start = Instant::now();
        assert!(ids.insert("a", 1, start));
        assert!(!ids.insert("a", 2, start + SEC), "already remembered");
        assert_eq!(ids.get(&"a", start + 2 * SEC), Some(&1));
        assert_eq!(
            ids.get(&"a", start + 10 * SEC),
            None,
            "the window runs from the first insert"
        );
    }

    #[test]
    fn past_capacity_the_oldest_are_forgotten_first() {
        let mut ids = RecentIds::new(10 * SEC, 3);
        let start = Instant::now();
        for (i, key) in ["a", "b", "c", "d"].into_iter().enumerate() {
            ids.insert(key, i, start);
        }
        assert_eq!(ids.get(&"a", start), None);
        assert_eq!(ids.get(&"b", start), Some(&1));
        assert_eq!(ids.get(&"d", start), Some(&3));
    }

    #[test]
    fn an_extreme_window_keeps_ids_without_overflowing() {
        let mut ids = RecentIds::new(Duration::MAX, 2);
        let start = Instant::now();
        ids.insert("a", 1, start);
        assert_eq!(ids.get(&"a", start + 1000 * SEC), Some(&1));
        ids.insert("b", 2, start);
        ids.insert("c", 3, start);
        assert_eq!(ids.len(), 2, "the capacity still bounds it");
    }
}
