//! The export rules, without I/O: for a best path, where it came from and the session it
//! would go to, whether it is advertised and with which attributes.
//!
//! - [`Target`]: what the rules need to know about the receiving session;
//!   [`Target::may_export`] holds the rules before policy (RFC 4271 §9.2, RFC 1997) and
//!   [`Target::attributes`] the attribute handling per peer type (§5.1).
//! - [`Exporter`]: one peer's export of one batch: rules, then the export policy, then the
//!   attributes, built once per (source attribute set, statement actions, family) so that the
//!   prefixes sharing them are packed into the same UPDATEs.
//! - [`OutEntry`] / [`update_out`]: the Adj-RIB-Out and what a decision changes in it
//!   (an announcement, a withdrawal, nothing), also after an in-place change of the peer's
//!   export policy or next hops ([`PreviousExport`]).
//!
//! The speaker task (`export.rs`, `query.rs`) calls these; the unit tests in
//! `export_rules/tests/` call them directly.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use bgpd_wire::{AsSegment, Family, NextHop};
use hashbrown::HashMap;
use ipnet::IpNet;

use super::peers::Session;
use crate::policy::{
    Actions, NO_ADVERTISE, NO_EXPORT, NO_EXPORT_SUBCONFED, Policy, PolicyIndex, Verdict,
};
use crate::rib::{
    Attrs, DEFAULT_LOCAL_PREF, LOCAL, Path, PeerId, PrefixMap, Slot, SourceInfo, Sources,
};

#[cfg(test)]
mod tests;

/// The receiving session, as far as the export rules depend on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    pub(super) local_as: u32,
    /// The receiving peer: a path is never sent back to the peer it came from.
    pub(super) peer: PeerId,
    pub(super) ebgp: bool,
    /// Our next hops on this session (its local address, or the configured ones).
    pub(super) nh_v4: Option<Ipv4Addr>,
    pub(super) nh_v6: Option<Ipv6Addr>,
    /// RFC 8950 negotiated for IPv4 unicast: IPv4 routes may carry an IPv6 next hop.
    pub(super) ext_nh_v4: bool,
}

impl Target {
    /// The target for an Established session of peer `peer`.
    pub(super) fn new(local_as: u32, peer: PeerId, s: &Session) -> Self {
        Self {
            local_as,
            peer,
            ebgp: s.ebgp,
            nh_v4: s.nh_v4,
            nh_v6: s.nh_v6,
            ext_nh_v4: s.neg.extended_next_hop.contains(&Family::Ipv4Unicast),
        }
    }

    /// The rules before policy: nothing back to the peer the path came from; RFC 4271 §9.2:
    /// nothing learnt from an internal peer to another internal peer (no route reflection
    /// here); RFC 1997: NO_ADVERTISE to nobody, NO_EXPORT and NO_EXPORT_SUBCONFED to no
    /// external peer (we have no confederation, so both mean: not outside our AS).
    pub(super) fn may_export(&self, best: &Path, src: Option<&SourceInfo>) -> bool {
        if best.peer == self.peer {
            return false;
        }
        let from_ibgp = best.peer != LOCAL && src.is_some_and(|s| !s.ebgp);
        if from_ibgp && !self.ebgp {
            return false;
        }
        let c = &best.attrs.path.communities;
        let no_export = c.contains(&NO_EXPORT) || c.contains(&NO_EXPORT_SUBCONFED);
        !(c.contains(&NO_ADVERTISE) || (self.ebgp && no_export))
    }

    /// The attributes we send for a path with attributes `src` (`local`: originated by us),
    /// after the export statement's actions `act`, for an IPv4 (`v4`) or IPv6 prefix; `None`
    /// when the session has no usable next hop for it. RFC 4271 §5.1: towards eBGP the
    /// AS_PATH gets our AS prepended (§5.1.2), the next hop is ours (§5.1.3), LOCAL_PREF is
    /// not sent (§5.1.5) and a MED learnt from another AS is not passed on (§5.1.4);
    /// ORIGINATOR_ID and CLUSTER_LIST (RFC 4456, non-transitive) stay inside the AS. Towards
    /// iBGP, LOCAL_PREF is always sent and the next hop is kept unless the path is ours,
    /// has none, or the statement asks for next-hop-self.
    pub(super) fn attributes(
        &self,
        src: &Attrs,
        local: bool,
        act: Option<&Actions>,
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
            out.local_pref = Some(pa.local_pref.unwrap_or(DEFAULT_LOCAL_PREF));
        }
        let mut nh_self = self.ebgp || local;
        if let Some(a) = act {
            a.add_communities_to(&mut out);
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

/// An Adj-RIB-Out entry: the Loc-RIB attributes the advertisement was derived from and the
/// export statement that matched. The attributes on the wire are a function of these and the
/// session, so they are rebuilt when needed (encoding, route refresh, queries) instead of
/// being stored per peer: that keeps the Adj-RIB-Out at 16 bytes per prefix and avoids a
/// second copy of every attribute set per peer.
#[derive(Debug, Clone)]
pub(super) struct OutEntry {
    pub(super) src: Arc<Attrs>,
    /// Index of the accepting export statement; `u32::MAX` = accepted by default.
    stmt: u32,
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

    /// The export policy's verdict that admitted it.
    pub(super) fn verdict(&self) -> Verdict {
        if self.stmt == u32::MAX {
            Verdict::Accept(None)
        } else {
            Verdict::Accept(Some(self.stmt as usize))
        }
    }

    /// Points the entry at statement `i` if a statement admitted it (the statement moved,
    /// [`crate::policy::PolicyIndex::apply`]).
    pub(super) fn restate(&mut self, i: usize) {
        if self.stmt != u32::MAX {
            self.stmt = u32::try_from(i).unwrap_or(u32::MAX - 1);
        }
    }

    /// Derived from the same source attributes by the same statement.
    pub(super) fn same(&self, other: &OutEntry) -> bool {
        Arc::ptr_eq(&self.src, &other.src) && self.stmt == other.stmt && self.local == other.local
    }
}

/// What recording one export decision changed in a peer's Adj-RIB-Out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OutChange {
    /// Nothing to send: the entry was there already, or neither before nor now.
    Unchanged,
    /// New or different: announce it (an implicit withdraw of what was sent before).
    Announce,
    /// Advertised before and not exported any more: withdraw it (RFC 4271 §9.2).
    Withdraw,
}

/// Record the decision for `prefix` (`None`: not exported; else the entry and the attributes
/// it is sent with) in the Adj-RIB-Out `out`.
///
/// `previous` is what the peer was sent before an in-place change of its export
/// configuration (export policy, advertised next hops): the entries can then be the same
/// while what they become on the wire is not, so an entry counts as unchanged only if the
/// attributes sent for it before equal those it gets now. Without it, the same entry means
/// the same attributes, and nothing is rebuilt.
pub(super) fn update_out(
    out: &mut PrefixMap<OutEntry>,
    prefix: IpNet,
    new: Option<(OutEntry, &Arc<Attrs>)>,
    previous: Option<&mut Before<'_, '_>>,
) -> OutChange {
    let Some((e, attrs)) = new else {
        return match out.remove(&prefix) {
            Some(_) => OutChange::Withdraw,
            None => OutChange::Unchanged,
        };
    };
    // One hash lookup: a new prefix is inserted at once (nothing was sent for it, so it is
    // announced whatever `previous` says); a present one is compared, then replaced.
    let same_wire = match out.get_or_insert(prefix, e) {
        Slot::Inserted | Slot::Full => false,
        Slot::Present(old, e) => {
            let same_entry = old.same(&e);
            let same_wire = match previous {
                None => same_entry,
                Some(prev) => prev
                    .sent(&prefix, old)
                    .is_some_and(|was| *was.path == *attrs.path && was.next_hop == attrs.next_hop),
            };
            if !same_entry {
                *old = e;
            }
            same_wire
        }
    };
    if same_wire {
        OutChange::Unchanged
    } else {
        OutChange::Announce
    }
}

/// What a peer was sent before an in-place change of its export configuration (see
/// [`update_out`]).
#[derive(Debug)]
pub(super) enum Before<'p, 'a> {
    /// Rebuilt from the whole previous configuration, for any prefix (`update_peer`).
    Config(Exporter<'a>),
    /// Recorded before a patch, for the patched prefixes only: the attributes each was sent
    /// with (absent: nothing, or nothing advertisable).
    Sent(&'p PrefixMap<Arc<Attrs>>),
}

impl Before<'_, '_> {
    /// The attributes sent for `prefix`, whose Adj-RIB-Out entry is `old`.
    fn sent(&mut self, prefix: &IpNet, old: &OutEntry) -> Option<Arc<Attrs>> {
        match self {
            Before::Config(ex) => ex.attributes(old, matches!(prefix, IpNet::V4(_))),
            Before::Sent(m) => m.get(prefix).cloned(),
        }
    }
}

/// A peer's export configuration before an in-place change (see [`update_out`]).
#[derive(Debug)]
pub(super) struct PreviousExport {
    pub(super) target: Target,
    pub(super) policy: Policy,
    pub(super) index: PolicyIndex,
}

impl PreviousExport {
    /// An exporter that rebuilds what was sent under this configuration.
    pub(super) fn exporter(&self) -> Exporter<'_> {
        Exporter::new(self.target.clone(), &self.policy, &self.index)
    }
}

/// Memo key: source attribute set (by address), local source, the accepting statement's
/// actions (by value: an exact-prefix table has one statement per prefix, mostly with equal
/// actions, and those prefixes must share attributes to be packed into the same UPDATEs),
/// IPv4 prefix.
type MemoKey<'a> = (usize, bool, Option<&'a Actions>, bool);

/// One peer's export of one batch of prefixes.
#[derive(Debug)]
pub(super) struct Exporter<'a> {
    target: Target,
    policy: &'a Policy,
    index: &'a PolicyIndex,
    /// Wire attributes per source set, statement actions and family (`None`: not
    /// advertisable), with the source set itself so that its address stays unique while the
    /// memo lives.
    memo: HashMap<MemoKey<'a>, (Arc<Attrs>, Option<Arc<Attrs>>)>,
}

impl<'a> Exporter<'a> {
    /// Export to `target` under `policy` (and its lookup index).
    pub(super) fn new(target: Target, policy: &'a Policy, index: &'a PolicyIndex) -> Self {
        Self {
            target,
            policy,
            index,
            // Sized for a flush batch (up to 256 UPDATEs' sets): grown from empty, the memo
            // was rehashed several times per batch.
            memo: HashMap::with_capacity(256),
        }
    }

    /// The whole decision for `prefix` whose best path is `best` (`sources` says where
    /// paths come from): the rules of [`Target::may_export`], then the export policy, then
    /// [`Target::attributes`]. `None`: not exported (withdrawn if it was advertised).
    /// Prefixes whose entries share a source set and equal statement actions get the same
    /// `Arc`.
    pub(super) fn export(
        &mut self,
        prefix: &IpNet,
        best: Option<&Path>,
        sources: &Sources,
    ) -> Option<(OutEntry, Arc<Attrs>)> {
        let best = best?;
        if !self.target.may_export(best, sources.get(best.peer)) {
            return None;
        }
        let verdict = self.index.evaluate(self.policy, prefix);
        if verdict == Verdict::Reject {
            return None;
        }
        let e = OutEntry::new(best.attrs.clone(), verdict, best.peer == LOCAL);
        let a = self.attributes(&e, matches!(prefix, IpNet::V4(_)))?;
        Some((e, a))
    }

    /// The attributes sent for an Adj-RIB-Out entry of an IPv4 (`v4`) or IPv6 prefix
    /// (route refresh, queries); `None`: no usable next hop.
    pub(super) fn attributes(&mut self, e: &OutEntry, v4: bool) -> Option<Arc<Attrs>> {
        let act = self.policy.actions(e.verdict());
        let key = (Arc::as_ptr(&e.src) as usize, e.local, act, v4);
        let target = &self.target;
        self.memo
            .entry(key)
            .or_insert_with(|| {
                let a = target.attributes(&e.src, e.local, act, v4);
                (e.src.clone(), a)
            })
            .1
            .clone()
    }
}
