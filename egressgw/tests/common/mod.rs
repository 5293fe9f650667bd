//! Fixtures shared by the integration tests: Pods, Nodes and policies built in a line each.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::IpAddr;

use egressgw::{Elections, Input, NamespaceLabels, Resolution, resolve};
use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeStatus, Pod, PodIP, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use rackd_model::cilium::CiliumEgressGatewayPolicy;

pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A running pod `ns/name` on `node` with `ips` and `labels`; its UID is `uid-<ns>-<name>`.
pub fn pod(ns: &str, name: &str, node: &str, ips: &[&str], l: &[(&str, &str)]) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            uid: Some(format!("uid-{ns}-{name}")),
            labels: Some(labels(l)),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            ..PodSpec::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            pod_ip: ips.first().map(|s| (*s).to_owned()),
            pod_ips: Some(
                ips.iter()
                    .map(|s| PodIP {
                        ip: (*s).to_owned(),
                    })
                    .collect(),
            ),
            ..PodStatus::default()
        }),
    }
}

pub fn host_network(mut p: Pod) -> Pod {
    if let Some(s) = p.spec.as_mut() {
        s.host_network = Some(true);
    }
    p
}

pub fn phase(mut p: Pod, phase: &str) -> Pod {
    if let Some(s) = p.status.as_mut() {
        s.phase = Some(phase.into());
    }
    p
}

pub fn with_uid(mut p: Pod, uid: Option<&str>) -> Pod {
    p.metadata.uid = uid.map(str::to_owned);
    p
}

/// A node with `labels` and InternalIPs `ips` (none: no address at all).
pub fn node(name: &str, ips: &[&str], l: &[(&str, &str)]) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels(l)),
            ..ObjectMeta::default()
        },
        status: Some(NodeStatus {
            addresses: Some(
                ips.iter()
                    .map(|a| NodeAddress {
                        type_: "InternalIP".into(),
                        address: (*a).to_owned(),
                    })
                    .collect(),
            ),
            ..NodeStatus::default()
        }),
        ..Node::default()
    }
}

/// A policy from YAML, deserialised without validation.
pub fn policy(yaml: &str) -> CiliumEgressGatewayPolicy {
    serde_yaml_ng::from_str(yaml).unwrap()
}

/// A cluster to resolve: owned objects, borrowed into an [`Input`] by [`World::resolve`].
#[derive(Default)]
pub struct World {
    pub policies: Vec<CiliumEgressGatewayPolicy>,
    pub pods: Vec<Pod>,
    pub nodes: Vec<Node>,
    pub namespaces: NamespaceLabels,
    pub elections: Elections,
}

impl World {
    pub fn resolve(&self) -> Resolution {
        let policies: Vec<&CiliumEgressGatewayPolicy> = self.policies.iter().collect();
        let pods: Vec<&Pod> = self.pods.iter().collect();
        let nodes: Vec<&Node> = self.nodes.iter().collect();
        resolve(&Input {
            policies: &policies,
            pods: &pods,
            nodes: &nodes,
            namespaces: &self.namespaces,
            elections: &self.elections,
        })
    }
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub fn key(src: &str, dst: &str) -> egressgw::EntryKey {
    egressgw::EntryKey {
        source: ip(src),
        destination: dst.parse().unwrap(),
    }
}

/// The condition types of policy `name`.
pub fn condition_types(r: &Resolution, name: &str) -> Vec<String> {
    r.policies[name]
        .conditions
        .iter()
        .map(|c| c.type_.to_string())
        .collect()
}

/// The message of `name`'s condition of type `ty`.
pub fn message(r: &Resolution, name: &str, ty: &str) -> String {
    r.policies[name]
        .conditions
        .iter()
        .find(|c| c.type_ == ty)
        .map(|c| c.message.clone())
        .unwrap_or_else(|| panic!("{name} has no {ty} condition: {:?}", r.policies[name]))
}

/// Three nodes: `node1` a worker, `node2` and `node3` gateways (`egress-gw=true`).
pub fn three_nodes() -> Vec<Node> {
    vec![
        node("node1", &["192.168.1.1"], &[("role", "worker")]),
        node("node2", &["192.168.1.2"], &[("egress-gw", "true")]),
        node("node3", &["192.168.1.3"], &[("egress-gw", "true")]),
    ]
}

/// A single-gateway policy: pods with `org=empire` to `dsts`, via `egress-gw=true` nodes'
/// interface net1 (the seeds' remote-outpost shape).
pub fn empire_policy(name: &str, dsts: &[&str]) -> CiliumEgressGatewayPolicy {
    let dsts: Vec<String> = dsts.iter().map(|d| format!("\"{d}\"")).collect();
    policy(&format!(
        "apiVersion: cilium.io/v2\nkind: CiliumEgressGatewayPolicy\nmetadata: {{name: {name}}}\nspec:\n  destinationCIDRs: [{}]\n  selectors:\n  - podSelector: {{matchLabels: {{org: empire}}}}\n  egressGateway:\n    nodeSelector: {{matchLabels: {{egress-gw: 'true'}}}}\n    interface: net1\n",
        dsts.join(", ")
    ))
}
