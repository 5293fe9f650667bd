//! The seeds' `remote-outpost` policy, read through the model exactly as the daemon reads a
//! configuration directory, resolved against a few pods and nodes.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::{ip, key};
use egressgw::{Action, EgressAddress, GatewaySlot, GroupId, Input, resolve};
use rackd_model::{CheckOptions, Snapshot, parse_documents};

const SEED: &str = include_str!("../../configs/seeds/seed-000-egress-gateway.yaml");

const CLUSTER: &str = "\
apiVersion: v1
kind: Node
metadata: {name: node1, labels: {kubernetes.io/hostname: node1}}
status: {addresses: [{type: InternalIP, address: 172.18.0.11}, {type: InternalIP, address: 'fc00:f853:ccd:e793::11'}]}
---
apiVersion: v1
kind: Node
metadata: {name: node2, labels: {egress-gw: 'true'}}
status: {addresses: [{type: Hostname, address: node2}, {type: InternalIP, address: 172.18.0.12}]}
---
apiVersion: v1
kind: Node
metadata: {name: node3, labels: {egress-gw: 'true'}}
status: {addresses: [{type: InternalIP, address: 172.18.0.13}]}
---
apiVersion: v1
kind: Pod
metadata: {name: tiefighter, namespace: default, uid: 3b7c1a9e-0001, labels: {org: empire, class: tiefighter}}
spec: {nodeName: node1}
status: {phase: Running, podIP: 10.0.1.5, podIPs: [{ip: 10.0.1.5}]}
---
apiVersion: v1
kind: Pod
metadata: {name: xwing, namespace: default, uid: 3b7c1a9e-0002, labels: {org: alliance}}
spec: {nodeName: node1}
status: {phase: Running, podIP: 10.0.1.6}
---
apiVersion: v1
kind: Pod
metadata: {name: mediabot, namespace: default, uid: 3b7c1a9e-0003, labels: {org: empire}}
spec: {nodeName: node3}
status: {phase: Running, podIP: 10.0.3.7}
---
apiVersion: v1
kind: Pod
metadata: {name: probe, namespace: kube-system, uid: 3b7c1a9e-0004, labels: {org: empire}}
spec: {nodeName: node1, hostNetwork: true}
status: {phase: Running, podIP: 172.18.0.11}
---
apiVersion: v1
kind: Pod
metadata: {name: job-done, namespace: default, uid: 3b7c1a9e-0005, labels: {org: empire}}
spec: {nodeName: node1}
status: {phase: Succeeded, podIP: 10.0.1.9}
---
apiVersion: v1
kind: Pod
metadata: {name: pending, namespace: default, uid: 3b7c1a9e-0006, labels: {org: empire}}
spec: {nodeName: node1}
status: {phase: Pending}
";

#[test]
fn remote_outpost_resolves_to_node2_interface_net1() {
    let out = Snapshot::build(
        &[
            parse_documents("seed-000-egress-gateway.yaml", SEED),
            parse_documents("cluster.yaml", CLUSTER),
        ],
        &CheckOptions::default(),
    );
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let snap = out.snapshot;
    let policies: Vec<_> = snap.egress_gateway_policies().collect();
    let pods: Vec<_> = snap.pods().collect();
    let nodes: Vec<_> = snap.nodes().collect();
    assert_eq!(policies.len(), 1);

    let res = resolve(&Input {
        policies: &policies,
        pods: &pods,
        nodes: &nodes,
        namespaces: &BTreeMap::new(),
        elections: &BTreeMap::new(),
    });

    let group = GroupId::new("remote-outpost", GatewaySlot::Single);
    // tiefighter (node1) and mediabot (node3, itself a gateway node) are selected; xwing is
    // alliance, probe uses the host network, job-done has finished, pending has no address.
    assert_eq!(
        res.entries.keys().copied().collect::<Vec<_>>(),
        [
            key("10.0.1.5", "10.0.4.0/24"),
            key("10.0.3.7", "10.0.4.0/24")
        ]
    );
    let e = &res.entries[&key("10.0.1.5", "10.0.4.0/24")];
    assert_eq!(e.policy, "remote-outpost");
    assert_eq!(e.pod.to_string(), "default/tiefighter");
    assert_eq!(e.source_node, "node1");
    assert_eq!(
        e.source_node_ip,
        Some(ip("172.18.0.11")),
        "IPv4 InternalIP preferred"
    );
    assert_eq!(
        e.action,
        Action::Gateway {
            group: group.clone(),
            node: "node2".into(),
            node_ip: ip("172.18.0.12"),
            egress: EgressAddress::Interface("net1".into()),
        }
    );

    let g = &res.groups[&group];
    let names: Vec<&str> = g.candidates.iter().map(|c| c.node.as_str()).collect();
    assert_eq!(names, ["node2", "node3"]);
    assert_eq!(
        g.active.as_ref().map(|c| c.node.as_str()),
        Some("node2"),
        "first by name"
    );
    assert!(!g.elected);
    assert_eq!(g.pinned_pods, 2);

    let s = &res.policies["remote-outpost"];
    assert!(s.valid);
    assert!(s.conditions.is_empty(), "{:?}", s.conditions);
    assert_eq!((s.selected_pods, s.entries), (2, 2));
    assert_eq!(s.groups, [group]);

    // What each node programs.
    assert_eq!(res.entries_from_node("node1").count(), 1);
    assert_eq!(res.entries_from_node("node3").count(), 1);
    assert_eq!(res.entries_via_gateway("node2").count(), 2);
    assert_eq!(res.entries_via_gateway("node3").count(), 0);
}
