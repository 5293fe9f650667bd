//! Building one Maglev table of Cilium's default size (16381) for 10 and 100 backends:
//! what every change to a Service's backends costs the controller.
//! `cargo bench -p rackd-services --bench maglev`

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rackd_services::L4Proto;
use rackd_services::maglev::{
    DEFAULT_WEIGHT, MaglevBackend, MaglevConfig, hash_string, lookup_table,
};

fn backends(n: u32) -> Vec<MaglevBackend> {
    (0..n)
        .map(|i| {
            let [_, _, a, b] = (i + 2).to_be_bytes();
            MaglevBackend {
                key: hash_string(IpAddr::V4(Ipv4Addr::new(10, 244, a, b)), 8080, L4Proto::Tcp),
                id: i + 1,
                weight: DEFAULT_WEIGHT,
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let cfg = MaglevConfig::default();
    let mut g = c.benchmark_group("maglev_lookup_table_16381");
    for n in [10u32, 100] {
        let bs = backends(n);
        g.bench_with_input(BenchmarkId::from_parameter(n), &bs, |b, bs| {
            b.iter(|| lookup_table(black_box(&cfg), black_box(bs)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
