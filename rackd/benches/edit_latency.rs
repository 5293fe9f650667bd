//! The daemon's shape at scale (issue 14), side by side: N LoadBalancer Services (one pool,
//! one file) in a rackd peered with an FRR ToR, against another rackd binary (the build
//! before the reshaping) in the same run, runs alternating.
//!
//! (a) one Service added (new file) or edited (one document of the big file): edit → route
//! change in the ToR's kernel table, and daemon CPU per edit; (b) `bgp peers` latency while
//! the N Services load; plus the harness's ceilings. Raw data goes to a JSON file with date,
//! commit and machine.
//!
//! Run (root): `scripts/bench-edit-latency.sh` (builds the "before" binary from the commit
//! given, default the one before issue 14, then runs this), or directly:
//! `cargo bench -p rackd --bench edit_latency -- [--services N] [--edits E] [--runs R]
//!  [--before PATH] [--out FILE]`.
#![allow(clippy::unwrap_used, clippy::disallowed_types)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::route_watch::RouteWatch;
use common::shape_bench::{self, Config, RunResult, quantile};
use common::{Lab, arg, sh};

fn stats(v: &[f64]) -> serde_json::Value {
    serde_json::json!({
        "n": v.len(),
        "min": quantile(v, 0.0),
        "median": quantile(v, 0.5),
        "p99": quantile(v, 0.99),
        "max": quantile(v, 1.0),
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cfg = Config {
        services: arg(&args, "--services")
            .and_then(|v| v.parse().ok())
            .unwrap_or(27_000),
        edits: arg(&args, "--edits")
            .and_then(|v| v.parse().ok())
            .unwrap_or(30),
    };
    let runs: usize = arg(&args, "--runs")
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mut bins: Vec<(String, PathBuf)> = Vec::new();
    if let Some(b) = arg(&args, "--before") {
        bins.push(("before".into(), PathBuf::from(b)));
    }
    bins.push(("after".into(), PathBuf::from(env!("CARGO_BIN_EXE_rackd"))));

    // Harness ceilings first, on a lab of their own.
    let (peers_ceiling, watch_ceiling) = {
        let mut lab = Lab::prepare("rk-ceil");
        let watch = RouteWatch::start(&lab.tor_ns);
        lab.start_rackd();
        lab.tor
            .wait_established("10.0.1.2".parse().unwrap(), Duration::from_secs(60))
            .unwrap();
        let reply = shape_bench::sample_peers_reply(&lab);
        let w = shape_bench::watch_ceiling(&lab, &watch, 30);
        lab.stop_rackd();
        (shape_bench::peers_ceiling(&reply, 2.0), w)
    };

    let mut results: Vec<RunResult> = Vec::new();
    for run in 0..runs {
        // Alternate which binary goes first, so drift over the run does not favour one.
        let order: Vec<&(String, PathBuf)> = if run % 2 == 0 {
            bins.iter().collect()
        } else {
            bins.iter().rev().collect()
        };
        for (label, bin) in order {
            let r = shape_bench::run_one(label, bin, &cfg, run);
            let lat: Vec<f64> = r.edits.iter().map(|e| e.latency_ms).collect();
            let wire: Vec<f64> = r.edits.iter().filter_map(|e| e.wire_ms).collect();
            let cpu: f64 = r.edits.iter().map(|e| e.cpu_ms).sum::<f64>() / r.edits.len() as f64;
            println!(
                "run {run} {label}: load {:.2} s; edit latency median {:.1} ms (max {:.1}), to the wire {:.1} ms; CPU/edit {:.1} ms; peers p99 idle {:.2} ms, loading {:.2} ms ({} requests)",
                r.load_s,
                quantile(&lat, 0.5),
                quantile(&lat, 1.0),
                quantile(&wire, 0.5),
                cpu,
                quantile(&r.peers_idle_ms, 0.99),
                quantile(&r.peers_loaded_ms, 0.99),
                r.peers_loaded_ms.len()
            );
            results.push(r);
        }
    }

    let mut summary = serde_json::Map::new();
    for (label, _) in &bins {
        let rs: Vec<&RunResult> = results.iter().filter(|r| &r.label == label).collect();
        let mut by_kind = serde_json::Map::new();
        for kind in ["add", "withdraw", "restore"] {
            let lat: Vec<f64> = rs
                .iter()
                .flat_map(|r| r.edits.iter())
                .filter(|e| e.kind == kind)
                .map(|e| e.latency_ms)
                .collect();
            by_kind.insert(kind.into(), stats(&lat));
        }
        let all: Vec<f64> = rs
            .iter()
            .flat_map(|r| r.edits.iter().map(|e| e.latency_ms))
            .collect();
        let wire: Vec<f64> = rs
            .iter()
            .flat_map(|r| r.edits.iter().filter_map(|e| e.wire_ms))
            .collect();
        let cpu: Vec<f64> = rs
            .iter()
            .flat_map(|r| r.edits.iter().map(|e| e.cpu_ms))
            .collect();
        let idle: Vec<f64> = rs
            .iter()
            .flat_map(|r| r.peers_idle_ms.iter().copied())
            .collect();
        let loaded: Vec<f64> = rs
            .iter()
            .flat_map(|r| r.peers_loaded_ms.iter().copied())
            .collect();
        let load: Vec<f64> = rs.iter().map(|r| r.load_s).collect();
        summary.insert(
            label.clone(),
            serde_json::json!({
                "edit_latency_ms": stats(&all),
                "edit_to_wire_ms": stats(&wire),
                "edit_latency_ms_by_kind": by_kind,
                "cpu_ms_per_edit_mean": cpu.iter().sum::<f64>() / cpu.len().max(1) as f64,
                "cpu_ms_per_edit": stats(&cpu),
                "peers_idle_ms": stats(&idle),
                "peers_loading_ms": stats(&loaded),
                "load_s": stats(&load),
            }),
        );
    }
    let out = serde_json::json!({
        "bench": "edit_latency",
        "date": sh("date -u +%Y-%m-%dT%H:%M:%SZ"),
        "commit": sh("git rev-parse HEAD"),
        "dirty": !sh("git status --porcelain --untracked-files=no").is_empty(),
        "before": arg(&args, "--before"),
        "before_commit": std::env::var("RACKD_BEFORE_COMMIT").ok(),
        "machine": {
            "hostname": sh("hostname"),
            "nproc": sh("nproc"),
            "kernel": sh("uname -r"),
            "cpu": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"),
            "loadavg_at_end": sh("cat /proc/loadavg"),
        },
        "config": cfg,
        "runs": runs,
        "harness": {
            "peers_request_ceiling_ms": stats(&peers_ceiling),
            "route_watch_ceiling_ms": stats(&watch_ceiling),
        },
        "summary": summary,
        "results": results,
    });
    let text = serde_json::to_string_pretty(&out).unwrap();
    println!("{}", serde_json::to_string_pretty(&out["summary"]).unwrap());
    println!(
        "harness: peers ceiling median {:.3} ms p99 {:.3} ms; route watch ceiling median {:.2} ms",
        quantile(&peers_ceiling, 0.5),
        quantile(&peers_ceiling, 0.99),
        quantile(&watch_ceiling, 0.5)
    );
    if let Some(path) = arg(&args, "--out") {
        // Relative to the workspace root (cargo runs benches in the package's directory).
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(&path, text).unwrap();
        println!("raw data: {}", path.display());
    }
}
