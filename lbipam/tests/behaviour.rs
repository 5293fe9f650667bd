//! Cilium LB-IPAM semantics, scenario by scenario.
#![allow(clippy::unwrap_used)] // Tests and benchmarks may unwrap.

mod common;

use common::*;
use lbipam::{
    ANNOTATION_IPS, ANNOTATION_IPS_ALIAS, ANNOTATION_SHARING_CROSS_NAMESPACE,
    ANNOTATION_SHARING_KEY, Block, CLASS_L2_ANNOUNCER, ConditionStatus, Config,
    ExternalTrafficPolicy, IpFamilyPolicy, LbIpam, Outcome, PersistedState, PoolSpec, Reason,
    SERVICE_NAMESPACE_LABEL, ServiceKey, ServiceSpec,
};

fn run(ipam: &mut LbIpam, pools: &[PoolSpec<Sel>], svcs: &[ServiceSpec]) -> Outcome {
    ipam.reconcile(&Config::default(), pools, svcs)
}

fn ips_of(out: &Outcome, ns: &str, name: &str) -> Vec<String> {
    out.services[&ServiceKey::new(ns, name)]
        .ips()
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn reason(out: &Outcome, ns: &str, name: &str) -> (Reason, String) {
    let s = &out.services[&ServiceKey::new(ns, name)];
    (s.reason, s.message.clone())
}

fn restart(ipam: &LbIpam) -> LbIpam {
    let bytes = ipam.snapshot().encode();
    LbIpam::restore(&PersistedState::decode(&bytes).unwrap()).unwrap()
}

#[test]
fn seed_empire_pool_and_deathstar() {
    // The seeds' example, verbatim in substance: lb-pool.yaml and the deathstar service.
    let mut p = pool(
        "empire-ip-pool",
        &["172.18.255.200/29", "2001:db8:dead:beef::0/64"],
    );
    p.service_selector = Some(labels(&[("org", "empire")]));
    let mut deathstar = dual(svc("batuu", "deathstar"));
    deathstar.labels = labels(&[("org", "empire")]);
    deathstar.ports = vec![80];
    let mut ipam = LbIpam::new();
    let out = run(&mut ipam, &[p], &[deathstar]);
    assert_eq!(
        ips_of(&out, "batuu", "deathstar"),
        vec!["172.18.255.200", "2001:db8:dead:beef::"]
    );
    let st = &out.services[&ServiceKey::new("batuu", "deathstar")];
    let cond = st.condition();
    assert_eq!(cond.type_, "cilium.io/IPAMRequestSatisfied");
    assert_eq!(cond.status, ConditionStatus::True);
    assert_eq!(cond.reason, "satisfied");
    assert_eq!(&*st.assignments[0].pool, "empire-ip-pool");

    let ps = &out.pools["empire-ip-pool"];
    assert_eq!(ps.available.to_string(), "18446744073709551622");
    assert_eq!(ps.total.to_string(), "18446744073709551624");
    assert_eq!(ps.used, 2);
    assert_eq!(ps.conflicting_str(), "False");
    let conds = ps.conditions();
    let by_type = |t: &str| conds.iter().find(|c| c.type_ == t).unwrap().clone();
    assert_eq!(
        by_type("cilium.io/IPsAvailable").message,
        "18446744073709551622"
    );
    assert_eq!(by_type("cilium.io/IPsAvailable").reason, "noreason");
    assert_eq!(
        by_type("cilium.io/IPsAvailable").status,
        ConditionStatus::Unknown
    );
    assert_eq!(
        by_type("cilium.io/IPsTotal").message,
        "18446744073709551624"
    );
    assert_eq!(by_type("cilium.io/IPsUsed").message, "2");
    let c = by_type("cilium.io/PoolConflict");
    assert_eq!(
        (c.status, c.reason.as_ref()),
        (ConditionStatus::False, "resolved")
    );
}

#[test]
fn idempotent() {
    let pools = [pool("a", &["10.0.0.0/24", "2001:db8::/120"])];
    let svcs: Vec<_> = (0..20).map(|i| dual(svc("ns", &format!("s{i}")))).collect();
    let mut ipam = LbIpam::new();
    let first = run(&mut ipam, &pools, &svcs);
    assert!(first.state_changed);
    let second = run(&mut ipam, &pools, &svcs);
    assert!(!second.state_changed);
    assert_eq!(first.services, second.services);
    assert_eq!(first.pools, second.pools);
}

#[test]
fn unhandled_services_get_nothing() {
    let pools = [pool("a", &["10.0.0.0/24"])];
    let mut other_class = svc("ns", "other");
    other_class.load_balancer_class = Some("example.com/lb".into());
    let mut cluster_ip = svc("ns", "cip");
    cluster_ip.is_load_balancer = false;
    let mut l2 = svc("ns", "l2");
    l2.load_balancer_class = Some(CLASS_L2_ANNOUNCER.into());
    let mut ipam = LbIpam::new();
    let out = run(&mut ipam, &pools, &[other_class, cluster_ip, l2]);
    assert_eq!(out.services.len(), 1);
    assert_eq!(ips_of(&out, "ns", "l2"), vec!["10.0.0.0"]);
}

#[test]
fn allow_first_last_no() {
    let mut p = pool("a", &["10.0.0.0/30"]);
    p.allow_first_last_ips = false;
    let svcs: Vec<_> = (0..3).map(|i| svc("ns", &format!("s{i}"))).collect();
    let mut ipam = LbIpam::new();
    let out = run(&mut ipam, &[p.clone()], &svcs);
    assert_eq!(ips_of(&out, "ns", "s0"), vec!["10.0.0.1"]);
    assert_eq!(ips_of(&out, "ns", "s1"), vec!["10.0.0.2"]);
    assert_eq!(
        reason(&out, "ns", "s2"),
        (
            Reason::OutOfIps,
            "All enabled CiliumLoadBalancerIPPools that match this service ran out of allocatable IPs"
                .into()
        )
    );
    let ps = &out.pools["a"];
    // Cilium counts the two reserved addresses as used.
    assert_eq!((ps.total.to_string(), ps.used), ("4".into(), 4));
    assert_eq!(ps.available.to_string(), "0");
    // Requesting a reserved address is "already allocated".
    let req = annotate(svc("ns", "r"), ANNOTATION_IPS, "10.0.0.3");
    let out = run(&mut ipam, &[p], &[req]);
    assert_eq!(
        out.services[&ServiceKey::new("ns", "r")].reason,
        Reason::AlreadyAllocated
    );
    // Ignored for /31 and /32.
    let mut p31 = pool("b", &["10.0.1.0/31", "10.0.2.0/32"]);
    p31.allow_first_last_ips = false;
    let svcs: Vec<_> = (0..3).map(|i| svc("ns", &format!("t{i}"))).collect();
    let out = run(&mut LbIpam::new(), &[p31], &svcs);
    assert_eq!(ips_of(&out, "ns", "t0"), vec!["10.0.1.0"]);
    assert_eq!(ips_of(&out, "ns", "t1"), vec!["10.0.1.1"]);
    assert_eq!(ips_of(&out, "ns", "t2"), vec!["10.0.2.0"]);
}

#[test]
fn start_stop_ranges() {
    let p = PoolSpec::<Sel>::new(
        "r",
        vec![
            Block::parse("", "10.0.0.10", "10.0.0.11").unwrap(),
            Block::parse("", "10.0.0.20", "").unwrap(),
        ],
    );
    let svcs: Vec<_> = (0..4).map(|i| svc("ns", &format!("s{i}"))).collect();
    let out = run(&mut LbIpam::new(), &[p], &svcs);
    assert_eq!(ips_of(&out, "ns", "s0"), vec!["10.0.0.10"]);
    assert_eq!(ips_of(&out, "ns", "s1"), vec!["10.0.0.11"]);
    assert_eq!(ips_of(&out, "ns", "s2"), vec!["10.0.0.20"]);
    assert_eq!(reason(&out, "ns", "s3").0, Reason::OutOfIps);
    assert_eq!(out.pools["r"].total.to_string(), "3");
}

#[test]
fn disabled_keeps_existing_allocates_nothing_new() {
    let mut p = pool("a", &["10.0.0.0/24"]);
    let mut ipam = LbIpam::new();
    let out = run(&mut ipam, &[p.clone()], &[svc("ns", "old")]);
    assert_eq!(ips_of(&out, "ns", "old"), vec!["10.0.0.0"]);
    p.disabled = true;
    let out = run(
        &mut ipam,
        &[p.clone()],
        &[svc("ns", "old"), svc("ns", "new")],
    );
    assert_eq!(ips_of(&out, "ns", "old"), vec!["10.0.0.0"]);
    assert_eq!(
        reason(&out, "ns", "new"),
        (
            Reason::NoPool,
            "There are no enabled CiliumLoadBalancerIPPools that match this service".into()
        )
    );
    assert!(out.pools["a"].disabled);
    let req = annotate(svc("ns", "req"), ANNOTATION_IPS, "10.0.0.9");
    let out = run(&mut ipam, &[p], &[svc("ns", "old"), req]);
    assert_eq!(
        reason(&out, "ns", "req"),
        (
            Reason::NoPool,
            "No pool exists with a CIDR containing '10.0.0.9'".into()
        )
    );
}

#[test]
fn conflicts_mark_newer_and_resolve() {
    let mut old = pool("old", &["10.0.0.0/24"]);
    old.created = Some(100);
    let mut new = pool("new", &["10.0.0.128/25", "10.9.0.0/24"]);
    new.created = Some(200);
    let mut ipam = LbIpam::new();
    // Input order does not matter; precedence is by creation time.
    let out = run(&mut ipam, &[new.clone(), old.clone()], &[]);
    assert!(out.pools["old"].conflict.is_none());
    let c = out.pools["new"].conflict.as_ref().unwrap();
    assert_eq!(
        c.message,
        "Pool conflicts since range '10.0.0.128 - 10.0.0.255' overlaps range '10.0.0.0 - 10.0.0.255' from IP Pool 'old'"
    );
    let cond = out.pools["new"].conditions()[0].clone();
    assert_eq!(
        (cond.type_.as_ref(), cond.status, cond.reason.as_ref()),
        (
            "cilium.io/PoolConflict",
            ConditionStatus::True,
            "cidr_overlap"
        )
    );
    assert_eq!(out.pools["new"].conflicting_str(), "True");
    assert_eq!(out.conflicting_pools(), 1);
    // A conflicting pool allocates nothing, even from its non-overlapping block.
    let mut only_new = svc("ns", "s");
    only_new.labels = labels(&[("x", "y")]);
    new.service_selector = Some(labels(&[("x", "y")]));
    old.service_selector = Some(labels(&[("x", "z")]));
    let out = run(&mut ipam, &[old.clone(), new.clone()], &[only_new.clone()]);
    assert_eq!(reason(&out, "ns", "s").0, Reason::NoPool);
    // Resolved when the overlap goes.
    new.blocks = vec![Block::parse("10.9.0.0/24", "", "").unwrap()];
    let out = run(&mut ipam, &[old, new], &[only_new]);
    assert!(out.pools["new"].conflict.is_none());
    assert_eq!(ips_of(&out, "ns", "s"), vec!["10.9.0.0"]);
    // Overlap inside one pool.
    let selfish = pool("selfish", &["10.1.0.0/24", "10.1.0.7/32"]);
    let out = run(&mut LbIpam::new(), &[selfish], &[]);
    assert_eq!(
        out.pools["selfish"].conflict.as_ref().unwrap().message,
        "Pool conflicts since range '10.1.0.7 - 10.1.0.7' overlaps range '10.1.0.0 - 10.1.0.255' from IP Pool 'selfish'"
    );
}

#[test]
fn specific_ip_reasons() {
    let mut blue = pool("blue", &["10.0.0.0/24"]);
    blue.service_selector = Some(labels(&[("color", "blue")]));
    let mut a = annotate(svc("ns", "a"), ANNOTATION_IPS, "10.0.0.5");
    a.labels = labels(&[("color", "blue")]);
    // spec.loadBalancerIP is honoured too.
    let mut b = svc("ns", "b");
    b.load_balancer_ip = Some("10.0.0.5".into());
    b.labels = labels(&[("color", "blue")]);
    let c = annotate(svc("ns", "c"), ANNOTATION_IPS_ALIAS, "10.0.0.6");
    let d = annotate(svc("ns", "d"), ANNOTATION_IPS, "192.0.2.1");
    let mut e = annotate(svc("ns", "e"), ANNOTATION_IPS, "10.0.0.5");
    e = annotate(e, ANNOTATION_SHARING_KEY, "k");
    e.labels = labels(&[("color", "blue")]);
    let out = run(&mut LbIpam::new(), &[blue], &[a, b, c, d, e]);
    assert_eq!(ips_of(&out, "ns", "a"), vec!["10.0.0.5"]);
    assert_eq!(reason(&out, "ns", "a").0, Reason::Satisfied);
    assert_eq!(
        reason(&out, "ns", "b"),
        (
            Reason::AlreadyAllocated,
            "The IP '10.0.0.5' is already allocated to another service".into()
        )
    );
    assert_eq!(
        reason(&out, "ns", "c"),
        (
            Reason::PoolSelectorMismatch,
            "The pool with the CIDR containing '10.0.0.6', doesn't select this service".into()
        )
    );
    assert_eq!(
        reason(&out, "ns", "d"),
        (
            Reason::NoPool,
            "No pool exists with a CIDR containing '192.0.2.1'".into()
        )
    );
    assert_eq!(
        reason(&out, "ns", "e"),
        (
            Reason::AlreadyAllocatedIncompatibleService,
            "The IP '10.0.0.5' is already allocated to an incompatible service. Reason: different sharing key"
                .into()
        )
    );
    let cond = out.services[&ServiceKey::new("ns", "e")].condition();
    assert_eq!(cond.reason, "already_allocated_incompatible_service");
    assert_eq!(cond.status, ConditionStatus::False);
}

#[test]
fn sharing_rules() {
    let pools = [pool("a", &["10.0.0.0/24"])];
    let k = |s: ServiceSpec| annotate(s, ANNOTATION_SHARING_KEY, "web");
    let x = ports(k(svc("ns", "x")), &[80]);
    let y = ports(k(svc("ns", "y")), &[443]);
    let clash = ports(k(svc("ns", "z")), &[80, 8080]);
    let mut local = ports(k(svc("ns", "w")), &[9000]);
    local.external_traffic_policy = ExternalTrafficPolicy::Local;
    let other_ns = ports(k(svc("other", "v")), &[7000]);
    let out = run(&mut LbIpam::new(), &pools, &[x, y, clash, local, other_ns]);
    // Services are served in key order: ns/w, ns/x, ns/y, ns/z, other/v.
    // Different externalTrafficPolicy: w shares with nobody.
    assert_eq!(ips_of(&out, "ns", "w"), vec!["10.0.0.0"]);
    assert_eq!(ips_of(&out, "ns", "x"), vec!["10.0.0.1"]);
    assert_eq!(ips_of(&out, "ns", "y"), vec!["10.0.0.1"]);
    // Overlapping port: another IP, added to the key's set.
    assert_eq!(ips_of(&out, "ns", "z"), vec!["10.0.0.2"]);
    // Other namespace without permission: another IP.
    assert_eq!(ips_of(&out, "other", "v"), vec!["10.0.0.3"]);
    let x_out = &out.services[&ServiceKey::new("ns", "x")];
    assert_eq!(
        x_out.assignments[0].shared_with,
        vec![ServiceKey::new("ns", "y")]
    );
    assert_eq!(out.pools["a"].used, 4);
    assert_eq!(out.pools["a"].services, 5);
}

#[test]
fn cross_namespace_needs_both_sides() {
    let pools = [pool("a", &["10.0.0.0/24"])];
    let k = |s: ServiceSpec| annotate(s, ANNOTATION_SHARING_KEY, "shared");
    let a = annotate(
        ports(k(svc("ns1", "a")), &[80]),
        ANNOTATION_SHARING_CROSS_NAMESPACE,
        "ns2",
    );
    let b_one_way = ports(k(svc("ns2", "b")), &[81]);
    let out = run(&mut LbIpam::new(), &pools, &[a.clone(), b_one_way.clone()]);
    assert_ne!(ips_of(&out, "ns1", "a"), ips_of(&out, "ns2", "b"));
    let b_both = annotate(b_one_way, ANNOTATION_SHARING_CROSS_NAMESPACE, "*");
    let out = run(&mut LbIpam::new(), &pools, &[a.clone(), b_both.clone()]);
    assert_eq!(ips_of(&out, "ns1", "a"), ips_of(&out, "ns2", "b"));
    // A specific request for the shared address states the reason when refused.
    let c = annotate(
        annotate(ports(k(svc("ns3", "c")), &[82]), ANNOTATION_IPS, "10.0.0.0"),
        ANNOTATION_SHARING_KEY,
        "shared",
    );
    let out = run(&mut LbIpam::new(), &pools, &[a, b_both, c]);
    assert_eq!(
        reason(&out, "ns3", "c").1,
        "The IP '10.0.0.0' is already allocated to an incompatible service. Reason: different and not permitted namespace"
    );
}

#[test]
fn sharing_survives_restart_and_earliest_holder_keeps_ip() {
    let pools = [pool("a", &["10.0.0.0/24"])];
    let k = |s: ServiceSpec| annotate(s, ANNOTATION_SHARING_KEY, "web");
    let x = ports(k(svc("ns", "x")), &[80]);
    let y = ports(k(svc("ns", "y")), &[443]);
    let mut ipam = LbIpam::new();
    run(&mut ipam, &pools, &[x.clone(), y.clone()]);
    let mut ipam = restart(&ipam);
    let out = run(&mut ipam, &pools, &[y.clone(), x.clone()]);
    assert!(!out.state_changed);
    assert_eq!(ips_of(&out, "ns", "y"), vec!["10.0.0.0"]);
    // x changes its port to clash: x (which joined first) keeps, y moves.
    let x2 = ports(x, &[443]);
    let out = run(&mut ipam, &pools, &[x2, y]);
    assert_eq!(ips_of(&out, "ns", "x"), vec!["10.0.0.0"]);
    assert_eq!(ips_of(&out, "ns", "y"), vec!["10.0.0.1"]);
}

#[test]
fn dual_stack_policies() {
    let pools = [pool("v4", &["10.0.0.0/24"])];
    let mut req = svc("ns", "req");
    req.ip_family_policy = Some(IpFamilyPolicy::RequireDualStack);
    let mut prefer = svc("ns", "prefer");
    prefer.ip_family_policy = Some(IpFamilyPolicy::PreferDualStack);
    let single6 = v6(svc("ns", "six"));
    let out = run(&mut LbIpam::new(), &pools, &[req, prefer, single6]);
    // No IPv6 pool: the IPv4 half is given, the request stays unsatisfied.
    assert_eq!(ips_of(&out, "ns", "prefer"), vec!["10.0.0.0"]);
    assert_eq!(ips_of(&out, "ns", "req"), vec!["10.0.0.1"]);
    assert_eq!(reason(&out, "ns", "req").0, Reason::NoPool);
    assert!(!out.services[&ServiceKey::new("ns", "req")].satisfied);
    assert_eq!(reason(&out, "ns", "six").0, Reason::NoPool);
    let v4only = Config {
        ipv6_enabled: false,
        ..Config::default()
    };
    let mut req = svc("ns", "req");
    req.ip_family_policy = Some(IpFamilyPolicy::RequireDualStack);
    let out = LbIpam::new().reconcile(&v4only, &pools, &[req]);
    assert!(out.services[&ServiceKey::new("ns", "req")].satisfied);
}

#[test]
fn special_namespace_label() {
    let mut p = pool("team", &["10.0.0.0/24"]);
    p.service_selector = Some(labels(&[(SERVICE_NAMESPACE_LABEL, "team-a")]));
    let out = run(
        &mut LbIpam::new(),
        &[p],
        &[svc("team-a", "s"), svc("team-b", "s")],
    );
    assert_eq!(ips_of(&out, "team-a", "s"), vec!["10.0.0.0"]);
    assert_eq!(reason(&out, "team-b", "s").0, Reason::NoPool);
}

#[test]
fn stable_across_restart_reorder_rename_widen_and_add_blocks() {
    let pools = vec![
        pool("a", &["10.0.0.0/28"]),
        pool("b", &["10.1.0.0/28", "2001:db8::/120"]),
    ];
    let svcs: Vec<_> = (0..20)
        .map(|i| dual(svc("ns", &format!("s{i:02}"))))
        .collect();
    let mut ipam = LbIpam::new();
    let base = run(&mut ipam, &pools, &svcs);
    let held = |o: &Outcome| {
        o.services
            .iter()
            .map(|(k, v)| (k.clone(), v.ips()))
            .collect::<Vec<_>>()
    };
    // Restart.
    let mut ipam = restart(&ipam);
    let out = run(&mut ipam, &pools, &svcs);
    assert!(!out.state_changed);
    assert_eq!(held(&out), held(&base));
    // Reorder pools and services.
    let mut rp = pools.clone();
    rp.reverse();
    let mut rs = svcs.clone();
    rs.reverse();
    assert_eq!(held(&run(&mut ipam, &rp, &rs)), held(&base));
    // Rename a pool.
    let mut renamed = pools.clone();
    renamed[0].name = "a-renamed".into();
    let out = run(&mut ipam, &renamed, &svcs);
    assert_eq!(held(&out), held(&base));
    assert_eq!(out.pools["a-renamed"].used, base.pools["a"].used);
    // Widen and add blocks.
    let wider = vec![
        pool("a-renamed", &["10.0.0.0/24", "10.7.0.0/24"]),
        pool("b", &["2001:db8::/64", "10.1.0.0/16"]),
    ];
    assert_eq!(held(&run(&mut ipam, &wider, &svcs)), held(&base));
}

#[test]
fn shrink_moves_only_services_whose_ip_left() {
    let pools = vec![pool("a", &["10.0.0.0/28"])];
    let svcs: Vec<_> = (0..10).map(|i| svc("ns", &format!("s{i}"))).collect();
    let mut ipam = LbIpam::new();
    let before = run(&mut ipam, &pools, &svcs);
    // Keep 10.0.0.0-10.0.0.7 and move to a new block for the rest.
    let shrunk = vec![pool("a", &["10.0.0.0/29", "10.0.9.0/29"])];
    let after = run(&mut ipam, &shrunk, &svcs);
    for (k, b) in &before.services {
        let a = &after.services[k];
        let ip = b.ips()[0].to_string();
        if ip.starts_with("10.0.0.") && ip.trim_start_matches("10.0.0.").parse::<u8>().unwrap() < 8
        {
            assert_eq!(a.ips(), b.ips(), "{k} moved");
        } else {
            assert!(a.ips()[0].to_string().starts_with("10.0.9."), "{k}");
        }
    }
}

#[test]
fn deleting_services_and_pools_frees() {
    let pools = vec![pool("a", &["10.0.0.0/30"])];
    let mut ipam = LbIpam::new();
    run(&mut ipam, &pools, &[svc("ns", "x"), svc("ns", "y")]);
    let out = run(&mut ipam, &pools, &[svc("ns", "y"), svc("ns", "z")]);
    assert_eq!(ips_of(&out, "ns", "y"), vec!["10.0.0.1"]);
    assert_eq!(ips_of(&out, "ns", "z"), vec!["10.0.0.0"]);
    let out = run(&mut ipam, &[], &[svc("ns", "y")]);
    assert!(ips_of(&out, "ns", "y").is_empty());
    assert_eq!(ipam.allocated(), 0);
    // A service leaving our classes releases its IP too.
    let mut ipam = LbIpam::new();
    run(&mut ipam, &pools, &[svc("ns", "x")]);
    let mut x = svc("ns", "x");
    x.load_balancer_class = Some("example.com/other".into());
    let out = run(&mut ipam, &pools, &[x]);
    assert!(out.services.is_empty());
    assert_eq!(ipam.allocated(), 0);
}

#[test]
fn selector_change_releases() {
    let mut p = pool("a", &["10.0.0.0/24"]);
    p.service_selector = Some(labels(&[("app", "web")]));
    let mut s = svc("ns", "s");
    s.labels = labels(&[("app", "web")]);
    let mut ipam = LbIpam::new();
    run(&mut ipam, &[p.clone()], &[s.clone()]);
    s.labels.clear();
    let out = run(&mut ipam, &[p], &[s]);
    assert!(ips_of(&out, "ns", "s").is_empty());
    assert_eq!(reason(&out, "ns", "s").0, Reason::NoPool);
}

#[test]
fn adopts_published_ingress() {
    let pools = vec![pool("a", &["10.0.0.0/24"])];
    let mut s = svc("ns", "migrated");
    s.current_ingress = vec![ip("10.0.0.77")];
    let mut t = svc("ns", "stale");
    t.current_ingress = vec![ip("192.0.2.1")];
    let out = run(&mut LbIpam::new(), &pools, &[s, t]);
    assert_eq!(ips_of(&out, "ns", "migrated"), vec!["10.0.0.77"]);
    assert_eq!(ips_of(&out, "ns", "stale"), vec!["10.0.0.0"]);
}

#[test]
fn restore_rejects_bad_state() {
    let err = LbIpam::from_bytes(b"{\"format\":\"rackd-lbipam-state\",\"version\":99}");
    assert!(matches!(
        err,
        Err(lbipam::StateError::UnsupportedVersion { found: 99, .. })
    ));
    assert!(LbIpam::from_bytes(b"").is_err());
}

#[test]
fn restored_group_without_sharing_key_is_split() {
    // Found by the fuzzer: a state where two keyless services hold one address.
    let state = br#"{"format":"rackd-lbipam-state","version":1,"next_pool_seq":1,"pools":[{"name":"a","seq":0}],"allocations":[{"ip":"10.0.0.1","pool":"a","services":["ns/x","ns/y"]}]}"#;
    let mut ipam = LbIpam::from_bytes(state).unwrap();
    let out = run(
        &mut ipam,
        &[pool("a", &["10.0.0.0/24"])],
        &[svc("ns", "x"), svc("ns", "y")],
    );
    // The earlier holder keeps it; the other gets its own.
    assert_eq!(ips_of(&out, "ns", "x"), vec!["10.0.0.1"]);
    assert_eq!(ips_of(&out, "ns", "y"), vec!["10.0.0.0"]);
}

#[test]
fn synthetic_labels_prebuilt_or_spoofed() {
    let mut p = pool("team", &["10.0.0.0/24"]);
    p.service_selector = Some(labels(&[(SERVICE_NAMESPACE_LABEL, "team-a")]));
    // Prebuilt by the daemon with the helper: used as is.
    let mut a = svc("team-a", "s");
    a.labels = lbipam::service_selector_labels("team-a", "s", &labels(&[("x", "y")]));
    // A label claiming another namespace is overridden by the real one.
    let mut b = svc("team-b", "s");
    b.labels = labels(&[(SERVICE_NAMESPACE_LABEL, "team-a")]);
    let out = run(&mut LbIpam::new(), &[p], &[a, b]);
    assert_eq!(ips_of(&out, "team-a", "s"), vec!["10.0.0.0"]);
    assert_eq!(reason(&out, "team-b", "s").0, Reason::NoPool);
}
