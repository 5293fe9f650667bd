//! The service datapath end to end (issue 15's "Proven" list), in the service lab of
//! `svccommon`: an FRR ToR doing ECMP over two rackd nodes with `--kube-proxy-replacement`,
//! four pods, a client behind the ToR.
#![allow(clippy::unwrap_used, clippy::disallowed_types)]

mod common;
mod svccommon;

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use netlab::echo::{EchoServer, parse, udp_echo};
use svccommon::{CLIENT_V4, CLIENT_V6, NODE_NAMES, SvcLab, T, VIP_V4, VIP_V6};

const KPR: &[&str] = &["--kube-proxy-replacement", "--devices", "eth0"];

/// Both nodes up with the service datapath, deathstar's addresses on the ToR from both.
fn up(prefix: &str, extra: &[&str]) -> SvcLab {
    let mut lab = SvcLab::prepare(prefix);
    let mut args = KPR.to_vec();
    args.extend_from_slice(extra);
    lab.start_rackd(0, &args);
    lab.start_rackd(1, &args);
    lab.wait_tor_route(&format!("{VIP_V4}"), 2, Duration::from_secs(60));
    lab.wait_tor_route(&format!("{VIP_V6}"), 2, Duration::from_secs(60));
    // deathstar's two addresses and web's four frontends (two addresses, TCP and UDP).
    lab.wait_frontends(0, 6, Duration::from_secs(60));
    lab.wait_frontends(1, 6, Duration::from_secs(60));
    lab
}

/// `n` connections to `addr` from the client: which pod answered and the client address it
/// saw, per connection.
fn spread(lab: &SvcLab, addr: SocketAddr, n: usize) -> Vec<(String, SocketAddr)> {
    (0..n)
        .map(|i| {
            let a = lab
                .get(addr)
                .unwrap_or_else(|e| panic!("connection {i} to {addr}: {e}\n{}", lab.log(0)));
            parse(&a).unwrap()
        })
        .collect()
}

/// The client reaches the seeds' deathstar on both of its LoadBalancer addresses; backends
/// on both nodes answer (the ToR spreads flows over the nodes, Maglev over the pods); a pod
/// on the node a flow entered sees the client's address, a pod on the other node sees that
/// node's address (Cluster policy: SNAT towards remote backends).
#[test]
fn the_client_reaches_deathstar_on_both_addresses_and_every_backend_answers() {
    let lab = up("svc-fwd", &[]);
    for vip in [IpAddr::from(VIP_V4), IpAddr::from(VIP_V6)] {
        let seen = spread(&lab, SocketAddr::new(vip, 80), 48);
        let mut by_pod: BTreeMap<String, usize> = BTreeMap::new();
        for (pod, client) in &seen {
            *by_pod.entry(pod.clone()).or_default() += 1;
            let node_of_pod = lab.pods.iter().find(|p| &p.name == pod).unwrap().node;
            let c = client.ip();
            let client_ip: IpAddr = if vip.is_ipv4() {
                CLIENT_V4.into()
            } else {
                CLIENT_V6.into()
            };
            // Either the client itself (entered on the pod's node) or the other node's
            // address on the ToR link (entered there, SNAT).
            let other = 1 - node_of_pod;
            let other_addr: IpAddr = if vip.is_ipv4() {
                format!("10.0.{}.2", other + 1).parse().unwrap()
            } else {
                format!("fd00:10:0:{}::2", other + 1).parse().unwrap()
            };
            assert!(
                c == client_ip || c == other_addr,
                "{pod} saw {client} for {vip}"
            );
        }
        assert_eq!(by_pod.len(), 4, "every pod answers for {vip}: {by_pod:?}");
    }
    admin_views_show_the_datapath(&lab);
}

/// `rackctl service list`, `bpf lb|ct|nat list` and the metrics after the traffic above.
fn admin_views_show_the_datapath(lab: &SvcLab) {
    use rackd_api::{Reply, Request};
    let Reply::ServiceList(svcs) = lab.call(0, &Request::ServiceList) else {
        panic!("service list")
    };
    let ds = svcs
        .iter()
        .find(|s| s.spec.frontend_address.ip == VIP_V4.to_string())
        .unwrap();
    assert_eq!(ds.spec.flags.type_, "LoadBalancer");
    assert_eq!(
        (
            ds.spec.flags.namespace.as_str(),
            ds.spec.flags.name.as_str()
        ),
        ("batuu", "deathstar")
    );
    assert_eq!(ds.spec.backend_addresses.len(), 4);
    let web = svcs
        .iter()
        .find(|s| {
            s.spec.frontend_address.ip == "20.0.10.1" && s.spec.frontend_address.protocol == "UDP"
        })
        .unwrap();
    assert_eq!(web.spec.flags.type_, "ExternalIPs");
    let table = rackctl::print_lb::services_table(&svcs);
    assert!(table.starts_with("ID   Frontend"), "{table}");
    assert!(table.contains("172.18.255.200:80"), "{table}");
    assert!(table.contains("20.0.10.1:5353/UDP"), "{table}");
    let Reply::BpfLbList(rows) = lab.call(0, &Request::BpfLbList) else {
        panic!("bpf lb list")
    };
    assert_eq!(
        rows.iter()
            .filter(|r| r.service_address == "172.18.255.200:80")
            .count(),
        5,
        "the frontend row and four backends"
    );
    // Both nodes carried flows: CT entries for the VIP, and NAT entries of the SNAT to the
    // other node's pods, on each.
    for i in 0..2 {
        let Reply::BpfCtList(ct) = lab.call(i, &Request::BpfCtList) else {
            panic!("ct list")
        };
        assert!(
            ct.iter()
                .any(|e| e.direction == "OUT" && e.destination == "172.18.255.200:80"),
            "{ct:?}"
        );
        let Reply::BpfNatList(nat) = lab.call(i, &Request::BpfNatList) else {
            panic!("nat list")
        };
        assert!(
            nat.iter().any(|e| e.xlate.starts_with("XLATE_SRC 10.0.")),
            "{nat:?}"
        );
    }
    netlab::wait_for(
        "per-frontend packet counters in the metrics",
        Duration::from_secs(30),
        Duration::from_millis(500),
        || {
            let m = lab.nodes[0].http_get("127.0.0.1:9963", "/metrics");
            let line = m
                .lines()
                .find(|l| l.starts_with("rackd_lb_packets{") && l.contains("172.18.255.200:80/TCP"))
                .map(str::to_owned);
            Ok(match line {
                Some(l) if !l.ends_with(" 0") => netlab::Check::Ready(()),
                other => netlab::Check::NotYet(format!("{other:?}")),
            })
        },
    )
    .unwrap();
}

/// UDP frontends, `externalTrafficPolicy: Local` keeping the client's address, and
/// `sessionAffinity: ClientIP` pinning every connection of the client to one backend.
#[test]
fn udp_local_policy_and_affinity() {
    let lab = SvcLab::prepare("svc-pol");
    let svcs = "\
apiVersion: v1
kind: Service
metadata: {name: echo-udp, namespace: batuu}
spec:
  type: ClusterIP
  externalIPs: [20.0.15.1, \"2004::15:1\"]
  ports: [{name: udp, port: 53, targetPort: 5353, protocol: UDP}]
---
apiVersion: v1
kind: Service
metadata: {name: local, namespace: batuu}
spec:
  type: ClusterIP
  externalTrafficPolicy: Local
  externalIPs: [20.0.15.2]
  ports: [{port: 80, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: sticky, namespace: batuu}
spec:
  type: ClusterIP
  externalIPs: [20.0.15.3]
  sessionAffinity: ClientIP
  ports: [{port: 80, protocol: TCP}]
";
    let mut eps = lab.endpoints_yaml("echo-udp", "batuu", &[0, 1, 2, 3], &[("udp", 5353, "UDP")]);
    eps.push_str(&lab.endpoints_yaml("local", "batuu", &[0, 1, 2, 3], &[("", 80, "TCP")]));
    eps.push_str(&lab.endpoints_yaml("sticky", "batuu", &[0, 1, 2, 3], &[("", 80, "TCP")]));
    lab.write_config("extra-services.yaml", svcs);
    lab.write_config("extra-endpoints.yaml", &eps);
    let mut lab = lab;
    lab.start_rackd(0, KPR);
    lab.start_rackd(1, KPR);
    for p in ["20.0.15.1", "20.0.15.2", "20.0.15.3"] {
        lab.wait_tor_route(p, 2, Duration::from_secs(60));
    }
    // deathstar 2, web 4, echo-udp 2, local 1, sticky 1.
    lab.wait_frontends(0, 10, Duration::from_secs(60));
    lab.wait_frontends(1, 10, Duration::from_secs(60));
    // UDP over both families.
    for to in ["20.0.15.1:53", "[2004::15:1]:53"] {
        let a = udp_echo(&lab.client, to.parse().unwrap(), T).unwrap();
        assert!(parse(&a).is_some(), "{a}");
    }
    // Local: every answer shows the client's own address.
    for (pod, client) in spread(&lab, "20.0.15.2:80".parse().unwrap(), 16) {
        assert_eq!(client.ip(), IpAddr::from(CLIENT_V4), "{pod}");
    }
    // Affinity: all connections from the client land on one pod per node they enter (the
    // ToR's ECMP still picks the node; both nodes share the affinity choice through Maglev
    // only for the first connection, so at most two pods).
    let pods: std::collections::BTreeSet<String> =
        spread(&lab, "20.0.15.3:80".parse().unwrap(), 16)
            .into_iter()
            .map(|(p, _)| p)
            .collect();
    assert!(pods.len() <= 2, "{pods:?}");
    // Control: without affinity the same client's connections spread further.
    let spread_pods: std::collections::BTreeSet<String> =
        spread(&lab, "20.0.10.1:80".parse().unwrap(), 16)
            .into_iter()
            .map(|(p, _)| p)
            .collect();
    assert!(spread_pods.len() > 2, "{spread_pods:?}");
}

/// A pod scaled away (gone from every Service's EndpointSlices): its long transfer through the
/// VIP is reset, while a transfer to another backend goes on untouched. (A backend removed
/// from one Service but still serving another keeps its flows, as in Cilium: backends are
/// shared by address, port and protocol.)
#[test]
fn a_removed_backend_resets_only_its_own_connections() {
    let lab = up("svc-rm", &[]);
    // Long transfers until two different pods serve one each.
    let addr = SocketAddr::new(VIP_V4.into(), 80);
    let mut streams: BTreeMap<String, TcpStream> = BTreeMap::new();
    for _ in 0..40 {
        if streams.len() == 2 {
            break;
        }
        let (s, pod, _) = open_stream(&lab, addr);
        streams.entry(pod).or_insert(s);
    }
    assert_eq!(streams.len(), 2, "two pods serving");
    let mut it = streams.into_iter();
    let (gone_pod, mut gone) = it.next().unwrap();
    let (kept_pod, mut kept) = it.next().unwrap();
    let keep: Vec<usize> = (0..lab.pods.len())
        .filter(|&i| lab.pods[i].name != gone_pod)
        .collect();
    lab.set_backends(&keep);
    // The removed backend's transfer ends in a reset within a few seconds ...
    let mut buf = vec![0u8; 65536];
    let t0 = std::time::Instant::now();
    let mut outcome = Ok(0);
    let mut total = 0;
    while t0.elapsed() < Duration::from_secs(15) {
        match gone.read(&mut buf) {
            Ok(0) => {
                outcome = Ok(0);
                break;
            }
            Ok(n) => total += n,
            Err(e) => {
                outcome = Err(e);
                break;
            }
        }
    }
    assert!(
        matches!(&outcome, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "{gone_pod}'s connection was not reset: {outcome:?} after {total} bytes in {:?}\n{}\n{}",
        t0.elapsed(),
        lab.log(0),
        lab.log(1)
    );
    // ... and the other one keeps streaming (new data, not what was buffered).
    assert!(still_flowing(&mut kept), "{kept_pod} still streams");
}

/// kill -9 of rackd on both nodes: the pinned programs keep forwarding established and new
/// connections; the restarted daemons adopt the maps and an established transfer survives.
#[test]
fn kill_9_keeps_forwarding_and_a_restart_adopts() {
    let mut lab = up("svc-k9", &[]);
    let addr = SocketAddr::new(VIP_V4.into(), 80);
    let (mut s, _, _) = open_stream(&lab, addr);
    lab.kill_rackd(0);
    lab.kill_rackd(1);
    // New connections still work, served by the pinned programs.
    assert_eq!(spread(&lab, addr, 8).len(), 8);
    for (i, _) in NODE_NAMES.iter().enumerate() {
        lab.start_rackd(i, KPR);
    }
    lab.wait_tor_route(&format!("{VIP_V4}"), 2, Duration::from_secs(60));
    assert_eq!(spread(&lab, addr, 8).len(), 8);
    // The transfer that started before the kill is still flowing (new data, not what was
    // buffered).
    assert!(still_flowing(&mut s));
}

/// A server outside the cluster sees pods' traffic from the node's address (BPF masquerade),
/// except for destinations in the ip-masq-agent's non-masquerade CIDRs.
#[test]
fn masquerade_shows_the_node_address_except_for_non_masquerade_cidrs() {
    let dir = tempfile::tempdir().unwrap();
    let masq = dir.path().join("ip-masq-agent");
    // The client's network is "outside"; the file names neither it nor the pods' networks.
    std::fs::write(&masq, "nonMasqueradeCIDRs: [192.0.2.0/24]\n").unwrap();
    let m = masq.to_str().unwrap().to_owned();
    let lab = up(
        "svc-masq",
        &[
            "--enable-bpf-masquerade",
            "--enable-ip-masq-agent",
            "--ip-masq-agent-config-path",
            &m,
        ],
    );
    let _srv = EchoServer::start(&lab.client, "outside", 8080, 5354).unwrap();
    let pod = &lab.pods[0];
    let to: SocketAddr = format!("{CLIENT_V4}:8080").parse().unwrap();
    let a = netlab::echo::http_get(&pod.ns, to, T).unwrap();
    assert_eq!(parse(&a).unwrap().1.ip().to_string(), "10.0.1.2", "{a}");
    // IPv6 too (--enable-ipv6-masquerade defaults on; the file lists no IPv6 network).
    let to6: SocketAddr = format!("[{CLIENT_V6}]:8080").parse().unwrap();
    let a = netlab::echo::http_get(&pod.ns, to6, T).unwrap();
    assert_eq!(
        parse(&a).unwrap().1.ip().to_string(),
        "fd00:10:0:1::2",
        "{a}"
    );
    // Pod to pod across nodes is never masqueraded (every node's PodCIDRs are exempt).
    let other = SocketAddr::new(lab.pods[1].v4.into(), 80);
    let a = netlab::echo::http_get(&pod.ns, other, T).unwrap();
    assert_eq!(parse(&a).unwrap().1.ip(), IpAddr::from(pod.v4), "{a}");
    // Now the client's network is non-masquerade too: the pod's own address shows.
    std::fs::write(&masq, "nonMasqueradeCIDRs: [10.0.0.0/8]\n").unwrap();
    netlab::wait_for(
        "the new ip-masq-agent config",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || {
            let a = netlab::echo::http_get(&pod.ns, to, T)?;
            let seen = parse(&a).unwrap().1.ip();
            Ok(if seen == IpAddr::from(pod.v4) {
                netlab::Check::Ready(())
            } else {
                netlab::Check::NotYet(a)
            })
        },
    )
    .unwrap();
}

/// A long transfer through the VIP: the stream, the pod serving it and the client address
/// that pod saw.
fn open_stream(lab: &SvcLab, addr: SocketAddr) -> (TcpStream, String, SocketAddr) {
    use std::io::Write;
    let mut s = lab
        .client
        .enter(|| TcpStream::connect_timeout(&addr, T))
        .unwrap()
        .unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(b"GET /stream?bytes=100000000 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut head = vec![0u8; 512];
    let n = s.read(&mut head).unwrap();
    let text = String::from_utf8_lossy(&head[..n]).into_owned();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    let (pod, client) = parse(body).unwrap_or_else(|| panic!("{text:?}"));
    (s, pod, client)
}

/// Whether a stream still delivers new data: what the socket buffered before is drained
/// first, then 4 KiB more must arrive within 3 s (the pods send 10 KiB/s).
fn still_flowing(s: &mut TcpStream) -> bool {
    let mut buf = vec![0u8; 1 << 20];
    s.set_nonblocking(true).unwrap();
    loop {
        match s.read(&mut buf) {
            Ok(0) => return false,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(_) => return false,
        }
    }
    s.set_nonblocking(false).unwrap();
    let t0 = std::time::Instant::now();
    let mut got = 0;
    while t0.elapsed() < Duration::from_secs(3) && got < 4096 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got += n,
        }
    }
    got >= 4096
}

/// node2 goes away (rackd killed, its ToR link down, as a power-off looks from outside):
/// every long-lived connection that entered through node1 to a pod of node1 keeps its
/// backend and keeps flowing; new connections all work through node1. The others are
/// counted (those served by node2's pods, or SNATed by node2, cannot survive).
#[test]
fn a_node_taken_down_leaves_the_other_nodes_connections_alone() {
    let mut lab = up("svc-down", &[]);
    let addr = SocketAddr::new(VIP_V4.into(), 80);
    let nodes: BTreeMap<String, usize> =
        lab.pods.iter().map(|p| (p.name.clone(), p.node)).collect();
    let node_of = |pod: &str| nodes[pod];
    // Entered through node1 and served on node1: the pod saw the client itself.
    let local_to_node1 = |pod: &str, client: &SocketAddr| {
        node_of(pod) == 0 && client.ip() == IpAddr::from(CLIENT_V4)
    };
    // Long transfers until at least four entered node1 for its own pods (a quarter of flows
    // do: the ToR's hash picks the node, Maglev the pod), and at least 16 in all.
    let mut streams: Vec<(TcpStream, String, SocketAddr)> = Vec::new();
    while streams.len() < 64
        && (streams.len() < 16
            || streams
                .iter()
                .filter(|(_, p, c)| local_to_node1(p, c))
                .count()
                < 4)
    {
        streams.push(open_stream(&lab, addr));
    }
    let via_node1_local: Vec<bool> = streams
        .iter()
        .map(|(_, pod, client)| local_to_node1(pod, client))
        .collect();
    let expected = via_node1_local.iter().filter(|b| **b).count();
    assert!(
        expected > 0,
        "no stream of {} entered through node1 to its own pods",
        streams.len()
    );
    lab.kill_rackd(1);
    lab.tor_ns.link_down("eth2").unwrap();
    lab.wait_tor_route(&format!("{VIP_V4}"), 1, Duration::from_secs(30));
    let mut survived = 0;
    let mut others_survived = 0;
    for ((s, _, _), local) in streams.iter_mut().zip(&via_node1_local) {
        let ok = still_flowing(s);
        if *local {
            assert!(ok, "a connection through node1 to its own pod broke");
            survived += 1;
        } else if ok {
            others_survived += 1;
        }
    }
    eprintln!(
        "node down: {survived}/{expected} connections through node1 to its pods kept flowing; \
         {others_survived}/{} of the others",
        streams.len() - expected
    );
    // Once node2's pods are marked not ready (Kubernetes' node lifecycle controller), new
    // connections all land on node1's pods.
    let node1_pods: Vec<usize> = (0..lab.pods.len())
        .filter(|&i| lab.pods[i].node == 0)
        .collect();
    lab.set_backends(&node1_pods);
    lab.wait_backends(0, VIP_V4.into(), 80, node1_pods.len());
    for (pod, _) in spread(&lab, addr, 8) {
        assert_eq!(node_of(&pod), 0, "{pod}");
    }
}
