//! The inputs and outputs of [`crate::resolve`]: policy-map entries, gateway groups and
//! per-policy status. Every collection is a `BTreeMap` or a sorted `Vec`, so two resolutions
//! of the same input compare equal and diff cheaply.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Node, Pod};
use rackd_model::cilium::CiliumEgressGatewayPolicy;
use rackd_types::Condition;

/// Namespace name -> that Namespace's labels. A namespace missing from the map is taken to
/// carry only `kubernetes.io/metadata.name=<name>` (the label the API server always sets).
pub type NamespaceLabels = BTreeMap<String, BTreeMap<String, String>>;

/// Gateway group -> name of the node elected active for it (by the daemon's leases).
pub type Elections = BTreeMap<GroupId, String>;

/// Everything [`crate::resolve`] reads. Borrowed: the daemon builds it from its snapshot
/// (`snapshot.egress_gateway_policies().collect()`, ...) without cloning objects.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The CiliumEgressGatewayPolicies, in any order (resolution sorts them by name).
    pub policies: &'a [&'a CiliumEgressGatewayPolicy],
    /// Every Pod of the cluster; those that are not endpoints are skipped (see the README).
    pub pods: &'a [&'a Pod],
    /// Every Node: candidates for gateways, and the nodes source pods run on.
    pub nodes: &'a [&'a Node],
    /// Labels of namespaces, for `namespaceSelector`.
    pub namespaces: &'a NamespaceLabels,
    /// The daemon's election results; a group without one uses Cilium's rule (first
    /// candidate by name).
    pub elections: &'a Elections,
}

/// Which gateway of a policy: `spec.egressGateway`, or entry `i` of `spec.egressGateways`
/// (which, when non-empty, replaces `egressGateway`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GatewaySlot {
    /// `spec.egressGateway`.
    Single,
    /// `spec.egressGateways[i]`.
    Index(usize),
}

impl fmt::Display for GatewaySlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Single => f.write_str("egressGateway"),
            Self::Index(i) => write!(f, "egressGateways[{i}]"),
        }
    }
}

/// Identity of a gateway group: one per (policy, gateway slot). Elections are keyed by it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupId {
    /// The policy's name (CiliumEgressGatewayPolicy is cluster-scoped).
    pub policy: String,
    /// Which of its gateways.
    pub slot: GatewaySlot,
}

impl GroupId {
    /// The group of `slot` in policy `policy`.
    pub fn new(policy: impl Into<String>, slot: GatewaySlot) -> Self {
        Self {
            policy: policy.into(),
            slot,
        }
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.policy, self.slot)
    }
}

/// The address the gateway SNATs to, as the policy names it. Resolving an interface or the
/// default route to an address is the gateway node's business (it needs its own netlink view).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EgressAddress {
    /// `egressIP`: this address (the gateway finds the interface holding it).
    Ip(IpAddr),
    /// `interface`: the first address of this interface (of the packet's family).
    Interface(String),
    /// Neither set: the first address of the interface holding the default route.
    DefaultRoute,
}

impl fmt::Display for EgressAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(ip) => write!(f, "egressIP {ip}"),
            Self::Interface(i) => write!(f, "interface {i}"),
            Self::DefaultRoute => f.write_str("default-route interface"),
        }
    }
}

/// A node that may act as a group's gateway: it matches the group's `nodeSelector` and has an
/// InternalIP to tunnel to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Candidate {
    /// Node name.
    pub node: String,
    /// The node's InternalIP (IPv4 preferred, as Cilium's gateway IP), the tunnel endpoint.
    pub ip: IpAddr,
}

/// One gateway group and its candidates, for the daemon to elect among.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayGroup {
    /// Which policy and slot.
    pub id: GroupId,
    /// What the active gateway SNATs to.
    pub egress: EgressAddress,
    /// Every node matching the group's `nodeSelector` that has an InternalIP, sorted by name.
    pub candidates: Vec<Candidate>,
    /// The active gateway: the elected node when the election names a candidate, otherwise
    /// the first candidate by name (Cilium's rule). `None` when there is no candidate: the
    /// group's traffic is dropped.
    pub active: Option<Candidate>,
    /// True when `active` comes from the daemon's election rather than the name rule.
    pub elected: bool,
    /// How many source pods are pinned to this group (all of the policy's pods for a
    /// single-gateway policy).
    pub pinned_pods: usize,
}

/// Key of a policy-map entry: the source pod IP (an exact /32 or /128) and the destination
/// CIDR (the LPM part). Both have the same family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryKey {
    /// The source pod's address.
    pub source: IpAddr,
    /// The destination prefix, host bits cleared.
    pub destination: IpNet,
}

impl fmt::Display for EntryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}", self.source, self.destination)
    }
}

/// What the datapath does with traffic matching an entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    /// An `excludedCIDRs` entry: the traffic is left alone (ordinary masquerade to the node's
    /// address). Cilium's `0.0.0.1` gateway sentinel.
    Excluded,
    /// The pod's gateway group has no node: Cilium drops such traffic (`0.0.0.0` gateway
    /// sentinel, `DROP_NO_EGRESS_GATEWAY`), and so must rackd.
    NoGateway {
        /// The group without a gateway.
        group: GroupId,
    },
    /// Tunnel to this gateway, which SNATs to `egress`.
    Gateway {
        /// The group the pod is pinned to.
        group: GroupId,
        /// The active gateway node.
        node: String,
        /// Its InternalIP: the tunnel endpoint.
        node_ip: IpAddr,
        /// What it SNATs to.
        egress: EgressAddress,
    },
}

/// A Pod, by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodRef {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

impl fmt::Display for PodRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The value of one policy-map entry, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PolicyEntry {
    /// What to do with matching traffic.
    pub action: Action,
    /// The policy that produced the entry (the winner, when policies overlap).
    pub policy: String,
    /// The source pod.
    pub pod: PodRef,
    /// The node the source pod runs on.
    pub source_node: String,
    /// That node's InternalIP: where the gateway tunnels replies to. `None` when the node is
    /// unknown or has no InternalIP (reported on the policy).
    pub source_node_ip: Option<IpAddr>,
}

/// What resolution found for one policy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PolicyStatus {
    /// False when the policy cannot be used at all (malformed selector, CIDR or egressIP):
    /// it produces no entries and no groups, as Cilium's parser drops such a policy.
    pub valid: bool,
    /// Its gateway groups, in slot order.
    pub groups: Vec<GroupId>,
    /// How many endpoints (pods) it selects.
    pub selected_pods: usize,
    /// How many policy-map entries it owns (after overlaps were settled).
    pub entries: usize,
    /// Its problems, in Cilium's polarity (type names the problem, status True), sorted.
    pub conditions: Vec<Condition>,
}

/// The result of [`crate::resolve`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resolution {
    /// The policy map: one entry per (source pod IP, destination CIDR).
    pub entries: BTreeMap<EntryKey, PolicyEntry>,
    /// Every gateway group of every valid policy.
    pub groups: BTreeMap<GroupId, GatewayGroup>,
    /// Every policy given, by name, valid or not.
    pub policies: BTreeMap<String, PolicyStatus>,
}

impl Resolution {
    /// The entries whose source pod runs on `node`: what that node's source-side map needs.
    pub fn entries_from_node<'a>(
        &'a self,
        node: &'a str,
    ) -> impl Iterator<Item = (&'a EntryKey, &'a PolicyEntry)> + 'a {
        self.entries
            .iter()
            .filter(move |(_, e)| e.source_node == node)
    }

    /// The entries that `node` is the active gateway for: what it must SNAT.
    pub fn entries_via_gateway<'a>(
        &'a self,
        node: &'a str,
    ) -> impl Iterator<Item = (&'a EntryKey, &'a PolicyEntry)> + 'a {
        self.entries
            .iter()
            .filter(move |(_, e)| matches!(&e.action, Action::Gateway { node: n, .. } if n == node))
    }
}
