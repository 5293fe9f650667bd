//! The session finite state machine of RFC 4271 §8, as a pure function of its inputs.
//!
//! One [`Fsm`] drives one TCP connection's worth of session (the speaker keeps a second one
//! while a connection collision, §6.8, is being resolved). It performs no I/O and reads no
//! clock: [`Fsm::handle`] takes an [`Input`] and returns the [`Action`]s the owning task must
//! carry out (connect, send, arm or disarm a timer, report the session up or down). Timers are
//! durations the owner arms; their expiry comes back as [`Input::TimerExpired`].

use std::net::Ipv4Addr;
use std::time::Duration;

use bgpd_wire::{
    Capability, ExtendedNextHopEntry, Family, GracefulRestart, Message, Notification, Open,
};
use bytes::Bytes;
use serde::Serialize;

/// AS_TRANS (RFC 6793 §9): the 2-octet "My AS" value for 4-octet ASNs.
pub const AS_TRANS: u16 = 23456;
/// Hold time used in OpenSent before negotiation (RFC 4271 §8.2.2: "large value", 4 minutes).
pub const INITIAL_HOLD: Duration = Duration::from_secs(240);

/// NOTIFICATION error codes and subcodes used by the session layer (RFC 4271 §4.5, §6;
/// RFC 4486 for Cease subcodes).
pub mod notif {
    pub const MESSAGE_HEADER: u8 = 1;
    pub const OPEN_MESSAGE: u8 = 2;
    pub const UPDATE_MESSAGE: u8 = 3;
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    pub const FSM_ERROR: u8 = 5;
    pub const CEASE: u8 = 6;
    /// OPEN subcodes (§6.2).
    pub const UNSUPPORTED_VERSION: u8 = 1;
    pub const BAD_PEER_AS: u8 = 2;
    pub const BAD_BGP_ID: u8 = 3;
    pub const UNACCEPTABLE_HOLD: u8 = 6;
    /// Cease subcodes (RFC 4486 §4).
    pub const ADMIN_SHUTDOWN: u8 = 2;
    pub const PEER_DECONFIGURED: u8 = 3;
    pub const ADMIN_RESET: u8 = 4;
    pub const COLLISION: u8 = 7;
    /// Cease subcode "BFD Down" (RFC 9384 §3).
    pub const BFD_DOWN: u8 = 10;
}

/// RFC 4271 §8.2.2 session states: the workspace's one definition, spelt as Cilium spells
/// them (`open_sent`, ...) in logs and APIs alike.
pub use rackd_types::SessionState as State;

/// The timers of §8 (plus the automatic-restart delay of the optional IdleHold timer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    ConnectRetry,
    Hold,
    Keepalive,
    /// Delay before an automatic restart out of Idle after an error (§8.1.1 optional
    /// attribute IdleHoldTime), so a broken peer is not hammered.
    IdleHold,
}

impl Timer {
    /// Number of timer kinds, for owners that keep one slot per kind.
    pub const COUNT: usize = 4;
    /// Index of this kind into such a slot array.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// What this side offers in its OPEN and accepts in the peer's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsmConfig {
    pub local_as: u32,
    pub router_id: Ipv4Addr,
    /// Expected peer AS; 0 accepts whatever the peer sends.
    pub peer_as: u32,
    /// Proposed hold time in seconds: 0 (no keepalives) or >= 3.
    pub hold_time: u16,
    /// Keepalive interval; `None` = a third of the negotiated hold time.
    pub keepalive: Option<u16>,
    pub connect_retry: Duration,
    /// Never initiate a connection; wait for the peer (§8.1.1 PassiveTcpEstablishment).
    pub passive: bool,
    pub families: Vec<Family>,
    /// Families for which we accept and send IPv4 NLRI with IPv6 next hops (RFC 8950).
    pub extended_next_hop: Vec<Family>,
    /// Our graceful-restart capability (RFC 4724 §3); `None` = not advertised.
    pub graceful_restart: Option<GracefulRestart>,
}

/// What both OPENs agreed on, reported once the session is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The peer's AS (from the 4-octet capability when present, RFC 6793 §4.1).
    pub peer_as: u32,
    pub peer_router_id: Ipv4Addr,
    /// min(ours, theirs) (§4.2), 0 = no hold timer.
    pub hold_time: u16,
    pub keepalive: u16,
    /// Families both sides announced (IPv4 unicast when neither used RFC 4760 §8 at all).
    pub families: Vec<Family>,
    pub four_octet_as: bool,
    pub route_refresh: bool,
    pub enhanced_route_refresh: bool,
    pub extended_message: bool,
    /// Families both sides enabled for IPv6 next hops (RFC 8950).
    pub extended_next_hop: Vec<Family>,
    /// The peer's graceful-restart capability, if it sent one.
    pub peer_graceful_restart: Option<GracefulRestart>,
    /// Whether we advertised graceful restart ourselves.
    pub local_graceful_restart: bool,
    /// The peer's capabilities exactly as received, for display.
    pub peer_capabilities: Vec<Capability>,
}

impl Negotiated {
    /// True when `family` was negotiated on the session.
    pub fn has_family(&self, family: Family) -> bool {
        self.families.contains(&family)
    }
}

/// Events into the FSM (RFC 4271 §8.1 events, folded where the difference does not matter).
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// ManualStart / AutomaticStart (Events 1, 3; passive variants 4, 5 via the config).
    Start,
    /// ManualStop (Event 2) with the Cease subcode to send (RFC 4486).
    Stop {
        subcode: u8,
    },
    /// A TCP connection is up (Events 16/17), in either direction.
    TcpConnected,
    /// The outgoing connection attempt failed (Event 18).
    TcpFailed,
    /// The connection was closed by the peer or broke (Event 18 when established).
    TcpClosed,
    TimerExpired(Timer),
    /// A message decoded from the connection (Events 19-28).
    Message(Message),
    /// The decoder hit an error the RFC resolves with a session reset; the NOTIFICATION
    /// to send (RFC 4271 §6, RFC 7606).
    DecodeError(Notification),
}

/// Why a session went down (or never came up), for logs and the query API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum DownReason {
    /// We sent this NOTIFICATION.
    NotificationSent { code: u8, subcode: u8 },
    /// The peer sent this NOTIFICATION.
    NotificationReceived { code: u8, subcode: u8 },
    /// TCP closed without a NOTIFICATION.
    ConnectionClosed,
    /// Administratively stopped.
    Stopped,
}

/// What the owner must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Open a TCP connection to the peer.
    Connect,
    /// Close the connection (after flushing anything sent before).
    Disconnect,
    Send(Message),
    StartTimer(Timer, Duration),
    StopTimer(Timer),
    /// The session reached Established with these parameters.
    Established(Box<Negotiated>),
    /// The session left Established (only emitted if it had been established).
    SessionDown(DownReason),
    /// An UPDATE or ROUTE-REFRESH for the RIB (only in Established).
    Deliver(Message),
    /// The connection failed before Established (logs; `Negotiated` never reported).
    Failed(DownReason),
    /// The state changed.
    StateChange {
        from: State,
        to: State,
    },
}

/// One session's state machine.
#[derive(Debug, Clone)]
pub struct Fsm {
    config: FsmConfig,
    state: State,
    /// The peer's OPEN once received (OpenConfirm / Established).
    negotiated: Option<Negotiated>,
    /// Consecutive failed attempts, to back the automatic restart off.
    failures: u32,
}

impl Fsm {
    pub fn new(config: FsmConfig) -> Self {
        Self {
            config,
            state: State::Idle,
            negotiated: None,
            failures: 0,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn config(&self) -> &FsmConfig {
        &self.config
    }

    /// Replace the configuration. What the OPEN carries (AS, hold time, capabilities) takes
    /// effect on the next session; the keepalive interval, a local matter (RFC 4271 §10),
    /// applies to the running session from its next KEEPALIVE, and the connect-retry time
    /// from the next time that timer starts.
    pub fn set_config(&mut self, config: FsmConfig) {
        if let Some(n) = self.negotiated.as_mut() {
            n.keepalive = keepalive_for(n.hold_time, config.keepalive);
        }
        self.config = config;
    }

    /// What was negotiated, once the peer's OPEN has been accepted.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// The OPEN this side sends (§4.2; 4-octet AS always offered, RFC 6793 §3).
    pub fn open_message(&self) -> Open {
        let c = &self.config;
        let my_as = u16::try_from(c.local_as).unwrap_or(AS_TRANS);
        let mut capabilities: Vec<Capability> = c
            .families
            .iter()
            .map(|f| Capability::Multiprotocol(*f))
            .collect();
        capabilities.push(Capability::RouteRefresh);
        capabilities.push(Capability::EnhancedRouteRefresh);
        if !c.extended_next_hop.is_empty() {
            capabilities.push(Capability::ExtendedNextHop(
                c.extended_next_hop
                    .iter()
                    .map(|f| ExtendedNextHopEntry {
                        nlri: *f,
                        nexthop_afi: 2,
                    })
                    .collect(),
            ));
        }
        if let Some(gr) = &c.graceful_restart {
            capabilities.push(Capability::GracefulRestart(gr.clone()));
        }
        capabilities.push(Capability::FourOctetAs(c.local_as));
        Open {
            version: 4,
            my_as,
            hold_time: c.hold_time,
            router_id: c.router_id,
            capabilities,
        }
    }

    /// Feed one input, get the actions to carry out.
    pub fn handle(&mut self, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        let from = self.state;
        self.step(input, &mut out);
        if self.state != from {
            out.push(Action::StateChange {
                from,
                to: self.state,
            });
        }
        out
    }

    fn step(&mut self, input: Input, out: &mut Vec<Action>) {
        use rackd_types::SessionState::*;
        match (self.state, input) {
            (_, Input::Stop { subcode }) => {
                if matches!(self.state, OpenSent | OpenConfirm | Established) {
                    out.push(Action::Send(notification(
                        notif::CEASE,
                        subcode,
                        Bytes::new(),
                    )));
                }
                self.go_idle(out, DownReason::Stopped, false);
            }
            (Idle, Input::Start) | (Idle, Input::TimerExpired(Timer::IdleHold)) => {
                out.push(Action::StopTimer(Timer::IdleHold));
                if self.config.passive {
                    self.state = Active;
                } else {
                    self.state = Connect;
                    out.push(Action::StartTimer(
                        Timer::ConnectRetry,
                        self.config.connect_retry,
                    ));
                    out.push(Action::Connect);
                }
            }
            (Idle, _) => {}
            // A connection came up (ours or accepted): §8.2.2 Connect/Active Event 16/17.
            (Connect | Active, Input::TcpConnected) => {
                out.push(Action::StopTimer(Timer::ConnectRetry));
                out.push(Action::Send(Message::Open(self.open_message())));
                out.push(Action::StartTimer(Timer::Hold, INITIAL_HOLD));
                self.state = OpenSent;
            }
            (Connect, Input::TcpFailed) => {
                // Wait for ConnectRetry, listening meanwhile (§8.2.2 Connect Event 18).
                self.state = Active;
            }
            (Connect | Active, Input::TimerExpired(Timer::ConnectRetry)) => {
                out.push(Action::Disconnect);
                out.push(Action::StartTimer(
                    Timer::ConnectRetry,
                    self.config.connect_retry,
                ));
                if self.config.passive {
                    self.state = Active;
                } else {
                    out.push(Action::Connect);
                    self.state = Connect;
                }
            }
            (Connect | Active, Input::TcpFailed | Input::TcpClosed) => {}
            (Connect | Active, Input::TimerExpired(_)) => {}
            (Connect | Active, Input::Start) => {}
            (Connect | Active, Input::Message(_) | Input::DecodeError(_)) => {
                // No connection: nothing can arrive. Treat as an FSM error, quietly.
            }
            (OpenSent, Input::Message(Message::Open(open))) => self.on_open(open, out),
            (OpenSent | OpenConfirm | Established, Input::TcpClosed | Input::TcpFailed) => {
                self.go_idle(out, DownReason::ConnectionClosed, true);
            }
            (OpenSent | OpenConfirm | Established, Input::TimerExpired(Timer::Hold)) => {
                out.push(Action::Send(notification(
                    notif::HOLD_TIMER_EXPIRED,
                    0,
                    Bytes::new(),
                )));
                self.go_idle(
                    out,
                    DownReason::NotificationSent {
                        code: notif::HOLD_TIMER_EXPIRED,
                        subcode: 0,
                    },
                    true,
                );
            }
            (OpenSent | OpenConfirm | Established, Input::DecodeError(n)) => {
                let reason = DownReason::NotificationSent {
                    code: n.code,
                    subcode: n.subcode,
                };
                out.push(Action::Send(Message::Notification(n)));
                self.go_idle(out, reason, true);
            }
            (OpenSent | OpenConfirm | Established, Input::Message(Message::Notification(n))) => {
                self.go_idle(
                    out,
                    DownReason::NotificationReceived {
                        code: n.code,
                        subcode: n.subcode,
                    },
                    true,
                );
            }
            (OpenConfirm | Established, Input::TimerExpired(Timer::Keepalive)) => {
                out.push(Action::Send(Message::Keepalive));
                if let Some(n) = &self.negotiated
                    && n.keepalive > 0
                {
                    let d = Duration::from_secs(u64::from(n.keepalive));
                    out.push(Action::StartTimer(Timer::Keepalive, d));
                }
            }
            (OpenConfirm, Input::Message(Message::Keepalive)) => {
                self.restart_hold(out);
                self.failures = 0;
                self.state = Established;
                if let Some(n) = &self.negotiated {
                    out.push(Action::Established(Box::new(n.clone())));
                }
            }
            (Established, Input::Message(Message::Keepalive)) => self.restart_hold(out),
            (Established, Input::Message(m @ (Message::Update(_) | Message::RouteRefresh(_)))) => {
                self.restart_hold(out);
                out.push(Action::Deliver(m));
            }
            (OpenSent | OpenConfirm | Established, Input::Start) => {}
            (OpenSent | OpenConfirm | Established, Input::TimerExpired(_)) => {}
            (OpenSent | OpenConfirm | Established, Input::TcpConnected) => {}
            // Anything else is out of order: §6.6 Finite State Machine Error. RFC 6608
            // subcodes name the state the message arrived in.
            (s @ (OpenSent | OpenConfirm | Established), Input::Message(_)) => {
                let subcode = match s {
                    OpenSent => 1,
                    OpenConfirm => 2,
                    _ => 3,
                };
                out.push(Action::Send(notification(
                    notif::FSM_ERROR,
                    subcode,
                    Bytes::new(),
                )));
                self.go_idle(
                    out,
                    DownReason::NotificationSent {
                        code: notif::FSM_ERROR,
                        subcode,
                    },
                    true,
                );
            }
        }
    }

    fn restart_hold(&self, out: &mut Vec<Action>) {
        if let Some(n) = &self.negotiated
            && n.hold_time > 0
        {
            out.push(Action::StartTimer(
                Timer::Hold,
                Duration::from_secs(u64::from(n.hold_time)),
            ));
        }
    }

    /// Validate the peer's OPEN (§6.2) and negotiate (§4.2, RFC 5492).
    fn on_open(&mut self, open: Open, out: &mut Vec<Action>) {
        match negotiate(&self.config, &open) {
            Err(n) => {
                let reason = DownReason::NotificationSent {
                    code: n.code,
                    subcode: n.subcode,
                };
                out.push(Action::Send(Message::Notification(n)));
                self.go_idle(out, reason, true);
            }
            Ok(neg) => {
                out.push(Action::Send(Message::Keepalive));
                if neg.hold_time > 0 {
                    out.push(Action::StartTimer(
                        Timer::Hold,
                        Duration::from_secs(u64::from(neg.hold_time)),
                    ));
                    out.push(Action::StartTimer(
                        Timer::Keepalive,
                        Duration::from_secs(u64::from(neg.keepalive)),
                    ));
                } else {
                    out.push(Action::StopTimer(Timer::Hold));
                }
                self.negotiated = Some(neg);
                self.state = State::OpenConfirm;
            }
        }
    }

    /// Release everything and go to Idle, scheduling an automatic restart if `restart`.
    fn go_idle(&mut self, out: &mut Vec<Action>, reason: DownReason, restart: bool) {
        let was_established = self.state == State::Established;
        out.push(Action::Disconnect);
        for t in [
            Timer::ConnectRetry,
            Timer::Hold,
            Timer::Keepalive,
            Timer::IdleHold,
        ] {
            out.push(Action::StopTimer(t));
        }
        if was_established {
            out.push(Action::SessionDown(reason));
        } else if self.state != State::Idle {
            out.push(Action::Failed(reason));
        }
        self.negotiated = None;
        self.state = State::Idle;
        if restart {
            self.failures = self.failures.saturating_add(1);
            out.push(Action::StartTimer(Timer::IdleHold, self.idle_hold()));
        }
    }

    /// Automatic-restart delay: 1 s doubling per consecutive failure up to ConnectRetry.
    fn idle_hold(&self) -> Duration {
        let exp = self.failures.saturating_sub(1).min(8);
        Duration::from_secs(1u64 << exp).min(self.config.connect_retry.max(Duration::from_secs(1)))
    }
}

fn notification(code: u8, subcode: u8, data: Bytes) -> Message {
    Message::Notification(Notification {
        code,
        subcode,
        data,
    })
}

fn open_error(subcode: u8, data: Bytes) -> Notification {
    Notification {
        code: notif::OPEN_MESSAGE,
        subcode,
        data,
    }
}

/// The keepalive interval for a negotiated hold time: the configured one, at most a third of
/// the hold time, at least 1 s; none when the hold time is 0 (RFC 4271 §4.4, §10).
fn keepalive_for(hold_time: u16, configured: Option<u16>) -> u16 {
    if hold_time == 0 {
        0
    } else {
        configured
            .map_or(hold_time / 3, |k| k.min(hold_time / 3))
            .max(1)
    }
}

/// Check the peer's OPEN against our configuration and compute the session parameters.
///
/// Errors are the NOTIFICATION to send (RFC 4271 §6.2, RFC 6793 §4.1, RFC 6286 §2.2).
pub fn negotiate(config: &FsmConfig, open: &Open) -> Result<Negotiated, Notification> {
    if open.version != 4 {
        return Err(open_error(
            notif::UNSUPPORTED_VERSION,
            Bytes::from_static(&[0, 4]),
        ));
    }
    let mut four_octet = None;
    let mut mp = Vec::new();
    let mut route_refresh = false;
    let mut enhanced = false;
    let mut ext_msg = false;
    let mut peer_gr = None;
    let mut peer_enh: Vec<ExtendedNextHopEntry> = Vec::new();
    for cap in &open.capabilities {
        match cap {
            Capability::Multiprotocol(f) => mp.push(*f),
            Capability::RouteRefresh => route_refresh = true,
            Capability::EnhancedRouteRefresh => enhanced = true,
            Capability::ExtendedMessage => ext_msg = true,
            Capability::GracefulRestart(g) => peer_gr = Some(g.clone()),
            Capability::FourOctetAs(asn) => four_octet = Some(*asn),
            Capability::ExtendedNextHop(v) => peer_enh.extend(v.iter().copied()),
            Capability::AddPath(_) | Capability::Unknown { .. } => {}
        }
    }
    let peer_as = four_octet.unwrap_or(u32::from(open.my_as));
    if config.peer_as != 0 && peer_as != config.peer_as {
        return Err(open_error(notif::BAD_PEER_AS, Bytes::new()));
    }
    if open.hold_time == 1 || open.hold_time == 2 {
        return Err(open_error(notif::UNACCEPTABLE_HOLD, Bytes::new()));
    }
    let id = open.router_id;
    if id.is_unspecified() || (peer_as == config.local_as && id == config.router_id) {
        return Err(open_error(notif::BAD_BGP_ID, Bytes::new()));
    }
    let hold_time = config.hold_time.min(open.hold_time);
    let keepalive = keepalive_for(hold_time, config.keepalive);
    // RFC 4760 §8: a speaker that sends no Multiprotocol capability at all is IPv4-unicast only.
    let theirs = if mp.is_empty() {
        vec![Family::Ipv4Unicast]
    } else {
        mp
    };
    let families: Vec<Family> = config
        .families
        .iter()
        .copied()
        .filter(|f| theirs.contains(f))
        .collect();
    let extended_next_hop = config
        .extended_next_hop
        .iter()
        .copied()
        .filter(|f| peer_enh.iter().any(|e| e.nlri == *f && e.nexthop_afi == 2))
        .collect();
    Ok(Negotiated {
        peer_as,
        peer_router_id: id,
        hold_time,
        keepalive,
        families,
        four_octet_as: four_octet.is_some(),
        route_refresh: route_refresh || enhanced,
        enhanced_route_refresh: enhanced,
        extended_message: ext_msg,
        extended_next_hop,
        peer_graceful_restart: peer_gr,
        local_graceful_restart: config.graceful_restart.is_some(),
        peer_capabilities: open.capabilities.clone(),
    })
}

/// Which of two colliding connections survives (RFC 4271 §6.8): the one initiated by the
/// speaker with the higher BGP identifier. Returns true when the connection *we* initiated
/// must be kept.
pub fn keep_our_connection(local_id: Ipv4Addr, remote_id: Ipv4Addr) -> bool {
    u32::from(local_id) > u32::from(remote_id)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
