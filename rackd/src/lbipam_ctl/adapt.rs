//! The resource model's pools and Services as the allocator's plain inputs.

use std::collections::BTreeMap;

use lbipam::{
    Block, ExternalTrafficPolicy, IpFamilyPolicy, PoolSpec, ServiceKey, ServiceSelector,
    ServiceSpec,
};
use rackd_model::Snapshot;
use rackd_model::k8s_openapi::api::core::v1::Service;
use rackd_model::rackd_types::condition::{reasons, types};
use rackd_model::rackd_types::{Condition, IpFamily, ObjectCondition};
use rackd_model::selector::{NilSelector, Selector};
use rackd_model::{Kind, ObjectKey};

/// A pool's compiled service selector.
#[derive(Debug, Clone)]
pub struct PoolSelector(Selector);

impl ServiceSelector for PoolSelector {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.matches(labels)
    }

    /// The labels the selector reads, so LB-IPAM evaluates it once per distinct set of their
    /// values instead of once per service.
    fn label_keys(&self) -> Option<Vec<&str>> {
        Some(self.0.requirements().iter().map(|r| r.key()).collect())
    }
}

pub(super) fn pool_key(name: &str) -> ObjectKey {
    ObjectKey::cluster(Kind::LoadBalancerIPPool, name)
}

/// The pools, adapted, and a condition per pool that could not be.
pub(super) fn pool_specs(snap: &Snapshot) -> (Vec<PoolSpec<PoolSelector>>, Vec<ObjectCondition>) {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for p in snap.lb_ip_pools() {
        let name = p.metadata.name.clone().unwrap_or_default();
        let mut blocks = Vec::new();
        let all = p.spec.blocks.iter().chain(p.spec.cidrs.iter().flatten());
        for b in all {
            match Block::parse(
                b.cidr.as_deref().unwrap_or(""),
                b.start.as_deref().unwrap_or(""),
                b.stop.as_deref().unwrap_or(""),
            ) {
                Ok(b) => blocks.push(b),
                Err(e) => problems.push(ObjectCondition::new(
                    pool_key(&name),
                    Condition::problem(
                        types::INVALID_CONFIGURATION,
                        reasons::INVALID,
                        format!("block: {e}"),
                    ),
                )),
            }
        }
        let selector = match Selector::compile_optional(
            p.spec.service_selector.as_ref(),
            NilSelector::MatchesAll,
        ) {
            Ok(s) if p.spec.service_selector.is_some() => Some(PoolSelector(s)),
            Ok(_) => None,
            Err(e) => {
                problems.push(ObjectCondition::new(
                    pool_key(&name),
                    Condition::problem(
                        types::INVALID_CONFIGURATION,
                        reasons::INVALID,
                        format!("serviceSelector: {e}"),
                    ),
                ));
                continue;
            }
        };
        let mut spec = PoolSpec::new(name, blocks);
        spec.created = p
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_second());
        spec.allow_first_last_ips = p.spec.allow_first_last_ips();
        spec.disabled = p.spec.disabled;
        spec.service_selector = selector;
        out.push(spec);
    }
    (out, problems)
}

pub(super) fn service_spec(s: &Service) -> ServiceSpec {
    let spec = s.spec.clone().unwrap_or_default();
    let families = spec
        .ip_families
        .iter()
        .flatten()
        .filter_map(|f| IpFamily::from_k8s(f))
        .collect();
    ServiceSpec {
        key: ServiceKey::new(
            s.metadata.namespace.as_deref().unwrap_or("default"),
            s.metadata.name.as_deref().unwrap_or_default(),
        ),
        labels: s.metadata.labels.clone().unwrap_or_default(),
        annotations: s.metadata.annotations.clone().unwrap_or_default(),
        is_load_balancer: spec.type_.as_deref() == Some("LoadBalancer"),
        load_balancer_class: spec.load_balancer_class.clone(),
        load_balancer_ip: spec.load_balancer_ip.clone(),
        ip_family_policy: spec
            .ip_family_policy
            .as_deref()
            .and_then(IpFamilyPolicy::from_k8s),
        ip_families: families,
        ports: spec
            .ports
            .iter()
            .flatten()
            .filter_map(|p| u16::try_from(p.port).ok())
            .collect(),
        external_traffic_policy: if spec.external_traffic_policy.as_deref() == Some("Local") {
            ExternalTrafficPolicy::Local
        } else {
            ExternalTrafficPolicy::Cluster
        },
        pod_selector: spec.selector.clone().unwrap_or_default(),
        current_ingress: rackd_model::status_ingress_ips(s),
    }
}
