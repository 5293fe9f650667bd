//! Rendering tests: the lab's YAML and every advertisement type, the incremental path
//! against the full one, and the reconciler against in-process bgpd speakers.

use std::net::{IpAddr, Ipv4Addr};

use bgpd_wire::Family;
use ipnet::IpNet;
use rackd_model::{CheckOptions, Snapshot, parse_documents};

use super::*;

pub(super) fn lab_snapshot(extra: &str) -> Snapshot {
    let (snap, errors) = lab_snapshot_errors(extra);
    assert!(errors.is_empty(), "{errors:#?}");
    snap
}

fn lab_snapshot_errors(extra: &str) -> (Snapshot, Vec<rackd_model::ConfigError>) {
    let mut parsed: Vec<_> = crate::testing::lab_files()
        .iter()
        .map(|(name, text)| parse_documents(name, text))
        .collect();
    if !extra.is_empty() {
        parsed.push(parse_documents("extra.yaml", extra));
    }
    let out = Snapshot::build(&parsed, &CheckOptions::default());
    (out.snapshot, out.errors)
}

pub(super) fn input(node: &str) -> RenderInput<'_> {
    RenderInput {
        node_name: node,
        secrets_namespace: "kube-system",
        ..Default::default()
    }
}

#[test]
fn lab_node1_renders_peers_and_policies() {
    let snap = lab_snapshot("");
    let d = render(&snap, &input("node1"));
    assert!(d.problems.is_empty(), "{:?}", d.problems);
    assert_eq!(d.cluster_config.as_deref(), Some("cilium-bgp"));
    let inst = &d.instances["rack"];
    assert_eq!(inst.local_asn, 65001);
    assert_eq!(inst.router_id, "10.0.1.2".parse::<Ipv4Addr>().unwrap());
    assert_eq!(inst.listen_port, None, "unset localPort means no listener");
    let v4 = &inst.peers["tor-v4"];
    assert_eq!(v4.address, "10.0.0.1".parse::<IpAddr>().unwrap());
    assert_eq!(v4.peer_asn, 65000);
    assert_eq!(
        (v4.hold_secs, v4.keepalive_secs, v4.connect_retry_secs),
        (9, 3, 5)
    );
    assert_eq!(v4.password.as_deref(), Some(&b"cilium123"[..]));
    assert_eq!(v4.graceful_restart, Some(15));
    assert_eq!(v4.families, vec![Family::Ipv4Unicast, Family::Ipv6Unicast]);
    let names: Vec<&str> = v4.export.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "tor-v4-ipv4-PodCIDR",
            "tor-v4-ipv4-Service-web-default-ExternalIP",
            "tor-v4-ipv6-PodCIDR",
            "tor-v4-ipv6-Service-web-default-ExternalIP",
        ]
    );
    let pod4 = v4.export.iter().next().unwrap();
    assert_eq!(pod4.prefixes, vec!["10.1.1.0/24".parse::<IpNet>().unwrap()]);
    assert_eq!(pod4.communities, vec![(65000 << 16) | 99]);
    let svc4 = v4.export.iter().nth(1).unwrap();
    assert_eq!(
        svc4.prefixes,
        vec!["20.0.10.1/32".parse::<IpNet>().unwrap()]
    );
    assert_eq!(svc4.large_communities, vec![[65000, 1, 100]]);
    assert!(
        inst.routes
            .contains_key(&"2004::1/128".parse::<IpNet>().unwrap())
    );
    assert!(
        inst.routes
            .contains_key(&"fd00:10:1:1::/64".parse::<IpNet>().unwrap())
    );
}

#[test]
fn override_sets_asn_and_unselected_node_gets_nothing() {
    let snap = lab_snapshot("apiVersion: v1\nkind: Node\nmetadata: {name: outsider}\n");
    let d = render(&snap, &input("node2"));
    assert_eq!(d.instances["rack"].local_asn, 65002);
    let d = render(&snap, &input("outsider"));
    assert!(d.instances.is_empty());
    assert!(d.cluster_config.is_none());
}

#[test]
fn etp_local_needs_a_local_endpoint() {
    let svc = r#"
apiVersion: v1
kind: Service
metadata: {name: local, namespace: default}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  ports: [{port: 80, protocol: TCP}]
status:
  loadBalancer:
    ingress: [{ip: 20.0.10.7}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: local-abc
  namespace: default
  labels: {kubernetes.io/service-name: local}
addressType: IPv4
endpoints:
- addresses: [10.1.2.9]
  nodeName: node2
  conditions: {ready: true}
"#;
    let snap = lab_snapshot(svc);
    let lb: IpNet = "20.0.10.7/32".parse().unwrap();
    let d1 = render(&snap, &input("node1"));
    assert!(!d1.instances["rack"].routes.contains_key(&lb));
    let d2 = render(&snap, &input("node2"));
    assert!(d2.instances["rack"].routes.contains_key(&lb));
}

/// With the service datapath on, a Cluster-policy Service's LoadBalancer and external IPs are
/// advertised only while it has a usable backend (ready, or serving while terminating), on
/// every node; its ClusterIP is not concerned.
#[test]
fn cluster_services_without_backends_are_withdrawn_when_the_datapath_forwards() {
    let svc = |endpoints: &str| {
        format!(
            r#"
apiVersion: v1
kind: Service
metadata: {{name: c, namespace: default}}
spec:
  type: LoadBalancer
  externalIPs: [20.0.10.9]
  ports: [{{port: 80, protocol: TCP}}]
status:
  loadBalancer:
    ingress: [{{ip: 20.0.10.8}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: c-abc
  namespace: default
  labels: {{kubernetes.io/service-name: c}}
addressType: IPv4
endpoints: {endpoints}
"#
        )
    };
    let lb: IpNet = "20.0.10.8/32".parse().unwrap();
    let ext: IpNet = "20.0.10.9/32".parse().unwrap();
    let on = |node| RenderInput {
        withdraw_without_backends: true,
        ..input(node)
    };
    let has = |d: &Desired| {
        let r = &d.instances["rack"].routes;
        (r.contains_key(&lb), r.contains_key(&ext))
    };
    for (endpoints, want) in [
        ("[]", (false, false)),
        (
            "[{addresses: [10.1.2.9], nodeName: node2, conditions: {ready: false}}]",
            (false, false),
        ),
        (
            "[{addresses: [10.1.2.9], nodeName: node2, conditions: {ready: false, serving: true, terminating: true}}]",
            (true, true),
        ),
        (
            "[{addresses: [10.1.2.9], nodeName: node2, conditions: {ready: true}}]",
            (true, true),
        ),
    ] {
        let snap = lab_snapshot(&svc(endpoints));
        // A remote backend is enough for a Cluster service.
        assert_eq!(has(&render(&snap, &on("node1"))), want, "{endpoints}");
        // Positive control: without the datapath nothing is withdrawn.
        assert_eq!(
            has(&render(&snap, &input("node1"))),
            (true, true),
            "{endpoints}"
        );
    }
}

pub(super) fn export<'a>(d: &'a Desired, peer: &str, name: &str) -> Option<&'a ExportPolicy> {
    d.instances["rack"].peers[peer]
        .export
        .iter()
        .find(|e| e.name == name)
}

pub(super) fn nets(v: &[&str]) -> Vec<IpNet> {
    v.iter().map(|s| s.parse().unwrap()).collect()
}

#[test]
fn interface_advertisement_announces_each_address_as_a_host_route() {
    let snap = lab_snapshot(
        r#"
apiVersion: cilium.io/v2
kind: CiliumBGPAdvertisement
metadata: {name: iface, labels: {advertise: bgp}}
spec:
  advertisements:
  - advertisementType: Interface
    interface: {name: rk0}
    attributes:
      communities: {standard: ["65000:7"], wellKnown: [no-export]}
      localPreference: 200
  - advertisementType: Interface
    interface: {name: absent0}
"#,
    );
    let mut inp = input("node1");
    inp.host.interfaces.insert(
        "rk0".into(),
        vec![
            "10.99.0.2".parse().unwrap(),
            "10.99.0.1".parse().unwrap(),
            "fd00:99::1".parse().unwrap(),
        ],
    );
    let d = render(&snap, &inp);
    assert!(d.problems.is_empty(), "{:?}", d.problems);
    let v4 = export(&d, "tor-v4", "tor-v4-ipv4-Interface-rk0").unwrap();
    assert_eq!(v4.prefixes, nets(&["10.99.0.2/32", "10.99.0.1/32"]));
    assert_eq!(v4.communities, vec![(65000 << 16) | 7, 0xFFFF_FF01]);
    assert_eq!(v4.local_pref, Some(200));
    // ... and reaches bgpd's export policy for that peer (LOCAL_PREF is sent on iBGP only,
    // RFC 4271 §5.1.5; bgpd's GoBGP test shows it on the wire).
    let pc = crate::bgp::reconcile::peer_config(
        &d.instances["rack"].peers["tor-v4"],
        &crate::bgp::reconcile::NodeAddrs::default(),
    );
    let st = pc
        .export
        .statements
        .iter()
        .find(|st| {
            st.prefixes
                .iter()
                .any(|m| m.prefix == "10.99.0.1/32".parse::<IpNet>().unwrap())
        })
        .unwrap();
    assert_eq!(st.actions.local_pref, Some(200));
    assert_eq!(
        st.actions.add_communities,
        vec![(65000 << 16) | 7, 0xFFFF_FF01]
    );
    let v6 = export(&d, "tor-v4", "tor-v4-ipv6-Interface-rk0").unwrap();
    assert_eq!(v6.prefixes, nets(&["fd00:99::1/128"]));
    // An interface this host does not have advertises nothing and is no error.
    assert!(
        d.instances["rack"].peers["tor-v4"]
            .export
            .iter()
            .all(|e| !e.name.contains("absent0"))
    );
    assert!(
        d.instances["rack"]
            .routes
            .contains_key(&"10.99.0.1/32".parse::<IpNet>().unwrap())
    );
    // Its addresses follow the host: gone from the interface, gone from the policy.
    let mut inp = input("node1");
    inp.host.interfaces.insert("rk0".into(), Vec::new());
    let d = render(&snap, &inp);
    assert!(export(&d, "tor-v4", "tor-v4-ipv4-Interface-rk0").is_none());
}

#[test]
fn cluster_ips_aggregate_unless_the_internal_policy_is_local() {
    let snap = lab_snapshot(
        r#"
apiVersion: cilium.io/v2
kind: CiliumBGPAdvertisement
metadata: {name: cluster, labels: {advertise: bgp}}
spec:
  advertisements:
  - advertisementType: Service
    service:
      addresses: [ClusterIP]
      aggregationLengthIPv4: 24
      aggregationLengthIPv6: 64
    selector: {matchLabels: {expose: cluster}}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: default, labels: {expose: cluster}}
spec:
  type: ClusterIP
  clusterIP: 10.2.7.10
  clusterIPs: [10.2.7.10, "fd00:2::7:10"]
  ports: [{port: 443, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: dns, namespace: default, labels: {expose: cluster}}
spec:
  type: ClusterIP
  clusterIP: 10.2.8.53
  internalTrafficPolicy: Local
  ports: [{port: 53, protocol: UDP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: dns-1
  namespace: default
  labels: {kubernetes.io/service-name: dns}
addressType: IPv4
endpoints:
- addresses: [10.1.2.53]
  nodeName: node2
"#,
    );
    let d1 = render(&snap, &input("node1"));
    assert!(d1.problems.is_empty(), "{:?}", d1.problems);
    let api4 = export(&d1, "tor-v4", "tor-v4-ipv4-Service-api-default-ClusterIP").unwrap();
    assert_eq!(api4.prefixes, nets(&["10.2.7.0/24"]));
    let api6 = export(&d1, "tor-v4", "tor-v4-ipv6-Service-api-default-ClusterIP").unwrap();
    assert_eq!(api6.prefixes, nets(&["fd00:2::/64"]));
    // internalTrafficPolicy Local: only a node with a local endpoint, and never aggregated
    // (an aggregate would draw traffic for other nodes' endpoints).
    assert!(export(&d1, "tor-v4", "tor-v4-ipv4-Service-dns-default-ClusterIP").is_none());
    let d2 = render(&snap, &input("node2"));
    let dns = export(&d2, "tor-v4", "tor-v4-ipv4-Service-dns-default-ClusterIP").unwrap();
    assert_eq!(dns.prefixes, nets(&["10.2.8.53/32"]));
    // The lab's `web` is not labelled `expose: cluster`: its ClusterIP stays unadvertised.
    assert!(
        !d1.instances["rack"]
            .routes
            .contains_key(&"10.2.0.0/24".parse::<IpNet>().unwrap())
    );
    assert!(
        !d1.instances["rack"]
            .routes
            .contains_key(&"10.2.0.10/32".parse::<IpNet>().unwrap())
    );
}

#[test]
fn peer_config_and_node_override_reach_the_session() {
    let snap = lab_snapshot(
        r#"
apiVersion: v1
kind: Node
metadata: {name: edge, labels: {role: edge}}
spec: {podCIDRs: [10.9.0.0/24]}
---
apiVersion: cilium.io/v2
kind: CiliumBGPClusterConfig
metadata: {name: edge-bgp}
spec:
  nodeSelector: {matchLabels: {role: edge}}
  bgpInstances:
  - name: edge
    localASN: 64600
    peers:
    - {name: far, peerAddress: 192.0.2.9, peerASN: 64700, peerConfigRef: {name: far-peer}}
---
apiVersion: cilium.io/v2
kind: CiliumBGPPeerConfig
metadata: {name: far-peer}
spec:
  ebgpMultihop: 3
  transport: {peerPort: 1179}
  gracefulRestart: {enabled: false}
  families:
  - afi: ipv6
    safi: unicast
    advertisements: {matchLabels: {advertise: bgp}}
---
apiVersion: cilium.io/v2
kind: CiliumBGPNodeConfigOverride
metadata: {name: edge}
spec:
  bgpInstances:
  - name: edge
    routerID: 192.0.2.200
    localPort: 1790
    localASN: 64601
    peers:
    - {name: far, localAddress: 192.0.2.100, localPort: 40179}
"#,
    );
    let d = render(&snap, &input("edge"));
    assert!(d.problems.is_empty(), "{:?}", d.problems);
    assert_eq!(d.cluster_config.as_deref(), Some("edge-bgp"));
    let inst = &d.instances["edge"];
    assert_eq!(inst.local_asn, 64601);
    assert_eq!(inst.router_id, "192.0.2.200".parse::<Ipv4Addr>().unwrap());
    assert_eq!(inst.listen_port, Some(1790));
    let far = &inst.peers["far"];
    assert_eq!(far.peer_asn, 64700);
    assert_eq!(far.peer_port, 1179);
    assert_eq!(far.ttl, 3);
    assert_eq!(far.graceful_restart, None);
    // No `timers` at all: Cilium's defaults.
    assert_eq!(
        (far.connect_retry_secs, far.hold_secs, far.keepalive_secs),
        (120, 90, 30)
    );
    assert_eq!(far.local_address, Some("192.0.2.100".parse().unwrap()));
    assert_eq!(far.local_port, Some(40179));
    assert_eq!(far.password, None);
    // Only the family it names, so only IPv6 routes (the node's PodCIDR is IPv4).
    assert_eq!(far.families, vec![Family::Ipv6Unicast]);
    let names: Vec<&str> = far.export.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, vec!["far-ipv6-Service-web-default-ExternalIP"]);
    assert_eq!(
        far.export.iter().next().unwrap().prefixes,
        nets(&["2004::1/128"])
    );
}

/// Graceful restart is a per-peer matter for the reconciler: the speaker's configuration
/// (whose change would restart it, resetting every session) does not depend on any peer's
/// GR setting; the restart time travels in that peer's own configuration.
#[test]
fn graceful_restart_changes_stay_with_their_peer() {
    use crate::bgp::reconcile::{NodeAddrs, peer_config, speaker_config};
    let snap = lab_snapshot("");
    let d = render(&snap, &input("node1"));
    let mut inst = d.instances["rack"].clone();
    let before = speaker_config(&inst, false);
    let v4 = peer_config(&inst.peers["tor-v4"], &NodeAddrs::default());
    assert!(v4.graceful_restart);
    assert_eq!(v4.restart_time, Some(15));
    if let Some(p) = inst.peers.get_mut("tor-v4") {
        p.graceful_restart = Some(300);
    }
    if let Some(p) = inst.peers.get_mut("tor-v6") {
        p.graceful_restart = None;
    }
    assert_eq!(speaker_config(&inst, false), before);
    let v4 = peer_config(&inst.peers["tor-v4"], &NodeAddrs::default());
    assert_eq!(v4.restart_time, Some(300));
    let v6 = peer_config(&inst.peers["tor-v6"], &NodeAddrs::default());
    assert!(!v6.graceful_restart);
    for p in inst.peers.values_mut() {
        p.graceful_restart = None;
    }
    assert_eq!(speaker_config(&inst, false), before);
}

/// The reconciler against real (in-process) bgpd speakers: level-triggered and
/// idempotent. The same desired state twice changes nothing the second time; one changed
/// peer is one update; one route more is one route added; a GR change never restarts
/// the speaker. Peers point at closed loopback ports, so nothing leaves the machine.
#[tokio::test]
async fn reconcile_is_idempotent_and_touches_only_what_changed() {
    use crate::bgp::reconcile::{Applied, NodeAddrs, Reconciler};
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let snap = lab_snapshot("");
    let mut d = render(&snap, &input("node1"));
    for (i, p) in d
        .instances
        .get_mut("rack")
        .unwrap()
        .peers
        .values_mut()
        .enumerate()
    {
        p.address = format!("127.0.0.{}", 10 + i).parse().unwrap();
        p.peer_port = closed;
    }
    let node = NodeAddrs::default();
    let mut r = Reconciler::new(false);
    assert!(r.reconcile(&d, &node).await.is_empty());
    let first = r.applied();
    assert_eq!(
        first,
        Applied {
            speakers_started: 1,
            peers_added: 2,
            routes_added: d.instances["rack"].routes.len() as u64,
            ..Applied::default()
        }
    );
    async fn peers(r: &Reconciler) -> usize {
        let (_, s, _) = r.speakers().next().unwrap();
        s.peers().await.unwrap().len()
    }
    assert_eq!(peers(&r).await, 2);

    // Level-triggered: the same input again (as every resync tick does) changes nothing.
    for _ in 0..3 {
        assert!(r.reconcile(&d, &node).await.is_empty());
    }
    assert_eq!(r.applied(), first);

    // One peer's keepalive: one update of that peer; one more route: one route added.
    let inst = d.instances.get_mut("rack").unwrap();
    inst.peers.get_mut("tor-v4").unwrap().keepalive_secs = 1;
    inst.routes.insert("198.51.100.0/24".parse().unwrap(), 1);
    assert!(r.reconcile(&d, &node).await.is_empty());
    let second = r.applied();
    assert_eq!(
        second,
        Applied {
            peers_updated: 1,
            routes_added: first.routes_added + 1,
            ..first
        }
    );
    let loc = r
        .speakers()
        .next()
        .map(|(_, s, _)| s)
        .unwrap()
        .routes(bgpd::RouteQuery {
            family: Family::Ipv4Unicast,
            rib: bgpd::RibKind::LocRib,
        })
        .await
        .unwrap();
    assert!(
        loc.iter()
            .any(|e| e.prefix.to_string() == "198.51.100.0/24")
    );

    // Graceful restart off for one peer: that peer is updated, the speaker keeps running.
    let inst = d.instances.get_mut("rack").unwrap();
    inst.peers.get_mut("tor-v6").unwrap().graceful_restart = None;
    assert!(r.reconcile(&d, &node).await.is_empty());
    assert_eq!(
        r.applied(),
        Applied {
            peers_updated: second.peers_updated + 1,
            ..second
        }
    );

    // A peer and a route gone: removed, once.
    let inst = d.instances.get_mut("rack").unwrap();
    inst.peers.remove("tor-v6");
    inst.routes
        .remove(&"198.51.100.0/24".parse::<IpNet>().unwrap());
    assert!(r.reconcile(&d, &node).await.is_empty());
    assert!(r.reconcile(&d, &node).await.is_empty());
    let last = r.applied();
    assert_eq!((last.peers_removed, last.routes_removed), (1, 1));
    assert_eq!(last.speakers_started, 1);
    assert_eq!(peers(&r).await, 1);

    // A new ASN is a new speaker (the protocol requires it).
    d.instances.get_mut("rack").unwrap().local_asn = 65009;
    assert!(r.reconcile(&d, &node).await.is_empty());
    assert_eq!(
        (r.applied().speakers_stopped, r.applied().speakers_started),
        (1, 2)
    );
    r.shutdown().await;
}

#[test]
fn missing_secret_and_peer_config_are_reported() {
    let (snap, errors) = lab_snapshot_errors(
        r#"
apiVersion: cilium.io/v2
kind: CiliumBGPClusterConfig
metadata: {name: aaa-first}
spec:
  nodeSelector: {matchLabels: {only: me}}
  bgpInstances:
  - name: x
    localASN: 64512
    peers:
    - {name: p, peerAddress: 192.0.2.1, peerASN: 64513, peerConfigRef: {name: nope}}
---
apiVersion: v1
kind: Node
metadata: {name: lonely, labels: {only: me}}
"#,
    );
    // The offline check reports it too; the renderer must still not configure the peer.
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let d = render(&snap, &input("lonely"));
    assert!(d.instances.get("x").is_none_or(|i| i.peers.is_empty()));

    // The auth Secret looked up in another namespace than the lab's: both peers need it,
    // neither is configured without its password, and each says why (Cilium's
    // MissingAuthSecret condition).
    let snap = lab_snapshot("");
    let d = render(
        &snap,
        &RenderInput {
            secrets_namespace: "elsewhere",
            ..input("node1")
        },
    );
    assert!(d.instances["rack"].peers.is_empty());
    assert_eq!(d.problems.len(), 2, "{:?}", d.problems);
    assert!(
        d.problems
            .iter()
            .all(|p| p.condition.type_ == "cilium.io/MissingAuthSecret"
                && p.object == Some(ObjectKey::cluster(Kind::BgpPeerConfig, "cilium-peer"))
                && p.condition
                    .message
                    .contains("Secret elsewhere/bgp-auth-secret with key \"password\" not found")),
        "{:?}",
        d.problems
    );
}

#[test]
fn an_unsupported_family_is_a_problem_on_the_peer_config_not_unicast() {
    let snap = lab_snapshot(
        r#"
apiVersion: v1
kind: Node
metadata: {name: edge, labels: {role: edge}}
---
apiVersion: cilium.io/v2
kind: CiliumBGPClusterConfig
metadata: {name: edge-bgp}
spec:
  nodeSelector: {matchLabels: {role: edge}}
  bgpInstances:
  - name: edge
    localASN: 64600
    peers:
    - {name: far, peerAddress: 192.0.2.9, peerASN: 64700, peerConfigRef: {name: far-peer}}
---
apiVersion: cilium.io/v2
kind: CiliumBGPPeerConfig
metadata: {name: far-peer}
spec:
  families:
  - {afi: ipv4, safi: multicast, advertisements: {matchLabels: {advertise: bgp}}}
  - {afi: ipv6, safi: unicast, advertisements: {matchLabels: {advertise: bgp}}}
  - {afi: l2vpn, safi: evpn}
"#,
    );
    let d = render(&snap, &input("edge"));
    let far = &d.instances["edge"].peers["far"];
    // ipv4/multicast is not run as ipv4/unicast: only the supported family is configured, and
    // nothing is exported in IPv4.
    assert_eq!(far.families, vec![Family::Ipv6Unicast]);
    assert!(far.export.iter().all(|e| e.family == Family::Ipv6Unicast));
    let key = ObjectKey::cluster(Kind::BgpPeerConfig, "far-peer");
    let got: Vec<(&ObjectKey, &str, &str, &str)> = d
        .problems
        .iter()
        .map(|p| {
            (
                p.object.as_ref().unwrap(),
                p.condition.type_.as_ref(),
                p.condition.reason.as_ref(),
                p.condition.message.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                &key,
                types::UNSUPPORTED,
                reasons::INVALID,
                "peer far: family ipv4/multicast (afi-1-safi-2) is not supported; rackd runs ipv4/unicast and ipv6/unicast",
            ),
            (
                &key,
                types::UNSUPPORTED,
                reasons::INVALID,
                "peer far: family l2vpn/evpn (afi-25-safi-70) is not supported; rackd runs ipv4/unicast and ipv6/unicast",
            ),
        ]
    );
}
