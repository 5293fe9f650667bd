//! What a changed selector costs without a label index: the selector compiled and tested
//! against every Service of a 27,000-Service snapshot (with the synthetic namespace/name
//! labels, as the BGP, LB-IPAM and L2 selectors see them). Two selectors: one `matchLabels`
//! pair, and an `In` plus a `NotIn` requirement. Each Service has four labels. Medians of
//! `--rounds` (default 21), thread CPU time.
//!
//! Run: `cargo bench -p rackd-model --bench selector_cost -- [--docs N] [--rounds R] [--out FILE]`
//! (FILE relative to the workspace root).
#![allow(clippy::unwrap_used, clippy::disallowed_types)]

use std::collections::BTreeMap;
use std::time::Duration;

use rackd_model::selector::{LabelSelector, LabelSelectorRequirement, Selector, ServiceLabels};
use rackd_model::{CheckOptions, Snapshot, parse_documents};

fn text(n: usize) -> String {
    let mut s = String::with_capacity(n * 260);
    for i in 0..n {
        let tier = ["frontend", "backend", "db"][i % 3];
        let env = ["prod", "staging"][i % 2];
        s.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: ns{}, labels: {{app: app-{}, tier: {tier}, env: {env}, scale: \"yes\"}}}}\nspec: {{type: LoadBalancer, ipFamilies: [IPv4], ports: [{{port: 80, protocol: TCP}}]}}\n",
            i % 50,
            i % 1000
        ));
    }
    s
}

/// This thread's CPU time.
fn cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime with a valid clock id and a pointer to our timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn sh(cmd: &str) -> String {
    std::process::Command::new("sh")
        .args(["-c", cmd])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn requirement(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
    LabelSelectorRequirement {
        key: key.to_owned(),
        operator: op.to_owned(),
        values: Some(values.iter().map(|v| (*v).to_owned()).collect()),
    }
}

/// Compiles `sel` and counts the Services it selects: what a changed selector costs.
fn select(snap: &Snapshot, sel: &LabelSelector) -> usize {
    let compiled = Selector::compile(sel).unwrap();
    snap.services()
        .filter(|svc| {
            let labels = ServiceLabels {
                labels: svc.metadata.labels.as_ref(),
                namespace: svc.metadata.namespace.as_deref().unwrap_or_default(),
                name: svc.metadata.name.as_deref().unwrap_or_default(),
            };
            compiled.matches(&labels)
        })
        .count()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = arg(&args, "--docs")
        .and_then(|v| v.parse().ok())
        .unwrap_or(27_000);
    let rounds: usize = arg(&args, "--rounds")
        .and_then(|v| v.parse().ok())
        .unwrap_or(21);
    let opts = CheckOptions::default();
    let snap = Snapshot::build(&[parse_documents("f.yaml", &text(n))], &opts).snapshot;
    assert_eq!(snap.services().count(), n);

    let match_labels = LabelSelector {
        match_labels: Some(BTreeMap::from([("app".to_owned(), "app-7".to_owned())])),
        match_expressions: None,
    };
    let in_not_in = LabelSelector {
        match_labels: None,
        match_expressions: Some(vec![
            requirement("tier", "In", &["frontend", "backend"]),
            requirement("env", "NotIn", &["staging"]),
        ]),
    };
    let mut results = serde_json::Map::new();
    let mut medians = serde_json::Map::new();
    for (name, sel) in [("match_labels", &match_labels), ("in_not_in", &in_not_in)] {
        let mut ms = Vec::new();
        let mut selected = 0;
        for _ in 0..rounds {
            let c0 = cpu();
            selected = std::hint::black_box(select(&snap, sel));
            ms.push((cpu() - c0).as_secs_f64() * 1e3);
        }
        medians.insert(name.to_owned(), median(&mut ms.clone()).into());
        results.insert(
            name.to_owned(),
            serde_json::json!({
                "selector": serde_json::to_value(sel).unwrap(),
                "selected": selected,
                "cpu_ms": ms,
            }),
        );
    }
    let out = serde_json::json!({
        "bench": "model selector_cost",
        "date": sh("date -u +%Y-%m-%dT%H:%M:%SZ"),
        "commit": sh("git rev-parse HEAD"),
        "dirty": !sh("git status --porcelain --untracked-files=no").is_empty(),
        "machine": {
            "uname": sh("uname -srm"),
            "nproc": sh("nproc"),
            "cpu": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"),
            "loadavg": sh("cat /proc/loadavg"),
        },
        "services": n,
        "labels_per_service": "app: app-<i mod 1000>, tier: frontend|backend|db, env: prod|staging, scale: yes; namespace ns<i mod 50>",
        "rounds": rounds,
        "results": results,
        "medians_cpu_ms": medians,
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&out["medians_cpu_ms"]).unwrap()
    );
    if let Some(path) = arg(&args, "--out") {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(&path, serde_json::to_string_pretty(&out).unwrap()).unwrap();
        println!("raw data: {}", path.display());
    }
}
