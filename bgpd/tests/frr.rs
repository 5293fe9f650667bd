//! Interop with FRR 8.4 in network namespaces (needs root): IPv4 and IPv6 sessions with a
//! 4-octet-AS peer, routes both ways for both families, IPv4 NLRI over the IPv6 session
//! (RFC 8950), communities / large communities on the peer, withdraw, route refresh both ways,
//! TCP-MD5 right and wrong (and then right on the same family), the first-AS check against
//! FRR as a route server, hold-timer expiry, a fixed TCP source port across resets (with
//! and without TCP timestamps).

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bgpd::policy::{Actions, Policy, PrefixMatch, Statement};
use bgpd::{Family, PeerConfig, RibKind, SpeakerConfig};
use bgpd_wire::PathAttributes;
use common::{NsSpeaker, T, ip};
use netlab::frr::Frr;
use netlab::{BgpConfig, Family as LabFamily, LabDir, Neighbor, Netns, Route};

const FRR_AS: u32 = 4_200_000_001;

struct Lab {
    // Field order is drop order: daemons before their namespaces.
    us: NsSpeaker,
    frr: Frr,
    _dir: LabDir,
    frr_ns: Netns,
    us_ns: Netns,
}

fn lab(name: &str, frr_cfg: BgpConfig) -> Lab {
    lab_text(name, &netlab::frr::render("frr", &frr_cfg))
}

/// A lab whose FRR runs the configuration text `bgpd_conf` as it is.
fn lab_text(name: &str, bgpd_conf: &str) -> Lab {
    let (dir, us_ns, frr_ns) = common::pair(name);
    let frr = Frr::start(&frr_ns, dir.path(), "frr", bgpd_conf).unwrap();
    let mut cfg = SpeakerConfig::new(65001, "10.0.0.1".parse().unwrap());
    cfg.listen = vec!["[::]:179".parse().unwrap()];
    let us = NsSpeaker::start(&us_ns, cfg);
    Lab {
        us,
        frr,
        _dir: dir,
        frr_ns,
        us_ns,
    }
}

fn frr_says(frr: &Frr) -> impl Fn() -> String + '_ {
    || {
        frr.vtysh(&[
            "show bgp summary",
            "show bgp ipv4 unicast",
            "show bgp ipv6 unicast",
        ])
        .unwrap_or_else(|e| format!("vtysh failed: {e}"))
            + &frr.logs()
    }
}

#[test]
fn frr_v4_v6_sessions_routes_both_ways() {
    let frr_cfg = BgpConfig::new(FRR_AS, "10.0.0.2".parse().unwrap())
        .neighbor(
            Neighbor::new(ip("10.0.0.1"), 65001)
                .families(&[LabFamily::Ipv4Unicast])
                .hold_time(9),
        )
        .neighbor(
            Neighbor::new(ip("fd00::1"), 65001)
                .families(&[LabFamily::Ipv4Unicast, LabFamily::Ipv6Unicast])
                .extended_nexthop()
                .hold_time(9),
        )
        .route(
            Route::new("198.51.100.0/24")
                .unwrap()
                .community(64512, 7)
                .large_community(FRR_AS, 1, 1),
        )
        .route(Route::new("2001:db8:100::/48").unwrap());
    let l = lab("bgpd-frr", frr_cfg);
    let says = frr_says(&l.frr);

    let mut v4 = PeerConfig::new(ip("10.0.0.2"), FRR_AS);
    v4.families = vec![Family::Ipv4Unicast];
    v4.hold_time = 9;
    v4.export = Policy {
        statements: vec![Statement {
            prefixes: vec![PrefixMatch::orlonger("10.100.0.0/16".parse().unwrap())],
            actions: Actions {
                add_communities: vec![(65001 << 16) | 100],
                add_large_communities: vec![[65001, 2, 3]],
                ..Default::default()
            },
        }],
        default_accept: true,
    };
    let mut v6 = PeerConfig::new(ip("fd00::2"), FRR_AS);
    v6.hold_time = 9;
    v6.extended_next_hop = true;
    // Over the IPv6 session only 10.200/16 in IPv4, so the RFC 8950 path is unambiguous.
    v6.export = Policy {
        statements: vec![Statement {
            prefixes: vec![PrefixMatch::orlonger("10.100.0.0/16".parse().unwrap())],
            actions: Actions {
                reject: true,
                ..Default::default()
            },
        }],
        default_accept: true,
    };
    l.us.add_peer(v4);
    l.us.add_peer(v6);
    l.us.wait_established(ip("10.0.0.2"), &says);
    l.us.wait_established(ip("fd00::2"), &says);
    l.frr.wait_established(ip("10.0.0.1"), T).unwrap();
    l.frr.wait_established(ip("fd00::1"), T).unwrap();
    let st = l.us.peer(ip("fd00::2"));
    assert_eq!(st.peer_as, FRR_AS);
    assert!(
        st.capabilities.iter().any(|c| c == "extended-next-hop"),
        "{st:?}"
    );

    // Ours -> FRR.
    let s = &l.us.speaker;
    l.us.block(s.add_local_route(
        Family::Ipv4Unicast,
        "10.100.1.0/24".parse().unwrap(),
        PathAttributes::default(),
    ))
    .unwrap();
    l.us.block(s.add_local_route(
        Family::Ipv4Unicast,
        "10.200.1.0/24".parse().unwrap(),
        PathAttributes::default(),
    ))
    .unwrap();
    l.us.block(s.add_local_route(
        Family::Ipv6Unicast,
        "2001:db8:1::/48".parse().unwrap(),
        PathAttributes::default(),
    ))
    .unwrap();
    let p = l.frr.wait_route("10.100.1.0/24", T).unwrap();
    assert_eq!(p.as_path, vec![65001], "{}", says());
    assert_eq!(p.communities, vec!["65001:100"], "{}", says());
    assert_eq!(p.large_communities, vec!["65001:2:3"], "{}", says());
    assert!(p.next_hops.contains(&ip("10.0.0.1")), "{p:?}\n{}", says());
    let p = l.frr.wait_route("2001:db8:1::/48", T).unwrap();
    assert!(p.next_hops.contains(&ip("fd00::1")), "{p:?}\n{}", says());
    // IPv4 NLRI over the IPv6 session with an IPv6 next hop (RFC 8950).
    let paths = l.us.wait(
        "10.200.1.0/24 via fd00::1 on FRR",
        || {
            let ps = l.frr.paths("10.200.1.0/24").map_err(|e| e.to_string())?;
            ps.iter()
                .any(|p| p.next_hops.contains(&ip("fd00::1")))
                .then_some(ps.clone())
                .ok_or(format!("{ps:?}"))
        },
        &says,
    );
    assert!(paths.iter().all(|p| p.as_path == vec![65001]), "{paths:?}");

    // FRR -> ours, both families, 4-octet AS in the path.
    let r = l.us.wait(
        "198.51.100.0/24 from FRR",
        || {
            l.us.route(Family::Ipv4Unicast, "198.51.100.0/24")
                .ok_or_else(String::new)
        },
        &says,
    );
    assert_eq!(r.as_path, FRR_AS.to_string());
    assert_eq!(r.communities, vec!["64512:7"]);
    assert_eq!(r.large_communities, vec![format!("{FRR_AS}:1:1")]);
    let r = l.us.wait(
        "2001:db8:100::/48 from FRR",
        || {
            l.us.route(Family::Ipv6Unicast, "2001:db8:100::/48")
                .ok_or_else(String::new)
        },
        &says,
    );
    assert_eq!(r.next_hop, ip("fd00::2"));

    // Route refresh, both directions: FRR asks (soft in), we resend; we ask, FRR resends.
    l.frr
        .vtysh(&["clear bgp ipv4 unicast 10.0.0.1 soft in"])
        .unwrap();
    l.us.block(s.request_route_refresh(ip("10.0.0.2"), Family::Ipv4Unicast))
        .unwrap();
    l.us.wait(
        "route-refresh counters on FRR",
        || {
            let n = l
                .frr
                .json("show bgp neighbors 10.0.0.1 json")
                .map_err(|e| e.to_string())?;
            let m = &n["10.0.0.1"]["messageStats"];
            let (sent, rcvd) = (
                m["routeRefreshSent"].as_u64().unwrap_or(0),
                m["routeRefreshRecv"].as_u64().unwrap_or(0),
            );
            (sent >= 1 && rcvd >= 1).then_some(()).ok_or(format!("{m}"))
        },
        &says,
    );
    l.frr.wait_route("10.100.1.0/24", T).unwrap();
    assert!(l.us.route(Family::Ipv4Unicast, "198.51.100.0/24").is_some());

    // Withdraw.
    l.us.block(s.remove_local_route(Family::Ipv4Unicast, "10.100.1.0/24".parse().unwrap()))
        .unwrap();
    l.frr.wait_no_route("10.100.1.0/24", T).unwrap();
    let st = l.us.peer(ip("10.0.0.2"));
    assert_eq!(st.families[0].received, 1, "{st:?}");
    let out =
        l.us.routes(Family::Ipv4Unicast, RibKind::AdjRibOut(ip("10.0.0.2")));
    assert_eq!(
        out.iter().map(|r| r.prefix.to_string()).collect::<Vec<_>>(),
        vec!["10.200.1.0/24"]
    );
    let _ = (&l.frr_ns, &l.us_ns);
}

#[test]
fn frr_md5_right_and_wrong_password() {
    let frr_cfg = BgpConfig::new(65000, "10.0.0.2".parse().unwrap())
        .neighbor(
            Neighbor::new(ip("10.0.0.1"), 65001)
                .families(&[LabFamily::Ipv4Unicast])
                .password("s3cret")
                .hold_time(9),
        )
        .neighbor(
            Neighbor::new(ip("fd00::1"), 65001)
                .families(&[LabFamily::Ipv6Unicast])
                .password("s3cret")
                .hold_time(9),
        )
        .route(Route::new("198.51.100.0/24").unwrap())
        .route(Route::new("2001:db8:100::/48").unwrap());
    let l = lab("bgpd-md5", frr_cfg);
    let says = frr_says(&l.frr);
    let mut good = PeerConfig::new(ip("10.0.0.2"), 65000);
    good.families = vec![Family::Ipv4Unicast];
    good.md5_password = Some("s3cret".into());
    let mut bad = PeerConfig::new(ip("fd00::2"), 65000);
    bad.families = vec![Family::Ipv6Unicast];
    bad.md5_password = Some("wrong".into());
    l.us.add_peer(good);
    l.us.add_peer(bad);
    l.us.wait_established(ip("10.0.0.2"), &says);
    l.us.wait(
        "route over the MD5 session",
        || {
            l.us.route(Family::Ipv4Unicast, "198.51.100.0/24")
                .ok_or_else(String::new)
        },
        &says,
    );
    // The wrong key: segments are dropped by the kernel, so the session never comes up.
    // Give it several connect-retry rounds while the right one is already up.
    std::thread::sleep(Duration::from_secs(8));
    let st = l.us.peer(ip("fd00::2"));
    assert_ne!(st.state, bgpd::fsm::State::Established, "{st:?}");
    let frr_state = l.frr.neighbor_state(ip("fd00::1")).unwrap();
    assert_ne!(frr_state.as_deref(), Some("Established"), "{}", says());
    // Positive control on the same family, peer and FRR neighbour: with the right key the
    // IPv6 session does come up and carries FRR's IPv6 route, so what kept it down above
    // was the key and nothing else about that session.
    let mut fixed = PeerConfig::new(ip("fd00::2"), 65000);
    fixed.families = vec![Family::Ipv6Unicast];
    fixed.md5_password = Some("s3cret".into());
    l.us.block(l.us.speaker.update_peer(fixed)).unwrap();
    l.us.wait_established(ip("fd00::2"), &says);
    l.frr.wait_established(ip("fd00::1"), T).unwrap();
    l.us.wait(
        "IPv6 route over the MD5 session",
        || {
            l.us.route(Family::Ipv6Unicast, "2001:db8:100::/48")
                .ok_or_else(String::new)
        },
        &says,
    );
}

/// FRR as a route server towards us (`route-server-client`: it does not prepend its AS,
/// RFC 7947 §2.2.2.1), its outbound route-map shaping each path:
/// 192.0.2.0/24 gets FRR's own AS prepended by the route-map (a correct eBGP path),
/// 198.51.100.0/24 a foreign AS, 203.0.113.0/24 nothing (an empty AS_PATH).
const FRR_ROUTE_SERVER: &str = "\
frr defaults traditional
hostname frr
!
ip prefix-list OWN seq 5 permit 192.0.2.0/24
ip prefix-list FOREIGN seq 5 permit 198.51.100.0/24
!
route-map TO-US permit 10
 match ip address prefix-list OWN
 set as-path prepend 65000
exit
route-map TO-US permit 20
 match ip address prefix-list FOREIGN
 set as-path prepend 65099
exit
route-map TO-US permit 30
exit
!
router bgp 65000
 bgp router-id 10.0.0.2
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 10.0.0.1 remote-as 65001
 neighbor 10.0.0.1 timers 3 9
 address-family ipv4 unicast
  network 192.0.2.0/24
  network 198.51.100.0/24
  network 203.0.113.0/24
  neighbor 10.0.0.1 route-server-client
  neighbor 10.0.0.1 route-map TO-US out
 exit-address-family
exit
";

/// RFC 4271 §6.3 first-AS check against a real peer that violates it: with the check on (the
/// default) the foreign-first-AS and empty paths are treated as withdraws (RFC 7606 §7.2) and
/// the session stays up, while the correctly prepended route from the same peer is
/// accepted; with the check switched off for that peer, all three are accepted.
#[test]
fn frr_route_server_paths_and_the_first_as_check() {
    let l = lab_text("bgpd-firstas", FRR_ROUTE_SERVER);
    let says = frr_says(&l.frr);
    let mut p = PeerConfig::new(ip("10.0.0.2"), 65000);
    p.families = vec![Family::Ipv4Unicast];
    p.hold_time = 9;
    l.us.add_peer(p.clone());
    l.us.wait_established(ip("10.0.0.2"), &says);
    // FRR did send the two bad paths (its Adj-RIB-Out says so) ...
    l.us.wait(
        "FRR advertising the three routes with their paths",
        || {
            let v = l
                .frr
                .json("show bgp ipv4 unicast neighbors 10.0.0.1 advertised-routes json")
                .map_err(|e| e.to_string())?;
            let paths: Vec<(String, String)> =
                ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"]
                    .iter()
                    .filter_map(|pfx| {
                        let path = v["advertisedRoutes"][*pfx]["path"].as_str()?;
                        Some(((*pfx).to_owned(), path.to_owned()))
                    })
                    .collect();
            (paths.len() == 3)
                .then_some(paths.clone())
                .ok_or(format!("{v}"))
        },
        &says,
    );
    // ... and we read them: one UPDATE each, the two bad ones counted as treat-as-withdraw.
    let good = l.us.wait(
        "the correctly prepended route, and two treat-as-withdraws",
        || {
            let st = l.us.peer(ip("10.0.0.2"));
            let r = l.us.route(Family::Ipv4Unicast, "192.0.2.0/24");
            match r {
                Some(r) if st.treat_as_withdraw == 2 => Ok(r),
                _ => Err(format!("{st:?}")),
            }
        },
        &says,
    );
    assert_eq!(good.as_path, "65000");
    assert!(l.us.route(Family::Ipv4Unicast, "198.51.100.0/24").is_none());
    assert!(l.us.route(Family::Ipv4Unicast, "203.0.113.0/24").is_none());
    let rib_in =
        l.us.routes(Family::Ipv4Unicast, RibKind::AdjRibIn(ip("10.0.0.2")));
    assert_eq!(rib_in.len(), 1, "{rib_in:?}");
    let st = l.us.peer(ip("10.0.0.2"));
    assert_eq!(st.state, bgpd::fsm::State::Established, "{st:?}");
    assert_eq!(
        l.frr.neighbor_state(ip("10.0.0.1")).unwrap().as_deref(),
        Some("Established"),
        "no NOTIFICATION: the session stayed up\n{}",
        says()
    );

    // Switched off for this peer (it is a route server): the session is reset and all three
    // are accepted, with the paths FRR sent.
    p.enforce_first_as = false;
    l.us.block(l.us.speaker.update_peer(p)).unwrap();
    let foreign = l.us.wait(
        "the foreign-first-AS route once the check is off",
        || {
            l.us.route(Family::Ipv4Unicast, "198.51.100.0/24")
                .ok_or_else(|| format!("{:?}", l.us.peer(ip("10.0.0.2"))))
        },
        &says,
    );
    assert_eq!(foreign.as_path, "65099");
    let empty = l.us.wait(
        "the empty-path route once the check is off",
        || {
            l.us.route(Family::Ipv4Unicast, "203.0.113.0/24")
                .ok_or_else(String::new)
        },
        &says,
    );
    assert_eq!(empty.as_path, "");
    assert!(l.us.route(Family::Ipv4Unicast, "192.0.2.0/24").is_some());
    assert_eq!(l.us.peer(ip("10.0.0.2")).treat_as_withdraw, 0);
    let _ = (&l.frr_ns, &l.us_ns);
}

#[test]
fn frr_hold_timer_expiry_when_peer_disappears() {
    let frr_cfg = BgpConfig::new(65000, "10.0.0.2".parse().unwrap())
        .neighbor(
            Neighbor::new(ip("10.0.0.1"), 65001)
                .families(&[LabFamily::Ipv4Unicast])
                .hold_time(3),
        )
        .route(Route::new("198.51.100.0/24").unwrap());
    let mut l = lab("bgpd-hold", frr_cfg);
    let mut p = PeerConfig::new(ip("10.0.0.2"), 65000);
    p.families = vec![Family::Ipv4Unicast];
    p.hold_time = 3;
    l.us.add_peer(p);
    l.us.wait_established(ip("10.0.0.2"), frr_says(&l.frr));
    l.us.wait(
        "route",
        || {
            l.us.route(Family::Ipv4Unicast, "198.51.100.0/24")
                .ok_or_else(String::new)
        },
        frr_says(&l.frr),
    );
    // The peer vanishes without a FIN: stop bgpd (SIGSTOP), nothing is sent any more.
    l.frr.bgpd().signal(libc::SIGSTOP).unwrap();
    let err = l.us.wait(
        "hold timer expiry",
        || {
            let st = l.us.peer(ip("10.0.0.2"));
            st.last_error
                .clone()
                .filter(|e| e.contains("code: 4") && st.state != bgpd::fsm::State::Established)
                .ok_or(format!("{st:?}"))
        },
        || String::from("(FRR bgpd is stopped)"),
    );
    assert!(err.contains("NotificationSent"), "{err}");
    assert!(
        l.us.route(Family::Ipv4Unicast, "198.51.100.0/24").is_none(),
        "routes dropped with the session"
    );
    l.frr.bgpd().signal(libc::SIGCONT).unwrap();
}

/// FRR's view of neighbour `addr`: (state, foreign port = our source port, sessions so far).
fn frr_neighbor(frr: &Frr, addr: &str) -> Result<(String, u64, u64), String> {
    let v = frr
        .json(&format!("show bgp neighbors {addr} json"))
        .map_err(|e| e.to_string())?;
    let n = &v[addr];
    Ok((
        n["bgpState"].as_str().unwrap_or_default().to_owned(),
        n["portForeign"].as_u64().unwrap_or(0),
        n["connectionsEstablished"].as_u64().unwrap_or(0),
    ))
}

/// Wait until FRR has session number `n` with `addr` up, from our port `port`.
fn wait_frr_session(l: &Lab, addr: &str, port: u16, n: u64, timeout: Duration) {
    let end = std::time::Instant::now() + timeout;
    loop {
        let got = frr_neighbor(&l.frr, addr);
        if got == Ok(("Established".into(), u64::from(port), n)) {
            return;
        }
        assert!(
            std::time::Instant::now() < end,
            "FRR session #{n} with {addr} from port {port}: last {got:?}\nours: {:?}\n{}",
            l.us.peer(ip(addr)),
            frr_says(&l.frr)()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A passive FRR (so every session is our outgoing connection) with one IPv4 and one IPv6
/// neighbour; our IPv4 peer has a fixed source port.
fn local_port_lab(name: &str, port: u16) -> (Lab, PeerConfig) {
    let frr_cfg = BgpConfig::new(65000, "10.0.0.2".parse().unwrap())
        .neighbor(
            Neighbor::new(ip("10.0.0.1"), 65001)
                .families(&[LabFamily::Ipv4Unicast])
                .passive(),
        )
        .neighbor(
            Neighbor::new(ip("fd00::1"), 65001)
                .families(&[LabFamily::Ipv6Unicast])
                .passive(),
        );
    let l = lab(name, frr_cfg);
    let mut v4 = PeerConfig::new(ip("10.0.0.2"), 65000);
    v4.families = vec![Family::Ipv4Unicast];
    v4.local_port = Some(port);
    v4.connect_retry = 2;
    (l, v4)
}

#[test]
fn frr_sees_our_configured_source_port_across_resets() {
    let (l, v4) = local_port_lab("bgpd-lport", 40179);
    let mut v6 = PeerConfig::new(ip("fd00::2"), 65000);
    v6.families = vec![Family::Ipv6Unicast];
    l.us.add_peer(v4.clone());
    l.us.add_peer(v6);
    wait_frr_session(&l, "10.0.0.1", 40179, 1, T);
    assert_eq!(l.us.peer(ip("10.0.0.2")).local_port, Some(40179));
    l.frr.wait_established(ip("fd00::1"), T).unwrap();
    let v6_port = frr_neighbor(&l.frr, "fd00::1").unwrap().1;
    assert_ne!(v6_port, 0);

    // A new local port via update_peer resets that session only.
    let mut moved = v4.clone();
    moved.local_port = Some(40180);
    l.us.block(l.us.speaker.update_peer(moved.clone())).unwrap();
    wait_frr_session(&l, "10.0.0.1", 40180, 2, T);
    assert_eq!(
        frr_neighbor(&l.frr, "fd00::1").unwrap(),
        ("Established".into(), v6_port, 1),
        "the IPv6 session was not touched"
    );

    // FRR resets every session (`clear bgp *`): ours comes back from the same port.
    l.frr.vtysh(&["clear bgp *"]).unwrap();
    wait_frr_session(&l, "10.0.0.1", 40180, 3, T);

    // We reset it (any non-policy change does, here the hold time): we send a Cease and let
    // FRR close first, so the TIME_WAIT is on FRR's side, which accepts our next SYN.
    moved.hold_time = 60;
    l.us.block(l.us.speaker.update_peer(moved)).unwrap();
    wait_frr_session(&l, "10.0.0.1", 40180, 4, T);
    assert_eq!(our_time_waits(&l, 40180), "", "we closed first");
    let _ = &l.frr_ns;
}

/// Our sockets from `port` in TIME_WAIT (empty: none).
fn our_time_waits(l: &Lab, port: u16) -> String {
    l.us_ns
        .output(&[
            "ss",
            "-tanH",
            "state",
            "time-wait",
            &format!("( sport = :{port} )"),
        ])
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn frr_without_tcp_timestamps_source_port_comes_back_after_time_wait() {
    let (mut l, mut v4) = local_port_lab("bgpd-lport-nots", 40179);
    // FRR's kernel stops offering timestamps (as TCP-MD5 does): a TIME_WAIT on our side then
    // blocks the same four-tuple until it expires (60 s on Linux).
    l.frr_ns.sysctl("net.ipv4.tcp_timestamps", "0").unwrap();
    // Cilium's default connect-retry: the retry while the port is blocked is capped at 5 s,
    // so the session is back shortly after the 60 s TIME_WAIT, not after up to 120 s.
    v4.connect_retry = 120;
    l.us.add_peer(v4.clone());
    wait_frr_session(&l, "10.0.0.1", 40179, 1, T);

    // Our reset: FRR reads the Cease and closes first, so there is no TIME_WAIT on our side
    // and the session is back at once, from the same port (20 s is well under the 60 s a
    // TIME_WAIT of ours would cost).
    v4.hold_time = 60;
    l.us.block(l.us.speaker.update_peer(v4.clone())).unwrap();
    wait_frr_session(&l, "10.0.0.1", 40179, 2, Duration::from_secs(20));
    assert_eq!(our_time_waits(&l, 40179), "", "we closed first");

    // A peer that does not close within the linger (frozen here) gets our FIN first: the
    // four-tuple is in TIME_WAIT on our side, the kernel refuses it (EADDRNOTAVAIL), we say
    // why and retry every 5 s until it is free.
    l.frr.bgpd().signal(libc::SIGSTOP).unwrap();
    v4.hold_time = 90;
    l.us.block(l.us.speaker.update_peer(v4)).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    l.frr.bgpd().signal(libc::SIGCONT).unwrap();
    l.us.wait(
        "the TIME_WAIT explanation in last_error",
        || {
            let st = l.us.peer(ip("10.0.0.2"));
            st.last_error
                .clone()
                .filter(|e| e.contains("local port 40179") && e.contains("TIME_WAIT"))
                .ok_or(format!("{st:?}"))
        },
        frr_says(&l.frr),
    );
    assert_ne!(our_time_waits(&l, 40179), "");
    wait_frr_session(&l, "10.0.0.1", 40179, 3, Duration::from_secs(90));
}
