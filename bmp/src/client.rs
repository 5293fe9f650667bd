//! One BMP session to one collector, as one owning tokio task (RFC 7854 §3).
//!
//! The router connects to the collector (§3.2), sends Initiation (§4.3), then the current
//! state taken from a [`SnapshotSource`] — a Peer Up per established peer followed by its
//! routes and an End-of-RIB per family (§5), then the Loc-RIB peer the same way (RFC 9069
//! §5) — and from then on the live events the speaker feeds through a [`BmpHandle`]. On
//! shutdown it sends Termination (§4.5). A lost session is retried with exponential backoff
//! and rebuilt from a fresh snapshot.
//!
//! The speaker never waits for BMP: the handle's methods `try_send` into a bounded queue. If
//! the queue overflows, or a write to the collector stalls past
//! [`ClientConfig::write_timeout`], the session is closed (Termination "out of resources")
//! and re-established at once from a new snapshot. BMP has no per-message acknowledgement
//! and a collector must treat a new session as a full resync (§3.3), so this loses nothing
//! but time, and memory stays bounded whatever the collector does.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout};
use tracing::{debug, info, warn};

use crate::header::{PeerFlags, PeerHeader, Timestamp};
use crate::msg::{
    Initiation, Message, PeerDownReason, PeerInfoTlv, PeerUp, Stat, StatisticsReport, Termination,
    TerminationReason,
};
use crate::pdu::{end_of_rib, loc_rib_open};

/// IPv4 and IPv6 unicast, the families End-of-RIB is sent for unless told otherwise.
pub const UNICAST_FAMILIES: [(u16, u8); 2] = [(1, 1), (2, 1)];

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The collector's address.
    pub collector: SocketAddr,
    /// sysName of the Initiation message (RFC 7854 §4.4): the node name.
    pub sys_name: String,
    /// sysDescr of the Initiation message.
    pub sys_descr: String,
    /// First retry delay; doubles per failed attempt.
    pub min_backoff: Duration,
    /// Retry delay cap.
    pub max_backoff: Duration,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// A write blocked this long means the collector is not keeping up: resync.
    pub write_timeout: Duration,
    /// Events queued between the speaker and this task; overflowing it forces a resync.
    pub queue_len: usize,
}

impl ClientConfig {
    /// Defaults: backoff 1 s to 30 s, connect timeout 5 s, write timeout 10 s, 64 Ki events.
    pub fn new(collector: SocketAddr, sys_name: impl Into<String>) -> Self {
        ClientConfig {
            collector,
            sys_name: sys_name.into(),
            sys_descr: concat!("rackd bmp ", env!("CARGO_PKG_VERSION")).to_owned(),
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            queue_len: 65_536,
        }
    }
}

/// A BGP peer as BMP describes it (per-peer header and Peer Up fields, RFC 7854 §4.2/§4.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's address; also its key in [`Rib::Peer`].
    pub address: IpAddr,
    /// The peer's AS.
    pub asn: u32,
    /// The peer's BGP identifier.
    pub bgp_id: Ipv4Addr,
    /// Our address on the session.
    pub local_address: IpAddr,
    /// Our TCP port.
    pub local_port: u16,
    /// The peer's TCP port.
    pub remote_port: u16,
    /// Routes are post-policy Adj-RIB-In (the L flag); false: pre-policy.
    pub post_policy: bool,
    /// When the session came up (Peer Up timestamp).
    pub up_since: SystemTime,
    /// AFI/SAFI pairs to send End-of-RIB for after the initial dump.
    pub families: Vec<(u16, u8)>,
}

/// The Loc-RIB instance peer (RFC 9069 §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocRibInfo {
    /// Our AS.
    pub asn: u32,
    /// Our BGP identifier.
    pub bgp_id: Ipv4Addr,
    /// Zero for the global instance, else the RD or a local instance id (RFC 9069 §5.1).
    pub distinguisher: u64,
    /// VRF/Table Name TLV (RFC 9069 §5.2.1), e.g. "global"; repeated in the Peer Down.
    pub table_name: Option<String>,
    /// The F flag: only part of the Loc-RIB is exported (RFC 9069 §4.2).
    pub filtered: bool,
    /// Families of the fabricated OPEN and of the End-of-RIB markers.
    pub families: Vec<(u16, u8)>,
}

/// Which RIB a Route Monitoring or Statistics message is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rib {
    /// A peer's Adj-RIB-In, by peer address.
    Peer(IpAddr),
    /// The Loc-RIB (RFC 9069).
    LocRib,
}

/// One established peer in a [`Snapshot`].
#[derive(Debug, Clone)]
pub struct PeerState {
    /// The peer.
    pub info: PeerInfo,
    /// OPEN we sent (complete BGP message).
    pub sent_open: Bytes,
    /// OPEN we received (complete BGP message).
    pub received_open: Bytes,
    /// Its routes as complete BGP UPDATE messages.
    pub updates: Vec<Bytes>,
}

/// The Loc-RIB in a [`Snapshot`].
#[derive(Debug, Clone)]
pub struct LocRibState {
    /// The Loc-RIB peer.
    pub info: LocRibInfo,
    /// Its routes as complete BGP UPDATE messages (4-octet AS paths, RFC 9069 §5.4.1).
    pub updates: Vec<Bytes>,
}

/// The speaker's state at one instant, replayed at the start of every session.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Established peers.
    pub peers: Vec<PeerState>,
    /// The Loc-RIB, if exported.
    pub loc_rib: Option<LocRibState>,
}

/// Answers "what is the state now" when a session starts.
///
/// Contract: the speaker changes its state *before* emitting the matching event on the
/// [`BmpHandle`]. The client asks for the snapshot only after every event it discarded while
/// disconnected was emitted, and replays every event still queued after it; since each
/// Route Monitoring is an absolute announce or withdraw, replaying one the snapshot already
/// reflects converges to the same state.
pub trait SnapshotSource: Send + Sync + 'static {
    /// The current state.
    fn snapshot(&self) -> impl Future<Output = Snapshot> + Send;
}

/// The client's connection state, published through [`BmpHandle::state`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnState {
    /// Trying to connect (attempt counts from 1 since the last session).
    Connecting {
        /// Attempt number.
        attempt: u32,
    },
    /// Session up and the initial dump sent; `session` counts sessions since spawn, from 1.
    Established {
        /// Session number.
        session: u64,
    },
    /// Waiting before the next attempt.
    Backoff {
        /// Delay.
        delay: Duration,
        /// Why the last attempt or session ended.
        error: String,
    },
    /// Shut down; the task has exited.
    Stopped,
}

#[derive(Debug)]
enum Event {
    PeerUp {
        info: PeerInfo,
        sent_open: Bytes,
        received_open: Bytes,
    },
    PeerDown {
        peer: IpAddr,
        reason: PeerDownReason,
    },
    LocRibUp(LocRibInfo),
    LocRibDown,
    Route {
        rib: Rib,
        update: Bytes,
        at: Timestamp,
    },
    Stats {
        rib: Rib,
        stats: Vec<Stat>,
    },
    Shutdown,
}

/// The speaker's side of a client: cheap to clone, never blocks (except [`Self::shutdown`]).
#[derive(Debug, Clone)]
pub struct BmpHandle {
    tx: mpsc::Sender<Event>,
    overflow: Arc<AtomicBool>,
    state: watch::Receiver<ConnState>,
}

impl BmpHandle {
    fn push(&self, ev: Event) {
        match self.tx.try_send(ev) {
            Ok(()) => {}
            // The task resyncs when it sees the flag: see the module docs.
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.overflow.store(true, Ordering::Release);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// A BGP session reached Established (Peer Up, RFC 7854 §4.10).
    pub fn peer_up(&self, info: PeerInfo, sent_open: Bytes, received_open: Bytes) {
        self.push(Event::PeerUp {
            info,
            sent_open,
            received_open,
        });
    }

    /// A BGP session left Established (Peer Down, RFC 7854 §4.9).
    pub fn peer_down(&self, peer: IpAddr, reason: PeerDownReason) {
        self.push(Event::PeerDown { peer, reason });
    }

    /// The Loc-RIB is exported from now on (its Peer Up, RFC 9069 §5.2).
    pub fn loc_rib_up(&self, info: LocRibInfo) {
        self.push(Event::LocRibUp(info));
    }

    /// The Loc-RIB is no longer exported (Peer Down reason 6, RFC 9069 §5.3).
    pub fn loc_rib_down(&self) {
        self.push(Event::LocRibDown);
    }

    /// Routes received from a peer or changed in the Loc-RIB: one complete BGP UPDATE
    /// (Route Monitoring, RFC 7854 §4.6), timestamped now.
    pub fn route_monitoring(&self, rib: Rib, update: Bytes) {
        self.push(Event::Route {
            rib,
            update,
            at: Timestamp::now(),
        });
    }

    /// Counters for a peer or the Loc-RIB (Statistics Report, RFC 7854 §4.8).
    pub fn statistics(&self, rib: Rib, stats: Vec<Stat>) {
        self.push(Event::Stats { rib, stats });
    }

    /// The connection state.
    pub fn state(&self) -> watch::Receiver<ConnState> {
        self.state.clone()
    }

    /// Sends Termination, closes the session and stops the task (waits for queue space).
    pub async fn shutdown(&self) {
        let _ = self.tx.send(Event::Shutdown).await;
    }
}

/// Starts the client task for one collector.
pub fn spawn<S: SnapshotSource>(config: ClientConfig, source: S) -> (BmpHandle, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(config.queue_len.max(1));
    let (state_tx, state) = watch::channel(ConnState::Connecting { attempt: 1 });
    let overflow = Arc::new(AtomicBool::new(false));
    let task = Task {
        config,
        source,
        rx,
        overflow: overflow.clone(),
        state: state_tx,
        sessions: 0,
    };
    let join = tokio::spawn(task.run());
    (
        BmpHandle {
            tx,
            overflow,
            state,
        },
        join,
    )
}

struct Task<S> {
    config: ClientConfig,
    source: S,
    rx: mpsc::Receiver<Event>,
    overflow: Arc<AtomicBool>,
    state: watch::Sender<ConnState>,
    sessions: u64,
}

/// How a session (or an attempt) ended.
enum End {
    /// Shut down by the handle (or every handle dropped).
    Shutdown,
    /// Retry after backoff.
    Failed(String),
    /// Reconnect now: the collector was too slow, state must be resent.
    Resync(String),
}

impl<S: SnapshotSource> Task<S> {
    async fn run(mut self) {
        let mut attempt: u32 = 1;
        loop {
            self.state.send_replace(ConnState::Connecting { attempt });
            let end = match self.connect().await {
                Ok(stream) => {
                    attempt = 1;
                    self.session(stream).await
                }
                Err(end) => end,
            };
            match end {
                End::Shutdown => break,
                End::Resync(why) => {
                    warn!(collector = %self.config.collector, %why, "BMP resync");
                }
                End::Failed(error) => {
                    let delay = backoff(&self.config, attempt);
                    attempt = attempt.saturating_add(1);
                    debug!(collector = %self.config.collector, %error, ?delay, "BMP retry");
                    self.state.send_replace(ConnState::Backoff { delay, error });
                    if self.discard_until(sleep(delay)).await.is_none() {
                        break;
                    }
                }
            }
        }
        self.state.send_replace(ConnState::Stopped);
        info!(collector = %self.config.collector, "BMP client stopped");
    }

    /// Runs `fut` while discarding queued events (their effects will be in the next
    /// snapshot); `None` if shut down meanwhile.
    async fn discard_until<T>(&mut self, fut: impl Future<Output = T>) -> Option<T> {
        tokio::pin!(fut);
        loop {
            tokio::select! {
                v = &mut fut => return Some(v),
                ev = self.rx.recv() => match ev {
                    None | Some(Event::Shutdown) => return None,
                    Some(_) => {}
                },
            }
        }
    }

    async fn connect(&mut self) -> Result<TcpStream, End> {
        let addr = self.config.collector;
        let limit = self.config.connect_timeout;
        match self
            .discard_until(timeout(limit, TcpStream::connect(addr)))
            .await
        {
            None => Err(End::Shutdown),
            Some(Err(_)) => Err(End::Failed("connect timed out".into())),
            Some(Ok(Err(e))) => Err(End::Failed(format!("connect: {e}"))),
            Some(Ok(Ok(s))) => Ok(s),
        }
    }

    async fn session(&mut self, stream: TcpStream) -> End {
        let _ = stream.set_nodelay(true);
        let (mut rd, wr) = stream.into_split();
        let mut s = Session {
            out: Out {
                wr,
                buf: BytesMut::with_capacity(64 * 1024),
                write_timeout: self.config.write_timeout,
            },
            peers: HashMap::new(),
            loc_rib: None,
        };
        // Events discarded before this point are in the snapshot taken below.
        self.overflow.store(false, Ordering::Release);
        let init = Message::Initiation(Initiation {
            sys_descr: self.config.sys_descr.clone(),
            sys_name: self.config.sys_name.clone(),
            strings: Vec::new(),
        });
        s.out.push(&init);
        let snap = self.source.snapshot().await;
        if let Err(e) = s.dump(snap).await {
            return End::Failed(e);
        }
        self.sessions += 1;
        self.state.send_replace(ConnState::Established {
            session: self.sessions,
        });
        info!(collector = %self.config.collector, session = self.sessions, "BMP session up");
        let mut scratch = [0u8; 512];
        loop {
            if self.overflow.load(Ordering::Acquire) {
                s.terminate(TerminationReason::OutOfResources).await;
                return End::Resync("event queue overflowed".into());
            }
            tokio::select! {
                ev = self.rx.recv() => {
                    let Some(ev) = ev else {
                        s.terminate(TerminationReason::AdminClosed).await;
                        return End::Shutdown;
                    };
                    let mut next = Some(ev);
                    // Batch what is already queued into one write.
                    while let Some(ev) = next {
                        if matches!(ev, Event::Shutdown) {
                            s.terminate(TerminationReason::AdminClosed).await;
                            return End::Shutdown;
                        }
                        s.handle(ev);
                        if s.out.buf.len() >= 64 * 1024 {
                            break;
                        }
                        next = self.rx.try_recv().ok();
                    }
                    if let Err(e) = s.out.flush().await {
                        return slow_or_failed(e);
                    }
                }
                // RFC 7854 §3.2: the collector sends nothing; reading only notices it left.
                r = rd.read(&mut scratch) => match r {
                    Ok(0) => return End::Failed("collector closed the session".into()),
                    Ok(_) => {}
                    Err(e) => return End::Failed(format!("read: {e}")),
                },
            }
        }
    }
}

fn slow_or_failed(e: String) -> End {
    if e == TIMED_OUT {
        End::Resync("collector too slow (write timed out)".into())
    } else {
        End::Failed(e)
    }
}

const TIMED_OUT: &str = "write timed out";

fn backoff(c: &ClientConfig, attempt: u32) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(16);
    c.min_backoff.saturating_mul(factor).min(c.max_backoff)
}

struct Out {
    wr: OwnedWriteHalf,
    buf: BytesMut,
    write_timeout: Duration,
}

impl Out {
    /// Queues `m`; one the encoder refuses (e.g. a malformed UPDATE from the speaker) is
    /// logged and dropped rather than costing the session.
    fn push(&mut self, m: &Message) {
        match m.encode() {
            Ok(wire) => self.buf.extend_from_slice(&wire),
            Err(e) => warn!(error = %e, kind = m.type_code(), "BMP message not encodable, dropped"),
        }
    }

    async fn flush(&mut self) -> Result<(), String> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = self.buf.split().freeze();
        match timeout(self.write_timeout, self.wr.write_all(&data)).await {
            Err(_) => Err(TIMED_OUT.into()),
            Ok(Err(e)) => Err(format!("write: {e}")),
            Ok(Ok(())) => Ok(()),
        }
    }
}

struct Session {
    out: Out,
    /// Peers announced on this session, with their OPENs (to drop replayed Peer Ups).
    peers: HashMap<IpAddr, (PeerInfo, Bytes, Bytes)>,
    loc_rib: Option<LocRibInfo>,
}

fn peer_header(info: &PeerInfo, at: Timestamp) -> PeerHeader {
    let mut h = PeerHeader::global(info.address, info.asn, info.bgp_id, at);
    h.flags = PeerFlags {
        post_policy: info.post_policy,
        ..PeerFlags::default()
    };
    h
}

fn loc_rib_header(info: &LocRibInfo, at: Timestamp) -> PeerHeader {
    PeerHeader::loc_rib(info.distinguisher, info.asn, info.bgp_id, info.filtered, at)
}

fn table_tlvs(info: &LocRibInfo) -> Vec<PeerInfoTlv> {
    info.table_name
        .iter()
        .map(|n| PeerInfoTlv::VrfTableName(n.clone()))
        .collect()
}

impl Session {
    async fn dump(&mut self, snap: Snapshot) -> Result<(), String> {
        let now = Timestamp::now();
        for p in snap.peers {
            self.peer_up(p.info.clone(), p.sent_open, p.received_open);
            let h = peer_header(&p.info, now);
            for update in p.updates {
                self.out.push(&Message::RouteMonitoring { peer: h, update });
                self.flush_if_full().await?;
            }
            for &(afi, safi) in &p.info.families {
                self.out.push(&Message::RouteMonitoring {
                    peer: h,
                    update: end_of_rib(afi, safi),
                });
            }
        }
        if let Some(l) = snap.loc_rib {
            self.loc_rib_up(l.info.clone());
            let h = loc_rib_header(&l.info, now);
            for update in l.updates {
                self.out.push(&Message::RouteMonitoring { peer: h, update });
                self.flush_if_full().await?;
            }
            for &(afi, safi) in &l.info.families {
                self.out.push(&Message::RouteMonitoring {
                    peer: h,
                    update: end_of_rib(afi, safi),
                });
            }
        }
        self.out.flush().await
    }

    async fn flush_if_full(&mut self) -> Result<(), String> {
        if self.out.buf.len() >= 64 * 1024 {
            self.out.flush().await?;
        }
        Ok(())
    }

    fn peer_up(&mut self, info: PeerInfo, sent: Bytes, received: Bytes) {
        if let Some((old, s, r)) = self.peers.get(&info.address)
            && *old == info
            && *s == sent
            && *r == received
        {
            // Replayed after the snapshot already announced this very session.
            return;
        }
        self.out.push(&Message::PeerUp(PeerUp {
            peer: peer_header(&info, Timestamp::from_system_time(info.up_since)),
            local_address: info.local_address,
            local_port: info.local_port,
            remote_port: info.remote_port,
            sent_open: sent.clone(),
            received_open: received.clone(),
            info: Vec::new(),
        }));
        self.peers.insert(info.address, (info, sent, received));
    }

    fn loc_rib_up(&mut self, info: LocRibInfo) {
        if self.loc_rib.as_ref() == Some(&info) {
            return;
        }
        // RFC 9069 §5.2: both OPENs are the same fabricated one.
        let open = loc_rib_open(info.asn, info.bgp_id, &info.families);
        self.out.push(&Message::PeerUp(PeerUp {
            peer: loc_rib_header(&info, Timestamp::now()),
            local_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            local_port: 0,
            remote_port: 0,
            sent_open: open.clone(),
            received_open: open,
            info: table_tlvs(&info),
        }));
        self.loc_rib = Some(info);
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::PeerUp {
                info,
                sent_open,
                received_open,
            } => self.peer_up(info, sent_open, received_open),
            Event::PeerDown { peer, reason } => {
                if let Some((info, _, _)) = self.peers.remove(&peer) {
                    self.out.push(&Message::PeerDown {
                        peer: peer_header(&info, Timestamp::now()),
                        reason,
                    });
                }
            }
            Event::LocRibUp(info) => self.loc_rib_up(info),
            Event::LocRibDown => {
                // RFC 9069 §5.3: reason 6, with the VRF/Table Name if the Peer Up had it.
                if let Some(info) = self.loc_rib.take() {
                    self.out.push(&Message::PeerDown {
                        peer: loc_rib_header(&info, Timestamp::now()),
                        reason: PeerDownReason::LocalWithTlvs(table_tlvs(&info)),
                    });
                }
            }
            Event::Route { rib, update, at } => match self.header(rib, at) {
                Some(peer) => self.out.push(&Message::RouteMonitoring { peer, update }),
                None => debug!(?rib, "BMP route for a peer not up on this session, dropped"),
            },
            Event::Stats { rib, stats } => {
                if let Some(peer) = self.header(rib, Timestamp::now()) {
                    self.out
                        .push(&Message::StatisticsReport(StatisticsReport { peer, stats }));
                }
            }
            Event::Shutdown => {}
        }
    }

    fn header(&self, rib: Rib, at: Timestamp) -> Option<PeerHeader> {
        match rib {
            Rib::Peer(a) => self.peers.get(&a).map(|(i, _, _)| peer_header(i, at)),
            Rib::LocRib => self.loc_rib.as_ref().map(|l| loc_rib_header(l, at)),
        }
    }

    /// Best effort: the session is going away whatever happens here.
    async fn terminate(&mut self, reason: TerminationReason) {
        let term = Message::Termination(Termination {
            reason: Some(reason),
            strings: Vec::new(),
        });
        self.out.push(&term);
        let _ = self.out.flush().await;
        let _ = self.out.wr.shutdown().await;
    }
}
