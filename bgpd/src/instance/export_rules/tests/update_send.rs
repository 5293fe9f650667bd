//! RFC 4271 §9.2 Update-Send (no iBGP to iBGP, withdrawals), nothing back to the source, and
//! RFC 1997 well-known communities: whether a best path is exported at all.

use super::*;

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
