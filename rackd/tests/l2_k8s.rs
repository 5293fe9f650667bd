//! L2 announcements on Kubernetes Leases, end to end: the L2 lab (`l2common`: three rackd
//! nodes with the eBPF responder, a client probing every 10 ms on the same segment) with a
//! real kube-apiserver on the management segment instead of the directory and etcd. The
//! seeds' pool, policy and deathstar (`configs/l2lab`) are applied with kubectl; rackd runs
//! with the chart's ServiceAccount and RBAC and `--l2-lease-backend kubernetes`.
//!
//! The API server holds one Lease per node and one claim Lease per IP group (not one per
//! Service); each fault (kill -9 of the holder's rackd, a node crash, its link down, SIGTERM)
//! is injected `RACKD_L2_RUNS` times (default 2): another node takes over, the client reaches
//! the IPs through it, and no 10 ms prober window ever sees two MACs answering.
//!
//! Timings are printed, not asserted; with `RACKD_L2_OUT=FILE` they are also written there as
//! JSON with date, commit and machine (rackd's README: `RACKD_L2_RUNS=10
//! RACKD_L2_OUT=rackd/benches/data/l2_k8s-DATE.json cargo test -p rackd --test l2_k8s`, and the
//! same for `l2_lab`, the etcd backend, beside it).
#![allow(clippy::unwrap_used, clippy::disallowed_types)]

mod k8scommon;
mod l2common;

use std::time::Duration;

use k8scommon::{prepare_cluster, wait_for, workspace};
use kubelab::{Cluster, ClusterOptions};
use l2common::{FAST, K8sPlane, L2Lab};
use netlab::Netns;

/// The API server's address on the management segment.
const API: &str = "10.99.0.50";

fn runs() -> usize {
    std::env::var("RACKD_L2_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2)
}

/// Names of the Leases with label `rackd.io/l2=<role>`, with their holders.
fn l2_leases(c: &Cluster, role: &str) -> Vec<(String, String)> {
    let out = c
        .kubectl_ok(&[
            "get",
            "leases",
            "-n",
            "kube-system",
            "-l",
            &format!("rackd.io/l2={role}"),
            "-o",
            r#"jsonpath={range .items[*]}{.metadata.name}={.spec.holderIdentity}{"\n"}{end}"#,
        ])
        .unwrap_or_default();
    out.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(n, h)| (n.to_owned(), h.to_owned()))
        .collect()
}

#[test]
fn l2_failover_on_kubernetes_leases_never_shows_two_macs() {
    let mut lab = L2Lab::prepare("l2-k8s", FAST, None);
    let api = Netns::new("k8-l2api").unwrap();
    lab.mgmt.attach(&api, "eth0").unwrap();
    api.addr_add("eth0", &format!("{API}/24")).unwrap();
    let cluster = Cluster::start(ClusterOptions {
        netns: Some(api.name().to_owned()),
        bind: API.parse().unwrap(),
        ..ClusterOptions::default()
    })
    .expect("etcd and kube-apiserver start");
    let kubeconfig = prepare_cluster(&cluster);
    let dir = workspace().join("configs/l2lab");
    let mut yaml = String::from("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: batuu\n");
    for f in [
        "lb-pool.yaml",
        "l2-policy.yaml",
        "nodes.yaml",
        "services.yaml",
    ] {
        yaml.push_str("\n---\n");
        yaml.push_str(&std::fs::read_to_string(dir.join(f)).unwrap());
    }
    cluster
        .kubectl_stdin(&["apply", "-f", "-"], &yaml)
        .expect("the L2 lab's YAML applies");
    lab.use_kubernetes(K8sPlane {
        cluster,
        ns: api,
        kubeconfig,
    });
    for i in 0..lab.nodes.len() {
        lab.start(i);
    }
    let (h4, h6) = lab.wait_settled(Duration::from_secs(60));
    let c = &lab.k8s.as_ref().unwrap().cluster;

    // O(nodes): one Lease per node, one claim per IP group, held by the announcing nodes.
    let nodes = l2_leases(c, "node");
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    let claims = wait_for("two claim Leases", Duration::from_secs(30), || {
        let v = l2_leases(c, "claim");
        (v.len() == 2).then_some(v)
    });
    let holders: Vec<&str> = claims.iter().map(|(_, h)| h.as_str()).collect();
    for h in [h4, h6] {
        assert!(
            holders.contains(&lab.nodes[h].name.as_str()),
            "{claims:?} vs {}",
            lab.nodes[h].name
        );
    }
    assert!(lab.client_reaches());

    let results = l2common::run_all_faults(&mut lab, runs());
    eprintln!("{}", l2common::report(&results));
    if let Ok(out) = std::env::var("RACKD_L2_OUT") {
        l2common::write_results(std::path::Path::new(&out), "kubernetes", &results);
    }
    // The claims follow the holders after all those faults.
    let (h4, h6) = lab.wait_settled(Duration::from_secs(30));
    let c = &lab.k8s.as_ref().unwrap().cluster;
    let claims = l2_leases(c, "claim");
    for h in [h4, h6] {
        assert!(
            claims.iter().any(|(_, n)| *n == lab.nodes[h].name),
            "{claims:?}"
        );
    }
}
