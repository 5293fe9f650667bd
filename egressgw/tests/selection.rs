//! Which pods a policy selects and which (source, destination) entries it writes: selectors,
//! endpoints, address families, excluded CIDRs.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use egressgw::{Action, conditions};

fn keys(r: &egressgw::Resolution) -> Vec<String> {
    r.entries.keys().map(ToString::to_string).collect()
}

#[test]
fn only_running_pod_network_pods_with_addresses_are_endpoints() {
    let w = World {
        policies: vec![empire_policy("p", &["10.0.4.0/24"])],
        nodes: three_nodes(),
        pods: vec![
            pod(
                "default",
                "running",
                "node1",
                &["10.0.1.1"],
                &[("org", "empire")],
            ),
            phase(
                pod(
                    "default",
                    "pending-with-ip",
                    "node1",
                    &["10.0.1.2"],
                    &[("org", "empire")],
                ),
                "Pending",
            ),
            host_network(pod(
                "default",
                "hostnet",
                "node1",
                &["192.168.1.1"],
                &[("org", "empire")],
            )),
            phase(
                pod(
                    "default",
                    "done",
                    "node1",
                    &["10.0.1.3"],
                    &[("org", "empire")],
                ),
                "Succeeded",
            ),
            phase(
                pod(
                    "default",
                    "crashed",
                    "node1",
                    &["10.0.1.4"],
                    &[("org", "empire")],
                ),
                "Failed",
            ),
            pod("default", "no-ip", "node1", &[], &[("org", "empire")]),
            pod(
                "default",
                "other",
                "node1",
                &["10.0.1.5"],
                &[("org", "alliance")],
            ),
        ],
        ..World::default()
    };
    let r = w.resolve();
    assert_eq!(
        keys(&r),
        ["10.0.1.1 -> 10.0.4.0/24", "10.0.1.2 -> 10.0.4.0/24"]
    );
    assert_eq!(r.policies["p"].selected_pods, 2);
}

fn ns_policy(name: &str, rule: &str) -> rackd_model::cilium::CiliumEgressGatewayPolicy {
    policy(&format!(
        "metadata: {{name: {name}}}\nspec:\n  destinationCIDRs: [10.0.4.0/24]\n  selectors:\n  - {rule}\n  egressGateway: {{nodeSelector: {{matchLabels: {{egress-gw: 'true'}}}}}}\n"
    ))
}

#[test]
fn namespace_selector_present_empty_absent_and_missing_namespaces() {
    let mut w = World {
        policies: vec![
            // Present but empty: every namespace (Cilium: io.kubernetes.pod.namespace Exists).
            ns_policy("all-ns", "namespaceSelector: {}"),
            // By a namespace label from the map.
            ns_policy("team-a", "namespaceSelector: {matchLabels: {team: a}}"),
            // A namespace missing from the map still has its metadata.name label.
            ns_policy(
                "by-name",
                "namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: ghost}}",
            ),
            // Absent namespaceSelector: podSelector alone, any namespace; Cilium's identity
            // label io.kubernetes.pod.namespace is visible to it.
            ns_policy(
                "pod-ns-label",
                "podSelector: {matchLabels: {io.kubernetes.pod.namespace: shop, app: web}}",
            ),
            // Both: ANDed.
            ns_policy(
                "both",
                "{namespaceSelector: {matchLabels: {team: a}}, podSelector: {matchLabels: {app: db}}}",
            ),
        ],
        nodes: three_nodes(),
        pods: vec![
            pod("shop", "web", "node1", &["10.0.1.1"], &[("app", "web")]),
            pod("shop", "db", "node1", &["10.0.1.2"], &[("app", "db")]),
            pod("ghost", "web", "node1", &["10.0.1.3"], &[("app", "web")]),
        ],
        ..World::default()
    };
    w.namespaces.insert("shop".into(), labels(&[("team", "a")]));
    let r = w.resolve();
    let srcs = |p: &str| -> Vec<String> {
        r.entries
            .iter()
            .filter(|(_, e)| e.policy == p)
            .map(|(k, _)| k.source.to_string())
            .collect()
    };
    // all-ns sorts first and wins every key it has; look at selection counts instead.
    assert_eq!(r.policies["all-ns"].selected_pods, 3);
    assert_eq!(srcs("all-ns"), ["10.0.1.1", "10.0.1.2", "10.0.1.3"]);
    assert_eq!(r.policies["team-a"].selected_pods, 2);
    assert_eq!(r.policies["by-name"].selected_pods, 1);
    assert_eq!(r.policies["pod-ns-label"].selected_pods, 1);
    assert_eq!(r.policies["both"].selected_pods, 1);
}

#[test]
fn service_account_identity_label_is_selectable() {
    let mut p = pod("shop", "web", "node1", &["10.0.1.1"], &[]);
    p.spec.as_mut().unwrap().service_account_name = Some("payments".into());
    let w = World {
        policies: vec![ns_policy(
            "sa",
            "podSelector: {matchLabels: {io.cilium.k8s.policy.serviceaccount: payments}}",
        )],
        nodes: three_nodes(),
        pods: vec![p, pod("shop", "other", "node1", &["10.0.1.2"], &[])],
        ..World::default()
    };
    assert_eq!(w.resolve().policies["sa"].selected_pods, 1);
}

#[test]
fn source_node_selector_restricts_to_pods_on_matching_nodes() {
    let w = World {
        policies: vec![ns_policy(
            "rack1",
            "{podSelector: {}, nodeSelector: {matchLabels: {role: worker}}}",
        )],
        nodes: three_nodes(),
        pods: vec![
            pod("default", "a", "node1", &["10.0.1.1"], &[]),
            pod("default", "b", "node2", &["10.0.2.1"], &[]),
            // A node rackd does not know has no labels: a matchLabels selector rejects it.
            pod("default", "c", "node9", &["10.0.9.1"], &[]),
        ],
        ..World::default()
    };
    let r = w.resolve();
    assert_eq!(keys(&r), ["10.0.1.1 -> 10.0.4.0/24"]);
}

#[test]
fn node_selectors_apply_policy_wide_like_cilium() {
    // Cilium keeps the rules' pod selectors and node selectors in two separate lists, so a
    // node selector written in one rule also constrains pods selected by another rule.
    let w = World {
        policies: vec![policy(
            "metadata: {name: mixed}\nspec:\n  destinationCIDRs: [10.0.4.0/24]\n  selectors:\n  - {podSelector: {matchLabels: {app: a}}, nodeSelector: {matchLabels: {role: worker}}}\n  - podSelector: {matchLabels: {app: b}}\n  egressGateway: {nodeSelector: {matchLabels: {egress-gw: 'true'}}}\n",
        )],
        nodes: three_nodes(),
        pods: vec![
            pod(
                "default",
                "a-on-worker",
                "node1",
                &["10.0.1.1"],
                &[("app", "a")],
            ),
            pod(
                "default",
                "b-on-worker",
                "node1",
                &["10.0.1.2"],
                &[("app", "b")],
            ),
            pod(
                "default",
                "b-on-gw",
                "node2",
                &["10.0.2.2"],
                &[("app", "b")],
            ),
        ],
        ..World::default()
    };
    let r = w.resolve();
    assert_eq!(
        keys(&r),
        ["10.0.1.1 -> 10.0.4.0/24", "10.0.1.2 -> 10.0.4.0/24"],
        "b-on-gw is excluded by rule 0's nodeSelector"
    );
}

#[test]
fn ipv6_pairs_only_with_ipv6_and_gateway_ip_prefers_ipv4() {
    let w = World {
        policies: vec![empire_policy(
            "dual",
            &["10.0.4.0/24", "2001:db8:4::/48", "2001:db8:5::/64"],
        )],
        nodes: vec![
            node("node1", &["fd00::1"], &[]),
            // Dual-stack gateway: its IPv4 InternalIP is the tunnel endpoint, also for v6.
            node(
                "node2",
                &["fd00::2", "192.168.1.2"],
                &[("egress-gw", "true")],
            ),
        ],
        pods: vec![
            pod(
                "default",
                "dual",
                "node1",
                &["10.0.1.1", "fd00:10::1"],
                &[("org", "empire")],
            ),
            pod(
                "default",
                "v6only",
                "node1",
                &["fd00:10::2"],
                &[("org", "empire")],
            ),
        ],
        ..World::default()
    };
    let r = w.resolve();
    assert_eq!(
        keys(&r),
        [
            "10.0.1.1 -> 10.0.4.0/24",
            "fd00:10::1 -> 2001:db8:4::/48",
            "fd00:10::1 -> 2001:db8:5::/64",
            "fd00:10::2 -> 2001:db8:4::/48",
            "fd00:10::2 -> 2001:db8:5::/64",
        ]
    );
    for e in r.entries.values() {
        assert!(
            matches!(&e.action, Action::Gateway { node_ip, .. } if *node_ip == ip("192.168.1.2"))
        );
        assert_eq!(e.source_node_ip, Some(ip("fd00::1")), "IPv6-only node");
    }
}

#[test]
fn ipv6_only_gateway_is_reached_over_ipv6() {
    let w = World {
        policies: vec![empire_policy("v6", &["2001:db8:4::/48"])],
        nodes: vec![
            node("node1", &["fd00::1"], &[]),
            node("node2", &["fd00::2"], &[("egress-gw", "true")]),
        ],
        pods: vec![pod(
            "default",
            "a",
            "node1",
            &["fd00:10::1"],
            &[("org", "empire")],
        )],
        ..World::default()
    };
    let r = w.resolve();
    let e = &r.entries[&key("fd00:10::1", "2001:db8:4::/48")];
    assert!(matches!(&e.action, Action::Gateway { node_ip, .. } if *node_ip == ip("fd00::2")));
}

#[test]
fn excluded_cidrs_pass_untouched_and_useless_ones_are_reported() {
    let w = World {
        policies: vec![policy(
            "metadata: {name: ex}\nspec:\n  destinationCIDRs: [0.0.0.0/0, 10.0.4.1/24]\n  excludedCIDRs: [10.0.0.0/8, 10.0.4.0/24, 192.168.0.0/16, '2001:db8::/32']\n  selectors: [{podSelector: {}}]\n  egressGateway: {nodeSelector: {matchLabels: {egress-gw: 'true'}}, egressIP: 203.0.113.7}\n",
        )],
        nodes: three_nodes(),
        pods: vec![pod("default", "a", "node1", &["10.0.1.1"], &[])],
        ..World::default()
    };
    let r = w.resolve();
    // 10.0.4.1/24 is stored as 10.0.4.0/24 (host bits cleared, as Cilium's netip masking),
    // and the identical excluded key wins over the destination (Cilium writes it second).
    assert_eq!(
        keys(&r),
        [
            "10.0.1.1 -> 0.0.0.0/0",
            "10.0.1.1 -> 10.0.0.0/8",
            "10.0.1.1 -> 10.0.4.0/24",
            "10.0.1.1 -> 192.168.0.0/16",
        ]
    );
    let action = |d: &str| r.entries[&key("10.0.1.1", d)].action.clone();
    assert!(matches!(
        action("0.0.0.0/0"),
        Action::Gateway { egress: egressgw::EgressAddress::Ip(a), .. } if a == ip("203.0.113.7")
    ));
    assert_eq!(action("10.0.0.0/8"), Action::Excluded);
    assert_eq!(action("10.0.4.0/24"), Action::Excluded);
    assert_eq!(action("192.168.0.0/16"), Action::Excluded);
    // The IPv6 exclusion lies in no destination: reported, not programmed.
    assert_eq!(
        condition_types(&r, "ex"),
        [conditions::EXCLUDED_CIDR_UNUSED]
    );
    assert!(message(&r, "ex", conditions::EXCLUDED_CIDR_UNUSED).contains("2001:db8::/32"));
}

#[test]
fn wider_exclusion_than_destination_has_no_effect_and_is_reported() {
    let w = World {
        policies: vec![policy(
            "metadata: {name: wide}\nspec:\n  destinationCIDRs: [10.1.0.0/16]\n  excludedCIDRs: [10.0.0.0/8]\n  selectors: [{podSelector: {}}]\n  egressGateway: {nodeSelector: {matchLabels: {egress-gw: 'true'}}}\n",
        )],
        nodes: three_nodes(),
        pods: vec![pod("default", "a", "node1", &["10.0.1.1"], &[])],
        ..World::default()
    };
    let r = w.resolve();
    assert_eq!(keys(&r), ["10.0.1.1 -> 10.1.0.0/16"]);
    assert!(
        r.entries
            .values()
            .all(|e| matches!(e.action, Action::Gateway { .. }))
    );
    assert_eq!(
        condition_types(&r, "wide"),
        [conditions::EXCLUDED_CIDR_UNUSED]
    );
}

#[test]
fn duplicate_pod_addresses_keep_the_first_pod_and_are_reported() {
    let w = World {
        policies: vec![empire_policy("p", &["10.0.4.0/24"])],
        nodes: three_nodes(),
        pods: vec![
            pod("b", "late", "node1", &["10.0.1.1"], &[("org", "empire")]),
            pod("a", "early", "node1", &["10.0.1.1"], &[("org", "empire")]),
        ],
        ..World::default()
    };
    let r = w.resolve();
    assert_eq!(
        r.entries[&key("10.0.1.1", "10.0.4.0/24")].pod.to_string(),
        "a/early"
    );
    let m = message(&r, "p", conditions::DUPLICATE_POD_IP);
    assert!(m.contains("a/early") && m.contains("b/late"), "{m}");
}

#[test]
fn source_node_without_address_is_reported() {
    let w = World {
        policies: vec![empire_policy("p", &["10.0.4.0/24"])],
        nodes: vec![
            node("node1", &[], &[]),
            node("node2", &["192.168.1.2"], &[("egress-gw", "true")]),
        ],
        pods: vec![
            pod("default", "a", "node1", &["10.0.1.1"], &[("org", "empire")]),
            pod("default", "b", "node7", &["10.0.7.1"], &[("org", "empire")]),
        ],
        ..World::default()
    };
    let r = w.resolve();
    // Still programmed (the source node needs only the gateway IP); the reply path is what
    // breaks, so it is reported.
    assert_eq!(r.entries.len(), 2);
    assert!(r.entries.values().all(|e| e.source_node_ip.is_none()));
    let m = message(&r, "p", conditions::SOURCE_NODE_WITHOUT_IP);
    assert!(m.contains("node1") && m.contains("node7"), "{m}");
}

#[test]
fn egress_ip_of_the_other_family_is_reported() {
    let w = World {
        policies: vec![policy(
            "metadata: {name: fam}\nspec:\n  destinationCIDRs: [10.0.4.0/24, '2001:db8:4::/48']\n  selectors: [{podSelector: {}}]\n  egressGateway: {nodeSelector: {matchLabels: {egress-gw: 'true'}}, egressIP: 203.0.113.7}\n",
        )],
        nodes: three_nodes(),
        pods: vec![pod("default", "a", "node1", &["10.0.1.1", "fd00::1"], &[])],
        ..World::default()
    };
    let r = w.resolve();
    assert_eq!(r.entries.len(), 2);
    assert_eq!(
        condition_types(&r, "fam"),
        [conditions::EGRESS_IP_FAMILY_MISMATCH]
    );
    assert!(message(&r, "fam", conditions::EGRESS_IP_FAMILY_MISMATCH).contains("2001:db8:4::/48"));
}
