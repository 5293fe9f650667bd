//! The service load balancer and masquerade ([`ServiceLb`]): the handle on
//! `bpf/lb.bpf.c`'s two programs (`rackd_lb_in` at tc ingress,
//! `rackd_lb_out` at tc egress of the node's network-facing devices) and
//! their maps, pinned in the `lb_v3` folder and adopted across restarts like
//! the responder's. See README.md ("The service load balancer") for the
//! packet paths and the map layouts.
//!
//! Write order (readers never see a dangling reference): backends, then a
//! service's LUT, then its frontend; deletes in reverse.

mod egress;
mod flows;
use egress::EgressMaps;
use flows::FlowMaps;
mod maps;
mod types;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use aya::maps::lpm_trie::{Key as LpmKey, LpmTrie};
use aya::maps::{Array, HashMap, MapData, MapError, PerCpuArray, PerCpuHashMap, PerCpuValues};
use ipnet::IpNet;
use rackd_types::maglev::MaglevTable;

pub use egress::{EgressAction, EgressCounters, EgressRule, EgressSync, EgressTunnel};
pub use flows::LbReader;
pub use maps::*;
pub use types::*;

use crate::attach::{Loaded, TcAttach};
use crate::error::{Error, Result};
use crate::load::{self, Hook, RunOutcome};
use crate::registry::{ProgramKind, SERVICE_LB_EGRESS};

/// `BPF_NOEXIST`.
const BPF_NOEXIST: u64 = 1;

/// Which of the two programs a test run exercises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LbHook {
    /// `rackd_lb_in`, tc ingress.
    Ingress,
    /// `rackd_lb_out`, tc egress.
    Egress,
    /// `rackd_egw_tunnel`, tc ingress of the egress gateway's tunnel device.
    Tunnel,
}

fn not_found(e: &MapError) -> bool {
    match e {
        MapError::KeyNotFound | MapError::ElementNotFound => true,
        MapError::SyscallError(s) => s.io_error.raw_os_error() == Some(libc::ENOENT),
        _ => false,
    }
}

fn exists(e: &MapError) -> bool {
    matches!(e, MapError::SyscallError(s) if s.io_error.raw_os_error() == Some(libc::EEXIST))
}

/// Removes `key`; absent is fine.
fn remove<K: aya::Pod, V: aya::Pod>(
    m: &mut HashMap<MapData, K, V>,
    name: &'static str,
    key: &K,
) -> Result<()> {
    match m.remove(key) {
        Ok(()) => Ok(()),
        Err(e) if not_found(&e) => Ok(()),
        Err(e) => Err(Error::map(name, "remove", e)),
    }
}

fn invalid(what: &'static str, reason: impl Into<String>) -> Error {
    Error::Invalid {
        what,
        reason: reason.into(),
    }
}

fn svc_key(f: &Frontend) -> SvcKey {
    SvcKey {
        addr: addr16(f.addr),
        port: f.port.to_be(),
        proto: f.proto.number(),
        pad: 0,
    }
}

/// The marker of a frontend address (fragments to it are dropped).
fn marker_key(addr: [u8; 16]) -> SvcKey {
    SvcKey {
        addr,
        ..SvcKey::default()
    }
}

/// Chunks of a Maglev table of `backends` backends and `m` slots.
pub fn lut_chunks(backends: usize, m: u32) -> u32 {
    let bytes = 4 * backends + rackd_types::maglev::slot_width(backends) * m as usize;
    u32::try_from(bytes.div_ceil(LUT_BYTES)).unwrap_or(u32::MAX)
}

/// Handle on the service load balancer (see the module docs). All calls
/// act in the calling thread's network namespace.
pub struct ServiceLb {
    prog: Loaded,
    cfg: LbConfig,
    services: HashMap<MapData, SvcKey, SvcVal>,
    backends: HashMap<MapData, u32, BackendVal>,
    maglev: HashMap<MapData, LutKey, LutChunk>,
    revnat: HashMap<MapData, u32, RevNat>,
    srcrange: LpmTrie<MapData, SrcRangeData, u8>,
    affinity: HashMap<MapData, AffinityKey, AffinityVal>,
    config: Array<MapData, Config>,
    devices: HashMap<MapData, u32, Device>,
    masq_src: LpmTrie<MapData, [u8; 16], u8>,
    no_masq: LpmTrie<MapData, [u8; 16], u8>,
    flows: FlowMaps,
    egress: EgressMaps,
    /// Backends known to be written, by id: whether they are IPv4. What `upsert_service`
    /// checks a table against without a map lookup per backend (ten system calls per Service
    /// of ten backends). Kept by `upsert_backend` and `delete_backend`; a backend a previous
    /// run wrote is looked up in the map once, on first use (no pass over the map at open).
    backend_v4: std::collections::HashMap<u32, bool>,
    /// Possible CPUs, for per-CPU values (read once: it is a file read).
    nr_cpus: usize,
}

impl std::fmt::Debug for ServiceLb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceLb")
            .field("prog", &self.prog)
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

macro_rules! take {
    ($ebpf:expr, $ty:ident, $name:expr) => {
        $ty::try_from(load::take_map($ebpf, $name)?).map_err(|e| Error::map($name, "open", e))?
    };
}

impl ServiceLb {
    /// Loads both programs under `pin_root` (mounting bpffs if needed),
    /// reopening the maps pinned in `lb_v3/` (flows, NAT mappings and
    /// services survive a restart) or creating them with `cfg.sizes`,
    /// adopts every pinned link (ingress and egress) by switching it to the
    /// new programs, and writes the configuration (Maglev M, seed, NAT
    /// range; the masquerade switches stay as they are).
    pub fn open_or_create(pin_root: impl AsRef<Path>, cfg: &LbConfig) -> Result<Self> {
        if cfg.maglev_table_size == 0 || cfg.maglev_table_size > MAGLEV_MAX {
            return Err(invalid(
                "Maglev table size",
                format!("{} (1..={MAGLEV_MAX})", cfg.maglev_table_size),
            ));
        }
        if cfg.nat_port_min == 0 || cfg.nat_port_max < cfg.nat_port_min {
            return Err(invalid(
                "NAT port range",
                format!("{}-{}", cfg.nat_port_min, cfg.nat_port_max),
            ));
        }
        let sizes = [
            (MAP_CT, cfg.sizes.ct),
            (MAP_NAT, cfg.sizes.nat),
            (MAP_MAGLEV, cfg.sizes.lut_chunks),
            (MAP_SERVICES, cfg.sizes.services),
            (MAP_REVNAT, cfg.sizes.services),
            (MAP_BACKENDS, cfg.sizes.backends),
        ];
        let mut prog = Loaded::open_sized(
            pin_root.as_ref(),
            ProgramKind::ServiceLb,
            TcAttach::Auto,
            &sizes,
        )?;
        let e = &mut prog.ebpf;
        let services = take!(e, HashMap, MAP_SERVICES);
        let backends = take!(e, HashMap, MAP_BACKENDS);
        let maglev = take!(e, HashMap, MAP_MAGLEV);
        let revnat = take!(e, HashMap, MAP_REVNAT);
        let srcrange = take!(e, LpmTrie, MAP_SRCRANGE);
        let affinity = take!(e, HashMap, MAP_AFFINITY);
        let ct = take!(e, HashMap, MAP_CT);
        let nat = take!(e, HashMap, MAP_NAT);
        let config = take!(e, Array, MAP_CONFIG);
        let devices = take!(e, HashMap, MAP_DEVICES);
        let masq_src = take!(e, LpmTrie, MAP_MASQ_SRC);
        let no_masq = take!(e, LpmTrie, MAP_NO_MASQ);
        let metrics = take!(e, PerCpuHashMap, MAP_METRICS);
        let drops = take!(e, PerCpuArray, MAP_DROPS);
        let events = take!(e, PerCpuArray, MAP_EVENTS);
        let egress = EgressMaps {
            policy: take!(e, LpmTrie, MAP_EGW_POLICY),
            config: take!(e, Array, MAP_EGW_CONFIG),
            stats: take!(e, PerCpuArray, MAP_EGW_STATS),
        };
        let mut me = ServiceLb {
            prog,
            cfg: *cfg,
            services,
            backends,
            maglev,
            revnat,
            srcrange,
            affinity,
            config,
            devices,
            masq_src,
            no_masq,
            flows: FlowMaps {
                ct,
                nat,
                metrics,
                drops,
                events,
            },
            egress,
            backend_v4: std::collections::HashMap::new(),
            nr_cpus: aya::util::nr_cpus()
                .map_err(|(_, e)| Error::map(MAP_METRICS, "count CPUs", MapError::IoError(e)))?,
        };
        let mut c = me.read_config()?;
        c.maglev_m = cfg.maglev_table_size;
        c.seed = cfg.hash_seed;
        c.nat_min = cfg.nat_port_min;
        c.nat_max = cfg.nat_port_max;
        me.write_config(c)?;
        Ok(me)
    }

    fn read_config(&self) -> Result<Config> {
        self.config
            .get(&0, 0)
            .map_err(|e| Error::map(MAP_CONFIG, "read", e))
    }

    fn write_config(&mut self, c: Config) -> Result<()> {
        self.config
            .set(0, c, 0)
            .map_err(|e| Error::map(MAP_CONFIG, "write", e))
    }

    /// The configuration in use.
    pub fn config(&self) -> &LbConfig {
        &self.cfg
    }

    /// The pin root in use.
    pub fn pin_root(&self) -> &Path {
        &self.prog.root
    }

    /// The load balancer's folder under the pin root (`lb_v3`).
    pub fn pin_dir(&self) -> &Path {
        &self.prog.dir
    }

    /// Attaches both programs to `ifindex` (tc ingress and egress, TCX links
    /// pinned in the folder, placed by the ordering policy). Idempotent.
    /// Set the device's addresses ([`ServiceLb::set_device`]) for SNAT.
    pub fn attach(&mut self, ifindex: u32) -> Result<()> {
        self.prog.attach(ifindex)?;
        self.prog.attach_spec(&SERVICE_LB_EGRESS, ifindex)?;
        tracing::info!(
            ifindex,
            tcx = self.prog.tcx,
            "service load balancer attached"
        );
        Ok(())
    }

    /// Detaches both programs from `ifindex` and forgets its addresses.
    /// Idempotent.
    pub fn detach(&mut self, ifindex: u32) -> Result<()> {
        self.prog.detach_spec(&SERVICE_LB_EGRESS, ifindex)?;
        self.prog.detach(ifindex)?;
        remove(&mut self.devices, MAP_DEVICES, &ifindex)
    }

    /// Interfaces with a pinned ingress link.
    pub fn attached(&self) -> Result<Vec<u32>> {
        self.prog.linked()
    }

    /// Sets the addresses SNAT and masquerade use on `ifindex` (a family
    /// without one: flows that need it are dropped, counted).
    pub fn set_device(&mut self, ifindex: u32, addrs: DeviceAddrs) -> Result<()> {
        let d = Device {
            v4: addrs.v4.map_or([0; 16], |a| addr16(IpAddr::V4(a))),
            v6: addrs.v6.map_or([0; 16], |a| a.octets()),
        };
        self.devices
            .insert(ifindex, d, 0)
            .map_err(|e| Error::map(MAP_DEVICES, "insert", e))
    }

    /// Writes a backend (before any LUT refers to it).
    pub fn upsert_backend(&mut self, id: BackendId, b: &BackendValue) -> Result<()> {
        if id.0 == 0 {
            return Err(invalid("backend id", "0 is reserved"));
        }
        let v = BackendVal {
            addr: addr16(b.addr),
            port: b.port.to_be(),
            proto: b.proto.number(),
            flags: if b.local { BACKEND_LOCAL } else { 0 },
        };
        self.backends
            .insert(id.0, v, 0)
            .map_err(|e| Error::map(MAP_BACKENDS, "insert", e))?;
        self.backend_v4.insert(id.0, b.addr.is_ipv4());
        Ok(())
    }

    /// Deletes a backend (after the LUTs stopped referring to it). Flows
    /// still tracked to it are reset by the program on their next packet
    /// (TCP RST, ICMP unreachable otherwise). Idempotent.
    pub fn delete_backend(&mut self, id: BackendId) -> Result<()> {
        remove(&mut self.backends, MAP_BACKENDS, &id.0)?;
        self.backend_v4.remove(&id.0);
        Ok(())
    }

    /// Writes a frontend and what it does: reverse NAT entry, source ranges,
    /// Maglev table, counters, the address marker, then the frontend entry
    /// itself (so the program never sees it half-written). `entry.lut` has
    /// exactly M slots naming backends written by `upsert_backend`, of the
    /// frontend's family, or none. Replaces a previous entry of the
    /// frontend, including one with another id.
    ///
    /// The table is written under the generation the frontend does not use,
    /// and the frontend entry switches to it in one update: a new flow picks
    /// its backend from the old table or the new one, never a mix. An id
    /// serves one frontend (as the planner allocates them): frontends sharing
    /// an id would share one table and one generation.
    pub fn upsert_service(&mut self, f: &Frontend, entry: &ServiceEntry<'_>) -> Result<()> {
        let m = self.cfg.maglev_table_size;
        if entry.id == 0 {
            return Err(invalid("service id", "0 is reserved"));
        }
        if !entry.lut.is_empty() && entry.lut.len() != m as usize {
            return Err(invalid(
                "Maglev table",
                format!("{} slots, the table size is {m}", entry.lut.len()),
            ));
        }
        let v4 = f.addr.is_ipv4();
        for id in entry.lut.ids() {
            let b_v4 = match self.backend_v4.get(id) {
                Some(b_v4) => *b_v4,
                None => {
                    // Only "not there" means not written; any other failure is the
                    // map's, and says so.
                    let b = self.backends.get(id, 0).map_err(|e| {
                        if not_found(&e) {
                            invalid("Maglev table", format!("backend {id} is not written"))
                        } else {
                            Error::map(MAP_BACKENDS, "look up", e)
                        }
                    })?;
                    let b_v4 = ip_of(b.addr).is_ipv4();
                    self.backend_v4.insert(*id, b_v4);
                    b_v4
                }
            };
            if b_v4 != v4 {
                return Err(invalid(
                    "Maglev table",
                    format!("backend {id} is of the other address family"),
                ));
            }
        }
        for r in entry.source_ranges {
            if r.addr().is_ipv4() != v4 {
                return Err(invalid(
                    "source range",
                    format!("{r}: other address family"),
                ));
            }
        }
        let key = svc_key(f);
        let previous = self.services.get(&key, 0).ok();
        // The generation not in use; a frontend new to this id starts with the first.
        let alt = previous.is_some_and(|p| p.svc_id == entry.id && p.flags & SVC_LUT_ALT == 0);
        let generation = if alt { LUT_ALT } else { 0 };

        let rn = RevNat {
            addr: key.addr,
            port: key.port,
            pad: [0; 2],
        };
        self.revnat
            .insert(entry.id, rn, 0)
            .map_err(|e| Error::map(MAP_REVNAT, "insert", e))?;
        self.sync_source_ranges(entry.id, entry.source_ranges)?;
        let written = self.write_lut(entry.id, generation, entry.lut)?;
        match self
            .flows
            .metrics
            .insert(entry.id, self.zero_metrics()?, BPF_NOEXIST)
        {
            Ok(()) => {}
            Err(e) if exists(&e) => {}
            Err(e) => return Err(Error::map(MAP_METRICS, "insert", e)),
        }
        self.services
            .insert(marker_key(key.addr), SvcVal::default(), 0)
            .map_err(|e| Error::map(MAP_SERVICES, "insert", e))?;
        let mut flags = 0;
        if entry.local_only {
            flags |= SVC_LOCAL_ONLY;
        }
        let timeout = entry.affinity_timeout.map(|d| {
            // At least a second: 0 would disable the affinity silently.
            u32::try_from(d.as_secs()).unwrap_or(u32::MAX).max(1)
        });
        if timeout.is_some() {
            flags |= SVC_AFFINITY;
        }
        if !entry.source_ranges.is_empty() {
            flags |= SVC_SRC_RANGES;
        }
        if alt {
            flags |= SVC_LUT_ALT;
        }
        let v = SvcVal {
            svc_id: entry.id,
            flags,
            affinity_timeout_s: timeout.unwrap_or(0),
            // At most MAX_BACKENDS (MaglevTable's invariant).
            backend_count: u32::try_from(entry.lut.ids().len()).unwrap_or(u32::MAX),
        };
        self.services
            .insert(key, v, 0)
            .map_err(|e| Error::map(MAP_SERVICES, "insert", e))?;
        // Another id's state goes entirely; of this id, the other generation and what this
        // one held past its new end.
        if let Some(p) = previous
            && p.svc_id != entry.id
        {
            self.forget_service_id(p.svc_id)?;
        }
        self.delete_lut_chunks(entry.id, generation ^ LUT_ALT, 0)?;
        self.delete_lut_chunks(entry.id, generation, written)
    }

    /// Writes `lut` as chunks `0..` of `generation`; returns how many.
    fn write_lut(&mut self, svc_id: u32, generation: u32, lut: &MaglevTable) -> Result<u32> {
        let total = lut.encoded_len();
        let mut v = LutChunk {
            bytes: [0; LUT_BYTES],
        };
        let mut n = 0u32;
        let mut offset = 0;
        while offset < total {
            let filled = lut.encode_part(offset, &mut v.bytes);
            if let Some(rest) = v.bytes.get_mut(filled..) {
                rest.fill(0);
            }
            // At least one byte per chunk (encode_part fills whole chunks until the end).
            offset += filled.max(1);
            let k = LutKey {
                svc_id,
                chunk: n | generation,
            };
            self.maglev
                .insert(k, v, 0)
                .map_err(|e| Error::map(MAP_MAGLEV, "insert", e))?;
            n += 1;
        }
        Ok(n)
    }

    fn zero_metrics(&self) -> Result<PerCpuValues<SvcMetrics>> {
        PerCpuValues::try_from(vec![SvcMetrics::default(); self.nr_cpus])
            .map_err(|e| Error::map(MAP_METRICS, "build", MapError::IoError(e)))
    }

    /// Deletes chunks `from..` of one generation of a table.
    fn delete_lut_chunks(&mut self, svc_id: u32, generation: u32, from: u32) -> Result<()> {
        let last = lut_chunks(rackd_types::maglev::MAX_BACKENDS, MAGLEV_MAX);
        for chunk in from..last {
            let k = LutKey {
                svc_id,
                chunk: chunk | generation,
            };
            match self.maglev.remove(&k) {
                Ok(()) => {}
                // Chunks are written from 0 up: the first absent one ends them.
                Err(e) if not_found(&e) => break,
                Err(e) => return Err(Error::map(MAP_MAGLEV, "remove", e)),
            }
        }
        Ok(())
    }

    fn delete_lut(&mut self, svc_id: u32) -> Result<()> {
        self.delete_lut_chunks(svc_id, 0, 0)?;
        self.delete_lut_chunks(svc_id, LUT_ALT, 0)
    }

    /// The table a frontend entry names, `None` when a chunk is missing or its bytes are
    /// not a table (both mean new flows find no backend).
    fn read_lut(&self, v: &SvcVal) -> Option<MaglevTable> {
        let n = usize::try_from(v.backend_count).ok()?;
        if n == 0 {
            return Some(MaglevTable::empty());
        }
        let m = self.cfg.maglev_table_size;
        let generation = if v.flags & SVC_LUT_ALT != 0 {
            LUT_ALT
        } else {
            0
        };
        let mut bytes = Vec::new();
        for chunk in 0..lut_chunks(n, m) {
            let k = LutKey {
                svc_id: v.svc_id,
                chunk: chunk | generation,
            };
            bytes.extend_from_slice(&self.maglev.get(&k, 0).ok()?.bytes);
        }
        MaglevTable::decode(&bytes, n, m as usize).ok()
    }

    fn forget_service_id(&mut self, svc_id: u32) -> Result<()> {
        self.delete_lut(svc_id)?;
        // A reused id must not inherit clients pinned to other backends.
        let mut stale = Vec::new();
        for k in self.affinity.keys() {
            let k = k.map_err(|e| Error::map(MAP_AFFINITY, "iterate", e))?;
            if k.svc_id == svc_id {
                stale.push(k);
            }
        }
        for k in &stale {
            remove(&mut self.affinity, MAP_AFFINITY, k)?;
        }
        self.sync_source_ranges(svc_id, &[])?;
        remove(&mut self.revnat, MAP_REVNAT, &svc_id)?;
        match self.flows.metrics.remove(&svc_id) {
            Ok(()) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(Error::map(MAP_METRICS, "remove", e)),
        }
    }

    fn sync_source_ranges(&mut self, svc_id: u32, ranges: &[IpNet]) -> Result<()> {
        let want: BTreeSet<(u32, [u8; 16])> = ranges.iter().map(prefix16).collect();
        let mut have = BTreeSet::new();
        for k in self.srcrange.keys() {
            let k = k.map_err(|e| Error::map(MAP_SRCRANGE, "iterate", e))?;
            let d = k.data();
            if d.svc_id == svc_id {
                have.insert((k.prefix_len() - 32, d.addr));
            }
        }
        for (plen, addr) in want.difference(&have) {
            let k = LpmKey::new(
                32 + plen,
                SrcRangeData {
                    svc_id,
                    addr: *addr,
                },
            );
            self.srcrange
                .insert(&k, 1, 0)
                .map_err(|e| Error::map(MAP_SRCRANGE, "insert", e))?;
        }
        for (plen, addr) in have.difference(&want) {
            let k = LpmKey::new(
                32 + plen,
                SrcRangeData {
                    svc_id,
                    addr: *addr,
                },
            );
            match self.srcrange.remove(&k) {
                Ok(()) => {}
                Err(e) if not_found(&e) => {}
                Err(e) => return Err(Error::map(MAP_SRCRANGE, "remove", e)),
            }
        }
        Ok(())
    }

    /// Deletes a frontend (first, so no new flow starts), then its LUT,
    /// source ranges, reverse NAT entry and counters, and the address
    /// marker when no other frontend has the address. Idempotent.
    pub fn delete_service(&mut self, f: &Frontend) -> Result<()> {
        let key = svc_key(f);
        let Ok(v) = self.services.get(&key, 0) else {
            return Ok(());
        };
        remove(&mut self.services, MAP_SERVICES, &key)?;
        let mut addr_used = false;
        for k in self.services.keys() {
            let k = k.map_err(|e| Error::map(MAP_SERVICES, "iterate", e))?;
            if k.addr == key.addr && k.proto != 0 {
                addr_used = true;
                break;
            }
        }
        if !addr_used {
            remove(&mut self.services, MAP_SERVICES, &marker_key(key.addr))?;
        }
        // The id may still serve another frontend of the same service.
        let mut id_used = false;
        for item in self.services.iter() {
            let (_, sv) = item.map_err(|e| Error::map(MAP_SERVICES, "iterate", e))?;
            if sv.svc_id == v.svc_id {
                id_used = true;
                break;
            }
        }
        if !id_used {
            self.forget_service_id(v.svc_id)?;
        }
        Ok(())
    }

    /// Sets masquerade: the switches per family and the two CIDR sets
    /// (entries not listed are removed).
    pub fn set_masquerade(&mut self, m: &MasqConfig) -> Result<()> {
        sync_lpm(&mut self.masq_src, MAP_MASQ_SRC, &m.pod_cidrs)?;
        sync_lpm(&mut self.no_masq, MAP_NO_MASQ, &m.non_masq)?;
        let mut c = self.read_config()?;
        c.masq_v4 = u8::from(m.v4);
        c.masq_v6 = u8::from(m.v6);
        self.write_config(c)
    }

    /// Every frontend with its LUT summary, sorted (the ids a restarted
    /// control plane recovers; `rackctl bpf lb list`).
    pub fn services(&self) -> Result<Vec<ServiceDump>> {
        let mut out = Vec::new();
        for item in self.services.iter() {
            let (k, v) = item.map_err(|e| Error::map(MAP_SERVICES, "iterate", e))?;
            let Some(proto) = L4Proto::from_number(k.proto) else {
                continue; // an address marker
            };
            let mut backends: Vec<(BackendId, u32)> = self
                .read_lut(&v)
                .map(|t| t.slots_per_backend())
                .unwrap_or_default()
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .map(|(id, n)| (BackendId(id), n))
                .collect();
            backends.sort_unstable();
            out.push(ServiceDump {
                frontend: Frontend {
                    addr: ip_of(k.addr),
                    port: u16::from_be(k.port),
                    proto,
                },
                id: v.svc_id,
                local_only: v.flags & SVC_LOCAL_ONLY != 0,
                affinity_timeout: (v.flags & SVC_AFFINITY != 0)
                    .then(|| Duration::from_secs(u64::from(v.affinity_timeout_s))),
                source_ranges: v.flags & SVC_SRC_RANGES != 0,
                backends,
            });
        }
        out.sort_by_key(|s| s.frontend);
        Ok(out)
    }

    /// Every backend, by id.
    pub fn backends(&self) -> Result<Vec<(BackendId, BackendValue)>> {
        let mut out = Vec::new();
        for item in self.backends.iter() {
            let (id, v) = item.map_err(|e| Error::map(MAP_BACKENDS, "iterate", e))?;
            let Some(proto) = L4Proto::from_number(v.proto) else {
                continue;
            };
            out.push((
                BackendId(id),
                BackendValue {
                    addr: ip_of(v.addr),
                    port: u16::from_be(v.port),
                    proto,
                    local: v.flags & BACKEND_LOCAL != 0,
                },
            ));
        }
        out.sort_by_key(|(id, _)| *id);
        Ok(out)
    }

    /// Every conntrack entry (`rackctl bpf ct list`).
    pub fn ct_entries(&self) -> Result<Vec<CtEntry>> {
        self.flows.ct_entries()
    }

    /// Every NAT entry (`rackctl bpf nat list`).
    pub fn nat_entries(&self) -> Result<Vec<NatEntry>> {
        self.flows.nat_entries()
    }

    /// Deletes CT and NAT entries that expired before `now_ns`; see [`LbReader::gc`].
    pub fn gc(&mut self, now_ns: u64) -> Result<GcStats> {
        self.flows.gc(now_ns)
    }

    /// Per service packets/bytes, drops by reason, events, CT and NAT occupancy.
    pub fn counters(&self) -> Result<LbCounters> {
        self.flows.counters()
    }

    /// Runs one program on `packet` with BPF_PROG_TEST_RUN against the live
    /// maps; the packet "arrives" on ifindex 1 (lo) of the calling thread's
    /// namespace. Verdicts: `Pass` = TCX_NEXT (untouched), `Reply` =
    /// redirected (a reject sent back, or forwarded), `Other(0)` = TC_ACT_OK
    /// (translated, to the stack), `Other(2)` = dropped.
    pub fn test_run(&self, hook: LbHook, packet: &[u8]) -> Result<RunOutcome> {
        let name = match hook {
            LbHook::Ingress => PROG_IN,
            LbHook::Egress => PROG_OUT,
            LbHook::Tunnel => PROG_TUNNEL,
        };
        load::test_run(&self.prog.ebpf, Hook::Tc, name, packet, 1)
    }

    /// Removes the load balancer (both programs' links, detached; its
    /// maps; its folder; see [`crate::uninstall_program`]).
    pub fn uninstall(self) -> Result<()> {
        let root = self.prog.root.clone();
        drop(self);
        crate::pin::uninstall_program(&root, ProgramKind::ServiceLb)
    }
}

fn sum(m: &PerCpuArray<MapData, u64>, name: &'static str, slot: u32) -> Result<u64> {
    let v = m.get(&slot, 0).map_err(|e| Error::map(name, "read", e))?;
    Ok(v.iter().sum())
}

fn sync_lpm(
    m: &mut LpmTrie<MapData, [u8; 16], u8>,
    name: &'static str,
    nets: &[IpNet],
) -> Result<()> {
    let want: BTreeSet<(u32, [u8; 16])> = nets.iter().map(prefix16).collect();
    let mut have = BTreeSet::new();
    for k in m.keys() {
        let k = k.map_err(|e| Error::map(name, "iterate", e))?;
        have.insert((k.prefix_len(), k.data()));
    }
    for (plen, addr) in want.difference(&have) {
        m.insert(&LpmKey::new(*plen, *addr), 1, 0)
            .map_err(|e| Error::map(name, "insert", e))?;
    }
    for (plen, addr) in have.difference(&want) {
        match m.remove(&LpmKey::new(*plen, *addr)) {
            Ok(()) => {}
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(Error::map(name, "remove", e)),
        }
    }
    Ok(())
}
