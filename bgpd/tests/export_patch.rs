//! `Speaker::patch_export` against scripted peers over loopback (no namespace): a patch of
//! a few prefixes among thousands sends UPDATEs for exactly those and leaves what
//! `update_peer` with the patched policy leaves; a policy that is not an exact-prefix table
//! is refused untouched; a patch for a family the session lacks waits for it.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use bgpd::policy::{Actions, ExportPatch, NotExact, Policy, PrefixMatch, Statement};
use bgpd::{Error, Family, RibKind, RouteEntry, RouteQuery, Speaker, SpeakerConfig};
use bgpd_wire::{Community, Message, PathAttributes, RouteRefresh};
use common::fake::{self, Changes, FakePeer, fold, repeated};
use ipnet::{IpNet, Ipv4Net};

const BOTH: [Family; 2] = [Family::Ipv4Unicast, Family::Ipv6Unicast];
/// Exported prefixes per family: thousands, so that a resend of all would be unmistakable.
const N4: u32 = 3000;
const N6: u32 = 300;

fn peer_addr() -> IpAddr {
    "127.0.0.1".parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// 10.100.0.0/32 onwards.
fn v4(i: u32) -> IpNet {
    IpNet::V4(Ipv4Net::new(Ipv4Addr::from(0x0a64_0000 + i), 32).unwrap())
}

fn v6(i: u32) -> IpNet {
    net(&format!("2001:db8:100::{i:x}/128"))
}

fn community(n: u32) -> Community {
    Community((65001 << 16) | n)
}

fn tag(n: u32) -> Actions {
    Actions {
        add_communities: vec![community(n).0],
        ..Default::default()
    }
}

fn table(entries: impl IntoIterator<Item = (IpNet, Actions)>) -> Policy {
    Policy {
        statements: entries
            .into_iter()
            .map(|(prefix, actions)| Statement {
                prefixes: vec![PrefixMatch::exact(prefix)],
                actions,
            })
            .collect(),
        default_accept: false,
    }
}

/// The statements of an exact-prefix table as a map.
fn as_map(p: &Policy) -> BTreeMap<IpNet, Actions> {
    p.statements
        .iter()
        .map(|s| (s.prefixes[0].prefix, s.actions.clone()))
        .collect()
}

async fn speaker() -> Speaker {
    common::logs();
    Speaker::start(SpeakerConfig::new(65001, "1.1.1.1".parse().unwrap()))
        .await
        .unwrap()
}

/// A RIB listing with ages cleared (two speakers' routes are not added at the same instant).
async fn rib(s: &Speaker, family: Family, rib: RibKind) -> Vec<RouteEntry> {
    let mut v = s.routes(RouteQuery { family, rib }).await.unwrap();
    for e in &mut v {
        e.age = Default::default();
    }
    v
}

/// Equal listings, or a failure naming the entries that differ (not thousands of equal ones).
fn same_entries(a: &[RouteEntry], b: &[RouteEntry]) {
    let diff: Vec<(&RouteEntry, &RouteEntry)> =
        a.iter().zip(b).filter(|(x, y)| x != y).take(3).collect();
    assert!(diff.is_empty(), "first differences: {diff:#?}");
    assert_eq!(a.len(), b.len());
}

fn communities(c: &Changes, prefix: IpNet) -> Option<Vec<Community>> {
    fold(c)
        .get(&prefix)
        .cloned()
        .flatten()
        .map(|s| s.attrs.communities.clone())
}

/// Routed and listed in the table from the start, not routed: announced once it is, the
/// end marker of what a change sent.
const SENTINEL: &str = "10.199.0.1/32";
/// Routed from the start, not listed: exported once a patch lists it.
const UNLISTED: &str = "10.200.0.1/32";

/// A speaker exporting N4 + N6 local routes to a scripted peer through an exact-prefix table
/// (community 65001:1 each), its last statement an IPv6 one; the initial advertisement has
/// been read and checked.
async fn exporting() -> (Speaker, FakePeer, Policy) {
    let s = speaker().await;
    let routed: Vec<IpNet> = (0..N4)
        .map(v4)
        .chain((0..N6).map(v6))
        .chain([net(UNLISTED)])
        .collect();
    s.add_local_routes(
        routed
            .iter()
            .map(|p| (*p, PathAttributes::default()))
            .collect(),
    )
    .await
    .unwrap();
    let policy = table(
        [(net(SENTINEL), tag(5))]
            .into_iter()
            .chain((0..N4).map(|i| (v4(i), tag(1))))
            .chain((0..N6).map(|i| (v6(i), tag(1)))),
    );
    let l = fake::listener().await;
    let mut cfg = fake::peer_config(&l, &BOTH);
    cfg.export = policy.clone();
    s.add_peer(cfg).await.unwrap();
    let mut peer = FakePeer::accept(&l, &BOTH).await;
    let init = peer.initial(&BOTH).await;
    assert_eq!(init.len() as u32, N4 + N6, "each listed route once");
    assert!(repeated(&init).is_empty());
    // One attribute set for all (equal actions): packed, not one UPDATE per statement.
    assert!(peer.updates <= 20, "{} UPDATEs", peer.updates);
    assert!(
        fold(&init)
            .values()
            .all(|s| s.as_ref().unwrap().attrs.communities == vec![community(1)])
    );
    (s, peer, policy)
}

/// One prefix's communities changed (in each family), one added, one removed, plus entries
/// that change nothing on the wire: the peer gets UPDATEs for exactly the changed prefixes,
/// and the result equals `update_peer` with the same final policy on a second speaker (the
/// UPDATEs, the Adj-RIB-Out, the peer counters, the configuration), route refresh included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_sends_exactly_the_patched_prefixes_and_equals_update_peer() {
    let (a, mut pa, policy) = exporting().await;
    let patch = ExportPatch {
        set: vec![
            // Withdrawn; the last statement (v6(N6 - 1), exported) takes its place.
            (v4(9), None),
            (v4(7), Some(tag(2))),
            (v6(5), Some(tag(2))),
            // Same actions as before: nothing to send.
            (v4(8), Some(tag(1))),
            (net(UNLISTED), Some(tag(3))),
            // Not listed: nothing. Listed without a route: nothing sent.
            (net("10.250.0.1/32"), None),
            (net("10.201.0.1/32"), Some(tag(4))),
        ],
    };
    let mut want = as_map(&policy);
    for (p, act) in &patch.set {
        match act {
            Some(act) => want.insert(*p, act.clone()),
            None => want.remove(p),
        };
    }
    a.patch_export(peer_addr(), patch).await.unwrap();
    a.add_local_route(
        Family::Ipv4Unicast,
        net(SENTINEL),
        PathAttributes::default(),
    )
    .await
    .unwrap();
    let got = pa.until_announced(net(SENTINEL)).await;
    let sent: BTreeSet<IpNet> = fold(&got).into_keys().collect();
    assert_eq!(
        sent,
        BTreeSet::from([v4(7), v6(5), net(UNLISTED), v4(9), net(SENTINEL)]),
        "{got:?}"
    );
    assert!(repeated(&got).is_empty(), "{got:?}");
    assert_eq!(communities(&got, v4(7)), Some(vec![community(2)]));
    assert_eq!(communities(&got, v6(5)), Some(vec![community(2)]));
    assert_eq!(communities(&got, net(UNLISTED)), Some(vec![community(3)]));
    assert_eq!(fold(&got).get(&v4(9)), Some(&None), "withdrawn");

    let a_cfg = a.peer_config(peer_addr()).await.unwrap();
    assert_eq!(as_map(&a_cfg.export), want);
    assert_eq!(
        a_cfg.export.statements.len(),
        want.len(),
        "each prefix once"
    );
    let last = policy.statements.last().unwrap().prefixes[0].prefix;
    assert_eq!(a_cfg.export.statements[1 + 9].prefixes[0].prefix, last);

    // A second speaker, same start, given the final policy through update_peer.
    let (b, mut pb, _) = exporting().await;
    let mut b_cfg = b.peer_config(peer_addr()).await.unwrap();
    b_cfg.export = a_cfg.export.clone();
    b.update_peer(b_cfg).await.unwrap();
    b.add_local_route(
        Family::Ipv4Unicast,
        net(SENTINEL),
        PathAttributes::default(),
    )
    .await
    .unwrap();
    let got_b = pb.until_announced(net(SENTINEL)).await;
    assert_eq!(fold(&got_b), fold(&got));
    assert!(repeated(&got_b).is_empty(), "{got_b:?}");

    for f in BOTH {
        let out = rib(&a, f, RibKind::AdjRibOut(peer_addr())).await;
        same_entries(&out, &rib(&b, f, RibKind::AdjRibOut(peer_addr())).await);
        let listed = out.iter().filter(|e| want.contains_key(&e.prefix)).count();
        assert_eq!(listed, out.len());
    }
    let moved = rib(&a, Family::Ipv6Unicast, RibKind::AdjRibOut(peer_addr())).await;
    let moved = moved.iter().find(|e| e.prefix == last).unwrap();
    assert_eq!(moved.communities, vec!["65001:1".to_string()]);
    let counters = |s: &bgpd::PeerStatus| s.families.clone();
    let (sa, sb) = (a.peers().await.unwrap(), b.peers().await.unwrap());
    assert_eq!(counters(&sa[0]), counters(&sb[0]));
    assert_eq!(
        sa[0].families.iter().map(|f| f.advertised).sum::<usize>() as u32,
        N4 + N6 + 1,
        "one withdrawn, one added, the sentinel"
    );
    assert_eq!(
        b.peer_config(peer_addr()).await.unwrap().export,
        a_cfg.export
    );

    // A route refresh answers from the patched Adj-RIB-Out (the moved statement included).
    pa.send(Message::RouteRefresh(RouteRefresh {
        family: Family::Ipv6Unicast,
        subtype: 0,
    }))
    .await;
    let refreshed = pa.initial(&[Family::Ipv6Unicast]).await;
    let out = rib(&a, Family::Ipv6Unicast, RibKind::AdjRibOut(peer_addr())).await;
    assert_eq!(refreshed.len(), out.len());
    let refreshed = fold(&refreshed);
    for e in &out {
        let s = refreshed.get(&e.prefix).cloned().flatten().unwrap();
        assert_eq!(s.attrs, e.attributes, "{}", e.prefix);
    }
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

/// A policy that is not an exact-prefix table is refused with the reason and nothing
/// changes: configuration, Adj-RIB-Out, the wire (the next thing the peer gets is the route
/// added afterwards). An unknown peer is NoSuchPeer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_of_a_non_exact_policy_is_refused_and_changes_nothing() {
    let s = speaker().await;
    let routes: Vec<(IpNet, PathAttributes)> = (0..100)
        .map(|i| (v4(i), PathAttributes::default()))
        .collect();
    s.add_local_routes(routes).await.unwrap();
    let mut policy = table((0..100).map(|i| (v4(i), tag(1))));
    // A range statement first: every 10.100/16 prefix it covers is now exported by it.
    policy.statements.insert(
        0,
        Statement {
            prefixes: vec![PrefixMatch::orlonger(net("10.100.0.0/16"))],
            actions: tag(9),
        },
    );
    let l = fake::listener().await;
    let mut cfg = fake::peer_config(&l, &[Family::Ipv4Unicast]);
    cfg.export = policy.clone();
    s.add_peer(cfg.clone()).await.unwrap();
    let mut peer = FakePeer::accept(&l, &[Family::Ipv4Unicast]).await;
    assert_eq!(peer.initial(&[Family::Ipv4Unicast]).await.len(), 100);
    let out_before = rib(&s, Family::Ipv4Unicast, RibKind::AdjRibOut(peer_addr())).await;
    let patch = ExportPatch {
        set: vec![(v4(1), None), (v4(2), Some(tag(2)))],
    };
    match s.patch_export(peer_addr(), patch.clone()).await {
        Err(Error::ExportNotExact { peer, reason }) => {
            assert_eq!(peer, peer_addr());
            assert_eq!(reason, NotExact::Range { statement: 0 });
        }
        r => panic!("{r:?}"),
    }
    assert_eq!(s.peer_config(peer_addr()).await.unwrap(), cfg);
    assert_eq!(
        rib(&s, Family::Ipv4Unicast, RibKind::AdjRibOut(peer_addr())).await,
        out_before
    );
    // Accepting what is not listed is not an exact-prefix table either.
    let mut accepting = cfg.clone();
    accepting.export = table((0..100).map(|i| (v4(i), tag(9))));
    accepting.export.default_accept = true;
    s.update_peer(accepting.clone()).await.unwrap();
    match s.patch_export(peer_addr(), patch.clone()).await {
        Err(Error::ExportNotExact { reason, .. }) => assert_eq!(reason, NotExact::DefaultAccept),
        r => panic!("{r:?}"),
    }
    assert_eq!(s.peer_config(peer_addr()).await.unwrap(), accepting);
    assert_eq!(
        rib(&s, Family::Ipv4Unicast, RibKind::AdjRibOut(peer_addr())).await,
        out_before,
        "same wire attributes: update_peer resent nothing either"
    );
    let added = v4(200);
    s.add_local_route(Family::Ipv4Unicast, added, PathAttributes::default())
        .await
        .unwrap();
    let got = peer.until_announced(added).await;
    assert_eq!(fold(&got).into_keys().collect::<Vec<_>>(), vec![added]);
    assert!(matches!(
        s.patch_export("192.0.2.1".parse().unwrap(), patch).await,
        Err(Error::NoSuchPeer(a)) if a == "192.0.2.1".parse::<IpAddr>().unwrap()
    ));
    s.shutdown().await.unwrap();
}

/// A patch for a family the session does not carry is kept and sends nothing; when the
/// family comes up (a session reset by update_peer), the initial advertisement uses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_for_a_family_the_session_lacks_waits_for_it() {
    let s = speaker().await;
    let (r4, r6) = (net("10.1.0.0/24"), net("2001:db8:1::/48"));
    s.add_local_routes(vec![
        (r4, PathAttributes::default()),
        (r6, PathAttributes::default()),
        (net(SENTINEL), PathAttributes::default()),
    ])
    .await
    .unwrap();
    let l = fake::listener().await;
    let v4_only = [Family::Ipv4Unicast];
    let mut cfg = fake::peer_config(&l, &v4_only);
    cfg.export = table([(r4, tag(1))]);
    s.add_peer(cfg).await.unwrap();
    let mut peer = FakePeer::accept(&l, &v4_only).await;
    assert_eq!(
        fold(&peer.initial(&v4_only).await)
            .into_keys()
            .collect::<Vec<_>>(),
        vec![r4]
    );
    s.patch_export(
        peer_addr(),
        ExportPatch {
            set: vec![(r6, Some(tag(6))), (net(SENTINEL), Some(tag(5)))],
        },
    )
    .await
    .unwrap();
    let got = peer.until_announced(net(SENTINEL)).await;
    assert_eq!(
        fold(&got).into_keys().collect::<Vec<_>>(),
        vec![net(SENTINEL)]
    );
    assert!(
        rib(&s, Family::Ipv6Unicast, RibKind::AdjRibOut(peer_addr()))
            .await
            .is_empty()
    );
    // IPv6 configured: the session is reset and comes back with it.
    let mut cfg = s.peer_config(peer_addr()).await.unwrap();
    cfg.families = BOTH.to_vec();
    s.update_peer(cfg).await.unwrap();
    drop(peer);
    let mut peer = FakePeer::accept(&l, &BOTH).await;
    let init = peer.initial(&BOTH).await;
    assert_eq!(
        fold(&init).into_keys().collect::<BTreeSet<_>>(),
        BTreeSet::from([r4, r6, net(SENTINEL)])
    );
    assert_eq!(communities(&init, r6), Some(vec![community(6)]));
    s.shutdown().await.unwrap();
}
