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
//!
//! This file holds the task itself: its state, the run loop and the command dispatch. The
//! rest of `impl Instance` is split by what it handles:
//!
//! - `peers`: peer add/update/remove and the per-peer state (FSM slots, session data);
//! - `connections`: connection events, accepted and outgoing connections, §6.8 collisions;
//! - `driver`: running an FSM and carrying out its actions;
//! - `timers`: deadlines of the FSM timers, the graceful-restart timers, and their expiry;
//! - `lifecycle`: what a session coming up or going down does (graceful restart, deferral);
//! - `import`: UPDATEs and local routes into the Loc-RIB;
//! - `export`: Loc-RIB changes out to subscribers and peers (Adj-RIB-Out, route refresh);
//! - `export_rules`: the export rules without I/O (RFC 4271 §5.1, §9.2, RFC 1997, policy),
//!   unit-tested in `export_rules/tests/`;
//! - `query`: peer status and RIB listings for the API;
//! - `bfd_link`: BFD sessions of the peers that have one, and what their state does to BGP;
//! - `bmp_link`: what BMP collectors are told (RFC 7854, RFC 9069 Loc-RIB).

mod bfd_link;
mod bmp_link;
mod connections;
mod driver;
mod export;
mod export_rules;
mod import;
mod lifecycle;
mod peers;
mod query;
mod timers;

use std::collections::HashMap as StdHashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use bgpd_wire::{Family, PathAttributes};
use hashbrown::HashSet;
use ipnet::IpNet;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{PeerConfig, SpeakerConfig};
use crate::error::Error;
use crate::events::{BestPathChange, Event, RouteSource};
use crate::fsm::{Input, notif};
use crate::policy::ExportPatch;
use crate::query::{PeerStatus, RouteEntry, RouteQuery};
use crate::rib::{self, Interner, LOCAL, SourceInfo, Sources, Table};
use crate::session::{self, AbortOnDrop, ConnEvent};
use crate::transport;

use peers::{Peer, Which};

/// API requests.
#[derive(Debug)]
pub(crate) enum Command {
    AddPeer(Box<PeerConfig>, oneshot::Sender<Result<(), Error>>),
    UpdatePeer(Box<PeerConfig>, oneshot::Sender<Result<(), Error>>),
    RemovePeer(IpAddr, oneshot::Sender<Result<(), Error>>),
    PatchExport(IpAddr, ExportPatch, oneshot::Sender<Result<(), Error>>),
    PeerConfig(IpAddr, oneshot::Sender<Result<PeerConfig, Error>>),
    AddLocal(IpNet, Box<PathAttributes>, oneshot::Sender<()>),
    RemoveLocal(IpNet, oneshot::Sender<()>),
    AddLocals(Vec<(IpNet, PathAttributes)>, oneshot::Sender<()>),
    RemoveLocals(Vec<IpNet>, oneshot::Sender<()>),
    SetReady(oneshot::Sender<()>),
    RouteRefresh(IpAddr, Family, oneshot::Sender<Result<(), Error>>),
    Peers(oneshot::Sender<Vec<PeerStatus>>),
    Routes(RouteQuery, oneshot::Sender<Result<Vec<RouteEntry>, Error>>),
    Subscribe(oneshot::Sender<mpsc::UnboundedReceiver<Event>>),
    /// Replace the BMP collectors; the weak sender is how their clients ask for snapshots.
    SetBmp(
        Vec<crate::config::BmpServerConfig>,
        mpsc::WeakUnboundedSender<Command>,
        oneshot::Sender<()>,
    ),
    /// A BMP client (by collector name) starts a session and needs the current state.
    BmpSnapshot(String, oneshot::Sender<bmp::Snapshot>),
    /// Time for collector `name`'s Statistics Report.
    BmpStatistics(String),
    Shutdown(oneshot::Sender<()>),
}

/// Connection events are bounded so a fast sender is slowed down by TCP, not buffered.
const CONN_EVENT_QUEUE: usize = 1024;
/// Connection events handled before pending RIB changes are flushed to peers.
const BATCH: usize = 256;

/// The speaker task's state; only the task touches it.
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
    /// The BFD task, started with the first peer that has BFD.
    bfd: Option<bfd::BfdHandle>,
    /// BMP collectors' clients.
    bmp: Vec<bmp_link::BmpClient>,
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
        bfd: None,
        bmp: Vec::new(),
    };
    Ok(tokio::spawn(inst.run(cmd_rx, ev_rx)))
}

impl Instance {
    pub(super) async fn run(
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

    pub(super) async fn shutdown(&mut self) {
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
    pub(super) fn stamp(&self) -> rib::Stamp {
        rib::stamp(self.epoch.elapsed())
    }

    pub(super) fn command(&mut self, cmd: Command) {
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
            Command::PatchExport(a, patch, tx) => {
                let _ = tx.send(self.patch_export(a, patch));
            }
            Command::PeerConfig(a, tx) => {
                let _ = tx.send(
                    self.peers
                        .get(&a)
                        .map(|p| p.cfg.clone())
                        .ok_or(Error::NoSuchPeer(a)),
                );
            }
            Command::AddLocals(routes, tx) => {
                // The run loop flushes once after the command: one export for the batch.
                for (prefix, attrs) in routes {
                    self.add_local(prefix, attrs);
                }
                let _ = tx.send(());
            }
            Command::RemoveLocals(prefixes, tx) => {
                for prefix in prefixes {
                    self.remove_local(prefix);
                }
                let _ = tx.send(());
            }
            Command::AddLocal(prefix, attrs, tx) => {
                self.add_local(prefix, *attrs);
                let _ = tx.send(());
            }
            Command::RemoveLocal(prefix, tx) => {
                self.remove_local(prefix);
                let _ = tx.send(());
            }
            Command::SetReady(tx) => {
                self.user_ready = true;
                self.check_ready();
                let _ = tx.send(());
            }
            Command::RouteRefresh(a, f, tx) => {
                let _ = tx.send(self.request_refresh(a, f));
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
            Command::SetBmp(servers, cmd, tx) => {
                self.set_bmp(servers, cmd);
                let _ = tx.send(());
            }
            Command::BmpSnapshot(name, tx) => {
                let _ = tx.send(self.bmp_snapshot(&name));
            }
            Command::BmpStatistics(name) => self.bmp_statistics(&name),
            Command::Shutdown(_) => {}
        }
    }

    pub(super) fn publish(&mut self, ev: Event) {
        self.subscribers.retain(|s| s.send(ev.clone()).is_ok());
    }
}

fn table_index(prefix: &IpNet) -> usize {
    match prefix {
        IpNet::V4(_) => 0,
        IpNet::V6(_) => 1,
    }
}

fn fi(f: Family) -> Option<usize> {
    match f {
        Family::Ipv4Unicast => Some(0),
        Family::Ipv6Unicast => Some(1),
        Family::Other { .. } => None,
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
        family: Family::of_prefix(prefix),
        prefix: *prefix,
        next_hops: b.next_hops,
        attributes: Some(b.attrs.path.clone()),
        source: Some(source),
        stale: b.stale,
    })
}
