//! Property tests: no address given twice, determinism regardless of input order, stability
//! across restore, shrinking moves only the services whose address left, the allocator's own
//! record agrees with its outcome through churn, and memoised selector answers equal
//! per-service evaluation.
#![allow(clippy::unwrap_used)] // Tests and benchmarks may unwrap.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use common::*;
use lbipam::{
    ANNOTATION_SHARING_KEY, Block, Config, Family, LbIpam, Outcome, PersistedState, PoolSpec,
    SERVICE_NAMESPACE_LABEL, ServiceKey, ServiceSelector, ServiceSpec, service_selector_labels,
};
use proptest::prelude::*;

/// Small pools over a narrow address space so overlaps, exhaustion and sharing all happen.
fn arb_pool(idx: usize) -> impl Strategy<Value = PoolSpec<Sel>> {
    (
        proptest::collection::vec((any::<bool>(), 0u8..64, 28u8..=32, any::<bool>()), 1..3),
        any::<bool>(),
        any::<bool>(),
        proptest::option::of(0u8..3),
        proptest::option::of(0i64..4),
    )
        .prop_map(move |(blocks, allow, disabled, sel, created)| {
            let blocks = blocks
                .into_iter()
                .map(|(six, off, len, cidr)| {
                    let (addr, len): (IpAddr, u8) = if six {
                        (
                            format!("2001:db8::{:x}", u32::from(off) * 4)
                                .parse()
                                .unwrap(),
                            len + 96,
                        )
                    } else {
                        (
                            format!("10.0.0.{}", u32::from(off) * 4).parse().unwrap(),
                            len,
                        )
                    };
                    if cidr {
                        Block::cidr(addr, len).unwrap()
                    } else {
                        let b = Block::cidr(addr, len).unwrap();
                        Block::range(b.first(), Some(b.last())).unwrap()
                    }
                })
                .collect();
            PoolSpec {
                name: format!("pool{idx}"),
                created,
                blocks,
                allow_first_last_ips: allow,
                disabled,
                service_selector: sel.map(|t| labels(&[("tier", &t.to_string())])),
            }
        })
}

fn arb_pools() -> impl Strategy<Value = Vec<PoolSpec<Sel>>> {
    (1usize..5).prop_flat_map(|n| (0..n).map(arb_pool).collect::<Vec<_>>())
}

fn arb_service(idx: usize) -> impl Strategy<Value = ServiceSpec> {
    (
        0u8..3,
        0u8..3,
        proptest::option::of(0u8..2),
        proptest::collection::vec(0u16..4, 0..3),
        0u8..4,
        proptest::option::of(0u8..200),
        any::<bool>(),
    )
        .prop_map(move |(ns, tier, key, ports, fam, req, local)| {
            dressed(
                svc(&format!("ns{ns}"), &format!("svc{idx}")),
                Traits {
                    tier,
                    key,
                    ports,
                    family: fam,
                    requested: req,
                    local,
                },
            )
        })
}

fn arb_services() -> impl Strategy<Value = Vec<ServiceSpec>> {
    (0usize..40).prop_flat_map(|n| (0..n).map(arb_service).collect::<Vec<_>>())
}

fn held(o: &Outcome) -> BTreeMap<ServiceKey, Vec<IpAddr>> {
    o.services
        .iter()
        .map(|(k, v)| (k.clone(), v.ips()))
        .collect()
}

fn in_some_pool(ip: IpAddr, pools: &[PoolSpec<Sel>]) -> bool {
    pools.iter().any(|p| {
        p.blocks
            .iter()
            .any(|b| Family::of(ip) == b.family() && b.first() <= ip && ip <= b.last())
    })
}

/// Every address is held by one service, or by services that may share it.
fn check_exclusive(
    o: &Outcome,
    svcs: &[ServiceSpec],
    pools: &[PoolSpec<Sel>],
) -> Result<(), TestCaseError> {
    let spec: BTreeMap<&ServiceKey, &ServiceSpec> = svcs.iter().map(|s| (&s.key, s)).collect();
    let mut holders: BTreeMap<IpAddr, Vec<&ServiceKey>> = BTreeMap::new();
    for (k, v) in &o.services {
        let ips = v.ips();
        let uniq: BTreeSet<_> = ips.iter().collect();
        prop_assert_eq!(uniq.len(), ips.len());
        for ip in ips {
            prop_assert!(in_some_pool(ip, pools), "{} outside every pool", ip);
            holders.entry(ip).or_default().push(k);
        }
    }
    for (ip, hs) in holders {
        if hs.len() < 2 {
            continue;
        }
        for (i, a) in hs.iter().enumerate() {
            for b in &hs[i + 1..] {
                let (sa, sb) = (spec[a], spec[b]);
                let ka = sa.annotations.get(ANNOTATION_SHARING_KEY);
                prop_assert!(ka.is_some(), "{} shared without a key", ip);
                prop_assert_eq!(ka, sb.annotations.get(ANNOTATION_SHARING_KEY));
                prop_assert!(
                    !sa.ports.iter().any(|p| sb.ports.contains(p)),
                    "{} port clash",
                    ip
                );
                prop_assert_eq!(sa.external_traffic_policy, sb.external_traffic_policy);
                prop_assert_eq!(&sa.key.namespace, &sb.key.namespace);
            }
        }
    }
    Ok(())
}

/// A selector that does not report its label keys: evaluated for every service.
#[derive(Clone, Debug)]
struct Opaque(Sel);

impl ServiceSelector for Opaque {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.matches(labels)
    }
}

fn opaque(pools: &[PoolSpec<Sel>]) -> Vec<PoolSpec<Opaque>> {
    pools
        .iter()
        .map(|p| p.clone().map_selector(Opaque))
        .collect()
}

fn restart(ipam: &LbIpam) -> LbIpam {
    LbIpam::restore(&PersistedState::decode(&ipam.snapshot().encode()).unwrap()).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn no_ip_given_twice(pools in arb_pools(), svcs in arb_services(), later in arb_services()) {
        let cfg = Config::default();
        let mut ipam = LbIpam::new();
        let out = ipam.reconcile(&cfg, &pools, &svcs);
        check_exclusive(&out, &svcs, &pools)?;
        // Churn: a different service set with overlapping names.
        let out = ipam.reconcile(&cfg, &pools, &later);
        check_exclusive(&out, &later, &pools)?;
    }

    #[test]
    fn idempotent(pools in arb_pools(), svcs in arb_services(), later in arb_services()) {
        let cfg = Config::default();
        let mut ipam = LbIpam::new();
        for set in [&svcs, &later] {
            let a = ipam.reconcile(&cfg, &pools, set);
            let b = ipam.reconcile(&cfg, &pools, set);
            prop_assert!(!b.state_changed);
            prop_assert_eq!(a.services, b.services);
            prop_assert_eq!(a.pools, b.pools);
        }
    }

    #[test]
    fn deterministic_regardless_of_input_order(pools in arb_pools(), svcs in arb_services(),
                                               seed in any::<u64>()) {
        let cfg = Config::default();
        let a = LbIpam::new().reconcile(&cfg, &pools, &svcs);
        let mut p2 = pools.clone();
        let mut s2 = svcs.clone();
        // A cheap deterministic shuffle.
        let n = s2.len().max(1);
        s2.rotate_left((seed as usize) % n);
        s2.reverse();
        p2.reverse();
        for p in &mut p2 { p.blocks.reverse(); }
        let b = LbIpam::new().reconcile(&cfg, &p2, &s2);
        prop_assert_eq!(a.services, b.services);
        prop_assert_eq!(a.pools, b.pools);
    }

    #[test]
    fn stable_across_restore(pools in arb_pools(), svcs in arb_services()) {
        let cfg = Config::default();
        let mut ipam = LbIpam::new();
        let first = ipam.reconcile(&cfg, &pools, &svcs);
        let mut again = restart(&ipam);
        let mut rp = pools.clone();
        rp.reverse();
        let mut rs = svcs.clone();
        rs.reverse();
        let second = again.reconcile(&cfg, &rp, &rs);
        prop_assert!(!second.state_changed);
        prop_assert_eq!(held(&first), held(&second));
        prop_assert_eq!(first.services, second.services);
    }

    #[test]
    fn shrink_moves_only_affected(pools in arb_pools(), svcs in arb_services(),
                                  victim in any::<proptest::sample::Index>()) {
        let cfg = Config::default();
        let mut ipam = LbIpam::new();
        let before = ipam.reconcile(&cfg, &pools, &svcs);
        // Drop one block from one pool.
        let mut shrunk = pools.clone();
        let pi = victim.index(shrunk.len());
        if shrunk[pi].blocks.len() > 1 {
            shrunk[pi].blocks.pop();
        } else {
            shrunk[pi].blocks.clear();
        }
        let after = ipam.reconcile(&cfg, &shrunk, &svcs);
        check_exclusive(&after, &svcs, &shrunk)?;
        for (k, b) in &before.services {
            for ip in b.ips() {
                // Still inside a pool holding it for this service: must be kept.
                let a = after.services[k].ips();
                let spec = svcs.iter().find(|s| &s.key == k).unwrap();
                let lbls = service_selector_labels(&k.namespace, &k.name, &spec.labels);
                let still_owned = shrunk.iter().any(|p| {
                    p.service_selector.as_ref().is_none_or(|sel| sel.matches(&lbls))
                        && p.blocks.iter().any(|bl| {
                            Family::of(ip) == bl.family() && bl.first() <= ip && ip <= bl.last()
                        })
                });
                if still_owned {
                    prop_assert!(a.contains(&ip), "{} lost {} although still in a pool", k, ip);
                }
            }
        }
    }

    #[test]
    fn churn_keeps_record_and_outcome_in_step(pools in arb_pools(),
                                              sets in proptest::collection::vec(arb_services(), 1..5)) {
        let cfg = Config::default();
        let mut ipam = LbIpam::new();
        for set in &sets {
            let out = ipam.reconcile(&cfg, &pools, set);
            check_exclusive(&out, set, &pools)?;
            // Holders as the allocator records them (interned ids turned back into keys).
            let mut recorded: BTreeMap<ServiceKey, Vec<IpAddr>> = BTreeMap::new();
            for (ip, _, holders) in ipam.allocations() {
                prop_assert_eq!(holders.len(), holders.clone().count());
                for k in holders {
                    recorded.entry(k.clone()).or_default().push(ip);
                }
            }
            let published: BTreeMap<ServiceKey, Vec<IpAddr>> =
                held(&out).into_iter().filter(|(_, ips)| !ips.is_empty()).collect();
            prop_assert_eq!(recorded, published);
            let again = restart(&ipam).reconcile(&cfg, &pools, set);
            prop_assert!(!again.state_changed);
            prop_assert_eq!(&again.services, &out.services);
        }
    }

    #[test]
    fn memoised_selection_equals_per_service(pools in arb_pools(), svcs in arb_services(),
                                             later in arb_services()) {
        let cfg = Config::default();
        let (mut a, mut b) = (LbIpam::new(), LbIpam::new());
        // Some pools select by the synthetic namespace label instead, and some services claim
        // another namespace in their own labels (the real one must win in both paths).
        let mut pools = pools;
        for (i, p) in pools.iter_mut().enumerate() {
            if i % 2 == 1 && p.service_selector.is_some() {
                p.service_selector = Some(labels(&[(SERVICE_NAMESPACE_LABEL, &format!("ns{i}"))]));
            }
        }
        let spoof = |set: &[ServiceSpec]| -> Vec<ServiceSpec> {
            set.iter()
                .enumerate()
                .map(|(i, s)| {
                    let mut s = s.clone();
                    if i % 3 == 0 {
                        s.labels.insert(SERVICE_NAMESPACE_LABEL.into(), "ns1".into());
                    }
                    s
                })
                .collect()
        };
        let (svcs, later) = (spoof(&svcs), spoof(&later));
        let opaque_pools = opaque(&pools);
        for set in [&svcs, &later] {
            let x = a.reconcile(&cfg, &pools, set);
            let y = b.reconcile(&cfg, &opaque_pools, set);
            prop_assert_eq!(x, y);
        }
    }
}
