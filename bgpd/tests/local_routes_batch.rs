//! `add_local_routes` / `remove_local_routes` against the per-route calls in a loop, each on
//! its own speaker with a scripted peer over loopback (no namespace): the same Loc-RIB,
//! Adj-RIB-Out and routes on the wire, the batch packed into a few UPDATEs.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use bgpd::{Family, RibKind, RouteEntry, RouteQuery, Speaker, SpeakerConfig};
use bgpd_wire::PathAttributes;
use common::fake::{self, FakePeer, fold};
use ipnet::{IpNet, Ipv4Net};

const BOTH: [Family; 2] = [Family::Ipv4Unicast, Family::Ipv6Unicast];

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn v4(i: u32) -> IpNet {
    IpNet::V4(Ipv4Net::new(Ipv4Addr::from(0x0a64_0000 + i), 32).unwrap())
}

fn v6(i: u32) -> IpNet {
    net(&format!("2001:db8:100::{i:x}/128"))
}

fn peer_addr() -> IpAddr {
    "127.0.0.1".parse().unwrap()
}

/// A speaker (export: the library default, accept all) with one scripted peer of
/// `families`, initial (empty) advertisement read.
async fn speaker(families: &[Family]) -> (Speaker, FakePeer) {
    common::logs();
    let s = Speaker::start(SpeakerConfig::new(65001, "1.1.1.1".parse().unwrap()))
        .await
        .unwrap();
    let l = fake::listener().await;
    s.add_peer(fake::peer_config(&l, families)).await.unwrap();
    let mut peer = FakePeer::accept(&l, families).await;
    assert!(peer.initial(families).await.is_empty());
    (s, peer)
}

async fn rib(s: &Speaker, family: Family, rib: RibKind) -> Vec<RouteEntry> {
    let mut v = s.routes(RouteQuery { family, rib }).await.unwrap();
    for e in &mut v {
        e.age = Default::default();
    }
    v
}

/// Both speakers hold the same Loc-RIB and Adj-RIB-Out in both families.
async fn same_ribs(a: &Speaker, b: &Speaker) {
    for f in BOTH {
        for k in [RibKind::LocRib, RibKind::AdjRibOut(peer_addr())] {
            let (x, y) = (rib(a, f, k).await, rib(b, f, k).await);
            let diff: Vec<_> = x.iter().zip(&y).filter(|(p, q)| p != q).take(3).collect();
            assert!(diff.is_empty(), "{f} {k:?}: {diff:#?}");
            assert_eq!(x.len(), y.len(), "{f} {k:?}");
        }
    }
}

/// Two attribute sets, both families, and one prefix given twice (the last attributes win,
/// as they do in a loop).
fn batch() -> Vec<(IpNet, PathAttributes)> {
    let attrs = |i: u32| PathAttributes {
        med: (i % 2 == 1).then_some(7),
        ..Default::default()
    };
    let mut v: Vec<(IpNet, PathAttributes)> = (0..1000)
        .map(|i| (v4(i), attrs(i)))
        .chain((0..100).map(|i| (v6(i), attrs(i))))
        .collect();
    v.push((v4(0), attrs(1)));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_equals_the_per_route_loop() {
    let ((a, mut pa), (b, mut pb)) = (speaker(&BOTH).await, speaker(&BOTH).await);
    let sentinel = net("10.199.0.1/32");
    let routes = batch();
    a.add_local_routes(routes.clone()).await.unwrap();
    for (p, attrs) in routes.clone() {
        b.add_local_route(Family::of_prefix(&p), p, attrs)
            .await
            .unwrap();
    }
    for s in [&a, &b] {
        s.add_local_route(Family::Ipv4Unicast, sentinel, PathAttributes::default())
            .await
            .unwrap();
    }
    let (ga, gb) = (
        pa.until_announced(sentinel).await,
        pb.until_announced(sentinel).await,
    );
    assert_eq!(fold(&ga), fold(&gb));
    assert_eq!(fold(&ga).len(), 1100 + 1);
    let med = fold(&ga)[&v4(0)].clone().unwrap().attrs.med;
    assert_eq!(med, Some(7), "the last attributes given");
    same_ribs(&a, &b).await;
    // One export for the batch: packed by attribute set (two sets, two families), where the
    // loop sent one UPDATE per route (1100 distinct prefixes; v4(0) twice).
    assert!(pa.updates <= 12, "{} UPDATEs for the batch", pa.updates);
    assert!(pb.updates > 1100, "{} UPDATEs for the loop", pb.updates);

    // Removal: half of them, and prefixes never originated (ignored, as in the loop).
    let gone: Vec<IpNet> = routes
        .iter()
        .map(|(p, _)| *p)
        .step_by(2)
        .chain([net("10.250.0.1/32"), net("2001:db8:250::/48")])
        .collect();
    let (ua, ub) = (pa.updates, pb.updates);
    a.remove_local_routes(gone.clone()).await.unwrap();
    for p in &gone {
        b.remove_local_route(Family::of_prefix(p), *p)
            .await
            .unwrap();
    }
    let sentinel = net("10.199.0.2/32");
    for s in [&a, &b] {
        s.add_local_route(Family::Ipv4Unicast, sentinel, PathAttributes::default())
            .await
            .unwrap();
    }
    let (ga, gb) = (
        pa.until_announced(sentinel).await,
        pb.until_announced(sentinel).await,
    );
    assert_eq!(fold(&ga), fold(&gb));
    let withdrawn: BTreeSet<IpNet> = fold(&ga)
        .into_iter()
        .filter_map(|(p, s)| s.is_none().then_some(p))
        .collect();
    let want: BTreeSet<IpNet> = gone.iter().copied().take(gone.len() - 2).collect();
    assert_eq!(withdrawn, want);
    same_ribs(&a, &b).await;
    assert!(pa.updates - ua <= 4, "{} UPDATEs", pa.updates - ua);
    assert!(pb.updates - ub > 500, "{} UPDATEs", pb.updates - ub);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

/// A batch mixing IPv4 and IPv6 towards a session that carries only IPv4: every route is
/// originated (the Loc-RIB has both families), the peer gets the IPv4 ones only, exactly as
/// with the per-route calls; nothing of the batch is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_batch_to_a_v4_only_session_equals_the_loop() {
    let v4_only = [Family::Ipv4Unicast];
    let ((a, mut pa), (b, mut pb)) = (speaker(&v4_only).await, speaker(&v4_only).await);
    let routes: Vec<(IpNet, PathAttributes)> = (0..50)
        .flat_map(|i| [v6(i), v4(i)])
        .map(|p| (p, PathAttributes::default()))
        .collect();
    a.add_local_routes(routes.clone()).await.unwrap();
    for (p, attrs) in routes {
        b.add_local_route(Family::of_prefix(&p), p, attrs)
            .await
            .unwrap();
    }
    let sentinel = net("10.199.0.1/32");
    for s in [&a, &b] {
        s.add_local_route(Family::Ipv4Unicast, sentinel, PathAttributes::default())
            .await
            .unwrap();
    }
    let (ga, gb) = (
        pa.until_announced(sentinel).await,
        pb.until_announced(sentinel).await,
    );
    assert_eq!(fold(&ga), fold(&gb));
    assert!(fold(&ga).keys().all(|p| matches!(p, IpNet::V4(_))));
    assert_eq!(fold(&ga).len(), 51);
    assert_eq!(
        rib(&a, Family::Ipv6Unicast, RibKind::LocRib).await.len(),
        50
    );
    same_ribs(&a, &b).await;
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
