//! Unit tests of the session FSM: every §6.8.6 transition, poll/final, timer negotiation,
//! jitter bounds and detection expiry.

#![allow(clippy::unwrap_used)]

use super::*;

const LOCAL: u32 = 0x1111;
const REMOTE: u32 = 0x2222;
const MS: u32 = 1000;

fn cfg() -> SessionConfig {
    SessionConfig {
        local_discr: LOCAL,
        desired_min_tx: 300 * MS,
        required_min_rx: 300 * MS,
        detect_mult: 3,
    }
}

struct T {
    s: Session,
    t0: Instant,
}

impl T {
    fn new() -> Self {
        let mut t = T {
            s: Session::new(cfg()),
            t0: Instant::now(),
        };
        t.at(0, Input::Start);
        t
    }
    fn now(&self, ms: u64) -> Now {
        Now::fixed(self.t0 + Duration::from_millis(ms))
    }
    fn at(&mut self, ms: u64, input: Input) -> Vec<Action> {
        let now = self.now(ms);
        self.s.handle(input, now)
    }
    fn rx(&mut self, ms: u64, p: ControlPacket) -> Vec<Action> {
        self.at(ms, Input::Received(p))
    }
    /// Down -> Init -> Up with a remote at 300 ms / 300 ms / 3; the remote answers our Poll.
    fn up() -> Self {
        let mut t = T::new();
        t.rx(10, remote(State::Down));
        t.rx(20, remote(State::Up));
        assert_eq!(t.s.state(), State::Up);
        t.rx(
            30,
            ControlPacket {
                final_: true,
                ..remote(State::Up)
            },
        );
        assert!(!t.s.polling());
        t
    }
}

fn remote(state: State) -> ControlPacket {
    ControlPacket {
        diag: Diag::None,
        state,
        poll: false,
        final_: false,
        cpi: false,
        demand: false,
        detect_mult: 3,
        my_discr: REMOTE,
        your_discr: if state == State::Down { 0 } else { LOCAL },
        desired_min_tx: 300 * MS,
        required_min_rx: 300 * MS,
        required_min_echo_rx: 0,
    }
}

fn sent(acts: &[Action]) -> Vec<ControlPacket> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Send(p) => Some(*p),
            _ => None,
        })
        .collect()
}

fn changes(acts: &[Action]) -> Vec<(State, State, Diag)> {
    acts.iter()
        .filter_map(|a| match a {
            Action::StateChanged { from, to, diag } => Some((*from, *to, *diag)),
            _ => None,
        })
        .collect()
}

fn armed_detect(acts: &[Action]) -> Option<Option<Instant>> {
    acts.iter().rev().find_map(|a| match a {
        Action::ArmDetect(d) => Some(*d),
        _ => None,
    })
}

#[test]
fn start_sends_slow_down_packet_once() {
    let mut s = Session::new(cfg());
    let t0 = Instant::now();
    let acts = s.handle(Input::Start, Now::fixed(t0));
    let p = sent(&acts);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].state, State::Down);
    assert_eq!(p[0].your_discr, 0);
    assert_eq!(p[0].my_discr, LOCAL);
    // §6.8.3: 1 s while not Up, even though 300 ms is configured.
    assert_eq!(p[0].desired_min_tx, SLOW_TX_US);
    assert_eq!(p[0].required_min_rx, 300 * MS);
    assert!(!p[0].poll && !p[0].final_);
    // §6.8.7 jitter with random 0: 75% of max(1 s, remote min rx 1 µs).
    assert!(acts.contains(&Action::ArmTx(Some(t0 + Duration::from_millis(750)))));
    assert!(s.handle(Input::Start, Now::fixed(t0)).is_empty());
}

#[test]
fn nothing_is_sent_before_start() {
    let mut s = Session::new(cfg());
    let acts = s.handle(
        Input::Received(remote(State::Down)),
        Now::fixed(Instant::now()),
    );
    assert!(sent(&acts).is_empty());
    assert_eq!(s.state(), State::Init);
}

#[test]
fn down_to_init_to_up() {
    let mut t = T::new();
    let acts = t.rx(10, remote(State::Down));
    assert_eq!(changes(&acts), vec![(State::Down, State::Init, Diag::None)]);
    let p = sent(&acts);
    assert_eq!(p[0].state, State::Init);
    assert_eq!(p[0].your_discr, REMOTE);
    let acts = t.rx(20, remote(State::Up));
    assert_eq!(changes(&acts), vec![(State::Init, State::Up, Diag::None)]);
    let p = sent(&acts);
    assert_eq!(p[0].state, State::Up);
    // Going Up lowers Desired Min TX from 1 s to 300 ms: a Poll Sequence (§6.8.3).
    assert!(p[0].poll);
    assert_eq!(p[0].desired_min_tx, 300 * MS);
}

#[test]
fn down_to_up_on_init() {
    let mut t = T::new();
    let acts = t.rx(10, remote(State::Init));
    assert_eq!(changes(&acts), vec![(State::Down, State::Up, Diag::None)]);
}

#[test]
fn down_ignores_up() {
    // §6.8.6: in Down only Down and Init move us.
    let mut t = T::new();
    let acts = t.rx(10, remote(State::Up));
    assert!(changes(&acts).is_empty());
    assert_eq!(t.s.state(), State::Down);
}

#[test]
fn init_stays_on_down_and_goes_up_on_init() {
    let mut t = T::new();
    t.rx(10, remote(State::Down));
    assert!(changes(&t.rx(20, remote(State::Down))).is_empty());
    assert_eq!(t.s.state(), State::Init);
    let acts = t.rx(30, remote(State::Init));
    assert_eq!(changes(&acts), vec![(State::Init, State::Up, Diag::None)]);
}

#[test]
fn up_goes_down_when_remote_says_down() {
    let mut t = T::up();
    let acts = t.rx(100, remote(State::Down));
    assert_eq!(
        changes(&acts),
        vec![(State::Up, State::Down, Diag::NeighborSignaledDown)]
    );
    let p = sent(&acts);
    assert_eq!(p[0].state, State::Down);
    assert_eq!(p[0].diag, Diag::NeighborSignaledDown);
    assert_eq!(p[0].desired_min_tx, SLOW_TX_US, "back to 1 s, no Poll");
    assert!(!p[0].poll);
}

#[test]
fn remote_admin_down_takes_us_down() {
    for setup in [T::up as fn() -> T, || {
        let mut t = T::new();
        t.rx(10, remote(State::Down));
        t
    }] {
        let mut t = setup();
        let from = t.s.state();
        let acts = t.rx(100, remote(State::AdminDown));
        assert_eq!(
            changes(&acts),
            vec![(from, State::Down, Diag::NeighborSignaledDown)]
        );
    }
    // Already Down: no change, no new diag.
    let mut t = T::new();
    assert!(changes(&t.rx(10, remote(State::AdminDown))).is_empty());
    assert_eq!(t.s.diag(), Diag::None);
}

#[test]
fn local_admin_down_and_up() {
    let mut t = T::up();
    let acts = t.at(100, Input::AdminDown);
    assert_eq!(
        changes(&acts),
        vec![(State::Up, State::AdminDown, Diag::AdminDown)]
    );
    assert_eq!(sent(&acts)[0].state, State::AdminDown);
    assert_eq!(sent(&acts)[0].diag, Diag::AdminDown);
    assert_eq!(armed_detect(&acts), Some(None));
    // §6.8.6: packets are discarded in AdminDown (no transitions, no detection).
    let acts = t.rx(110, remote(State::Up));
    assert!(changes(&acts).is_empty());
    assert!(t.s.detect_deadline().is_none());
    // Periodic packets keep saying AdminDown.
    let d = t.s.tx_deadline().unwrap();
    let acts = t.s.handle(Input::TxTimer, Now::fixed(d));
    assert_eq!(sent(&acts)[0].state, State::AdminDown);
    let acts = t.at(5000, Input::AdminUp);
    assert_eq!(
        changes(&acts),
        vec![(State::AdminDown, State::Down, Diag::AdminDown)]
    );
    assert_eq!(sent(&acts)[0].state, State::Down);
}

#[test]
fn detection_expiry_in_up_gives_diag_1() {
    let mut t = T::up();
    // Detection time: remote mult 3 x max(our 300 ms, remote 300 ms) = 900 ms after the
    // last packet (at 30 ms).
    assert_eq!(t.s.detection_time(), Duration::from_millis(900));
    let deadline = t.s.detect_deadline().unwrap();
    assert_eq!(deadline, t.t0 + Duration::from_millis(930));
    // Early or stale timer inputs do nothing.
    assert!(t.at(500, Input::DetectTimer).is_empty());
    let acts = t.at(930, Input::DetectTimer);
    assert_eq!(
        changes(&acts),
        vec![(State::Up, State::Down, Diag::ControlDetectionTimeExpired)]
    );
    let p = sent(&acts);
    assert_eq!(p[0].diag, Diag::ControlDetectionTimeExpired);
    assert_eq!(p[0].your_discr, 0, "§6.8.1: RemoteDiscr zeroed");
    assert_eq!(armed_detect(&acts), Some(None));
    assert!(t.at(2000, Input::DetectTimer).is_empty());
}

#[test]
fn detection_expiry_in_init_and_down() {
    let mut t = T::new();
    t.rx(10, remote(State::Down));
    let d = t.s.detect_deadline().unwrap();
    // 3 x max(our 300 ms, the remote's 300 ms) after the packet at 10 ms.
    assert_eq!(d, t.t0 + Duration::from_millis(910));
    let acts = t.s.handle(Input::DetectTimer, Now::fixed(d));
    assert_eq!(
        changes(&acts),
        vec![(State::Init, State::Down, Diag::ControlDetectionTimeExpired)]
    );
    // In Down, expiry only forgets the remote.
    let mut t = T::new();
    t.rx(
        10,
        ControlPacket {
            state: State::AdminDown,
            ..remote(State::Down)
        },
    );
    assert_eq!(t.s.remote().discr, REMOTE);
    let d = t.s.detect_deadline().unwrap();
    let acts = t.s.handle(Input::DetectTimer, Now::fixed(d));
    assert!(changes(&acts).is_empty());
    assert_eq!(t.s.remote().discr, 0);
}

#[test]
fn every_packet_restarts_detection() {
    let mut t = T::up();
    for ms in [300u64, 600, 900, 1200] {
        let acts = t.rx(ms, remote(State::Up));
        assert_eq!(
            armed_detect(&acts),
            Some(Some(t.t0 + Duration::from_millis(ms + 900)))
        );
    }
    assert_eq!(t.s.state(), State::Up);
}

#[test]
fn detection_uses_remote_mult_and_larger_interval() {
    let mut t = T::new();
    t.rx(
        0,
        ControlPacket {
            detect_mult: 5,
            desired_min_tx: 1_000 * MS,
            ..remote(State::Down)
        },
    );
    // §6.8.4: remote mult 5 x max(our RX 300 ms, remote TX 1 s).
    assert_eq!(t.s.detection_time(), Duration::from_secs(5));
}

#[test]
fn poll_answered_with_final_at_once() {
    let mut t = T::up();
    let before = t.s.tx_deadline();
    let acts = t.rx(
        100,
        ControlPacket {
            poll: true,
            ..remote(State::Up)
        },
    );
    let p = sent(&acts);
    assert_eq!(p.len(), 1);
    assert!(p[0].final_ && !p[0].poll);
    // The Final does not disturb the periodic schedule.
    assert_eq!(t.s.tx_deadline(), before);
}

#[test]
fn final_while_polling_has_no_poll_bit() {
    let mut t = T::new();
    t.rx(10, remote(State::Down));
    t.rx(20, remote(State::Up));
    assert!(t.s.polling());
    let acts = t.rx(
        30,
        ControlPacket {
            poll: true,
            ..remote(State::Up)
        },
    );
    let p = sent(&acts)[0];
    assert!(p.final_ && !p.poll, "never P and F together (§6.8.7)");
    // Periodic packets carry P until the remote's Final.
    let d = t.s.tx_deadline().unwrap();
    assert!(sent(&t.s.handle(Input::TxTimer, Now::fixed(d)))[0].poll);
    t.rx(
        40,
        ControlPacket {
            final_: true,
            ..remote(State::Up)
        },
    );
    assert!(!t.s.polling());
    let d = t.s.tx_deadline().unwrap();
    assert!(!sent(&t.s.handle(Input::TxTimer, Now::fixed(d)))[0].poll);
}

#[test]
fn final_without_poll_is_harmless() {
    let mut t = T::up();
    let acts = t.rx(
        100,
        ControlPacket {
            final_: true,
            ..remote(State::Up)
        },
    );
    assert!(sent(&acts).is_empty());
    assert_eq!(t.s.state(), State::Up);
}

#[test]
fn tx_interval_is_negotiated_max() {
    let mut t = T::up();
    assert_eq!(t.s.tx_interval(), Duration::from_millis(300));
    // The remote wants at most one packet per 500 ms.
    t.rx(
        100,
        ControlPacket {
            required_min_rx: 500 * MS,
            ..remote(State::Up)
        },
    );
    assert_eq!(t.s.tx_interval(), Duration::from_millis(500));
    // Back down to 50 ms: our 300 ms wins.
    t.rx(
        200,
        ControlPacket {
            required_min_rx: 50 * MS,
            ..remote(State::Up)
        },
    );
    assert_eq!(t.s.tx_interval(), Duration::from_millis(300));
}

#[test]
fn tx_interval_before_up_is_at_least_one_second() {
    let mut t = T::new();
    t.rx(10, remote(State::Down));
    assert_eq!(t.s.tx_interval(), Duration::from_secs(1));
}

#[test]
fn remote_min_rx_zero_stops_periodic_tx() {
    let mut t = T::up();
    let acts = t.rx(
        100,
        ControlPacket {
            required_min_rx: 0,
            ..remote(State::Up)
        },
    );
    assert!(acts.contains(&Action::ArmTx(None)));
    assert!(t.at(10_000, Input::TxTimer).is_empty());
}

#[test]
fn state_change_restarts_periodic_timer() {
    let mut t = T::new();
    // Down: 1 s interval (random 0: 750 ms after start).
    assert_eq!(t.s.tx_deadline(), Some(t.t0 + Duration::from_millis(750)));
    t.rx(10, remote(State::Down)); // state change: sent now, rescheduled from 10 ms
    assert_eq!(t.s.tx_deadline(), Some(t.t0 + Duration::from_millis(760)));
}

#[test]
fn jitter_bounds() {
    let base = Instant::now();
    for (mult, lo, hi) in [(3u8, 75u64, 100u64), (1, 75, 90)] {
        let mut seen = std::collections::BTreeSet::new();
        for r in 0..200u32 {
            let mut s = Session::new(SessionConfig {
                detect_mult: mult,
                ..cfg()
            });
            s.handle(
                Input::Start,
                Now {
                    at: base,
                    random: r,
                },
            );
            let d = s.tx_deadline().unwrap() - base;
            let pct = d.as_millis() as u64 * 100 / 1000;
            assert!((lo..=hi).contains(&pct), "mult {mult} random {r}: {d:?}");
            seen.insert(pct);
        }
        assert_eq!(seen.first(), Some(&lo));
        assert_eq!(seen.last(), Some(&hi));
    }
}

#[test]
fn periodic_tx_follows_deadline() {
    let mut t = T::up();
    let d = t.s.tx_deadline().unwrap();
    assert!(sent(&t.s.handle(Input::TxTimer, Now::fixed(d - Duration::from_millis(1)))).is_empty());
    let acts = t.s.handle(Input::TxTimer, Now::fixed(d));
    let p = sent(&acts);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].state, State::Up);
    assert_eq!(p[0].your_discr, REMOTE);
    // Up and polled: 300 ms, 75% with random 0.
    assert!(acts.contains(&Action::ArmTx(Some(d + Duration::from_millis(225)))));
}

#[test]
fn wrong_your_discriminator_is_ignored() {
    let mut t = T::up();
    let acts = t.rx(
        100,
        ControlPacket {
            your_discr: 0x9999,
            state: State::Down,
            ..remote(State::Up)
        },
    );
    assert!(acts.is_empty());
    assert_eq!(t.s.state(), State::Up);
}

#[test]
fn increasing_tx_waits_for_final() {
    let mut t = T::up();
    let acts = t.at(
        100,
        Input::SetTimers {
            desired_min_tx: 1_000 * MS,
            required_min_rx: 300 * MS,
            detect_mult: 3,
        },
    );
    let p = sent(&acts)[0];
    assert!(p.poll);
    assert_eq!(p.desired_min_tx, 1_000 * MS);
    // §6.8.3: still transmitting at 300 ms until the Final.
    assert_eq!(t.s.tx_interval(), Duration::from_millis(300));
    t.rx(
        150,
        ControlPacket {
            final_: true,
            ..remote(State::Up)
        },
    );
    assert_eq!(t.s.tx_interval(), Duration::from_secs(1));
}

#[test]
fn decreasing_rx_keeps_detection_until_final() {
    let mut t = T::up();
    t.at(
        100,
        Input::SetTimers {
            desired_min_tx: 300 * MS,
            required_min_rx: 100 * MS,
            detect_mult: 3,
        },
    );
    t.rx(
        110,
        ControlPacket {
            desired_min_tx: 100 * MS,
            ..remote(State::Up)
        },
    );
    // §6.8.3: the old 300 ms still counts for our detection time.
    assert_eq!(t.s.detection_time(), Duration::from_millis(900));
    t.rx(
        120,
        ControlPacket {
            final_: true,
            desired_min_tx: 100 * MS,
            ..remote(State::Up)
        },
    );
    assert_eq!(t.s.detection_time(), Duration::from_millis(300));
}

#[test]
fn increasing_rx_applies_at_once() {
    let mut t = T::up();
    t.at(
        100,
        Input::SetTimers {
            desired_min_tx: 300 * MS,
            required_min_rx: 1_000 * MS,
            detect_mult: 3,
        },
    );
    assert_eq!(t.s.detection_time(), Duration::from_secs(3));
}

#[test]
fn change_during_poll_waits_for_next_sequence() {
    let mut t = T::up();
    let set = |tx: u32| Input::SetTimers {
        desired_min_tx: tx * MS,
        required_min_rx: 300 * MS,
        detect_mult: 3,
    };
    assert!(sent(&t.at(100, set(1000)))[0].poll);
    // A second change while polling starts no new sequence now (§6.5) ...
    assert!(sent(&t.at(110, set(2000))).is_empty());
    let fin = ControlPacket {
        final_: true,
        ..remote(State::Up)
    };
    t.rx(120, fin);
    // ... the first one is acknowledged (1 s in effect), the second is polled next.
    assert_eq!(t.s.tx_interval(), Duration::from_secs(1));
    assert!(t.s.polling());
    t.rx(130, fin);
    assert!(!t.s.polling());
    assert_eq!(t.s.tx_interval(), Duration::from_secs(2));
}

#[test]
fn timer_change_while_down_needs_no_poll() {
    let mut t = T::new();
    let acts = t.at(
        100,
        Input::SetTimers {
            desired_min_tx: 50 * MS,
            required_min_rx: 50 * MS,
            detect_mult: 5,
        },
    );
    assert!(sent(&acts).is_empty());
    assert!(!t.s.polling());
    // Still 1 s while Down.
    assert_eq!(t.s.tx_interval(), Duration::from_secs(1));
}

#[test]
fn leaving_up_ends_poll() {
    let mut t = T::new();
    t.rx(10, remote(State::Down));
    t.rx(20, remote(State::Up));
    assert!(t.s.polling());
    t.rx(30, remote(State::Down));
    assert!(!t.s.polling());
}

#[test]
fn recovers_after_detection() {
    let mut t = T::up();
    t.at(930, Input::DetectTimer);
    assert_eq!(t.s.state(), State::Down);
    t.rx(2000, remote(State::Down));
    t.rx(2010, remote(State::Up));
    assert_eq!(t.s.state(), State::Up);
    assert_eq!(t.s.diag(), Diag::None);
}
