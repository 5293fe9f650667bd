//! The egress gateway's tables: `rackctl bpf egress list` in the layout of
//! `cilium-dbg bpf egress list` (Go tabwriter, Cilium's settings, its sentinel texts), and
//! `rackctl egress policies`, rackd's own (Cilium has no such command).

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rackd_api::egress::{EgressAddressSpec, EgressMapAction, EgressMapEntry, EgressPolicyView};

use crate::tabwriter::TabWriter;

/// What `cilium-dbg` prints for an unset address of `source`'s family: its maps hold zeros,
/// which Go prints `0.0.0.0` (IPv4 map) or `::` (IPv6 map).
fn unspecified(source: IpAddr) -> IpAddr {
    match source {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

/// The Gateway IP cell: `cilium-dbg`'s `mapGatewayIP` texts for its sentinels (`0.0.0.0`:
/// `Not Found`, `0.0.0.1`: `Excluded CIDR`), the address otherwise. On an entry this node
/// translates, the daemon names this node's own address, as Cilium's entries do; `local` only
/// if the daemon could not.
fn gateway_cell(e: &EgressMapEntry) -> String {
    match (e.action, e.gateway_ip) {
        (EgressMapAction::Excluded, _) => "Excluded CIDR".into(),
        (EgressMapAction::NoGateway, _) => "Not Found".into(),
        (_, Some(ip)) => ip.to_string(),
        (EgressMapAction::Snat, None) => "local".into(),
        (EgressMapAction::Tunnel, None) => "Not Found".into(),
    }
}

/// `rackctl bpf egress list`: `Source IP  Destination CIDR  Egress IP  Gateway IP`, one line
/// per entry. Empty when there are none (the caller says `No entries found.` on stderr, as
/// `cilium-dbg` does).
pub fn egress_list(entries: &[EgressMapEntry]) -> String {
    if entries.is_empty() {
        return String::new();
    }
    let mut w = TabWriter::cilium();
    w.line("Source IP\tDestination CIDR\tEgress IP\tGateway IP");
    for e in entries {
        let egress = e.egress_ip.unwrap_or_else(|| unspecified(e.source_ip));
        w.line(&format!(
            "{}\t{}\t{egress}\t{}",
            e.source_ip,
            e.dest_cidr,
            gateway_cell(e)
        ));
    }
    w.finish()
}

fn egress_spec(s: &EgressAddressSpec) -> String {
    match s {
        EgressAddressSpec::EgressIp { ip } => format!("egressIP {ip}"),
        EgressAddressSpec::Interface { interface } => format!("interface {interface}"),
        EgressAddressSpec::DefaultRoute => "default route".into(),
    }
}

fn join<T: ToString>(v: impl IntoIterator<Item = T>) -> String {
    v.into_iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// `rackctl egress policies`: one line per gateway group (`Gateway` is the field it comes
/// from), the policy's cells on its first; `Active` marks an elected gateway `(elected)` and
/// this node `(this node)`; `Egress IP` is the address this node translates to, when it is the
/// active gateway. Conditions follow the table, per policy.
pub fn egress_policies(policies: &[EgressPolicyView]) -> String {
    let mut w = TabWriter::cilium();
    w.line("Policy\tEnforced\tPods\tEntries\tGateway\tEgress\tCandidates\tActive\tEgress IP\t");
    for p in policies {
        let head = format!(
            "{}\t{}\t{}\t{}\t",
            p.name,
            if p.enforced { "yes" } else { "no" },
            p.selected_pods,
            p.entries
        );
        if p.gateways.is_empty() {
            w.line(&format!("{head}\t\t\t\t\t"));
        }
        for (i, g) in p.gateways.iter().enumerate() {
            let field = match g.index {
                None => "egressGateway".to_owned(),
                Some(i) => format!("egressGateways[{i}]"),
            };
            let mut active = g
                .active
                .as_ref()
                .map_or_else(|| "none".to_owned(), |a| a.node.clone());
            if g.elected {
                active.push_str(" (elected)");
            }
            if g.local {
                active.push_str(" (this node)");
            }
            let candidates = if g.candidates.is_empty() {
                "none".to_owned()
            } else {
                join(g.candidates.iter().map(|c| &c.node))
            };
            let cells = format!(
                "{field}\t{}\t{candidates}\t{active}\t{}\t",
                egress_spec(&g.egress),
                join(&g.local_egress_ips)
            );
            if i == 0 {
                w.line(&format!("{head}{cells}"));
            } else {
                w.line(&format!("\t\t\t\t{cells}"));
            }
        }
    }
    let mut out = w.finish();
    let with_conds: Vec<_> = policies
        .iter()
        .filter(|p| !p.conditions.is_empty())
        .collect();
    if !with_conds.is_empty() {
        out.push_str("\nConditions:\n");
        for p in with_conds {
            let _ = writeln!(out, "  {}:", p.name);
            for c in &p.conditions {
                let _ = writeln!(out, "    {c}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rackd_api::Condition;
    use rackd_api::egress::{EgressGatewayNode, EgressGatewayView};

    fn entry(src: &str, dst: &str, action: EgressMapAction, gw: Option<&str>) -> EgressMapEntry {
        EgressMapEntry {
            source_ip: src.parse().unwrap(),
            dest_cidr: dst.into(),
            egress_ip: None,
            gateway_ip: gw.map(|g| g.parse().unwrap()),
            action,
            reply_to: None,
        }
    }

    /// A source node's map: the gateway's address, Cilium's sentinel texts, zero egress IPs
    /// of the entry's family.
    #[test]
    fn source_node_list_reads_like_cilium_dbg() {
        let t = egress_list(&[
            entry(
                "10.1.1.11",
                "10.0.4.0/24",
                EgressMapAction::Tunnel,
                Some("10.0.2.2"),
            ),
            entry(
                "10.1.1.11",
                "10.0.4.128/25",
                EgressMapAction::Excluded,
                None,
            ),
            entry("10.1.1.12", "0.0.0.0/0", EgressMapAction::NoGateway, None),
            entry(
                "fd00:10:1:1::11",
                "fd00:10:0:4::/64",
                EgressMapAction::Tunnel,
                Some("10.0.2.2"),
            ),
        ]);
        assert_eq!(
            t,
            concat!(
                "Source IP         Destination CIDR   Egress IP   Gateway IP\n",
                "10.1.1.11         10.0.4.0/24        0.0.0.0     10.0.2.2\n",
                "10.1.1.11         10.0.4.128/25      0.0.0.0     Excluded CIDR\n",
                "10.1.1.12         0.0.0.0/0          0.0.0.0     Not Found\n",
                "fd00:10:1:1::11   fd00:10:0:4::/64   ::          10.0.2.2\n",
            )
        );
    }

    /// The gateway's map: the egress address, and its own address as the gateway (or
    /// `local` when the daemon could not name it); an unresolved egress address is zero.
    #[test]
    fn gateway_list_names_itself() {
        let snat = |src: &str, egress: Option<&str>, gw: Option<&str>| EgressMapEntry {
            egress_ip: egress.map(|e| e.parse().unwrap()),
            ..entry(src, "10.0.4.0/24", EgressMapAction::Snat, gw)
        };
        let t = egress_list(&[
            snat("10.1.1.11", Some("10.0.6.2"), Some("10.0.2.2")),
            snat("10.1.2.13", None, Some("10.0.2.2")),
            snat("10.1.3.14", Some("10.0.6.2"), None),
        ]);
        assert_eq!(
            t,
            concat!(
                "Source IP   Destination CIDR   Egress IP   Gateway IP\n",
                "10.1.1.11   10.0.4.0/24        10.0.6.2    10.0.2.2\n",
                "10.1.2.13   10.0.4.0/24        0.0.0.0     10.0.2.2\n",
                "10.1.3.14   10.0.4.0/24        10.0.6.2    local\n",
            )
        );
        assert_eq!(egress_list(&[]), "", "no header without entries");
    }

    #[test]
    fn policies_table() {
        let node = |n: &str, ip: &str| EgressGatewayNode {
            node: n.into(),
            ip: ip.parse().unwrap(),
        };
        let gw = EgressGatewayView {
            index: None,
            egress: EgressAddressSpec::Interface {
                interface: "net1".into(),
            },
            candidates: vec![node("node2", "10.0.2.2")],
            active: Some(node("node2", "10.0.2.2")),
            elected: false,
            pinned_pods: 3,
            local: true,
            local_egress_ips: vec!["10.0.6.2".parse().unwrap()],
        };
        let multi = EgressPolicyView {
            name: "multi".into(),
            enforced: true,
            selected_pods: 2,
            entries: 2,
            gateways: vec![
                EgressGatewayView {
                    index: Some(0),
                    egress: EgressAddressSpec::EgressIp {
                        ip: "10.0.6.9".parse().unwrap(),
                    },
                    candidates: vec![node("node1", "10.0.1.2"), node("node3", "10.0.3.2")],
                    active: Some(node("node3", "10.0.3.2")),
                    elected: true,
                    local: false,
                    local_egress_ips: vec![],
                    ..gw.clone()
                },
                EgressGatewayView {
                    index: Some(1),
                    egress: EgressAddressSpec::DefaultRoute,
                    candidates: vec![],
                    active: None,
                    local: false,
                    local_egress_ips: vec![],
                    ..gw.clone()
                },
            ],
            conditions: vec![Condition::problem(
                "rackd.io/EgressNoGatewayNode",
                "NotFound",
                "egressGateways[1] selects no node",
            )],
        };
        let t = egress_policies(&[
            EgressPolicyView {
                name: "remote-outpost".into(),
                enforced: true,
                selected_pods: 3,
                entries: 3,
                gateways: vec![gw],
                conditions: vec![],
            },
            multi,
            EgressPolicyView {
                name: "off".into(),
                ..Default::default()
            },
        ]);
        assert_eq!(
            t,
            concat!(
                "Policy           Enforced   Pods   Entries   Gateway             Egress              Candidates    Active              Egress IP   \n",
                "remote-outpost   yes        3      3         egressGateway       interface net1      node2         node2 (this node)   10.0.6.2    \n",
                "multi            yes        2      2         egressGateways[0]   egressIP 10.0.6.9   node1,node3   node3 (elected)                 \n",
                "                                             egressGateways[1]   default route       none          none                            \n",
                "off              no         0      0                                                                                               \n",
                "\n",
                "Conditions:\n",
                "  multi:\n",
                "    rackd.io/EgressNoGatewayNode=True (NotFound): egressGateways[1] selects no node\n",
            )
        );
    }
}
