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

use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::ops::Bound;
use std::sync::Arc;

use crate::addr::{Family, from_u128, to_u128};
use crate::count::IpCount;
use crate::outcome::{Assignment, Outcome, PoolConflict, PoolStatus, Reason, ServiceOutcome};
use crate::runs::RunSet;
use crate::spec::{
    ANNOTATION_SHARING_CROSS_NAMESPACE, ANNOTATION_SHARING_CROSS_NAMESPACE_ALIAS,
    ANNOTATION_SHARING_KEY, ANNOTATION_SHARING_KEY_ALIAS, Config, ExternalTrafficPolicy, PoolSpec,
    SERVICE_NAME_LABEL, SERVICE_NAMESPACE_LABEL, ServiceKey, ServiceSelector, ServiceSpec,
    annotation, requested_ips, service_selector_labels,
};
use crate::state::{
    PersistedAllocation, PersistedPool, PersistedState, STATE_FORMAT, STATE_VERSION, StateError,
};

/// One allocated address.
#[derive(Clone, Debug)]
struct Group {
    /// Pool the address is attributed to (for counts and display).
    pool: Arc<str>,
    /// Holders in join order.
    members: Vec<ServiceKey>,
}

/// The LB-IPAM allocator. Holds only allocations (memory grows with allocated addresses, never
/// with pool size) and the first-seen order of pools.
#[derive(Clone, Debug, Default)]
pub struct LbIpam {
    allocs: BTreeMap<IpAddr, Group>,
    /// Occupied addresses per family, as runs, for O(log n) next-free search.
    occupied: [RunSet; 2],
    pool_seq: BTreeMap<String, u64>,
    next_seq: u64,
    dirty: bool,
    /// Addresses handed out or joined so far (progress detection only; not persisted).
    grants: usize,
}

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
    spec: &'a ServiceSpec,
    requested: Vec<IpAddr>,
    invalid: Vec<String>,
    want: [bool; 2],
    sharing_key: Option<&'a str>,
    cross_ns: Vec<&'a str>,
    /// Labels with the synthetic ones, built only if the caller did not pass them already.
    labels: OnceCell<Option<BTreeMap<String, String>>>,
}

impl<'a> View<'a> {
    fn new(config: &Config, spec: &'a ServiceSpec) -> Self {
        let (requested, invalid) = requested_ips(spec);
        let (v4, v6) = config.requested_families(spec);
        View {
            spec,
            requested,
            invalid,
            want: [v4, v6],
            sharing_key: annotation(spec, ANNOTATION_SHARING_KEY, ANNOTATION_SHARING_KEY_ALIAS),
            cross_ns: annotation(
                spec,
                ANNOTATION_SHARING_CROSS_NAMESPACE,
                ANNOTATION_SHARING_CROSS_NAMESPACE_ALIAS,
            )
            .map(|v| v.split(',').map(str::trim).collect())
            .unwrap_or_default(),
            labels: OnceCell::new(),
        }
    }

    fn selected_by<S: ServiceSelector>(&self, pool: &PoolView<'_, S>) -> bool {
        match &pool.spec.service_selector {
            None => true,
            Some(sel) => {
                let built = self.labels.get_or_init(|| {
                    let l = &self.spec.labels;
                    // "…service.name" sorts right before "…service.namespace": one tree walk.
                    let mut both = l.range::<str, _>((
                        Bound::Included(SERVICE_NAME_LABEL),
                        Bound::Included(SERVICE_NAMESPACE_LABEL),
                    ));
                    let ready = matches!(
                        (both.next(), both.next()),
                        (Some((k1, v1)), Some((k2, v2)))
                            if k1 == SERVICE_NAME_LABEL && *v1 == self.spec.key.name
                                && k2 == SERVICE_NAMESPACE_LABEL && *v2 == self.spec.key.namespace
                    );
                    (!ready).then(|| {
                        service_selector_labels(&self.spec.key.namespace, &self.spec.key.name, l)
                    })
                });
                sel.matches(built.as_ref().unwrap_or(&self.spec.labels))
            }
        }
    }

    /// Whether holding `held` meets every request.
    fn satisfied_by(&self, held: &[IpAddr]) -> bool {
        if self.requested.is_empty() {
            [Family::V4, Family::V6]
                .iter()
                .all(|f| !self.want[f.index()] || held.iter().any(|ip| Family::of(*ip) == *f))
        } else {
            self.requested.iter().all(|ip| held.contains(ip))
        }
    }

    /// Whether the address is still wanted by the service's request (ignoring pools).
    fn wants(&self, ip: IpAddr) -> bool {
        if self.requested.is_empty() {
            self.want[Family::of(ip).index()]
        } else {
            self.requested.contains(&ip)
        }
    }

    fn permits_namespace(&self, ns: &str) -> bool {
        self.cross_ns.iter().any(|n| *n == ns || *n == "*")
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
        let cross = !view.cross_ns.is_empty();
        by_ns
            .into_iter()
            .flat_map(|m| m.iter())
            .filter(move |(ns, _)| cross || **ns == own)
            .flat_map(|(_, ips)| ips.iter().copied())
    }
}

/// Adds `ip` to a sorted list of held addresses.
fn hold(held: &mut Vec<IpAddr>, ip: IpAddr) {
    if let Err(pos) = held.binary_search(&ip) {
        held.insert(pos, ip);
    }
}

struct Failure {
    reason: Reason,
    message: String,
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
        let mut me = LbIpam {
            next_seq: state.next_pool_seq,
            ..LbIpam::default()
        };
        for p in &state.pools {
            me.pool_seq.insert(p.name.clone(), p.seq);
        }
        let mut names: HashMap<&str, Arc<str>> = HashMap::new();
        let mut entries = Vec::with_capacity(state.allocations.len());
        for a in &state.allocations {
            let pool = names
                .entry(a.pool.as_str())
                .or_insert_with(|| Arc::from(a.pool.as_str()))
                .clone();
            let (family, v) = to_u128(a.ip);
            me.occupied[family.index()].insert(v);
            entries.push((
                a.ip,
                Group {
                    pool,
                    members: a.services.clone(),
                },
            ));
        }
        // Bulk build (snapshots are sorted, so this is linear); addresses are unique (validated).
        me.allocs = entries.into_iter().collect();
        Ok(me)
    }

    /// Decodes bytes and restores from them.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StateError> {
        LbIpam::restore(&PersistedState::decode(bytes)?)
    }

    /// The state to persist.
    pub fn snapshot(&self) -> PersistedState {
        let mut pools: Vec<PersistedPool> = self
            .pool_seq
            .iter()
            .map(|(name, seq)| PersistedPool {
                name: name.clone(),
                seq: *seq,
            })
            .collect();
        pools.sort_by_key(|p| p.seq);
        PersistedState {
            format: STATE_FORMAT.to_owned(),
            version: STATE_VERSION,
            next_pool_seq: self.next_seq,
            pools,
            allocations: self
                .allocs
                .iter()
                .map(|(ip, g)| PersistedAllocation {
                    ip: *ip,
                    pool: g.pool.to_string(),
                    services: g.members.clone(),
                })
                .collect(),
        }
    }

    /// Number of allocated addresses.
    pub fn allocated(&self) -> usize {
        self.allocs.len()
    }

    /// Every allocation in address order: address, pool, holders in join order.
    pub fn allocations(&self) -> impl Iterator<Item = (IpAddr, &str, &[ServiceKey])> {
        self.allocs
            .iter()
            .map(|(ip, g)| (*ip, &*g.pool, g.members.as_slice()))
    }

    fn occupy(&mut self, ip: IpAddr, pool: Arc<str>, key: &ServiceKey, held: &mut Vec<IpAddr>) {
        let (family, v) = to_u128(ip);
        self.occupied[family.index()].insert(v);
        self.allocs.insert(
            ip,
            Group {
                pool,
                members: vec![key.clone()],
            },
        );
        self.grants = self.grants.wrapping_add(1);
        hold(held, ip);
        self.dirty = true;
    }

    fn join(&mut self, ip: IpAddr, key: &ServiceKey, held: &mut Vec<IpAddr>) {
        if let Some(g) = self.allocs.get_mut(&ip) {
            g.members.push(key.clone());
            self.grants = self.grants.wrapping_add(1);
            hold(held, ip);
            self.dirty = true;
        }
    }

    fn free(&mut self, ip: IpAddr) {
        if self.allocs.remove(&ip).is_some() {
            let (family, v) = to_u128(ip);
            self.occupied[family.index()].remove(v);
            self.dirty = true;
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
        self.update_pool_seq(pools);
        let table = PoolTable::build(pools, &self.pool_seq);

        // Services we are responsible for, in key order (duplicate keys: one is kept).
        let mut handled: Vec<&ServiceSpec> =
            services.iter().filter(|s| config.handles(s)).collect();
        // Callers usually keep services in a map by key; then this is one linear check.
        if !handled.is_sorted_by(|a, b| a.key <= b.key) {
            handled.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        }
        handled.dedup_by(|b, a| a.key == b.key);
        let views: Vec<View<'_>> = handled.iter().map(|s| View::new(config, s)).collect();
        let index: HashMap<&ServiceKey, usize> = views
            .iter()
            .enumerate()
            .map(|(i, v)| (&v.spec.key, i))
            .collect();

        // Addresses held per service (index into `views`), sorted.
        let mut held: Vec<Vec<IpAddr>> = vec![Vec::new(); views.len()];
        self.validate_existing(&table, &views, &index, &mut held);
        self.adopt_ingress(&table, &views, &mut held);

        let mut sharing = SharingIndex::default();
        for (ip, g) in &self.allocs {
            if let Some(first) = g.members.first().and_then(|m| index.get(m)) {
                sharing.add(&views[*first], *ip);
            }
        }

        let mut failures: Vec<Option<Failure>> = views
            .iter()
            .zip(held.iter_mut())
            .map(|(view, h)| self.satisfy(&table, view, &views, &index, &mut sharing, h))
            .collect();
        // A service may only be able to share an address handed out later in the same pass;
        // serve unsatisfied sharers again until nothing moves, so one reconcile reaches the
        // fixed point and the next finds nothing to do (idempotence). Terminates: a pass is
        // repeated only after it created or joined an address.
        loop {
            let before = self.grants;
            let pending: Vec<usize> = (0..views.len())
                .filter(|&i| views[i].sharing_key.is_some() && !views[i].satisfied_by(&held[i]))
                .collect();
            for &i in &pending {
                failures[i] = self.satisfy(
                    &table,
                    &views[i],
                    &views,
                    &index,
                    &mut sharing,
                    &mut held[i],
                );
            }
            if pending.is_empty() || self.grants == before {
                break;
            }
        }
        // Outcomes only after every service is served: later ones may join earlier addresses.
        let services: Vec<(ServiceKey, ServiceOutcome)> = views
            .iter()
            .zip(held)
            .zip(failures)
            .map(|((view, h), failure)| {
                (
                    view.spec.key.clone(),
                    self.service_outcome(view, &h, failure),
                )
            })
            .collect();
        Outcome {
            // Already in key order, so this is a linear bulk build.
            services: services.into_iter().collect(),
            pools: self.pool_statuses(&table),
            state_changed: std::mem::take(&mut self.dirty),
        }
    }

    fn update_pool_seq<S>(&mut self, pools: &[PoolSpec<S>]) {
        let present: BTreeSet<&str> = pools.iter().map(|p| p.name.as_str()).collect();
        let before = self.pool_seq.len();
        self.pool_seq
            .retain(|name, _| present.contains(name.as_str()));
        if self.pool_seq.len() != before {
            self.dirty = true;
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
        }
    }

    /// Keeps an address for a holder only if the holder still wants it, a pool holding the
    /// address still selects the holder (disabled and conflicting pools included: existing
    /// allocations are kept), and it is compatible with the earlier holders.
    fn validate_existing<S: ServiceSelector>(
        &mut self,
        table: &PoolTable<'_, S>,
        views: &[View<'_>],
        index: &HashMap<&ServiceKey, usize>,
        held: &mut [Vec<IpAddr>],
    ) {
        let mut changed = false;
        let mut emptied: Vec<IpAddr> = Vec::new();
        let mut reattributed = false;
        for (ip, group) in self.allocs.iter_mut() {
            let cands: Vec<usize> = table.candidates(*ip).collect();
            let mut kept: Vec<usize> = Vec::with_capacity(group.members.len());
            for m in &group.members {
                let ok = index.get(m).copied().filter(|&vi| {
                    let v = &views[vi];
                    v.wants(*ip)
                        && cands.iter().any(|&p| v.selected_by(&table.pools[p]))
                        && kept.iter().all(|&k| compatible(v, &views[k]).is_ok())
                });
                match ok {
                    Some(vi) => kept.push(vi),
                    // Gone, no longer ours, or no longer entitled: released.
                    None => changed = true,
                }
            }
            if kept.len() != group.members.len() {
                group.members = kept.iter().map(|&k| views[k].spec.key.clone()).collect();
            }
            for &k in &kept {
                // Allocations are visited in address order, so each list stays sorted.
                held[k].push(*ip);
            }
            let Some(&first) = kept.first() else {
                emptied.push(*ip);
                continue;
            };
            let still = cands.iter().any(|&p| {
                *table.pools[p].name == *group.pool && views[first].selected_by(&table.pools[p])
            });
            if !still
                && let Some(&p) = cands
                    .iter()
                    .find(|&&p| views[first].selected_by(&table.pools[p]))
            {
                group.pool = table.pools[p].name.clone();
                reattributed = true;
            }
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
    fn adopt_ingress<S: ServiceSelector>(
        &mut self,
        table: &PoolTable<'_, S>,
        views: &[View<'_>],
        held: &mut [Vec<IpAddr>],
    ) {
        for (v, held) in views.iter().zip(held.iter_mut()) {
            for &ip in &v.spec.current_ingress {
                if held.contains(&ip) || !v.wants(ip) || self.allocs.contains_key(&ip) {
                    continue;
                }
                let family = Family::of(ip);
                if v.requested.is_empty() && held.iter().any(|h| Family::of(*h) == family) {
                    continue;
                }
                let Some((p, range)) = table.accepted_of(ip) else {
                    continue;
                };
                let pool = &table.pools[p];
                let (_, x) = to_u128(ip);
                if !pool.allocatable()
                    || !v.selected_by(pool)
                    || (range.reserved && (x == range.first || x == range.last))
                {
                    continue;
                }
                self.occupy(ip, pool.name.clone(), &v.spec.key, held);
            }
        }
    }

    /// Tries to meet every unmet request of one service; returns the last failure.
    fn satisfy<'v, S: ServiceSelector>(
        &mut self,
        table: &PoolTable<'_, S>,
        view: &View<'v>,
        views: &[View<'v>],
        index: &HashMap<&ServiceKey, usize>,
        sharing: &mut SharingIndex<'v>,
        held: &mut Vec<IpAddr>,
    ) -> Option<Failure> {
        let mut failure = None;
        if !view.requested.is_empty() {
            for &ip in &view.requested {
                if held.contains(&ip) {
                    continue;
                }
                if let Err(f) = self.satisfy_specific(table, view, views, index, sharing, held, ip)
                {
                    failure = Some(f);
                }
            }
        } else {
            for family in [Family::V4, Family::V6] {
                if !view.want[family.index()] || held.iter().any(|ip| Family::of(*ip) == family) {
                    continue;
                }
                if let Err(f) =
                    self.satisfy_generic(table, view, views, index, sharing, held, family)
                {
                    failure = Some(f);
                }
            }
        }
        failure
    }

    // Private helper of `satisfy`; bundling the borrowed context would only add lifetimes.
    #[allow(clippy::too_many_arguments)]
    fn satisfy_specific<'v, S: ServiceSelector>(
        &mut self,
        table: &PoolTable<'_, S>,
        view: &View<'v>,
        views: &[View<'v>],
        index: &HashMap<&ServiceKey, usize>,
        sharing: &mut SharingIndex<'v>,
        held: &mut Vec<IpAddr>,
        ip: IpAddr,
    ) -> Result<(), Failure> {
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
        if !view.selected_by(pool) {
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
            for m in &group.members {
                if let Some(&vi) = index.get(m)
                    && let Err(why) = compatible(view, &views[vi])
                {
                    return Err(Failure {
                        reason: Reason::AlreadyAllocatedIncompatibleService,
                        message: format!(
                            "The IP '{ip}' is already allocated to an incompatible service. Reason: {why}"
                        ),
                    });
                }
            }
            self.join(ip, &view.spec.key, held);
            return Ok(());
        }
        let (_, x) = to_u128(ip);
        if range.reserved && (x == range.first || x == range.last) {
            // allowFirstLastIPs: No holds these as Cilium does (allocated to nobody).
            return Err(already());
        }
        self.occupy(ip, pool.name.clone(), &view.spec.key, held);
        sharing.add(view, ip);
        Ok(())
    }

    // Private helper of `satisfy`; bundling the borrowed context would only add lifetimes.
    #[allow(clippy::too_many_arguments)]
    fn satisfy_generic<'v, S: ServiceSelector>(
        &mut self,
        table: &PoolTable<'_, S>,
        view: &View<'v>,
        views: &[View<'v>],
        index: &HashMap<&ServiceKey, usize>,
        sharing: &mut SharingIndex<'v>,
        held: &mut Vec<IpAddr>,
        family: Family,
    ) -> Result<(), Failure> {
        if let Some(key) = view.sharing_key {
            let shareable = sharing.lookup(key, view).find(|ip| {
                Family::of(*ip) == family
                    && self.allocs.get(ip).is_some_and(|g| {
                        g.members.iter().all(|m| {
                            index
                                .get(m)
                                .is_some_and(|&vi| compatible(view, &views[vi]).is_ok())
                        })
                    })
                    // Unlike Cilium, only share where an enabled pool holding the address
                    // selects this service, as a new allocation there would need.
                    && table
                        .accepted_of(*ip)
                        .is_some_and(|(p, _)| {
                            table.pools[p].allocatable() && view.selected_by(&table.pools[p])
                        })
            });
            if let Some(ip) = shareable {
                self.join(ip, &view.spec.key, held);
                return Ok(());
            }
        }
        let mut full = false;
        for pool in &table.pools {
            if !pool.allocatable() || !pool.ranges.iter().any(|r| r.family == family) {
                continue;
            }
            if !view.selected_by(pool) {
                continue;
            }
            for r in pool.ranges.iter().filter(|r| r.family == family) {
                match self.occupied[family.index()].first_free(r.lo, r.hi) {
                    Some(x) => {
                        let ip = from_u128(family, x);
                        self.occupy(ip, pool.name.clone(), &view.spec.key, held);
                        sharing.add(view, ip);
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

    fn service_outcome(
        &self,
        view: &View<'_>,
        held: &[IpAddr],
        failure: Option<Failure>,
    ) -> ServiceOutcome {
        let satisfied = view.satisfied_by(held);
        let assignments = held
            .iter()
            .filter_map(|ip| {
                let g = self.allocs.get(ip)?;
                let mut shared_with: Vec<ServiceKey> = g
                    .members
                    .iter()
                    .filter(|m| **m != view.spec.key)
                    .cloned()
                    .collect();
                shared_with.sort();
                Some(Assignment {
                    ip: *ip,
                    pool: g.pool.clone(),
                    shared_with,
                })
            })
            .collect();
        let (reason, message) = match (satisfied, failure) {
            (true, _) | (false, None) => (Reason::Satisfied, String::new()),
            (false, Some(f)) => (f.reason, f.message),
        };
        ServiceOutcome {
            assignments,
            satisfied,
            reason,
            message,
            invalid_requested_ips: view.invalid.clone(),
        }
    }

    fn pool_statuses<S>(&self, table: &PoolTable<'_, S>) -> BTreeMap<String, PoolStatus> {
        let mut counts: HashMap<&str, (u64, u64)> = HashMap::new();
        for g in self.allocs.values() {
            let c = counts.entry(&*g.pool).or_default();
            c.0 += 1;
            c.1 += g.members.len() as u64;
        }
        table
            .pools
            .iter()
            .map(|p| {
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
                let (ips, services) = counts.get(&*p.name).copied().unwrap_or_default();
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
