//! Pure rendering of this node's BGP configuration from the resource snapshot: what
//! Cilium's operator (ClusterConfig + Override → NodeConfig) and agent reconcilers
//! (PodCIDR, Service, Interface advertisements → export policies) do, as one function of
//! the snapshot, the node name and a few host facts. No I/O: the reconciler diffs the
//! result against the running speaker.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use bgpd_wire::Family;
use ipnet::IpNet;
use rackd_model::cilium::{
    AdvertisementType, Afi, BGPAdvertisement, CiliumBGPAdvertisement, ServiceAddressType,
};
use rackd_model::k8s_openapi::api::core::v1::{Node, Service};
use rackd_model::selector::{NilSelector, Selector, ServiceLabels};
use rackd_model::{Snapshot, secret_value};

/// Cilium's `BGPLoadBalancerClass`.
pub const BGP_LB_CLASS: &str = "io.cilium/bgp-control-plane";

/// Host facts the renderer needs (gathered by the daemon through netlink).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostInfo {
    /// Addresses per interface name.
    pub interfaces: BTreeMap<String, Vec<IpAddr>>,
    /// Default gateway per family (for `autoDiscovery: DefaultGateway`).
    pub default_gateway_v4: Option<IpAddr>,
    pub default_gateway_v6: Option<IpAddr>,
}

/// Everything this node should run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Desired {
    /// The ClusterConfig that selected this node, if any.
    pub cluster_config: Option<String>,
    pub instances: BTreeMap<String, Instance>,
    /// Why something could not be rendered (Cilium would set a condition).
    pub problems: Vec<String>,
}

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
    pub routes: BTreeSet<IpNet>,
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
    pub families: Vec<Family>,
    pub export: Vec<ExportPolicy>,
}

/// One rendered export policy: Cilium names them `<peer>-<afi>-<Type>[-<resource>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportPolicy {
    pub name: String,
    pub family: Family,
    pub prefixes: Vec<IpNet>,
    pub communities: Vec<u32>,
    pub large_communities: Vec<[u32; 3]>,
    pub local_pref: Option<u32>,
}

/// Inputs besides the snapshot.
#[derive(Debug, Clone, Default)]
pub struct RenderInput<'a> {
    pub node_name: &'a str,
    pub host: HostInfo,
    /// LoadBalancer IPs per `(namespace, name)` (from LB-IPAM or Service status).
    pub lb_ips: BTreeMap<(String, String), Vec<IpAddr>>,
    /// Namespace of BGP auth Secrets.
    pub secrets_namespace: &'a str,
}

fn family_of(afi: Afi) -> Option<Family> {
    match afi {
        Afi::Ipv4 => Some(Family::Ipv4Unicast),
        Afi::Ipv6 => Some(Family::Ipv6Unicast),
        _ => None,
    }
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

/// Whether the node has a ready local endpoint for the service (EndpointSlices labelled
/// `kubernetes.io/service-name`).
fn has_local_endpoint(snap: &Snapshot, svc_ns: &str, svc_name: &str, node: &str) -> bool {
    snap.endpoint_slices().any(|es| {
        es.metadata.namespace.as_deref().unwrap_or("default") == svc_ns
            && es
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("kubernetes.io/service-name"))
                .is_some_and(|n| n == svc_name)
            && es.endpoints.iter().flatten().any(|ep| {
                ep.node_name.as_deref() == Some(node)
                    && ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true)
            })
    })
}

fn aggregate(ip: IpAddr, len: Option<i16>) -> IpNet {
    match (ip, len) {
        (IpAddr::V4(_), Some(l)) if (0..=32).contains(&l) => IpNet::new(ip, l as u8)
            .map(|n| n.trunc())
            .unwrap_or_else(|_| host_route(ip)),
        (IpAddr::V6(_), Some(l)) if (0..=128).contains(&l) => IpNet::new(ip, l as u8)
            .map(|n| n.trunc())
            .unwrap_or_else(|_| host_route(ip)),
        _ => host_route(ip),
    }
}

/// Service routes of one advertisement entry for one family: `(resource id, prefixes)`.
fn service_routes(
    snap: &Snapshot,
    input: &RenderInput<'_>,
    adv: &BGPAdvertisement,
    family: Family,
    problems: &mut Vec<String>,
) -> Vec<(String, Vec<IpNet>)> {
    let Some(opts) = adv.service.as_ref() else {
        return Vec::new();
    };
    let sel = match Selector::compile_optional(adv.selector.as_ref(), NilSelector::MatchesNone) {
        Ok(s) => s,
        Err(e) => {
            problems.push(format!("advertisement service selector: {e}"));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for svc in snap.services() {
        let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
        let name = svc.metadata.name.as_deref().unwrap_or_default();
        let labels = ServiceLabels {
            labels: svc.metadata.labels.as_ref(),
            namespace: ns,
            name,
        };
        if !sel.matches(&labels) {
            continue;
        }
        for addr in &opts.addresses {
            let ips = service_addresses(snap, input, svc, ns, name, *addr);
            let agg = if family == Family::Ipv4Unicast {
                opts.aggregation_length_ipv4
            } else {
                opts.aggregation_length_ipv6
            };
            let mut prefixes: Vec<IpNet> = ips
                .into_iter()
                .filter(|ip| in_family(ip, family))
                .map(|ip| {
                    if is_local_policy(svc, *addr) {
                        host_route(ip)
                    } else {
                        aggregate(ip, agg)
                    }
                })
                .collect();
            prefixes.sort();
            prefixes.dedup();
            if !prefixes.is_empty() {
                let kind = match addr {
                    ServiceAddressType::LoadBalancerIP => "LoadBalancerIP",
                    ServiceAddressType::ClusterIP => "ClusterIP",
                    ServiceAddressType::ExternalIP => "ExternalIP",
                };
                out.push((format!("{name}-{ns}-{kind}"), prefixes));
            }
        }
    }
    out
}

fn is_local_policy(svc: &Service, addr: ServiceAddressType) -> bool {
    let spec = svc.spec.as_ref();
    match addr {
        ServiceAddressType::ClusterIP => {
            spec.and_then(|s| s.internal_traffic_policy.as_deref()) == Some("Local")
        }
        _ => spec.and_then(|s| s.external_traffic_policy.as_deref()) == Some("Local"),
    }
}

fn service_addresses(
    snap: &Snapshot,
    input: &RenderInput<'_>,
    svc: &Service,
    ns: &str,
    name: &str,
    addr: ServiceAddressType,
) -> Vec<IpAddr> {
    let Some(spec) = svc.spec.as_ref() else {
        return Vec::new();
    };
    if is_local_policy(svc, addr) && !has_local_endpoint(snap, ns, name, input.node_name) {
        return Vec::new();
    }
    match addr {
        ServiceAddressType::LoadBalancerIP => {
            if spec.type_.as_deref() != Some("LoadBalancer") {
                return Vec::new();
            }
            match spec.load_balancer_class.as_deref() {
                None | Some(BGP_LB_CLASS) => {}
                Some(_) => return Vec::new(),
            }
            crate::lbipam_ctl::service_addresses(&input.lb_ips, svc, ns, name)
        }
        ServiceAddressType::ClusterIP => {
            let mut ips: Vec<IpAddr> = spec
                .cluster_ips
                .iter()
                .flatten()
                .chain(spec.cluster_ip.iter())
                .filter_map(|s| s.parse().ok())
                .collect();
            ips.sort();
            ips.dedup();
            ips
        }
        ServiceAddressType::ExternalIP => spec
            .external_ips
            .iter()
            .flatten()
            .filter_map(|s| s.parse().ok())
            .collect(),
    }
}

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

/// Render this node's BGP configuration.
pub fn render(snap: &Snapshot, input: &RenderInput<'_>) -> Desired {
    let mut d = Desired::default();
    let node = snap.node(input.node_name);
    let labels = node_labels(node);

    // First matching ClusterConfig (by name) wins, like Cilium's "first owner wins".
    let mut selected = Vec::new();
    for cc in snap.bgp_cluster_configs() {
        let name = cc.metadata.name.clone().unwrap_or_default();
        match Selector::compile_optional(cc.spec.node_selector.as_ref(), NilSelector::MatchesAll) {
            Ok(sel) if sel.matches(&labels) => selected.push((name, cc)),
            Ok(_) => {}
            Err(e) => d
                .problems
                .push(format!("CiliumBGPClusterConfig {name}: nodeSelector: {e}")),
        }
    }
    let Some((cc_name, cc)) = selected.first().cloned() else {
        return d;
    };
    for (other, _) in selected.iter().skip(1) {
        d.problems.push(format!(
            "CiliumBGPClusterConfig {other} also selects node {} (cilium.io/ConflictingClusterConfig); {cc_name} applies",
            input.node_name
        ));
    }
    d.cluster_config = Some(cc_name.clone());
    let ovr = snap.bgp_node_config_override(input.node_name);

    for inst in &cc.spec.bgp_instances {
        let iovr = ovr.and_then(|o| o.spec.bgp_instances.iter().find(|i| i.name == inst.name));
        let Some(asn) = iovr
            .and_then(|o| o.local_asn)
            .or(inst.local_asn)
            .and_then(|a| u32::try_from(a).ok())
            .filter(|a| *a != 0)
        else {
            d.problems.push(format!(
                "CiliumBGPClusterConfig {cc_name}: instance {}: no localASN (set it here or in a CiliumBGPNodeConfigOverride)",
                inst.name
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
            routes: BTreeSet::new(),
        };
        for p in &inst.peers {
            let povr = iovr.and_then(|o| o.peers.iter().find(|x| x.name == p.name));
            match render_peer(snap, input, node, &labels, p, povr, &mut d.problems) {
                Some(peer) => {
                    for e in &peer.export {
                        instance.routes.extend(e.prefixes.iter().copied());
                    }
                    instance.peers.insert(peer.name.clone(), peer);
                }
                None => continue,
            }
        }
        d.instances.insert(instance.name.clone(), instance);
    }
    d
}

fn render_peer(
    snap: &Snapshot,
    input: &RenderInput<'_>,
    node: Option<&Node>,
    _node_labels: &BTreeMap<String, String>,
    p: &rackd_model::cilium::CiliumBGPPeer,
    povr: Option<&rackd_model::cilium::CiliumBGPNodeConfigPeerOverride>,
    problems: &mut Vec<String>,
) -> Option<Peer> {
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
                    problems.push(format!(
                        "peer {}: peerAddress {a:?} is not an IP address",
                        p.name
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
                    problems.push(format!(
                        "peer {}: autoDiscovery found no default gateway of that family",
                        p.name
                    ));
                    return None;
                }
            }
        }
        (None, None) => {
            problems.push(format!(
                "peer {}: neither peerAddress nor autoDiscovery",
                p.name
            ));
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
    let pc = match p.peer_config_ref.as_ref() {
        Some(r) => match snap.bgp_peer_config(&r.name) {
            Some(pc) => &pc.spec,
            None => {
                problems.push(format!(
                    "peer {}: CiliumBGPPeerConfig {} does not exist (cilium.io/MissingPeerConfigs)",
                    p.name, r.name
                ));
                return None;
            }
        },
        None => {
            default_pc = rackd_model::cilium::CiliumBGPPeerConfigSpec::default();
            &default_pc
        }
    };
    let password = match pc.auth_secret_ref.as_deref() {
        None => None,
        Some(s) => match snap
            .secret(input.secrets_namespace, s)
            .and_then(|sec| secret_value(sec, "password"))
        {
            Some(pw) => Some(pw.to_vec()),
            None => {
                problems.push(format!(
                    "peer {}: Secret {}/{s} with key \"password\" not found (cilium.io/MissingAuthSecret)",
                    p.name, input.secrets_namespace
                ));
                return None;
            }
        },
    };
    let timers = pc.timers();
    let gr = pc.graceful_restart();
    let families_cfg = pc.families();
    let mut families = Vec::new();
    let mut export = Vec::new();
    for f in &families_cfg {
        let Some(family) = family_of(f.afi) else {
            problems.push(format!(
                "peer {}: family {:?} is not supported",
                p.name, f.afi
            ));
            continue;
        };
        families.push(family);
        let adv_sel =
            match Selector::compile_optional(f.advertisements.as_ref(), NilSelector::MatchesNone) {
                Ok(s) => s,
                Err(e) => {
                    problems.push(format!("peer {}: advertisements selector: {e}", p.name));
                    continue;
                }
            };
        let adverts: Vec<&CiliumBGPAdvertisement> = snap
            .bgp_advertisements()
            .filter(|a| adv_sel.matches(&a.metadata.labels.as_ref()))
            .collect();
        for a in adverts {
            for adv in &a.spec.advertisements {
                let (communities, large_communities, local_pref) = attributes(adv);
                let base = format!(
                    "{}-{}-{:?}",
                    p.name,
                    family.afi_name(),
                    adv.advertisement_type
                );
                let mut push = |name: String, prefixes: Vec<IpNet>| {
                    if !prefixes.is_empty() {
                        export.push(ExportPolicy {
                            name,
                            family,
                            prefixes,
                            communities: communities.clone(),
                            large_communities: large_communities.clone(),
                            local_pref,
                        });
                    }
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
                                    .collect::<BTreeSet<_>>()
                                    .into_iter()
                                    .collect()
                            })
                            .unwrap_or_default();
                        push(base, cidrs);
                    }
                    AdvertisementType::Service => {
                        for (id, prefixes) in service_routes(snap, input, adv, family, problems) {
                            push(format!("{base}-{id}"), prefixes);
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
                        push(format!("{base}-{ifname}"), prefixes);
                    }
                    AdvertisementType::CiliumPodIPPool => {
                        problems.push(format!(
                            "CiliumBGPAdvertisement {}: CiliumPodIPPool advertisements need Cilium's multi-pool IPAM, which rackd does not run; ignored",
                            a.metadata.name.as_deref().unwrap_or_default()
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
        families,
        export,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rackd_model::{CheckOptions, parse_documents};

    fn lab_snapshot(extra: &str) -> Snapshot {
        let (snap, errors) = lab_snapshot_errors(extra);
        assert!(errors.is_empty(), "{errors:#?}");
        snap
    }

    fn lab_snapshot_errors(extra: &str) -> (Snapshot, Vec<rackd_model::ConfigError>) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/lab");
        let mut parsed = Vec::new();
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        names.sort();
        for p in names {
            let text = std::fs::read_to_string(&p).unwrap();
            parsed.push(parse_documents(&p.display().to_string(), &text));
        }
        if !extra.is_empty() {
            parsed.push(parse_documents("extra.yaml", extra));
        }
        let out = Snapshot::build(&parsed, &CheckOptions::default());
        (out.snapshot, out.errors)
    }

    fn input(node: &str) -> RenderInput<'_> {
        RenderInput {
            node_name: node,
            secrets_namespace: "kube-system",
            ..Default::default()
        }
    }

    #[test]
    fn lab_node1_renders_peers_and_policies() {
        let snap = lab_snapshot("");
        let d = render(&snap, &input("node1"));
        assert!(d.problems.is_empty(), "{:?}", d.problems);
        assert_eq!(d.cluster_config.as_deref(), Some("cilium-bgp"));
        let inst = &d.instances["rack"];
        assert_eq!(inst.local_asn, 65001);
        assert_eq!(inst.router_id, "10.0.1.2".parse::<Ipv4Addr>().unwrap());
        assert_eq!(inst.listen_port, None, "unset localPort means no listener");
        let v4 = &inst.peers["tor-v4"];
        assert_eq!(v4.address, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(v4.peer_asn, 65000);
        assert_eq!(
            (v4.hold_secs, v4.keepalive_secs, v4.connect_retry_secs),
            (9, 3, 5)
        );
        assert_eq!(v4.password.as_deref(), Some(&b"cilium123"[..]));
        assert_eq!(v4.graceful_restart, Some(15));
        assert_eq!(v4.families, vec![Family::Ipv4Unicast, Family::Ipv6Unicast]);
        let names: Vec<&str> = v4.export.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "tor-v4-ipv4-PodCIDR",
                "tor-v4-ipv4-Service-web-default-ExternalIP",
                "tor-v4-ipv6-PodCIDR",
                "tor-v4-ipv6-Service-web-default-ExternalIP",
            ]
        );
        let pod4 = &v4.export[0];
        assert_eq!(pod4.prefixes, vec!["10.1.1.0/24".parse::<IpNet>().unwrap()]);
        assert_eq!(pod4.communities, vec![(65000 << 16) | 99]);
        let svc4 = &v4.export[1];
        assert_eq!(
            svc4.prefixes,
            vec!["20.0.10.1/32".parse::<IpNet>().unwrap()]
        );
        assert_eq!(svc4.large_communities, vec![[65000, 1, 100]]);
        assert!(inst.routes.contains(&"2004::1/128".parse().unwrap()));
        assert!(inst.routes.contains(&"fd00:10:1:1::/64".parse().unwrap()));
    }

    #[test]
    fn override_sets_asn_and_unselected_node_gets_nothing() {
        let snap = lab_snapshot("apiVersion: v1\nkind: Node\nmetadata: {name: outsider}\n");
        let d = render(&snap, &input("node2"));
        assert_eq!(d.instances["rack"].local_asn, 65002);
        let d = render(&snap, &input("outsider"));
        assert!(d.instances.is_empty());
        assert!(d.cluster_config.is_none());
    }

    #[test]
    fn etp_local_needs_a_local_endpoint() {
        let svc = r#"
apiVersion: v1
kind: Service
metadata: {name: local, namespace: default}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  ports: [{port: 80, protocol: TCP}]
status:
  loadBalancer:
    ingress: [{ip: 20.0.10.7}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: local-abc
  namespace: default
  labels: {kubernetes.io/service-name: local}
addressType: IPv4
endpoints:
- addresses: [10.1.2.9]
  nodeName: node2
  conditions: {ready: true}
"#;
        let snap = lab_snapshot(svc);
        let lb: IpNet = "20.0.10.7/32".parse().unwrap();
        let d1 = render(&snap, &input("node1"));
        assert!(!d1.instances["rack"].routes.contains(&lb));
        let d2 = render(&snap, &input("node2"));
        assert!(d2.instances["rack"].routes.contains(&lb));
    }

    fn export<'a>(d: &'a Desired, peer: &str, name: &str) -> Option<&'a ExportPolicy> {
        d.instances["rack"].peers[peer]
            .export
            .iter()
            .find(|e| e.name == name)
    }

    fn nets(v: &[&str]) -> Vec<IpNet> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn interface_advertisement_announces_each_address_as_a_host_route() {
        let snap = lab_snapshot(
            r#"
apiVersion: cilium.io/v2
kind: CiliumBGPAdvertisement
metadata: {name: iface, labels: {advertise: bgp}}
spec:
  advertisements:
  - advertisementType: Interface
    interface: {name: rk0}
    attributes:
      communities: {standard: ["65000:7"], wellKnown: [no-export]}
      localPreference: 200
  - advertisementType: Interface
    interface: {name: absent0}
"#,
        );
        let mut inp = input("node1");
        inp.host.interfaces.insert(
            "rk0".into(),
            vec![
                "10.99.0.2".parse().unwrap(),
                "10.99.0.1".parse().unwrap(),
                "fd00:99::1".parse().unwrap(),
            ],
        );
        let d = render(&snap, &inp);
        assert!(d.problems.is_empty(), "{:?}", d.problems);
        let v4 = export(&d, "tor-v4", "tor-v4-ipv4-Interface-rk0").unwrap();
        assert_eq!(v4.prefixes, nets(&["10.99.0.2/32", "10.99.0.1/32"]));
        assert_eq!(v4.communities, vec![(65000 << 16) | 7, 0xFFFF_FF01]);
        assert_eq!(v4.local_pref, Some(200));
        // ... and reaches bgpd's export policy for that peer (LOCAL_PREF is sent on iBGP only,
        // RFC 4271 §5.1.5; bgpd's GoBGP test shows it on the wire).
        let pc = crate::bgp::reconcile::peer_config(
            &d.instances["rack"].peers["tor-v4"],
            &crate::bgp::reconcile::NodeAddrs::default(),
        );
        let st = pc
            .export
            .statements
            .iter()
            .find(|st| {
                st.prefixes
                    .iter()
                    .any(|m| m.prefix == "10.99.0.1/32".parse::<IpNet>().unwrap())
            })
            .unwrap();
        assert_eq!(st.actions.local_pref, Some(200));
        assert_eq!(
            st.actions.add_communities,
            vec![(65000 << 16) | 7, 0xFFFF_FF01]
        );
        let v6 = export(&d, "tor-v4", "tor-v4-ipv6-Interface-rk0").unwrap();
        assert_eq!(v6.prefixes, nets(&["fd00:99::1/128"]));
        // An interface this host does not have advertises nothing and is no error.
        assert!(
            d.instances["rack"].peers["tor-v4"]
                .export
                .iter()
                .all(|e| !e.name.contains("absent0"))
        );
        assert!(
            d.instances["rack"]
                .routes
                .contains(&"10.99.0.1/32".parse().unwrap())
        );
        // Its addresses follow the host: gone from the interface, gone from the policy.
        let mut inp = input("node1");
        inp.host.interfaces.insert("rk0".into(), Vec::new());
        let d = render(&snap, &inp);
        assert!(export(&d, "tor-v4", "tor-v4-ipv4-Interface-rk0").is_none());
    }

    #[test]
    fn cluster_ips_aggregate_unless_the_internal_policy_is_local() {
        let snap = lab_snapshot(
            r#"
apiVersion: cilium.io/v2
kind: CiliumBGPAdvertisement
metadata: {name: cluster, labels: {advertise: bgp}}
spec:
  advertisements:
  - advertisementType: Service
    service:
      addresses: [ClusterIP]
      aggregationLengthIPv4: 24
      aggregationLengthIPv6: 64
    selector: {matchLabels: {expose: cluster}}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: default, labels: {expose: cluster}}
spec:
  type: ClusterIP
  clusterIP: 10.2.7.10
  clusterIPs: [10.2.7.10, "fd00:2::7:10"]
  ports: [{port: 443, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: dns, namespace: default, labels: {expose: cluster}}
spec:
  type: ClusterIP
  clusterIP: 10.2.8.53
  internalTrafficPolicy: Local
  ports: [{port: 53, protocol: UDP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: dns-1
  namespace: default
  labels: {kubernetes.io/service-name: dns}
addressType: IPv4
endpoints:
- addresses: [10.1.2.53]
  nodeName: node2
"#,
        );
        let d1 = render(&snap, &input("node1"));
        assert!(d1.problems.is_empty(), "{:?}", d1.problems);
        let api4 = export(&d1, "tor-v4", "tor-v4-ipv4-Service-api-default-ClusterIP").unwrap();
        assert_eq!(api4.prefixes, nets(&["10.2.7.0/24"]));
        let api6 = export(&d1, "tor-v4", "tor-v4-ipv6-Service-api-default-ClusterIP").unwrap();
        assert_eq!(api6.prefixes, nets(&["fd00:2::/64"]));
        // internalTrafficPolicy Local: only a node with a local endpoint, and never aggregated
        // (an aggregate would draw traffic for other nodes' endpoints).
        assert!(export(&d1, "tor-v4", "tor-v4-ipv4-Service-dns-default-ClusterIP").is_none());
        let d2 = render(&snap, &input("node2"));
        let dns = export(&d2, "tor-v4", "tor-v4-ipv4-Service-dns-default-ClusterIP").unwrap();
        assert_eq!(dns.prefixes, nets(&["10.2.8.53/32"]));
        // The lab's `web` is not labelled `expose: cluster`: its ClusterIP stays unadvertised.
        assert!(
            !d1.instances["rack"]
                .routes
                .contains(&"10.2.0.0/24".parse().unwrap())
        );
        assert!(
            !d1.instances["rack"]
                .routes
                .contains(&"10.2.0.10/32".parse().unwrap())
        );
    }

    #[test]
    fn peer_config_and_node_override_reach_the_session() {
        let snap = lab_snapshot(
            r#"
apiVersion: v1
kind: Node
metadata: {name: edge, labels: {role: edge}}
spec: {podCIDRs: [10.9.0.0/24]}
---
apiVersion: cilium.io/v2
kind: CiliumBGPClusterConfig
metadata: {name: edge-bgp}
spec:
  nodeSelector: {matchLabels: {role: edge}}
  bgpInstances:
  - name: edge
    localASN: 64600
    peers:
    - {name: far, peerAddress: 192.0.2.9, peerASN: 64700, peerConfigRef: {name: far-peer}}
---
apiVersion: cilium.io/v2
kind: CiliumBGPPeerConfig
metadata: {name: far-peer}
spec:
  ebgpMultihop: 3
  transport: {peerPort: 1179}
  gracefulRestart: {enabled: false}
  families:
  - afi: ipv6
    safi: unicast
    advertisements: {matchLabels: {advertise: bgp}}
---
apiVersion: cilium.io/v2
kind: CiliumBGPNodeConfigOverride
metadata: {name: edge}
spec:
  bgpInstances:
  - name: edge
    routerID: 192.0.2.200
    localPort: 1790
    localASN: 64601
    peers:
    - {name: far, localAddress: 192.0.2.100, localPort: 40179}
"#,
        );
        let d = render(&snap, &input("edge"));
        assert!(d.problems.is_empty(), "{:?}", d.problems);
        assert_eq!(d.cluster_config.as_deref(), Some("edge-bgp"));
        let inst = &d.instances["edge"];
        assert_eq!(inst.local_asn, 64601);
        assert_eq!(inst.router_id, "192.0.2.200".parse::<Ipv4Addr>().unwrap());
        assert_eq!(inst.listen_port, Some(1790));
        let far = &inst.peers["far"];
        assert_eq!(far.peer_asn, 64700);
        assert_eq!(far.peer_port, 1179);
        assert_eq!(far.ttl, 3);
        assert_eq!(far.graceful_restart, None);
        // No `timers` at all: Cilium's defaults.
        assert_eq!(
            (far.connect_retry_secs, far.hold_secs, far.keepalive_secs),
            (120, 90, 30)
        );
        assert_eq!(far.local_address, Some("192.0.2.100".parse().unwrap()));
        assert_eq!(far.local_port, Some(40179));
        assert_eq!(far.password, None);
        // Only the family it names, so only IPv6 routes (the node's PodCIDR is IPv4).
        assert_eq!(far.families, vec![Family::Ipv6Unicast]);
        let names: Vec<&str> = far.export.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, vec!["far-ipv6-Service-web-default-ExternalIP"]);
        assert_eq!(far.export[0].prefixes, nets(&["2004::1/128"]));
    }

    /// Graceful restart is a per-peer matter for the reconciler: the speaker's configuration
    /// (whose change would restart it, resetting every session) does not depend on any peer's
    /// GR setting; the restart time travels in that peer's own configuration.
    #[test]
    fn graceful_restart_changes_stay_with_their_peer() {
        use crate::bgp::reconcile::{NodeAddrs, peer_config, speaker_config};
        let snap = lab_snapshot("");
        let d = render(&snap, &input("node1"));
        let mut inst = d.instances["rack"].clone();
        let before = speaker_config(&inst, false);
        let v4 = peer_config(&inst.peers["tor-v4"], &NodeAddrs::default());
        assert!(v4.graceful_restart);
        assert_eq!(v4.restart_time, Some(15));
        if let Some(p) = inst.peers.get_mut("tor-v4") {
            p.graceful_restart = Some(300);
        }
        if let Some(p) = inst.peers.get_mut("tor-v6") {
            p.graceful_restart = None;
        }
        assert_eq!(speaker_config(&inst, false), before);
        let v4 = peer_config(&inst.peers["tor-v4"], &NodeAddrs::default());
        assert_eq!(v4.restart_time, Some(300));
        let v6 = peer_config(&inst.peers["tor-v6"], &NodeAddrs::default());
        assert!(!v6.graceful_restart);
        for p in inst.peers.values_mut() {
            p.graceful_restart = None;
        }
        assert_eq!(speaker_config(&inst, false), before);
    }

    /// The reconciler against real (in-process) bgpd speakers: level-triggered and
    /// idempotent. The same desired state twice changes nothing the second time; one changed
    /// peer is one update; one route more is one route added; a GR change never restarts
    /// the speaker. Peers point at closed loopback ports, so nothing leaves the machine.
    #[tokio::test]
    async fn reconcile_is_idempotent_and_touches_only_what_changed() {
        use crate::bgp::reconcile::{Applied, NodeAddrs, Reconciler};
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let snap = lab_snapshot("");
        let mut d = render(&snap, &input("node1"));
        for (i, p) in d
            .instances
            .get_mut("rack")
            .unwrap()
            .peers
            .values_mut()
            .enumerate()
        {
            p.address = format!("127.0.0.{}", 10 + i).parse().unwrap();
            p.peer_port = closed;
        }
        let node = NodeAddrs::default();
        let mut r = Reconciler::new(false);
        assert!(r.reconcile(&d, &node).await.is_empty());
        let first = r.applied();
        assert_eq!(
            first,
            Applied {
                speakers_started: 1,
                peers_added: 2,
                routes_added: d.instances["rack"].routes.len() as u64,
                ..Applied::default()
            }
        );
        async fn peers(r: &Reconciler) -> usize {
            let (_, s, _) = r.speakers().next().unwrap();
            s.peers().await.unwrap().len()
        }
        assert_eq!(peers(&r).await, 2);

        // Level-triggered: the same input again (as every resync tick does) changes nothing.
        for _ in 0..3 {
            assert!(r.reconcile(&d, &node).await.is_empty());
        }
        assert_eq!(r.applied(), first);

        // One peer's keepalive: one update of that peer; one more route: one route added.
        let inst = d.instances.get_mut("rack").unwrap();
        inst.peers.get_mut("tor-v4").unwrap().keepalive_secs = 1;
        inst.routes.insert("198.51.100.0/24".parse().unwrap());
        assert!(r.reconcile(&d, &node).await.is_empty());
        let second = r.applied();
        assert_eq!(
            second,
            Applied {
                peers_updated: 1,
                routes_added: first.routes_added + 1,
                ..first
            }
        );
        let loc = r
            .speakers()
            .next()
            .map(|(_, s, _)| s)
            .unwrap()
            .routes(bgpd::RouteQuery {
                family: Family::Ipv4Unicast,
                rib: bgpd::RibKind::LocRib,
            })
            .await
            .unwrap();
        assert!(
            loc.iter()
                .any(|e| e.prefix.to_string() == "198.51.100.0/24")
        );

        // Graceful restart off for one peer: that peer is updated, the speaker keeps running.
        let inst = d.instances.get_mut("rack").unwrap();
        inst.peers.get_mut("tor-v6").unwrap().graceful_restart = None;
        assert!(r.reconcile(&d, &node).await.is_empty());
        assert_eq!(
            r.applied(),
            Applied {
                peers_updated: second.peers_updated + 1,
                ..second
            }
        );

        // A peer and a route gone: removed, once.
        let inst = d.instances.get_mut("rack").unwrap();
        inst.peers.remove("tor-v6");
        inst.routes.remove(&"198.51.100.0/24".parse().unwrap());
        assert!(r.reconcile(&d, &node).await.is_empty());
        assert!(r.reconcile(&d, &node).await.is_empty());
        let last = r.applied();
        assert_eq!((last.peers_removed, last.routes_removed), (1, 1));
        assert_eq!(last.speakers_started, 1);
        assert_eq!(peers(&r).await, 1);

        // A new ASN is a new speaker (the protocol requires it).
        d.instances.get_mut("rack").unwrap().local_asn = 65009;
        assert!(r.reconcile(&d, &node).await.is_empty());
        assert_eq!(
            (r.applied().speakers_stopped, r.applied().speakers_started),
            (1, 2)
        );
        r.shutdown().await;
    }

    #[test]
    fn missing_secret_and_peer_config_are_reported() {
        let (snap, errors) = lab_snapshot_errors(
            r#"
apiVersion: cilium.io/v2
kind: CiliumBGPClusterConfig
metadata: {name: aaa-first}
spec:
  nodeSelector: {matchLabels: {only: me}}
  bgpInstances:
  - name: x
    localASN: 64512
    peers:
    - {name: p, peerAddress: 192.0.2.1, peerASN: 64513, peerConfigRef: {name: nope}}
---
apiVersion: v1
kind: Node
metadata: {name: lonely, labels: {only: me}}
"#,
        );
        // The offline check reports it too; the renderer must still not configure the peer.
        assert_eq!(errors.len(), 1, "{errors:#?}");
        let d = render(&snap, &input("lonely"));
        assert!(d.instances.get("x").is_none_or(|i| i.peers.is_empty()));

        // The auth Secret looked up in another namespace than the lab's: both peers need it,
        // neither is configured without its password, and each says why (Cilium's
        // MissingAuthSecret condition).
        let snap = lab_snapshot("");
        let d = render(
            &snap,
            &RenderInput {
                secrets_namespace: "elsewhere",
                ..input("node1")
            },
        );
        assert!(d.instances["rack"].peers.is_empty());
        assert_eq!(d.problems.len(), 2, "{:?}", d.problems);
        assert!(
            d.problems.iter().all(|p| p.contains(
                "Secret elsewhere/bgp-auth-secret with key \"password\" not found (cilium.io/MissingAuthSecret)"
            )),
            "{:?}",
            d.problems
        );
    }
}
