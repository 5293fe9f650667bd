//! The speaker's per-prefix stages between decoding and encoding, one Criterion group each,
//! on the shape of the 1M-prefix convergence benchmark (`bgpd/bench`): IPv4 /24s, a third
//! as many attribute sets as prefixes, AS paths of 2-6 hops.
//!
//! - `intern`: decoded attribute sets into the interner (what every UPDATE does first);
//! - `rib_insert`: a full table from one peer into the RIB (`Table::set`: hash insert and the
//!   decision process with one path);
//! - `rib_best_path`: a second peer's paths over that table (decision with two candidates,
//!   half of them winning);
//! - `prefix_map`: the Loc-RIB/Adj-RIB-Out map (`PrefixMap`, dense) against the hashbrown map
//!   it replaced, same keys, insert then look up; the bytes each allocates are printed;
//! - `export_policy`: the export policy lookup per prefix, accept-all and a 27,000-statement
//!   exact-prefix table (Cilium's shape).
//!
//! Decoding and encoding UPDATEs are `bgpd-wire`'s `update_codec` bench. The export rules
//! (`instance::export_rules`) are private to the speaker; their cost shows in the end-to-end
//! figures of `bgpd/bench` and in `incremental`.
//!
//! `cargo bench -p bgpd --bench stages` (add `-- --warm-up-time 1 --measurement-time 5` to
//! shorten; `-- rib_insert` for one group).

#![allow(clippy::unwrap_used)] // Benchmark setup may unwrap.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use bgpd::policy::{Actions, Policy, PolicyIndex, PrefixMatch, Statement};
use bgpd::rib::{Attrs, Interner, PeerId, PrefixMap, SourceInfo, Sources, Table};
use bgpd_wire::{AsPath, AsSegment, Community, Family, NextHop, Origin, PathAttributes};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ipnet::{IpNet, Ipv4Net};

const PREFIXES: u32 = 1_000_000;
const SETS: u32 = PREFIXES / 3;

/// xorshift, so every run builds the same table.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 16) as u32
    }
}

fn prefix(i: u32) -> IpNet {
    // 100.0.0.0/24 onwards, as the convergence benchmark's workload.
    let a = u32::from(Ipv4Addr::new(100, 0, 0, 0)) + (i << 8);
    IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a), 24).unwrap())
}

/// `SETS` decoded-like attribute sets (each its own allocation, as the decoder makes them).
fn sets(first_as: u32, seed: u64) -> Vec<Arc<PathAttributes>> {
    let mut rng = Rng(seed);
    (0..SETS)
        .map(|_| {
            let hops = 2 + rng.next() % 5;
            let path = (0..hops)
                .map(|h| {
                    if h == 0 {
                        first_as
                    } else {
                        1 + rng.next() % 400_000
                    }
                })
                .collect();
            let communities = if rng.next() % 10 < 4 {
                (0..1 + rng.next() % 3)
                    .map(|_| Community(rng.next()))
                    .collect()
            } else {
                Vec::new()
            };
            Arc::new(PathAttributes {
                origin: if rng.next().is_multiple_of(10) {
                    Origin::Incomplete
                } else {
                    Origin::Igp
                },
                as_path: AsPath {
                    segments: vec![AsSegment::Sequence(path)],
                },
                next_hop: Some(Ipv4Addr::new(10, 0, 1, 2)),
                med: (rng.next() % 10 < 3).then(|| rng.next() % 1000),
                communities,
                ..PathAttributes::default()
            })
        })
        .collect()
}

/// Every prefix with the index of its set: each set gets one prefix, the rest at random.
fn assignment() -> Vec<(IpNet, usize)> {
    let mut rng = Rng(7);
    (0..PREFIXES)
        .map(|i| {
            let s = if i < SETS { i } else { rng.next() % SETS };
            (prefix(i), s as usize)
        })
        .collect()
}

fn sources() -> (Sources, PeerId, PeerId) {
    let mut s = Sources::default();
    let a = s.allocate();
    s.set(
        a,
        SourceInfo {
            address: IpAddr::V4(Ipv4Addr::new(10, 0, 1, 2)),
            router_id: Ipv4Addr::new(10, 0, 1, 2),
            ebgp: true,
        },
    );
    let b = s.allocate();
    s.set(
        b,
        SourceInfo {
            address: IpAddr::V4(Ipv4Addr::new(10, 0, 3, 2)),
            router_id: Ipv4Addr::new(10, 0, 3, 2),
            ebgp: true,
        },
    );
    (s, a, b)
}

fn interned(i: &mut Interner, sets: &[Arc<PathAttributes>], nh: Ipv4Addr) -> Vec<Arc<Attrs>> {
    sets.iter()
        .map(|s| i.attrs(s.clone(), NextHop::V4(nh)))
        .collect()
}

fn bench(c: &mut Criterion) {
    let sets_a = sets(65001, 0x9e37_79b9_7f4a_7c15);
    let sets_b = sets(65003, 0x2545_f491_4f6c_dd1d);
    let assign = assignment();
    let (src, peer_a, peer_b) = sources();

    let mut g = c.benchmark_group("intern");
    g.sample_size(10);
    g.throughput(Throughput::Elements(u64::from(SETS)));
    g.bench_function("330k_sets", |b| {
        b.iter_batched(
            || {
                // Fresh copies: the interner must hash and compare, not hit by pointer.
                sets_a
                    .iter()
                    .map(|s| Arc::new((**s).clone()))
                    .collect::<Vec<_>>()
            },
            |fresh| {
                let mut i = Interner::default();
                let v = interned(&mut i, &fresh, Ipv4Addr::new(10, 0, 1, 2));
                black_box((i.len(), v.len()))
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();

    let mut interner = Interner::default();
    let attrs_a = interned(&mut interner, &sets_a, Ipv4Addr::new(10, 0, 1, 2));
    let attrs_b = interned(&mut interner, &sets_b, Ipv4Addr::new(10, 0, 3, 2));
    let full = |peer: PeerId, attrs: &[Arc<Attrs>]| {
        let mut t = Table::new(Family::Ipv4Unicast);
        for (p, s) in &assign {
            t.set(*p, peer, Some((attrs[*s].clone(), 0)), 0, &src);
        }
        t
    };

    let mut g = c.benchmark_group("rib_insert");
    g.sample_size(10);
    g.throughput(Throughput::Elements(u64::from(PREFIXES)));
    g.bench_function("1M_prefixes_one_peer", |b| {
        b.iter(|| black_box(full(peer_a, &attrs_a).len()))
    });
    g.finish();

    let mut g = c.benchmark_group("rib_best_path");
    g.sample_size(10);
    g.throughput(Throughput::Elements(u64::from(PREFIXES)));
    g.bench_function("1M_prefixes_second_peer", |b| {
        b.iter_batched(
            || full(peer_a, &attrs_a),
            |mut t| {
                let mut changed = 0usize;
                for (p, s) in &assign {
                    changed +=
                        usize::from(t.set(*p, peer_b, Some((attrs_b[*s].clone(), 0)), 0, &src));
                }
                black_box(changed)
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("prefix_map");
    g.sample_size(10);
    g.throughput(Throughput::Elements(u64::from(PREFIXES)));
    {
        let mut m: PrefixMap<[u64; 2]> = PrefixMap::new();
        let mut h: hashbrown::HashMap<u64, [u64; 2]> = hashbrown::HashMap::new();
        for (i, (p, _)) in assign.iter().enumerate() {
            m.insert(*p, [i as u64; 2]);
            h.insert(i as u64, [i as u64; 2]);
        }
        // 24-byte entries plus a control byte per bucket.
        // "record: " lines are kept by criterion_summary.py in the results JSON.
        eprintln!(
            "record: prefix_map 1M entries of 16 bytes: dense {:.1} MB, hashbrown {:.1} MB",
            m.allocated_bytes() as f64 / 1e6,
            (h.capacity() + 1).next_power_of_two() as f64 * 25.0 / 1e6
        );
    }
    g.bench_function("dense_insert_get_1M", |b| {
        b.iter(|| {
            let mut m: PrefixMap<[u64; 2]> = PrefixMap::new();
            for (i, (p, _)) in assign.iter().enumerate() {
                m.insert(*p, [i as u64; 2]);
            }
            let hits = assign.iter().filter(|(p, _)| m.get(p).is_some()).count();
            black_box(hits)
        })
    });
    g.bench_function("hashbrown_insert_get_1M", |b| {
        b.iter(|| {
            let mut m: hashbrown::HashMap<u64, [u64; 2]> = hashbrown::HashMap::new();
            let key = |p: &IpNet| match p {
                IpNet::V4(n) => (u64::from(u32::from(n.addr())) << 8) | u64::from(n.prefix_len()),
                IpNet::V6(_) => 0,
            };
            for (i, (p, _)) in assign.iter().enumerate() {
                m.insert(key(p), [i as u64; 2]);
            }
            let hits = assign
                .iter()
                .filter(|(p, _)| m.contains_key(&key(p)))
                .count();
            black_box(hits)
        })
    });
    g.finish();

    let accept = Policy::accept_all();
    let accept_idx = PolicyIndex::new(&accept);
    let table = Policy {
        statements: (0..27_000)
            .map(|i| Statement {
                prefixes: vec![PrefixMatch::exact(prefix(i * 37))],
                actions: Actions {
                    add_communities: vec![65000 << 16 | (i % 100)],
                    ..Actions::default()
                },
            })
            .collect(),
        default_accept: false,
    };
    let table_idx = PolicyIndex::new(&table);
    let mut g = c.benchmark_group("export_policy");
    g.sample_size(10);
    g.throughput(Throughput::Elements(u64::from(PREFIXES)));
    g.bench_function("accept_all_1M", |b| {
        b.iter(|| {
            for (p, _) in &assign {
                black_box(accept_idx.evaluate(&accept, p));
            }
        })
    });
    g.bench_function("exact_table_27k_1M", |b| {
        b.iter(|| {
            for (p, _) in &assign {
                black_box(table_idx.evaluate(&table, p));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
