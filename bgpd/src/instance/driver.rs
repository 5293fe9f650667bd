//! The FSM driver: feeds an input to one of a peer's FSMs and carries out the actions it
//! returns (connect, send, timers, session up/down, delivered messages, state events).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bgpd_wire::Message;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Instance;
use super::peers::{Slot, Which, record_error};
use super::timers::jitter;
use crate::events::{Event, PeerStateChange};
use crate::fsm::{Action, Input, Timer};
use crate::session::{self, AbortOnDrop, ConnEvent, WriterCmd};
use crate::transport;

impl Instance {
    pub(super) fn slot_mut(&mut self, addr: IpAddr, w: Which) -> Option<&mut Slot> {
        let p = self.peers.get_mut(&addr)?;
        match w {
            Which::Main => Some(&mut p.main),
            Which::Alt => p.alt.as_mut(),
        }
    }

    pub(super) fn drive(&mut self, addr: IpAddr, w: Which, input: Input) {
        // Strict BFD: a peer with BFD starts only while its BFD session is Up (`bfd_link`).
        if input == Input::Start && !self.bfd_allows(addr) {
            tracing::debug!(peer = %addr, "start deferred until BFD is up");
            return;
        }
        let Some(slot) = self.slot_mut(addr, w) else {
            return;
        };
        let actions = slot.fsm.handle(input);
        let mut w = w;
        for a in actions {
            w = self.act(addr, w, a);
        }
    }

    /// Carry out one action of the FSM in slot `w`; returns the slot that FSM is in afterwards
    /// (an alternate connection that reaches Established is promoted to main, and the rest of
    /// its actions, its state change among them, belong to the main slot).
    pub(super) fn act(&mut self, addr: IpAddr, w: Which, a: Action) -> Which {
        let promotes = w == Which::Alt && matches!(a, Action::Established(_));
        self.act_in(addr, w, a);
        let promoted = promotes && self.peers.get(&addr).is_some_and(|p| p.alt.is_none());
        if promoted { Which::Main } else { w }
    }

    fn act_in(&mut self, addr: IpAddr, w: Which, a: Action) {
        let now = Instant::now();
        match a {
            Action::Connect => {
                if w == Which::Alt {
                    return;
                }
                let Some(p) = self.peers.get_mut(&addr) else {
                    return;
                };
                let ebgp = p.cfg.peer_as != self.cfg.local_as;
                let opts = transport::ConnectOptions {
                    remote: SocketAddr::new(addr, p.cfg.port),
                    source: p.cfg.source_address,
                    local_port: p.cfg.local_port,
                    interface: p.cfg.interface.clone(),
                    ttl: p.cfg.ttl.unwrap_or(if ebgp { 1 } else { 255 }),
                    md5_key: p.cfg.md5_password.as_ref().map(|s| s.as_bytes().to_vec()),
                };
                // Connections of this peer on their way out: the peer is done with the old
                // session, and the old four-tuple is free, once they are closed.
                let live = [
                    p.main.conn.as_ref().map(|c| c.id),
                    p.alt.as_ref().and_then(|s| s.conn.as_ref()).map(|c| c.id),
                ];
                p.conns.retain(|(_, t)| !t.is_cancelled());
                let closing: Vec<CancellationToken> = p
                    .conns
                    .iter()
                    .filter(|(id, _)| !live.contains(&Some(*id)))
                    .map(|(_, t)| t.clone())
                    .collect();
                let attempt = self.next_id;
                self.next_id += 1;
                let tx = self.ev_tx.clone();
                let h = tokio::spawn(async move {
                    // The writers bound their wait by LINGER; this bound is only a backstop.
                    let _ = tokio::time::timeout(
                        session::LINGER + Duration::from_millis(500),
                        futures::future::join_all(closing.iter().map(|t| t.cancelled())),
                    )
                    .await;
                    let result = transport::connect(&opts).await;
                    let _ = tx
                        .send(ConnEvent::Connected {
                            peer: addr,
                            attempt,
                            result,
                        })
                        .await;
                });
                p.connecting = Some((attempt, AbortOnDrop(h)));
            }
            Action::Disconnect => {
                let Some(p) = self.peers.get_mut(&addr) else {
                    return;
                };
                if w == Which::Main {
                    p.connecting = None;
                }
                if let Some(s) = self.slot_mut(addr, w) {
                    s.conn = None;
                }
            }
            Action::Send(m) => {
                if let Some(c) = self.slot_mut(addr, w).and_then(|s| s.conn.as_ref()) {
                    c.send(WriterCmd::Msg(m));
                }
            }
            Action::StartTimer(t, d) => {
                // RFC 4271 §10: jitter ConnectRetry-type timers (75-100 %) so two speakers
                // that failed together do not retry in lockstep forever.
                let d = if matches!(t, Timer::ConnectRetry | Timer::IdleHold) {
                    self.next_id = self.next_id.wrapping_add(1);
                    d.mul_f64(jitter(self.next_id, addr))
                } else {
                    d
                };
                if let Some(s) = self.slot_mut(addr, w) {
                    s.timers[t.index()] = Some(now + d);
                }
            }
            Action::StopTimer(t) => {
                if let Some(s) = self.slot_mut(addr, w) {
                    s.timers[t.index()] = None;
                }
            }
            Action::Established(neg) => {
                if w == Which::Alt {
                    // The other connection lost the collision or vanished: promote this one.
                    let Some(p) = self.peers.get_mut(&addr) else {
                        return;
                    };
                    if let Some(alt) = p.alt.take() {
                        p.main = alt;
                    }
                }
                self.on_established(addr, *neg);
            }
            Action::SessionDown(reason) => self.on_session_down(addr, reason),
            Action::Failed(reason) => {
                if let Some(p) = self.peers.get_mut(&addr) {
                    // A second connection failing beside an Established session (the peer
                    // closing its side of a collision, §6.8) says nothing about the session
                    // the operator sees: its error would be reported on a healthy peer.
                    if w == Which::Alt && p.main.fsm.state() == crate::fsm::State::Established {
                        tracing::debug!(peer = %addr, ?reason, "second connection closed beside the session");
                        return;
                    }
                    tracing::info!(peer = %addr, ?reason, "session attempt failed");
                    record_error(p, &reason);
                }
            }
            Action::Deliver(m) => match m {
                Message::Update(u) => self.on_update(addr, u),
                Message::RouteRefresh(rr) => self.on_route_refresh(addr, rr),
                _ => {}
            },
            Action::StateChange { from, to } => {
                if w == Which::Main {
                    tracing::info!(peer = %addr, %from, %to, "state change");
                    self.publish(Event::PeerState(PeerStateChange {
                        peer: addr,
                        from,
                        to,
                    }));
                }
            }
        }
    }
}
