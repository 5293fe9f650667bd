//! The incremental pass: one reconcile restricted to a few changed services, used by
//! [`crate::Incremental`] when every other service provably keeps its outcome.
//!
//! Why the restriction is exact. Start from the fixed point of a full reconcile (what the
//! allocator holds after one, or after an earlier incremental pass equal to one), with the same
//! config and pools. A full reconcile of the new service set would then:
//! * validate every other service's addresses and keep them all (a fixed point; their views and
//!   the pools are unchanged, and they share no address with a changed service, since sharing
//!   needs a sharing key and changed services have none);
//! * adopt nothing for another service and serve nothing new to it, unless an address became
//!   free: a service that would adopt or take an address it does not hold is unsatisfied, and
//!   an unsatisfied service fails again on the old occupancy plus the changed services' new
//!   addresses (those were free before and did not help it; more occupancy cannot either, and
//!   its failure reason does not depend on occupancy beyond "full"). Sharers only join
//!   addresses of their key, which no changed service can create;
//! * so it changes only the changed services: validation of their addresses, then adoption,
//!   then requests in key order, exactly as below with the same functions.
//!
//! Hence the preconditions: no sharing key on either version, no shared address, and no freed
//! address that an unsatisfied service outside the changes could take. A freed address can
//! only be taken through the enabled, non-conflicting pool holding it, by a service that pool
//! selects and that requests that address or wants its family without holding one (adopting a
//! published address needs the same); a service the pool does not select fails on it the same
//! way as before (`no_pool`/`pool_selector_mismatch` come before any occupancy check). With more than
//! [`WAITING_LIMIT`] unsatisfied services the pass declines without looking. All of this is
//! checked before anything changes, so a decline leaves the allocator untouched for the full
//! reconcile.

use std::net::IpAddr;
use std::sync::Arc;

use smallvec::SmallVec;

use super::{Failure, Group, Held, LbIpam, NONE, Pass, SharingIndex, View, ViewOf, Work, hold};
use crate::addr::{Family, to_u128};
use crate::keys::SvcId;
use crate::outcome::{Assignment, ServiceOutcome};
use crate::select::{Classes, LabelSets};
use crate::spec::{
    ANNOTATION_SHARING_KEY, ANNOTATION_SHARING_KEY_ALIAS, Config, PoolSpec, ServiceKey,
    ServiceSelector, ServiceSpec, annotation,
};

/// Unsatisfied services beyond which a freed address always means a full reconcile (checking
/// each costs a selector evaluation; that many waiting usually means an exhausted pool, where
/// the freed address is wanted anyway).
pub(crate) const WAITING_LIMIT: usize = 64;

/// An unsatisfied service outside the changes.
pub(crate) struct Waiting<'a> {
    pub(crate) spec: &'a ServiceSpec,
    /// Addresses it holds (from the current outcome).
    pub(crate) held: Vec<IpAddr>,
}

/// One changed service.
pub(crate) struct Change<'a> {
    pub(crate) key: &'a ServiceKey,
    /// The version the last commit saw (`None`: absent).
    pub(crate) old: Option<&'a ServiceSpec>,
    /// The current version (`None`: removed).
    pub(crate) new: Option<&'a ServiceSpec>,
    /// Addresses the service holds now, sorted (from the current outcome).
    pub(crate) held: Vec<IpAddr>,
}

/// Why the incremental pass declined; the allocator is untouched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decline {
    /// A version has a sharing key.
    SharingKey,
    /// An address the service holds is shared, or the allocator's record disagrees.
    SharedAddress,
    /// A freed address could go to an unsatisfied service outside the changes.
    FreedWhileWaiting,
    /// The pools are not those of the last full reconcile.
    PoolTable,
}

/// What the pass did.
pub(crate) struct Applied {
    /// New outcome per change, in order (`None`: not handled, no outcome).
    pub(crate) outcomes: Vec<Option<ServiceOutcome>>,
    /// Net change of `used` and `services` per pool (pools not listed are unchanged).
    pub(crate) pools: Vec<PoolDelta>,
    pub(crate) state_changed: bool,
}

/// Net change of one pool's counts.
pub(crate) struct PoolDelta {
    pub(crate) pool: Arc<str>,
    pub(crate) used: i64,
    pub(crate) services: i64,
}

/// What validation does with one held address.
enum Verdict {
    Drop,
    Keep,
    /// Kept, attributed to this pool.
    Move(Arc<str>),
}

impl LbIpam {
    /// Applies `changes` (in key order) as a full reconcile of the whole current set would,
    /// given that the allocator is at that reconcile's fixed point for the previous set, or
    /// declines without changing anything. `waiting`: the unsatisfied services outside
    /// `changes` (or more than [`WAITING_LIMIT`] of them, if there are that many).
    pub(crate) fn reconcile_changes<S: ServiceSelector>(
        &mut self,
        config: &Config,
        pools: &[PoolSpec<S>],
        changes: &[Change<'_>],
        waiting: &[Waiting<'_>],
    ) -> Result<Applied, Decline> {
        // Same pools as the last full reconcile: every first-seen number recorded, none stale
        // (otherwise `update_pool_seq` would change the table).
        let mut names: Vec<&str> = pools.iter().map(|p| p.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        if names.len() != self.pool_seq.len()
            || names.iter().any(|n| !self.pool_seq.contains_key(*n))
        {
            return Err(Decline::PoolTable);
        }
        let keyed = |s: Option<&ServiceSpec>| {
            s.is_some_and(|s| {
                annotation(s, ANNOTATION_SHARING_KEY, ANNOTATION_SHARING_KEY_ALIAS).is_some()
            })
        };
        if changes.iter().any(|c| keyed(c.old) || keyed(c.new)) {
            return Err(Decline::SharingKey);
        }

        let table = super::PoolTable::build(pools, &self.pool_seq);
        let mut slot: Vec<Option<usize>> = Vec::with_capacity(changes.len());
        let mut views: Vec<View<'_>> = Vec::with_capacity(changes.len());
        for c in changes {
            match c.new.filter(|s| config.handles(s)) {
                Some(spec) => {
                    slot.push(Some(views.len()));
                    views.push(View::new(config, views.len(), spec));
                }
                None => slot.push(None),
            }
        }
        let pass = Pass {
            table,
            views,
            classes: Classes::none(),
            labels: LabelSets::default(),
        };

        // Plan the validation of every held address before changing anything.
        let mut ids: Vec<Option<SvcId>> = Vec::with_capacity(changes.len());
        let mut plan: Vec<(usize, IpAddr, Verdict)> = Vec::new();
        let mut freed: SmallVec<[IpAddr; 2]> = SmallVec::new();
        for (ci, c) in changes.iter().enumerate() {
            let id = self.keys.find(self.keys.hash(c.key), c.key);
            // The outcome's addresses must be exactly the allocator's record for the key.
            let recorded = id.map_or(0, |id| self.keys.refs(id) as usize);
            if recorded != c.held.len() {
                return Err(Decline::SharedAddress);
            }
            for &ip in &c.held {
                let Some(g) = self.allocs.get(&ip) else {
                    return Err(Decline::SharedAddress);
                };
                if g.members.len() != 1 || g.members.first().copied() != id {
                    return Err(Decline::SharedAddress);
                }
                let verdict = match slot.get(ci).copied().flatten() {
                    Some(vi) => self.verdict(&pass, vi, ip, g),
                    None => Verdict::Drop,
                };
                if matches!(verdict, Verdict::Drop) {
                    freed.push(ip);
                }
                plan.push((ci, ip, verdict));
            }
            ids.push(id);
        }
        let taken = |ip: &IpAddr| could_take(config, &pass, waiting, *ip);
        if !freed.is_empty()
            && !waiting.is_empty()
            && (waiting.len() > WAITING_LIMIT || freed.iter().any(taken))
        {
            return Err(Decline::FreedWhileWaiting);
        }

        let mut work = Work {
            id_of: vec![NONE; pass.views.len()],
            view_of: ViewOf::Sparse(SmallVec::new()),
            held: vec![Held::new(); pass.views.len()],
            sharing: SharingIndex::default(),
        };
        for (&id, &vi) in ids.iter().zip(&slot) {
            if let (Some(id), Some(vi)) = (id, vi) {
                work.id_of[vi] = id;
                // Views are a handful.
                work.view_of.set(id, vi as u32);
            }
        }

        // Validation, as planned (`validate_existing` for these addresses only).
        let mut deltas = Deltas::default();
        for (ci, ip, verdict) in plan {
            let vi = slot.get(ci).copied().flatten();
            match (verdict, vi) {
                (Verdict::Keep, Some(vi)) => hold(&mut work.held[vi], ip),
                (Verdict::Move(to), Some(vi)) => {
                    hold(&mut work.held[vi], ip);
                    if let Some(g) = self.allocs.get_mut(&ip) {
                        deltas.attributed(&g.pool, -1);
                        deltas.attributed(&to, 1);
                        g.pool = to;
                        self.journal.address(ip);
                        self.dirty = true;
                    }
                }
                // (A kept address always has a view: without one the verdict is `Drop`.)
                (Verdict::Drop, _) | (_, None) => {
                    let Some(g) = self.allocs.get_mut(&ip) else {
                        continue;
                    };
                    g.members.clear();
                    let pool = g.pool.clone();
                    self.journal.address(ip);
                    self.dirty = true;
                    if let Some(Some(id)) = ids.get(ci) {
                        self.release(&mut work, *id);
                    }
                    self.free(ip);
                    deltas.attributed(&pool, -1);
                    deltas.occupancy(&pass, ip, -1);
                }
            }
        }
        let validated = work.held.clone();

        // Adoption, then requests in key order; no sharer among them, so no second round.
        self.adopt_ingress(&pass, &mut work);
        let failures: Vec<Option<Failure>> = (0..pass.views.len())
            .map(|vi| self.satisfy(&pass, &mut work, vi))
            .collect();

        // Addresses gained.
        for (now, before) in work.held.iter().zip(&validated) {
            for ip in now.iter().filter(|ip| !before.contains(ip)) {
                if let Some(g) = self.allocs.get(ip) {
                    deltas.attributed(&g.pool, 1);
                }
                deltas.occupancy(&pass, *ip, 1);
            }
        }

        let mut outcomes = Vec::with_capacity(changes.len());
        let mut failures = failures.into_iter();
        let mut views = pass.views.iter();
        for s in &slot {
            let Some(vi) = *s else {
                outcomes.push(None);
                continue;
            };
            let (Some(view), Some(failure)) = (views.next(), failures.next()) else {
                outcomes.push(None);
                continue;
            };
            outcomes.push(Some(self.outcome_of(&work, view, vi, failure)));
        }
        Ok(Applied {
            outcomes,
            pools: deltas.0,
            state_changed: std::mem::take(&mut self.dirty),
        })
    }

    /// `validate_existing`'s decision for an address `vi` alone holds.
    fn verdict<S: ServiceSelector>(
        &self,
        pass: &Pass<'_, '_, S>,
        vi: usize,
        ip: IpAddr,
        g: &Group,
    ) -> Verdict {
        let table = &pass.table;
        let cands: SmallVec<[usize; 4]> = table.candidates(ip).collect();
        if !(pass.views[vi].wants(ip) && cands.iter().any(|&p| pass.selects(vi, p))) {
            return Verdict::Drop;
        }
        let still = cands
            .iter()
            .any(|&p| *table.pools[p].name == *g.pool && pass.selects(vi, p));
        match cands.iter().find(|&&p| pass.selects(vi, p)) {
            Some(&p) if !still => Verdict::Move(table.pools[p].name.clone()),
            _ => Verdict::Keep,
        }
    }

    /// What `report` says for one service.
    fn outcome_of(
        &self,
        work: &Work<'_>,
        view: &View<'_>,
        vi: usize,
        failure: Option<Failure>,
    ) -> ServiceOutcome {
        let me = work.id_of.get(vi).copied().unwrap_or(NONE);
        let assignments = work.held[vi]
            .iter()
            .filter_map(|&ip| {
                let g = self.allocs.get(&ip)?;
                let mut shared_with: Vec<ServiceKey> = g
                    .members
                    .iter()
                    .filter(|&&m| m != me)
                    .map(|&m| self.keys.key(m).clone())
                    .collect();
                shared_with.sort();
                Some(Assignment {
                    ip,
                    pool: g.pool.clone(),
                    shared_with,
                })
            })
            .collect();
        let satisfied = view.satisfied_by(&work.held[vi]);
        super::service_outcome(view, assignments, satisfied, failure)
    }
}

/// Whether a service in `waiting` could take `ip` once it is free (see the module docs).
fn could_take<S: ServiceSelector>(
    config: &Config,
    pass: &Pass<'_, '_, S>,
    waiting: &[Waiting<'_>],
    ip: IpAddr,
) -> bool {
    let table = &pass.table;
    let Some((p, _)) = table
        .accepted_of(ip)
        .filter(|(p, _)| table.pools[*p].allocatable())
    else {
        // No pool can hand it out: nobody can take it.
        return false;
    };
    let family = Family::of(ip);
    let labels = LabelSets::default();
    waiting.iter().enumerate().any(|(i, w)| {
        if !config.handles(w.spec) {
            return false;
        }
        let view = View::new(config, i, w.spec);
        let wants = if view.requested().is_empty() {
            view.want[family.index()] && !w.held.iter().any(|h| Family::of(*h) == family)
        } else {
            view.requested().contains(&ip)
        };
        wants
            && table.pools[p]
                .spec
                .service_selector
                .as_ref()
                .is_none_or(|sel| labels.matches(i, w.spec, sel))
    })
}

/// Net count changes per pool name.
#[derive(Default)]
struct Deltas(Vec<PoolDelta>);

impl Deltas {
    fn entry(&mut self, pool: &Arc<str>) -> &mut PoolDelta {
        let pos = match self.0.iter().position(|d| d.pool == *pool) {
            Some(i) => i,
            None => {
                self.0.push(PoolDelta {
                    pool: pool.clone(),
                    used: 0,
                    services: 0,
                });
                self.0.len() - 1
            }
        };
        &mut self.0[pos]
    }

    /// An address attributed to `pool` (one holder) appeared (`+1`) or went (`-1`).
    fn attributed(&mut self, pool: &Arc<str>, d: i64) {
        let e = self.entry(pool);
        e.used += d;
        e.services += d;
    }

    /// `ip` became occupied (`+1`) or free (`-1`): a pool whose `allowFirstLastIPs: No` range
    /// starts or ends there counts it as reserved only while nobody holds it (`pool_statuses`).
    fn occupancy<S: ServiceSelector>(&mut self, pass: &Pass<'_, '_, S>, ip: IpAddr, d: i64) {
        let (family, v) = to_u128(ip);
        for p in pass.table.candidates(ip) {
            let pool = &pass.table.pools[p];
            let ends = pool
                .ranges
                .iter()
                .filter(|r| r.reserved && r.family == family)
                .map(|r| i64::from(r.first == v) + i64::from(r.last == v))
                .sum::<i64>();
            if ends != 0 {
                self.entry(&pool.name).used -= d * ends;
            }
        }
    }
}
