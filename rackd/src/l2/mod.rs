//! L2 announcements in the daemon: `CiliumL2AnnouncementPolicy` from the snapshot and
//! LB-IPAM's addresses become desired IP groups for the `l2announcer` ownership task, which
//! claims them under leases (`local` or `etcd`) and programs the eBPF ARP/NDP responder.
//!
//! ```text
//!  ConfigState + LbStatus + devices ─▶ L2Controller (desired::evaluate, pure) ─▶ NodeHandle::set_desired
//!  host layer link changes ─────────▶ NodeSender::link ─────────────────────────▶ ownership task
//!                                                              lease backend ◀───┘   │
//!                                                          Responder (eBPF) ◀────────┘
//! ```
//!
//! The controller evaluates the policies only when something they read changed (an L2
//! policy, a Service, this node's Node, LB-IPAM's addresses, the devices); the ownership task
//! hears only of changed groups.

pub mod desired;
pub mod responder;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use l2announcer::LeaseTimings;
use l2announcer::backend::{EtcdBackend, EtcdConfig, KubeBackend, KubeConfig, LocalBackend};
use l2announcer::node::{NodeConfig, NodeHandle, NodeSender, ShutdownReport, spawn};
use l2announcer::policy::DesiredGroup;
use rackd_model::Snapshot;
use rackd_model::rackd_types::{Kind, ObjectCondition};
use tokio::sync::watch;
use tracing::{info, warn};

use self::desired::Device;
use self::responder::DatapathAnnouncer;
use crate::config::ConfigState;
use crate::controller::{Context, Controller, Outcome};
use crate::host::HostFacts;
use crate::lbipam_ctl::{LbIps, LbStatus};

/// Where node leases and group claims live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseBackendKind {
    /// This node alone: it holds every group it is a candidate for. Single-node clusters only.
    Local,
    /// etcd v3: one lease per node, one create-if-absent key per IP group.
    Etcd {
        endpoints: Vec<String>,
        /// Key prefix, ending in `/`.
        prefix: String,
    },
    /// `coordination.k8s.io` Leases: one per node, one claim per IP group.
    Kubernetes {
        /// Where the Leases live (`--k8s-namespace`).
        namespace: String,
    },
}

/// How L2 announcements run.
#[derive(Debug, Clone)]
pub struct L2Options {
    pub backend: LeaseBackendKind,
    /// As given (sanitised at start, with a warning per correction, like Cilium).
    pub timings: LeaseTimings,
    /// Cilium's `--devices`: names or `prefix+`; empty = every Ethernet device.
    pub devices: Vec<String>,
    /// bpffs folder of the datapath's pins.
    pub pin_root: PathBuf,
}

/// Start-up errors of L2 announcements.
#[derive(Debug, thiserror::Error)]
pub enum L2Error {
    #[error("cannot load or adopt the eBPF ARP/NDP responder under {pin_root}")]
    Datapath {
        pin_root: PathBuf,
        #[source]
        source: datapath::Error,
    },
    /// The Kubernetes lease backend without a Kubernetes client (options prevent it).
    #[error("the kubernetes L2 lease backend needs the Kubernetes API (--enable-k8s)")]
    NoKubernetes,
}

/// Never: the L2 controller's runs cannot fail (the ownership task owns every I/O).
#[derive(Debug, thiserror::Error)]
#[error("unreachable")]
pub enum Never {}

/// The L2 announcement controller.
#[derive(Debug)]
pub struct L2Controller {
    node: Option<NodeHandle>,
    patterns: Vec<String>,
    node_name: String,
    last: Option<BTreeMap<IpAddr, DesiredGroup>>,
    /// The inputs last evaluated.
    seen: Option<(Snapshot, LbIps, Arc<[Device]>)>,
    conditions: Arc<[ObjectCondition]>,
    /// Policy evaluations so far (a run with nothing relevant changed evaluates nothing).
    evaluations: u64,
    /// Egress gateway failover: egress IPs this node is a gateway candidate for join the
    /// groups (svclb::egress::l2_groups).
    egress: bool,
}

impl L2Controller {
    /// Loads (or adopts) the responder, starts the ownership task on the chosen backend and
    /// follows the host's links (carrier changes go straight to the ownership task).
    pub async fn start(
        node_name: &str,
        opts: &L2Options,
        host: &HostFacts,
        kube: Option<&kube::Client>,
    ) -> Result<(Self, NodeSender), L2Error> {
        let (timings, fixes) = opts.timings.sanitise();
        for f in fixes {
            warn!(fix = ?f, ?timings, "L2 announcement lease timings corrected (as Cilium does)");
        }
        let dp_err = |source| L2Error::Datapath {
            pin_root: opts.pin_root.clone(),
            source,
        };
        let mut responder = datapath::Responder::open_or_create(&opts.pin_root).map_err(dp_err)?;
        // The program stops answering when the daemon's stamp is older than the renew
        // deadline: a hung or killed daemon goes quiet before its lease can expire and
        // another node take over (l2announcer README, "Timings and fencing").
        responder
            .set_lease_duration(timings.renew_deadline)
            .map_err(dp_err)?;
        let announcer = DatapathAnnouncer::new(responder).map_err(dp_err)?;
        let cfg = NodeConfig::new(node_name, timings);
        let node = match &opts.backend {
            LeaseBackendKind::Local => {
                warn!(
                    "L2 lease backend `local`: this node answers for every IP it is a candidate for; use etcd or kubernetes with more than one node"
                );
                spawn(cfg, LocalBackend::new(node_name), announcer)
            }
            LeaseBackendKind::Etcd { endpoints, prefix } => {
                let mut ecfg = EtcdConfig::new(endpoints.clone(), node_name, timings);
                ecfg.prefix.clone_from(prefix);
                spawn(cfg, EtcdBackend::new(ecfg), announcer)
            }
            LeaseBackendKind::Kubernetes { namespace } => {
                let client = kube.ok_or(L2Error::NoKubernetes)?.clone();
                let kcfg = KubeConfig::new(client, namespace.clone(), node_name, timings);
                spawn(cfg, KubeBackend::new(kcfg), announcer)
            }
        };
        // Carrier changes reach the ownership task at once, not through a reconcile.
        let sender = node.sender();
        host.on_link(Box::new(move |ifindex, up| sender.link(ifindex, up)));
        info!(backend = ?opts.backend, ?timings, pin_root = %opts.pin_root.display(), "L2 announcements on");
        let query = node.sender();
        Ok((Self::with_node(node, node_name, &opts.devices), query))
    }

    /// The controller over an ownership task already running (tests give it one whose
    /// announcer is a fake).
    pub fn with_node(node: NodeHandle, node_name: &str, devices: &[String]) -> Self {
        Self {
            node: Some(node),
            patterns: devices.to_vec(),
            node_name: node_name.to_owned(),
            last: None,
            seen: None,
            conditions: Arc::from([]),
            evaluations: 0,
            egress: false,
        }
    }

    /// Also elects egress gateways (`--enable-egress-gateway`): see
    /// [`crate::svclb::egress`].
    #[must_use]
    pub fn with_egress_gateway(mut self, on: bool) -> Self {
        self.egress = on;
        self
    }

    /// Whether anything the policies read changed since the last evaluation.
    fn relevant(&self, snap: &Snapshot, lb: &LbIps, devices: &Arc<[Device]>) -> bool {
        let Some((s, l, d)) = &self.seen else {
            return true;
        };
        if !Arc::ptr_eq(d, devices) && **d != **devices {
            return true;
        }
        if !l.ptr_eq(lb) && l != lb {
            return true;
        }
        snap.changes_since(s).iter().any(|(k, _)| match k.kind {
            Kind::L2AnnouncementPolicy | Kind::Service => true,
            // Any node's labels can make it a gateway candidate.
            Kind::Node => k.name == self.node_name || self.egress,
            Kind::EgressGatewayPolicy => self.egress,
            _ => false,
        })
    }

    /// Withdraw every entry, then revoke the node lease (SIGTERM).
    pub async fn shutdown_node(&mut self) -> Option<ShutdownReport> {
        match self.node.take() {
            Some(n) => n.shutdown().await,
            None => None,
        }
    }
}

impl Controller for L2Controller {
    const NAME: &'static str = "l2announcer";
    type Inputs = (
        watch::Receiver<Arc<ConfigState>>,
        watch::Receiver<Arc<LbStatus>>,
        watch::Receiver<Arc<[Device]>>,
    );
    type Error = Never;

    async fn reconcile(
        &mut self,
        (cfg, lb, devices): &(Arc<ConfigState>, Arc<LbStatus>, Arc<[Device]>),
        ctx: Context,
    ) -> Result<Outcome, Never> {
        // LB-IPAM's addresses are what L2 announces: wait until they are known.
        if !cfg.loaded || !lb.settled {
            return Ok(Outcome::WAITING);
        }
        let snap = &cfg.snapshot;
        if !ctx.full && !self.relevant(snap, &lb.ips, devices) {
            return Ok(Outcome::DONE);
        }
        self.seen = Some((snap.clone(), lb.ips.clone(), devices.clone()));
        self.evaluations += 1;
        let ifaces = desired::select_devices(devices, &self.patterns);
        let mut eval = desired::evaluate(snap, &self.node_name, &ifaces, &lb.ips);
        if self.egress {
            for (ip, g) in crate::svclb::egress::l2_groups(snap, &self.node_name, &ifaces) {
                match eval.groups.entry(ip) {
                    std::collections::btree_map::Entry::Vacant(v) => {
                        v.insert(g);
                    }
                    std::collections::btree_map::Entry::Occupied(_) => {
                        warn!(%ip, "an egress IP is also a Service's address: announced as the Service's");
                    }
                }
            }
        }
        let conditions = desired::policy_conditions(&eval);
        if *self.conditions != *conditions {
            for c in &conditions {
                warn!(condition = %c, "L2 announcement policy");
            }
            self.conditions = conditions.into();
        }
        if self.last.as_ref() != Some(&eval.groups)
            && let Some(node) = &self.node
        {
            info!(groups = eval.groups.len(), "L2 desired groups changed");
            node.set_desired(eval.groups.clone());
            self.last = Some(eval.groups);
        }
        Ok(Outcome::DONE)
    }

    fn conditions(&self) -> Arc<[ObjectCondition]> {
        self.conditions.clone()
    }

    async fn shutdown(&mut self) {
        // Stop answering ARP/NDP and hand the IPs over before BGP goes.
        let report = self.shutdown_node().await;
        info!(?report, "L2 announcements handed over");
    }
}

/// Keeps the L2 gauges fresh from the ownership task, every second, until `stop`.
pub fn metrics_task(
    node: NodeSender,
    metrics: Arc<crate::metrics::Metrics>,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Some(s) = node.snapshot().await {
                metrics.set_l2(&s);
            }
        }
    })
}

/// `rackctl l2 leases` rows: one per IP group this node knows of.
#[must_use]
pub fn lease_views(s: &l2announcer::query::Snapshot) -> Vec<rackd_api::LeaseView> {
    s.leases
        .iter()
        .map(|l| rackd_api::LeaseView {
            ip: l.ip.to_string(),
            services: l.services.clone(),
            interfaces: l.interfaces.clone(),
            holder: l.holder.clone().unwrap_or_default(),
            lease_age_seconds: l.lease_age_secs,
            candidate: l.candidate,
            replies_sent: s
                .announcements
                .iter()
                .filter(|a| a.ip == l.ip)
                .filter_map(|a| a.replies_sent)
                .sum(),
        })
        .collect()
}

/// `rackctl l2 announcements` rows: one per (IP, interface) this node answers for.
#[must_use]
pub fn announcement_views(s: &l2announcer::query::Snapshot) -> Vec<rackd_api::AnnouncementView> {
    s.announcements
        .iter()
        .map(|a| rackd_api::AnnouncementView {
            ip: a.ip.to_string(),
            services: a.services.clone(),
            interface: a.interface.clone(),
            holder: a.holder.clone(),
            lease_age_seconds: a.lease_age_secs,
            replies_sent: a.replies_sent.unwrap_or(0),
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::disallowed_types, reason = "the test waits in real time")]
mod tests {
    use super::*;
    use crate::testing::config_state as state;
    use l2announcer::announcer::{AnnounceLog, RecordingAnnouncer};

    const CFG: &str = r#"
apiVersion: v1
kind: Node
metadata: {name: node1, labels: {rack: r1}}
---
apiVersion: cilium.io/v2alpha1
kind: CiliumL2AnnouncementPolicy
metadata: {name: l2}
spec:
  nodeSelector: {matchLabels: {rack: r1}}
  interfaces: ["^eth[0-9]+"]
  loadBalancerIPs: true
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {type: LoadBalancer, ports: [{port: 80}]}
"#;

    fn lb(ip: &str) -> Arc<LbStatus> {
        let mut ips = LbIps::new();
        let ip: IpAddr = ip.parse().unwrap();
        ips.insert(("shop".to_owned(), "web".to_owned()), Arc::from([ip]));
        Arc::new(LbStatus {
            ready: true,
            settled: true,
            ips,
            ..LbStatus::default()
        })
    }

    fn ctx() -> Context {
        crate::testing::ctx(false)
    }

    async fn until(what: &str, mut f: impl FnMut() -> bool) {
        let t0 = std::time::Instant::now();
        while !f() {
            assert!(t0.elapsed() < std::time::Duration::from_secs(10), "{what}");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// In-memory inputs and a recording announcer on the local lease backend: the address is
    /// announced on the selected device, follows LB-IPAM, is not re-evaluated for unrelated
    /// changes, and goes when the policy does.
    #[tokio::test]
    async fn announces_what_the_policies_select_and_only_reevaluates_on_relevant_changes() {
        let log = AnnounceLog::default();
        let timings = LeaseTimings::default().sanitise().0;
        let node = spawn(
            NodeConfig::new("node1", timings),
            LocalBackend::new("node1"),
            RecordingAnnouncer::new("node1", log.clone(), true),
        );
        node.sender().link(2, true);
        let mut c = L2Controller::with_node(node, "node1", &[]);
        let devices: Arc<[Device]> = Arc::from([Device {
            name: "eth0".into(),
            ifindex: 2,
            ether: true,
            loopback: false,
            up: true,
        }]);
        let cfg = state(CFG);
        let first: IpAddr = "172.18.255.200".parse().unwrap();
        c.reconcile(&(cfg.clone(), lb("172.18.255.200"), devices.clone()), ctx())
            .await
            .unwrap();
        until("announced", || log.announcing(first) == ["node1"]).await;
        assert_eq!(c.evaluations, 1);

        // Something L2 does not read (a BGP advertisement): no evaluation.
        let other = format!(
            "{CFG}---\napiVersion: cilium.io/v2\nkind: CiliumBGPAdvertisement\nmetadata: {{name: a}}\nspec: {{advertisements: [{{advertisementType: PodCIDR}}]}}\n"
        );
        c.reconcile(
            &(state(&other), lb("172.18.255.200"), devices.clone()),
            ctx(),
        )
        .await
        .unwrap();
        assert_eq!(c.evaluations, 1);

        // LB-IPAM moves the address: the new one is announced, the old one withdrawn.
        let second: IpAddr = "172.18.255.201".parse().unwrap();
        c.reconcile(&(cfg.clone(), lb("172.18.255.201"), devices.clone()), ctx())
            .await
            .unwrap();
        assert_eq!(c.evaluations, 2);
        until("moved", || {
            log.announcing(second) == ["node1"] && log.announcing(first).is_empty()
        })
        .await;

        // The policy goes: nothing is announced.
        let without: Vec<&str> = CFG
            .split("---\n")
            .filter(|d| !d.contains("CiliumL2AnnouncementPolicy"))
            .collect();
        let without = without.join("---\n");
        c.reconcile(
            &(state(&without), lb("172.18.255.201"), devices.clone()),
            ctx(),
        )
        .await
        .unwrap();
        until("withdrawn", || log.announcing(second).is_empty()).await;
        assert!(c.conditions().is_empty());
        c.shutdown_node().await;
    }
}
