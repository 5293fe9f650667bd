//! FRR <-> GoBGP: one dual-stack session over IPv4 (both families listed explicitly on the GoBGP
//! side), routes injected into GoBGP's global RIB reach FRR and FRR's reach GoBGP.
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::time::Duration;

use netlab::frr::Frr;
use netlab::gobgp::GoBgp;
use netlab::{BgpConfig, Family, LabDir, Neighbor, Netns, Route, veth};

const T: Duration = Duration::from_secs(60);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn frr_and_gobgp_exchange_routes() {
    let dir = LabDir::new("nl-fg").unwrap();
    let fns = Netns::new("nl-fg-frr").unwrap();
    let gns = Netns::new("nl-fg-gobgp").unwrap();
    veth(&fns, "eth0", &gns, "eth0").unwrap();
    fns.addr_add("eth0", "10.0.1.1/30").unwrap();
    gns.addr_add("eth0", "10.0.1.2/30").unwrap();

    let frr_cfg = BgpConfig::new(65001, "10.0.1.1".parse().unwrap())
        .neighbor(
            Neighbor::new(ip("10.0.1.2"), 65003)
                .families(&[Family::Ipv4Unicast])
                .password("s3cret")
                .hold_time(9),
        )
        .route(Route::new("192.0.2.0/24").unwrap().community(65001, 1));
    let gobgp_cfg = BgpConfig::new(65003, "10.0.1.2".parse().unwrap())
        .neighbor(
            Neighbor::new(ip("10.0.1.1"), 65001)
                .families(&[Family::Ipv4Unicast])
                .password("s3cret")
                .hold_time(9),
        )
        .route(
            Route::new("203.0.113.0/24")
                .unwrap()
                .community(65003, 9)
                .large_community(65003, 4, 5)
                .med(33),
        );

    let frr = Frr::start_with(&fns, dir.path(), "frr", &frr_cfg).unwrap();
    let gobgp = GoBgp::start_with(&gns, dir.path(), "gobgp", &gobgp_cfg).unwrap();
    frr.wait_established(ip("10.0.1.2"), T).unwrap();
    gobgp.wait_established(ip("10.0.1.1"), T).unwrap();

    let p = frr.wait_route("203.0.113.0/24", T).unwrap();
    assert_eq!(p.as_path, vec![65003]);
    assert_eq!(p.communities, vec!["65003:9"]);
    assert_eq!(p.large_communities, vec!["65003:4:5"]);
    assert_eq!(p.med, Some(33));
    assert!(p.next_hops.contains(&ip("10.0.1.2")), "{p:?}");

    let p = gobgp.wait_route("192.0.2.0/24", T).unwrap();
    assert_eq!(p.as_path, vec![65001]);
    assert_eq!(p.communities, vec!["65001:1"]);
    assert!(p.next_hops.contains(&ip("10.0.1.1")), "{p:?}");

    // Injection after start, then withdrawal.
    gobgp
        .add_route(&Route::new("198.18.0.0/15").unwrap(), None)
        .unwrap();
    frr.wait_route("198.18.0.0/15", T).unwrap();
    gobgp.del_route("198.18.0.0/15").unwrap();
    frr.wait_no_route("198.18.0.0/15", T).unwrap();
}

/// iBGP, IPv6 session carrying both families: LOCAL_PREF set on a GoBGP-injected route reaches
/// FRR (LOCAL_PREF is only sent over iBGP, RFC 4271 §5.1.5).
#[test]
fn gobgp_ibgp_local_pref_reaches_frr() {
    let dir = LabDir::new("nl-ibgp").unwrap();
    let fns = Netns::new("nl-ibgp-frr").unwrap();
    let gns = Netns::new("nl-ibgp-gobgp").unwrap();
    veth(&fns, "eth0", &gns, "eth0").unwrap();
    fns.addr_add("eth0", "fd00:3::1/64").unwrap();
    gns.addr_add("eth0", "fd00:3::2/64").unwrap();
    let frr_cfg = BgpConfig::new(65010, "10.0.3.1".parse().unwrap())
        .neighbor(Neighbor::new(ip("fd00:3::2"), 65010).extended_nexthop());
    let gobgp_cfg = BgpConfig::new(65010, "10.0.3.2".parse().unwrap())
        .neighbor(Neighbor::new(ip("fd00:3::1"), 65010))
        .route(Route::new("2001:db8:9::/48").unwrap().local_pref(250))
        .route(Route::new("192.0.2.128/25").unwrap().local_pref(50));
    let frr = Frr::start_with(&fns, dir.path(), "frr", &frr_cfg).unwrap();
    let gobgp = GoBgp::start_with(&gns, dir.path(), "gobgp", &gobgp_cfg).unwrap();
    gobgp.wait_established(ip("fd00:3::1"), T).unwrap();
    let p = frr.wait_route("2001:db8:9::/48", T).unwrap();
    assert_eq!(p.local_pref, Some(250));
    assert!(p.as_path.is_empty(), "{p:?}");
    let p = frr.wait_route("192.0.2.128/25", T).unwrap();
    assert_eq!(p.local_pref, Some(50));
    assert!(p.next_hops.iter().any(IpAddr::is_ipv6), "{p:?}");
}
