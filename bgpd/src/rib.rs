//! Routing information bases: one table per family holding every path to every prefix
//! (Adj-RIB-In of every peer and the local routes, side by side), the Loc-RIB best path per
//! prefix (RFC 4271 §9.1.2), and interned attribute sets.
//!
//! Keeping all paths of a prefix in one entry, instead of a map per peer plus a Loc-RIB, costs
//! one hash lookup per received prefix and stores each path once (16 bytes plus its share of
//! the interned attributes). Adj-RIB-In of a peer is the subset of paths with its id.

use std::hash::{BuildHasher, Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use bgpd_wire::{AsSegment, Family, NextHop, PathAttributes};
use hashbrown::{DefaultHashBuilder, HashTable};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use smallvec::SmallVec;

mod dense;
pub use dense::{DenseMap, Slot};

/// A map keyed by prefix, with IPv4 prefixes packed into a `u64` (address << 8 | length):
/// 8-byte keys instead of `IpNet`'s 18 (padded to 24) cut a million-route table by a third.
/// Both halves are [`DenseMap`]s (packed entries, 4-byte buckets): at a million prefixes a
/// hashbrown map is less than half full and doubles while both copies are resident.
#[derive(Debug, Clone)]
pub struct PrefixMap<V> {
    v4: DenseMap<u64, V>,
    v6: DenseMap<Ipv6Net, V>,
}

impl<V> Default for PrefixMap<V> {
    fn default() -> Self {
        Self {
            v4: DenseMap::default(),
            v6: DenseMap::default(),
        }
    }
}

fn k4(p: &Ipv4Net) -> u64 {
    (u64::from(u32::from(p.addr())) << 8) | u64::from(p.prefix_len())
}

fn from_k4(k: u64) -> IpNet {
    // Keys are only ever built by `k4` from a valid prefix.
    IpNet::V4(Ipv4Net::new(Ipv4Addr::from((k >> 8) as u32), (k & 0xff) as u8).unwrap_or_default())
}

impl<V> PrefixMap<V> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, p: &IpNet) -> Option<&V> {
        match p {
            IpNet::V4(n) => self.v4.get(&k4(n)),
            IpNet::V6(n) => self.v6.get(n),
        }
    }

    pub fn get_mut(&mut self, p: &IpNet) -> Option<&mut V> {
        match p {
            IpNet::V4(n) => self.v4.get_mut(&k4(n)),
            IpNet::V6(n) => self.v6.get_mut(n),
        }
    }

    pub fn insert(&mut self, p: IpNet, v: V) -> Option<V> {
        match p {
            IpNet::V4(n) => self.v4.insert(k4(&n), v),
            IpNet::V6(n) => self.v6.insert(n, v),
        }
    }

    pub fn remove(&mut self, p: &IpNet) -> Option<V> {
        match p {
            IpNet::V4(n) => self.v4.remove(&k4(n)),
            IpNet::V6(n) => self.v6.remove(n),
        }
    }

    /// See [`DenseMap::get_or_insert`].
    pub fn get_or_insert(&mut self, p: IpNet, v: V) -> Slot<'_, V> {
        match p {
            IpNet::V4(n) => self.v4.get_or_insert(k4(&n), v),
            IpNet::V6(n) => self.v6.get_or_insert(n, v),
        }
    }

    /// The value for `p`, inserted as the default when absent; `None` only when the family's
    /// map is full (`u32::MAX` prefixes, see [`DenseMap`]).
    pub fn entry_or_default(&mut self, p: IpNet) -> Option<&mut V>
    where
        V: Default,
    {
        match p {
            IpNet::V4(n) => self.v4.entry_or_default(k4(&n)),
            IpNet::V6(n) => self.v6.entry_or_default(n),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (IpNet, &V)> {
        self.v4
            .iter()
            .map(|(k, v)| (from_k4(*k), v))
            .chain(self.v6.iter().map(|(k, v)| (IpNet::V6(*k), v)))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (IpNet, &mut V)> {
        self.v4
            .iter_mut()
            .map(|(k, v)| (from_k4(*k), v))
            .chain(self.v6.iter_mut().map(|(k, v)| (IpNet::V6(*k), v)))
    }

    pub fn keys(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.v4.values().chain(self.v6.values())
    }

    /// Bytes allocated by both families' maps (see [`DenseMap::allocated_bytes`]).
    pub fn allocated_bytes(&self) -> usize {
        self.v4.allocated_bytes() + self.v6.allocated_bytes()
    }

    /// Empties both families' maps, keeping their allocations.
    pub fn clear(&mut self) {
        self.v4.clear();
        self.v6.clear();
    }
}

/// Index of a path's source: 0 is this speaker, peers get 1.. (reused after removal).
pub type PeerId = u32;
/// The id of locally originated paths.
pub const LOCAL: PeerId = 0;
/// Default LOCAL_PREF (the usual value; RFC 4271 leaves it to the operator).
pub const DEFAULT_LOCAL_PREF: u32 = 100;

/// A path's attributes and next hop, interned: every prefix with the same attributes from the
/// same source shares one allocation.
#[derive(Debug, Clone)]
pub struct Attrs {
    /// Interned path attributes (compared by pointer).
    pub path: Arc<PathAttributes>,
    /// Next hop; an unspecified address means "this speaker" (local routes).
    pub next_hop: NextHop,
}

impl PartialEq for Attrs {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.path, &other.path) && self.next_hop == other.next_hop
    }
}
impl Eq for Attrs {}
impl Hash for Attrs {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (Arc::as_ptr(&self.path) as usize).hash(state);
        self.next_hop.hash(state);
    }
}

impl Attrs {
    /// The next hop as one address (the global one for IPv6).
    pub fn next_hop_addr(&self) -> IpAddr {
        match self.next_hop {
            NextHop::V4(a) => IpAddr::V4(a),
            NextHop::V6 { global, .. } => IpAddr::V6(global),
        }
    }
}

/// Hash-consing of attribute sets. Entries nobody else references are swept when the tables
/// have doubled since the last sweep, so memory follows the live set.
///
/// Both tables keep each entry's hash next to it: when a table grows, rehashing meant
/// reading every interned set (and its AS_PATH) again, a cache miss each on a third of a
/// million allocations, which was a tenth of a full-table load's CPU. It costs 8 bytes a
/// bucket (~8 MB for 330,000 sets).
#[derive(Debug, Default)]
pub struct Interner {
    paths: HashTable<(u64, Arc<PathAttributes>)>,
    attrs: HashTable<(u64, Arc<Attrs>)>,
    hasher: DefaultHashBuilder,
    sweep_at: usize,
}

impl Interner {
    pub fn path(&mut self, pa: Arc<PathAttributes>) -> Arc<PathAttributes> {
        let h = self.hasher.hash_one(&*pa);
        if let Some((_, x)) = self.paths.find(h, |(eh, x)| *eh == h && **x == *pa) {
            return x.clone();
        }
        self.paths.insert_unique(h, (h, pa.clone()), |(eh, _)| *eh);
        pa
    }

    pub fn attrs(&mut self, path: Arc<PathAttributes>, next_hop: NextHop) -> Arc<Attrs> {
        let path = self.path(path);
        self.attrs_of_interned(path, next_hop)
    }

    /// [`Interner::attrs`] for a `path` this interner returned (from [`Interner::path`]),
    /// which is then not looked up again.
    pub fn attrs_of_interned(
        &mut self,
        path: Arc<PathAttributes>,
        next_hop: NextHop,
    ) -> Arc<Attrs> {
        let a = Attrs { path, next_hop };
        let h = self.hasher.hash_one(&a);
        if let Some((_, x)) = self.attrs.find(h, |(eh, x)| *eh == h && **x == a) {
            return x.clone();
        }
        self.maybe_sweep();
        let a = Arc::new(a);
        self.attrs.insert_unique(h, (h, a.clone()), |(eh, _)| *eh);
        a
    }

    fn maybe_sweep(&mut self) {
        if self.attrs.len() < self.sweep_at.max(1024) {
            return;
        }
        self.sweep();
        self.sweep_at = self.attrs.len() * 2;
    }

    /// Drop entries only the interner holds.
    pub fn sweep(&mut self) {
        self.attrs.retain(|(_, a)| Arc::strong_count(a) > 1);
        self.paths.retain(|(_, p)| Arc::strong_count(p) > 1);
    }

    /// Distinct attribute sets (path attributes + next hop) currently interned.
    pub fn len(&self) -> usize {
        self.attrs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.attrs.is_empty()
    }
}

/// Path flags (4 bits: they share a word with the path's [`Stamp`]).
pub mod flags {
    /// Kept while the peer restarts (RFC 4724 §4.2).
    pub const STALE: u8 = 1;
    /// Refused by the import policy: in Adj-RIB-In, never a candidate.
    pub const REJECTED: u8 = 2;
    /// Bits available for flags.
    pub(crate) const MASK: u8 = 0xf;
}

/// When a path was learnt (or, for a local route, originated): whole seconds since the
/// speaker's clock epoch (its start), 28 bits, so about 8.5 years; later stamps saturate.
/// Second resolution is what `show bgp` style ages need, and it lets the stamp share a word
/// with the flags so a path stays 16 bytes (a million-prefix table pays nothing for it).
pub type Stamp = u32;
/// The largest [`Stamp`].
pub const STAMP_MAX: Stamp = (1 << 28) - 1;

/// The stamp for `elapsed` time since the epoch.
pub fn stamp(elapsed: std::time::Duration) -> Stamp {
    u32::try_from(elapsed.as_secs()).map_or(STAMP_MAX, |s| s.min(STAMP_MAX))
}

/// Age of a path stamped `since`, `elapsed` after the epoch. The stamp is rounded down, so
/// this is the true age plus less than a second.
pub fn age(since: Stamp, elapsed: std::time::Duration) -> std::time::Duration {
    elapsed.saturating_sub(std::time::Duration::from_secs(u64::from(since)))
}

/// One path to a prefix.
#[derive(Debug, Clone)]
pub struct Path {
    pub peer: PeerId,
    /// `since << 4 | flags`.
    meta: u32,
    pub attrs: Arc<Attrs>,
}

impl Path {
    pub fn new(peer: PeerId, flags: u8, attrs: Arc<Attrs>, since: Stamp) -> Self {
        Self {
            peer,
            meta: (since.min(STAMP_MAX) << 4) | u32::from(flags & flags::MASK),
            attrs,
        }
    }
    pub fn flags(&self) -> u8 {
        (self.meta & u32::from(flags::MASK)) as u8
    }
    fn set_flags(&mut self, f: u8) {
        self.meta = (self.meta & !u32::from(flags::MASK)) | u32::from(f & flags::MASK);
    }
    /// When the path was learnt or last changed (see [`Table::set`]).
    pub fn since(&self) -> Stamp {
        self.meta >> 4
    }
    pub fn is_stale(&self) -> bool {
        self.flags() & flags::STALE != 0
    }
    pub fn is_rejected(&self) -> bool {
        self.flags() & flags::REJECTED != 0
    }
}

/// What the decision process needs to know about a path's source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceInfo {
    pub address: IpAddr,
    /// The peer's BGP identifier (ours for local routes).
    pub router_id: Ipv4Addr,
    pub ebgp: bool,
}

/// All paths to a prefix; when the prefix has a best path it is at index 0.
///
/// One path (the common case) is held inline; the map entry is then 16 bytes, 8 less than a
/// `SmallVec<[Path; 1]>`, which is 16 MB on a million-prefix table.
#[derive(Debug, Clone)]
pub enum Paths {
    One(Path),
    Many(Box<Vec<Path>>),
}

impl Default for Paths {
    fn default() -> Self {
        Paths::Many(Box::default())
    }
}

impl std::ops::Deref for Paths {
    type Target = [Path];
    fn deref(&self) -> &[Path] {
        match self {
            Paths::One(p) => std::slice::from_ref(p),
            Paths::Many(v) => v,
        }
    }
}

impl std::ops::DerefMut for Paths {
    fn deref_mut(&mut self) -> &mut [Path] {
        match self {
            Paths::One(p) => std::slice::from_mut(p),
            Paths::Many(v) => v,
        }
    }
}

impl Paths {
    pub fn push(&mut self, p: Path) {
        match self {
            Paths::Many(v) if v.is_empty() => *self = Paths::One(p),
            Paths::Many(v) => v.push(p),
            Paths::One(_) => {
                // Swapped with the final `Many` instead of `mem::take`, whose default (an
                // empty boxed Vec) was one more allocation and free per second path.
                let mut other = Paths::Many(Box::new(Vec::with_capacity(2)));
                std::mem::swap(self, &mut other);
                if let (Paths::One(first), Paths::Many(v)) = (other, self) {
                    v.push(first);
                    v.push(p);
                }
            }
        }
    }

    /// Remove and return the path at `i` (which must be in range).
    pub fn remove(&mut self, i: usize) -> Option<Path> {
        match self {
            Paths::One(_) if i == 0 => match std::mem::take(self) {
                Paths::One(p) => Some(p),
                Paths::Many(_) => None,
            },
            Paths::One(_) => None,
            Paths::Many(v) if i < v.len() => {
                let p = v.remove(i);
                if v.len() == 1
                    && let Some(last) = v.pop()
                {
                    *self = Paths::One(last);
                }
                Some(p)
            }
            Paths::Many(_) => None,
        }
    }
}

/// The Loc-RIB outcome for a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Best {
    pub peer: PeerId,
    pub attrs: Arc<Attrs>,
    pub stale: bool,
    /// Next hops of the best path and its equal-cost peers (best first, no duplicates).
    pub next_hops: Vec<IpAddr>,
}

/// One address family's paths.
#[derive(Debug)]
pub struct Table {
    pub family: Family,
    routes: PrefixMap<Paths>,
}

impl Table {
    pub fn new(family: Family) -> Self {
        Self {
            family,
            routes: PrefixMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    pub fn get(&self, prefix: &IpNet) -> Option<&Paths> {
        self.routes.get(prefix)
    }

    pub fn iter(&self) -> impl Iterator<Item = (IpNet, &Paths)> {
        self.routes.iter()
    }

    /// The best path of `prefix`, if any candidate is eligible.
    pub fn best(&self, prefix: &IpNet) -> Option<&Path> {
        self.routes
            .get(prefix)
            .and_then(|p| p.first())
            .filter(|p| !p.is_rejected())
    }

    /// Insert, replace (`Some`) or remove (`None`) the path from `peer` for `prefix`, then
    /// rerun the decision. Returns true when the best path or its ECMP set changed.
    ///
    /// The path's stamp is `now` when it is new or its attributes changed (an implicit
    /// withdraw, RFC 4271 §9.1.4); a re-announcement with the same attributes keeps the old
    /// stamp even if its flags changed (a stale path refreshed after a graceful restart),
    /// as GoBGP does in its Adj-RIB-In.
    pub fn set(
        &mut self,
        prefix: IpNet,
        peer: PeerId,
        path: Option<(Arc<Attrs>, u8)>,
        now: Stamp,
        sources: &Sources,
    ) -> bool {
        match path {
            Some((attrs, fl)) => {
                // A new prefix (most of a table load) takes one lookup and no allocation: its
                // only path is the best unless the import policy rejected it.
                let (paths, attrs) = match self
                    .routes
                    .get_or_insert(prefix, Paths::One(Path::new(peer, fl, attrs, now)))
                {
                    Slot::Inserted => return fl & flags::REJECTED == 0,
                    // A table of u32::MAX prefixes: unreachable in memory; not stored.
                    Slot::Full => return false,
                    // The prefix exists: the offered path comes back, to be merged below.
                    Slot::Present(paths, Paths::One(offered)) => (paths, offered.attrs),
                    // Never offered (built as `One` just above).
                    Slot::Present(_, Paths::Many(_)) => return false,
                };
                let before = best_key(paths, sources);
                match paths.iter_mut().find(|p| p.peer == peer) {
                    Some(p) => {
                        // Interned: equal attribute sets are the same allocation.
                        if Arc::ptr_eq(&p.attrs, &attrs) {
                            if p.flags() == fl {
                                return false;
                            }
                            p.set_flags(fl);
                        } else {
                            *p = Path::new(peer, fl, attrs, now);
                        }
                    }
                    None => paths.push(Path::new(peer, fl, attrs, now)),
                }
                select(paths, sources);
                before != best_key(paths, sources)
            }
            None => {
                let Some(paths) = self.routes.get_mut(&prefix) else {
                    return false;
                };
                let Some(i) = paths.iter().position(|p| p.peer == peer) else {
                    return false;
                };
                let before = best_key(paths, sources);
                let _ = paths.remove(i);
                if paths.is_empty() {
                    self.routes.remove(&prefix);
                    return before.is_some();
                }
                select(paths, sources);
                before != best_key(paths, sources)
            }
        }
    }

    /// Rerun the decision for one prefix (after a source's metadata or flags changed).
    pub fn reselect(&mut self, prefix: &IpNet, sources: &Sources) -> bool {
        let Some(paths) = self.routes.get_mut(prefix) else {
            return false;
        };
        let before = best_key(paths, sources);
        select(paths, sources);
        before != best_key(paths, sources)
    }

    /// Prefixes where `peer` has a path, optionally only stale ones.
    pub fn prefixes_of(&self, peer: PeerId, only_stale: bool) -> Vec<IpNet> {
        self.routes
            .iter()
            .filter(|(_, ps)| {
                ps.iter()
                    .any(|p| p.peer == peer && (!only_stale || p.is_stale()))
            })
            .map(|(k, _)| k)
            .collect()
    }

    /// Set `flag` on every path of `peer`; returns the prefixes touched.
    pub fn flag_peer(&mut self, peer: PeerId, flag: u8) -> Vec<IpNet> {
        let mut touched = Vec::new();
        for (k, ps) in self.routes.iter_mut() {
            for p in ps.iter_mut().filter(|p| p.peer == peer) {
                p.set_flags(p.flags() | flag);
                touched.push(k);
            }
        }
        touched
    }

    /// The Loc-RIB view of `prefix`: best path and ECMP next hops.
    pub fn best_of(&self, prefix: &IpNet, sources: &Sources) -> Option<Best> {
        let paths = self.routes.get(prefix)?;
        let best = paths.first().filter(|p| !p.is_rejected())?;
        let mut next_hops = vec![best.attrs.next_hop_addr()];
        for p in paths.iter().skip(1) {
            if !p.is_rejected() && multipath_equal(best, p, sources) {
                let nh = p.attrs.next_hop_addr();
                if !next_hops.contains(&nh) {
                    next_hops.push(nh);
                }
            }
        }
        Some(Best {
            peer: best.peer,
            attrs: best.attrs.clone(),
            stale: best.is_stale(),
            next_hops,
        })
    }

    /// Count paths from `peer`: (all received, accepted by import policy).
    pub fn count_peer(&self, peer: PeerId) -> (usize, usize) {
        let mut all = 0;
        let mut ok = 0;
        for ps in self.routes.values() {
            for p in ps.iter().filter(|p| p.peer == peer) {
                all += 1;
                if !p.is_rejected() {
                    ok += 1;
                }
            }
        }
        (all, ok)
    }
}

/// Source metadata indexed by [`PeerId`].
#[derive(Debug, Default)]
pub struct Sources {
    slots: Vec<Option<SourceInfo>>,
}

impl Sources {
    pub fn get(&self, id: PeerId) -> Option<&SourceInfo> {
        self.slots.get(id as usize).and_then(Option::as_ref)
    }

    pub fn set(&mut self, id: PeerId, info: SourceInfo) {
        let i = id as usize;
        if self.slots.len() <= i {
            self.slots.resize(i + 1, None);
        }
        self.slots[i] = Some(info);
    }

    /// A free id (never 0).
    pub fn allocate(&mut self) -> PeerId {
        let free = self
            .slots
            .iter()
            .skip(1)
            .position(Option::is_none)
            .map(|i| i + 1);
        let i = free.unwrap_or(self.slots.len().max(1));
        if self.slots.len() <= i {
            self.slots.resize(i + 1, None);
        }
        // Placeholder until the session fills it in; an id is taken once allocated.
        self.slots[i] = Some(SourceInfo {
            address: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            router_id: Ipv4Addr::UNSPECIFIED,
            ebgp: true,
        });
        i as PeerId
    }

    pub fn release(&mut self, id: PeerId) {
        if let Some(s) = self.slots.get_mut(id as usize) {
            *s = None;
        }
    }
}

/// Identity of the Loc-RIB result, to detect changes.
fn best_key(paths: &Paths, sources: &Sources) -> Option<(PeerId, usize, u8, SmallVec<[usize; 2]>)> {
    let best = paths.first().filter(|p| !p.is_rejected())?;
    // Pushed one by one: `collect` into a SmallVec went through its generic `extend` even
    // for the usual single path (2 calls per received prefix, 5% of a full-table load).
    let mut ecmp = SmallVec::new();
    for p in paths.iter().skip(1) {
        if !p.is_rejected() && multipath_equal(best, p, sources) {
            ecmp.push(Arc::as_ptr(&p.attrs) as usize);
        }
    }
    Some((
        best.peer,
        Arc::as_ptr(&best.attrs) as usize,
        best.flags() & flags::STALE,
        ecmp,
    ))
}

/// Degree of preference (§9.1.1): LOCAL_PREF, which import strips from eBGP routes unless
/// the import policy sets it.
pub fn local_pref(p: &Path) -> u32 {
    p.attrs.path.local_pref.unwrap_or(DEFAULT_LOCAL_PREF)
}

/// AS_PATH length for §9.1.2.2 a): an AS_SET counts as one, confederation segments as zero.
pub fn as_path_len(pa: &PathAttributes) -> usize {
    pa.as_path
        .segments
        .iter()
        .map(|s| match s {
            AsSegment::Sequence(v) => v.len(),
            AsSegment::Set(_) => 1,
            AsSegment::ConfedSequence(_) | AsSegment::ConfedSet(_) => 0,
        })
        .sum()
}

/// The neighbouring AS (§9.1.2.2 c): first AS of the first AS_SEQUENCE; 0 for local routes.
pub fn neighbor_as(pa: &PathAttributes) -> u32 {
    match pa.as_path.segments.first() {
        Some(AsSegment::Sequence(v)) => v.first().copied().unwrap_or(0),
        _ => 0,
    }
}

fn is_ebgp(p: &Path, sources: &Sources) -> bool {
    sources.get(p.peer).is_some_and(|s| s.ebgp)
}

/// Paths equal through §9.1.2.2 step e) with the same AS_PATH (FRR's default multipath rule).
fn multipath_equal(a: &Path, b: &Path, sources: &Sources) -> bool {
    a.peer != LOCAL
        && b.peer != LOCAL
        && local_pref(a) == local_pref(b)
        && a.attrs.path.as_path == b.attrs.path.as_path
        && a.attrs.path.origin == b.attrs.path.origin
        && a.attrs.path.med.unwrap_or(0) == b.attrs.path.med.unwrap_or(0)
        && is_ebgp(a, sources) == is_ebgp(b, sources)
}

/// Run the decision process (§9.1.2.2) and move the winner to index 0.
///
/// Implemented as the RFC's elimination steps rather than a sort: the MED rule only compares
/// paths from the same neighbouring AS, which is not a total order.
pub fn select(paths: &mut Paths, sources: &Sources) {
    // The common case: a single path is trivially the best (or rejected).
    if paths.len() < 2 {
        return;
    }
    let mut cand: SmallVec<[usize; 8]> = (0..paths.len())
        .filter(|&i| !paths[i].is_rejected())
        .collect();
    if cand.is_empty() {
        return;
    }
    // Locally originated routes win (like FRR's weight 32768 for `network` routes).
    if cand.iter().any(|&i| paths[i].peer == LOCAL) {
        cand.retain(|i| paths[*i].peer == LOCAL);
    }
    keep_min(&mut cand, |i| u64::from(u32::MAX - local_pref(&paths[i])));
    keep_min(&mut cand, |i| as_path_len(&paths[i].attrs.path) as u64);
    keep_min(&mut cand, |i| paths[i].attrs.path.origin as u64);
    // c) MED among paths from the same neighbouring AS; missing MED is 0 (§9.1.2.2 c).
    let med = |i: usize| paths[i].attrs.path.med.unwrap_or(0);
    let snapshot = cand.clone();
    cand.retain(|i| {
        let nas = neighbor_as(&paths[*i].attrs.path);
        !snapshot
            .iter()
            .any(|j| neighbor_as(&paths[*j].attrs.path) == nas && med(*j) < med(*i))
    });
    // d) eBGP over iBGP.
    if cand.iter().any(|&i| is_ebgp(&paths[i], sources)) {
        cand.retain(|i| is_ebgp(&paths[*i], sources));
    }
    // e) no IGP cost (next hops are directly reachable). f) lowest BGP identifier
    // (ORIGINATOR_ID when present, RFC 4456 §9); g) lowest peer address.
    let rid = |i: usize| {
        let p = &paths[i];
        p.attrs
            .path
            .originator_id
            .or_else(|| sources.get(p.peer).map(|s| s.router_id))
            .map_or(u64::MAX, |a| u64::from(u32::from(a)))
    };
    keep_min(&mut cand, rid);
    let winner = cand
        .iter()
        .copied()
        .min_by_key(|&i| sources.get(paths[i].peer).map(|s| s.address))
        .unwrap_or(cand[0]);
    paths.swap(0, winner);
}

fn keep_min(cand: &mut SmallVec<[usize; 8]>, key: impl Fn(usize) -> u64) {
    if cand.len() < 2 {
        return;
    }
    let m = cand.iter().map(|&i| key(i)).min().unwrap_or(0);
    cand.retain(|i| key(*i) == m);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
