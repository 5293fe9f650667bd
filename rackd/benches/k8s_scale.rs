//! The Kubernetes scale benchmark (issue 16): N LoadBalancer Services created through a real
//! kube-apiserver until all have an EXTERNAL-IP and their routes are at an FRR ToR, and the
//! API requests rackd makes per resource and verb (idle, loading, steady state), beside the
//! API server's own create pace (the ceiling). See `tests/k8sscale/mod.rs`. Raw data goes to a JSON file
//! with date, commit and machine.
//!
//! Run (root): `cargo bench -p rackd --bench k8s_scale -- [--services N] [--window S]
//! [--runs R] [--out FILE]` (defaults: 27000, 60, 2, rackd/benches/data/k8s_scale-DATE.json).
#![allow(clippy::unwrap_used, clippy::disallowed_types)]

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/k8scommon/mod.rs"]
mod k8scommon;
#[path = "../tests/k8sscale/mod.rs"]
mod k8sscale;

use std::path::PathBuf;

use common::{arg, sh};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let services = arg(&args, "--services").map_or(27_000, |s| s.parse().unwrap());
    let window_s = arg(&args, "--window").map_or(60, |s| s.parse().unwrap());
    let runs = arg(&args, "--runs").map_or(2, |s| s.parse::<usize>().unwrap());
    let out = arg(&args, "--out").map_or_else(k8sscale::default_out, PathBuf::from);
    // The optimised daemon, as production runs it.
    let bin = k8scommon::workspace().join("target/release/rackd");
    assert!(
        bin.exists(),
        "build it first: cargo build --release -p rackd --bin rackd"
    );
    let mut results = Vec::new();
    for run in 0..runs {
        let r = k8sscale::run(&bin, &k8sscale::Config { services, window_s });
        eprintln!(
            "run {run}: create {:.1} s, all IPs {:.1} s (lag {:.1} s), all routes {:.1} s (kernel {:.1} s), steady {:.2} req/s",
            r.create_s,
            r.all_ips_s,
            r.ip_lag_s,
            r.all_routes_bgp_s,
            r.all_routes_kernel_s,
            r.steady.total_per_second
        );
        results.push(r);
    }
    let summary = serde_json::json!({
        "all_ips_s_median": median(results.iter().map(|r| r.all_ips_s).collect()),
        "all_routes_kernel_s_median": median(results.iter().map(|r| r.all_routes_kernel_s).collect()),
        "create_s_median": median(results.iter().map(|r| r.create_s).collect()),
        "ip_lag_s_median": median(results.iter().map(|r| r.ip_lag_s).collect()),
        "steady_req_per_s_median": median(results.iter().map(|r| r.steady.total_per_second).collect()),
    });
    let doc = serde_json::json!({
        "benchmark": "k8s_scale",
        "date": sh("date -u +%FT%TZ"),
        "commit": sh("git rev-parse HEAD"),
        "dirty": !sh("git status --porcelain -uno").is_empty(),
        "machine": {
            "cpus": sh("nproc"),
            "cpu": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"),
            "kernel": sh("uname -r"),
            "loadavg": sh("cat /proc/loadavg"),
        },
        "command": args,
        "config": {"services": services, "window_s": window_s, "runs": runs},
        "summary": summary,
        "runs": results,
    });
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::fs::write(&out, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    println!("{}", serde_json::to_string_pretty(&summary).unwrap());
    eprintln!("wrote {}", out.display());
}
