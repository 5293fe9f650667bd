//! The incremental front end against the full reconcile, and the journal against snapshots.
//!
//! The oracle: before each commit, a clone of the allocator runs one full `reconcile` of the
//! current config, pools and services. Both start from the same state (by induction, since the
//! previous commit left them equal), the full reconcile is deterministic, so after the commit
//! the front end's outcome, its `Commit` and the allocator's snapshot must equal the clone's.
//! Alongside, every journal taken is replayed onto the snapshot of the last (re)start and must
//! give the allocator's snapshot, and restarts go through that replay.
#![allow(clippy::unwrap_used)] // Tests and benchmarks may unwrap.

mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::IpAddr;

use common::*;
use lbipam::{
    ANNOTATION_SHARING_KEY, Block, CLASS_BGP_CONTROL_PLANE, Commit, Config, FullReason,
    Incremental, Journal, JournalRecord, LbIpam, Outcome, PersistedState, PoolSpec, Reason,
    ServiceKey, ServiceOutcome, ServiceSpec,
};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};

// ===== Generators =====

/// Pools over a few dozen addresses, so overlaps, reserved ends and exhaustion all happen.
fn arb_pool(idx: usize) -> impl Strategy<Value = PoolSpec<Sel>> {
    (
        proptest::collection::vec((any::<bool>(), 0u8..12, 26u8..=31, any::<bool>()), 1..3),
        prop::bool::weighted(0.3),
        prop::bool::weighted(0.15),
        proptest::option::weighted(0.3, 0u8..2),
        proptest::option::of(0i64..3),
    )
        .prop_map(move |(blocks, no_first_last, disabled, sel, created)| {
            let blocks = blocks
                .into_iter()
                .map(|(six, off, len, cidr)| {
                    let (addr, len): (IpAddr, u8) = if six {
                        (
                            format!("2001:db8::{:x}", u32::from(off) * 4)
                                .parse()
                                .unwrap(),
                            len + 96,
                        )
                    } else {
                        (
                            format!("10.0.0.{}", u32::from(off) * 4).parse().unwrap(),
                            len,
                        )
                    };
                    let b = Block::cidr(addr, len).unwrap();
                    if cidr {
                        b
                    } else {
                        Block::range(b.first(), Some(b.last())).unwrap()
                    }
                })
                .collect();
            PoolSpec {
                name: format!("pool{idx}"),
                created,
                blocks,
                allow_first_last_ips: !no_first_last,
                disabled,
                service_selector: sel.map(|t| labels(&[("tier", &t.to_string())])),
            }
        })
}

fn arb_pools() -> impl Strategy<Value = Vec<PoolSpec<Sel>>> {
    (1usize..4).prop_flat_map(|n| (0..n).map(arb_pool).collect::<Vec<_>>())
}

/// One of 16 services (so upserts replace and removals hit), mostly without sharing key.
fn arb_service() -> impl Strategy<Value = ServiceSpec> {
    (
        (0u8..2, 0u8..8),
        0u8..2,
        proptest::option::weighted(0.15, 0u8..2),
        proptest::collection::vec(0u16..3, 0..2),
        0u8..4,
        proptest::option::weighted(0.15, 0u8..48),
        prop::bool::weighted(0.2),
        proptest::option::weighted(0.1, 0u8..48),
        0u8..20,
    )
        .prop_map(
            |((ns, name), tier, key, ports, fam, req, local, ingress, kind)| {
                let mut s = dressed(
                    svc(&format!("ns{ns}"), &format!("svc{name}")),
                    Traits {
                        tier,
                        key,
                        ports,
                        family: fam,
                        requested: req,
                        local,
                    },
                );
                if let Some(i) = ingress {
                    // A published address from elsewhere (migration): adopted when free.
                    s.current_ingress = vec![format!("10.0.0.{i}").parse().unwrap()];
                }
                match kind {
                    0 => s.is_load_balancer = false,
                    1 => s.load_balancer_class = Some("example.com/other".into()),
                    2 => s.load_balancer_class = Some(CLASS_BGP_CONTROL_PLANE.into()),
                    _ => {}
                }
                s
            },
        )
}

fn arb_config() -> impl Strategy<Value = Config> {
    (prop::bool::weighted(0.85), prop::bool::weighted(0.9)).prop_map(|(v6, bgp)| Config {
        ipv6_enabled: v6,
        bgp_control_plane: bgp,
        ..Config::default()
    })
}

#[derive(Clone, Debug)]
enum Op {
    Upsert(Box<ServiceSpec>),
    /// Removes the `n`-th current service (modulo their number).
    Remove(usize),
    Pools(Vec<PoolSpec<Sel>>),
    Config(Config),
    RequestFull,
    Commit,
    /// Restart from the last snapshot plus the journal (`true`) or from a fresh snapshot,
    /// compacting the journal (`false`).
    Restart(bool),
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => arb_service().prop_map(|s| Op::Upsert(Box::new(s))),
        6 => any::<usize>().prop_map(Op::Remove),
        1 => arb_pools().prop_map(Op::Pools),
        1 => arb_config().prop_map(Op::Config),
        1 => Just(Op::RequestFull),
        8 => Just(Op::Commit),
        1 => any::<bool>().prop_map(Op::Restart),
    ]
}

// ===== The model run =====

/// How often each path ran over a whole property run (the positive control).
#[derive(Debug, Default)]
struct Paths {
    fast: usize,
    /// Fast commits that allocated an address.
    fast_allocating: usize,
    /// Fast commits that freed an address.
    fast_freeing: usize,
    full: BTreeMap<&'static str, usize>,
    torn_checked: usize,
}

fn changed_keys(a: &Outcome, b: &Outcome) -> Vec<ServiceKey> {
    let mut keys: Vec<ServiceKey> = a
        .services
        .keys()
        .chain(b.services.keys())
        .filter(|k| a.services.get(*k) != b.services.get(*k))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// The persisted side as the daemon keeps it: snapshot file and journal file bytes.
struct Disk {
    snapshot: Vec<u8>,
    journal: Vec<u8>,
    /// The snapshot with every journal record so far replayed, kept in step.
    replayed: PersistedState,
}

impl Disk {
    fn new(ipam: &LbIpam) -> Self {
        let snap = ipam.snapshot();
        Disk {
            snapshot: snap.encode(),
            journal: Journal::header(),
            replayed: snap,
        }
    }

    /// Appends `records`; checks replay, idempotence and the file round trip.
    fn append(
        &mut self,
        records: &[JournalRecord],
        now: &PersistedState,
    ) -> Result<(), TestCaseError> {
        self.journal
            .extend_from_slice(&JournalRecord::encode_lines(records));
        // One by one and in bulk give the same state, equal to the allocator's.
        let mut one_by_one = self.replayed.clone();
        for r in records {
            one_by_one.apply(r);
        }
        self.replayed.apply_all(records);
        prop_assert_eq!(&one_by_one, &self.replayed);
        prop_assert_eq!(&self.replayed, now);
        // Replaying again (a snapshot that already holds these records) changes nothing.
        let mut twice = self.replayed.clone();
        twice.apply_all(records);
        prop_assert_eq!(&twice, now);
        // The file decodes to everything appended, and replays from the snapshot.
        let decoded = Journal::decode(&self.journal).unwrap();
        prop_assert!(!decoded.torn);
        prop_assert_eq!(decoded.valid_len, self.journal.len());
        let mut from_disk = PersistedState::decode(&self.snapshot).unwrap();
        from_disk.apply_all(&decoded.records);
        prop_assert_eq!(&from_disk, now);
        Ok(())
    }
}

fn restart_from(
    disk: &mut Disk,
    via_journal: bool,
    old: &Incremental<Sel>,
) -> Result<Incremental<Sel>, TestCaseError> {
    let now = old.ipam().snapshot();
    let ipam = if via_journal {
        let mut state = PersistedState::decode(&disk.snapshot).unwrap();
        state.apply_all(&Journal::decode(&disk.journal).unwrap().records);
        prop_assert_eq!(&state, &now);
        LbIpam::restore(&state).unwrap()
    } else {
        // Compaction: the journal's records are all in `now`; a fresh snapshot replaces both.
        let ipam = LbIpam::from_bytes(&now.encode()).unwrap();
        *disk = Disk::new(&ipam);
        ipam
    };
    let mut inc = Incremental::new(ipam, old.config().clone());
    inc.set_pools(old.pools().to_vec());
    for s in old.services() {
        inc.upsert_service(s.clone());
    }
    Ok(inc)
}

fn run(ops: &[Op], paths: &RefCell<Paths>) -> Result<(), TestCaseError> {
    let mut inc: Incremental<Sel> = Incremental::new(LbIpam::new(), Config::default());
    let mut disk = Disk::new(inc.ipam());
    for op in ops.iter().chain([&Op::Commit]) {
        match op {
            Op::Upsert(s) => inc.upsert_service((**s).clone()),
            Op::Remove(n) => {
                let keys: Vec<ServiceKey> = inc.services().map(|s| s.key.clone()).collect();
                if !keys.is_empty() {
                    inc.remove_service(&keys[n % keys.len()]);
                }
            }
            Op::Pools(p) => inc.set_pools(p.clone()),
            Op::Config(c) => inc.set_config(c.clone()),
            Op::RequestFull => inc.request_full(),
            Op::Restart(via_journal) => inc = restart_from(&mut disk, *via_journal, &inc)?,
            Op::Commit => {
                let services: Vec<ServiceSpec> = inc.services().cloned().collect();
                let mut oracle = inc.ipam().clone();
                let expected = oracle.reconcile(inc.config(), inc.pools(), &services);
                let before = inc.outcome().clone();
                let pending = inc.has_pending();
                let allocated_before = inc.ipam().snapshot();
                let c: Commit = inc.commit();
                prop_assert_eq!(&inc.outcome().services, &expected.services);
                prop_assert_eq!(&inc.outcome().pools, &expected.pools);
                prop_assert_eq!(c.state_changed, expected.state_changed);
                if pending {
                    prop_assert_eq!(inc.outcome().state_changed, expected.state_changed);
                }
                let now = inc.ipam().snapshot();
                prop_assert_eq!(&now, &oracle.snapshot());
                prop_assert_eq!(&c.services, &changed_keys(&before, &expected));
                prop_assert_eq!(c.pools_changed, before.pools != expected.pools);
                // Unsatisfied services keep their reason consistent with `satisfied`.
                for o in inc.outcome().services.values() {
                    prop_assert_eq!(o.satisfied, o.reason == Reason::Satisfied);
                }
                let records = inc.take_journal();
                // Every change is journaled, and only changes are.
                if !c.state_changed {
                    prop_assert!(records.is_empty());
                }
                if now != allocated_before {
                    prop_assert!(!records.is_empty());
                }
                disk.append(&records, &now)?;
                let mut p = paths.borrow_mut();
                match c.full {
                    None if pending => {
                        p.fast += 1;
                        let ips = |s: &PersistedState| -> Vec<IpAddr> {
                            s.allocations.iter().map(|a| a.ip).collect()
                        };
                        let (a, b) = (ips(&allocated_before), ips(&now));
                        if b.iter().any(|ip| !a.contains(ip)) {
                            p.fast_allocating += 1;
                        }
                        if a.iter().any(|ip| !b.contains(ip)) {
                            p.fast_freeing += 1;
                        }
                    }
                    None => {}
                    Some(r) => *p.full.entry(r.as_str()).or_default() += 1,
                }
            }
        }
    }
    // Every truncation of this journal decodes to a prefix of its records.
    let full = Journal::decode(&disk.journal).unwrap();
    let step = (disk.journal.len() / 64).max(1);
    for cut in (0..disk.journal.len()).step_by(step) {
        check_truncation(&disk.journal, cut, &full.records)?;
    }
    paths.borrow_mut().torn_checked += 1;
    Ok(())
}

/// A journal cut at `cut` decodes to a prefix of `records`, torn unless cut at a line end.
fn check_truncation(
    bytes: &[u8],
    cut: usize,
    records: &[JournalRecord],
) -> Result<(), TestCaseError> {
    let part = &bytes[..cut];
    let j = Journal::decode(part).unwrap();
    let at_boundary = cut == 0 || part.last() == Some(&b'\n');
    prop_assert_eq!(j.torn, !at_boundary);
    prop_assert!(j.records.len() <= records.len());
    prop_assert_eq!(&j.records[..], &records[..j.records.len()]);
    prop_assert!(j.valid_len <= cut);
    // What is kept is exactly whole lines: re-decoding the kept bytes gives the same records.
    let again = Journal::decode(&part[..j.valid_len]).unwrap();
    prop_assert!(!again.torn);
    prop_assert_eq!(again.records, j.records);
    Ok(())
}

#[test]
fn incremental_commits_equal_full_reconcile() {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let mut runner = TestRunner::new(RunnerConfig {
        cases,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let paths = RefCell::new(Paths::default());
    let result = runner.run(&proptest::collection::vec(arb_op(), 1..60), |ops| {
        run(&ops, &paths)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let p = paths.into_inner();
    eprintln!("paths: {p:?}");
    // Positive control: the generator reaches the fast path (also when it moves addresses)
    // and every fallback, so the equality above is not vacuous.
    assert!(p.fast > cases as usize, "{p:?}");
    assert!(p.fast_allocating > cases as usize / 5, "{p:?}");
    assert!(p.fast_freeing > cases as usize / 20, "{p:?}");
    for reason in [
        FullReason::Initial,
        FullReason::Pools,
        FullReason::Config,
        FullReason::Requested,
        FullReason::SharingKey,
        FullReason::FreedWhileWaiting,
    ] {
        assert!(
            p.full.contains_key(reason.as_str()),
            "{reason:?} never ran: {p:?}"
        );
    }
    assert_eq!(p.torn_checked, cases as usize);
}

// ===== Scenarios =====

fn start(pools: Vec<PoolSpec<Sel>>, services: &[ServiceSpec]) -> Incremental<Sel> {
    let mut inc = Incremental::new(LbIpam::new(), Config::default());
    inc.set_pools(pools);
    for s in services {
        inc.upsert_service(s.clone());
    }
    let c = inc.commit();
    assert_eq!(c.full, Some(FullReason::Initial));
    inc
}

fn outcome<'a>(inc: &'a Incremental<Sel>, ns: &str, name: &str) -> &'a ServiceOutcome {
    &inc.outcome().services[&ServiceKey::new(ns, name)]
}

fn used(inc: &Incremental<Sel>, pool: &str) -> u64 {
    inc.outcome().pools[pool].used
}

#[test]
fn add_change_remove_take_the_fast_path() {
    let mut inc = start(
        vec![
            pool("p4", &["10.0.0.0/29"]),
            pool("p6", &["2001:db8::/125"]),
        ],
        &[svc("a", "one"), svc("a", "two")],
    );
    inc.take_journal();
    assert_eq!(used(&inc, "p4"), 2);

    // Added: gets the next address, counts follow.
    inc.upsert_service(svc("b", "three"));
    let c = inc.commit();
    assert_eq!(c.full, None);
    assert!(c.state_changed && c.pools_changed);
    assert_eq!(c.services, vec![ServiceKey::new("b", "three")]);
    assert_eq!(outcome(&inc, "b", "three").ips(), vec![ip("10.0.0.2")]);
    assert_eq!(used(&inc, "p4"), 3);
    assert_eq!(inc.outcome().pools["p4"].available.to_string(), "5");
    let j = inc.take_journal();
    assert_eq!(j.len(), 1);
    assert!(matches!(&j[0], JournalRecord::Set(a) if a.ip == ip("10.0.0.2")));

    // Changed to IPv6: the IPv4 address is freed, an IPv6 one taken.
    inc.upsert_service(v6(svc("b", "three")));
    let c = inc.commit();
    assert_eq!(c.full, None);
    assert_eq!(outcome(&inc, "b", "three").ips(), vec![ip("2001:db8::")]);
    assert_eq!((used(&inc, "p4"), used(&inc, "p6")), (2, 1));
    let j = inc.take_journal();
    assert_eq!(
        j,
        vec![
            JournalRecord::Delete { ip: ip("10.0.0.2") },
            JournalRecord::Set(lbipam::PersistedAllocation {
                ip: ip("2001:db8::"),
                pool: "p6".into(),
                services: vec![ServiceKey::new("b", "three")],
            }),
        ]
    );

    // A change LB-IPAM does not care about: nothing to publish, nothing to persist.
    inc.upsert_service(ports(v6(svc("b", "three")), &[80]));
    let c = inc.commit();
    assert_eq!(c, Commit::default());
    assert!(inc.take_journal().is_empty());

    // Removed.
    inc.remove_service(&ServiceKey::new("a", "one"));
    let c = inc.commit();
    assert_eq!(c.full, None);
    assert_eq!(c.services, vec![ServiceKey::new("a", "one")]);
    assert!(
        !inc.outcome()
            .services
            .contains_key(&ServiceKey::new("a", "one"))
    );
    assert_eq!(used(&inc, "p4"), 1);
    assert_eq!(
        inc.take_journal(),
        vec![JournalRecord::Delete { ip: ip("10.0.0.0") }]
    );

    // Nothing queued: nothing done.
    assert!(!inc.has_pending());
    assert_eq!(inc.commit(), Commit::default());
}

#[test]
fn freeing_while_a_service_waits_falls_back_and_serves_it() {
    // One address, two services: the second waits.
    let mut inc = start(
        vec![pool("p", &["10.0.0.1/32"])],
        &[svc("a", "first"), svc("a", "second")],
    );
    assert_eq!(outcome(&inc, "a", "second").reason, Reason::OutOfIps);
    // Adding a third (nothing freed) stays on the fast path and waits too.
    inc.upsert_service(svc("a", "third"));
    let c = inc.commit();
    assert_eq!(c.full, None);
    assert_eq!(outcome(&inc, "a", "third").reason, Reason::OutOfIps);
    // Removing the holder frees the address: the full reconcile gives it to the next in key
    // order.
    inc.remove_service(&ServiceKey::new("a", "first"));
    let c = inc.commit();
    assert_eq!(c.full, Some(FullReason::FreedWhileWaiting));
    assert_eq!(
        c.services,
        vec![
            ServiceKey::new("a", "first"),
            ServiceKey::new("a", "second")
        ]
    );
    assert_eq!(outcome(&inc, "a", "second").ips(), vec![ip("10.0.0.1")]);
    assert!(!outcome(&inc, "a", "third").satisfied);
}

#[test]
fn a_waiting_service_that_changes_takes_the_fast_path() {
    // The only unsatisfied service is the one changing: nobody else can be waiting.
    let mut inc = start(vec![pool("p", &["10.0.0.1/32"])], &[svc("a", "x")]);
    inc.upsert_service(v6(svc("a", "y")));
    assert_eq!(inc.commit().full, None);
    assert_eq!(outcome(&inc, "a", "y").reason, Reason::NoPool);
    inc.upsert_service(svc("a", "y"));
    inc.remove_service(&ServiceKey::new("a", "x"));
    // x frees its address and y, changing in the same commit, takes it.
    let c = inc.commit();
    assert_eq!(c.full, None);
    assert_eq!(outcome(&inc, "a", "y").ips(), vec![ip("10.0.0.1")]);
}

#[test]
fn freeing_stays_fast_when_no_waiting_service_could_take_the_address() {
    // `lost` wants IPv6 and no pool has any; `other` waits on a full pool that does not hold
    // the freed address (and does not select the freed address's pool's tenants).
    let mut p = pool("p", &["10.0.0.0/30"]);
    p.service_selector = Some(labels(&[("tenant", "a")]));
    let mut q = pool("q", &["10.0.1.0/32"]);
    q.service_selector = Some(labels(&[("tenant", "b")]));
    let tenant = |mut s: ServiceSpec, t: &str| {
        s.labels = labels(&[("tenant", t)]);
        s
    };
    let mut inc = start(
        vec![p, q],
        &[
            v6(tenant(svc("a", "lost"), "a")),
            tenant(svc("a", "x"), "a"),
            tenant(svc("b", "holder"), "b"),
            tenant(svc("b", "other"), "b"),
        ],
    );
    assert_eq!(outcome(&inc, "a", "lost").reason, Reason::NoPool);
    assert_eq!(outcome(&inc, "b", "other").reason, Reason::OutOfIps);
    inc.remove_service(&ServiceKey::new("a", "x"));
    let c = inc.commit();
    assert_eq!(c.full, None);
    assert_eq!(inc.outcome().unsatisfied(), 2);
    // Positive control: freeing `q`'s address does go through the full reconcile.
    inc.remove_service(&ServiceKey::new("b", "holder"));
    let c = inc.commit();
    assert_eq!(c.full, Some(FullReason::FreedWhileWaiting));
    assert_eq!(outcome(&inc, "b", "other").ips(), vec![ip("10.0.1.0")]);
}

#[test]
fn sharing_keys_fall_back() {
    let shared = |n| {
        ports(
            annotate(svc("a", n), ANNOTATION_SHARING_KEY, "k"),
            &[n.len() as u16],
        )
    };
    let mut inc = start(vec![pool("p", &["10.0.0.0/30"])], &[shared("x")]);
    inc.upsert_service(shared("yy"));
    let c = inc.commit();
    assert_eq!(c.full, Some(FullReason::SharingKey));
    assert_eq!(
        outcome(&inc, "a", "yy").ips(),
        outcome(&inc, "a", "x").ips()
    );
    assert_eq!(
        outcome(&inc, "a", "yy").assignments[0].shared_with,
        vec![ServiceKey::new("a", "x")]
    );
}

#[test]
fn reserved_ends_of_an_overlapping_pool_are_counted_exactly() {
    // `c` overlaps the older `a`, so it conflicts; its `allowFirstLastIPs: No` ends count as
    // used only while nobody holds them, and `a` hands out its first address.
    let a = pool("a", &["10.0.0.0/28"]);
    let mut c = pool("c", &["10.0.0.0/29"]);
    c.created = Some(5);
    c.allow_first_last_ips = false;
    let mut a = a;
    a.created = Some(1);
    let mut inc = start(vec![a, c], &[]);
    assert_eq!(inc.outcome().pools["c"].used, 2);
    inc.upsert_service(svc("a", "x"));
    let c1 = inc.commit();
    assert_eq!(c1.full, None);
    assert_eq!(outcome(&inc, "a", "x").ips(), vec![ip("10.0.0.0")]);
    assert_eq!(inc.outcome().pools["c"].used, 1);
    assert_eq!(inc.outcome().pools["a"].used, 1);
    inc.remove_service(&ServiceKey::new("a", "x"));
    assert_eq!(inc.commit().full, None);
    assert_eq!(inc.outcome().pools["c"].used, 2);
    assert_eq!(inc.outcome().pools["a"].used, 0);
}

#[test]
fn services_lb_ipam_does_not_handle_leave_no_outcome() {
    let mut inc = start(vec![pool("p", &["10.0.0.0/30"])], &[svc("a", "x")]);
    let mut other = svc("a", "x");
    other.load_balancer_class = Some("example.com/other".into());
    inc.upsert_service(other);
    let c = inc.commit();
    assert_eq!(c.full, None);
    assert_eq!(c.services, vec![ServiceKey::new("a", "x")]);
    assert!(inc.outcome().services.is_empty());
    assert_eq!(inc.ipam().allocated(), 0);
}

#[test]
fn restart_from_snapshot_plus_journal_keeps_every_address() {
    let mut inc = start(
        vec![pool("p", &["10.0.0.0/28"])],
        &[svc("a", "x"), svc("a", "y")],
    );
    let snapshot = inc.ipam().snapshot().encode();
    inc.take_journal();
    let mut journal = Journal::header();
    for n in 0..5 {
        inc.upsert_service(svc("b", &format!("s{n}")));
        assert_eq!(inc.commit().full, None);
        journal.extend(JournalRecord::encode_lines(&inc.take_journal()));
    }
    inc.remove_service(&ServiceKey::new("a", "x"));
    inc.commit();
    journal.extend(JournalRecord::encode_lines(&inc.take_journal()));
    // A crash cut the next append.
    let next = JournalRecord::Delete { ip: ip("10.0.0.9") }.encode_line();
    journal.extend_from_slice(&next[..next.len() / 2]);

    let decoded = Journal::decode(&journal).unwrap();
    assert!(decoded.torn);
    assert_eq!(decoded.valid_len, journal.len() - next.len() / 2);
    let mut state = PersistedState::decode(&snapshot).unwrap();
    state.apply_all(&decoded.records);
    assert_eq!(state, inc.ipam().snapshot());
    let mut again = Incremental::new(LbIpam::restore(&state).unwrap(), Config::default());
    again.set_pools(inc.pools().to_vec());
    for s in inc.services() {
        again.upsert_service(s.clone());
    }
    let c = again.commit();
    assert!(!c.state_changed);
    assert_eq!(again.outcome().services, inc.outcome().services);
}
