//! The policy-resolution half of rackd's egress gateway: `CiliumEgressGatewayPolicy` objects,
//! Pods, Nodes, namespace labels and the daemon's gateway elections in; the egress policy map
//! (one entry per source pod IP and destination CIDR), the gateway groups with their
//! candidates, and typed per-policy problems out. Cilium's semantics, with sources, are in
//! README.md.
//!
//! Pure: no I/O, no async, no clocks. The daemon calls [`resolve`] on every relevant change
//! and diffs the [`Resolution`] against the previous one; all outputs are sorted maps, so
//! equal inputs give equal outputs.
//!
//! ```
//! use std::collections::BTreeMap;
//! use egressgw::{resolve, Input};
//!
//! let res = resolve(&Input {
//!     policies: &[],
//!     pods: &[],
//!     nodes: &[],
//!     namespaces: &BTreeMap::new(),
//!     elections: &BTreeMap::new(),
//! });
//! assert!(res.entries.is_empty());
//! ```

mod compile;
pub mod conditions;
mod endpoints;
mod resolve;
mod types;

pub use endpoints::{NAMESPACE_NAME_LABEL, POD_SERVICE_ACCOUNT_LABEL};
pub use resolve::resolve;
pub use types::{
    Action, Candidate, EgressAddress, Elections, EntryKey, GatewayGroup, GatewaySlot, GroupId,
    Input, NamespaceLabels, PodRef, PolicyEntry, PolicyStatus, Resolution,
};
