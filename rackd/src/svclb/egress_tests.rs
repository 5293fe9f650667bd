#![allow(clippy::unwrap_used)]

use super::*;
use crate::testing::config_state;

const SEED: &str = include_str!("../../../configs/seeds/seed-000-egress-gateway.yaml");

/// Three nodes (node2 the only `egress-gw: 'true'`), their pod CIDRs, and empire pods on
/// node1 and node3 plus an alliance pod on node1.
const CLUSTER: &str = "\
apiVersion: v1
kind: Node
metadata: {name: node1}
spec: {podCIDR: 10.0.1.0/24}
status: {addresses: [{type: InternalIP, address: 172.18.0.11}]}
---
apiVersion: v1
kind: Node
metadata: {name: node2, labels: {egress-gw: 'true'}}
spec: {podCIDR: 10.0.2.0/24}
status: {addresses: [{type: InternalIP, address: 172.18.0.12}]}
---
apiVersion: v1
kind: Node
metadata: {name: node3}
spec: {podCIDR: 10.0.3.0/24}
status: {addresses: [{type: InternalIP, address: 172.18.0.13}]}
---
apiVersion: v1
kind: Pod
metadata: {name: tiefighter, namespace: default, uid: u1, labels: {org: empire}}
spec: {nodeName: node1}
status: {phase: Running, podIP: 10.0.1.5, podIPs: [{ip: 10.0.1.5}]}
---
apiVersion: v1
kind: Pod
metadata: {name: xwing, namespace: default, uid: u2, labels: {org: alliance}}
spec: {nodeName: node1}
status: {phase: Running, podIP: 10.0.1.6, podIPs: [{ip: 10.0.1.6}]}
---
apiVersion: v1
kind: Pod
metadata: {name: mediabot, namespace: default, uid: u3, labels: {org: empire}}
spec: {nodeName: node3}
status: {phase: Running, podIP: 10.0.3.7, podIPs: [{ip: 10.0.3.7}]}
";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn host(ifaces: &[(&str, &[&str])]) -> HostInfo {
    let mut h = HostInfo::default();
    for (name, addrs) in ifaces {
        h.interfaces
            .insert((*name).into(), addrs.iter().map(|a| ip(a)).collect());
    }
    h
}

fn resolved(text: &str) -> (Resolution, Vec<IpNet>) {
    let cfg = config_state(text);
    let snap = &cfg.snapshot;
    let policies: Vec<_> = snap.egress_gateway_policies().collect();
    let pods: Vec<_> = snap.pods().collect();
    let nodes: Vec<_> = snap.nodes().collect();
    let res = egressgw::resolve(&Input {
        policies: &policies,
        pods: &pods,
        nodes: &nodes,
        namespaces: &BTreeMap::new(),
        elections: &BTreeMap::new(),
    });
    (res, cluster_prefixes(&nodes))
}

fn rule(source: &str, destination: &str, action: EgressAction) -> EgressRule {
    EgressRule {
        source: ip(source),
        destination: net(destination),
        action,
    }
}

/// The seeds' policy: node1 tunnels its empire pod to node2; node3 its own; node2 SNATs both
/// to net1's address and sends replies back to each pod's node; the alliance pod has no entry
/// anywhere.
#[test]
fn remote_outpost_per_node() {
    let (res, cluster) = resolved(&format!("{SEED}\n---\n{CLUSTER}"));
    let gw = Action::Gateway {
        group: egressgw::GroupId::new("remote-outpost", egressgw::GatewaySlot::Single),
        node: "node2".into(),
        node_ip: ip("172.18.0.12"),
        egress: EgressAddress::Interface("net1".into()),
    };
    assert_eq!(res.entries.values().next().unwrap().action, gw);
    let tunnel = EgressAction::Tunnel {
        gateway: ip("172.18.0.12"),
    };
    let none = host(&[]);
    assert_eq!(
        render(&res, "node1", &none, &BTreeSet::new(), &cluster),
        (vec![rule("10.0.1.5", "10.0.4.0/24", tunnel)], vec![])
    );
    assert_eq!(
        render(&res, "node3", &none, &BTreeSet::new(), &cluster).0,
        vec![rule("10.0.3.7", "10.0.4.0/24", tunnel)]
    );
    let node2 = host(&[
        ("eth1", &["172.18.0.12"]),
        ("net1", &["fe80::1", "192.168.4.2"]),
    ]);
    let snat = |reply: &str| EgressAction::Snat {
        egress_ip: Some(ip("192.168.4.2")),
        reply_to: Some(ip(reply)),
    };
    assert_eq!(
        render(&res, "node2", &node2, &BTreeSet::new(), &cluster),
        (
            vec![
                rule("10.0.1.5", "10.0.4.0/24", snat("172.18.0.11")),
                rule("10.0.3.7", "10.0.4.0/24", snat("172.18.0.13")),
            ],
            vec![]
        )
    );
    // Without net1 the gateway cannot SNAT: entries dropped there, and said why.
    let (rules, problems) = render(
        &res,
        "node2",
        &host(&[("eth1", &["172.18.0.12"])]),
        &BTreeSet::new(),
        &cluster,
    );
    assert!(rules.iter().all(|r| matches!(
        r.action,
        EgressAction::Snat {
            egress_ip: None,
            ..
        }
    )));
    assert_eq!(problems.len(), 1);
    assert_eq!(
        problems[0].condition.type_,
        conditions::EGRESS_IP_NOT_ON_GATEWAY
    );
    assert!(problems[0].condition.message.contains("interface net1"));
}

/// In-cluster destinations are never sent to the gateway: pod CIDRs and node addresses inside
/// a destination are excluded (longest prefix), a destination inside the cluster is excluded
/// whole; excluded CIDRs stay.
#[test]
fn in_cluster_destinations_are_excluded() {
    let policy = "\
apiVersion: cilium.io/v2
kind: CiliumEgressGatewayPolicy
metadata: {name: all-out}
spec:
  destinationCIDRs: [0.0.0.0/0, 10.0.2.0/25]
  excludedCIDRs: [192.168.0.0/16]
  selectors: [{podSelector: {matchLabels: {org: alliance}}}]
  egressGateway: {nodeSelector: {matchLabels: {egress-gw: 'true'}}, interface: net1}
";
    let (res, cluster) = resolved(&format!("{policy}---\n{CLUSTER}"));
    let (rules, _) = render(&res, "node1", &host(&[]), &BTreeSet::new(), &cluster);
    let tunnel = EgressAction::Tunnel {
        gateway: ip("172.18.0.12"),
    };
    let mut want = vec![rule("10.0.1.6", "0.0.0.0/0", tunnel)];
    for c in [
        "10.0.1.0/24",
        "10.0.2.0/25",
        "10.0.2.0/24",
        "10.0.3.0/24",
        "172.18.0.11/32",
        "172.18.0.12/32",
        "172.18.0.13/32",
        "192.168.0.0/16",
    ] {
        want.push(rule("10.0.1.6", c, EgressAction::Excluded));
    }
    want.sort_by_key(|r| (r.source, r.destination));
    assert_eq!(rules, want);
}

#[test]
fn egress_address_follows_cilium() {
    let mut h = host(&[
        ("eth0", &["172.18.0.12", "fc00::12"]),
        ("net1", &["169.254.0.9", "192.168.4.2"]),
    ]);
    h.default_interface_v4 = Some("eth0".into());
    let v4 = ip("10.0.0.1");
    let v6 = ip("fd00::1");
    let held = BTreeSet::from([ip("192.168.9.9")]);
    let a = |e: EgressAddress, f| egress_address(&e, f, &h, &held);
    assert_eq!(
        a(EgressAddress::Interface("net1".into()), v4),
        Some(ip("192.168.4.2")),
        "link-local skipped"
    );
    assert_eq!(a(EgressAddress::Interface("net1".into()), v6), None);
    assert_eq!(a(EgressAddress::Interface("net9".into()), v4), None);
    assert_eq!(
        a(EgressAddress::Ip(ip("192.168.4.2")), v4),
        Some(ip("192.168.4.2"))
    );
    assert_eq!(
        a(EgressAddress::Ip(ip("192.168.4.3")), v4),
        None,
        "not here"
    );
    assert_eq!(a(EgressAddress::Ip(ip("192.168.4.2")), v6), None, "family");
    assert_eq!(a(EgressAddress::DefaultRoute, v4), Some(ip("172.18.0.12")));
    assert_eq!(a(EgressAddress::DefaultRoute, v6), None, "no v6 default");
}

/// `namespaceSelector` matches the labels of the source pod's Namespace object, as Cilium
/// does: `EgressState::sync` hands the snapshot's Namespaces to the resolver. A pod in hoth
/// (labelled `tier: outpost`) is selected, one in endor (a Namespace without that label) is
/// not; batuu has no Namespace object, so only `kubernetes.io/metadata.name` selects its pod;
/// and a change to a Namespace alone is enough to resolve again.
#[test]
fn namespace_selector_reads_namespace_labels() {
    /// Keeps the egress rules last written; the rest of the datapath is not used here.
    #[derive(Debug, Default)]
    struct Rules {
        rules: Vec<EgressRule>,
        syncs: usize,
    }
    impl LbMaps for Rules {
        fn apply(&mut self, _: &rackd_services::plan::Op) -> Result<(), MapsError> {
            Ok(())
        }
        fn restore(&mut self) -> Result<crate::svclb::maps::Restored, MapsError> {
            Ok((Vec::new(), Vec::new()))
        }
        fn attached(&self) -> Result<Vec<u32>, MapsError> {
            Ok(Vec::new())
        }
        fn attach(
            &mut self,
            _: u32,
            _: Option<std::net::Ipv4Addr>,
            _: Option<std::net::Ipv6Addr>,
        ) -> Result<(), MapsError> {
            Ok(())
        }
        fn detach(&mut self, _: u32) -> Result<(), MapsError> {
            Ok(())
        }
        fn set_masquerade(&mut self, _: &datapath::lb::MasqConfig) -> Result<(), MapsError> {
            Ok(())
        }
        fn set_egress_tunnel(&mut self, _: Option<EgressTunnel>) -> Result<(), MapsError> {
            Ok(())
        }
        fn sync_egress(
            &mut self,
            rules: &[EgressRule],
        ) -> Result<datapath::lb::EgressSync, MapsError> {
            self.rules = rules.to_vec();
            self.syncs += 1;
            Ok(datapath::lb::EgressSync::default())
        }
    }

    let policies = "\
apiVersion: cilium.io/v2
kind: CiliumEgressGatewayPolicy
metadata: {name: outposts}
spec:
  destinationCIDRs: [10.0.4.0/24]
  selectors: [{namespaceSelector: {matchLabels: {tier: outpost}}}]
  egressGateway: {nodeSelector: {matchLabels: {egress-gw: 'true'}}, interface: net1}
---
apiVersion: cilium.io/v2
kind: CiliumEgressGatewayPolicy
metadata: {name: traders}
spec:
  destinationCIDRs: [10.0.5.0/24]
  selectors: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: batuu}}}]
  egressGateway: {nodeSelector: {matchLabels: {egress-gw: 'true'}}, interface: net1}
---
apiVersion: v1
kind: Namespace
metadata: {name: hoth, labels: {tier: outpost}}
---
apiVersion: v1
kind: Namespace
metadata: {name: endor, labels: {tier: moon}}
---
apiVersion: v1
kind: Pod
metadata: {name: probe, namespace: hoth, uid: u4}
spec: {nodeName: node1}
status: {phase: Running, podIP: 10.0.1.21}
---
apiVersion: v1
kind: Pod
metadata: {name: ewok, namespace: endor, uid: u5}
spec: {nodeName: node1}
status: {phase: Running, podIP: 10.0.1.22}
---
apiVersion: v1
kind: Pod
metadata: {name: trader, namespace: batuu, uid: u6}
spec: {nodeName: node1}
status: {phase: Running, podIP: 10.0.1.23}
---
";
    let text = format!("{policies}{CLUSTER}");
    let tunnel = EgressAction::Tunnel {
        gateway: ip("172.18.0.12"),
    };
    let mut maps = Rules::default();
    let mut st = EgressState::new(EgressTunnel {
        ifindex: 9,
        vni: 2,
        mac: [0x0a, 0xce, 0, 0, 0, 1],
    });
    let h = Arc::new(host(&[]));
    let holders = Arc::new(EgressHolders::new());
    let cfg = config_state(&text);
    st.sync(&mut maps, "node1", &cfg.snapshot, &h, &holders, true)
        .unwrap();
    // The pods of the default namespace (no Namespace object, not batuu) are not selected.
    assert_eq!(
        maps.rules,
        vec![
            rule("10.0.1.21", "10.0.4.0/24", tunnel),
            rule("10.0.1.23", "10.0.5.0/24", tunnel),
        ]
    );
    assert!(st.conditions().is_empty(), "{:?}", st.conditions());

    // endor gets the label: only its Namespace changed, and its pod is selected now.
    let relabelled = text.replace("labels: {tier: moon}", "labels: {tier: outpost}");
    assert_ne!(relabelled, text);
    let next = config_state(&relabelled);
    assert_eq!(
        next.snapshot
            .changes_since(&cfg.snapshot)
            .iter()
            .map(|(k, _)| k.to_string())
            .collect::<Vec<_>>(),
        ["Namespace endor"]
    );
    st.sync(&mut maps, "node1", &next.snapshot, &h, &holders, false)
        .unwrap();
    assert_eq!(maps.syncs, 2);
    assert_eq!(
        maps.rules,
        vec![
            rule("10.0.1.21", "10.0.4.0/24", tunnel),
            rule("10.0.1.22", "10.0.4.0/24", tunnel),
            rule("10.0.1.23", "10.0.5.0/24", tunnel),
        ]
    );
}

/// Without the service datapath, the reporter lists every policy as not enforced; without a
/// policy it lists nothing (the control).
#[tokio::test]
async fn without_the_datapath_every_policy_is_reported_not_enforced() {
    use crate::controller::Controller;
    let mut r = UnenforcedReporter::default();
    r.reconcile(&config_state(CLUSTER), crate::testing::ctx(true))
        .await
        .unwrap();
    assert!(r.conditions().is_empty());
    r.reconcile(
        &config_state(&format!("{SEED}\n---\n{CLUSTER}")),
        crate::testing::ctx(false),
    )
    .await
    .unwrap();
    let c = r.conditions();
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0].condition.type_, conditions::GATEWAY_DISABLED);
    assert!(c[0].condition.message.contains("--kube-proxy-replacement"));
}

/// node2 and node3 both match the gateway's nodeSelector; the policy's egressIP is on no
/// interface and an `EgressGateway` advertisement selects it.
const BGP_POLICY: &str = "\
apiVersion: cilium.io/v2
kind: CiliumBGPAdvertisement
metadata: {name: egress-ips, labels: {advertise: bgp}}
spec:
  advertisements:
  - advertisementType: EgressGateway
    selector: {matchLabels: {egress-bgp: 'true'}}
---
apiVersion: cilium.io/v2
kind: CiliumEgressGatewayPolicy
metadata: {name: outpost-bgp, labels: {egress-bgp: 'true'}}
spec:
  selectors: [{podSelector: {matchLabels: {org: empire}}}]
  destinationCIDRs: [10.0.4.0/24]
  egressGateway: {nodeSelector: {matchLabels: {bgp-gw: 'true'}}, egressIP: 192.0.2.77}
---
apiVersion: cilium.io/v2
kind: CiliumEgressGatewayPolicy
metadata: {name: outpost-net1}
spec:
  selectors: [{podSelector: {matchLabels: {org: empire}}}]
  destinationCIDRs: [10.0.5.0/24]
  egressGateway: {nodeSelector: {matchLabels: {egress-gw: 'true'}}, interface: net1}
";

fn bgp_cluster() -> String {
    let cluster = CLUSTER
        .replace(
            "metadata: {name: node2, labels: {egress-gw: 'true'}}",
            "metadata: {name: node2, labels: {egress-gw: 'true', bgp-gw: 'true'}}",
        )
        .replace(
            "metadata: {name: node3}",
            "metadata: {name: node3, labels: {bgp-gw: 'true'}}",
        );
    format!("{BGP_POLICY}\n---\n{cluster}")
}

fn announced_ips(a: &EgressAnnounced, policy: &str) -> Vec<IpAddr> {
    a.get(policy)
        .map(|s| s.iter().copied().collect())
        .unwrap_or_default()
}

/// Without election, Cilium's rule: the first matching node by name (node2) announces the
/// BGP-routed egressIP (on none of its interfaces) and the net1 policy's address; node1 and
/// node3 announce nothing.
#[test]
fn announced_without_election_is_the_first_node_by_name() {
    let cfg = config_state(&bgp_cluster());
    let snap = &cfg.snapshot;
    let none = EgressHolders::new();
    let h2 = host(&[
        ("eth0", &["172.18.0.12"]),
        ("net1", &["10.0.6.2", "fd00:6::2"]),
    ]);
    let a = announced(snap, "node2", &h2, &none, false);
    assert_eq!(announced_ips(&a, "outpost-bgp"), vec![ip("192.0.2.77")]);
    assert_eq!(
        announced_ips(&a, "outpost-net1"),
        vec![ip("10.0.6.2"), ip("fd00:6::2")]
    );
    for n in ["node1", "node3"] {
        let h = host(&[("eth0", &["172.18.0.13"])]);
        assert!(announced(snap, n, &h, &none, false).is_empty(), "{n}");
    }
}

/// Under L2 leases the egressIP is announced by its holder only: nobody while nobody holds
/// it (although node2 is first by name), node3 when it does; the interface policy is not
/// elected and stays with node2.
#[test]
fn announced_under_election_follows_the_lease() {
    let cfg = config_state(&bgp_cluster());
    let snap = &cfg.snapshot;
    let h = host(&[("eth0", &["172.18.0.12"]), ("net1", &["10.0.6.2"])]);
    let none = EgressHolders::new();
    let a = announced(snap, "node2", &h, &none, true);
    assert!(announced_ips(&a, "outpost-bgp").is_empty(), "{a:?}");
    assert_eq!(announced_ips(&a, "outpost-net1"), vec![ip("10.0.6.2")]);
    let held = EgressHolders::from([(ip("192.0.2.77"), "node3".to_owned())]);
    assert!(announced_ips(&announced(snap, "node2", &h, &held, true), "outpost-bgp").is_empty());
    let a3 = announced(snap, "node3", &h, &held, true);
    assert_eq!(announced_ips(&a3, "outpost-bgp"), vec![ip("192.0.2.77")]);
    // The control: node2 is first by name, and would announce it without election.
    assert_eq!(
        announced_ips(&announced(snap, "node2", &h, &none, false), "outpost-bgp"),
        vec![ip("192.0.2.77")]
    );
}

/// A BGP-routed egressIP is SNATed to by its gateway although no interface holds it; the same
/// policy without the advertisement is reported as Cilium reports it (the control).
#[test]
fn a_bgp_routed_egress_ip_needs_no_interface() {
    let h = host(&[("eth0", &["172.18.0.12"])]);
    let none = EgressHolders::new();
    let snat = |text: &str| {
        let cfg = config_state(text);
        let snap = &cfg.snapshot;
        let (res, cluster) = resolved(text);
        let held = usable_ips(snap, "node2", &none);
        render(&res, "node2", &h, &held, &cluster)
    };
    let (rules, problems) = snat(&bgp_cluster());
    let to_bgp: Vec<_> = rules
        .iter()
        .filter(|r| r.destination == net("10.0.4.0/24"))
        .map(|r| r.action)
        .collect();
    assert!(!to_bgp.is_empty());
    assert!(
        to_bgp.iter().all(|a| matches!(
            a,
            EgressAction::Snat { egress_ip: Some(e), .. } if *e == ip("192.0.2.77")
        )),
        "{to_bgp:?}"
    );
    assert!(
        problems
            .iter()
            .all(|p| p.object.as_ref().is_none_or(|o| o.name != "outpost-bgp")),
        "{problems:?}"
    );
    // The control: the advertisement no longer selects the policy.
    let without = bgp_cluster().replace(
        "metadata: {name: outpost-bgp, labels: {egress-bgp: 'true'}}",
        "metadata: {name: outpost-bgp}",
    );
    assert_ne!(without, bgp_cluster());
    let (rules, problems) = snat(&without);
    assert!(
        rules
            .iter()
            .filter(|r| r.destination == net("10.0.4.0/24"))
            .all(|r| matches!(
                r.action,
                EgressAction::Snat {
                    egress_ip: None,
                    ..
                }
            ))
    );
    assert!(
        problems.iter().any(
            |p| p.object.as_ref().is_some_and(|o| o.name == "outpost-bgp")
                && p.condition.type_ == conditions::EGRESS_IP_NOT_ON_GATEWAY
        ),
        "{problems:?}"
    );
}
