//! Cost of one edited document in a 27,000-document file, by phase.
#![allow(clippy::unwrap_used, clippy::disallowed_types)]
use std::time::Instant;

use rackd_model::{CheckOptions, FileSource, Store};

fn text(n: usize, edit: Option<usize>) -> String {
    let mut s = String::new();
    for i in 0..n {
        let ty = if edit == Some(i) {
            "ClusterIP"
        } else {
            "LoadBalancer"
        };
        s.push_str(&format!("---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: scale, labels: {{scale: \"yes\"}}}}\nspec: {{type: {ty}, ipFamilies: [IPv4], ports: [{{port: 80, protocol: TCP}}]}}\n"));
    }
    s
}

fn main() {
    let n = 27_000;
    let mut file = FileSource::new("f.yaml");
    let t0 = text(n, None);
    let u = file.update(&t0);
    let mut store = Store::new(CheckOptions::default());
    store.apply(vec![u]);
    for round in 0..5 {
        let t = text(n, Some(round * 7));
        let a = Instant::now();
        let u = file.update(&t);
        let b = Instant::now();
        let c = b;
        let applied = store.apply(vec![u]);
        let d = Instant::now();
        let _ = store.errors();
        let e = Instant::now();
        println!(
            "one document edited: file {:?} apply {:?} ({} changes) errors {:?}",
            b - a,
            d - c,
            applied.changes.len(),
            e - d
        );
    }
    // A document inserted at the top: every other document moves (new origins, no change).
    let t = format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: first, namespace: scale}}\nspec: {{type: ClusterIP, ports: [{{port: 80}}]}}\n{}",
        text(n, None)
    );
    let a = Instant::now();
    let u = file.update(&t);
    let b = Instant::now();
    let applied = store.apply(vec![u]);
    let c = Instant::now();
    println!(
        "one document inserted first: file {:?} apply {:?} ({} changes)",
        b - a,
        c - b,
        applied.changes.len()
    );
}
