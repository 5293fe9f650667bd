//! Export: Loc-RIB changes out to subscribers (events) and to peers (Adj-RIB-Out diffs,
//! initial sync with End-of-RIB, answers to route refresh). What a best path becomes for a
//! given peer is decided by [`super::export_rules`].

use std::net::IpAddr;
use std::sync::Arc;

use bgpd_wire::{Message, RouteRefresh};
use hashbrown::HashMap;
use ipnet::IpNet;

use super::export_rules::{Before, Exporter, OutChange, PreviousExport, Target, update_out};
use super::{Instance, best_event, fi, table_index};
use crate::events::{BestPathChange, Event};
use crate::rib::Attrs;
use crate::session::WriterCmd;

impl Instance {
    /// Send the whole Adj-RIB-Out, then End-of-RIB per family (RFC 4724 §2).
    pub(super) fn initial_sync(&mut self, addr: IpAddr) {
        self.resync(addr, None);
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

    /// Recompute the whole Adj-RIB-Out of a peer against the Loc-RIB and send the difference
    /// (`previous`: the peer's export configuration before an in-place change).
    pub(super) fn resync(&mut self, addr: IpAddr, previous: Option<&PreviousExport>) {
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
        self.export_to(
            addr,
            &prefixes,
            previous.map(|p| Before::Config(p.exporter())),
        );
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
        let target = Target::new(self.cfg.local_as, p.id, s);
        let mut exporter = Exporter::new(target, &p.cfg.export, &p.export_idx);
        let mut groups: HashMap<usize, (Arc<Attrs>, Vec<IpNet>)> = HashMap::new();
        for (prefix, e) in p.adj_out[i].iter() {
            if let Some(a) = exporter.attributes(e, i == 0) {
                groups
                    .entry(Arc::as_ptr(&a) as usize)
                    .or_insert_with(|| (a, Vec::new()))
                    .1
                    .push(prefix);
            }
        }
        let announce = groups.into_values().collect();
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
        let loc_rib = self.bmp_wants_loc_rib();
        if !self.subscribers.is_empty() || loc_rib {
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
                if loc_rib {
                    self.bmp_loc_rib(&ev);
                }
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
            self.export_to(a, &dirty, None);
        }
    }

    /// Export the current best paths of `prefixes` to a peer, diff against its Adj-RIB-Out
    /// and queue the resulting UPDATEs (grouped by attribute set); `previous` as for
    /// [`update_out`].
    pub(super) fn export_to(
        &mut self,
        addr: IpAddr,
        prefixes: &[IpNet],
        mut previous: Option<Before<'_, '_>>,
    ) {
        let Some(p) = self.peers.get_mut(&addr) else {
            return;
        };
        let Some(s) = &p.session else { return };
        let Some(c) = &p.main.conn else { return };
        let target = Target::new(self.cfg.local_as, p.id, s);
        let mut exporter = Exporter::new(target, &p.cfg.export, &p.export_idx);
        // The prefixes to announce, by attribute set (the exporter hands out one `Arc` per set).
        let mut groups: HashMap<usize, (Arc<Attrs>, Vec<IpNet>)> = HashMap::new();
        let mut withdraw = Vec::new();
        for prefix in prefixes {
            let t = &self.tables[table_index(prefix)];
            if !s.neg.has_family(t.family) {
                continue;
            }
            let new = exporter.export(prefix, t.best(prefix), &self.sources);
            let attrs = new.as_ref().map(|(_, a)| a.clone());
            let out = &mut p.adj_out[table_index(prefix)];
            match update_out(
                out,
                *prefix,
                new.map(|(e, _)| e).zip(attrs.as_ref()),
                previous.as_mut(),
            ) {
                OutChange::Unchanged => {}
                OutChange::Announce => {
                    if let Some(a) = attrs {
                        groups
                            .entry(Arc::as_ptr(&a) as usize)
                            .or_insert_with(|| (a, Vec::new()))
                            .1
                            .push(*prefix);
                    }
                }
                OutChange::Withdraw => withdraw.push(*prefix),
            }
        }
        let announce: Vec<(Arc<Attrs>, Vec<IpNet>)> = groups.into_values().collect();
        if !announce.is_empty() || !withdraw.is_empty() {
            c.send(WriterCmd::Updates { announce, withdraw });
        }
    }
}
