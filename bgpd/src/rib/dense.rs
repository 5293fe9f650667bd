//! A hash map that keeps its entries in one dense `Vec` and only 4-byte positions in the hash
//! table (the layout of `indexmap`, without the stored hash).
//!
//! Why: hashbrown sizes a table in powers of two at most 7/8 full, so a million-prefix map
//! of 24-byte entries sits in 2^21 buckets (~52 MB, under half used), and while it grows the
//! old and the new table are both resident (~78 MB at the peak). Here the buckets hold a
//! `u32` (2^21 x 5 bytes = 10.5 MB) and the entries are packed (1 M x 24 bytes; a large
//! `Vec` grows by `realloc`, which glibc does with `mremap` without copying or touching the
//! unused tail), ~35 MB in all. The buckets are refilled in entry order when they grow
//! (hashbrown's own growth would read the entries at random for their keys). The Loc-RIB
//! and every Adj-RIB-Out use it, so a full table with one receiving peer saves ~32 MB of
//! peak RSS, more at the moment a hashbrown map would double.
//!
//! Removal is `swap_remove`: the last entry takes the removed one's place, so iteration
//! order is insertion order perturbed by removals (callers never relied on an order; a
//! hashbrown map has none either).

use std::hash::{BuildHasher, Hash};

use hashbrown::{DefaultHashBuilder, HashTable};

/// See the module documentation. At most `u32::MAX` entries: an insert beyond that stores
/// nothing (`entry_or_default` and `get_or_insert` say so, `insert` drops the value); no
/// routing table reaches it, that would be 100 GB of entries.
#[derive(Clone)]
pub struct DenseMap<K, V> {
    index: HashTable<u32>,
    entries: Vec<(K, V)>,
    hasher: DefaultHashBuilder,
}

impl<K, V> Default for DenseMap<K, V> {
    fn default() -> Self {
        Self {
            index: HashTable::new(),
            entries: Vec::new(),
            hasher: DefaultHashBuilder::default(),
        }
    }
}

impl<K: std::fmt::Debug, V: std::fmt::Debug> std::fmt::Debug for DenseMap<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(k, v)| (k, v)))
            .finish()
    }
}

/// What [`DenseMap::get_or_insert`] found.
#[derive(Debug)]
pub enum Slot<'a, V> {
    /// The key was there: its value, and the value offered (not stored).
    Present(&'a mut V, V),
    /// The key was absent and the value offered is stored now.
    Inserted,
    /// The map is at `u32::MAX` entries: nothing stored.
    Full,
}

fn pos(i: u32) -> usize {
    // u32 -> usize is lossless on the 32- and 64-bit targets we build for.
    i as usize
}

impl<K: Hash + Eq, V> DenseMap<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn find(&self, k: &K) -> Option<usize> {
        self.find_hashed(self.hasher.hash_one(k), k)
    }

    fn find_hashed(&self, h: u64, k: &K) -> Option<usize> {
        let entries = &self.entries;
        self.index
            .find(h, |&i| entries.get(pos(i)).is_some_and(|(ek, _)| ek == k))
            .map(|&i| pos(i))
    }

    pub fn get(&self, k: &K) -> Option<&V> {
        let i = self.find(k)?;
        self.entries.get(i).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        let i = self.find(k)?;
        self.entries.get_mut(i).map(|(_, v)| v)
    }

    /// Appends an entry for a key known to be absent; `None` (and nothing stored) only when
    /// the map already holds `u32::MAX` entries.
    fn try_insert_new(&mut self, k: K, v: V) -> Option<usize> {
        let h = self.hasher.hash_one(&k);
        self.try_insert_new_hashed(h, k, v)
    }

    /// [`Self::try_insert_new`] with `h`, the key's hash, already computed.
    fn try_insert_new_hashed(&mut self, h: u64, k: K, v: V) -> Option<usize> {
        let i = u32::try_from(self.entries.len()).ok()?;
        if self.index.len() == self.index.capacity() {
            self.grow();
        }
        self.entries.push((k, v));
        let Self {
            index,
            entries,
            hasher,
        } = self;
        index.insert_unique(h, i, |&j| {
            entries.get(pos(j)).map_or(0, |(ek, _)| hasher.hash_one(ek))
        });
        Some(pos(i))
    }

    /// Doubles the buckets, filled from the entries in their order. hashbrown's own growth
    /// rehashes in bucket order, which reads the entries (for their keys) at random: a cache
    /// miss per entry at every doubling, a tenth of a full-table insert.
    fn grow(&mut self) {
        let want = (self.index.capacity() * 2).max(16);
        let mut index = HashTable::with_capacity(want);
        for (i, (k, _)) in self.entries.iter().enumerate() {
            let Ok(i) = u32::try_from(i) else { break };
            // Room for every entry was reserved: the rehash closure is never called.
            index.insert_unique(self.hasher.hash_one(k), i, |_| 0);
        }
        self.index = index;
    }

    /// Inserts or replaces; returns the value replaced.
    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        match self.find(&k) {
            Some(i) => self
                .entries
                .get_mut(i)
                .map(|(_, old)| std::mem::replace(old, v)),
            None => {
                let _ = self.try_insert_new(k, v);
                None
            }
        }
    }

    /// The value of `k`, inserted as `V::default()` when absent. `None` only at `u32::MAX`
    /// entries.
    pub fn entry_or_default(&mut self, k: K) -> Option<&mut V>
    where
        V: Default,
    {
        let h = self.hasher.hash_one(&k);
        let i = match self.find_hashed(h, &k) {
            Some(i) => i,
            None => self.try_insert_new_hashed(h, k, V::default())?,
        };
        self.entries.get_mut(i).map(|(_, v)| v)
    }

    /// One lookup for "compare with what is there, else insert": the value present for `k`
    /// with `v` handed back (`Present`), or `v` inserted (`Inserted`; `Full` at `u32::MAX`
    /// entries, `v` not stored).
    pub fn get_or_insert(&mut self, k: K, v: V) -> Slot<'_, V> {
        let h = self.hasher.hash_one(&k);
        let (i, back) = match self.find_hashed(h, &k) {
            Some(i) => (i, Some(v)),
            None => match self.try_insert_new_hashed(h, k, v) {
                Some(i) => (i, None),
                None => return Slot::Full,
            },
        };
        match (self.entries.get_mut(i), back) {
            (Some((_, cur)), Some(v)) => Slot::Present(cur, v),
            (Some(_), None) => Slot::Inserted,
            (None, _) => Slot::Full,
        }
    }

    pub fn remove(&mut self, k: &K) -> Option<V> {
        let h = self.hasher.hash_one(k);
        let entries = &self.entries;
        let slot = self
            .index
            .find_entry(h, |&i| entries.get(pos(i)).is_some_and(|(ek, _)| ek == k))
            .ok()?;
        let (i, _) = slot.remove();
        let i = pos(i);
        let last = self.entries.len().checked_sub(1)?;
        if i != last {
            // The last entry moves to `i`: repoint its bucket.
            let moved = self
                .entries
                .get(last)
                .map(|(mk, _)| self.hasher.hash_one(mk));
            if let (Some(mh), Ok(last32), Ok(i32)) = (moved, u32::try_from(last), u32::try_from(i))
                && let Some(b) = self.index.find_mut(mh, |&j| j == last32)
            {
                *b = i32;
            }
        }
        if i < self.entries.len() {
            Some(self.entries.swap_remove(i).1)
        } else {
            None
        }
    }

    /// Empties the map, keeping its allocations for the next fill.
    pub fn clear(&mut self) {
        self.index.clear();
        self.entries.clear();
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&K, &mut V)> {
        self.entries.iter_mut().map(|(k, v)| (&*k, v))
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|(_, v)| v)
    }

    /// Bytes held by the buckets and the entries (capacity, not length), for tests and
    /// benchmarks.
    pub fn allocated_bytes(&self) -> usize {
        self.index.capacity() * (std::mem::size_of::<u32>() + 1)
            + self.entries.capacity() * std::mem::size_of::<(K, V)>()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[test]
    fn insert_get_replace_remove() {
        let mut m: DenseMap<u64, u32> = DenseMap::new();
        assert!(m.is_empty());
        assert_eq!(m.insert(1, 10), None);
        assert_eq!(m.insert(2, 20), None);
        assert_eq!(m.insert(1, 11), Some(10));
        assert_eq!(m.len(), 2);
        assert_eq!(m.get(&1), Some(&11));
        *m.get_mut(&2).unwrap() += 1;
        assert_eq!(m.get(&2), Some(&21));
        assert_eq!(m.remove(&1), Some(11));
        assert_eq!(m.remove(&1), None);
        assert_eq!(m.get(&2), Some(&21), "the moved last entry is still found");
        assert_eq!(m.len(), 1);
        *m.entry_or_default(3).unwrap() += 5;
        *m.entry_or_default(3).unwrap() += 5;
        assert_eq!(m.get(&3), Some(&10));
        assert!(matches!(m.get_or_insert(4, 1), Slot::Inserted));
        match m.get_or_insert(4, 2) {
            Slot::Present(cur, offered) => {
                assert_eq!((*cur, offered), (1, 2));
                *cur = offered;
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(m.get(&4), Some(&2));
    }

    #[test]
    fn smaller_than_a_hashbrown_map_at_a_million() {
        let mut m: DenseMap<u64, [u64; 2]> = DenseMap::new();
        let mut h: hashbrown::HashMap<u64, [u64; 2]> = hashbrown::HashMap::new();
        for k in 0..1_000_000u64 {
            m.insert(k << 8 | 24, [k, k]);
            h.insert(k << 8 | 24, [k, k]);
        }
        let hb = h.capacity().next_power_of_two() * (24 + 1);
        assert!(
            m.allocated_bytes() * 10 < hb * 8,
            "{} vs {hb}",
            m.allocated_bytes()
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u16, u32),
        Remove(u16),
        Bump(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Few distinct keys, so removals and replacements hit.
        let k = 0u16..300;
        prop_oneof![
            (k.clone(), any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
            k.clone().prop_map(Op::Remove),
            k.prop_map(Op::Bump),
        ]
    }

    proptest! {
        /// Any sequence of operations leaves the same contents as a `BTreeMap` given the
        /// same sequence, and every key is found at its (moved) position.
        #[test]
        fn behaves_like_a_map(ops in proptest::collection::vec(op(), 0..2000)) {
            let mut m: DenseMap<u16, u32> = DenseMap::new();
            let mut r: BTreeMap<u16, u32> = BTreeMap::new();
            for o in ops {
                match o {
                    Op::Insert(k, v) => prop_assert_eq!(m.insert(k, v), r.insert(k, v)),
                    Op::Remove(k) => prop_assert_eq!(m.remove(&k), r.remove(&k)),
                    Op::Bump(k) => {
                        *m.entry_or_default(k).unwrap() += 1;
                        *r.entry(k).or_default() += 1;
                    }
                }
                prop_assert_eq!(m.len(), r.len());
            }
            for (k, v) in &r {
                prop_assert_eq!(m.get(k), Some(v));
            }
            let mut all: Vec<(u16, u32)> = m.iter().map(|(k, v)| (*k, *v)).collect();
            all.sort_unstable();
            prop_assert_eq!(all, r.into_iter().collect::<Vec<_>>());
        }
    }
}
