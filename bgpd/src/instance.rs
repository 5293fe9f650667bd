//! The speaker task: owns every peer's FSMs, the RIBs and the listeners, and is fed by
//! channels (API commands, connection events) plus its own timer deadlines.
//!
//! ```text
//!  Speaker handle ──Command──▶ ┌──────────────────────────────┐ ──Event──▶ subscribers (daemon, FIB)
//!                              │ speaker task                 │
//!  accept tasks ──Accepted───▶ │  peers: FSM slots, timers    │ ──WriterCmd──▶ writer task / conn
//!  connect tasks ─Connected──▶ │  tables: paths per prefix    │
//!  reader tasks ──Rx/Closed──▶ │  Adj-RIB-Out per peer        │
//!                              └──────────────────────────────┘
//! ```

use std::collections::HashMap as StdHashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bgpd_wire::{
    AsSegment, Family, GracefulRestart, Message, NextHop, Open, PathAttributes, RouteRefresh,
    SessionContext, Update,
};
use hashbrown::{HashMap, HashSet};
use ipnet::IpNet;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{AfiSafi, PeerConfig, SpeakerConfig};
use crate::error::Error;
use crate::events::{BestPathChange, Event, PeerStateChange, RouteSource};
use crate::fsm::{Action, DownReason, Fsm, FsmConfig, Input, Negotiated, State, Timer, notif};
use crate::policy::{NO_ADVERTISE, NO_EXPORT, PolicyIndex, Verdict};
use crate::query::{FamilyStatus, PeerStatus, RibKind, RouteEntry, RouteQuery, capability_name};
use crate::rib::{
    self, Attrs, Interner, LOCAL, Path, PeerId, PrefixMap, SourceInfo, Sources, Table, family_of,
    flags,
};
use crate::session::{self, AbortOnDrop, Conn, ConnEvent, WriterCmd};
use crate::transport;

/// API requests.
#[derive(Debug)]
pub(crate) enum Command {
    AddPeer(Box<PeerConfig>, oneshot::Sender<Result<(), Error>>),
    UpdatePeer(Box<PeerConfig>, oneshot::Sender<Result<(), Error>>),
    RemovePeer(IpAddr, oneshot::Sender<Result<(), Error>>),
    AddLocal(IpNet, Box<PathAttributes>, oneshot::Sender<()>),
    RemoveLocal(IpNet, oneshot::Sender<()>),
    SetReady(oneshot::Sender<()>),
    RouteRefresh(IpAddr, AfiSafi, oneshot::Sender<Result<(), Error>>),
    Peers(oneshot::Sender<Vec<PeerStatus>>),
    Routes(RouteQuery, oneshot::Sender<Result<Vec<RouteEntry>, Error>>),
    Subscribe(oneshot::Sender<mpsc::UnboundedReceiver<Event>>),
    Shutdown(oneshot::Sender<()>),
}

/// Connection events are bounded so a fast sender is slowed down by TCP, not buffered.
const CONN_EVENT_QUEUE: usize = 1024;
/// Connection events handled before pending RIB changes are flushed to peers.
const BATCH: usize = 256;
/// Retry interval, capped, while a fixed source port is blocked by a TIME_WAIT.
const TIME_WAIT_RETRY: Duration = Duration::from_secs(5);

/// One connection and its FSM (a peer has a second one only during a collision, §6.8).
#[derive(Debug)]
struct Slot {
    fsm: Fsm,
    conn: Option<Conn>,
    timers: [Option<Instant>; Timer::COUNT],
}

impl Slot {
    fn new(fsm: Fsm) -> Self {
        Self {
            fsm,
            conn: None,
            timers: [None; Timer::COUNT],
        }
    }
}

/// Which slot of a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Main,
    Alt,
}

/// The Established session's data.
#[derive(Debug)]
struct Session {
    neg: Negotiated,
    since: Instant,
    local: SocketAddr,
    ebgp: bool,
    nh_v4: Option<Ipv4Addr>,
    nh_v6: Option<Ipv6Addr>,
    /// Initial advertisement (and End-of-RIB) sent.
    synced: bool,
    eor_received: Vec<Family>,
}

#[derive(Debug)]
struct Peer {
    cfg: PeerConfig,
    /// Lookup indexes of `cfg.import` / `cfg.export`, rebuilt with `cfg`.
    import_idx: PolicyIndex,
    export_idx: PolicyIndex,
    id: PeerId,
    main: Slot,
    alt: Option<Slot>,
    connecting: Option<(u64, AbortOnDrop)>,
    /// Every connection of this peer whose socket is not closed yet, by id: a new outgoing
    /// connection waits for the old ones to close (see [`session::LINGER`]).
    conns: Vec<(u64, CancellationToken)>,
    session: Option<Session>,
    /// Adj-RIB-Out: what we advertised, per family (0 = IPv4, 1 = IPv6).
    adj_out: [PrefixMap<OutEntry>; 2],
    /// RFC 4724 helper: families whose paths are stale, and until when they are kept.
    stale_families: Vec<Family>,
    stale_deadline: Option<Instant>,
    last_error: Option<String>,
}

/// An Adj-RIB-Out entry: the Loc-RIB attributes the advertisement was derived from and the
/// export statement that matched. The attributes on the wire are a function of these and the
/// session, so they are rebuilt when needed (encoding, route refresh, queries) instead of
/// being stored per peer: that keeps the Adj-RIB-Out at 16 bytes per prefix and avoids a
/// second copy of every attribute set per peer.
#[derive(Debug, Clone)]
struct OutEntry {
    src: Arc<Attrs>,
    /// Index of the accepting export statement; `u32::MAX` = accepted by default.
    stmt: u32,
    /// The source is a local route (next hop self, MED kept).
    local: bool,
}

impl OutEntry {
    fn new(src: Arc<Attrs>, verdict: Verdict, local: bool) -> Self {
        let stmt = match verdict {
            Verdict::Accept(Some(i)) => u32::try_from(i).unwrap_or(u32::MAX - 1),
            _ => u32::MAX,
        };
        Self { src, stmt, local }
    }

    fn verdict(&self) -> Verdict {
        if self.stmt == u32::MAX {
            Verdict::Accept(None)
        } else {
            Verdict::Accept(Some(self.stmt as usize))
        }
    }

    fn same(&self, other: &OutEntry) -> bool {
        Arc::ptr_eq(&self.src, &other.src) && self.stmt == other.stmt && self.local == other.local
    }
}

/// Exported attributes (None: not advertisable) and the prefixes that carry them.
type Group = (Option<Arc<Attrs>>, Vec<IpNet>);

fn export_ctx(local_as: u32, peer_id: PeerId, s: &Session) -> ExportCtx {
    ExportCtx {
        local_as,
        peer_id,
        ebgp: s.ebgp,
        nh_v4: s.nh_v4,
        nh_v6: s.nh_v6,
        ext_nh_v4: s.neg.extended_next_hop.contains(&Family::Ipv4Unicast),
    }
}

fn fi(f: Family) -> Option<usize> {
    match f {
        Family::Ipv4Unicast => Some(0),
        Family::Ipv6Unicast => Some(1),
        Family::Other { .. } => None,
    }
}

struct Instance {
    cfg: SpeakerConfig,
    peers: StdHashMap<IpAddr, Peer>,
    tables: [Table; 2],
    sources: Sources,
    interner: Interner,
    subscribers: Vec<mpsc::UnboundedSender<Event>>,
    ev_tx: mpsc::Sender<ConnEvent>,
    listeners: Vec<(Arc<TcpListener>, bool)>,
    _accept_tasks: Vec<AbortOnDrop>,
    next_id: u64,
    dirty: HashSet<IpNet>,
    user_ready: bool,
    advertising: bool,
    deferral_deadline: Option<Instant>,
    writers: tokio_util::task::TaskTracker,
    /// The zero of the paths' [`rib::Stamp`]s (tokio's clock, so paused-clock tests see ages).
    epoch: Instant,
}

/// Bind the listeners and spawn the speaker task.
pub(crate) fn spawn(
    cfg: SpeakerConfig,
    cmd_rx: mpsc::UnboundedReceiver<Command>,
) -> Result<JoinHandle<()>, Error> {
    let (ev_tx, ev_rx) = mpsc::channel(CONN_EVENT_QUEUE);
    let mut listeners = Vec::new();
    let mut accept_tasks = Vec::new();
    for addr in &cfg.listen {
        let l = transport::listen(*addr, cfg.listen_interface.as_deref()).map_err(|source| {
            Error::Listen {
                addr: *addr,
                source,
            }
        })?;
        let l = Arc::new(l);
        listeners.push((l.clone(), addr.is_ipv6()));
        let tx = ev_tx.clone();
        accept_tasks.push(AbortOnDrop(tokio::spawn(async move {
            loop {
                match l.accept().await {
                    Ok((stream, remote)) => {
                        if tx
                            .send(ConnEvent::Accepted { stream, remote })
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        })));
    }
    let restarting = cfg.graceful_restart.as_ref().is_some_and(|g| g.restarting);
    let deferral_deadline = cfg
        .graceful_restart
        .as_ref()
        .filter(|g| g.restarting)
        .map(|g| Instant::now() + Duration::from_secs(u64::from(g.restart_time)));
    let mut sources = Sources::default();
    sources.set(
        LOCAL,
        SourceInfo {
            address: IpAddr::V4(cfg.router_id),
            router_id: cfg.router_id,
            ebgp: false,
        },
    );
    let inst = Instance {
        cfg,
        peers: StdHashMap::new(),
        tables: [
            Table::new(Family::Ipv4Unicast),
            Table::new(Family::Ipv6Unicast),
        ],
        sources,
        interner: Interner::default(),
        subscribers: Vec::new(),
        ev_tx,
        listeners,
        _accept_tasks: accept_tasks,
        next_id: 1,
        dirty: HashSet::new(),
        user_ready: !restarting,
        advertising: !restarting,
        deferral_deadline,
        writers: tokio_util::task::TaskTracker::new(),
        epoch: Instant::now(),
    };
    Ok(tokio::spawn(inst.run(cmd_rx, ev_rx)))
}

impl Instance {
    async fn run(
        mut self,
        mut cmd_rx: mpsc::UnboundedReceiver<Command>,
        mut ev_rx: mpsc::Receiver<ConnEvent>,
    ) {
        loop {
            let deadline = self.next_deadline();
            let sleep = tokio::time::sleep_until(
                deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)),
            );
            tokio::select! {
                biased;
                cmd = cmd_rx.recv() => {
                    let Some(cmd) = cmd else { self.shutdown().await; return };
                    if let Command::Shutdown(done) = cmd {
                        self.shutdown().await;
                        let _ = done.send(());
                        return;
                    }
                    self.command(cmd);
                }
                ev = ev_rx.recv() => {
                    let Some(ev) = ev else { return };
                    self.conn_event(ev);
                    // Drain what is already queued, then flush once for the whole batch.
                    for _ in 0..BATCH {
                        match ev_rx.try_recv() {
                            Ok(ev) => self.conn_event(ev),
                            Err(_) => break,
                        }
                    }
                }
                () = sleep, if deadline.is_some() => self.timers(),
            }
            self.flush();
        }
    }

    async fn shutdown(&mut self) {
        let addrs: Vec<IpAddr> = self.peers.keys().copied().collect();
        for a in addrs {
            self.drive(
                a,
                Which::Main,
                Input::Stop {
                    subcode: notif::ADMIN_SHUTDOWN,
                },
            );
            if let Some(p) = self.peers.get_mut(&a) {
                p.alt = None;
            }
        }
        self.flush();
        // Dropping the connections asks each writer to flush its NOTIFICATION and close once
        // the peer has (session::LINGER); give them that long, so the peers learn why (Cease)
        // instead of seeing a bare close, and a restart finds no TIME_WAIT of ours.
        self.peers.clear();
        self.writers.close();
        let _ = tokio::time::timeout(
            session::LINGER + Duration::from_millis(500),
            self.writers.wait(),
        )
        .await;
    }

    /// The stamp for paths learnt now.
    fn stamp(&self) -> rib::Stamp {
        rib::stamp(self.epoch.elapsed())
    }

    // ===== commands =====

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::AddPeer(cfg, tx) => {
                let _ = tx.send(self.add_peer(*cfg));
            }
            Command::UpdatePeer(cfg, tx) => {
                let _ = tx.send(self.update_peer(*cfg));
            }
            Command::RemovePeer(a, tx) => {
                let _ = tx.send(self.remove_peer(a));
            }
            Command::AddLocal(prefix, attrs, tx) => {
                self.add_local(prefix, *attrs);
                let _ = tx.send(());
            }
            Command::RemoveLocal(prefix, tx) => {
                let t = &mut self.tables[table_index(&prefix)];
                if t.set(prefix, LOCAL, None, 0, &self.sources) {
                    self.dirty.insert(prefix);
                }
                let _ = tx.send(());
            }
            Command::SetReady(tx) => {
                self.user_ready = true;
                self.check_ready();
                let _ = tx.send(());
            }
            Command::RouteRefresh(a, f, tx) => {
                let _ = tx.send(self.request_refresh(a, f.family()));
            }
            Command::Peers(tx) => {
                let _ = tx.send(self.peer_status());
            }
            Command::Routes(q, tx) => {
                let _ = tx.send(self.routes(q));
            }
            Command::Subscribe(tx) => {
                let (etx, erx) = mpsc::unbounded_channel();
                for t in &self.tables {
                    for (prefix, _) in t.iter() {
                        if let Some(ev) = best_event(t, &prefix, &self.sources) {
                            let _ = etx.send(Event::BestPath(ev));
                        }
                    }
                }
                self.subscribers.push(etx);
                let _ = tx.send(erx);
            }
            Command::Shutdown(_) => {}
        }
    }

    fn fsm_config(&self, p: &PeerConfig) -> FsmConfig {
        let gr = self
            .cfg
            .graceful_restart
            .as_ref()
            .filter(|_| p.graceful_restart)
            .map(|g| GracefulRestart {
                restarting: g.restarting,
                notification: false,
                restart_time: p.restart_time.unwrap_or(g.restart_time),
                // F bit: forwarding state is kept across our restart (the FIB module keeps
                // routes installed, and the peer forwards to us while we come back).
                families: p
                    .families
                    .iter()
                    .map(|f| (f.family(), g.restarting))
                    .collect(),
            });
        FsmConfig {
            local_as: self.cfg.local_as,
            router_id: self.cfg.router_id,
            peer_as: p.peer_as,
            hold_time: p.hold_time,
            keepalive: p.keepalive,
            connect_retry: p.connect_retry(),
            passive: p.passive,
            families: p.families.iter().map(|f| f.family()).collect(),
            extended_next_hop: if p.extended_next_hop {
                vec![Family::Ipv4Unicast]
            } else {
                vec![]
            },
            graceful_restart: gr,
        }
    }

    fn set_listener_keys(&self, peer: IpAddr, key: Option<&[u8]>) -> Result<(), Error> {
        for (l, v6) in &self.listeners {
            transport::set_md5(&**l, *v6, peer, key)
                .map_err(|source| Error::Md5 { peer, source })?;
        }
        Ok(())
    }

    fn add_peer(&mut self, cfg: PeerConfig) -> Result<(), Error> {
        let addr = cfg.address;
        if self.peers.contains_key(&addr) {
            return Err(Error::PeerExists(addr));
        }
        if let Some(pw) = &cfg.md5_password {
            self.set_listener_keys(addr, Some(pw.as_bytes()))?;
        }
        let id = self.sources.allocate();
        self.sources.set(
            id,
            SourceInfo {
                address: addr,
                router_id: Ipv4Addr::UNSPECIFIED,
                ebgp: cfg.peer_as != self.cfg.local_as,
            },
        );
        let fsm = Fsm::new(self.fsm_config(&cfg));
        let peer = Peer {
            import_idx: PolicyIndex::new(&cfg.import),
            export_idx: PolicyIndex::new(&cfg.export),
            cfg,
            id,
            main: Slot::new(fsm),
            alt: None,
            connecting: None,
            conns: Vec::new(),
            session: None,
            adj_out: [PrefixMap::new(), PrefixMap::new()],
            stale_families: Vec::new(),
            stale_deadline: None,
            last_error: None,
        };
        self.peers.insert(addr, peer);
        tracing::info!(peer = %addr, "peer added");
        self.drive(addr, Which::Main, Input::Start);
        Ok(())
    }

    fn update_peer(&mut self, cfg: PeerConfig) -> Result<(), Error> {
        let addr = cfg.address;
        let Some(p) = self.peers.get(&addr) else {
            return Err(Error::NoSuchPeer(addr));
        };
        let old = p.cfg.clone();
        // What needs no new session: policies (RFC 4271 §9.1), the next hops we advertise
        // (a re-export), and the keepalive and connect-retry times, local matters (§10).
        // Everything else is in the OPEN or the TCP connection, so it takes a reset.
        let in_place = PeerConfig {
            import: old.import.clone(),
            export: old.export.clone(),
            keepalive: old.keepalive,
            connect_retry: old.connect_retry,
            next_hop_v4: old.next_hop_v4,
            next_hop_v6: old.next_hop_v6,
            ..cfg.clone()
        } == old;
        if old.md5_password != cfg.md5_password {
            self.set_listener_keys(addr, cfg.md5_password.as_deref().map(str::as_bytes))?;
        }
        let fsm_cfg = self.fsm_config(&cfg);
        let Some(p) = self.peers.get_mut(&addr) else {
            return Err(Error::NoSuchPeer(addr));
        };
        p.import_idx = PolicyIndex::new(&cfg.import);
        p.export_idx = PolicyIndex::new(&cfg.export);
        p.cfg = cfg;
        p.main.fsm.set_config(fsm_cfg);
        // The session's copy of what was negotiated follows the FSM's (keepalive).
        if let (Some(s), Some(n)) = (p.session.as_mut(), p.main.fsm.negotiated()) {
            s.neg.keepalive = n.keepalive;
        }
        let fams: Vec<Family> = p
            .session
            .as_ref()
            .map(|s| s.neg.families.clone())
            .unwrap_or_default();
        let rr = p.session.as_ref().is_some_and(|s| s.neg.route_refresh);
        let export_changed = old.export != p.cfg.export
            || old.next_hop_v4 != p.cfg.next_hop_v4
            || old.next_hop_v6 != p.cfg.next_hop_v6;
        let import_changed = old.import != p.cfg.import;
        if in_place {
            if export_changed {
                self.resync(addr);
            }
            if import_changed {
                if rr {
                    for f in fams {
                        let _ = self.request_refresh(addr, f);
                    }
                } else {
                    self.reset(addr);
                }
            }
        } else {
            self.reset(addr);
        }
        Ok(())
    }

    fn reset(&mut self, addr: IpAddr) {
        self.drive(
            addr,
            Which::Main,
            Input::Stop {
                subcode: notif::ADMIN_RESET,
            },
        );
        if let Some(p) = self.peers.get_mut(&addr) {
            p.alt = None;
        }
        self.drive(addr, Which::Main, Input::Start);
    }

    fn remove_peer(&mut self, addr: IpAddr) -> Result<(), Error> {
        if !self.peers.contains_key(&addr) {
            return Err(Error::NoSuchPeer(addr));
        }
        self.drive(
            addr,
            Which::Main,
            Input::Stop {
                subcode: notif::PEER_DECONFIGURED,
            },
        );
        let Some(p) = self.peers.remove(&addr) else {
            return Ok(());
        };
        self.drop_paths(p.id, None, false);
        self.sources.release(p.id);
        if p.cfg.md5_password.is_some() {
            let _ = self.set_listener_keys(addr, None);
        }
        tracing::info!(peer = %addr, "peer removed");
        Ok(())
    }

    fn add_local(&mut self, prefix: IpNet, attrs: PathAttributes) {
        let nh = match prefix {
            IpNet::V4(_) => NextHop::V4(attrs.next_hop.unwrap_or(Ipv4Addr::UNSPECIFIED)),
            IpNet::V6(_) => NextHop::V6 {
                global: Ipv6Addr::UNSPECIFIED,
                link_local: None,
            },
        };
        let a = self.interner.attrs(Arc::new(attrs), nh);
        let now = self.stamp();
        let t = &mut self.tables[table_index(&prefix)];
        if t.set(prefix, LOCAL, Some((a, 0)), now, &self.sources) {
            self.dirty.insert(prefix);
        }
    }

    fn request_refresh(&mut self, addr: IpAddr, family: Family) -> Result<(), Error> {
        let p = self.peers.get(&addr).ok_or(Error::NoSuchPeer(addr))?;
        match (&p.session, &p.main.conn) {
            (Some(s), Some(c)) if s.neg.route_refresh && s.neg.has_family(family) => {
                c.send(WriterCmd::Msg(Message::RouteRefresh(RouteRefresh {
                    family,
                    subtype: 0,
                })));
                Ok(())
            }
            _ => Err(Error::RouteRefreshUnavailable { peer: addr }),
        }
    }

    // ===== connection events =====

    fn conn_event(&mut self, ev: ConnEvent) {
        match ev {
            ConnEvent::Rx { peer, conn, msg } => {
                if let Some(w) = self.slot_of(peer, conn) {
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
        }
    }

    fn slot_of(&self, peer: IpAddr, conn: u64) -> Option<Which> {
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

    fn new_conn(
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

    fn on_connected(&mut self, addr: IpAddr, attempt: u64, result: std::io::Result<TcpStream>) {
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

    fn on_accepted(&mut self, stream: TcpStream, remote: SocketAddr) {
        let addr = transport::canonical(remote.ip());
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
    fn take_main(&mut self, addr: IpAddr, stream: TcpStream, outgoing: bool) {
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
    fn open_alt(&mut self, addr: IpAddr, stream: TcpStream, outgoing: bool) {
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
    fn resolve_collision(&mut self, addr: IpAddr) {
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

    // ===== the FSM driver =====

    fn slot_mut(&mut self, addr: IpAddr, w: Which) -> Option<&mut Slot> {
        let p = self.peers.get_mut(&addr)?;
        match w {
            Which::Main => Some(&mut p.main),
            Which::Alt => p.alt.as_mut(),
        }
    }

    fn drive(&mut self, addr: IpAddr, w: Which, input: Input) {
        let Some(slot) = self.slot_mut(addr, w) else {
            return;
        };
        let actions = slot.fsm.handle(input);
        for a in actions {
            self.act(addr, w, a);
        }
    }

    fn act(&mut self, addr: IpAddr, w: Which, a: Action) {
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

    fn publish(&mut self, ev: Event) {
        self.subscribers.retain(|s| s.send(ev.clone()).is_ok());
    }

    // ===== timers =====

    fn next_deadline(&self) -> Option<Instant> {
        let mut d: Option<Instant> = self.deferral_deadline;
        let mut take = |t: Option<Instant>| {
            if let Some(t) = t {
                d = Some(d.map_or(t, |x| x.min(t)));
            }
        };
        for p in self.peers.values() {
            p.main.timers.iter().for_each(|t| take(*t));
            if let Some(a) = &p.alt {
                a.timers.iter().for_each(|t| take(*t));
            }
            take(p.stale_deadline);
        }
        d
    }

    fn timers(&mut self) {
        let now = Instant::now();
        if self.deferral_deadline.is_some_and(|d| d <= now) {
            self.deferral_deadline = None;
            tracing::info!("graceful restart deferral expired");
            self.check_ready();
        }
        const KINDS: [Timer; Timer::COUNT] = [
            Timer::ConnectRetry,
            Timer::Hold,
            Timer::Keepalive,
            Timer::IdleHold,
        ];
        let mut due = Vec::new();
        for (a, p) in &self.peers {
            for t in KINDS {
                if p.main.timers[t.index()].is_some_and(|d| d <= now) {
                    due.push((*a, Which::Main, Some(t)));
                }
                if p.alt
                    .as_ref()
                    .is_some_and(|s| s.timers[t.index()].is_some_and(|d| d <= now))
                {
                    due.push((*a, Which::Alt, Some(t)));
                }
            }
            if p.stale_deadline.is_some_and(|d| d <= now) {
                due.push((*a, Which::Main, None));
            }
        }
        for (a, w, t) in due {
            match t {
                Some(t) => {
                    // An earlier expiry in this round may have stopped it (e.g. hold expiry
                    // stops keepalive).
                    let Some(s) = self.slot_mut(a, w) else {
                        continue;
                    };
                    if s.timers[t.index()].is_none_or(|d| d > now) {
                        continue;
                    }
                    s.timers[t.index()] = None;
                    tracing::trace!(peer = %a, timer = ?t, "timer expired");
                    self.drive(a, w, Input::TimerExpired(t));
                }
                None => {
                    // RFC 4724 §4.2: restart time or stale-path time ran out.
                    let Some(p) = self.peers.get_mut(&a) else {
                        continue;
                    };
                    tracing::info!(peer = %a, "dropping stale routes: peer did not re-sync in time");
                    p.stale_deadline = None;
                    p.stale_families.clear();
                    let id = p.id;
                    self.drop_paths(id, None, true);
                }
            }
        }
    }

    // ===== sessions =====

    fn on_established(&mut self, addr: IpAddr, neg: Negotiated) {
        let local_as = self.cfg.local_as;
        let stale_time = self
            .cfg
            .graceful_restart
            .as_ref()
            .map_or(360, |g| g.stale_path_time);
        let Some(p) = self.peers.get_mut(&addr) else {
            return;
        };
        let Some(conn) = &p.main.conn else { return };
        let local_open = p.main.fsm.open_message();
        let peer_open = Open {
            version: 4,
            my_as: Open::my_as_field(neg.peer_as),
            hold_time: neg.hold_time,
            router_id: neg.peer_router_id,
            capabilities: neg.peer_capabilities.clone(),
        };
        conn.send(WriterCmd::SetContext(SessionContext::negotiate(
            &local_open,
            &peer_open,
        )));
        let local = conn.local;
        let local_ip = transport::canonical(local.ip());
        let (nh_v4, nh_v6) = match local_ip {
            IpAddr::V4(v4) => (Some(v4), p.cfg.next_hop_v6),
            IpAddr::V6(v6) => (p.cfg.next_hop_v4, Some(v6)),
        };
        let nh_v4 = p.cfg.next_hop_v4.or(nh_v4);
        let nh_v6 = p.cfg.next_hop_v6.or(nh_v6);
        let ebgp = neg.peer_as != local_as;
        tracing::info!(peer = %addr, peer_as = neg.peer_as, hold = neg.hold_time, families = ?neg.families, "session established");
        // RFC 4724 §4.2: the peer came back. Families it no longer preserves forwarding
        // state for lose their stale paths now; the rest wait for its End-of-RIB.
        let mut drop_now = Vec::new();
        if !p.stale_families.is_empty() {
            let keep: Vec<Family> = neg
                .peer_graceful_restart
                .as_ref()
                .map(|g| {
                    g.families
                        .iter()
                        .filter(|(_, fwd)| *fwd)
                        .map(|(f, _)| *f)
                        .collect()
                })
                .unwrap_or_default();
            let (k, d): (Vec<Family>, Vec<Family>) =
                p.stale_families.iter().partition(|f| keep.contains(f));
            p.stale_families = k;
            drop_now = d;
            p.stale_deadline = if p.stale_families.is_empty() {
                None
            } else {
                Some(Instant::now() + Duration::from_secs(u64::from(stale_time)))
            };
        }
        p.session = Some(Session {
            neg: neg.clone(),
            since: Instant::now(),
            local,
            ebgp,
            nh_v4,
            nh_v6,
            synced: false,
            eor_received: Vec::new(),
        });
        p.last_error = None;
        let id = p.id;
        self.sources.set(
            id,
            SourceInfo {
                address: addr,
                router_id: neg.peer_router_id,
                ebgp,
            },
        );
        for f in drop_now {
            self.drop_paths(id, Some(f), true);
        }
        if self.advertising {
            self.initial_sync(addr);
        }
    }

    fn on_session_down(&mut self, addr: IpAddr, reason: DownReason) {
        let Some(p) = self.peers.get_mut(&addr) else {
            return;
        };
        tracing::info!(peer = %addr, ?reason, "session down");
        record_error(p, &reason);
        let session = p.session.take();
        p.adj_out = [PrefixMap::new(), PrefixMap::new()];
        let id = p.id;
        let gr = session
            .as_ref()
            .and_then(|s| s.neg.peer_graceful_restart.clone())
            .filter(|g| p.cfg.graceful_restart && g.restart_time > 0);
        match (gr, reason) {
            // RFC 4724 §4.2: only a transport failure (no NOTIFICATION) starts a restart.
            (Some(g), DownReason::ConnectionClosed) => {
                let fams: Vec<Family> = g.families.iter().map(|(f, _)| *f).collect();
                tracing::info!(peer = %addr, restart_time = g.restart_time, "peer restarting: keeping its routes as stale");
                p.stale_families = fams.clone();
                p.stale_deadline =
                    Some(Instant::now() + Duration::from_secs(u64::from(g.restart_time)));
                for (i, t) in self.tables.iter_mut().enumerate() {
                    if fams.contains(&t.family) {
                        for prefix in t.flag_peer(id, flags::STALE) {
                            if t.reselect(&prefix, &self.sources) {
                                self.dirty.insert(prefix);
                            }
                        }
                    } else {
                        let _ = i;
                    }
                }
                for f in [Family::Ipv4Unicast, Family::Ipv6Unicast] {
                    if !fams.contains(&f) {
                        self.drop_paths(id, Some(f), false);
                    }
                }
            }
            _ => {
                p.stale_families.clear();
                p.stale_deadline = None;
                self.drop_paths(id, None, false);
            }
        }
        self.check_ready();
    }

    /// Remove the paths of `peer` (all, or only stale ones) in one or both families.
    fn drop_paths(&mut self, peer: PeerId, family: Option<Family>, only_stale: bool) {
        for t in self.tables.iter_mut() {
            if family.is_some_and(|f| f != t.family) {
                continue;
            }
            for prefix in t.prefixes_of(peer, only_stale) {
                if t.set(prefix, peer, None, 0, &self.sources) {
                    self.dirty.insert(prefix);
                }
            }
        }
    }

    /// Whether we may advertise: always, except after our own restart until the daemon said
    /// its routes are in and every GR peer sent End-of-RIB (or the deferral ran out).
    fn check_ready(&mut self) {
        if self.advertising || !self.user_ready {
            return;
        }
        let waiting = self.deferral_deadline.is_some()
            && self.peers.values().any(|p| {
                p.session.as_ref().is_some_and(|s| {
                    s.neg.peer_graceful_restart.is_some()
                        && s.neg.families.iter().any(|f| !s.eor_received.contains(f))
                })
            });
        if waiting {
            return;
        }
        tracing::info!("initial routing complete: advertising to peers");
        self.advertising = true;
        self.deferral_deadline = None;
        self.flush();
        let addrs: Vec<IpAddr> = self
            .peers
            .iter()
            .filter(|(_, p)| p.session.is_some())
            .map(|(a, _)| *a)
            .collect();
        for a in addrs {
            self.initial_sync(a);
        }
    }

    /// Send the whole Adj-RIB-Out, then End-of-RIB per family (RFC 4724 §2).
    fn initial_sync(&mut self, addr: IpAddr) {
        self.resync(addr);
        let Some(p) = self.peers.get_mut(&addr) else {
            return;
        };
        let Some(s) = &mut p.session else { return };
        if s.synced {
            return;
        }
        s.synced = true;
        if let Some(c) = &p.main.conn {
            for f in &s.neg.families {
                if fi(*f).is_some() {
                    c.send(WriterCmd::EndOfRib(*f));
                }
            }
        }
    }

    /// Recompute the whole Adj-RIB-Out of a peer against the Loc-RIB and send the difference.
    fn resync(&mut self, addr: IpAddr) {
        let Some(p) = self.peers.get(&addr) else {
            return;
        };
        if p.session.is_none() {
            return;
        }
        let mut prefixes: Vec<IpNet> = Vec::new();
        for t in &self.tables {
            prefixes.extend(t.iter().map(|(k, _)| k));
        }
        for (i, m) in p.adj_out.iter().enumerate() {
            let _ = i;
            prefixes.extend(
                m.keys()
                    .filter(|k| self.tables[table_index(k)].get(k).is_none()),
            );
        }
        self.export_to(addr, &prefixes, true);
    }

    // ===== UPDATE processing (import) =====

    fn on_update(&mut self, addr: IpAddr, u: Update) {
        let Some(p) = self.peers.get_mut(&addr) else {
            return;
        };
        let Some(s) = &mut p.session else { return };
        if let Some(f) = u.end_of_rib() {
            tracing::debug!(peer = %addr, family = ?f, "End-of-RIB received");
            if !s.eor_received.contains(&f) {
                s.eor_received.push(f);
            }
            let id = p.id;
            if p.stale_families.contains(&f) {
                p.stale_families.retain(|x| *x != f);
                if p.stale_families.is_empty() {
                    p.stale_deadline = None;
                }
                self.drop_paths(id, Some(f), true);
            }
            self.check_ready();
            return;
        }
        for d in &u.discarded {
            tracing::debug!(peer = %addr, attr = d.type_code, reason = ?d.reason, "attribute discarded (RFC 7606)");
        }
        let id = p.id;
        let ebgp = s.ebgp;
        let families = s.neg.families.clone();
        let withdraw_all = u.treat_as_withdraw.is_some();
        if let Some(e) = &u.treat_as_withdraw {
            tracing::info!(peer = %addr, attr = e.type_code, reason = ?e.reason, "treat-as-withdraw (RFC 7606)");
        }
        let mut withdrawn: Vec<IpNet> = u.withdrawn;
        if let Some(mu) = u.mp_unreach
            && families.contains(&mu.family)
        {
            withdrawn.extend(mu.withdrawn);
        }
        let mut reach: Vec<(Vec<IpNet>, NextHop)> = Vec::new();
        if !u.nlri.is_empty() {
            match u.attributes.as_ref().and_then(|a| a.next_hop) {
                Some(nh) if families.contains(&Family::Ipv4Unicast) => {
                    reach.push((u.nlri, NextHop::V4(nh)))
                }
                Some(_) => {}
                None => withdrawn.extend(u.nlri),
            }
        }
        if let Some(mr) = u.mp_reach
            && families.contains(&mr.family)
        {
            reach.push((mr.nlri, mr.next_hop));
        }
        let loop_detected = u.attributes.as_ref().is_some_and(|a| {
            a.as_path.segments.iter().any(|s| match s {
                AsSegment::Sequence(v) | AsSegment::Set(v) => v.contains(&self.cfg.local_as),
                _ => false,
            })
        });
        let Some(attrs) = u.attributes.filter(|_| !withdraw_all && !loop_detected) else {
            withdrawn.extend(reach.into_iter().flat_map(|(n, _)| n));
            self.withdraw(id, &withdrawn);
            return;
        };
        self.withdraw(id, &withdrawn);
        // §5.1.5: LOCAL_PREF from an external peer is ignored; the import policy may set one.
        let base = if ebgp && attrs.local_pref.is_some() {
            Arc::new(PathAttributes {
                local_pref: None,
                ..(*attrs).clone()
            })
        } else {
            attrs
        };
        let base = self.interner.path(base);
        let Some(p) = self.peers.get(&addr) else {
            return;
        };
        let policy = &p.cfg.import;
        let idx = &p.import_idx;
        let now = rib::stamp(self.epoch.elapsed());
        let mut memo: HashMap<(Verdict, NextHop), (Arc<Attrs>, u8)> = HashMap::new();
        for (nlri, nh) in reach {
            for prefix in nlri {
                let v = idx.evaluate(policy, &prefix);
                let entry = memo.entry((v, nh)).or_insert_with(|| {
                    let (pa, fl) = match (v, policy.actions(v)) {
                        (Verdict::Reject, _) => (base.clone(), flags::REJECTED),
                        (_, Some(act)) => {
                            let mut pa = (*base).clone();
                            if let Some(lp) = act.local_pref {
                                pa.local_pref = Some(lp);
                            }
                            if let Some(m) = act.med {
                                pa.med = Some(m);
                            }
                            add_communities(&mut pa, act);
                            (Arc::new(pa), 0)
                        }
                        (_, None) => (base.clone(), 0),
                    };
                    (self.interner.attrs(pa, nh), fl)
                });
                let t = &mut self.tables[table_index(&prefix)];
                if t.set(prefix, id, Some(entry.clone()), now, &self.sources) {
                    self.dirty.insert(prefix);
                }
            }
        }
    }

    fn withdraw(&mut self, id: PeerId, prefixes: &[IpNet]) {
        for prefix in prefixes {
            if self.tables[table_index(prefix)].set(*prefix, id, None, 0, &self.sources) {
                self.dirty.insert(*prefix);
            }
        }
    }

    /// RFC 2918 §4 / RFC 7313 §4: resend the Adj-RIB-Out of the family.
    fn on_route_refresh(&mut self, addr: IpAddr, rr: RouteRefresh) {
        if rr.subtype != 0 {
            // BoRR/EoRR from the peer: its routes simply replace ours as they arrive.
            return;
        }
        let Some(p) = self.peers.get(&addr) else {
            return;
        };
        let (Some(s), Some(c)) = (&p.session, &p.main.conn) else {
            return;
        };
        let Some(i) = fi(rr.family) else { return };
        if !s.synced {
            return;
        }
        tracing::info!(peer = %addr, family = ?rr.family, "route refresh requested");
        let enhanced = s.neg.enhanced_route_refresh;
        if enhanced {
            c.send(WriterCmd::Msg(Message::RouteRefresh(RouteRefresh {
                family: rr.family,
                subtype: 1,
            })));
        }
        let ctx = export_ctx(self.cfg.local_as, p.id, s);
        let mut groups: HashMap<(usize, Verdict), Group> = HashMap::new();
        for (prefix, e) in p.adj_out[i].iter() {
            groups
                .entry((Arc::as_ptr(&e.src) as usize, e.verdict()))
                .or_insert_with(|| {
                    let a = ctx.export(&e.src, e.local, p.cfg.export.actions(e.verdict()), i == 0);
                    (a, Vec::new())
                })
                .1
                .push(prefix);
        }
        let announce = groups
            .into_values()
            .filter_map(|(a, v)| a.map(|a| (a, v)))
            .collect();
        c.send(WriterCmd::Updates {
            announce,
            withdraw: Vec::new(),
        });
        if enhanced {
            c.send(WriterCmd::Msg(Message::RouteRefresh(RouteRefresh {
                family: rr.family,
                subtype: 2,
            })));
        } else {
            c.send(WriterCmd::EndOfRib(rr.family));
        }
    }

    // ===== export =====

    /// Emit events for the changed prefixes and update every synced peer's Adj-RIB-Out.
    fn flush(&mut self) {
        if self.dirty.is_empty() {
            return;
        }
        let dirty: Vec<IpNet> = self.dirty.drain().collect();
        if !self.subscribers.is_empty() {
            for prefix in &dirty {
                let t = &self.tables[table_index(prefix)];
                let ev = best_event(t, prefix, &self.sources).unwrap_or_else(|| BestPathChange {
                    family: t.family,
                    prefix: *prefix,
                    next_hops: Vec::new(),
                    attributes: None,
                    source: None,
                    stale: false,
                });
                self.publish(Event::BestPath(ev));
            }
        }
        if !self.advertising {
            return;
        }
        let addrs: Vec<IpAddr> = self
            .peers
            .iter()
            .filter(|(_, p)| p.session.as_ref().is_some_and(|s| s.synced))
            .map(|(a, _)| *a)
            .collect();
        for a in addrs {
            self.export_to(a, &dirty, false);
        }
    }

    /// Export the current best paths of `prefixes` to a peer, diff against its Adj-RIB-Out
    /// and queue the resulting UPDATEs (grouped by attribute set).
    fn export_to(&mut self, addr: IpAddr, prefixes: &[IpNet], _full: bool) {
        let Some(p) = self.peers.get_mut(&addr) else {
            return;
        };
        let Some(s) = &p.session else { return };
        let Some(c) = &p.main.conn else { return };
        let ctx = export_ctx(self.cfg.local_as, p.id, s);
        // Wire attributes per (source attributes, statement, family), built once per batch.
        let mut groups: HashMap<(usize, Verdict, bool), Group> = HashMap::new();
        let mut withdraw = Vec::new();
        for prefix in prefixes {
            let t = &self.tables[table_index(prefix)];
            if !s.neg.has_family(t.family) {
                continue;
            }
            let v4 = matches!(prefix, IpNet::V4(_));
            let new = t.best(prefix).and_then(|best| {
                let src = self.sources.get(best.peer);
                let v = if best.peer == ctx.peer_id || !ctx.may_export(best, src) {
                    Verdict::Reject
                } else {
                    p.export_idx.evaluate(&p.cfg.export, prefix)
                };
                (v != Verdict::Reject)
                    .then(|| OutEntry::new(best.attrs.clone(), v, best.peer == LOCAL))
            });
            // Not advertisable after all (e.g. no usable next hop for the family)?
            let new = new.and_then(|e| {
                let key = (Arc::as_ptr(&e.src) as usize, e.verdict(), v4);
                let g = groups.entry(key).or_insert_with(|| {
                    (
                        ctx.export(&e.src, e.local, p.cfg.export.actions(e.verdict()), v4),
                        Vec::new(),
                    )
                });
                g.0.is_some().then_some((e, key))
            });
            let out = &mut p.adj_out[table_index(prefix)];
            match new {
                Some((e, key)) => {
                    if out.get(prefix).is_some_and(|o| o.same(&e)) {
                        continue;
                    }
                    out.insert(*prefix, e);
                    if let Some(g) = groups.get_mut(&key) {
                        g.1.push(*prefix);
                    }
                }
                None => {
                    if out.remove(prefix).is_some() {
                        withdraw.push(*prefix);
                    }
                }
            }
        }
        let announce: Vec<(Arc<Attrs>, Vec<IpNet>)> = groups
            .into_values()
            .filter(|(_, v)| !v.is_empty())
            .filter_map(|(a, v)| a.map(|a| (a, v)))
            .collect();
        if !announce.is_empty() || !withdraw.is_empty() {
            c.send(WriterCmd::Updates { announce, withdraw });
        }
    }

    // ===== queries =====

    fn peer_status(&self) -> Vec<PeerStatus> {
        let now = Instant::now();
        let mut v: Vec<PeerStatus> = self
            .peers
            .iter()
            .map(|(a, p)| {
                let s = p.session.as_ref();
                let families = p
                    .cfg
                    .families
                    .iter()
                    .map(|f| {
                        let i = fi(f.family()).unwrap_or(0);
                        let (received, accepted) = self.tables[i].count_peer(p.id);
                        FamilyStatus {
                            family: *f,
                            received,
                            accepted,
                            advertised: p.adj_out[i].len(),
                        }
                    })
                    .collect();
                let stale = if p.stale_families.is_empty() {
                    0
                } else {
                    self.tables
                        .iter()
                        .map(|t| t.prefixes_of(p.id, true).len())
                        .sum()
                };
                PeerStatus {
                    address: *a,
                    port: p.cfg.port,
                    local_address: s.map(|s| transport::canonical(s.local.ip())),
                    local_port: s.map(|s| s.local.port()),
                    local_as: self.cfg.local_as,
                    peer_as: s.map_or(p.cfg.peer_as, |s| s.neg.peer_as),
                    peer_router_id: s.map(|s| s.neg.peer_router_id),
                    state: p.main.fsm.state(),
                    uptime_secs: s.map(|s| now.duration_since(s.since).as_secs()),
                    hold_time: s.map(|s| s.neg.hold_time),
                    keepalive: s.map(|s| s.neg.keepalive),
                    families,
                    capabilities: s.map(|s| negotiated_caps(&s.neg)).unwrap_or_default(),
                    local_capabilities: p.main.fsm.open_message().capabilities,
                    remote_capabilities: s
                        .map(|s| s.neg.peer_capabilities.clone())
                        .unwrap_or_default(),
                    stale_routes: stale,
                    last_error: p.last_error.clone(),
                }
            })
            .collect();
        v.sort_by_key(|p| p.address);
        v
    }

    fn routes(&self, q: RouteQuery) -> Result<Vec<RouteEntry>, Error> {
        let i = fi(q.family.family()).unwrap_or(0);
        let t = &self.tables[i];
        let elapsed = self.epoch.elapsed();
        let entry = |prefix: &IpNet, path: &Path, source: Option<IpAddr>| {
            let mut e = RouteEntry::new(
                *prefix,
                path.attrs.next_hop_addr(),
                source,
                &path.attrs.path,
            );
            e.stale = path.is_stale();
            e.rejected = path.is_rejected();
            e.age = rib::age(path.since(), elapsed);
            e
        };
        let src_addr = |id: PeerId| {
            if id == LOCAL {
                None
            } else {
                self.sources.get(id).map(|s| s.address)
            }
        };
        let mut out = Vec::new();
        match q.rib {
            RibKind::LocRib => {
                for (prefix, paths) in t.iter() {
                    for (n, path) in paths.iter().enumerate().filter(|(_, p)| !p.is_rejected()) {
                        let mut e = entry(&prefix, path, src_addr(path.peer));
                        e.best = n == 0;
                        out.push(e);
                    }
                }
            }
            RibKind::AdjRibIn(a) => {
                let p = self.peers.get(&a).ok_or(Error::NoSuchPeer(a))?;
                for (prefix, paths) in t.iter() {
                    for (n, path) in paths.iter().enumerate().filter(|(_, x)| x.peer == p.id) {
                        let mut e = entry(&prefix, path, Some(a));
                        e.best = n == 0 && !path.is_rejected();
                        out.push(e);
                    }
                }
            }
            RibKind::AdjRibOut(a) => {
                let p = self.peers.get(&a).ok_or(Error::NoSuchPeer(a))?;
                let Some(s) = &p.session else { return Ok(out) };
                let ctx = export_ctx(self.cfg.local_as, p.id, s);
                for (prefix, e) in p.adj_out[i].iter() {
                    let act = p.cfg.export.actions(e.verdict());
                    if let Some(a) = ctx.export(&e.src, e.local, act, i == 0) {
                        let mut r = RouteEntry::new(prefix, a.next_hop_addr(), None, &a.path);
                        // The age of the Loc-RIB path the advertisement was derived from.
                        if let Some(src) = t
                            .get(&prefix)
                            .and_then(|ps| ps.iter().find(|x| Arc::ptr_eq(&x.attrs, &e.src)))
                        {
                            r.age = rib::age(src.since(), elapsed);
                        }
                        out.push(r);
                    }
                }
            }
        }
        out.sort_by_key(|e| (e.prefix, !e.best));
        Ok(out)
    }
}

/// A factor in [0.75, 1.0) from a cheap hash of a counter, the peer and the clock.
fn jitter(n: u64, addr: IpAddr) -> f64 {
    use std::hash::BuildHasher;
    let h = std::collections::hash_map::RandomState::new().hash_one((n, addr));
    0.75 + (h % 1000) as f64 / 4000.0
}

/// Keep the most telling error: a NOTIFICATION beats a bare close (which usually follows it),
/// and our own stops (collision, admin) are not errors.
fn record_error(p: &mut Peer, reason: &DownReason) {
    match reason {
        DownReason::Stopped => {}
        DownReason::ConnectionClosed if p.last_error.is_some() => {}
        r => p.last_error = Some(format!("{r:?}")),
    }
}

fn negotiated_caps(n: &Negotiated) -> Vec<String> {
    let mut v: Vec<String> = n
        .families
        .iter()
        .map(|f| format!("multiprotocol({f:?})"))
        .collect();
    if n.four_octet_as {
        v.push("4-octet-as".into());
    }
    if n.route_refresh {
        v.push("route-refresh".into());
    }
    if n.enhanced_route_refresh {
        v.push("enhanced-route-refresh".into());
    }
    if n.extended_message {
        v.push("extended-message".into());
    }
    if !n.extended_next_hop.is_empty() {
        v.push("extended-next-hop".into());
    }
    if let Some(g) = &n.peer_graceful_restart {
        v.push(capability_name(&bgpd_wire::Capability::GracefulRestart(
            g.clone(),
        )));
    }
    v
}

fn table_index(prefix: &IpNet) -> usize {
    match prefix {
        IpNet::V4(_) => 0,
        IpNet::V6(_) => 1,
    }
}

fn best_event(t: &Table, prefix: &IpNet, sources: &Sources) -> Option<BestPathChange> {
    let b = t.best_of(prefix, sources)?;
    let source = if b.peer == LOCAL {
        RouteSource::Local
    } else {
        RouteSource::Peer(
            sources
                .get(b.peer)
                .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |s| s.address),
        )
    };
    Some(BestPathChange {
        family: family_of(prefix),
        prefix: *prefix,
        next_hops: b.next_hops,
        attributes: Some(b.attrs.path.clone()),
        source: Some(source),
        stale: b.stale,
    })
}

fn add_communities(pa: &mut PathAttributes, act: &crate::policy::Actions) {
    for c in act.communities() {
        if !pa.communities.contains(&c) {
            pa.communities.push(c);
        }
    }
    for l in act.large_communities() {
        if !pa.large_communities.contains(&l) {
            pa.large_communities.push(l);
        }
    }
}

/// What exporting to one peer depends on.
struct ExportCtx {
    local_as: u32,
    peer_id: PeerId,
    ebgp: bool,
    nh_v4: Option<Ipv4Addr>,
    nh_v6: Option<Ipv6Addr>,
    ext_nh_v4: bool,
}

impl ExportCtx {
    /// RFC 4271 §9.2 rules before policy: no iBGP-to-iBGP (no route reflection here), and the
    /// well-known communities of RFC 1997.
    fn may_export(&self, best: &Path, src: Option<&SourceInfo>) -> bool {
        let from_ibgp = best.peer != LOCAL && src.is_some_and(|s| !s.ebgp);
        if from_ibgp && !self.ebgp {
            return false;
        }
        let c = &best.attrs.path.communities;
        !(c.contains(&NO_ADVERTISE) || (self.ebgp && c.contains(&NO_EXPORT)))
    }

    /// The attributes we send for `best` (§5.1: AS_PATH prepend and next hop self towards
    /// eBGP, LOCAL_PREF only towards iBGP, MED not passed from one AS to another).
    fn export(
        &self,
        src: &Attrs,
        local: bool,
        act: Option<&crate::policy::Actions>,
        v4: bool,
    ) -> Option<Arc<Attrs>> {
        let pa = &src.path;
        let mut out = (**pa).clone();
        if self.ebgp {
            match out.as_path.segments.first_mut() {
                Some(AsSegment::Sequence(v)) if v.len() < 255 => v.insert(0, self.local_as),
                _ => out
                    .as_path
                    .segments
                    .insert(0, AsSegment::Sequence(vec![self.local_as])),
            }
            out.local_pref = None;
            // §5.1.4: a MED learned from another AS is not passed on to a third one.
            if !local {
                out.med = None;
            }
            out.originator_id = None;
            out.cluster_list.clear();
        } else {
            out.local_pref = Some(pa.local_pref.unwrap_or(crate::rib::DEFAULT_LOCAL_PREF));
        }
        let mut nh_self = self.ebgp || local;
        if let Some(a) = act {
            add_communities(&mut out, a);
            if let Some(lp) = a.local_pref
                && !self.ebgp
            {
                out.local_pref = Some(lp);
            }
            if let Some(m) = a.med {
                out.med = Some(m);
            }
            nh_self |= a.next_hop_self;
        }
        let orig = src.next_hop;
        let orig_unspec = match orig {
            NextHop::V4(a) => a.is_unspecified(),
            NextHop::V6 { global, .. } => global.is_unspecified(),
        };
        nh_self |= orig_unspec;
        let nh = if v4 {
            if nh_self {
                match (self.nh_v4, self.nh_v6) {
                    (Some(a), _) => NextHop::V4(a),
                    (None, Some(g)) if self.ext_nh_v4 => NextHop::V6 {
                        global: g,
                        link_local: None,
                    },
                    _ => return None,
                }
            } else {
                match orig {
                    NextHop::V6 { .. } if !self.ext_nh_v4 => return None,
                    o => o,
                }
            }
        } else if nh_self {
            match (self.nh_v6, self.nh_v4) {
                (Some(g), _) => NextHop::V6 {
                    global: g,
                    link_local: None,
                },
                (None, Some(a)) => NextHop::V6 {
                    global: a.to_ipv6_mapped(),
                    link_local: None,
                },
                _ => return None,
            }
        } else {
            match orig {
                NextHop::V4(a) => NextHop::V6 {
                    global: a.to_ipv6_mapped(),
                    link_local: None,
                },
                o => o,
            }
        };
        out.next_hop = match nh {
            NextHop::V4(a) => Some(a),
            NextHop::V6 { .. } => None,
        };
        // Not interned: these live only until the writer has encoded them.
        Some(Arc::new(Attrs {
            path: Arc::new(out),
            next_hop: nh,
        }))
    }
}
