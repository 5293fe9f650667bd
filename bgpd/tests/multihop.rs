//! eBGP multihop TTL (needs root): our speaker and FRR two IP hops apart through a router
//! namespace. With the default TTL of 1 our SYNs die at the router and the session never comes
//! up; with `ttl: Some(2)` it does.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bgpd::fsm::State;
use bgpd::{Family, PeerConfig, SpeakerConfig};
use common::{NsSpeaker, ip};
use netlab::frr::Frr;
use netlab::{BgpConfig, Family as LabFamily, LabDir, Neighbor, Netns, Route, veth};

#[test]
fn multihop_ttl_decides_whether_a_two_hop_session_comes_up() {
    let dir = LabDir::new("bgpd-mh").unwrap();
    let us_ns = Netns::new("bgpd-mh-us").unwrap();
    let rt_ns = Netns::new("bgpd-mh-rt").unwrap();
    let frr_ns = Netns::new("bgpd-mh-frr").unwrap();
    veth(&us_ns, "eth0", &rt_ns, "eth0").unwrap();
    veth(&rt_ns, "eth1", &frr_ns, "eth0").unwrap();
    us_ns.addr_add("eth0", "10.0.1.1/30").unwrap();
    rt_ns.addr_add("eth0", "10.0.1.2/30").unwrap();
    rt_ns.addr_add("eth1", "10.0.2.1/30").unwrap();
    frr_ns.addr_add("eth0", "10.0.2.2/30").unwrap();
    rt_ns.enable_forwarding().unwrap();
    us_ns
        .route_add(&["10.0.2.0/30", "via", "10.0.1.2"])
        .unwrap();
    frr_ns
        .route_add(&["10.0.1.0/30", "via", "10.0.2.1"])
        .unwrap();
    let frr_cfg = BgpConfig::new(65000, "10.0.2.2".parse().unwrap())
        .neighbor(
            Neighbor::new(ip("10.0.1.1"), 65001)
                .families(&[LabFamily::Ipv4Unicast])
                .multihop(2)
                .passive()
                .hold_time(9),
        )
        .route(Route::new("198.51.100.0/24").unwrap());
    let frr = Frr::start_with(&frr_ns, dir.path(), "frr", &frr_cfg).unwrap();
    let says = || frr.vtysh(&["show bgp summary"]).unwrap_or_default() + &frr.logs();
    let mut cfg = SpeakerConfig::new(65001, "10.0.1.1".parse().unwrap());
    cfg.listen = vec![];
    let us = NsSpeaker::start(&us_ns, cfg);

    let mut p = PeerConfig::new(ip("10.0.2.2"), 65000);
    p.families = vec![Family::Ipv4Unicast];
    p.hold_time = 9;
    p.connect_retry = 1;
    us.add_peer(p.clone());
    // Several connect attempts with TTL 1: none can get through the router.
    std::thread::sleep(Duration::from_secs(5));
    let st = us.peer(ip("10.0.2.2"));
    assert_ne!(st.state, State::Established, "{st:?}\n{}", says());

    p.ttl = Some(2);
    us.block(us.speaker.update_peer(p)).unwrap();
    us.wait_established(ip("10.0.2.2"), says);
    us.wait(
        "route over the multihop session",
        || {
            us.route(Family::Ipv4Unicast, "198.51.100.0/24")
                .ok_or_else(String::new)
        },
        says,
    );
    drop(us);
    drop(frr);
}
