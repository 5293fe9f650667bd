//! Unit tests of the RIBs: the decision process (RFC 4271 §9.1.2), local routes, ECMP next
//! hops, the attribute interner, change detection and the compact entry layout.

use super::*;
use bgpd_wire::{AsPath, Origin};

fn p(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn pa(path: &[u32], lp: Option<u32>, med: Option<u32>, origin: Origin) -> PathAttributes {
    PathAttributes {
        origin,
        as_path: AsPath {
            segments: vec![AsSegment::Sequence(path.to_vec())],
        },
        local_pref: lp,
        med,
        ..Default::default()
    }
}

struct Fx {
    sources: Sources,
    interner: Interner,
    table: Table,
    now: Stamp,
}

impl Fx {
    fn new() -> Self {
        let mut sources = Sources::default();
        sources.set(
            LOCAL,
            SourceInfo {
                address: "0.0.0.0".parse().unwrap(),
                router_id: "1.1.1.1".parse().unwrap(),
                ebgp: false,
            },
        );
        // Peers 1..=4: 1,2 eBGP; 3,4 iBGP; router ids increase with the id.
        for i in 1..=4u8 {
            sources.set(
                u32::from(i),
                SourceInfo {
                    address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)),
                    router_id: Ipv4Addr::new(9, 9, 9, i),
                    ebgp: i <= 2,
                },
            );
        }
        Self {
            sources,
            interner: Interner::default(),
            table: Table::new(Family::Ipv4Unicast),
            now: 0,
        }
    }

    fn set(&mut self, peer: PeerId, prefix: &str, a: Option<PathAttributes>) -> bool {
        let path = a.map(|a| {
            let nh = NextHop::V4(Ipv4Addr::new(10, 0, 0, peer as u8));
            (self.interner.attrs(Arc::new(a), nh), 0)
        });
        self.table
            .set(p(prefix), peer, path, self.now, &self.sources)
    }

    fn best_peer(&self, prefix: &str) -> Option<PeerId> {
        self.table.best(&p(prefix)).map(|x| x.peer)
    }
}

#[test]
fn interner_shares_equal_sets_and_sweeps() {
    let mut i = Interner::default();
    let nh = NextHop::V4(Ipv4Addr::new(192, 0, 2, 1));
    let a = i.attrs(Arc::new(pa(&[1, 2], None, None, Origin::Igp)), nh);
    let b = i.attrs(Arc::new(pa(&[1, 2], None, None, Origin::Igp)), nh);
    assert!(Arc::ptr_eq(&a, &b));
    let c = i.attrs(Arc::new(pa(&[1, 2, 3], None, None, Origin::Igp)), nh);
    assert!(!Arc::ptr_eq(&a, &c));
    assert_eq!(i.len(), 2);
    drop((a, b, c));
    i.sweep();
    assert!(i.is_empty());
}

#[test]
fn local_pref_then_path_length_then_origin() {
    let mut f = Fx::new();
    assert!(f.set(
        1,
        "192.0.2.0/24",
        Some(pa(&[100, 200], None, None, Origin::Igp))
    ));
    assert!(f.set(
        3,
        "192.0.2.0/24",
        Some(pa(&[100, 200, 300], Some(200), None, Origin::Igp))
    ));
    assert_eq!(
        f.best_peer("192.0.2.0/24"),
        Some(3),
        "higher local-pref wins"
    );
    assert!(f.set(
        3,
        "192.0.2.0/24",
        Some(pa(&[100, 200, 300], Some(100), None, Origin::Igp))
    ));
    assert_eq!(f.best_peer("192.0.2.0/24"), Some(1), "shorter AS path wins");
    f.set(
        2,
        "198.51.100.0/24",
        Some(pa(&[7, 8], None, None, Origin::Incomplete)),
    );
    f.set(
        1,
        "198.51.100.0/24",
        Some(pa(&[5, 6], None, None, Origin::Egp)),
    );
    assert_eq!(f.best_peer("198.51.100.0/24"), Some(1), "lower origin wins");
}

#[test]
fn med_only_between_same_neighbour_as() {
    let mut f = Fx::new();
    // Same neighbour AS 100: lower MED wins even though router id is higher.
    f.set(
        1,
        "192.0.2.0/24",
        Some(pa(&[100, 1], None, Some(50), Origin::Igp)),
    );
    f.set(
        2,
        "192.0.2.0/24",
        Some(pa(&[100, 2], None, Some(10), Origin::Igp)),
    );
    assert_eq!(f.best_peer("192.0.2.0/24"), Some(2));
    // Different neighbour AS: MED ignored, router id decides (peer 1 has the lower id).
    f.set(
        1,
        "198.51.100.0/24",
        Some(pa(&[100, 1], None, Some(50), Origin::Igp)),
    );
    f.set(
        2,
        "198.51.100.0/24",
        Some(pa(&[200, 2], None, Some(10), Origin::Igp)),
    );
    assert_eq!(f.best_peer("198.51.100.0/24"), Some(1));
}

#[test]
fn ebgp_over_ibgp_and_router_id_tiebreak() {
    let mut f = Fx::new();
    f.set(3, "192.0.2.0/24", Some(pa(&[100], None, None, Origin::Igp)));
    f.set(2, "192.0.2.0/24", Some(pa(&[200], None, None, Origin::Igp)));
    assert_eq!(f.best_peer("192.0.2.0/24"), Some(2), "eBGP preferred");
    f.set(
        4,
        "198.51.100.0/24",
        Some(pa(&[100], None, None, Origin::Igp)),
    );
    f.set(
        3,
        "198.51.100.0/24",
        Some(pa(&[100], None, None, Origin::Igp)),
    );
    assert_eq!(f.best_peer("198.51.100.0/24"), Some(3), "lower router id");
}

#[test]
fn local_routes_win_and_withdraw_reselects() {
    let mut f = Fx::new();
    f.set(
        1,
        "192.0.2.0/24",
        Some(pa(&[100], Some(500), None, Origin::Igp)),
    );
    assert!(f.set(
        LOCAL,
        "192.0.2.0/24",
        Some(pa(&[], None, None, Origin::Incomplete))
    ));
    assert_eq!(f.best_peer("192.0.2.0/24"), Some(LOCAL));
    assert!(f.set(LOCAL, "192.0.2.0/24", None));
    assert_eq!(f.best_peer("192.0.2.0/24"), Some(1));
    assert!(f.set(1, "192.0.2.0/24", None));
    assert!(f.table.is_empty());
    assert!(
        !f.set(1, "192.0.2.0/24", None),
        "withdrawing nothing changes nothing"
    );
}

#[test]
fn ecmp_next_hops_and_rejected_paths() {
    let mut f = Fx::new();
    f.set(
        1,
        "192.0.2.0/24",
        Some(pa(&[100, 5], None, None, Origin::Igp)),
    );
    assert!(f.set(
        2,
        "192.0.2.0/24",
        Some(pa(&[100, 5], None, None, Origin::Igp))
    ));
    let b = f.table.best_of(&p("192.0.2.0/24"), &f.sources).unwrap();
    assert_eq!(b.peer, 1);
    assert_eq!(
        b.next_hops,
        vec![
            "10.0.0.1".parse::<IpAddr>().unwrap(),
            "10.0.0.2".parse().unwrap()
        ]
    );
    // A rejected path is held (Adj-RIB-In) but never chosen.
    let a = f.interner.attrs(
        Arc::new(pa(&[1], Some(900), None, Origin::Igp)),
        NextHop::V4(Ipv4Addr::new(10, 0, 0, 3)),
    );
    f.table.set(
        p("203.0.113.0/24"),
        3,
        Some((a, flags::REJECTED)),
        0,
        &f.sources,
    );
    assert!(f.table.best(&p("203.0.113.0/24")).is_none());
    assert_eq!(f.table.count_peer(3), (1, 0));
}

#[test]
fn compact_layout() {
    assert_eq!(std::mem::size_of::<Path>(), 16);
    assert_eq!(std::mem::size_of::<Paths>(), 16);
    let mut f = Fx::new();
    for peer in 1..=4 {
        f.set(
            peer,
            "192.0.2.0/24",
            Some(pa(&[100, u32::from(peer as u8)], None, None, Origin::Igp)),
        );
    }
    assert_eq!(f.table.get(&p("192.0.2.0/24")).unwrap().len(), 4);
    for peer in 1..=4 {
        f.set(peer, "192.0.2.0/24", None);
    }
    assert!(f.table.is_empty());
}

#[test]
fn identical_update_is_not_a_change() {
    let mut f = Fx::new();
    assert!(f.set(1, "192.0.2.0/24", Some(pa(&[100], None, None, Origin::Igp))));
    assert!(!f.set(1, "192.0.2.0/24", Some(pa(&[100], None, None, Origin::Igp))));
}

#[test]
fn stamps_restart_on_changed_attributes_only() {
    let mut f = Fx::new();
    let since = |f: &Fx, peer: PeerId| {
        f.table
            .get(&p("192.0.2.0/24"))
            .unwrap()
            .iter()
            .find(|x| x.peer == peer)
            .unwrap()
            .since()
    };
    f.now = 10;
    f.set(1, "192.0.2.0/24", Some(pa(&[100], None, None, Origin::Igp)));
    f.now = 20;
    f.set(2, "192.0.2.0/24", Some(pa(&[200], None, None, Origin::Igp)));
    assert_eq!(
        (since(&f, 1), since(&f, 2)),
        (10, 20),
        "each path has its own stamp"
    );
    // Identical re-announcement: the clock keeps running.
    f.now = 30;
    f.set(1, "192.0.2.0/24", Some(pa(&[100], None, None, Origin::Igp)));
    assert_eq!(since(&f, 1), 10);
    // Same attributes, flags changed (stale, then refreshed after a restart): kept.
    f.table.flag_peer(1, flags::STALE);
    assert_eq!(since(&f, 1), 10);
    assert!(
        f.table
            .get(&p("192.0.2.0/24"))
            .unwrap()
            .iter()
            .any(Path::is_stale)
    );
    f.set(1, "192.0.2.0/24", Some(pa(&[100], None, None, Origin::Igp)));
    assert_eq!(since(&f, 1), 10);
    assert!(
        !f.table
            .get(&p("192.0.2.0/24"))
            .unwrap()
            .iter()
            .any(Path::is_stale)
    );
    // Implicit withdraw with other attributes: the clock restarts.
    f.now = 40;
    f.set(
        1,
        "192.0.2.0/24",
        Some(pa(&[100], None, Some(5), Origin::Igp)),
    );
    assert_eq!((since(&f, 1), since(&f, 2)), (40, 20));
    // Withdraw and re-learn: a new path.
    f.set(1, "192.0.2.0/24", None);
    f.now = 50;
    f.set(
        1,
        "192.0.2.0/24",
        Some(pa(&[100], None, Some(5), Origin::Igp)),
    );
    assert_eq!(since(&f, 1), 50);
}

#[test]
fn stamp_and_flags_share_a_word() {
    use std::time::Duration;
    let nh = NextHop::V4(Ipv4Addr::new(192, 0, 2, 1));
    let a = Interner::default().attrs(Arc::new(PathAttributes::default()), nh);
    let mut x = Path::new(1, flags::REJECTED, a.clone(), STAMP_MAX);
    assert_eq!((x.flags(), x.since()), (flags::REJECTED, STAMP_MAX));
    x.set_flags(flags::STALE | flags::REJECTED);
    assert_eq!((x.flags(), x.since()), (3, STAMP_MAX));
    x.set_flags(0);
    assert_eq!((x.flags(), x.since()), (0, STAMP_MAX));
    let y = Path::new(1, 0, a, u32::MAX);
    assert_eq!(y.since(), STAMP_MAX, "saturates");
    assert_eq!(stamp(Duration::from_millis(2999)), 2);
    assert_eq!(stamp(Duration::from_secs(u64::MAX)), STAMP_MAX);
    assert_eq!(stamp(Duration::from_secs(1 << 40)), STAMP_MAX);
    assert_eq!(
        age(2, Duration::from_millis(7500)),
        Duration::from_millis(5500)
    );
    assert_eq!(age(9, Duration::from_secs(3)), Duration::ZERO);
}

#[test]
fn new_prefix_fast_path_reports_changes_like_the_decision() {
    let mut f = Fx::new();
    let nh = NextHop::V4(Ipv4Addr::new(10, 0, 0, 1));
    let a = f
        .interner
        .attrs(Arc::new(pa(&[100], None, None, Origin::Igp)), nh);
    // A new prefix whose only path the import policy rejected: no Loc-RIB change, no best.
    let x = p("192.0.2.0/24");
    assert!(
        !f.table
            .set(x, 1, Some((a.clone(), flags::REJECTED)), 0, &f.sources)
    );
    assert!(f.table.best(&x).is_none());
    assert_eq!(f.table.get(&x).map(|ps| ps.len()), Some(1));
    // Accepted on re-announcement: now it is the best.
    assert!(f.table.set(x, 1, Some((a.clone(), 0)), 0, &f.sources));
    assert_eq!(f.best_peer("192.0.2.0/24"), Some(1));
    // A new accepted prefix is a change at once; the second path goes through the decision.
    assert!(f.set(
        1,
        "198.51.100.0/24",
        Some(pa(&[100], None, None, Origin::Igp))
    ));
    // Peer 2's longer path loses (§9.1.2.2 a): not a change.
    assert!(!f.set(
        2,
        "198.51.100.0/24",
        Some(pa(&[200, 300], None, None, Origin::Igp))
    ));
    assert_eq!(f.best_peer("198.51.100.0/24"), Some(1));
    assert_eq!(
        f.table.get(&p("198.51.100.0/24")).map(|ps| ps.len()),
        Some(2)
    );
    // Withdrawing down to one path and to none.
    assert!(!f.set(2, "198.51.100.0/24", None));
    assert!(f.set(1, "198.51.100.0/24", None));
    assert!(f.table.get(&p("198.51.100.0/24")).is_none());
}

#[test]
fn attrs_of_an_interned_path_are_the_interned_attrs() {
    let mut i = Interner::default();
    let nh = NextHop::V4(Ipv4Addr::new(192, 0, 2, 1));
    let path = i.path(Arc::new(pa(&[1, 2], None, None, Origin::Igp)));
    let a = i.attrs_of_interned(path.clone(), nh);
    let b = i.attrs(Arc::new(pa(&[1, 2], None, None, Origin::Igp)), nh);
    assert!(Arc::ptr_eq(&a, &b));
    assert!(Arc::ptr_eq(&a.path, &path));
    assert_eq!(i.len(), 1);
}

#[test]
fn paths_grow_from_one_to_many_in_order() {
    let nh = NextHop::V4(Ipv4Addr::new(192, 0, 2, 1));
    let a = Interner::default().attrs(Arc::new(PathAttributes::default()), nh);
    let mut ps = Paths::default();
    for peer in 1..=3 {
        ps.push(Path::new(peer, 0, a.clone(), 0));
    }
    assert_eq!(ps.iter().map(|p| p.peer).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(ps.remove(1).map(|p| p.peer), Some(2));
    assert_eq!(ps.remove(0).map(|p| p.peer), Some(1));
    assert!(matches!(ps, Paths::One(ref p) if p.peer == 3));
}
