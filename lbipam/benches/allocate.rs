//! 100,000 Services over 50 pools (25 IPv4, 25 IPv6; a tenth with sharing keys):
//! allocate all, restart re-sync (decode + restore + reconcile, proving 0 IPs changed),
//! a no-op reconcile, and memory (bytes counted by a wrapping global allocator); then one
//! Service added, changed and removed through the incremental front end at 27,000 and 100,000
//! Services, with the journal records each produces, against the full reconcile and snapshot
//! encode it replaces (`incremental.rs`).
//!
//! Run: `cargo bench -p lbipam --bench allocate`
#![allow(clippy::unwrap_used)] // Tests and benchmarks may unwrap.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use criterion::Criterion;
use lbipam::{
    ANNOTATION_SHARING_KEY, Block, Config, Family, IpFamilyPolicy, LbIpam, Outcome, PersistedState,
    PoolSpec, SERVICE_NAME_LABEL, SERVICE_NAMESPACE_LABEL, ServiceKey, ServiceSelector,
    ServiceSpec, service_selector_labels,
};

/// Counts live heap bytes and their peak, so memory is measured exactly rather than via RSS.
struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn note_alloc(size: usize) {
    let now = CURRENT.fetch_add(size, Ordering::Relaxed) + size;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded unchanged to the system allocator; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            note_alloc(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
            note_alloc(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

// Not `benches/incremental.rs`: Cargo would take that for a bench target of its own.
#[path = "allocate/incremental.rs"]
mod incremental;

/// Overridable with `LBIPAM_BENCH_SERVICES` for quick runs.
fn service_count() -> usize {
    std::env::var("LBIPAM_BENCH_SERVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}
const TENANTS: usize = 25;

type Sel = BTreeMap<String, String>;

/// A selector that does not report its label keys (the trait's default), as the daemon's own
/// selector type until it implements `label_keys`: evaluated once per service.
#[derive(Clone)]
struct Opaque(Sel);

impl ServiceSelector for Opaque {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.matches(labels)
    }
}

fn opaque(pools: &[PoolSpec<Sel>]) -> Vec<PoolSpec<Opaque>> {
    pools
        .iter()
        .map(|p| p.clone().map_selector(Opaque))
        .collect()
}

/// The services as the daemon passes them today: labels without the synthetic ones.
fn raw_labels(svcs: &[ServiceSpec]) -> Vec<ServiceSpec> {
    svcs.iter()
        .map(|s| {
            let mut s = s.clone();
            s.labels.remove(SERVICE_NAME_LABEL);
            s.labels.remove(SERVICE_NAMESPACE_LABEL);
            s
        })
        .collect()
}

fn tenant_selector(t: usize) -> Sel {
    [("tenant".to_owned(), format!("t{t}"))]
        .into_iter()
        .collect()
}

fn pools() -> Vec<PoolSpec<Sel>> {
    let mut out = Vec::new();
    for t in 0..TENANTS {
        let mut v4 = PoolSpec::new(
            format!("v4-t{t}"),
            vec![Block::parse(&format!("10.{t}.0.0/16"), "", "").unwrap()],
        );
        v4.service_selector = Some(tenant_selector(t));
        v4.created = Some(t as i64);
        let mut v6 = PoolSpec::new(
            format!("v6-t{t}"),
            vec![Block::parse(&format!("2001:db8:{t:x}::/64"), "", "").unwrap()],
        );
        v6.service_selector = Some(tenant_selector(t));
        v6.created = Some(t as i64);
        out.push(v4);
        out.push(v6);
    }
    out
}

/// In key order, as a daemon holding services in a map by key passes them.
fn services() -> Vec<ServiceSpec> {
    services_n(service_count())
}

/// `n` services in key order.
fn services_n(n: usize) -> Vec<ServiceSpec> {
    let mut v = unsorted_services_n(n);
    v.sort_by(|a, b| a.key.cmp(&b.key));
    v
}

fn unsorted_services() -> Vec<ServiceSpec> {
    unsorted_services_n(service_count())
}

fn unsorted_services_n(n: usize) -> Vec<ServiceSpec> {
    (0..n)
        .map(|n| {
            let mut s = ServiceSpec {
                key: ServiceKey::new(format!("ns{}", n % 500), format!("svc-{n}")),
                is_load_balancer: true,
                ..Default::default()
            };
            s.labels
                .insert("tenant".into(), format!("t{}", n % TENANTS));
            s.labels.insert("app".into(), format!("app{n}"));
            // As the daemon does once per Service change.
            s.labels = service_selector_labels(&s.key.namespace, &s.key.name, &s.labels);
            match n % 5 {
                0..=2 => {}
                3 => {
                    s.ip_family_policy = Some(IpFamilyPolicy::SingleStack);
                    s.ip_families = vec![Family::V6];
                }
                _ => {
                    s.ip_family_policy = Some(IpFamilyPolicy::PreferDualStack);
                    s.ip_families = vec![Family::V4, Family::V6];
                }
            }
            if n % 10 == 7 {
                // Groups of five services (same namespace, same tenant) share one address.
                s.annotations.insert(
                    ANNOTATION_SHARING_KEY.into(),
                    format!("group-{}", n / (10 * 500 * 5)),
                );
                s.ports = vec![8000 + (n / 5000) as u16];
            } else {
                s.ports = vec![80, 443];
            }
            s
        })
        .collect()
}

fn held(o: &Outcome) -> BTreeMap<ServiceKey, Vec<IpAddr>> {
    o.services
        .iter()
        .map(|(k, v)| (k.clone(), v.ips()))
        .collect()
}

/// Nanoseconds this thread has run on a CPU (Linux schedstat), so figures stay meaningful
/// when other work shares the machine; 0 where unavailable.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// Runs `f` `n` times; returns the median wall and on-CPU durations in milliseconds.
fn medians<T>(n: usize, mut f: impl FnMut() -> T) -> (f64, f64) {
    let mut wall = Vec::new();
    let mut cpu = Vec::new();
    for _ in 0..n {
        let (t, c) = (std::time::Instant::now(), cpu_ns());
        let out = f();
        cpu.push((cpu_ns() - c) as f64 / 1e6);
        wall.push(t.elapsed().as_secs_f64() * 1e3);
        drop(out);
    }
    wall.sort_by(f64::total_cmp);
    cpu.sort_by(f64::total_cmp);
    (wall[n / 2], cpu[n / 2])
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn main() {
    let cfg = Config::default();
    let pools = pools();
    if std::env::var_os("LBIPAM_BENCH_INCREMENTAL_ONLY").is_some() {
        incremental::figures(&cfg, &pools);
        return;
    }
    let svcs = services();

    if let Some(what) = std::env::var_os("LBIPAM_BENCH_PROFILE") {
        // Only allocate-all (or, with `resync`, only the restart path), for `perf record`.
        let mut ipam = LbIpam::new();
        black_box(ipam.reconcile(&cfg, &pools, &svcs));
        let bytes = ipam.snapshot().encode();
        for _ in 0..5 {
            if what == "resync" {
                let mut ipam = LbIpam::from_bytes(&bytes).unwrap();
                black_box(ipam.reconcile(&cfg, &pools, &svcs));
            } else {
                let mut ipam = LbIpam::new();
                black_box(ipam.reconcile(&cfg, &pools, &svcs));
            }
        }
        return;
    }

    // Figures outside criterion: memory, state size, correctness of the re-sync.
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let mut ipam = LbIpam::new();
    let first = ipam.reconcile(&cfg, &pools, &svcs);
    let peak = PEAK.load(Ordering::Relaxed) - base;
    let with_outcome = CURRENT.load(Ordering::Relaxed) - base;
    let expected = held(&first);
    let shared = first
        .services
        .values()
        .filter(|s| s.assignments.iter().any(|a| !a.shared_with.is_empty()))
        .count();
    drop(first);
    let resident = CURRENT.load(Ordering::Relaxed) - base;
    let bytes = ipam.snapshot().encode();
    println!(
        "lbipam: {} services, {} pools, {} addresses allocated, {} services on shared addresses, {} unsatisfied",
        svcs.len(),
        pools.len(),
        ipam.allocated(),
        shared,
        0
    );
    println!(
        "lbipam memory: allocator state {:.1} MiB ({} B/address), with outcome {:.1} MiB, peak during allocate-all {:.1} MiB",
        mib(resident),
        resident / ipam.allocated().max(1),
        mib(with_outcome),
        mib(peak)
    );
    println!("lbipam state file: {:.1} MiB", mib(bytes.len()));

    // Re-sync proof: restore, reconcile with inputs in another order, compare every service.
    let mut restored = LbIpam::from_bytes(&bytes).unwrap();
    let mut rev_svcs = svcs.clone();
    rev_svcs.reverse();
    let mut rev_pools = pools.clone();
    rev_pools.reverse();
    let again = restored.reconcile(&cfg, &rev_pools, &rev_svcs);
    assert!(!again.state_changed, "re-sync changed state");
    let now = held(&again);
    let changed = expected
        .iter()
        .filter(|(k, v)| now.get(*k) != Some(*v))
        .count();
    assert_eq!(changed, 0);
    println!(
        "lbipam re-sync: 0 of {} services changed IPs",
        expected.len()
    );
    assert_eq!(again.unsatisfied(), 0);

    // Memory does not depend on pool size: 1,000 services in a /24 and in a /64.
    for cidr in ["10.0.0.0/22", "2001:db8::/64"] {
        let p = vec![PoolSpec::<Sel>::new(
            "p",
            vec![Block::parse(cidr, "", "").unwrap()],
        )];
        let s: Vec<ServiceSpec> = svcs[..1000]
            .iter()
            .map(|s| {
                let mut s = s.clone();
                s.annotations.clear();
                s.ip_family_policy = None;
                s.ip_families = vec![if cidr.contains(':') {
                    Family::V6
                } else {
                    Family::V4
                }];
                s
            })
            .collect();
        let before = CURRENT.load(Ordering::Relaxed);
        let mut small = LbIpam::new();
        drop(small.reconcile(&cfg, &p, &s));
        let used = CURRENT.load(Ordering::Relaxed) - before;
        println!(
            "lbipam memory, 1,000 services in {cidr}: {:.0} KiB",
            used as f64 / 1024.0
        );
    }

    // Medians of 5 runs, wall and on-CPU (the machine may be shared).
    let (w, c) = medians(5, || {
        let mut ipam = LbIpam::new();
        let out = ipam.reconcile(&cfg, &pools, &svcs);
        (ipam, out)
    });
    println!("lbipam allocate-all: median wall {w:.0} ms, on-CPU {c:.0} ms");
    let shuffled = unsorted_services();
    let (w, c) = medians(5, || {
        let mut ipam = LbIpam::new();
        let out = ipam.reconcile(&cfg, &pools, &shuffled);
        (ipam, out)
    });
    println!(
        "lbipam allocate-all, input not in key order: median wall {w:.0} ms, on-CPU {c:.0} ms"
    );
    drop(shuffled);
    // What the daemon's configuration costs: its selector type may not report label keys, and it
    // passes labels without the synthetic ones (built per service when a selector needs them).
    let raw = raw_labels(&svcs);
    let opaque_pools = opaque(&pools);
    for (what, svcs) in [("prebuilt labels", &svcs), ("raw labels", &raw)] {
        let (w, c) = medians(5, || {
            let mut ipam = LbIpam::new();
            let out = ipam.reconcile(&cfg, &opaque_pools, svcs);
            (ipam, out)
        });
        println!(
            "lbipam allocate-all, selectors without label_keys, {what}: median wall {w:.0} ms, on-CPU {c:.0} ms"
        );
    }
    let (w, c) = medians(5, || {
        let mut ipam = LbIpam::new();
        let out = ipam.reconcile(&cfg, &pools, &raw);
        (ipam, out)
    });
    println!("lbipam allocate-all, raw labels: median wall {w:.0} ms, on-CPU {c:.0} ms");
    drop(raw);
    let (w, c) = medians(5, || {
        let mut ipam = LbIpam::from_bytes(&bytes).unwrap();
        let out = ipam.reconcile(&cfg, &pools, &svcs);
        assert!(!out.state_changed);
        (ipam, out)
    });
    println!("lbipam re-sync (decode+restore+reconcile): median wall {w:.0} ms, on-CPU {c:.0} ms");
    let (w, c) = medians(5, || LbIpam::from_bytes(&bytes).unwrap());
    println!("lbipam   of which decode+restore: median wall {w:.0} ms, on-CPU {c:.0} ms");
    let (w, c) = medians(5, || ipam.snapshot());
    println!("lbipam snapshot: median wall {w:.0} ms, on-CPU {c:.0} ms");
    let (w, c) = medians(5, || ipam.snapshot().encode());
    println!("lbipam snapshot+encode: median wall {w:.0} ms, on-CPU {c:.0} ms");
    let (w, c) = medians(5, || ipam.clone());
    println!("lbipam clone of the allocator: median wall {w:.0} ms, on-CPU {c:.0} ms");
    drop(ipam);
    drop(restored);
    incremental::figures(&cfg, &pools);
    // Criterion's no-op reconcile below needs an allocator again.
    let mut ipam = LbIpam::new();
    drop(ipam.reconcile(&cfg, &pools, &svcs));
    if std::env::var_os("LBIPAM_BENCH_QUICK").is_some() {
        return;
    }

    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8))
        .configure_from_args();

    c.bench_function("allocate_all_100k", |b| {
        b.iter_with_large_drop(|| {
            let mut ipam = LbIpam::new();
            let out = ipam.reconcile(&cfg, black_box(&pools), black_box(&svcs));
            (ipam, out)
        })
    });

    c.bench_function("resync_100k_decode_restore_reconcile", |b| {
        b.iter_with_large_drop(|| {
            let mut ipam = LbIpam::from_bytes(black_box(&bytes)).unwrap();
            let out = ipam.reconcile(&cfg, &pools, &svcs);
            assert!(!out.state_changed);
            (ipam, out)
        })
    });

    let state = PersistedState::decode(&bytes).unwrap();
    c.bench_function("resync_100k_restore_reconcile", |b| {
        b.iter_with_large_drop(|| {
            let mut ipam = LbIpam::restore(black_box(&state)).unwrap();
            let out = ipam.reconcile(&cfg, &pools, &svcs);
            assert!(!out.state_changed);
            (ipam, out)
        })
    });

    c.bench_function("reconcile_100k_noop", |b| {
        b.iter_with_large_drop(|| ipam.reconcile(&cfg, &pools, &svcs))
    });

    c.final_summary();
}
