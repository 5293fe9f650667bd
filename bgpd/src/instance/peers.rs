//! Peers: adding, changing and removing them, and the state the task keeps per peer (its
//! FSM slots, the Established session's data, its Adj-RIB-Out).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use bgpd_wire::{Family, GracefulRestart, Message, RouteRefresh};
use ipnet::IpNet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::export_rules::{Before, Exporter, OutEntry, PreviousExport, Target};
use super::{Instance, table_index};
use crate::config::PeerConfig;
use crate::error::Error;
use crate::fsm::{DownReason, Fsm, FsmConfig, Input, Negotiated, Timer, notif};
use crate::policy::{ExportPatch, PolicyIndex};
use crate::rib::{Attrs, PeerId, PrefixMap, SourceInfo};
use crate::session::{AbortOnDrop, Conn, WriterCmd};
use crate::transport;

/// One connection and its FSM (a peer has a second one only during a collision, §6.8).
#[derive(Debug)]
pub(super) struct Slot {
    pub(super) fsm: Fsm,
    pub(super) conn: Option<Conn>,
    pub(super) timers: [Option<Instant>; Timer::COUNT],
}

impl Slot {
    pub(super) fn new(fsm: Fsm) -> Self {
        Self {
            fsm,
            conn: None,
            timers: [None; Timer::COUNT],
        }
    }
}

/// Which slot of a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Which {
    Main,
    Alt,
}

/// The Established session's data.
#[derive(Debug)]
pub(super) struct Session {
    pub(super) neg: Negotiated,
    pub(super) since: Instant,
    pub(super) local: SocketAddr,
    pub(super) ebgp: bool,
    pub(super) nh_v4: Option<Ipv4Addr>,
    pub(super) nh_v6: Option<Ipv6Addr>,
    /// Initial advertisement (and End-of-RIB) sent.
    pub(super) synced: bool,
    pub(super) eor_received: Vec<Family>,
    /// UPDATEs whose routes were withdrawn instead of installed (RFC 7606 errors, the
    /// RFC 4271 §6.3 first-AS check) on this session.
    pub(super) treat_as_withdraw: u64,
}

#[derive(Debug)]
pub(super) struct Peer {
    pub(super) cfg: PeerConfig,
    /// Lookup indexes of `cfg.import` / `cfg.export`, rebuilt with `cfg`.
    pub(super) import_idx: PolicyIndex,
    pub(super) export_idx: PolicyIndex,
    pub(super) id: PeerId,
    pub(super) main: Slot,
    pub(super) alt: Option<Slot>,
    pub(super) connecting: Option<(u64, AbortOnDrop)>,
    /// Every connection of this peer whose socket is not closed yet, by id: a new outgoing
    /// connection waits for the old ones to close (see [`crate::session::LINGER`]).
    pub(super) conns: Vec<(u64, CancellationToken)>,
    pub(super) session: Option<Session>,
    /// Adj-RIB-Out: what we advertised, per family (0 = IPv4, 1 = IPv6).
    pub(super) adj_out: [PrefixMap<OutEntry>; 2],
    /// RFC 4724 helper: families whose paths are stale, and until when they are kept.
    pub(super) stale_families: Vec<Family>,
    pub(super) stale_deadline: Option<Instant>,
    pub(super) last_error: Option<String>,
    /// Its BFD session, when configured (`bfd_link`).
    pub(super) bfd: Option<super::bfd_link::PeerBfd>,
}

impl Instance {
    pub(super) fn fsm_config(&self, p: &PeerConfig) -> FsmConfig {
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
                families: p.families.iter().map(|f| (*f, g.restarting)).collect(),
            });
        FsmConfig {
            local_as: self.cfg.local_as,
            router_id: self.cfg.router_id,
            peer_as: p.peer_as,
            hold_time: p.hold_time,
            keepalive: p.keepalive,
            connect_retry: p.connect_retry(),
            passive: p.passive,
            families: p.families.clone(),
            extended_next_hop: if p.extended_next_hop {
                vec![Family::Ipv4Unicast]
            } else {
                vec![]
            },
            graceful_restart: gr,
        }
    }

    pub(super) fn set_listener_keys(&self, peer: IpAddr, key: Option<&[u8]>) -> Result<(), Error> {
        for (l, v6) in &self.listeners {
            transport::set_md5(&**l, *v6, peer, key)
                .map_err(|source| Error::Md5 { peer, source })?;
        }
        Ok(())
    }

    pub(super) fn add_peer(&mut self, cfg: PeerConfig) -> Result<(), Error> {
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
            bfd: None,
        };
        self.peers.insert(addr, peer);
        tracing::info!(peer = %addr, "peer added");
        // With BFD, the session starts when BFD comes Up (the start below is deferred).
        self.start_bfd(addr);
        self.drive(addr, Which::Main, Input::Start);
        Ok(())
    }

    pub(super) fn update_peer(&mut self, cfg: PeerConfig) -> Result<(), Error> {
        let addr = cfg.address;
        let Some(p) = self.peers.get(&addr) else {
            return Err(Error::NoSuchPeer(addr));
        };
        let old = p.cfg.clone();
        // What needs no new session: policies (RFC 4271 §9.1), the next hops we advertise
        // (a re-export), the keepalive and connect-retry times, local matters (§10), and BFD
        // (its session is registered again; an established BGP session stays while the new
        // one comes up). Everything else is in the OPEN or the TCP connection, so it takes a
        // reset.
        let in_place = PeerConfig {
            import: old.import.clone(),
            export: old.export.clone(),
            keepalive: old.keepalive,
            connect_retry: old.connect_retry,
            next_hop_v4: old.next_hop_v4,
            next_hop_v6: old.next_hop_v6,
            bfd: old.bfd.clone(),
            ..cfg.clone()
        } == old;
        let bfd_changed =
            super::bfd_link::bfd_identity(&old) != super::bfd_link::bfd_identity(&cfg);
        if old.md5_password != cfg.md5_password {
            self.set_listener_keys(addr, cfg.md5_password.as_deref().map(str::as_bytes))?;
        }
        let export_changed = old.export != cfg.export
            || old.next_hop_v4 != cfg.next_hop_v4
            || old.next_hop_v6 != cfg.next_hop_v6;
        let import_changed = old.import != cfg.import;
        let fsm_cfg = self.fsm_config(&cfg);
        let local_as = self.cfg.local_as;
        let Some(p) = self.peers.get_mut(&addr) else {
            return Err(Error::NoSuchPeer(addr));
        };
        p.import_idx = PolicyIndex::new(&cfg.import);
        let old_export_idx = std::mem::replace(&mut p.export_idx, PolicyIndex::new(&cfg.export));
        // What the peer was sent is derived from the old export configuration: a re-export
        // compares against it (the same entry may now carry other attributes). Before its
        // initial sync (a restarting speaker's deferral, RFC 4724 §4.1) a session has been
        // sent nothing, and the initial sync exports under the new configuration.
        let previous = p
            .session
            .as_ref()
            .filter(|s| in_place && export_changed && s.synced)
            .map(|s| PreviousExport {
                target: Target::new(local_as, p.id, s),
                policy: old.export,
                index: old_export_idx,
            });
        p.cfg = cfg;
        p.main.fsm.set_config(fsm_cfg);
        if let Some(s) = p.session.as_mut() {
            // The session's copy of what was negotiated follows the FSM's (keepalive).
            if let Some(n) = p.main.fsm.negotiated() {
                s.neg.keepalive = n.keepalive;
            }
            (s.nh_v4, s.nh_v6) = advertised_next_hops(s.local, &p.cfg);
        }
        let fams: Vec<Family> = p
            .session
            .as_ref()
            .map(|s| s.neg.families.clone())
            .unwrap_or_default();
        let rr = p.session.as_ref().is_some_and(|s| s.neg.route_refresh);
        if bfd_changed {
            self.start_bfd(addr);
            // BFD removed from a peer that was waiting for it: start it now.
            if self
                .peers
                .get(&addr)
                .is_some_and(|p| p.bfd.is_none() && p.main.fsm.state() == crate::fsm::State::Idle)
            {
                self.drive(addr, Which::Main, Input::Start);
            }
        }
        if in_place {
            if let Some(previous) = previous {
                self.resync(addr, Some(&previous));
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

    /// [`crate::Speaker::patch_export`]: the export policy and its index are changed in
    /// place and only the patched prefixes are exported again, so the cost follows the
    /// patch, not the policy. The outcome is `update_peer`'s with the patched policy: the
    /// same Adj-RIB-Out (entries of moved statements follow them), and a prefix is resent
    /// only if its attributes on the wire change, never before the initial sync.
    pub(super) fn patch_export(&mut self, addr: IpAddr, patch: ExportPatch) -> Result<(), Error> {
        let local_as = self.cfg.local_as;
        let p = self.peers.get_mut(&addr).ok_or(Error::NoSuchPeer(addr))?;
        p.export_idx
            .exact_table()
            .map_err(|reason| Error::ExportNotExact { peer: addr, reason })?;
        let mut prefixes: Vec<IpNet> = patch.set.iter().map(|(prefix, _)| *prefix).collect();
        prefixes.sort_unstable();
        prefixes.dedup();
        // Before the initial sync nothing was sent, and the sync exports under the patched
        // policy (RFC 4724 §4.1 deferral included).
        let synced = p.session.as_ref().filter(|s| s.synced);
        // What each patched prefix was sent with, under the policy before the patch.
        let mut sent: PrefixMap<Arc<Attrs>> = PrefixMap::new();
        if let Some(s) = synced {
            let target = Target::new(local_as, p.id, s);
            let mut before = Exporter::new(target, &p.cfg.export, &p.export_idx);
            for prefix in &prefixes {
                let i = table_index(prefix);
                if let Some(a) = p.adj_out[i]
                    .get(prefix)
                    .and_then(|e| before.attributes(e, i == 0))
                {
                    sent.insert(*prefix, a);
                }
            }
        }
        let synced = synced.is_some();
        let moved = p
            .export_idx
            .apply(&mut p.cfg.export, patch)
            .map_err(|reason| Error::ExportNotExact { peer: addr, reason })?;
        // Adj-RIB-Out entries name their statement by index: follow the moved ones (their
        // attributes are unchanged, so nothing is sent for them).
        for prefix in moved {
            if let (Some(e), Some(i)) = (
                p.adj_out[table_index(&prefix)].get_mut(&prefix),
                p.export_idx.exact_statement(&prefix),
            ) {
                e.restate(i);
            }
        }
        if synced {
            self.export_to(addr, &prefixes, Some(Before::Sent(&sent)));
        }
        Ok(())
    }

    pub(super) fn reset(&mut self, addr: IpAddr) {
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

    pub(super) fn remove_peer(&mut self, addr: IpAddr) -> Result<(), Error> {
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

    pub(super) fn request_refresh(&mut self, addr: IpAddr, family: Family) -> Result<(), Error> {
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
}

/// Keep the most telling error: a NOTIFICATION beats a bare close (which usually follows it),
/// and our own stops (collision, admin) are not errors.
pub(super) fn record_error(p: &mut Peer, reason: &DownReason) {
    match reason {
        DownReason::Stopped => {}
        DownReason::ConnectionClosed if p.last_error.is_some() => {}
        r => p.last_error = Some(format!("{r:?}")),
    }
}

/// The next hops we advertise on a session whose local end is `local`: the configured ones,
/// else our address on the session for its family.
pub(super) fn advertised_next_hops(
    local: SocketAddr,
    cfg: &PeerConfig,
) -> (Option<Ipv4Addr>, Option<Ipv6Addr>) {
    let (v4, v6) = match transport::canonical(local.ip()) {
        IpAddr::V4(a) => (Some(a), None),
        IpAddr::V6(a) => (None, Some(a)),
    };
    (cfg.next_hop_v4.or(v4), cfg.next_hop_v6.or(v6))
}
