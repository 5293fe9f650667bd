//! rackd's eBPF datapath: C programs under `bpf/` compiled by clang-19 at
//! build time, embedded in the crate and loaded with aya 0.14.
//!
//! The crate is laid out for several programs:
//! - [`registry`]: every program, its hook, its rank among ours and its
//!   pin names;
//! - [`load`]: the embedded objects, loaded with their maps pinned by name
//!   (reused across restarts), and BPF_PROG_TEST_RUN;
//! - [`pin`]: one folder per program and layout version under the pin root,
//!   adoption of the first release's flat pins, [`uninstall`];
//! - [`attach`]: TCX links pinned per interface, adopted after a restart,
//!   placed by the ordering policy of [`order`] (pure);
//! - one handle per program: [`Responder`] (the ARP/NDP responder),
//!   [`lb::ServiceLb`] (the service load balancer and masquerade, two
//!   programs in one object) and [`Probe`] (a pass-through counter the tests
//!   use as a second program).
//!
//! The control plane (`l2announcer`) drives the responder:
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
//! running while the daemon restarts; a new daemon adopts them. See
//! README.md for layouts and figures.

pub mod attach;
mod error;
pub mod lb;
pub mod load;
pub mod maps;
pub mod order;
pub mod packet;
pub mod pin;
mod probe;
pub mod registry;
mod responder;
pub mod sys;

pub use attach::{TcAttach, chain};
pub use aya::programs::XdpMode;
pub use error::{Error, Result};
pub use load::{Hook, RunOutcome, Verdict};
pub use order::{Anchor, OrderError, Slot};
pub use pin::{program_dir, uninstall, uninstall_program};
pub use probe::{Probe, ProbeCounts};
pub use registry::{AttachPoint, Band, ProgramKind, ProgramSpec};
pub use responder::{
    Counter, DEFAULT_LEASE, DEFAULT_PIN_ROOT, Responder, XdpAttachment, send_gratuitous,
};
pub use sys::{SolicitedNodeMembership, join_solicited_node};

// The control plane moves the responder into its own task.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<Responder>();
    assert_send::<Probe>();
    assert_send::<lb::ServiceLb>();
};
