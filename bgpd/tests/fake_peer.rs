//! Our speaker against a scripted peer over loopback, on a paused tokio clock: timers
//! (keepalive, hold, connect retry) and OPEN validation are checked end to end without waiting
//! in real time. The scripted side speaks through the bgpd-wire codec.

#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use bgpd::fsm::State;
use bgpd::{PeerConfig, RibKind, RouteQuery, Speaker, SpeakerConfig};
use bgpd_wire::{
    AsPath, AsSegment, BgpCodec, Capability, Community, Family, Message, Open, PathAttributes,
    SessionContext, Update,
};
use futures::{FutureExt, SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;

fn peer_open(asn: u32, hold: u16) -> Open {
    Open {
        version: 4,
        my_as: Open::my_as_field(asn),
        hold_time: hold,
        router_id: Ipv4Addr::new(9, 9, 9, 9),
        capabilities: vec![
            Capability::Multiprotocol(Family::Ipv4Unicast),
            Capability::FourOctetAs(asn),
        ],
    }
}

/// A speaker with one active peer pointing at a listener we control.
async fn setup(peer_as: u32, hold: u16) -> (Speaker, TcpListener) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let s = Speaker::start(SpeakerConfig::new(65001, "1.1.1.1".parse().unwrap()))
        .await
        .unwrap();
    let mut p = PeerConfig::new("127.0.0.1".parse().unwrap(), peer_as);
    p.port = l.local_addr().unwrap().port();
    p.hold_time = hold;
    p.connect_retry = 5;
    p.families = vec![Family::Ipv4Unicast];
    s.add_peer(p).await.unwrap();
    (s, l)
}

async fn accept(l: &TcpListener) -> Framed<TcpStream, BgpCodec> {
    let (c, _) = l.accept().await.unwrap();
    Framed::new(c, BgpCodec::default())
}

async fn next(f: &mut Framed<TcpStream, BgpCodec>) -> Message {
    f.next().await.unwrap().unwrap()
}

/// Let loopback I/O happen without advancing the paused clock (sleeping on tokio time would
/// let it jump ahead while the kernel has not delivered the bytes yet).
async fn settle() {
    std::thread::sleep(Duration::from_millis(2));
    tokio::task::yield_now().await;
}

/// OPEN exchange up to Established from the scripted side.
/// A restarting speaker's deferral (RFC 4724 §4.1): nothing goes out until `set_ready`, then
/// the one route `prefix` with community 65001:7, then End-of-RIB; the speaker is stopped.
async fn nothing_until_ready_then(
    s: &Speaker,
    f: &mut Framed<TcpStream, BgpCodec>,
    prefix: ipnet::IpNet,
) {
    for _ in 0..50 {
        settle().await;
    }
    assert!(
        f.next().now_or_never().is_none(),
        "something was sent before the speaker was ready"
    );
    s.set_ready().await.unwrap();
    let Message::Update(u) = next(f).await else {
        panic!("expected the route")
    };
    assert_eq!(u.nlri, vec![prefix]);
    assert_eq!(
        u.attributes.unwrap().communities,
        vec![Community((65001 << 16) | 7)]
    );
    assert_eq!(
        next(f).await,
        Message::Update(Update::end_of_rib_marker(Family::Ipv4Unicast))
    );
    s.shutdown().await.unwrap();
}

async fn establish(f: &mut Framed<TcpStream, BgpCodec>, asn: u32, hold: u16) -> Open {
    let Message::Open(ours) = next(f).await else {
        panic!("expected OPEN")
    };
    let theirs = peer_open(asn, hold);
    f.codec_mut()
        .set_context(SessionContext::negotiate(&theirs, &ours));
    f.send(Message::Open(theirs)).await.unwrap();
    f.send(Message::Keepalive).await.unwrap();
    assert_eq!(next(f).await, Message::Keepalive);
    ours
}

#[tokio::test(start_paused = true)]
async fn keepalives_every_third_of_hold_then_hold_expiry() {
    let (s, l) = setup(65002, 30).await;
    let mut f = accept(&l).await;
    let ours = establish(&mut f, 65002, 9).await;
    assert_eq!(ours.hold_time, 30);
    assert_eq!(
        next(&mut f).await,
        Message::Update(Update::end_of_rib_marker(Family::Ipv4Unicast))
    );
    // Negotiated hold = min(30, 9) = 9 s: keepalives every 3 s (the paused clock
    // auto-advances); we stay silent, so at 9 s the hold timer expires (4/0).
    let t0 = tokio::time::Instant::now();
    for want in [3, 6] {
        assert_eq!(next(&mut f).await, Message::Keepalive);
        assert_eq!(t0.elapsed().as_secs(), want);
    }
    match next(&mut f).await {
        Message::Notification(n) => assert_eq!((n.code, n.subcode), (4, 0)),
        m => panic!("unexpected {m:?}"),
    }
    assert_eq!(t0.elapsed().as_secs(), 9);
    let p = s.peers().await.unwrap().remove(0);
    assert_ne!(p.state, State::Established);
    s.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn open_errors_get_the_right_notification() {
    // (expected peer AS, what the peer announces, hold) -> (code, subcode)
    for (expect_as, asn, hold, want) in [(65002, 65003, 90, (2, 2)), (65002, 65002, 2, (2, 6))] {
        let (s, l) = setup(expect_as, 90).await;
        let mut f = accept(&l).await;
        let Message::Open(_) = next(&mut f).await else {
            panic!()
        };
        f.send(Message::Open(peer_open(asn, hold))).await.unwrap();
        match next(&mut f).await {
            Message::Notification(n) => assert_eq!((n.code, n.subcode), want),
            m => panic!("unexpected {m:?}"),
        }
        s.shutdown().await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn routes_in_treat_as_withdraw_and_end_of_rib_and_reconnect() {
    let (s, l) = setup(0, 90).await;
    let mut f = accept(&l).await;
    establish(&mut f, 65002, 90).await;
    // Our End-of-RIB for IPv4 arrives after the (empty) initial advertisement.
    assert_eq!(
        next(&mut f).await,
        Message::Update(Update::end_of_rib_marker(Family::Ipv4Unicast))
    );
    let attrs = PathAttributes {
        as_path: AsPath {
            segments: vec![AsSegment::Sequence(vec![65002, 65010])],
        },
        next_hop: Some("127.0.0.1".parse().unwrap()),
        ..Default::default()
    };
    let u = Update {
        attributes: Some(Arc::new(attrs.clone())),
        nlri: vec![
            "192.0.2.0/24".parse().unwrap(),
            "198.51.100.0/24".parse().unwrap(),
        ],
        ..Default::default()
    };
    f.send(Message::Update(u)).await.unwrap();
    let q = RouteQuery {
        family: Family::Ipv4Unicast,
        rib: RibKind::LocRib,
    };
    let mut n = 0;
    while s.routes(q).await.unwrap().len() < 2 {
        settle().await;
        n += 1;
        assert!(n < 2000, "{:?}", s.routes(q).await.unwrap());
    }
    // A path through our own AS is a loop: treated as a withdraw (RFC 4271 §9.1.2).
    let looped = PathAttributes {
        as_path: AsPath {
            segments: vec![AsSegment::Sequence(vec![65002, 65001])],
        },
        ..attrs.clone()
    };
    let u = Update {
        attributes: Some(Arc::new(looped)),
        nlri: vec!["192.0.2.0/24".parse().unwrap()],
        ..Default::default()
    };
    f.send(Message::Update(u)).await.unwrap();
    let mut n = 0;
    while s.routes(q).await.unwrap().len() != 1 {
        settle().await;
        n += 1;
        assert!(n < 2000, "{:?}", s.routes(q).await.unwrap());
    }
    // The peer goes away (no GR capability): routes are dropped, and the speaker reconnects
    // after its connect-retry/idle-hold delay.
    drop(f);
    let mut f = accept(&l).await;
    assert!(s.routes(q).await.unwrap().is_empty());
    establish(&mut f, 65002, 90).await;
    s.shutdown().await.unwrap();
    // Shutdown waits for the writers: the Cease (administrative shutdown) is on the wire.
    loop {
        match next(&mut f).await {
            Message::Update(_) => continue,
            Message::Notification(n) => {
                assert_eq!((n.code, n.subcode), (6, 2), "Cease/admin shutdown");
                break;
            }
            m => panic!("unexpected {m:?}"),
        }
    }
}

/// An announcement of `prefix` from the scripted peer with this AS_PATH.
fn announce(segments: Vec<AsSegment>, prefix: &str) -> Message {
    Message::Update(Update {
        attributes: Some(Arc::new(PathAttributes {
            as_path: AsPath { segments },
            next_hop: Some("127.0.0.1".parse().unwrap()),
            ..Default::default()
        })),
        nlri: vec![prefix.parse().unwrap()],
        ..Default::default()
    })
}

/// Polls until the Loc-RIB holds exactly `want` and the peer's treat-as-withdraw counter is
/// `taw` (the counter shows the UPDATEs were read, so an absent route was refused, not late).
async fn wait_rib(s: &Speaker, want: &[&str], taw: u64) {
    let q = RouteQuery {
        family: Family::Ipv4Unicast,
        rib: RibKind::LocRib,
    };
    let mut n = 0;
    loop {
        let got: Vec<String> = s
            .routes(q)
            .await
            .unwrap()
            .iter()
            .map(|r| r.prefix.to_string())
            .collect();
        let st = s.peers().await.unwrap().remove(0);
        if got == want && st.treat_as_withdraw == taw {
            assert_eq!(st.state, State::Established, "the session stays up");
            return;
        }
        settle().await;
        n += 1;
        assert!(n < 2000, "routes {got:?}, want {want:?}; {st:?}");
    }
}

/// RFC 4271 §6.3 first-AS check, on by default for an external peer, as treat-as-withdraw
/// (RFC 7606 §7.2): the session stays up and the counter tells why the routes are missing.
/// Switched off (the peer is a route server, RFC 7947 §2.2.2.1) the same paths are accepted.
#[tokio::test(start_paused = true)]
async fn first_as_check_withdraws_and_can_be_switched_off() {
    use AsSegment::{ConfedSequence, Sequence, Set};
    let (s, l) = setup(65002, 0).await;
    let mut f = accept(&l).await;
    establish(&mut f, 65002, 0).await;
    assert_eq!(
        next(&mut f).await,
        Message::Update(Update::end_of_rib_marker(Family::Ipv4Unicast))
    );
    // Positive control: the peer's AS leftmost.
    f.send(announce(vec![Sequence(vec![65002, 65010])], "192.0.2.0/24"))
        .await
        .unwrap();
    wait_rib(&s, &["192.0.2.0/24"], 0).await;
    let refused = [
        // A foreign first AS.
        (vec![Sequence(vec![65099, 65010])], "198.51.100.0/24"),
        // The peer's AS, but not leftmost.
        (vec![Sequence(vec![65010, 65002])], "198.51.100.0/25"),
        // An empty path: the peer did not prepend at all (RFC 4271 §5.1.2).
        (vec![], "198.51.100.128/25"),
        // A leading AS_SET, even one that holds the peer's AS.
        (vec![Set(vec![65002, 65010])], "203.0.113.0/24"),
        // A confederation segment from outside our (absent) confederation (RFC 5065 §5).
        (
            vec![ConfedSequence(vec![64512]), Sequence(vec![65002])],
            "203.0.113.0/25",
        ),
    ];
    for (path, prefix) in refused.clone() {
        f.send(announce(path, prefix)).await.unwrap();
    }
    wait_rib(&s, &["192.0.2.0/24"], 5).await;
    // Treat-as-withdraw, not "ignore": a route already held is withdrawn.
    f.send(announce(vec![Sequence(vec![65099])], "192.0.2.0/24"))
        .await
        .unwrap();
    wait_rib(&s, &[], 6).await;

    // Switched off: the session is reset and the same paths are now accepted, except the
    // confederation one, which does not depend on the switch.
    let mut p = PeerConfig::new("127.0.0.1".parse().unwrap(), 65002);
    p.port = l.local_addr().unwrap().port();
    p.hold_time = 0;
    p.connect_retry = 5;
    p.families = vec![Family::Ipv4Unicast];
    p.enforce_first_as = false;
    s.update_peer(p).await.unwrap();
    drop(f);
    let mut f = accept(&l).await;
    establish(&mut f, 65002, 0).await;
    assert_eq!(
        next(&mut f).await,
        Message::Update(Update::end_of_rib_marker(Family::Ipv4Unicast))
    );
    for (path, prefix) in refused {
        f.send(announce(path, prefix)).await.unwrap();
    }
    wait_rib(
        &s,
        &[
            "198.51.100.0/24",
            "198.51.100.0/25",
            "198.51.100.128/25",
            "203.0.113.0/24",
        ],
        1,
    )
    .await;
    s.shutdown().await.unwrap();
}

/// The check is for external peers only: an internal peer's locally originated route has an
/// empty AS_PATH (RFC 4271 §5.1.2).
#[tokio::test(start_paused = true)]
async fn first_as_check_skips_internal_peers() {
    let (s, l) = setup(65001, 0).await;
    let mut f = accept(&l).await;
    establish(&mut f, 65001, 0).await;
    assert_eq!(
        next(&mut f).await,
        Message::Update(Update::end_of_rib_marker(Family::Ipv4Unicast))
    );
    f.send(announce(vec![], "192.0.2.0/24")).await.unwrap();
    f.send(announce(
        vec![AsSegment::Sequence(vec![65099])],
        "198.51.100.0/24",
    ))
    .await
    .unwrap();
    wait_rib(&s, &["192.0.2.0/24", "198.51.100.0/24"], 0).await;
    s.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn route_ages_grow_and_restart_only_on_changed_attributes() {
    // Hold time 0: no keepalive or hold timer, so the clock can jump freely.
    let (s, l) = setup(65002, 0).await;
    let mut f = accept(&l).await;
    establish(&mut f, 65002, 0).await;
    assert_eq!(
        next(&mut f).await,
        Message::Update(Update::end_of_rib_marker(Family::Ipv4Unicast))
    );
    let attrs = PathAttributes {
        as_path: AsPath {
            segments: vec![AsSegment::Sequence(vec![65002])],
        },
        next_hop: Some("127.0.0.1".parse().unwrap()),
        ..Default::default()
    };
    let announce = |a: &PathAttributes, prefix: &str| {
        Message::Update(Update {
            attributes: Some(Arc::new(a.clone())),
            nlri: vec![prefix.parse().unwrap()],
            ..Default::default()
        })
    };
    let local = "10.100.0.0/24".parse().unwrap();
    s.add_local_route(Family::Ipv4Unicast, local, PathAttributes::default())
        .await
        .unwrap();
    f.send(announce(&attrs, "192.0.2.0/24")).await.unwrap();
    let loc = RouteQuery {
        family: Family::Ipv4Unicast,
        rib: RibKind::LocRib,
    };
    // Wait (without moving the clock) until `prefix` shows up with `check`.
    let wait_for = |prefix: &'static str, check: fn(&bgpd::RouteEntry) -> bool| {
        let s = &s;
        async move {
            for _ in 0..2000 {
                let rs = s.routes(loc).await.unwrap();
                if let Some(r) = rs
                    .iter()
                    .find(|r| r.prefix.to_string() == prefix && check(r))
                {
                    return r.clone();
                }
                settle().await;
            }
            panic!("{prefix} never matched: {:?}", s.routes(loc).await.unwrap());
        }
    };
    let age = |prefix: &'static str| {
        let s = &s;
        async move {
            let rs = s.routes(loc).await.unwrap();
            rs.iter()
                .find(|r| r.prefix.to_string() == prefix)
                .map(|r| r.age)
                .unwrap()
        }
    };
    wait_for("192.0.2.0/24", |_| true).await;
    assert!(age("192.0.2.0/24").await < Duration::from_secs(1));
    tokio::time::advance(Duration::from_secs(100)).await;
    let a = age("192.0.2.0/24").await;
    assert!(
        a >= Duration::from_secs(100) && a < Duration::from_secs(101),
        "{a:?}"
    );
    let a = age("10.100.0.0/24").await;
    assert!(
        a >= Duration::from_secs(100) && a < Duration::from_secs(101),
        "{a:?}"
    );

    // Identical re-announcements (peer and local): the ages keep growing. The UPDATE for a
    // second prefix after it tells us the first has been processed.
    f.send(announce(&attrs, "192.0.2.0/24")).await.unwrap();
    f.send(announce(&attrs, "198.51.100.0/24")).await.unwrap();
    s.add_local_route(Family::Ipv4Unicast, local, PathAttributes::default())
        .await
        .unwrap();
    wait_for("198.51.100.0/24", |_| true).await;
    assert!(age("192.0.2.0/24").await >= Duration::from_secs(100));
    assert!(age("10.100.0.0/24").await >= Duration::from_secs(100));
    assert!(age("198.51.100.0/24").await < Duration::from_secs(1));

    // Changed attributes (implicit withdraw; new local attributes): the clock restarts.
    tokio::time::advance(Duration::from_secs(50)).await;
    let changed = PathAttributes {
        med: Some(5),
        ..attrs.clone()
    };
    f.send(announce(&changed, "192.0.2.0/24")).await.unwrap();
    let r = wait_for("192.0.2.0/24", |r| r.med == Some(5)).await;
    assert!(r.age < Duration::from_secs(1), "{r:?}");
    assert!(age("198.51.100.0/24").await >= Duration::from_secs(50));
    s.add_local_route(
        Family::Ipv4Unicast,
        local,
        PathAttributes {
            med: Some(7),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(age("10.100.0.0/24").await < Duration::from_secs(1));

    // Adj-RIB-In carries the same ages; Adj-RIB-Out the age of the Loc-RIB source; JSON has
    // whole seconds.
    tokio::time::advance(Duration::from_secs(20)).await;
    let rin = s
        .routes(RouteQuery {
            family: Family::Ipv4Unicast,
            rib: RibKind::AdjRibIn("127.0.0.1".parse().unwrap()),
        })
        .await
        .unwrap();
    let ages: Vec<(String, u64)> = rin
        .iter()
        .map(|r| (r.prefix.to_string(), r.age.as_secs()))
        .collect();
    assert_eq!(
        ages,
        vec![
            ("192.0.2.0/24".to_string(), 20),
            ("198.51.100.0/24".to_string(), 70)
        ]
    );
    let out = s
        .routes(RouteQuery {
            family: Family::Ipv4Unicast,
            rib: RibKind::AdjRibOut("127.0.0.1".parse().unwrap()),
        })
        .await
        .unwrap();
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].age.as_secs(), 20);
    assert_eq!(serde_json::to_value(&out[0]).unwrap()["age_secs"], 20);
    s.shutdown().await.unwrap();
}

/// A restarting speaker (RFC 4724 §4.1) defers its advertisements until the daemon says its
/// routes are in: an export policy change during the deferral must not advertise early.
/// Once ready, the routes follow under the new policy, then End-of-RIB.
#[tokio::test(start_paused = true)]
async fn export_change_during_restart_deferral_advertises_nothing_early() {
    use bgpd::GracefulRestartConfig;
    use bgpd::policy::{Actions, Policy, Statement};
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut c = SpeakerConfig::new(65001, "1.1.1.1".parse().unwrap());
    c.graceful_restart = Some(GracefulRestartConfig {
        restart_time: 120,
        restarting: true,
        stale_path_time: 360,
    });
    let s = Speaker::start(c).await.unwrap();
    let mut p = PeerConfig::new("127.0.0.1".parse().unwrap(), 65002);
    p.port = l.local_addr().unwrap().port();
    // No keepalives: nothing but routes can arrive.
    p.hold_time = 0;
    p.families = vec![Family::Ipv4Unicast];
    s.add_peer(p.clone()).await.unwrap();
    let prefix = "10.9.0.0/24".parse().unwrap();
    s.add_local_route(Family::Ipv4Unicast, prefix, PathAttributes::default())
        .await
        .unwrap();
    let mut f = accept(&l).await;
    establish(&mut f, 65002, 0).await;
    p.export = Policy {
        statements: vec![Statement {
            prefixes: Vec::new(),
            actions: Actions {
                add_communities: vec![(65001 << 16) | 7],
                ..Default::default()
            },
        }],
        default_accept: false,
    };
    s.update_peer(p).await.unwrap();
    nothing_until_ready_then(&s, &mut f, prefix).await;
}

/// The same for `patch_export`: a patch during the deferral sends nothing early, and once
/// ready the initial advertisement follows the patched table (a removed prefix never goes
/// out), then End-of-RIB.
#[tokio::test(start_paused = true)]
async fn export_patch_during_restart_deferral_advertises_nothing_early() {
    use bgpd::GracefulRestartConfig;
    use bgpd::policy::{Actions, ExportPatch, Policy, PrefixMatch, Statement};
    let tag = |n: u32| Actions {
        add_communities: vec![(65001 << 16) | n],
        ..Default::default()
    };
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut c = SpeakerConfig::new(65001, "1.1.1.1".parse().unwrap());
    c.graceful_restart = Some(GracefulRestartConfig {
        restart_time: 120,
        restarting: true,
        stale_path_time: 360,
    });
    let s = Speaker::start(c).await.unwrap();
    let (kept, removed) = (
        "10.9.0.0/24".parse().unwrap(),
        "10.9.1.0/24".parse().unwrap(),
    );
    let mut p = PeerConfig::new("127.0.0.1".parse().unwrap(), 65002);
    p.port = l.local_addr().unwrap().port();
    p.hold_time = 0;
    p.families = vec![Family::Ipv4Unicast];
    p.export = Policy {
        statements: [kept, removed]
            .into_iter()
            .map(|prefix| Statement {
                prefixes: vec![PrefixMatch::exact(prefix)],
                actions: tag(1),
            })
            .collect(),
        default_accept: false,
    };
    s.add_peer(p).await.unwrap();
    s.add_local_routes(vec![
        (kept, PathAttributes::default()),
        (removed, PathAttributes::default()),
    ])
    .await
    .unwrap();
    let mut f = accept(&l).await;
    establish(&mut f, 65002, 0).await;
    let patch = ExportPatch {
        set: vec![(kept, Some(tag(7))), (removed, None)],
    };
    s.patch_export("127.0.0.1".parse().unwrap(), patch)
        .await
        .unwrap();
    nothing_until_ready_then(&s, &mut f, kept).await;
}

/// A speaker listening on a free loopback port (for the peer's own connection to us), and
/// that port.
async fn listening_speaker() -> (Speaker, u16) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut c = SpeakerConfig::new(65001, "1.1.1.1".parse().unwrap());
    c.listen = vec![format!("127.0.0.1:{port}").parse().unwrap()];
    (Speaker::start(c).await.unwrap(), port)
}

/// A listening speaker with one active peer (AS 65002, hold 30 s, connect retry 30 s) whose
/// address is ours too: the returned listener takes our outgoing connection, and the port is
/// where the peer's own connection to us goes.
async fn collision_lab() -> (Speaker, u16, TcpListener) {
    let (s, port) = listening_speaker().await;
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut p = PeerConfig::new("127.0.0.1".parse().unwrap(), 65002);
    p.port = l.local_addr().unwrap().port();
    p.hold_time = 30;
    p.connect_retry = 30;
    p.families = vec![Family::Ipv4Unicast];
    s.add_peer(p).await.unwrap();
    (s, port, l)
}

/// RFC 4271 §6.8 seen from the other side: the peer closes our outgoing connection itself
/// (it resolved the collision first), and its incoming connection, our second slot, goes on to
/// Established. That connection becomes the peer's session, and its Established is reported
/// like any other (a lost event here once left subscribers thinking the session was down).
#[tokio::test]
async fn peer_resolving_a_collision_first_still_reports_established() {
    let (s, port, l) = collision_lab().await;
    let mut events = s.subscribe().await.unwrap();

    // Our outgoing connection: OpenSent.
    let mut main = accept(&l).await;
    let Message::Open(ours) = next(&mut main).await else {
        panic!("expected OPEN")
    };
    // No further outgoing attempt can complete.
    drop(l);
    // The peer's own connection to us: our second slot, which sends its OPEN too.
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut alt = Framed::new(stream, BgpCodec::default());
    assert!(matches!(next(&mut alt).await, Message::Open(_)));
    // The peer drops our connection (Cease / connection collision resolution) ...
    main.send(Message::Notification(bgpd_wire::Notification {
        code: 6,
        subcode: 7,
        data: bytes::Bytes::new(),
    }))
    .await
    .unwrap();
    drop(main);
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|e: &bgpd::PeerStateChange| e.from == State::OpenSent)
    {
        let Some(bgpd::Event::PeerState(e)) =
            tokio::time::timeout(Duration::from_secs(10), events.recv())
                .await
                .unwrap()
        else {
            continue;
        };
        seen.push(e);
    }
    // ... and completes its own.
    let theirs = peer_open(65002, 30);
    alt.codec_mut()
        .set_context(SessionContext::negotiate(&theirs, &ours));
    alt.send(Message::Open(theirs)).await.unwrap();
    alt.send(Message::Keepalive).await.unwrap();
    assert_eq!(next(&mut alt).await, Message::Keepalive);
    // Positive control: the session is up.
    for _ in 0..100 {
        if s.peers().await.unwrap()[0].state == State::Established {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(s.peers().await.unwrap()[0].state, State::Established);
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .unwrap_or_else(|_| panic!("no Established event after {seen:?}"));
        if let Some(bgpd::Event::PeerState(e)) = ev {
            if e.to == State::Established {
                assert_eq!(e.from, State::OpenConfirm);
                break;
            }
            seen.push(e);
        }
    }
    s.shutdown().await.unwrap();
}

/// RFC 4271 §6.8, the other ending: our second connection is still waiting for the peer's OPEN
/// when the first reaches Established, and the peer then drops the second (its own session is
/// up too). That close is no error of the session, which stays up with no error reported; the
/// session's own close afterwards is one (the positive control).
#[tokio::test]
async fn second_connection_closed_beside_the_session_is_not_its_error() {
    let (s, port, l) = collision_lab().await;

    // Our outgoing connection up to OpenConfirm.
    let mut main = accept(&l).await;
    drop(l);
    let Message::Open(ours) = next(&mut main).await else {
        panic!("expected OPEN")
    };
    let theirs = peer_open(65002, 30);
    main.codec_mut()
        .set_context(SessionContext::negotiate(&theirs, &ours));
    main.send(Message::Open(theirs)).await.unwrap();
    assert_eq!(next(&mut main).await, Message::Keepalive);
    // The peer's own connection arrives: our second slot sends its OPEN and waits for one.
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut alt = Framed::new(stream, BgpCodec::default());
    assert!(matches!(next(&mut alt).await, Message::Open(_)));
    // The first connection completes ...
    main.send(Message::Keepalive).await.unwrap();
    let mut up = None;
    for _ in 0..100 {
        let st = s.peers().await.unwrap().remove(0);
        if st.state == State::Established {
            up = Some(st);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let up = up.expect("the session came up");
    assert_eq!(up.last_error, None);
    // ... and the peer drops the second one without a word.
    drop(alt);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let st = s.peers().await.unwrap().remove(0);
    assert_eq!(st.state, State::Established);
    assert_eq!(st.last_error, None, "a healthy session reported an error");

    // Positive control: the session's own connection closing is reported.
    drop(main);
    let mut err = None;
    for _ in 0..100 {
        let st = s.peers().await.unwrap().remove(0);
        if st.last_error.is_some() {
            err = st.last_error;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(err.as_deref(), Some("ConnectionClosed"));
    s.shutdown().await.unwrap();
}
