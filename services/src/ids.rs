//! Stable, node-local ids: one service id per frontend (Cilium's rev-NAT index range,
//! 1..=65535, so an id fits the u16 field Cilium's maps use) and one backend id per backend
//! (1..=u32::MAX; 0 means "no backend" in a lookup table slot).
//!
//! An id stays with its frontend or backend while it exists, so a change elsewhere never
//! rewrites a table slot and established flows keep their backend. A backend's id is shared
//! by every frontend that uses it and freed when the last one lets go (reference counted).
//! After a restart the allocator is seeded from what the pinned maps hold
//! ([`IdAllocator::restore`]): the first claims get their old ids back, and
//! [`IdAllocator::take_unclaimed`] hands over the ids nobody claimed, for deletion.
//! New ids are handed out from a cursor moving upward and wrapping, as Cilium's
//! `IDAllocator` does, so a just-freed id is not reused at once.

use std::collections::{BTreeMap, BTreeSet};

use crate::table::{Backend, Frontend};

/// Largest service id (Cilium's rev-NAT index is 16 bits).
pub const MAX_SERVICE_ID: u32 = 65535;

/// A service id, 1..=65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceId(pub u32);

/// A backend id, 1..=u32::MAX.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendId(pub u32);

/// No id left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Every service id in 1..=65535 is in use.
    #[error("no free service id: all {MAX_SERVICE_ID} are in use")]
    ServicesExhausted,
    /// Every backend id is in use.
    #[error("no free backend id")]
    BackendsExhausted,
}

/// Something in the pinned maps that could not be taken over as it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreProblem {
    /// A service id outside 1..=65535 (the entry is left for deletion by the plan's prune).
    #[error(
        "frontend {frontend}: service id {id} is outside 1..={MAX_SERVICE_ID}; a new id will be used"
    )]
    ServiceIdOutOfRange {
        /// The frontend.
        frontend: Frontend,
        /// Its id in the map.
        id: u32,
    },
    /// Backend id 0.
    #[error("backend {backend}: id 0 is reserved; a new id will be used")]
    BackendIdZero {
        /// The backend.
        backend: Backend,
    },
    /// The same id twice, or the same frontend/backend twice: the first seen is kept.
    #[error("{what} appears twice in the pinned maps ({detail}); the first is kept")]
    Duplicate {
        /// `service id 7`, `frontend 10.0.0.1:80/TCP`, ...
        what: String,
        /// The two claims.
        detail: String,
    },
}

#[derive(Debug, Clone, Default)]
struct Space<K: Ord + Copy> {
    by_key: BTreeMap<K, (u32, u32)>, // key → (id, references)
    by_id: BTreeMap<u32, K>,
    /// Restored and not claimed since.
    restored: BTreeSet<K>,
    next: u32,
    max: u32,
}

impl<K: Ord + Copy> Space<K> {
    fn new(max: u32) -> Self {
        Self {
            by_key: BTreeMap::new(),
            by_id: BTreeMap::new(),
            restored: BTreeSet::new(),
            next: 1,
            max,
        }
    }

    fn insert_restored(&mut self, k: K, id: u32) -> Result<(), String> {
        if let Some(other) = self.by_id.get(&id) {
            return Err(if *other == k {
                "same entry".into()
            } else {
                format!("id {id}")
            });
        }
        if self.by_key.contains_key(&k) {
            return Err("entry".into());
        }
        self.by_key.insert(k, (id, 0));
        self.by_id.insert(id, k);
        self.restored.insert(k);
        self.next = self.next.max(id.saturating_add(1));
        if self.next > self.max {
            self.next = 1;
        }
        Ok(())
    }

    fn acquire(&mut self, k: K) -> Option<u32> {
        if let Some((id, refs)) = self.by_key.get_mut(&k) {
            *refs += 1;
            self.restored.remove(&k);
            return Some(*id);
        }
        if u64::try_from(self.by_id.len()).unwrap_or(u64::MAX) >= u64::from(self.max) {
            return None;
        }
        // Below `max` ids are in use, so the scan finds one within `max` steps.
        let mut id = self.next;
        while self.by_id.contains_key(&id) {
            id = if id >= self.max { 1 } else { id + 1 };
        }
        self.next = if id >= self.max { 1 } else { id + 1 };
        self.by_key.insert(k, (id, 1));
        self.by_id.insert(id, k);
        Some(id)
    }

    /// Drops one reference; the id when it was the last.
    fn release(&mut self, k: &K) -> Option<u32> {
        let (id, refs) = self.by_key.get_mut(k)?;
        let id = *id;
        *refs = refs.saturating_sub(1);
        if *refs == 0 {
            self.by_key.remove(k);
            self.by_id.remove(&id);
            self.restored.remove(k);
            return Some(id);
        }
        None
    }

    fn take_unclaimed(&mut self) -> Vec<(K, u32)> {
        let keys = std::mem::take(&mut self.restored);
        let mut out = Vec::new();
        for k in keys {
            if let Some((id, 0)) = self.by_key.get(&k).copied() {
                self.by_key.remove(&k);
                self.by_id.remove(&id);
                out.push((k, id));
            }
        }
        out
    }
}

/// Restored ids nobody claimed: `(frontends, backends)`.
pub type Unclaimed = (Vec<(Frontend, ServiceId)>, Vec<(Backend, BackendId)>);

/// The allocator of both id spaces.
#[derive(Debug, Clone)]
pub struct IdAllocator {
    services: Space<Frontend>,
    backends: Space<Backend>,
}

impl Default for IdAllocator {
    fn default() -> Self {
        Self::new()
    }
}

impl IdAllocator {
    /// An empty allocator (first start).
    pub fn new() -> Self {
        Self {
            services: Space::new(MAX_SERVICE_ID),
            backends: Space::new(u32::MAX),
        }
    }

    /// An allocator seeded with the ids found in the pinned maps after a restart.
    pub fn restore(
        services: impl IntoIterator<Item = (Frontend, u32)>,
        backends: impl IntoIterator<Item = (Backend, u32)>,
    ) -> (Self, Vec<RestoreProblem>) {
        let mut a = Self::new();
        let mut problems = Vec::new();
        for (f, id) in services {
            if !(1..=MAX_SERVICE_ID).contains(&id) {
                problems.push(RestoreProblem::ServiceIdOutOfRange { frontend: f, id });
                continue;
            }
            if let Err(what) = a.services.insert_restored(f, id) {
                problems.push(RestoreProblem::Duplicate {
                    what: format!("service {what}"),
                    detail: format!("frontend {f} with id {id}"),
                });
            }
        }
        for (b, id) in backends {
            if id == 0 {
                problems.push(RestoreProblem::BackendIdZero { backend: b });
                continue;
            }
            if let Err(what) = a.backends.insert_restored(b, id) {
                problems.push(RestoreProblem::Duplicate {
                    what: format!("backend {what}"),
                    detail: format!("backend {b} with id {id}"),
                });
            }
        }
        (a, problems)
    }

    /// The id of `f`, if it has one.
    pub fn service(&self, f: &Frontend) -> Option<ServiceId> {
        self.services.by_key.get(f).map(|(id, _)| ServiceId(*id))
    }

    /// The id of `b`, if it has one.
    pub fn backend(&self, b: &Backend) -> Option<BackendId> {
        self.backends.by_key.get(b).map(|(id, _)| BackendId(*id))
    }

    /// The frontend's id, allocated if it has none. A frontend holds one id however often
    /// it is acquired; [`IdAllocator::release_service`] frees it.
    pub fn acquire_service(&mut self, f: &Frontend) -> Result<ServiceId, IdError> {
        if let Some((id, refs)) = self.services.by_key.get_mut(f) {
            *refs = 1;
            self.services.restored.remove(f);
            return Ok(ServiceId(*id));
        }
        self.services
            .acquire(*f)
            .map(ServiceId)
            .ok_or(IdError::ServicesExhausted)
    }

    /// Frees the frontend's id; returns it.
    pub fn release_service(&mut self, f: &Frontend) -> Option<ServiceId> {
        self.services.release(f).map(ServiceId)
    }

    /// One more reference to `b`: its id (allocated on the first).
    pub fn acquire_backend(&mut self, b: &Backend) -> Result<BackendId, IdError> {
        self.backends
            .acquire(*b)
            .map(BackendId)
            .ok_or(IdError::BackendsExhausted)
    }

    /// One reference less to `b`; its id when that was the last (the id is then free).
    pub fn release_backend(&mut self, b: &Backend) -> Option<BackendId> {
        self.backends.release(b).map(BackendId)
    }

    /// Frees the restored ids nobody claimed and returns them: what the maps still hold
    /// for frontends and backends that are no longer wanted. Call once the first full plan
    /// after a restart has run.
    pub fn take_unclaimed(&mut self) -> Unclaimed {
        let s = self.services.take_unclaimed();
        let b = self.backends.take_unclaimed();
        (
            s.into_iter().map(|(k, id)| (k, ServiceId(id))).collect(),
            b.into_iter().map(|(k, id)| (k, BackendId(id))).collect(),
        )
    }

    /// Number of frontends and backends holding ids.
    pub fn len(&self) -> (usize, usize) {
        (self.services.by_key.len(), self.backends.by_key.len())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::table::L4Proto;

    fn f(last: u8, port: u16) -> Frontend {
        Frontend {
            addr: std::net::Ipv4Addr::new(10, 0, 0, last).into(),
            port,
            proto: L4Proto::Tcp,
        }
    }

    fn b(last: u8) -> Backend {
        Backend {
            addr: std::net::Ipv4Addr::new(10, 244, 0, last).into(),
            port: 8080,
            proto: L4Proto::Tcp,
        }
    }

    #[test]
    fn ids_are_stable_and_refcounted() {
        let mut a = IdAllocator::new();
        let s1 = a.acquire_service(&f(1, 80)).unwrap();
        let s2 = a.acquire_service(&f(2, 80)).unwrap();
        assert_eq!((s1, s2), (ServiceId(1), ServiceId(2)));
        assert_eq!(a.acquire_service(&f(1, 80)).unwrap(), s1);
        let b1 = a.acquire_backend(&b(1)).unwrap();
        assert_eq!(a.acquire_backend(&b(1)).unwrap(), b1);
        assert_eq!(a.release_backend(&b(1)), None, "still referenced once");
        assert_eq!(a.release_backend(&b(1)), Some(b1));
        assert_eq!(a.backend(&b(1)), None);
        // Freed ids are not reused at once (cursor), and the id of a live one never changes.
        assert_eq!(a.release_service(&f(1, 80)), Some(s1));
        assert_eq!(a.acquire_service(&f(3, 80)).unwrap(), ServiceId(3));
        assert_eq!(a.service(&f(2, 80)), Some(s2));
    }

    #[test]
    fn service_ids_wrap_and_exhaust() {
        let mut a = IdAllocator::new();
        for i in 0..MAX_SERVICE_ID {
            let fr = f((i % 250) as u8, (i / 250 + 1) as u16);
            assert_eq!(a.acquire_service(&fr).unwrap(), ServiceId(i + 1));
        }
        assert_eq!(
            a.acquire_service(&f(255, 1)),
            Err(IdError::ServicesExhausted)
        );
        // Free one in the middle: the cursor wraps to it.
        a.release_service(&f(9, 1)).unwrap();
        assert_eq!(a.acquire_service(&f(255, 1)).unwrap(), ServiceId(10));
    }

    #[test]
    fn restore_reuses_and_prunes() {
        let (mut a, problems) = IdAllocator::restore(
            [
                (f(1, 80), 7),
                (f(2, 80), 70000),
                (f(3, 80), 7),
                (f(4, 80), 9),
            ],
            [(b(1), 100), (b(2), 0), (b(3), 101)],
        );
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(matches!(
            problems[0],
            RestoreProblem::ServiceIdOutOfRange { id: 70000, .. }
        ));
        assert!(matches!(problems[1], RestoreProblem::Duplicate { .. }));
        assert!(matches!(problems[2], RestoreProblem::BackendIdZero { .. }));
        assert_eq!(a.acquire_service(&f(1, 80)).unwrap(), ServiceId(7));
        assert_eq!(a.acquire_backend(&b(1)).unwrap(), BackendId(100));
        // New ids start after the restored ones.
        assert_eq!(a.acquire_service(&f(5, 80)).unwrap(), ServiceId(10));
        assert_eq!(a.acquire_backend(&b(4)).unwrap(), BackendId(102));
        let (s, bs) = a.take_unclaimed();
        assert_eq!(s, vec![(f(4, 80), ServiceId(9))]);
        assert_eq!(bs, vec![(b(3), BackendId(101))]);
        assert_eq!(a.take_unclaimed(), (vec![], vec![]));
        assert_eq!(a.len(), (2, 2));
    }
}
