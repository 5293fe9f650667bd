//! Table printers. Each mirrors the Cilium command it replaces (see
//! `cilium-compat.md` §7) so operators and their scripts see the same layout.

use std::fmt::Write as _;

use rackd_api::{
    AnnouncementView, BgpPeer, BgpRoute, BgpRoutePolicy, LeaseView, PoolView, ServiceView, Status,
};

use crate::tabwriter::TabWriter;

/// Go's `time.Duration.String()` of a duration rounded to whole seconds (`33m26s`, `1h0m5s`).
pub fn go_duration(nanos: u64) -> String {
    let secs = (nanos + 500_000_000) / 1_000_000_000;
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

/// `cilium bgp peers`: one row per family, node name on the node's first row only.
pub fn peers_table(nodes: &[(String, Vec<BgpPeer>)]) -> String {
    let mut tw = TabWriter::cilium();
    // A BFD column only when some peer runs BFD, so the table stays Cilium's otherwise.
    let bfd = nodes.iter().flat_map(|(_, p)| p).any(|p| p.bfd.is_some());
    if bfd {
        tw.line("Node\tLocal AS\tPeer AS\tPeer Address\tSession State\tBFD\tUptime\tFamily\tReceived\tAdvertised");
    } else {
        tw.line("Node\tLocal AS\tPeer AS\tPeer Address\tSession State\tUptime\tFamily\tReceived\tAdvertised");
    }
    let mut sorted: Vec<_> = nodes.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for (node, peers) in sorted {
        for (i, p) in peers.iter().enumerate() {
            let mut line = String::new();
            if i == 0 {
                line.push_str(node);
            }
            let _ = write!(
                line,
                "\t{}\t{}\t{}\t{}\t",
                p.local_asn, p.peer_asn, p.peer_address, p.session_state
            );
            if bfd {
                let s = p.bfd.as_ref().map_or("-", |b| b.state.as_str());
                let _ = write!(line, "{s}\t");
            }
            let _ = write!(line, "{}\t", go_duration(p.uptime_nanoseconds));
            if p.families.is_empty() {
                tw.line(&line);
                continue;
            }
            for (k, f) in p.families.iter().enumerate() {
                let mut l = if k == 0 {
                    line.clone()
                } else if bfd {
                    "\t\t\t\t\t\t\t".to_owned()
                } else {
                    "\t\t\t\t\t\t".to_owned()
                };
                let _ = write!(
                    l,
                    "{}/{}\t{}\t{}\t",
                    f.afi, f.safi, f.received, f.advertised
                );
                tw.line(&l);
            }
        }
    }
    tw.finish()
}

/// `cilium bgp routes available|advertised`: Node, VRouter, [Peer,] Prefix, NextHop, Age, Attrs.
pub fn routes_table(node: &str, advertised: bool, routes: &[BgpRoute]) -> String {
    let mut tw = TabWriter::cilium();
    if advertised {
        tw.line("Node\tVRouter\tPeer\tPrefix\tNextHop\tAge\tAttrs");
    } else {
        tw.line("Node\tVRouter\tPrefix\tNextHop\tAge\tAttrs");
    }
    let mut sorted: Vec<&BgpRoute> = routes.iter().collect();
    sorted.sort_by(|a, b| {
        (a.router_asn, &a.neighbor, &a.prefix).cmp(&(b.router_asn, &b.neighbor, &b.prefix))
    });
    for r in sorted {
        for p in &r.paths {
            let nh = if p.rackd_next_hop.is_empty() {
                "0.0.0.0"
            } else {
                &p.rackd_next_hop
            };
            let age = go_duration(p.age_nanoseconds);
            let line = if advertised {
                format!(
                    "{node}\t{}\t{}\t{}\t{nh}\t{age}\t{}\t",
                    r.router_asn, r.neighbor, r.prefix, p.rackd_attrs
                )
            } else {
                format!(
                    "{node}\t{}\t{}\t{nh}\t{age}\t{}\t",
                    r.router_asn, r.prefix, p.rackd_attrs
                )
            };
            tw.line(&line);
        }
    }
    tw.finish()
}

/// `cilium-dbg bgp route-policies` (newer header with Match Families).
pub fn route_policies_table(policies: &[BgpRoutePolicy]) -> String {
    let mut tw = TabWriter::cilium();
    tw.line("VRouter\tPolicy Name\tType\tMatch Peers\tMatch Families\tMatch Prefixes (Min..Max Len)\tRIB Action\tPath Actions");
    let mut sorted: Vec<&BgpRoutePolicy> = policies.iter().collect();
    sorted.sort_by(|a, b| (a.router_asn, &a.name).cmp(&(b.router_asn, &b.name)));
    for p in sorted {
        for (i, s) in p.statements.iter().enumerate() {
            let head = if i == 0 {
                format!("{}\t{}\t{}\t", p.router_asn, p.name, p.kind)
            } else {
                "\t\t\t".to_owned()
            };
            let peers = s
                .match_neighbors
                .as_ref()
                .map(|m| multi(&m.kind, &m.neighbors))
                .unwrap_or_default();
            let fams: Vec<String> = s
                .match_families
                .iter()
                .map(|f| format!("{}/{}", f.afi, f.safi))
                .collect();
            let prefixes = s
                .match_prefixes
                .as_ref()
                .map(|m| {
                    let cells: Vec<String> = m
                        .prefixes
                        .iter()
                        .map(|p| format!("{} ({}..{})", p.cidr, p.prefix_len_min, p.prefix_len_max))
                        .collect();
                    multi(&m.kind, &cells)
                })
                .unwrap_or_default();
            let mut actions = Vec::new();
            if s.set_local_preference >= 0 {
                actions.push(format!("SetLocalPreference: {}", s.set_local_preference));
            }
            if !s.add_communities.is_empty() {
                actions.push(format!("AddCommunities: [{}]", s.add_communities.join(" ")));
            }
            if !s.add_large_communities.is_empty() {
                actions.push(format!(
                    "AddLargeCommunities: [{}]",
                    s.add_large_communities.join(" ")
                ));
            }
            tw.line(&format!(
                "{head}{peers}\t{}\t{prefixes}\t{}\t{}\t",
                multi("any", &fams),
                s.route_action,
                actions.join(" ")
            ));
        }
    }
    tw.finish()
}

/// Cilium renders one value bare, several as `(type) {a} {b}`.
fn multi(kind: &str, values: &[String]) -> String {
    match values {
        [] => String::new(),
        [one] => one.clone(),
        many => {
            let cells: Vec<String> = many.iter().map(|v| format!("{{{v}}}")).collect();
            format!("({kind}) {}", cells.join(" "))
        }
    }
}

/// kubectl's age format (`45s`, `12m`, `5h`, `3d`).
pub fn kube_age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 3600 * 2 => format!("{}m", s / 60),
        s if s < 86400 * 2 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// `kubectl get ciliumloadbalancerippools` layout.
pub fn pools_table(pools: &[PoolView]) -> String {
    let mut out = Vec::new();
    out.push(vec![
        "NAME".to_owned(),
        "DISABLED".into(),
        "CONFLICTING".into(),
        "IPS AVAILABLE".into(),
        "AGE".into(),
    ]);
    for p in pools {
        out.push(vec![
            p.name.clone(),
            p.disabled.to_string(),
            if p.conflicting { "True" } else { "False" }.into(),
            p.ips_available.clone(),
            kube_age(p.age_seconds),
        ]);
    }
    kubectl_columns(&out)
}

/// `rackctl lbipam services`.
pub fn services_table(services: &[ServiceView]) -> String {
    let mut out = vec![vec![
        "NAMESPACE".to_owned(),
        "NAME".into(),
        "EXTERNAL-IP".into(),
        "POOL".into(),
        "CONDITION".into(),
        "REASON".into(),
    ]];
    for s in services {
        out.push(vec![
            s.namespace.clone(),
            s.name.clone(),
            if s.ips.is_empty() {
                "<pending>".into()
            } else {
                s.ips.join(",")
            },
            if s.pools.is_empty() {
                "<none>".into()
            } else {
                s.pools.join(",")
            },
            format!("{}={}", s.condition.type_, s.condition.status),
            s.condition.reason.to_string(),
        ]);
    }
    kubectl_columns(&out)
}

fn or_dash(s: String) -> String {
    if s.is_empty() { "-".to_owned() } else { s }
}

/// `rackctl l2 leases`.
pub fn leases_table(leases: &[LeaseView]) -> String {
    let mut out = vec![vec![
        "IP".to_owned(),
        "SERVICES".into(),
        "INTERFACES".into(),
        "HOLDER".into(),
        "LEASE AGE".into(),
        "CANDIDATE".into(),
        "REPLIES".into(),
    ]];
    for l in leases {
        out.push(vec![
            l.ip.clone(),
            or_dash(l.services.join(",")),
            or_dash(l.interfaces.join(",")),
            or_dash(l.holder.clone()),
            kube_age(l.lease_age_seconds as u64),
            if l.candidate { "yes" } else { "no" }.into(),
            l.replies_sent.to_string(),
        ]);
    }
    kubectl_columns(&out)
}

/// `rackctl l2 announcements`.
pub fn announcements_table(anns: &[AnnouncementView]) -> String {
    let mut out = vec![vec![
        "IP".to_owned(),
        "SERVICES".into(),
        "INTERFACE".into(),
        "HOLDER".into(),
        "LEASE AGE".into(),
        "REPLIES".into(),
    ]];
    for a in anns {
        out.push(vec![
            a.ip.clone(),
            or_dash(a.services.join(",")),
            a.interface.clone(),
            a.holder.clone(),
            kube_age(a.lease_age_seconds as u64),
            a.replies_sent.to_string(),
        ]);
    }
    kubectl_columns(&out)
}

/// `rackctl status`.
pub fn status_text(s: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Node:            {}", s.node);
    let _ = writeln!(out, "Version:         {}", s.version);
    let _ = writeln!(
        out,
        "Uptime:          {}",
        go_duration(s.uptime_seconds * 1_000_000_000)
    );
    let _ = writeln!(out, "Config source:   {}", s.config_source);
    let _ = writeln!(out, "Config applied:  {} time(s)", s.config_generation);
    let objs: Vec<String> = s.objects.iter().map(|(k, n)| format!("{k}={n}")).collect();
    let _ = writeln!(out, "Objects:         {}", objs.join(" "));
    let _ = writeln!(
        out,
        "BGP:             {} instance(s), {}/{} peers established",
        s.bgp_instances, s.bgp_peers_established, s.bgp_peers_total
    );
    if s.config_errors.is_empty() {
        let _ = writeln!(out, "Config errors:   none");
    } else {
        let _ = writeln!(out, "Config errors:   {}", s.config_errors.len());
        for e in &s.config_errors {
            let _ = writeln!(out, "  - {e}");
        }
    }
    if !s.controllers.is_empty() {
        let c: Vec<String> = s
            .controllers
            .iter()
            .map(|c| {
                let state = match (&c.last_error, c.synced) {
                    (Some(_), _) => "failing",
                    (None, true) => "ok",
                    (None, false) => "starting",
                };
                format!(
                    "{}={} ({} runs, {} errors)",
                    c.name, state, c.runs, c.errors
                )
            })
            .collect();
        let _ = writeln!(out, "Controllers:     {}", c.join(", "));
        for c in &s.controllers {
            if let Some(e) = &c.last_error {
                let _ = writeln!(out, "  - {}: {e}", c.name);
            }
        }
    }
    out.push_str(&conditions_text(&s.conditions));
    out
}

/// Problems per object, as `kubectl describe` lists conditions: the object, then each of
/// its conditions (type=status, reason: message).
pub fn conditions_text(conds: &[rackd_api::ObjectCondition]) -> String {
    let mut out = String::new();
    if conds.is_empty() {
        let _ = writeln!(out, "Conditions:      none");
        return out;
    }
    let _ = writeln!(out, "Conditions:      {}", conds.len());
    let mut by_object: std::collections::BTreeMap<String, Vec<&rackd_api::ObjectCondition>> =
        std::collections::BTreeMap::new();
    for c in conds {
        let who = match (&c.object, &c.source) {
            (Some(o), _) => o.to_string(),
            (None, Some(s)) => s.clone(),
            (None, None) => "(unknown)".to_owned(),
        };
        by_object.entry(who).or_default().push(c);
    }
    for (who, cs) in by_object {
        let _ = writeln!(out, "  {who}");
        for c in cs {
            let _ = writeln!(
                out,
                "    {}={} {}: {}",
                c.condition.type_, c.condition.status, c.condition.reason, c.condition.message
            );
        }
    }
    out
}

/// kubectl's printer: columns separated by 3 spaces, left aligned, no trailing spaces.
fn kubectl_columns(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            line.push_str(c);
            if i + 1 < r.len() {
                let pad = widths[i] + 3 - c.chars().count();
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rackd_api::PeerFamily;

    #[test]
    fn durations_like_go() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(2_006_000_000_000), "33m26s");
        assert_eq!(go_duration(3_605_400_000_000), "1h0m5s");
        assert_eq!(go_duration(1_499_999_999), "1s");
        assert_eq!(go_duration(1_500_000_000), "2s");
    }

    fn fam(afi: &str, r: u64, a: u64) -> PeerFamily {
        PeerFamily {
            afi: afi.into(),
            safi: "unicast".into(),
            received: r,
            accepted: r,
            advertised: a,
        }
    }

    /// The operation guide's example (cilium-compat.md §7.2), trailing blanks aside.
    #[test]
    fn peers_table_matches_cilium_docs() {
        let peer = BgpPeer {
            local_asn: 65001,
            peer_asn: 65000,
            peer_address: "fd00:10::1".into(),
            session_state: rackd_api::SessionState::Established,
            uptime_nanoseconds: 2_006_000_000_000,
            families: vec![fam("ipv4", 2, 2), fam("ipv6", 2, 2)],
            ..Default::default()
        };
        let out = peers_table(&[("bgpv2-cplane-dev-service-control-plane".into(), vec![peer])]);
        let trimmed: Vec<&str> = out.lines().map(str::trim_end).collect();
        assert_eq!(
            trimmed,
            vec![
                "Node                                     Local AS   Peer AS   Peer Address   Session State   Uptime   Family         Received   Advertised",
                "bgpv2-cplane-dev-service-control-plane   65001      65000     fd00:10::1     established     33m26s   ipv4/unicast   2          2",
                "                                                                                                      ipv6/unicast   2          2",
            ]
        );
    }

    /// With BFD on a peer, a BFD column after the session state (`-` for peers without).
    #[test]
    fn peers_table_shows_bfd_only_when_some_peer_runs_it() {
        let with = BgpPeer {
            local_asn: 65001,
            peer_asn: 65000,
            peer_address: "10.0.0.1".into(),
            session_state: rackd_api::SessionState::Established,
            uptime_nanoseconds: 61_000_000_000,
            families: vec![fam("ipv4", 1, 2)],
            bfd: Some(rackd_api::BfdPeerState {
                state: "up".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let without = BgpPeer {
            peer_address: "10.0.0.9".into(),
            bfd: None,
            ..with.clone()
        };
        let out = peers_table(&[("node1".into(), vec![with, without.clone()])]);
        let trimmed: Vec<&str> = out.lines().map(str::trim_end).collect();
        assert_eq!(
            trimmed,
            vec![
                "Node    Local AS   Peer AS   Peer Address   Session State   BFD   Uptime   Family         Received   Advertised",
                "node1   65001      65000     10.0.0.1       established     up    1m1s     ipv4/unicast   1          2",
                "        65001      65000     10.0.0.9       established     -     1m1s     ipv4/unicast   1          2",
            ]
        );
        // The control: no peer with BFD, no column.
        let out = peers_table(&[("node1".into(), vec![without])]);
        assert!(!out.contains("BFD"), "{out}");
    }

    /// The docs' `cilium bgp routes available|advertised ipv4 unicast` (cilium-compat.md §7.3),
    /// trailing blanks aside.
    #[test]
    fn routes_tables_match_cilium_docs() {
        use rackd_api::BgpPath;
        let node = "bgpv2-cplane-dev-service-control-plane";
        let route = |neighbor: &str, nh: &str, age_s: u64, attrs: &str| BgpRoute {
            router_asn: 65001,
            prefix: "10.1.0.0/24".into(),
            neighbor: neighbor.into(),
            paths: vec![BgpPath {
                age_nanoseconds: age_s * 1_000_000_000,
                best: true,
                rackd_next_hop: nh.into(),
                rackd_attrs: attrs.into(),
                ..Default::default()
            }],
        };
        let out = routes_table(
            node,
            false,
            &[route(
                "",
                "0.0.0.0",
                2805,
                "[{Origin: i} {Nexthop: 0.0.0.0}]",
            )],
        );
        let trimmed: Vec<&str> = out.lines().map(str::trim_end).collect();
        assert_eq!(
            trimmed,
            vec![
                "Node                                     VRouter   Prefix        NextHop   Age      Attrs",
                "bgpv2-cplane-dev-service-control-plane   65001     10.1.0.0/24   0.0.0.0   46m45s   [{Origin: i} {Nexthop: 0.0.0.0}]",
            ]
        );
        let out = routes_table(
            node,
            true,
            &[route(
                "fd00:10::1",
                "fd00:10:0:1::2",
                2820,
                "[{Origin: i} {AsPath: 65001} {Communities: 65000:99} {MpReach(ipv4-unicast): {Nexthop: fd00:10:0:1::2, NLRIs: [10.1.0.0/24]}}]",
            )],
        );
        let trimmed: Vec<&str> = out.lines().map(str::trim_end).collect();
        assert_eq!(
            trimmed,
            vec![
                "Node                                     VRouter   Peer         Prefix        NextHop          Age     Attrs",
                "bgpv2-cplane-dev-service-control-plane   65001     fd00:10::1   10.1.0.0/24   fd00:10:0:1::2   47m0s   [{Origin: i} {AsPath: 65001} {Communities: 65000:99} {MpReach(ipv4-unicast): {Nexthop: fd00:10:0:1::2, NLRIs: [10.1.0.0/24]}}]",
            ]
        );
    }

    #[test]
    fn route_policies_match_cilium_docs_shape() {
        use rackd_api::{MatchNeighbors, MatchPrefixes, PolicyStatement, PrefixMatch};
        let pol = BgpRoutePolicy {
            router_asn: 65001,
            name: "65000-ipv4-PodCIDR".into(),
            kind: "export".into(),
            statements: vec![PolicyStatement {
                match_neighbors: Some(MatchNeighbors {
                    kind: "any".into(),
                    neighbors: vec!["fd00:10::1/128".into()],
                }),
                match_families: vec![],
                match_prefixes: Some(MatchPrefixes {
                    kind: "any".into(),
                    prefixes: vec![PrefixMatch {
                        cidr: "10.1.0.0/24".into(),
                        prefix_len_min: 24,
                        prefix_len_max: 24,
                    }],
                }),
                route_action: "accept".into(),
                add_communities: vec!["65000:99".into()],
                add_large_communities: vec![],
                set_local_preference: -1,
                nexthop: None,
            }],
        };
        let out = route_policies_table(&[pol]);
        let row = out.lines().nth(1).unwrap();
        assert!(row.starts_with("65001     65000-ipv4-PodCIDR   export   fd00:10::1/128"));
        assert!(row.contains("10.1.0.0/24 (24..24)"));
        assert!(
            row.trim_end()
                .ends_with("accept       AddCommunities: [65000:99]")
        );
    }

    #[test]
    fn pools_like_kubectl() {
        let out = pools_table(&[PoolView {
            name: "empire-ip-pool".into(),
            ips_available: "254".into(),
            age_seconds: 30,
            ..Default::default()
        }]);
        assert_eq!(
            out,
            "NAME             DISABLED   CONFLICTING   IPS AVAILABLE   AGE\nempire-ip-pool   false      False         254             30s\n"
        );
    }

    #[test]
    fn l2_tables_like_kubectl() {
        let leases = leases_table(&[
            LeaseView {
                ip: "172.18.255.200".into(),
                services: vec!["batuu/deathstar".into()],
                interfaces: vec!["eth0".into()],
                holder: "node2".into(),
                lease_age_seconds: 75.4,
                candidate: true,
                replies_sent: 0,
            },
            LeaseView {
                ip: "172.18.255.201".into(),
                ..Default::default()
            },
        ]);
        assert_eq!(
            leases,
            "IP               SERVICES          INTERFACES   HOLDER   LEASE AGE   CANDIDATE   REPLIES\n\
             172.18.255.200   batuu/deathstar   eth0         node2    75s         yes         0\n\
             172.18.255.201   -                 -            -        0s          no          0\n"
        );
        let anns = announcements_table(&[AnnouncementView {
            ip: "2001:db8:dead:beef::".into(),
            services: vec!["batuu/deathstar".into()],
            interface: "eth0".into(),
            holder: "node1".into(),
            lease_age_seconds: 3.9,
            replies_sent: 12,
        }]);
        assert_eq!(
            anns,
            "IP                     SERVICES          INTERFACE   HOLDER   LEASE AGE   REPLIES\n\
             2001:db8:dead:beef::   batuu/deathstar   eth0        node1    3s          12\n"
        );
    }

    /// `rackctl status` lists problems per object, as `kubectl describe` lists conditions,
    /// and the controllers' runs; `-o json` carries the same typed values.
    #[test]
    fn status_lists_conditions_per_object_and_controllers() {
        use rackd_api::{Condition, ControllerView, Kind, ObjectCondition, ObjectKey};
        let svc = ObjectKey {
            kind: Kind::Service,
            namespace: Some("shop".into()),
            name: "web".into(),
        };
        let s = rackd_api::Status {
            node: "n1".into(),
            conditions: vec![
                ObjectCondition::new(
                    svc.clone(),
                    Condition::new(
                        "cilium.io/IPAMRequestSatisfied",
                        rackd_api::ConditionStatus::False,
                        "no_pool",
                        "There are no enabled CiliumLoadBalancerIPPools that match this service",
                    ),
                ),
                ObjectCondition {
                    object: None,
                    source: Some("dir:/etc/rackd".into()),
                    condition: Condition::problem(
                        "rackd.io/SourceUnavailable",
                        "Failed",
                        "cannot read configuration directory /etc/rackd: No such file or directory (os error 2)",
                    ),
                },
            ],
            controllers: vec![ControllerView {
                name: "lbipam".into(),
                runs: 3,
                errors: 1,
                synced: true,
                last_error: Some("LB-IPAM state could not be saved".into()),
            }],
            ..Default::default()
        };
        let text = status_text(&s);
        assert!(
            text.contains("Controllers:     lbipam=failing (3 runs, 1 errors)"),
            "{text}"
        );
        assert!(
            text.contains("  - lbipam: LB-IPAM state could not be saved"),
            "{text}"
        );
        assert!(text.contains("Conditions:      2"), "{text}");
        assert!(text.contains("  Service shop/web\n    cilium.io/IPAMRequestSatisfied=False no_pool: There are no enabled"), "{text}");
        assert!(
            text.contains(
                "  dir:/etc/rackd\n    rackd.io/SourceUnavailable=True Failed: cannot read"
            ),
            "{text}"
        );
        let j = serde_json::to_value(&s).unwrap();
        assert_eq!(j["conditions"][0]["object"]["kind"], "Service");
        assert_eq!(
            j["conditions"][0]["condition"]["type"],
            "cilium.io/IPAMRequestSatisfied"
        );
        assert_eq!(j["conditions"][0]["condition"]["status"], "False");
        assert_eq!(
            j["controllers"][0]["last-error"],
            "LB-IPAM state could not be saved"
        );
    }
}
