//! The flow maps (conntrack, NAT) and the counters: read, listed and garbage-collected
//! either by the [`ServiceLb`](super::ServiceLb) that loaded the programs or by an
//! [`LbReader`] opened from the pins alone, so the admin API and the garbage collector never
//! wait for the controller that owns the programs and service maps.

use std::path::Path;

use aya::maps::{HashMap, Map, MapData, PerCpuArray, PerCpuHashMap};

use super::maps::*;
use super::types::*;
use super::{EgressCounters, remove, sum};
use crate::error::{Error, Result};
use crate::registry::ProgramKind;

/// The flow and counter maps of one load balancer.
pub(crate) struct FlowMaps {
    pub(crate) ct: HashMap<MapData, Tuple, CtVal>,
    pub(crate) nat: HashMap<MapData, Tuple, NatVal>,
    pub(crate) metrics: PerCpuHashMap<MapData, u32, SvcMetrics>,
    pub(crate) drops: PerCpuArray<MapData, u64>,
    pub(crate) events: PerCpuArray<MapData, u64>,
}

impl FlowMaps {
    /// Every conntrack entry (`rackctl bpf ct list`).
    pub(crate) fn ct_entries(&self) -> Result<Vec<CtEntry>> {
        let mut out = Vec::new();
        for item in self.ct.iter() {
            let (k, v) = item.map_err(|e| Error::map(MAP_CT, "iterate", e))?;
            let dir = match k.dir {
                DIR_SVC => CtDir::Service,
                DIR_REPLY => CtDir::Reply,
                DIR_INBOUND => CtDir::Inbound,
                _ => continue,
            };
            out.push(CtEntry {
                tuple: tuple_of(&k),
                dir,
                expires_ns: v.expires_ns,
                backend: BackendId(v.backend_id),
                svc_id: v.svc_id,
                tcp_flags_seen: v.tcp_flags_seen,
                state: v.state,
                snat: v.flags & CT_F_SNAT != 0,
            });
        }
        Ok(out)
    }

    /// Every NAT entry (`rackctl bpf nat list`).
    pub(crate) fn nat_entries(&self) -> Result<Vec<NatEntry>> {
        let mut out = Vec::new();
        for item in self.nat.iter() {
            let (k, v) = item.map_err(|e| Error::map(MAP_NAT, "iterate", e))?;
            out.push(NatEntry {
                tuple: tuple_of(&k),
                egress: k.dir == DIR_NAT_OUT,
                to_addr: ip_of(v.addr),
                to_port: u16::from_be(v.port),
                svc_id: v.svc_id,
                expires_ns: v.expires_ns,
            });
        }
        Ok(out)
    }

    /// Deletes CT and NAT entries that expired before `now_ns`
    /// (CLOCK_MONOTONIC, [`crate::sys::monotonic_ns`]). One pass collects,
    /// a second deletes key by key, so the programs are never stopped; an
    /// entry refreshed in between is deleted anyway and recreated by its
    /// next packet (same backend: the LUT decides). The maps are LRU, so a
    /// late GC costs evictions, not failures.
    pub(crate) fn gc(&mut self, now_ns: u64) -> Result<GcStats> {
        let mut st = GcStats::default();
        let mut expired = Vec::new();
        for item in self.ct.iter() {
            let (k, v) = item.map_err(|e| Error::map(MAP_CT, "iterate", e))?;
            st.ct_scanned += 1;
            if v.expires_ns <= now_ns {
                expired.push(k);
            }
        }
        for k in &expired {
            remove(&mut self.ct, MAP_CT, k)?;
        }
        st.ct_deleted = expired.len() as u64;
        expired.clear();
        for item in self.nat.iter() {
            let (k, v) = item.map_err(|e| Error::map(MAP_NAT, "iterate", e))?;
            st.nat_scanned += 1;
            if v.expires_ns <= now_ns {
                expired.push(k);
            }
        }
        for k in &expired {
            remove(&mut self.nat, MAP_NAT, k)?;
        }
        st.nat_deleted = expired.len() as u64;
        Ok(st)
    }

    /// Per service packets/bytes, drops by reason, events, CT and NAT
    /// occupancy (sums over CPUs).
    pub(crate) fn counters(&self) -> Result<LbCounters> {
        let mut out = LbCounters::default();
        for item in self.metrics.iter() {
            let (id, per_cpu) = item.map_err(|e| Error::map(MAP_METRICS, "iterate", e))?;
            let mut c = ServiceCounters::default();
            for v in per_cpu.iter() {
                c.packets += v.packets;
                c.bytes += v.bytes;
            }
            out.services.push((id, c));
        }
        out.services.sort_by_key(|(id, _)| *id);
        for (slot, reason) in (0u32..).zip(DropReason::ALL) {
            out.drops.push((reason, sum(&self.drops, MAP_DROPS, slot)?));
        }
        let ev = |slot| sum(&self.events, MAP_EVENTS, slot);
        out.events = LbEvents {
            nat_retries: ev(0)?,
            rst_sent: ev(1)?,
            icmp_sent: ev(2)?,
            malformed_passed: ev(3)?,
            redirected: ev(4)?,
            to_stack: ev(5)?,
            icmp_errors: ev(6)?,
        };
        out.ct_entries = self.ct.keys().count() as u64;
        out.nat_entries = self.nat.keys().count() as u64;
        Ok(out)
    }
}

/// The egress gateway's counters from its stats map (`EGW_ST_*` slots of `bpf/lb_egw.h`),
/// summed over CPUs.
pub(crate) fn egress_counters(stats: &PerCpuArray<MapData, u64>) -> Result<EgressCounters> {
    let s = |slot| sum(stats, MAP_EGW_STATS, slot);
    Ok(EgressCounters {
        tunnelled: s(0)?,
        snat: s(1)?,
        reply_tunnelled: s(2)?,
        drop_no_gateway: s(3)?,
        drop_no_egress_ip: s(4)?,
        drop_unsupported: s(5)?,
        drop_nat_failed: s(6)?,
        drop_tunnel_failed: s(7)?,
    })
}

/// The flow and counter maps of a running load balancer, opened from its pins (no program is
/// loaded or touched): for listings, counters and garbage collection beside the controller.
pub struct LbReader {
    flows: FlowMaps,
    /// The egress gateway's counters (pinned whether or not the gateway is on).
    egress_stats: PerCpuArray<MapData, u64>,
}

impl std::fmt::Debug for LbReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LbReader").finish_non_exhaustive()
    }
}

fn open<T: TryFrom<Map, Error = aya::maps::MapError>>(dir: &Path, name: &'static str) -> Result<T> {
    let md = MapData::from_pin(dir.join(name)).map_err(|e| Error::map(name, "open pinned", e))?;
    let m = Map::from_map_data(md).map_err(|e| Error::map(name, "open pinned", e))?;
    T::try_from(m).map_err(|e| Error::map(name, "open pinned", e))
}

impl LbReader {
    /// Opens the maps pinned under `pin_root` by a [`ServiceLb`](super::ServiceLb) of this
    /// layout version; fails if none is pinned there.
    pub fn open(pin_root: impl AsRef<Path>) -> Result<Self> {
        let dir = crate::pin::program_dir(pin_root.as_ref(), ProgramKind::ServiceLb);
        Ok(Self {
            flows: FlowMaps {
                ct: open(&dir, MAP_CT)?,
                nat: open(&dir, MAP_NAT)?,
                metrics: open(&dir, MAP_METRICS)?,
                drops: open(&dir, MAP_DROPS)?,
                events: open(&dir, MAP_EVENTS)?,
            },
            egress_stats: open(&dir, MAP_EGW_STATS)?,
        })
    }

    /// Every conntrack entry.
    pub fn ct_entries(&self) -> Result<Vec<CtEntry>> {
        self.flows.ct_entries()
    }

    /// Every NAT entry.
    pub fn nat_entries(&self) -> Result<Vec<NatEntry>> {
        self.flows.nat_entries()
    }

    /// Deletes CT and NAT entries that expired before `now_ns` (CLOCK_MONOTONIC,
    /// [`crate::sys::monotonic_ns`]); see the flow maps' notes in README.md.
    pub fn gc(&mut self, now_ns: u64) -> Result<GcStats> {
        self.flows.gc(now_ns)
    }

    /// Per service packets/bytes, drops by reason, events, CT and NAT occupancy.
    pub fn counters(&self) -> Result<LbCounters> {
        self.flows.counters()
    }

    /// The egress gateway's counters (all zero while it is off).
    pub fn egress_counters(&self) -> Result<EgressCounters> {
        egress_counters(&self.egress_stats)
    }
}
