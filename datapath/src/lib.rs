//! rackd's eBPF datapath: C programs under `bpf/` compiled by clang-19 at
//! build time, embedded in the crate and loaded with aya 0.14.
//!
//! Today it holds the L2 responder, which answers ARP and IPv6 neighbour
//! solicitations for announced LoadBalancer IPs. The control plane
//! (`l2announcer`) drives it through [`Responder`]:
//!
//! ```no_run
//! # fn main() -> Result<(), datapath::Error> {
//! use datapath::Responder;
//! let mut r = Responder::open_or_create(datapath::DEFAULT_PIN_ROOT)?; // adopts pinned links
//! r.set_lease_duration(std::time::Duration::from_secs(15))?;
//! r.attach(2)?;                                        // tc ingress of ifindex 2
//! r.announce("192.0.2.10".parse().unwrap(), 2)?;       // after winning the lease
//! r.send_gratuitous("192.0.2.10".parse().unwrap(), 2, 3)?;
//! r.heartbeat()?;                                      // every second or so
//! r.withdraw("192.0.2.10".parse().unwrap(), 2)?;       // before releasing the lease
//! # Ok(()) }
//! ```
//!
//! Maps and links are pinned under the pin root, so the programs keep
//! answering while the daemon restarts; a new daemon adopts them. See
//! README.md for layouts and figures.

mod error;
pub mod maps;
pub mod packet;
mod responder;
pub mod sys;

pub use aya::programs::XdpMode;
pub use error::{Error, Result};
pub use responder::{
    Counter, DEFAULT_LEASE, DEFAULT_PIN_ROOT, Hook, Responder, RunOutcome, TcAttach, Verdict,
    send_gratuitous, uninstall,
};
pub use sys::{SolicitedNodeMembership, join_solicited_node};

// The control plane moves the responder into its own task.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<Responder>();
};
