//! The harness end to end in smoke mode (10,000 prefixes): the ceiling, the floor, the relay
//! and both DUTs, BIRD and our speaker (the `bgpd-dut` binary Cargo builds for this test):
//! proves the lab, the peers and the report work, and that the bgpd side still converges, so
//! CI notices when it breaks.
//! Needs root and `bird` (Debian package `bird2`). No timing is asserted; the figures come
//! from `cargo run --release -p bgpd-bench`.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use bgpd_bench::{BenchConfig, DutKind, Workload};

#[test]
fn smoke_against_bird_and_bgpd() {
    let cfg = BenchConfig {
        workload: Workload::new(10_000, 1),
        runs: 1,
        duts: vec![
            DutKind::Bird,
            // The debug build Cargo made for this test: the smoke run checks that our side
            // works, not how fast it is.
            DutKind::Bgpd {
                binary: PathBuf::from(env!("CARGO_BIN_EXE_bgpd-dut")),
                wrapper: Vec::new(),
            },
        ],
        timeout: Duration::from_secs(60),
    };
    let report = bgpd_bench::run(&cfg, |_| {}).unwrap_or_else(|e| panic!("{e}\n{e:?}"));
    let ceiling = report.summary("sender-ceiling").expect("a ceiling run");
    assert!(ceiling.convergence_s > 0.0);
    for dut in ["bird", "bgpd"] {
        let s = report.summary(dut).unwrap_or_else(|| panic!("a {dut} run"));
        assert!(s.convergence_s > 0.0, "{s:?}");
        assert!(s.dut_peak_rss_kib.is_some_and(|k| k > 0), "{s:?}");
        // Measured, not left out: the DUT did work, and the run's CPU readings agreed (or it
        // would have failed with a CpuAccounting error).
        assert!(s.dut_cpu_s.is_some_and(|c| c > 0.0), "{s:?}");
        assert!(s.foreign_cpu_s.is_some(), "{s:?}");
    }
    for r in &report.runs {
        match r.dut {
            // Every table prefix reached the receiver through the DUT.
            "bird" | "bgpd" => assert_eq!(r.received, 10_000, "{r:?}"),
            // The floor's receiver counted the whole table straight from the sender.
            "floor" => assert_eq!(r.received, 10_000, "{r:?}"),
            // The receiver counted the whole table through the relay, which copied it (its
            // thread used CPU: the bytes went through it, not around it).
            "relay" => {
                assert_eq!(r.received, 10_000, "{r:?}");
                assert!(r.dut_cpu_s.is_some_and(|c| c > 0.0), "{r:?}");
            }
            // The sink counts the handshake too.
            "sender-ceiling" => assert!(r.received as usize > report.table_bytes, "{r:?}"),
            other => panic!("unexpected run {other}"),
        }
    }
    assert!(report.summary("floor").is_some(), "a floor run");
    assert!(report.summary("relay").is_some(), "a relay run");
    // The peers' own CPU is read in every run: the CPU budget at the floor target uses it.
    for r in &report.runs {
        assert!(r.peers_cpu_s.is_some_and(|c| c > 0.0), "{r:?}");
    }
    assert!(
        report.table().contains("at 1.25x the floor"),
        "{}",
        report.table()
    );
    let csv = report.csv();
    assert_eq!(csv.lines().count(), 1 + report.runs.len(), "{csv}");
    // Every row carries its provenance: start time, commit and machine (issue 18).
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    for col in ["started_utc", "load1", "commit", "nproc", "kernel"] {
        assert!(header.contains(&col), "{csv}");
    }
    assert!(
        !report.machine.commit.is_empty() && report.machine.nproc > 0,
        "{:?}",
        report.machine
    );
    println!("{}", report.table());
}
