//! From the last table planned to the desired one: ordered map operations.
//!
//! Order, so a packet never meets a slot that names a missing backend nor a frontend whose
//! table is half written: every backend upsert first, then every service upsert (its Maglev
//! table and frontend entry together: the datapath handle writes the table before the
//! frontend), then service deletes, then the deletes of backends no frontend uses any more.
//!
//! Incremental: [`Planner::plan`] looks only at the frontends whose served entry changed
//! ([`ServiceTable::changes_since`], which skips what the two tables share) and at those
//! that failed last time, so a change to one Service produces operations on its entries
//! only. The planner remembers what it has programmed; ids come from its [`IdAllocator`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use crate::ids::{BackendId, IdAllocator, IdError, ServiceId};
use rackd_types::maglev::{MAX_BACKENDS, MaglevTable};

use crate::maglev::{DEFAULT_WEIGHT, MaglevBackend, MaglevConfig};
use crate::table::{Backend, Frontend, ServiceEntry, ServiceTable};

pub use rackd_types::service::BackendValue;

/// A services-map value with its Maglev table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceValue {
    /// The frontend's id (rev-NAT index, key of its table).
    pub id: ServiceId,
    /// `externalTrafficPolicy: Local`.
    pub local_only: bool,
    /// ClientIP affinity timeout.
    pub affinity_timeout: Option<Duration>,
    /// Allowed client ranges (`None`: everyone; `Some(empty)`: no one).
    pub source_ranges: Option<Vec<IpNet>>,
    /// Maglev table, empty when there is no backend.
    pub lut: Arc<MaglevTable>,
}

/// One map operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Write a backend.
    UpsertBackend {
        /// Its id.
        id: BackendId,
        /// Its value.
        value: BackendValue,
    },
    /// Write a frontend's table and entry.
    UpsertService {
        /// The key.
        frontend: Frontend,
        /// The value.
        value: ServiceValue,
    },
    /// Remove a frontend (entry, table, rev-NAT).
    DeleteService {
        /// The key.
        frontend: Frontend,
        /// Its id.
        id: ServiceId,
    },
    /// Remove a backend.
    DeleteBackend {
        /// Its id.
        id: BackendId,
    },
}

/// Why a frontend could not be programmed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// Out of service or backend ids.
    #[error(transparent)]
    Ids(#[from] IdError),
    /// More backends than a Maglev table can hold.
    #[error("{count} backends, a Maglev table holds at most {MAX_BACKENDS}")]
    TooManyBackends {
        /// How many the frontend has.
        count: usize,
    },
}

/// A frontend that could not be programmed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("frontend {frontend} not programmed: {error}")]
pub struct PlanFailure {
    /// Which.
    pub frontend: Frontend,
    /// Why; retried by the next plan.
    #[source]
    pub error: PlanError,
}

/// The operations, in order, and what could not be done.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Apply in this order.
    pub ops: Vec<Op>,
    /// Frontends left out (their previous state, if any, stays programmed).
    pub failures: Vec<PlanFailure>,
}

/// What is programmed for one frontend.
#[derive(Debug, Clone)]
struct Programmed {
    entry: ServiceEntry,
    id: ServiceId,
}

/// Turns table changes into operations, remembering what it programmed.
#[derive(Debug, Clone)]
pub struct Planner {
    maglev: MaglevConfig,
    ids: IdAllocator,
    applied: ServiceTable,
    programmed: BTreeMap<Frontend, Programmed>,
    /// Per backend: references from programmed frontends that call it local.
    local_refs: BTreeMap<Backend, u32>,
    /// Backend values as last written.
    backend_values: BTreeMap<BackendId, BackendValue>,
    /// Frontends to look at again (failed last time).
    retry: BTreeSet<Frontend>,
}

impl Planner {
    /// A planner starting from empty maps, or from the ids a restart found in them.
    pub fn new(maglev: MaglevConfig, ids: IdAllocator) -> Self {
        Self {
            maglev,
            ids,
            applied: ServiceTable::default(),
            programmed: BTreeMap::new(),
            local_refs: BTreeMap::new(),
            backend_values: BTreeMap::new(),
            retry: BTreeSet::new(),
        }
    }

    /// The ids in use.
    pub fn ids(&self) -> &IdAllocator {
        &self.ids
    }

    /// The Maglev settings.
    pub fn maglev(&self) -> &MaglevConfig {
        &self.maglev
    }

    /// The operations taking the maps from what was planned so far to `desired`, their
    /// Maglev tables computed. The caller applies them in order (all of them, or it rebuilds
    /// the planner from the maps).
    pub fn plan(&mut self, desired: &ServiceTable) -> Plan {
        self.plan_pending(desired).complete()
    }

    /// [`Planner::plan`] with the Maglev tables still to compute: [`PendingPlan::apply_each`]
    /// writes the operations while other threads compute the tables ahead of the writes.
    pub fn plan_pending(&mut self, desired: &ServiceTable) -> PendingPlan {
        let mut touched: BTreeSet<Frontend> = std::mem::take(&mut self.retry);
        touched.extend(
            desired
                .changes_since(&self.applied)
                .into_iter()
                .map(|c| c.0),
        );
        self.applied = desired.clone();

        let mut failures = Vec::new();
        let mut upserts = Vec::new();
        let mut service_deletes = Vec::new();
        // Entries no longer programmed: their references are dropped after every new one
        // is taken, so a backend moving between frontends keeps its id.
        let mut dropped: Vec<ServiceEntry> = Vec::new();
        let mut backends_touched: BTreeSet<Backend> = BTreeSet::new();
        // Computed on other threads from the first few on, while planning goes on.
        let mut lut_inputs = Tables::new(self.maglev);

        for f in touched {
            let old = self.programmed.get(&f);
            let new = desired.get(&f);
            if old.map(|p| &p.entry) == new {
                continue;
            }
            let Some(new) = new else {
                if let Some(p) = self.programmed.remove(&f) {
                    self.ids.release_service(&f);
                    service_deletes.push(Op::DeleteService {
                        frontend: f,
                        id: p.id,
                    });
                    dropped.push(p.entry);
                }
                continue;
            };
            let had_id = self.ids.service(&f).is_some();
            let id = match self.ids.acquire_service(&f) {
                Ok(id) => id,
                Err(error) => {
                    failures.push(PlanFailure {
                        frontend: f,
                        error: error.into(),
                    });
                    self.retry.insert(f);
                    continue;
                }
            };
            let lut_in = if new.backends.len() > MAX_BACKENDS {
                Err(PlanError::TooManyBackends {
                    count: new.backends.len(),
                })
            } else {
                self.acquire_backends(new).map_err(PlanError::from)
            };
            let lut_in = match lut_in {
                Ok(l) => l,
                Err(error) => {
                    if !had_id {
                        self.ids.release_service(&f);
                    }
                    failures.push(PlanFailure { frontend: f, error });
                    self.retry.insert(f);
                    continue;
                }
            };
            for r in &new.backends {
                backends_touched.insert(r.backend);
                if r.local {
                    *self.local_refs.entry(r.backend).or_default() += 1;
                }
            }
            // The table is computed by `lut_inputs`' threads (see `PendingPlan`).
            upserts.push(Op::UpsertService {
                frontend: f,
                value: ServiceValue {
                    id,
                    local_only: new.local_only,
                    affinity_timeout: new.affinity_timeout,
                    source_ranges: new.source_ranges.clone(),
                    lut: Arc::new(MaglevTable::empty()),
                },
            });
            lut_inputs.push(lut_in);
            let entry = new.clone();
            if let Some(p) = self.programmed.insert(f, Programmed { entry, id }) {
                dropped.push(p.entry);
            }
        }

        let mut freed = Vec::new();
        for e in &dropped {
            for r in &e.backends {
                backends_touched.insert(r.backend);
                if r.local
                    && let Some(n) = self.local_refs.get_mut(&r.backend)
                {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.local_refs.remove(&r.backend);
                    }
                }
                if let Some(id) = self.ids.release_backend(&r.backend) {
                    freed.push(id);
                }
            }
        }

        // Backends whose value is new or changed (a `local` flip), then those now unused.
        let mut ops = Vec::new();
        for b in backends_touched {
            let Some(id) = self.ids.backend(&b) else {
                continue;
            };
            let value = BackendValue {
                addr: b.addr,
                port: b.port,
                proto: b.proto,
                local: self.local_refs.get(&b).is_some_and(|n| *n > 0),
            };
            if self.backend_values.get(&id) != Some(&value) {
                self.backend_values.insert(id, value);
                ops.push(Op::UpsertBackend { id, value });
            }
        }
        ops.extend(upserts);
        ops.extend(service_deletes);
        for id in freed {
            self.backend_values.remove(&id);
            ops.push(Op::DeleteBackend { id });
        }
        PendingPlan::new(ops, lut_inputs, failures)
    }

    /// One reference to each backend of `e` (all or none), with the Maglev input.
    fn acquire_backends(&mut self, e: &ServiceEntry) -> Result<Vec<MaglevBackend>, IdError> {
        let mut out = Vec::with_capacity(e.backends.len());
        for (i, r) in e.backends.iter().enumerate() {
            match self.ids.acquire_backend(&r.backend) {
                Ok(id) => out.push(MaglevBackend {
                    key: crate::maglev::backend_hash_string(&r.backend),
                    id: id.0,
                    weight: DEFAULT_WEIGHT,
                }),
                Err(err) => {
                    for r in e.backends.iter().take(i) {
                        self.ids.release_backend(&r.backend);
                    }
                    return Err(err);
                }
            }
        }
        Ok(out)
    }

    /// After the first plan following a restart: deletes for what the pinned maps held
    /// that nothing claimed (frontends first, then backends).
    pub fn prune_restored(&mut self) -> Plan {
        let (services, backends) = self.ids.take_unclaimed();
        let mut ops: Vec<Op> = services
            .into_iter()
            .map(|(frontend, id)| Op::DeleteService { frontend, id })
            .collect();
        ops.extend(backends.into_iter().map(|(_, id)| Op::DeleteBackend { id }));
        Plan {
            ops,
            failures: Vec::new(),
        }
    }
}

pub use crate::pending::PendingPlan;
use crate::pending::Tables;

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
