//! Interop with BIRD 2 and GoBGP 3 in network namespaces (needs root).
//! - BIRD: eBGP over an IPv6 session carrying both families, IPv4 NLRI with an IPv6 next hop
//!   (RFC 8950) both ways, communities, withdraw.
//! - GoBGP: iBGP over IPv4; LOCAL_PREF set by our export policy is visible on GoBGP, GoBGP's
//!   LOCAL_PREF reaches us, routes injected/removed at runtime.

#![allow(clippy::unwrap_used)]

mod common;

use bgpd::policy::{Actions, Policy, PrefixMatch, Statement};
use bgpd::{Family, PeerConfig, SpeakerConfig};
use bgpd_wire::PathAttributes;
use common::{NsSpeaker, T, ip, pair};
use netlab::bird::{self, Bird};
use netlab::gobgp::GoBgp;
use netlab::{BgpConfig, Family as LabFamily, Neighbor, Netns, Route};

fn speaker(ns: &Netns, asn: u32) -> NsSpeaker {
    let mut cfg = SpeakerConfig::new(asn, "10.0.0.1".parse().unwrap());
    cfg.listen = vec!["[::]:179".parse().unwrap()];
    NsSpeaker::start(ns, cfg)
}

#[test]
fn bird_ipv6_session_both_families_with_extended_next_hop() {
    let (dir, us_ns, bird_ns) = pair("bgpd-bird");
    let cfg = BgpConfig::new(65002, "10.0.0.2".parse().unwrap())
        .neighbor(
            Neighbor::new(ip("fd00::1"), 65001)
                .families(&[LabFamily::Ipv4Unicast, LabFamily::Ipv6Unicast])
                .extended_nexthop()
                .hold_time(9),
        )
        .route(Route::new("198.51.100.0/24").unwrap().community(65002, 5))
        .route(
            Route::new("2001:db8:200::/48")
                .unwrap()
                .large_community(65002, 1, 2),
        );
    let bird = Bird::start_with(&bird_ns, dir.path(), "bird", &cfg).unwrap();
    let proto = bird::protocol_name(&cfg, ip("fd00::1")).unwrap();
    let says = || {
        bird.birdc(&["show", "protocols", "all"])
            .unwrap_or_default()
            + &bird.birdc(&["show", "route", "all"]).unwrap_or_default()
    };
    let us = speaker(&us_ns, 65001);
    let mut p = PeerConfig::new(ip("fd00::2"), 65002);
    p.extended_next_hop = true;
    p.hold_time = 9;
    us.add_peer(p);
    us.wait_established(ip("fd00::2"), says);
    bird.wait_established(&proto, T).unwrap();

    let s = &us.speaker;
    us.block(s.add_local_route(
        Family::Ipv4Unicast,
        "10.100.1.0/24".parse().unwrap(),
        PathAttributes::default(),
    ))
    .unwrap();
    us.block(s.add_local_route(
        Family::Ipv6Unicast,
        "2001:db8:1::/48".parse().unwrap(),
        PathAttributes::default(),
    ))
    .unwrap();
    let p4 = bird
        .wait_route("10.100.1.0/24", T)
        .unwrap_or_else(|e| panic!("{e}\n{}", says()));
    assert_eq!(p4.as_path, vec![65001]);
    assert!(
        p4.next_hops.contains(&ip("fd00::1")),
        "IPv4 route via IPv6 next hop: {p4:?}"
    );
    let p6 = bird.wait_route("2001:db8:1::/48", T).unwrap();
    assert!(p6.next_hops.contains(&ip("fd00::1")), "{p6:?}");

    let r = us.wait(
        "198.51.100.0/24 from BIRD",
        || {
            us.route(Family::Ipv4Unicast, "198.51.100.0/24")
                .ok_or_else(String::new)
        },
        says,
    );
    assert_eq!(r.next_hop, ip("fd00::2"), "RFC 8950 next hop");
    assert_eq!(r.as_path, "65002");
    assert_eq!(r.communities, vec!["65002:5"]);
    let r = us.wait(
        "2001:db8:200::/48 from BIRD",
        || {
            us.route(Family::Ipv6Unicast, "2001:db8:200::/48")
                .ok_or_else(String::new)
        },
        says,
    );
    assert_eq!(r.large_communities, vec!["65002:1:2"]);

    us.block(s.remove_local_route(Family::Ipv4Unicast, "10.100.1.0/24".parse().unwrap()))
        .unwrap();
    us.wait(
        "withdraw on BIRD",
        || {
            let ps = bird.paths("10.100.1.0/24").map_err(|e| e.to_string())?;
            ps.is_empty().then_some(()).ok_or(format!("{ps:?}"))
        },
        says,
    );
    drop(us);
    drop(bird);
}

#[test]
fn gobgp_ibgp_local_pref_both_ways() {
    let (dir, us_ns, g_ns) = pair("bgpd-gobgp");
    let cfg = BgpConfig::new(65001, "10.0.0.2".parse().unwrap())
        .neighbor(
            Neighbor::new(ip("10.0.0.1"), 65001)
                .families(&[LabFamily::Ipv4Unicast])
                .hold_time(9),
        )
        .route(
            Route::new("198.51.100.0/24")
                .unwrap()
                .local_pref(300)
                .community(65001, 9),
        );
    let gobgp = GoBgp::start_with(&g_ns, dir.path(), "gobgp", &cfg).unwrap();
    let says = || {
        gobgp.cli(&["neighbor"]).unwrap_or_default()
            + &gobgp
                .cli(&["global", "rib", "-a", "ipv4"])
                .unwrap_or_default()
    };
    let us = speaker(&us_ns, 65001);
    let mut p = PeerConfig::new(ip("10.0.0.2"), 65001);
    p.families = vec![Family::Ipv4Unicast];
    p.hold_time = 9;
    // Bound to the link (SO_BINDTODEVICE) with an explicit source address.
    p.interface = Some("eth0".into());
    p.source_address = Some(ip("10.0.0.1"));
    p.export = Policy {
        statements: vec![Statement {
            prefixes: vec![PrefixMatch::exact("10.100.1.0/24".parse().unwrap())],
            actions: Actions {
                local_pref: Some(200),
                add_large_communities: vec![[65001, 0, 1]],
                ..Default::default()
            },
        }],
        default_accept: true,
    };
    us.add_peer(p);
    us.wait_established(ip("10.0.0.2"), says);
    gobgp.wait_established(ip("10.0.0.1"), T).unwrap();

    let s = &us.speaker;
    us.block(s.add_local_route(
        Family::Ipv4Unicast,
        "10.100.1.0/24".parse().unwrap(),
        PathAttributes::default(),
    ))
    .unwrap();
    us.block(s.add_local_route(
        Family::Ipv4Unicast,
        "10.100.2.0/24".parse().unwrap(),
        PathAttributes::default(),
    ))
    .unwrap();
    let r = gobgp
        .wait_route("10.100.1.0/24", T)
        .unwrap_or_else(|e| panic!("{e}\n{}", says()));
    assert_eq!(r.local_pref, Some(200), "{r:?}");
    assert!(r.as_path.is_empty(), "iBGP: no prepend {r:?}");
    assert_eq!(r.large_communities, vec!["65001:0:1"]);
    let r = gobgp.wait_route("10.100.2.0/24", T).unwrap();
    assert_eq!(
        r.local_pref,
        Some(100),
        "default LOCAL_PREF towards iBGP {r:?}"
    );

    let r = us.wait(
        "GoBGP route",
        || {
            us.route(Family::Ipv4Unicast, "198.51.100.0/24")
                .ok_or_else(String::new)
        },
        says,
    );
    assert_eq!(r.local_pref, Some(300));
    assert_eq!(r.communities, vec!["65001:9"]);

    gobgp
        .add_route(&Route::new("203.0.113.0/24").unwrap(), None)
        .unwrap();
    us.wait(
        "injected route",
        || {
            us.route(Family::Ipv4Unicast, "203.0.113.0/24")
                .ok_or_else(String::new)
        },
        says,
    );
    gobgp.del_route("203.0.113.0/24").unwrap();
    us.wait(
        "injected route withdrawn",
        || match us.route(Family::Ipv4Unicast, "203.0.113.0/24") {
            None => Ok(()),
            Some(r) => Err(format!("{r:?}")),
        },
        says,
    );
    drop(us);
    drop(gobgp);
}
