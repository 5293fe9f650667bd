//! Service keys interned to small integer ids, so allocations hold 4-byte ids instead of two
//! `String`s each and every per-reconcile lookup compares integers, not strings. An id lives
//! exactly as long as some allocation holds it (reference counted), so memory still grows with
//! allocated addresses only. Ids never leak into ordering: everything ordered is ordered by key.

use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};

use crate::spec::ServiceKey;

/// An interned service key.
pub(crate) type SvcId = u32;

/// Reference-counted interner: id -> key in a vector, key -> id in a hash table of ids.
#[derive(Clone, Debug, Default)]
pub(crate) struct Interner {
    /// Key per id; a freed slot holds empty strings (no heap) until it is reused.
    keys: Vec<ServiceKey>,
    /// Allocations holding each id; 0 marks a free slot.
    refs: Vec<u32>,
    /// Free slots, reused before the vectors grow.
    free: Vec<SvcId>,
    /// Live ids, hashed by their key.
    table: HashTable<SvcId>,
    hasher: DefaultHashBuilder,
}

impl Interner {
    /// The hash `find` and `acquire` expect for `key`.
    pub(crate) fn hash(&self, key: &ServiceKey) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Number of id slots (ids are below this).
    pub(crate) fn slots(&self) -> usize {
        self.keys.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub(crate) fn key(&self, id: SvcId) -> &ServiceKey {
        &self.keys[id as usize]
    }

    /// The id of a live key.
    pub(crate) fn find(&self, hash: u64, key: &ServiceKey) -> Option<SvcId> {
        let keys = &self.keys;
        self.table
            .find(hash, |&id| keys[id as usize] == *key)
            .copied()
    }

    /// Allocations holding a live id.
    pub(crate) fn refs(&self, id: SvcId) -> u32 {
        self.refs.get(id as usize).copied().unwrap_or(0)
    }

    /// Adds one reference to a live id.
    pub(crate) fn retain(&mut self, id: SvcId) {
        self.refs[id as usize] += 1;
    }

    /// The id of `key` with one more reference, interning it (one clone) if it was not live.
    pub(crate) fn acquire(&mut self, hash: u64, key: &ServiceKey) -> SvcId {
        if let Some(id) = self.find(hash, key) {
            self.retain(id);
            return id;
        }
        self.insert_new(hash, key)
    }

    /// Interns a key known not to be live (one clone), with one reference; skips the search
    /// `acquire` makes.
    pub(crate) fn insert_new(&mut self, hash: u64, key: &ServiceKey) -> SvcId {
        debug_assert!(self.find(hash, key).is_none(), "{key} interned twice");
        let id = match self.free.pop() {
            Some(id) => {
                self.keys[id as usize] = key.clone();
                self.refs[id as usize] = 1;
                id
            }
            None => {
                // Ids stay far below u32::MAX: each one is held by an allocated address.
                let id = SvcId::try_from(self.keys.len()).unwrap_or(SvcId::MAX);
                self.keys.push(key.clone());
                self.refs.push(1);
                id
            }
        };
        let (keys, hasher) = (&self.keys, &self.hasher);
        self.table
            .insert_unique(hash, id, |&i| hasher.hash_one(&keys[i as usize]));
        id
    }

    /// Drops one reference; returns true when that was the last and the id is now free.
    pub(crate) fn release(&mut self, id: SvcId) -> bool {
        let r = &mut self.refs[id as usize];
        *r = r.saturating_sub(1);
        if *r > 0 {
            return false;
        }
        let hash = self.hash(&self.keys[id as usize]);
        if let Ok(entry) = self.table.find_entry(hash, |&i| i == id) {
            entry.remove();
        }
        self.keys[id as usize] = ServiceKey {
            namespace: String::new(),
            name: String::new(),
        };
        self.free.push(id);
        true
    }

    /// Makes room for `additional` more keys, so neither the table rehashes (hashing every key
    /// again) nor the vectors double while they come in. At most one slot per service.
    pub(crate) fn reserve(&mut self, additional: usize) {
        let (keys, hasher) = (&self.keys, &self.hasher);
        self.table
            .reserve(additional, |&i| hasher.hash_one(&keys[i as usize]));
        self.keys
            .reserve(additional.saturating_sub(self.free.len()));
        self.refs
            .reserve(additional.saturating_sub(self.free.len()));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reference_counted_and_reused() {
        let mut i = Interner::default();
        let a = ServiceKey::new("ns", "a");
        let b = ServiceKey::new("ns", "b");
        let ia = i.acquire(i.hash(&a), &a);
        assert_eq!(i.acquire(i.hash(&a), &a), ia);
        let ib = i.acquire(i.hash(&b), &b);
        assert_ne!(ia, ib);
        assert_eq!(i.key(ib), &b);
        assert!(!i.release(ia));
        assert_eq!(i.find(i.hash(&a), &a), Some(ia));
        assert!(i.release(ia));
        assert_eq!(i.find(i.hash(&a), &a), None);
        // The freed slot is reused; the other id is untouched.
        let c = ServiceKey::new("other", "c");
        assert_eq!(i.acquire(i.hash(&c), &c), ia);
        assert_eq!(i.find(i.hash(&b), &b), Some(ib));
        assert_eq!(i.slots(), 2);
    }
}
