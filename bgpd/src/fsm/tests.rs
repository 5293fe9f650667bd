//! Unit tests of the session FSM (RFC 4271 §8): the OPEN exchange and what it negotiates,
//! OPEN errors, hold and retry timers, collisions (§6.8) and the idle-hold backoff.

use super::*;

fn cfg() -> FsmConfig {
    FsmConfig {
        local_as: 65001,
        router_id: Ipv4Addr::new(1, 1, 1, 1),
        peer_as: 65000,
        hold_time: 90,
        keepalive: None,
        connect_retry: Duration::from_secs(30),
        passive: false,
        families: vec![Family::Ipv4Unicast, Family::Ipv6Unicast],
        extended_next_hop: vec![],
        graceful_restart: None,
    }
}

fn peer_open(asn: u32, hold: u16, id: [u8; 4]) -> Open {
    Open {
        version: 4,
        my_as: u16::try_from(asn).unwrap_or(AS_TRANS),
        hold_time: hold,
        router_id: Ipv4Addr::from(id),
        capabilities: vec![
            Capability::Multiprotocol(Family::Ipv4Unicast),
            Capability::FourOctetAs(asn),
            Capability::RouteRefresh,
        ],
    }
}

fn sent_notification(actions: &[Action]) -> Option<(u8, u8)> {
    actions.iter().find_map(|a| match a {
        Action::Send(Message::Notification(n)) => Some((n.code, n.subcode)),
        _ => None,
    })
}

fn has(actions: &[Action], f: impl Fn(&Action) -> bool) -> bool {
    actions.iter().any(f)
}

/// Drive to OpenSent over an outgoing connection.
fn open_sent(c: FsmConfig) -> Fsm {
    let mut f = Fsm::new(c);
    let a = f.handle(Input::Start);
    assert!(has(&a, |a| *a == Action::Connect));
    assert_eq!(f.state(), State::Connect);
    let a = f.handle(Input::TcpConnected);
    assert!(has(&a, |a| matches!(a, Action::Send(Message::Open(_)))));
    assert!(has(&a, |a| *a == Action::StartTimer(Timer::Hold, INITIAL_HOLD)));
    assert_eq!(f.state(), State::OpenSent);
    f
}

fn established(c: FsmConfig, open: Open) -> (Fsm, Negotiated) {
    let mut f = open_sent(c);
    let a = f.handle(Input::Message(Message::Open(open)));
    assert!(has(&a, |a| *a == Action::Send(Message::Keepalive)), "{a:?}");
    assert_eq!(f.state(), State::OpenConfirm);
    let a = f.handle(Input::Message(Message::Keepalive));
    let n = a
        .iter()
        .find_map(|a| match a {
            Action::Established(n) => Some((**n).clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(f.state(), State::Established);
    (f, n)
}

#[test]
fn full_open_exchange_negotiates_min_hold_and_families() {
    let (_, n) = established(cfg(), peer_open(65000, 30, [2, 2, 2, 2]));
    assert_eq!(n.hold_time, 30);
    assert_eq!(n.keepalive, 10);
    assert_eq!(n.families, vec![Family::Ipv4Unicast]);
    assert!(n.four_octet_as && n.route_refresh);
    assert_eq!(n.peer_as, 65000);
}

#[test]
fn open_we_send_carries_capabilities_and_as_trans() {
    let mut c = cfg();
    c.local_as = 4_200_000_001;
    let o = Fsm::new(c).open_message();
    assert_eq!(o.my_as, AS_TRANS);
    assert!(
        o.capabilities
            .contains(&Capability::FourOctetAs(4_200_000_001))
    );
    assert!(
        o.capabilities
            .contains(&Capability::Multiprotocol(Family::Ipv6Unicast))
    );
}

#[test]
fn four_octet_peer_as_and_any_as() {
    let mut c = cfg();
    c.peer_as = 4_200_000_002;
    let (_, n) = established(c, peer_open(4_200_000_002, 90, [2, 2, 2, 2]));
    assert_eq!(n.peer_as, 4_200_000_002);
    let mut c = cfg();
    c.peer_as = 0;
    let (_, n) = established(c, peer_open(64999, 90, [2, 2, 2, 2]));
    assert_eq!(n.peer_as, 64999);
}

#[test]
fn bad_peer_as_is_rejected_with_2_2() {
    let mut f = open_sent(cfg());
    let a = f.handle(Input::Message(Message::Open(peer_open(
        65123,
        90,
        [2, 2, 2, 2],
    ))));
    assert_eq!(sent_notification(&a), Some((2, 2)));
    assert!(has(&a, |a| *a == Action::Disconnect));
    assert!(has(&a, |a| matches!(
        a,
        Action::StartTimer(Timer::IdleHold, _)
    )));
    assert_eq!(f.state(), State::Idle);
}

#[test]
fn unacceptable_hold_time_and_bad_id() {
    for hold in [1, 2] {
        let mut f = open_sent(cfg());
        let a = f.handle(Input::Message(Message::Open(peer_open(
            65000,
            hold,
            [2, 2, 2, 2],
        ))));
        assert_eq!(sent_notification(&a), Some((2, 6)));
    }
    let mut f = open_sent(cfg());
    let a = f.handle(Input::Message(Message::Open(peer_open(
        65000,
        90,
        [0, 0, 0, 0],
    ))));
    assert_eq!(sent_notification(&a), Some((2, 3)));
    // iBGP peer with our own identifier.
    let mut c = cfg();
    c.peer_as = 65001;
    let mut f = open_sent(c);
    let a = f.handle(Input::Message(Message::Open(peer_open(
        65001,
        90,
        [1, 1, 1, 1],
    ))));
    assert_eq!(sent_notification(&a), Some((2, 3)));
    let mut o = peer_open(65000, 90, [2, 2, 2, 2]);
    o.version = 3;
    let mut f = open_sent(cfg());
    let a = f.handle(Input::Message(Message::Open(o)));
    assert_eq!(sent_notification(&a), Some((2, 1)));
}

#[test]
fn hold_zero_disables_timers() {
    let (mut f, n) = established(cfg(), peer_open(65000, 0, [2, 2, 2, 2]));
    assert_eq!((n.hold_time, n.keepalive), (0, 0));
    let a = f.handle(Input::Message(Message::Keepalive));
    assert!(!has(&a, |a| matches!(
        a,
        Action::StartTimer(Timer::Hold, _)
    )));
}

#[test]
fn hold_expiry_sends_4_0_and_reports_down() {
    let (mut f, _) = established(cfg(), peer_open(65000, 9, [2, 2, 2, 2]));
    let a = f.handle(Input::TimerExpired(Timer::Hold));
    assert_eq!(sent_notification(&a), Some((4, 0)));
    assert!(has(&a, |a| matches!(
        a,
        Action::SessionDown(DownReason::NotificationSent {
            code: 4,
            subcode: 0
        })
    )));
    assert_eq!(f.state(), State::Idle);
    // The automatic restart goes back to Connect.
    let a = f.handle(Input::TimerExpired(Timer::IdleHold));
    assert!(has(&a, |a| *a == Action::Connect));
}

#[test]
fn updates_are_delivered_and_restart_hold() {
    let (mut f, _) = established(cfg(), peer_open(65000, 9, [2, 2, 2, 2]));
    let u = Message::Update(Default::default());
    let a = f.handle(Input::Message(u.clone()));
    assert!(has(&a, |a| *a
        == Action::StartTimer(Timer::Hold, Duration::from_secs(9))));
    assert!(has(&a, |a| *a == Action::Deliver(u.clone())));
    let a = f.handle(Input::TimerExpired(Timer::Keepalive));
    assert!(has(&a, |a| *a == Action::Send(Message::Keepalive)));
    assert!(has(&a, |a| *a
        == Action::StartTimer(Timer::Keepalive, Duration::from_secs(3))));
}

#[test]
fn update_before_established_is_fsm_error() {
    let mut f = open_sent(cfg());
    let a = f.handle(Input::Message(Message::Update(Default::default())));
    assert_eq!(sent_notification(&a), Some((5, 1)));
    assert_eq!(f.state(), State::Idle);
}

#[test]
fn passive_waits_in_active_and_connect_failure_waits_for_retry() {
    let mut c = cfg();
    c.passive = true;
    let mut f = Fsm::new(c);
    let a = f.handle(Input::Start);
    assert!(!has(&a, |a| *a == Action::Connect));
    assert_eq!(f.state(), State::Active);
    f.handle(Input::TcpConnected);
    assert_eq!(f.state(), State::OpenSent);

    let mut f = Fsm::new(cfg());
    f.handle(Input::Start);
    f.handle(Input::TcpFailed);
    assert_eq!(f.state(), State::Active);
    let a = f.handle(Input::TimerExpired(Timer::ConnectRetry));
    assert!(has(&a, |a| *a == Action::Connect));
    assert_eq!(f.state(), State::Connect);
}

#[test]
fn stop_sends_cease_and_peer_notification_goes_idle() {
    let (mut f, _) = established(cfg(), peer_open(65000, 90, [2, 2, 2, 2]));
    let a = f.handle(Input::Stop {
        subcode: notif::ADMIN_SHUTDOWN,
    });
    assert_eq!(sent_notification(&a), Some((6, 2)));
    assert!(!has(&a, |a| matches!(
        a,
        Action::StartTimer(Timer::IdleHold, _)
    )));
    let (mut f, _) = established(cfg(), peer_open(65000, 90, [2, 2, 2, 2]));
    let n = Notification {
        code: 6,
        subcode: 4,
        data: Bytes::new(),
    };
    let a = f.handle(Input::Message(Message::Notification(n)));
    assert!(has(&a, |a| matches!(
        a,
        Action::SessionDown(DownReason::NotificationReceived {
            code: 6,
            subcode: 4
        })
    )));
}

#[test]
fn extended_next_hop_and_gr_negotiation() {
    let mut c = cfg();
    c.extended_next_hop = vec![Family::Ipv4Unicast];
    let mut o = peer_open(65000, 90, [2, 2, 2, 2]);
    o.capabilities
        .push(Capability::ExtendedNextHop(vec![ExtendedNextHopEntry {
            nlri: Family::Ipv4Unicast,
            nexthop_afi: 2,
        }]));
    let gr = GracefulRestart {
        restarting: false,
        notification: false,
        restart_time: 120,
        families: vec![(Family::Ipv4Unicast, true)],
    };
    o.capabilities.push(Capability::GracefulRestart(gr.clone()));
    let n = negotiate(&c, &o).unwrap();
    assert_eq!(n.extended_next_hop, vec![Family::Ipv4Unicast]);
    assert_eq!(n.peer_graceful_restart, Some(gr));
    // No MP capability at all: IPv4 unicast implied.
    o.capabilities.clear();
    assert_eq!(
        negotiate(&c, &o).unwrap().families,
        vec![Family::Ipv4Unicast]
    );
}

#[test]
fn collision_keeps_connection_of_higher_id() {
    assert!(keep_our_connection(
        Ipv4Addr::new(2, 0, 0, 0),
        Ipv4Addr::new(1, 255, 255, 255)
    ));
    assert!(!keep_our_connection(
        Ipv4Addr::new(1, 0, 0, 0),
        Ipv4Addr::new(1, 0, 0, 1)
    ));
}

#[test]
fn idle_hold_backs_off() {
    let mut f = Fsm::new(cfg());
    let mut last = Duration::ZERO;
    for _ in 0..10 {
        f.handle(Input::Start);
        let a = f.handle(Input::TcpConnected);
        assert!(!a.is_empty());
        let a = f.handle(Input::TcpClosed);
        let d = a
            .iter()
            .find_map(|a| match a {
                Action::StartTimer(Timer::IdleHold, d) => Some(*d),
                _ => None,
            })
            .unwrap();
        assert!(d >= last && d <= Duration::from_secs(30));
        last = d;
    }
    assert_eq!(last, Duration::from_secs(30));
}
