//! `externalTrafficPolicy: Local` end to end (issue 4): the real lab file, FRR ToR and two
//! rackd nodes, with two LB-IPAM Services next to each other — `local` (ETP Local) and
//! `cluster` (ETP Cluster). The `local` Service's EndpointSlices are rewritten live, step by
//! step, and the ToR must follow: its /32 and /128 come only from the nodes with a ready local
//! endpoint, and vanish when there is none. Throughout, `cluster` stays advertised by both
//! nodes and no BGP session is reset: the ToR's per-neighbour `connectionsEstablished` and
//! `connectionsDropped` never move.
//!
//! The lab runs on a private copy of the layout (`containerlab/rackd-bgp.clab.yml`, `tor/`,
//! `configs/lab/`) in a temporary directory, so the files this test writes reach only its own
//! rackd nodes and never the repository's `configs/lab`.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Lab, text, wait};
use serde_json::Value;

/// A rackd node as the ToR sees it.
struct Node {
    name: &'static str,
    asn: &'static str,
    v4: &'static str,
    v6: &'static str,
    /// A pod address on this node (PodCIDRs of configs/lab/nodes.yaml).
    pod_v4: &'static str,
    pod_v6: &'static str,
}

const NODES: [Node; 2] = [
    Node {
        name: "node1",
        asn: "65001",
        v4: "10.0.1.2",
        v6: "fd00:10:0:1::2",
        pod_v4: "10.1.1.10",
        pod_v6: "fd00:10:1:1::10",
    },
    Node {
        name: "node2",
        asn: "65002",
        v4: "10.0.2.2",
        v6: "fd00:10:0:2::2",
        pod_v4: "10.1.2.10",
        pod_v6: "fd00:10:1:2::10",
    },
];

fn node(name: &str) -> &'static Node {
    NODES.iter().find(|n| n.name == name).unwrap()
}

/// The pool and the two Services, dual stack, selected by configs/lab's `services`
/// advertisement (which takes every Service's LoadBalancerIP with community 65000:100).
const SERVICES: &str = "\
# Written by containerlab/runner/tests/etp_local.rs.
apiVersion: cilium.io/v2alpha1
kind: CiliumLoadBalancerIPPool
metadata:
  name: etp-pool
spec:
  blocks:
  - cidr: 20.0.20.0/28
  - cidr: 2004:20::/124
  serviceSelector:
    matchLabels: {lab: etp}
---
apiVersion: v1
kind: Service
metadata:
  name: local
  namespace: etp
  labels: {lab: etp}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  ipFamilyPolicy: RequireDualStack
  ipFamilies: [IPv4, IPv6]
  selector: {app: local}
  ports:
  - {port: 80, protocol: TCP}
---
apiVersion: v1
kind: Service
metadata:
  name: cluster
  namespace: etp
  labels: {lab: etp}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Cluster
  ipFamilyPolicy: RequireDualStack
  ipFamilies: [IPv4, IPv6]
  selector: {app: cluster}
  ports:
  - {port: 80, protocol: TCP}
---
# The cluster Service needs a backend somewhere: with rackd's service datapath on, a Cluster
# Service without one is not advertised (Cilium 1.19's behaviour).
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: cluster-v4
  namespace: etp
  labels: {kubernetes.io/service-name: cluster}
addressType: IPv4
ports: [{name: \"\", port: 80, protocol: TCP}]
endpoints:
- {addresses: [10.1.2.12], nodeName: node2, conditions: {ready: true}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: cluster-v6
  namespace: etp
  labels: {kubernetes.io/service-name: cluster}
addressType: IPv6
ports: [{name: \"\", port: 80, protocol: TCP}]
endpoints:
- {addresses: [\"fd00:10:1:2::12\"], nodeName: node2, conditions: {ready: true}}
";

/// An endpoint's `conditions`, as Kubernetes' EndpointSlice controller sets them.
#[derive(Clone, Copy)]
enum Cond {
    Ready,
    /// Failing its readiness probe.
    NotReady,
    /// Being deleted but still serving (graceful termination): `ready: false, serving: true,
    /// terminating: true`. Not ready, so not a local endpoint (Cilium marks such a backend
    /// `Terminating` and `hasLocalEndpoints` skips it).
    Terminating,
    /// No `conditions` at all: Kubernetes documents a nil `ready` as "unknown, treat as
    /// ready", and Cilium does.
    Unset,
}
use Cond::*;

/// The `local` Service's EndpointSlices as Kubernetes' controller writes them for a dual
/// stack Service: one per family, each listing every endpoint `(node, conditions)`.
fn slices(endpoints: &[(&str, Cond)]) -> String {
    let mut s = String::from("# Written by containerlab/runner/tests/etp_local.rs.\n");
    for (family, suffix) in [("IPv4", "v4"), ("IPv6", "v6")] {
        s.push_str(&format!(
            "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  \
             name: local-{suffix}\n  namespace: etp\n  labels:\n    \
             kubernetes.io/service-name: local\naddressType: {family}\n\
             ports: [{{name: \"\", port: 80, protocol: TCP}}]\n"
        ));
        if endpoints.is_empty() {
            s.push_str("endpoints: []\n");
            continue;
        }
        s.push_str("endpoints:\n");
        for (name, cond) in endpoints {
            let n = node(name);
            let addr = if suffix == "v4" { n.pod_v4 } else { n.pod_v6 };
            s.push_str(&format!("- addresses: [\"{addr}\"]\n  nodeName: {name}\n"));
            let c = match cond {
                Ready => "{ready: true, serving: true, terminating: false}",
                NotReady => "{ready: false, serving: false, terminating: false}",
                Terminating => "{ready: false, serving: true, terminating: true}",
                Unset => continue,
            };
            s.push_str(&format!("  conditions: {c}\n"));
        }
    }
    s
}

/// A private copy of the lab's layout; removed when dropped.
struct Tree(PathBuf);

impl Tree {
    fn new() -> Tree {
        // The guard first, so a failed copy removes what was made.
        let t = Tree(std::env::temp_dir().join(format!("rackd-lab-{}", common::unique("etp"))));
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let copy = |from: &str, to: &str| {
            let dst = t.0.join(to);
            std::fs::create_dir_all(&dst).unwrap();
            for e in std::fs::read_dir(repo.join(from)).unwrap() {
                let p = e.unwrap().path();
                if p.is_file() {
                    std::fs::copy(&p, dst.join(p.file_name().unwrap())).unwrap();
                }
            }
        };
        copy("containerlab/tor", "containerlab/tor");
        copy("configs/lab", "configs/lab");
        std::fs::copy(
            common::lab_file(),
            t.0.join("containerlab/rackd-bgp.clab.yml"),
        )
        .unwrap();
        t
    }

    fn lab_file(&self) -> PathBuf {
        self.0.join("containerlab/rackd-bgp.clab.yml")
    }

    /// Writes a config file the way an editor or `kubectl`-style sync should: to a name rackd
    /// ignores, then renamed over the target, so rackd never reads half a file.
    fn write_config(&self, name: &str, body: &str) {
        let dir = self.0.join("configs/lab");
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, body).unwrap();
        std::fs::rename(&tmp, dir.join(name)).unwrap();
    }

    fn remove_config(&self, name: &str) {
        std::fs::remove_file(self.0.join("configs/lab").join(name)).unwrap();
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One live edit: what it is, the `local` Service's endpoints `(node, conditions)` after it (`None`
/// = its slices deleted), and the nodes that must then advertise `local`.
type Step = (
    &'static str,
    Option<&'static [(&'static str, Cond)]>,
    &'static [&'static str],
);

/// One path at the ToR: `(peer, AS path, first next hop)`; [`paths`] also checks that it
/// carries the advertisement's community.
type PathKey = (String, String, String);

fn paths(doc: &Value) -> Result<BTreeSet<PathKey>, String> {
    let mut out = BTreeSet::new();
    for p in doc["paths"].as_array().into_iter().flatten() {
        let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let comm = s(&p["community"]["string"]);
        if !comm.split(' ').any(|c| c == "65000:100") {
            return Err(format!("path without the advertisement's community: {p}"));
        }
        out.insert((
            s(&p["peer"]["peerId"]),
            s(&p["aspath"]["string"]),
            s(&p["nexthops"][0]["ip"]),
        ));
    }
    Ok(out)
}

/// What the ToR must hold for a prefix advertised by `nodes`: one path per session (each
/// node has an IPv4 and an IPv6 session, both carrying both families), the node's AS, and
/// the node's own address of the prefix's family as next hop.
fn expected(nodes: &[&str], v6_prefix: bool) -> BTreeSet<PathKey> {
    let mut out = BTreeSet::new();
    for n in nodes.iter().map(|n| node(n)) {
        let nh = if v6_prefix { n.v6 } else { n.v4 };
        for peer in [n.v4, n.v6] {
            out.insert((peer.to_owned(), n.asn.to_owned(), nh.to_owned()));
        }
    }
    out
}

/// Per ToR neighbour: `(peer, bgpState, connectionsEstablished, connectionsDropped)`.
type Sessions = Vec<(String, String, u64, u64)>;

fn sessions(doc: &Value) -> Sessions {
    let mut out: Sessions = doc
        .as_object()
        .into_iter()
        .flatten()
        .map(|(peer, v)| {
            (
                peer.clone(),
                v["bgpState"].as_str().unwrap_or_default().to_owned(),
                v["connectionsEstablished"].as_u64().unwrap_or(0),
                v["connectionsDropped"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    out.sort();
    out
}

/// The ToR's view in one vtysh call.
struct Tor {
    sessions: Sessions,
    local: [BTreeSet<PathKey>; 2],
    cluster: [BTreeSet<PathKey>; 2],
}

/// LB-IPAM's addresses for the two Services, `[IPv4, IPv6]`.
struct Ips {
    local: [String; 2],
    cluster: [String; 2],
}

fn tor(lab: &Lab, ips: &Ips) -> Result<Tor, String> {
    let q = |ip: &str| {
        if ip.contains(':') {
            format!("show bgp ipv6 unicast {ip}/128 json")
        } else {
            format!("show bgp ipv4 unicast {ip}/32 json")
        }
    };
    let cmds = [
        "show bgp neighbors json".to_owned(),
        q(&ips.local[0]),
        q(&ips.local[1]),
        q(&ips.cluster[0]),
        q(&ips.cluster[1]),
    ];
    let refs: Vec<&str> = cmds.iter().map(String::as_str).collect();
    let d = lab.vtysh_json(&refs)?;
    Ok(Tor {
        sessions: sessions(&d[0]),
        local: [paths(&d[1])?, paths(&d[2])?],
        cluster: [paths(&d[3])?, paths(&d[4])?],
    })
}

/// The Service's external IPs from `rackctl lbipam services` on `node`, IPv4 first, once
/// LB-IPAM has satisfied it with one of each family.
fn lb_ips(lab: &Lab, on: &str, svc: &str) -> Result<[String; 2], String> {
    let out = lab.exec(on, &["rackctl", "-o", "json", "lbipam", "services"]);
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|_| text(&out))?;
    let row = v
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["namespace"] == "etp" && r["name"] == svc)
        .ok_or_else(|| format!("{on}: no etp/{svc} in {v}"))?;
    if row["condition"]["status"] != "True" {
        return Err(format!("{on}: etp/{svc} not satisfied: {row}"));
    }
    let ips: Vec<String> = row["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i.as_str().map(str::to_owned))
        .collect();
    let v4 = ips.iter().find(|i| !i.contains(':'));
    let v6 = ips.iter().find(|i| i.contains(':'));
    match (v4, v6) {
        (Some(a), Some(b)) if ips.len() == 2 => Ok([a.clone(), b.clone()]),
        _ => Err(format!(
            "{on}: etp/{svc} has {ips:?}, want one IPv4 and one IPv6"
        )),
    }
}

#[test]
fn etp_local_follows_endpoint_slices_live() {
    common::become_subreaper();
    // Dropped in reverse order: the lab goes down before its files are removed.
    let tree = Tree::new();
    tree.write_config("etp-services.yaml", SERVICES);
    tree.write_config("etp-local-endpoints.yaml", &slices(&[("node1", Ready)]));
    let lab = Lab::up("e", tree.lab_file());
    let pids = lab.pids();
    let netns: Vec<String> = lab.state()["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["netns"].as_str().unwrap().to_owned())
        .collect();

    // LB-IPAM runs on each node from the same config; both must give the same IPs.
    let t = Duration::from_secs(60);
    let ips = wait("LB-IPAM on both nodes", t, || {
        let l1 = lb_ips(&lab, "node1", "local")?;
        let c1 = lb_ips(&lab, "node1", "cluster")?;
        let l2 = lb_ips(&lab, "node2", "local")?;
        let c2 = lb_ips(&lab, "node2", "cluster")?;
        assert_eq!((&l1, &c1), (&l2, &c2), "the nodes disagree on the IPs");
        Ok(Ips {
            local: l1,
            cluster: c1,
        })
    });
    println!("etp/local {:?}, etp/cluster {:?}", ips.local, ips.cluster);
    let both = ["node1", "node2"];
    let cluster_ok = |v: &Tor| v.cluster == [expected(&both, false), expected(&both, true)];

    // Converged start: four sessions up, cluster from both nodes, local from node1 only.
    let first = wait("sessions and the first routes", t, || {
        let v = tor(&lab, &ips)?;
        let up = v.sessions.iter().filter(|s| s.1 == "Established").count();
        let local_ok = v.local == [expected(&["node1"], false), expected(&["node1"], true)];
        if up == 4 && cluster_ok(&v) && local_ok {
            Ok(v)
        } else {
            Err(format!(
                "sessions {:?}\nlocal {:?}\ncluster {:?}",
                v.sessions, v.local, v.cluster
            ))
        }
    });
    let baseline = first.sessions;
    println!("ToR sessions: {baseline:?}");

    let steps: [Step; 10] = [
        (
            "endpoint moved to node2",
            Some(&[("node2", Ready)]),
            &["node2"],
        ),
        (
            "endpoints on both nodes",
            Some(&[("node1", Ready), ("node2", Ready)]),
            &["node1", "node2"],
        ),
        (
            "node1's endpoint not ready",
            Some(&[("node1", NotReady), ("node2", Ready)]),
            &["node2"],
        ),
        (
            "no endpoint ready",
            Some(&[("node1", NotReady), ("node2", NotReady)]),
            &[],
        ),
        ("node1 ready again", Some(&[("node1", Ready)]), &["node1"]),
        ("endpoints removed from the slices", Some(&[]), &[]),
        (
            "node2 endpoint without conditions",
            Some(&[("node2", Unset)]),
            &["node2"],
        ),
        (
            "node2 endpoint terminating (still serving)",
            Some(&[("node2", Terminating)]),
            &[],
        ),
        ("node1 ready again", Some(&[("node1", Ready)]), &["node1"]),
        ("slices deleted", None, &[]),
    ];
    // Each step's outcome differs from the one before, so a wait can only succeed once rackd
    // has acted on the new slices, never on the state the previous step left behind.
    let mut before: &[&str] = &["node1"];
    for (what, eps, advertisers) in steps {
        assert_ne!(
            before, advertisers,
            "step {what:?} would pass without a change"
        );
        before = advertisers;
        let t0 = std::time::Instant::now();
        match eps {
            Some(eps) => tree.write_config("etp-local-endpoints.yaml", &slices(eps)),
            None => tree.remove_config("etp-local-endpoints.yaml"),
        }
        let want = [expected(advertisers, false), expected(advertisers, true)];
        wait(
            &format!("{what}: local from {advertisers:?}"),
            Duration::from_secs(30),
            || {
                let v = tor(&lab, &ips)?;
                // Invariants at every look, not just at the end of a step: the Cluster
                // Service never flaps and no session is ever re-established or dropped.
                assert!(
                    cluster_ok(&v),
                    "{what}: cluster lost a node: {:?}",
                    v.cluster
                );
                assert_eq!(v.sessions, baseline, "{what}: a BGP session was reset");
                if v.local == want {
                    Ok(())
                } else {
                    Err(format!("local {:?}\nwant {want:?}", v.local))
                }
            },
        );
        // Reported, not asserted: how long the ToR took to follow (rackd polls its config
        // directory every 250 ms; we look every 250 ms).
        println!(
            "{what}: ToR holds etp/local from {advertisers:?}, etp/cluster from both, after {:?}",
            t0.elapsed()
        );
    }

    lab.down_and_assert_clean(&netns, &pids);
}
