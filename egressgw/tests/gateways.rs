//! Gateway groups, elections, missing gateways, multi-gateway spreading, overlapping and
//! malformed policies, determinism.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::*;
use egressgw::{Action, EgressAddress, GatewaySlot, GroupId, conditions};

fn gw_of(r: &egressgw::Resolution, src: &str, dst: &str) -> Option<String> {
    match &r.entries[&key(src, dst)].action {
        Action::Gateway { node, .. } => Some(node.clone()),
        _ => None,
    }
}

#[test]
fn no_matching_gateway_node_drops_and_says_so() {
    let w = World {
        policies: vec![empire_policy("p", &["10.0.4.0/24"])],
        nodes: vec![node("node1", &["192.168.1.1"], &[])],
        pods: vec![pod(
            "default",
            "a",
            "node1",
            &["10.0.1.1"],
            &[("org", "empire")],
        )],
        ..World::default()
    };
    let r = w.resolve();
    let group = GroupId::new("p", GatewaySlot::Single);
    assert_eq!(
        r.entries[&key("10.0.1.1", "10.0.4.0/24")].action,
        Action::NoGateway {
            group: group.clone()
        }
    );
    assert_eq!(r.groups[&group].active, None);
    assert!(r.groups[&group].candidates.is_empty());
    assert_eq!(condition_types(&r, "p"), [conditions::NO_GATEWAY_NODE]);
    let m = message(&r, "p", conditions::NO_GATEWAY_NODE);
    assert!(m.contains("dropped") && m.contains("egress-gw=true"), "{m}");
}

#[test]
fn gateway_node_without_internal_ip_is_not_a_candidate() {
    let w = World {
        policies: vec![empire_policy("p", &["10.0.4.0/24"])],
        nodes: vec![
            node("node1", &["192.168.1.1"], &[]),
            node("node2", &[], &[("egress-gw", "true")]),
            node("node3", &["192.168.1.3"], &[("egress-gw", "true")]),
        ],
        pods: vec![pod(
            "default",
            "a",
            "node1",
            &["10.0.1.1"],
            &[("org", "empire")],
        )],
        ..World::default()
    };
    let r = w.resolve();
    // Cilium skips a selected node without a usable IP and takes the next by name.
    assert_eq!(
        gw_of(&r, "10.0.1.1", "10.0.4.0/24").as_deref(),
        Some("node3")
    );
    assert_eq!(
        condition_types(&r, "p"),
        [conditions::GATEWAY_NODE_WITHOUT_IP]
    );
}

#[test]
fn election_overrides_the_name_rule_and_stale_elections_fall_back() {
    let mut w = World {
        policies: vec![empire_policy("p", &["10.0.4.0/24"])],
        nodes: three_nodes(),
        pods: vec![pod(
            "default",
            "a",
            "node1",
            &["10.0.1.1"],
            &[("org", "empire")],
        )],
        ..World::default()
    };
    let group = GroupId::new("p", GatewaySlot::Single);

    w.elections.insert(group.clone(), "node3".into());
    let r = w.resolve();
    assert_eq!(
        gw_of(&r, "10.0.1.1", "10.0.4.0/24").as_deref(),
        Some("node3")
    );
    let g = &r.groups[&group];
    assert!(g.elected);
    assert_eq!(g.active.as_ref().unwrap().ip, ip("192.168.1.3"));
    assert!(r.policies["p"].conditions.is_empty());

    // The elected node lost its label: not a candidate any more.
    w.elections.insert(group.clone(), "node1".into());
    let r = w.resolve();
    assert_eq!(
        gw_of(&r, "10.0.1.1", "10.0.4.0/24").as_deref(),
        Some("node2")
    );
    assert!(!r.groups[&group].elected);
    assert_eq!(
        condition_types(&r, "p"),
        [conditions::ELECTION_NOT_A_CANDIDATE]
    );

    // Elections of groups that do not exist are ignored.
    w.elections.clear();
    w.elections
        .insert(GroupId::new("gone", GatewaySlot::Single), "node3".into());
    let r = w.resolve();
    assert_eq!(
        gw_of(&r, "10.0.1.1", "10.0.4.0/24").as_deref(),
        Some("node2")
    );
}

const MULTI: &str = "\
metadata: {name: multi}
spec:
  destinationCIDRs: [10.0.4.0/24]
  selectors: [{podSelector: {matchLabels: {org: empire}}}]
  egressGateway: {nodeSelector: {matchLabels: {role: worker}}}
  egressGateways:
  - {nodeSelector: {matchLabels: {zone: a}}, egressIP: 203.0.113.1}
  - {nodeSelector: {matchLabels: {zone: b}}, egressIP: 203.0.113.2}
  - {nodeSelector: {matchLabels: {zone: c}}}
";

fn multi_world() -> World {
    World {
        policies: vec![policy(MULTI)],
        nodes: vec![
            node("worker", &["192.168.1.1"], &[("role", "worker")]),
            node("gw-a1", &["192.168.2.1"], &[("zone", "a")]),
            node("gw-a2", &["192.168.2.2"], &[("zone", "a")]),
            node("gw-b1", &["192.168.3.1"], &[("zone", "b")]),
        ],
        pods: (0..60)
            .map(|i| {
                pod(
                    "default",
                    &format!("pod-{i}"),
                    "worker",
                    &[&format!("10.0.1.{i}")],
                    &[("org", "empire")],
                )
            })
            .collect(),
        ..World::default()
    }
}

#[test]
fn multi_gateway_pins_each_pod_to_one_group_by_uid() {
    let w = multi_world();
    let r = w.resolve();
    let ids: Vec<GroupId> = (0..3)
        .map(|i| GroupId::new("multi", GatewaySlot::Index(i)))
        .collect();
    // egressGateway is ignored when egressGateways is set: no Single group.
    assert_eq!(r.policies["multi"].groups, ids);
    assert!(
        !r.groups
            .contains_key(&GroupId::new("multi", GatewaySlot::Single))
    );
    assert_eq!(
        r.groups[&ids[0]].egress,
        EgressAddress::Ip(ip("203.0.113.1"))
    );
    assert_eq!(r.groups[&ids[2]].egress, EgressAddress::DefaultRoute);

    // Every pod is pinned to exactly one group, and all groups get some (60 pods, 3 groups).
    let pinned: Vec<usize> = ids.iter().map(|id| r.groups[id].pinned_pods).collect();
    assert_eq!(pinned.iter().sum::<usize>(), 60);
    assert!(pinned.iter().all(|&n| n >= 5), "{pinned:?}");
    for e in r.entries.values() {
        let group = match &e.action {
            Action::Gateway { group, node, .. } => {
                assert!(node == "gw-a1" || node == "gw-b1", "{node}");
                group
            }
            Action::NoGateway { group } => group,
            Action::Excluded => panic!("no exclusions here"),
        };
        assert!(ids.contains(group));
    }
    // Zone c has no node: its pods are dropped, and the policy says so for that slot.
    let m = message(&r, "multi", conditions::NO_GATEWAY_NODE);
    assert!(m.starts_with("egressGateways[2]"), "{m}");
    assert!(
        m.contains(&format!("the {} selected pods", pinned[2])),
        "{m}"
    );
}

#[test]
fn multi_gateway_assignment_is_stable() {
    let w = multi_world();
    let base = w.resolve();
    let group_of = |r: &egressgw::Resolution| -> BTreeMap<String, GroupId> {
        r.entries
            .values()
            .map(|e| {
                let g = match &e.action {
                    Action::Gateway { group, .. } | Action::NoGateway { group } => group.clone(),
                    Action::Excluded => unreachable!(),
                };
                (e.pod.to_string(), g)
            })
            .collect()
    };

    // Input order does not matter.
    let mut shuffled = multi_world();
    shuffled.pods.reverse();
    shuffled.nodes.reverse();
    assert_eq!(shuffled.resolve(), base);

    // A failover inside one group moves no pod to another group (rackd orders the groups by
    // their index in the spec, not by the active gateway's IP).
    let mut failover = multi_world();
    failover
        .elections
        .insert(GroupId::new("multi", GatewaySlot::Index(0)), "gw-a2".into());
    let after = failover.resolve();
    assert_eq!(group_of(&after), group_of(&base));
    assert_ne!(after, base);

    // Adding unrelated pods does not move existing ones.
    let mut more = multi_world();
    more.pods.push(pod(
        "default",
        "new",
        "worker",
        &["10.0.1.200"],
        &[("org", "empire")],
    ));
    let grown = group_of(&more.resolve());
    for (p, g) in group_of(&base) {
        assert_eq!(grown[&p], g, "{p} moved");
    }
}

#[test]
fn pods_without_uid_are_pinned_by_name() {
    let mut w = multi_world();
    w.pods = w.pods.into_iter().map(|p| with_uid(p, None)).collect();
    let r1 = w.resolve();
    let r2 = w.resolve();
    assert_eq!(r1, r2);
    assert_eq!(r1.entries.len(), 60);
}

#[test]
fn overlapping_policies_first_by_name_wins_and_the_loser_is_told() {
    let w = World {
        // Given in reverse order: resolution sorts by name.
        policies: vec![
            policy(
                "metadata: {name: b-second}\nspec:\n  destinationCIDRs: [10.0.4.0/24, 10.0.5.0/24]\n  selectors: [{podSelector: {}}]\n  egressGateway: {nodeSelector: {matchLabels: {egress-gw: 'true'}}, egressIP: 203.0.113.9}\n",
            ),
            empire_policy("a-first", &["10.0.4.0/24"]),
        ],
        nodes: three_nodes(),
        pods: vec![
            pod(
                "default",
                "empire",
                "node1",
                &["10.0.1.1"],
                &[("org", "empire")],
            ),
            pod(
                "default",
                "rebel",
                "node1",
                &["10.0.1.2"],
                &[("org", "alliance")],
            ),
        ],
        ..World::default()
    };
    let r = w.resolve();
    assert_eq!(r.entries[&key("10.0.1.1", "10.0.4.0/24")].policy, "a-first");
    assert_eq!(
        r.entries[&key("10.0.1.1", "10.0.5.0/24")].policy,
        "b-second"
    );
    assert_eq!(
        r.entries[&key("10.0.1.2", "10.0.4.0/24")].policy,
        "b-second"
    );
    assert!(r.policies["a-first"].conditions.is_empty());
    assert_eq!(r.policies["a-first"].entries, 1);
    assert_eq!(r.policies["b-second"].entries, 3);
    assert_eq!(
        condition_types(&r, "b-second"),
        [conditions::POLICY_OVERLAP]
    );
    let m = message(&r, "b-second", conditions::POLICY_OVERLAP);
    assert!(
        m.starts_with("1 (source, destination) entries, e.g. 10.0.1.1 -> 10.0.4.0/24")
            && m.contains("\"a-first\", which wins"),
        "{m}"
    );
}

fn assert_invalid(yaml: &str, needle: &str) {
    let w = World {
        policies: vec![policy(yaml)],
        nodes: three_nodes(),
        pods: vec![pod(
            "default",
            "a",
            "node1",
            &["10.0.1.1"],
            &[("org", "empire")],
        )],
        ..World::default()
    };
    let r = w.resolve();
    let s = &r.policies["bad"];
    assert!(!s.valid);
    assert!(r.entries.is_empty() && r.groups.is_empty() && s.groups.is_empty());
    assert_eq!(condition_types(&r, "bad"), [conditions::POLICY_INVALID]);
    let m = message(&r, "bad", conditions::POLICY_INVALID);
    assert!(m.contains(needle), "{m:?} should contain {needle:?}");
    assert!(m.contains("not enforced"), "{m}");
}

#[test]
fn malformed_policies_are_reported_and_not_programmed() {
    let head = "metadata: {name: bad}\nspec:\n";
    let gw = "  egressGateway: {nodeSelector: {matchLabels: {egress-gw: 'true'}}}\n";
    let dst = "  destinationCIDRs: [10.0.4.0/24]\n";
    let sel = "  selectors: [{podSelector: {}}]\n";
    assert_invalid(
        &format!(
            "{head}{dst}{gw}  selectors: [{{podSelector: {{matchExpressions: [{{key: org, operator: in, values: [empire]}}]}}}}]\n"
        ),
        "spec.selectors[0].podSelector.matchExpressions[0].operator: unsupported operator",
    );
    assert_invalid(
        &format!(
            "{head}{dst}{sel}  egressGateway: {{nodeSelector: {{matchLabels: {{'-bad': x}}}}}}\n"
        ),
        "spec.egressGateway.nodeSelector.matchLabels.-bad: invalid label key",
    );
    assert_invalid(
        &format!("{head}{gw}{sel}  destinationCIDRs: [10.0.4.0/33]\n"),
        "spec.destinationCIDRs[0]: \"10.0.4.0/33\" is not a CIDR",
    );
    assert_invalid(
        &format!(
            "{head}{dst}{sel}  egressGateway: {{nodeSelector: {{}}, egressIP: 203.0.113.1, interface: net1}}\n"
        ),
        "spec.egressGateway: both egressIP and interface are set",
    );
    assert_invalid(
        &format!(
            "{head}{dst}{sel}{gw}  egressGateways: [{{nodeSelector: {{}}, egressIP: not-an-ip}}]\n"
        ),
        "spec.egressGateways[0].egressIP: \"not-an-ip\" is not an IP address",
    );
    assert_invalid(
        &format!("{head}{dst}{gw}  selectors: [{{nodeSelector: {{}}}}]\n"),
        "spec.selectors[0]: neither namespaceSelector nor podSelector is set",
    );
    // Several problems are listed together.
    assert_invalid(
        &format!("{head}{gw}  selectors: []\n  destinationCIDRs: []\n"),
        "spec.selectors is empty; spec.destinationCIDRs is empty",
    );
}

#[test]
fn an_invalid_policy_does_not_block_a_valid_one() {
    let w = World {
        policies: vec![
            policy(
                "metadata: {name: a-bad}\nspec:\n  destinationCIDRs: [10.0.4.0/24]\n  selectors: [{podSelector: {matchLabels: {'x y': z}}}]\n  egressGateway: {nodeSelector: {}}\n",
            ),
            empire_policy("b-good", &["10.0.4.0/24"]),
        ],
        nodes: three_nodes(),
        pods: vec![pod(
            "default",
            "a",
            "node1",
            &["10.0.1.1"],
            &[("org", "empire")],
        )],
        ..World::default()
    };
    let r = w.resolve();
    assert!(!r.policies["a-bad"].valid);
    assert_eq!(r.entries[&key("10.0.1.1", "10.0.4.0/24")].policy, "b-good");
    assert!(r.policies["b-good"].conditions.is_empty());
}

#[test]
fn a_few_thousand_pods_times_policies_resolve_quickly() {
    let nodes: Vec<_> = (0..50)
        .map(|n| {
            let l: &[(&str, &str)] = if n < 3 { &[("egress-gw", "true")] } else { &[] };
            node(&format!("node{n:02}"), &[&format!("192.168.0.{n}")], l)
        })
        .collect();
    let pods: Vec<_> = (0..3000u32)
        .map(|i| {
            let org = if i % 2 == 0 { "empire" } else { "alliance" };
            pod(
                &format!("ns{}", i % 20),
                &format!("p{i}"),
                &format!("node{:02}", i % 50),
                &[&format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256)],
                &[("org", org)],
            )
        })
        .collect();
    let policies: Vec<_> = (0..20)
        .map(|p| {
            empire_policy(
                &format!("pol{p:02}"),
                &[
                    &format!("172.{p}.0.0/16"),
                    &format!("172.{p}.1.0/24"),
                    "198.51.100.0/24",
                ],
            )
        })
        .collect();
    let w = World {
        policies,
        pods,
        nodes,
        ..World::default()
    };
    let t = std::time::Instant::now();
    let r = w.resolve();
    let took = t.elapsed();
    // 1500 selected pods x 20 policies x 3 CIDRs, the shared /24 overlapping.
    assert_eq!(r.entries.len(), 1500 * (20 * 2 + 1));
    assert_eq!(condition_types(&r, "pol01"), [conditions::POLICY_OVERLAP]);
    // A loose bound for an unoptimised build on a shared 2-core machine.
    assert!(took.as_secs() < 20, "took {took:?}");
}
