//! The harness end to end in smoke mode (10,000 prefixes) against BIRD only: proves the lab,
//! the peers and the report work. Needs root and `bird` (Debian package `bird2`). No timing is
//! asserted; the figures come from `cargo run --release -p bgpd-bench`.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bgpd_bench::{BenchConfig, DutKind, Workload};

#[test]
fn smoke_against_bird() {
    let cfg = BenchConfig {
        workload: Workload::new(10_000, 1),
        runs: 1,
        duts: vec![DutKind::Bird],
        timeout: Duration::from_secs(60),
    };
    let report = bgpd_bench::run(&cfg, |_| {}).unwrap_or_else(|e| panic!("{e}\n{e:?}"));
    let bird = report.summary("bird").expect("a BIRD run");
    let ceiling = report.summary("sender-ceiling").expect("a ceiling run");
    assert!(bird.convergence_s > 0.0 && ceiling.convergence_s > 0.0);
    assert!(bird.dut_peak_rss_kib.is_some_and(|k| k > 0));
    // Measured, not left out: BIRD did work, and the run's CPU readings agreed (or it would
    // have failed with a CpuAccounting error).
    assert!(bird.dut_cpu_s.is_some_and(|c| c > 0.0), "{bird:?}");
    assert!(bird.foreign_cpu_s.is_some(), "{bird:?}");
    for r in &report.runs {
        match r.dut {
            "bird" => assert_eq!(r.received, 10_000, "{r:?}"),
            // The sink counts the handshake too.
            "sender-ceiling" => assert!(r.received as usize > report.table_bytes, "{r:?}"),
            other => panic!("unexpected run {other}"),
        }
    }
    let csv = report.csv();
    assert_eq!(csv.lines().count(), 1 + report.runs.len(), "{csv}");
    println!("{}", report.table());
}
