//! A state file written by an earlier build must load, reinstate every allocation unchanged and
//! re-encode byte for byte. `data/state-v1.json` was captured from the build before service
//! keys were interned (2026-11-22); do not regenerate it from the current code.
#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod common;

use common::*;
use lbipam::{
    ANNOTATION_IPS, ANNOTATION_SHARING_KEY, Config, LbIpam, Outcome, PoolSpec, ServiceSpec,
};

const STATE_V1: &[u8] = include_bytes!("data/state-v1.json");

/// Two pools (one selecting by label, one with a conflict-free IPv6 block), dual stack, a
/// requested address and a three-way sharing group that lost a member to a port clash.
fn scenario() -> (Vec<PoolSpec<Sel>>, Vec<ServiceSpec>) {
    let mut blue = pool("blue", &["10.0.0.0/29", "2001:db8::/126"]);
    blue.service_selector = Some(labels(&[("team", "blue")]));
    blue.created = Some(10);
    let any = pool("any", &["192.0.2.0/30"]);
    let team = |mut s: ServiceSpec| {
        s.labels = labels(&[("team", "blue")]);
        s
    };
    let key = |s: ServiceSpec| annotate(s, ANNOTATION_SHARING_KEY, "web");
    let svcs = vec![
        team(dual(svc("prod", "api"))),
        team(v6(svc("prod", "v6only"))),
        annotate(svc("prod", "pinned"), ANNOTATION_IPS, "192.0.2.3"),
        ports(key(svc("web", "a")), &[80]),
        ports(key(svc("web", "b")), &[443]),
        ports(key(svc("web", "c")), &[80]),
        svc("other", "plain"),
    ];
    (vec![blue, any], svcs)
}

fn ips(out: &Outcome) -> Vec<(String, Vec<String>)> {
    out.services
        .iter()
        .map(|(k, s)| {
            (
                k.to_string(),
                s.ips().iter().map(ToString::to_string).collect(),
            )
        })
        .collect()
}

#[test]
fn state_written_by_earlier_build_loads_unchanged() {
    let (pools, svcs) = scenario();
    let mut ipam = LbIpam::from_bytes(STATE_V1).unwrap();
    // Byte-identical re-encoding: the format did not change.
    assert_eq!(
        String::from_utf8(ipam.snapshot().encode()).unwrap(),
        String::from_utf8(STATE_V1.to_vec()).unwrap().trim_end()
    );
    let out = ipam.reconcile(&Config::default(), &pools, &svcs);
    assert!(!out.state_changed, "restored state was changed");
    let fresh = LbIpam::new().reconcile(&Config::default(), &pools, &svcs);
    assert_eq!(ips(&out), ips(&fresh));
    assert_eq!(
        ips(&out),
        [
            ("other/plain", &["192.0.2.0"][..]),
            ("prod/api", &["10.0.0.0", "2001:db8::"]),
            ("prod/pinned", &["192.0.2.3"]),
            ("prod/v6only", &["2001:db8::1"]),
            ("web/a", &["192.0.2.1"]),
            ("web/b", &["192.0.2.1"]),
            ("web/c", &["192.0.2.2"]),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.iter().map(ToString::to_string).collect()))
        .collect::<Vec<_>>()
    );
}

/// Prints the state for this scenario (how `data/state-v1.json` was made).
#[test]
#[ignore = "generator, run by hand"]
fn print_state() {
    let (pools, svcs) = scenario();
    let mut ipam = LbIpam::new();
    ipam.reconcile(&Config::default(), &pools, &svcs);
    println!("{}", String::from_utf8(ipam.snapshot().encode()).unwrap());
}
