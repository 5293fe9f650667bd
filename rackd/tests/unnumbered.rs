//! BGP unnumbered (issue 18): rackd peers with an FRR ToR configured with
//! `neighbor eth1 interface` over a link that has no address but IPv6 link-local ones. rackd
//! finds the ToR's link-local address (Router Solicitation / echo to all-routers), announces
//! its own (Router Advertisements of lifetime 0, from which FRR learns it), peers over it, and
//! carries IPv4 with IPv6 next hops (RFC 8950): the ToR's kernel gets rackd's IPv4 PodCIDR via
//! the node's link-local address.
#![allow(clippy::unwrap_used, clippy::disallowed_types)]

use std::time::Duration;

use netlab::frr::Frr;
use netlab::{Check, LabDir, Netns, Process, veth, wait_for};

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

/// Field order is drop order: daemons before their namespaces, the directory last.
struct Lab {
    rackd: Option<Process>,
    tor: Frr,
    node: Netns,
    tor_ns: Netns,
    dir: LabDir,
}

#[test]
fn rackd_peers_unnumbered_with_frr() {
    let dir = LabDir::new("rk-unnum").unwrap();
    let tor_ns = Netns::new("un-tor").unwrap();
    let node = Netns::new("un-node").unwrap();
    veth(&tor_ns, "eth1", &node, "eth0").unwrap();
    // No address on the link but the kernel's link-local ones; the node's IPv4 lives on its
    // loopback.
    node.addr_add("lo", "10.0.1.2/32").unwrap();
    tor_ns.enable_forwarding().unwrap();
    node.enable_forwarding().unwrap();
    let tor = Frr::start(&tor_ns, dir.path(), "tor", TOR_CONF).unwrap();
    let cfg = dir.path().join("config");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(cfg.join("lab.yaml"), CONFIG).unwrap();
    let (state, sock) = (dir.path().join("state"), dir.path().join("admin.sock"));
    let rackd = node
        .spawn(
            dir.path(),
            "rackd",
            &[
                env!("CARGO_BIN_EXE_rackd"),
                "--node-name",
                "node1",
                "--config-dir",
                cfg.to_str().unwrap(),
                "--state-dir",
                state.to_str().unwrap(),
                "--admin-socket",
                sock.to_str().unwrap(),
            ],
        )
        .unwrap();
    let lab = Lab {
        rackd: Some(rackd),
        tor,
        node,
        tor_ns,
        dir,
    };
    let logs = || {
        format!(
            "FRR:\n{}\n{}\nrackd:\n{}",
            lab.tor
                .vtysh(&["show bgp summary", "show bgp neighbors eth1"])
                .unwrap_or_default(),
            lab.tor.logs(),
            lab.rackd.as_ref().map(|p| p.log_tail()).unwrap_or_default()
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
    let _ = (&lab.node, &lab.dir);
}
