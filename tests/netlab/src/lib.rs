//! Network-namespace lab harness for rackd's integration tests.
//!
//! Building blocks, all RAII so a failing or panicking test leaves nothing behind:
//! - [`Netns`]: a uniquely named namespace; processes inside are killed and the namespace deleted
//!   on drop. Links ([`veth`], bridges, dummies), addresses, sysctls, and [`Netns::enter`] to run
//!   in-process code (sockets, a tokio runtime, aya) inside it.
//! - [`Process`]: a program started inside a namespace with its output captured to a file;
//!   [`detached`] for programs that must outlive the caller (the lab runner).
//! - [`LabDir`]: a per-test directory for configs, sockets and logs.
//! - [`PacketSocket`]: a raw socket on one interface of a namespace, for probes and for
//!   timing frames as they arrive.
//! - Real peers: [`frr`], [`bird`], [`gobgp`], [`etcd`].
//! - [`wait_for`] / [`wait_until`]: polling that reports the last observation on timeout.
//!
//! Everything here needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN); see README.md.

pub mod bgp;
pub mod bird;
pub mod capture;
pub mod cmd;
pub mod detached;
pub mod dir;
pub mod echo;
pub mod error;
pub mod etcd;
pub mod figures;
pub mod frr;
pub mod gobgp;
pub mod names;
pub mod netns;
pub mod packet;
pub mod pmbmpd;
pub mod process;
pub mod segment;
pub mod wait;

pub use bgp::{BgpConfig, Family, Neighbor, Path, Route};
pub use dir::LabDir;
pub use error::{Error, Result};
pub use netns::{EnteredNetns, Netns, veth};
pub use packet::PacketSocket;
pub use process::Process;
pub use segment::Segment;
pub use wait::{Check, wait_for, wait_until};
