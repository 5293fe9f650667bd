//! Queries: peer status and RIB listings (Loc-RIB, Adj-RIB-In, Adj-RIB-Out) for the API.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use tokio::time::Instant;

use super::export_rules::{Exporter, Target};
use super::{Instance, fi};
use crate::error::Error;
use crate::fsm::Negotiated;
use crate::query::{FamilyStatus, PeerStatus, RibKind, RouteEntry, RouteQuery, capability_name};
use crate::rib::{self, LOCAL, Path, PeerId};
use crate::transport;

impl Instance {
    pub(super) fn peer_status(&self) -> Vec<PeerStatus> {
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
                    // Validated: only families we have tables for.
                    .filter_map(|f| {
                        let i = fi(*f)?;
                        let (received, accepted) = self.tables[i].count_peer(p.id);
                        Some(FamilyStatus {
                            family: *f,
                            received,
                            accepted,
                            advertised: p.adj_out[i].len(),
                        })
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
                    treat_as_withdraw: s.map_or(0, |s| s.treat_as_withdraw),
                    last_error: p.last_error.clone(),
                    bfd: p.bfd.as_ref().and_then(|b| b.status.clone()),
                }
            })
            .collect();
        v.sort_by_key(|p| p.address);
        v
    }

    pub(super) fn routes(&self, q: RouteQuery) -> Result<Vec<RouteEntry>, Error> {
        let i = fi(q.family).ok_or(Error::UnsupportedFamily { family: q.family })?;
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
                let target = Target::new(self.cfg.local_as, p.id, s);
                let mut exporter = Exporter::new(target, &p.cfg.export, &p.export_idx);
                for (prefix, e) in p.adj_out[i].iter() {
                    if let Some(a) = exporter.attributes(e, i == 0) {
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
