//! The egress gateway's shapes: `rackctl egress policies` (each `CiliumEgressGatewayPolicy`,
//! what the resolver made of it and this node's part) and `rackctl bpf egress list` (this
//! node's policy map, the columns of `cilium-dbg bpf egress list`).
//!
//! Cilium has no `egress policies` command (`kubectl get cegp` shows the spec only, the policy
//! has no status), so that shape is rackd's own. The map entry keeps `cilium-dbg`'s JSON key
//! names for its four columns (`SourceIP`, `DestCIDR`, `EgressIP`, `GatewayIP`: Go's field
//! names, as `cilium-dbg bpf egress list -o json` prints them) so `jq` filters carry over, but
//! with typed values: `null` where Cilium stores a sentinel address, and the action spelled out.

use std::net::IpAddr;

use rackd_types::Condition;
use serde::{Deserialize, Serialize};

/// One `CiliumEgressGatewayPolicy` as this node sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct EgressPolicyView {
    /// `metadata.name` (the kind is cluster-scoped).
    pub name: String,
    /// True when this node enforces the policy: the egress gateway is on and the policy is
    /// valid. False otherwise, and `conditions` says why.
    pub enforced: bool,
    /// Pods (endpoints) the policy selects, cluster-wide.
    pub selected_pods: u64,
    /// Policy-map entries the policy owns cluster-wide, after overlaps were settled.
    pub entries: u64,
    /// Its gateway groups, in `spec` order (one for `egressGateway`, one per
    /// `egressGateways[]` entry).
    #[serde(default)]
    pub gateways: Vec<EgressGatewayView>,
    /// Its problems, in Cilium's polarity (the type names the problem, status `True`).
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// One gateway group of a policy: its candidate nodes and the active one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct EgressGatewayView {
    /// `None`: `spec.egressGateway`; `Some(i)`: `spec.egressGateways[i]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    /// What the active gateway translates to, as the policy names it.
    pub egress: EgressAddressSpec,
    /// Every node matching the group's `nodeSelector` with an InternalIP, sorted by name.
    #[serde(default)]
    pub candidates: Vec<EgressGatewayNode>,
    /// The active gateway; `None` when no node qualifies (the group's traffic is dropped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<EgressGatewayNode>,
    /// True when `active` won an election (lease) rather than Cilium's first-by-name rule.
    #[serde(default)]
    pub elected: bool,
    /// Source pods pinned to this group.
    pub pinned_pods: u64,
    /// True when this node is the active gateway.
    #[serde(default)]
    pub local: bool,
    /// The addresses this node translates the group's traffic to (one per address family in
    /// use), as written to its policy map. Empty unless `local`; empty while `local` means the
    /// address was not found here (a condition says so) and the traffic is dropped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub local_egress_ips: Vec<IpAddr>,
}

/// A gateway node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EgressGatewayNode {
    /// Node name.
    pub node: String,
    /// Its InternalIP: the tunnel endpoint other nodes send the pods' traffic to.
    pub ip: IpAddr,
}

/// The egress address as the policy names it (resolving it is the gateway's business).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum EgressAddressSpec {
    /// `egressIP`.
    EgressIp {
        /// The address.
        ip: IpAddr,
    },
    /// `interface`: its first address of the packet's family.
    Interface {
        /// Interface name.
        interface: String,
    },
    /// Neither set: the first address of the default route's interface.
    DefaultRoute,
}

/// What the datapath does with a selected pod's packets to one destination CIDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EgressMapAction {
    /// An excluded (or in-cluster) CIDR: the packet leaves as without the policy
    /// (Cilium's `0.0.0.1` gateway, printed `Excluded CIDR`).
    Excluded,
    /// The policy has no gateway node: dropped (Cilium's `0.0.0.0` gateway, `Not Found`).
    NoGateway,
    /// Another node is the gateway: encapsulated to `GatewayIP`.
    Tunnel,
    /// This node is the gateway: translated to `EgressIP` (dropped when it is `null`).
    Snat,
}

/// One entry of this node's egress policy map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EgressMapEntry {
    /// The selected pod's address.
    #[serde(rename = "SourceIP")]
    pub source_ip: IpAddr,
    /// The destination (or excluded) CIDR, host bits cleared (`10.0.4.0/24`).
    #[serde(rename = "DestCIDR")]
    pub dest_cidr: String,
    /// The address translated to: set only on `snat` entries that found it.
    #[serde(rename = "EgressIP")]
    pub egress_ip: Option<IpAddr>,
    /// The gateway node's InternalIP on `tunnel` and `snat` entries (on `snat`, this node's
    /// own, as Cilium's entries hold it on the gateway); `null` on the others.
    #[serde(rename = "GatewayIP")]
    pub gateway_ip: Option<IpAddr>,
    /// What happens to the packets.
    #[serde(rename = "rackd-action")]
    pub action: EgressMapAction,
    /// On `snat` entries for a remote pod: its node, where replies are tunnelled back.
    #[serde(
        rename = "rackd-reply-to",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub reply_to: Option<IpAddr>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Reply, Request, read_message, write_message};

    fn entry() -> EgressMapEntry {
        EgressMapEntry {
            source_ip: "10.1.1.11".parse().unwrap(),
            dest_cidr: "10.0.4.0/24".into(),
            egress_ip: Some("10.0.6.2".parse().unwrap()),
            gateway_ip: Some("10.0.2.2".parse().unwrap()),
            action: EgressMapAction::Snat,
            reply_to: Some("10.0.1.2".parse().unwrap()),
        }
    }

    fn policy() -> EgressPolicyView {
        let n2 = EgressGatewayNode {
            node: "node2".into(),
            ip: "10.0.2.2".parse().unwrap(),
        };
        EgressPolicyView {
            name: "remote-outpost".into(),
            enforced: true,
            selected_pods: 3,
            entries: 3,
            gateways: vec![EgressGatewayView {
                index: None,
                egress: EgressAddressSpec::Interface {
                    interface: "net1".into(),
                },
                candidates: vec![n2.clone()],
                active: Some(n2),
                elected: false,
                pinned_pods: 3,
                local: true,
                local_egress_ips: vec!["10.0.6.2".parse().unwrap()],
            }],
            conditions: vec![Condition::problem(
                "rackd.io/EgressPolicyOverlap",
                "Overlap",
                "shadowed",
            )],
        }
    }

    #[test]
    fn requests_and_replies_round_trip() {
        for r in [Request::EgressPolicies, Request::BpfEgressList] {
            let mut buf = Vec::new();
            write_message(&mut buf, &r).unwrap();
            assert_eq!(read_message::<Request, _>(&buf[..]).unwrap(), r);
        }
        for r in [
            Reply::EgressPolicies(vec![policy()]),
            Reply::BpfEgressList(vec![entry()]),
        ] {
            let mut buf = Vec::new();
            write_message(&mut buf, &r).unwrap();
            assert_eq!(read_message::<Reply, _>(&buf[..]).unwrap(), r);
        }
        let v = serde_json::to_value(Request::BpfEgressList).unwrap();
        assert_eq!(v["request"], "bpf-egress-list");
    }

    /// The map entry keeps `cilium-dbg bpf egress list -o json`'s keys; sentinels are nulls.
    #[test]
    fn map_entry_json_keeps_cilium_keys() {
        let v = serde_json::to_value(entry()).unwrap();
        assert_eq!(v["SourceIP"], "10.1.1.11");
        assert_eq!(v["DestCIDR"], "10.0.4.0/24");
        assert_eq!(v["EgressIP"], "10.0.6.2");
        assert_eq!(v["GatewayIP"], "10.0.2.2");
        assert_eq!(v["rackd-action"], "snat");
        assert_eq!(v["rackd-reply-to"], "10.0.1.2");
        let excluded = EgressMapEntry {
            egress_ip: None,
            gateway_ip: None,
            action: EgressMapAction::Excluded,
            reply_to: None,
            ..entry()
        };
        let v = serde_json::to_value(excluded).unwrap();
        assert!(v["EgressIP"].is_null() && v["GatewayIP"].is_null(), "{v}");
        assert_eq!(v["rackd-action"], "excluded");
        assert!(v.get("rackd-reply-to").is_none());
        let v = serde_json::to_value(EgressMapAction::NoGateway).unwrap();
        assert_eq!(v, "no-gateway");
    }

    #[test]
    fn policy_json_shape() {
        let v = serde_json::to_value(policy()).unwrap();
        assert_eq!(v["selected-pods"], 3);
        let g = &v["gateways"][0];
        assert!(g.get("index").is_none(), "spec.egressGateway has no index");
        assert_eq!(g["egress"]["kind"], "interface");
        assert_eq!(g["egress"]["interface"], "net1");
        assert_eq!(g["active"]["node"], "node2");
        assert_eq!(g["local-egress-ips"][0], "10.0.6.2");
        assert_eq!(v["conditions"][0]["type"], "rackd.io/EgressPolicyOverlap");
        let ip = EgressAddressSpec::EgressIp {
            ip: "2001:db8::e".parse().unwrap(),
        };
        let v = serde_json::to_value(&ip).unwrap();
        assert_eq!(v["kind"], "egress-ip");
        assert_eq!(v["ip"], "2001:db8::e");
        // Unknown kinds are refused rather than guessed.
        assert!(serde_json::from_str::<EgressAddressSpec>(r#"{"kind":"bgp"}"#).is_err());
    }
}
