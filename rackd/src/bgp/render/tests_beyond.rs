//! Rendering tests of what goes beyond Cilium's BGP control plane today: rackd's
//! `EgressGateway` advertisements, BMP collectors and unnumbered peers.

use std::net::IpAddr;

use ipnet::IpNet;
use rackd_model::{CheckOptions, Snapshot, parse_documents};

use super::tests::{export, input, lab_snapshot, nets};
use super::*;

/// The lab's snapshot with `from` replaced by `to` (once) in its bgp.yaml; no config errors.
fn lab_with_bgp_edit(from: &str, to: &str) -> rackd_model::MergeOutcome {
    let text = crate::testing::lab_files()
        .iter()
        .find(|(n, _)| n.ends_with("bgp.yaml"))
        .map(|(_, t)| t.clone())
        .unwrap();
    assert!(text.contains(from), "{from:?} not in the lab's bgp.yaml");
    let text = text.replacen(from, to, 1);
    let mut parsed: Vec<_> = crate::testing::lab_files()
        .iter()
        .filter(|(n, _)| !n.ends_with("bgp.yaml"))
        .map(|(name, text)| parse_documents(name, text))
        .collect();
    parsed.push(parse_documents("bgp.yaml", &text));
    let out = Snapshot::build(&parsed, &CheckOptions::default());
    assert!(out.errors.is_empty(), "{:#?}", out.errors);
    out
}

/// `EgressGateway` (rackd's extension): each selected policy's announced egress addresses as
/// host routes of their family, with the entry's attributes, in a policy named after it; a
/// policy the selector does not match, or with nothing announced here, exports nothing.
#[test]
fn egress_gateway_advertisement_announces_the_active_gateways_addresses() {
    let snap = lab_snapshot(
        r#"
apiVersion: cilium.io/v2
kind: CiliumBGPAdvertisement
metadata: {name: egress-ips, labels: {advertise: bgp}}
spec:
  advertisements:
  - advertisementType: EgressGateway
    selector: {matchLabels: {egress-bgp: 'true'}}
    attributes:
      communities: {standard: ["65000:300"], large: ["65000:0:300"]}
      localPreference: 200
---
apiVersion: cilium.io/v2
kind: CiliumEgressGatewayPolicy
metadata: {name: outpost-bgp, labels: {egress-bgp: 'true'}}
spec:
  selectors: [{podSelector: {}}]
  destinationCIDRs: [0.0.0.0/0, '::/0']
  egressGateway: {nodeSelector: {matchLabels: {rackd.io/bgp: enabled}}, egressIP: 192.0.2.77}
---
apiVersion: cilium.io/v2
kind: CiliumEgressGatewayPolicy
metadata: {name: unselected}
spec:
  selectors: [{podSelector: {}}]
  destinationCIDRs: [198.51.100.0/24]
  egressGateway: {nodeSelector: {matchLabels: {rackd.io/bgp: enabled}}, egressIP: 192.0.2.78}
"#,
    );
    // Nothing announced here: no export, no problem.
    let d = render(&snap, &input("node1"));
    assert!(d.problems.is_empty(), "{:?}", d.problems);
    assert!(
        d.instances["rack"].peers["tor-v4"]
            .export
            .iter()
            .all(|e| !e.name.contains("EgressGateway"))
    );
    let mut inp = input("node1");
    inp.egress.insert(
        "outpost-bgp".into(),
        ["192.0.2.77", "2001:db8::77"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect(),
    );
    inp.egress.insert(
        "unselected".into(),
        std::iter::once("192.0.2.78".parse().unwrap()).collect(),
    );
    let d = render(&snap, &inp);
    assert!(d.problems.is_empty(), "{:?}", d.problems);
    let v4 = export(&d, "tor-v4", "tor-v4-ipv4-EgressGateway-outpost-bgp").unwrap();
    assert_eq!(v4.prefixes, nets(&["192.0.2.77/32"]));
    assert_eq!(v4.communities, vec![(65000 << 16) | 300]);
    assert_eq!(v4.large_communities, vec![[65000, 0, 300]]);
    assert_eq!(v4.local_pref, Some(200));
    let v6 = export(&d, "tor-v4", "tor-v4-ipv6-EgressGateway-outpost-bgp").unwrap();
    assert_eq!(v6.prefixes, nets(&["2001:db8::77/128"]));
    let routes = &d.instances["rack"].routes;
    assert!(routes.contains_key(&"192.0.2.77/32".parse::<IpNet>().unwrap()));
    assert!(!routes.contains_key(&"192.0.2.78/32".parse::<IpNet>().unwrap()));
}

/// `bmpServers` (Cilium's shape): each collector becomes a bgpd BMP server of the instance,
/// reporting as this node; `local` is the Loc-RIB only, `pre` the Adj-RIB-In, and `post`
/// (which rackd does not report) is said on the ClusterConfig.
#[test]
fn bmp_servers_reach_the_instance() {
    let out = lab_with_bgp_edit(
        "    peers:\n",
        "    bmpServers:\n    - {name: c1, peerAddress: 10.0.0.9, monitoringPolicy: local, statisticsTimeout: 30}\n    - {name: c2, peerAddress: 'fd00::9', peerPort: 1790}\n    - {name: c3, peerAddress: 10.0.0.10, monitoringPolicy: post}\n    peers:\n",
    );
    let d = render(&out.snapshot, &input("node1"));
    let bmp = &d.instances["rack"].bmp;
    assert_eq!(bmp.len(), 3);
    assert_eq!(bmp[0].address, "10.0.0.9:11019".parse().unwrap());
    assert_eq!((bmp[0].adj_rib_in_pre, bmp[0].loc_rib), (false, true));
    assert_eq!(
        bmp[0].statistics_interval,
        Some(std::time::Duration::from_secs(30))
    );
    assert_eq!(bmp[0].sys_name, "node1");
    assert_eq!(bmp[1].address, "[fd00::9]:1790".parse().unwrap());
    assert_eq!((bmp[1].adj_rib_in_pre, bmp[1].loc_rib), (true, false));
    assert_eq!(bmp[1].statistics_interval, None);
    assert!(bmp[2].adj_rib_in_pre);
    let p: Vec<_> = d
        .problems
        .iter()
        .filter(|p| p.condition.reason == "BMPPostPolicy")
        .collect();
    assert_eq!(p.len(), 1, "{:?}", d.problems);
    assert!(p[0].condition.message.contains("c3"));
}

/// `autoDiscovery.mode: Unnumbered`: the peer is the router heard on the interface, at its
/// link-local address through that interface; before it is heard, a NotFound problem and no
/// peer. `unnumbered::interfaces` lists the interface to probe.
#[test]
fn unnumbered_peers_follow_the_router_heard_on_the_link() {
    let out = lab_with_bgp_edit(
        "      peerAddress: 10.0.0.1\n",
        "      autoDiscovery: {mode: Unnumbered, unnumbered: {interface: eth9}}\n",
    );
    assert_eq!(
        crate::bgp::unnumbered::interfaces(&out.snapshot),
        ["eth9".to_owned()].into_iter().collect()
    );
    let d = render(&out.snapshot, &input("node1"));
    assert!(!d.instances["rack"].peers.contains_key("tor-v4"));
    assert!(
        d.problems
            .iter()
            .any(|p| p.condition.message.contains("no router heard on eth9")),
        "{:?}",
        d.problems
    );
    let mut inp = input("node1");
    inp.host
        .link_neighbours
        .insert("eth9".into(), "fe80::1".parse().unwrap());
    let d = render(&out.snapshot, &inp);
    let p = &d.instances["rack"].peers["tor-v4"];
    assert_eq!(p.address, "fe80::1".parse::<IpAddr>().unwrap());
    assert_eq!(p.interface.as_deref(), Some("eth9"));
    // bgpd's session: IPv4 over it with RFC 8950, next hops from the session itself.
    let pc = crate::bgp::reconcile::peer_config(
        p,
        &crate::bgp::reconcile::NodeAddrs {
            v4: Some("10.0.1.2".parse().unwrap()),
            ..Default::default()
        },
    );
    assert!(pc.extended_next_hop);
    assert_eq!((pc.next_hop_v4, pc.next_hop_v6), (None, None));
    assert_eq!(pc.interface.as_deref(), Some("eth9"));
}
