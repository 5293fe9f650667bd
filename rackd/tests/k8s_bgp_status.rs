//! The BGP status writer against a real kube-apiserver (`kubelab`), with the chart's RBAC and
//! ServiceAccount: two rackd nodes, each its own API client, configuration source, Lease
//! candidate and [`BgpStatusWriter`], run in-process so each node's sessions can be given as
//! `rackctl bgp peers` rows, one `active`, one `idle`, as a peer that never answers shows
//! them (`tests/k8s_frr.rs` shows the daemon writing its real established sessions).
//!
//! - a ClusterConfig selecting both nodes: two NodeConfigs owned by it, each with the peer
//!   status its own node wrote;
//! - a second ClusterConfig selecting a node the first owns: `ConflictingClusterConfig`;
//! - one selecting no node: `NoMatchingNode` True, then a node labelled: False and its
//!   NodeConfig created;
//! - a missing PeerConfig: `MissingPeerConfigs`; a missing auth Secret: `MissingAuthSecret`
//!   True, the Secret created: False;
//! - a node unselected: its NodeConfig deleted;
//! - the follower writes no cluster-level object, and nobody writes in steady state.
//!
//! Every cluster is private (its own etcd and API server), so runs in parallel do not meet.

#![allow(clippy::unwrap_used, clippy::disallowed_types)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kubelab::{Cluster, ClusterOptions};
use rackd::bgp::BgpPeers;
use rackd::controller::{Controllers, RunOptions};
use rackd::k8s::bgp_status::BgpStatusWriter;
use rackd::k8s::lease::{ElectionTimings, LeaseConfig};
use rackd::metrics::{Metrics, WriteKindLabels};
use rackd_model::rackd_types::SessionState;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

mod k8scommon;

use k8scommon::{condition_status, lease_holder, prepare_cluster, wait_for};

const OBJECTS: &str = r#"
apiVersion: v1
kind: Node
metadata: {name: node-a, labels: {rack: r1, bgp: "yes"}}
---
apiVersion: v1
kind: Node
metadata: {name: node-b, labels: {rack: r1}}
---
apiVersion: v1
kind: Node
metadata: {name: node-c}
---
apiVersion: cilium.io/v2
kind: CiliumBGPPeerConfig
metadata: {name: generic}
spec: {}
---
apiVersion: cilium.io/v2
kind: CiliumBGPClusterConfig
metadata: {name: racks}
spec:
  nodeSelector: {matchLabels: {rack: r1}}
  bgpInstances:
  - name: i65001
    localASN: 65001
    peers:
    - {name: tor, peerAddress: 192.0.2.1, peerASN: 65000, peerConfigRef: {name: generic}}
"#;

/// A ClusterConfig called `name` selecting `selector`, its peer using PeerConfig `pc`.
fn cluster_config(name: &str, selector: &str, pc: &str) -> String {
    format!(
        "apiVersion: cilium.io/v2\nkind: CiliumBGPClusterConfig\nmetadata: {{name: {name}}}\nspec:\n  nodeSelector: {{matchLabels: {{{selector}}}}}\n  bgpInstances:\n  - name: i65001\n    localASN: 65001\n    peers:\n    - {{name: tor, peerAddress: 192.0.2.1, peerASN: 65000, peerConfigRef: {{name: {pc}}}}}\n"
    )
}

/// One rackd node's Kubernetes side, in-process.
struct Node {
    name: &'static str,
    metrics: Arc<Metrics>,
    _peers: watch::Sender<BgpPeers>,
    stop: CancellationToken,
    controllers: Option<Controllers>,
}

impl Node {
    async fn start(name: &'static str, kubeconfig: &Path, state: SessionState) -> Node {
        let opts = rackd::k8s::K8sOptions {
            kubeconfig: Some(kubeconfig.to_path_buf()),
            election: ElectionTimings {
                lease_duration: Duration::from_secs(4),
                renew_deadline: Duration::from_secs(3),
                retry_period: Duration::from_secs(1),
            },
            ..Default::default()
        };
        let (client, server) = rackd::k8s::client(&opts).await.unwrap();
        let metrics = Metrics::new();
        let stop = CancellationToken::new();
        let scope = rackd::k8s::Scope {
            all_pods: false,
            node_name: name.into(),
            secrets_namespace: "kube-system".into(),
        };
        let source = rackd::k8s::KubeSource::start(client.clone(), &server, &scope);
        let (config, _task) = rackd::config::spawn(
            source,
            rackd_model::CheckOptions {
                bgp_secrets_namespace: "kube-system".into(),
            },
            metrics.clone(),
            stop.clone(),
        );
        let (lead, _task) = rackd::k8s::lease::spawn(
            client.clone(),
            LeaseConfig {
                namespace: "kube-system".into(),
                name: rackd::k8s::LBIPAM_LEASE.into(),
                identity: name.into(),
                timings: opts.election,
            },
            stop.clone(),
        );
        // What `rackctl bgp peers` shows for a peer that never answers.
        let row = rackd_api::BgpPeer {
            name: "tor".into(),
            local_asn: 65001,
            peer_asn: 65000,
            peer_address: "192.0.2.1".into(),
            peer_port: 179,
            session_state: state,
            ..Default::default()
        };
        let (peers_tx, peers) = watch::channel(BgpPeers::from([row]));
        let mut controllers = Controllers::new(metrics.clone(), RunOptions::default());
        let (writer, node_configs) =
            BgpStatusWriter::start(client, name, "kube-system", metrics.clone());
        controllers.spawn(writer, (config, lead, peers, node_configs));
        Node {
            name,
            metrics,
            _peers: peers_tx,
            stop,
            controllers: Some(controllers),
        }
    }

    fn writes(&self, kind: &str) -> u64 {
        self.metrics
            .k8s_status_writes
            .get_or_create(&WriteKindLabels { kind: kind.into() })
            .get()
    }

    /// Writes of cluster-level objects (the leader's).
    fn cluster_writes(&self) -> u64 {
        [
            "bgpnodeconfig",
            "bgpnodeconfig_delete",
            "bgpclusterconfig",
            "bgppeerconfig",
        ]
        .iter()
        .map(|k| self.writes(k))
        .sum()
    }

    fn all_writes(&self) -> u64 {
        self.cluster_writes() + self.writes("bgpnodeconfig_status")
    }
}

fn get(c: &Cluster, what: &str, name: &str, jsonpath: &str) -> String {
    c.kubectl_ok(&["get", what, name, "-o", &format!("jsonpath={jsonpath}")])
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn cond(c: &Cluster, kind: &str, name: &str, type_: &str) -> String {
    condition_status(c, kind, None, name, type_)
}

fn wait_cond(c: &Cluster, kind: &str, name: &str, type_: &str, want: &str) {
    wait_for(
        &format!("{kind} {name} {type_}={want}"),
        Duration::from_secs(30),
        || (cond(c, kind, name, type_) == want).then_some(()),
    );
}

fn node_config_exists(c: &Cluster, name: &str) -> bool {
    !get(c, "ciliumbgpnodeconfig", name, "{.metadata.name}").is_empty()
}

#[test]
fn node_configs_conditions_and_peer_status_are_written_by_the_right_rackd() {
    // RUST_LOG=rackd=debug shows the writers' decisions.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let c = Cluster::start(ClusterOptions::default()).expect("kube-apiserver starts");
    let sa = prepare_cluster(&c);
    c.kubectl_stdin(&["apply", "-f", "-"], OBJECTS).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let nodes = rt.block_on(async {
        vec![
            Node::start("node-a", &sa, SessionState::Active).await,
            Node::start("node-b", &sa, SessionState::Idle).await,
        ]
    });

    // One NodeConfig per selected node, owned by the ClusterConfig (its uid), as rackd.
    let racks_uid = get(&c, "ciliumbgpclusterconfig", "racks", "{.metadata.uid}");
    assert!(!racks_uid.is_empty());
    for n in ["node-a", "node-b"] {
        let owner = wait_for(&format!("NodeConfig {n}"), Duration::from_secs(60), || {
            let o = get(
                &c,
                "ciliumbgpnodeconfig",
                n,
                "{.metadata.ownerReferences[0].uid} {.metadata.ownerReferences[0].controller}",
            );
            (!o.is_empty()).then_some(o)
        });
        assert_eq!(owner, format!("{racks_uid} true"));
        assert_eq!(
            get(
                &c,
                "ciliumbgpnodeconfig",
                n,
                "{.spec.bgpInstances[0].peers[0].peerConfigRef.name}"
            ),
            "generic"
        );
    }
    assert!(!node_config_exists(&c, "node-c"), "node-c is not selected");
    let managers = c
        .kubectl_ok(&[
            "get",
            "ciliumbgpnodeconfig",
            "node-a",
            "--show-managed-fields",
            "-o",
            "jsonpath={.metadata.managedFields[*].manager}",
        ])
        .unwrap();
    assert!(managers.contains("rackd"), "{managers}");

    // Each node wrote its own sessions.
    for (n, want) in [("node-a", "active"), ("node-b", "idle")] {
        wait_for(
            &format!("{n}'s peer status"),
            Duration::from_secs(30),
            || {
                let s = get(
                    &c,
                    "ciliumbgpnodeconfig",
                    n,
                    "{.status.bgpInstances[0].peers[0].peeringState}",
                );
                (s == want).then_some(())
            },
        );
    }
    assert_eq!(
        get(
            &c,
            "ciliumbgpnodeconfig",
            "node-a",
            "{.status.bgpInstances[0].peers[0].peerAddress}"
        ),
        "192.0.2.1"
    );
    assert_eq!(
        cond(
            &c,
            "ciliumbgpclusterconfig",
            "racks",
            "cilium.io/NoMatchingNode"
        ),
        "False"
    );
    assert_eq!(
        cond(
            &c,
            "ciliumbgppeerconfig",
            "generic",
            "cilium.io/MissingAuthSecret"
        ),
        "False"
    );

    // Exactly one leader writes cluster-level objects.
    let holder = wait_for("a Lease holder", Duration::from_secs(30), || {
        lease_holder(&c, "rackd-lbipam")
    });
    let (leader, follower) = if holder == nodes[0].name {
        (&nodes[0], &nodes[1])
    } else {
        (&nodes[1], &nodes[0])
    };
    assert!(
        leader.cluster_writes() >= 4,
        "the leader's writes are counted"
    );

    // A second ClusterConfig selecting node-a, which racks owns: it loses.
    // One selecting no node; one referencing a missing PeerConfig; a PeerConfig whose auth
    // Secret is missing.
    let more = [
        cluster_config("greedy", "bgp: \"yes\"", "generic"),
        cluster_config("lonely", "role: spine", "generic"),
        cluster_config("broken", "rack: r9", "nope"),
        "apiVersion: cilium.io/v2\nkind: CiliumBGPPeerConfig\nmetadata: {name: secure}\nspec: {authSecretRef: bgp-pw}\n".to_owned(),
    ]
    .join("---\n");
    c.kubectl_stdin(&["apply", "-f", "-"], &more).unwrap();
    wait_cond(
        &c,
        "ciliumbgpclusterconfig",
        "greedy",
        "cilium.io/ConflictingClusterConfig",
        "True",
    );
    assert!(
        get(
            &c,
            "ciliumbgpclusterconfig",
            "greedy",
            r#"{.status.conditions[?(@.type=="cilium.io/ConflictingClusterConfig")].message}"#
        )
        .contains("[racks]")
    );
    assert_eq!(
        cond(
            &c,
            "ciliumbgpclusterconfig",
            "racks",
            "cilium.io/ConflictingClusterConfig"
        ),
        "False"
    );
    assert_eq!(
        get(
            &c,
            "ciliumbgpnodeconfig",
            "node-a",
            "{.metadata.ownerReferences[0].name}"
        ),
        "racks",
        "first owner wins"
    );
    wait_cond(
        &c,
        "ciliumbgpclusterconfig",
        "lonely",
        "cilium.io/NoMatchingNode",
        "True",
    );
    wait_cond(
        &c,
        "ciliumbgpclusterconfig",
        "broken",
        "cilium.io/MissingPeerConfigs",
        "True",
    );
    wait_cond(
        &c,
        "ciliumbgppeerconfig",
        "secure",
        "cilium.io/MissingAuthSecret",
        "True",
    );
    let since = get(
        &c,
        "ciliumbgpclusterconfig",
        "lonely",
        r#"{.status.conditions[?(@.type=="cilium.io/MissingPeerConfigs")].lastTransitionTime}"#,
    );

    // Cleared: a node labelled, the Secret created.
    c.kubectl_ok(&["label", "node", "node-c", "role=spine"])
        .unwrap();
    wait_cond(
        &c,
        "ciliumbgpclusterconfig",
        "lonely",
        "cilium.io/NoMatchingNode",
        "False",
    );
    wait_for("node-c's NodeConfig", Duration::from_secs(30), || {
        (get(
            &c,
            "ciliumbgpnodeconfig",
            "node-c",
            "{.metadata.ownerReferences[0].name}",
        ) == "lonely")
            .then_some(())
    });
    assert_eq!(
        get(
            &c,
            "ciliumbgpclusterconfig",
            "lonely",
            r#"{.status.conditions[?(@.type=="cilium.io/MissingPeerConfigs")].lastTransitionTime}"#
        ),
        since,
        "a condition whose status did not change keeps its transition time"
    );
    c.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "bgp-pw",
        "-n",
        "kube-system",
        "--from-literal=password=s3cret",
    ])
    .unwrap();
    wait_cond(
        &c,
        "ciliumbgppeerconfig",
        "secure",
        "cilium.io/MissingAuthSecret",
        "False",
    );
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: cilium.io/v2\nkind: CiliumBGPPeerConfig\nmetadata: {name: nope}\nspec: {}\n",
    )
    .unwrap();
    wait_cond(
        &c,
        "ciliumbgpclusterconfig",
        "broken",
        "cilium.io/MissingPeerConfigs",
        "False",
    );

    // Unselected: node-b's NodeConfig goes; node-a's stays.
    c.kubectl_ok(&["label", "node", "node-b", "rack-"]).unwrap();
    wait_for(
        "node-b's NodeConfig deleted",
        Duration::from_secs(30),
        || (!node_config_exists(&c, "node-b")).then_some(()),
    );
    assert!(node_config_exists(&c, "node-a"));
    assert!(leader.writes("bgpnodeconfig_delete") >= 1);

    // The follower wrote only its own NodeConfig's status.
    assert_eq!(
        follower.cluster_writes(),
        0,
        "a follower writes no cluster-level object"
    );
    assert!(
        follower.writes("bgpnodeconfig_status") >= 1,
        "the follower wrote its own status"
    );

    // Steady state: nothing more is written by anyone.
    std::thread::sleep(Duration::from_secs(3));
    let settled: Vec<u64> = nodes.iter().map(Node::all_writes).collect();
    std::thread::sleep(Duration::from_secs(5));
    let later: Vec<u64> = nodes.iter().map(Node::all_writes).collect();
    assert_eq!(settled, later, "no writes in steady state");

    rt.block_on(async {
        for mut n in nodes {
            n.stop.cancel();
            if let Some(c) = n.controllers.take() {
                c.stop().await;
            }
        }
    });
}
