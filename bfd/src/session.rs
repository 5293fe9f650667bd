//! The runtime half: one tokio task owns every session ([`crate::fsm::Session`]), their send
//! sockets and timers; one small reader task per receive socket feeds it datagrams. State is
//! published per peer through a [`watch`] channel.
//!
//! Demultiplexing (RFC 5880 §6.8.6, RFC 5881 §3, RFC 5883 §4): a packet with a nonzero Your
//! Discriminator goes to that session (and is dropped unless it came from the session's
//! remote address over the session's socket kind); one with Your Discriminator 0 is matched by
//! (local address, source address, interface, single/multihop).

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::Error;
use crate::fsm::{Action, Input, Now, Session, SessionConfig};
use crate::packet::{ControlPacket, Diag, State};
use crate::transport::{self, Datagram, GTSM_TTL, MULTIHOP_PORT, SINGLE_HOP_PORT};

/// One BFD peer as a BGP speaker (or anyone) configures it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// Our address (the source of our packets, and where we receive).
    pub local: IpAddr,
    /// The peer's address.
    pub remote: IpAddr,
    /// The interface (single hop: the session is bound to it, RFC 5881 §3). Required for
    /// IPv6 link-local addresses.
    pub interface: Option<String>,
    /// RFC 5883 multihop (port 4784, TTL checked against [`PeerConfig::min_ttl`]) instead of
    /// RFC 5881 single hop (port 3784, TTL must be 255).
    pub multihop: bool,
    /// Desired Min TX once Up (1 s is used while not Up, RFC 5880 §6.8.3).
    pub desired_min_tx: Duration,
    /// Required Min RX.
    pub required_min_rx: Duration,
    /// Detect Mult.
    pub detect_mult: u8,
    /// Multihop only: the lowest TTL / hop limit accepted (RFC 5883 §5 leaves the check to
    /// configuration; 0 turns it off). Single hop always requires 255.
    pub min_ttl: u8,
}

impl PeerConfig {
    /// A single-hop peer with 300 ms / 300 ms / 3 (FRR's defaults).
    pub fn single_hop(local: IpAddr, remote: IpAddr, interface: Option<&str>) -> Self {
        PeerConfig {
            local,
            remote,
            interface: interface.map(str::to_owned),
            multihop: false,
            desired_min_tx: Duration::from_millis(300),
            required_min_rx: Duration::from_millis(300),
            detect_mult: 3,
            min_ttl: GTSM_TTL,
        }
    }

    /// A multihop peer with 300 ms / 300 ms / 3 and a minimum TTL of 254 (one router between
    /// us), which the caller should adjust to the path.
    pub fn multihop(local: IpAddr, remote: IpAddr) -> Self {
        PeerConfig {
            multihop: true,
            min_ttl: GTSM_TTL - 1,
            ..PeerConfig::single_hop(local, remote, None)
        }
    }

    /// The identity of the session: two configs with the same key are the same session.
    pub fn key(&self) -> PeerKey {
        PeerKey {
            local: self.local,
            remote: self.remote,
            interface: self.interface.clone(),
            multihop: self.multihop,
        }
    }

    fn port(&self) -> u16 {
        if self.multihop {
            MULTIHOP_PORT
        } else {
            SINGLE_HOP_PORT
        }
    }

    fn validate(&self) -> Result<(), Error> {
        if self.local.is_ipv4() != self.remote.is_ipv4() {
            return Err(Error::FamilyMismatch {
                local: self.local,
                remote: self.remote,
            });
        }
        if self.detect_mult == 0 {
            return Err(Error::InvalidConfig {
                reason: "detect multiplier 0",
            });
        }
        for d in [self.desired_min_tx, self.required_min_rx] {
            if d.is_zero() || micros(d).is_none() {
                return Err(Error::InvalidConfig {
                    reason: "intervals must be between 1 µs and 2^32-1 µs",
                });
            }
        }
        Ok(())
    }
}

fn micros(d: Duration) -> Option<u32> {
    u32::try_from(d.as_micros()).ok()
}

/// Identity of a session (see [`PeerConfig::key`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerKey {
    /// Local address.
    pub local: IpAddr,
    /// Remote address.
    pub remote: IpAddr,
    /// Interface.
    pub interface: Option<String>,
    /// Multihop.
    pub multihop: bool,
}

/// What a peer's [`watch::Receiver`] carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerState {
    /// bfd.SessionState.
    pub state: State,
    /// bfd.LocalDiag: why we last went down.
    pub local_diag: Diag,
    /// The remote's state as it last said.
    pub remote_state: State,
    /// The remote's last diag.
    pub remote_diag: Diag,
    /// Our discriminator.
    pub local_discr: u32,
    /// The remote's discriminator (0 if unknown).
    pub remote_discr: u32,
    /// Negotiated transmit interval (before jitter).
    pub tx_interval: Duration,
    /// Detection time.
    pub detection_time: Duration,
    /// Number of state changes so far.
    pub transitions: u64,
    /// When the state last changed.
    pub since: Instant,
}

enum Command {
    Add(
        PeerConfig,
        oneshot::Sender<Result<watch::Receiver<PeerState>, Error>>,
    ),
    Remove(PeerKey, oneshot::Sender<bool>),
    Shutdown(oneshot::Sender<()>),
}

/// Handle to the BFD task. Cloneable; when the last clone is dropped the task sends AdminDown
/// on every session (RFC 5880 §6.8.16) and stops.
#[derive(Debug, Clone)]
pub struct BfdHandle {
    tx: mpsc::Sender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Add(c, _) => f.debug_tuple("Add").field(c).finish(),
            Command::Remove(k, _) => f.debug_tuple("Remove").field(k).finish(),
            Command::Shutdown(_) => f.write_str("Shutdown"),
        }
    }
}

impl BfdHandle {
    /// Spawns the BFD task on the current tokio runtime. The task opens the sockets, so they
    /// live in the network namespace of the runtime's worker thread(s).
    pub fn spawn() -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(64);
        let (pkt_tx, pkt_rx) = mpsc::channel(1024);
        let task = tokio::spawn(
            Manager {
                sessions: HashMap::new(),
                by_key: HashMap::new(),
                readers: HashMap::new(),
                pkt_tx,
                rng: Rng::new(),
            }
            .run(rx, pkt_rx),
        );
        (BfdHandle { tx }, task)
    }

    /// Adds a session; it starts at once (Down, sending at 1 s). The receiver follows its
    /// state; it is closed when the peer is removed or the task stops.
    pub async fn add_peer(&self, cfg: PeerConfig) -> Result<watch::Receiver<PeerState>, Error> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Add(cfg, tx))
            .await
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)?
    }

    /// Removes a session, sending AdminDown to the peer first (RFC 5880 §6.8.16) so it does
    /// not have to wait for its detection time. Returns whether it existed.
    pub async fn remove_peer(&self, key: &PeerKey) -> Result<bool, Error> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Remove(key.clone(), tx))
            .await
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Sends AdminDown on every session and stops the task.
    pub async fn shutdown(&self) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Shutdown(tx))
            .await
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }
}

/// A small xorshift generator seeded from the standard library's per-process random keys:
/// good enough for jitter, discriminators and source ports (none needs to be secret; RFC 5880
/// §6.8.1 only asks discriminators to be unique, RFC 5881 §4 says nothing of port
/// unpredictability), and it spares a dependency.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(0x6266_6400);
        Rng(h.finish() | 1)
    }

    fn next(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        // The high half is the better-mixed one.
        (x >> 32) as u32
    }
}

/// Which receive socket a datagram came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RxKey {
    local: IpAddr,
    interface: Option<String>,
    multihop: bool,
}

struct Reader {
    users: usize,
    task: JoinHandle<()>,
}

struct Entry {
    cfg: PeerConfig,
    fsm: Session,
    sock: UdpSocket,
    state_tx: watch::Sender<PeerState>,
}

struct Manager {
    /// By local discriminator.
    sessions: HashMap<u32, Entry>,
    by_key: HashMap<PeerKey, u32>,
    readers: HashMap<RxKey, Reader>,
    pkt_tx: mpsc::Sender<(Arc<RxKey>, Datagram)>,
    rng: Rng,
}

impl Manager {
    async fn run(
        mut self,
        mut cmds: mpsc::Receiver<Command>,
        mut pkts: mpsc::Receiver<(Arc<RxKey>, Datagram)>,
    ) {
        loop {
            let next = self.next_deadline();
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    Some(Command::Add(cfg, reply)) => {
                        let r = self.add(cfg).await;
                        let _ = reply.send(r);
                    }
                    Some(Command::Remove(key, reply)) => {
                        let existed = self.remove(&key).await;
                        let _ = reply.send(existed);
                    }
                    Some(Command::Shutdown(reply)) => {
                        self.remove_all().await;
                        let _ = reply.send(());
                        return;
                    }
                    None => {
                        self.remove_all().await;
                        return;
                    }
                },
                Some((key, d)) = pkts.recv() => self.received(&key, d).await,
                () = sleep_until(next) => self.timers().await,
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.sessions
            .values()
            .flat_map(|e| [e.fsm.tx_deadline(), e.fsm.detect_deadline()])
            .flatten()
            .min()
            .map(Instant::from_std)
    }

    fn now(&mut self) -> Now {
        Now {
            at: Instant::now().into_std(),
            random: self.rng.next(),
        }
    }

    async fn add(&mut self, cfg: PeerConfig) -> Result<watch::Receiver<PeerState>, Error> {
        cfg.validate()?;
        let key = cfg.key();
        if self.by_key.contains_key(&key) {
            return Err(Error::Duplicate { remote: cfg.remote });
        }
        let iface = cfg.interface.as_deref();
        let remote =
            transport::scoped(cfg.remote, cfg.port(), iface).map_err(|source| Error::Socket {
                what: "if_nametoindex",
                addr: cfg.remote,
                source,
            })?;
        let seed = self.rng.next();
        let sock = transport::tx_socket(cfg.local, remote, iface, seed)?;
        let rx_key = RxKey {
            local: cfg.local,
            interface: cfg.interface.clone(),
            multihop: cfg.multihop,
        };
        if let Some(r) = self.readers.get_mut(&rx_key) {
            r.users += 1;
        } else {
            let rx = transport::rx_socket(cfg.local, cfg.port(), iface)?;
            let task = tokio::spawn(read_loop(rx, Arc::new(rx_key.clone()), self.pkt_tx.clone()));
            self.readers.insert(rx_key, Reader { users: 1, task });
        }
        // §6.8.1: a nonzero discriminator unique on this system.
        let mut discr = 0;
        while discr == 0 || self.sessions.contains_key(&discr) {
            discr = self.rng.next();
        }
        let fsm = Session::new(SessionConfig {
            local_discr: discr,
            desired_min_tx: micros(cfg.desired_min_tx).unwrap_or(u32::MAX),
            required_min_rx: micros(cfg.required_min_rx).unwrap_or(u32::MAX),
            detect_mult: cfg.detect_mult,
        });
        let (state_tx, state_rx) = watch::channel(snapshot(&fsm, 0, Instant::now()));
        tracing::info!(remote = %cfg.remote, local = %cfg.local, interface = ?cfg.interface,
            multihop = cfg.multihop, discr, "bfd: session added");
        self.by_key.insert(key, discr);
        self.sessions.insert(
            discr,
            Entry {
                cfg,
                fsm,
                sock,
                state_tx,
            },
        );
        self.input(discr, Input::Start).await;
        Ok(state_rx)
    }

    async fn remove(&mut self, key: &PeerKey) -> bool {
        let Some(discr) = self.by_key.remove(key) else {
            return false;
        };
        self.input(discr, Input::AdminDown).await;
        if let Some(e) = self.sessions.remove(&discr) {
            let rx_key = RxKey {
                local: e.cfg.local,
                interface: e.cfg.interface.clone(),
                multihop: e.cfg.multihop,
            };
            if let Some(r) = self.readers.get_mut(&rx_key) {
                r.users = r.users.saturating_sub(1);
                if r.users == 0 {
                    r.task.abort();
                    self.readers.remove(&rx_key);
                }
            }
            tracing::info!(remote = %e.cfg.remote, discr, "bfd: session removed");
        }
        true
    }

    async fn remove_all(&mut self) {
        let keys: Vec<PeerKey> = self.by_key.keys().cloned().collect();
        for k in keys {
            self.remove(&k).await;
        }
    }

    /// Feeds one input to a session and carries out its actions.
    async fn input(&mut self, discr: u32, input: Input) {
        let now = self.now();
        let Some(e) = self.sessions.get_mut(&discr) else {
            return;
        };
        let acts = e.fsm.handle(input, now);
        let mut changed = false;
        for a in acts {
            match a {
                Action::Send(p) => {
                    if let Err(err) = e.sock.send(&p.encode()).await {
                        // ICMP unreachable before the peer is listening, a link that is
                        // down: detection (on both sides) is what deals with it.
                        tracing::debug!(remote = %e.cfg.remote, %err, "bfd: send failed");
                    }
                }
                Action::StateChanged { from, to, diag } => {
                    tracing::info!(remote = %e.cfg.remote, ?from, ?to, ?diag, "bfd: state change");
                    changed = true;
                }
                // The FSM keeps its deadlines; `next_deadline` reads them.
                Action::ArmTx(_) | Action::ArmDetect(_) => {}
            }
        }
        let fsm = &e.fsm;
        e.state_tx.send_if_modified(|s| {
            let transitions = s.transitions + u64::from(changed);
            let since = if changed { Instant::now() } else { s.since };
            let new = snapshot(fsm, transitions, since);
            let modified = new != *s;
            *s = new;
            modified
        });
    }

    async fn received(&mut self, key: &RxKey, d: Datagram) {
        let p = match ControlPacket::decode(&d.data) {
            Ok(p) => p,
            Err(err) => {
                tracing::debug!(src = %d.src, %err, "bfd: packet discarded");
                return;
            }
        };
        let src = d.src.ip();
        let discr = if p.your_discr != 0 {
            p.your_discr
        } else {
            let k = PeerKey {
                local: key.local,
                remote: src,
                interface: key.interface.clone(),
                multihop: key.multihop,
            };
            match self.by_key.get(&k) {
                Some(&discr) => discr,
                None => {
                    tracing::debug!(%src, "bfd: packet for no configured session");
                    return;
                }
            }
        };
        let Some(e) = self.sessions.get(&discr) else {
            tracing::debug!(%src, discr, "bfd: unknown discriminator");
            return;
        };
        // The session's own socket kind, address and interface only: a discriminator is no
        // credential (RFC 5881 §3 binds a single-hop session to its interface).
        if e.cfg.remote != src
            || e.cfg.multihop != key.multihop
            || e.cfg.local != key.local
            || e.cfg.interface != key.interface
        {
            tracing::debug!(%src, discr, "bfd: discriminator of another peer");
            return;
        }
        // RFC 5881 §5 (GTSM): single hop requires 255; RFC 5883 §5: multihop per config.
        let min_ttl = if e.cfg.multihop {
            e.cfg.min_ttl
        } else {
            GTSM_TTL
        };
        if d.ttl.unwrap_or(0) < min_ttl {
            tracing::debug!(%src, ttl = ?d.ttl, min_ttl, "bfd: TTL check failed");
            return;
        }
        self.input(discr, Input::Received(p)).await;
    }

    async fn timers(&mut self) {
        let now = Instant::now().into_std();
        let due: Vec<(u32, bool, bool)> = self
            .sessions
            .iter()
            .map(|(&d, e)| {
                (
                    d,
                    e.fsm.detect_deadline().is_some_and(|t| t <= now),
                    e.fsm.tx_deadline().is_some_and(|t| t <= now),
                )
            })
            .filter(|&(_, det, tx)| det || tx)
            .collect();
        for (discr, det, tx) in due {
            if det {
                self.input(discr, Input::DetectTimer).await;
            }
            if tx {
                self.input(discr, Input::TxTimer).await;
            }
        }
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        for r in self.readers.values() {
            r.task.abort();
        }
    }
}

fn snapshot(fsm: &Session, transitions: u64, since: Instant) -> PeerState {
    let r = fsm.remote();
    PeerState {
        state: fsm.state(),
        local_diag: fsm.diag(),
        remote_state: r.state,
        remote_diag: r.diag,
        local_discr: fsm.config().local_discr,
        remote_discr: r.discr,
        tx_interval: fsm.tx_interval(),
        detection_time: fsm.detection_time(),
        transitions,
        since,
    }
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

async fn read_loop(sock: UdpSocket, key: Arc<RxKey>, out: mpsc::Sender<(Arc<RxKey>, Datagram)>) {
    loop {
        match transport::recv(&sock).await {
            Ok(d) => {
                if out.send((key.clone(), d)).await.is_err() {
                    return;
                }
            }
            Err(err) => {
                tracing::warn!(local = %key.local, %err, "bfd: receive failed");
                // Errors on a UDP socket are per datagram (e.g. ICMP reports); do not spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
