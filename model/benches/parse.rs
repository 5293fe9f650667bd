//! Loader cost relative to bare YAML parsing of the same text: run with
//! `cargo bench -p rackd-model --bench parse` and compare `yaml_values` with
//! `parse_documents` and `snapshot_build` (ratios, not absolute times, are the figure).
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use rackd_model::{CheckOptions, Snapshot, parse_documents};
use serde::Deserialize;

fn corpus(n: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        s.push_str(&format!(
            "---\napiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata:\n  name: pool-{i}\nspec:\n  blocks:\n  - cidr: 10.{}.{}.0/24\n  serviceSelector:\n    matchLabels:\n      pool: p{i}\n",
            i / 256,
            i % 256
        ));
        s.push_str(&format!(
            "---\napiVersion: cilium.io/v2\nkind: CiliumBGPPeerConfig\nmetadata:\n  name: peer-{i}\nspec:\n  timers:\n    holdTimeSeconds: 9\n    keepAliveTimeSeconds: 3\n  families:\n  - afi: ipv4\n    safi: unicast\n    advertisements:\n      matchLabels:\n        advertise: bgp\n"
        ));
        s.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: svc-{i}\n  namespace: ns{}\n  labels:\n    app: web\nspec:\n  type: LoadBalancer\n  ports:\n  - port: 80\n    targetPort: 8080\n",
            i % 10
        ));
    }
    s
}

fn bench(c: &mut Criterion) {
    let text = corpus(100);
    let mut g = c.benchmark_group("300 documents");
    g.sample_size(20);
    g.bench_function("yaml_values", |b| {
        b.iter(|| {
            serde_yaml_ng::Deserializer::from_str(&text)
                .map(serde_yaml_ng::Value::deserialize)
                .filter(Result::is_ok)
                .count()
        })
    });
    g.bench_function("parse_documents", |b| {
        b.iter(|| parse_documents("bench.yaml", &text).objects.len())
    });
    let parsed = parse_documents("bench.yaml", &text);
    assert!(parsed.errors.is_empty());
    g.bench_function("snapshot_build", |b| {
        b.iter(|| {
            Snapshot::build(std::slice::from_ref(&parsed), &CheckOptions::default())
                .snapshot
                .len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
