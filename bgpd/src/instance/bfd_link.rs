//! BFD for BGP peers (RFC 5882 §4.3 "BFD for BGP", RFC 5881 single hop): each peer with
//! [`crate::config::BfdConfig`] gets a BFD session in the speaker's one BFD task, watched by a
//! small task that turns its state changes into [`ConnEvent::Bfd`] for the speaker task.
//!
//! - **Strict mode**: the BGP session of such a peer is not started, and connections from it
//!   are refused, while its BFD session is not Up (what GoBGP only has as a request,
//!   gobgp#3612; RFC 9384 §4 describes the same "hold down"). BFD coming Up starts it.
//! - **BFD down**: an Up BFD session that leaves Up stops the BGP session at once with
//!   NOTIFICATION Cease / "BFD Down" (RFC 9384 §3) and withdraws the peer's routes: the
//!   forwarding path is gone, so graceful restart's stale routes would only black-hole
//!   (RFC 5882 §4.3.2, the "C" bit aside).
//!
//! The BFD session's local address is the peer's configured source address, else the one the
//! kernel would use towards the peer (a route lookup through a connected UDP socket), so that
//! it exists before any TCP connection does. A peer whose address has no route yet retries.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Instance;
use super::peers::Which;
use crate::config::{BfdConfig, PeerConfig};
use crate::fsm::{Input, State, notif};
use crate::query::BfdStatus;
use crate::session::ConnEvent;

/// How often a peer whose BFD session could not be created (no route to it yet, a socket
/// error) tries again.
const RETRY: Duration = Duration::from_secs(1);

/// The BFD side of one peer, kept by the speaker task.
#[derive(Debug)]
pub(super) struct PeerBfd {
    /// Which watcher the events come from (a reconfiguration starts a new one).
    generation: u64,
    /// The last state seen (none yet: not Up); the BGP session may run while it is Up.
    pub(super) status: Option<BfdStatus>,
    /// Ends the watcher, which then removes the BFD session (AdminDown to the peer).
    stop: CancellationToken,
}

impl PeerBfd {
    /// The BFD session is Up.
    fn up(&self) -> bool {
        self.status
            .as_ref()
            .is_some_and(|s| s.state == bfd::State::Up)
    }
}

impl Drop for PeerBfd {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// What the BFD session of `cfg` is keyed by: a change of any of these re-registers it.
pub(super) fn bfd_identity(
    cfg: &PeerConfig,
) -> Option<(BfdConfig, Option<IpAddr>, Option<String>)> {
    cfg.bfd
        .clone()
        .map(|b| (b, cfg.source_address, cfg.interface.clone()))
}

impl Instance {
    /// Starts the BFD session of peer `addr` if its configuration has one (replacing any
    /// previous one); clears it otherwise.
    pub(super) fn start_bfd(&mut self, addr: IpAddr) {
        let Some(p) = self.peers.get(&addr) else {
            return;
        };
        let Some(b) = p.cfg.bfd.clone() else {
            if let Some(p) = self.peers.get_mut(&addr) {
                p.bfd = None;
            }
            return;
        };
        let source = p.cfg.source_address;
        let interface = p.cfg.interface.clone();
        // One BFD task for the speaker, started with its first BFD peer. Not aborted on
        // drop: when the last handle goes, it sends AdminDown on every session and stops.
        let handle = match &self.bfd {
            Some(h) => h.clone(),
            None => {
                let (h, _task) = bfd::BfdHandle::spawn();
                self.bfd = Some(h.clone());
                h
            }
        };
        self.next_id += 1;
        let generation = self.next_id;
        let stop = CancellationToken::new();
        let tx = self.ev_tx.clone();
        tokio::spawn(watch(
            handle,
            Registration {
                peer: addr,
                source,
                interface,
                timers: b,
                generation,
            },
            tx,
            stop.clone(),
        ));
        if let Some(p) = self.peers.get_mut(&addr) {
            p.bfd = Some(PeerBfd {
                generation,
                status: None,
                stop,
            });
        }
    }

    /// Whether peer `addr` may run its BGP session: always without BFD, only while BFD is Up
    /// with it (strict mode).
    pub(super) fn bfd_allows(&self, addr: IpAddr) -> bool {
        self.peers
            .get(&addr)
            .and_then(|p| p.bfd.as_ref())
            .is_none_or(PeerBfd::up)
    }

    /// A state change of peer `addr`'s BFD session (from watcher `generation`).
    pub(super) fn on_bfd(&mut self, addr: IpAddr, generation: u64, status: BfdStatus) {
        let Some(b) = self
            .peers
            .get_mut(&addr)
            .and_then(|p| p.bfd.as_mut())
            .filter(|b| b.generation == generation)
        else {
            return;
        };
        let was_up = b.up();
        let up = status.state == bfd::State::Up;
        b.status = Some(status.clone());
        match (was_up, up) {
            (false, true) => {
                tracing::info!(peer = %addr, "BFD up: starting the BGP session");
                let idle = self
                    .peers
                    .get(&addr)
                    .is_some_and(|p| p.main.fsm.state() == State::Idle);
                if idle {
                    self.drive(addr, Which::Main, Input::Start);
                }
            }
            (true, false) => {
                tracing::warn!(peer = %addr, state = %status.state, diag = %status.local_diag, "BFD down: resetting the BGP session and withdrawing its routes");
                if let Some(p) = self.peers.get_mut(&addr) {
                    p.last_error = Some(format!(
                        "BFD down ({}, remote {})",
                        status.local_diag, status.remote_diag
                    ));
                }
                self.drive(
                    addr,
                    Which::Main,
                    Input::Stop {
                        subcode: notif::BFD_DOWN,
                    },
                );
                if let Some(p) = self.peers.get_mut(&addr) {
                    p.alt = None;
                }
            }
            _ => {}
        }
    }
}

/// What a watcher registers.
struct Registration {
    peer: IpAddr,
    source: Option<IpAddr>,
    interface: Option<String>,
    timers: BfdConfig,
    generation: u64,
}

/// The address the kernel would send from towards `peer` (a UDP socket connected to it,
/// bound to `interface` when given, never sends anything).
fn route_source(peer: IpAddr, interface: Option<&str>) -> std::io::Result<IpAddr> {
    let domain = if peer.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, None)?;
    if let Some(i) = interface {
        s.bind_device(Some(i.as_bytes()))?;
    }
    s.connect(&SocketAddr::new(peer, bfd::transport::SINGLE_HOP_PORT).into())?;
    let local = s
        .local_addr()?
        .as_socket()
        .ok_or_else(|| std::io::Error::other("not an IP socket"))?;
    Ok(local.ip())
}

/// One peer's watcher: registers the BFD session (retrying until it can), forwards every
/// state change to the speaker task, and removes the session when `stop` fires.
async fn watch(
    handle: bfd::BfdHandle,
    r: Registration,
    tx: mpsc::Sender<ConnEvent>,
    stop: CancellationToken,
) {
    let registered = loop {
        let local = match r.source {
            Some(a) => Ok(a),
            None => route_source(r.peer, r.interface.as_deref()),
        };
        let attempt = match local {
            Ok(local) => {
                let mut cfg = bfd::PeerConfig::single_hop(local, r.peer, r.interface.as_deref());
                cfg.desired_min_tx = Duration::from_micros(u64::from(r.timers.desired_min_tx_us));
                cfg.required_min_rx = Duration::from_micros(u64::from(r.timers.required_min_rx_us));
                cfg.detect_mult = r.timers.detect_mult;
                let key = cfg.key();
                handle
                    .add_peer(cfg)
                    .await
                    .map(|rx| (key, rx))
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(format!("no local address towards the peer: {e}")),
        };
        match attempt {
            Ok(ok) => break ok,
            Err(e) => {
                tracing::warn!(peer = %r.peer, error = %e, "BFD session not created; retrying");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(RETRY) => {}
                }
            }
        }
    };
    let (key, mut rx) = registered;
    loop {
        let st = BfdStatus::from(&*rx.borrow_and_update());
        let ev = ConnEvent::Bfd {
            peer: r.peer,
            generation: r.generation,
            status: st,
        };
        if tx.send(ev).await.is_err() {
            break;
        }
        tokio::select! {
            () = stop.cancelled() => break,
            changed = rx.changed() => if changed.is_err() { return },
        }
    }
    // AdminDown to the peer (RFC 5880 §6.8.16), so it does not wait for its detection time.
    let _ = handle.remove_peer(&key).await;
}
