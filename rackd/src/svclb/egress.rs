//! The egress gateway on the service datapath (`--enable-egress-gateway`): the cluster's
//! `CiliumEgressGatewayPolicy` objects, resolved by [`egressgw`] (selected pods, gateway
//! nodes, Cilium's precedence), become this node's part of the policy map:
//!
//! - pods on this node whose gateway is another node: tunnelled to it;
//! - pods anywhere whose active gateway is this node: SNATed to the egress address, found on
//!   this node's interfaces (replies tunnelled back to remote pods' nodes);
//! - in-cluster destinations (every node's pod CIDRs and addresses) excluded, as Cilium never
//!   SNATs in-cluster traffic; excluded CIDRs and missing gateways as the policy says.
//!
//! Entries for pods that are neither here nor using this node as gateway are left out: the
//! programs would never meet their packets.
//!
//! The service controller, which owns the maps, calls [`EgressState::sync`] on every run; the
//! policies are resolved again only when Pods, Namespaces, Nodes, policies, the host's
//! addresses or the gateways' holders changed.
//!
//! Failover (★, what Cilium OSS lacks, cilium#18230): a gateway with an `egressIP` and more
//! than one matching node is elected with L2 announcements' leases (`--enable-l2-announcements`,
//! etcd or Kubernetes): every candidate node asks L2 for the egress IP as one more group
//! ([`l2_groups`]), the holder answers ARP/NDP for it and SNATs to it, and every node points
//! its pods' tunnels at the holder ([`EgressHolders`]). Without L2, Cilium's rule applies: the
//! first matching node by name, and the `egressIP` must be on one of its interfaces.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use datapath::lb::{EgressAction, EgressRule, EgressTunnel};
use egressgw::{
    Action, EgressAddress, Elections, GatewaySlot, GroupId, Input, NamespaceLabels, Resolution,
    conditions,
};
use ipnet::IpNet;
use l2announcer::policy::{DesiredGroup, Iface, ServiceRef};
use rackd_model::Snapshot;
use rackd_model::k8s_openapi::api::core::v1::Node;
use rackd_model::rackd_types::condition::reasons;
use rackd_model::rackd_types::{Condition, ConditionStatus, Kind, ObjectCondition, ObjectKey};
use tracing::info;

use super::maps::{LbMaps, MapsError};
use crate::bgp::render::HostInfo;

/// The holder of each egress IP under an L2 lease (from L2's ownership task): who is the
/// active gateway of a group with that `egressIP`.
pub type EgressHolders = BTreeMap<IpAddr, String>;

/// The egress addresses this node SNATs to as the active gateway, per policy name: what an
/// `EgressGateway` BGP advertisement announces from this node.
pub type EgressAnnounced = BTreeMap<String, BTreeSet<IpAddr>>;

/// What the admin API shows of the egress gateway.
#[derive(Debug, Clone, Default)]
pub struct EgressStatus {
    /// The cluster-wide resolution (policies, groups, entries).
    pub resolution: Resolution,
    /// This node's policy map as written.
    pub rules: Vec<EgressRule>,
}

/// The egress gateway's part of the service controller.
#[derive(Debug)]
pub struct EgressState {
    tunnel: EgressTunnel,
    tunnel_written: bool,
    /// The snapshot, host facts and holders last resolved.
    seen: Option<(Snapshot, Arc<HostInfo>, Arc<EgressHolders>)>,
    written: Option<Vec<EgressRule>>,
    conditions: Vec<ObjectCondition>,
    status: Arc<EgressStatus>,
}

impl EgressState {
    /// The egress gateway over `tunnel` (rackd's VXLAN device, made before the controller
    /// starts).
    pub fn new(tunnel: EgressTunnel) -> Self {
        Self {
            tunnel,
            tunnel_written: false,
            seen: None,
            written: None,
            conditions: Vec::new(),
            status: Arc::default(),
        }
    }

    /// The policies' problems.
    pub fn conditions(&self) -> &[ObjectCondition] {
        &self.conditions
    }

    /// The admin API's view.
    pub fn status(&self) -> Arc<EgressStatus> {
        self.status.clone()
    }

    /// Resolves the policies again if their inputs changed (or `full`), and writes what
    /// differs to the maps.
    pub fn sync<M: LbMaps>(
        &mut self,
        maps: &mut M,
        node: &str,
        snap: &Snapshot,
        host: &Arc<HostInfo>,
        holders: &Arc<EgressHolders>,
        full: bool,
    ) -> Result<(), MapsError> {
        if !self.tunnel_written {
            maps.set_egress_tunnel(Some(self.tunnel))?;
            self.tunnel_written = true;
        }
        let unchanged = self.seen.as_ref().is_some_and(|(s, h, o)| {
            **h == **host
                && **o == **holders
                && snap.changes_since(s).iter().all(|(k, _)| {
                    !matches!(
                        k.kind,
                        Kind::Pod | Kind::Namespace | Kind::Node | Kind::EgressGatewayPolicy
                    )
                })
        });
        if unchanged && !full && self.written.is_some() {
            return Ok(());
        }
        let policies: Vec<_> = snap.egress_gateway_policies().collect();
        let pods: Vec<_> = snap.pods().collect();
        let nodes: Vec<_> = snap.nodes().collect();
        // `namespaceSelector` matches the Namespace objects' labels; a namespace without one
        // keeps only `kubernetes.io/metadata.name` (egressgw's rule).
        let namespaces: NamespaceLabels = snap
            .namespaces()
            .filter_map(|ns| {
                let name = ns.metadata.name.clone()?;
                Some((name, ns.metadata.labels.clone().unwrap_or_default()))
            })
            .collect();
        let resolution = egressgw::resolve(&Input {
            policies: &policies,
            pods: &pods,
            nodes: &nodes,
            namespaces: &namespaces,
            elections: &elections(snap, holders),
        });
        let cluster = cluster_prefixes(&nodes);
        let held = usable_ips(snap, node, holders);
        let (rules, problems) = render(&resolution, node, host, &held, &cluster);
        let mut conds = policy_conditions(&resolution);
        conds.extend(problems);
        if self.written.as_ref() != Some(&rules) {
            let st = maps.sync_egress(&rules)?;
            info!(
                rules = rules.len(),
                written = st.written,
                removed = st.removed,
                "egress gateway policy map synced"
            );
            self.written = Some(rules.clone());
        }
        self.conditions = conds;
        self.status = Arc::new(EgressStatus { resolution, rules });
        self.seen = Some((snap.clone(), host.clone(), holders.clone()));
        Ok(())
    }
}

/// Every node's pod CIDRs and InternalIPs: destinations in here are in-cluster.
pub fn cluster_prefixes(nodes: &[&Node]) -> Vec<IpNet> {
    let mut out = BTreeSet::new();
    for n in nodes {
        if let Some(spec) = &n.spec {
            for c in spec.pod_cidrs.iter().flatten().chain(spec.pod_cidr.iter()) {
                if let Ok(net) = c.parse::<IpNet>() {
                    out.insert(net.trunc());
                }
            }
        }
        let addrs = n.status.iter().flat_map(|s| s.addresses.iter().flatten());
        for a in addrs.filter(|a| a.type_ == "InternalIP") {
            if let Ok(ip) = a.address.parse::<IpAddr>() {
                out.insert(IpNet::from(ip));
            }
        }
    }
    out.into_iter().collect()
}

fn policy_key(name: &str) -> ObjectKey {
    ObjectKey {
        kind: Kind::EgressGatewayPolicy,
        namespace: None,
        name: name.to_owned(),
    }
}

/// The resolver's per-policy problems, as conditions of their policies.
pub fn policy_conditions(res: &Resolution) -> Vec<ObjectCondition> {
    res.policies
        .iter()
        .flat_map(|(name, st)| {
            st.conditions
                .iter()
                .map(|c| ObjectCondition::new(policy_key(name), c.clone()))
        })
        .collect()
}

/// Every gateway group with an `egressIP`, by policy and slot, as `egressgw` names them.
fn ip_groups(snap: &Snapshot) -> impl Iterator<Item = (GroupId, IpAddr)> + '_ {
    snap.egress_gateway_policies().flat_map(|p| {
        let name = p.metadata.name.clone().unwrap_or_default();
        let gws: Vec<(GatewaySlot, &rackd_model::cilium::EgressGateway)> =
            if p.spec.egress_gateways.is_empty() {
                vec![(GatewaySlot::Single, &p.spec.egress_gateway)]
            } else {
                p.spec
                    .egress_gateways
                    .iter()
                    .enumerate()
                    .map(|(i, g)| (GatewaySlot::Index(i), g))
                    .collect()
            };
        gws.into_iter().filter_map(move |(slot, g)| {
            let ip = g.egress_ip.as_deref()?.parse::<IpAddr>().ok()?;
            Some((GroupId::new(name.clone(), slot), ip))
        })
    })
}

/// The `egressIP`s this node may SNAT to without finding them on an interface: those it holds
/// the L2 lease of, and those an `EgressGateway` BGP advertisement routes (cilium#41916).
fn usable_ips(snap: &Snapshot, node: &str, holders: &EgressHolders) -> BTreeSet<IpAddr> {
    let routed = crate::bgp::render::advertised_policies(snap);
    holders
        .iter()
        .filter(|(_, h)| *h == node)
        .map(|(ip, _)| *ip)
        .chain(
            ip_groups(snap)
                .filter(|(g, _)| routed.contains(&g.policy))
                .map(|(_, ip)| ip),
        )
        .collect()
}

/// The egress addresses this node announces by BGP, per policy: those of every gateway group
/// whose active gateway it is. With `elect` (gateways elected under L2 leases) a group with an
/// `egressIP` is announced only by the lease holder, so that a node that merely believes
/// itself first by name while nobody holds the lease never advertises beside the holder; the
/// other groups (`interface`, default route, or no election) follow the resolver's choice,
/// which every node makes alike.
pub fn announced(
    snap: &Snapshot,
    node: &str,
    host: &HostInfo,
    holders: &EgressHolders,
    elect: bool,
) -> EgressAnnounced {
    let policies: Vec<_> = snap.egress_gateway_policies().collect();
    if policies.is_empty() {
        return EgressAnnounced::new();
    }
    let nodes: Vec<_> = snap.nodes().collect();
    let res = egressgw::resolve(&Input {
        policies: &policies,
        pods: &[],
        nodes: &nodes,
        namespaces: &BTreeMap::new(),
        elections: &elections(snap, holders),
    });
    let held = usable_ips(snap, node, holders);
    let probes = [
        IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    ];
    let mut out = EgressAnnounced::new();
    for g in res.groups.values() {
        let here = match (&g.egress, elect) {
            (EgressAddress::Ip(ip), true) => holders.get(ip).is_some_and(|h| h == node),
            _ => g.active.as_ref().is_some_and(|c| c.node == node),
        };
        if !here {
            continue;
        }
        let ips: BTreeSet<IpAddr> = probes
            .iter()
            .filter_map(|f| egress_address(&g.egress, *f, host, &held))
            .collect();
        if !ips.is_empty() {
            out.entry(g.id.policy.clone()).or_default().extend(ips);
        }
    }
    out
}

/// Every policy's `egressIP`s (the L2 groups the daemon asks the holders of).
pub fn egress_ips(snap: &Snapshot) -> Vec<IpAddr> {
    let set: BTreeSet<IpAddr> = ip_groups(snap).map(|(_, ip)| ip).collect();
    set.into_iter().collect()
}

/// The elected gateway of each group whose `egressIP` has a holder.
pub fn elections(snap: &Snapshot, holders: &EgressHolders) -> Elections {
    ip_groups(snap)
        .filter_map(|(g, ip)| Some((g, holders.get(&ip)?.clone())))
        .collect()
}

/// The L2 groups this node is a candidate for: the `egressIP` of every gateway group whose
/// `nodeSelector` matches this node, answered on `ifaces` by whoever holds the lease. The
/// "service" of such a group is `egress/<policy>` (what `rackctl l2 leases` shows).
pub fn l2_groups(snap: &Snapshot, node: &str, ifaces: &[Iface]) -> BTreeMap<IpAddr, DesiredGroup> {
    let policies: Vec<_> = snap.egress_gateway_policies().collect();
    let nodes: Vec<_> = snap.nodes().collect();
    let res = egressgw::resolve(&Input {
        policies: &policies,
        pods: &[],
        nodes: &nodes,
        namespaces: &BTreeMap::new(),
        elections: &BTreeMap::new(),
    });
    let mut out: BTreeMap<IpAddr, DesiredGroup> = BTreeMap::new();
    for (id, ip) in ip_groups(snap) {
        let Some(g) = res.groups.get(&id) else {
            continue;
        };
        if !g.candidates.iter().any(|c| c.node == node) {
            continue;
        }
        let d = out.entry(ip).or_default();
        d.services.insert(ServiceRef {
            namespace: "egress".into(),
            name: id.policy.clone(),
        });
        d.interfaces.extend(ifaces.iter().cloned());
    }
    out
}

/// The egress address of `egress` on this node for a source of `family`'s family: Cilium's
/// rules (`interface`: its first address; `egressIP`: only if an interface holds it, or this
/// node holds its L2 lease; neither: the default route's interface's first address).
pub fn egress_address(
    egress: &EgressAddress,
    family: IpAddr,
    host: &HostInfo,
    held: &BTreeSet<IpAddr>,
) -> Option<IpAddr> {
    let first = |iface: &str| {
        host.interfaces.get(iface)?.iter().copied().find(|a| {
            a.is_ipv4() == family.is_ipv4()
                && !a.is_loopback()
                && match a {
                    IpAddr::V4(v) => !v.is_link_local(),
                    IpAddr::V6(v) => !v.is_unicast_link_local(),
                }
        })
    };
    match egress {
        EgressAddress::Ip(ip) => (ip.is_ipv4() == family.is_ipv4()
            && (held.contains(ip) || host.interfaces.values().flatten().any(|a| a == ip)))
        .then_some(*ip),
        EgressAddress::Interface(i) => first(i),
        EgressAddress::DefaultRoute => {
            let iface = if family.is_ipv4() {
                &host.default_interface_v4
            } else {
                &host.default_interface_v6
            };
            first(iface.as_deref()?)
        }
    }
}

/// This node's policy map from the cluster-wide resolution, sorted by key, and the problems
/// only this node can see (an egress address it cannot find).
pub fn render(
    res: &Resolution,
    node: &str,
    host: &HostInfo,
    held: &BTreeSet<IpAddr>,
    cluster: &[IpNet],
) -> (Vec<EgressRule>, Vec<ObjectCondition>) {
    let mut rules: BTreeMap<(IpAddr, IpNet), EgressAction> = BTreeMap::new();
    let mut missing: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    // Sources this node is the gateway for: their excluded CIDRs matter here too.
    let via_here: BTreeSet<IpAddr> = res
        .entries_via_gateway(node)
        .map(|(k, _)| k.source)
        .collect();
    for (key, e) in &res.entries {
        let action = match &e.action {
            Action::Excluded => EgressAction::Excluded,
            Action::NoGateway { .. } if e.source_node == node => EgressAction::NoGateway,
            Action::NoGateway { .. } => continue,
            Action::Gateway {
                node: gw,
                node_ip,
                egress,
                ..
            } => {
                if gw == node {
                    let egress_ip = egress_address(egress, key.source, host, held);
                    if egress_ip.is_none() {
                        missing
                            .entry(e.policy.clone())
                            .or_default()
                            .insert(egress.to_string());
                    }
                    EgressAction::Snat {
                        egress_ip,
                        reply_to: if e.source_node == node {
                            None
                        } else {
                            e.source_node_ip
                        },
                    }
                } else if e.source_node == node {
                    EgressAction::Tunnel { gateway: *node_ip }
                } else {
                    continue;
                }
            }
        };
        // An excluded CIDR only matters where the destination entry is programmed.
        let src_here = e.source_node == node;
        if action == EgressAction::Excluded && !src_here && !via_here.contains(&key.source) {
            continue;
        }
        let in_cluster = cluster.iter().any(|c| c.contains(&key.destination));
        rules.insert(
            (key.source, key.destination),
            if in_cluster {
                EgressAction::Excluded
            } else {
                action
            },
        );
        // In-cluster prefixes inside the destination: excluded, longest prefix wins.
        if action != EgressAction::Excluded && !in_cluster {
            for c in cluster {
                if key.destination.contains(c) && key.destination != *c {
                    rules
                        .entry((key.source, *c))
                        .or_insert(EgressAction::Excluded);
                }
            }
        }
    }
    let problems = missing
        .into_iter()
        .map(|(policy, what)| {
            ObjectCondition::new(
                policy_key(&policy),
                Condition::new(
                    conditions::EGRESS_IP_NOT_ON_GATEWAY,
                    ConditionStatus::True,
                    reasons::NOT_FOUND,
                    format!(
                        "node {node} is the gateway but has no address for {}: its traffic \
                         is dropped",
                        what.into_iter().collect::<Vec<_>>().join(", ")
                    ),
                ),
            )
        })
        .collect();
    let rules = rules
        .into_iter()
        .map(|((source, destination), action)| EgressRule {
            source,
            destination,
            action,
        })
        .collect();
    (rules, problems)
}

/// The condition for policies present while the egress gateway is off.
pub fn disabled_conditions(snap: &Snapshot) -> Vec<ObjectCondition> {
    snap.egress_gateway_policies()
        .filter_map(|p| p.metadata.name.as_deref())
        .map(|name| {
            ObjectCondition::new(
                policy_key(name),
                Condition::new(
                    conditions::GATEWAY_DISABLED,
                    ConditionStatus::True,
                    reasons::INVALID,
                    "rackd runs without --enable-egress-gateway (which needs \
                     --kube-proxy-replacement and --enable-bpf-masquerade): the policy is not \
                     enforced and its pods leave with their node's address",
                ),
            )
        })
        .collect()
}

/// Without the service datapath (`--kube-proxy-replacement` off) nothing can enforce an egress
/// policy: this controller only reports every policy as not enforced, so a user moving from
/// Cilium sees it in `rackctl status` instead of believing their pods leave through the
/// gateway.
#[derive(Debug, Default)]
pub struct UnenforcedReporter {
    conditions: Arc<[ObjectCondition]>,
}

impl crate::controller::Controller for UnenforcedReporter {
    const NAME: &'static str = "egress-gateway";
    type Inputs = tokio::sync::watch::Receiver<Arc<crate::config::ConfigState>>;
    type Error = std::convert::Infallible;

    async fn reconcile(
        &mut self,
        cfg: &Arc<crate::config::ConfigState>,
        _ctx: crate::controller::Context,
    ) -> Result<crate::controller::Outcome, Self::Error> {
        if !cfg.loaded {
            return Ok(crate::controller::Outcome::WAITING);
        }
        self.conditions = disabled_conditions(&cfg.snapshot).into();
        Ok(crate::controller::Outcome::DONE)
    }

    fn conditions(&self) -> Arc<[ObjectCondition]> {
        self.conditions.clone()
    }
}

#[cfg(test)]
#[path = "egress_tests.rs"]
mod tests;
