//! The lab's YAML through a real API server, to a real FRR ToR: two rackd nodes (network
//! namespaces, the chart's ServiceAccount and RBAC) read everything from kube-apiserver, and
//! kube-controller-manager produces deathstar's EndpointSlices from Pods, the real way.
//!
//! ```text
//!  client 10.0.3.2 ── tor (FRR) ──┬── node1 10.0.1.2 ── deathstar-1, -3
//!                                 ├── node2 10.0.2.2 ── deathstar-2, -4
//!                                 └── api   10.0.4.2: etcd, kube-apiserver, kube-controller-manager
//! ```
//!
//! - `configs/lab` applied with kubectl: deathstar shows 172.18.255.200 and
//!   2001:db8:dead:beef:: as EXTERNAL-IP, the ToR learns both from both nodes (ECMP), and the
//!   client reaches the pods through them (the slices kube-controller-manager wrote; a pod
//!   turned unready leaves them);
//! - the pool edited and shrunk: only the Services whose address left the pool move;
//! - the API server stopped for a minute: no route leaves the ToR, no session resets, and
//!   nothing is reallocated when it is back.
#![allow(clippy::unwrap_used, clippy::disallowed_types)]

mod common;
mod k8scommon;
mod svccommon;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use k8scommon::{condition_status, ingress, prepare_cluster, wait_for, workspace};
use kubelab::{Cluster, ClusterOptions};
use netlab::{Netns, veth};
use svccommon::{NODE_NAMES, SvcLab, VIP_V4, VIP_V6};

/// The API server's address, behind the ToR.
const API_V4: &str = "10.0.4.2";

/// The lab's configuration minus what Kubernetes makes itself: deathstar's EndpointSlices
/// come from kube-controller-manager, and `web` gets a ClusterIP from the cluster's range.
fn lab_yaml() -> String {
    let dir = workspace().join("configs/lab");
    let mut y = String::from("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: batuu\n");
    for f in ["bgp.yaml", "lb-pool.yaml", "overrides.yaml", "nodes.yaml"] {
        y.push_str("\n---\n");
        y.push_str(&std::fs::read_to_string(dir.join(f)).unwrap());
    }
    let services = std::fs::read_to_string(dir.join("services.yaml")).unwrap();
    y.push_str("\n---\n");
    y.push_str(&services.replace("  clusterIP: 10.2.0.10\n", ""));
    // web has no selector: its hand-written slices (managed by the lab) stay.
    let slices = std::fs::read_to_string(dir.join("endpointslices.yaml")).unwrap();
    for doc in slices.split("\n---\n") {
        if doc.contains("name: web-v") {
            y.push_str("\n---\n");
            y.push_str(doc);
        }
    }
    y
}

/// A Pod bound to its node (no scheduler, no kubelet): kube-controller-manager sees it like
/// any other once its status says where it runs and that it is ready.
fn pod_yaml(name: &str, node: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: batuu\n  labels: {{org: empire, class: deathstar}}\nspec:\n  nodeName: {node}\n  containers:\n  - {{name: echo, image: rackd.io/echo}}\n"
    )
}

/// What a kubelet would report: the pod's addresses and its readiness.
fn pod_status(v4: &str, v6: &str, ready: bool) -> String {
    let r = if ready { "True" } else { "False" };
    format!(
        r#"{{"status":{{"phase":"Running","podIP":"{v4}","podIPs":[{{"ip":"{v4}"}},{{"ip":"{v6}"}}],"conditions":[{{"type":"Ready","status":"{r}"}},{{"type":"ContainersReady","status":"{r}"}}]}}}}"#
    )
}

/// A LoadBalancer Service in empire-ip-pool, in front of deathstar's pods (a Service without
/// backends is not advertised, as Cilium does with kube-proxy replacement).
fn lb_service(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: batuu\n  labels: {{org: empire}}\nspec:\n  type: LoadBalancer\n  selector: {{org: empire, class: deathstar}}\n  ports:\n  - {{port: 80, protocol: TCP}}\n"
    )
}

/// Every route of `prefixes` at the ToR with two next hops (one per node): `None` if so,
/// else what is missing.
fn missing_at_tor(lab: &SvcLab, prefixes: &[String]) -> Option<String> {
    for p in prefixes {
        let fam = if p.contains(':') { "-6" } else { "-4" };
        let r = lab
            .tor_ns
            .ip(&[fam, "route", "show", p])
            .unwrap_or_default();
        if r.matches("nexthop").count() < 2 {
            return Some(format!("{p}: {r:?}"));
        }
    }
    None
}

fn host_prefix(ip: &str) -> String {
    if ip.contains(':') {
        format!("{ip}/128")
    } else {
        format!("{ip}/32")
    }
}

fn established(lab: &SvcLab) -> BTreeMap<String, u64> {
    let n = lab.tor.neighbors().unwrap();
    ["10.0.1.2", "10.0.2.2", "fd00:10:0:1::2", "fd00:10:0:2::2"]
        .iter()
        .map(|p| {
            (
                (*p).to_owned(),
                n[*p]["connectionsEstablished"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// Whether node `i` reports its configuration source unavailable (`None`: no answer).
fn source_unavailable(lab: &SvcLab, i: usize) -> Option<bool> {
    let s = std::os::unix::net::UnixStream::connect(&lab.socks[i]).ok()?;
    rackd_api::write_message(&s, &rackd_api::Request::Status).ok()?;
    match rackd_api::read_message(std::io::BufReader::new(&s)).ok()? {
        rackd_api::Reply::Status(st) => Some(
            st.conditions
                .iter()
                .any(|c| c.condition.type_ == "rackd.io/SourceUnavailable"),
        ),
        _ => None,
    }
}

#[test]
fn lab_yaml_through_the_api_server_reaches_the_tor_from_two_nodes() {
    let mut lab = SvcLab::prepare("k8s-frr");
    // The control plane behind the ToR, like any other rack.
    let api = Netns::new("k8-api").unwrap();
    veth(&lab.tor_ns, "eth4", &api, "eth0").unwrap();
    lab.tor_ns.addr_add("eth4", "10.0.4.1/24").unwrap();
    api.addr_add("eth0", &format!("{API_V4}/24")).unwrap();
    api.route_add(&["10.0.0.0/8", "via", "10.0.4.1"]).unwrap();
    let c = Cluster::start(ClusterOptions {
        netns: Some(api.name().to_owned()),
        bind: API_V4.parse().unwrap(),
        ..ClusterOptions::with_controller_manager()
    })
    .expect("etcd, kube-apiserver and kube-controller-manager start");
    let sa = prepare_cluster(&c);
    c.kubectl_stdin(&["apply", "-f", "-"], &lab_yaml())
        .expect("the lab's YAML applies");
    // Node status as a kubelet would have it (addresses are status).
    for (i, n) in NODE_NAMES.iter().enumerate() {
        let patch = format!(
            r#"{{"status":{{"addresses":[{{"type":"InternalIP","address":"10.0.{0}.2"}},{{"type":"InternalIP","address":"fd00:10:0:{0}::2"}}]}}}}"#,
            i + 1
        );
        c.kubectl_ok(&[
            "patch",
            "node",
            n,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch,
        ])
        .unwrap();
    }
    // The lab's four pods; Pods need the namespace's default ServiceAccount first.
    wait_for(
        "batuu's default ServiceAccount",
        Duration::from_secs(60),
        || {
            c.kubectl_ok(&["get", "serviceaccount", "default", "-n", "batuu"])
                .ok()
        },
    );
    for p in &lab.pods {
        c.kubectl_stdin(
            &["apply", "-f", "-"],
            &pod_yaml(&p.name, NODE_NAMES[p.node]),
        )
        .unwrap();
        c.kubectl_ok(&[
            "patch",
            "pod",
            &p.name,
            "-n",
            "batuu",
            "--subresource=status",
            "--type=merge",
            "-p",
            &pod_status(&p.v4.to_string(), &p.v6.to_string(), true),
        ])
        .unwrap();
    }

    let kubeconfig = sa.to_str().unwrap().to_owned();
    let mut flags = vec![
        "--k8s-kubeconfig-path",
        kubeconfig.as_str(),
        "--k8s-namespace",
        "kube-system",
        "--kube-proxy-replacement",
        "--devices",
        "eth0",
    ];
    flags.extend(k8scommon::FAST_ELECTION);
    lab.start_rackd_bare(0, &flags);
    lab.start_rackd_bare(1, &flags);

    // EXTERNAL-IP as the seeds show it, and the routes at the ToR from both nodes.
    let vips = vec![VIP_V4.to_string(), VIP_V6.to_string()];
    let mut want = vips.clone();
    want.sort();
    wait_for("deathstar's EXTERNAL-IP", Duration::from_secs(90), || {
        (ingress(&c, "batuu", "deathstar") == want).then_some(())
    });
    assert_eq!(
        condition_status(
            &c,
            "svc",
            Some("batuu"),
            "deathstar",
            "cilium.io/IPAMRequestSatisfied"
        ),
        "True"
    );
    let wide = c
        .kubectl_ok(&["get", "svc", "deathstar", "-n", "batuu"])
        .unwrap();
    println!("{wide}");
    assert!(wide.contains("172.18.255.200"), "{wide}");
    for p in [
        "172.18.255.200/32",
        "2001:db8:dead:beef::/128",
        "20.0.10.1/32",
        "2004::1/128",
    ] {
        lab.wait_tor_route(p, 2, Duration::from_secs(90));
    }
    for p in ["10.1.1.0/24", "10.1.2.0/24"] {
        lab.wait_tor_route(p, 1, Duration::from_secs(30));
    }

    // Each node's CiliumBGPNodeConfig, created by the leader for cilium-bgp, carries its own
    // sessions with the real ToR as its rackd sees them.
    for n in NODE_NAMES {
        wait_for(
            &format!("{n}'s NodeConfig peer status"),
            Duration::from_secs(60),
            || {
                let s = c
                    .kubectl_ok(&[
                        "get",
                        "ciliumbgpnodeconfig",
                        n,
                        "-o",
                        "jsonpath={.status.bgpInstances[0].peers[*].peeringState}",
                    ])
                    .ok()?;
                // Written as the sessions come up (at most once a second per node): wait for
                // the final state, not the first one written.
                (s.trim() == "established established").then_some(())
            },
        );
        let owner = c
            .kubectl_ok(&[
                "get",
                "ciliumbgpnodeconfig",
                n,
                "-o",
                "jsonpath={.metadata.ownerReferences[0].name}",
            ])
            .unwrap();
        assert_eq!(owner.trim(), "cilium-bgp");
    }

    // The slices kube-controller-manager wrote: four backends on both nodes, and the client
    // reaches deathstar's pods through either node.
    let managed = c
        .kubectl_ok(&[
            "get",
            "endpointslices",
            "-n",
            "batuu",
            "-l",
            "kubernetes.io/service-name=deathstar",
            "-o",
            "jsonpath={.items[*].metadata.labels.endpointslice\\.kubernetes\\.io/managed-by}",
        ])
        .unwrap();
    assert!(
        managed.contains("endpointslice-controller.k8s.io"),
        "slices from kube-controller-manager: {managed:?}"
    );
    for i in 0..2 {
        lab.wait_backends(i, IpAddr::V4(VIP_V4), 80, 4);
        lab.wait_backends(i, IpAddr::V6(VIP_V6), 80, 4);
    }
    let names: Vec<String> = lab.pods.iter().map(|p| p.name.clone()).collect();
    for vip in [IpAddr::V4(VIP_V4), IpAddr::V6(VIP_V6)] {
        let a = lab.get(SocketAddr::new(vip, 80)).unwrap();
        let (name, _) = netlab::echo::parse(&a).unwrap();
        assert!(names.contains(&name.to_string()), "{a}");
    }
    // A pod turns unready: the controller takes it out of the slices, and both nodes follow.
    let p0 = &lab.pods[0];
    c.kubectl_ok(&[
        "patch",
        "pod",
        &p0.name,
        "-n",
        "batuu",
        "--subresource=status",
        "--type=merge",
        "-p",
        &pod_status(&p0.v4.to_string(), &p0.v6.to_string(), false),
    ])
    .unwrap();
    for i in 0..2 {
        lab.wait_backends(i, IpAddr::V4(VIP_V4), 80, 3);
    }

    // Pool edit and shrink: three more Services fill the pool's start; then the IPv4 block
    // shrinks to 172.18.255.200/31 and gains 172.18.255.216/29.
    for n in ["tie-1", "tie-2", "tie-3"] {
        c.kubectl_stdin(&["apply", "-f", "-"], &lb_service(n))
            .unwrap();
    }
    let names = ["deathstar", "tie-1", "tie-2", "tie-3"];
    let before: BTreeMap<&str, Vec<String>> =
        wait_for("every Service's address", Duration::from_secs(60), || {
            let m: BTreeMap<&str, Vec<String>> = names
                .iter()
                .map(|n| (*n, ingress(&c, "batuu", n)))
                .collect();
            m.values().all(|v| !v.is_empty()).then_some(m)
        });
    let all: Vec<String> = before
        .values()
        .flatten()
        .map(|ip| host_prefix(ip))
        .collect();
    wait_for(
        "every address at the ToR from both nodes",
        Duration::from_secs(60),
        || missing_at_tor(&lab, &all).is_none().then_some(()),
    );
    let stays = |ip: &str| ip.contains(':') || ip == "172.18.255.200" || ip == "172.18.255.201";
    let leavers: Vec<&str> = before
        .iter()
        .filter(|(_, ips)| !ips.iter().all(|ip| stays(ip)))
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(
        leavers.len(),
        2,
        "two of four leave the shrunk pool: {before:?}"
    );
    let kept: Vec<String> = before
        .iter()
        .filter(|(n, _)| !leavers.contains(n))
        .flat_map(|(_, ips)| ips.iter().map(|ip| host_prefix(ip)))
        .collect();
    let sessions = established(&lab);
    c.kubectl_ok(&[
        "patch",
        "ciliumloadbalancerippool",
        "empire-ip-pool",
        "--type=merge",
        "-p",
        r#"{"spec":{"blocks":[{"cidr":"172.18.255.200/31"},{"cidr":"172.18.255.216/29"},{"cidr":"2001:db8:dead:beef::/64"}]}}"#,
    ])
    .unwrap();
    // The stayers' routes never leave the ToR while the leavers move.
    let t0 = Instant::now();
    let after = loop {
        if let Some(m) = missing_at_tor(&lab, &kept) {
            panic!("a Service that stays in the pool lost its route: {m}");
        }
        let m: BTreeMap<&str, Vec<String>> = names
            .iter()
            .map(|n| (*n, ingress(&c, "batuu", n)))
            .collect();
        let moved = leavers
            .iter()
            .all(|n| m[n].len() == 1 && m[n][0].starts_with("172.18.255.21") && m[n] != before[n]);
        if moved {
            break m;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "leavers did not move: {m:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    for (n, ips) in &before {
        if !leavers.contains(n) {
            assert_eq!(&after[n], ips, "{n} stays where it was");
        }
    }
    let moved: Vec<String> = leavers.iter().map(|n| host_prefix(&after[n][0])).collect();
    wait_for("the movers at the ToR", Duration::from_secs(30), || {
        missing_at_tor(&lab, &moved).is_none().then_some(())
    });
    for n in &leavers {
        let old = host_prefix(&before[n][0]);
        netlab::wait_for(
            &format!("{old} withdrawn"),
            Duration::from_secs(30),
            Duration::from_millis(200),
            || {
                let r = lab.tor_ns.ip(&["route", "show", &old]).unwrap_or_default();
                Ok(if r.trim().is_empty() {
                    netlab::Check::Ready(())
                } else {
                    netlab::Check::NotYet(r)
                })
            },
        )
        .unwrap();
    }
    assert_eq!(
        established(&lab),
        sessions,
        "no session reset by the pool edit"
    );

    // The API server away for a minute: every route stays at the ToR from both nodes, no
    // session resets; back, nothing is reallocated.
    let everything: Vec<String> = after.values().flatten().map(|ip| host_prefix(ip)).collect();
    let snapshot = after.clone();
    assert_eq!(source_unavailable(&lab, 0), Some(false));
    let mut c = c;
    c.stop_apiserver().unwrap();
    wait_for(
        "both nodes to see the outage",
        Duration::from_secs(60),
        || {
            (source_unavailable(&lab, 0) == Some(true) && source_unavailable(&lab, 1) == Some(true))
                .then_some(())
        },
    );
    let t0 = Instant::now();
    let mut checks = 0;
    while t0.elapsed() < Duration::from_secs(60) {
        if let Some(m) = missing_at_tor(&lab, &everything) {
            panic!(
                "a route left the ToR during the outage: {m}\n{}\n{}",
                lab.log(0),
                lab.log(1)
            );
        }
        checks += 1;
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(
        checks >= 50,
        "the ToR was looked at through the outage: {checks}"
    );
    let reply = lab.get(SocketAddr::new(IpAddr::V4(VIP_V4), 80)).unwrap();
    assert!(netlab::echo::parse(&reply).is_some(), "{reply}");
    c.start_apiserver().unwrap();
    wait_for("both nodes to recover", Duration::from_secs(120), || {
        (source_unavailable(&lab, 0) == Some(false) && source_unavailable(&lab, 1) == Some(false))
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    for (n, ips) in &snapshot {
        assert_eq!(&ingress(&c, "batuu", n), ips, "{n} kept its address");
    }
    assert!(missing_at_tor(&lab, &everything).is_none());
    assert_eq!(
        established(&lab),
        sessions,
        "no session reset by the outage"
    );
    // Stop the daemons before the control plane and the namespaces go.
    lab.kill_rackd(0);
    lab.kill_rackd(1);
    drop(c);
    drop(api);
}
