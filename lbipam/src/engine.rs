//! The allocator: level-triggered `reconcile(pools, services)` over persisted allocations.
//!
//! Each reconcile runs, in order:
//! 1. pool table: first-seen order, precedence, conflicts;
//! 2. release everything held by services that are gone or no longer ours;
//! 3. validate every existing allocation (before any new one, so nobody can take an address
//!    that is still valid for its holder);
//! 4. adopt published `status.loadBalancer.ingress` addresses we do not yet track;
//! 5. satisfy the remaining requests in service-key order (deterministic);
//! 6. report per-service and per-pool status.
//!
//! Inside, services are interned ([`Interner`]): an allocation holds 4-byte ids, and a
//! reconcile maps ids to its service list through a vector, never through string comparison.
//! Every change to the allocations is also noted in a journal ([`LbIpam::take_journal`]).
//!
//! Over 800 lines because the phases share the pass types below; the incremental pass, which
//! reuses them for a few services, is the child module `fast`.

mod fast;

pub(crate) use fast::{Change, Decline, WAITING_LIMIT, Waiting};

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use hashbrown::HashMap;
use smallvec::SmallVec;

use crate::addr::{Family, from_u128, to_u128};
use crate::count::IpCount;
use crate::journal::{JournalLog, JournalRecord};
use crate::keys::{Interner, SvcId};
use crate::outcome::{Assignment, Outcome, PoolConflict, PoolStatus, Reason, ServiceOutcome};
use crate::runs::RunSet;
use crate::select::{Classes, LabelSets};
use crate::spec::{
    ANNOTATION_SHARING_CROSS_NAMESPACE, ANNOTATION_SHARING_CROSS_NAMESPACE_ALIAS,
    ANNOTATION_SHARING_KEY, ANNOTATION_SHARING_KEY_ALIAS, Config, ExternalTrafficPolicy, PoolSpec,
    ServiceKey, ServiceSelector, ServiceSpec, annotation, requested_ips,
};
use crate::state::{
    PersistedAllocation, PersistedPool, PersistedState, STATE_FORMAT, STATE_VERSION, StateError,
};

/// Holders of one address in join order; almost always one, so kept inline.
type Members = SmallVec<[SvcId; 4]>;

/// One allocated address.
#[derive(Clone, Debug)]
struct Group {
    /// Pool the address is attributed to (for counts and display).
    pool: Arc<str>,
    /// Holders in join order.
    members: Members,
}

/// Allocated addresses, one map per family keyed by the address as an integer: a `u128`
/// comparison is much cheaper than `IpAddr`'s (enum, then IPv6 segment by segment), and these
/// maps are searched for every allocation. Iterates in `IpAddr` order (IPv4 first).
#[derive(Clone, Debug, Default)]
struct Allocs([BTreeMap<u128, Group>; 2]);

impl Allocs {
    fn len(&self) -> usize {
        self.0[0].len() + self.0[1].len()
    }

    fn get(&self, ip: &IpAddr) -> Option<&Group> {
        let (family, v) = to_u128(*ip);
        self.0[family.index()].get(&v)
    }

    fn get_mut(&mut self, ip: &IpAddr) -> Option<&mut Group> {
        let (family, v) = to_u128(*ip);
        self.0[family.index()].get_mut(&v)
    }

    fn contains_key(&self, ip: &IpAddr) -> bool {
        self.get(ip).is_some()
    }

    fn insert(&mut self, ip: IpAddr, group: Group) {
        let (family, v) = to_u128(ip);
        self.0[family.index()].insert(v, group);
    }

    fn remove(&mut self, ip: &IpAddr) -> Option<Group> {
        let (family, v) = to_u128(*ip);
        self.0[family.index()].remove(&v)
    }

    fn iter(&self) -> impl Iterator<Item = (IpAddr, &Group)> {
        let [v4, v6] = &self.0;
        v4.iter()
            .map(|(v, g)| (from_u128(Family::V4, *v), g))
            .chain(v6.iter().map(|(v, g)| (from_u128(Family::V6, *v), g)))
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = (IpAddr, &mut Group)> {
        let [v4, v6] = &mut self.0;
        v4.iter_mut()
            .map(|(v, g)| (from_u128(Family::V4, *v), g))
            .chain(v6.iter_mut().map(|(v, g)| (from_u128(Family::V6, *v), g)))
    }

    /// Built in bulk from entries in address order (linear).
    fn from_sorted(entries: Vec<(IpAddr, Group)>) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for (ip, g) in entries {
            match to_u128(ip) {
                (Family::V4, v) => v4.push((v, g)),
                (Family::V6, v) => v6.push((v, g)),
            }
        }
        Allocs([v4.into_iter().collect(), v6.into_iter().collect()])
    }
}

/// The LB-IPAM allocator. Holds only allocations (memory grows with allocated addresses, never
/// with pool size) and the first-seen order of pools.
#[derive(Clone, Debug, Default)]
pub struct LbIpam {
    allocs: Allocs,
    /// Occupied addresses per family, as runs, for O(log n) next-free search.
    occupied: [RunSet; 2],
    /// Keys of the services holding addresses.
    keys: Interner,
    pool_seq: BTreeMap<String, u64>,
    next_seq: u64,
    dirty: bool,
    /// Addresses handed out or joined so far (progress detection only; not persisted).
    grants: usize,
    /// What changed since the journal was last taken.
    journal: JournalLog,
}

/// The holders of one address, in join order (see [`LbIpam::allocations`]).
#[derive(Clone, Debug)]
pub struct Holders<'a> {
    ids: std::slice::Iter<'a, SvcId>,
    keys: &'a Interner,
}

impl<'a> Iterator for Holders<'a> {
    type Item = &'a ServiceKey;

    fn next(&mut self) -> Option<&'a ServiceKey> {
        self.ids.next().map(|&id| self.keys.key(id))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.ids.size_hint()
    }
}

impl ExactSizeIterator for Holders<'_> {}

/// A block as the reconcile sees it.
#[derive(Debug)]
struct RangeView {
    family: Family,
    first: u128,
    last: u128,
    /// Allocatable bounds (first/last excluded when reserved).
    lo: u128,
    hi: u128,
    reserved: bool,
}

struct PoolView<'a, S> {
    spec: &'a PoolSpec<S>,
    name: Arc<str>,
    ranges: Vec<RangeView>,
    conflict: Option<PoolConflict>,
}

impl<S> PoolView<'_, S> {
    fn allocatable(&self) -> bool {
        !self.spec.disabled && self.conflict.is_none()
    }
}

/// Pools in precedence order plus lookup structures.
struct PoolTable<'a, S> {
    pools: Vec<PoolView<'a, S>>,
    /// Ranges of non-conflicting pools (disjoint by construction): first -> (last, pool index).
    accepted: [BTreeMap<u128, (u128, usize)>; 2],
    /// Ranges of conflicting pools (rare): (family, first, last, pool index).
    conflicting: Vec<(Family, u128, u128, usize)>,
}

fn range_str(family: Family, first: u128, last: u128) -> String {
    format!("{} - {}", from_u128(family, first), from_u128(family, last))
}

impl<'a, S: ServiceSelector> PoolTable<'a, S> {
    fn build(pools: &'a [PoolSpec<S>], seq: &BTreeMap<String, u64>) -> Self {
        let mut seen = BTreeSet::new();
        let mut views: Vec<(i64, u64, PoolView<'a, S>)> = Vec::with_capacity(pools.len());
        for spec in pools {
            if !seen.insert(spec.name.as_str()) {
                continue;
            }
            let mut ranges: Vec<RangeView> = spec
                .blocks
                .iter()
                .map(|b| {
                    let (first, last) = b.bounds();
                    let reserved = b.reserves_first_last(spec.allow_first_last_ips);
                    let (lo, hi) = if reserved {
                        (first + 1, last - 1)
                    } else {
                        (first, last)
                    };
                    RangeView {
                        family: b.family(),
                        first,
                        last,
                        lo,
                        hi,
                        reserved,
                    }
                })
                .collect();
            // Address order, so block order in the input does not matter.
            ranges.sort_by_key(|r| (r.family, r.first, r.last));
            let order = seq.get(&spec.name).copied().unwrap_or(u64::MAX);
            views.push((
                spec.created.unwrap_or(i64::MAX),
                order,
                PoolView {
                    spec,
                    name: Arc::from(spec.name.as_str()),
                    ranges,
                    conflict: None,
                },
            ));
        }
        views.sort_by(|a, b| (a.0, a.1, &a.2.name).cmp(&(b.0, b.1, &b.2.name)));
        let mut table = PoolTable {
            pools: views.into_iter().map(|(_, _, v)| v).collect(),
            accepted: [BTreeMap::new(), BTreeMap::new()],
            conflicting: Vec::new(),
        };
        table.settle_conflicts();
        table
    }

    /// Oldest first: a pool conflicts if its own blocks overlap, or if it overlaps an older
    /// non-conflicting pool. Level-triggered, so a conflict resolves as soon as the overlap goes.
    fn settle_conflicts(&mut self) {
        for idx in 0..self.pools.len() {
            let pool = &self.pools[idx];
            let mut conflict = None;
            // Internal overlap (ranges are sorted by family, first).
            let mut widest: Option<&RangeView> = None;
            for r in &pool.ranges {
                if let Some(w) = widest
                    && w.family == r.family
                    && r.first <= w.last
                {
                    conflict = Some(PoolConflict {
                        with_pool: pool.name.to_string(),
                        message: format!(
                            "Pool conflicts since range '{}' overlaps range '{}' from IP Pool '{}'",
                            range_str(r.family, r.first, r.last),
                            range_str(w.family, w.first, w.last),
                            pool.name
                        ),
                    });
                    break;
                }
                if widest.is_none_or(|w| w.family != r.family || r.last > w.last) {
                    widest = Some(r);
                }
            }
            if conflict.is_none() {
                'outer: for r in &pool.ranges {
                    let acc = &self.accepted[r.family.index()];
                    if let Some((&of, &(ol, other))) = acc.range(..=r.last).next_back()
                        && ol >= r.first
                    {
                        conflict = Some(PoolConflict {
                            with_pool: self.pools[other].name.to_string(),
                            message: format!(
                                "Pool conflicts since range '{}' overlaps range '{}' from IP Pool '{}'",
                                range_str(r.family, r.first, r.last),
                                range_str(r.family, of, ol),
                                self.pools[other].name
                            ),
                        });
                        break 'outer;
                    }
                }
            }
            match conflict {
                Some(c) => {
                    for r in &self.pools[idx].ranges {
                        self.conflicting.push((r.family, r.first, r.last, idx));
                    }
                    self.pools[idx].conflict = Some(c);
                }
                None => {
                    for r in &self.pools[idx].ranges {
                        self.accepted[r.family.index()].insert(r.first, (r.last, idx));
                    }
                }
            }
        }
    }

    /// The non-conflicting pool whose range holds `ip`, with that range.
    fn accepted_of(&self, ip: IpAddr) -> Option<(usize, &RangeView)> {
        let (family, v) = to_u128(ip);
        let (_, &(last, idx)) = self.accepted[family.index()].range(..=v).next_back()?;
        if last < v {
            return None;
        }
        let range = self.pools[idx]
            .ranges
            .iter()
            .find(|r| r.family == family && r.first <= v && v <= r.last)?;
        Some((idx, range))
    }

    /// Every pool with a block holding `ip`: the non-conflicting one first, then conflicting
    /// ones in precedence order.
    fn candidates(&self, ip: IpAddr) -> impl Iterator<Item = usize> + '_ {
        let (family, v) = to_u128(ip);
        let accepted = self.accepted_of(ip).map(|(idx, _)| idx);
        let mut seen_conflicting: Option<usize> = None;
        accepted.into_iter().chain(
            self.conflicting
                .iter()
                .filter(move |&&(f, first, last, _)| f == family && first <= v && v <= last)
                .map(|&(_, _, _, idx)| idx)
                .filter(move |&idx| {
                    // A pool's own overlapping blocks would list it twice; once is enough.
                    let dup = seen_conflicting == Some(idx);
                    seen_conflicting = Some(idx);
                    !dup
                }),
        )
    }
}

/// LB-IPAM's view of one service for one reconcile.
struct View<'a> {
    /// Position in the reconcile's service list (key order).
    idx: usize,
    spec: &'a ServiceSpec,
    want: [bool; 2],
    sharing_key: Option<&'a str>,
    /// Specific requests and cross-namespace sharing: rare, so boxed to keep the common view
    /// small (100,000 of them are built per reconcile).
    extra: Option<Box<Extra<'a>>>,
}

#[derive(Default)]
struct Extra<'a> {
    requested: Vec<IpAddr>,
    invalid: Vec<String>,
    cross_ns: Vec<&'a str>,
}

impl<'a> View<'a> {
    fn new(config: &Config, idx: usize, spec: &'a ServiceSpec) -> Self {
        let (requested, invalid) = requested_ips(spec);
        let (v4, v6) = config.requested_families(spec);
        let cross_ns: Vec<&str> = annotation(
            spec,
            ANNOTATION_SHARING_CROSS_NAMESPACE,
            ANNOTATION_SHARING_CROSS_NAMESPACE_ALIAS,
        )
        .map(|v| v.split(',').map(str::trim).collect())
        .unwrap_or_default();
        let extra =
            (!requested.is_empty() || !invalid.is_empty() || !cross_ns.is_empty()).then(|| {
                Box::new(Extra {
                    requested,
                    invalid,
                    cross_ns,
                })
            });
        View {
            idx,
            spec,
            want: [v4, v6],
            sharing_key: annotation(spec, ANNOTATION_SHARING_KEY, ANNOTATION_SHARING_KEY_ALIAS),
            extra,
        }
    }

    /// Specific IPs requested (empty: one address per wanted family).
    fn requested(&self) -> &[IpAddr] {
        self.extra.as_ref().map_or(&[], |e| &e.requested)
    }

    fn invalid(&self) -> &[String] {
        self.extra.as_ref().map_or(&[], |e| &e.invalid)
    }

    fn cross_ns(&self) -> &[&'a str] {
        self.extra.as_ref().map_or(&[], |e| &e.cross_ns)
    }

    /// Whether holding `held` meets every request.
    fn satisfied_by(&self, held: &[IpAddr]) -> bool {
        if self.requested().is_empty() {
            [Family::V4, Family::V6]
                .iter()
                .all(|f| !self.want[f.index()] || held.iter().any(|ip| Family::of(*ip) == *f))
        } else {
            self.requested().iter().all(|ip| held.contains(ip))
        }
    }

    /// Whether the address is still wanted by the service's request (ignoring pools).
    fn wants(&self, ip: IpAddr) -> bool {
        if self.requested().is_empty() {
            self.want[Family::of(ip).index()]
        } else {
            self.requested().contains(&ip)
        }
    }

    fn permits_namespace(&self, ns: &str) -> bool {
        self.cross_ns().iter().any(|n| *n == ns || *n == "*")
    }
}

/// Cilium's `isCompatible`: may `a` and `b` share one address? `Err` carries Cilium's reason.
fn compatible(a: &View<'_>, b: &View<'_>) -> Result<(), &'static str> {
    // Without a key nothing is shared (Cilium checks this before calling isCompatible).
    if a.sharing_key.is_none() || a.sharing_key != b.sharing_key {
        return Err("different sharing key");
    }
    if a.spec.key.namespace != b.spec.key.namespace
        && !(a.permits_namespace(&b.spec.key.namespace)
            && b.permits_namespace(&a.spec.key.namespace))
    {
        return Err("different and not permitted namespace");
    }
    // Protocol is ignored: the datapath cannot tell TCP/80 from UDP/80 (cilium/cilium#9207).
    if a.spec.ports.iter().any(|p| b.spec.ports.contains(p)) {
        return Err("same port and protocol");
    }
    if a.spec.external_traffic_policy != b.spec.external_traffic_policy {
        return Err("different ExternalTrafficPolicy");
    }
    if a.spec.external_traffic_policy == ExternalTrafficPolicy::Local
        && (a.spec.pod_selector.is_empty() || a.spec.pod_selector != b.spec.pod_selector)
    {
        return Err("compatible ExternalTrafficPolicy local but selecting different set of pods");
    }
    Ok(())
}

/// Addresses per sharing key, split by the namespace of their first holder: a service that
/// does not share across namespaces only ever needs to look at its own namespace.
#[derive(Default)]
struct SharingIndex<'v> {
    by_key: HashMap<&'v str, BTreeMap<&'v str, BTreeSet<IpAddr>>>,
}

impl<'v> SharingIndex<'v> {
    /// Records `ip` as held (first) by `holder`, if it has a sharing key.
    fn add(&mut self, holder: &View<'v>, ip: IpAddr) {
        if let Some(key) = holder.sharing_key {
            self.by_key
                .entry(key)
                .or_default()
                .entry(holder.spec.key.namespace.as_str())
                .or_default()
                .insert(ip);
        }
    }

    /// Addresses `view` might share, deterministic order (namespace, then address).
    fn lookup<'s>(&'s self, key: &str, view: &View<'v>) -> impl Iterator<Item = IpAddr> + 's
    where
        'v: 's,
    {
        let by_ns = self.by_key.get(key);
        let spec: &'v ServiceSpec = view.spec;
        let own: &'v str = &spec.key.namespace;
        let cross = !view.cross_ns().is_empty();
        by_ns
            .into_iter()
            .flat_map(|m| m.iter())
            .filter(move |(ns, _)| cross || **ns == own)
            .flat_map(|(_, ips)| ips.iter().copied())
    }
}

/// Adds `ip` to a sorted list of held addresses.
fn hold(held: &mut Held, ip: IpAddr) {
    if let Err(pos) = held.binary_search(&ip) {
        held.insert(pos, ip);
    }
}

struct Failure {
    reason: Reason,
    message: String,
}

/// "No service" / "no id" in the per-reconcile maps between services and interned ids.
const NONE: u32 = u32::MAX;

/// Addresses one service holds, sorted; one or two in practice, so kept inline.
type Held = SmallVec<[IpAddr; 2]>;

/// The read-only context of one reconcile.
struct Pass<'p, 'v, S> {
    table: PoolTable<'p, S>,
    /// Services we are responsible for, in key order.
    views: Vec<View<'v>>,
    classes: Classes,
    labels: LabelSets,
}

impl<S: ServiceSelector> Pass<'_, '_, S> {
    /// Whether pool `p` (table index) selects service `vi`.
    fn selects(&self, vi: usize, p: usize) -> bool {
        match &self.table.pools[p].spec.service_selector {
            None => true,
            Some(sel) => self
                .classes
                .selects(vi, p, || self.labels.matches(vi, self.views[vi].spec, sel)),
        }
    }
}

/// The mutable state of one reconcile besides the allocator itself.
struct Work<'v> {
    /// Interned id per service (`NONE`: holds nothing).
    id_of: Vec<SvcId>,
    /// Service per interned id.
    view_of: ViewOf,
    /// Addresses held per service, sorted.
    held: Vec<Held>,
    sharing: SharingIndex<'v>,
}

impl Work<'_> {
    fn view_of(&self, id: SvcId) -> Option<usize> {
        self.view_of.get(id)
    }
}

/// Service (position in the pass's list) per interned id.
enum ViewOf {
    /// Indexed by id, `NONE` for ids not among the pass's services: a full reconcile, where
    /// most ids have a service.
    Dense(Vec<u32>),
    /// The few ids of an incremental pass, whose services are a handful among many ids (a
    /// dense vector would cost O(ids) per pass).
    Sparse(SmallVec<[(SvcId, u32); 4]>),
}

impl ViewOf {
    fn get(&self, id: SvcId) -> Option<usize> {
        match self {
            ViewOf::Dense(v) => match v.get(id as usize) {
                Some(&v) if v != NONE => Some(v as usize),
                _ => None,
            },
            ViewOf::Sparse(v) => v.iter().find(|(i, _)| *i == id).map(|&(_, vi)| vi as usize),
        }
    }

    fn set(&mut self, id: SvcId, vi: u32) {
        match self {
            ViewOf::Dense(v) => {
                let slot = id as usize;
                if v.len() <= slot {
                    v.resize(slot + 1, NONE);
                }
                v[slot] = vi;
            }
            ViewOf::Sparse(v) => match v.iter_mut().find(|(i, _)| *i == id) {
                Some(e) => e.1 = vi,
                None => v.push((id, vi)),
            },
        }
    }

    fn unset(&mut self, id: SvcId) {
        match self {
            ViewOf::Dense(v) => {
                if let Some(x) = v.get_mut(id as usize) {
                    *x = NONE;
                }
            }
            ViewOf::Sparse(v) => v.retain(|(i, _)| *i != id),
        }
    }
}

impl LbIpam {
    /// An empty allocator (first start, no state file).
    pub fn new() -> Self {
        LbIpam::default()
    }

    /// Rebuilds the allocator from persisted state. Call before the first reconcile, so every
    /// recorded address is reinstated before any new allocation.
    pub fn restore(state: &PersistedState) -> Result<Self, StateError> {
        state.validate()?;
        Ok(LbIpam::restore_valid(state))
    }

    /// `restore` of a state already validated.
    fn restore_valid(state: &PersistedState) -> Self {
        let mut me = LbIpam {
            next_seq: state.next_pool_seq,
            ..LbIpam::default()
        };
        for p in &state.pools {
            me.pool_seq.insert(p.name.clone(), p.seq);
        }
        let mut names: HashMap<&str, Arc<str>> = HashMap::new();
        let mut entries = Vec::with_capacity(state.allocations.len());
        me.keys.reserve(state.allocations.len());
        for a in &state.allocations {
            let pool = names
                .entry(a.pool.as_str())
                .or_insert_with(|| Arc::from(a.pool.as_str()))
                .clone();
            let (family, v) = to_u128(a.ip);
            me.occupied[family.index()].insert(v);
            let members = a
                .services
                .iter()
                .map(|k| me.keys.acquire(me.keys.hash(k), k))
                .collect();
            entries.push((a.ip, Group { pool, members }));
        }
        // Bulk build (snapshots are sorted, so this is linear); addresses are unique (validated).
        me.allocs = Allocs::from_sorted(entries);
        me
    }

    /// Decodes bytes and restores from them.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StateError> {
        // `decode` validates.
        Ok(LbIpam::restore_valid(&PersistedState::decode(bytes)?))
    }

    /// The state to persist.
    pub fn snapshot(&self) -> PersistedState {
        PersistedState {
            format: STATE_FORMAT.to_owned(),
            version: STATE_VERSION,
            next_pool_seq: self.next_seq,
            pools: self.persisted_pools(),
            allocations: self
                .allocs
                .iter()
                .map(|(ip, g)| self.persisted(ip, g))
                .collect(),
        }
    }

    /// The changes since the journal was last taken (or since this allocator was created or
    /// restored), as records that turn the snapshot of that moment into [`LbIpam::snapshot`]
    /// of now: pool table first (if it changed), then one record per changed address in address
    /// order, each stating the address's current value. Empty when nothing changed.
    ///
    /// Always recorded (nobody can forget to switch it on and lose changes); an allocator whose
    /// journal is never taken holds at most about two entries per address it ever touched.
    pub fn take_journal(&mut self) -> Vec<JournalRecord> {
        if self.journal.is_empty() {
            return Vec::new();
        }
        let (pools, addrs) = self.journal.take();
        let mut out = Vec::new();
        if pools {
            out.push(JournalRecord::Pools {
                next_pool_seq: self.next_seq,
                pools: self.persisted_pools(),
            });
        }
        for ip in addrs {
            out.push(match self.allocs.get(&ip) {
                Some(g) => JournalRecord::Set(self.persisted(ip, g)),
                None => JournalRecord::Delete { ip },
            });
        }
        out
    }

    /// The pool sequence table as persisted, by sequence number.
    fn persisted_pools(&self) -> Vec<PersistedPool> {
        let mut pools: Vec<PersistedPool> = self
            .pool_seq
            .iter()
            .map(|(name, seq)| PersistedPool {
                name: name.clone(),
                seq: *seq,
            })
            .collect();
        pools.sort_by_key(|p| p.seq);
        pools
    }

    fn persisted(&self, ip: IpAddr, g: &Group) -> PersistedAllocation {
        PersistedAllocation {
            ip,
            pool: g.pool.to_string(),
            services: g
                .members
                .iter()
                .map(|&m| self.keys.key(m).clone())
                .collect(),
        }
    }

    /// Number of allocated addresses.
    pub fn allocated(&self) -> usize {
        self.allocs.len()
    }

    /// Every allocation in address order: address, pool, holders in join order.
    pub fn allocations(&self) -> impl Iterator<Item = (IpAddr, &str, Holders<'_>)> {
        self.allocs.iter().map(|(ip, g)| {
            (
                ip,
                &*g.pool,
                Holders {
                    ids: g.members.iter(),
                    keys: &self.keys,
                },
            )
        })
    }

    /// The id of `view`'s service with one more reference (interned on first use).
    fn acquire(&mut self, work: &mut Work<'_>, view: &View<'_>) -> SvcId {
        let id = work.id_of[view.idx];
        if id != NONE {
            self.keys.retain(id);
            return id;
        }
        // Every live key of this reconcile's services was looked up in `start`, and ids freed
        // since were unmapped: a service without an id has no live key.
        let key = &view.spec.key;
        let id = self.keys.insert_new(self.keys.hash(key), key);
        work.id_of[view.idx] = id;
        // Services are at most u32::MAX - 1 (one id each).
        work.view_of.set(id, view.idx as u32);
        id
    }

    /// Drops one reference to `id`; forgets the id's mappings once it is free.
    fn release(&mut self, work: &mut Work<'_>, id: SvcId) {
        if self.keys.release(id) {
            if let Some(vi) = work.view_of(id) {
                work.id_of[vi] = NONE;
            }
            work.view_of.unset(id);
        }
    }

    fn occupy(&mut self, ip: IpAddr, pool: Arc<str>, work: &mut Work<'_>, view: &View<'_>) {
        let (family, v) = to_u128(ip);
        self.occupied[family.index()].insert(v);
        let id = self.acquire(work, view);
        let mut members = Members::new();
        members.push(id);
        self.allocs.insert(ip, Group { pool, members });
        self.grants = self.grants.wrapping_add(1);
        hold(&mut work.held[view.idx], ip);
        self.dirty = true;
        self.journal.address(ip);
    }

    fn join(&mut self, ip: IpAddr, work: &mut Work<'_>, view: &View<'_>) {
        if !self.allocs.contains_key(&ip) {
            return;
        }
        let id = self.acquire(work, view);
        if let Some(g) = self.allocs.get_mut(&ip) {
            g.members.push(id);
            self.grants = self.grants.wrapping_add(1);
            hold(&mut work.held[view.idx], ip);
            self.dirty = true;
            self.journal.address(ip);
        }
    }

    /// Frees an address nobody holds any more.
    fn free(&mut self, ip: IpAddr) {
        if let Some(g) = self.allocs.remove(&ip) {
            debug_assert!(g.members.is_empty(), "freed {ip} while held");
            let (family, v) = to_u128(ip);
            self.occupied[family.index()].remove(v);
            self.dirty = true;
            self.journal.address(ip);
        }
    }

    /// Brings allocations in line with `pools` and `services` (the complete current sets) and
    /// reports the result. Idempotent: a second call with the same input changes nothing.
    /// The result does not depend on the order of `pools` or `services`.
    pub fn reconcile<S: ServiceSelector>(
        &mut self,
        config: &Config,
        pools: &[PoolSpec<S>],
        services: &[ServiceSpec],
    ) -> Outcome {
        self.reconcile_refs(config, pools, services.iter())
    }

    /// [`LbIpam::reconcile`] over references (the incremental front end keeps its services in
    /// a map).
    pub(crate) fn reconcile_refs<'s, S: ServiceSelector>(
        &mut self,
        config: &Config,
        pools: &[PoolSpec<S>],
        services: impl Iterator<Item = &'s ServiceSpec>,
    ) -> Outcome {
        self.update_pool_seq(pools);
        let table = PoolTable::build(pools, &self.pool_seq);

        // Services we are responsible for, in key order (duplicate keys: one is kept).
        let mut handled: Vec<&ServiceSpec> = services.filter(|s| config.handles(s)).collect();
        // Callers usually keep services in a map by key; then this is one linear check.
        let (mut sorted, mut duplicates) = (true, false);
        for w in handled.windows(2) {
            match w[0].key.cmp(&w[1].key) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => duplicates = true,
                std::cmp::Ordering::Greater => {
                    sorted = false;
                    break;
                }
            }
        }
        if !sorted {
            handled.sort_unstable_by(|a, b| a.key.cmp(&b.key));
            duplicates = true;
        }
        if duplicates {
            handled.dedup_by(|b, a| a.key == b.key);
        }
        let views: Vec<View<'_>> = handled
            .iter()
            .enumerate()
            .map(|(i, s)| View::new(config, i, s))
            .collect();
        let selectors: Vec<Option<&S>> = table
            .pools
            .iter()
            .map(|p| p.spec.service_selector.as_ref())
            .collect();
        let classes = Classes::build(&selectors, handled.iter().copied());
        let pass = Pass {
            table,
            views,
            classes,
            labels: LabelSets::default(),
        };
        let mut work = self.start(&pass.views);

        self.validate_existing(&pass, &mut work);
        self.adopt_ingress(&pass, &mut work);
        if pass.views.iter().any(|v| v.sharing_key.is_some()) {
            for (ip, g) in self.allocs.iter() {
                if let Some(first) = g.members.first().and_then(|&m| work.view_of(m)) {
                    work.sharing.add(&pass.views[first], ip);
                }
            }
        }

        let mut failures: Vec<Option<Failure>> = (0..pass.views.len())
            .map(|vi| self.satisfy(&pass, &mut work, vi))
            .collect();
        // A service may only be able to share an address handed out later in the same pass;
        // serve unsatisfied sharers again until nothing moves, so one reconcile reaches the
        // fixed point and the next finds nothing to do (idempotence). Terminates: a pass is
        // repeated only after it created or joined an address.
        loop {
            let before = self.grants;
            let pending: Vec<usize> = (0..pass.views.len())
                .filter(|&i| {
                    pass.views[i].sharing_key.is_some()
                        && !pass.views[i].satisfied_by(&work.held[i])
                })
                .collect();
            for &i in &pending {
                failures[i] = self.satisfy(&pass, &mut work, i);
            }
            if pending.is_empty() || self.grants == before {
                break;
            }
        }
        // Outcomes only after every service is served: later ones may join earlier addresses.
        self.report(pass, work, failures)
    }

    /// Maps this reconcile's services to the ids of those already holding addresses.
    fn start<'v>(&mut self, views: &[View<'v>]) -> Work<'v> {
        let mut id_of = vec![NONE; views.len()];
        let mut view_of = vec![NONE; self.keys.slots()];
        let mut missing = views.len();
        if !self.keys.is_empty() {
            for v in views {
                let key = &v.spec.key;
                if let Some(id) = self.keys.find(self.keys.hash(key), key) {
                    id_of[v.idx] = id;
                    // Services are at most u32::MAX - 1 (one id each).
                    view_of[id as usize] = v.idx as u32;
                    missing -= 1;
                }
            }
        }
        // Room for every service that may get its first address, so the table never rehashes
        // mid-reconcile (5 bytes per slot).
        self.keys.reserve(missing);
        Work {
            id_of,
            view_of: ViewOf::Dense(view_of),
            held: vec![Held::new(); views.len()],
            sharing: SharingIndex::default(),
        }
    }

    fn update_pool_seq<S>(&mut self, pools: &[PoolSpec<S>]) {
        let present: BTreeSet<&str> = pools.iter().map(|p| p.name.as_str()).collect();
        let before = self.pool_seq.len();
        self.pool_seq
            .retain(|name, _| present.contains(name.as_str()));
        if self.pool_seq.len() != before {
            self.dirty = true;
            self.journal.pools();
        }
        let mut new: Vec<(i64, &str)> = pools
            .iter()
            .filter(|p| !self.pool_seq.contains_key(&p.name))
            .map(|p| (p.created.unwrap_or(i64::MAX), p.name.as_str()))
            .collect();
        new.sort();
        new.dedup();
        for (_, name) in new {
            self.pool_seq.insert(name.to_owned(), self.next_seq);
            self.next_seq += 1;
            self.dirty = true;
            self.journal.pools();
        }
    }

    /// Keeps an address for a holder only if the holder still wants it, a pool holding the
    /// address still selects the holder (disabled and conflicting pools included: existing
    /// allocations are kept), and it is compatible with the earlier holders.
    fn validate_existing<S: ServiceSelector>(
        &mut self,
        pass: &Pass<'_, '_, S>,
        work: &mut Work<'_>,
    ) {
        let (table, views) = (&pass.table, &pass.views);
        let mut changed = false;
        let mut reattributed = false;
        let mut emptied: Vec<IpAddr> = Vec::new();
        let mut dropped: Vec<SvcId> = Vec::new();
        // Scratch reused for every address.
        let mut cands: Vec<usize> = Vec::new();
        let mut kept: SmallVec<[usize; 4]> = SmallVec::new();
        for (ip, group) in self.allocs.iter_mut() {
            cands.clear();
            cands.extend(table.candidates(ip));
            kept.clear();
            let mut lost = false;
            for &m in &group.members {
                let ok = work.view_of(m).filter(|&vi| {
                    let v = &views[vi];
                    v.wants(ip)
                        && cands.iter().any(|&p| pass.selects(vi, p))
                        && kept.iter().all(|&k| compatible(v, &views[k]).is_ok())
                });
                match ok {
                    Some(vi) => kept.push(vi),
                    // Gone, no longer ours, or no longer entitled: released.
                    None => {
                        lost = true;
                        dropped.push(m);
                    }
                }
            }
            if lost {
                changed = true;
                group.members = kept.iter().map(|&k| work.id_of[k]).collect();
                self.journal.address(ip);
            }
            for &k in &kept {
                // Allocations are visited in address order, so each list stays sorted.
                work.held[k].push(ip);
            }
            let Some(&first) = kept.first() else {
                emptied.push(ip);
                continue;
            };
            let still = cands
                .iter()
                .any(|&p| *table.pools[p].name == *group.pool && pass.selects(first, p));
            if !still && let Some(&p) = cands.iter().find(|&&p| pass.selects(first, p)) {
                group.pool = table.pools[p].name.clone();
                reattributed = true;
                self.journal.address(ip);
            }
        }
        for id in dropped {
            self.release(work, id);
        }
        if reattributed || changed {
            self.dirty = true;
        }
        for ip in emptied {
            self.free(ip);
        }
    }

    /// Adopts addresses already published on the service when we hold nothing of that family
    /// for it (migration from Cilium, or a lost state file) and the address is free.
    fn adopt_ingress<S: ServiceSelector>(&mut self, pass: &Pass<'_, '_, S>, work: &mut Work<'_>) {
        let table = &pass.table;
        for v in &pass.views {
            for &ip in &v.spec.current_ingress {
                let held = &work.held[v.idx];
                if held.contains(&ip) || !v.wants(ip) || self.allocs.contains_key(&ip) {
                    continue;
                }
                let family = Family::of(ip);
                if v.requested().is_empty() && held.iter().any(|h| Family::of(*h) == family) {
                    continue;
                }
                let Some((p, range)) = table.accepted_of(ip) else {
                    continue;
                };
                let pool = &table.pools[p];
                let (_, x) = to_u128(ip);
                if !pool.allocatable()
                    || !pass.selects(v.idx, p)
                    || (range.reserved && (x == range.first || x == range.last))
                {
                    continue;
                }
                self.occupy(ip, pool.name.clone(), work, v);
            }
        }
    }

    /// Tries to meet every unmet request of one service; returns the last failure.
    fn satisfy<'v, S: ServiceSelector>(
        &mut self,
        pass: &Pass<'_, 'v, S>,
        work: &mut Work<'v>,
        vi: usize,
    ) -> Option<Failure> {
        let view = &pass.views[vi];
        let mut failure = None;
        if !view.requested().is_empty() {
            for &ip in view.requested() {
                if work.held[vi].contains(&ip) {
                    continue;
                }
                if let Err(f) = self.satisfy_specific(pass, work, vi, ip) {
                    failure = Some(f);
                }
            }
        } else {
            for family in [Family::V4, Family::V6] {
                if !view.want[family.index()]
                    || work.held[vi].iter().any(|ip| Family::of(*ip) == family)
                {
                    continue;
                }
                if let Err(f) = self.satisfy_generic(pass, work, vi, family) {
                    failure = Some(f);
                }
            }
        }
        failure
    }

    fn satisfy_specific<'v, S: ServiceSelector>(
        &mut self,
        pass: &Pass<'_, 'v, S>,
        work: &mut Work<'v>,
        vi: usize,
        ip: IpAddr,
    ) -> Result<(), Failure> {
        let (table, view) = (&pass.table, &pass.views[vi]);
        // Like Cilium's findRangeOfIP: only enabled ranges count, so an address in a disabled
        // or conflicting pool is "no pool".
        let found = table
            .accepted_of(ip)
            .filter(|(p, _)| table.pools[*p].allocatable());
        let Some((p, range)) = found else {
            return Err(Failure {
                reason: Reason::NoPool,
                message: format!("No pool exists with a CIDR containing '{ip}'"),
            });
        };
        let pool = &table.pools[p];
        if !pass.selects(vi, p) {
            return Err(Failure {
                reason: Reason::PoolSelectorMismatch,
                message: format!(
                    "The pool with the CIDR containing '{ip}', doesn't select this service"
                ),
            });
        }
        let already = || Failure {
            reason: Reason::AlreadyAllocated,
            message: format!("The IP '{ip}' is already allocated to another service"),
        };
        if let Some(group) = self.allocs.get(&ip) {
            if view.sharing_key.is_none() {
                return Err(already());
            }
            for &m in &group.members {
                if let Some(k) = work.view_of(m)
                    && let Err(why) = compatible(view, &pass.views[k])
                {
                    return Err(Failure {
                        reason: Reason::AlreadyAllocatedIncompatibleService,
                        message: format!(
                            "The IP '{ip}' is already allocated to an incompatible service. Reason: {why}"
                        ),
                    });
                }
            }
            self.join(ip, work, view);
            return Ok(());
        }
        let (_, x) = to_u128(ip);
        if range.reserved && (x == range.first || x == range.last) {
            // allowFirstLastIPs: No holds these as Cilium does (allocated to nobody).
            return Err(already());
        }
        self.occupy(ip, pool.name.clone(), work, view);
        work.sharing.add(view, ip);
        Ok(())
    }

    fn satisfy_generic<'v, S: ServiceSelector>(
        &mut self,
        pass: &Pass<'_, 'v, S>,
        work: &mut Work<'v>,
        vi: usize,
        family: Family,
    ) -> Result<(), Failure> {
        let (table, view) = (&pass.table, &pass.views[vi]);
        if let Some(key) = view.sharing_key {
            let shareable = work.sharing.lookup(key, view).find(|ip| {
                Family::of(*ip) == family
                    && self.allocs.get(ip).is_some_and(|g| {
                        g.members.iter().all(|&m| {
                            work.view_of(m)
                                .is_some_and(|k| compatible(view, &pass.views[k]).is_ok())
                        })
                    })
                    // Unlike Cilium, only share where an enabled pool holding the address
                    // selects this service, as a new allocation there would need.
                    && table
                        .accepted_of(*ip)
                        .is_some_and(|(p, _)| {
                            table.pools[p].allocatable() && pass.selects(vi, p)
                        })
            });
            if let Some(ip) = shareable {
                self.join(ip, work, view);
                return Ok(());
            }
        }
        let mut full = false;
        for (p, pool) in table.pools.iter().enumerate() {
            if !pool.allocatable() || !pool.ranges.iter().any(|r| r.family == family) {
                continue;
            }
            if !pass.selects(vi, p) {
                continue;
            }
            for r in pool.ranges.iter().filter(|r| r.family == family) {
                match self.occupied[family.index()].first_free(r.lo, r.hi) {
                    Some(x) => {
                        let ip = from_u128(family, x);
                        self.occupy(ip, pool.name.clone(), work, view);
                        work.sharing.add(view, ip);
                        return Ok(());
                    }
                    None => full = true,
                }
            }
        }
        Err(if full {
            Failure {
                reason: Reason::OutOfIps,
                message: "All enabled CiliumLoadBalancerIPPools that match this service ran out of allocatable IPs".to_owned(),
            }
        } else {
            Failure {
                reason: Reason::NoPool,
                message: "There are no enabled CiliumLoadBalancerIPPools that match this service"
                    .to_owned(),
            }
        })
    }

    /// Per-service and per-pool results, from one walk over the allocations.
    fn report<S>(
        &mut self,
        pass: Pass<'_, '_, S>,
        work: Work<'_>,
        failures: Vec<Option<Failure>>,
    ) -> Outcome {
        let (table, views) = (&pass.table, &pass.views);
        let mut assignments: Vec<Vec<Assignment>> = work
            .held
            .iter()
            .map(|h| Vec::with_capacity(h.len()))
            .collect();
        let by_name: HashMap<&str, usize> = table
            .pools
            .iter()
            .enumerate()
            .map(|(i, p)| (&*p.name, i))
            .collect();
        // (addresses, holders) per pool of the table.
        let mut counts: Vec<(u64, u64)> = vec![(0, 0); table.pools.len()];
        // Neighbouring addresses mostly share a pool: skip the name lookup for those.
        let mut last: Option<(&Arc<str>, usize)> = None;
        for (ip, g) in self.allocs.iter() {
            let pool = match last {
                Some((name, i)) if Arc::ptr_eq(name, &g.pool) || **name == *g.pool => Some(i),
                _ => by_name.get(&*g.pool).copied(),
            };
            if let Some(i) = pool {
                counts[i].0 += 1;
                counts[i].1 += g.members.len() as u64;
                last = Some((&g.pool, i));
            }
            for &m in &g.members {
                let Some(vi) = work.view_of(m) else {
                    continue;
                };
                let mut shared_with: Vec<ServiceKey> = Vec::new();
                if g.members.len() > 1 {
                    shared_with.extend(
                        g.members
                            .iter()
                            .filter(|&&o| o != m)
                            .map(|&o| self.keys.key(o).clone()),
                    );
                    shared_with.sort();
                }
                // Walked in address order, so each service's list is sorted like `held`.
                assignments[vi].push(Assignment {
                    ip,
                    pool: g.pool.clone(),
                    shared_with,
                });
            }
        }
        let pools = self.pool_statuses(table, &counts);
        let mut entries = Vec::with_capacity(views.len());
        for ((view, assignments), failure) in views.iter().zip(assignments).zip(failures) {
            let satisfied = view.satisfied_by(&work.held[view.idx]);
            entries.push((
                view.spec.key.clone(),
                service_outcome(view, assignments, satisfied, failure),
            ));
        }
        // The working set goes before the map's nodes are allocated, so they can reuse its
        // memory instead of faulting in fresh pages.
        drop(by_name);
        drop(pass);
        drop(work);
        Outcome {
            // Already in key order: collected in place, checked in one pass, built in bulk.
            services: entries.into_iter().collect(),
            pools,
            state_changed: std::mem::take(&mut self.dirty),
        }
    }

    fn pool_statuses<S>(
        &self,
        table: &PoolTable<'_, S>,
        counts: &[(u64, u64)],
    ) -> BTreeMap<String, PoolStatus> {
        table
            .pools
            .iter()
            .zip(counts)
            .map(|(p, &(ips, services))| {
                let mut total = IpCount::ZERO;
                let mut reserved = 0u64;
                for r in &p.ranges {
                    total = total.saturating_add(IpCount::from_span(r.first, r.last));
                    if r.reserved {
                        let occ = &self.occupied[r.family.index()];
                        reserved +=
                            u64::from(!occ.contains(r.first)) + u64::from(!occ.contains(r.last));
                    }
                }
                let used = ips + reserved;
                (
                    p.name.to_string(),
                    PoolStatus {
                        disabled: p.spec.disabled,
                        conflict: p.conflict.clone(),
                        total,
                        available: total.saturating_sub(IpCount::from(used)),
                        used,
                        services,
                    },
                )
            })
            .collect()
    }
}

/// A service's outcome: its addresses, whether its request is met and, if not, why (the
/// failure of its last attempt), in Cilium's condition terms.
fn service_outcome(
    view: &View<'_>,
    assignments: Vec<Assignment>,
    satisfied: bool,
    failure: Option<Failure>,
) -> ServiceOutcome {
    let (reason, message) = match (satisfied, failure) {
        (true, _) | (false, None) => (Reason::Satisfied, String::new()),
        (false, Some(f)) => (f.reason, f.message),
    };
    ServiceOutcome {
        assignments,
        satisfied,
        reason,
        message,
        invalid_requested_ips: view.invalid().to_vec(),
    }
}
