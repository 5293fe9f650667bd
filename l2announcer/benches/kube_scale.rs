//! Scale benchmark of the Kubernetes backend against a real kube-apiserver and etcd
//! (kubelab): 27,000 groups over three nodes.
//!
//! `cargo bench -p l2announcer --bench kube_scale` (env: `L2KUBE_GROUPS`, default 27000;
//! `L2KUBE_RUNS`, default 3; `L2KUBE_WINDOW_S`, steady-state window, default 10;
//! `L2KUBE_FAST=1` uses 1 s / 500 ms / 200 ms instead of Cilium's 15 s / 5 s / 2 s;
//! `L2KUBE_OUT`, the JSON file to write, default `benches/data/kube-scale-<date>.json`).
//!
//! Per run (fresh namespace, same API server): start-up time and writes to claim everything,
//! steady-state API writes per second against Cilium's one Lease per Service, and a kill -9
//! of the node holding the most groups (time until each moved group is announced by a
//! survivor, and the survivors' writes). First, the API server's own create throughput with
//! a plain loop: the harness's ceiling for the claim figures.

#[path = "../tests/kubecommon/mod.rs"]
mod kubecommon;

use std::time::Duration;

use anyhow::Context;
use kubecommon::Lab;
use kubecommon::scale::{ScaleRun, create_ceiling, scale_run};
use l2announcer::LeaseTimings;

fn env<T: std::str::FromStr>(k: &str, default: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn sh(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_default()
}

/// Median, min and max of `f` over the runs.
fn spread(runs: &[ScaleRun], f: impl Fn(&ScaleRun) -> f64) -> serde_json::Value {
    let mut v: Vec<f64> = runs.iter().map(f).collect();
    v.sort_by(f64::total_cmp);
    let median = match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    };
    serde_json::json!({
        "median": median,
        "min": v.first().copied().unwrap_or_default(),
        "max": v.last().copied().unwrap_or_default(),
    })
}

fn main() -> anyhow::Result<()> {
    let n: u32 = env("L2KUBE_GROUPS", 27_000);
    let runs: usize = env("L2KUBE_RUNS", 3);
    let window = Duration::from_secs(env("L2KUBE_WINDOW_S", 10));
    let fast = std::env::var("L2KUBE_FAST").is_ok_and(|v| v == "1");
    let timings = if fast {
        LeaseTimings::FAST
    } else {
        LeaseTimings::default()
    };
    let date = sh("date", &["-u", "+%Y-%m-%d"]);
    let out = std::env::var("L2KUBE_OUT").unwrap_or_else(|_| {
        format!(
            "{}/benches/data/kube-scale-{date}.json",
            env!("CARGO_MANIFEST_DIR")
        )
    });
    let load_before = loadavg();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (ceilings, results) = rt.block_on(async {
        let mut c = Lab::new("l2-bench").await?;
        c.poll = Duration::from_millis(250);
        let mut ceilings = Vec::new();
        for (clients, in_flight) in [(1, 16), (3, 16)] {
            let rate = create_ceiling(&mut c, n.min(9_000), clients, in_flight).await?;
            println!(
                "ceiling: plain create loop, {clients} client(s) × {in_flight} in flight: {rate:.0} creates/s"
            );
            ceilings.push(serde_json::json!({
                "clients": clients, "in_flight_per_client": in_flight,
                "creates": n.min(9_000), "creates_per_s": rate,
            }));
        }
        let mut results = Vec::new();
        for i in 0..runs {
            let limit = Duration::from_secs(1800);
            let r = scale_run(&mut c, n, timings, window, limit).await?;
            println!(
                "run {i}: start-up {:.1} s, {} writes ({} claims created), split {:?}, max heartbeat gap {:.2} s",
                r.startup_s, r.startup_writes.total(), r.startup_writes.keys_created, r.split,
                r.startup_max_heartbeat_gap_s
            );
            println!(
                "  steady {:.2} writes/s over {:.0} s ({:?}); Cilium {:.0}/s; ratio {:.6}",
                r.steady_writes_per_s, r.steady_window_s, r.steady_writes, r.cilium_writes_per_s,
                r.ratio_to_cilium
            );
            println!(
                "  kill -9 of {} ({} groups): first {:.2} s, last {:.2} s, {} writes ({} takeovers); double owner {:?}",
                r.victim, r.victim_groups, r.failover_first_s, r.failover_last_s,
                r.failover_writes.total(), r.failover_writes.keys_created, r.double_owner
            );
            results.push(r);
        }
        c.stop().await;
        anyhow::Ok((ceilings, results))
    })?;
    let summary = serde_json::json!({
        "startup_s": spread(&results, |r| r.startup_s),
        "startup_writes": spread(&results, |r| r.startup_writes.total() as f64),
        "startup_max_heartbeat_gap_s": spread(&results, |r| r.startup_max_heartbeat_gap_s),
        "steady_writes_per_s": spread(&results, |r| r.steady_writes_per_s),
        "ratio_to_cilium": spread(&results, |r| r.ratio_to_cilium),
        "failover_first_s": spread(&results, |r| r.failover_first_s),
        "failover_last_s": spread(&results, |r| r.failover_last_s),
        "failover_writes": spread(&results, |r| r.failover_writes.total() as f64),
    });
    let doc = serde_json::json!({
        "bench": "l2announcer kube_scale",
        "date": date,
        "commit": sh("git", &["rev-parse", "HEAD"]),
        // Benches run in the package directory.
        "dirty": !sh("git", &["status", "--porcelain", "--", "."]).is_empty(),
        "machine": sh("uname", &["-srm"]),
        "kernel": sh("uname", &["-r"]),
        "nproc": sh("nproc", &[]),
        "cpu": cpu_model(),
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
        "command": "cargo bench -p l2announcer --bench kube_scale",
        "groups": n,
        "nodes": 3,
        "timings": timings,
        "max_in_flight_per_node": l2announcer::backend::kube::DEFAULT_MAX_IN_FLIGHT,
        "apiserver": "kube-apiserver v1.37.2 + etcd v3.7.3 (kubelab), loopback, same machine",
        "ceiling": ceilings,
        "runs": results,
        "summary": summary,
    });
    if let Some(dir) = std::path::Path::new(&out).parent() {
        std::fs::create_dir_all(dir).context("creating the data directory")?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&doc)?)
        .with_context(|| format!("writing {out}"))?;
    println!("wrote {out}");
    Ok(())
}
