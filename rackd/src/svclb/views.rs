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
