//! Service advertisements: each selected Service's LoadBalancer, external and cluster IPs as
//! export policies, rendered for all Services ([`ServiceAdvert::render_all`]) or re-rendered
//! for a few ([`update_services`]).

use std::collections::BTreeSet;
use std::net::IpAddr;

use bgpd_wire::Family;
use ipnet::IpNet;
use rackd_model::Snapshot;
use rackd_model::cilium::{BGPAdvertisement, ServiceAddressType};
use rackd_model::k8s_openapi::api::core::v1::Service;
use rackd_model::rackd_types::cilium::CLASS_BGP_CONTROL_PLANE;
use rackd_model::selector::{NilSelector, Selector, ServiceLabels};

use super::{
    Desired, ExportKey, ExportPolicy, Exports, RenderInput, Resource, Routes, host_route, in_family,
};
use crate::lbipam_ctl::ServiceName;

/// One Service-type advertisement entry as one peer's family selects it: everything needed
/// to render a Service under it.
#[derive(Debug, Clone)]
pub struct ServiceAdvert {
    family_idx: u16,
    family: Family,
    advertisement: String,
    entry: u16,
    /// Policy name prefix, `<peer>-<afi>-Service`.
    base: String,
    selector: Selector,
    addresses: Vec<ServiceAddressType>,
    aggregation: Option<i16>,
    communities: Vec<u32>,
    large_communities: Vec<[u32; 3]>,
    local_pref: Option<u32>,
}

impl PartialEq for ServiceAdvert {
    fn eq(&self, other: &Self) -> bool {
        // The selector is compiled from the advertisement, which the other fields identify
        // together with the frame that produced both.
        (
            self.family_idx,
            self.family,
            &self.advertisement,
            self.entry,
            &self.base,
            &self.addresses,
            self.aggregation,
            &self.communities,
            &self.large_communities,
            self.local_pref,
        ) == (
            other.family_idx,
            other.family,
            &other.advertisement,
            other.entry,
            &other.base,
            &other.addresses,
            other.aggregation,
            &other.communities,
            &other.large_communities,
            other.local_pref,
        )
    }
}

/// `(standard communities, large communities, local preference)`.
pub(super) type Attributes = (Vec<u32>, Vec<[u32; 3]>, Option<u32>);

impl ServiceAdvert {
    /// `None` for an entry without `service` options; `Err` when its selector does not compile.
    pub(super) fn new(
        family_idx: u16,
        family: Family,
        advertisement: &str,
        entry: u16,
        base: String,
        adv: &BGPAdvertisement,
        attrs: Attributes,
    ) -> Option<Result<Self, rackd_model::selector::SelectorError>> {
        let opts = adv.service.as_ref()?;
        let selector =
            match Selector::compile_optional(adv.selector.as_ref(), NilSelector::MatchesNone) {
                Ok(s) => s,
                Err(e) => return Some(Err(e)),
            };
        let (communities, large_communities, local_pref) = attrs;
        Some(Ok(Self {
            family_idx,
            family,
            advertisement: advertisement.to_owned(),
            entry,
            base,
            selector,
            addresses: opts.addresses.clone(),
            aggregation: if family == Family::Ipv4Unicast {
                opts.aggregation_length_ipv4
            } else {
                opts.aggregation_length_ipv6
            },
            communities,
            large_communities,
            local_pref,
        }))
    }

    fn key(&self, namespace: &str, name: &str, address: u8) -> ExportKey {
        ExportKey {
            family: self.family_idx,
            advertisement: self.advertisement.clone(),
            entry: self.entry,
            resource: Resource::Service {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                address,
            },
        }
    }

    /// The policies of one Service under this entry (none if not selected).
    fn policies(
        &self,
        snap: &Snapshot,
        input: &RenderInput<'_>,
        svc: &Service,
        ns: &str,
        name: &str,
    ) -> Vec<(ExportKey, ExportPolicy)> {
        let labels = ServiceLabels {
            labels: svc.metadata.labels.as_ref(),
            namespace: ns,
            name,
        };
        if !self.selector.matches(&labels) {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (ai, addr) in self.addresses.iter().enumerate() {
            let local = is_local_policy(svc, *addr);
            let mut prefixes: Vec<IpNet> = service_addresses(snap, input, svc, ns, name, *addr)
                .into_iter()
                .filter(|ip| in_family(ip, self.family))
                .map(|ip| {
                    if local {
                        host_route(ip)
                    } else {
                        aggregate(ip, self.aggregation)
                    }
                })
                .collect();
            prefixes.sort();
            prefixes.dedup();
            if prefixes.is_empty() {
                continue;
            }
            let kind = match addr {
                ServiceAddressType::LoadBalancerIP => "LoadBalancerIP",
                ServiceAddressType::ClusterIP => "ClusterIP",
                ServiceAddressType::ExternalIP => "ExternalIP",
            };
            out.push((
                self.key(ns, name, u8::try_from(ai).unwrap_or(u8::MAX)),
                ExportPolicy {
                    name: format!("{}-{name}-{ns}-{kind}", self.base),
                    family: self.family,
                    prefixes,
                    communities: self.communities.clone(),
                    large_communities: self.large_communities.clone(),
                    local_pref: self.local_pref,
                },
            ));
        }
        out
    }

    /// Renders every Service under this entry into `export`.
    pub(super) fn render_all(
        &self,
        snap: &Snapshot,
        input: &RenderInput<'_>,
        export: &mut Exports,
        routes: &mut Routes,
    ) {
        for svc in snap.services() {
            let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
            let name = svc.metadata.name.as_deref().unwrap_or_default();
            for (k, p) in self.policies(snap, input, svc, ns, name) {
                export.insert(k, p, routes);
            }
        }
    }

    /// Re-renders one Service (present in `snap` or gone) under this entry; whether its
    /// policies changed.
    fn rerender(
        &self,
        snap: &Snapshot,
        input: &RenderInput<'_>,
        ns: &str,
        name: &str,
        export: &mut Exports,
        routes: &mut Routes,
    ) -> bool {
        let old = export.keys_in(&self.key(ns, name, 0), &self.key(ns, name, u8::MAX));
        let new = snap
            .service(ns, name)
            .map(|svc| self.policies(snap, input, svc, ns, name))
            .unwrap_or_default();
        let same = old.len() == new.len()
            && new
                .iter()
                .all(|(k, p)| export.policies.get(k).is_some_and(|have| **have == *p));
        if same {
            return false;
        }
        for k in &old {
            export.remove(k, routes);
        }
        for (k, p) in new {
            export.insert(k, p, routes);
        }
        true
    }
}

/// Re-renders the export policies of `services` in `desired` (they, their EndpointSlices or
/// their LoadBalancer addresses changed; nothing else did). Returns whether anything changed.
/// The result equals a full [`super::render`] of the same inputs.
pub fn update_services(
    desired: &mut Desired,
    snap: &Snapshot,
    input: &RenderInput<'_>,
    services: &BTreeSet<ServiceName>,
) -> bool {
    let mut changed = false;
    for inst in desired.instances.values_mut() {
        for peer in inst.peers.values_mut() {
            for sa in peer.service_adverts.iter() {
                for (ns, name) in services {
                    changed |=
                        sa.rerender(snap, input, ns, name, &mut peer.export, &mut inst.routes);
                }
            }
        }
    }
    changed
}

/// Whether a local endpoint of the Service is ready on `node` (EndpointSlices labelled
/// `kubernetes.io/service-name`, found through the snapshot's index).
fn has_local_endpoint(snap: &Snapshot, svc_ns: &str, svc_name: &str, node: &str) -> bool {
    snap.endpoint_slices_of(svc_ns, svc_name).any(|es| {
        es.endpoints.iter().flatten().any(|ep| {
            ep.node_name.as_deref() == Some(node)
                && ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true)
        })
    })
}

/// Whether the Service has a backend the datapath would use: a ready endpoint, or a serving
/// (terminating) one.
fn has_usable_endpoint(snap: &Snapshot, svc_ns: &str, svc_name: &str) -> bool {
    snap.endpoint_slices_of(svc_ns, svc_name).any(|es| {
        es.endpoints.iter().flatten().any(|ep| {
            let c = ep.conditions.as_ref();
            c.and_then(|c| c.ready).unwrap_or(true) || c.and_then(|c| c.serving) == Some(true)
        })
    })
}

fn aggregate(ip: IpAddr, len: Option<i16>) -> IpNet {
    let len = len.and_then(|l| u8::try_from(l).ok());
    match len {
        Some(l) => IpNet::new(ip, l)
            .map(|n| n.trunc())
            .unwrap_or_else(|_| host_route(ip)),
        None => host_route(ip),
    }
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
    if is_local_policy(svc, addr) {
        if !has_local_endpoint(snap, ns, name, input.node_name) {
            return Vec::new();
        }
    } else if input.withdraw_without_backends
        && addr != ServiceAddressType::ClusterIP
        && !has_usable_endpoint(snap, ns, name)
    {
        return Vec::new();
    }
    match addr {
        ServiceAddressType::LoadBalancerIP => {
            if spec.type_.as_deref() != Some("LoadBalancer") {
                return Vec::new();
            }
            match spec.load_balancer_class.as_deref() {
                None | Some(CLASS_BGP_CONTROL_PLANE) => {}
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
