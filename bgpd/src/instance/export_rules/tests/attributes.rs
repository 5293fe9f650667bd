//! RFC 4271 §5.1: the attributes sent per peer type (AS_PATH, NEXT_HOP, MED, LOCAL_PREF),
//! next hops per family (RFC 4760, RFC 8950) and RFC 4456's attributes.

use super::*;

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
