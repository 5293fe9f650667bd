//! L2 failover benchmark (`labs-and-testing.md` §6): three rackd nodes with the eBPF
//! responder and etcd leases, a client prober (ARP + NS every 10 ms) and `ping -i 0.01`.
//! For each fault kind and lease setting it reports T_detect (fault → first gratuitous ARP /
//! unsolicited NA from the new owner) and T_outage (longest gap in ping replies) as
//! median / p95 / max, the windows where two MACs answered, and datastore writes per second
//! in steady state.
//!
//! ```text
//! cargo bench -p rackd --bench l2_failover -- [RUNS_FAST] [RUNS_CILIUM_DEFAULTS] [SCALE]
//! ```
//! Defaults: 20 runs per fault with the fastest setting (1s/500ms/200ms), 3 with Cilium's
//! defaults (15s/5s/2s), then the scale run: 27,000 services over the three nodes with
//! Cilium's defaults (all answer ARP, datastore writes in steady state and for a kill -9
//! failover; 0 skips a part).
#![allow(clippy::disallowed_types)]

#[path = "../tests/l2common/mod.rs"]
mod l2common;

use std::time::Duration;

use l2common::{CILIUM_DEFAULTS, FAST, Fault, L2Lab, Timings};

fn run(name: &str, timings: Timings, runs: usize) {
    println!(
        "\n## {name}: lease {} / renew {} / retry {}, {runs} runs per fault\n",
        timings.lease, timings.renew, timings.retry
    );
    let mut lab = L2Lab::up("l2-bench", timings);
    let steady = l2common::writes_per_sec(&lab, Duration::from_secs(15));
    let mut results = Vec::new();
    for fault in Fault::ALL {
        for run in 0..runs {
            let r = l2common::run_fault(&mut lab, fault, run % 2 == 1);
            eprintln!(
                "{} run {run}: detect {:?}/{:?} outage {:?}/{:?} two-MAC windows {}",
                fault.name(),
                r.detect4,
                r.detect6,
                r.outage4,
                r.outage6,
                r.double4 + r.double6
            );
            results.push(r);
        }
    }
    print!("{}", l2common::report(&results));
    println!(
        "\nsteady-state datastore writes: {steady:.1}/s over 3 nodes (2 IP groups; one keepalive per node per retry period)"
    );
}

fn main() {
    // `cargo bench` passes --bench; ignore flags.
    let nums: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let fast_runs = nums.first().copied().unwrap_or(20);
    let default_runs = nums.get(1).copied().unwrap_or(3);
    let scale = nums.get(2).copied().unwrap_or(27_000);
    if fast_runs > 0 {
        run("fastest setting etcd honours", FAST, fast_runs);
    }
    if default_runs > 0 {
        run("Cilium's defaults", CILIUM_DEFAULTS, default_runs);
    }
    if scale > 0 {
        let f = l2common::scale_run(scale, CILIUM_DEFAULTS, true);
        let cilium_writes = scale as f64 / 5.0;
        println!(
            "\n## scale: {} services over 3 nodes, Cilium's default timings\n\n\
             - all claimed and announced {:.1} s after start, split {:?}; ARP sweep of every address {:.2} s, each answered by exactly one MAC\n\
             - peak RSS per rackd: {:.0} / {:.0} / {:.0} MiB\n\
             - steady state: **{:.1} datastore writes/s** (Cilium's Lease per service with a 5 s renew deadline: {:.0} writes/s, ratio {:.5})\n\
             - kill -9 of the node holding {} groups: survivors announce all {:.2} s later (split {:?}); they spent {} claim transactions, {} writes in all",
            f.services,
            f.t_all_announced.as_secs_f64(),
            f.split,
            f.t_sweep.as_secs_f64(),
            f.peak_rss_mib[0],
            f.peak_rss_mib[1],
            f.peak_rss_mib[2],
            f.steady_writes_per_sec,
            cilium_writes,
            f.steady_writes_per_sec / cilium_writes,
            f.victim_groups,
            f.t_failover.as_secs_f64(),
            f.split_after,
            f.failover_txns,
            f.failover_writes
        );
    }
}
