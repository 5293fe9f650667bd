//! [`resolve`]: policies x endpoints x CIDRs -> the policy map, gateway groups and statuses.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use rackd_model::cilium::CiliumEgressGatewayPolicy;
use rackd_types::Condition;
use rackd_types::condition::reasons;

use crate::compile::{self, CompiledPolicy, Gateway};
use crate::conditions as cond;
use crate::endpoints::{self, Endpoint, NodeInfo};
use crate::types::{
    Action, Candidate, EgressAddress, Elections, EntryKey, GatewayGroup, GroupId, Input, PodRef,
    PolicyEntry, PolicyStatus, Resolution,
};

/// How many examples a condition message lists before "and N more".
const EXAMPLES: usize = 3;

/// Resolves every policy against the pods and nodes.
///
/// Policies are applied in name order and the first to claim a (source IP, destination CIDR)
/// key keeps it; later ones get a [`cond::POLICY_OVERLAP`] condition. Cost: one pass over the
/// nodes per gateway slot and over the endpoints per policy, then O(selected IPs x CIDRs)
/// map insertions; no pairwise comparison of policies or pods.
pub fn resolve(input: &Input<'_>) -> Resolution {
    let nodes = endpoints::index_nodes(input.nodes);
    let eps = endpoints::endpoints(input.pods);

    let mut policies: Vec<&CiliumEgressGatewayPolicy> = input.policies.to_vec();
    policies.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));

    let mut out = Resolution::default();
    for p in policies {
        let name = p.metadata.name.clone().unwrap_or_default();
        let status = match compile::compile(p) {
            Ok(c) => resolve_policy(&name, &c, &eps, &nodes, input, &mut out),
            Err(errs) => invalid(&errs),
        };
        out.policies.insert(name, status);
    }
    for s in out.policies.values_mut() {
        s.conditions.sort();
        s.conditions.dedup();
    }
    out
}

fn invalid(errs: &[compile::PolicyError]) -> PolicyStatus {
    let list: Vec<String> = errs.iter().map(ToString::to_string).collect();
    PolicyStatus {
        valid: false,
        conditions: vec![Condition::problem(
            cond::POLICY_INVALID,
            reasons::INVALID,
            format!(
                "{}; the policy is not enforced: its pods leave with their node's address, as when Cilium's parser rejects a policy",
                list.join("; ")
            ),
        )],
        ..PolicyStatus::default()
    }
}

fn resolve_policy(
    name: &str,
    c: &CompiledPolicy,
    eps: &[Endpoint<'_>],
    nodes: &BTreeMap<&str, NodeInfo<'_>>,
    input: &Input<'_>,
    out: &mut Resolution,
) -> PolicyStatus {
    let mut status = PolicyStatus {
        valid: true,
        ..PolicyStatus::default()
    };
    let conds = &mut status.conditions;

    let mut groups: Vec<GatewayGroup> = c
        .gateways
        .iter()
        .map(|g| group(name, g, nodes, input.elections, conds))
        .collect();

    for gw in &c.gateways {
        let EgressAddress::Ip(a) = gw.egress else {
            continue;
        };
        let other: Vec<&IpNet> = c
            .destinations
            .iter()
            .filter(|d| d.addr().is_ipv4() != a.is_ipv4())
            .collect();
        if !other.is_empty() {
            conds.push(Condition::problem(
                cond::EGRESS_IP_FAMILY_MISMATCH,
                reasons::INVALID,
                format!(
                    "{}: egressIP {a} cannot source traffic to {}, of the other address family: that traffic is not SNATed as the policy asks (Cilium's gateway drops it, DROP_NO_EGRESS_IP)",
                    gw.slot,
                    list(other.iter())
                ),
            ));
        }
    }

    if !c.unused_excluded.is_empty() {
        conds.push(Condition::problem(
            cond::EXCLUDED_CIDR_UNUSED,
            reasons::INVALID,
            format!(
                "excludedCIDRs {} lie within no destinationCIDR, so they have no effect (a destination prefix at least as long wins the lookup); not programmed",
                list(c.unused_excluded.iter())
            ),
        ));
    }

    let mut local: BTreeMap<EntryKey, PolicyEntry> = BTreeMap::new();
    // address -> (keeper, each other claimant)
    let mut duplicates: BTreeMap<IpAddr, (PodRef, BTreeSet<PodRef>)> = BTreeMap::new();
    let mut nodes_without_ip: BTreeSet<&str> = BTreeSet::new();

    for ep in eps {
        if !c.selects(ep, input.namespaces, nodes) {
            continue;
        }
        status.selected_pods += 1;
        // Cilium (multi-gateway, PR #39304): the endpoint UID's FNV-1a hash modulo the number
        // of gateways. rackd indexes the gateways in spec order, not by gateway IP as Cilium
        // sorts them, so a failover in one group never moves the pods of another (README).
        let slot = usize::try_from(ep.pin)
            .ok()
            .and_then(|pin| pin.checked_rem(groups.len()));
        let Some(g) = slot.and_then(|i| groups.get_mut(i)) else {
            continue; // no gateway slot at all: compile() always yields one
        };
        g.pinned_pods += 1;
        let action = match &g.active {
            Some(a) => Action::Gateway {
                group: g.id.clone(),
                node: a.node.clone(),
                node_ip: a.ip,
                egress: g.egress.clone(),
            },
            None => Action::NoGateway {
                group: g.id.clone(),
            },
        };
        let source_node_ip = nodes.get(ep.node).and_then(|n| n.ip);
        if source_node_ip.is_none() {
            nodes_without_ip.insert(ep.node);
        }
        let pod = PodRef {
            namespace: ep.namespace.to_owned(),
            name: ep.name.to_owned(),
        };
        let entry = |action: Action| PolicyEntry {
            action,
            policy: name.to_owned(),
            pod: pod.clone(),
            source_node: ep.node.to_owned(),
            source_node_ip,
        };
        for &ip in &ep.ips {
            // Destinations first, exclusions second: on an identical key the exclusion
            // wins, as in Cilium's forEachEndpointAndCIDR (later map update overwrites).
            for d in same_family(&c.destinations, ip) {
                insert(
                    &mut local,
                    &mut duplicates,
                    key(ip, d),
                    entry(action.clone()),
                );
            }
            for e in same_family(&c.excluded, ip) {
                insert(
                    &mut local,
                    &mut duplicates,
                    key(ip, e),
                    entry(Action::Excluded),
                );
            }
        }
    }

    for (addr, (keeper, others)) in &duplicates {
        conds.push(Condition::problem(
            cond::DUPLICATE_POD_IP,
            reasons::CONFLICT,
            format!(
                "address {addr} is claimed by pods {keeper} and {}; {keeper} (first by namespace/name) keeps its entries",
                list(others.iter())
            ),
        ));
    }
    if !nodes_without_ip.is_empty() {
        conds.push(Condition::problem(
            cond::SOURCE_NODE_WITHOUT_IP,
            reasons::NOT_FOUND,
            format!(
                "selected pods run on nodes {} that are unknown or have no InternalIP: gateways cannot tunnel their replies back",
                list(nodes_without_ip.iter())
            ),
        ));
    }
    for g in groups.iter().filter(|g| g.active.is_none()) {
        let Some(gw) = c.gateways.iter().find(|gw| gw.slot == g.id.slot) else {
            continue;
        };
        conds.push(Condition::problem(
            cond::NO_GATEWAY_NODE,
            reasons::NOT_FOUND,
            format!(
                "{}: no node with an InternalIP matches nodeSelector {}: traffic from the {} selected pods pinned to it to {} is dropped (Cilium drops it too)",
                g.id.slot,
                compile::describe(&gw.selector),
                g.pinned_pods,
                list(c.destinations.iter()),
            ),
        ));
    }

    merge(name, local, out, &mut status);
    status.groups = groups.iter().map(|g| g.id.clone()).collect();
    for g in groups {
        out.groups.insert(g.id.clone(), g);
    }
    status
}

/// Builds a gateway group: candidates sorted by name (the node index is), the elected one or
/// Cilium's first-by-name.
fn group(
    policy: &str,
    gw: &Gateway,
    nodes: &BTreeMap<&str, NodeInfo<'_>>,
    elections: &Elections,
    conds: &mut Vec<Condition>,
) -> GatewayGroup {
    let id = GroupId::new(policy, gw.slot);
    let mut candidates = Vec::new();
    let mut without_ip = Vec::new();
    for (&node, info) in nodes {
        if !gw.selector.matches(&info.labels) {
            continue;
        }
        match info.ip {
            Some(ip) => candidates.push(Candidate {
                node: node.to_owned(),
                ip,
            }),
            None => without_ip.push(node),
        }
    }
    if !without_ip.is_empty() {
        conds.push(Condition::problem(
            cond::GATEWAY_NODE_WITHOUT_IP,
            reasons::NOT_FOUND,
            format!(
                "{}: nodes {} match nodeSelector {} but have no InternalIP to tunnel to; they are not gateway candidates",
                gw.slot,
                list(without_ip.iter()),
                compile::describe(&gw.selector)
            ),
        ));
    }
    let (active, elected) = match elections.get(&id) {
        None => (candidates.first().cloned(), false),
        Some(n) => match candidates.iter().find(|c| &c.node == n) {
            Some(c) => (Some(c.clone()), true),
            None => {
                conds.push(Condition::problem(
                    cond::ELECTION_NOT_A_CANDIDATE,
                    reasons::INVALID,
                    format!(
                        "{}: elected node {n} is not a candidate; using the first candidate by name until re-elected",
                        gw.slot
                    ),
                ));
                (candidates.first().cloned(), false)
            }
        },
    };
    GatewayGroup {
        id,
        egress: gw.egress.clone(),
        candidates,
        active,
        elected,
        pinned_pods: 0,
    }
}

fn key(source: IpAddr, destination: IpNet) -> EntryKey {
    EntryKey {
        source,
        destination,
    }
}

/// The prefixes of `ip`'s family: a v4 pod address pairs only with v4 destinations (Cilium's
/// updateEgressRules4/6 skip mixed pairs).
fn same_family(cidrs: &[IpNet], ip: IpAddr) -> impl Iterator<Item = IpNet> + '_ {
    cidrs
        .iter()
        .copied()
        .filter(move |c| c.addr().is_ipv4() == ip.is_ipv4())
}

/// Inserts into one policy's map. The same pod overwrites (exclusion after destination);
/// another pod with the same address does not, and is recorded.
fn insert(
    local: &mut BTreeMap<EntryKey, PolicyEntry>,
    duplicates: &mut BTreeMap<IpAddr, (PodRef, BTreeSet<PodRef>)>,
    k: EntryKey,
    e: PolicyEntry,
) {
    match local.entry(k) {
        Entry::Vacant(v) => {
            v.insert(e);
        }
        Entry::Occupied(mut o) if o.get().pod == e.pod => {
            o.insert(e);
        }
        Entry::Occupied(o) => {
            duplicates
                .entry(k.source)
                .or_insert_with(|| (o.get().pod.clone(), BTreeSet::new()))
                .1
                .insert(e.pod);
        }
    }
}

/// Moves one policy's entries into the shared map; a key already there belongs to a policy
/// whose name sorts first, which wins it.
fn merge(
    name: &str,
    local: BTreeMap<EntryKey, PolicyEntry>,
    out: &mut Resolution,
    status: &mut PolicyStatus,
) {
    // winner -> (lost keys, first lost key)
    let mut lost: BTreeMap<String, (usize, EntryKey)> = BTreeMap::new();
    for (k, e) in local {
        match out.entries.entry(k) {
            Entry::Vacant(v) => {
                v.insert(e);
                status.entries += 1;
            }
            Entry::Occupied(o) => {
                lost.entry(o.get().policy.clone()).or_insert((0, k)).0 += 1;
            }
        }
    }
    for (winner, (n, example)) in lost {
        status.conditions.push(Condition::problem(
            cond::POLICY_OVERLAP,
            reasons::CONFLICT,
            format!(
                "{n} (source, destination) entries, e.g. {example}, are also produced by policy {winner:?}, which wins them: rackd applies policies in name order and the first keeps a key (Cilium applies them in random map order, cilium/cilium#27491); {name:?} does not apply to that traffic"
            ),
        ));
    }
}

/// `a, b, c and 4 more`.
fn list<T: std::fmt::Display>(items: impl ExactSizeIterator<Item = T>) -> String {
    let total = items.len();
    let shown: Vec<String> = items.take(EXAMPLES).map(|i| i.to_string()).collect();
    match total.saturating_sub(EXAMPLES) {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
}
