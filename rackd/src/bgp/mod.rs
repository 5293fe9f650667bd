//! The BGP controller: the configuration, LB-IPAM's addresses and the host's facts rendered
//! into this node's BGP configuration ([`render`]) and reconciled onto bgpd speakers
//! ([`reconcile`]); the speakers' peers followed for the admin API and metrics ([`status`]).
//!
//! ```text
//!  ConfigState ───┐                            changed objects only:
//!  LbStatus ──────┼─▶ BgpController ── render::update_services (a Service, its slices or IPs)
//!  HostInfo ──────┤        │        └─ render::render          (anything else: the frame)
//!  EgressHolders ─┘        │           (egress addresses announced: `EgressGateway` entries)
//!                        ▼
//!                  Reconciler ── route batches, export patches ──▶ bgpd speakers
//!                        │                                            │ events
//!                        ▼ watch<BgpStatus>                           ▼
//!              admin API, status monitor ─────────── peers ─▶ watch<Arc<[BgpPeer]>>, metrics
//! ```

pub mod reconcile;
pub mod render;
pub mod status;
pub mod unnumbered;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rackd_model::rackd_types::condition::{reasons, types};
use rackd_model::rackd_types::{Condition, Kind, ObjectCondition, ObjectKey, SessionState};
use rackd_model::{Snapshot, slice_service};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::warn;

use self::reconcile::{NodeAddrs, ReconcileError, Reconciler};
use self::render::{Desired, HostInfo, RenderInput};
use crate::config::ConfigState;
use crate::controller::{Context, Controller, Outcome};
use crate::lbipam_ctl::{LbIps, LbStatus, ServiceName};
use crate::svclb::egress::{EgressAnnounced, EgressHolders};

pub use self::status::{BgpPeers, PeerMonitor};

/// What the BGP controller publishes.
#[derive(Debug, Clone, Default)]
pub struct BgpStatus {
    /// What this node should run.
    pub desired: Arc<Desired>,
    /// The running speakers: instance, speaker, local ASN.
    pub speakers: Arc<[(String, Arc<bgpd::Speaker>, u32)]>,
    /// Why the last reconcile could not apply everything (with causes).
    pub errors: Arc<[String]>,
    /// The rendering's problems and the reconcile errors, per object.
    pub conditions: Arc<[ObjectCondition]>,
}

/// Controller errors: the reconcile failed for some instance or peer (the rest was
/// applied); retried with backoff.
#[derive(Debug, thiserror::Error)]
#[error("{} BGP reconcile error(s); first: {first}", .count)]
pub struct BgpError {
    pub count: usize,
    pub first: String,
}

/// The object a reconcile error (`cilium.io/BGPReconcileError`) is a condition of. Cilium
/// sets it on the node's CiliumBGPNodeConfig, which is named after the node and is no object
/// rackd reads (it renders one, `rackctl bgp node-config`); the node's Node stands for it,
/// one to one and by the same name. Not the ClusterConfig: that is shared by every node it
/// selects, and one node's failure to apply it is not the others'.
pub fn reconcile_error_object(node: &str) -> ObjectKey {
    ObjectKey::cluster(Kind::Node, node)
}

/// How long after a restart the FIB waits for every peer before it drops the routes it
/// adopted from the previous run (they go earlier once every peer has been up for
/// [`FIB_SETTLE`]).
const FIB_ADOPT_LIMIT: Duration = Duration::from_secs(120);
const FIB_SETTLE: Duration = Duration::from_secs(3);

/// The controller; see the module docs.
#[derive(Debug)]
pub struct BgpController {
    node_name: String,
    secrets_namespace: String,
    reconciler: Reconciler,
    desired: Desired,
    /// The inputs the current `desired` was rendered from.
    seen: Option<(Snapshot, LbIps, Arc<HostInfo>)>,
    /// The last reconcile failed: run it again even if nothing changed.
    retry: bool,
    ready_sent: bool,
    fib_pending: bool,
    started: Instant,
    all_up_since: Option<Instant>,
    peers: watch::Receiver<BgpPeers>,
    tx: watch::Sender<BgpStatus>,
    /// See [`RenderInput::withdraw_without_backends`].
    withdraw_without_backends: bool,
    /// `Some(elect)` with the egress gateway on: `EgressGateway` advertisements announce the
    /// egress addresses this node is the active gateway of (`elect`: under L2 leases).
    egress: Option<bool>,
    /// What the current `desired` announces of them.
    egress_announced: EgressAnnounced,
}

impl BgpController {
    /// A controller for `node_name`; `peers` is the status monitor's output (for the FIB's
    /// adoption timer).
    pub fn new(
        node_name: &str,
        secrets_namespace: &str,
        reconciler: Reconciler,
        fib: bool,
        peers: watch::Receiver<BgpPeers>,
    ) -> (Self, watch::Receiver<BgpStatus>) {
        let (tx, rx) = watch::channel(BgpStatus::default());
        (
            Self {
                node_name: node_name.to_owned(),
                secrets_namespace: secrets_namespace.to_owned(),
                reconciler,
                desired: Desired::default(),
                seen: None,
                retry: false,
                ready_sent: false,
                fib_pending: fib,
                started: Instant::now(),
                all_up_since: None,
                peers,
                tx,
                withdraw_without_backends: false,
                egress: None,
                egress_announced: EgressAnnounced::new(),
            },
            rx,
        )
    }

    /// Withdraw Services' LoadBalancer and external IPs while they have no usable backend:
    /// on when rackd's service datapath forwards them.
    pub fn set_withdraw_without_backends(&mut self, on: bool) {
        self.withdraw_without_backends = on;
    }

    /// Announce egress addresses (`advertisementType: EgressGateway`): on with the egress
    /// gateway; `elect` when its gateways are elected under L2 leases.
    pub fn set_egress_gateway(&mut self, elect: bool) {
        self.egress = Some(elect);
    }

    /// The node's addresses for next hops and session sources: its Node's InternalIPs (as
    /// sources only when configured here), else the host's first global addresses.
    fn node_addrs(&self, snap: &Snapshot, host: &HostInfo) -> NodeAddrs {
        let (h4, h6) = crate::host::first_global(host);
        let node = snap.node(&self.node_name);
        let from_node = |want_v6: bool| -> Option<IpAddr> {
            node.and_then(|n| n.status.as_ref())
                .and_then(|s| s.addresses.as_ref())
                .and_then(|a| {
                    a.iter()
                        .filter(|a| a.type_ == "InternalIP")
                        .filter_map(|a| a.address.parse::<IpAddr>().ok())
                        .find(|ip| ip.is_ipv6() == want_v6)
                })
        };
        let on_host = |ip: IpAddr| host.interfaces.values().any(|v| v.contains(&ip));
        let node_v4 = match from_node(false) {
            Some(IpAddr::V4(a)) => Some(a),
            _ => None,
        };
        let node_v6 = match from_node(true) {
            Some(IpAddr::V6(a)) => Some(a),
            _ => None,
        };
        NodeAddrs {
            v4: node_v4.or(h4),
            v6: node_v6.or(h6),
            source_v4: node_v4.filter(|a| on_host(IpAddr::V4(*a))),
            source_v6: node_v6.filter(|a| on_host(IpAddr::V6(*a))),
        }
    }

    /// What the new inputs require: `None` when the whole frame must be rendered again,
    /// else the Services whose policies must be.
    fn affected(
        &self,
        snap: &Snapshot,
        lb: &LbIps,
        host: &Arc<HostInfo>,
    ) -> Option<BTreeSet<ServiceName>> {
        let (prev_snap, prev_lb, prev_host) = self.seen.as_ref()?;
        if !Arc::ptr_eq(prev_host, host) && **prev_host != **host {
            return None;
        }
        let mut services = BTreeSet::new();
        for (key, _) in snap.changes_since(prev_snap) {
            let ns = key.namespace.clone().unwrap_or_default();
            match key.kind {
                Kind::Service => {
                    services.insert((ns, key.name));
                }
                Kind::EndpointSlice => {
                    // The slice's Service before and after the change (its label can move).
                    for s in [prev_snap, snap] {
                        if let Some(svc) = s.get(&key).and_then(|l| slice_service(&l.object)) {
                            services.insert((ns.clone(), svc.to_owned()));
                        }
                    }
                }
                // L2 objects, Pods and Namespaces do not shape BGP; egress policies do
                // only with the egress gateway on (their labels select them, their gateways
                // decide what is announced); the rest is the frame.
                Kind::L2AnnouncementPolicy | Kind::Pod | Kind::Namespace => {}
                Kind::EgressGatewayPolicy if self.egress.is_none() => {}
                _ => return None,
            }
        }
        if !prev_lb.ptr_eq(lb) {
            for d in prev_lb.diff(lb) {
                let k = match d {
                    imbl::ordmap::DiffItem::Add(k, _) | imbl::ordmap::DiffItem::Remove(k, _) => k,
                    imbl::ordmap::DiffItem::Update { new: (k, _), .. } => k,
                };
                services.insert(k.clone());
            }
        }
        Some(services)
    }

    /// The FIB's adoption timer: routes adopted from a previous run go once every peer has
    /// been up a moment (or after two minutes, whatever happens).
    async fn fib_timer(&mut self) -> Option<Duration> {
        if !self.fib_pending {
            return None;
        }
        let peers = self.peers.borrow().clone();
        let up = !peers.is_empty()
            && peers
                .iter()
                .all(|p| p.session_state == SessionState::Established);
        match (up, self.all_up_since) {
            (true, None) => self.all_up_since = Some(Instant::now()),
            (false, _) => self.all_up_since = None,
            _ => {}
        }
        if self.all_up_since.is_some_and(|t| t.elapsed() >= FIB_SETTLE)
            || self.started.elapsed() >= FIB_ADOPT_LIMIT
        {
            self.reconciler.fib_sync_done().await;
            self.fib_pending = false;
            return None;
        }
        Some(Duration::from_secs(1))
    }

    fn publish(&self, errors: &[ReconcileError]) {
        let mut conditions = self.desired.problems.clone();
        let texts: Vec<String> = errors
            .iter()
            .map(|e| match std::error::Error::source(e) {
                Some(s) => format!("{e}: {s}"),
                None => e.to_string(),
            })
            .collect();
        for t in &texts {
            conditions.push(ObjectCondition::new(
                reconcile_error_object(&self.node_name),
                Condition::problem(types::BGP_RECONCILE_ERROR, reasons::FAILED, t.clone()),
            ));
        }
        let speakers: Vec<(String, Arc<bgpd::Speaker>, u32)> = self
            .reconciler
            .speakers()
            .map(|(n, s, a)| (n.to_owned(), s.clone(), a))
            .collect();
        self.tx.send_replace(BgpStatus {
            desired: Arc::new(self.desired.clone()),
            speakers: speakers.into(),
            errors: texts.into(),
            conditions: conditions.into(),
        });
    }

    /// What the reconciles so far have changed.
    pub fn applied(&self) -> reconcile::Applied {
        self.reconciler.applied()
    }

    /// Stops every speaker (Cease to every peer) and, on a clean stop, withdraws what the
    /// FIB installed.
    pub async fn stop_speakers(&mut self) {
        self.reconciler.shutdown().await;
    }
}

impl Controller for BgpController {
    const NAME: &'static str = "bgp";
    type Inputs = (
        watch::Receiver<Arc<ConfigState>>,
        watch::Receiver<Arc<LbStatus>>,
        watch::Receiver<Arc<HostInfo>>,
        watch::Receiver<Arc<EgressHolders>>,
    );
    type Error = BgpError;

    async fn reconcile(
        &mut self,
        (cfg, lb, host, holders): &(
            Arc<ConfigState>,
            Arc<LbStatus>,
            Arc<HostInfo>,
            Arc<EgressHolders>,
        ),
        ctx: Context,
    ) -> Result<Outcome, BgpError> {
        // Render only on a complete view: the configuration loaded and LB-IPAM settled on
        // it, so a restart never advertises a half set of addresses.
        if !cfg.loaded || !lb.settled {
            return Ok(Outcome::WAITING);
        }
        let snap = &cfg.snapshot;
        let egress = match self.egress {
            Some(elect) => {
                crate::svclb::egress::announced(snap, &self.node_name, host, holders, elect)
            }
            None => EgressAnnounced::new(),
        };
        // A change of what is announced (a failover) re-renders the frame: egress policies
        // are few, and the export policies of every peer may carry them.
        let egress_changed = egress != self.egress_announced;
        let input = RenderInput {
            node_name: &self.node_name,
            host: (**host).clone(),
            lb_ips: lb.ips.clone(),
            secrets_namespace: &self.secrets_namespace,
            withdraw_without_backends: self.withdraw_without_backends,
            egress: egress.clone(),
        };
        let affected = if ctx.full || egress_changed {
            None
        } else {
            self.affected(snap, &lb.ips, host)
        };
        let changed = match affected {
            None => {
                let d = render::render(snap, &input);
                let changed = d != self.desired;
                self.desired = d;
                changed
            }
            Some(services) if services.is_empty() => false,
            Some(services) => render::update_services(&mut self.desired, snap, &input, &services),
        };
        for p in &self.desired.problems {
            if changed && !self.tx.borrow().conditions.contains(p) {
                warn!(problem = %p, "BGP configuration cannot be fully applied");
            }
        }
        self.seen = Some((snap.clone(), lb.ips.clone(), host.clone()));
        self.egress_announced = egress;
        let mut errors = Vec::new();
        if changed || self.retry || !self.ready_sent || ctx.full {
            let addrs = self.node_addrs(snap, host);
            errors = self.reconciler.reconcile(&self.desired, &addrs).await;
        }
        self.retry = !errors.is_empty();
        if !self.ready_sent {
            // The first complete pass is in: restarting speakers may send End-of-RIB.
            self.reconciler.set_ready().await;
            self.ready_sent = true;
        }
        self.publish(&errors);
        let requeue = self.fib_timer().await;
        if let Some(first) = errors.first() {
            return Err(BgpError {
                count: errors.len(),
                first: crate::controller::error_chain(first),
            });
        }
        Ok(Outcome {
            requeue_after: requeue,
            waiting: false,
        })
    }

    fn conditions(&self) -> Arc<[ObjectCondition]> {
        self.tx.borrow().conditions.clone()
    }

    async fn shutdown(&mut self) {
        self.stop_speakers().await;
    }
}

#[cfg(test)]
mod tests;
