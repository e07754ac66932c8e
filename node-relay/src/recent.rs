//! A map that keeps only its last entries: what a relay remembers of what it has seen, with
//! memory bounded however much it sees.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// At most `capacity` entries; inserting a new key beyond that forgets the oldest.
pub struct Recent<K, V> {
    capacity: usize,
    values: HashMap<K, V>,
    order: VecDeque<K>,
}

impl<K: Hash + Eq + Clone, V: Clone> Recent<K, V> {
    pub fn new(capacity: usize) -> Self {
        Recent {
            capacity,
            values: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn get(&self, key: &K) -> Option<V> {
        self.values.get(key).cloned()
    }

    /// Keeps `value` for `key` (replacing what it had, which keeps its place in the order).
    pub fn insert(&mut self, key: K, value: V) {
        if self.values.insert(key.clone(), value).is_none() {
            self.order.push_back(key);
            while self.order.len() > self.capacity {
                if let Some(oldest) = self.order.pop_front() {
                    self.values.remove(&oldest);
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_entries_only() {
        let mut recent = Recent::new(3);
        for n in 0..5u32 {
            recent.insert(n, n * 10);
        }
        assert_eq!(recent.len(), 3);
        assert_eq!(recent.get(&1), None);
        assert_eq!(recent.get(&2), Some(20));
        // Replacing a value does not add an entry.
        recent.insert(4, 41);
        assert_eq!((recent.len(), recent.get(&4)), (3, Some(41)));
        recent.insert(5, 50);
        assert_eq!(recent.get(&2), None);
        assert_eq!(recent.get(&3), Some(30));
    }
}
