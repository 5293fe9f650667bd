//! One BFD session (RFC 5880 §6) as a pure state machine:
//! [`Session::handle`]`(input, now) -> Vec<Action>`.
//!
//! No I/O and no clock: the owner passes the current time and a random number (for the
//! transmit jitter of §6.8.7) in [`Now`], sends the packets it is told to, and calls
//! [`Input::TxTimer`] / [`Input::DetectTimer`] when the deadlines of the last
//! [`Action::ArmTx`] / [`Action::ArmDetect`] pass. Stale timer inputs are ignored, so the
//! owner may call them early or twice.
//!
//! Asynchronous mode only: no demand mode (§6.6), no echo function (§6.4), no
//! authentication (§6.7); we always take the Active role (§6.1).

use std::time::{Duration, Instant};

use crate::packet::{ControlPacket, Diag, State};

/// RFC 5880 §6.8.3: "When bfd.SessionState is not Up, the system MUST set
/// bfd.DesiredMinTxInterval to a value of not less than one second (1,000,000
/// microseconds)."
pub const SLOW_TX_US: u32 = 1_000_000;

/// The configured (local) session parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// bfd.LocalDiscr: nonzero and unique among this system's sessions (§6.8.1).
    pub local_discr: u32,
    /// The DesiredMinTxInterval to use once Up, µs (nonzero).
    pub desired_min_tx: u32,
    /// bfd.RequiredMinRxInterval, µs (nonzero: we never ask the remote to stop sending).
    pub required_min_rx: u32,
    /// bfd.DetectMult (nonzero).
    pub detect_mult: u8,
}

/// The time of an input, and a random number for the transmit jitter (§6.8.7). Passing the
/// randomness in keeps the FSM deterministic under test.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// Current time.
    pub at: Instant,
    /// Any random value; used only if this input schedules a transmission.
    pub random: u32,
}

impl Now {
    /// `at` with a fixed random value (the jitter then depends only on the interval).
    pub fn fixed(at: Instant) -> Self {
        Now { at, random: 0 }
    }
}

/// Inputs to the FSM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Start transmitting (the first packet is sent at once). Repeats are ignored.
    Start,
    /// A Control packet that passed [`ControlPacket::decode`] and was matched to this session
    /// (§6.8.6: by Your Discriminator, or by addresses/interface when that is zero).
    Received(ControlPacket),
    /// The transmit deadline of the last [`Action::ArmTx`] has passed.
    TxTimer,
    /// The detection deadline of the last [`Action::ArmDetect`] has passed.
    DetectTimer,
    /// Administratively disable the session (§6.8.16); AdminDown is sent from now on.
    AdminDown,
    /// Leave AdminDown (to Down).
    AdminUp,
    /// New local timer parameters (µs); a Poll Sequence tells the remote (§6.8.3).
    SetTimers {
        /// Desired Min TX once Up.
        desired_min_tx: u32,
        /// Required Min RX.
        required_min_rx: u32,
        /// Detect Mult.
        detect_mult: u8,
    },
}

/// What the owner must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Transmit this packet now.
    Send(ControlPacket),
    /// bfd.SessionState changed; `diag` is bfd.LocalDiag after the change.
    StateChanged {
        /// Previous state.
        from: State,
        /// New state.
        to: State,
        /// Local diagnostic.
        diag: Diag,
    },
    /// The next periodic transmission is due at this time (`None`: do not transmit, §6.8.7
    /// when the remote's Required Min RX is 0). Replaces any earlier deadline.
    ArmTx(Option<Instant>),
    /// The detection time (§6.8.4) ends at this time (`None`: no detection running).
    /// Replaces any earlier deadline.
    ArmDetect(Option<Instant>),
}

/// The remote's view, from its last packet (the `bfd.Remote*` variables of §6.8.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Remote {
    /// bfd.RemoteDiscr (0 until a packet arrives, and again after detection expiry).
    pub discr: u32,
    /// bfd.RemoteSessionState.
    pub state: State,
    /// The remote's last Diag.
    pub diag: Diag,
    /// bfd.RemoteMinRxInterval, µs (initially 1, §6.8.1).
    pub min_rx: u32,
    /// The remote's last Desired Min TX, µs (0 until known).
    pub desired_min_tx: u32,
    /// The remote's Detect Mult (0 until known).
    pub detect_mult: u8,
}

/// One BFD session.
#[derive(Debug, Clone)]
pub struct Session {
    cfg: SessionConfig,
    state: State,
    diag: Diag,
    remote: Remote,
    /// Advertised bfd.DesiredMinTxInterval (what our packets carry), µs.
    adv_tx: u32,
    /// Advertised bfd.RequiredMinRxInterval, µs.
    adv_rx: u32,
    /// The Desired Min TX our transmit interval uses; lags `adv_tx` while an increase is
    /// being polled (§6.8.3).
    tx_in_effect: u32,
    /// The Required Min RX our detection time uses; lags `adv_rx` while a decrease is being
    /// polled (§6.8.3).
    rx_in_effect: u32,
    /// The (tx, rx) values of the Poll Sequence in progress.
    polling: Option<(u32, u32)>,
    /// The values changed during a Poll Sequence: start another when it ends (§6.5: a new
    /// Poll Sequence must not start while one is in progress).
    repoll: bool,
    started: bool,
    tx_deadline: Option<Instant>,
    detect_deadline: Option<Instant>,
}

fn us(v: u64) -> Duration {
    Duration::from_micros(v)
}

impl Session {
    /// A session in Down (§6.8.1 initial values). Nothing is sent before [`Input::Start`].
    pub fn new(cfg: SessionConfig) -> Self {
        let adv_tx = cfg.desired_min_tx.max(SLOW_TX_US);
        Session {
            cfg,
            state: State::Down,
            diag: Diag::None,
            remote: Remote {
                discr: 0,
                state: State::Down,
                diag: Diag::None,
                min_rx: 1,
                desired_min_tx: 0,
                detect_mult: 0,
            },
            adv_tx,
            adv_rx: cfg.required_min_rx,
            tx_in_effect: adv_tx,
            rx_in_effect: cfg.required_min_rx,
            polling: None,
            repoll: false,
            started: false,
            tx_deadline: None,
            detect_deadline: None,
        }
    }

    /// bfd.SessionState.
    pub fn state(&self) -> State {
        self.state
    }

    /// bfd.LocalDiag.
    pub fn diag(&self) -> Diag {
        self.diag
    }

    /// The configuration.
    pub fn config(&self) -> SessionConfig {
        self.cfg
    }

    /// What the remote last told us.
    pub fn remote(&self) -> Remote {
        self.remote
    }

    /// Whether a Poll Sequence is in progress.
    pub fn polling(&self) -> bool {
        self.polling.is_some()
    }

    /// The un-jittered periodic transmit interval (§6.8.7): the larger of our Desired Min TX
    /// in effect and the remote's Required Min RX. Zero if the remote asked for no packets.
    pub fn tx_interval(&self) -> Duration {
        if self.remote.min_rx == 0 {
            return Duration::ZERO;
        }
        us(u64::from(self.tx_in_effect.max(self.remote.min_rx)))
    }

    /// The detection time (§6.8.4, asynchronous mode): the remote's Detect Mult times the
    /// larger of our Required Min RX in effect and the remote's last Desired Min TX. Zero
    /// before the first packet.
    pub fn detection_time(&self) -> Duration {
        us(u64::from(self.remote.detect_mult)
            * u64::from(self.rx_in_effect.max(self.remote.desired_min_tx)))
    }

    /// The pending transmit deadline.
    pub fn tx_deadline(&self) -> Option<Instant> {
        self.tx_deadline
    }

    /// The pending detection deadline.
    pub fn detect_deadline(&self) -> Option<Instant> {
        self.detect_deadline
    }

    /// Feeds one input; returns the actions to execute in order.
    pub fn handle(&mut self, input: Input, now: Now) -> Vec<Action> {
        let (tx0, det0) = (self.tx_deadline, self.detect_deadline);
        let mut acts = Vec::new();
        // What to send at once: None, or Some(final) for a packet answering a Poll.
        let mut send_now: Option<bool> = None;
        match input {
            Input::Start => {
                if !self.started {
                    self.started = true;
                    send_now = Some(false);
                }
            }
            Input::Received(p) => self.receive(p, now, &mut acts, &mut send_now),
            Input::TxTimer => {
                if self.started && self.tx_deadline.is_some_and(|d| d <= now.at) {
                    acts.push(Action::Send(self.packet(false)));
                    self.schedule_tx(now);
                }
            }
            Input::DetectTimer => {
                if self.detect_deadline.is_some_and(|d| d <= now.at) {
                    self.detection_expired(&mut acts, &mut send_now);
                }
            }
            Input::AdminDown => {
                if self.state != State::AdminDown {
                    // §6.8.16: state AdminDown, diag 7; detection is not needed any more.
                    self.set_state(State::AdminDown, Diag::AdminDown, &mut acts);
                    self.detect_deadline = None;
                    send_now = Some(false);
                }
            }
            Input::AdminUp => {
                if self.state == State::AdminDown {
                    // §6.8.16: leaving AdminDown is a transition to Down. The diag keeps
                    // saying why it was down.
                    self.set_state(State::Down, Diag::AdminDown, &mut acts);
                    send_now = Some(false);
                }
            }
            Input::SetTimers {
                desired_min_tx,
                required_min_rx,
                detect_mult,
            } => {
                self.cfg.desired_min_tx = desired_min_tx.max(1);
                self.cfg.required_min_rx = required_min_rx.max(1);
                self.cfg.detect_mult = detect_mult.max(1);
                if self.update_advertised() {
                    send_now = Some(false);
                }
            }
        }
        if let Some(final_) = send_now.filter(|_| self.started) {
            acts.push(Action::Send(self.packet(final_)));
            // A packet sent for a state change or a new Poll restarts the periodic timer; a
            // Final alone does not (§6.8.7: it is sent "without respect to the transmission
            // timer").
            if !final_
                || acts
                    .iter()
                    .any(|a| matches!(a, Action::StateChanged { .. }))
            {
                self.schedule_tx(now);
            }
        }
        if self.tx_deadline != tx0 {
            acts.push(Action::ArmTx(self.tx_deadline));
        }
        if self.detect_deadline != det0 {
            acts.push(Action::ArmDetect(self.detect_deadline));
        }
        acts
    }

    /// RFC 5880 §6.8.6, from "If the Your Discriminator field is nonzero" on (the checks
    /// before it are in [`ControlPacket::decode`]).
    fn receive(
        &mut self,
        p: ControlPacket,
        now: Now,
        acts: &mut Vec<Action>,
        send_now: &mut Option<bool>,
    ) {
        // The owner selects the session by Your Discriminator; a mismatch here means it did
        // not, and the packet is not ours.
        if p.your_discr != 0 && p.your_discr != self.cfg.local_discr {
            return;
        }
        let old_min_rx = self.remote.min_rx;
        self.remote = Remote {
            discr: p.my_discr,
            state: p.state,
            diag: p.diag,
            min_rx: p.required_min_rx,
            desired_min_tx: p.desired_min_tx,
            detect_mult: p.detect_mult,
        };
        // §6.8.6: "If a Poll Sequence is being transmitted by the local system and the Final
        // (F) bit in the received packet is set, the Poll Sequence MUST be terminated."
        if p.final_ {
            self.end_poll();
        }
        // §6.8.6: "If bfd.SessionState is AdminDown: Discard the packet".
        if self.state == State::AdminDown {
            return;
        }
        let state_before = self.state;
        if p.state == State::AdminDown {
            if self.state != State::Down {
                self.set_state(State::Down, Diag::NeighborSignaledDown, acts);
            }
        } else {
            match (self.state, p.state) {
                (State::Down, State::Down) => self.set_state(State::Init, self.diag, acts),
                (State::Down, State::Init) | (State::Init, State::Init | State::Up) => {
                    self.set_state(State::Up, Diag::None, acts)
                }
                (State::Up, State::Down) => {
                    self.set_state(State::Down, Diag::NeighborSignaledDown, acts)
                }
                _ => {}
            }
        }
        // §6.8.4: every accepted packet restarts the detection time.
        self.detect_deadline = Some(now.at + self.detection_time());
        if p.poll {
            // §6.8.6: answer a Poll with a Final "as soon as practicable".
            *send_now = Some(true);
        } else if self.state != state_before {
            *send_now = Some(false);
        }
        // §6.8.7: the interval follows the remote's Required Min RX. Zero means "send
        // nothing"; a shorter one may pull the next packet in.
        if self.remote.min_rx == 0 {
            self.tx_deadline = None;
        } else if self.started && self.remote.min_rx != old_min_rx {
            let candidate = now.at + self.jittered(now.random);
            if self.tx_deadline.is_none_or(|d| candidate < d) {
                self.tx_deadline = Some(candidate);
            }
        }
    }

    /// §6.8.4: "If ... Detection Time passes without receipt of a valid ... packet from the
    /// remote system ... bfd.SessionState is Init or Up, the session has gone down".
    fn detection_expired(&mut self, acts: &mut Vec<Action>, send_now: &mut Option<bool>) {
        self.detect_deadline = None;
        // §6.8.1: bfd.RemoteDiscr "MUST be set to zero if Detection Time expires".
        self.remote.discr = 0;
        self.remote.state = State::Down;
        // Back to the initial value (§6.8.1), so a remote that had asked for no packets
        // does not keep us silent while it is gone.
        self.remote.min_rx = 1;
        if matches!(self.state, State::Init | State::Up) {
            self.set_state(State::Down, Diag::ControlDetectionTimeExpired, acts);
            *send_now = Some(false);
        }
    }

    fn set_state(&mut self, to: State, diag: Diag, acts: &mut Vec<Action>) {
        let from = self.state;
        self.state = to;
        self.diag = diag;
        if to != State::Up {
            // Timer changes are polled only while Up; leaving Up drops any sequence.
            self.polling = None;
            self.repoll = false;
        }
        if from != to {
            acts.push(Action::StateChanged { from, to, diag });
        }
        self.update_advertised();
    }

    /// Recomputes the advertised intervals from the configuration and the state; starts a
    /// Poll Sequence if they changed while Up. Returns whether a Poll Sequence started.
    fn update_advertised(&mut self) -> bool {
        let tx = if self.state == State::Up {
            self.cfg.desired_min_tx
        } else {
            self.cfg.desired_min_tx.max(SLOW_TX_US)
        };
        let rx = self.cfg.required_min_rx;
        if (tx, rx) == (self.adv_tx, self.adv_rx) {
            return false;
        }
        self.adv_tx = tx;
        self.adv_rx = rx;
        if self.state != State::Up {
            // The remote is not relying on our timers yet: apply at once, no Poll.
            self.tx_in_effect = tx;
            self.rx_in_effect = rx;
            return false;
        }
        // §6.8.3: "If bfd.DesiredMinTxInterval is increased and bfd.SessionState is Up, the
        // actual transmission interval used MUST NOT change until the Poll Sequence ... has
        // terminated"; a decrease may apply now.
        self.tx_in_effect = self.tx_in_effect.min(tx);
        // §6.8.3: "If bfd.RequiredMinRxInterval is reduced and bfd.SessionState is Up, the
        // previous value ... MUST be used when calculating the Detection Time ... until the
        // Poll Sequence ... has terminated"; an increase may apply now.
        self.rx_in_effect = self.rx_in_effect.max(rx);
        if self.polling.is_some() {
            self.repoll = true;
            false
        } else {
            self.polling = Some((tx, rx));
            true
        }
    }

    fn end_poll(&mut self) {
        let Some((ptx, prx)) = self.polling.take() else {
            return;
        };
        // The remote has acknowledged (ptx, prx). Values changed since then are either
        // already in effect (safe direction) or wait for the next sequence.
        self.tx_in_effect = self.adv_tx.min(ptx.max(self.tx_in_effect));
        self.rx_in_effect = self.adv_rx.max(prx.min(self.rx_in_effect));
        if self.repoll {
            self.repoll = false;
            self.polling = Some((self.adv_tx, self.adv_rx));
        }
    }

    /// The packet we send now (§6.8.7 field values). `final_` answers a Poll; a packet never
    /// has both P and F.
    fn packet(&self, final_: bool) -> ControlPacket {
        ControlPacket {
            diag: self.diag,
            state: self.state,
            poll: !final_ && self.polling.is_some(),
            final_,
            cpi: false,
            demand: false,
            detect_mult: self.cfg.detect_mult,
            my_discr: self.cfg.local_discr,
            your_discr: self.remote.discr,
            desired_min_tx: self.adv_tx,
            required_min_rx: self.adv_rx,
            required_min_echo_rx: 0,
        }
    }

    /// §6.8.7: the interval "MUST be reduced by a random value of 0 to 25% ... If
    /// bfd.DetectMult is equal to 1, the interval between transmitted BFD Control packets
    /// MUST be no more than 90% of the negotiated transmission interval, and MUST be no less
    /// than 75%".
    fn jittered(&self, random: u32) -> Duration {
        let interval = u64::from(self.tx_in_effect.max(self.remote.min_rx));
        let span = if self.cfg.detect_mult == 1 { 16 } else { 26 };
        let percent = 75 + u64::from(random % span);
        us(interval * percent / 100)
    }

    fn schedule_tx(&mut self, now: Now) {
        self.tx_deadline = if self.remote.min_rx == 0 {
            None
        } else {
            Some(now.at + self.jittered(now.random))
        };
    }
}

#[cfg(test)]
mod tests;
