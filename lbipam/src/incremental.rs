//! A stateful front end over [`LbIpam`] for callers that learn about changes one object at a
//! time (a watch, a directory of files): it keeps the current config, pools and services and
//! the current [`Outcome`], queues changes, and applies them on [`Incremental::commit`].
//!
//! The contract: after every commit, the outcome and the allocations are exactly what one full
//! [`LbIpam::reconcile`] of the current config, pools and services gives from the state before
//! the commit. The common case (services added, changed or removed, no sharing key involved,
//! and no address freed while another service waits for one) runs as a reconcile of the
//! changed services alone, O(log n) each (see `engine/fast.rs` for why that is exact); anything
//! else runs the full reconcile, and the [`Commit`] says so and why.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::count::IpCount;
use crate::engine::{Change, Decline, LbIpam, WAITING_LIMIT, Waiting};
use crate::journal::JournalRecord;
use crate::outcome::{Outcome, ServiceOutcome};
use crate::spec::{Config, PoolSpec, ServiceKey, ServiceSelector, ServiceSpec};

/// Why a commit ran the full reconcile instead of the incremental pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum FullReason {
    /// First commit (the allocator may come from a restore; everything is validated once).
    Initial,
    /// The config changed.
    Config,
    /// The pools were set.
    Pools,
    /// [`Incremental::request_full`] (the periodic resync).
    Requested,
    /// A changed service has a sharing key (old or new version).
    SharingKey,
    /// A changed service holds a shared address (or the allocator's record of it disagreed
    /// with the outcome; never seen, checked anyway).
    SharedAddress,
    /// A freed address could go to an unsatisfied service (or more than 64 are unsatisfied).
    FreedWhileWaiting,
}

impl FullReason {
    /// A stable name, e.g. for a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            FullReason::Initial => "initial",
            FullReason::Config => "config",
            FullReason::Pools => "pools",
            FullReason::Requested => "requested",
            FullReason::SharingKey => "sharing_key",
            FullReason::SharedAddress => "shared_address",
            FullReason::FreedWhileWaiting => "freed_while_waiting",
        }
    }
}

impl From<Decline> for FullReason {
    fn from(d: Decline) -> Self {
        match d {
            Decline::SharingKey => FullReason::SharingKey,
            Decline::SharedAddress => FullReason::SharedAddress,
            Decline::FreedWhileWaiting => FullReason::FreedWhileWaiting,
            Decline::PoolTable => FullReason::Pools,
        }
    }
}

/// What one [`Incremental::commit`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Commit {
    /// Services whose outcome changed (appeared, disappeared or differs), in key order: the
    /// ones whose status and announcements need updating.
    pub services: Vec<ServiceKey>,
    /// Whether any pool's status changed (counts, conflict, pools added or removed).
    pub pools_changed: bool,
    /// Whether the allocator state changed: make [`Incremental::take_journal`] (or a snapshot)
    /// durable before publishing anything of this commit.
    pub state_changed: bool,
    /// Why the full reconcile ran; `None`: the incremental pass (or nothing to do).
    pub full: Option<FullReason>,
}

/// The incremental front end; see the module docs and `README.md`.
#[derive(Debug)]
pub struct Incremental<S> {
    ipam: LbIpam,
    config: Config,
    pools: Vec<PoolSpec<S>>,
    services: BTreeMap<ServiceKey, ServiceSpec>,
    outcome: Outcome,
    /// Per service changed since the last commit: its version at that commit (`None`: absent).
    /// Not kept while a full reconcile is queued (it covers everything).
    pending: BTreeMap<ServiceKey, Option<ServiceSpec>>,
    /// A full reconcile is queued, for the first reason that asked.
    full: Option<FullReason>,
    /// Services in `outcome` that are not satisfied.
    unsatisfied: BTreeSet<ServiceKey>,
}

impl<S: ServiceSelector> Incremental<S> {
    /// A front end over `ipam` (new, or restored from the persisted state) with no pools and
    /// no services yet. The first commit is a full reconcile.
    pub fn new(ipam: LbIpam, config: Config) -> Self {
        Incremental {
            ipam,
            config,
            pools: Vec::new(),
            services: BTreeMap::new(),
            outcome: Outcome::default(),
            pending: BTreeMap::new(),
            full: Some(FullReason::Initial),
            unsatisfied: BTreeSet::new(),
        }
    }

    /// Replaces the config; a different one queues a full reconcile.
    pub fn set_config(&mut self, config: Config) {
        if config != self.config {
            self.config = config;
            self.queue_full(FullReason::Config);
        }
    }

    /// Replaces the pools (the complete set); queues a full reconcile.
    pub fn set_pools(&mut self, pools: Vec<PoolSpec<S>>) {
        self.pools = pools;
        self.queue_full(FullReason::Pools);
    }

    /// Adds or replaces a service (by key). An identical version is ignored.
    pub fn upsert_service(&mut self, spec: ServiceSpec) {
        if self.services.get(&spec.key) == Some(&spec) {
            return;
        }
        let key = spec.key.clone();
        let old = self.services.insert(key.clone(), spec);
        if self.full.is_none() {
            self.pending.entry(key).or_insert(old);
        }
    }

    /// Removes a service; unknown keys are ignored.
    pub fn remove_service(&mut self, key: &ServiceKey) {
        if let Some(old) = self.services.remove(key)
            && self.full.is_none()
        {
            self.pending.entry(key.clone()).or_insert(Some(old));
        }
    }

    /// Queues a full reconcile (the periodic resync that stays as a safety net).
    pub fn request_full(&mut self) {
        self.queue_full(FullReason::Requested);
    }

    fn queue_full(&mut self, reason: FullReason) {
        if self.full.is_none() {
            self.full = Some(reason);
            self.pending.clear();
        }
    }

    /// Whether anything is queued for the next commit.
    pub fn has_pending(&self) -> bool {
        self.full.is_some() || !self.pending.is_empty()
    }

    /// Applies everything queued since the last commit and updates [`Incremental::outcome`]
    /// in place. With `state_changed`, persist before publishing.
    pub fn commit(&mut self) -> Commit {
        if let Some(reason) = self.full.take() {
            return self.commit_full(reason);
        }
        if self.pending.is_empty() {
            return Commit::default();
        }
        let pending = std::mem::take(&mut self.pending);
        let changes: Vec<Change<'_>> = pending
            .iter()
            .map(|(key, old)| Change {
                key,
                old: old.as_ref(),
                new: self.services.get(key),
                held: self
                    .outcome
                    .services
                    .get(key)
                    .map(ServiceOutcome::ips)
                    .unwrap_or_default(),
            })
            .collect();
        // Unsatisfied services outside the changes (one more than the pass looks at is enough
        // to make it decline).
        let waiting: Vec<Waiting<'_>> = self
            .unsatisfied
            .iter()
            .filter(|k| !pending.contains_key(*k))
            .filter_map(|k| {
                Some(Waiting {
                    spec: self.services.get(k)?,
                    held: self.outcome.services.get(k)?.ips(),
                })
            })
            .take(WAITING_LIMIT + 1)
            .collect();
        let applied =
            match self
                .ipam
                .reconcile_changes(&self.config, &self.pools, &changes, &waiting)
            {
                Ok(a) => a,
                Err(decline) => {
                    drop((changes, waiting));
                    return self.commit_full(decline.into());
                }
            };

        let mut services = Vec::new();
        for (c, new) in changes.iter().zip(applied.outcomes) {
            let before = self.outcome.services.get(c.key);
            if before == new.as_ref() {
                continue;
            }
            if before.is_some_and(|o| !o.satisfied) {
                self.unsatisfied.remove(c.key);
            }
            match new {
                Some(o) => {
                    if !o.satisfied {
                        self.unsatisfied.insert(c.key.clone());
                    }
                    self.outcome.services.insert(c.key.clone(), o);
                }
                None => {
                    self.outcome.services.remove(c.key);
                }
            }
            services.push(c.key.clone());
        }
        let mut pools_changed = false;
        for d in applied.pools {
            if d.used == 0 && d.services == 0 {
                continue;
            }
            let Some(status) = self.outcome.pools.get_mut(&*d.pool) else {
                continue;
            };
            // Counts never go negative: every address removed was counted when it came.
            status.used = status.used.saturating_add_signed(d.used);
            status.services = status.services.saturating_add_signed(d.services);
            status.available = status.total.saturating_sub(IpCount::from(status.used));
            pools_changed = true;
        }
        self.outcome.state_changed = applied.state_changed;
        Commit {
            services,
            pools_changed,
            state_changed: applied.state_changed,
            full: None,
        }
    }

    fn commit_full(&mut self, reason: FullReason) -> Commit {
        self.pending.clear();
        let new = self
            .ipam
            .reconcile_refs(&self.config, &self.pools, self.services.values());
        let services = changed_keys(&self.outcome.services, &new.services);
        let pools_changed = self.outcome.pools != new.pools;
        self.unsatisfied = new
            .services
            .iter()
            .filter(|(_, o)| !o.satisfied)
            .map(|(k, _)| k.clone())
            .collect();
        let state_changed = new.state_changed;
        self.outcome = new;
        Commit {
            services,
            pools_changed,
            state_changed,
            full: Some(reason),
        }
    }

    /// The outcome as of the last commit (`state_changed` is that commit's).
    pub fn outcome(&self) -> &Outcome {
        &self.outcome
    }

    /// The allocator, e.g. for [`LbIpam::snapshot`] when compacting the journal.
    pub fn ipam(&self) -> &LbIpam {
        &self.ipam
    }

    /// [`LbIpam::take_journal`] of the allocator.
    pub fn take_journal(&mut self) -> Vec<JournalRecord> {
        self.ipam.take_journal()
    }

    /// The config as set.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The pools as set.
    pub fn pools(&self) -> &[PoolSpec<S>] {
        &self.pools
    }

    /// A service as upserted.
    pub fn service(&self, key: &ServiceKey) -> Option<&ServiceSpec> {
        self.services.get(key)
    }

    /// Every service as upserted, in key order.
    pub fn services(&self) -> impl Iterator<Item = &ServiceSpec> {
        self.services.values()
    }

    /// The allocator, giving up the front end.
    pub fn into_ipam(self) -> LbIpam {
        self.ipam
    }
}

/// Keys whose entry differs between two maps (present in one only, or different), in order.
fn changed_keys(
    a: &BTreeMap<ServiceKey, ServiceOutcome>,
    b: &BTreeMap<ServiceKey, ServiceOutcome>,
) -> Vec<ServiceKey> {
    let mut out = Vec::new();
    let (mut x, mut y) = (a.iter().peekable(), b.iter().peekable());
    loop {
        match (x.peek(), y.peek()) {
            (None, None) => break,
            (Some((k, _)), None) => {
                out.push((*k).clone());
                x.next();
            }
            (None, Some((k, _))) => {
                out.push((*k).clone());
                y.next();
            }
            (Some((ka, va)), Some((kb, vb))) => match ka.cmp(kb) {
                std::cmp::Ordering::Less => {
                    out.push((*ka).clone());
                    x.next();
                }
                std::cmp::Ordering::Greater => {
                    out.push((*kb).clone());
                    y.next();
                }
                std::cmp::Ordering::Equal => {
                    if va != vb {
                        out.push((*ka).clone());
                    }
                    x.next();
                    y.next();
                }
            },
        }
    }
    out
}
