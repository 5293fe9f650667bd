//! The egress gateway's half of the load balancer's maps (`bpf/lb_egw.h`): the policy
//! map, rendered per node by the controller into [`EgressRule`]s, the tunnel settings and
//! the counters. Pinned beside the load balancer's maps in `lb_v3/` and adopted with them.

use std::collections::BTreeMap;
use std::net::IpAddr;

use aya::maps::lpm_trie::Key as LpmKey;
use aya::maps::{Array, LpmTrie, MapData, PerCpuArray};
use ipnet::IpNet;

use super::maps::*;
use super::types::{addr16, ip_of, prefix16};
use super::{ServiceLb, not_found};
use crate::error::{Error, Result};
use crate::registry::SERVICE_LB_TUNNEL;

/// What this node does with a selected pod's packets to one destination CIDR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EgressAction {
    /// An `excludedCIDRs` entry: the packet leaves as it would without the policy.
    Excluded,
    /// The policy has no gateway node: the packet is dropped, counted (Cilium does the same).
    NoGateway,
    /// Another node is the gateway: encapsulate to its tunnel endpoint.
    Tunnel {
        /// The gateway node's address.
        gateway: IpAddr,
    },
    /// This node is the gateway: SNAT to `egress_ip` (`None`: not resolvable here, the
    /// packet is dropped, counted) and send replies back to `reply_to`, the pod's node (None
    /// when the pod is on this node).
    Snat {
        /// The egress address.
        egress_ip: Option<IpAddr>,
        /// The pod's node, when remote.
        reply_to: Option<IpAddr>,
    },
}

/// One entry of the policy map: packets from `source` to `destination`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EgressRule {
    /// The selected pod's address.
    pub source: IpAddr,
    /// A destination (or excluded) CIDR of the pod's family.
    pub destination: IpNet,
    /// What happens to the packets.
    pub action: EgressAction,
}

/// The tunnel device the programs send to the gateway through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EgressTunnel {
    /// Its ifindex (a collect-metadata VXLAN device).
    pub ifindex: u32,
    /// VXLAN network identifier.
    pub vni: u32,
    /// The MAC every node gives the device.
    pub mac: [u8; 6],
}

/// What [`ServiceLb::sync_egress`] changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EgressSync {
    /// Entries written (new or changed).
    pub written: usize,
    /// Entries removed.
    pub removed: usize,
}

/// The egress gateway's counters (`EGW_ST_*`), summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EgressCounters {
    /// Packets encapsulated to a gateway node.
    pub tunnelled: u64,
    /// Packets translated to an egress address here.
    pub snat: u64,
    /// Replies sent back through the tunnel to a pod's node.
    pub reply_tunnelled: u64,
    /// Dropped: the policy has no gateway.
    pub drop_no_gateway: u64,
    /// Dropped: this node is the gateway but the egress address is unknown.
    pub drop_no_egress_ip: u64,
    /// Dropped: a fragment, or a protocol the NAT engine cannot translate.
    pub drop_unsupported: u64,
    /// Dropped: the NAT engine failed (port exhaustion, rewrite).
    pub drop_nat_failed: u64,
    /// Dropped: no tunnel device, or the tunnel helpers failed.
    pub drop_tunnel_failed: u64,
}

/// The egress maps of one load balancer.
pub(crate) struct EgressMaps {
    pub(crate) policy: LpmTrie<MapData, EgwKeyData, EgwEntry>,
    pub(crate) config: Array<MapData, EgwConfig>,
    pub(crate) stats: PerCpuArray<MapData, u64>,
}

fn key_of(r: &EgressRule) -> (u32, EgwKeyData) {
    let (plen, daddr) = prefix16(&r.destination);
    (
        128 + plen,
        EgwKeyData {
            saddr: addr16(r.source),
            daddr,
        },
    )
}

fn entry_of(a: &EgressAction) -> EgwEntry {
    let mut e = EgwEntry::default();
    match *a {
        EgressAction::Excluded => e.flags = EGW_F_EXCLUDED,
        EgressAction::NoGateway => e.flags = EGW_F_NO_GATEWAY,
        EgressAction::Tunnel { gateway } => e.gateway = addr16(gateway),
        EgressAction::Snat {
            egress_ip,
            reply_to,
        } => {
            e.flags = EGW_F_LOCAL;
            e.egress_ip = egress_ip.map_or([0; 16], addr16);
            e.src_node = reply_to.map_or([0; 16], addr16);
        }
    }
    e
}

fn opt_ip(a: [u8; 16]) -> Option<IpAddr> {
    (a != [0; 16]).then(|| ip_of(a))
}

/// The rule a map entry holds; `None` for a key no rule can produce (written by something
/// else: the sync removes it).
fn rule_of(plen: u32, k: &EgwKeyData, e: &EgwEntry) -> Option<EgressRule> {
    let source = ip_of(k.saddr);
    let dst_bits = plen.checked_sub(128)?;
    let destination = match (source, ip_of(k.daddr)) {
        (IpAddr::V4(_), IpAddr::V4(d)) => {
            IpNet::new(IpAddr::V4(d), u8::try_from(dst_bits.checked_sub(96)?).ok()?).ok()?
        }
        (IpAddr::V6(_), IpAddr::V6(d)) => {
            IpNet::new(IpAddr::V6(d), u8::try_from(dst_bits).ok()?).ok()?
        }
        _ => return None,
    };
    let action = if e.flags & EGW_F_EXCLUDED != 0 {
        EgressAction::Excluded
    } else if e.flags & EGW_F_NO_GATEWAY != 0 {
        EgressAction::NoGateway
    } else if e.flags & EGW_F_LOCAL != 0 {
        EgressAction::Snat {
            egress_ip: opt_ip(e.egress_ip),
            reply_to: opt_ip(e.src_node),
        }
    } else {
        EgressAction::Tunnel {
            gateway: ip_of(e.gateway),
        }
    };
    Some(EgressRule {
        source,
        destination,
        action,
    })
}

impl ServiceLb {
    /// Turns the egress gateway on through `tunnel`, attaching `rackd_egw_tunnel` to the
    /// tunnel device's ingress (a pinned link, adopted like the others), or off (`None`: the
    /// programs ignore the policy map; its entries stay until the next sync). A tunnel device
    /// replaced by another loses its link.
    pub fn set_egress_tunnel(&mut self, tunnel: Option<EgressTunnel>) -> Result<()> {
        let old = self
            .egress
            .config
            .get(&0, 0)
            .map_err(|e| Error::map(MAP_EGW_CONFIG, "read", e))?;
        if old.enabled != 0
            && old.tunnel_ifindex != 0
            && tunnel.is_none_or(|t| t.ifindex != old.tunnel_ifindex)
        {
            self.prog
                .detach_spec(&SERVICE_LB_TUNNEL, old.tunnel_ifindex)?;
        }
        if let Some(t) = tunnel {
            self.prog.attach_spec(&SERVICE_LB_TUNNEL, t.ifindex)?;
        }
        let c = match tunnel {
            Some(t) => EgwConfig {
                enabled: 1,
                tunnel_ifindex: t.ifindex,
                vni: t.vni,
                tunnel_mac: t.mac,
                pad: [0; 2],
            },
            None => EgwConfig::default(),
        };
        self.egress
            .config
            .set(0, c, 0)
            .map_err(|e| Error::map(MAP_EGW_CONFIG, "write", e))
    }

    /// Interfaces with a pinned link of the tunnel program.
    pub fn tunnel_attached(&self) -> Result<Vec<u32>> {
        self.prog.linked_spec(&SERVICE_LB_TUNNEL)
    }

    /// Makes the policy map hold exactly `rules` (later duplicates of a key are ignored:
    /// the controller resolves precedence before this). Writes only what differs, so a
    /// resync of an unchanged plan touches nothing.
    pub fn sync_egress(&mut self, rules: &[EgressRule]) -> Result<EgressSync> {
        let mut want: BTreeMap<(u32, EgwKeyData), EgwEntry> = BTreeMap::new();
        for r in rules {
            want.entry(key_of(r)).or_insert_with(|| entry_of(&r.action));
        }
        let mut have: BTreeMap<(u32, EgwKeyData), EgwEntry> = BTreeMap::new();
        for item in self.egress.policy.iter() {
            let (k, v) = item.map_err(|e| Error::map(MAP_EGW_POLICY, "iterate", e))?;
            have.insert((k.prefix_len(), k.data()), v);
        }
        let mut st = EgressSync::default();
        for ((plen, k), v) in &want {
            if have.get(&(*plen, *k)) != Some(v) {
                self.egress
                    .policy
                    .insert(&LpmKey::new(*plen, *k), *v, 0)
                    .map_err(|e| Error::map(MAP_EGW_POLICY, "insert", e))?;
                st.written += 1;
            }
        }
        for (plen, k) in have.keys().filter(|k| !want.contains_key(k)) {
            match self.egress.policy.remove(&LpmKey::new(*plen, *k)) {
                Ok(()) => st.removed += 1,
                Err(e) if not_found(&e) => {}
                Err(e) => return Err(Error::map(MAP_EGW_POLICY, "remove", e)),
            }
        }
        Ok(st)
    }

    /// The policy map's entries, sorted (`rackctl bpf egress list`).
    pub fn egress_rules(&self) -> Result<Vec<EgressRule>> {
        let mut out = Vec::new();
        for item in self.egress.policy.iter() {
            let (k, v) = item.map_err(|e| Error::map(MAP_EGW_POLICY, "iterate", e))?;
            if let Some(r) = rule_of(k.prefix_len(), &k.data(), &v) {
                out.push(r);
            }
        }
        out.sort_by_key(|r| (r.source, r.destination));
        Ok(out)
    }

    /// The egress gateway's counters.
    pub fn egress_counters(&self) -> Result<EgressCounters> {
        super::flows::egress_counters(&self.egress.stats)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rules_survive_the_map_form() {
        let rules = [
            EgressRule {
                source: "10.244.1.5".parse().unwrap(),
                destination: "10.0.4.0/24".parse().unwrap(),
                action: EgressAction::Tunnel {
                    gateway: "192.168.10.3".parse().unwrap(),
                },
            },
            EgressRule {
                source: "10.244.1.5".parse().unwrap(),
                destination: "10.0.4.128/25".parse().unwrap(),
                action: EgressAction::Excluded,
            },
            EgressRule {
                source: "fd00:10:244:1::5".parse().unwrap(),
                destination: "2001:db8:4::/48".parse().unwrap(),
                action: EgressAction::Snat {
                    egress_ip: Some("2001:db8:e::1".parse().unwrap()),
                    reply_to: Some("fd00::2".parse().unwrap()),
                },
            },
            EgressRule {
                source: "10.244.2.7".parse().unwrap(),
                destination: "0.0.0.0/0".parse().unwrap(),
                action: EgressAction::NoGateway,
            },
            EgressRule {
                source: "10.244.2.7".parse().unwrap(),
                destination: "10.0.0.0/8".parse().unwrap(),
                action: EgressAction::Snat {
                    egress_ip: None,
                    reply_to: None,
                },
            },
        ];
        for r in rules {
            let (plen, k) = key_of(&r);
            assert_eq!(rule_of(plen, &k, &entry_of(&r.action)), Some(r));
        }
    }

    #[test]
    fn foreign_keys_are_not_rules() {
        let k = EgwKeyData {
            saddr: addr16("10.0.0.1".parse().unwrap()),
            daddr: addr16("2001:db8::".parse().unwrap()),
        };
        assert_eq!(rule_of(128 + 64, &k, &EgwEntry::default()), None);
        assert_eq!(rule_of(100, &k, &EgwEntry::default()), None);
        let k4 = EgwKeyData {
            saddr: addr16("10.0.0.1".parse().unwrap()),
            daddr: addr16("10.0.0.0".parse().unwrap()),
        };
        // An IPv4 destination shorter than the mapped prefix.
        assert_eq!(rule_of(128 + 90, &k4, &EgwEntry::default()), None);
    }
}
