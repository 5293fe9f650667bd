//! Export: Loc-RIB changes out to subscribers (events) and to peers (Adj-RIB-Out diffs,
//! initial sync with End-of-RIB, answers to route refresh). What a best path becomes for a
//! given peer is decided by [`super::export_rules`].

use std::net::IpAddr;
use std::sync::Arc;

use bgpd_wire::{Family, Message, RouteRefresh};
use hashbrown::HashMap;
use ipnet::IpNet;

use super::export_rules::ExportCtx;
use super::peers::Session;
use super::{Instance, best_event, fi, table_index};
use crate::events::{BestPathChange, Event};
use crate::policy::Verdict;
use crate::rib::{Attrs, LOCAL, PeerId};
use crate::session::WriterCmd;

/// An Adj-RIB-Out entry: the Loc-RIB attributes the advertisement was derived from and the
/// export statement that matched. The attributes on the wire are a function of these and the
/// session, so they are rebuilt when needed (encoding, route refresh, queries) instead of
/// being stored per peer: that keeps the Adj-RIB-Out at 16 bytes per prefix and avoids a
/// second copy of every attribute set per peer.
#[derive(Debug, Clone)]
pub(super) struct OutEntry {
    pub(super) src: Arc<Attrs>,
    /// Index of the accepting export statement; `u32::MAX` = accepted by default.
    pub(super) stmt: u32,
    /// The source is a local route (next hop self, MED kept).
    pub(super) local: bool,
}

impl OutEntry {
    pub(super) fn new(src: Arc<Attrs>, verdict: Verdict, local: bool) -> Self {
        let stmt = match verdict {
            Verdict::Accept(Some(i)) => u32::try_from(i).unwrap_or(u32::MAX - 1),
            _ => u32::MAX,
        };
        Self { src, stmt, local }
    }

    pub(super) fn verdict(&self) -> Verdict {
        if self.stmt == u32::MAX {
            Verdict::Accept(None)
        } else {
            Verdict::Accept(Some(self.stmt as usize))
        }
    }

    pub(super) fn same(&self, other: &OutEntry) -> bool {
        Arc::ptr_eq(&self.src, &other.src) && self.stmt == other.stmt && self.local == other.local
    }
}

/// Exported attributes (None: not advertisable) and the prefixes that carry them.
type Group = (Option<Arc<Attrs>>, Vec<IpNet>);

pub(super) fn export_ctx(local_as: u32, peer_id: PeerId, s: &Session) -> ExportCtx {
    ExportCtx {
        local_as,
        peer_id,
        ebgp: s.ebgp,
        nh_v4: s.nh_v4,
        nh_v6: s.nh_v6,
        ext_nh_v4: s.neg.extended_next_hop.contains(&Family::Ipv4Unicast),
    }
}

impl Instance {
    /// Send the whole Adj-RIB-Out, then End-of-RIB per family (RFC 4724 §2).
    pub(super) fn initial_sync(&mut self, addr: IpAddr) {
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
    pub(super) fn resync(&mut self, addr: IpAddr) {
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

    /// RFC 2918 §4 / RFC 7313 §4: resend the Adj-RIB-Out of the family.
    pub(super) fn on_route_refresh(&mut self, addr: IpAddr, rr: RouteRefresh) {
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

    /// Emit events for the changed prefixes and update every synced peer's Adj-RIB-Out.
    pub(super) fn flush(&mut self) {
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
    pub(super) fn export_to(&mut self, addr: IpAddr, prefixes: &[IpNet], _full: bool) {
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
}
