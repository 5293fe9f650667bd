//! The service datapath's controller (`--kube-proxy-replacement`): Services, their
//! EndpointSlices and Pods, LB-IPAM's addresses, this node's devices and the ip-masq-agent
//! file become the eBPF load balancer's maps and links.
//!
//! ```text
//!  ConfigState + LbStatus ─▶ rackd_services::render (only the Services a change touches)
//!                              ─▶ ServiceTable ─▶ Planner (ids, Maglev) ─▶ ordered ops ─▶ LbMaps
//!  devices + HostInfo ────────▶ attach / detach, SNAT addresses per device ──────────────▶ LbMaps
//!  ip-masq-agent file (masq.rs) + Node podCIDRs ─▶ masquerade sets ─────────────────────▶ LbMaps
//!  CiliumEgressGatewayPolicy + Pods + Nodes (egress.rs) ─▶ egressgw ─▶ this node's rules ─▶ LbMaps
//! ```
//!
//! One owning task (the controller runner) holds the maps. A restart adopts the pinned maps:
//! the ids of frontends and backends are read back so established flows keep their backend
//! (their CT entries name backend ids), the first plan rewrites what changed and the
//! frontends and backends nothing claims any more are removed after it.

pub mod egress;
pub mod housekeeping;
pub mod maps;
pub mod masq;
pub mod views;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use imbl::OrdMap;
use ipnet::IpNet;
use rackd_model::Snapshot;
use rackd_model::rackd_types::ObjectCondition;
use rackd_services::ids::{BackendId, IdAllocator, ServiceId};
use rackd_services::maglev::MaglevConfig;
use rackd_services::plan::{Op, Planner};
use rackd_services::render::{affected_services, render_service};
use rackd_services::{Backend, Frontend, Problem, ServiceName, ServiceTable};
use tokio::sync::watch;
use tracing::{info, warn};

use self::maps::{LbMaps, MapsError};
use self::masq::MasqState;
use crate::bgp::render::HostInfo;
use crate::config::ConfigState;
use crate::controller::{Context, Controller, Outcome};
use crate::l2::desired::Device;
use crate::lbipam_ctl::{LbIps, LbStatus};

/// What the admin API reads: the table in force and the ids it is programmed with.
#[derive(Debug, Clone, Default)]
pub struct SvcStatus {
    /// Frontends as desired (and, once `programmed`, as written).
    pub table: ServiceTable,
    /// Service id per programmed frontend.
    pub service_ids: OrdMap<Frontend, ServiceId>,
    /// Backend id per programmed backend, and whether it is local.
    pub backend_ids: OrdMap<Backend, (BackendId, bool)>,
    /// Interfaces the programs are attached to.
    pub devices: Arc<[String]>,
    /// The egress gateway, when on.
    pub egress: Option<Arc<egress::EgressStatus>>,
}

/// Masquerade as configured (`--enable-bpf-masquerade`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasqSwitches {
    pub ipv4: bool,
    pub ipv6: bool,
}

/// The controller; see the module docs.
#[derive(Debug)]
pub struct ServiceLbController<M: LbMaps> {
    node: String,
    patterns: Vec<String>,
    maps: M,
    planner: Planner,
    maglev: MaglevConfig,
    /// The pinned maps held entries of a previous run: after the first plan, prune what
    /// nothing claimed.
    prune_pending: bool,
    /// A plan was applied only in part: rebuild the planner from the maps before the next.
    rebuild: bool,
    table: ServiceTable,
    problems: BTreeMap<ServiceName, Vec<Problem>>,
    /// The inputs last rendered.
    seen: Option<(Snapshot, LbIps)>,
    /// ifindex → (name, v4, v6) as attached.
    attached: BTreeMap<u32, (String, Option<Ipv4Addr>, Option<Ipv6Addr>)>,
    masq: Option<MasqSwitches>,
    masq_written: Option<datapath::lb::MasqConfig>,
    /// The egress gateway (`--enable-egress-gateway`).
    egress: Option<egress::EgressState>,
    status: SvcStatus,
    /// Reverse of `status.backend_ids`.
    backend_by_id: BTreeMap<BackendId, Backend>,
    conditions: Arc<[ObjectCondition]>,
    tx: watch::Sender<Arc<SvcStatus>>,
}

/// Why a run failed (the runner retries with backoff).
#[derive(Debug, thiserror::Error)]
pub enum SvcError {
    #[error(transparent)]
    Maps(#[from] MapsError),
}

impl<M: LbMaps> ServiceLbController<M> {
    /// A controller over `maps` (pinned maps of a previous run are adopted: their ids are
    /// read back).
    pub fn new(
        node: &str,
        devices: &[String],
        mut maps: M,
        maglev: MaglevConfig,
        masq: Option<MasqSwitches>,
        egress: Option<datapath::lb::EgressTunnel>,
    ) -> Result<(Self, watch::Receiver<Arc<SvcStatus>>), SvcError> {
        let (planner, restored) = restore_planner(&mut maps, maglev)?;
        let (tx, rx) = watch::channel(Arc::new(SvcStatus::default()));
        let attached = maps
            .attached()?
            .into_iter()
            .map(|i| (i, (String::new(), None, None)))
            .collect();
        Ok((
            Self {
                node: node.to_owned(),
                patterns: devices.to_vec(),
                maps,
                planner,
                maglev,
                prune_pending: restored,
                rebuild: false,
                table: ServiceTable::default(),
                problems: BTreeMap::new(),
                seen: None,
                attached,
                masq,
                masq_written: None,
                egress: egress.map(egress::EgressState::new),
                status: SvcStatus::default(),
                backend_by_id: BTreeMap::new(),
                conditions: Arc::from([]),
                tx,
            },
            rx,
        ))
    }

    /// The maps (tests look at the fake).
    pub fn maps(&self) -> &M {
        &self.maps
    }

    /// Attach to the devices that match, detach from the others; SNAT addresses follow.
    fn sync_devices(&mut self, devices: &[Device], host: &HostInfo) -> Result<(), MapsError> {
        let want: BTreeMap<u32, (String, Option<Ipv4Addr>, Option<Ipv6Addr>)> =
            select_devices(devices, host, &self.patterns)
                .into_iter()
                .map(|(d, v4, v6)| (d.ifindex, (d.name.clone(), v4, v6)))
                .collect();
        for (ifindex, v) in &want {
            if self.attached.get(ifindex) != Some(v) {
                self.maps.attach(*ifindex, v.1, v.2)?;
                info!(device = %v.0, ifindex, v4 = ?v.1, v6 = ?v.2, "service datapath attached");
                self.attached.insert(*ifindex, v.clone());
            }
        }
        let gone: Vec<u32> = self
            .attached
            .keys()
            .filter(|i| !want.contains_key(i))
            .copied()
            .collect();
        for ifindex in gone {
            self.maps.detach(ifindex)?;
            info!(ifindex, "service datapath detached");
            self.attached.remove(&ifindex);
        }
        Ok(())
    }

    /// The Services to render again: all on the first run (or `full`), else those the
    /// changes touch.
    fn affected(&self, snap: &Snapshot, lb: &LbIps, full: bool) -> Option<BTreeSet<ServiceName>> {
        if full {
            return None;
        }
        let (prev_snap, prev_lb) = self.seen.as_ref()?;
        let mut out = affected_services(prev_snap, snap);
        if !prev_lb.ptr_eq(lb) {
            for d in prev_lb.diff(lb) {
                let k = match d {
                    imbl::ordmap::DiffItem::Add(k, _) | imbl::ordmap::DiffItem::Remove(k, _) => k,
                    imbl::ordmap::DiffItem::Update { new: (k, _), .. } => k,
                };
                out.insert(k.clone());
            }
        }
        // A change of this node's Node (its pod CIDRs) or a Pod can move backends between
        // local and remote: the render decides from nodeName or the Pod; Pods are in
        // affected_services, the Node is not.
        let node_changed = snap
            .changes_since(prev_snap)
            .iter()
            .any(|(k, _)| k.kind == rackd_model::rackd_types::Kind::Node && k.name == self.node);
        if node_changed {
            return None;
        }
        Some(out)
    }

    fn render(&mut self, snap: &Snapshot, lb: &LbIps, full: bool) {
        let names: Vec<ServiceName> = match self.affected(snap, lb, full) {
            Some(set) => set.into_iter().collect(),
            None => {
                // Everything: Services gone since the last render included.
                let mut all: BTreeSet<ServiceName> = self.problems.keys().cloned().collect();
                all.extend(self.table_services());
                all.extend(snap.services().map(rackd_services::render::service_name));
                all.into_iter().collect()
            }
        };
        for name in names {
            let (entries, problems) = render_service(snap, lb, &self.node, &name);
            self.table.set_service(&name, entries);
            if problems.is_empty() {
                self.problems.remove(&name);
            } else {
                self.problems.insert(name, problems);
            }
        }
        self.seen = Some((snap.clone(), lb.clone()));
    }

    fn table_services(&self) -> BTreeSet<ServiceName> {
        self.table.iter().map(|(_, e)| e.service.clone()).collect()
    }

    /// Applies `ops` in order, keeping the published ids in step.
    fn apply(&mut self, ops: &[Op]) -> Result<(), MapsError> {
        ops.iter().try_for_each(|op| self.apply_one(op))
    }

    /// Applies one operation, keeping the published ids in step; a failure leaves the maps
    /// part-way through a plan, so the next run rebuilds the planner from them.
    fn apply_one(&mut self, op: &Op) -> Result<(), MapsError> {
        if let Err(e) = self.maps.apply(op) {
            self.rebuild = true;
            return Err(e);
        }
        match op {
            Op::UpsertBackend { id, value } => {
                let b = value.backend();
                self.status.backend_ids.insert(b, (*id, value.local));
                self.backend_by_id.insert(*id, b);
            }
            Op::DeleteBackend { id } => {
                if let Some(b) = self.backend_by_id.remove(id) {
                    self.status.backend_ids.remove(&b);
                }
            }
            Op::UpsertService { frontend, value } => {
                self.status.service_ids.insert(*frontend, value.id);
            }
            Op::DeleteService { frontend, .. } => {
                self.status.service_ids.remove(frontend);
            }
        }
        Ok(())
    }

    fn sync_masquerade(&mut self, snap: &Snapshot, masq: &MasqState) -> Result<(), MapsError> {
        let Some(sw) = &self.masq else {
            return Ok(());
        };
        let cidrs_of = |n: &rackd_model::k8s_openapi::api::core::v1::Node| -> Vec<IpNet> {
            n.spec
                .iter()
                .flat_map(|s| s.pod_cidrs.iter().flatten().chain(s.pod_cidr.iter()))
                .filter_map(|c| c.parse::<IpNet>().ok())
                .map(|n| n.trunc())
                .collect()
        };
        let pod_cidrs: Vec<IpNet> = snap
            .node(&self.node)
            .map(cidrs_of)
            .unwrap_or_default()
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        // Pod to pod stays unmasqueraded across the cluster (native routing): every node's
        // pod CIDRs join the non-masquerade set, as Cilium's native-routing CIDR does.
        let non_masq: Vec<IpNet> = masq
            .non_masquerade
            .iter()
            .copied()
            .chain(snap.nodes().flat_map(cidrs_of))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let want = datapath::lb::MasqConfig {
            v4: sw.ipv4,
            v6: sw.ipv6,
            pod_cidrs,
            non_masq,
        };
        if self.masq_written.as_ref() != Some(&want) {
            self.maps.set_masquerade(&want)?;
            info!(
                pod_cidrs = ?want.pod_cidrs,
                non_masquerade = want.non_masq.len(),
                ipv4 = want.v4,
                ipv6 = want.v6,
                "masquerade set"
            );
            self.masq_written = Some(want);
        }
        Ok(())
    }

    fn publish(&mut self, masq: &MasqState, snap: &Snapshot) {
        let mut conds: Vec<ObjectCondition> = self
            .problems
            .values()
            .flatten()
            .chain(self.table.conflicts().iter())
            .map(Problem::to_condition)
            .collect();
        conds.extend(masq.condition.iter().cloned());
        match &self.egress {
            Some(e) => conds.extend(e.conditions().iter().cloned()),
            None => conds.extend(egress::disabled_conditions(snap)),
        }
        conds.sort_by(|a, b| a.object.cmp(&b.object));
        if *self.conditions != *conds {
            for c in &conds {
                warn!(condition = %c, "service datapath");
            }
            self.conditions = conds.into();
        }
        self.status.table = self.table.clone();
        self.status.devices = self.attached.values().map(|v| v.0.clone()).collect();
        self.status.egress = self.egress.as_ref().map(egress::EgressState::status);
        self.tx.send_replace(Arc::new(self.status.clone()));
    }
}

/// Reads the ids a previous run left in the pinned maps; `true` when there were any.
fn restore_planner<M: LbMaps>(
    maps: &mut M,
    maglev: MaglevConfig,
) -> Result<(Planner, bool), MapsError> {
    let (services, backends) = maps.restore()?;
    let restored = !services.is_empty() || !backends.is_empty();
    let (ids, problems) = IdAllocator::restore(services, backends);
    for p in problems {
        warn!(problem = ?p, "pinned service maps: entry not adopted");
    }
    Ok((Planner::new(maglev, ids), restored))
}

/// Devices to attach to, with their first global addresses: those matching `patterns`
/// (Cilium's syntax: a name, or a prefix ending in `+`), else every Ethernet device with a
/// global address. Loopback never.
pub fn select_devices<'a>(
    devices: &'a [Device],
    host: &HostInfo,
    patterns: &[String],
) -> Vec<(&'a Device, Option<Ipv4Addr>, Option<Ipv6Addr>)> {
    let matches = |name: &str| {
        patterns.iter().any(|p| match p.strip_suffix('+') {
            Some(prefix) => name.starts_with(prefix),
            None => name == p,
        })
    };
    devices
        .iter()
        .filter(|d| !d.loopback)
        .filter_map(|d| {
            let addrs = host.interfaces.get(&d.name);
            let v4 = addrs.and_then(|a| {
                a.iter().find_map(|ip| match ip {
                    IpAddr::V4(v) if !v.is_loopback() && !v.is_link_local() => Some(*v),
                    _ => None,
                })
            });
            let v6 = addrs.and_then(|a| {
                a.iter().find_map(|ip| match ip {
                    IpAddr::V6(v) if !v.is_loopback() && !v.is_unicast_link_local() => Some(*v),
                    _ => None,
                })
            });
            let chosen = if patterns.is_empty() {
                d.ether && (v4.is_some() || v6.is_some())
            } else {
                matches(&d.name)
            };
            chosen.then_some((d, v4, v6))
        })
        .collect()
}

impl<M: LbMaps> Controller for ServiceLbController<M> {
    const NAME: &'static str = "service-lb";
    type Inputs = (
        watch::Receiver<Arc<ConfigState>>,
        watch::Receiver<Arc<LbStatus>>,
        watch::Receiver<Arc<[Device]>>,
        watch::Receiver<Arc<HostInfo>>,
        watch::Receiver<Arc<MasqState>>,
        watch::Receiver<Arc<egress::EgressHolders>>,
    );
    type Error = SvcError;

    async fn reconcile(
        &mut self,
        (cfg, lb, devices, host, masq, holders): &(
            Arc<ConfigState>,
            Arc<LbStatus>,
            Arc<[Device]>,
            Arc<HostInfo>,
            Arc<MasqState>,
            Arc<egress::EgressHolders>,
        ),
        ctx: Context,
    ) -> Result<Outcome, SvcError> {
        // LB-IPAM's addresses are frontends: wait until they are known, so a restart does
        // not withdraw LoadBalancer frontends for a moment.
        if !cfg.loaded || !lb.settled {
            return Ok(Outcome::WAITING);
        }
        self.sync_devices(devices, host)?;
        let snap = &cfg.snapshot;
        if self.rebuild {
            // Part of a plan was not applied: start again from what the maps hold.
            let (planner, _) = restore_planner(&mut self.maps, self.maglev)?;
            self.planner = planner;
            self.prune_pending = true;
            self.rebuild = false;
            self.status.service_ids = OrdMap::new();
            self.status.backend_ids = OrdMap::new();
            self.backend_by_id.clear();
        }
        self.render(snap, &lb.ips, ctx.full);
        // The Maglev tables are computed on other threads while the operations are written
        // (services' `PendingPlan`).
        let plan = self.planner.plan_pending(&self.table);
        for f in &plan.failures {
            warn!(error = %f, "frontend not programmed");
        }
        if !plan.is_empty() {
            info!(ops = plan.len(), "service datapath: applying");
        }
        plan.apply_each(|op| self.apply_one(&op))?;
        if self.prune_pending {
            let prune = self.planner.prune_restored();
            if !prune.ops.is_empty() {
                info!(
                    ops = prune.ops.len(),
                    "service datapath: removing what a previous run left"
                );
            }
            self.apply(&prune.ops)?;
            self.prune_pending = false;
        }
        self.sync_masquerade(snap, masq)?;
        if let Some(e) = &mut self.egress {
            e.sync(&mut self.maps, &self.node, snap, host, holders, ctx.full)?;
        }
        self.publish(masq, snap);
        Ok(Outcome::DONE)
    }

    fn conditions(&self) -> Arc<[ObjectCondition]> {
        self.conditions.clone()
    }

    async fn shutdown(&mut self) {
        // The programs and maps stay pinned: traffic keeps flowing while rackd restarts
        // (`rackd datapath uninstall` removes them).
    }
}

#[cfg(test)]
mod tests;
