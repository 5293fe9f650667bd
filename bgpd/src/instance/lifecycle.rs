//! Session lifecycle: what a session reaching Established or going down does to the
//! RIBs (graceful-restart helper: stale paths, RFC 4724 §4.2) and whether we may advertise
//! yet (restarting speaker: deferral until End-of-RIB, RFC 4724 §4.1).

use std::net::IpAddr;
use std::time::Duration;

use bgpd_wire::{Family, Open, SessionContext};
use tokio::time::Instant;

use super::Instance;
use super::peers::{Session, advertised_next_hops, record_error};
use crate::fsm::{DownReason, Negotiated};
use crate::rib::{PeerId, PrefixMap, SourceInfo, flags};
use crate::session::WriterCmd;

impl Instance {
    pub(super) fn on_established(&mut self, addr: IpAddr, neg: Negotiated) {
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
        let (nh_v4, nh_v6) = advertised_next_hops(local, &p.cfg);
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
            treat_as_withdraw: 0,
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
        self.bmp_peer_up(addr);
        if self.advertising {
            self.initial_sync(addr);
        }
    }

    pub(super) fn on_session_down(&mut self, addr: IpAddr, reason: DownReason) {
        let Some(p) = self.peers.get_mut(&addr) else {
            return;
        };
        tracing::info!(peer = %addr, ?reason, "session down");
        record_error(p, &reason);
        self.bmp_peer_down(addr, &reason);
        let Some(p) = self.peers.get_mut(&addr) else {
            return;
        };
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
    pub(super) fn drop_paths(&mut self, peer: PeerId, family: Option<Family>, only_stale: bool) {
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
    pub(super) fn check_ready(&mut self) {
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
}
