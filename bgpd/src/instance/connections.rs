//! Connections: the events of the reader and connect tasks and of the listeners, which
//! connection becomes a peer's main or second slot, and collision resolution (RFC 4271 §6.8).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bgpd_wire::{Message, Open};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::Instance;
use super::peers::{Slot, Which};
use crate::fsm::{Fsm, FsmConfig, Input, State, Timer, notif};
use crate::session::{self, Conn, ConnEvent};
use crate::transport;

/// Retry interval, capped, while a fixed source port is blocked by a TIME_WAIT.
const TIME_WAIT_RETRY: Duration = Duration::from_secs(5);

impl Instance {
    pub(super) fn conn_event(&mut self, ev: ConnEvent) {
        match ev {
            ConnEvent::Rx { peer, conn, msg } => {
                if let Some(w) = self.slot_of(peer, conn) {
                    if matches!(msg, Message::Update(_)) {
                        self.bmp_update(peer, &msg);
                    }
                    let is_open = matches!(msg, Message::Open(_));
                    self.drive(peer, w, Input::Message(msg));
                    if is_open {
                        self.resolve_collision(peer);
                    }
                }
            }
            ConnEvent::RxError {
                peer,
                conn,
                notification,
            } => {
                if let Some(w) = self.slot_of(peer, conn) {
                    self.drive(peer, w, Input::DecodeError(notification));
                }
            }
            ConnEvent::Closed { peer, conn } => {
                if let Some(w) = self.slot_of(peer, conn) {
                    self.drive(peer, w, Input::TcpClosed);
                    if w == Which::Alt
                        && let Some(p) = self.peers.get_mut(&peer)
                    {
                        p.alt = None;
                    }
                }
            }
            ConnEvent::Connected {
                peer,
                attempt,
                result,
            } => self.on_connected(peer, attempt, result),
            ConnEvent::Accepted { stream, remote } => self.on_accepted(stream, remote),
            ConnEvent::Bfd {
                peer,
                generation,
                status,
            } => self.on_bfd(peer, generation, status),
        }
    }

    pub(super) fn slot_of(&self, peer: IpAddr, conn: u64) -> Option<Which> {
        let p = self.peers.get(&peer)?;
        if p.main.conn.as_ref().is_some_and(|c| c.id == conn) {
            Some(Which::Main)
        } else if p
            .alt
            .as_ref()
            .and_then(|s| s.conn.as_ref())
            .is_some_and(|c| c.id == conn)
        {
            Some(Which::Alt)
        } else {
            None
        }
    }

    pub(super) fn new_conn(
        &mut self,
        addr: IpAddr,
        stream: TcpStream,
        outgoing: bool,
        open: Open,
    ) -> Option<Conn> {
        let id = self.next_id;
        self.next_id += 1;
        match session::spawn(
            addr,
            id,
            stream,
            outgoing,
            open,
            self.ev_tx.clone(),
            &self.writers,
        ) {
            Ok(c) => {
                if let Some(p) = self.peers.get_mut(&addr) {
                    p.conns.retain(|(_, t)| !t.is_cancelled());
                    p.conns.push((c.id, c.closed.clone()));
                }
                Some(c)
            }
            Err(e) => {
                tracing::warn!(peer = %addr, error = %e, "connection unusable");
                None
            }
        }
    }

    pub(super) fn on_connected(
        &mut self,
        addr: IpAddr,
        attempt: u64,
        result: std::io::Result<TcpStream>,
    ) {
        let Some(p) = self.peers.get_mut(&addr) else {
            return;
        };
        if p.connecting.as_ref().map(|c| c.0) != Some(attempt) {
            return;
        }
        // The reporting task is finishing; aborting it is harmless.
        p.connecting = None;
        let stream = match result {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(peer = %addr, error = %e, "connect failed");
                // See transport::connect: the previous connection from this fixed port is in
                // TIME_WAIT and the peer did not use TCP timestamps.
                let time_wait =
                    p.cfg.local_port.is_some() && e.kind() == std::io::ErrorKind::AddrNotAvailable;
                p.last_error = Some(match p.cfg.local_port {
                    Some(port) if time_wait => format!(
                        "connect: {e} (local port {port} still held by the previous connection, \
                         probably TIME_WAIT; retrying every {} s at most)",
                        TIME_WAIT_RETRY.as_secs()
                    ),
                    _ => format!("connect: {e}"),
                });
                if p.main.fsm.state() == State::Connect {
                    self.drive(addr, Which::Main, Input::TcpFailed);
                }
                // The TIME_WAIT ends within 60 s; do not wait a whole connect-retry (Cilium's
                // default is 120 s) beyond that.
                if time_wait
                    && let Some(p) = self.peers.get_mut(&addr)
                    && let Some(t) = &mut p.main.timers[Timer::ConnectRetry.index()]
                {
                    *t = (*t).min(Instant::now() + TIME_WAIT_RETRY);
                }
                return;
            }
        };
        let state = p.main.fsm.state();
        if matches!(state, State::Connect | State::Active) && p.main.conn.is_none() {
            self.take_main(addr, stream, true);
        } else if matches!(state, State::OpenSent | State::OpenConfirm) && p.alt.is_none() {
            self.open_alt(addr, stream, true);
        }
    }

    pub(super) fn on_accepted(&mut self, stream: TcpStream, remote: SocketAddr) {
        let addr = transport::canonical(remote.ip());
        if !self.bfd_allows(addr) {
            tracing::info!(%remote, "connection refused: the peer's BFD session is not up");
            return;
        }
        let Some(p) = self.peers.get_mut(&addr) else {
            tracing::info!(%remote, "connection from unknown peer refused");
            return;
        };
        let ttl = p.cfg.ttl.unwrap_or(if p.cfg.peer_as == self.cfg.local_as {
            255
        } else {
            1
        });
        let _ = transport::set_ttl(&socket2::SockRef::from(&stream), remote.is_ipv6(), ttl);
        match p.main.fsm.state() {
            State::Idle | State::Connect | State::Active => {
                // Our own attempt, if any, keeps going: if it completes too, the two
                // connections are resolved by §6.8 rather than by dropping one blindly.
                p.main.conn = None;
                if p.main.fsm.state() == State::Idle {
                    // Waiting for the automatic restart: restart now, with this connection.
                    self.drive(addr, Which::Main, Input::Start);
                }
                self.take_main(addr, stream, false);
            }
            State::OpenSent | State::OpenConfirm => self.open_alt(addr, stream, false),
            State::Established => {
                let gr = p
                    .session
                    .as_ref()
                    .is_some_and(|s| s.neg.peer_graceful_restart.is_some());
                if gr && p.cfg.graceful_restart {
                    // RFC 4724 §4.2: a new connection from an Established GR peer means it
                    // restarted; keep its routes as stale and take the new connection.
                    tracing::info!(peer = %addr, "peer reconnected while established: graceful restart");
                    self.drive(addr, Which::Main, Input::TcpClosed);
                    self.take_main(addr, stream, false);
                } else {
                    tracing::info!(peer = %addr, "connection refused: session already established (§6.8)");
                }
            }
        }
    }

    /// Make `stream` the peer's main connection and tell its FSM the transport is up.
    pub(super) fn take_main(&mut self, addr: IpAddr, stream: TcpStream, outgoing: bool) {
        let Some(p) = self.peers.get(&addr) else {
            return;
        };
        let open = p.main.fsm.open_message();
        let Some(c) = self.new_conn(addr, stream, outgoing, open) else {
            return;
        };
        if let Some(p) = self.peers.get_mut(&addr) {
            p.main.conn = Some(c);
        }
        self.drive(addr, Which::Main, Input::TcpConnected);
    }

    /// Run a second connection alongside the main one until §6.8 picks one.
    pub(super) fn open_alt(&mut self, addr: IpAddr, stream: TcpStream, outgoing: bool) {
        let Some(p) = self.peers.get(&addr) else {
            return;
        };
        let mut cfg = p.main.fsm.config().clone();
        cfg.passive = true;
        let mut fsm = Fsm::new(cfg);
        let open = fsm.open_message();
        let _ = fsm.handle(Input::Start);
        let Some(c) = self.new_conn(addr, stream, outgoing, open) else {
            return;
        };
        let mut slot = Slot::new(fsm);
        slot.conn = Some(c);
        if let Some(p) = self.peers.get_mut(&addr) {
            p.alt = Some(slot);
        }
        self.drive(addr, Which::Alt, Input::TcpConnected);
    }

    /// RFC 4271 §6.8: once a peer's BGP identifier is known on one of two connections,
    /// close the one initiated by the speaker with the lower identifier.
    pub(super) fn resolve_collision(&mut self, addr: IpAddr) {
        let Some(p) = self.peers.get(&addr) else {
            return;
        };
        let Some(alt) = &p.alt else { return };
        let active = |s: State| matches!(s, State::OpenSent | State::OpenConfirm);
        let (ms, as_) = (p.main.fsm.state(), alt.fsm.state());
        if !(active(ms) || ms == State::Established) || !active(as_) && as_ != State::Established {
            return;
        }
        let remote_id = p
            .main
            .fsm
            .negotiated()
            .or(alt.fsm.negotiated())
            .map(|n| n.peer_router_id);
        let Some(remote_id) = remote_id else { return };
        let main_outgoing = p.main.conn.as_ref().is_some_and(|c| c.outgoing);
        let keep_ours = crate::fsm::keep_our_connection(self.cfg.router_id, remote_id);
        // A session already Established always wins (§6.8 last paragraph).
        let keep_main = if ms == State::Established {
            true
        } else if as_ == State::Established {
            false
        } else {
            keep_ours == main_outgoing
        };
        tracing::debug!(peer = %addr, keep_main, "connection collision resolved");
        if keep_main {
            self.drive(
                addr,
                Which::Alt,
                Input::Stop {
                    subcode: notif::COLLISION,
                },
            );
            if let Some(p) = self.peers.get_mut(&addr) {
                p.alt = None;
            }
        } else {
            self.drive(
                addr,
                Which::Main,
                Input::Stop {
                    subcode: notif::COLLISION,
                },
            );
            if let Some(p) = self.peers.get_mut(&addr)
                && let Some(alt) = p.alt.take()
            {
                let mut alt = alt;
                let cfg = p.main.fsm.config().clone();
                alt.fsm.set_config(FsmConfig {
                    passive: cfg.passive,
                    ..alt.fsm.config().clone()
                });
                p.main = alt;
            }
        }
    }
}
