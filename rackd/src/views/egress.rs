//! `rackctl egress policies` and `rackctl bpf egress list` from what the service controller
//! publishes of the egress gateway (the resolution and this node's policy map as written).

use std::collections::BTreeSet;
use std::net::IpAddr;

use datapath::lb::{EgressAction, EgressRule};
use egressgw::{Action, EgressAddress, EntryKey, GatewaySlot, PolicyEntry};
use rackd_api::egress::{
    EgressAddressSpec, EgressGatewayNode, EgressGatewayView, EgressMapAction, EgressMapEntry,
    EgressPolicyView,
};
use rackd_model::Snapshot;
use rackd_model::rackd_types::{Kind, ObjectCondition};

use crate::svclb::egress::EgressStatus;

/// The egress address as the policy names it.
fn egress_spec(e: &EgressAddress) -> EgressAddressSpec {
    match e {
        EgressAddress::Ip(ip) => EgressAddressSpec::EgressIp { ip: *ip },
        EgressAddress::Interface(i) => EgressAddressSpec::Interface {
            interface: i.clone(),
        },
        EgressAddress::DefaultRoute => EgressAddressSpec::DefaultRoute,
    }
}

fn gateway_node(c: &egressgw::Candidate) -> EgressGatewayNode {
    EgressGatewayNode {
        node: c.node.clone(),
        ip: c.ip,
    }
}

/// The resolver's entry behind a rule of this node's map (none for the in-cluster exclusions
/// the node adds itself).
fn entry_of<'a>(st: &'a EgressStatus, r: &EgressRule) -> Option<&'a PolicyEntry> {
    st.resolution.entries.get(&EntryKey {
        source: r.source,
        destination: r.destination,
    })
}

/// One gateway group, with the addresses this node's map translates its traffic to when this
/// node is its active gateway.
fn group_view(node: &str, e: &EgressStatus, g: &egressgw::GatewayGroup) -> EgressGatewayView {
    let local = g.active.as_ref().is_some_and(|a| a.node == node);
    let ips: BTreeSet<IpAddr> = e
        .rules
        .iter()
        .filter(|_| local)
        .filter_map(|r| match r.action {
            EgressAction::Snat {
                egress_ip: Some(ip),
                ..
            } => Some((r, ip)),
            _ => None,
        })
        .filter(|(r, _)| {
            entry_of(e, r).is_some_and(
                |pe| matches!(&pe.action, Action::Gateway { group, .. } if *group == g.id),
            )
        })
        .map(|(_, ip)| ip)
        .collect();
    EgressGatewayView {
        index: match g.id.slot {
            GatewaySlot::Single => None,
            GatewaySlot::Index(i) => u32::try_from(i).ok(),
        },
        egress: egress_spec(&g.egress),
        candidates: g.candidates.iter().map(gateway_node).collect(),
        active: g.active.as_ref().map(gateway_node),
        elected: g.elected,
        pinned_pods: u64::try_from(g.pinned_pods).unwrap_or(u64::MAX),
        local,
        local_egress_ips: ips.into_iter().collect(),
    }
}

/// `rackctl egress policies`: every `CiliumEgressGatewayPolicy` of the snapshot with what the
/// resolver made of it and this node's part. `egress` is `None` while the egress gateway is
/// off (nothing is enforced); each policy's conditions are the resolver's and the
/// controllers' (`conds`: those only this node can see, or the gateway being off).
pub fn egress_policies(
    node: &str,
    egress: Option<&EgressStatus>,
    snap: &Snapshot,
    conds: &[ObjectCondition],
) -> Vec<EgressPolicyView> {
    let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    let mut names: BTreeSet<String> = snap
        .egress_gateway_policies()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    if let Some(e) = egress {
        names.extend(e.resolution.policies.keys().cloned());
    }
    names
        .into_iter()
        .map(|name| {
            let st = egress.and_then(|e| Some((e, e.resolution.policies.get(&name)?)));
            let mut conditions: Vec<_> = st.map(|(_, s)| s.conditions.clone()).unwrap_or_default();
            for c in conds.iter().filter(|c| {
                c.object
                    .as_ref()
                    .is_some_and(|o| o.kind == Kind::EgressGatewayPolicy && o.name == name)
            }) {
                if !conditions.contains(&c.condition) {
                    conditions.push(c.condition.clone());
                }
            }
            let gateways = st
                .map(|(e, s)| {
                    s.groups
                        .iter()
                        .filter_map(|id| e.resolution.groups.get(id))
                        .map(|g| group_view(node, e, g))
                        .collect()
                })
                .unwrap_or_default();
            EgressPolicyView {
                enforced: st.is_some_and(|(_, s)| s.valid),
                selected_pods: st.map_or(0, |(_, s)| count(s.selected_pods)),
                entries: st.map_or(0, |(_, s)| count(s.entries)),
                name,
                gateways,
                conditions,
            }
        })
        .collect()
}

/// `rackctl bpf egress list`: this node's policy map as written. The Gateway IP of an entry
/// this node translates is its own InternalIP, as the resolver chose it (Cilium's entries hold
/// the gateway's address on the gateway too).
pub fn egress_map(node: &str, st: &EgressStatus) -> Vec<EgressMapEntry> {
    use EgressAction as A;
    use EgressMapAction as M;
    // Fallback for an entry the resolver no longer lists: this node as any group's candidate.
    let own_ip = st
        .resolution
        .groups
        .values()
        .flat_map(|g| &g.candidates)
        .find(|c| c.node == node)
        .map(|c| c.ip);
    st.rules
        .iter()
        .map(|r| {
            let (action, egress_ip, gateway_ip, reply_to) = match r.action {
                A::Excluded => (M::Excluded, None, None, None),
                A::NoGateway => (M::NoGateway, None, None, None),
                A::Tunnel { gateway } => (M::Tunnel, None, Some(gateway), None),
                A::Snat {
                    egress_ip,
                    reply_to,
                } => {
                    let gw = match entry_of(st, r).map(|e| &e.action) {
                        Some(Action::Gateway { node_ip, .. }) => Some(*node_ip),
                        _ => own_ip,
                    };
                    (M::Snat, egress_ip, gw, reply_to)
                }
            };
            EgressMapEntry {
                source_ip: r.source,
                dest_cidr: r.destination.to_string(),
                egress_ip,
                gateway_ip,
                action,
                reply_to,
            }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use egressgw::{Candidate, GatewayGroup, GroupId, PodRef, PolicyStatus, Resolution};

    use super::*;

    const SEED: &str = include_str!("../../../configs/seeds/seed-000-egress-gateway.yaml");

    /// tiefighter (node1) and mediabot (node2) through node2, which translates to 10.0.6.2;
    /// 10.0.4.128/25 excluded. `node` is the map's owner.
    fn status(node: &str) -> EgressStatus {
        let id = GroupId::new("remote-outpost", GatewaySlot::Single);
        let n2 = Candidate {
            node: "node2".into(),
            ip: "10.0.2.2".parse().unwrap(),
        };
        let gw = Action::Gateway {
            group: id.clone(),
            node: "node2".into(),
            node_ip: n2.ip,
            egress: EgressAddress::Interface("net1".into()),
        };
        let key = |s: &str, d: &str| EntryKey {
            source: s.parse().unwrap(),
            destination: d.parse().unwrap(),
        };
        let entry = |action: &Action, pod: &str, n: u8| PolicyEntry {
            action: action.clone(),
            policy: "remote-outpost".into(),
            pod: PodRef {
                namespace: "default".into(),
                name: pod.into(),
            },
            source_node: format!("node{n}"),
            source_node_ip: Some(format!("10.0.{n}.2").parse().unwrap()),
        };
        let mut entries = BTreeMap::new();
        entries.insert(key("10.1.1.11", "10.0.4.0/24"), entry(&gw, "tiefighter", 1));
        entries.insert(key("10.1.2.13", "10.0.4.0/24"), entry(&gw, "mediabot", 2));
        entries.insert(
            key("10.1.1.11", "10.0.4.128/25"),
            entry(&Action::Excluded, "tiefighter", 1),
        );
        let rule = |s: &str, d: &str, action| EgressRule {
            source: s.parse().unwrap(),
            destination: d.parse().unwrap(),
            action,
        };
        let snat = |reply_to: Option<&str>| EgressAction::Snat {
            egress_ip: Some("10.0.6.2".parse().unwrap()),
            reply_to: reply_to.map(|r| r.parse().unwrap()),
        };
        let rules = if node == "node1" {
            vec![
                rule(
                    "10.1.1.11",
                    "10.0.4.0/24",
                    EgressAction::Tunnel { gateway: n2.ip },
                ),
                rule("10.1.1.11", "10.0.4.128/25", EgressAction::Excluded),
            ]
        } else {
            vec![
                rule("10.1.1.11", "10.0.4.0/24", snat(Some("10.0.1.2"))),
                rule("10.1.1.11", "10.0.4.128/25", EgressAction::Excluded),
                rule("10.1.2.13", "10.0.4.0/24", snat(None)),
            ]
        };
        let group = GatewayGroup {
            id: id.clone(),
            egress: EgressAddress::Interface("net1".into()),
            candidates: vec![n2.clone()],
            active: Some(n2),
            elected: false,
            pinned_pods: 2,
        };
        EgressStatus {
            resolution: Resolution {
                entries,
                groups: [(id.clone(), group)].into_iter().collect(),
                policies: [(
                    "remote-outpost".to_owned(),
                    PolicyStatus {
                        valid: true,
                        groups: vec![id],
                        selected_pods: 2,
                        entries: 3,
                        conditions: vec![],
                    },
                )]
                .into_iter()
                .collect(),
            },
            rules,
        }
    }

    #[test]
    fn map_entries_name_the_gateway_everywhere() {
        let m1 = egress_map("node1", &status("node1"));
        assert_eq!(m1.len(), 2);
        assert_eq!(m1[0].action, EgressMapAction::Tunnel);
        assert_eq!(m1[0].gateway_ip, Some("10.0.2.2".parse().unwrap()));
        assert_eq!(m1[0].egress_ip, None, "a source node does not know it");
        assert_eq!(
            (m1[1].action, m1[1].gateway_ip),
            (EgressMapAction::Excluded, None)
        );
        let m2 = egress_map("node2", &status("node2"));
        // On the gateway: its own address, the egress address, and where replies go.
        assert!(
            m2.iter()
                .filter(|e| e.action == EgressMapAction::Snat)
                .all(|e| {
                    e.gateway_ip == Some("10.0.2.2".parse().unwrap())
                        && e.egress_ip == Some("10.0.6.2".parse().unwrap())
                })
        );
        assert_eq!(m2[0].reply_to, Some("10.0.1.2".parse().unwrap()));
        assert_eq!(m2[2].reply_to, None, "mediabot is local");
    }

    #[test]
    fn policies_show_this_nodes_part_and_every_condition() {
        let snap = Snapshot::default();
        let cond = ObjectCondition::new(
            rackd_model::rackd_types::ObjectKey::cluster(
                Kind::EgressGatewayPolicy,
                "remote-outpost",
            ),
            rackd_api::Condition::problem("rackd.io/EgressIPNotOnGateway", "NotFound", "x"),
        );
        let st = status("node2");
        let p = egress_policies("node2", Some(&st), &snap, std::slice::from_ref(&cond));
        assert_eq!(p.len(), 1);
        assert!(p[0].enforced);
        assert_eq!((p[0].selected_pods, p[0].entries), (2, 3));
        let g = &p[0].gateways[0];
        assert_eq!(g.index, None);
        assert_eq!(
            g.egress,
            EgressAddressSpec::Interface {
                interface: "net1".into()
            }
        );
        assert!(g.local);
        assert_eq!(
            g.local_egress_ips,
            vec!["10.0.6.2".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(p[0].conditions, vec![cond.condition.clone()]);
        // Elsewhere: the same gateway, not local, no egress address.
        let p1 = egress_policies("node1", Some(&status("node1")), &snap, &[]);
        let g1 = &p1[0].gateways[0];
        assert_eq!(g1.active.as_ref().map(|a| a.node.as_str()), Some("node2"));
        assert!(!g1.local && g1.local_egress_ips.is_empty());
        // The gateway off: the snapshot's policy is listed, not enforced, with the
        // controllers' reason; no policy, no row.
        assert!(egress_policies("node1", None, &snap, &[]).is_empty());
        let seed = crate::testing::config_state(SEED);
        let off = egress_policies("node1", None, &seed.snapshot, std::slice::from_ref(&cond));
        assert_eq!(off.len(), 1);
        assert_eq!(off[0].name, "remote-outpost");
        assert!(!off[0].enforced && off[0].gateways.is_empty());
        assert_eq!(off[0].conditions, vec![cond.condition]);
    }
}
