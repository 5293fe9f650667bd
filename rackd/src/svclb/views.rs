//! `rackctl service list` and `rackctl bpf lb list` from what the controller programmed.

use std::net::IpAddr;

use rackd_api::lb::{
    BackendAddress, FrontendAddress, LbMapEntry, LbService, LbServiceSpec, ServiceSpecFlags,
};
use rackd_model::Snapshot;
use rackd_services::{Frontend, L4Proto};

use super::SvcStatus;

/// `addr:port`, IPv6 in brackets, `/UDP` for UDP (TCP bare, as the seeds print it).
fn address(addr: IpAddr, port: u16, proto: L4Proto) -> String {
    let hp = match addr {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    };
    match proto {
        L4Proto::Tcp => hp,
        L4Proto::Udp => format!("{hp}/UDP"),
    }
}

/// `LoadBalancer` or `ExternalIPs`: whether the Service lists the address as an external IP.
fn service_type(snap: &Snapshot, ns: &str, name: &str, f: &Frontend) -> &'static str {
    let external = snap
        .service(ns, name)
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.external_ips.as_ref())
        .is_some_and(|ips| {
            ips.iter()
                .filter_map(|i| i.parse::<IpAddr>().ok())
                .any(|i| i == f.addr)
        });
    if external {
        "ExternalIPs"
    } else {
        "LoadBalancer"
    }
}

/// One entry per programmed frontend, in frontend order.
pub fn services(st: &SvcStatus, snap: &Snapshot, node: &str) -> Vec<LbService> {
    st.table
        .iter()
        .filter_map(|(f, e)| {
            let id = st.service_ids.get(f)?;
            let (ns, name) = &e.service;
            Some(LbService {
                spec: LbServiceSpec {
                    id: id.0,
                    frontend_address: FrontendAddress {
                        ip: f.addr.to_string(),
                        port: f.port,
                        protocol: f.proto.cilium_name().into(),
                        scope: "external".into(),
                    },
                    backend_addresses: e
                        .backends
                        .iter()
                        .map(|r| BackendAddress {
                            ip: r.backend.addr.to_string(),
                            port: r.backend.port,
                            protocol: r.backend.proto.cilium_name().into(),
                            state: "active".into(),
                            node_name: if r.local {
                                node.to_owned()
                            } else {
                                String::new()
                            },
                            backend_id: st.backend_ids.get(&r.backend).map_or(0, |b| b.0.0),
                        })
                        .collect(),
                    flags: ServiceSpecFlags {
                        type_: service_type(snap, ns, name, f).into(),
                        ext_traffic_policy: if e.local_only { "Local" } else { "Cluster" }.into(),
                        namespace: ns.clone(),
                        name: name.clone(),
                        session_affinity_timeout_sec: e
                            .affinity_timeout
                            .map_or(0, |t| u32::try_from(t.as_secs()).unwrap_or(u32::MAX)),
                        source_ranges: e
                            .source_ranges
                            .iter()
                            .flatten()
                            .map(ToString::to_string)
                            .collect(),
                    },
                },
            })
        })
        .collect()
}

/// `bpf lb list`: per frontend its slot-0 row, then one row per backend (slots from 1).
pub fn lb_map(st: &SvcStatus, snap: &Snapshot) -> Vec<LbMapEntry> {
    let mut out = Vec::new();
    for (f, e) in st.table.iter() {
        let Some(id) = st.service_ids.get(f) else {
            continue;
        };
        let svc = address(f.addr, f.port, f.proto);
        let mut flags = vec![service_type(snap, &e.service.0, &e.service.1, f).to_owned()];
        if e.local_only {
            flags.push("Local".into());
        }
        if e.affinity_timeout.is_some() {
            flags.push("sessionAffinity".into());
        }
        if e.source_ranges.is_some() {
            flags.push("loadBalancerSourceRanges".into());
        }
        let zero = if f.addr.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        };
        out.push(LbMapEntry {
            service_address: svc.clone(),
            slot: 0,
            backend_address: zero.into(),
            rev_nat_id: id.0,
            flags,
        });
        for (slot, r) in (1u32..).zip(&e.backends) {
            out.push(LbMapEntry {
                service_address: svc.clone(),
                slot,
                backend_address: address(r.backend.addr, r.backend.port, L4Proto::Tcp),
                rev_nat_id: id.0,
                flags: Vec::new(),
            });
        }
    }
    out
}

fn proto_name(p: u8) -> String {
    match p {
        1 => "ICMP".into(),
        6 => "TCP".into(),
        17 => "UDP".into(),
        58 => "ICMPv6".into(),
        n => format!("proto-{n}"),
    }
}

fn host_port(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

fn secs_until(expires_ns: u64, now_ns: u64) -> u64 {
    expires_ns.saturating_sub(now_ns) / 1_000_000_000
}

/// `bpf ct list`: `OUT` for a client's flow to a frontend, `IN` for the reply entries.
pub fn ct(entries: &[datapath::lb::CtEntry], now_ns: u64) -> Vec<rackd_api::lb::CtEntry> {
    use datapath::lb::CtDir;
    entries
        .iter()
        .map(|e| {
            let mut flags = vec![match (e.tuple.proto, e.state) {
                (6, 0) => "SYN".to_owned(),
                (6, 1) => "ESTABLISHED".to_owned(),
                (6, 2) => "CLOSING".to_owned(),
                _ => "OPEN".to_owned(),
            }];
            if e.snat {
                flags.push("SNAT".into());
            }
            if e.dir == CtDir::Inbound {
                flags.push("INBOUND".into());
            }
            rackd_api::lb::CtEntry {
                proto: proto_name(e.tuple.proto),
                direction: if e.dir == CtDir::Service { "OUT" } else { "IN" }.into(),
                source: host_port(e.tuple.src, e.tuple.sport),
                destination: host_port(e.tuple.dst, e.tuple.dport),
                expires_in_sec: secs_until(e.expires_ns, now_ns),
                rev_nat_id: e.svc_id,
                backend_id: e.backend.0,
                flags,
            }
        })
        .collect()
}

/// `bpf nat list`: `OUT` entries translate the source, `IN` entries the destination back.
pub fn nat(entries: &[datapath::lb::NatEntry], now_ns: u64) -> Vec<rackd_api::lb::NatEntry> {
    entries
        .iter()
        .map(|e| {
            let to = host_port(e.to_addr, e.to_port);
            rackd_api::lb::NatEntry {
                proto: proto_name(e.tuple.proto),
                direction: if e.egress { "OUT" } else { "IN" }.into(),
                source: host_port(e.tuple.src, e.tuple.sport),
                destination: host_port(e.tuple.dst, e.tuple.dport),
                xlate: if e.egress {
                    format!("XLATE_SRC {to}")
                } else {
                    format!("XLATE_DST {to}")
                },
                expires_in_sec: secs_until(e.expires_ns, now_ns),
            }
        })
        .collect()
}

/// Metric labels per programmed service id.
pub fn frontend_labels(
    st: &SvcStatus,
) -> std::collections::BTreeMap<u32, crate::metrics::FrontendLabels> {
    st.table
        .iter()
        .filter_map(|(f, e)| {
            let id = st.service_ids.get(f)?;
            Some((
                id.0,
                crate::metrics::FrontendLabels {
                    frontend: format!("{}/{}", host_port(f.addr, f.port), f.proto.cilium_name()),
                    namespace: e.service.0.clone(),
                    service: e.service.1.clone(),
                },
            ))
        })
        .collect()
}
