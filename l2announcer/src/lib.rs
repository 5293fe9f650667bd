//! L2 announcements: which node answers ARP/NDP for which LoadBalancer IP, under leases.
//!
//! - [`policy`]: pure evaluation of `CiliumL2AnnouncementPolicy` into desired IP groups.
//! - [`fsm`]: pure ownership state machine (`input -> Vec<Action>`).
//! - [`backend`]: lease backends (`local`, `etcd`), one lease per node, atomic group claims.
//! - [`node`]: the owning task that drives the FSM, the backend and an [`Announcer`].
//! - [`query`]: rows for `rackctl l2 leases` / `rackctl l2 announcements`.
//!
//! See README.md for the design and figures.

pub mod announcer;
pub mod backend;
pub mod fsm;
pub mod node;
pub mod policy;
pub mod query;
pub mod testing;
pub mod timing;

pub use announcer::Announcer;
pub use timing::LeaseTimings;
