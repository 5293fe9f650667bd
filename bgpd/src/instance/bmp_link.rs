//! BMP (RFC 7854, with RFC 9069's Loc-RIB) to the collectors of [`crate::Speaker::set_bmp`]:
//! one [`bmp`] client per collector, fed by the speaker task as things happen, answering its
//! snapshot requests (on every (re)connect) from the speaker task's own state.
//!
//! - Peer Up / Peer Down (§4.10, §4.9) for every peer, with both OPENs. The peer's OPEN is
//!   rebuilt from what was negotiated (its AS, identifier and capabilities exactly; the hold
//!   time is the negotiated one), as bgpd keeps decoded messages, not their bytes.
//! - Route Monitoring (§4.6) of a peer's pre-policy Adj-RIB-In: every UPDATE it sends,
//!   encoded again with 4-octet AS numbers (the per-peer header's A flag is clear, §4.2).
//! - Route Monitoring of the Loc-RIB (RFC 9069 §5.4): every best-path change, so a collector
//!   sees what the node selected, its own routes included: what it advertises.
//! - Statistics Reports (§4.8) every `statistics_interval`: routes in each peer's Adj-RIB-In
//!   (type 7) and in the Loc-RIB (type 8).
//!
//! Post-policy Adj-RIB-In (the L flag) and Adj-RIB-Out (RFC 8671) are not reported.

use std::future::Future;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use bgpd_wire::{Family, Message, NextHop, Notification, Open, PathAttributes, SessionContext};
use bytes::Bytes;
use ipnet::IpNet;
use tokio::sync::{mpsc, oneshot};

use super::{Command, Instance};
use crate::config::BmpServerConfig;
use crate::events::BestPathChange;
use crate::fsm::DownReason;
use crate::query::{RibKind, RouteQuery};

/// One collector's client.
#[derive(Debug)]
pub(super) struct BmpClient {
    cfg: BmpServerConfig,
    handle: bmp::BmpHandle,
}

/// The context every UPDATE handed to BMP is encoded with: 4-octet AS numbers (RFC 9069
/// §5.4.1 for the Loc-RIB; the A flag clear for peers), IPv6 next hops for IPv4 (RFC 8950),
/// both unicast families as multiprotocol NLRI where needed.
fn bmp_context() -> SessionContext {
    SessionContext {
        four_octet_as: true,
        extended_next_hop: vec![Family::Ipv4Unicast],
        families: vec![Family::Ipv4Unicast, Family::Ipv6Unicast],
        ..Default::default()
    }
}

fn afi_safi(f: Family) -> Option<(u16, u8)> {
    match f {
        Family::Ipv4Unicast => Some((1, 1)),
        Family::Ipv6Unicast => Some((2, 1)),
        Family::Other { .. } => None,
    }
}

fn encode(msg: &Message) -> Option<Bytes> {
    match bgpd_wire::encode_to_bytes(msg, &bmp_context()) {
        Ok(b) => Some(b),
        Err(e) => {
            tracing::debug!(error = %e, "message not encodable for BMP");
            None
        }
    }
}

fn next_hop(ip: IpAddr) -> NextHop {
    match ip {
        IpAddr::V4(a) => NextHop::V4(a),
        IpAddr::V6(a) => NextHop::V6 {
            global: a,
            link_local: None,
        },
    }
}

/// One prefix announced with `attrs` via `nh`, or withdrawn when `attrs` is `None`.
fn route_update(prefix: IpNet, attrs: Option<(&PathAttributes, IpAddr)>) -> Option<Bytes> {
    let ctx = bmp_context();
    let msgs = match attrs {
        Some((a, nh)) => bgpd_wire::encode_updates(a, next_hop(nh), &[prefix], &ctx).ok()?,
        None => bgpd_wire::encode_withdrawals(&[prefix], &ctx),
    };
    msgs.into_iter().next()
}

fn notification(code: u8, subcode: u8) -> Option<Bytes> {
    encode(&Message::Notification(Notification {
        code,
        subcode,
        data: Bytes::new(),
    }))
}

/// The speaker's answer to a client's snapshot request: a command into the speaker task.
struct Source {
    /// Weak, so the collectors never keep a dropped speaker's task alive.
    cmd: mpsc::WeakUnboundedSender<Command>,
    name: String,
}

impl bmp::SnapshotSource for Source {
    fn snapshot(&self) -> impl Future<Output = bmp::Snapshot> + Send {
        let cmd = self.cmd.clone();
        let name = self.name.clone();
        async move {
            let (tx, rx) = oneshot::channel();
            let sent = cmd
                .upgrade()
                .is_some_and(|c| c.send(Command::BmpSnapshot(name, tx)).is_ok());
            if !sent {
                return bmp::Snapshot::default();
            }
            rx.await.unwrap_or_default()
        }
    }
}

/// Asks the speaker task for a Statistics Report every `every` until it is gone.
async fn statistics_timer(cmd: mpsc::WeakUnboundedSender<Command>, name: String, every: Duration) {
    let mut tick = tokio::time::interval(every.max(Duration::from_secs(1)));
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(c) = cmd.upgrade() else { return };
        if c.send(Command::BmpStatistics(name.clone())).is_err() {
            return;
        }
    }
}

impl Instance {
    /// Replaces the collectors: unchanged ones keep their session, removed ones get a
    /// Termination, new ones connect.
    pub(super) fn set_bmp(
        &mut self,
        servers: Vec<BmpServerConfig>,
        cmd: mpsc::WeakUnboundedSender<Command>,
    ) {
        let mut keep = Vec::new();
        for c in self.bmp.drain(..) {
            if servers.contains(&c.cfg) {
                keep.push(c);
            } else {
                tracing::info!(collector = %c.cfg.address, name = %c.cfg.name, "BMP collector removed");
                tokio::spawn(async move { c.handle.shutdown().await });
            }
        }
        for s in servers {
            if keep.iter().any(|c| c.cfg == s) {
                continue;
            }
            tracing::info!(collector = %s.address, name = %s.name, "BMP collector added");
            let (handle, _task) = bmp::spawn(
                bmp::ClientConfig::new(s.address, s.sys_name.clone()),
                Source {
                    cmd: cmd.clone(),
                    name: s.name.clone(),
                },
            );
            if let Some(every) = s.statistics_interval {
                tokio::spawn(statistics_timer(cmd.clone(), s.name.clone(), every));
            }
            keep.push(BmpClient { cfg: s, handle });
        }
        self.bmp = keep;
    }

    /// What a collector's Peer Up carries for `addr`, if its session is up.
    fn bmp_peer(&self, addr: IpAddr) -> Option<(bmp::PeerInfo, Bytes, Bytes)> {
        let p = self.peers.get(&addr)?;
        let s = p.session.as_ref()?;
        let conn = p.main.conn.as_ref()?;
        let local_open = p.main.fsm.open_message();
        let peer_open = Open {
            version: 4,
            my_as: Open::my_as_field(s.neg.peer_as),
            hold_time: s.neg.hold_time,
            router_id: s.neg.peer_router_id,
            capabilities: s.neg.peer_capabilities.clone(),
        };
        let info = bmp::PeerInfo {
            address: addr,
            asn: s.neg.peer_as,
            bgp_id: s.neg.peer_router_id,
            local_address: conn.local.ip(),
            local_port: conn.local.port(),
            remote_port: conn.remote.port(),
            post_policy: false,
            up_since: SystemTime::now()
                .checked_sub(s.since.elapsed())
                .unwrap_or(SystemTime::UNIX_EPOCH),
            families: s.neg.families.iter().filter_map(|f| afi_safi(*f)).collect(),
        };
        Some((
            info,
            encode(&Message::Open(local_open))?,
            encode(&Message::Open(peer_open))?,
        ))
    }

    /// Peer `addr` reached Established.
    pub(super) fn bmp_peer_up(&self, addr: IpAddr) {
        if !self.bmp.iter().any(|c| c.cfg.adj_rib_in_pre) {
            return;
        }
        let Some((info, sent, received)) = self.bmp_peer(addr) else {
            return;
        };
        for c in self.bmp.iter().filter(|c| c.cfg.adj_rib_in_pre) {
            c.handle
                .peer_up(info.clone(), sent.clone(), received.clone());
        }
    }

    /// Peer `addr`'s session went down for `reason`.
    pub(super) fn bmp_peer_down(&self, addr: IpAddr, reason: &DownReason) {
        if !self.bmp.iter().any(|c| c.cfg.adj_rib_in_pre) {
            return;
        }
        // RFC 7854 §4.9's reasons.
        let r = match reason {
            DownReason::NotificationSent { code, subcode } => notification(*code, *subcode).map_or(
                bmp::PeerDownReason::LocalNoNotification { fsm_event: 0 },
                bmp::PeerDownReason::LocalNotification,
            ),
            DownReason::NotificationReceived { code, subcode } => notification(*code, *subcode)
                .map_or(
                    bmp::PeerDownReason::RemoteNoData,
                    bmp::PeerDownReason::RemoteNotification,
                ),
            DownReason::ConnectionClosed => bmp::PeerDownReason::RemoteNoData,
            // RFC 4271 §8.1.2 Event 2, ManualStop.
            DownReason::Stopped => bmp::PeerDownReason::LocalNoNotification { fsm_event: 2 },
        };
        for c in self.bmp.iter().filter(|c| c.cfg.adj_rib_in_pre) {
            c.handle.peer_down(addr, r.clone());
        }
    }

    /// An UPDATE (`msg`) from peer `addr`, before import policy (pre-policy Adj-RIB-In):
    /// encoded from the message as received, not from a copy.
    pub(super) fn bmp_update(&self, addr: IpAddr, msg: &Message) {
        if !self.bmp.iter().any(|c| c.cfg.adj_rib_in_pre) {
            return;
        }
        let established = self.peers.get(&addr).is_some_and(|p| p.session.is_some());
        if !established {
            return;
        }
        let Some(bytes) = encode(msg) else {
            return;
        };
        for c in self.bmp.iter().filter(|c| c.cfg.adj_rib_in_pre) {
            c.handle
                .route_monitoring(bmp::Rib::Peer(addr), bytes.clone());
        }
    }

    /// Whether a collector wants the Loc-RIB.
    pub(super) fn bmp_wants_loc_rib(&self) -> bool {
        self.bmp.iter().any(|c| c.cfg.loc_rib)
    }

    /// A best-path change of the Loc-RIB.
    pub(super) fn bmp_loc_rib(&self, ev: &BestPathChange) {
        let attrs = match (&ev.attributes, ev.next_hops.first()) {
            (Some(a), Some(nh)) => Some((&**a, *nh)),
            _ => None,
        };
        let Some(bytes) = route_update(ev.prefix, attrs) else {
            return;
        };
        for c in self.bmp.iter().filter(|c| c.cfg.loc_rib) {
            c.handle.route_monitoring(bmp::Rib::LocRib, bytes.clone());
        }
    }

    fn loc_rib_info(&self) -> bmp::LocRibInfo {
        bmp::LocRibInfo {
            asn: self.cfg.local_as,
            bgp_id: self.cfg.router_id,
            distinguisher: 0,
            table_name: Some("global".into()),
            filtered: false,
            families: vec![(1, 1), (2, 1)],
        }
    }

    /// Every route of `rib` as UPDATEs, one per prefix.
    fn rib_updates(&self, rib: impl Fn() -> RibKind) -> Vec<Bytes> {
        let mut out = Vec::new();
        for family in [Family::Ipv4Unicast, Family::Ipv6Unicast] {
            let Ok(routes) = self.routes(RouteQuery { family, rib: rib() }) else {
                continue;
            };
            for r in routes
                .iter()
                .filter(|r| !matches!(rib(), RibKind::LocRib) || r.best)
            {
                if let Some(b) = route_update(r.prefix, Some((&r.attributes, r.next_hop))) {
                    out.push(b);
                }
            }
        }
        out
    }

    /// The state a collector's new session starts from.
    pub(super) fn bmp_snapshot(&self, name: &str) -> bmp::Snapshot {
        let Some(c) = self.bmp.iter().find(|c| c.cfg.name == name) else {
            return bmp::Snapshot::default();
        };
        let mut snap = bmp::Snapshot::default();
        if c.cfg.adj_rib_in_pre {
            let mut addrs: Vec<IpAddr> = self.peers.keys().copied().collect();
            addrs.sort();
            for a in addrs {
                if let Some((info, sent_open, received_open)) = self.bmp_peer(a) {
                    snap.peers.push(bmp::PeerState {
                        info,
                        sent_open,
                        received_open,
                        updates: self.rib_updates(|| RibKind::AdjRibIn(a)),
                    });
                }
            }
        }
        if c.cfg.loc_rib {
            snap.loc_rib = Some(bmp::LocRibState {
                info: self.loc_rib_info(),
                updates: self.rib_updates(|| RibKind::LocRib),
            });
        }
        snap
    }

    /// A Statistics Report to collector `name`: routes per peer's Adj-RIB-In (type 7) and in
    /// the Loc-RIB (type 8).
    pub(super) fn bmp_statistics(&self, name: &str) {
        let Some(c) = self.bmp.iter().find(|c| c.cfg.name == name) else {
            return;
        };
        if c.cfg.adj_rib_in_pre {
            for s in self.peer_status() {
                if s.state != crate::fsm::State::Established {
                    continue;
                }
                let n: usize = s.families.iter().map(|f| f.received).sum();
                c.handle.statistics(
                    bmp::Rib::Peer(s.address),
                    vec![bmp::Stat::Gauge {
                        kind: 7,
                        value: u64::try_from(n).unwrap_or(u64::MAX),
                    }],
                );
            }
        }
        if c.cfg.loc_rib {
            let n: usize = self.tables.iter().map(|t| t.iter().count()).sum();
            c.handle.statistics(
                bmp::Rib::LocRib,
                vec![bmp::Stat::Gauge {
                    kind: 8,
                    value: u64::try_from(n).unwrap_or(u64::MAX),
                }],
            );
        }
    }
}
