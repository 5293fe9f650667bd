//! Import: UPDATEs (announcements, withdrawals, End-of-RIB, RFC 7606 outcomes, the import
//! policy) and locally originated routes into the Loc-RIB.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use bgpd_wire::{AsSegment, Family, NextHop, PathAttributes, Update};
use ipnet::IpNet;
use smallvec::SmallVec;

use super::{Instance, table_index};
use crate::first_as;
use crate::policy::Verdict;
use crate::rib::{self, Attrs, LOCAL, PeerId, flags};

/// An UPDATE's interned attribute set and flags per (import verdict, next hop).
type Memo = ((Verdict, NextHop), (Arc<Attrs>, u8));

impl Instance {
    pub(super) fn add_local(&mut self, prefix: IpNet, attrs: PathAttributes) {
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

    pub(super) fn remove_local(&mut self, prefix: IpNet) {
        let t = &mut self.tables[table_index(&prefix)];
        if t.set(prefix, LOCAL, None, 0, &self.sources) {
            self.dirty.insert(prefix);
        }
    }

    pub(super) fn on_update(&mut self, addr: IpAddr, u: Update) {
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
        // Copied inline (no allocation per UPDATE): the session is borrowed mutably below.
        let families: SmallVec<[Family; 4]> = s.neg.families.iter().copied().collect();
        let mut withdraw_all = u.treat_as_withdraw.is_some();
        if let Some(e) = &u.treat_as_withdraw {
            tracing::info!(peer = %addr, attr = e.type_code, reason = ?e.reason, "treat-as-withdraw (RFC 7606)");
        }
        // RFC 4271 §6.3 first AS and RFC 5065 §5 confederation segments, external peers
        // only: a Malformed AS_PATH, which RFC 7606 §7.2 makes treat-as-withdraw. Only an
        // UPDATE that announces something carries a path worth checking (RFC 7606 §5.2: the
        // attributes of one without NLRI are ignored).
        let announces = !u.nlri.is_empty() || u.mp_reach.is_some();
        if ebgp
            && announces
            && !withdraw_all
            && let Some(a) = &u.attributes
            && let Err(e) =
                first_as::check_external(&a.as_path, s.neg.peer_as, p.cfg.enforce_first_as)
        {
            tracing::info!(peer = %addr, error = %e, "treat-as-withdraw: malformed AS_PATH (RFC 4271 §6.3, RFC 7606 §7.2)");
            withdraw_all = true;
        }
        if withdraw_all {
            s.treat_as_withdraw += 1;
        }
        let mut withdrawn: Vec<IpNet> = u.withdrawn;
        if let Some(mu) = u.mp_unreach
            && families.contains(&mu.family)
        {
            withdrawn.extend(mu.withdrawn);
        }
        let mut reach: SmallVec<[(Vec<IpNet>, NextHop); 2]> = SmallVec::new();
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
        // The interned set per (verdict, next hop): an UPDATE almost always has one, so a
        // short linear list (no allocation) instead of a map allocated per UPDATE. It keeps
        // at most MEMO_MAX: past that (an exact-prefix import table giving each prefix a
        // statement of its own) entries rarely repeat, a map would miss as well, and the
        // interner returns the same set anyway.
        const MEMO_MAX: usize = 8;
        let mut memo: SmallVec<[Memo; 2]> = SmallVec::new();
        for (nlri, nh) in reach {
            for prefix in nlri {
                let v = idx.evaluate(policy, &prefix);
                let entry = match memo.iter().find(|(k, _)| *k == (v, nh)) {
                    Some((_, e)) => e.clone(),
                    None => {
                        let e = match (v, policy.actions(v)) {
                            (Verdict::Reject, _) => (
                                self.interner.attrs_of_interned(base.clone(), nh),
                                flags::REJECTED,
                            ),
                            (_, Some(act)) => {
                                let mut pa = (*base).clone();
                                if let Some(lp) = act.local_pref {
                                    pa.local_pref = Some(lp);
                                }
                                if let Some(m) = act.med {
                                    pa.med = Some(m);
                                }
                                act.add_communities_to(&mut pa);
                                (self.interner.attrs(Arc::new(pa), nh), 0)
                            }
                            // `base` is interned above: not looked up a second time.
                            (_, None) => (self.interner.attrs_of_interned(base.clone(), nh), 0),
                        };
                        if memo.len() < MEMO_MAX {
                            memo.push(((v, nh), e.clone()));
                        }
                        e
                    }
                };
                let t = &mut self.tables[table_index(&prefix)];
                if t.set(prefix, id, Some(entry), now, &self.sources) {
                    self.dirty.insert(prefix);
                }
            }
        }
    }

    pub(super) fn withdraw(&mut self, id: PeerId, prefixes: &[IpNet]) {
        for prefix in prefixes {
            if self.tables[table_index(prefix)].set(*prefix, id, None, 0, &self.sources) {
                self.dirty.insert(*prefix);
            }
        }
    }
}
