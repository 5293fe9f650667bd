//! Conversions from the speaker's and renderer's state to the admin API's Cilium shapes.

pub mod egress;

use std::net::IpAddr;

use base64::Engine as _;
use bgpd::query::{PeerStatus, RouteEntry};
use ipnet::IpNet;
use rackd_api::{
    Base64, BgpPath, BgpPeer, BgpRoute, BgpRoutePolicy, Family, GracefulRestart, MatchNeighbors,
    MatchPrefixes, PeerFamily, PolicyStatement, PrefixMatch,
};

use crate::bgp::render::{self, Desired};

/// One peer as Cilium's `BgpPeer`.
pub fn bgp_peer(local_asn: u32, p: &PeerStatus, cfg: Option<&render::Peer>) -> BgpPeer {
    let established = matches!(p.state, bgpd::fsm::State::Established);
    BgpPeer {
        name: cfg.map(|c| c.name.clone()).unwrap_or_default(),
        local_asn,
        peer_asn: p.peer_as,
        peer_address: p.address.to_string(),
        peer_port: u32::from(p.port),
        session_state: p.state,
        uptime_nanoseconds: if established {
            p.uptime_secs.unwrap_or(0).saturating_mul(1_000_000_000)
        } else {
            0
        },
        configured_hold_time_seconds: cfg.map_or(0, |c| u64::from(c.hold_secs)),
        applied_hold_time_seconds: p.hold_time.map_or(0, u64::from),
        configured_keep_alive_time_seconds: cfg.map_or(0, |c| u64::from(c.keepalive_secs)),
        applied_keep_alive_time_seconds: p.keepalive.map_or(0, u64::from),
        connect_retry_time_seconds: cfg.map_or(0, |c| u64::from(c.connect_retry_secs)),
        ebgp_multihop_ttl: cfg.map_or(0, |c| u32::from(c.ttl)),
        tcp_password_enabled: cfg.is_some_and(|c| c.password.is_some()),
        graceful_restart: cfg
            .and_then(|c| c.graceful_restart)
            .map(|t| GracefulRestart {
                enabled: true,
                restart_time_seconds: u64::from(t),
            }),
        families: p
            .families
            .iter()
            .map(|f| PeerFamily {
                afi: f.family.afi_name().into(),
                safi: f.family.safi_name().into(),
                received: f.received as u64,
                accepted: f.accepted as u64,
                advertised: f.advertised as u64,
            })
            .collect(),
        local_capabilities: capabilities_base64(&p.local_capabilities),
        remote_capabilities: capabilities_base64(&p.remote_capabilities),
        bfd: p.bfd.as_ref().map(|b| rackd_api::BfdPeerState {
            state: b.state.to_string(),
            local_diagnostic: b.local_diag.to_string(),
            remote_state: b.remote_state.to_string(),
            remote_diagnostic: b.remote_diag.to_string(),
            transmit_interval_milliseconds: b.tx_interval_ms,
            detection_time_milliseconds: b.detection_time_ms,
            transitions: b.transitions,
        }),
    }
}

/// One `{"capabilities": base64}` entry per capability TLV, as Cilium reports them (its CLI
/// decodes each with GoBGP's `DecodeCapability` for `cilium bgp peers -c`).
fn capabilities_base64(caps: &[bgpd_wire::Capability]) -> Vec<rackd_api::Capabilities> {
    caps.iter()
        .map(|c| rackd_api::Capabilities {
            capabilities: base64::engine::general_purpose::STANDARD.encode(c.to_wire()),
        })
        .collect()
}

/// The NLRI in UPDATE format (length octet + prefix octets), base64.
fn nlri_base64(p: &IpNet) -> String {
    let len = p.prefix_len();
    let octets: Vec<u8> = match p.network() {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    let mut b = vec![len];
    b.extend_from_slice(&octets[..usize::from(len).div_ceil(8)]);
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// Each path attribute of `r` as one complete attribute in UPDATE format (flags, type,
/// length, value), base64: Cilium's `BgpPath.path-attributes`, which its CLI decodes with
/// GoBGP. Encoded by our codec as an UPDATE for this one prefix on a 4-octet-AS session
/// (NEXT_HOP for IPv4 next hops, MP_REACH_NLRI otherwise), then split into attributes.
pub fn path_attributes_base64(r: &RouteEntry) -> Vec<Base64> {
    use bgpd_wire::{
        EncodedAttributes, Family as WireFamily, NextHop, SessionContext, UpdateBuilder,
    };
    let ctx = SessionContext {
        four_octet_as: true,
        extended_next_hop: vec![WireFamily::Ipv4Unicast],
        ..Default::default()
    };
    let next_hop = match r.next_hop {
        IpAddr::V4(a) => NextHop::V4(a),
        IpAddr::V6(a) => NextHop::V6 {
            global: a,
            link_local: None,
        },
    };
    let enc = EncodedAttributes::new(&r.attributes, &ctx);
    let mut b = UpdateBuilder::new(&ctx);
    if b.announce(&enc, next_hop, &[r.prefix]).is_err() {
        return Vec::new();
    }
    split_attributes(&b.finish())
        .into_iter()
        .map(|a| Base64 {
            base64: base64::engine::general_purpose::STANDARD.encode(a),
        })
        .collect()
}

/// The attributes of the first UPDATE in `msg`, each as its own TLV slice.
fn split_attributes(msg: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let Some(body) = msg.get(19..) else {
        return out;
    };
    let Some(wlen) = body
        .get(..2)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    else {
        return out;
    };
    let Some(rest) = body.get(2 + wlen..) else {
        return out;
    };
    let Some(alen) = rest
        .get(..2)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    else {
        return out;
    };
    let Some(mut attrs) = rest.get(2..2 + alen) else {
        return out;
    };
    while attrs.len() >= 3 {
        let extended = attrs[0] & 0x10 != 0;
        let (hdr, len) = if extended {
            match attrs.get(2..4) {
                Some(l) => (4, usize::from(u16::from_be_bytes([l[0], l[1]]))),
                None => break,
            }
        } else {
            (3, usize::from(attrs[2]))
        };
        let Some(tlv) = attrs.get(..hdr + len) else {
            break;
        };
        out.push(tlv);
        attrs = &attrs[hdr + len..];
    }
    out
}

/// GoBGP's attribute list text (what `cilium bgp routes` prints in Attrs).
pub fn gobgp_attrs(family: bgpd_wire::Family, r: &RouteEntry) -> String {
    // GoBGP lists a path's attributes in type-code order: ORIGIN (1), AS_PATH (2),
    // NEXT_HOP (3), MED (4), LOCAL_PREF (5), COMMUNITIES (8), MP_REACH_NLRI (14),
    // LARGE_COMMUNITY (32); Cilium's docs show `{Communities: ..} {MpReach(..): ..}`.
    let mut parts = vec![format!("{{Origin: {}}}", r.origin)];
    if !r.as_path.is_empty() {
        parts.push(format!("{{AsPath: {}}}", r.as_path));
    }
    let v4_next_hop = family == bgpd_wire::Family::Ipv4Unicast && r.next_hop.is_ipv4();
    if v4_next_hop {
        parts.push(format!("{{Nexthop: {}}}", r.next_hop));
    }
    if let Some(m) = r.med {
        parts.push(format!("{{Med: {m}}}"));
    }
    if let Some(lp) = r.local_pref {
        parts.push(format!("{{LocalPref: {lp}}}"));
    }
    if !r.communities.is_empty() {
        parts.push(format!("{{Communities: {}}}", r.communities.join(", ")));
    }
    if !v4_next_hop {
        parts.push(format!(
            "{{MpReach({family}): {{Nexthop: {}, NLRIs: [{}]}}}}",
            r.next_hop, r.prefix
        ));
    }
    if !r.large_communities.is_empty() {
        // GoBGP: `{LargeCommunity: [ 1:2:3, 4:5:6]}` (a space after the bracket, none before).
        parts.push(format!(
            "{{LargeCommunity: [ {}]}}",
            r.large_communities.join(", ")
        ));
    }
    format!("[{}]", parts.join(" "))
}

/// Routes as Cilium's `BgpRoute`s, one per prefix with its paths.
pub fn bgp_routes(
    asn: u32,
    family: bgpd_wire::Family,
    neighbor: Option<IpAddr>,
    routes: &[RouteEntry],
) -> Vec<BgpRoute> {
    let (afi, safi) = (family.afi_name(), family.safi_name());
    let mut out: Vec<BgpRoute> = Vec::new();
    for r in routes {
        let path = BgpPath {
            family: Some(Family {
                afi: afi.into(),
                safi: safi.into(),
            }),
            nlri: Some(Base64 {
                base64: nlri_base64(&r.prefix),
            }),
            path_attributes: path_attributes_base64(r),
            age_nanoseconds: u64::try_from(r.age.as_nanos()).unwrap_or(u64::MAX),
            best: r.best,
            stale: r.stale,
            rackd_next_hop: if r.source.is_none() && neighbor.is_none() {
                // Locally originated: GoBGP shows 0.0.0.0 / :: in the Loc-RIB.
                bgpd::policy::unspecified_for(&r.prefix).to_string()
            } else {
                r.next_hop.to_string()
            },
            rackd_attrs: gobgp_attrs(family, r),
        };
        let prefix = r.prefix.to_string();
        match out.last_mut() {
            Some(last) if last.prefix == prefix => last.paths.push(path),
            _ => out.push(BgpRoute {
                router_asn: asn,
                prefix,
                neighbor: neighbor.map(|n| n.to_string()).unwrap_or_default(),
                paths: vec![path],
            }),
        }
    }
    out
}

fn fam(f: bgpd_wire::Family) -> Family {
    Family {
        afi: f.afi_name().into(),
        safi: f.safi_name().into(),
    }
}

/// The rendered policies in Cilium's `BgpRoutePolicy` shape: one export policy per
/// (peer, family, advertisement) plus the global `allow-local` import policy.
pub fn route_policies(d: &Desired, router_asn: Option<u32>) -> Vec<BgpRoutePolicy> {
    let mut out = Vec::new();
    for inst in d.instances.values() {
        if router_asn.is_some_and(|a| a != inst.local_asn) {
            continue;
        }
        for peer in inst.peers.values() {
            let host_len = if peer.address.is_ipv4() { 32 } else { 128 };
            for e in peer.export.iter() {
                out.push(BgpRoutePolicy {
                    router_asn: inst.local_asn,
                    name: e.name.clone(),
                    kind: "export".into(),
                    statements: vec![PolicyStatement {
                        match_neighbors: Some(MatchNeighbors {
                            kind: "any".into(),
                            neighbors: vec![format!("{}/{host_len}", peer.address)],
                        }),
                        match_families: vec![fam(e.family)],
                        match_prefixes: Some(MatchPrefixes {
                            kind: "any".into(),
                            prefixes: e
                                .prefixes
                                .iter()
                                .map(|p| PrefixMatch {
                                    cidr: p.to_string(),
                                    prefix_len_min: p.prefix_len(),
                                    prefix_len_max: p.prefix_len(),
                                })
                                .collect(),
                        }),
                        route_action: "accept".into(),
                        add_communities: e
                            .communities
                            .iter()
                            .map(|c| format!("{}:{}", c >> 16, c & 0xffff))
                            .collect(),
                        add_large_communities: e
                            .large_communities
                            .iter()
                            .map(|l| format!("{}:{}:{}", l[0], l[1], l[2]))
                            .collect(),
                        set_local_preference: e.local_pref.map_or(-1, i64::from),
                        nexthop: None,
                    }],
                });
            }
        }
        out.push(BgpRoutePolicy {
            router_asn: inst.local_asn,
            name: "allow-local".into(),
            kind: "import".into(),
            statements: vec![PolicyStatement {
                route_action: "accept".into(),
                set_local_preference: -1,
                ..Default::default()
            }],
        });
    }
    out.sort_by(|a, b| (a.router_asn, &a.name).cmp(&(b.router_asn, &b.name)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unb64(s: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD.decode(s).unwrap()
    }

    fn entry(prefix: &str, next_hop: &str) -> RouteEntry {
        RouteEntry {
            prefix: prefix.parse().unwrap(),
            next_hop: next_hop.parse().unwrap(),
            source: None,
            best: true,
            stale: false,
            rejected: false,
            as_path: String::new(),
            origin: "i",
            med: None,
            local_pref: None,
            communities: vec![],
            large_communities: vec![],
            attributes: std::sync::Arc::default(),
            age: std::time::Duration::ZERO,
        }
    }

    #[test]
    fn attrs_read_like_gobgp_and_cilium_docs() {
        // `cilium bgp routes advertised ipv4 unicast` in Cilium's docs (cilium-compat.md §7.3).
        let r = RouteEntry {
            as_path: "65001".into(),
            communities: vec!["65000:99".into()],
            ..entry("10.1.0.0/24", "fd00:10:0:1::2")
        };
        assert_eq!(
            gobgp_attrs(bgpd_wire::Family::Ipv4Unicast, &r),
            "[{Origin: i} {AsPath: 65001} {Communities: 65000:99} {MpReach(ipv4-unicast): {Nexthop: fd00:10:0:1::2, NLRIs: [10.1.0.0/24]}}]"
        );
        // `available`, originated: `[{Origin: i} {Nexthop: 0.0.0.0}]`.
        assert_eq!(
            gobgp_attrs(
                bgpd_wire::Family::Ipv4Unicast,
                &entry("10.1.0.0/24", "0.0.0.0")
            ),
            "[{Origin: i} {Nexthop: 0.0.0.0}]"
        );
        // Every kind, in type-code order; large communities as `gobgp global rib` prints them.
        let r = RouteEntry {
            as_path: "65001 65002".into(),
            med: Some(10),
            local_pref: Some(200),
            communities: vec!["65000:99".into(), "65000:100".into()],
            large_communities: vec!["65000:1:100".into(), "65000:1:101".into()],
            ..entry("2004::1/128", "fd00:10:0:1::2")
        };
        assert_eq!(
            gobgp_attrs(bgpd_wire::Family::Ipv6Unicast, &r),
            "[{Origin: i} {AsPath: 65001 65002} {Med: 10} {LocalPref: 200} {Communities: 65000:99, 65000:100} {MpReach(ipv6-unicast): {Nexthop: fd00:10:0:1::2, NLRIs: [2004::1/128]}} {LargeCommunity: [ 65000:1:100, 65000:1:101]}]"
        );
    }

    #[test]
    fn path_attributes_are_whole_tlvs() {
        use bgpd_wire::{AsPath, AsSegment, Community, PathAttributes};
        let attrs = PathAttributes {
            as_path: AsPath {
                segments: vec![AsSegment::Sequence(vec![65001])],
            },
            communities: vec![Community((65000 << 16) | 99)],
            ..Default::default()
        };
        let r = RouteEntry {
            prefix: "10.1.0.0/24".parse().unwrap(),
            next_hop: "10.0.1.2".parse().unwrap(),
            source: None,
            best: true,
            stale: false,
            rejected: false,
            as_path: "65001".into(),
            origin: "i",
            med: None,
            local_pref: None,
            communities: vec!["65000:99".into()],
            large_communities: vec![],
            attributes: std::sync::Arc::new(attrs),
            age: std::time::Duration::from_secs(3),
        };
        let tlvs: Vec<Vec<u8>> = path_attributes_base64(&r)
            .iter()
            .map(|b| unb64(&b.base64))
            .collect();
        // ORIGIN IGP, AS_PATH [65001] (4-octet), NEXT_HOP, COMMUNITIES 65000:99.
        assert_eq!(
            tlvs,
            vec![
                vec![0x40, 1, 1, 0],
                vec![0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xe9],
                vec![0x40, 3, 4, 10, 0, 1, 2],
                vec![0xc0, 8, 4, 0xfd, 0xe8, 0, 99],
            ]
        );
        // IPv6: one MP_REACH_NLRI carrying next hop and NLRI.
        let r6 = RouteEntry {
            prefix: "2004::1/128".parse().unwrap(),
            next_hop: "fd00:10:0:1::2".parse().unwrap(),
            ..r
        };
        let tlvs: Vec<Vec<u8>> = path_attributes_base64(&r6)
            .iter()
            .map(|b| unb64(&b.base64))
            .collect();
        let mp: Vec<&Vec<u8>> = tlvs.iter().filter(|t| t[1] == 14).collect();
        assert_eq!(mp.len(), 1, "{tlvs:?}");
        assert_eq!(mp[0][0] & 0x80, 0x80, "optional");
        assert!(
            tlvs.iter().all(|t| t[1] != 3),
            "no NEXT_HOP for IPv6: {tlvs:?}"
        );
        assert_eq!(split_attributes(&[0u8; 5]), Vec::<&[u8]>::new());
    }

    #[test]
    fn capabilities_in_wire_form() {
        let caps = capabilities_base64(&[
            bgpd_wire::Capability::Multiprotocol(bgpd_wire::Family::Ipv4Unicast),
            bgpd_wire::Capability::FourOctetAs(65001),
        ]);
        let raw: Vec<Vec<u8>> = caps.iter().map(|c| unb64(&c.capabilities)).collect();
        assert_eq!(
            raw,
            vec![vec![1, 4, 0, 1, 0, 1], vec![65, 4, 0, 0, 0xfd, 0xe9]]
        );
    }

    #[test]
    fn nlri_encoding() {
        assert_eq!(nlri_base64(&"10.1.0.0/24".parse().unwrap()), "GAoBAA==");
        assert_eq!(nlri_base64(&"0.0.0.0/0".parse().unwrap()), "AA==");
        assert_eq!(
            nlri_base64(&"2004::1/128".parse().unwrap()),
            base64::engine::general_purpose::STANDARD
                .encode([128u8, 0x20, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])
        );
    }
}

/// RFC 3339 UTC time of `unix_secs` (`2026-11-22T01:27:00Z`).
pub fn rfc3339(unix_secs: u64) -> String {
    // Civil-from-days (Howard Hinnant's algorithm, public domain description).
    let days = (unix_secs / 86_400) as i64;
    let rem = unix_secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// This node's `CiliumBGPNodeConfig`: the rendered spec and the running status.
pub fn node_config(
    node: &str,
    d: &Desired,
    peers: &[BgpPeer],
    problems: &[rackd_model::rackd_types::ObjectCondition],
) -> rackd_api::NodeConfig {
    use rackd_api::{
        NodeConfig, NodeConfigMeta, NodeConfigSpec, NodeConfigStatus, NodeInstanceSpec,
        NodeInstanceStatus, NodePeerSpec, NodePeerStatus, NodePeerTimers, RouteCount,
    };
    #[allow(
        clippy::disallowed_types,
        reason = "establishedTime is a date (RFC 3339) in the status; no timer"
    )]
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut spec = NodeConfigSpec::default();
    let mut status = NodeConfigStatus::default();
    for inst in d.instances.values() {
        spec.bgp_instances.push(NodeInstanceSpec {
            name: inst.name.clone(),
            local_asn: inst.local_asn,
            router_id: inst.router_id.to_string(),
            local_port: inst.listen_port,
            peers: inst
                .peers
                .values()
                .map(|p| NodePeerSpec {
                    name: p.name.clone(),
                    peer_address: p.address.to_string(),
                    peer_asn: p.peer_asn,
                    local_address: p.local_address.map(|a| a.to_string()),
                })
                .collect(),
        });
        status.bgp_instances.push(NodeInstanceStatus {
            name: inst.name.clone(),
            local_asn: inst.local_asn,
            peers: inst
                .peers
                .values()
                .map(|p| {
                    let run = peers.iter().find(|r| {
                        r.local_asn == inst.local_asn && r.peer_address == p.address.to_string()
                    });
                    let established = run
                        .is_some_and(|r| r.session_state == rackd_api::SessionState::Established);
                    NodePeerStatus {
                        name: p.name.clone(),
                        peer_address: p.address.to_string(),
                        peer_asn: run.map_or(p.peer_asn, |r| r.peer_asn),
                        peering_state: run
                            .map_or(rackd_api::SessionState::Idle, |r| r.session_state),
                        timers: run.filter(|_| established).map(|r| NodePeerTimers {
                            applied_hold_time_seconds: r.applied_hold_time_seconds,
                            applied_keepalive_seconds: r.applied_keep_alive_time_seconds,
                        }),
                        established_time: run.filter(|_| established).map(|r| {
                            rfc3339(now.saturating_sub(r.uptime_nanoseconds / 1_000_000_000))
                        }),
                        route_count: run
                            .map(|r| {
                                r.families
                                    .iter()
                                    .map(|f| RouteCount {
                                        afi: f.afi.clone(),
                                        safi: f.safi.clone(),
                                        received: f.received,
                                        advertised: f.advertised,
                                    })
                                    .collect()
                            })
                            .unwrap_or_default(),
                    }
                })
                .collect(),
        });
    }
    // Cilium reports what keeps an instance from being reconciled as one
    // `cilium.io/BGPReconcileError` condition on the NodeConfig.
    if !problems.is_empty() {
        status.conditions.push(rackd_api::Condition::problem(
            rackd_model::rackd_types::condition::types::BGP_RECONCILE_ERROR,
            "BGPReconcileError",
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        ));
    }
    NodeConfig {
        api_version: "cilium.io/v2".into(),
        kind: "CiliumBGPNodeConfig".into(),
        metadata: NodeConfigMeta {
            name: node.to_owned(),
        },
        spec,
        status,
    }
}

#[cfg(test)]
mod time_tests {
    use super::rfc3339;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_310_820), "2026-11-22T01:27:00Z");
    }
}
