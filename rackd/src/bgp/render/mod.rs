//! Pure rendering of this node's BGP configuration from the resource snapshot: what
//! Cilium's operator (ClusterConfig + Override → NodeConfig) and agent reconcilers
//! (PodCIDR, Service, Interface advertisements → export policies) do, as a function of the
//! snapshot, the node name, LB-IPAM's addresses and a few host facts. No I/O: the reconciler
//! diffs the result against the running speakers.
//!
//! Two entry points with one result: [`render`] computes everything, and
//! [`update_services`] recomputes only the export policies of the Services given (a Service,
//! its EndpointSlices or its LoadBalancer addresses changed), which is what one Service edit
//! among 27,000 costs. Export policies live in persistent maps ordered as Cilium orders them
//! (family, advertisement, entry, resource), so a copy of the result is cheap and the
//! reconciler sees what changed in O(changes).

mod bmp;
mod egress;
mod exports;
mod family;
mod service;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_beyond;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use bgpd_wire::Family;
use ipnet::IpNet;
use rackd_model::cilium::{
    AdvertisementType, BGPAdvertisement, CiliumBGPAdvertisement, CiliumBGPClusterConfig,
};
use rackd_model::k8s_openapi::api::core::v1::Node;
use rackd_model::rackd_types::condition::{reasons, types};
use rackd_model::rackd_types::{Condition, Kind, ObjectCondition, ObjectKey};
use rackd_model::selector::{NilSelector, Selector};
use rackd_model::{Snapshot, secret_value};

use crate::lbipam_ctl::LbIps;

pub use egress::advertised_policies;
pub use exports::{ExportKey, ExportPolicy, Exports, Resource};
pub use family::{UnsupportedFamily, family_of};
pub use service::{ServiceAdvert, update_services};

/// Host facts the renderer needs (gathered by the daemon through netlink).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostInfo {
    /// Addresses per interface name.
    pub interfaces: BTreeMap<String, Vec<IpAddr>>,
    /// Default gateway per family (for `autoDiscovery: DefaultGateway`).
    pub default_gateway_v4: Option<IpAddr>,
    pub default_gateway_v6: Option<IpAddr>,
    /// The interface each default gateway is reached through (the one holding an address of
    /// its subnet), for an egress gateway without `egressIP` or `interface`.
    pub default_interface_v4: Option<String>,
    pub default_interface_v6: Option<String>,
    /// The router heard on each interface peered over unnumbered (its IPv6 link-local
    /// address; [`super::unnumbered`]).
    pub link_neighbours: BTreeMap<String, std::net::Ipv6Addr>,
}

/// Everything this node should run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Desired {
    /// The ClusterConfig that selected this node, if any.
    pub cluster_config: Option<String>,
    pub instances: BTreeMap<String, Instance>,
    /// Why something could not be rendered, as conditions of the objects at fault (Cilium's
    /// condition types where Cilium has one).
    pub problems: Vec<ObjectCondition>,
}

/// Routes an instance originates, each with the number of export policies that carry it (a
/// route goes when its last policy does).
pub type Routes = imbl::OrdMap<IpNet, u32>;

/// One BGP instance (virtual router).
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub name: String,
    pub local_asn: u32,
    pub router_id: Ipv4Addr,
    /// `None` = do not listen (Cilium: unset localPort).
    pub listen_port: Option<u16>,
    pub peers: BTreeMap<String, Peer>,
    /// Routes this instance originates (the union over every peer's export policies).
    pub routes: Routes,
    /// BMP collectors this node reports to (`bmpServers`).
    pub bmp: Vec<bgpd::BmpServerConfig>,
}

/// One peer with everything its session and export need.
#[derive(Debug, Clone, PartialEq)]
pub struct Peer {
    pub name: String,
    pub address: IpAddr,
    /// `%zone` of a link-local address, or the `peerInterface`.
    pub interface: Option<String>,
    /// 0 = accept whatever the peer says.
    pub peer_asn: u32,
    pub peer_port: u16,
    pub local_address: Option<IpAddr>,
    pub local_port: Option<u16>,
    pub source_interface: Option<String>,
    pub connect_retry_secs: u32,
    pub hold_secs: u16,
    pub keepalive_secs: u16,
    /// eBGP TTL; 1 = directly connected.
    pub ttl: u8,
    pub password: Option<Vec<u8>>,
    /// Restart time when graceful restart is enabled.
    pub graceful_restart: Option<u16>,
    /// BFD timers when the PeerConfig enables BFD (cilium#48251's `spec.bfd`).
    pub bfd: Option<bgpd::BfdConfig>,
    pub families: Vec<Family>,
    pub export: Exports,
    /// The Service advertisements this peer's families select, kept so that
    /// [`update_services`] can re-render one Service without the rest of the frame.
    pub service_adverts: Arc<[ServiceAdvert]>,
}

/// Inputs besides the snapshot.
#[derive(Debug, Clone, Default)]
pub struct RenderInput<'a> {
    pub node_name: &'a str,
    pub host: HostInfo,
    /// LoadBalancer IPs per `(namespace, name)` (from LB-IPAM; Service status is read too).
    pub lb_ips: LbIps,
    /// Namespace of BGP auth Secrets.
    pub secrets_namespace: &'a str,
    /// Withdraw a Service's LoadBalancer and external IPs while it has no usable backend
    /// (rackd forwards them itself, and would only reject the traffic; Cilium 1.19 does the
    /// same with kube-proxy replacement).
    pub withdraw_without_backends: bool,
    /// The egress addresses this node announces as the active gateway, per policy (empty
    /// without `--enable-egress-gateway`).
    pub egress: crate::svclb::egress::EgressAnnounced,
}

fn in_family(ip: &IpAddr, f: Family) -> bool {
    Family::of_addr(*ip) == f
}

fn host_route(ip: IpAddr) -> IpNet {
    IpNet::from(ip)
}

fn node_labels(node: Option<&Node>) -> BTreeMap<String, String> {
    node.and_then(|n| n.metadata.labels.clone())
        .unwrap_or_default()
}

fn problem(
    key: ObjectKey,
    type_: &'static str,
    reason: &'static str,
    message: String,
) -> ObjectCondition {
    ObjectCondition::new(key, Condition::problem(type_, reason, message))
}

/// The node's router ID when no override gives one: its first IPv4 InternalIP, else the first
/// IPv4 on the host, else a stable value derived from the node name (RFC 6286 only asks
/// for 4 non-zero octets unique in the AS).
fn default_router_id(node: Option<&Node>, host: &HostInfo, node_name: &str) -> Ipv4Addr {
    let from_node = node
        .and_then(|n| n.status.as_ref())
        .and_then(|s| s.addresses.as_ref())
        .and_then(|a| {
            a.iter()
                .filter(|a| a.type_ == "InternalIP")
                .find_map(|a| a.address.parse::<Ipv4Addr>().ok())
        });
    if let Some(id) = from_node {
        return id;
    }
    let from_host = host
        .interfaces
        .iter()
        .filter(|(n, _)| *n != "lo")
        .find_map(|(_, ips)| {
            ips.iter().find_map(|ip| match ip {
                IpAddr::V4(v4) if !v4.is_loopback() && !v4.is_link_local() => Some(*v4),
                _ => None,
            })
        });
    if let Some(id) = from_host {
        return id;
    }
    // FNV-1a of the name, never zero.
    let mut h: u32 = 0x811c_9dc5;
    for b in node_name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    Ipv4Addr::from(h.max(1))
}

/// An advertisement's path attributes: standard (incl. well-known) and large communities,
/// local preference.
fn attributes(adv: &BGPAdvertisement) -> (Vec<u32>, Vec<[u32; 3]>, Option<u32>) {
    let mut std_c = Vec::new();
    let mut large = Vec::new();
    let mut lp = None;
    if let Some(a) = adv.attributes.as_ref() {
        if let Some(c) = a.communities.as_ref() {
            std_c.extend(
                c.standard
                    .iter()
                    .filter_map(|s| rackd_model::cilium::parse_standard_community(s)),
            );
            std_c.extend(c.well_known.iter().map(|w| w.value()));
            large.extend(
                c.large
                    .iter()
                    .filter_map(|s| rackd_model::cilium::parse_large_community(s))
                    .map(|(a, b, c)| [a, b, c]),
            );
        }
        lp = a.local_preference.and_then(|v| u32::try_from(v).ok());
    }
    std_c.sort_unstable();
    std_c.dedup();
    large.sort_unstable();
    large.dedup();
    (std_c, large, lp)
}

/// A ClusterConfig with its compiled `nodeSelector` (nil selects every node).
#[derive(Debug)]
pub struct ClusterSelector<'a> {
    pub name: String,
    pub config: &'a CiliumBGPClusterConfig,
    /// The selector, or why it cannot be used.
    pub selector: Result<Selector, rackd_model::selector::SelectorError>,
}

/// Every ClusterConfig with its node selector, by name: the one selection rule that this
/// node's rendering and the cluster-wide NodeConfig plan ([`crate::k8s::bgp_plan`]) share.
pub fn cluster_config_selectors(snap: &Snapshot) -> Vec<ClusterSelector<'_>> {
    snap.bgp_cluster_configs()
        .map(|cc| ClusterSelector {
            name: cc.metadata.name.clone().unwrap_or_default(),
            config: cc,
            selector: Selector::compile_optional(
                cc.spec.node_selector.as_ref(),
                NilSelector::MatchesAll,
            ),
        })
        .collect()
}

/// The TCP-MD5 password of auth Secret `namespace/name` (its key `password`), if both exist.
pub fn auth_password<'a>(snap: &'a Snapshot, namespace: &str, name: &str) -> Option<&'a [u8]> {
    snap.secret(namespace, name)
        .and_then(|sec| secret_value(sec, rackd_model::cilium::AUTH_SECRET_PASSWORD_KEY))
}

/// Renders this node's BGP configuration.
pub fn render(snap: &Snapshot, input: &RenderInput<'_>) -> Desired {
    let mut d = Desired::default();
    let node = snap.node(input.node_name);
    let labels = node_labels(node);

    // First matching ClusterConfig (by name) wins, like Cilium's "first owner wins".
    let mut selected = Vec::new();
    for cs in cluster_config_selectors(snap) {
        match cs.selector {
            Ok(sel) if sel.matches(&labels) => selected.push((cs.name, cs.config)),
            Ok(_) => {}
            Err(e) => d.problems.push(problem(
                ObjectKey::cluster(Kind::BgpClusterConfig, &cs.name),
                types::INVALID_CONFIGURATION,
                reasons::INVALID,
                format!("nodeSelector: {e}"),
            )),
        }
    }
    let Some((cc_name, cc)) = selected.first().cloned() else {
        return d;
    };
    for (other, _) in selected.iter().skip(1) {
        d.problems.push(problem(
            ObjectKey::cluster(Kind::BgpClusterConfig, other),
            types::CONFLICTING_CLUSTER_CONFIG,
            reasons::CONFLICT,
            format!(
                "CiliumBGPClusterConfig {other} also selects node {}; {cc_name} applies",
                input.node_name
            ),
        ));
    }
    d.cluster_config = Some(cc_name.clone());
    let ovr = snap.bgp_node_config_override(input.node_name);
    let cc_key = ObjectKey::cluster(Kind::BgpClusterConfig, &cc_name);

    for inst in &cc.spec.bgp_instances {
        let iovr = ovr.and_then(|o| o.spec.bgp_instances.iter().find(|i| i.name == inst.name));
        let Some(asn) = iovr
            .and_then(|o| o.local_asn)
            .or(inst.local_asn)
            .and_then(|a| u32::try_from(a).ok())
            .filter(|a| *a != 0)
        else {
            d.problems.push(problem(
                cc_key.clone(),
                types::INVALID_CONFIGURATION,
                reasons::INVALID,
                format!(
                    "instance {}: no localASN (set it here or in a CiliumBGPNodeConfigOverride)",
                    inst.name
                ),
            ));
            continue;
        };
        let router_id = iovr
            .and_then(|o| o.router_id.as_deref())
            .and_then(|r| r.parse().ok())
            .unwrap_or_else(|| default_router_id(node, &input.host, input.node_name));
        let listen_port = iovr
            .and_then(|o| o.local_port)
            .or(inst.local_port)
            .and_then(|p| u16::try_from(p).ok());
        let mut instance = Instance {
            name: inst.name.clone(),
            local_asn: asn,
            router_id,
            listen_port,
            peers: BTreeMap::new(),
            routes: Routes::new(),
            bmp: bmp::servers(&cc_key, inst, input.node_name, &mut d.problems),
        };
        for p in &inst.peers {
            let povr = iovr.and_then(|o| o.peers.iter().find(|x| x.name == p.name));
            if let Some(peer) = render_peer(
                snap,
                input,
                node,
                &cc_key,
                p,
                povr,
                &mut instance.routes,
                &mut d.problems,
            ) {
                instance.peers.insert(peer.name.clone(), peer);
            }
        }
        d.instances.insert(instance.name.clone(), instance);
    }
    d
}

#[allow(clippy::too_many_arguments)]
fn render_peer(
    snap: &Snapshot,
    input: &RenderInput<'_>,
    node: Option<&Node>,
    cc_key: &ObjectKey,
    p: &rackd_model::cilium::CiliumBGPPeer,
    povr: Option<&rackd_model::cilium::CiliumBGPNodeConfigPeerOverride>,
    routes: &mut Routes,
    problems: &mut Vec<ObjectCondition>,
) -> Option<Peer> {
    let invalid = |message: String| {
        problem(
            cc_key.clone(),
            types::INVALID_CONFIGURATION,
            reasons::INVALID,
            message,
        )
    };
    // Address: explicit (with optional %zone) or auto-discovered default gateway.
    let (address, mut interface) = match (p.peer_address.as_deref(), p.auto_discovery.as_ref()) {
        (Some(a), _) => {
            let (ip, zone) = match a.split_once('%') {
                Some((ip, z)) => (ip, Some(z.to_owned())),
                None => (a, None),
            };
            match ip.parse::<IpAddr>() {
                Ok(ip) => (ip, zone),
                Err(_) => {
                    problems.push(invalid(format!(
                        "peer {}: peerAddress {a:?} is not an IP address",
                        p.name
                    )));
                    return None;
                }
            }
        }
        (None, Some(ad)) if ad.mode == rackd_model::cilium::AutoDiscoveryMode::Unnumbered => {
            let Some(ifname) = ad
                .unnumbered
                .as_ref()
                .map(|u| u.interface.clone())
                .or_else(|| p.peer_interface.clone())
            else {
                problems.push(invalid(format!(
                    "peer {}: autoDiscovery Unnumbered without an interface",
                    p.name
                )));
                return None;
            };
            match input.host.link_neighbours.get(&ifname) {
                Some(ll) => (IpAddr::V6(*ll), Some(ifname)),
                None => {
                    problems.push(problem(
                        cc_key.clone(),
                        types::INVALID_CONFIGURATION,
                        reasons::NOT_FOUND,
                        format!(
                            "peer {}: no router heard on {ifname} yet (unnumbered peering \
                             needs the router to answer Router Solicitations or echo requests)",
                            p.name
                        ),
                    ));
                    return None;
                }
            }
        }
        (None, Some(ad)) => {
            let gw = match ad.default_gateway.as_ref().map(|g| g.address_family) {
                Some(rackd_model::cilium::AddressFamily::Ipv6) => input.host.default_gateway_v6,
                _ => input.host.default_gateway_v4,
            };
            match gw {
                Some(ip) => (ip, None),
                None => {
                    problems.push(problem(
                        cc_key.clone(),
                        types::INVALID_CONFIGURATION,
                        reasons::NOT_FOUND,
                        format!(
                            "peer {}: autoDiscovery found no default gateway of that family",
                            p.name
                        ),
                    ));
                    return None;
                }
            }
        }
        (None, None) => {
            problems.push(invalid(format!(
                "peer {}: neither peerAddress nor autoDiscovery",
                p.name
            )));
            return None;
        }
    };
    if let Some(i) = p
        .peer_interface
        .clone()
        .or_else(|| povr.and_then(|o| o.peer_interface.clone()))
    {
        interface = Some(i);
    }
    let default_pc;
    let (pc, pc_key) = match p.peer_config_ref.as_ref() {
        Some(r) => match snap.bgp_peer_config(&r.name) {
            Some(pc) => (
                &pc.spec,
                Some(ObjectKey::cluster(Kind::BgpPeerConfig, &r.name)),
            ),
            None => {
                problems.push(problem(
                    cc_key.clone(),
                    types::MISSING_PEER_CONFIGS,
                    reasons::NOT_FOUND,
                    format!(
                        "peer {}: CiliumBGPPeerConfig {} does not exist",
                        p.name, r.name
                    ),
                ));
                return None;
            }
        },
        None => {
            default_pc = rackd_model::cilium::CiliumBGPPeerConfigSpec::default();
            (&default_pc, None)
        }
    };
    let pc_or_cc = pc_key.clone().unwrap_or_else(|| cc_key.clone());
    let password = match pc.auth_secret_ref.as_deref() {
        None => None,
        Some(s) => match auth_password(snap, input.secrets_namespace, s) {
            Some(pw) => Some(pw.to_vec()),
            None => {
                problems.push(problem(
                    pc_or_cc,
                    types::MISSING_AUTH_SECRET,
                    reasons::NOT_FOUND,
                    format!(
                        "peer {}: Secret {}/{s} with key \"password\" not found",
                        p.name, input.secrets_namespace
                    ),
                ));
                return None;
            }
        },
    };
    let timers = pc.timers();
    let gr = pc.graceful_restart();
    let families_cfg = pc.families();
    let mut families = Vec::new();
    let mut export = Exports::default();
    let mut service_adverts = Vec::new();
    for (fi, f) in families_cfg.iter().enumerate() {
        // A family the speaker does not run is left out of the session and reported on the
        // PeerConfig; the peer runs its other families.
        let family = match family_of(f.afi, f.safi) {
            Ok(family) => family,
            Err(e) => {
                problems.push(problem(
                    pc_or_cc.clone(),
                    types::UNSUPPORTED,
                    reasons::INVALID,
                    format!("peer {}: {e}", p.name),
                ));
                continue;
            }
        };
        let family_idx = u16::try_from(fi).unwrap_or(u16::MAX);
        families.push(family);
        let adv_sel =
            match Selector::compile_optional(f.advertisements.as_ref(), NilSelector::MatchesNone) {
                Ok(s) => s,
                Err(e) => {
                    problems.push(problem(
                        pc_or_cc.clone(),
                        types::INVALID_CONFIGURATION,
                        reasons::INVALID,
                        format!("peer {}: advertisements selector: {e}", p.name),
                    ));
                    continue;
                }
            };
        let adverts: Vec<&CiliumBGPAdvertisement> = snap
            .bgp_advertisements()
            .filter(|a| adv_sel.matches(&a.metadata.labels.as_ref()))
            .collect();
        for a in adverts {
            let adv_name = a.metadata.name.clone().unwrap_or_default();
            for (ei, adv) in a.spec.advertisements.iter().enumerate() {
                let entry = u16::try_from(ei).unwrap_or(u16::MAX);
                let (communities, large_communities, local_pref) = attributes(adv);
                let base = format!(
                    "{}-{}-{:?}",
                    p.name,
                    family.afi_name(),
                    adv.advertisement_type
                );
                let key = |resource| ExportKey {
                    family: family_idx,
                    advertisement: adv_name.clone(),
                    entry,
                    resource,
                };
                let policy = |name: String, prefixes: Vec<IpNet>| ExportPolicy {
                    name,
                    family,
                    prefixes,
                    communities: communities.clone(),
                    large_communities: large_communities.clone(),
                    local_pref,
                };
                match adv.advertisement_type {
                    AdvertisementType::PodCIDR => {
                        let cidrs: Vec<IpNet> = node
                            .and_then(|n| n.spec.as_ref())
                            .map(|s| {
                                s.pod_cidrs
                                    .iter()
                                    .flatten()
                                    .chain(s.pod_cidr.iter())
                                    .filter_map(|c| c.parse::<IpNet>().ok())
                                    .filter(|c| in_family(&c.addr(), family))
                                    .map(|c| c.trunc())
                                    .collect::<std::collections::BTreeSet<_>>()
                                    .into_iter()
                                    .collect()
                            })
                            .unwrap_or_default();
                        if !cidrs.is_empty() {
                            export.insert(key(Resource::PodCidr), policy(base, cidrs), routes);
                        }
                    }
                    AdvertisementType::Service => {
                        let Some(sa) = ServiceAdvert::new(
                            family_idx,
                            family,
                            &adv_name,
                            entry,
                            base,
                            adv,
                            (communities.clone(), large_communities.clone(), local_pref),
                        ) else {
                            continue;
                        };
                        match sa {
                            Ok(sa) => {
                                sa.render_all(snap, input, &mut export, routes);
                                service_adverts.push(sa);
                            }
                            Err(e) => problems.push(problem(
                                ObjectKey::cluster(Kind::BgpAdvertisement, &adv_name),
                                types::INVALID_CONFIGURATION,
                                reasons::INVALID,
                                format!("service selector: {e}"),
                            )),
                        }
                    }
                    AdvertisementType::Interface => {
                        let Some(ifname) = adv.interface.as_ref().map(|i| i.name.clone()) else {
                            continue;
                        };
                        let prefixes: Vec<IpNet> = input
                            .host
                            .interfaces
                            .get(&ifname)
                            .into_iter()
                            .flatten()
                            .filter(|ip| in_family(ip, family))
                            .map(|ip| host_route(*ip))
                            .collect();
                        if !prefixes.is_empty() {
                            export.insert(
                                key(Resource::Interface(ifname.clone())),
                                policy(format!("{base}-{ifname}"), prefixes),
                                routes,
                            );
                        }
                    }
                    AdvertisementType::EgressGateway => {
                        match egress::entry_routes(snap, adv, family, &input.egress) {
                            Ok(per_policy) => {
                                for (policy_name, prefixes) in per_policy {
                                    export.insert(
                                        key(Resource::EgressPolicy(policy_name.clone())),
                                        policy(format!("{base}-{policy_name}"), prefixes),
                                        routes,
                                    );
                                }
                            }
                            Err(e) => problems.push(problem(
                                ObjectKey::cluster(Kind::BgpAdvertisement, &adv_name),
                                types::INVALID_CONFIGURATION,
                                reasons::INVALID,
                                format!("egress gateway policy selector: {e}"),
                            )),
                        }
                    }
                    AdvertisementType::CiliumPodIPPool => {
                        problems.push(problem(
                            ObjectKey::cluster(Kind::BgpAdvertisement, &adv_name),
                            types::UNSUPPORTED,
                            "CiliumPodIPPool",
                            "CiliumPodIPPool advertisements need Cilium's multi-pool IPAM, which rackd does not run; ignored".into(),
                        ));
                    }
                }
            }
        }
    }
    let ttl = u8::try_from(pc.ebgp_multihop).unwrap_or(1).max(1);
    Some(Peer {
        name: p.name.clone(),
        address,
        interface,
        peer_asn: u32::try_from(p.peer_asn).unwrap_or(0),
        peer_port: u16::try_from(pc.peer_port()).unwrap_or(179),
        local_address: povr
            .and_then(|o| o.local_address.as_deref())
            .and_then(|a| a.parse().ok()),
        local_port: povr
            .and_then(|o| o.local_port)
            .and_then(|p| u16::try_from(p).ok()),
        source_interface: pc
            .transport
            .as_ref()
            .and_then(|t| t.source_interface.clone()),
        connect_retry_secs: u32::try_from(timers.connect_retry).unwrap_or(120),
        hold_secs: u16::try_from(timers.hold).unwrap_or(90),
        keepalive_secs: u16::try_from(timers.keepalive).unwrap_or(30),
        ttl,
        password,
        graceful_restart: gr
            .enabled
            .then(|| u16::try_from(gr.restart_time_seconds).unwrap_or(120)),
        bfd: pc
            .bfd
            .as_ref()
            .filter(|b| b.enabled)
            .map(|b| bgpd::BfdConfig {
                desired_min_tx_us: u32::try_from(b.desired_min_tx_interval_microseconds)
                    .unwrap_or(u32::MAX)
                    .max(1),
                required_min_rx_us: u32::try_from(b.required_min_rx_interval_microseconds)
                    .unwrap_or(u32::MAX)
                    .max(1),
                detect_mult: u8::try_from(b.detect_multiplier).unwrap_or(u8::MAX).max(1),
            }),
        families,
        export,
        service_adverts: service_adverts.into(),
    })
}
