//! FRR <-> FRR smoke test: proves the FRR driver on its own.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use netlab::frr::Frr;
use netlab::{BgpConfig, LabDir, Neighbor, Netns, Route, veth};

#[test]
fn frr_pair_exchanges_routes() {
    let dir = LabDir::new("nl-frr").unwrap();
    let a = Netns::new("nl-frra").unwrap();
    let b = Netns::new("nl-frrb").unwrap();
    veth(&a, "eth0", &b, "eth0").unwrap();
    a.addr_add("eth0", "10.0.0.1/30").unwrap();
    b.addr_add("eth0", "10.0.0.2/30").unwrap();
    let ca = BgpConfig::new(65001, "10.0.0.1".parse().unwrap())
        .neighbor(Neighbor::new("10.0.0.2".parse().unwrap(), 65002).hold_time(9))
        .route(
            Route::new("192.0.2.0/24")
                .unwrap()
                .community(65000, 7)
                .large_community(65000, 1, 2)
                .med(42),
        );
    let cb = BgpConfig::new(65002, "10.0.0.2".parse().unwrap())
        .neighbor(Neighbor::new("10.0.0.1".parse().unwrap(), 65001).hold_time(9));
    let fa = Frr::start_with(&a, dir.path(), "fa", &ca).unwrap();
    let fb = Frr::start_with(&b, dir.path(), "fb", &cb).unwrap();
    fa.wait_established("10.0.0.2".parse().unwrap(), Duration::from_secs(30))
        .unwrap();
    let p = fb
        .wait_route("192.0.2.0/24", Duration::from_secs(30))
        .unwrap();
    println!(
        "{p:?}\n{}",
        fb.vtysh(&["show bgp ipv4 unicast 192.0.2.0/24 json"])
            .unwrap()
    );
    assert_eq!(p.as_path, vec![65001]);
    assert_eq!(p.communities, vec!["65000:7"]);
    assert_eq!(p.large_communities, vec!["65000:1:2"]);
    assert_eq!(p.med, Some(42));
    // zebra installed it in b's kernel table.
    let r = b.ip(&["route", "show", "192.0.2.0/24"]).unwrap();
    assert!(r.contains("10.0.0.1"), "{r}");
}

#[test]
fn frr_bgpd_crash_and_restart() {
    let dir = LabDir::new("nl-frrr").unwrap();
    let a = Netns::new("nl-frrra").unwrap();
    let b = Netns::new("nl-frrrb").unwrap();
    veth(&a, "eth0", &b, "eth0").unwrap();
    a.addr_add("eth0", "10.0.0.1/30").unwrap();
    b.addr_add("eth0", "10.0.0.2/30").unwrap();
    let ca = BgpConfig::new(65001, "10.0.0.1".parse().unwrap())
        .neighbor(Neighbor::new("10.0.0.2".parse().unwrap(), 65002).hold_time(9))
        .route(Route::new("192.0.2.0/24").unwrap());
    let cb = BgpConfig::new(65002, "10.0.0.2".parse().unwrap())
        .neighbor(Neighbor::new("10.0.0.1".parse().unwrap(), 65001).hold_time(9));
    let mut fa = Frr::start_with(&a, dir.path(), "fa", &ca).unwrap();
    let fb = Frr::start_with(&b, dir.path(), "fb", &cb).unwrap();
    let t = Duration::from_secs(60);
    fb.wait_route("192.0.2.0/24", t).unwrap();
    // A crash: no NOTIFICATION, but the kernel closes the TCP connection, so b withdraws.
    fa.bgpd().kill9().unwrap();
    fb.wait_no_route("192.0.2.0/24", t).unwrap();
    fa.restart_bgpd(&a).unwrap();
    fb.wait_route("192.0.2.0/24", t).unwrap();
    assert!(fa.dir().join("bgpd-1.log").exists());
}
