//! The egress gateway end to end (issue 17), in the lab of `egresscommon`: the seeds'
//! `remote-outpost` policy over three rackd nodes, IPv4 and IPv6.
#![allow(clippy::unwrap_used, clippy::disallowed_types)]

mod egresscommon;

use std::net::IpAddr;
use std::time::Instant;

use egresscommon::{FLOATING, Lab, SEED, V6_POLICY};

#[test]
fn remote_outpost_leaves_through_the_gateway() {
    let mut lab = Lab::new();
    for i in 0..3 {
        lab.start_rackd(i);
    }
    // Without a policy every pod is masqueraded to its node (the positive control of the
    // server's report, and the baseline the policy changes).
    lab.wait_seen(0, "10.0.4.2", "10.0.1.2");
    lab.wait_seen(2, "10.0.4.2", "10.0.2.2");
    lab.wait_seen(0, "fd00:10:0:4::2", "fd00:10:0:1::2");

    // The seeds' policy, verbatim, and its IPv6 sibling, added live.
    lab.write_config("egress.yaml", &format!("{SEED}---\n{V6_POLICY}"));
    // Selected pods on every node, the gateway's own included, leave from net1's address.
    lab.wait_seen(0, "10.0.4.2", "10.0.6.2");
    lab.wait_seen(2, "10.0.4.2", "10.0.6.2");
    lab.wait_seen(3, "10.0.4.2", "10.0.6.2");
    lab.wait_seen(0, "fd00:10:0:4::2", "fd00:10:0:6::2");
    lab.wait_seen(3, "fd00:10:0:4::2", "fd00:10:0:6::2");
    // A pod the policy does not select, a destination outside the policy and an excluded
    // address keep their node's address.
    assert_eq!(
        lab.seen_from(1, "10.0.4.2".parse().unwrap()).unwrap(),
        "10.0.1.2".parse::<IpAddr>().unwrap()
    );
    assert_eq!(
        lab.seen_from(0, "10.0.5.2".parse().unwrap()).unwrap(),
        "10.0.1.2".parse::<IpAddr>().unwrap()
    );
    assert_eq!(
        lab.seen_from(0, "fd00:10:0:4::200".parse().unwrap())
            .unwrap(),
        "fd00:10:0:1::2".parse::<IpAddr>().unwrap()
    );
    // The router has no route to the pods: every answer above came back through the
    // gateway's tunnel or the node's masquerade, so the policy path ran both ways.

    // The policy removed: back to the node's address.
    lab.write_config("egress.yaml", "");
    lab.wait_seen(0, "10.0.4.2", "10.0.1.2");
}

/// ★ Failover, which Cilium OSS lacks (cilium#18230): node2 and node3 both match the gateway
/// selector; one holds the egress IP under an L2 lease (etcd). The holder is powered off (its
/// rackd killed, its links cut): the other takes the lease, answers ARP for the egress IP and
/// SNATs, the source nodes re-point their tunnels, and new connections leave from the same
/// egress IP again.
#[test]
fn a_dead_gateway_is_replaced_and_the_egress_ip_moves() {
    let mut lab = Lab::with(&[1, 2], true);
    for i in 0..3 {
        lab.start_rackd(i);
    }
    lab.write_config("egress.yaml", FLOATING);
    lab.wait_seen(0, "10.0.4.2", "10.0.6.100");
    lab.wait_seen(3, "10.0.4.2", "10.0.6.100");
    let holder = lab
        .arp_holder("10.0.6.100")
        .expect("the router resolved the egress IP");
    let other = if holder == 1 { 2 } else { 1 };

    let t0 = Instant::now();
    lab.kill_rackd(holder);
    for dev in ["eth0", "net1"] {
        lab.nodes[holder].ip(&["link", "set", dev, "down"]).unwrap();
    }
    // tiefighter (node1) and probe (node3, or node2 when node3 died... the source on the
    // survivor) reach the server from the egress IP again, through the survivor.
    lab.wait_seen(0, "10.0.4.2", "10.0.6.100");
    let outage = t0.elapsed();
    assert_eq!(
        lab.arp_holder("10.0.6.100"),
        Some(other),
        "the survivor answers ARP"
    );
    let survivor_pod = if other == 2 { 3 } else { 2 };
    lab.wait_seen(survivor_pod, "10.0.4.2", "10.0.6.100");
    eprintln!(
        "egress failover: new connections through node{} after {outage:?}",
        other + 1
    );
}
