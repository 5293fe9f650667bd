//! LoadBalancer IP allocation with Cilium LB-IPAM semantics, as pure logic (no I/O).
//!
//! The daemon adapts `CiliumLoadBalancerIPPool`s and `Service`s to [`PoolSpec`] and
//! [`ServiceSpec`], calls [`LbIpam::reconcile`] whenever either changes, persists
//! [`LbIpam::snapshot`] when [`Outcome::state_changed`] is set, and on start rebuilds the
//! allocator with [`LbIpam::restore`] before the first reconcile. See `README.md`.
//!
//! Callers that see one object change at a time use [`Incremental`] instead: it applies a
//! changed service in O(log n) with the same result as a full reconcile, and the allocator's
//! [`LbIpam::take_journal`] gives the changes to persist as [`JournalRecord`] lines instead of
//! a whole snapshot ([`PersistedState::apply`], [`Journal::decode`]).

mod addr;
mod count;
mod engine;
mod incremental;
mod journal;
mod keys;
mod outcome;
mod runs;
mod select;
mod spec;
mod state;

pub use addr::{Block, BlockError, Family};
pub use count::IpCount;
pub use engine::{Holders, LbIpam};
pub use incremental::{Commit, FullReason, Incremental};
pub use journal::{JOURNAL_FORMAT, JOURNAL_VERSION, Journal, JournalRecord};
pub use outcome::{
    Assignment, CONDITION_IPS_AVAILABLE, CONDITION_IPS_TOTAL, CONDITION_IPS_USED,
    CONDITION_POOL_CONFLICT, CONDITION_REQUEST_SATISFIED, Condition, ConditionStatus, Outcome,
    PoolConflict, PoolStatus, Reason, ServiceOutcome,
};
pub use spec::{
    ANNOTATION_IPS, ANNOTATION_IPS_ALIAS, ANNOTATION_SHARING_CROSS_NAMESPACE,
    ANNOTATION_SHARING_CROSS_NAMESPACE_ALIAS, ANNOTATION_SHARING_KEY, ANNOTATION_SHARING_KEY_ALIAS,
    CLASS_BGP_CONTROL_PLANE, CLASS_L2_ANNOUNCER, Config, ExternalTrafficPolicy, IpFamilyPolicy,
    PoolSpec, SERVICE_NAME_LABEL, SERVICE_NAMESPACE_LABEL, ServiceKey, ServiceSelector,
    ServiceSpec, requested_ips, service_selector_labels,
};
pub use state::{
    PersistedAllocation, PersistedPool, PersistedState, STATE_FORMAT, STATE_VERSION, StateError,
};
