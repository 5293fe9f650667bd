#![allow(clippy::unwrap_used)]

use super::*;
use crate::maglev::{TableSize, lookup_table};
use crate::table::{BackendRef, L4Proto, ServiceName};
use proptest::prelude::*;
use std::net::Ipv4Addr;

/// The maps, as a model: what applying operations leaves.
#[derive(Debug, Default, Clone, PartialEq)]
struct Maps {
    services: BTreeMap<Frontend, ServiceValue>,
    backends: BTreeMap<BackendId, BackendValue>,
}

impl Maps {
    /// Applies `ops` in order, checking after each that no table slot names a missing
    /// backend (what a packet could meet mid-plan).
    fn apply(&mut self, ops: &[Op]) {
        for op in ops {
            match op {
                Op::UpsertBackend { id, value } => {
                    self.backends.insert(*id, *value);
                }
                Op::UpsertService { frontend, value } => {
                    self.services.insert(*frontend, value.clone());
                }
                Op::DeleteService { frontend, id } => {
                    let v = self
                        .services
                        .remove(frontend)
                        .expect("deleting a missing frontend");
                    assert_eq!(v.id, *id);
                }
                Op::DeleteBackend { id } => {
                    assert!(
                        self.backends.remove(id).is_some(),
                        "deleting missing backend {id:?}"
                    );
                }
            }
            for (f, v) in &self.services {
                for id in v.lut.ids() {
                    assert!(
                        self.backends.contains_key(&BackendId(*id)),
                        "{f}: slot names missing {id}"
                    );
                }
            }
        }
    }
}

fn cfg() -> MaglevConfig {
    MaglevConfig {
        table_size: TableSize::new(251).unwrap(),
        seed: Default::default(),
    }
}

/// The maps `desired` calls for, computed from scratch with the planner's ids.
fn expected(desired: &ServiceTable, ids: &IdAllocator) -> Maps {
    let mut m = Maps::default();
    for (f, e) in desired.iter() {
        let lut_in: Vec<_> = e
            .backends
            .iter()
            .map(|r| MaglevBackend {
                key: crate::maglev::backend_hash_string(&r.backend),
                id: ids.backend(&r.backend).unwrap().0,
                weight: DEFAULT_WEIGHT,
            })
            .collect();
        m.services.insert(
            *f,
            ServiceValue {
                id: ids.service(f).unwrap(),
                local_only: e.local_only,
                affinity_timeout: e.affinity_timeout,
                source_ranges: e.source_ranges.clone(),
                lut: Arc::new(lookup_table(&cfg(), &lut_in).unwrap()),
            },
        );
        for r in &e.backends {
            let id = ids.backend(&r.backend).unwrap();
            let v = m.backends.entry(id).or_insert(BackendValue {
                addr: r.backend.addr,
                port: r.backend.port,
                proto: r.backend.proto,
                local: false,
            });
            v.local |= r.local;
        }
    }
    m
}

fn fe(i: u8, port: u16) -> Frontend {
    Frontend {
        addr: Ipv4Addr::new(172, 18, 255, i).into(),
        port,
        proto: L4Proto::Tcp,
    }
}

fn be(i: u8) -> Backend {
    Backend {
        addr: Ipv4Addr::new(10, 244, 0, i).into(),
        port: 8080,
        proto: L4Proto::Tcp,
    }
}

/// One Service: (name index, frontends (addr index, port), backends (index, local), flags).
type Spec = (u8, Vec<(u8, u16)>, Vec<(u8, bool)>, bool, bool);

fn spec() -> impl Strategy<Value = Spec> {
    (
        0u8..4,
        prop::collection::vec((0u8..4, prop::sample::select(vec![80u16, 443])), 0..3),
        prop::collection::vec((0u8..8, any::<bool>()), 0..5),
        any::<bool>(),
        any::<bool>(),
    )
}

fn table(specs: &[Spec]) -> ServiceTable {
    let mut t = ServiceTable::default();
    let mut by_svc: BTreeMap<ServiceName, Vec<(Frontend, ServiceEntry)>> = BTreeMap::new();
    for (n, fronts, backs, local_only, affinity) in specs {
        let svc: ServiceName = ("ns".into(), format!("s{n}"));
        let mut backends: BTreeMap<Backend, bool> = BTreeMap::new();
        for (b, local) in backs {
            *backends.entry(be(*b)).or_default() |= *local;
        }
        let entry = ServiceEntry {
            service: svc.clone(),
            backends: backends
                .into_iter()
                .map(|(backend, local)| BackendRef { backend, local })
                .collect(),
            local_only: *local_only,
            affinity_timeout: affinity.then_some(Duration::from_secs(10800)),
            source_ranges: None,
        };
        let v = by_svc.entry(svc).or_default();
        for (a, p) in fronts {
            v.push((fe(*a, *p), entry.clone()));
        }
    }
    for (svc, mut entries) in by_svc {
        entries.sort_by_key(|e| e.0);
        entries.dedup_by_key(|e| e.0);
        t.set_service(&svc, entries);
    }
    t
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// After every plan of a random sequence of tables, the maps hold exactly what the
    /// desired table calls for, no operation leaves a dangling slot, and ids of frontends
    /// and backends that stay keep their ids.
    #[test]
    fn plans_reach_the_desired_state(steps in prop::collection::vec(prop::collection::vec(spec(), 0..5), 1..6)) {
        let mut planner = Planner::new(cfg(), IdAllocator::new());
        let mut maps = Maps::default();
        let mut prev = ServiceTable::default();
        for specs in &steps {
            let desired = table(specs);
            let before_ids: Vec<_> = desired.iter().filter_map(|(f, _)| prev.get(f).map(|_| (*f, planner.ids().service(f)))).collect();
            let plan = planner.plan(&desired);
            prop_assert!(plan.failures.is_empty());
            maps.apply(&plan.ops);
            prop_assert_eq!(&maps, &expected(&desired, planner.ids()));
            for (f, id) in before_ids {
                prop_assert_eq!(planner.ids().service(&f), id);
            }
            // Planning the same table again does nothing.
            prop_assert!(planner.plan(&desired).ops.is_empty());
            prev = desired;
        }
        // And back to nothing: every entry goes.
        let plan = planner.plan(&ServiceTable::default());
        maps.apply(&plan.ops);
        prop_assert_eq!(&maps, &Maps::default());
        prop_assert_eq!(planner.ids().len(), (0, 0));
    }
}

/// 300 frontends whose backend sets all differ: 250 distinct tables.
fn many_frontends() -> ServiceTable {
    let mut t = ServiceTable::default();
    for s in 0..150u8 {
        let svc: ServiceName = ("ns".into(), format!("s{s}"));
        let backends = (0..1 + s % 5)
            .map(|k| BackendRef {
                backend: be(s.wrapping_add(k.wrapping_mul(37))),
                local: k % 2 == 0,
            })
            .collect();
        let e = ServiceEntry {
            service: svc.clone(),
            backends,
            local_only: false,
            affinity_timeout: None,
            source_ranges: None,
        };
        t.set_service(&svc, vec![(fe(s, 80), e.clone()), (fe(s, 443), e)]);
    }
    t
}

/// Enough tables for the pipeline's threads (on a machine with two cores or more): every
/// service upsert gets its own table, in the plan's order, as computed one by one.
#[test]
fn tables_computed_ahead_of_the_writes_land_on_their_own_frontends() {
    let t = many_frontends();
    let mut planner = Planner::new(cfg(), IdAllocator::new());
    let pending = planner.plan_pending(&t);
    assert!(pending.tables.len() >= crate::pending::PARALLEL_TABLES);
    // Computed on threads wherever there is a second core (CI's machines have two).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(pending.tables.started(), cores >= 2);
    let mut ops = Vec::new();
    let done: Result<(), ()> = pending.apply_each(|op| {
        ops.push(op);
        Ok(())
    });
    assert_eq!(done, Ok(()));
    let mut maps = Maps::default();
    maps.apply(&ops);
    assert_eq!(maps, expected(&t, planner.ids()));
    // Not one table for everyone: the comparison above tells them apart.
    let distinct: std::collections::BTreeSet<Vec<u32>> = maps
        .services
        .values()
        .map(|v| v.lut.slot_ids().collect())
        .collect();
    assert!(distinct.len() > 100, "{}", distinct.len());
}

/// The first error stops the writes and is returned; nothing after it is applied.
#[test]
fn a_failed_write_stops_the_plan() {
    let t = many_frontends();
    let mut planner = Planner::new(cfg(), IdAllocator::new());
    let pending = planner.plan_pending(&t);
    let total = pending.len();
    let mut applied = 0;
    let r = pending.apply_each(|op| {
        if matches!(op, Op::UpsertService { .. }) && applied > 120 {
            return Err("map full");
        }
        applied += 1;
        Ok(())
    });
    assert_eq!(r, Err("map full"));
    assert!(applied > 120 && applied < total, "{applied} of {total}");
}

#[test]
fn one_service_change_touches_only_its_entries() {
    let mut t = ServiceTable::default();
    for s in 0..50u8 {
        let svc: ServiceName = ("ns".into(), format!("s{s}"));
        let e = ServiceEntry {
            service: svc.clone(),
            backends: vec![BackendRef {
                backend: be(s),
                local: false,
            }],
            local_only: false,
            affinity_timeout: None,
            source_ranges: None,
        };
        t.set_service(&svc, vec![(fe(s, 80), e.clone()), (fe(s, 443), e)]);
    }
    let mut planner = Planner::new(cfg(), IdAllocator::new());
    let first = planner.plan(&t);
    assert_eq!(first.ops.len(), 50 + 100);
    // s7 gains a backend.
    let svc: ServiceName = ("ns".into(), "s7".into());
    let mut e = t.get(&fe(7, 80)).unwrap().clone();
    e.backends.push(BackendRef {
        backend: be(200),
        local: true,
    });
    let mut t2 = t.clone();
    t2.set_service(&svc, vec![(fe(7, 80), e.clone()), (fe(7, 443), e)]);
    let plan = planner.plan(&t2);
    let kinds: Vec<_> = plan
        .ops
        .iter()
        .map(|o| match o {
            Op::UpsertBackend { value, .. } => format!("B+{}", value.addr),
            Op::UpsertService { frontend, .. } => format!("S+{frontend}"),
            Op::DeleteService { frontend, .. } => format!("S-{frontend}"),
            Op::DeleteBackend { id } => format!("B-{}", id.0),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "B+10.244.0.200",
            "S+172.18.255.7:80/TCP",
            "S+172.18.255.7:443/TCP"
        ]
    );
    // s7 goes: frontends first, then its backends.
    let mut t3 = t2.clone();
    t3.set_service(&svc, vec![]);
    let plan = planner.plan(&t3);
    let n: Vec<_> = plan
        .ops
        .iter()
        .map(|o| matches!(o, Op::DeleteService { .. }))
        .collect();
    assert_eq!(n, [true, true, false, false]);
}

#[test]
fn restart_keeps_ids_and_prunes_the_rest() {
    let specs: Vec<Spec> = vec![(
        0,
        vec![(1, 80), (2, 80)],
        vec![(1, true), (2, false)],
        false,
        false,
    )];
    let desired = table(&specs);
    let mut p1 = Planner::new(cfg(), IdAllocator::new());
    let mut maps = Maps::default();
    maps.apply(&p1.plan(&desired).ops);
    // Something stale in the maps from before: a frontend and a backend.
    maps.services.insert(
        fe(9, 80),
        ServiceValue {
            id: ServiceId(77),
            local_only: false,
            affinity_timeout: None,
            source_ranges: None,
            lut: Arc::new(MaglevTable::empty()),
        },
    );
    maps.backends.insert(
        BackendId(99),
        BackendValue {
            addr: be(9).addr,
            port: 8080,
            proto: L4Proto::Tcp,
            local: false,
        },
    );
    // Restart: seed from the maps.
    let (ids, problems) = IdAllocator::restore(
        maps.services.iter().map(|(f, v)| (*f, v.id.0)),
        maps.backends.iter().map(|(id, v)| {
            (
                Backend {
                    addr: v.addr,
                    port: v.port,
                    proto: v.proto,
                },
                id.0,
            )
        }),
    );
    assert!(problems.is_empty());
    let mut p2 = Planner::new(cfg(), ids);
    let plan = p2.plan(&desired);
    // Same ids, same tables: rewriting is harmless.
    let before = maps.clone();
    maps.apply(&plan.ops);
    for (f, v) in &before.services {
        if *f != fe(9, 80) {
            assert_eq!(maps.services.get(f), Some(v));
        }
    }
    maps.apply(&p2.prune_restored().ops);
    assert_eq!(maps, expected(&desired, p2.ids()));
}

/// A frontend with more backends than a Maglev table holds is refused with a typed failure
/// (and retried), takes no ids, and leaves the other frontends programmed.
#[test]
fn more_backends_than_a_table_holds_is_a_failure() {
    let svc: ServiceName = ("ns".into(), "huge".into());
    let backends: Vec<BackendRef> = (0..=rackd_types::maglev::MAX_BACKENDS as u32)
        .map(|i| BackendRef {
            backend: Backend {
                addr: Ipv4Addr::from(0x0a00_0000 + i).into(),
                port: 8080,
                proto: L4Proto::Tcp,
            },
            local: false,
        })
        .collect();
    let entry = |backends: Vec<BackendRef>| ServiceEntry {
        service: svc.clone(),
        backends,
        local_only: false,
        affinity_timeout: None,
        source_ranges: None,
    };
    let mut t = ServiceTable::default();
    t.set_service(
        &svc,
        vec![
            (fe(1, 80), entry(backends)),
            (
                fe(2, 80),
                entry(vec![BackendRef {
                    backend: be(1),
                    local: false,
                }]),
            ),
        ],
    );
    let mut p = Planner::new(cfg(), IdAllocator::new());
    let plan = p.plan(&t);
    assert_eq!(
        plan.failures,
        [PlanFailure {
            frontend: fe(1, 80),
            error: PlanError::TooManyBackends { count: 65536 },
        }]
    );
    assert!(p.ids().service(&fe(1, 80)).is_none(), "no id kept");
    // The positive control: the other frontend is programmed.
    assert!(
        plan.ops
            .iter()
            .any(|op| matches!(op, Op::UpsertService { frontend, .. } if *frontend == fe(2, 80)))
    );
    assert!(
        !plan
            .ops
            .iter()
            .any(|op| matches!(op, Op::UpsertService { frontend, .. } if *frontend == fe(1, 80)))
    );
}
