use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::LeaseSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;

const D: Duration = Duration::from_secs(1);

fn v4(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
}

fn node(holder: &str, uid: &str, transitions: i32, rv: i64) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(format!("rackd-l2-node-{holder}")),
            uid: Some(uid.into()),
            resource_version: Some(rv.to_string()),
            labels: Some(BTreeMap::from([(LABEL.into(), "node".into())])),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(1),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }),
    }
}

fn claim(ip: IpAddr, holder: &str, uid: &str, epoch: i32, rv: i64) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(claim_name(ip)),
            uid: Some(format!("claim-{rv}")),
            resource_version: Some(rv.to_string()),
            labels: Some(BTreeMap::from([(LABEL.into(), "claim".into())])),
            annotations: Some(BTreeMap::from([
                (ANN_IP.into(), ip.to_string()),
                (ANN_EPOCH.into(), epoch.to_string()),
                (ANN_NODE_UID.into(), uid.into()),
            ])),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            ..LeaseSpec::default()
        }),
    }
}

fn observed(evs: &[BackendEvent]) -> Vec<(IpAddr, Owner, i64)> {
    evs.iter()
        .filter_map(|e| match e {
            BackendEvent::Observed {
                ip,
                owner,
                revision,
            } => Some((*ip, owner.clone(), *revision)),
            _ => None,
        })
        .collect()
}

#[test]
fn names_round_trip_and_are_valid() {
    let ips: [IpAddr; 5] = [
        v4(1),
        "0.0.0.0".parse().unwrap(),
        "2001:db8::".parse().unwrap(),
        "::".parse().unwrap(),
        "::ffff:1.2.3.4".parse().unwrap(),
    ];
    for ip in ips {
        let n = claim_name(ip);
        assert!(is_dns_subdomain(&n), "{n}");
        assert_eq!(ip_of_claim_name(&n), Some(ip), "{n}");
    }
    assert_eq!(claim_name(v4(1)), "rackd-l2-10-0-0-1");
    assert_eq!(
        claim_name("2001:db8::1".parse().unwrap()),
        "rackd-l2-2001-db8-0-0-0-0-0-1"
    );
    // Non-canonical spellings and other names are not claims.
    for bad in [
        "rackd-l2-010-0-0-1",
        "rackd-l2-10-0-0",
        "rackd-l2-node-a",
        "rackd-l2-2001-DB8-0-0-0-0-0-1",
        "other",
    ] {
        assert_eq!(ip_of_claim_name(bad), None, "{bad}");
    }
    assert_eq!(
        node_lease_name("worker-1").as_deref(),
        Some("rackd-l2-node-worker-1")
    );
    assert_eq!(node_lease_name("Bad_Name"), None);
    assert_eq!(node_lease_name(&"x".repeat(250)), None);
}

#[test]
fn malformed_and_foreign_objects_are_told_apart() {
    assert!(matches!(parse(&node("a", "u", 0, 5), D), Parsed::Node(_)));
    assert!(matches!(
        parse(&claim(v4(1), "a", "u", 0, 6), D),
        Parsed::Claim(..)
    ));
    // Holder that does not match the name; no UID; a resourceVersion that is not a number.
    let mut l = node("a", "u", 0, 5);
    if let Some(s) = l.spec.as_mut() {
        s.holder_identity = Some("b".into());
    }
    assert_eq!(parse(&l, D), Parsed::BadNode("a".into()));
    let mut l = node("a", "u", 0, 5);
    l.metadata.uid = None;
    assert_eq!(parse(&l, D), Parsed::BadNode("a".into()));
    let mut l = claim(v4(1), "a", "u", 0, 6);
    l.metadata.resource_version = Some("x".into());
    assert_eq!(parse(&l, D), Parsed::BadClaim(v4(1)));
    // Annotation IP disagreeing with the name; missing epoch.
    let mut l = claim(v4(1), "a", "u", 0, 6);
    if let Some(a) = l.metadata.annotations.as_mut() {
        a.insert(ANN_IP.into(), "10.0.0.2".into());
    }
    assert_eq!(parse(&l, D), Parsed::BadClaim(v4(1)));
    let mut l = claim(v4(1), "a", "u", 0, 6);
    if let Some(a) = l.metadata.annotations.as_mut() {
        a.remove(ANN_EPOCH);
    }
    assert_eq!(parse(&l, D), Parsed::BadClaim(v4(1)));
    // No label, another label value, a name we never use.
    let mut l = claim(v4(1), "a", "u", 0, 6);
    l.metadata.labels = None;
    assert_eq!(parse(&l, D), Parsed::Foreign);
    let mut l = node("a", "u", 0, 5);
    l.metadata.labels = Some(BTreeMap::from([(LABEL.into(), "other".into())]));
    assert_eq!(parse(&l, D), Parsed::Foreign);
    let mut l = claim(v4(1), "a", "u", 0, 6);
    l.metadata.name = Some("rackd-l2-nonsense".into());
    assert_eq!(parse(&l, D), Parsed::Foreign);
}

#[test]
fn nothing_is_reported_before_the_first_listing() {
    let t0 = Instant::now();
    let mut v = View::new("me", D);
    v.apply(&node("a", "ua", 0, 1), t0);
    v.apply(&claim(v4(1), "a", "ua", 0, 2), t0);
    assert!(v.drain(t0).is_empty());
    v.relist(&[node("a", "ua", 0, 1), claim(v4(1), "a", "ua", 0, 2)], t0);
    let evs = v.drain(t0);
    assert_eq!(observed(&evs), vec![(v4(1), Owner::Other("a".into()), 2)]);
    assert!(evs.contains(&BackendEvent::Members(["a".to_owned()].into())));
}

#[test]
fn an_expired_holder_frees_its_groups_at_the_watch_position() {
    let t0 = Instant::now();
    let mut v = View::new("me", D);
    v.relist(
        &[
            node("a", "ua", 0, 1),
            node("b", "ub", 0, 2),
            claim(v4(1), "a", "ua", 0, 3),
            claim(v4(2), "b", "ub", 0, 4),
        ],
        t0,
    );
    v.drain(t0);
    // b renews (its resourceVersion changes), a does not.
    let t1 = t0 + Duration::from_millis(600);
    v.apply(&node("b", "ub", 0, 9), t1);
    assert!(v.drain(t1).is_empty());
    assert_eq!(v.next_expiry(), Some(t0 + D));
    let t2 = t0 + D;
    let evs = v.drain(t2);
    // Freed at the watch position (9), which is past the claim's own version (3): the owning
    // task does not drop it as stale.
    assert_eq!(observed(&evs), vec![(v4(1), Owner::Free, 9)]);
    assert!(evs.contains(&BackendEvent::Members(["b".to_owned()].into())));
    // a comes back (renews): its claim at the same epoch is valid again.
    v.apply(&node("a", "ua", 0, 10), t2);
    assert_eq!(
        observed(&v.drain(t2)),
        vec![(v4(1), Owner::Other("a".into()), 10)]
    );
}

#[test]
fn a_new_epoch_or_a_deleted_node_lease_invalidates_claims() {
    let t0 = Instant::now();
    let mut v = View::new("me", D);
    v.relist(&[node("a", "ua", 0, 1), claim(v4(1), "a", "ua", 0, 2)], t0);
    v.drain(t0);
    // a re-acquired: its earlier claims are dead.
    v.apply(&node("a", "ua", 1, 5), t0);
    assert_eq!(observed(&v.drain(t0)), vec![(v4(1), Owner::Free, 5)]);
    let c = v.claim(v4(1)).unwrap().clone();
    assert_eq!(v.verdict(&c, t0), Verdict::Stale);
    // A claim at the new epoch is valid; deleting the node Lease frees it at once.
    v.apply(&claim(v4(1), "a", "ua", 1, 6), t0);
    assert_eq!(
        observed(&v.drain(t0)),
        vec![(v4(1), Owner::Other("a".into()), 6)]
    );
    v.delete(&node("a", "ua", 1, 7));
    assert_eq!(observed(&v.drain(t0)), vec![(v4(1), Owner::Free, 7)]);
    // Created again (new UID, transitions from 0): the old claim stays dead.
    v.apply(&node("a", "ua2", 1, 8), t0);
    assert!(observed(&v.drain(t0)).is_empty());
}

#[test]
fn own_claims_follow_the_renew_task_not_the_watch() {
    let t0 = Instant::now();
    let mut v = View::new("me", D);
    v.set_mine(Some(Epoch {
        uid: "um".into(),
        transitions: 2,
    }));
    v.relist(
        &[node("me", "um", 2, 1), claim(v4(1), "me", "um", 2, 2)],
        t0,
    );
    assert_eq!(observed(&v.drain(t0)), vec![(v4(1), Owner::Me, 2)]);
    // Our own Lease looks expired to the watch (it lags), but we still hold the epoch.
    assert!(observed(&v.drain(t0 + 5 * D)).is_empty());
    // Lost: as others see it, it was ours under a dead (here: expired) lease.
    v.set_mine(None);
    assert_eq!(
        observed(&v.drain(t0 + 5 * D)),
        vec![(v4(1), Owner::Free, 2)]
    );
}

#[test]
fn a_relist_is_a_diff_not_a_mass_deletion() {
    let t0 = Instant::now();
    let mut v = View::new("me", D);
    let all = [
        node("a", "ua", 0, 1),
        claim(v4(1), "a", "ua", 0, 2),
        claim(v4(2), "a", "ua", 0, 3),
        claim(v4(3), "a", "ua", 0, 4),
    ];
    v.relist(&all, t0);
    v.drain(t0);
    // The watch broke; meanwhile a renewed and released 10.0.0.3.
    let t1 = t0 + Duration::from_millis(800);
    v.relist(
        &[
            node("a", "ua", 0, 20),
            claim(v4(1), "a", "ua", 0, 2),
            claim(v4(2), "a", "ua", 0, 3),
        ],
        t1,
    );
    assert_eq!(observed(&v.drain(t1)), vec![(v4(3), Owner::Free, 20)]);
    // The renewal seen in the relist counts from when it was seen.
    assert!(observed(&v.drain(t0 + D)).is_empty());
    // A relist with a node Lease unchanged keeps its old observation time: no renewal.
    let t2 = t1 + Duration::from_millis(500);
    v.relist(
        &[
            node("a", "ua", 0, 20),
            claim(v4(1), "a", "ua", 0, 2),
            claim(v4(2), "a", "ua", 0, 3),
        ],
        t2,
    );
    assert!(observed(&v.drain(t2)).is_empty());
    let evs = observed(&v.drain(t1 + D));
    assert_eq!(evs.len(), 2, "{evs:?}");
    assert!(evs.iter().all(|(_, o, _)| *o == Owner::Free));
}

#[test]
fn foreign_objects_change_nothing() {
    let t0 = Instant::now();
    let mut v = View::new("me", D);
    v.relist(&[node("a", "ua", 0, 1), claim(v4(1), "a", "ua", 0, 2)], t0);
    v.drain(t0);
    let mut foreign = claim(v4(1), "b", "ub", 0, 3);
    foreign.metadata.labels = None;
    v.apply(&foreign, t0);
    let mut other = node("a", "ux", 5, 4);
    other.metadata.name = Some("something-else".into());
    v.apply(&other, t0);
    assert!(observed(&v.drain(t0)).is_empty());
    // A malformed object at our claim's name stands for nothing.
    let mut bad = claim(v4(1), "a", "ua", 0, 5);
    if let Some(a) = bad.metadata.annotations.as_mut() {
        a.clear();
    }
    v.apply(&bad, t0);
    assert_eq!(observed(&v.drain(t0)), vec![(v4(1), Owner::Free, 5)]);
}
