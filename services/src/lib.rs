//! rackd's service datapath logic, pure (no I/O): what the eBPF load balancer on this node
//! should hold, computed from the configuration snapshot, and how to get there.
//!
//! - [`table`]: the desired state ([`ServiceTable`]: frontends → backends and options) and
//!   problems as values ([`Problem`]).
//! - [`render`]: [`rackd_model::Snapshot`] + LB-IPAM's addresses + node name → [`ServiceTable`].
//! - [`maglev`]: Maglev lookup tables identical to Cilium's `pkg/maglev`.
//! - [`ids`]: stable service and backend ids, seedable from pinned maps after a restart.
//! - [`plan`]: previous vs desired table → ordered map operations.
//! - [`masq`]: the ip-masq-agent config file.
//!
//! See README.md.

pub mod ids;
pub mod maglev;
pub mod masq;
mod pending;
pub mod plan;
pub mod render;
pub mod table;

pub use table::{
    Backend, BackendRef, Frontend, L4Proto, Problem, ProblemReason, ServiceEntry, ServiceName,
    ServiceTable,
};
