//! The configuration snapshot → this node's desired [`ServiceTable`].
//!
//! Per Service (type `ExternalName` aside), one frontend per address × port:
//! - addresses: for `type: LoadBalancer`, LB-IPAM's addresses (an input, [`LbAddresses`])
//!   and `status.loadBalancer.ingress[].ip`; for every type, `spec.externalIPs`;
//! - ports: `spec.ports` with protocol TCP or UDP (SCTP and others are problems, skipped);
//! - backends: the Service's EndpointSlices (label `kubernetes.io/service-name`, found
//!   through the snapshot's index) of the frontend's address family, the slice port whose
//!   name (and protocol) is the Service port's, every address of each endpoint; kube-proxy's
//!   choice of endpoints: the ready ones, or when none is ready the serving-and-terminating
//!   ones (`ready`/`serving` unset count as true, `terminating` unset as false);
//! - `externalTrafficPolicy: Local`: only endpoints on this node (the same ready-else-
//!   terminating choice among them), `local_only`;
//! - `sessionAffinity: ClientIP`: the timeout (`sessionAffinityConfig.clientIP.timeoutSeconds`,
//!   default 10800 s, Kubernetes' range 1..=86400);
//! - `loadBalancerSourceRanges`: on LB addresses only (Cilium's default,
//!   `--bpf-lb-source-range-all-types=false`), per family, failing closed.
//!
//! An endpoint is local when its `nodeName` is this node, or, without a `nodeName`, when the
//! Pod its `targetRef` names is scheduled here.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use rackd_model::k8s_openapi::api::core::v1::{Service, ServicePort};
use rackd_model::k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use rackd_model::rackd_types::cilium::ENDPOINTSLICE_SERVICE_NAME_LABEL;
use rackd_model::{Kind, ObjectKey, Snapshot, pod_node, slice_service, status_ingress_ips};

use crate::table::{
    Backend, BackendRef, Frontend, L4Proto, Problem, ProblemReason, ServiceEntry, ServiceName,
    ServiceTable,
};

/// Kubernetes' default ClientIP affinity timeout (3 hours).
pub const DEFAULT_AFFINITY_TIMEOUT: Duration = Duration::from_secs(10800);

/// Kubernetes' maximum ClientIP affinity timeout (1 day).
pub const MAX_AFFINITY_TIMEOUT_S: i32 = 86400;

/// LoadBalancer addresses LB-IPAM holds, per Service. Implemented for `rackd`'s `LbIps`
/// (`imbl::OrdMap<ServiceName, Arc<[IpAddr]>>`) and for a plain `BTreeMap`.
pub trait LbAddresses {
    /// The addresses LB-IPAM assigned to Service `namespace/name` (none if unknown).
    fn lb_addresses(&self, svc: &ServiceName) -> &[IpAddr];
}

impl LbAddresses for imbl::OrdMap<ServiceName, Arc<[IpAddr]>> {
    fn lb_addresses(&self, svc: &ServiceName) -> &[IpAddr] {
        self.get(svc).map_or(&[], |a| a)
    }
}

impl LbAddresses for BTreeMap<ServiceName, Vec<IpAddr>> {
    fn lb_addresses(&self, svc: &ServiceName) -> &[IpAddr] {
        self.get(svc).map_or(&[], Vec::as_slice)
    }
}

/// A whole rendering.
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    /// The desired table.
    pub table: ServiceTable,
    /// Every problem, Services' and frontend conflicts.
    pub problems: Vec<Problem>,
}

/// Renders every Service.
pub fn render_all(snap: &Snapshot, lb: &(impl LbAddresses + ?Sized), node: &str) -> Rendered {
    let mut table = ServiceTable::default();
    let mut problems = Vec::new();
    for svc in snap.services() {
        let name = service_name(svc);
        let (entries, p) = render_service(snap, lb, node, &name);
        problems.extend(p);
        table.set_service(&name, entries);
    }
    problems.extend(table.conflicts());
    Rendered { table, problems }
}

/// Renders one Service (absent from `snap`: nothing): its frontends and its problems. Put
/// the result in the table with [`ServiceTable::set_service`].
pub fn render_service(
    snap: &Snapshot,
    lb: &(impl LbAddresses + ?Sized),
    node: &str,
    name: &ServiceName,
) -> (Vec<(Frontend, ServiceEntry)>, Vec<Problem>) {
    let mut problems = Vec::new();
    let Some(svc) = snap.service(&name.0, &name.1) else {
        return (Vec::new(), problems);
    };
    let Some(spec) = svc.spec.as_ref() else {
        return (Vec::new(), problems);
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return (Vec::new(), problems);
    }
    let mut problem = |reason, message: String| {
        problems.push(Problem::service(name, reason, message));
    };

    let mut lb_addrs: Vec<IpAddr> = Vec::new();
    if spec.type_.as_deref() == Some("LoadBalancer") {
        lb_addrs.extend(lb.lb_addresses(name));
        lb_addrs.extend(status_ingress_ips(svc));
    }
    dedup(&mut lb_addrs);
    let mut ext_addrs: Vec<IpAddr> = spec
        .external_ips
        .iter()
        .flatten()
        .filter_map(|s| s.parse().ok())
        .filter(|a| !lb_addrs.contains(a))
        .collect();
    dedup(&mut ext_addrs);
    if lb_addrs.is_empty() && ext_addrs.is_empty() {
        return (Vec::new(), problems);
    }

    let local_only = match spec.external_traffic_policy.as_deref() {
        None | Some("Cluster") => false,
        Some("Local") => true,
        Some(other) => {
            problem(
                ProblemReason::UnsupportedPolicy,
                format!(
                    "spec.externalTrafficPolicy {other:?} is not Cluster or Local; using Cluster"
                ),
            );
            false
        }
    };
    let affinity_timeout = affinity(svc, &mut problem);
    let ranges = source_ranges(spec.load_balancer_source_ranges.as_deref(), &mut problem);

    let mut out: Vec<(Frontend, ServiceEntry)> = Vec::new();
    for (pi, port) in spec.ports.iter().flatten().enumerate() {
        let Some((proto, number)) = service_port(pi, port, &mut problem) else {
            continue;
        };
        for v4 in [true, false] {
            let fam = |a: &IpAddr| a.is_ipv4() == v4;
            if !lb_addrs.iter().chain(&ext_addrs).any(fam) {
                continue;
            }
            let (backends, bad_ports) = backends(
                snap,
                name,
                node,
                port.name.as_deref().unwrap_or(""),
                proto,
                v4,
                local_only,
            );
            problems_extend(&mut problem, bad_ports);
            let entry = |ranges: Option<Vec<IpNet>>| ServiceEntry {
                service: name.clone(),
                backends: backends.clone(),
                local_only,
                affinity_timeout,
                source_ranges: ranges,
            };
            let fam_ranges = ranges.as_ref().map(|r| {
                r.iter()
                    .copied()
                    .filter(|n| n.addr().is_ipv4() == v4)
                    .collect()
            });
            for a in lb_addrs.iter().filter(|a| fam(a)) {
                out.push((frontend(*a, number, proto), entry(fam_ranges.clone())));
            }
            for a in ext_addrs.iter().filter(|a| fam(a)) {
                out.push((frontend(*a, number, proto), entry(None)));
            }
        }
    }
    // Two ports with the same number and protocol (the API server forbids it): first wins.
    out.sort_by_key(|a| a.0);
    out.dedup_by(|a, b| a.0 == b.0);
    (out, problems)
}

fn problems_extend(problem: &mut impl FnMut(ProblemReason, String), bad: Vec<(ObjectKey, String)>) {
    // Slice problems are reported on the Service too: that is where the effect shows.
    for (key, msg) in bad {
        problem(ProblemReason::InvalidPort, format!("{key}: {msg}"));
    }
}

fn frontend(addr: IpAddr, port: u16, proto: L4Proto) -> Frontend {
    Frontend { addr, port, proto }
}

fn dedup(v: &mut Vec<IpAddr>) {
    let mut seen = BTreeSet::new();
    v.retain(|a| seen.insert(*a));
}

/// `(namespace, name)` of a Service in the snapshot (the loader guarantees both).
pub fn service_name(svc: &Service) -> ServiceName {
    (
        svc.metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        svc.metadata.name.clone().unwrap_or_default(),
    )
}

fn parse_proto(p: Option<&str>) -> Result<L4Proto, String> {
    match p.unwrap_or("TCP") {
        "TCP" => Ok(L4Proto::Tcp),
        "UDP" => Ok(L4Proto::Udp),
        other => Err(other.to_owned()),
    }
}

fn service_port(
    i: usize,
    p: &ServicePort,
    problem: &mut impl FnMut(ProblemReason, String),
) -> Option<(L4Proto, u16)> {
    let proto = match parse_proto(p.protocol.as_deref()) {
        Ok(x) => x,
        Err(other) if other == "SCTP" => {
            problem(
                ProblemReason::SctpUnsupported,
                format!(
                    "spec.ports[{i}] (port {}): SCTP is not load-balanced by rackd; port skipped",
                    p.port
                ),
            );
            return None;
        }
        Err(other) => {
            problem(
                ProblemReason::UnknownProtocol,
                format!(
                    "spec.ports[{i}]: protocol {other:?} is not TCP, UDP or SCTP; port skipped"
                ),
            );
            return None;
        }
    };
    match u16::try_from(p.port) {
        Ok(n) if n > 0 => Some((proto, n)),
        _ => {
            problem(
                ProblemReason::InvalidPort,
                format!(
                    "spec.ports[{i}].port {} is not in 1..=65535; port skipped",
                    p.port
                ),
            );
            None
        }
    }
}

fn affinity(svc: &Service, problem: &mut impl FnMut(ProblemReason, String)) -> Option<Duration> {
    let spec = svc.spec.as_ref()?;
    match spec.session_affinity.as_deref() {
        None | Some("None") => None,
        Some("ClientIP") => {
            let t = spec
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds);
            match t {
                None => Some(DEFAULT_AFFINITY_TIMEOUT),
                Some(s) if (1..=MAX_AFFINITY_TIMEOUT_S).contains(&s) => {
                    Some(Duration::from_secs(u64::from(s.unsigned_abs())))
                }
                Some(s) => {
                    problem(
                        ProblemReason::InvalidAffinityTimeout,
                        format!(
                            "spec.sessionAffinityConfig.clientIP.timeoutSeconds {s} is not in 1..={MAX_AFFINITY_TIMEOUT_S}; using 10800"
                        ),
                    );
                    Some(DEFAULT_AFFINITY_TIMEOUT)
                }
            }
        }
        Some(other) => {
            problem(
                ProblemReason::UnsupportedPolicy,
                format!("spec.sessionAffinity {other:?} is not None or ClientIP; no affinity"),
            );
            None
        }
    }
}

/// `None` when the Service does not restrict clients; else every range that parses
/// (Kubernetes trims spaces; host bits are cleared).
fn source_ranges(
    ranges: Option<&[String]>,
    problem: &mut impl FnMut(ProblemReason, String),
) -> Option<Vec<IpNet>> {
    let ranges = ranges.filter(|r| !r.is_empty())?;
    let mut out = Vec::new();
    for (i, r) in ranges.iter().enumerate() {
        match r.trim().parse::<IpNet>() {
            Ok(n) => out.push(n.trunc()),
            Err(_) => problem(
                ProblemReason::InvalidSourceRange,
                format!(
                    "spec.loadBalancerSourceRanges[{i}] {r:?} is not a CIDR; ignored (the other ranges still restrict clients)"
                ),
            ),
        }
    }
    out.sort();
    out.dedup();
    Some(out)
}

/// What one endpoint address offers.
#[derive(Debug, Clone, Copy, Default)]
struct Candidate {
    local: bool,
    ready: bool,
    serving_terminating: bool,
}

/// The backends of one Service port in one family, and slice ports that could not be used.
fn backends(
    snap: &Snapshot,
    svc: &ServiceName,
    node: &str,
    port_name: &str,
    proto: L4Proto,
    v4: bool,
    local_only: bool,
) -> (Vec<BackendRef>, Vec<(ObjectKey, String)>) {
    let mut cands: BTreeMap<Backend, Candidate> = BTreeMap::new();
    let mut bad = Vec::new();
    for es in snap.endpoint_slices_of(&svc.0, &svc.1) {
        if es.address_type != if v4 { "IPv4" } else { "IPv6" } {
            continue;
        }
        let Some(number) = slice_port(es, port_name, proto, &mut bad) else {
            continue;
        };
        for ep in es.endpoints.iter().flatten() {
            let c = conditions(ep, snap, &svc.0, node);
            for a in &ep.addresses {
                let Ok(addr) = a.parse::<IpAddr>() else {
                    continue;
                };
                if addr.is_ipv4() != v4 {
                    continue;
                }
                let b = Backend {
                    addr,
                    port: number,
                    proto,
                };
                // The same address in two slices (the controller moving it): the best wins.
                let e = cands.entry(b).or_default();
                e.local |= c.local;
                e.ready |= c.ready;
                e.serving_terminating |= c.serving_terminating;
            }
        }
    }
    let pool: Vec<(Backend, Candidate)> = cands
        .into_iter()
        .filter(|(_, c)| !local_only || c.local)
        .collect();
    let any_ready = pool.iter().any(|(_, c)| c.ready);
    let chosen = pool
        .into_iter()
        .filter(|(_, c)| {
            if any_ready {
                c.ready
            } else {
                c.serving_terminating
            }
        })
        .map(|(backend, c)| BackendRef {
            backend,
            local: c.local,
        })
        .collect();
    (chosen, bad)
}

/// The slice's port for a Service port (same name, `""` for unnamed, and protocol).
fn slice_port(
    es: &EndpointSlice,
    name: &str,
    proto: L4Proto,
    bad: &mut Vec<(ObjectKey, String)>,
) -> Option<u16> {
    let (i, p) = es.ports.iter().flatten().enumerate().find(|(_, p)| {
        p.name.as_deref().unwrap_or("") == name && parse_proto(p.protocol.as_deref()) == Ok(proto)
    })?;
    let key = ObjectKey::namespaced(
        Kind::EndpointSlice,
        es.metadata.namespace.as_deref().unwrap_or("default"),
        es.metadata.name.as_deref().unwrap_or_default(),
    );
    match p.port.map(u16::try_from) {
        Some(Ok(n)) if n > 0 => Some(n),
        other => {
            let shown = match other {
                None => "missing".to_owned(),
                _ => p.port.unwrap_or_default().to_string(),
            };
            bad.push((
                key,
                format!("ports[{i}].port {shown} is not in 1..=65535; slice skipped for this port"),
            ));
            None
        }
    }
}

fn conditions(ep: &Endpoint, snap: &Snapshot, ns: &str, node: &str) -> Candidate {
    let c = ep.conditions.as_ref();
    let ready = c.and_then(|c| c.ready).unwrap_or(true);
    let serving = c.and_then(|c| c.serving).unwrap_or(ready);
    let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
    let on = match ep.node_name.as_deref() {
        Some(n) => n == node,
        None => ep
            .target_ref
            .as_ref()
            .filter(|r| r.kind.as_deref() == Some("Pod"))
            .and_then(|r| {
                let pns = r.namespace.as_deref().unwrap_or(ns);
                snap.pod(pns, r.name.as_deref()?)
            })
            .and_then(pod_node)
            .is_some_and(|n| n == node),
    };
    Candidate {
        local: on,
        ready,
        serving_terminating: serving && terminating,
    }
}

/// The Services whose rendering may differ between `previous` and `snap`: changed Services,
/// the Services of changed EndpointSlices (before and after: the label can move), and for a
/// changed Pod the Services of the slices whose endpoints take their node from it (a
/// `targetRef` without `nodeName`), found through the snapshots' Pod → slices index: a Pod
/// change costs its own slices, not a scan of every slice. Changes to LB-IPAM's addresses are
/// the caller's to add.
pub fn affected_services(previous: &Snapshot, snap: &Snapshot) -> BTreeSet<ServiceName> {
    let mut out = BTreeSet::new();
    for (key, _) in snap.changes_since(previous) {
        let ns = key.namespace.clone().unwrap_or_default();
        match key.kind {
            Kind::Service => {
                out.insert((ns, key.name));
            }
            Kind::EndpointSlice => {
                for s in [previous, snap] {
                    if let Some(svc) = s.get(&key).and_then(|l| slice_service(&l.object)) {
                        out.insert((ns.clone(), svc.to_owned()));
                    }
                }
            }
            Kind::Pod => {
                // Both sides: a slice that changed too is covered above either way, but the
                // union costs two lookups and needs no argument.
                for s in [previous, snap] {
                    for es in s.endpoint_slices_placed_by(&ns, &key.name) {
                        if let Some(svc) = endpoint_slice_service(es) {
                            let sns = es.metadata.namespace.as_deref().unwrap_or("default");
                            out.insert((sns.to_owned(), svc.to_owned()));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// The Service an EndpointSlice belongs to (label `kubernetes.io/service-name`).
fn endpoint_slice_service(es: &EndpointSlice) -> Option<&str> {
    es.metadata
        .labels
        .as_ref()?
        .get(ENDPOINTSLICE_SERVICE_NAME_LABEL)
        .map(String::as_str)
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
