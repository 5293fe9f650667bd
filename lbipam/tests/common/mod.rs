//! Builders shared by the integration tests.
#![allow(clippy::unwrap_used)]
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::IpAddr;

use lbipam::{
    ANNOTATION_IPS, ANNOTATION_SHARING_KEY, Block, ExternalTrafficPolicy, Family, IpFamilyPolicy,
    PoolSpec, ServiceKey, ServiceSpec,
};

pub type Sel = BTreeMap<String, String>;

pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

pub fn pool(name: &str, cidrs: &[&str]) -> PoolSpec<Sel> {
    PoolSpec::new(
        name,
        cidrs
            .iter()
            .map(|c| Block::parse(c, "", "").unwrap())
            .collect(),
    )
}

pub fn svc(ns: &str, name: &str) -> ServiceSpec {
    ServiceSpec {
        key: ServiceKey::new(ns, name),
        is_load_balancer: true,
        ..Default::default()
    }
}

pub fn dual(mut s: ServiceSpec) -> ServiceSpec {
    s.ip_family_policy = Some(IpFamilyPolicy::PreferDualStack);
    s.ip_families = vec![Family::V4, Family::V6];
    s
}

pub fn v6(mut s: ServiceSpec) -> ServiceSpec {
    s.ip_family_policy = Some(IpFamilyPolicy::SingleStack);
    s.ip_families = vec![Family::V6];
    s
}

pub fn annotate(mut s: ServiceSpec, k: &str, v: &str) -> ServiceSpec {
    s.annotations.insert(k.to_owned(), v.to_owned());
    s
}

pub fn ports(mut s: ServiceSpec, p: &[u16]) -> ServiceSpec {
    s.ports = p.to_vec();
    s
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The generated traits the property tests give a service: a `tier` label (pool selectors
/// read it), a sharing key, ports, a family choice (0 default, 1 IPv6 only, 2 dual stack
/// preferred, 3 dual stack required), a requested `10.0.0.r`, and traffic policy Local.
pub struct Traits {
    pub tier: u8,
    pub key: Option<u8>,
    pub ports: Vec<u16>,
    pub family: u8,
    pub requested: Option<u8>,
    pub local: bool,
}

/// `s` with `t` applied.
pub fn dressed(mut s: ServiceSpec, t: Traits) -> ServiceSpec {
    s.labels = labels(&[("tier", &t.tier.to_string())]);
    if let Some(k) = t.key {
        s.annotations
            .insert(ANNOTATION_SHARING_KEY.into(), format!("key{k}"));
    }
    s.ports = t.ports;
    match t.family {
        0 => {}
        1 => {
            s.ip_family_policy = Some(IpFamilyPolicy::SingleStack);
            s.ip_families = vec![Family::V6];
        }
        2 => {
            s.ip_family_policy = Some(IpFamilyPolicy::PreferDualStack);
            s.ip_families = vec![Family::V4, Family::V6];
        }
        _ => s.ip_family_policy = Some(IpFamilyPolicy::RequireDualStack),
    }
    if let Some(r) = t.requested {
        s.annotations
            .insert(ANNOTATION_IPS.into(), format!("10.0.0.{r}"));
    }
    if t.local {
        s.external_traffic_policy = ExternalTrafficPolicy::Local;
        s.pod_selector = labels(&[("app", "x")]);
    }
    s
}
