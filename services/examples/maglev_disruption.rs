//! How many *other* slots move when one backend is removed from a Maglev table: the sizes and
//! backends of `maglev_tests.rs`'s `removal_moves_about_its_share` (each of the first 20
//! backends removed in turn), reported as `c = moved / √(M·N)` and as a share of M. The tables
//! are deterministic; the machine is recorded anyway.
//!
//! Run: `cargo run --release -p rackd-services --example maglev_disruption -- [--out FILE]`
//! (FILE relative to the workspace root).
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr};

use rackd_services::L4Proto;
use rackd_services::maglev::{
    DEFAULT_WEIGHT, HashSeed, MaglevBackend, MaglevConfig, TableSize, hash_string, lookup_table,
};

/// The test's backends: 10.244.(i / 200).(i % 200 + 2):8080/TCP, ids from 1.
fn backends(n: u32) -> Vec<MaglevBackend> {
    (0..n)
        .map(|i| MaglevBackend {
            key: hash_string(
                IpAddr::V4(Ipv4Addr::new(10, 244, (i / 200) as u8, (i % 200 + 2) as u8)),
                8080,
                L4Proto::Tcp,
            ),
            id: i + 1,
            weight: DEFAULT_WEIGHT,
        })
        .collect()
}

fn sh(cmd: &str) -> String {
    std::process::Command::new("sh")
        .args(["-c", cmd])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut cases = Vec::new();
    let (mut c_min, mut c_max) = (f64::MAX, 0f64);
    for (m, n) in [
        (1021u32, 3u32),
        (1021, 10),
        (16381, 10),
        (16381, 100),
        (16381, 163),
    ] {
        let cfg = MaglevConfig {
            table_size: TableSize::new(m.into()).unwrap(),
            seed: HashSeed::default(),
        };
        let bs = backends(n);
        let table = |bs: &[MaglevBackend]| -> Vec<u32> {
            lookup_table(&cfg, bs).unwrap().slot_ids().collect()
        };
        let before = table(&bs);
        let mut others_moved = Vec::new();
        for r in 0..n.min(20) {
            let removed = bs[r as usize].id;
            let rest: Vec<_> = bs.iter().filter(|b| b.id != removed).cloned().collect();
            let after = table(&rest);
            let others = before
                .iter()
                .zip(&after)
                .filter(|(b, a)| **b != removed && a != b)
                .count();
            others_moved.push(others);
        }
        let scale = (f64::from(m) * f64::from(n)).sqrt();
        let c: Vec<f64> = others_moved.iter().map(|o| *o as f64 / scale).collect();
        let lo = c.iter().copied().fold(f64::MAX, f64::min);
        let hi = c.iter().copied().fold(0f64, f64::max);
        let max_share = *others_moved.iter().max().unwrap() as f64 / f64::from(m);
        c_min = c_min.min(lo);
        c_max = c_max.max(hi);
        println!(
            "M={m:>5} N={n:>3}: other slots moved {:?}; c = {lo:.3}..{hi:.3}; at most {:.2} % of M",
            others_moved,
            max_share * 100.0
        );
        cases.push(serde_json::json!({
            "m": m, "n": n,
            "others_moved": others_moved,
            "c_min": lo, "c_max": hi,
            "max_share_of_m": max_share,
        }));
    }
    println!("c over all cases: {c_min:.3}..{c_max:.3}");
    let out = serde_json::json!({
        "bench": "rackd-services maglev_disruption",
        "date": sh("date -u +%Y-%m-%dT%H:%M:%SZ"),
        "commit": sh("git rev-parse HEAD"),
        "dirty": !sh("git status --porcelain --untracked-files=no").is_empty(),
        "machine": {
            "uname": sh("uname -srm"),
            "nproc": sh("nproc"),
            "cpu": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"),
        },
        "seed": "default (JLfvgnHc2kaSUFaI)",
        "cases": cases,
        "c_min": c_min,
        "c_max": c_max,
    });
    if let Some(i) = args.iter().position(|a| a == "--out") {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(args.get(i + 1).expect("--out FILE"));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(&path, serde_json::to_string_pretty(&out).unwrap()).unwrap();
        println!("raw data: {}", path.display());
    }
}
