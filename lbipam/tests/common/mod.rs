//! Builders shared by the integration tests.
#![allow(clippy::unwrap_used)]
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::IpAddr;

use lbipam::{Block, Family, IpFamilyPolicy, PoolSpec, ServiceKey, ServiceSpec};

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
