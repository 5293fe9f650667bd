//! The egress gateway end to end (issue 17), in the lab of `egresscommon`: the seeds'
//! `remote-outpost` policy over three rackd nodes, IPv4 and IPv6.
#![allow(clippy::unwrap_used, clippy::disallowed_types)]

mod egresscommon;

use std::net::IpAddr;

use egresscommon::{Lab, SEED, V6_POLICY};

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
