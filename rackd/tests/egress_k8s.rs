//! ★ Egress gateway failover on Kubernetes Leases (issue 17): the lab of `egresscommon` with
//! a real kube-apiserver on the router instead of configuration files and etcd. The Nodes,
//! Pods and the floating-`egressIP` policy are applied with kubectl (statuses as a kubelet
//! would write them); rackd runs with the chart's ServiceAccount and RBAC and
//! `--l2-lease-backend kubernetes`. node2 and node3 are candidates: the holder of the egress
//! IP's claim Lease answers ARP for it and SNATs; when it is powered off (rackd killed, links
//! cut) the other takes the Lease and new connections leave from the same egress IP.
#![allow(clippy::unwrap_used, clippy::disallowed_types)]

mod egresscommon;
mod k8scommon;

use std::time::{Duration, Instant};

use egresscommon::{FLOATING, Lab, PODS, cluster_yaml, pod_v4, pod_v6};
use k8scommon::{lease_holder, prepare_cluster, wait_for};
use kubelab::{Cluster, ClusterOptions};

/// The API server's address, on the router's loopback (every node routes 10.0.0.0/8 to it).
const API: &str = "10.99.0.50";
const EGRESS_IP: &str = "10.0.6.100";
/// The claim Lease of the egress IP (`l2announcer`'s naming: the address's dots as dashes).
const CLAIM: &str = "rackd-l2-10-0-6-100";

/// Applies the lab's Nodes and Pods as a kubelet would leave them: objects with kubectl, then
/// their statuses (the API server drops status on create).
fn apply_cluster(c: &Cluster, gateways: &[usize]) {
    // Pods need their namespace's default ServiceAccount, which kube-controller-manager
    // would make; it does not run here.
    let mut yaml = String::from(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: default, namespace: default}\n",
    );
    for doc in cluster_yaml(gateways).split("---\n") {
        // Pods get a container (the API requires one) and no status yet; Nodes keep theirs
        // out of the create too.
        let Some(head) = doc.split("\nstatus:").next() else {
            continue;
        };
        if head.trim().is_empty() {
            continue;
        }
        yaml.push_str("---\n");
        // The API server assigns uids.
        let mut head = head.to_owned();
        for k in 0..PODS.len() {
            head = head.replace(&format!(", uid: uid-{k}"), "");
        }
        let head = head.as_str();
        yaml.push_str(head);
        if head.contains("kind: Pod") {
            yaml = yaml.replace(
                &format!("spec: {{nodeName: {}}}", last_node(head)),
                &format!(
                    "spec: {{nodeName: {}, containers: [{{name: c, image: rackd.io/echo}}]}}",
                    last_node(head)
                ),
            );
        }
        yaml.push('\n');
    }
    c.kubectl_stdin(&["apply", "-f", "-"], &yaml)
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    for x in 1..=3 {
        let patch = format!(
            r#"{{"status":{{"addresses":[{{"type":"InternalIP","address":"10.0.{x}.2"}}]}}}}"#
        );
        c.kubectl_ok(&[
            "patch",
            "node",
            &format!("node{x}"),
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch,
        ])
        .unwrap();
    }
    for p in &PODS {
        let (v4, v6) = (pod_v4(p), pod_v6(p));
        let patch = format!(
            r#"{{"status":{{"phase":"Running","podIP":"{v4}","podIPs":[{{"ip":"{v4}"}},{{"ip":"{v6}"}}]}}}}"#
        );
        c.kubectl_ok(&[
            "patch",
            "pod",
            p.name,
            "-n",
            "default",
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch,
        ])
        .unwrap();
    }
}

/// The `nodeName` of a Pod document.
fn last_node(doc: &str) -> &str {
    doc.split("nodeName: ")
        .nth(1)
        .and_then(|r| r.split('}').next())
        .unwrap()
}

#[test]
fn a_dead_gateway_is_replaced_under_kubernetes_leases() {
    let mut lab = Lab::with(&[1, 2], false);
    lab.tor.addr_add("lo", &format!("{API}/32")).unwrap();
    let cluster = Cluster::start(ClusterOptions {
        netns: Some(lab.tor.name().to_owned()),
        bind: API.parse().unwrap(),
        ..ClusterOptions::default()
    })
    .expect("etcd and kube-apiserver start");
    let kubeconfig = prepare_cluster(&cluster);
    apply_cluster(&cluster, &lab.gateways);
    lab.use_kubernetes(cluster, kubeconfig);
    for i in 0..3 {
        lab.start_rackd(i);
    }
    // The positive control: no policy, the node's address.
    lab.wait_seen(0, "10.0.4.2", "10.0.1.2");
    let c = &lab.k8s.as_ref().unwrap().0;
    c.kubectl_stdin(&["apply", "-f", "-"], FLOATING).unwrap();
    lab.wait_seen(0, "10.0.4.2", EGRESS_IP);
    lab.wait_seen(3, "10.0.4.2", EGRESS_IP);
    let holder = lab
        .arp_holder(EGRESS_IP)
        .expect("the router resolved the egress IP");
    let c = &lab.k8s.as_ref().unwrap().0;
    assert_eq!(
        lease_holder(c, CLAIM).as_deref(),
        Some(format!("node{}", holder + 1).as_str()),
        "the claim Lease names the node that answers ARP"
    );

    let other = if holder == 1 { 2 } else { 1 };
    let t0 = Instant::now();
    lab.kill_rackd(holder);
    for dev in ["eth0", "net1"] {
        lab.nodes[holder].ip(&["link", "set", dev, "down"]).unwrap();
    }
    lab.wait_seen(0, "10.0.4.2", EGRESS_IP);
    let outage = t0.elapsed();
    assert_eq!(
        lab.arp_holder(EGRESS_IP),
        Some(other),
        "the survivor answers ARP"
    );
    let c = &lab.k8s.as_ref().unwrap().0;
    let want = format!("node{}", other + 1);
    wait_for(
        "the claim Lease to name the survivor",
        Duration::from_secs(30),
        || (lease_holder(c, CLAIM).as_deref() == Some(want.as_str())).then_some(()),
    );
    let survivor_pod = if other == 2 { 3 } else { 2 };
    lab.wait_seen(survivor_pod, "10.0.4.2", EGRESS_IP);
    eprintln!(
        "egress failover on Kubernetes Leases: new connections through node{} after {outage:?}",
        other + 1
    );
}
