//! FRR <-> BIRD: one IPv4 and one IPv6 session over a veth, a route each way per family, with
//! communities, large communities and MED carried through.
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::time::Duration;

use netlab::bird::{self, Bird};
use netlab::frr::Frr;
use netlab::{BgpConfig, Family, LabDir, Neighbor, Netns, Route, veth};

const T: Duration = Duration::from_secs(60);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn frr_and_bird_exchange_ipv4_and_ipv6_routes() {
    let dir = LabDir::new("nl-fb").unwrap();
    let fns = Netns::new("nl-fb-frr").unwrap();
    let bns = Netns::new("nl-fb-bird").unwrap();
    veth(&fns, "eth0", &bns, "eth0").unwrap();
    for (ns, v4, v6) in [
        (&fns, "10.0.0.1/30", "fd00:1::1/64"),
        (&bns, "10.0.0.2/30", "fd00:1::2/64"),
    ] {
        ns.addr_add("eth0", v4).unwrap();
        ns.addr_add("eth0", v6).unwrap();
        ns.wait_ipv6_ready(T).unwrap();
    }

    let frr_cfg = BgpConfig::new(65001, "10.0.0.1".parse().unwrap())
        .neighbor(
            Neighbor::new(ip("10.0.0.2"), 65002)
                .families(&[Family::Ipv4Unicast])
                .hold_time(9),
        )
        .neighbor(
            Neighbor::new(ip("fd00:1::2"), 65002)
                .families(&[Family::Ipv6Unicast])
                .hold_time(9),
        )
        .route(
            Route::new("192.0.2.0/24")
                .unwrap()
                .community(65001, 100)
                .large_community(65001, 7, 8)
                .med(10),
        )
        .route(Route::new("2001:db8:1::/48").unwrap().community(65001, 6));
    let bird_cfg = BgpConfig::new(65002, "10.0.0.2".parse().unwrap())
        .neighbor(
            Neighbor::new(ip("10.0.0.1"), 65001)
                .families(&[Family::Ipv4Unicast])
                .hold_time(9),
        )
        .neighbor(
            Neighbor::new(ip("fd00:1::1"), 65001)
                .families(&[Family::Ipv6Unicast])
                .hold_time(9),
        )
        .route(
            Route::new("198.51.100.0/24")
                .unwrap()
                .large_community(65002, 1, 2)
                .community(65002, 200),
        )
        .route(Route::new("2001:db8:2::/48").unwrap().med(20));

    let frr = Frr::start_with(&fns, dir.path(), "frr", &frr_cfg).unwrap();
    let bird = Bird::start_with(&bns, dir.path(), "bird", &bird_cfg).unwrap();

    frr.wait_established(ip("10.0.0.2"), T).unwrap();
    frr.wait_established(ip("fd00:1::2"), T).unwrap();
    for a in ["10.0.0.1", "fd00:1::1"] {
        let name = bird::protocol_name(&bird_cfg, ip(a)).unwrap();
        bird.wait_established(&name, T).unwrap();
    }

    // FRR -> BIRD.
    let p = bird.wait_route("192.0.2.0/24", T).unwrap();
    assert_eq!(p.as_path, vec![65001]);
    assert_eq!(p.communities, vec!["65001:100"]);
    assert_eq!(p.large_communities, vec!["65001:7:8"]);
    assert_eq!(p.med, Some(10));
    assert!(p.next_hops.contains(&ip("10.0.0.1")), "{p:?}");
    let p = bird.wait_route("2001:db8:1::/48", T).unwrap();
    assert_eq!(p.as_path, vec![65001]);
    assert_eq!(p.communities, vec!["65001:6"]);
    assert!(p.next_hops.contains(&ip("fd00:1::1")), "{p:?}");

    // BIRD -> FRR.
    let p = frr.wait_route("198.51.100.0/24", T).unwrap();
    assert_eq!(p.as_path, vec![65002]);
    assert_eq!(p.communities, vec!["65002:200"]);
    assert_eq!(p.large_communities, vec!["65002:1:2"]);
    assert!(p.next_hops.contains(&ip("10.0.0.2")), "{p:?}");
    let p = frr.wait_route("2001:db8:2::/48", T).unwrap();
    assert_eq!(p.as_path, vec![65002]);
    assert_eq!(p.med, Some(20));
    assert!(p.next_hops.contains(&ip("fd00:1::2")), "{p:?}");

    // The typed summaries agree.
    let sum = frr.summary().unwrap();
    assert_eq!(
        sum["ipv4Unicast"]["peers"]["10.0.0.2"]["state"],
        "Established"
    );
    assert_eq!(
        sum["ipv6Unicast"]["peers"]["fd00:1::2"]["state"],
        "Established"
    );
    assert!(
        frr.prefixes(Family::Ipv6Unicast)
            .unwrap()
            .contains(&"2001:db8:2::/48".to_owned())
    );
    let protos = bird.protocols().unwrap();
    assert!(
        protos
            .iter()
            .filter(|p| p.proto == "BGP")
            .all(|p| p.info.starts_with("Established")),
        "{protos:?}"
    );

    // Withdrawal: stopping BIRD's session removes its routes from FRR.
    bird.birdc(&["disable", "n0"]).unwrap();
    frr.wait_no_route("198.51.100.0/24", T).unwrap();
}

/// RFC 8950: IPv4 routes over a single IPv6 session, both sides configured for extended next hop.
#[test]
fn frr_and_bird_ipv4_over_ipv6_extended_nexthop() {
    let dir = LabDir::new("nl-enh").unwrap();
    let fns = Netns::new("nl-enh-frr").unwrap();
    let bns = Netns::new("nl-enh-bird").unwrap();
    veth(&fns, "eth0", &bns, "eth0").unwrap();
    fns.addr_add("eth0", "fd00:2::1/64").unwrap();
    bns.addr_add("eth0", "fd00:2::2/64").unwrap();
    fns.wait_ipv6_ready(T).unwrap();
    bns.wait_ipv6_ready(T).unwrap();
    let frr_cfg = BgpConfig::new(65001, "10.0.0.1".parse().unwrap())
        .neighbor(
            Neighbor::new(ip("fd00:2::2"), 65002)
                .extended_nexthop()
                .hold_time(9),
        )
        .route(Route::new("192.0.2.0/24").unwrap());
    let bird_cfg = BgpConfig::new(65002, "10.0.0.2".parse().unwrap())
        .neighbor(
            Neighbor::new(ip("fd00:2::1"), 65001)
                .extended_nexthop()
                .hold_time(9),
        )
        .route(Route::new("198.51.100.0/24").unwrap());
    let frr = Frr::start_with(&fns, dir.path(), "frr", &frr_cfg).unwrap();
    let bird = Bird::start_with(&bns, dir.path(), "bird", &bird_cfg).unwrap();
    frr.wait_established(ip("fd00:2::2"), T).unwrap();
    bird.wait_established("n0", T).unwrap();
    let p = bird.wait_route("192.0.2.0/24", T).unwrap();
    assert!(p.next_hops.iter().all(IpAddr::is_ipv6), "{p:?}");
    let p = frr.wait_route("198.51.100.0/24", T).unwrap();
    assert!(p.next_hops.iter().any(IpAddr::is_ipv6), "{p:?}");
}
