//! Service datapath benchmarks for issue 15: rackd's eBPF service datapath against
//! kube-proxy's iptables rules (through `iptables-nft-restore`) and IPVS, side by side in one
//! run, with the harness's own ceiling measured.
//!
//! - [`program`]: benchmark A, programming N Services x K backends and changing one of them.
//!   Inputs from [`kubeproxy`] (kube-proxy's exact restore input) and [`ipvs`]; the BPF floor
//!   ([`bpffloor`]) writes the same Services into brief-shaped BPF maps with raw syscalls.
//! - [`forward`]: benchmark B, connections/s, requests/s, UDP packets/s and masquerade through
//!   one node namespace, with [`loadgen`] and [`server`] (ours, no external tools), in the
//!   [`topo`] namespaces; mode 0 (no load balancer) is the harness's ceiling.
//! - [`chunks`]: benchmark D, the kernel's cost of one Maglev chunk by its value size.
//! - [`rackd`]: mode 1, the hook for rackd's `datapath::lb` (returns "unavailable" until the
//!   datapath is merged).
//!
//! Everything needs root (namespaces, iptables, bpf). See README.md for the commands and the
//! figures.

pub mod bpffloor;
pub mod chunks;
pub mod cleanup;
pub mod cpu;
pub mod error;
pub mod exec;
pub mod flows;
pub mod forward;
pub mod hash;
pub mod ipvs;
pub mod kubeproxy;
pub mod loadgen;
pub mod machine;
pub mod model;
pub mod program;
pub mod rackd;
pub mod report;
pub mod server;
pub mod stats;
pub mod topo;

pub use error::{Error, Result};
