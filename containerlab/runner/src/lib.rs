//! rackd-lab: realises a containerlab topology file on a machine without containers.
//!
//! One network namespace per node, one veth pair per link (named by the endpoints), the
//! nodes' `exec:` lines run inside their namespaces, FRR nodes (recognised by image) run
//! zebra and bgpd with their bound `frr.conf`, rackd nodes run this workspace's `rackd` with
//! their `cmd:`. State lives in `/run/rackd-lab/<lab>/` so `down`, `exec` and `status` are
//! separate invocations. See README.md.
//!
//! [`echo`] is the server the lab's pods run (`rackd-lab echo`).

pub mod echo;
pub mod error;
pub mod lab;
pub mod shlex;
pub mod topo;

pub use error::{LabError, TopoError};
pub use lab::{Options, State};
pub use topo::{Role, Topology};
