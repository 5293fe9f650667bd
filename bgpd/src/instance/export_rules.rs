//! The export rules: for one best path and one receiving session, whether it is advertised
//! and with which attributes (RFC 4271 §9.2, RFC 1997 well-known communities, §5.1).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use bgpd_wire::{AsSegment, NextHop, PathAttributes};

use crate::policy::{NO_ADVERTISE, NO_EXPORT};
use crate::rib::{Attrs, LOCAL, Path, PeerId, SourceInfo};

pub(super) fn add_communities(pa: &mut PathAttributes, act: &crate::policy::Actions) {
    for c in act.communities() {
        if !pa.communities.contains(&c) {
            pa.communities.push(c);
        }
    }
    for l in act.large_communities() {
        if !pa.large_communities.contains(&l) {
            pa.large_communities.push(l);
        }
    }
}

/// What exporting to one peer depends on.
pub(super) struct ExportCtx {
    pub(super) local_as: u32,
    pub(super) peer_id: PeerId,
    pub(super) ebgp: bool,
    pub(super) nh_v4: Option<Ipv4Addr>,
    pub(super) nh_v6: Option<Ipv6Addr>,
    pub(super) ext_nh_v4: bool,
}

impl ExportCtx {
    /// RFC 4271 §9.2 rules before policy: no iBGP-to-iBGP (no route reflection here), and the
    /// well-known communities of RFC 1997.
    pub(super) fn may_export(&self, best: &Path, src: Option<&SourceInfo>) -> bool {
        let from_ibgp = best.peer != LOCAL && src.is_some_and(|s| !s.ebgp);
        if from_ibgp && !self.ebgp {
            return false;
        }
        let c = &best.attrs.path.communities;
        !(c.contains(&NO_ADVERTISE) || (self.ebgp && c.contains(&NO_EXPORT)))
    }

    /// The attributes we send for `best` (§5.1: AS_PATH prepend and next hop self towards
    /// eBGP, LOCAL_PREF only towards iBGP, MED not passed from one AS to another).
    pub(super) fn export(
        &self,
        src: &Attrs,
        local: bool,
        act: Option<&crate::policy::Actions>,
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
            out.local_pref = Some(pa.local_pref.unwrap_or(crate::rib::DEFAULT_LOCAL_PREF));
        }
        let mut nh_self = self.ebgp || local;
        if let Some(a) = act {
            add_communities(&mut out, a);
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
