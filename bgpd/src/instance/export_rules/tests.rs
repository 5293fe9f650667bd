//! The export rules against RFC 4271 §5.1 (attributes per peer type) and §9.2 (Update-Send),
//! RFC 1997 (well-known communities) and the export policy, without sockets.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use bgpd_wire::{AsPath, AsSegment, Community, LargeCommunity, NextHop, PathAttributes};
use ipnet::IpNet;

use super::{Before, Exporter, OutChange, OutEntry, PreviousExport, Target, update_out};
use crate::policy::{
    Actions, NO_ADVERTISE, NO_EXPORT, NO_EXPORT_SUBCONFED, Policy, PolicyIndex, PrefixMatch,
    Statement,
};
use crate::rib::{Attrs, LOCAL, Path, PeerId, PrefixMap, SourceInfo, Sources};

const LOCAL_AS: u32 = 65001;
const OUR_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const OUR_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
/// The next hop of paths learnt from peers.
const THEIR_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

/// Four peers besides ourselves: two internal, two external.
struct World {
    sources: Sources,
    ibgp: PeerId,
    ibgp2: PeerId,
    ebgp: PeerId,
    ebgp2: PeerId,
}

fn world() -> World {
    let mut sources = Sources::default();
    let mut add = |address: &str, ebgp: bool| {
        let id = sources.allocate();
        sources.set(
            id,
            SourceInfo {
                address: address.parse().unwrap(),
                router_id: Ipv4Addr::new(10, 0, 0, 1),
                ebgp,
            },
        );
        id
    };
    let ibgp = add("10.0.0.2", false);
    let ibgp2 = add("10.0.0.5", false);
    let ebgp = add("10.0.0.3", true);
    let ebgp2 = add("10.0.0.4", true);
    sources.set(
        LOCAL,
        SourceInfo {
            address: IpAddr::V4(Ipv4Addr::new(1, 1, 1, 1)),
            router_id: Ipv4Addr::new(1, 1, 1, 1),
            ebgp: false,
        },
    );
    World {
        sources,
        ibgp,
        ibgp2,
        ebgp,
        ebgp2,
    }
}

/// A session to `peer` with both our next hops, no RFC 8950.
fn target(peer: PeerId, ebgp: bool) -> Target {
    Target {
        local_as: LOCAL_AS,
        peer,
        ebgp,
        nh_v4: Some(OUR_V4),
        nh_v6: Some(OUR_V6),
        ext_nh_v4: false,
    }
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// A path as learnt from a peer: AS_PATH `65010 65020`, MED 50, LOCAL_PREF 200,
/// ORIGINATOR_ID and CLUSTER_LIST set, one community.
fn learnt() -> PathAttributes {
    PathAttributes {
        as_path: AsPath {
            segments: vec![AsSegment::Sequence(vec![65010, 65020])],
        },
        next_hop: Some(THEIR_V4),
        med: Some(50),
        local_pref: Some(200),
        communities: vec![Community(65010 << 16 | 1)],
        originator_id: Some(Ipv4Addr::new(10, 9, 9, 9)),
        cluster_list: vec![Ipv4Addr::new(10, 8, 8, 8)],
        ..PathAttributes::default()
    }
}

fn path(peer: PeerId, pa: PathAttributes, nh: NextHop) -> Path {
    Path::new(
        peer,
        0,
        Arc::new(Attrs {
            path: Arc::new(pa),
            next_hop: nh,
        }),
        0,
    )
}

/// A path learnt from `peer` with [`learnt`]'s attributes and next hop.
fn from_peer(peer: PeerId) -> Path {
    path(peer, learnt(), NextHop::V4(THEIR_V4))
}

/// A local route as `add_local_route` stores it (unspecified next hop = ourselves).
fn local(pa: PathAttributes, v4: bool) -> Path {
    let nh = if v4 {
        NextHop::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        NextHop::V6 {
            global: Ipv6Addr::UNSPECIFIED,
            link_local: None,
        }
    };
    path(LOCAL, pa, nh)
}

/// The attributes `best` is exported with to `t` under `policy`; `None`: not exported.
fn export_with(
    w: &World,
    t: Target,
    policy: &Policy,
    prefix: &str,
    best: &Path,
) -> Option<Arc<Attrs>> {
    let idx = PolicyIndex::new(policy);
    Exporter::new(t, policy, &idx)
        .export(&net(prefix), Some(best), &w.sources)
        .map(|(_, a)| a)
}

fn export(w: &World, t: Target, prefix: &str, best: &Path) -> Option<Arc<Attrs>> {
    export_with(w, t, &Policy::accept_all(), prefix, best)
}

fn seq(v: &[u32]) -> Vec<AsSegment> {
    vec![AsSegment::Sequence(v.to_vec())]
}

fn statement(prefixes: Vec<PrefixMatch>, actions: Actions) -> Statement {
    Statement { prefixes, actions }
}

// ===== RFC 4271 §9.2 Update-Send and the originating peer =====

/// §9.2: a route learnt from an internal peer is not re-advertised to internal peers (no
/// route reflection), but goes to external ones; routes learnt from external peers and our
/// own routes go to internal peers.
#[test]
fn ibgp_routes_are_not_readvertised_to_ibgp() {
    let w = world();
    let from_ibgp = from_peer(w.ibgp);
    assert!(export(&w, target(w.ibgp2, false), "203.0.113.0/24", &from_ibgp).is_none());
    assert!(export(&w, target(w.ebgp, true), "203.0.113.0/24", &from_ibgp).is_some());
    assert!(
        export(
            &w,
            target(w.ibgp, false),
            "203.0.113.0/24",
            &from_peer(w.ebgp)
        )
        .is_some()
    );
    let own = local(PathAttributes::default(), true);
    assert!(export(&w, target(w.ibgp, false), "203.0.113.0/24", &own).is_some());
}

/// A path is never sent back to the peer it was learnt from (split horizon), whatever the
/// peer type; another peer of the same type does get it.
#[test]
fn nothing_goes_back_to_its_source() {
    let w = world();
    let p = from_peer(w.ebgp);
    assert!(export(&w, target(w.ebgp, true), "203.0.113.0/24", &p).is_none());
    assert!(export(&w, target(w.ebgp2, true), "203.0.113.0/24", &p).is_some());
    let p = from_peer(w.ibgp);
    assert!(export(&w, target(w.ibgp, false), "203.0.113.0/24", &p).is_none());
    assert!(export(&w, target(w.ebgp, true), "203.0.113.0/24", &p).is_some());
}

/// §9.2: a prefix that was advertised and is no longer exported is withdrawn, once; one that
/// was never advertised is not; a changed source set is announced again (an implicit
/// withdraw), an unchanged one is not resent.
#[test]
fn withdrawn_when_no_longer_exported() {
    let w = world();
    let policy = Policy::accept_all();
    let idx = PolicyIndex::new(&policy);
    let mut ex = Exporter::new(target(w.ibgp, false), &policy, &idx);
    let mut out: PrefixMap<OutEntry> = PrefixMap::new();
    let prefix = net("203.0.113.0/24");
    let mut step = |ex: &mut Exporter<'_>, best: Option<&Path>| {
        let new = ex.export(&prefix, best, &w.sources);
        update_out(
            &mut out,
            prefix,
            new.as_ref().map(|(e, a)| (e.clone(), a)),
            None,
        )
    };
    let ebgp_path = from_peer(w.ebgp);
    assert_eq!(step(&mut ex, Some(&ebgp_path)), OutChange::Announce);
    assert_eq!(step(&mut ex, Some(&ebgp_path)), OutChange::Unchanged);
    let changed = path(
        w.ebgp,
        PathAttributes {
            med: Some(7),
            ..learnt()
        },
        NextHop::V4(THEIR_V4),
    );
    assert_eq!(step(&mut ex, Some(&changed)), OutChange::Announce);
    // The best path is now one from another internal peer: not exportable to iBGP.
    let ibgp_path = from_peer(w.ibgp2);
    assert_eq!(step(&mut ex, Some(&ibgp_path)), OutChange::Withdraw);
    assert_eq!(step(&mut ex, Some(&ibgp_path)), OutChange::Unchanged);
    // Announced again, then the prefix disappears from the Loc-RIB.
    assert_eq!(step(&mut ex, Some(&ebgp_path)), OutChange::Announce);
    assert_eq!(step(&mut ex, None), OutChange::Withdraw);
    assert_eq!(step(&mut ex, None), OutChange::Unchanged);
}

// ===== RFC 4271 §5.1: attributes per peer type =====

/// §5.1.2: towards an external peer our AS is prepended to the leading AS_SEQUENCE, or put
/// in a new one when the path is empty, starts with an AS_SET or its sequence is full (255
/// ASes); towards an internal peer the AS_PATH is unchanged (our own routes: empty).
#[test]
fn as_path_prepended_towards_ebgp_only() {
    let w = world();
    let p = from_peer(w.ebgp);
    let a = export(&w, target(w.ebgp2, true), "203.0.113.0/24", &p).unwrap();
    assert_eq!(a.path.as_path.segments, seq(&[LOCAL_AS, 65010, 65020]));
    let a = export(&w, target(w.ibgp, false), "203.0.113.0/24", &p).unwrap();
    assert_eq!(a.path.as_path.segments, seq(&[65010, 65020]));

    let own = local(PathAttributes::default(), true);
    let a = export(&w, target(w.ebgp, true), "203.0.113.0/24", &own).unwrap();
    assert_eq!(a.path.as_path.segments, seq(&[LOCAL_AS]));
    let a = export(&w, target(w.ibgp, false), "203.0.113.0/24", &own).unwrap();
    assert!(a.path.as_path.segments.is_empty());

    let with = |segments: Vec<AsSegment>| {
        path(
            w.ebgp,
            PathAttributes {
                as_path: AsPath { segments },
                ..learnt()
            },
            NextHop::V4(THEIR_V4),
        )
    };
    let set = with(vec![
        AsSegment::Set(vec![1, 2]),
        AsSegment::Sequence(vec![3]),
    ]);
    let a = export(&w, target(w.ebgp2, true), "203.0.113.0/24", &set).unwrap();
    assert_eq!(
        a.path.as_path.segments,
        vec![
            AsSegment::Sequence(vec![LOCAL_AS]),
            AsSegment::Set(vec![1, 2]),
            AsSegment::Sequence(vec![3]),
        ]
    );
    let full: Vec<u32> = (1..=255).collect();
    let a = export(
        &w,
        target(w.ebgp2, true),
        "203.0.113.0/24",
        &with(seq(&full)),
    )
    .unwrap();
    assert_eq!(
        a.path.as_path.segments,
        vec![
            AsSegment::Sequence(vec![LOCAL_AS]),
            AsSegment::Sequence(full)
        ]
    );
    let almost: Vec<u32> = (1..=254).collect();
    let a = export(
        &w,
        target(w.ebgp2, true),
        "203.0.113.0/24",
        &with(seq(&almost)),
    )
    .unwrap();
    let mut prepended = vec![LOCAL_AS];
    prepended.extend(almost);
    assert_eq!(a.path.as_path.segments, seq(&prepended));
}

/// §5.1.3: towards an external peer the next hop is our address on the session; towards an
/// internal peer a learnt next hop is passed unchanged, while our own routes, paths without
/// a next hop and routes whose export statement says next-hop-self get ours.
#[test]
fn next_hop_self_towards_ebgp_kept_towards_ibgp() {
    let w = world();
    let p = from_peer(w.ebgp);
    let a = export(&w, target(w.ebgp2, true), "203.0.113.0/24", &p).unwrap();
    assert_eq!(a.next_hop, NextHop::V4(OUR_V4));
    assert_eq!(a.path.next_hop, Some(OUR_V4), "NEXT_HOP attribute");
    let a = export(&w, target(w.ibgp, false), "203.0.113.0/24", &p).unwrap();
    assert_eq!(a.next_hop, NextHop::V4(THEIR_V4));
    assert_eq!(a.path.next_hop, Some(THEIR_V4));

    let own = local(PathAttributes::default(), true);
    let a = export(&w, target(w.ibgp, false), "203.0.113.0/24", &own).unwrap();
    assert_eq!(a.next_hop, NextHop::V4(OUR_V4));

    let unspecified = path(w.ebgp, learnt(), NextHop::V4(Ipv4Addr::UNSPECIFIED));
    let a = export(&w, target(w.ibgp, false), "203.0.113.0/24", &unspecified).unwrap();
    assert_eq!(a.next_hop, NextHop::V4(OUR_V4));

    let nhs = Policy {
        statements: vec![statement(
            Vec::new(),
            Actions {
                next_hop_self: true,
                ..Actions::default()
            },
        )],
        default_accept: false,
    };
    let a = export_with(&w, target(w.ibgp, false), &nhs, "203.0.113.0/24", &p).unwrap();
    assert_eq!(a.next_hop, NextHop::V4(OUR_V4));
}

/// IPv6 routes carry an IPv6 next hop (in MP_REACH_NLRI, RFC 4760): ours, or our IPv4
/// address v4-mapped on a session that has no IPv6 address of ours; nothing when we have
/// neither. A learnt IPv4 next hop passed to an internal peer is v4-mapped too.
#[test]
fn ipv6_next_hops() {
    let w = world();
    let own = local(PathAttributes::default(), false);
    let v6 = |global| NextHop::V6 {
        global,
        link_local: None,
    };
    let a = export(&w, target(w.ebgp, true), "2001:db8:100::/48", &own).unwrap();
    assert_eq!(a.next_hop, v6(OUR_V6));
    assert_eq!(a.path.next_hop, None, "no NEXT_HOP attribute for IPv6");
    let v4_only = Target {
        nh_v6: None,
        ..target(w.ebgp, true)
    };
    let a = export(&w, v4_only.clone(), "2001:db8:100::/48", &own).unwrap();
    assert_eq!(a.next_hop, v6(OUR_V4.to_ipv6_mapped()));
    let neither = Target {
        nh_v4: None,
        ..v4_only
    };
    assert!(export(&w, neither, "2001:db8:100::/48", &own).is_none());

    let theirs = Ipv6Addr::new(0x2001, 0xdb8, 9, 0, 0, 0, 0, 7);
    let p = path(w.ebgp, learnt(), v6(theirs));
    let a = export(&w, target(w.ibgp, false), "2001:db8:100::/48", &p).unwrap();
    assert_eq!(a.next_hop, v6(theirs));
    let p = from_peer(w.ebgp);
    let a = export(&w, target(w.ibgp, false), "2001:db8:100::/48", &p).unwrap();
    assert_eq!(a.next_hop, v6(THEIR_V4.to_ipv6_mapped()));
}

/// RFC 8950: an IPv4 route may carry an IPv6 next hop only when extended next hop is
/// negotiated for IPv4 unicast; otherwise a session without an IPv4 address of ours does not
/// get IPv4 routes, and a learnt IPv6 next hop is not passed on.
#[test]
fn ipv4_routes_with_ipv6_next_hops_need_rfc8950() {
    let w = world();
    let own = local(PathAttributes::default(), true);
    let v6_session = Target {
        nh_v4: None,
        ..target(w.ebgp, true)
    };
    assert!(export(&w, v6_session.clone(), "203.0.113.0/24", &own).is_none());
    let ext = Target {
        ext_nh_v4: true,
        ..v6_session
    };
    let a = export(&w, ext, "203.0.113.0/24", &own).unwrap();
    assert_eq!(
        a.next_hop,
        NextHop::V6 {
            global: OUR_V6,
            link_local: None
        }
    );
    assert_eq!(a.path.next_hop, None);

    let theirs = NextHop::V6 {
        global: Ipv6Addr::new(0x2001, 0xdb8, 9, 0, 0, 0, 0, 7),
        link_local: None,
    };
    let p = path(w.ebgp, learnt(), theirs);
    assert!(export(&w, target(w.ibgp, false), "203.0.113.0/24", &p).is_none());
    let ext = Target {
        ext_nh_v4: true,
        ..target(w.ibgp, false)
    };
    let a = export(&w, ext, "203.0.113.0/24", &p).unwrap();
    assert_eq!(a.next_hop, theirs);
}

/// §5.1.4: a MED learnt from a neighbouring AS is not passed on to another AS, while our own
/// routes' MED is; internal peers get the MED as learnt; an export statement's MED is sent
/// to either.
#[test]
fn med_not_passed_between_ases() {
    let w = world();
    let p = from_peer(w.ebgp);
    let a = export(&w, target(w.ebgp2, true), "203.0.113.0/24", &p).unwrap();
    assert_eq!(a.path.med, None);
    let a = export(&w, target(w.ibgp, false), "203.0.113.0/24", &p).unwrap();
    assert_eq!(a.path.med, Some(50));
    let from_ibgp = from_peer(w.ibgp);
    let a = export(&w, target(w.ebgp, true), "203.0.113.0/24", &from_ibgp).unwrap();
    assert_eq!(
        a.path.med, None,
        "learnt over iBGP, from another AS all the same"
    );
    let own = local(
        PathAttributes {
            med: Some(10),
            ..PathAttributes::default()
        },
        true,
    );
    let a = export(&w, target(w.ebgp, true), "203.0.113.0/24", &own).unwrap();
    assert_eq!(a.path.med, Some(10));
    let set_med = Policy {
        statements: vec![statement(
            Vec::new(),
            Actions {
                med: Some(77),
                ..Actions::default()
            },
        )],
        default_accept: false,
    };
    let a = export_with(&w, target(w.ebgp2, true), &set_med, "203.0.113.0/24", &p).unwrap();
    assert_eq!(a.path.med, Some(77));
}

/// §5.1.5: LOCAL_PREF goes to internal peers only: the path's own, the default (100) when
/// it has none, or the export statement's; never to external peers, even when a statement
/// sets it.
#[test]
fn local_pref_only_to_ibgp() {
    let w = world();
    let p = from_peer(w.ebgp);
    let a = export(&w, target(w.ibgp, false), "203.0.113.0/24", &p).unwrap();
    assert_eq!(a.path.local_pref, Some(200));
    let a = export(&w, target(w.ebgp2, true), "203.0.113.0/24", &p).unwrap();
    assert_eq!(a.path.local_pref, None);
    let own = local(PathAttributes::default(), true);
    let a = export(&w, target(w.ibgp, false), "203.0.113.0/24", &own).unwrap();
    assert_eq!(a.path.local_pref, Some(100));

    let set_lp = Policy {
        statements: vec![statement(
            Vec::new(),
            Actions {
                local_pref: Some(300),
                ..Actions::default()
            },
        )],
        default_accept: false,
    };
    let a = export_with(&w, target(w.ibgp, false), &set_lp, "203.0.113.0/24", &own).unwrap();
    assert_eq!(a.path.local_pref, Some(300));
    let a = export_with(&w, target(w.ebgp, true), &set_lp, "203.0.113.0/24", &own).unwrap();
    assert_eq!(a.path.local_pref, None);
}

/// RFC 4456: ORIGINATOR_ID and CLUSTER_LIST are optional non-transitive and stay inside
/// the AS: removed towards external peers, kept towards internal ones.
#[test]
fn reflection_attributes_stay_inside_the_as() {
    let w = world();
    let p = from_peer(w.ibgp);
    let a = export(&w, target(w.ebgp, true), "203.0.113.0/24", &p).unwrap();
    assert_eq!(a.path.originator_id, None);
    assert!(a.path.cluster_list.is_empty());
    let p = from_peer(w.ebgp);
    let a = export(&w, target(w.ibgp, false), "203.0.113.0/24", &p).unwrap();
    assert_eq!(a.path.originator_id, Some(Ipv4Addr::new(10, 9, 9, 9)));
    assert_eq!(a.path.cluster_list, vec![Ipv4Addr::new(10, 8, 8, 8)]);
}

// ===== RFC 1997 well-known communities =====

/// RFC 1997: a route with NO_ADVERTISE goes to no peer; one with NO_EXPORT stays inside
/// the AS (internal peers only), and so does one with NO_EXPORT_SUBCONFED (no external
/// peer; without confederations that is the same boundary). Other communities are passed on
/// unchanged.
#[test]
fn well_known_communities() {
    let w = world();
    let with = |c: Community| {
        path(
            w.ebgp,
            PathAttributes {
                communities: vec![Community(65010 << 16 | 1), c],
                ..learnt()
            },
            NextHop::V4(THEIR_V4),
        )
    };
    let no_adv = with(NO_ADVERTISE);
    assert!(export(&w, target(w.ibgp, false), "203.0.113.0/24", &no_adv).is_none());
    assert!(export(&w, target(w.ebgp2, true), "203.0.113.0/24", &no_adv).is_none());
    let no_exp = with(NO_EXPORT);
    assert!(export(&w, target(w.ebgp2, true), "203.0.113.0/24", &no_exp).is_none());
    let a = export(&w, target(w.ibgp, false), "203.0.113.0/24", &no_exp).unwrap();
    assert_eq!(
        a.path.communities,
        vec![Community(65010 << 16 | 1), NO_EXPORT]
    );
    let no_exp_sub = with(NO_EXPORT_SUBCONFED);
    assert!(export(&w, target(w.ebgp2, true), "203.0.113.0/24", &no_exp_sub).is_none());
    assert!(export(&w, target(w.ibgp, false), "203.0.113.0/24", &no_exp_sub).is_some());
    let a = export(
        &w,
        target(w.ebgp2, true),
        "203.0.113.0/24",
        &from_peer(w.ebgp),
    )
    .unwrap();
    assert_eq!(a.path.communities, vec![Community(65010 << 16 | 1)]);
}

// ===== the export policy =====

/// Statements are tried in order and the first whose prefixes match decides (a rejecting
/// statement withholds the route even if a later one would accept it; ranges follow
/// ge/le); an unmatched prefix follows `default_accept` (Cilium: reject).
#[test]
fn export_policy_first_match_and_default() {
    let w = world();
    let own = local(PathAttributes::default(), true);
    let mut policy = Policy {
        statements: vec![
            statement(
                vec![PrefixMatch::exact(net("203.0.113.0/24"))],
                Actions {
                    reject: true,
                    ..Actions::default()
                },
            ),
            statement(
                vec![PrefixMatch::orlonger(net("203.0.113.0/24"))],
                Actions {
                    add_communities: vec![65001 << 16 | 5],
                    ..Actions::default()
                },
            ),
        ],
        default_accept: false,
    };
    let t = || target(w.ebgp, true);
    assert!(export_with(&w, t(), &policy, "203.0.113.0/24", &own).is_none());
    let a = export_with(&w, t(), &policy, "203.0.113.128/25", &own).unwrap();
    assert_eq!(a.path.communities, vec![Community(65001 << 16 | 5)]);
    assert!(export_with(&w, t(), &policy, "198.51.100.0/24", &own).is_none());
    policy.default_accept = true;
    let a = export_with(&w, t(), &policy, "198.51.100.0/24", &own).unwrap();
    assert!(
        a.path.communities.is_empty(),
        "accepted by default, unchanged"
    );
}

/// A statement's communities and large communities are added, each once (one the path
/// already carries is not repeated), towards internal and external peers alike.
#[test]
fn export_policy_adds_communities_once() {
    let w = world();
    let policy = Policy {
        statements: vec![statement(
            vec![PrefixMatch::exact(net("203.0.113.0/24"))],
            Actions {
                add_communities: vec![65010 << 16 | 1, 65001 << 16 | 2],
                add_large_communities: vec![[65001, 1, 2]],
                ..Actions::default()
            },
        )],
        default_accept: false,
    };
    let p = path(
        w.ebgp,
        PathAttributes {
            large_communities: vec![LargeCommunity {
                global_admin: 65010,
                local1: 0,
                local2: 0,
            }],
            ..learnt()
        },
        NextHop::V4(THEIR_V4),
    );
    for t in [target(w.ibgp, false), target(w.ebgp2, true)] {
        let a = export_with(&w, t, &policy, "203.0.113.0/24", &p).unwrap();
        assert_eq!(
            a.path.communities,
            vec![Community(65010 << 16 | 1), Community(65001 << 16 | 2)]
        );
        assert_eq!(
            a.path.large_communities,
            vec![
                LargeCommunity {
                    global_admin: 65010,
                    local1: 0,
                    local2: 0
                },
                LargeCommunity {
                    global_admin: 65001,
                    local1: 1,
                    local2: 2
                },
            ]
        );
    }
}

/// Prefixes exported from the same source attribute set by the same statement share one
/// exported set (encoded once, packed into the same UPDATEs); another statement gives
/// another set, and the Adj-RIB-Out entry remembers which statement admitted it.
#[test]
fn attribute_sets_are_shared_per_source_and_statement() {
    let w = world();
    let policy = Policy {
        statements: vec![
            statement(
                vec![PrefixMatch::orlonger(net("203.0.113.0/24"))],
                Actions::default(),
            ),
            statement(
                vec![PrefixMatch::orlonger(net("198.51.100.0/24"))],
                Actions {
                    add_communities: vec![1],
                    ..Actions::default()
                },
            ),
        ],
        default_accept: false,
    };
    let idx = PolicyIndex::new(&policy);
    let mut ex = Exporter::new(target(w.ebgp2, true), &policy, &idx);
    let p = from_peer(w.ebgp);
    let mut go = |prefix: &str| ex.export(&net(prefix), Some(&p), &w.sources).unwrap();
    let (e1, a1) = go("203.0.113.0/25");
    let (e2, a2) = go("203.0.113.128/25");
    let (e3, a3) = go("198.51.100.0/24");
    assert!(Arc::ptr_eq(&a1, &a2));
    assert!(!Arc::ptr_eq(&a1, &a3));
    assert!(e1.same(&e2));
    assert!(!e1.same(&e3));
    assert_eq!(e3.verdict(), crate::policy::Verdict::Accept(Some(1)));
    assert!(Arc::ptr_eq(&ex.attributes(&e3, true).unwrap(), &a3));
}

/// After an in-place change of the export configuration, what counts is what the peer was
/// sent: a statement with new actions (same index) or a new next hop is announced again
/// (§9.2: an UPDATE when what we advertise changes); a statement that only moved (a new one
/// inserted before it) changes nothing on the wire and is not resent, but the entry follows
/// the new index.
#[test]
fn in_place_changes_are_judged_by_the_attributes_sent() {
    let w = world();
    let own = local(PathAttributes::default(), true);
    let prefix = net("203.0.113.0/24");
    let tag = |c: u32| {
        statement(
            vec![PrefixMatch::exact(prefix)],
            Actions {
                add_communities: vec![c],
                ..Actions::default()
            },
        )
    };
    let policy = |statements| Policy {
        statements,
        default_accept: false,
    };
    // Export under `now` after `before`, the Adj-RIB-Out holding what `before` gave.
    let change = |before: &PreviousExport, now_t: Target, now: &Policy| {
        let mut out: PrefixMap<OutEntry> = PrefixMap::new();
        let mut ex = before.exporter();
        let (e, a) = ex.export(&prefix, Some(&own), &w.sources).unwrap();
        assert_eq!(
            update_out(&mut out, prefix, Some((e, &a)), None),
            OutChange::Announce
        );
        let idx = PolicyIndex::new(now);
        let mut ex = Exporter::new(now_t, now, &idx);
        let new = ex.export(&prefix, Some(&own), &w.sources);
        let mut prev = Before::Config(before.exporter());
        let c = update_out(
            &mut out,
            prefix,
            new.as_ref().map(|(e, a)| (e.clone(), a)),
            Some(&mut prev),
        );
        (c, out.get(&prefix).map(OutEntry::verdict))
    };
    let before = |statements| {
        let p = policy(statements);
        PreviousExport {
            target: target(w.ibgp, false),
            index: PolicyIndex::new(&p),
            policy: p,
        }
    };
    let t = || target(w.ibgp, false);
    let accept = |i| Some(crate::policy::Verdict::Accept(Some(i)));

    let b = before(vec![tag(1)]);
    assert_eq!(
        change(&b, t(), &policy(vec![tag(2)])),
        (OutChange::Announce, accept(0)),
        "same statement, other community"
    );
    assert_eq!(
        change(&b, t(), &policy(vec![tag(1)])),
        (OutChange::Unchanged, accept(0)),
        "nothing changed"
    );
    let other = statement(
        vec![PrefixMatch::exact(net("198.51.100.0/24"))],
        Actions::default(),
    );
    assert_eq!(
        change(&b, t(), &policy(vec![other, tag(1)])),
        (OutChange::Unchanged, accept(1)),
        "the statement moved, the attributes did not"
    );
    let moved_nh = Target {
        nh_v4: Some(Ipv4Addr::new(192, 0, 2, 99)),
        ..t()
    };
    assert_eq!(
        change(&b, moved_nh, &policy(vec![tag(1)])),
        (OutChange::Announce, accept(0)),
        "another next hop"
    );
    assert_eq!(
        change(&b, t(), &policy(Vec::new())),
        (OutChange::Withdraw, None),
        "no longer exported"
    );
}

/// An exact-prefix table has one statement per prefix: prefixes whose statements have equal
/// actions (and the same source set) share one attribute set, so they are packed into the
/// same UPDATEs; other actions give another set.
#[test]
fn equal_actions_of_different_statements_share_attributes() {
    let w = world();
    let tag = |c: u32| Actions {
        add_communities: vec![(LOCAL_AS << 16) | c],
        ..Actions::default()
    };
    let exact = |p: &str, a: Actions| Statement {
        prefixes: vec![PrefixMatch::exact(net(p))],
        actions: a,
    };
    let policy = Policy {
        statements: vec![
            exact("10.1.0.0/24", tag(1)),
            exact("10.2.0.0/24", tag(1)),
            exact("10.3.0.0/24", tag(2)),
        ],
        default_accept: false,
    };
    let idx = PolicyIndex::new(&policy);
    let mut ex = Exporter::new(target(w.ebgp, true), &policy, &idx);
    let own = local(PathAttributes::default(), true);
    let mut export = |p: &str| ex.export(&net(p), Some(&own), &w.sources).unwrap();
    let (e1, a1) = export("10.1.0.0/24");
    let (e2, a2) = export("10.2.0.0/24");
    let (_, a3) = export("10.3.0.0/24");
    assert_ne!(e1.verdict(), e2.verdict(), "two statements");
    assert!(Arc::ptr_eq(&a1, &a2), "equal actions: one set");
    assert!(!Arc::ptr_eq(&a1, &a3));
    assert_eq!(
        a3.path.communities,
        vec![Community((LOCAL_AS << 16) | 2)],
        "the other statement's actions"
    );
}
