//! The export policy (statement order, defaults, actions), shared attribute sets, and
//! in-place changes of a peer's export configuration.

use super::*;

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
