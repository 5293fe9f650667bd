//! `cargo run --release -p bgpd-bench -- [--prefixes N] [--runs N] [--dut bird --dut bgpd]`

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use bgpd_bench::{BenchConfig, DutKind, Workload, workload};
use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Which {
    Bird,
    Bgpd,
}

/// Convergence benchmark: our speaker vs BIRD 2 in network namespaces (needs root).
#[derive(Debug, Parser)]
struct Args {
    /// IPv4 /24 prefixes the sender announces.
    #[arg(long, default_value_t = 1_000_000)]
    prefixes: u32,
    /// Distinct attribute sets (default: 33 % of the prefixes).
    #[arg(long)]
    attr_sets: Option<u32>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Runs per DUT; medians are reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// DUTs to measure (default: both).
    #[arg(long, value_enum)]
    dut: Vec<Which>,
    /// The `bgpd-dut` binary (default: next to this one).
    #[arg(long)]
    bgpd_dut: Option<PathBuf>,
    /// Where to write the CSV.
    #[arg(long, default_value = "bgpd-bench.csv")]
    csv: PathBuf,
    /// Run our speaker under this command (e.g. "perf record -g -o /tmp/perf.data --"), for
    /// profiling; its CPU and RSS figures are then the wrapper's.
    #[arg(long)]
    bgpd_wrapper: Option<String>,
    /// Per-run limit in seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Free text written into every CSV row's `note` column (e.g. which build `--bgpd-dut`
    /// is, when it is not the checked-out tree's).
    #[arg(long, default_value = "")]
    note: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.prefixes == 0 || args.prefixes > workload::MAX_PREFIXES {
        bail!("--prefixes must be 1..={}", workload::MAX_PREFIXES);
    }
    let mut w = Workload::new(args.prefixes, args.seed);
    if let Some(s) = args.attr_sets {
        if s == 0 {
            bail!("--attr-sets must be at least 1");
        }
        w.attr_sets = s;
    }
    let default_dut = std::env::current_exe()
        .context("locating this binary")?
        .with_file_name("bgpd-dut");
    let which = if !args.dut.is_empty() {
        args.dut.clone()
    } else if args.bgpd_dut.is_some() || default_dut.exists() {
        vec![Which::Bird, Which::Bgpd]
    } else {
        eprintln!("{} not built: measuring BIRD only", default_dut.display());
        vec![Which::Bird]
    };
    let mut duts = Vec::new();
    for d in which {
        duts.push(match d {
            Which::Bird => DutKind::Bird,
            Which::Bgpd => {
                let bin = match &args.bgpd_dut {
                    Some(p) => p.clone(),
                    None => default_dut.clone(),
                };
                if !bin.exists() {
                    bail!(
                        "{} not found: build it with `cargo build --release -p bgpd-bench --bin bgpd-dut` or pass --bgpd-dut",
                        bin.display()
                    );
                }
                DutKind::Bgpd {
                    binary: bin,
                    wrapper: args
                        .bgpd_wrapper
                        .as_deref()
                        .map(|w| w.split_whitespace().map(str::to_owned).collect())
                        .unwrap_or_default(),
                }
            }
        });
    }
    let cfg = BenchConfig {
        workload: w,
        runs: args.runs.max(1),
        duts,
        timeout: Duration::from_secs(args.timeout),
    };
    let mut report = bgpd_bench::run(&cfg, |r| {
        eprintln!(
            "{:<15} run {}: {:.3} s (sender {:.3} s, first prefix {}), cpu {}, peak RSS {}, foreign cpu {}",
            r.dut,
            r.run,
            r.convergence_s,
            r.sender_s,
            r.first_s.map_or("-".into(), |f| format!("{f:.3} s")),
            r.dut_cpu_s.map_or("-".into(), |c| format!("{c:.2} s")),
            r.dut_peak_rss_kib
                .map_or("-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0)),
            r.foreign_cpu_s.map_or("-".into(), |c| format!("{c:.2} s")),
        );
    })?;
    report.note = args.note.clone();
    print!("{}", report.table());
    std::fs::write(&args.csv, report.csv())
        .with_context(|| format!("writing {}", args.csv.display()))?;
    println!("CSV: {}", args.csv.display());
    Ok(())
}
