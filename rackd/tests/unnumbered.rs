//! BGP unnumbered (issue 18): rackd peers with an FRR ToR configured with
//! `neighbor eth1 interface` over a link that has no address but IPv6 link-local ones. rackd
//! finds the ToR's link-local address (Router Solicitation / echo to all-routers), announces
//! its own (Router Advertisements of lifetime 0, from which FRR learns it), peers over it, and
//! carries IPv4 with IPv6 next hops (RFC 8950): the ToR's kernel gets rackd's IPv4 PodCIDR via
//! the node's link-local address.
#![allow(clippy::unwrap_used, clippy::disallowed_types)]

use std::time::Duration;

mod common;

use common::Lab;
use netlab::{Check, wait_for};

const TOR_CONF: &str = "\
frr defaults datacenter
hostname tor
log stdout
router bgp 65000
 bgp router-id 10.0.0.1
 no bgp ebgp-requires-policy
 neighbor eth1 interface remote-as external
 neighbor eth1 timers connect 1
 address-family ipv4 unicast
  neighbor eth1 activate
 exit-address-family
 address-family ipv6 unicast
  neighbor eth1 activate
 exit-address-family
";

const CONFIG: &str = "\
apiVersion: v1
kind: Node
metadata: {name: node1}
spec: {podCIDRs: [10.1.1.0/24, 'fd00:10:1:1::/64']}
status: {addresses: [{type: InternalIP, address: 10.0.1.2}]}
---
apiVersion: cilium.io/v2
kind: CiliumBGPClusterConfig
metadata: {name: unnumbered}
spec:
  bgpInstances:
  - name: rack
    localASN: 65001
    peers:
    - name: tor
      peerASN: 65000
      autoDiscovery: {mode: Unnumbered, unnumbered: {interface: eth0}}
      peerConfigRef: {name: tor}
---
apiVersion: cilium.io/v2
kind: CiliumBGPPeerConfig
metadata: {name: tor}
spec:
  timers: {connectRetryTimeSeconds: 1, holdTimeSeconds: 9, keepAliveTimeSeconds: 3}
  families:
  - {afi: ipv4, safi: unicast, advertisements: {matchLabels: {advertise: bgp}}}
  - {afi: ipv6, safi: unicast, advertisements: {matchLabels: {advertise: bgp}}}
---
apiVersion: cilium.io/v2
kind: CiliumBGPAdvertisement
metadata: {name: pods, labels: {advertise: bgp}}
spec:
  advertisements:
  - advertisementType: PodCIDR
";

#[test]
fn rackd_peers_unnumbered_with_frr() {
    let mut lab = Lab::prepare_unnumbered("rk-unnum", TOR_CONF);
    // The node's IPv4 lives on its loopback: nothing but link-local addresses on the link.
    lab.node.addr_add("lo", "10.0.1.2/32").unwrap();
    std::fs::write(lab.cfg.join("lab.yaml"), CONFIG).unwrap();
    lab.start_rackd();
    let logs = || {
        format!(
            "FRR:\n{}\n{}\nrackd:\n{}",
            lab.tor
                .vtysh(&["show bgp summary", "show bgp neighbors eth1"])
                .unwrap_or_default(),
            lab.tor.logs(),
            lab.rackd_log()
        )
    };
    // FRR's interface peer comes up: it learnt our link-local address and we found its.
    wait_for(
        "FRR's eth1 session to be Established",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || {
            let s = lab.tor.vtysh(&["show bgp summary json"])?;
            Ok(if s.contains("\"Established\"") {
                Check::Ready(())
            } else {
                Check::NotYet(logs())
            })
        },
    )
    .unwrap();
    // IPv4 over the IPv6 session, with an IPv6 (link-local) next hop: RFC 8950.
    let pod4 = lab
        .tor
        .wait_route("10.1.1.0/24", Duration::from_secs(60))
        .unwrap();
    assert!(
        pod4.next_hops.iter().all(|h| h.is_ipv6()),
        "{pod4:?}\n{}",
        logs()
    );
    lab.tor
        .wait_route("fd00:10:1:1::/64", Duration::from_secs(60))
        .unwrap();
    // The kernel of the ToR forwards IPv4 to the node through it.
    wait_for(
        "the ToR's kernel route to the PodCIDR via an IPv6 next hop",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || {
            let r = lab.tor_ns.ip(&["route", "show", "10.1.1.0/24"])?;
            Ok(if r.contains("inet6 fe80::") {
                Check::Ready(())
            } else {
                Check::NotYet(format!("{r}\n{}", logs()))
            })
        },
    )
    .unwrap();
}
