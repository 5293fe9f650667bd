//! What a reconcile produces: per-service IPs and condition, per-pool status.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;

use crate::count::IpCount;
use crate::spec::ServiceKey;

/// The workspace's one condition type and Cilium's LB-IPAM condition types (`lbipam.go`),
/// from `rackd-types`.
pub use rackd_types::condition::types::{
    IPAM_REQUEST_SATISFIED as CONDITION_REQUEST_SATISFIED,
    IPS_AVAILABLE as CONDITION_IPS_AVAILABLE, IPS_TOTAL as CONDITION_IPS_TOTAL,
    IPS_USED as CONDITION_IPS_USED, POOL_CONFLICT as CONDITION_POOL_CONFLICT,
};
pub use rackd_types::{Condition, ConditionStatus};

/// Reasons of `cilium.io/IPAMRequestSatisfied`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Reason {
    /// `satisfied`.
    Satisfied,
    /// `no_pool`.
    NoPool,
    /// `pool_selector_mismatch`.
    PoolSelectorMismatch,
    /// `out_of_ips`.
    OutOfIps,
    /// `already_allocated`.
    AlreadyAllocated,
    /// `already_allocated_incompatible_service`.
    AlreadyAllocatedIncompatibleService,
}

impl Reason {
    /// Cilium's reason string.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Satisfied => "satisfied",
            Reason::NoPool => "no_pool",
            Reason::PoolSelectorMismatch => "pool_selector_mismatch",
            Reason::OutOfIps => "out_of_ips",
            Reason::AlreadyAllocated => "already_allocated",
            Reason::AlreadyAllocatedIncompatibleService => "already_allocated_incompatible_service",
        }
    }
}

fn serialize_arc_str<S: serde::Serializer>(v: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v)
}

/// One address held by a service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Assignment {
    /// The address (`status.loadBalancer.ingress[].ip`).
    pub ip: IpAddr,
    /// The pool it is attributed to (shared, as 100,000 services may name the same pool).
    #[serde(serialize_with = "serialize_arc_str")]
    pub pool: Arc<str>,
    /// Other services sharing this address (sharing key), sorted.
    pub shared_with: Vec<ServiceKey>,
}

/// The result for one service LB-IPAM is responsible for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServiceOutcome {
    /// Addresses held, sorted (IPv4 first).
    pub assignments: Vec<Assignment>,
    /// Whether every request is met.
    pub satisfied: bool,
    /// The reason of the condition.
    pub reason: Reason,
    /// The message of the condition (empty when satisfied).
    pub message: String,
    /// Requested IPs that did not parse (Cilium logs and ignores them).
    pub invalid_requested_ips: Vec<String>,
}

impl ServiceOutcome {
    /// The addresses, for `status.loadBalancer.ingress`.
    pub fn ips(&self) -> Vec<IpAddr> {
        self.assignments.iter().map(|a| a.ip).collect()
    }

    /// The `cilium.io/IPAMRequestSatisfied` condition.
    pub fn condition(&self) -> Condition {
        Condition::new(
            CONDITION_REQUEST_SATISFIED,
            ConditionStatus::from(self.satisfied),
            self.reason.as_str(),
            self.message.clone(),
        )
    }
}

/// Why a pool is conflicting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PoolConflict {
    /// The pool it overlaps (itself for overlaps between its own blocks).
    pub with_pool: String,
    /// Cilium's message: `Pool conflicts since range '<a> - <b>' overlaps range '<c> - <d>' from IP Pool '<name>'`.
    pub message: String,
}

/// The status of one pool, for `status.conditions` and `rackctl lbipam pools`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PoolStatus {
    /// `spec.disabled`.
    pub disabled: bool,
    /// Set when the pool overlaps an older one (or itself); it then allocates nothing new.
    pub conflict: Option<PoolConflict>,
    /// Addresses in the pool's blocks (`cilium.io/IPsTotal`).
    pub total: IpCount,
    /// Addresses still allocatable (`cilium.io/IPsAvailable`).
    pub available: IpCount,
    /// Addresses in use, including first/last addresses reserved by `allowFirstLastIPs: No`,
    /// as Cilium counts them (`cilium.io/IPsUsed`).
    pub used: u64,
    /// Services holding an address attributed to this pool.
    pub services: u64,
}

impl PoolStatus {
    /// `True`/`False` for the `CONFLICTING` column.
    pub fn conflicting_str(&self) -> &'static str {
        if self.conflict.is_some() {
            "True"
        } else {
            "False"
        }
    }

    /// The four conditions Cilium keeps on a pool, in the order it first sets them.
    pub fn conditions(&self) -> Vec<Condition> {
        let conflict = match &self.conflict {
            Some(c) => Condition::new(
                CONDITION_POOL_CONFLICT,
                ConditionStatus::True,
                "cidr_overlap",
                c.message.clone(),
            ),
            None => Condition::new(
                CONDITION_POOL_CONFLICT,
                ConditionStatus::False,
                "resolved",
                String::new(),
            ),
        };
        let count = |type_: &'static str, message: String| {
            Condition::new(type_, ConditionStatus::Unknown, "noreason", message)
        };
        vec![
            conflict,
            count(CONDITION_IPS_TOTAL, self.total.to_string()),
            count(CONDITION_IPS_AVAILABLE, self.available.to_string()),
            count(CONDITION_IPS_USED, self.used.to_string()),
        ]
    }
}

/// The full result of [`crate::LbIpam::reconcile`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// Every service LB-IPAM is responsible for (others are absent and get no condition).
    pub services: BTreeMap<ServiceKey, ServiceOutcome>,
    /// Every pool, by name.
    pub pools: BTreeMap<String, PoolStatus>,
    /// Whether the persisted state changed: write [`crate::LbIpam::snapshot`] to disk
    /// before publishing these results, so a crash never publishes an unrecorded IP.
    pub state_changed: bool,
}

impl Outcome {
    /// Number of services whose request is not met (metric `services_unsatisfied_total`).
    pub fn unsatisfied(&self) -> usize {
        self.services.values().filter(|s| !s.satisfied).count()
    }

    /// Number of conflicting pools (metric `conflicting_pools_total`).
    pub fn conflicting_pools(&self) -> usize {
        self.pools.values().filter(|p| p.conflict.is_some()).count()
    }
}
