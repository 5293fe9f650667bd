//! Two of our own speakers over loopback (no namespaces, no root needed): session setup with
//! connection collisions, routes both ways, attributes, withdraw, route refresh, peer removal.

#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bgpd::fsm::State;
use bgpd::policy::{Actions, Policy, PrefixMatch, Statement};
use bgpd::{Event, Family, PeerConfig, RibKind, RouteQuery, Speaker, SpeakerConfig};
use bgpd_wire::{Community, PathAttributes};

fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip.parse::<IpAddr>().unwrap(), 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

async fn speaker(asn: u32, id: &str, listen: SocketAddr) -> Speaker {
    logs();
    let mut c = SpeakerConfig::new(asn, id.parse().unwrap());
    c.listen = vec![listen];
    Speaker::start(c).await.unwrap()
}

fn peer(addr: &str, port: u16, asn: u32, src: &str) -> PeerConfig {
    let mut p = PeerConfig::new(addr.parse().unwrap(), asn);
    p.port = port;
    p.source_address = Some(src.parse().unwrap());
    p.hold_time = 9;
    p.connect_retry = 1;
    p
}

async fn wait<F: AsyncFnMut() -> Option<T>, T>(what: &str, mut f: F) -> T {
    for _ in 0..300 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn established(s: &Speaker, what: &str) {
    wait(what, async || {
        let p = s.peers().await.unwrap();
        (p.len() == 1 && p[0].state == State::Established).then_some(())
    })
    .await
}

async fn loc_rib(s: &Speaker, f: Family) -> Vec<bgpd::RouteEntry> {
    s.routes(RouteQuery {
        family: f,
        rib: RibKind::LocRib,
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_speakers_exchange_routes() {
    let (pa, pb) = (free_port("127.0.0.1"), free_port("127.0.0.2"));
    let a = speaker(65001, "1.1.1.1", format!("127.0.0.1:{pa}").parse().unwrap()).await;
    let b = speaker(
        4_200_000_002,
        "2.2.2.2",
        format!("127.0.0.2:{pb}").parse().unwrap(),
    )
    .await;
    let mut events = b.subscribe().await.unwrap();
    // Both sides active: the connections collide and §6.8 must leave exactly one.
    let mut to_b = peer("127.0.0.2", pb, 4_200_000_002, "127.0.0.1");
    to_b.export = Policy {
        statements: vec![Statement {
            prefixes: vec![PrefixMatch::orlonger("10.0.0.0/8".parse().unwrap())],
            actions: Actions {
                add_communities: vec![(65001 << 16) | 100],
                add_large_communities: vec![[65001, 1, 2]],
                ..Default::default()
            },
        }],
        default_accept: true,
    };
    a.add_peer(to_b).await.unwrap();
    b.add_peer(peer("127.0.0.1", pa, 0, "127.0.0.2"))
        .await
        .unwrap();
    established(&a, "a established").await;
    established(&b, "b established").await;
    let st = b.peers().await.unwrap().remove(0);
    assert_eq!(
        st.peer_as, 65001,
        "peer AS 0 accepts what the peer announces"
    );
    assert!(st.capabilities.iter().any(|c| c == "4-octet-as"));

    // A originates v4 and v6 prefixes; B learns them with A's AS prepended.
    a.add_local_route(
        Family::Ipv4Unicast,
        "10.1.0.0/24".parse().unwrap(),
        PathAttributes::default(),
    )
    .await
    .unwrap();
    a.add_local_route(
        Family::Ipv4Unicast,
        "192.0.2.0/24".parse().unwrap(),
        PathAttributes::default(),
    )
    .await
    .unwrap();
    a.add_local_route(
        Family::Ipv6Unicast,
        "2001:db8:1::/48".parse().unwrap(),
        PathAttributes::default(),
    )
    .await
    .unwrap();
    let r = wait("v4 routes on b", async || {
        let r = loc_rib(&b, Family::Ipv4Unicast).await;
        (r.len() == 2).then_some(r)
    })
    .await;
    let r10 = r
        .iter()
        .find(|e| e.prefix.to_string() == "10.1.0.0/24")
        .unwrap();
    assert_eq!(r10.as_path, "65001");
    assert_eq!(r10.next_hop.to_string(), "127.0.0.1");
    assert_eq!(r10.communities, vec!["65001:100"]);
    assert_eq!(r10.large_communities, vec!["65001:1:2"]);
    let r192 = r
        .iter()
        .find(|e| e.prefix.to_string() == "192.0.2.0/24")
        .unwrap();
    assert!(
        r192.communities.is_empty(),
        "export statement matched only 10/8"
    );
    let r6 = wait("v6 route on b", async || {
        let r = loc_rib(&b, Family::Ipv6Unicast).await;
        (r.len() == 1).then_some(r)
    })
    .await;
    assert_eq!(
        r6[0].next_hop.to_string(),
        "::ffff:127.0.0.1",
        "v4 session: v4-mapped next hop"
    );

    // Events: B's stream carries the best-path changes with next hops.
    let ev = wait("best path event", async || match events.try_recv() {
        Ok(Event::BestPath(c)) if c.prefix.to_string() == "10.1.0.0/24" => Some(c),
        _ => None,
    })
    .await;
    assert_eq!(ev.next_hops, vec!["127.0.0.1".parse::<IpAddr>().unwrap()]);
    assert_eq!(
        ev.attributes.unwrap().communities,
        vec![Community((65001 << 16) | 100)]
    );

    // B's Adj-RIB-Out to A: B does not send A's routes back to A.
    let out = b
        .routes(RouteQuery {
            family: Family::Ipv4Unicast,
            rib: RibKind::AdjRibOut("127.0.0.1".parse().unwrap()),
        })
        .await
        .unwrap();
    assert!(out.is_empty(), "{out:?}");
    let st = a.peers().await.unwrap().remove(0);
    assert_eq!(st.families[0].advertised, 2);

    // Route refresh from B: A resends, nothing changes.
    b.request_route_refresh("127.0.0.1".parse().unwrap(), Family::Ipv4Unicast)
        .await
        .unwrap();

    // Export policy change without a session reset: A stops exporting 192.0.2.0/24 to B.
    let mut to_b2 = peer("127.0.0.2", pb, 4_200_000_002, "127.0.0.1");
    to_b2.export = Policy {
        statements: vec![Statement {
            prefixes: vec![PrefixMatch::exact("192.0.2.0/24".parse().unwrap())],
            actions: Actions {
                reject: true,
                ..Default::default()
            },
        }],
        default_accept: true,
    };
    a.update_peer(to_b2).await.unwrap();
    wait("policy withdraw on b", async || {
        let r = loc_rib(&b, Family::Ipv4Unicast).await;
        (r.len() == 1 && r[0].prefix.to_string() == "10.1.0.0/24").then_some(())
    })
    .await;
    assert_eq!(
        a.peers().await.unwrap()[0].state,
        State::Established,
        "no reset"
    );

    // Withdraw.
    a.remove_local_route(Family::Ipv4Unicast, "10.1.0.0/24".parse().unwrap())
        .await
        .unwrap();
    wait("withdraw on b", async || {
        loc_rib(&b, Family::Ipv4Unicast)
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    let ev = wait("withdraw event", async || match events.try_recv() {
        Ok(Event::BestPath(c)) if c.prefix.to_string() == "10.1.0.0/24" && c.is_withdraw() => {
            Some(c)
        }
        _ => None,
    })
    .await;
    assert!(ev.next_hops.is_empty());

    // Removing the peer on A takes the session down on B and B drops A's routes.
    a.remove_peer("127.0.0.2".parse().unwrap()).await.unwrap();
    wait("routes gone on b", async || {
        loc_rib(&b, Family::Ipv6Unicast)
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_peer_as_never_establishes_and_reports_error() {
    let (pa, pb) = (free_port("127.0.0.3"), free_port("127.0.0.4"));
    let a = speaker(65001, "1.1.1.1", format!("127.0.0.3:{pa}").parse().unwrap()).await;
    let b = speaker(65002, "2.2.2.2", format!("127.0.0.4:{pb}").parse().unwrap()).await;
    a.add_peer(peer("127.0.0.4", pb, 65099, "127.0.0.3"))
        .await
        .unwrap();
    b.add_peer(peer("127.0.0.3", pa, 65001, "127.0.0.4"))
        .await
        .unwrap();
    let err = wait("bad peer AS error", async || {
        let p = a.peers().await.unwrap().remove(0);
        p.last_error.filter(|e| e.contains("code: 2, subcode: 2"))
    })
    .await;
    assert!(err.contains("NotificationSent"), "{err}");
    assert_ne!(b.peers().await.unwrap()[0].state, State::Established);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test]
async fn api_errors() {
    let s = Speaker::start(SpeakerConfig::new(65001, "1.1.1.1".parse().unwrap()))
        .await
        .unwrap();
    let p = PeerConfig::new("192.0.2.1".parse().unwrap(), 65000);
    s.add_peer(p.clone()).await.unwrap();
    assert!(matches!(
        s.add_peer(p).await,
        Err(bgpd::Error::PeerExists(_))
    ));
    assert!(matches!(
        s.remove_peer("192.0.2.9".parse().unwrap()).await,
        Err(bgpd::Error::NoSuchPeer(_))
    ));
    let r = s
        .add_local_route(
            Family::Ipv6Unicast,
            "10.0.0.0/8".parse().unwrap(),
            Default::default(),
        )
        .await;
    assert!(matches!(r, Err(bgpd::Error::FamilyMismatch { .. })));
    let mut bad = PeerConfig::new("192.0.2.2".parse().unwrap(), 65000);
    bad.hold_time = 1;
    assert!(matches!(s.add_peer(bad).await, Err(bgpd::Error::Config(_))));
    // A family we have no tables for: a typed error wherever it is given.
    let evpn = Family::Other { afi: 25, safi: 70 };
    let mut l2vpn = PeerConfig::new("192.0.2.3".parse().unwrap(), 65000);
    l2vpn.families = vec![Family::Ipv4Unicast, evpn];
    assert!(matches!(
        s.add_peer(l2vpn).await,
        Err(bgpd::Error::Config(
            bgpd::config::ConfigError::UnsupportedFamily { family, .. }
        )) if family == evpn
    ));
    let q = RouteQuery {
        family: evpn,
        rib: RibKind::LocRib,
    };
    assert!(matches!(
        s.routes(q).await,
        Err(bgpd::Error::UnsupportedFamily { family }) if family == evpn
    ));
    let r = s
        .add_local_route(evpn, "10.0.0.0/8".parse().unwrap(), Default::default())
        .await;
    assert!(matches!(r, Err(bgpd::Error::FamilyMismatch { .. })));
    // Positive control: the supported families are listed, the peer that was accepted too.
    assert!(
        s.routes(RouteQuery {
            family: Family::Ipv4Unicast,
            ..q
        })
        .await
        .is_ok()
    );
    let peers = s.peers().await.unwrap();
    assert_eq!(peers.len(), 1, "{peers:?}");
    assert_eq!(peers[0].families.len(), 2);
    assert!(
        s.request_route_refresh("192.0.2.1".parse().unwrap(), Family::Ipv4Unicast)
            .await
            .is_err()
    );
    s.shutdown().await.unwrap();
    assert!(matches!(s.peers().await, Err(bgpd::Error::Stopped)));
    let mut c = SpeakerConfig::new(65001, "1.1.1.1".parse().unwrap());
    c.listen = vec!["192.0.2.200:179".parse().unwrap()];
    assert!(matches!(
        Speaker::start(c).await,
        Err(bgpd::Error::Listen { .. })
    ));
}

/// What the protocol does not need a new session for is applied in place: the keepalive
/// interval (a local matter, RFC 4271 §10; the running session uses it from its next
/// KEEPALIVE) and the connect-retry time. A new hold time is in the OPEN, so it resets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_and_connect_retry_change_in_place_hold_time_resets() {
    let (pa, pb) = (free_port("127.0.0.5"), free_port("127.0.0.6"));
    let a = speaker(65001, "1.1.1.1", format!("127.0.0.5:{pa}").parse().unwrap()).await;
    let b = speaker(65002, "2.2.2.2", format!("127.0.0.6:{pb}").parse().unwrap()).await;
    let mut to_b = peer("127.0.0.6", pb, 65002, "127.0.0.5");
    to_b.hold_time = 30;
    a.add_peer(to_b.clone()).await.unwrap();
    b.add_peer(peer("127.0.0.5", pa, 65001, "127.0.0.6"))
        .await
        .unwrap();
    // A session's uptime only grows; a new session starts again from 0.
    let st = wait("a session up for 2 s", async || {
        let st = a.peers().await.unwrap().remove(0);
        (st.state == State::Established && st.uptime_secs >= Some(2)).then_some(st)
    })
    .await;
    // Negotiated hold 9 s (b offers 9): keepalive a third of it.
    assert_eq!((st.hold_time, st.keepalive), (Some(9), Some(3)));

    to_b.keepalive = Some(1);
    to_b.connect_retry = 7;
    a.update_peer(to_b.clone()).await.unwrap();
    let st = a.peers().await.unwrap().remove(0);
    assert_eq!(st.state, State::Established);
    assert_eq!(st.keepalive, Some(1), "applied to the running session");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let st = a.peers().await.unwrap().remove(0);
    assert_eq!(st.state, State::Established);
    assert!(st.uptime_secs >= Some(3), "the session was reset: {st:?}");
    assert_eq!(st.last_error, None);

    to_b.hold_time = 60;
    a.update_peer(to_b).await.unwrap();
    let st = wait("a new session after the hold-time change", async || {
        let st = a.peers().await.unwrap().remove(0);
        (st.state == State::Established && st.uptime_secs < Some(2)).then_some(st)
    })
    .await;
    // Still min(60, 9) = 9 s; the configured 1 s keepalive carries over.
    assert_eq!((st.hold_time, st.keepalive), (Some(9), Some(1)));
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

/// The graceful-restart time is per peer: each peer hears its own in our capability, and
/// changing it resets that peer's session only (it is in the OPEN).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_time_is_per_peer() {
    use bgpd::config::GracefulRestartConfig;
    use bgpd_wire::Capability;
    let (pa, pb, pc) = (
        free_port("127.0.0.7"),
        free_port("127.0.0.8"),
        free_port("127.0.0.9"),
    );
    logs();
    let mut ca = SpeakerConfig::new(65001, "1.1.1.1".parse().unwrap());
    ca.listen = vec![format!("127.0.0.7:{pa}").parse().unwrap()];
    ca.graceful_restart = Some(GracefulRestartConfig {
        restart_time: 120,
        restarting: false,
        stale_path_time: 360,
    });
    let a = Speaker::start(ca).await.unwrap();
    let b = speaker(65002, "2.2.2.2", format!("127.0.0.8:{pb}").parse().unwrap()).await;
    let c = speaker(65003, "3.3.3.3", format!("127.0.0.9:{pc}").parse().unwrap()).await;
    let mut to_b = peer("127.0.0.8", pb, 65002, "127.0.0.7");
    to_b.restart_time = Some(33);
    let to_c = peer("127.0.0.9", pc, 65003, "127.0.0.7");
    a.add_peer(to_b.clone()).await.unwrap();
    a.add_peer(to_c).await.unwrap();
    b.add_peer(peer("127.0.0.7", pa, 65001, "127.0.0.8"))
        .await
        .unwrap();
    c.add_peer(peer("127.0.0.7", pa, 65001, "127.0.0.9"))
        .await
        .unwrap();
    // The restart time a speaker heard from a, and its session's uptime.
    async fn heard(s: &Speaker) -> Option<(Option<u16>, Option<u64>)> {
        let st = s.peers().await.unwrap().remove(0);
        if st.state != State::Established {
            return None;
        }
        let t = st.remote_capabilities.iter().find_map(|c| match c {
            Capability::GracefulRestart(g) => Some(g.restart_time),
            _ => None,
        });
        Some((t, st.uptime_secs))
    }
    let (b_time, _) = wait("b established", async || heard(&b).await).await;
    let (c_time, _) = wait("c up for 2 s", async || {
        heard(&c).await.filter(|(_, up)| *up >= Some(2))
    })
    .await;
    assert_eq!(b_time, Some(33), "b's own time");
    assert_eq!(c_time, Some(120), "the speaker's time");

    to_b.restart_time = Some(44);
    a.update_peer(to_b).await.unwrap();
    // Only a new session can carry the new time.
    wait("b to hear 44 s", async || {
        heard(&b).await.filter(|(t, _)| *t == Some(44))
    })
    .await;
    let (_, c_up) = heard(&c).await.unwrap();
    assert!(c_up >= Some(2), "c's session was reset");
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    c.shutdown().await.unwrap();
}

/// Export changes that need no new session reach the peer in place (RFC 4271 §9.2: an
/// UPDATE when what we advertise changes): new actions of the same export statement (other
/// communities) and a new advertised next hop; the session is not reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_changes_in_place_reach_the_peer() {
    let (pa, pb) = (free_port("127.0.0.10"), free_port("127.0.0.11"));
    let a = speaker(
        65001,
        "1.1.1.1",
        format!("127.0.0.10:{pa}").parse().unwrap(),
    )
    .await;
    let b = speaker(
        65002,
        "2.2.2.2",
        format!("127.0.0.11:{pb}").parse().unwrap(),
    )
    .await;
    let with_community = |value: u32| Policy {
        statements: vec![Statement {
            prefixes: vec![PrefixMatch::exact("10.9.0.0/24".parse().unwrap())],
            actions: Actions {
                add_communities: vec![(65001 << 16) | value],
                ..Default::default()
            },
        }],
        default_accept: false,
    };
    let mut events = a.subscribe().await.unwrap();
    let mut to_b = peer("127.0.0.11", pb, 65002, "127.0.0.10");
    to_b.export = with_community(1);
    a.add_peer(to_b.clone()).await.unwrap();
    b.add_peer(peer("127.0.0.10", pa, 65001, "127.0.0.11"))
        .await
        .unwrap();
    a.add_local_route(
        Family::Ipv4Unicast,
        "10.9.0.0/24".parse().unwrap(),
        PathAttributes::default(),
    )
    .await
    .unwrap();
    // What b has for the prefix: (communities, next hop).
    let seen = async |b: &Speaker| {
        let r = loc_rib(b, Family::Ipv4Unicast).await;
        r.into_iter()
            .find(|e| e.prefix.to_string() == "10.9.0.0/24")
            .map(|e| (e.communities, e.next_hop.to_string()))
    };
    let first = wait("b to learn 10.9.0.0/24", async || seen(&b).await).await;
    assert_eq!(
        first,
        (vec!["65001:1".to_string()], "127.0.0.10".to_string())
    );
    // The session's state changes so far, up to Established (which shows they are reported).
    let mut up = false;
    while let Ok(ev) = events.try_recv() {
        if let Event::PeerState(c) = ev {
            up = c.to == State::Established;
        }
    }
    assert!(up, "a's session came up");

    to_b.export = with_community(2);
    a.update_peer(to_b.clone()).await.unwrap();
    wait("b to see the new community", async || {
        seen(&b)
            .await
            .filter(|(c, _)| *c == ["65001:2".to_string()])
    })
    .await;

    to_b.next_hop_v4 = Some("192.0.2.10".parse().unwrap());
    a.update_peer(to_b).await.unwrap();
    wait("b to see the new next hop", async || {
        seen(&b).await.filter(|(_, nh)| nh == "192.0.2.10")
    })
    .await;
    while let Ok(ev) = events.try_recv() {
        assert!(
            !matches!(ev, Event::PeerState(_)),
            "the session changed state: {ev:?}"
        );
    }
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
