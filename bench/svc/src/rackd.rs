//! Mode (1): rackd's own programs and maps. **The hook the lead fills once
//! `datapath::lb::ServiceLb` is merged.**
//!
//! Everything else in this crate is ready: the programming benchmark calls [`program_full`] and
//! [`program_change`] in the same rounds as iptables, IPVS and the BPF floor; the forwarding
//! benchmark calls [`attach_forwarding`] for mode `rackd` in the same rounds as direct,
//! iptables and IPVS. Until the datapath exists they return [`Error::Unavailable`], which the
//! runners record as "skipped: <reason>" in the results instead of failing.
//!
//! TODO(issue 15, lead): add `datapath = { workspace = true }` to bench/svc/Cargo.toml and
//! replace the three bodies below with the sketches in their doc comments. Nothing else in the
//! crate needs to change.

use std::any::Any;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::model::Workload;

/// Why mode (1) is skipped today.
pub const NOT_YET: &str = "rackd's service datapath (datapath::lb::ServiceLb, branch i15-dp) is \
                           not merged yet: see bench/svc/src/rackd.rs";

/// A programmed rackd datapath; dropping it must detach the programs and remove the pins.
pub type Guard = Box<dyn Any>;

/// Timings of one programming run of rackd.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RackdTiming {
    /// Config change to maps ready: from handing the desired Services to the controller code to
    /// the last map write returning (Maglev tables included).
    pub total: Duration,
}

/// Loads every Service of `w` into a fresh `ServiceLb` pinned under `pin_root` (created by the
/// caller, removed after) and returns the time from "config change" to "maps ready", plus the
/// handle so [`program_change`] can change one Service in the loaded maps.
///
/// Sketch against i15-dp at 07d2b3a (`datapath::lb`) and `rackd-services` (branch i15-svc,
/// `Planner::plan(&ServiceTable) -> Plan`, Maglev as Cilium's):
/// ```text
/// let cfg = LbConfig { maglev_table_size: lut_size, hash_seed: 0, nat_port_min: 32768,
///                      nat_port_max: 65535,
///                      sizes: LbSizes { lut_chunks: w.services * lut_size.div_ceil(1024) + 1024,
///                                       ..LbSizes::default() } };
/// let mut lb = ServiceLb::open_or_create(pin_root, &cfg)?;     // untimed: daemon start
/// let table = <w.all() as a rackd_services::ServiceTable: frontend = lb_ips[0]:80/TCP,
///              backends = endpoints, local: true>;              // untimed: the "config"
/// let t = Instant::now();                                       // config change
/// let plan = planner.plan(&table);                              // ids + Maglev LUTs
/// for (id, b) in plan.backends { lb.upsert_backend(BackendId(id), &b)?; }
/// for s in plan.services { lb.upsert_service(&s.frontend, &s.entry())?; }
/// Ok((RackdTiming { total: t.elapsed() }, Box::new((lb, planner, table))))
/// ```
/// **Capacity at 27,000 x 10 (i15-dp at 07d2b3a)**: `rackd_lb_backends_v1` has max_entries
/// 65,536 (270,000 backends needed) and the LUT needs 27,000 x 16 = 432,000 chunks at
/// M = 16381 (default `LbSizes::lut_chunks` 262,144): the backends map must grow (or become
/// configurable like the LUT) before the full-size run can load. The BPF floor
/// (`bpffloor.rs`) uses the same layout with room for everything.
pub fn program_full(w: &Workload, lut_size: u32, pin_root: &Path) -> Result<(RackdTiming, Guard)> {
    let _ = (w, lut_size, pin_root);
    Err(Error::Unavailable(NOT_YET.into()))
}

/// With `guard` from [`program_full`]: Service `w.changed_index()` gets `w.service_changed(..)`'s
/// endpoints (one backend replaced) through rackd's incremental path (the controller's diff,
/// then only that Service's backend, LUT and frontend writes). Returns config change to maps
/// ready.
pub fn program_change(w: &Workload, guard: &mut Guard) -> Result<RackdTiming> {
    let _ = (w, guard);
    Err(Error::Unavailable(NOT_YET.into()))
}

/// Where the forwarding topology needs rackd's programs.
#[derive(Debug, Clone)]
pub struct ForwardingSetup<'a> {
    /// The node's namespace (programs are attached from inside it).
    pub node: &'a netlab::Netns,
    /// The node's client-facing device (`--devices`): ingress gets `rackd_lb_in`, egress
    /// `rackd_lb_out`.
    pub device: &'a str,
    /// The node's address on that device (for SNAT when a backend is remote).
    pub device_addr: Ipv4Addr,
    /// The node's devices towards the backends (attach too if the design needs the reply path
    /// there: replies from local backends enter the node on these).
    pub backend_devices: &'a [&'a str],
    /// The frontend (VIP:port, TCP and UDP).
    pub vip: SocketAddrV4,
    /// The backends (local to the node: `local: true`, no SNAT).
    pub backends: &'a [SocketAddrV4],
    /// For masquerade runs: the pod CIDR whose traffic leaving `device` is SNATed.
    pub masquerade_pod_cidr: Option<&'a str>,
    /// Pin root for this run (unique, removed by the caller).
    pub pin_root: &'a Path,
}

/// Programs one Service (TCP and UDP frontends on `vip`) and attaches rackd's programs in the
/// node namespace; for masquerade runs, enables BPF masquerade for the pod CIDR instead.
///
/// Sketch (i15-dp's API): inside `setup.node.enter(..)` (aya attaches by ifindex in the
/// current namespace): `ServiceLb::open_or_create(pin_root, &LbConfig::default())`,
/// `attach(setup.node.ifindex(device)?)`, `set_device(ifindex, DeviceAddrs { v4:
/// Some(device_addr), v6: None })`; service runs: `upsert_backend(BackendId(i + 1), &Backend {
/// addr, port: 8080, proto, local: true })` for TCP and UDP, then `upsert_service(&Frontend {
/// addr: vip, port: 80, proto }, &ServiceEntry { id, local_only: false, affinity_timeout: None,
/// lut: <Maglev over both backends, M entries>, source_ranges: &[] })`; masquerade runs:
/// `set_masquerade(&MasqConfig { v4: true, v6: false, pod_cidrs: vec![cidr], non_masq:
/// vec![cidr, 169.254.0.0/16] })`. Return a guard whose drop calls `uninstall()` (detaches and
/// removes the pins; the namespace goes with the lab).
pub fn attach_forwarding(setup: &ForwardingSetup<'_>) -> Result<Guard> {
    let _ = setup;
    Err(Error::Unavailable(NOT_YET.into()))
}
